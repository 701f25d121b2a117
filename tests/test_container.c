// The .cllm container: config validation, writer -> reader round trips (raw, lossless, int8),
// and hostile files: every single-byte flip, truncation at every length, bad versions,
// overlapping sections, absurd counts, and the writer's temp-file discipline.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec/cllm_codec.h"
#include "common/cllm_half.h"
#include "format/cllm_file_layout.h"
#include "format/cllm_format.h"
#include "testutil.h"

// ---- fixtures -----------------------------------------------------------------------------------

static cllm_model_config good_config(void) {
    cllm_model_config c = {
        .arch = CLLM_ARCH_LLAMA, .dim = 64, .hidden_dim = 172, .n_layers = 2, .n_heads = 4,
        .n_kv_heads = 2, .head_dim = 16, .vocab_size = 32, .context_len = 128,
        .tied_embeddings = 0, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .rope_scaling = CLLM_ROPE_SCALING_NONE, .bos_id = 1, .eos_id = 2,
    };
    return c;
}

static char *tmp_file(const char *name) {
    static char path[8][512];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 512, "%s/%s", cllm_test_tmpdir(), name);
    return p;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

// A raw-coded tensor borrowing `data` (rows, cols) of `dtype`.
static cllm_coded raw_coded(const void *data, cllm_dtype dtype, uint64_t rows, uint64_t cols) {
    cllm_coded c;
    memset(&c, 0, sizeof c);
    c.info.codec = CLLM_CODEC_RAW;
    c.info.dtype = dtype;
    c.info.rows = rows;
    c.info.cols = cols;
    c.info.n_elements = rows * cols;
    c.payload = (uint8_t *)data;
    c.payload_size = rows * cols * cllm_dtype_size(dtype);
    return c;
}

// The tensors of the standard test container, with their sources for comparison.
typedef struct fixture {
    uint16_t bf16[6 * 40];     // (6, 40) bf16, raw and lossless
    float f32[5 * 33];         // (5, 33) f32, int8 per group of 8, left predictor
    float bias[7];             // (7,) f32 raw
    cllm_coded lossless, int8;
} fixture;

static void fixture_init(fixture *f) {
    uint64_t s = 42;
    for (size_t i = 0; i < 6 * 40; i++)
        f->bf16[i] = cllm_f32_to_bf16((float)(0.02 * cllm_test_normal(&s)));
    for (size_t i = 0; i < 5 * 33; i++) f->f32[i] = (float)cllm_test_normal(&s);
    for (size_t i = 0; i < 7; i++) f->bias[i] = (float)i - 3.5f;
    cllm_encode_params p = {.codec = CLLM_CODEC_LOSSLESS, .n_threads = 1, .block_symbols = 80};
    assert_int_equal(cllm_encode_tensor(f->bf16, CLLM_DTYPE_BF16, 6, 40, &p, &f->lossless),
                     CLLM_OK);
    cllm_encode_params q = {.codec = CLLM_CODEC_INT8, .group_size = 8, .predictor = 1,
                            .n_threads = 1};
    assert_int_equal(cllm_encode_tensor(f->f32, CLLM_DTYPE_F32, 5, 33, &q, &f->int8), CLLM_OK);
}

static void fixture_free(fixture *f) {
    cllm_coded_free(&f->lossless);
    cllm_coded_free(&f->int8);
}

static const char TOKENIZER[] = "not really a tokenizer, but bytes to carry";

// Writes the standard container (4 tensors + tokenizer) to `path`.
static void write_standard(const char *path, fixture *f) {
    cllm_model_config cfg = good_config();
    cllm_writer *w = NULL;
    assert_int_equal(cllm_writer_open(path, &cfg, 4, CLLM_TOKENIZER_LLAMA2C,
                                      (const uint8_t *)TOKENIZER, sizeof TOKENIZER, &w),
                     CLLM_OK);
    uint64_t s2[4] = {6, 40}, s_int8[4] = {5, 33}, s1[4] = {7};
    cllm_coded raw = raw_coded(f->bf16, CLLM_DTYPE_BF16, 6, 40);
    cllm_coded bias = raw_coded(f->bias, CLLM_DTYPE_F32, 1, 7);
    assert_int_equal(cllm_writer_add(w, "model.embed_tokens.weight", 2, s2, &raw), CLLM_OK);
    assert_int_equal(cllm_writer_add(w, "model.layers.0.mlp.up_proj.weight", 2, s2,
                                     &f->lossless), CLLM_OK);
    assert_int_equal(cllm_writer_add(w, "model.layers.0.attn.q_proj.weight", 2, s_int8, &f->int8),
                     CLLM_OK);
    assert_int_equal(cllm_writer_add(w, "model.norm.bias", 1, s1, &bias), CLLM_OK);
    assert_int_equal(cllm_writer_finish(w), CLLM_OK);
}

