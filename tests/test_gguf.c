// GGUF: the reader on files built in memory (v2 and v3, every value type, each field corrupted,
// every truncation, byte flips, huge counts, misaligned and overlapping data, the pread path),
// and the importer on a tiny llama model (config, name map, dequantization, tokenizer bundle,
// qwen2's row permutation, errors naming the tensor).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codecllm.h"
#include "format/cllm_format.h"
#include "model/cllm_model.h"
#include "model/gguf.h"
#include "model/gguf_quant.h"
#include "testutil.h"

// ---- a generic file with every value type -------------------------------------------------------

// Where the fields the corruption tests patch were written.
typedef struct layout {
    size_t version, n_tensors, n_kv;
    size_t key0_len;          // length of the first key
    size_t bool_value;        // the bool's byte
    size_t u32_type;          // value type of "t.u32"
    size_t arr_elem_type;     // element type of "t.arr_i32"
    size_t arr_count;         // count of "t.arr_str"
    size_t align_value;       // general.alignment's value (0 when absent)
    size_t t0_name_len, t0_ndims, t0_dim0, t0_type, t0_offset, t1_offset;
    size_t data;              // start of the data section
} layout;

static void kv_u8_typed(cllm_test_buf *b, const char *key, uint32_t type, const void *v, size_t n) {
    cllm_tb_str(b, key);
    cllm_tb_u32(b, type);
    cllm_tb_bytes(b, v, n);
}

static void build_kvs(cllm_test_buf *b, layout *L, int with_align) {
    L->key0_len = b->n;
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int64_t i64 = -1234567890123ll;
    uint64_t u64 = 1ull << 40;
    double f64 = 0.25;
    kv_u8_typed(b, "t.u8", 0, &u8, 1);
    kv_u8_typed(b, "t.i8", 1, &i8, 1);
    kv_u8_typed(b, "t.u16", 2, &u16, 2);
    kv_u8_typed(b, "t.u64", 10, &u64, 8);
    kv_u8_typed(b, "t.i64", 11, &i64, 8);
    kv_u8_typed(b, "t.f64", 12, &f64, 8);
    L->u32_type = b->n + 8 + strlen("t.u32");
    cllm_tb_kv_u32(b, "t.u32", 4000000000u);
    cllm_tb_kv_f32(b, "t.f32", 1.5f);
    L->bool_value = b->n + 8 + strlen("t.bool") + 4;
    cllm_tb_kv_bool(b, "t.bool", 1);
    cllm_tb_kv_str(b, "t.str", "hello");
    L->arr_count = b->n + 8 + strlen("t.arr_str") + 8;
    cllm_tb_kv_array(b, "t.arr_str", 8, 3);
    cllm_tb_str(b, "x");
    cllm_tb_str(b, "");
    cllm_tb_str(b, "zz");
    cllm_tb_kv_array(b, "t.arr_f32", 6, 2);
    cllm_tb_f32(b, 0.5f);
    cllm_tb_f32(b, -2.0f);
    L->arr_elem_type = b->n + 8 + strlen("t.arr_i32") + 4;
    cllm_tb_kv_array(b, "t.arr_i32", 5, 2);
    cllm_tb_u32(b, 7);
    cllm_tb_u32(b, (uint32_t)-3);
    L->align_value = 0;
    if (with_align) {
        L->align_value = b->n + 8 + strlen("general.alignment") + 4;
        cllm_tb_kv_u32(b, "general.alignment", 64);
    }
}

// Tensors: "a" F32 ne {4, 2}; "b" F16 ne {8}; "c" Q8_0 ne {32, 2}. Returns the file's bytes.
static cllm_test_buf build_generic(uint32_t version, int with_align, layout *L) {
    cllm_test_buf b = {0};
    uint32_t align = with_align ? 64 : 32;
    memset(L, 0, sizeof *L);
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    L->version = b.n;
    cllm_tb_u32(&b, version);
    L->n_tensors = b.n;
    cllm_tb_u64(&b, 3);
    L->n_kv = b.n;
    cllm_tb_u64(&b, with_align ? 14 : 13);
    build_kvs(&b, L, with_align);
    uint64_t ne_a[2] = {4, 2}, ne_b[1] = {8}, ne_c[2] = {32, 2};
    L->t0_name_len = b.n;
    L->t0_ndims = b.n + 8 + 1;
    L->t0_dim0 = L->t0_ndims + 4;
    L->t0_type = L->t0_dim0 + 16;
    L->t0_offset = L->t0_type + 4;
    cllm_tb_tensor(&b, "a", 2, ne_a, CLLM_GGML_F32, 0);
    L->t1_offset = b.n + 8 + 1 + 4 + 8 + 4;
    cllm_tb_tensor(&b, "b", 1, ne_b, CLLM_GGML_F16, align);
    cllm_tb_tensor(&b, "c", 2, ne_c, CLLM_GGML_Q8_0, 2 * align);
    cllm_tb_pad(&b, align);
    L->data = b.n;
    for (int i = 0; i < 8; i++) cllm_tb_f32(&b, (float)i);
    cllm_tb_pad(&b, align);
    for (int i = 0; i < 8; i++) cllm_tb_bytes(&b, "\x00\x3c", 2); // f16 1.0
    cllm_tb_pad(&b, align);
    for (int blk = 0; blk < 2; blk++) {
        cllm_tb_bytes(&b, "\x00\x38", 2); // f16 0.5
        for (int i = 0; i < 32; i++) {
            int8_t q = (int8_t)(i - 16);
            cllm_tb_bytes(&b, &q, 1);
        }
    }
    return b;
}

