// Whole-tensor codecs: payload layout rules, bit-exact round trips of every dtype and odd shape,
// int8 against the quantiser, block-range decoding, rejection of damaged payloads, and the coded
// size within 1% of the order-0 bound on 2M-element tensors.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/cllm_codec.h"
#include "common/cllm_half.h"
#include "testutil.h"

// ---- helpers ------------------------------------------------------------------------------------

// Weight-like values: Student-t (nu = 5) tails, per-row scale spread, a few outlier columns.
static float weight_like(uint64_t *seed, uint64_t r, uint64_t c) {
    double z = cllm_test_normal(seed), chi = 0;
    for (int k = 0; k < 5; k++) {
        double g = cllm_test_normal(seed);
        chi += g * g;
    }
    double t = z / sqrt(chi / 5);
    double row_scale = exp(0.3 * sin((double)r * 12.9898) * 1.7);
    double col = (c % 997 == 13) ? 7.0 : 1.0;
    return (float)(0.02 * t * row_scale * col);
}

// Fills n elements of dtype with weight-like values (mode 0), random bit patterns (mode 1) or
// a constant (mode 2).
static void *make_tensor(cllm_dtype dt, uint64_t rows, uint64_t cols, int mode, uint64_t seed) {
    uint64_t n = rows * cols;
    uint8_t *p = malloc((size_t)(n * cllm_dtype_size(dt)));
    for (uint64_t i = 0; i < n; i++) {
        float f = mode == 2 ? 0.125f : weight_like(&seed, i / cols, i % cols);
        uint32_t u = (uint32_t)cllm_test_rand(&seed);
        if (dt == CLLM_DTYPE_F32) {
            if (mode != 1) memcpy(&u, &f, 4);
            memcpy(p + 4 * i, &u, 4);
        } else {
            uint16_t h = mode == 1 ? (uint16_t)u
                         : dt == CLLM_DTYPE_BF16 ? cllm_f32_to_bf16(f) : cllm_f32_to_f16(f);
            memcpy(p + 2 * i, &h, 2);
        }
    }
    return p;
}

static cllm_encode_params params_of(cllm_codec codec, uint32_t pred, uint64_t block_symbols) {
    cllm_encode_params p = {.codec = codec, .predictor = pred, .block_symbols = block_symbols,
                            .n_threads = 2};
    return p;
}

// Encodes and decodes; returns the decoded buffer (caller frees) and leaves the coded tensor.
static uint8_t *round_trip(const void *src, cllm_dtype dt, uint64_t rows, uint64_t cols,
                           const cllm_encode_params *p, cllm_coded *coded, float *scales) {
    cllm_status st = cllm_encode_tensor(src, dt, rows, cols, p, coded);
    if (st != CLLM_OK) fail_msg("encode: %s", cllm_last_error());
    size_t out_size = (size_t)(rows * cols * cllm_dtype_size(dt));
    uint8_t *out = malloc(out_size);
    size_t scales_cap = (size_t)(rows * cols * sizeof(float));
    st = cllm_decode_tensor(&coded->info, coded->payload, coded->payload_size, out, out_size,
                            scales, scales ? scales_cap : 0, p->n_threads);
    if (st != CLLM_OK) fail_msg("decode: %s", cllm_last_error());
    return out;
}

// ---- names and layout ---------------------------------------------------------------------------

static void test_names(void **state) {
    (void)state;
    cllm_dtype dt;
    cllm_codec c;
    assert_int_equal(cllm_dtype_parse("BFloat16", &dt), CLLM_OK);
    assert_int_equal(dt, CLLM_DTYPE_BF16);
    assert_int_equal(cllm_dtype_parse("fp16", &dt), CLLM_OK);
    assert_int_equal(dt, CLLM_DTYPE_F16);
    assert_int_equal(cllm_dtype_parse("F32", &dt), CLLM_OK);
    assert_int_equal(dt, CLLM_DTYPE_F32);
    assert_int_equal(cllm_dtype_parse("f64", &dt), CLLM_ERR_ARG);
    assert_int_equal(cllm_dtype_size(CLLM_DTYPE_F32), 4);
    assert_int_equal(cllm_dtype_size(CLLM_DTYPE_BF16), 2);
    assert_int_equal(cllm_dtype_size(CLLM_DTYPE_COUNT_), 0);
    assert_string_equal(cllm_dtype_name(CLLM_DTYPE_F16), "f16");
    for (int k = 0; k < CLLM_CODEC_COUNT_; k++) {
        assert_int_equal(cllm_codec_parse(cllm_codec_name((cllm_codec)k), &c), CLLM_OK);
        assert_int_equal(c, k);
    }
    assert_int_equal(cllm_codec_parse("zip", &c), CLLM_ERR_ARG);
}