// Reads a whole file into memory.
static uint8_t *slurp(const char *path, size_t *size) {
    uint8_t *data;
    assert_int_equal(cllm_read_file(path, (size_t)1 << 30, &data, size), CLLM_OK);
    return data;
}

// Recomputes the meta and header checksums after a test edits fields, so that the edit reaches
// the structural checks behind them (what a deliberately crafted file would do).
static void reseal(uint8_t *buf, size_t size) {
    uint64_t n = cllm_load_le32(buf + CLLM_HDR_N_TENSORS);
    uint64_t table_end = CLLM_TABLE_OFFSET + n * CLLM_ENTRY_SIZE;
    if (table_end > size) table_end = size;  // absurd counts: the reader stops before reading
    cllm_store_le64(buf + CLLM_HDR_META_XXH3,
                    XXH3_64bits(buf + CLLM_CONFIG_OFFSET, table_end - CLLM_CONFIG_OFFSET));
    cllm_store_le64(buf + CLLM_HDR_XXH3, XXH3_64bits(buf, CLLM_HDR_XXH3));
}

static uint8_t *entry(uint8_t *buf, int i) {
    return buf + CLLM_TABLE_OFFSET + (size_t)i * CLLM_ENTRY_SIZE;
}

static const uint8_t *centry(const uint8_t *buf, int i) {
    return buf + CLLM_TABLE_OFFSET + (size_t)i * CLLM_ENTRY_SIZE;
}

static cllm_status open_mem(const uint8_t *buf, size_t size) {
    cllm_container *c = NULL;
    cllm_status st = cllm_container_open_memory(buf, size, "test", 0, &c);
    if (st == CLLM_OK) assert_non_null(c);
    else assert_null(c);
    cllm_container_free(c);
    return st;
}

static void expect_error(cllm_status got, cllm_status want, const char *needle) {
    if (got != want || !strstr(cllm_last_error(), needle))
        fail_msg("status %d (want %d), message '%s' (want it to contain '%s')", got, want,
                 cllm_last_error(), needle);
}

typedef struct lines {
    int n;
    char text[8][512];
} lines;

static void collect(void *user, const char *line) {
    lines *l = user;
    if (l->n < 8) snprintf(l->text[l->n], sizeof l->text[0], "%s", line);
    l->n++;
}

// ---- config -------------------------------------------------------------------------------------

static void test_config_validate(void **state) {
    (void)state;
    cllm_model_config c = good_config();
    assert_int_equal(cllm_config_validate(&c), CLLM_OK);
    // Each bad value, one at a time.
#define BAD(stmt, needle)                                                                          \
    do {                                                                                           \
        cllm_model_config x = good_config();                                                       \
        stmt;                                                                                      \
        expect_error(cllm_config_validate(&x), CLLM_ERR_FORMAT, needle);                           \
    } while (0)
    BAD(x.arch = 7, "arch = 7");
    BAD(x.dim = 0, "dim = 0");
    BAD(x.dim = 1u << 20, "dim");
    BAD(x.n_layers = 5000, "n_layers");
    BAD(x.head_dim = 8, "head_dim = 8 times n_heads");
    BAD(x.n_kv_heads = 3, "n_kv_heads");
    BAD((x.head_dim = 1, x.n_heads = 64), "head_dim = 1");
    BAD(x.vocab_size = 1u << 23, "vocab_size");
    BAD(x.context_len = 0, "context_len");
    BAD(x.tied_embeddings = 2, "tied_embeddings");
    BAD(x.norm_eps = NAN, "norm_eps");
    BAD(x.rope_theta = -1.0f, "rope_theta");
    BAD(x.rope_theta = INFINITY, "rope_theta");
    BAD(x.rope_factor = 8.0f, "rope_scaling none");
    BAD(x.rope_scaling = 9, "rope_scaling 9");
    BAD(x.bos_id = 32, "bos_id");
    BAD(x.eos_id = -2, "eos_id");
    c.rope_scaling = CLLM_ROPE_SCALING_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_original_context = 8192;
    assert_int_equal(cllm_config_validate(&c), CLLM_OK);
    c.rope_high_freq_factor = 1.0f;
    expect_error(cllm_config_validate(&c), CLLM_ERR_FORMAT, "rope_high_freq_factor");
    assert_int_equal(cllm_config_validate(NULL), CLLM_ERR_ARG);
}

static void test_config_pack(void **state) {
    (void)state;
    cllm_model_config c = good_config(), back;
    c.bos_id = -1;
    uint8_t buf[128];
    cllm_config_pack(&c, buf);
    assert_int_equal(cllm_load_le32(buf + 4), 64);           // dim is the second field
    assert_int_equal(cllm_load_le32(buf + 68), 0xffffffffu); // bos_id, 18th field
    assert_int_equal(cllm_config_unpack(buf, &back), CLLM_OK);
    assert_memory_equal(&c, &back, sizeof c);
    buf[100] = 1;
    expect_error(cllm_config_unpack(buf, &back), CLLM_ERR_FORMAT, "padding");
}