static void check_generic(const cllm_gguf *g, uint32_t version, uint32_t align) {
    assert_int_equal(g->version, version);
    assert_int_equal(g->alignment, align);
    assert_int_equal(g->n_tensors, 3);
    uint32_t u32;
    int32_t i32;
    float f;
    int bo;
    const char *s;
    size_t len;
    assert_int_equal(cllm_gguf_get_u32(g, "t.u32", &u32), CLLM_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(cllm_gguf_get_u32(g, "t.u8", &u32), CLLM_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(cllm_gguf_get_u32(g, "t.u16", &u32), CLLM_OK);
    assert_int_equal(u32, 60000);
    assert_int_equal(cllm_gguf_get_i32(g, "t.i8", &i32), CLLM_OK);
    assert_int_equal(i32, -5);
    // Out of range or of another kind: FORMAT naming the key.
    assert_int_equal(cllm_gguf_get_u32(g, "t.i8", &u32), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_gguf_get_u32(g, "t.u64", &u32), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_gguf_get_i32(g, "t.i64", &i32), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_gguf_get_i32(g, "t.u32", &i32), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "t.u32"));
    assert_int_equal(cllm_gguf_get_u32(g, "t.str", &u32), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_gguf_get_u32(g, "missing", &u32), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "missing"));
    assert_int_equal(cllm_gguf_get_f32(g, "t.f32", &f), CLLM_OK);
    assert_true(f == 1.5f);
    assert_int_equal(cllm_gguf_get_f32(g, "t.f64", &f), CLLM_OK);
    assert_true(f == 0.25f);
    assert_int_equal(cllm_gguf_get_f32(g, "t.u32", &f), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_gguf_get_bool(g, "t.bool", &bo), CLLM_OK);
    assert_int_equal(bo, 1);
    assert_int_equal(cllm_gguf_get_str(g, "t.str", &s, &len), CLLM_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "hello", 5);
    const cllm_gguf_kv *a;
    assert_int_equal(cllm_gguf_get_array(g, "t.arr_str", CLLM_GGUF_STRING, &a), CLLM_OK);
    assert_int_equal(a->n, 3);
    cllm_gguf_arr_str(g, a, 2, &s, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "zz", 2);
    cllm_gguf_arr_str(g, a, 1, &s, &len);
    assert_int_equal(len, 0);
    assert_int_equal(cllm_gguf_get_array(g, "t.arr_str", CLLM_GGUF_F32, &a), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_gguf_get_array(g, "t.arr_f32", CLLM_GGUF_F32, &a), CLLM_OK);
    assert_true(cllm_gguf_arr_f32(g, a, 1) == -2.0f);
    assert_int_equal(cllm_gguf_get_array(g, "t.arr_i32", CLLM_GGUF_I32, &a), CLLM_OK);
    assert_int_equal(cllm_gguf_arr_i64(g, a, 1), -3);
    const cllm_gguf_tensor *t = cllm_gguf_find_tensor(g, "c");
    assert_non_null(t);
    assert_int_equal(t->type, CLLM_GGML_Q8_0);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 32);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->n_elements, 64);
    assert_int_equal(t->size, 68);
    assert_int_equal(t->offset, g->data_offset + 2 * align);
    assert_int_equal(g->data_offset % align, 0);
    assert_null(cllm_gguf_find_tensor(g, "d"));
}

static void test_valid(void **state) {
    (void)state;
    for (uint32_t version = 2; version <= 3; version++) {
        for (int with_align = 0; with_align <= 1; with_align++) {
            layout L;
            cllm_test_buf b = build_generic(version, with_align, &L);
            cllm_gguf *g = NULL;
            assert_int_equal(cllm_gguf_parse(b.p, b.n, &g), CLLM_OK);
            check_generic(g, version, with_align ? 64 : 32);
            assert_int_equal(g->data_offset, L.data);
            cllm_gguf_free(g);
            free(b.p);
        }
    }
}

// The pread path, with a header larger than the first read (64 KiB) so the buffer grows.
static void test_read_file(void **state) {
    (void)state;
    cllm_test_buf b = {0};
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    cllm_tb_u32(&b, 3);
    cllm_tb_u64(&b, 1);
    cllm_tb_u64(&b, 1);
    cllm_tb_kv_array(&b, "many", 8, 20000);
    char s[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(s, sizeof s, "string number %d", i);
        cllm_tb_str(&b, s);
    }
    uint64_t ne[1] = {4};
    cllm_tb_tensor(&b, "w", 1, ne, CLLM_GGML_F32, 0);
    cllm_tb_pad(&b, 32);
    for (int i = 0; i < 4; i++) cllm_tb_f32(&b, (float)i);
    const char *path = cllm_tb_save(&b, cllm_test_tmpdir(), "big_header.gguf");
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    cllm_gguf *g = NULL;
    assert_int_equal(cllm_gguf_read(fd, path, b.n, &g), CLLM_OK);
    const cllm_gguf_kv *a;
    assert_int_equal(cllm_gguf_get_array(g, "many", CLLM_GGUF_STRING, &a), CLLM_OK);
    const char *got;
    size_t len;
    cllm_gguf_arr_str(g, a, 19999, &got, &len);
    assert_int_equal(len, strlen("string number 19999"));
    assert_memory_equal(got, "string number 19999", len);
    assert_int_equal(g->tensors[0].offset, b.n - 16);
    cllm_gguf_free(g);
    // The file claims more than it has: the reader stops at its end.
    assert_int_not_equal(cllm_gguf_read(fd, path, b.n - 20, &g), CLLM_OK);
    assert_null(g);
    close(fd);
    free(b.p);
}

