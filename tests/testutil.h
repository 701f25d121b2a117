// Helpers shared by the unit tests.
#ifndef CLLM_TESTUTIL_H
#define CLLM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

// Path of a file under ../shared (from $CLLM_SHARED). When the data is missing: in CI ($CI set)
// the test fails loudly; elsewhere it prints why and exits 77 (ctest reports "skipped").
const char *cllm_test_shared_path(const char *rel);

// Deterministic pseudo-random numbers for tests (splitmix64).
uint64_t cllm_test_rand(uint64_t *state);
double cllm_test_uniform(uint64_t *state);   // [0, 1)
double cllm_test_normal(uint64_t *state);

// A fresh temporary directory for this test process (removed by the OS / CI workspace).
const char *cllm_test_tmpdir(void);

// A growable byte buffer for building files in memory (GGUF test files). Allocation failures
// abort the test.
typedef struct cllm_test_buf {
    uint8_t *p;
    size_t n, cap;
} cllm_test_buf;

void cllm_tb_bytes(cllm_test_buf *b, const void *p, size_t n);
void cllm_tb_u32(cllm_test_buf *b, uint32_t v);
void cllm_tb_u64(cllm_test_buf *b, uint64_t v);
void cllm_tb_f32(cllm_test_buf *b, float v);
// A GGUF string: u64 length + bytes.
void cllm_tb_str(cllm_test_buf *b, const char *s);
void cllm_tb_strn(cllm_test_buf *b, const char *s, size_t n);
// GGUF key/value pairs (value types: 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array).
void cllm_tb_kv_u32(cllm_test_buf *b, const char *key, uint32_t v);
void cllm_tb_kv_f32(cllm_test_buf *b, const char *key, float v);
void cllm_tb_kv_bool(cllm_test_buf *b, const char *key, int v);
void cllm_tb_kv_str(cllm_test_buf *b, const char *key, const char *v);
// The head of an array pair; the caller appends `n` elements of `elem_type`.
void cllm_tb_kv_array(cllm_test_buf *b, const char *key, uint32_t elem_type, uint64_t n);
// A tensor info: name, n_dims, ne[0..n_dims), ggml type, offset in the data section.
void cllm_tb_tensor(cllm_test_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                    uint32_t type, uint64_t offset);
// Zero bytes up to a multiple of `align`.
void cllm_tb_pad(cllm_test_buf *b, size_t align);
// Writes the buffer to dir/name and returns the path (static storage, overwritten by each call).
const char *cllm_tb_save(const cllm_test_buf *b, const char *dir, const char *name);

#endif