// ---- round trip ---------------------------------------------------------------------------------

static void check_tensor_infos(const cllm_container *c, const fixture *f) {
    cllm_tensor_info info;
    assert_int_equal(cllm_container_tensor(c, 0, &info), CLLM_OK);
    assert_string_equal(info.name, "model.embed_tokens.weight");
    assert_int_equal(info.codec, CLLM_CODEC_RAW);
    assert_int_equal(info.dtype, CLLM_DTYPE_BF16);
    assert_int_equal(info.ndim, 2);
    assert_int_equal(info.rows, 6);
    assert_int_equal(info.cols, 40);
    assert_int_equal(info.n_elements, 240);
    assert_int_equal(info.data_offset % CLLM_SECTION_ALIGN, 0);
    assert_int_equal(info.data_size, 480);
    assert_int_equal(info.checksum, XXH3_64bits(f->bf16, 480));
    assert_int_equal(cllm_container_tensor(c, 1, &info), CLLM_OK);
    assert_int_equal(info.codec, CLLM_CODEC_LOSSLESS);
    assert_int_equal(info.data_size, f->lossless.payload_size);
    assert_int_equal(info.n_blocks, f->lossless.info.n_blocks);
    assert_true(info.n_blocks > 1);  // block_symbols 80 over 40 columns: 2 rows per block
    assert_true(info.symbol_entropy == f->lossless.info.symbol_entropy);
    assert_memory_equal(cllm_container_payload(c, 1), f->lossless.payload, info.data_size);
    assert_int_equal(cllm_container_tensor(c, 2, &info), CLLM_OK);
    assert_int_equal(info.group_size, 8);
    assert_int_equal(info.predictor, 1);
    assert_int_equal(cllm_container_tensor(c, 3, &info), CLLM_OK);
    assert_int_equal(info.ndim, 1);
    assert_int_equal(info.rows, 1);
    assert_int_equal(info.cols, 7);
    assert_int_equal(cllm_container_tensor(c, 4, &info), CLLM_ERR_ARG);
    const cllm_coded_desc *d = cllm_container_desc(c, 1);
    assert_non_null(d);
    assert_int_equal(d->stream_bytes % 4, 0);
    assert_null(cllm_container_desc(c, 4));
}

static void check_decodes(const cllm_container *c, const fixture *f) {
    uint16_t bf[240];
    assert_int_equal(cllm_container_decode(c, 0, bf, sizeof bf, NULL, 0, 1), CLLM_OK);
    assert_memory_equal(bf, f->bf16, sizeof bf);
    memset(bf, 0, sizeof bf);
    assert_int_equal(cllm_container_decode(c, 1, bf, sizeof bf, NULL, 0, 1), CLLM_OK);
    assert_memory_equal(bf, f->bf16, sizeof bf);
    // int8 must equal the reference quantiser's output exactly.
    int8_t q[165], want_q[165];
    float sc[5 * 5], want_sc[5 * 5];
    assert_int_equal(cllm_quantize_int8(f->f32, CLLM_DTYPE_F32, 5, 33, 8, want_q, want_sc),
                     CLLM_OK);
    assert_int_equal(cllm_container_decode(c, 2, q, sizeof q, sc, sizeof sc, 1), CLLM_OK);
    assert_memory_equal(q, want_q, sizeof q);
    assert_memory_equal(sc, want_sc, sizeof sc);
    float b[7];
    assert_int_equal(cllm_container_decode(c, 3, b, sizeof b, NULL, 0, 0), CLLM_OK);
    assert_memory_equal(b, f->bias, sizeof b);
    assert_int_equal(cllm_container_decode(c, 3, b, sizeof b - 1, NULL, 0, 0), CLLM_ERR_ARG);
    assert_int_equal(cllm_container_decode(c, 9, b, sizeof b, NULL, 0, 0), CLLM_ERR_ARG);
}