// Every proper prefix of a valid file fails cleanly (the data must be inside the file).
static void test_truncations(void **state) {
    (void)state;
    layout L;
    cllm_test_buf b = build_generic(3, 1, &L);
    for (size_t n = 0; n < b.n; n++) {
        cllm_gguf *g = NULL;
        cllm_status st = cllm_gguf_parse(b.p, n, &g);
        assert_int_not_equal(st, CLLM_OK);
        assert_null(g);
    }
    free(b.p);
}

// Flipping any byte of the header never crashes; the statuses are the documented ones.
static void test_byte_flips(void **state) {
    (void)state;
    layout L;
    cllm_test_buf b = build_generic(3, 1, &L);
    for (size_t i = 0; i < L.data; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b.p[i] ^= (uint8_t)(1u << bit);
            cllm_gguf *g = NULL;
            cllm_status st = cllm_gguf_parse(b.p, b.n, &g);
            assert_true(st == CLLM_OK || st == CLLM_ERR_FORMAT || st == CLLM_ERR_CORRUPT ||
                        st == CLLM_ERR_UNSUPPORTED);
            assert_true((st == CLLM_OK) == (g != NULL));
            cllm_gguf_free(g);
            b.p[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(b.p);
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// Parses the generic file with a 32- or 64-bit value written at `off`; expects `want` and a
// message containing `needle`.
static void expect_patch(size_t off, int width, uint64_t v, cllm_status want, const char *needle) {
    layout L;
    cllm_test_buf b = build_generic(3, 1, &L);
    if (width == 32) put32(b.p + off, (uint32_t)v);
    else if (width == 64) put64(b.p + off, v);
    else b.p[off] = (uint8_t)v;
    cllm_gguf *g = NULL;
    cllm_status st = cllm_gguf_parse(b.p, b.n, &g);
    if (st != want || (needle && !strstr(cllm_last_error(), needle)))
        fail_msg("patch at %zu = %llu: status %d (%s), expected %d with '%s'", off,
                 (unsigned long long)v, st, cllm_last_error(), want, needle ? needle : "");
    assert_null(g);
    free(b.p);
}

static void test_corrupt_fields(void **state) {
    (void)state;
    layout L;
    cllm_test_buf b = build_generic(3, 1, &L);
    free(b.p);
    expect_patch(0, 32, 0x46554748, CLLM_ERR_FORMAT, "magic");
    expect_patch(L.version, 32, 1, CLLM_ERR_UNSUPPORTED, "version 1");
    expect_patch(L.version, 32, 4, CLLM_ERR_FORMAT, "version 4");
    expect_patch(L.version, 32, 0x03000000u, CLLM_ERR_UNSUPPORTED, "big-endian");
    expect_patch(L.n_kv, 64, 1ull << 40, CLLM_ERR_CORRUPT, "key/value pairs");
    expect_patch(L.n_kv, 64, UINT64_MAX, CLLM_ERR_CORRUPT, "key/value pairs");
    expect_patch(L.n_tensors, 64, 1ull << 62, CLLM_ERR_CORRUPT, "tensors");
    expect_patch(L.n_tensors, 64, 4, CLLM_ERR_CORRUPT, NULL);     // reads data as tensor infos
    expect_patch(L.key0_len, 64, 0, CLLM_ERR_CORRUPT, "empty key");
    expect_patch(L.key0_len, 64, UINT64_MAX, CLLM_ERR_CORRUPT, "key");
    expect_patch(L.key0_len, 64, 70000, CLLM_ERR_CORRUPT, "exceeds");
    expect_patch(L.u32_type, 32, 13, CLLM_ERR_CORRUPT, "unknown value type 13");
    expect_patch(L.u32_type, 32, 0xFFFFFFFFu, CLLM_ERR_CORRUPT, "unknown value type");
    expect_patch(L.bool_value, 8, 2, CLLM_ERR_CORRUPT, "bool");
    expect_patch(L.arr_elem_type, 32, 9, CLLM_ERR_UNSUPPORTED, "arrays of arrays");
    expect_patch(L.arr_elem_type, 32, 77, CLLM_ERR_CORRUPT, "element type");
    expect_patch(L.arr_count, 64, 1ull << 61, CLLM_ERR_CORRUPT, "strings");
    expect_patch(L.align_value, 32, 48, CLLM_ERR_CORRUPT, "power of two");
    expect_patch(L.align_value, 32, 0, CLLM_ERR_CORRUPT, "power of two");
    expect_patch(L.align_value - 4, 32, 5, CLLM_ERR_CORRUPT, "general.alignment");
    expect_patch(L.t0_name_len, 64, 65, CLLM_ERR_CORRUPT, "tensor name");
    expect_patch(L.t0_name_len, 64, 0, CLLM_ERR_CORRUPT, "empty");
    expect_patch(L.t0_ndims, 32, 0, CLLM_ERR_CORRUPT, "dimensions");
    expect_patch(L.t0_ndims, 32, 5, CLLM_ERR_CORRUPT, "dimensions");
    expect_patch(L.t0_dim0, 64, 0, CLLM_ERR_CORRUPT, "dimension 0");
    expect_patch(L.t0_dim0, 64, 1ull << 62, CLLM_ERR_CORRUPT, "'a'");
    expect_patch(L.t0_dim0, 64, 1ull << 33, CLLM_ERR_CORRUPT, "beyond the file");
    expect_patch(L.t0_type, 32, 4, CLLM_ERR_UNSUPPORTED, "unknown ggml type 4");
    expect_patch(L.t0_type, 32, CLLM_GGML_Q8_0, CLLM_ERR_CORRUPT, "blocks"); // 4 per row
    expect_patch(L.t0_offset, 64, 32, CLLM_ERR_CORRUPT, "alignment");
    expect_patch(L.t0_offset, 64, 64, CLLM_ERR_CORRUPT, "overlap");
    expect_patch(L.t0_offset, 64, 1ull << 40, CLLM_ERR_CORRUPT, "beyond the file");
    expect_patch(L.t0_offset, 64, UINT64_MAX - 63, CLLM_ERR_CORRUPT, "beyond the file");
    expect_patch(L.t1_offset, 64, 0, CLLM_ERR_CORRUPT, "overlap");
}

static void test_duplicates(void **state) {
    (void)state;
    cllm_test_buf b = {0};
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    cllm_tb_u32(&b, 3);
    cllm_tb_u64(&b, 0);
    cllm_tb_u64(&b, 2);
    cllm_tb_kv_u32(&b, "k", 1);
    cllm_tb_kv_u32(&b, "k", 2);
    cllm_gguf *g = NULL;
    assert_int_equal(cllm_gguf_parse(b.p, b.n, &g), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), "twice"));
    b.n = 0;
    uint64_t ne[1] = {8};
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    cllm_tb_u32(&b, 2);
    cllm_tb_u64(&b, 2);
    cllm_tb_u64(&b, 0);
    cllm_tb_tensor(&b, "w", 1, ne, CLLM_GGML_F32, 0);
    cllm_tb_tensor(&b, "w", 1, ne, CLLM_GGML_F32, 32);
    cllm_tb_pad(&b, 32);
    for (int i = 0; i < 16; i++) cllm_tb_f32(&b, 0);
    assert_int_equal(cllm_gguf_parse(b.p, b.n, &g), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), "'w' appears twice"));
    // An empty file (no tensors, no pairs) is valid.
    b.n = 0;
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    cllm_tb_u32(&b, 3);
    cllm_tb_u64(&b, 0);
    cllm_tb_u64(&b, 0);
    assert_int_equal(cllm_gguf_parse(b.p, b.n, &g), CLLM_OK);
    assert_int_equal(g->n_kv + g->n_tensors, 0);
    cllm_gguf_free(g);
    free(b.p);
}

