// GGML dequantizers: bit-identical to gguf-py's reference on the fixtures in
// tests/fixtures/gguf_quant/ (made by scripts/gen-gguf-quant-vectors.py; layout in its README),
// type names and layouts as in gguf-py's GGML_QUANT_SIZES, and every size check refusing bad
// arguments without touching the output.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cllm_half.h"
#include "model/gguf_quant.h"
#include "testutil.h"

#define FIXTURE_HEADER 32

// Path of a file in tests/fixtures/gguf_quant ($CLLM_SRC is the source tree; ctest sets it).
static const char *fixture_path(const char *name) {
    static char path[4096];
    const char *src = getenv("CLLM_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/gguf_quant/%s", src ? src : ".", name);
    return path;
}

static uint8_t *load_fixture(const char *name, size_t *size) {
    uint8_t *data = NULL;
    cllm_status st = cllm_read_file(fixture_path(name), 1u << 24, &data, size);
    if (st != CLLM_OK) fprintf(stderr, "%s\n", cllm_last_error());
    assert_int_equal(st, CLLM_OK);
    return data;
}

// Compares float bit patterns. Where the reference gives a NaN from arithmetic (a NaN or inf
// scale), ours must be a NaN too, but its sign and payload are not compared: IEEE 754 leaves them
// open and compilers use that (clang 14 rewrites Q2_K's dl*q - ml as dl*q + (-ml), which flips the
// sign of a NaN min). Bit copies (F32, F16, BF16: `exact_nan`) must match NaNs bit for bit too.
static int same_float(float got, float want, int exact_nan) {
    uint32_t g = cllm_f32_to_bits(got), w = cllm_f32_to_bits(want);
    if (g == w) return 1;
    return !exact_nan && (w & 0x7fffffffu) > 0x7f800000u && (g & 0x7fffffffu) > 0x7f800000u;
}

static void expect_same(const char *type, const float *got, const float *want, uint64_t n,
                        int exact_nan) {
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (same_float(got[i], want[i], exact_nan)) continue;
        if (bad++ < 8)
            fprintf(stderr, "%s element %llu: got %08x (%g) want %08x (%g)\n", type,
                    (unsigned long long)i, cllm_f32_to_bits(got[i]), (double)got[i],
                    cllm_f32_to_bits(want[i]), (double)want[i]);
    }
    if (bad) fprintf(stderr, "%s: %llu of %llu elements differ\n", type, (unsigned long long)bad,
                     (unsigned long long)n);
    assert_int_equal(bad, 0);
}

// One fixture: whole-buffer and block-at-a-time dequantization both match the reference.
static void check_fixture(uint32_t type) {
    const char *name = cllm_ggml_type_name(type);
    assert_non_null(name);
    char file[64];
    snprintf(file, sizeof file, "%s.bin", name);
    size_t size;
    uint8_t *data = load_fixture(file, &size);
    assert_true(size >= FIXTURE_HEADER);
    assert_memory_equal(data, "GQV1", 4);
    uint32_t be, bb;
    assert_true(cllm_ggml_type_layout(type, &be, &bb));
    assert_int_equal(cllm_load_le32(data + 4), type);
    assert_int_equal(cllm_load_le32(data + 8), be);
    assert_int_equal(cllm_load_le32(data + 12), bb);
    const uint64_t n_blocks = cllm_load_le32(data + 16), n = n_blocks * be;
    assert_true(n_blocks > 0);
    assert_int_equal(size, FIXTURE_HEADER + n_blocks * bb + n * 4);
    const uint8_t *blocks = data + FIXTURE_HEADER;
    float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    assert_non_null(want);
    assert_non_null(got);
    for (uint64_t i = 0; i < n; i++)
        want[i] = cllm_bits_to_f32(cllm_load_le32(blocks + n_blocks * bb + 4 * i));

    // The fixture exercises edge scales (some output inf or NaN) and ordinary ones.
    uint64_t non_finite = 0, finite_nonzero = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t a = cllm_f32_to_bits(want[i]) & 0x7fffffffu;
        non_finite += a >= 0x7f800000u;
        finite_nonzero += a != 0 && a < 0x7f800000u;
    }
    assert_true(non_finite > 0);
    assert_true(finite_nonzero > n / 4);

    memset(got, 0xa5, n * sizeof(float));
    assert_int_equal(cllm_ggml_dequantize(type, blocks, n_blocks * bb, got, n), CLLM_OK);
    expect_same(name, got, want, n, be == 1);

    memset(got, 0xa5, n * sizeof(float));
    for (uint64_t b = 0; b < n_blocks; b++)
        assert_int_equal(cllm_ggml_dequantize(type, blocks + b * bb, bb, got + b * be, be),
                         CLLM_OK);
    expect_same(name, got, want, n, be == 1);
    free(want);
    free(got);
    free(data);
}