static void test_round_trip(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f);
    const char *path = tmp_file("round.cllm");
    write_standard(path, &f);
    cllm_container *c = NULL;
    assert_int_equal(cllm_container_open(path, &c), CLLM_OK);
    cllm_model_config want = good_config();
    assert_memory_equal(cllm_container_config(c), &want, sizeof want);
    assert_int_equal(cllm_container_n_tensors(c), 4);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(cllm_container_file_size(c), (uint64_t)st.st_size);
    assert_int_equal(st.st_size % 4096, 0);
    const uint8_t *tok;
    size_t tok_size;
    assert_int_equal(cllm_container_tokenizer(c, &tok, &tok_size), CLLM_TOKENIZER_LLAMA2C);
    assert_int_equal(tok_size, sizeof TOKENIZER);
    assert_memory_equal(tok, TOKENIZER, sizeof TOKENIZER);
    check_tensor_infos(c, &f);
    check_decodes(c, &f);
    assert_int_equal(cllm_container_find(c, "model.norm.bias"), 3);
    assert_int_equal(cllm_container_find(c, "model.embed_tokens.weight"), 0);
    assert_int_equal(cllm_container_find(c, "model.layers.0.attn.q_proj.weight"), 2);
    assert_int_equal(cllm_container_find(c, "model.norm"), -1);
    assert_int_equal(cllm_container_find(c, ""), -1);
    size_t n_bad = 99;
    lines l = {0};
    assert_int_equal(cllm_container_verify_bytes(c, collect, &l, &n_bad), CLLM_OK);
    assert_int_equal(n_bad, 0);
    assert_int_equal(l.n, 0);
    cllm_container_free(c);
    cllm_container_free(NULL);
    fixture_free(&f);
}

// No tensors, no tokenizer: the smallest valid file is one page.
static void test_empty_container(void **state) {
    (void)state;
    const char *path = tmp_file("empty.cllm");
    cllm_model_config cfg = good_config();
    cllm_writer *w;
    assert_int_equal(cllm_writer_open(path, &cfg, 0, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_OK);
    assert_int_equal(cllm_writer_finish(w), CLLM_OK);
    cllm_container *c;
    assert_int_equal(cllm_container_open(path, &c), CLLM_OK);
    assert_int_equal(cllm_container_file_size(c), 4096);
    assert_int_equal(cllm_container_n_tensors(c), 0);
    const uint8_t *tok = (const uint8_t *)"x";
    size_t n = 5;
    assert_int_equal(cllm_container_tokenizer(c, &tok, &n), CLLM_TOKENIZER_NONE);
    assert_null(tok);
    assert_int_equal(n, 0);
    assert_int_equal(cllm_container_find(c, "a"), -1);
    assert_int_equal(cllm_container_verify_bytes(c, NULL, NULL, NULL), CLLM_OK);
    cllm_container_free(c);
}

// ---- hostile files ------------------------------------------------------------------------------

// Flips each byte of the file in turn: open must refuse it, or verify_bytes must report it.
static void test_every_byte_flip(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f);
    const char *path = tmp_file("flip.cllm");
    write_standard(path, &f);
    size_t size;
    uint8_t *buf = slurp(path, &size);
    size_t refused = 0, reported = 0;
    // ~50k decodes of tiny tensors: thread start-up would dominate (and spin on a busy machine).
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    for (size_t i = 0; i < size; i++) {
        for (int pass = 0; pass < 2; pass++) {
            uint8_t mask = pass ? 0x80 : 0xff;
            buf[i] ^= mask;
            cllm_container *c = NULL;
            cllm_status st = cllm_container_open_memory(buf, size, "flip", 0, &c);
            if (st != CLLM_OK) {
                assert_true(st == CLLM_ERR_CORRUPT || st == CLLM_ERR_FORMAT ||
                            st == CLLM_ERR_UNSUPPORTED);
                assert_true(strlen(cllm_last_error()) > 10);
                refused++;
            } else {
                size_t n_bad = 0;
                if (cllm_container_verify_bytes(c, NULL, NULL, &n_bad) != CLLM_ERR_CORRUPT ||
                    n_bad == 0)
                    fail_msg("flipping byte %zu with 0x%02x went unnoticed", i, mask);
                reported++;
            }
            cllm_container_free(c);
            // Structural validation alone (as the fuzzer sees it) must never crash either,
            // nor may decoding whatever it accepts.
            if (cllm_container_open_memory(buf, size, "flip", CLLM_OPEN_NO_CHECKSUMS, &c) ==
                CLLM_OK) {
                uint8_t out[1024];
                float sc[64];
                for (size_t t = 0; t < cllm_container_n_tensors(c); t++)
                    (void)cllm_container_decode(c, t, out, sizeof out, sc, sizeof sc, 0);
                cllm_container_free(c);
            }
            buf[i] ^= mask;
        }
    }
    omp_set_num_threads(threads);
    print_message("%zu-byte file: %zu flips refused by open, %zu reported by verify\n", size,
                  refused, reported);
    assert_int_equal(refused + reported, 2 * size);
    assert_int_equal(open_mem(buf, size), CLLM_OK);
    free(buf);
    fixture_free(&f);
}