// ---- a tiny llama model -------------------------------------------------------------------------
// dim 32, hidden 64, 1 layer, 4 heads / 2 KV heads (head_dim 8), 16 tokens, tied embeddings.
// token_embd Q8_0 (value 0.5 * (col - 16)), attn_q F16 (row r holds r), the rest F32 (0.25).

enum { M_DIM = 32, M_HIDDEN = 64, M_HEADS = 4, M_KV = 2, M_VOCAB = 16 };

typedef struct model_opts {
    const char *arch;       // "llama"
    const char *pre;        // tokenizer.ggml.pre, NULL: absent
    const char *drop;       // a tensor left out
    const char *extra;      // an extra tensor (F32, ne {32})
    uint32_t q_type;        // type of attn_q (F16 by default)
    uint32_t q_rows;        // rows of attn_q (M_DIM)
    int no_tokenizer;
    float rope_factor;      // > 0: a rope_freqs.weight tensor of Llama 3 scaling with this factor
    int rope_bad;           // ... with its third value off by 10%
} model_opts;

static const char *const tok_pieces[M_VOCAB] = {
    "<|end|>", "<|start|>", "a", "b", "c", "\xC4\xA0", "ab", "\xC4\xA0" "a", "\xC4\xA0" "ab",
    "bc", "1", "2", "12", "\xC4\x8A", "<user>", "[PAD15]"};
static const uint32_t tok_types[M_VOCAB] = {3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1};
static const char *const tok_merges[] = {"a b", "\xC4\xA0 a", "\xC4\xA0" "a b", "b c", "1 2"};