static cllm_coded_desc good_desc(void) {
    cllm_coded_desc d = {.codec = CLLM_CODEC_LOSSLESS, .dtype = CLLM_DTYPE_F16, .rows = 10,
                         .cols = 7, .scale_bits = 12, .rows_per_block = 3, .group_size = 0,
                         .predictor = 0, .n_blocks = 4, .stream_bytes = 4 * 128 + 20};
    return d;
}

static void test_layout(void **state) {
    (void)state;
    cllm_coded_desc d = good_desc();
    cllm_payload_layout_t lay;
    assert_int_equal(cllm_payload_layout(&d, &lay), CLLM_OK);
    assert_int_equal(lay.freq_off, 0);
    assert_int_equal(lay.index_off, 512);
    assert_int_equal(lay.streams_off, 512 + 8 * 5);
    assert_int_equal(lay.side_off, 1088);  // 552 + 532 = 1084, aligned to 64
    assert_int_equal(lay.raw_bits, 11);
    assert_int_equal(lay.side_size, (70 * 11 + 7) / 8);
    assert_int_equal(lay.total_size, 1216);  // 1088 + 97 = 1185, aligned to 64
    d.codec = CLLM_CODEC_INT8, d.group_size = 3;
    assert_int_equal(cllm_payload_layout(&d, &lay), CLLM_OK);
    assert_int_equal(lay.groups_per_row, 3);
    assert_int_equal(lay.side_size, 10 * 3 * 4);
    cllm_coded_desc raw = {.codec = CLLM_CODEC_RAW, .dtype = CLLM_DTYPE_F32, .rows = 3, .cols = 5};
    assert_int_equal(cllm_payload_layout(&raw, &lay), CLLM_OK);
    assert_int_equal(lay.total_size, 60);
}

static void expect_layout_error(cllm_coded_desc d, const char *field) {
    cllm_payload_layout_t lay;
    cllm_status st = cllm_payload_layout(&d, &lay);
    if (st != CLLM_ERR_CORRUPT) fail_msg("%s: expected CORRUPT, got %d", field, st);
    if (!strstr(cllm_last_error(), field))
        fail_msg("message '%s' does not name %s", cllm_last_error(), field);
}

static void test_layout_rejects(void **state) {
    (void)state;
    cllm_coded_desc d = good_desc();
    d.codec = 3, expect_layout_error(d, "codec");
    d = good_desc(), d.dtype = 9, expect_layout_error(d, "dtype");
    d = good_desc(), d.rows = 0, expect_layout_error(d, "rows");
    d = good_desc(), d.cols = 0, expect_layout_error(d, "cols");
    d = good_desc(), d.rows = 1ull << 40, d.cols = 1ull << 40, expect_layout_error(d, "overflow");
    d = good_desc(), d.scale_bits = 7, expect_layout_error(d, "scale_bits");
    d = good_desc(), d.scale_bits = 15, expect_layout_error(d, "scale_bits");
    d = good_desc(), d.rows_per_block = 0, expect_layout_error(d, "rows_per_block");
    d = good_desc(), d.rows_per_block = 11, expect_layout_error(d, "rows_per_block");
    d = good_desc(), d.n_blocks = 3, expect_layout_error(d, "n_blocks");
    d = good_desc(), d.predictor = 2, expect_layout_error(d, "predictor");
    d = good_desc(), d.stream_bytes = 4 * 128 - 4, expect_layout_error(d, "stream_bytes");
    d = good_desc(), d.stream_bytes = 4 * 128 + 2, expect_layout_error(d, "stream_bytes");
    d = good_desc(), d.stream_bytes = UINT64_MAX - 3, expect_layout_error(d, "stream_bytes");
    d = good_desc(), d.group_size = 2, expect_layout_error(d, "group_size");
    d = good_desc(), d.codec = CLLM_CODEC_INT8, d.group_size = 0, expect_layout_error(d, "group_size");
    d = good_desc(), d.codec = CLLM_CODEC_INT8, d.group_size = 8, expect_layout_error(d, "group_size");
    d = good_desc(), d.codec = CLLM_CODEC_RAW, expect_layout_error(d, "must be 0");
}