static void test_truncation(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f);
    const char *path = tmp_file("trunc.cllm");
    write_standard(path, &f);
    size_t size;
    uint8_t *buf = slurp(path, &size);
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = malloc(len ? len : 1);  // exact size: ASan sees any read past it
        memcpy(copy, buf, len);
        cllm_status st = open_mem(copy, len);
        assert_true(st == CLLM_ERR_FORMAT || st == CLLM_ERR_CORRUPT);
        free(copy);
    }
    expect_error(open_mem(buf, 100), CLLM_ERR_FORMAT, "smaller than the 128-byte");
    expect_error(open_mem(buf, size - 1), CLLM_ERR_CORRUPT, "truncated");
    // Through the file path too (mmap): truncated and extended files.
    const char *cut = tmp_file("cut.cllm");
    FILE *fp = fopen(cut, "wb");
    fwrite(buf, 1, size - 4096, fp);
    fclose(fp);
    cllm_container *c = NULL;
    expect_error(cllm_container_open(cut, &c), CLLM_ERR_CORRUPT, "truncated");
    assert_null(c);
    fp = fopen(cut, "wb");
    fwrite(buf, 1, size, fp);
    fputc(0, fp);
    fclose(fp);
    expect_error(cllm_container_open(cut, &c), CLLM_ERR_CORRUPT, "after its end");
    fp = fopen(cut, "wb");
    fclose(fp);
    expect_error(cllm_container_open(cut, &c), CLLM_ERR_FORMAT, "0 bytes");
    expect_error(cllm_container_open(tmp_file("missing.cllm"), &c), CLLM_ERR_IO, "cannot open");
    expect_error(cllm_container_open(cllm_test_tmpdir(), &c), CLLM_ERR_IO, "not a regular file");
    free(buf);
    fixture_free(&f);
}

// Crafted files: fields edited and checksums recomputed, so only the structural checks stand.
// CRAFT starts each case from `orig` (the valid file) in `buf`.
#define CRAFT(edit, want, needle)                                                                  \
    do {                                                                                           \
        memcpy(buf, orig, size);                                                                   \
        edit;                                                                                      \
        reseal(buf, size);                                                                         \
        expect_error(open_mem(buf, size), want, needle);                                           \
    } while (0)

static void crafted_header(uint8_t *buf, const uint8_t *orig, size_t size) {
    CRAFT(cllm_store_le32(buf + CLLM_HDR_VERSION, 2), CLLM_ERR_UNSUPPORTED,
          "version 2, this build reads 1");
    CRAFT(memcpy(buf, "CODECLLX", 8), CLLM_ERR_FORMAT, "magic");
    CRAFT(cllm_store_le32(buf + CLLM_HDR_ENTRY_SIZE, 512), CLLM_ERR_FORMAT, "fixed values");
    // Overlap: tensor 1 placed on top of tensor 0.
    CRAFT(cllm_store_le64(entry(buf, 1) + CLLM_ENT_DATA_OFFSET,
                          cllm_load_le64(centry(orig, 0) + CLLM_ENT_DATA_OFFSET)),
          CLLM_ERR_CORRUPT, "data_offset");
    // Absurd counts: 2^32 - 1 tensors (table 1 TiB) and an entry count past the file.
    CRAFT((cllm_store_le32(buf + CLLM_HDR_N_TENSORS, 0xffffffffu),
           cllm_store_le64(buf + CLLM_HDR_TABLE_SIZE, 0xffffffffull * 256)),
          CLLM_ERR_CORRUPT, "table");
    CRAFT(cllm_store_le64(buf + CLLM_HDR_TABLE_SIZE, 4 * 256 + 1), CLLM_ERR_CORRUPT,
          "table_size");
    CRAFT(cllm_store_le32(buf + CLLM_HDR_TOK_KIND, 7), CLLM_ERR_FORMAT, "tokenizer kind 7");
    CRAFT(cllm_store_le64(buf + CLLM_HDR_TOK_OFFSET, 8192), CLLM_ERR_CORRUPT, "tokenizer at");
    CRAFT(cllm_store_le64(buf + CLLM_HDR_TOK_SIZE, 1ull << 62), CLLM_ERR_CORRUPT, "tokenizer of");
    CRAFT(cllm_store_le64(buf + CLLM_HDR_FILE_SIZE, size + 4096), CLLM_ERR_CORRUPT, "truncated");
    CRAFT(cllm_store_le32(buf + CLLM_CONFIG_OFFSET + 4, 0), CLLM_ERR_FORMAT, "dim = 0");
    // One tensor fewer announced: the last payload becomes trailing data.
    CRAFT((cllm_store_le32(buf + CLLM_HDR_N_TENSORS, 3),
           cllm_store_le64(buf + CLLM_HDR_TABLE_SIZE, 3 * 256), memset(entry(buf, 3), 0, 256)),
          CLLM_ERR_CORRUPT, "should be");
    // The payload structure is checked at open: a broken block index.
    CRAFT(cllm_store_le64(buf + cllm_load_le64(centry(orig, 1) + CLLM_ENT_DATA_OFFSET) + 512, 4),
          CLLM_ERR_CORRUPT, "index");
    // Without reseal: checksums.
    memcpy(buf, orig, size);
    buf[CLLM_HDR_N_TENSORS] ^= 1;
    expect_error(open_mem(buf, size), CLLM_ERR_CORRUPT, "header checksum mismatch");
    memcpy(buf, orig, size);
    entry(buf, 0)[CLLM_ENT_DTYPE] ^= 1;
    expect_error(open_mem(buf, size), CLLM_ERR_CORRUPT, "config/table checksum mismatch");
    memcpy(buf, orig, size);
    buf[4096] ^= 1;
    expect_error(open_mem(buf, size), CLLM_ERR_CORRUPT, "tokenizer checksum mismatch");
}