static void model_kvs(cllm_test_buf *b, const model_opts *o, uint64_t *n_kv) {
    char key[96];
    size_t start = b->n;
    (void)start;
    *n_kv = 0;
#define KV(stmt) ((stmt), ++*n_kv)
    KV(cllm_tb_kv_str(b, "general.architecture", o->arch));
    snprintf(key, sizeof key, "%s.embedding_length", o->arch);
    KV(cllm_tb_kv_u32(b, key, M_DIM));
    snprintf(key, sizeof key, "%s.feed_forward_length", o->arch);
    KV(cllm_tb_kv_u32(b, key, M_HIDDEN));
    snprintf(key, sizeof key, "%s.block_count", o->arch);
    KV(cllm_tb_kv_u32(b, key, 1));
    snprintf(key, sizeof key, "%s.attention.head_count", o->arch);
    KV(cllm_tb_kv_u32(b, key, M_HEADS));
    snprintf(key, sizeof key, "%s.attention.head_count_kv", o->arch);
    KV(cllm_tb_kv_u32(b, key, M_KV));
    snprintf(key, sizeof key, "%s.context_length", o->arch);
    KV(cllm_tb_kv_u32(b, key, 128));
    snprintf(key, sizeof key, "%s.rope.freq_base", o->arch);
    KV(cllm_tb_kv_f32(b, key, 500000.0f));
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", o->arch);
    KV(cllm_tb_kv_f32(b, key, 1e-5f));
    if (o->no_tokenizer) return;
    KV(cllm_tb_kv_str(b, "tokenizer.ggml.model", "gpt2"));
    if (o->pre) KV(cllm_tb_kv_str(b, "tokenizer.ggml.pre", o->pre));
    KV(cllm_tb_kv_array(b, "tokenizer.ggml.tokens", 8, M_VOCAB));
    for (int i = 0; i < M_VOCAB; i++) cllm_tb_str(b, tok_pieces[i]);
    KV(cllm_tb_kv_array(b, "tokenizer.ggml.token_type", 5, M_VOCAB));
    for (int i = 0; i < M_VOCAB; i++) cllm_tb_u32(b, tok_types[i]);
    KV(cllm_tb_kv_array(b, "tokenizer.ggml.merges", 8, 5));
    for (int i = 0; i < 5; i++) cllm_tb_str(b, tok_merges[i]);
    KV(cllm_tb_kv_u32(b, "tokenizer.ggml.bos_token_id", 1));
    KV(cllm_tb_kv_u32(b, "tokenizer.ggml.eos_token_id", 0));
    KV(cllm_tb_kv_str(b, "tokenizer.chat_template", "{{ messages }}"));
#undef KV
}

typedef struct model_tensor {
    char name[48];
    uint32_t n_dims, type;
    uint64_t ne[2];
    const float *values;    // F32 data (NULL: 0.25 everywhere)
} model_tensor;

// llama.cpp's rope_freqs for theta 500000, head_dim 8, low 1, high 4, original context 8192:
// pairs 0 and 1 keep their frequency, pair 2 is interpolated, pair 3 is divided by the factor.
static float rope_values[4];

static void fill_rope_values(float factor, int bad) {
    for (int i = 0; i < 4; i++) {
        double f = pow(500000.0, -(double)(2 * i) / 8.0), wavelen = 6.283185307179586 / f;
        double d;
        if (wavelen < 8192.0 / 4) d = 1;
        else if (wavelen > 8192.0 / 1) d = factor;
        else {
            double smooth = (8192.0 / wavelen - 1) / 3;
            d = 1 / ((1 - smooth) / factor + smooth);
        }
        rope_values[i] = (float)d;
    }
    if (bad) rope_values[2] *= 1.1f;
}