static void test_fixtures(void **state) {
    (void)state;
    int checked = 0;
    for (uint32_t type = 0; type < CLLM_GGML_TYPE_LIMIT_; type++) {
        if (!cllm_ggml_can_dequantize(type)) continue;
        check_fixture(type);
        checked++;
    }
    assert_int_equal(checked, 18);
}

// Every row of gguf-py's GGML_QUANT_SIZES (types.txt) is known with the same name and layout,
// except Q8_1, whose block ggml itself defines as 36 bytes (fp16 d and s; gguf-py says 40).
static void test_types_table(void **state) {
    (void)state;
    size_t size;
    char *text = (char *)load_fixture("types.txt", &size);
    int rows = 0, known[256] = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        unsigned id, elems, bytes;
        char name[32];
        assert_int_equal(sscanf(line, "%u %31s %u %u", &id, name, &elems, &bytes), 4);
        assert_true(id < 256);
        known[id] = 1;
        const char *ours = cllm_ggml_type_name(id);
        if (!ours) fprintf(stderr, "type %u (%s) unknown\n", id, name);
        assert_non_null(ours);
        assert_string_equal(ours, name);
        uint32_t be = 0, bb = 0;
        assert_int_equal(cllm_ggml_type_layout(id, &be, &bb), 1);
        assert_int_equal(be, elems);
        assert_int_equal(bb, id == CLLM_GGML_Q8_1 ? 36u : bytes);
        rows++;
    }
    free(text);
    assert_true(rows >= 30);
    for (uint32_t id = 0; id < 256; id++) {
        if (known[id]) continue;
        uint32_t be = 77, bb = 88;
        assert_null(cllm_ggml_type_name(id));
        assert_int_equal(cllm_ggml_type_layout(id, &be, &bb), 0);
        assert_int_equal(be, 77);
        assert_int_equal(bb, 88);
        assert_int_equal(cllm_ggml_can_dequantize(id), 0);
    }
    assert_null(cllm_ggml_type_name(UINT32_MAX));
    assert_int_equal(cllm_ggml_type_layout(UINT32_MAX, NULL, NULL), 0);
}

static void test_can_dequantize(void **state) {
    (void)state;
    const uint32_t yes[] = {CLLM_GGML_F32,  CLLM_GGML_F16,    CLLM_GGML_BF16,   CLLM_GGML_Q4_0,
                            CLLM_GGML_Q4_1, CLLM_GGML_Q5_0,   CLLM_GGML_Q5_1,   CLLM_GGML_Q8_0,
                            CLLM_GGML_Q2_K, CLLM_GGML_Q3_K,   CLLM_GGML_Q4_K,   CLLM_GGML_Q5_K,
                            CLLM_GGML_Q6_K, CLLM_GGML_IQ4_NL, CLLM_GGML_IQ4_XS, CLLM_GGML_TQ1_0,
                            CLLM_GGML_TQ2_0, CLLM_GGML_MXFP4};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(cllm_ggml_can_dequantize(yes[i]), 1);
    const uint32_t no[] = {CLLM_GGML_Q8_1, CLLM_GGML_Q8_K, CLLM_GGML_IQ2_XXS, CLLM_GGML_IQ1_M,
                           CLLM_GGML_I8,   CLLM_GGML_F64,  CLLM_GGML_NVFP4,   4, 31, 42, 1000};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_equal(cllm_ggml_can_dequantize(no[i]), 0);
}

static void test_row_bytes(void **state) {
    (void)state;
    size_t bytes = 0;
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_Q4_K, 576, &bytes), CLLM_ERR_CORRUPT);
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_Q4_K, 1536, &bytes), CLLM_OK);
    assert_int_equal(bytes, 6 * 144);
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_Q8_0, 576, &bytes), CLLM_OK);
    assert_int_equal(bytes, 18 * 34);
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_F32, 0, &bytes), CLLM_OK);
    assert_int_equal(bytes, 0);
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_IQ2_XXS, 512, &bytes), CLLM_OK);  // sizable
    assert_int_equal(bytes, 2 * 66);
    bytes = 123;
    assert_int_equal(cllm_ggml_row_bytes(4, 32, &bytes), CLLM_ERR_UNSUPPORTED);
    assert_int_equal(cllm_ggml_row_bytes(UINT32_MAX, 32, &bytes), CLLM_ERR_UNSUPPORTED);
    // n/block * bytes overflows 64 bits (and size_t).
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_F64, UINT64_MAX, &bytes), CLLM_ERR_CORRUPT);
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_Q8_0, UINT64_MAX - 31, &bytes),
                     CLLM_ERR_CORRUPT);  // (2^59 - 1) * 34
    assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_F32, UINT64_MAX / 4 + 1, &bytes),
                     CLLM_ERR_CORRUPT);
    assert_int_equal(bytes, 123);  // untouched on error
    if (SIZE_MAX == UINT64_MAX) {  // large but representable: (2^56 - 1) * 210 < 2^64
        assert_int_equal(cllm_ggml_row_bytes(CLLM_GGML_Q6_K, UINT64_MAX - 255, &bytes), CLLM_OK);
        assert_true(bytes == ((UINT64_MAX >> 8) * 210));
    }
}

