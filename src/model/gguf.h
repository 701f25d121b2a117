// GGUF reader (llama.cpp's model container, versions 2 and 3, little-endian).
//
// File layout (all integers little-endian):
//   u32 magic "GGUF", u32 version (2 or 3), u64 n_tensors, u64 n_kv
//   n_kv key/value pairs:   string key, u32 value type, value
//   n_tensors tensor infos: string name, u32 n_dims (1..4), u64 ne[n_dims], u32 ggml type,
//                           u64 offset (relative to the data section, a multiple of the alignment)
//   zero padding up to the data section, which starts at the first multiple of the alignment
//   (`general.alignment`, a u32 power of two, default 32) after the tensor infos.
// string = u64 length + that many bytes (UTF-8, no NUL). Value types: 0 u8, 1 i8, 2 u16, 3 i16,
// 4 u32, 5 i32, 6 f32, 7 bool (one byte, 0 or 1), 8 string, 9 array (u32 element type, u64 count,
// the elements; arrays of arrays are refused), 10 u64, 11 i64, 12 f64.
// ne[0] is the innermost dimension: a matrix of `rows` rows of `cols` values has ne = {cols, rows}.
//
// Every count, length, type, dimension and offset is checked before it is used: lengths and
// counts against the bytes left in the file, tensor data inside the file, aligned, and not
// overlapping. Only the header region (up to the data section) is read, with pread, as far as the
// parser gets; tensor data is never touched. Depends on common and gguf_quant (tensor layouts).
#ifndef CLLM_GGUF_H
#define CLLM_GGUF_H

#include "../common/cllm_common.h"

#include <stdint.h>

#define CLLM_GGUF_MAGIC 0x46554747u              // "GGUF" read as a little-endian u32
#define CLLM_GGUF_DEFAULT_ALIGNMENT 32u
#define CLLM_GGUF_MAX_HEADER ((uint64_t)512 << 20) // header region we read (real ones: < 20 MB)
#define CLLM_GGUF_MAX_KV ((uint64_t)1 << 20)
#define CLLM_GGUF_MAX_TENSORS ((uint64_t)1 << 20)
#define CLLM_GGUF_MAX_KEY 65535u                   // bytes of a key (the specification's limit)
#define CLLM_GGUF_MAX_NAME 64u                     // bytes of a tensor name (idem)
#define CLLM_GGUF_MAX_DIMS 4u

typedef enum cllm_gguf_vtype {
    CLLM_GGUF_U8 = 0,
    CLLM_GGUF_I8 = 1,
    CLLM_GGUF_U16 = 2,
    CLLM_GGUF_I16 = 3,
    CLLM_GGUF_U32 = 4,
    CLLM_GGUF_I32 = 5,
    CLLM_GGUF_F32 = 6,
    CLLM_GGUF_BOOL = 7,
    CLLM_GGUF_STRING = 8,
    CLLM_GGUF_ARRAY = 9,
    CLLM_GGUF_U64 = 10,
    CLLM_GGUF_I64 = 11,
    CLLM_GGUF_F64 = 12,
    CLLM_GGUF_VTYPE_COUNT_ = 13,
} cllm_gguf_vtype;

// One key/value pair. Offsets point into cllm_gguf.hdr (the header bytes, kept).
typedef struct cllm_gguf_kv {
    const char *key;      // NUL-terminated copy
    uint32_t type;        // cllm_gguf_vtype
    uint32_t elem_type;   // arrays: the element type
    uint64_t n;           // arrays: the element count; scalars: 1
    uint64_t value_off;   // scalars and arrays of numbers: offset of the (first) value;
                          // strings: offset of the bytes (the length is `len`)
    uint64_t len;         // strings: byte length
    uint64_t *str_off;    // arrays of strings: (n) offsets of each string's bytes (after its
                          // length); lengths are the u64 just before each
} cllm_gguf_kv;

typedef struct cllm_gguf_tensor {
    char name[CLLM_GGUF_MAX_NAME + 1];
    uint32_t type;        // ggml type id (CLLM_GGML_*)
    uint32_t n_dims;      // 1..4
    uint64_t ne[CLLM_GGUF_MAX_DIMS]; // ne[0] innermost; unused dimensions are 1
    uint64_t n_elements;
    uint64_t offset;      // absolute file offset (data section + relative offset)
    uint64_t size;        // bytes
} cllm_gguf_tensor;

typedef struct cllm_gguf {
    uint32_t version;
    uint32_t alignment;
    uint64_t file_size;
    uint64_t data_offset;     // absolute offset of the data section
    uint8_t *hdr;             // bytes [0, hdr_size) of the file
    size_t hdr_size;
    cllm_gguf_kv *kv;         // in file order; keys are unique
    size_t n_kv;
    cllm_gguf_tensor *tensors; // in file order; names unique, data ranges disjoint
    size_t n_tensors;
} cllm_gguf;

// Parses a GGUF file held whole in memory (`size` bytes). The result copies what it keeps.
// @return CLLM_OK, FORMAT (not GGUF, bad field), CORRUPT (truncated, out of range, overlapping),
//         UNSUPPORTED (version, big-endian, unknown tensor type, nested arrays), NOMEM.
cllm_status cllm_gguf_parse(const uint8_t *data, size_t size, cllm_gguf **out);
// Parses the header of the open file `fd` of `file_size` bytes, reading only the header region
// (`path` names the file in errors). Same statuses, plus IO.
cllm_status cllm_gguf_read(int fd, const char *path, uint64_t file_size, cllm_gguf **out);
void cllm_gguf_free(cllm_gguf *g);

// The pair with this key, or NULL.
const cllm_gguf_kv *cllm_gguf_find(const cllm_gguf *g, const char *key);
// The tensor with this name, or NULL.
const cllm_gguf_tensor *cllm_gguf_find_tensor(const cllm_gguf *g, const char *name);

// Typed getters. A missing key or a value of another kind is CLLM_ERR_FORMAT naming the key.
// Integers of any width convert when the value fits; f32 accepts f32 and f64 (finite, in range).
cllm_status cllm_gguf_get_u32(const cllm_gguf *g, const char *key, uint32_t *out);
cllm_status cllm_gguf_get_i32(const cllm_gguf *g, const char *key, int32_t *out);
cllm_status cllm_gguf_get_f32(const cllm_gguf *g, const char *key, float *out);
cllm_status cllm_gguf_get_bool(const cllm_gguf *g, const char *key, int *out);
// The string's bytes (not NUL-terminated; they live in g->hdr).
cllm_status cllm_gguf_get_str(const cllm_gguf *g, const char *key, const char **s, size_t *len);
// An array whose elements are of `elem_type` (CLLM_GGUF_STRING, F32, I32: for I32, any integer
// element type is accepted and read with cllm_gguf_arr_i64).
cllm_status cllm_gguf_get_array(const cllm_gguf *g, const char *key, cllm_gguf_vtype elem_type,
                                const cllm_gguf_kv **out);
// Element i (< a->n) of an array: a string, a float (f32 or f64 elements), an integer.
void cllm_gguf_arr_str(const cllm_gguf *g, const cllm_gguf_kv *a, uint64_t i, const char **s,
                       size_t *len);
float cllm_gguf_arr_f32(const cllm_gguf *g, const cllm_gguf_kv *a, uint64_t i);
int64_t cllm_gguf_arr_i64(const cllm_gguf *g, const cllm_gguf_kv *a, uint64_t i);

#endif