static size_t model_tensors(const model_opts *o, model_tensor *t) {
    static const char *const names[9] = {"attn_norm", "attn_q", "attn_k", "attn_v",
                                         "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                                         "ffn_down"};
    static const uint64_t shapes[9][2] = {{M_DIM, 1}, {M_DIM, M_DIM}, {M_DIM, 16}, {M_DIM, 16},
                                          {M_DIM, M_DIM}, {M_DIM, 1}, {M_DIM, M_HIDDEN},
                                          {M_DIM, M_HIDDEN}, {M_HIDDEN, M_DIM}};
    size_t n = 0;
    t[n++] = (model_tensor){"token_embd.weight", 2, CLLM_GGML_Q8_0, {M_DIM, M_VOCAB}, NULL};
    for (int k = 0; k < 9; k++) {
        model_tensor *m = &t[n++];
        snprintf(m->name, sizeof m->name, "blk.0.%s.weight", names[k]);
        m->n_dims = shapes[k][1] == 1 ? 1 : 2;
        m->type = k == 1 ? o->q_type : CLLM_GGML_F32;
        m->ne[0] = shapes[k][0];
        m->ne[1] = k == 1 ? o->q_rows : shapes[k][1];
        m->values = NULL;
    }
    t[n++] = (model_tensor){"output_norm.weight", 1, CLLM_GGML_F32, {M_DIM, 1}, NULL};
    if (o->rope_factor > 0) {
        fill_rope_values(o->rope_factor, o->rope_bad);
        t[n++] = (model_tensor){"rope_freqs.weight", 1, CLLM_GGML_F32, {4, 1}, rope_values};
    }
    if (o->extra) {
        model_tensor *m = &t[n++];
        *m = (model_tensor){"", 1, CLLM_GGML_F32, {M_DIM, 1}, NULL};
        snprintf(m->name, sizeof m->name, "%s", o->extra);
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!o->drop || strcmp(t[i].name, o->drop) != 0) t[kept++] = t[i];
    return kept;
}

static void model_data(cllm_test_buf *b, const model_tensor *t) {
    uint64_t rows = t->n_dims == 2 ? t->ne[1] : 1, cols = t->ne[0];
    if (t->type == CLLM_GGML_Q8_0) {
        for (uint64_t r = 0; r < rows; r++) {
            for (uint64_t blk = 0; blk < cols / 32; blk++) {
                cllm_tb_bytes(b, "\x00\x38", 2); // 0.5
                for (int i = 0; i < 32; i++) {
                    int8_t q = (int8_t)(i - 16);
                    cllm_tb_bytes(b, &q, 1);
                }
            }
        }
    } else if (t->type == CLLM_GGML_F16) {
        for (uint64_t r = 0; r < rows; r++) {
            // r as an f16 (exact for r < 2048): exponent and 10 mantissa bits.
            uint16_t h = 0;
            if (r) {
                int e = 0;
                while ((r >> e) > 1) e++;
                h = (uint16_t)(((e + 15) << 10) | ((r << 10 >> e) & 0x3FF));
            }
            for (uint64_t c = 0; c < cols; c++) cllm_tb_bytes(b, &h, 2);
        }
    } else {
        uint32_t be = 1, bb = 1;
        if (!cllm_ggml_type_layout(t->type, &be, &bb)) be = 1, bb = 1;
        size_t bytes = (size_t)(rows * cols / be * bb);
        if (t->type == CLLM_GGML_F32) {
            for (uint64_t i = 0; i < rows * cols; i++)
                cllm_tb_f32(b, t->values ? t->values[i] : 0.25f);
        } else {
            for (size_t i = 0; i < bytes; i++) cllm_tb_bytes(b, "\0", 1);
        }
    }
}

static uint64_t tensor_bytes(const model_tensor *t) {
    uint32_t be = 1, bb = 4;
    if (!cllm_ggml_type_layout(t->type, &be, &bb)) be = 1, bb = 1;
    return t->ne[0] * (t->n_dims == 2 ? t->ne[1] : 1) / be * bb;
}

static cllm_test_buf build_model(const model_opts *in) {
    model_opts o = *in;
    if (!o.arch) o.arch = "llama";
    if (!o.q_type) o.q_type = CLLM_GGML_F16;
    if (!o.q_rows) o.q_rows = M_DIM;
    cllm_test_buf kv = {0}, b = {0};
    uint64_t n_kv = 0;
    model_kvs(&kv, &o, &n_kv);
    model_tensor t[16];
    size_t n = model_tensors(&o, t);
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    cllm_tb_u32(&b, 3);
    cllm_tb_u64(&b, n);
    cllm_tb_u64(&b, n_kv);
    cllm_tb_bytes(&b, kv.p, kv.n);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        cllm_tb_tensor(&b, t[i].name, t[i].n_dims, t[i].ne, t[i].type, off);
        off += tensor_bytes(&t[i]);
        off = (off + 31) / 32 * 32;
    }
    for (size_t i = 0; i < n; i++) {
        cllm_tb_pad(&b, 32);
        model_data(&b, &t[i]);
    }
    free(kv.p);
    return b;
}

static cllm_status open_model(const model_opts *o, const char *name, cllm_source **s) {
    cllm_test_buf b = build_model(o);
    const char *path = cllm_tb_save(&b, cllm_test_tmpdir(), name);
    free(b.p);
    return cllm_source_open(path, NULL, s);
}

static void encode_expect(const cllm_tokenizer *t, const char *text, const int32_t *want,
                          size_t n) {
    int32_t ids[64];
    size_t got = 0;
    assert_int_equal(cllm_tokenizer_encode(t, text, strlen(text), 0, ids, 64, &got), CLLM_OK);
    if (got != n || memcmp(ids, want, n * sizeof *ids) != 0) {
        for (size_t i = 0; i < got; i++) fprintf(stderr, "%d ", ids[i]);
        fail_msg("'%s' encodes to %zu ids, expected %zu", text, got, n);
    }
}

static cllm_tokenizer *source_tokenizer(const cllm_source *s) {
    const uint8_t *data = NULL;
    size_t size = 0;
    assert_int_equal(cllm_source_tokenizer(s, &data, &size), CLLM_TOKENIZER_BUNDLE);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, data, size, M_VOCAB, &t),
                     CLLM_OK);
    return t;
}