// ---- round trips --------------------------------------------------------------------------------

static void check_lossless(cllm_dtype dt, uint64_t rows, uint64_t cols, int mode, uint32_t pred,
                           uint64_t block_symbols) {
    void *src = make_tensor(dt, rows, cols, mode, rows * 31 + cols + (uint64_t)mode);
    cllm_encode_params p = params_of(CLLM_CODEC_LOSSLESS, pred, block_symbols);
    cllm_coded coded;
    uint8_t *out = round_trip(src, dt, rows, cols, &p, &coded, NULL);
    assert_memory_equal(out, src, (size_t)(rows * cols * cllm_dtype_size(dt)));
    assert_int_equal(coded.info.predictor, pred);
    assert_int_equal(coded.info.n_elements, rows * cols);
    cllm_coded_desc d;
    assert_int_equal(cllm_desc_from_payload(&coded.info, coded.payload, coded.payload_size, &d),
                     CLLM_OK);
    assert_int_equal(cllm_payload_check(&d, coded.payload, coded.payload_size), CLLM_OK);
    free(out);
    free(src);
    cllm_coded_free(&coded);
}

static void test_lossless_round_trips(void **state) {
    (void)state;
    static const uint64_t shapes[][3] = {
        {1, 1, 0}, {1, 37, 0}, {37, 1, 0}, {13, 100, 300}, {5, 33, 0}, {64, 64, 32 * 33},
        {3, 1000, 1}, {100, 31, 64},
    };
    for (int dt = 0; dt <= CLLM_DTYPE_BF16; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int mode = 0; mode < 3; mode++)
                for (uint32_t pred = 0; pred < CLLM_PRED_COUNT_; pred++)
                    check_lossless((cllm_dtype)dt, shapes[s][0], shapes[s][1], mode, pred,
                                   shapes[s][2]);
}

// Every bit pattern of a 16-bit type (NaN payloads, +-0, +-inf, subnormals) survives.
static void test_lossless_every_16bit_pattern(void **state) {
    (void)state;
    uint16_t *all = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)(i * 40503u);  // a permutation
    for (int dt = CLLM_DTYPE_F16; dt <= CLLM_DTYPE_BF16; dt++) {
        for (uint32_t pred = 0; pred < CLLM_PRED_COUNT_; pred++) {
            cllm_encode_params p = params_of(CLLM_CODEC_LOSSLESS, pred, 5000);
            cllm_coded coded;
            uint8_t *out = round_trip(all, (cllm_dtype)dt, 256, 256, &p, &coded, NULL);
            assert_memory_equal(out, all, 65536 * 2);
            free(out);
            cllm_coded_free(&coded);
        }
    }
    free(all);
    // f32 specials.
    const uint32_t sp[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001, 0xffbfffff,
                           0x00000001, 0x807fffff, 0x7f7fffff, 0x3f800000, 0x7fa5a5a5};
    cllm_encode_params p = params_of(CLLM_CODEC_LOSSLESS, 1, 0);
    cllm_coded coded;
    uint8_t *out = round_trip(sp, CLLM_DTYPE_F32, 1, 11, &p, &coded, NULL);
    assert_memory_equal(out, sp, sizeof sp);
    free(out);
    cllm_coded_free(&coded);
}

static void check_int8(cllm_dtype dt, uint64_t rows, uint64_t cols, uint32_t group, uint32_t pred,
                       uint64_t block_symbols) {
    void *src = make_tensor(dt, rows, cols, 0, rows + cols * 7);
    uint32_t g = group ? group : (uint32_t)cols;
    size_t n_scales = (size_t)(rows * ((cols + g - 1) / g));
    int8_t *q = malloc((size_t)(rows * cols));
    float *ref_scales = malloc(n_scales * 4), *scales = malloc((size_t)(rows * cols) * 4);
    assert_int_equal(cllm_quantize_int8(src, dt, rows, cols, group, q, ref_scales), CLLM_OK);
    cllm_encode_params p = params_of(CLLM_CODEC_INT8, pred, block_symbols);
    p.group_size = group;
    cllm_coded coded;
    uint8_t *out = round_trip(src, dt, rows, cols, &p, &coded, scales);
    assert_memory_equal(out, q, (size_t)(rows * cols));
    assert_memory_equal(scales, ref_scales, n_scales * 4);
    assert_int_equal(coded.info.group_size, g);
    free(out), free(q), free(ref_scales), free(scales), free(src);
    cllm_coded_free(&coded);
}