// Every bad argument is refused before dst is written.
static void expect_refused(uint32_t type, const uint8_t *src, size_t src_size, uint64_t n,
                           cllm_status want) {
    float dst[512];
    memset(dst, 0x5a, sizeof dst);
    cllm_status st = cllm_ggml_dequantize(type, src, src_size, src ? dst : NULL, n);
    if (st != want)
        fprintf(stderr, "type %u size %zu n %llu: status %d want %d (%s)\n", type, src_size,
                (unsigned long long)n, st, want, cllm_last_error());
    assert_int_equal(st, want);
    assert_true(strlen(cllm_last_error()) > 0);
    for (size_t i = 0; i < sizeof dst; i++) assert_int_equal(((uint8_t *)dst)[i], 0x5a);
}

static void test_bad_arguments(void **state) {
    (void)state;
    static uint8_t src[4096];
    expect_refused(CLLM_GGML_Q4_0, src, 18 * 2 - 1, 64, CLLM_ERR_CORRUPT);  // short
    expect_refused(CLLM_GGML_Q4_0, src, 18 * 2 + 1, 64, CLLM_ERR_CORRUPT);  // long
    expect_refused(CLLM_GGML_Q4_0, src, 0, 64, CLLM_ERR_CORRUPT);
    expect_refused(CLLM_GGML_Q4_0, src, 18, 48, CLLM_ERR_CORRUPT);  // n not whole blocks
    expect_refused(CLLM_GGML_Q4_K, src, 144, 255, CLLM_ERR_CORRUPT);
    expect_refused(CLLM_GGML_Q6_K, src, 210, 257, CLLM_ERR_CORRUPT);
    expect_refused(CLLM_GGML_F16, src, 3, 1, CLLM_ERR_CORRUPT);
    expect_refused(CLLM_GGML_Q8_0, src, 34, UINT64_MAX - 31, CLLM_ERR_CORRUPT);  // overflow
    expect_refused(CLLM_GGML_Q6_K, src, 210, UINT64_MAX - 255, CLLM_ERR_CORRUPT);  // huge n
    expect_refused(CLLM_GGML_F32, src, 4, UINT64_MAX / 4 + 1, CLLM_ERR_CORRUPT);
    expect_refused(4, src, 18, 32, CLLM_ERR_UNSUPPORTED);  // retired Q4_2
    expect_refused(42, src, 18, 32, CLLM_ERR_UNSUPPORTED);
    expect_refused(UINT32_MAX, src, 18, 32, CLLM_ERR_UNSUPPORTED);
    expect_refused(CLLM_GGML_Q8_1, src, 36, 32, CLLM_ERR_UNSUPPORTED);  // known, not ours
    expect_refused(CLLM_GGML_IQ2_XXS, src, 66, 256, CLLM_ERR_UNSUPPORTED);
    expect_refused(CLLM_GGML_Q8_0, NULL, 34, 32, CLLM_ERR_ARG);
    // Zero elements: nothing to do, and zero bytes is the only right size.
    assert_int_equal(cllm_ggml_dequantize(CLLM_GGML_Q8_0, NULL, 0, NULL, 0), CLLM_OK);
    expect_refused(CLLM_GGML_Q8_0, src, 34, 0, CLLM_ERR_CORRUPT);
}

// A few values worked out by hand, independent of the fixtures.
static void test_known_values(void **state) {
    (void)state;
    uint8_t q8[34] = {0x00, 0x3c}; // d = 1.0
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(j - 16);
    float y[256];
    assert_int_equal(cllm_ggml_dequantize(CLLM_GGML_Q8_0, q8, 34, y, 32), CLLM_OK);
    for (int j = 0; j < 32; j++) assert_true(y[j] == (float)(j - 16));
    uint8_t q4[20] = {0x00, 0x38, 0x00, 0xbc}; // Q4_1: d = 0.5, m = -1
    for (int j = 0; j < 16; j++) q4[4 + j] = (uint8_t)(j | (15 - j) << 4);
    assert_int_equal(cllm_ggml_dequantize(CLLM_GGML_Q4_1, q4, 20, y, 32), CLLM_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * (float)j - 1.0f);
        assert_true(y[16 + j] == 0.5f * (float)(15 - j) - 1.0f);
    }
    uint8_t h[2] = {0x01, 0x00};  // smallest fp16 subnormal: 2^-24
    assert_int_equal(cllm_ggml_dequantize(CLLM_GGML_F16, h, 2, y, 1), CLLM_OK);
    assert_true(y[0] == 0x1p-24f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),      cmocka_unit_test(test_types_table),
        cmocka_unit_test(test_can_dequantize), cmocka_unit_test(test_row_bytes),
        cmocka_unit_test(test_bad_arguments), cmocka_unit_test(test_known_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