static void test_import_model(void **state) {
    (void)state;
    model_opts o = {0};
    cllm_source *s = NULL;
    assert_int_equal(open_model(&o, "m.gguf", &s), CLLM_OK);
    const cllm_model_config *c = cllm_source_config(s);
    assert_int_equal(c->dim, M_DIM);
    assert_int_equal(c->hidden_dim, M_HIDDEN);
    assert_int_equal(c->n_layers, 1);
    assert_int_equal(c->n_heads, M_HEADS);
    assert_int_equal(c->n_kv_heads, M_KV);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, M_VOCAB);
    assert_int_equal(c->context_len, 128);
    assert_int_equal(c->tied_embeddings, 1);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 0);
    assert_true(c->rope_theta == 500000.0f);
    assert_int_equal(cllm_source_n_tensors(s), 11);
    cllm_source_tensor ti;
    assert_int_equal(cllm_source_tensor_info(s, 0, &ti), CLLM_OK);
    assert_string_equal(ti.name, "model.embed_tokens.weight");
    assert_int_equal(ti.dtype, CLLM_DTYPE_F32); // Q8_0, dequantized
    assert_int_equal(ti.shape[0], M_VOCAB);
    assert_int_equal(ti.shape[1], M_DIM);
    float *emb = malloc(M_VOCAB * M_DIM * 4);
    assert_int_equal(cllm_source_read(s, 0, emb, M_VOCAB * M_DIM * 4), CLLM_OK);
    for (int i = 0; i < M_VOCAB * M_DIM; i++) assert_true(emb[i] == 0.5f * (float)(i % 32 - 16));
    assert_int_equal(cllm_source_read(s, 0, emb, M_VOCAB * M_DIM * 4 - 1), CLLM_ERR_ARG);
    free(emb);
    assert_int_equal(cllm_source_tensor_info(s, 2, &ti), CLLM_OK);
    assert_string_equal(ti.name, "model.layers.0.self_attn.q_proj.weight");
    assert_int_equal(ti.dtype, CLLM_DTYPE_F16);
    uint16_t q[M_DIM * M_DIM];
    assert_int_equal(cllm_source_read(s, 2, q, sizeof q), CLLM_OK);
    assert_int_equal(q[0], 0);
    assert_int_equal(q[1 * M_DIM], 0x3C00);  // row 1 holds 1.0: stored order kept
    assert_int_equal(q[4 * M_DIM], 0x4400);  // row 4 holds 4.0
    cllm_tokenizer *t = source_tokenizer(s);
    assert_int_equal(cllm_tokenizer_add_bos(t), 0);
    assert_int_equal(cllm_tokenizer_bos(t), 1);
    assert_int_equal(cllm_tokenizer_eos(t), 0);
    assert_string_equal(cllm_tokenizer_chat_template(t), "{{ messages }}");
    const int32_t want[] = {6, 5, 6, 4, 0, 12, 14, 13};
    encode_expect(t, "ab abc<|end|>12<user>\n", want, 8);
    cllm_tokenizer_free(t);
    cllm_source_free(s);
    // smollm: every digit on its own.
    o.pre = "smollm";
    assert_int_equal(open_model(&o, "m_smollm.gguf", &s), CLLM_OK);
    t = source_tokenizer(s);
    const int32_t want_smollm[] = {6, 5, 6, 4, 0, 10, 11};
    encode_expect(t, "ab abc<|end|>12", want_smollm, 7);
    cllm_tokenizer_free(t);
    cllm_source_free(s);
}

// qwen2 GGUF keeps Hugging Face's rotate-half q/k rows: the importer permutes them.
static void test_import_qwen2(void **state) {
    (void)state;
    model_opts o = {.arch = "qwen2"};
    cllm_source *s = NULL;
    assert_int_equal(open_model(&o, "q.gguf", &s), CLLM_OK);
    uint16_t q[M_DIM * M_DIM];
    assert_int_equal(cllm_source_read(s, 2, q, sizeof q), CLLM_OK);
    // Engine row 2i + c = HF row c * 4 + i (head_dim 8): row 1 <- 4, row 2 <- 1, row 9 <- 12.
    assert_int_equal(q[1 * M_DIM], 0x4400);
    assert_int_equal(q[2 * M_DIM], 0x3C00);
    assert_int_equal(q[9 * M_DIM], 0x4A00);
    cllm_source_free(s);
}

static void expect_import_error(const model_opts *o, cllm_status want, const char *needle) {
    cllm_source *s = NULL;
    cllm_status st = open_model(o, "bad.gguf", &s);
    if (st != want || !strstr(cllm_last_error(), needle))
        fail_msg("status %d (%s), expected %d with '%s'", st, cllm_last_error(), want, needle);
    assert_null(s);
}

static void test_import_errors(void **state) {
    (void)state;
    expect_import_error(&(model_opts){.drop = "blk.0.ffn_up.weight"}, CLLM_ERR_FORMAT,
                        "'blk.0.ffn_up.weight' is missing");
    expect_import_error(&(model_opts){.drop = "token_embd.weight"}, CLLM_ERR_FORMAT,
                        "token_embd.weight");
    expect_import_error(&(model_opts){.extra = "blk.0.attn_q.bias"}, CLLM_ERR_UNSUPPORTED,
                        "'blk.0.attn_q.bias': biases");
    expect_import_error(&(model_opts){.extra = "rope_freqs.weight"}, CLLM_ERR_FORMAT,
                        "'rope_freqs.weight': expected 4 F32 values");
    expect_import_error(&(model_opts){.rope_factor = 8, .rope_bad = 1}, CLLM_ERR_UNSUPPORTED,
                        "'rope_freqs.weight': value 2");
    expect_import_error(&(model_opts){.extra = "blk.0.something.weight"}, CLLM_ERR_FORMAT,
                        "'blk.0.something.weight' is not part of the llama layout");
    expect_import_error(&(model_opts){.q_rows = 16}, CLLM_ERR_FORMAT, "'blk.0.attn_q.weight'");
    expect_import_error(&(model_opts){.arch = "gemma"}, CLLM_ERR_UNSUPPORTED, "'gemma'");
    expect_import_error(&(model_opts){.pre = "falcon"}, CLLM_ERR_UNSUPPORTED, "'falcon'");
    cllm_source *s = NULL;
    cllm_status st = open_model(&(model_opts){.q_type = CLLM_GGML_Q8_1}, "q81.gguf", &s);
    assert_int_equal(st, CLLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(cllm_last_error(), "blk.0.attn_q.weight"));
    // Without tokenizer metadata the model still imports, with no tokenizer.
    assert_int_equal(open_model(&(model_opts){.no_tokenizer = 1}, "notok.gguf", &s), CLLM_OK);
    assert_int_equal(cllm_source_tokenizer(s, NULL, NULL), CLLM_TOKENIZER_NONE);
    assert_int_equal(cllm_source_config(s)->bos_id, -1);
    cllm_source_free(s);
}