static void test_int8_round_trips(void **state) {
    (void)state;
    for (int dt = 0; dt <= CLLM_DTYPE_BF16; dt++) {
        for (uint32_t pred = 0; pred < CLLM_PRED_COUNT_; pred++) {
            check_int8((cllm_dtype)dt, 1, 1, 0, pred, 0);
            check_int8((cllm_dtype)dt, 37, 1, 0, pred, 5);
            check_int8((cllm_dtype)dt, 1, 45, 16, pred, 0);
            check_int8((cllm_dtype)dt, 77, 130, 32, pred, 1000);
            check_int8((cllm_dtype)dt, 50, 64, 0, pred, 0);
        }
    }
}

static void test_raw_round_trip(void **state) {
    (void)state;
    void *src = make_tensor(CLLM_DTYPE_F32, 9, 11, 1, 4);
    cllm_encode_params p = params_of(CLLM_CODEC_RAW, 0, 0);
    cllm_coded coded;
    uint8_t *out = round_trip(src, CLLM_DTYPE_F32, 9, 11, &p, &coded, NULL);
    assert_memory_equal(out, src, 9 * 11 * 4);
    assert_int_equal(coded.payload_size, 9 * 11 * 4);
    free(out), free(src);
    cllm_coded_free(&coded);
}

// Decoding a block range writes exactly those rows.
static void test_decode_blocks_range(void **state) {
    (void)state;
    const uint64_t rows = 10, cols = 50;
    void *src = make_tensor(CLLM_DTYPE_BF16, rows, cols, 0, 8);
    cllm_encode_params p = params_of(CLLM_CODEC_LOSSLESS, 1, 150);  // 3 rows per block
    cllm_coded coded;
    assert_int_equal(cllm_encode_tensor(src, CLLM_DTYPE_BF16, rows, cols, &p, &coded), CLLM_OK);
    assert_int_equal(coded.info.rows_per_block, 3);
    assert_int_equal(coded.info.n_blocks, 4);
    cllm_coded_desc d;
    assert_int_equal(cllm_desc_from_payload(&coded.info, coded.payload, coded.payload_size, &d),
                     CLLM_OK);
    static cllm_rans_dec_table t;
    uint16_t freq[256];
    for (int s = 0; s < 256; s++) freq[s] = cllm_load_le16(coded.payload + 2 * s);
    assert_int_equal(cllm_rans_dec_table_init(&t, freq, d.scale_bits), CLLM_OK);
    uint16_t out[500];
    uint8_t scratch[150];
    memset(out, 0xee, sizeof out);
    assert_int_equal(cllm_decode_blocks(&d, &t, coded.payload, coded.payload_size, 1, 4, out,
                                        scratch), CLLM_OK);
    for (uint64_t i = 0; i < rows * cols; i++) {
        if (i < 3 * cols) assert_int_equal(out[i], 0xeeee);
        else assert_int_equal(out[i], ((uint16_t *)src)[i]);
    }
    assert_int_equal(cllm_decode_blocks(&d, &t, coded.payload, coded.payload_size, 2, 5, out,
                                        scratch), CLLM_ERR_ARG);
    free(src);
    cllm_coded_free(&coded);
}