static void crafted_table(uint8_t *buf, const uint8_t *orig, size_t size) {
    CRAFT(cllm_store_le64(entry(buf, 0) + CLLM_ENT_SHAPE, 1ull << 62), CLLM_ERR_CORRUPT,
          "shape product overflows");
    CRAFT(cllm_store_le64(entry(buf, 0) + CLLM_ENT_DATA_SIZE, 1ull << 63), CLLM_ERR_CORRUPT,
          "data_size");
    CRAFT(cllm_store_le64(entry(buf, 3) + CLLM_ENT_DATA_OFFSET, 1ull << 60), CLLM_ERR_CORRUPT,
          "data_offset");
    CRAFT(cllm_store_le32(entry(buf, 0) + CLLM_ENT_NDIM, 5), CLLM_ERR_CORRUPT, "ndim 5");
    CRAFT(cllm_store_le32(entry(buf, 0) + CLLM_ENT_DTYPE, CLLM_DTYPE_COUNT_), CLLM_ERR_FORMAT, "dtype 4");
    CRAFT(cllm_store_le32(entry(buf, 0) + CLLM_ENT_CODEC, 9), CLLM_ERR_FORMAT, "codec 9");
    CRAFT(cllm_store_le64(entry(buf, 0) + CLLM_ENT_SHAPE + 16, 1), CLLM_ERR_CORRUPT,
          "beyond ndim");
    CRAFT(cllm_store_le64(entry(buf, 0) + CLLM_ENT_SHAPE, 3), CLLM_ERR_CORRUPT, "data_size 480");
    CRAFT(memcpy(entry(buf, 3), "model.embed_tokens.weight", 26), CLLM_ERR_CORRUPT, "both named");
    CRAFT(entry(buf, 2)[5] = ' ', CLLM_ERR_CORRUPT, "not printable");
    CRAFT(entry(buf, 2)[0] = 0, CLLM_ERR_CORRUPT, "empty name");
    CRAFT(memset(entry(buf, 2), 'a', 128), CLLM_ERR_CORRUPT, "not NUL-terminated");
    CRAFT(entry(buf, 2)[127] = 'a', CLLM_ERR_CORRUPT, "after the name");
    CRAFT(entry(buf, 1)[CLLM_ENT_RESERVED1 + 3] = 1, CLLM_ERR_CORRUPT, "reserved");
    CRAFT(buf[CLLM_HDR_RESERVED1] = 1, CLLM_ERR_CORRUPT, "reserved");
    CRAFT(cllm_store_le64(entry(buf, 1) + CLLM_ENT_ENTROPY, 0x7ff8000000000000ull),
          CLLM_ERR_CORRUPT, "symbol_entropy");
    CRAFT(cllm_store_le64(entry(buf, 1) + CLLM_ENT_STREAM_BYTES,
                          cllm_load_le64(centry(orig, 1) + CLLM_ENT_STREAM_BYTES) + 4),
          CLLM_ERR_CORRUPT, "tensor 1");
}

static void test_crafted(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f);
    const char *path = tmp_file("craft.cllm");
    write_standard(path, &f);
    size_t size;
    uint8_t *orig = slurp(path, &size);
    uint8_t *buf = malloc(size);
    crafted_header(buf, orig, size);
    crafted_table(buf, orig, size);
    free(buf);
    free(orig);
    fixture_free(&f);
}