// Llama 3.1-style scaling stored as rope_freqs.weight becomes the config's Llama 3 parameters.
static void test_import_rope_freqs(void **state) {
    (void)state;
    cllm_source *s = NULL;
    assert_int_equal(open_model(&(model_opts){.rope_factor = 8}, "rope.gguf", &s), CLLM_OK);
    const cllm_model_config *c = cllm_source_config(s);
    assert_int_equal(c->rope_scaling, CLLM_ROPE_SCALING_LLAMA3);
    assert_true(c->rope_factor == 8.0f);
    assert_true(c->rope_low_freq_factor == 1.0f);
    assert_true(c->rope_high_freq_factor == 4.0f);
    assert_int_equal(c->rope_original_context, 8192);
    assert_int_equal(cllm_source_n_tensors(s), 11);  // rope_freqs is not a weight of its own
    cllm_source_free(s);
    // All ones: no scaling.
    assert_int_equal(open_model(&(model_opts){.rope_factor = 1}, "rope1.gguf", &s), CLLM_OK);
    assert_int_equal(cllm_source_config(s)->rope_scaling, CLLM_ROPE_SCALING_NONE);
    cllm_source_free(s);
}

// convert stores the bundle; the container's tokenizer opens and the model runs.
static void test_convert_model(void **state) {
    (void)state;
    cllm_test_buf b = build_model(&(model_opts){0});
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s", cllm_tb_save(&b, cllm_test_tmpdir(), "conv.gguf"));
    free(b.p);
    snprintf(out, sizeof out, "%s/conv.cllm", cllm_test_tmpdir());
    cllm_convert_options opt;
    memset(&opt, 0, sizeof opt);
    opt.encode.codec = CLLM_CODEC_LOSSLESS;
    assert_int_equal(cllm_convert(in, out, &opt), CLLM_OK);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_open(out, &t), CLLM_OK);
    const int32_t want[] = {6, 5, 6, 4};
    encode_expect(t, "ab abc", want, 4);
    cllm_tokenizer_free(t);
    cllm_verify_result res;
    assert_int_equal(cllm_verify(out, in, 1, NULL, NULL, &res), CLLM_OK);
    assert_int_equal(res.n_failed, 0);
    cllm_container *c = NULL;
    assert_int_equal(cllm_container_open(out, &c), CLLM_OK);
    char note[512];
    assert_int_equal(cllm_container_source_note(c, note, sizeof note), CLLM_OK);
    assert_non_null(strstr(note, "source: gguf"));
    assert_non_null(strstr(note, "Q8_0 1"));
    assert_non_null(strstr(note, "F16 1"));
    assert_non_null(strstr(note, "dequantization"));
    assert_int_equal(cllm_container_source_note(c, note, 8), CLLM_OK);
    assert_int_equal(strlen(note), 7);  // truncated, NUL-terminated
    cllm_engine *e = NULL;
    assert_int_equal(cllm_engine_open(c, NULL, &e), CLLM_OK);
    float logits[M_VOCAB];
    int32_t ids[3] = {1, 2, 3};
    assert_int_equal(cllm_engine_forward(e, ids, 3, 0, logits, M_VOCAB, 0), CLLM_OK);
    for (int i = 0; i < M_VOCAB; i++) assert_true(isfinite(logits[i]));
    cllm_engine_free(e);
    cllm_container_free(c);
}

static void count_lines(void *user, const char *line) {
    (void)line;
    ++*(int *)user;
}

// verify refuses a stored tokenizer that does not fit the model: here a bundle of 16 tokens in a
// container whose model has 8.
static void test_verify_tokenizer(void **state) {
    (void)state;
    cllm_source *s = NULL;
    assert_int_equal(open_model(&(model_opts){0}, "v.gguf", &s), CLLM_OK);
    const uint8_t *tok = NULL;
    size_t size = 0;
    cllm_tokenizer_kind kind = cllm_source_tokenizer(s, &tok, &size);
    cllm_model_config cfg = *cllm_source_config(s);
    cfg.vocab_size = 8;
    char out[4096];
    snprintf(out, sizeof out, "%s/small_vocab.cllm", cllm_test_tmpdir());
    cllm_writer *w = NULL;
    assert_int_equal(cllm_writer_open(out, &cfg, 0, kind, tok, size, &w), CLLM_OK);
    assert_int_equal(cllm_writer_finish(w), CLLM_OK);
    cllm_source_free(s);
    cllm_verify_result res;
    int lines = 0;
    assert_int_equal(cllm_verify(out, NULL, 1, count_lines, &lines, &res), CLLM_ERR_MISMATCH);
    assert_int_equal(res.n_failed, 1);
    assert_true(lines >= 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),          cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_truncations),    cmocka_unit_test(test_byte_flips),
        cmocka_unit_test(test_corrupt_fields), cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_import_model),   cmocka_unit_test(test_import_qwen2),
        cmocka_unit_test(test_import_errors),  cmocka_unit_test(test_convert_model),
        cmocka_unit_test(test_import_rope_freqs), cmocka_unit_test(test_verify_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