// A raw tensor is one block: [0, 1) copies it, [0, 0) writes nothing, any other range is refused
// (it used to copy the whole tensor whatever the range).
static void test_decode_blocks_raw_range(void **state) {
    (void)state;
    const uint64_t rows = 4, cols = 8;
    void *src = make_tensor(CLLM_DTYPE_F32, rows, cols, 0, 3);
    cllm_encode_params p = params_of(CLLM_CODEC_RAW, 1, 0);
    cllm_coded coded;
    assert_int_equal(cllm_encode_tensor(src, CLLM_DTYPE_F32, rows, cols, &p, &coded), CLLM_OK);
    cllm_coded_desc d;
    assert_int_equal(cllm_desc_from_payload(&coded.info, coded.payload, coded.payload_size, &d),
                     CLLM_OK);
    float out[32];
    memset(out, 0xee, sizeof out);
    const uint64_t bad[][2] = {{1, 2}, {0, 2}, {1, 0}, {5, 9}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        assert_int_equal(cllm_decode_blocks(&d, NULL, coded.payload, coded.payload_size, bad[k][0],
                                            bad[k][1], out, NULL), CLLM_ERR_ARG);
    assert_int_equal(cllm_decode_blocks(&d, NULL, coded.payload, coded.payload_size, 0, 0, out,
                                        NULL), CLLM_OK);
    for (size_t i = 0; i < sizeof out; i++) assert_int_equal(((uint8_t *)out)[i], 0xee);
    assert_int_equal(cllm_decode_blocks(&d, NULL, coded.payload, coded.payload_size, 0, 1, out,
                                        NULL), CLLM_OK);
    assert_memory_equal(out, src, sizeof out);
    free(src);
    cllm_coded_free(&coded);
}

// ---- damaged payloads ---------------------------------------------------------------------------

typedef struct damaged {
    void *src;
    cllm_coded coded;
    uint8_t *copy;
    uint8_t out[4 * 40 * 40];
} damaged;

static damaged *make_damaged(cllm_dtype dt, cllm_codec codec) {
    damaged *x = calloc(1, sizeof *x);
    x->src = make_tensor(dt, 40, 40, 0, 77);
    cllm_encode_params p = params_of(codec, 0, 400);  // 10 rows per block, 4 blocks
    assert_int_equal(cllm_encode_tensor(x->src, dt, 40, 40, &p, &x->coded), CLLM_OK);
    x->copy = malloc(x->coded.payload_size);
    return x;
}

static void free_damaged(damaged *x) {
    cllm_coded_free(&x->coded);
    free(x->copy), free(x->src), free(x);
}

// Decodes a copy of the payload after `edit` changed it; expects `want`.
static void expect_decode(damaged *x, size_t size, cllm_status want, const char *what) {
    cllm_status st = cllm_decode_tensor(&x->coded.info, x->copy, size, x->out, sizeof x->out,
                                        NULL, 0, 2);
    if (st != want) fail_msg("%s: expected %d, got %d (%s)", what, want, st, cllm_last_error());
}

static void fresh(damaged *x) { memcpy(x->copy, x->coded.payload, x->coded.payload_size); }

static void test_decode_rejects(void **state) {
    (void)state;
    damaged *x = make_damaged(CLLM_DTYPE_BF16, CLLM_CODEC_LOSSLESS);
    const size_t size = x->coded.payload_size;
    cllm_coded_desc d;
    cllm_payload_layout_t lay;
    assert_int_equal(cllm_desc_from_payload(&x->coded.info, x->coded.payload, size, &d), CLLM_OK);
    assert_int_equal(cllm_payload_layout(&d, &lay), CLLM_OK);
    fresh(x), expect_decode(x, size, CLLM_OK, "intact");
    fresh(x), expect_decode(x, size - 64, CLLM_ERR_CORRUPT, "short payload");
    fresh(x), expect_decode(x, 100, CLLM_ERR_CORRUPT, "payload shorter than its index");
    fresh(x), x->copy[0] ^= 1, expect_decode(x, size, CLLM_ERR_CORRUPT, "freq sum");
    fresh(x), x->copy[lay.index_off + 8] += 4, expect_decode(x, size, CLLM_ERR_CORRUPT, "index");
    fresh(x), x->copy[lay.index_off + 8] += 2, expect_decode(x, size, CLLM_ERR_CORRUPT, "index %4");
    fresh(x), x->copy[lay.index_off] = 4, expect_decode(x, size, CLLM_ERR_CORRUPT, "index[0]");
    fresh(x), cllm_store_le64(x->copy + lay.index_off + 16, 64);
    expect_decode(x, size, CLLM_ERR_CORRUPT, "index not monotone");
    fresh(x), x->copy[lay.streams_off + 200] ^= 0x40;
    expect_decode(x, size, CLLM_ERR_CORRUPT, "flipped stream byte");
    fresh(x), x->copy[lay.streams_off + 4] ^= 0x01;
    expect_decode(x, size, CLLM_ERR_CORRUPT, "flipped state");
    if (lay.side_off > lay.streams_off + d.stream_bytes) {
        fresh(x), x->copy[lay.side_off - 1] = 1;
        expect_decode(x, size, CLLM_ERR_CORRUPT, "streams padding");
    }
    if (lay.side_off + lay.side_size < size) {
        fresh(x), x->copy[size - 1] = 1;
        expect_decode(x, size, CLLM_ERR_CORRUPT, "final padding");
    }
    fresh(x);
    cllm_status st = cllm_decode_tensor(&x->coded.info, x->copy, size, x->out, 40 * 40 * 2 - 1,
                                        NULL, 0, 1);
    assert_int_equal(st, CLLM_ERR_ARG);
    cllm_tensor_info bad = x->coded.info;
    bad.n_blocks = 3;
    assert_int_equal(cllm_decode_tensor(&bad, x->copy, size, x->out, sizeof x->out, NULL, 0, 1),
                     CLLM_ERR_CORRUPT);
    bad = x->coded.info, bad.scale_bits = 11;
    assert_int_equal(cllm_decode_tensor(&bad, x->copy, size, x->out, sizeof x->out, NULL, 0, 1),
                     CLLM_ERR_CORRUPT);
    free_damaged(x);

    // int8: scales capacity, and f16 exponents above 31 are refused.
    x = make_damaged(CLLM_DTYPE_F32, CLLM_CODEC_INT8);
    fresh(x), x->copy[x->coded.payload_size - 1] = 1;  // 40*4 scale bytes leave final padding
    expect_decode(x, x->coded.payload_size, CLLM_ERR_CORRUPT, "int8 final padding");
    fresh(x);
    float scales[40];
    assert_int_equal(cllm_decode_tensor(&x->coded.info, x->copy, x->coded.payload_size, x->out,
                                        sizeof x->out, scales, sizeof scales - 1, 1),
                     CLLM_ERR_ARG);
    assert_int_equal(cllm_decode_tensor(&x->coded.info, x->copy, x->coded.payload_size, x->out,
                                        sizeof x->out, scales, sizeof scales, 1),
                     CLLM_OK);
    free_damaged(x);
}

// A damaged block among many, decoded on 4 threads: the failure is reported once, and the other
// threads only poll it (scripts/test.sh --tsan checks that polling is race-free).
static void test_decode_error_parallel(void **state) {
    (void)state;
    const uint64_t rows = 256, cols = 64;
    void *src = make_tensor(CLLM_DTYPE_BF16, rows, cols, 0, 5);
    cllm_encode_params p = params_of(CLLM_CODEC_LOSSLESS, 0, cols);  // one row per block
    cllm_coded coded;
    assert_int_equal(cllm_encode_tensor(src, CLLM_DTYPE_BF16, rows, cols, &p, &coded), CLLM_OK);
    cllm_coded_desc d;
    cllm_payload_layout_t lay;
    assert_int_equal(cllm_desc_from_payload(&coded.info, coded.payload, coded.payload_size, &d),
                     CLLM_OK);
    assert_int_equal(cllm_payload_layout(&d, &lay), CLLM_OK);
    uint16_t *out = malloc(rows * cols * sizeof *out);
    for (uint64_t k = 1; k < 8; k++) {  // damage a few places along the streams
        uint8_t *copy = malloc(coded.payload_size);
        memcpy(copy, coded.payload, coded.payload_size);
        copy[lay.streams_off + k * d.stream_bytes / 8] ^= 0x5a;
        cllm_status st = cllm_decode_tensor(&coded.info, copy, coded.payload_size, out,
                                            rows * cols * sizeof *out, NULL, 0, 4);
        assert_int_equal(st, CLLM_ERR_CORRUPT);
        assert_true(cllm_last_error()[0] != 0);
        free(copy);
    }
    free(out);
    free(src);
    cllm_coded_free(&coded);
}

// A lossless f16 payload whose table allows exponent symbols above 31 decodes to an error.
static void test_f16_exponent_range(void **state) {
    (void)state;
    uint8_t syms[64];
    for (int i = 0; i < 64; i++) syms[i] = (uint8_t)(i % 2 ? 40 : 3);
    uint64_t counts[256] = {0};
    counts[40] = counts[3] = 32;
    uint16_t freq[256];
    assert_int_equal(cllm_freq_build(counts, 12, freq), CLLM_OK);
    cllm_rans_enc_table enc;
    assert_int_equal(cllm_rans_enc_table_init(&enc, freq, 12), CLLM_OK);
    uint8_t blk[512];
    size_t bsize;
    assert_int_equal(cllm_rans_encode_block(&enc, syms, 64, blk, sizeof blk, &bsize), CLLM_OK);
    cllm_coded_desc d = {.codec = CLLM_CODEC_LOSSLESS, .dtype = CLLM_DTYPE_F16, .rows = 1,
                         .cols = 64, .scale_bits = 12, .rows_per_block = 1, .n_blocks = 1,
                         .stream_bytes = bsize};
    cllm_payload_layout_t lay;
    assert_int_equal(cllm_payload_layout(&d, &lay), CLLM_OK);
    uint8_t *p = calloc(1, (size_t)lay.total_size);
    for (int s = 0; s < 256; s++) cllm_store_le16(p + 2 * s, freq[s]);
    cllm_store_le64(p + lay.index_off + 8, bsize);
    memcpy(p + lay.streams_off, blk, bsize);
    cllm_tensor_info info = {0};
    cllm_desc_to_info(&d, &info);
    uint16_t out[64];
    assert_int_equal(cllm_decode_tensor(&info, p, (size_t)lay.total_size, out, sizeof out, NULL,
                                        0, 1), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), "exponent"));
    free(p);
}

