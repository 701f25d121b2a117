#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cllm_test_shared_path(const char *rel) {
    static char path[4096];
    const char *dir = getenv("CLLM_SHARED");
    if (!dir) dir = "../shared";
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (access(path, R_OK) == 0) return path;
    if (getenv("CI")) {
        fprintf(stderr, "FATAL: test data %s is missing (CI must have ../shared)\n", path);
        exit(1);
    }
    fprintf(stderr, "SKIP: test data %s is missing (outside CI: skipping)\n", path);
    exit(77);
}

uint64_t cllm_test_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cllm_test_uniform(uint64_t *s) { return (double)(cllm_test_rand(s) >> 11) * 0x1.0p-53; }

double cllm_test_normal(uint64_t *s) {
    double u1 = cllm_test_uniform(s), u2 = cllm_test_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

const char *cllm_test_tmpdir(void) {
    static char dir[256];
    if (dir[0]) return dir;
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cllm-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}

// ---- in-memory file builder ---------------------------------------------------------------------

void cllm_tb_bytes(cllm_test_buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "FATAL: out of memory in a test buffer\n");
            exit(1);
        }
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

void cllm_tb_u32(cllm_test_buf *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    cllm_tb_bytes(b, x, 4);
}

void cllm_tb_u64(cllm_test_buf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    cllm_tb_bytes(b, x, 8);
}

void cllm_tb_f32(cllm_test_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    cllm_tb_u32(b, u);
}

void cllm_tb_strn(cllm_test_buf *b, const char *s, size_t n) {
    cllm_tb_u64(b, n);
    cllm_tb_bytes(b, s, n);
}

void cllm_tb_str(cllm_test_buf *b, const char *s) { cllm_tb_strn(b, s, strlen(s)); }

void cllm_tb_kv_u32(cllm_test_buf *b, const char *key, uint32_t v) {
    cllm_tb_str(b, key);
    cllm_tb_u32(b, 4);
    cllm_tb_u32(b, v);
}

void cllm_tb_kv_f32(cllm_test_buf *b, const char *key, float v) {
    cllm_tb_str(b, key);
    cllm_tb_u32(b, 6);
    cllm_tb_f32(b, v);
}

void cllm_tb_kv_bool(cllm_test_buf *b, const char *key, int v) {
    uint8_t x = (uint8_t)(v != 0);
    cllm_tb_str(b, key);
    cllm_tb_u32(b, 7);
    cllm_tb_bytes(b, &x, 1);
}

void cllm_tb_kv_str(cllm_test_buf *b, const char *key, const char *v) {
    cllm_tb_str(b, key);
    cllm_tb_u32(b, 8);
    cllm_tb_str(b, v);
}

void cllm_tb_kv_array(cllm_test_buf *b, const char *key, uint32_t elem_type, uint64_t n) {
    cllm_tb_str(b, key);
    cllm_tb_u32(b, 9);
    cllm_tb_u32(b, elem_type);
    cllm_tb_u64(b, n);
}

void cllm_tb_tensor(cllm_test_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                    uint32_t type, uint64_t offset) {
    cllm_tb_str(b, name);
    cllm_tb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) cllm_tb_u64(b, ne[d]);
    cllm_tb_u32(b, type);
    cllm_tb_u64(b, offset);
}

void cllm_tb_pad(cllm_test_buf *b, size_t align) {
    static const uint8_t zero = 0;
    while (b->n % align) cllm_tb_bytes(b, &zero, 1);
}

const char *cllm_tb_save(const cllm_test_buf *b, const char *dir, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(1);
    }
    return path;
}