// What open cannot see (payload contents, padding) verify_bytes and decode report by name.
static void test_verify_reports(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f);
    const char *path = tmp_file("verify.cllm");
    write_standard(path, &f);
    size_t size;
    uint8_t *buf = slurp(path, &size);
    uint64_t off0 = cllm_load_le64(entry(buf, 0) + CLLM_ENT_DATA_OFFSET);
    buf[off0 + 3] ^= 0x10;       // raw payload byte: structurally fine
    buf[off0 + 480 + 7] = 0x5a;  // padding after tensor 0
    buf[size - 1] = 1;           // final padding
    buf[2000] = 2;               // padding between the table (ends at 1280) and the tokenizer
    cllm_container *c;
    assert_int_equal(cllm_container_open_memory(buf, size, "v", 0, &c), CLLM_OK);
    lines l = {0};
    size_t n_bad;
    expect_error(cllm_container_verify_bytes(c, collect, &l, &n_bad), CLLM_ERR_CORRUPT,
                 "4 problems");
    assert_int_equal(n_bad, 4);
    assert_int_equal(l.n, 4);
    assert_non_null(strstr(l.text[0], "tensor 'model.embed_tokens.weight': payload checksum "
                                      "mismatch (stored 0x"));
    assert_string_equal(l.text[1],
                        "padding at offset 1280..4096 is not zero (first non-zero byte at 2000)");
    char want[128];
    snprintf(want, sizeof want, "padding at offset %llu..%llu is not zero (first non-zero byte "
             "at %llu)", (unsigned long long)(off0 + 480), (unsigned long long)(off0 + 4096),
             (unsigned long long)(off0 + 487));
    assert_string_equal(l.text[2], want);
    snprintf(want, sizeof want, "..%zu is not zero", size);
    assert_non_null(strstr(l.text[3], want));
    uint16_t out[240];
    expect_error(cllm_container_decode(c, 0, out, sizeof out, NULL, 0, 1), CLLM_ERR_CORRUPT,
                 "tensor 'model.embed_tokens.weight': payload checksum mismatch");
    assert_int_equal(cllm_container_decode(c, 0, out, sizeof out, NULL, 0, 0), CLLM_OK);
    cllm_container_free(c);
    // Opened without the header/meta comparisons, verify_bytes still catches both.
    buf[CLLM_HDR_N_TENSORS + 1] ^= 1;  // header byte: breaks its checksum
    assert_int_equal(cllm_container_open_memory(buf, size, "v", CLLM_OPEN_NO_CHECKSUMS, &c),
                     CLLM_ERR_CORRUPT);  // 257 tensors do not fit: refused structurally
    buf[CLLM_HDR_N_TENSORS + 1] ^= 1;
    buf[CLLM_HDR_META_XXH3] ^= 1;      // both stored checksums now disagree
    assert_int_equal(cllm_container_open_memory(buf, size, "v", CLLM_OPEN_NO_CHECKSUMS, &c),
                     CLLM_OK);
    l.n = 0;
    assert_int_equal(cllm_container_verify_bytes(c, collect, &l, &n_bad), CLLM_ERR_CORRUPT);
    assert_int_equal(n_bad, 6);
    assert_non_null(strstr(l.text[0], "header checksum mismatch"));
    assert_non_null(strstr(l.text[1], "config/table checksum mismatch"));
    cllm_container_free(c);
    free(buf);
    fixture_free(&f);
}

// ---- writer -------------------------------------------------------------------------------------