// ---- coded size against the order-0 bound ----------------------------------------------------------

static void test_size_bound(void **state) {
    (void)state;
    const uint64_t rows = 512, cols = 4096, n = rows * cols;  // 2M elements
    uint16_t *w = make_tensor(CLLM_DTYPE_BF16, rows, cols, 0, 2024);
    cllm_encode_params p = params_of(CLLM_CODEC_LOSSLESS, 0, 0);
    cllm_coded c;
    assert_int_equal(cllm_encode_tensor(w, CLLM_DTYPE_BF16, rows, cols, &p, &c), CLLM_OK);
    double bound = (c.info.symbol_entropy + 8) * (double)n;
    double bits = 8.0 * (double)c.payload_size;
    printf("bf16 lossless: %.4f bits/weight, bound %.4f, overhead %.3f%%\n", bits / n, bound / n,
           100 * (bits / bound - 1));
    assert_true(bits <= 1.01 * bound);
    cllm_coded_free(&c);

    p = params_of(CLLM_CODEC_INT8, 0, 0);
    assert_int_equal(cllm_encode_tensor(w, CLLM_DTYPE_BF16, rows, cols, &p, &c), CLLM_OK);
    bound = c.info.symbol_entropy * (double)n;
    double scale_bits = 8.0 * (double)(rows * 4);
    bits = 8.0 * (double)c.payload_size;
    uint64_t counts[256] = {0};
    int8_t *q = malloc(n);
    float *sc = malloc(rows * 4);
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_BF16, rows, cols, 0, q, sc), CLLM_OK);
    for (uint64_t i = 0; i < n; i++) counts[(uint8_t)q[i]]++;
    uint16_t freq[256];
    for (int s = 0; s < 256; s++) freq[s] = cllm_load_le16(c.payload + 2 * s);
    printf("int8 table cost %.4f bits/weight (scale %u)\n",
           cllm_freq_cost_bits(counts, freq, c.info.scale_bits) / n, c.info.scale_bits);
    free(q), free(sc);
    printf("int8: %.4f bits/weight (%.4f without scales), bound %.4f, overhead %.3f%% "
           "(%.3f%% without scales)\n",
           bits / n, (bits - scale_bits) / n, bound / n, 100 * (bits / bound - 1),
           100 * ((bits - scale_bits) / bound - 1));
    assert_true(bits <= 1.01 * bound);
    cllm_coded_free(&c);
    free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_layout_rejects),
        cmocka_unit_test(test_lossless_round_trips),
        cmocka_unit_test(test_lossless_every_16bit_pattern),
        cmocka_unit_test(test_int8_round_trips),
        cmocka_unit_test(test_raw_round_trip),
        cmocka_unit_test(test_decode_blocks_range),
        cmocka_unit_test(test_decode_blocks_raw_range),
        cmocka_unit_test(test_decode_error_parallel),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_f16_exponent_range),
        cmocka_unit_test(test_size_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