static void test_writer_temp_and_abort(void **state) {
    (void)state;
    const char *path = tmp_file("w.cllm");
    cllm_model_config cfg = good_config();
    float data[12] = {0};
    cllm_coded raw = raw_coded(data, CLLM_DTYPE_F32, 3, 4);
    uint64_t shape[4] = {3, 4};
    cllm_writer *w = NULL;
    // A symlink planted at the temporary name of old ("<path>.tmp-<pid>") is never followed:
    // the temporary is a new file with a random suffix, created exclusively.
    char planted[600], victim[600];
    snprintf(planted, sizeof planted, "%s.tmp-%ld", path, (long)getpid());
    snprintf(victim, sizeof victim, "%s", tmp_file("victim"));
    unlink(planted);
    unlink(victim);
    assert_int_equal(symlink(victim, planted), 0);
    assert_int_equal(cllm_writer_open(path, &cfg, 2, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_OK);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", cllm_writer_temp_path(w));
    assert_int_equal(strncmp(tmp, path, strlen(path)), 0);
    assert_int_equal(strlen(tmp), strlen(path) + strlen(".tmp-XXXXXX"));
    assert_string_not_equal(tmp, planted);
    assert_false(file_exists(victim));
    struct stat lst;
    assert_int_equal(lstat(tmp, &lst), 0);
    assert_true(S_ISREG(lst.st_mode));
    unlink(planted);
    assert_true(file_exists(tmp));
    assert_false(file_exists(path));
    assert_int_equal(cllm_writer_add(w, "a", 2, shape, &raw), CLLM_OK);
    assert_false(file_exists(path));
    cllm_writer_abort(w);
    assert_false(file_exists(tmp));
    assert_false(file_exists(path));
    cllm_writer_abort(NULL);

    // Finishing short of the announced count fails and leaves nothing.
    assert_int_equal(cllm_writer_open(path, &cfg, 2, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_OK);
    snprintf(tmp, sizeof tmp, "%s", cllm_writer_temp_path(w));
    assert_int_equal(cllm_writer_add(w, "a", 2, shape, &raw), CLLM_OK);
    expect_error(cllm_writer_finish(w), CLLM_ERR_ARG, "1 of the 2");
    assert_false(file_exists(tmp));
    assert_false(file_exists(path));

    // Finishing replaces an existing file only at the end.
    FILE *fp = fopen(path, "wb");
    fputs("old", fp);
    fclose(fp);
    assert_int_equal(cllm_writer_open(path, &cfg, 1, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_OK);
    snprintf(tmp, sizeof tmp, "%s", cllm_writer_temp_path(w));
    assert_int_equal(cllm_writer_add(w, "a", 2, shape, &raw), CLLM_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3);
    assert_int_equal(cllm_writer_finish(w), CLLM_OK);
    assert_false(file_exists(tmp));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8192);
}

static void test_writer_refuses(void **state) {
    (void)state;
    const char *path = tmp_file("r.cllm");
    cllm_model_config cfg = good_config();
    float data[12] = {0};
    cllm_coded raw = raw_coded(data, CLLM_DTYPE_F32, 3, 4);
    uint64_t shape[4] = {3, 4}, bad_shape[4] = {4, 3}, shape3[4] = {3, 1, 4};
    cllm_writer *w = NULL;
    cfg.dim = 0;
    expect_error(cllm_writer_open(path, &cfg, 1, CLLM_TOKENIZER_NONE, NULL, 0, &w),
                 CLLM_ERR_FORMAT, "dim = 0");
    assert_null(w);
    cfg = good_config();
    expect_error(cllm_writer_open(path, &cfg, 1, CLLM_TOKENIZER_HF_JSON, NULL, 0, &w),
                 CLLM_ERR_ARG, "empty tokenizer");
    expect_error(cllm_writer_open(tmp_file("no/such/dir.cllm"), &cfg, 1, CLLM_TOKENIZER_NONE,
                                  NULL, 0, &w),
                 CLLM_ERR_IO, "cannot create");
    assert_null(w);
    // An output that exists and is not a regular file is never replaced.
    expect_error(cllm_writer_open(cllm_test_tmpdir(), &cfg, 1, CLLM_TOKENIZER_NONE, NULL, 0, &w),
                 CLLM_ERR_IO, "is a directory");
    const char *fifo = tmp_file("fifo.cllm");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_error(cllm_writer_open(fifo, &cfg, 1, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_ERR_IO,
                 "is a FIFO");
    assert_null(w);
    unlink(fifo);
#define REFUSE(name, nd, shp, coded, needle)                                                       \
    do {                                                                                           \
        assert_int_equal(cllm_writer_open(path, &cfg, 2, CLLM_TOKENIZER_NONE, NULL, 0, &w),      \
                         CLLM_OK);                                                                 \
        assert_int_equal(cllm_writer_add(w, "first", 3, shape3, &raw), CLLM_OK);                  \
        expect_error(cllm_writer_add(w, name, nd, shp, coded), CLLM_ERR_ARG, needle);             \
        expect_error(cllm_writer_finish(w), CLLM_ERR_ARG, "earlier add failed");                  \
        assert_false(file_exists(path));                                                           \
    } while (0)
    REFUSE("first", 2, shape, &raw, "used twice");
    REFUSE("has space", 2, shape, &raw, "not printable");
    REFUSE("", 2, shape, &raw, "1..127");
    REFUSE("b", 2, bad_shape, &raw, "(4, 3) view");
    REFUSE("b", 0, shape, &raw, "ndim 0");
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[199] = 0;
    REFUSE(longname, 2, shape, &raw, "1..127");
    cllm_coded bad = raw;
    bad.info.symbol_entropy = 9.0;
    REFUSE("b", 2, shape, &bad, "symbol_entropy");
    // A description that does not match the payload size: the codec's check refuses it.
    bad = raw;
    bad.payload_size = 40;
    assert_int_equal(cllm_writer_open(path, &cfg, 1, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_OK);
    assert_int_equal(cllm_writer_add(w, "b", 2, shape, &bad), CLLM_ERR_CORRUPT);
    cllm_writer_abort(w);
    // One more than announced.
    assert_int_equal(cllm_writer_open(path, &cfg, 1, CLLM_TOKENIZER_NONE, NULL, 0, &w), CLLM_OK);
    assert_int_equal(cllm_writer_add(w, "a", 2, shape, &raw), CLLM_OK);
    expect_error(cllm_writer_add(w, "b", 2, shape, &raw), CLLM_ERR_ARG, "more than the 1");
    assert_int_equal(cllm_writer_finish(w), CLLM_OK);  // the refused add changed nothing
    assert_true(file_exists(path));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validate),
        cmocka_unit_test(test_config_pack),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_container),
        cmocka_unit_test(test_every_byte_flip),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_crafted),
        cmocka_unit_test(test_verify_reports),
        cmocka_unit_test(test_writer_temp_and_abort),
        cmocka_unit_test(test_writer_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
