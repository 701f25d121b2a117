// The in-VRAM compute code (src/codec/cllm_ccode_*.c): encode -> decode reproduces bf16, f16 and
// int8 matrices bit for bit, for every bf16 and f16 pattern, worst-case exception densities, odd shapes and
// empty matrices; the layout's sizes stay within the bits-per-weight budget on realistic weights;
// corrupted buffers are refused.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/cllm_ccode.h"
#include "codec/cllm_codec.h"
#include "common/cllm_common.h"
#include "common/cllm_half.h"
#include "testutil.h"

// The one-weight accessors (the GPU embedding lookup's) give every weight of the buffer.
static void weights_match_b16(const uint8_t *buf, const cllm_ccode_layout *lay, uint32_t kind,
                              const uint16_t *w, uint64_t rows, uint64_t cols) {
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++) {
            const uint32_t got = kind == CLLM_CCODE_F16 ? cllm_cc16_at(buf, lay, r, c)
                                                        : cllm_ccb_at(buf, lay, r, c);
            if (got != w[r * cols + c])
                fail_msg("kind %u, weight (%llu, %llu): accessor 0x%04x, want 0x%04x", kind,
                         (unsigned long long)r, (unsigned long long)c, got, w[r * cols + c]);
        }
}

// kind: CLLM_CCODE_BF16 or CLLM_CCODE_F16.
static void roundtrip_b16(uint32_t kind, const uint16_t *w, uint64_t rows, uint64_t cols,
                          int threads, size_t *bytes_out) {
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(kind == CLLM_CCODE_F16 ? cllm_ccode_encode_f16(w, rows, cols, threads, &buf, &n)
                                            : cllm_ccode_encode_bf16(w, rows, cols, threads, &buf, &n),
                     CLLM_OK);
    uint16_t *back = malloc(rows * cols * 2 + 2);
    memset(back, 0xa5, rows * cols * 2 + 2);
    assert_int_equal(cllm_ccode_decode(buf, n, back, rows * cols * 2, NULL, 0), CLLM_OK);
    if (rows && cols) assert_memory_equal(back, w, rows * cols * 2);
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    assert_int_equal(in.kind, kind);
    assert_true(in.rows == rows && in.cols == cols);
    weights_match_b16(buf, &lay, kind, w, rows, cols);
    if (bytes_out) *bytes_out = n;
    free(back);
    free(buf);
}

static void roundtrip_bf16(const uint16_t *w, uint64_t rows, uint64_t cols, int threads,
                           size_t *bytes_out) {
    roundtrip_b16(CLLM_CCODE_BF16, w, rows, cols, threads, bytes_out);
}

// Every one of the 65536 patterns of the kind (NaN payloads, +-0, +-inf, subnormals) in several
// shapes, shuffled and in order (runs of one exponent: every window position, every mantissa).
// bf16 takes multiples of 64 columns (MMA chunks), rows in tiles of 16 (the last one partial).
static void every_pattern(uint32_t kind) {
    uint16_t *w = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++) w[i] = (uint16_t)(i * 40503u);  // odd: a permutation
    roundtrip_b16(kind, w, 1, 65536, 1, NULL);
    roundtrip_b16(kind, w, 256, 256, 4, NULL);
    if (kind == CLLM_CCODE_F16) {
        roundtrip_b16(kind, w, 65536 / 37, 37, 2, NULL);  // cols not a multiple of 8
        roundtrip_b16(kind, w, 4096, 16, 1, NULL);
    } else {
        roundtrip_b16(kind, w, 17, 3776, 2, NULL);  // a partial tile of one row
        roundtrip_b16(kind, w, 1024, 64, 1, NULL);
    }
    for (uint32_t i = 0; i < 65536; i++) w[i] = (uint16_t)i;
    roundtrip_b16(kind, w, 64, 1024, 2, NULL);
    free(w);
}

static void test_bf16_every_pattern(void **state) {
    (void)state;
    every_pattern(CLLM_CCODE_BF16);
}

// Every weight an escape (exponents spread over 256 values, none dominant), and a row of one
// exponent outside any window (zeros): exceptions at the densest. Then 16 rows whose first chunk
// lies wholly outside their windows (set by the other two chunks): 256 entries in every block.
static void test_bf16_all_exceptions(void **state) {
    (void)state;
    const uint64_t rows = 3, cols = 2048;
    uint16_t *w = malloc(rows * cols * 2);
    for (uint64_t c = 0; c < cols; c++) {
        w[c] = (uint16_t)(((c * 7) % 256) << 7 | (c & 0x807f));  // 8 of each exponent
        w[cols + c] = (uint16_t)(c & 1 ? 0x8000 : 0);             // +-0: exponent 0, in window
        w[2 * cols + c] = (uint16_t)(0x7f80 | (c & 0x7f) | (c & 0x100 ? 0x8000 : 0));  // inf/NaN
    }
    size_t n;
    roundtrip_bf16(w, rows, cols, 1, &n);
    free(w);
    uint16_t f[16 * 192];
    for (uint32_t r = 0; r < 16; r++)
        for (uint32_t c = 0; c < 192; c++)
            f[r * 192 + c] = (uint16_t)(c < 64 ? (200 + (c + r) % 40) << 7 | (c * 5 & 0x807f)
                                               : 100 << 7 | (c & 0x7f));
    uint8_t *buf;
    assert_int_equal(cllm_ccode_encode_bf16(f, 16, 192, 1, &buf, &n), CLLM_OK);
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    assert_int_equal(in.n_exc, 1024);
    assert_int_equal(cllm_load_le32(buf + lay.off[CLLM_CCB_S_COUNTS]), 256u | 256u << 9 | 256u << 18);
    free(buf);
    roundtrip_bf16(f, 16, 192, 1, NULL);
}

// Zero-size and tiny shapes: 1.0, the smallest subnormal, a NaN. bf16: 64 columns at least, and
// other widths refused.
static void edges(uint32_t kind) {
    uint16_t one[3 * 64];
    for (int i = 0; i < 3 * 64; i++) one[i] = i % 3 == 0 ? (kind == CLLM_CCODE_F16 ? 0x3c00 : 0x3f80)
                                              : i % 3 == 1 ? 0x0001 : 0xffff;
    const uint64_t c1 = kind == CLLM_CCODE_F16 ? 1 : 64, c3 = kind == CLLM_CCODE_F16 ? 3 : 128;
    roundtrip_b16(kind, one, 1, c1, 1, NULL);
    roundtrip_b16(kind, one, 1, c3, 1, NULL);
    roundtrip_b16(kind, one, 3, c1, 1, NULL);
    roundtrip_b16(kind, NULL, 0, 0, 1, NULL);
    roundtrip_b16(kind, NULL, 0, 128, 1, NULL);
    roundtrip_b16(kind, NULL, 5, 0, 1, NULL);
    if (kind == CLLM_CCODE_BF16) {
        uint8_t *buf = NULL;
        size_t n = 0;
        assert_int_equal(cllm_ccode_encode_bf16(one, 1, 3, 1, &buf, &n), CLLM_ERR_UNSUPPORTED);
        assert_null(buf);
        assert_false(cllm_ccode_takes(CLLM_CCODE_BF16, 4104, 0));
        assert_true(cllm_ccode_takes(CLLM_CCODE_BF16, 4096, 0));
    }
}

static void test_bf16_edges(void **state) {
    (void)state;
    edges(CLLM_CCODE_BF16);
}

// Synth-like weights (as `codecllm synth`: Student-t(5) values, a log-normal row scale, 0.5% of
// input columns 6x larger).
static void synth_like(float *w, uint64_t rows, uint64_t cols, uint64_t seed) {
    uint64_t s = seed;
    float *gain = malloc(cols * sizeof *gain);
    for (uint64_t c = 0; c < cols; c++) gain[c] = cllm_test_uniform(&s) < 0.005 ? 6.0f : 1.0f;
    for (uint64_t r = 0; r < rows; r++) {
        const double scale = 0.02 * exp(0.3 * cllm_test_normal(&s));
        for (uint64_t c = 0; c < cols; c++) {
            double z = cllm_test_normal(&s), chi = 0;
            for (int k = 0; k < 5; k++) {
                double g = cllm_test_normal(&s);
                chi += g * g;
            }
            w[r * cols + c] = (float)(scale * gain[c] * z / sqrt(chi / 5) * sqrt(3.0 / 5));
        }
    }
    free(gain);
}

// Synth-like weights of the kind: bits/weight in (lo, hi], the same code from 1 and 4 threads,
// escape rate reported.
static void size_case(uint32_t kind, double lo, double hi) {
    const uint64_t rows = 512, cols = 4096;
    uint16_t *w = malloc(rows * cols * 2);
    float *f = malloc(rows * cols * 4);
    synth_like(f, rows, cols, 42);
    for (uint64_t i = 0; i < rows * cols; i++)
        w[i] = kind == CLLM_CCODE_F16 ? cllm_f32_to_f16(f[i]) : cllm_f32_to_bf16(f[i]);
    free(f);
    size_t n;
    roundtrip_b16(kind, w, rows, cols, 4, &n);
    uint8_t *buf;
    size_t n2;
    assert_int_equal(kind == CLLM_CCODE_F16 ? cllm_ccode_encode_f16(w, rows, cols, 1, &buf, &n2)
                                            : cllm_ccode_encode_bf16(w, rows, cols, 1, &buf, &n2),
                     CLLM_OK);
    assert_int_equal(n2, n);  // thread count does not change the code
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n2, &in, &lay), CLLM_OK);
    const double bpw = 8.0 * (double)n / (double)(rows * cols);
    print_message("%s compute code: %.3f bits/weight, %.3f%% escapes\n",
                  kind == CLLM_CCODE_F16 ? "f16" : "bf16", bpw,
                  100.0 * (double)in.n_exc / (double)(rows * cols));
    assert_true(bpw > lo && bpw <= hi);
    free(buf);
    free(w);
}

// bf16: within the 11.5 bits/weight.
static void test_bf16_size(void **state) {
    (void)state;
    size_case(CLLM_CCODE_BF16, 11.0, 11.5);
}

// ---- f16 ----

static void test_f16_every_pattern(void **state) {
    (void)state;
    every_pattern(CLLM_CCODE_F16);
}

// Exceptions at the densest: exponents spread over all 32 values; a row of subnormals and zeros
// around exponent 0; a row of infinities and NaNs (exponent 31) beside small values.
static void test_f16_all_exceptions(void **state) {
    (void)state;
    const uint64_t rows = 3, cols = 2048;
    uint16_t *w = malloc(rows * cols * 2);
    for (uint64_t c = 0; c < cols; c++) {
        w[c] = (uint16_t)(((c * 7) % 32) << 10 | (c & 0x83ff));
        w[cols + c] = (uint16_t)((c & 0x3ff) | (c & 0x400 ? 0x8000 : 0));  // exponent 0
        w[2 * cols + c] = (uint16_t)(c % 3 ? 0x7c00 | (c & 0x3ff) : 0x1000 | (c & 0x3ff));
    }
    size_t n;
    roundtrip_b16(CLLM_CCODE_F16, w, rows, cols, 1, &n);
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    uint8_t *buf;
    size_t n2;
    assert_int_equal(cllm_ccode_encode_f16(w, rows, cols, 1, &buf, &n2), CLLM_OK);
    assert_int_equal(cllm_ccode_read_info(buf, n2, &in, &lay), CLLM_OK);
    assert_true(in.n_exc >= cols * 3 / 4);  // row 0: 24 of 32 exponents outside any window
    free(buf);
    free(w);
}

static void test_f16_edges(void **state) {
    (void)state;
    edges(CLLM_CCODE_F16);
}

// f16: 14 bits per weight plus exceptions and offsets.
static void test_f16_size(void **state) {
    (void)state;
    size_case(CLLM_CCODE_F16, 14.0, 15.0);
}

// f16 corruptions the bf16 rules do not cover: a base above 24, an exception whose exponent
// leaves the 5-bit field, an exception on a non-zero code.
static void test_corrupt_f16(void **state) {
    (void)state;
    uint16_t w[64 * 8];
    for (int i = 0; i < 64 * 8; i++) w[i] = (uint16_t)(i % 5 ? 0x3c00 + i : 0x0400 * (i % 31));
    uint8_t *buf;
    size_t n;
    assert_int_equal(cllm_ccode_encode_f16(w, 8, 64, 1, &buf, &n), CLLM_OK);
    uint16_t out[64 * 8];
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    assert_true(in.n_exc > 0);
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_OK);
    assert_memory_equal(out, w, sizeof w);
    uint8_t *base = buf + lay.off[CLLM_CC16_S_BASE];
    const uint8_t b0 = base[0];
    base[0] = 25;
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_ERR_CORRUPT);
    base[0] = b0;
    uint8_t *e = buf + lay.off[CLLM_CC16_S_EXC] + 1;  // first entry's delta
    const uint8_t d0 = *e;
    *e = (uint8_t)(d0 | 0x20);  // exponent base ^ delta >= 32
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_ERR_CORRUPT);
    *e = d0;
    const uint8_t col = buf[lay.off[CLLM_CC16_S_EXC]];  // first entry's column (row 0, group 0)
    uint8_t *lo = buf + lay.off[CLLM_CC16_S_CODELO] + 4 * (col / 8);
    const uint64_t bit = 6u * (col % 8) + 3;  // its code's low bit
    uint8_t *pb = bit < 32 ? lo + bit / 8 : buf + lay.off[CLLM_CC16_S_CODEHI] + 2 * (col / 8) + (bit - 32) / 8;
    *pb ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_ERR_CORRUPT);
    *pb ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_OK);
    free(buf);
}

static void roundtrip_int8(const int8_t *q, const float *sc, uint64_t rows, uint64_t cols,
                           uint32_t gs, size_t *bytes_out) {
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(cllm_ccode_encode_int8(q, sc, rows, cols, gs, 2, &buf, &n), CLLM_OK);
    const uint64_t gpr = (cols + gs - 1) / gs;
    int8_t *back = malloc(rows * cols + 1);
    float *bsc = malloc(rows * gpr * 4 + 4);
    assert_int_equal(cllm_ccode_decode(buf, n, back, rows * cols, bsc, rows * gpr * 4), CLLM_OK);
    if (rows && cols) {
        assert_memory_equal(back, q, rows * cols);
        assert_memory_equal(bsc, sc, rows * gpr * 4);
    }
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    for (uint64_t r = 0; r < rows; r++)  // the one-weight accessor (the GPU embedding lookup's)
        for (uint64_t c = 0; c < cols; c++)
            if (cllm_cc8_at(buf, &lay, r, c) != q[r * cols + c])
                fail_msg("int8 weight (%llu, %llu): accessor %d, want %d", (unsigned long long)r,
                         (unsigned long long)c, cllm_cc8_at(buf, &lay, r, c), q[r * cols + c]);
    if (bytes_out) *bytes_out = n;
    free(back), free(bsc), free(buf);
}

// Every int8 value at every position class, odd shapes (rows not a multiple of 16, columns not
// a multiple of 64), groups, all-exception and no-exception matrices.
static void test_int8_roundtrip(void **state) {
    (void)state;
    const uint64_t shapes[][3] = {{1, 1, 1},   {16, 64, 64}, {37, 333, 7},  {17, 65, 65},
                                  {64, 512, 64}, {3, 1000, 1000}, {0, 64, 64}, {5, 0, 1}};
    uint64_t s = 7;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const uint64_t rows = shapes[k][0], cols = shapes[k][1], gs = shapes[k][2];
        const uint64_t gpr = cols ? (cols + gs - 1) / gs : 0;
        int8_t *q = malloc(rows * cols + 1);
        float *sc = malloc(rows * gpr * 4 + 4);
        for (int mode = 0; mode < 3; mode++) {
            for (uint64_t i = 0; i < rows * cols; i++) {
                const int v = mode == 0   ? (int)(cllm_test_rand(&s) % 256) - 128  // all values
                              : mode == 1 ? (int)lround(9 * cllm_test_normal(&s))  // realistic
                                          : (i % 2 ? 127 : -33);                    // all escapes
                q[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
            }
            for (uint64_t i = 0; i < rows * gpr; i++) sc[i] = (float)cllm_test_uniform(&s);
            roundtrip_int8(q, sc, rows, cols, (uint32_t)gs, NULL);
        }
        free(q), free(sc);
    }
}

// The fused kernels' loader (cllm_cc8_lane, and cllm_cc8_lane_tab from the side entries staged as
// XOR words) run on the CPU over every lane of every block, from the bytes each lane loads: each
// value equals the decoder's (so the GPU's A words are the raw int8 values the MMAs expect).
static void lanes_match(const uint8_t *buf, size_t n, const int8_t *q) {
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    const uint16_t *side = (const uint16_t *)(buf + lay.off[CLLM_CC8_S_XHI]);  // little-endian
    uint32_t *tab = malloc((2 * in.n_exc + 2) * sizeof *tab);  // the whole list as one table
    assert_non_null(tab);
    tab[0] = tab[1] = CLLM_CC8_X0;
    for (uint64_t k = 0; k < in.n_exc; k++) cllm_cc8_xor(side[k], tab + 2 * k + 2);
    for (uint64_t b = 0; b < lay.ntiles * lay.nch; b++) {
        const uint64_t t = b / lay.nch, ch = b % lay.nch;
        for (uint32_t l = 0; l < 32; l++) {
            const uint8_t *nb = buf + lay.off[CLLM_CC8_S_NIB] + b * 512 + 16 * l;
            const uint8_t *hb = buf + lay.off[CLLM_CC8_S_HI] + b * 256 + 8 * l;
            const uint8_t *pb = buf + lay.off[CLLM_CC8_S_FLAGS] + b * 32 + 8 * (l / 8);
            uint32_t a[8], at[8];
            cllm_cc8_lane(cllm_load_le32(nb), cllm_load_le32(nb + 4), cllm_load_le32(nb + 8),
                          cllm_load_le32(nb + 12), cllm_load_le32(hb), cllm_load_le32(hb + 4),
                          cllm_load_le32(pb), cllm_load_le32(pb + 4), side, l, a);
            cllm_cc8_lane_tab(cllm_load_le32(nb), cllm_load_le32(nb + 4), cllm_load_le32(nb + 8),
                              cllm_load_le32(nb + 12), cllm_load_le32(hb), cllm_load_le32(hb + 4),
                              cllm_load_le32(pb), cllm_load_le32(pb + 4), tab, l, at);
            for (uint32_t k = 0; k < 8; k++) {
                if (at[k] != a[k])
                    fail_msg("block %llu lane %u word %u: table form %08x, list form %08x",
                             (unsigned long long)b, l, k, at[k], a[k]);
                for (uint32_t i = 0; i < 4; i++) {
                    const uint64_t r = t * 16 + l / 4 + 8 * (k / 4);
                    const uint64_t c = ch * 64 + 16 * (l % 4) + 4 * (k % 4) + i;
                    const int8_t got = (int8_t)(uint8_t)(a[k] >> (8 * i));
                    const int8_t want = r < in.rows && c < in.cols ? q[r * in.cols + c] : 0;
                    if (got != want)
                        fail_msg("block %llu lane %u word %u byte %u: %d, want %d",
                                 (unsigned long long)b, l, k, i, got, want);
                }
            }
        }
    }
    free(tab);
}

static void test_int8_lanes(void **state) {
    (void)state;
    uint64_t s = 11;
    const uint64_t shapes[][2] = {{16, 64}, {37, 320}, {48, 4096}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int mode = 0; mode < 3; mode++) {
            const uint64_t rows = shapes[k][0], cols = shapes[k][1];
            int8_t *q = malloc(rows * cols);
            float *sc = malloc(rows * 4);
            for (uint64_t i = 0; i < rows * cols; i++) {
                const int v = mode == 0   ? (int)(cllm_test_rand(&s) % 256) - 128
                              : mode == 1 ? (int)lround(9 * cllm_test_normal(&s))
                                          : (i % 3 ? 100 : -128);
                q[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
            }
            for (uint64_t i = 0; i < rows; i++) sc[i] = 1.0f;
            uint8_t *buf;
            size_t n;
            assert_int_equal(cllm_ccode_encode_int8(q, sc, rows, cols, (uint32_t)cols, 1, &buf, &n),
                             CLLM_OK);
            lanes_match(buf, n, q);
            free(buf), free(q), free(sc);
        }
}

// Per-channel int8 of synth-like weights: bits/weight incl. scales <= 6.5.
static void test_int8_size(void **state) {
    (void)state;
    const uint64_t rows = 256, cols = 4096;
    float *w = malloc(rows * cols * 4), *sc = malloc(rows * 4);
    int8_t *q = malloc(rows * cols);
    synth_like(w, rows, cols, 9);
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, rows, cols, 0, q, sc), CLLM_OK);
    size_t n;
    roundtrip_int8(q, sc, rows, cols, (uint32_t)cols, &n);
    const double bpw = 8.0 * (double)n / (double)(rows * cols);
    double ss = 0;
    for (uint64_t i = 0; i < rows * cols; i++) ss += (double)q[i] * q[i];
    print_message("int8 compute code: %.3f bits/weight incl. scales (symbol std %.1f)\n", bpw,
                  sqrt(ss / (double)(rows * cols)));
    assert_true(bpw <= 6.5);
    free(w), free(sc), free(q);
}

// Corruptions the decoder must refuse (never read out of bounds: run under ASan): the header, a
// base, a chunk's first entry, its block counts, an entry's pos (order) and exponent (inside the
// window), a code under an entry, a padding row's byte.
static void test_corrupt(void **state) {
    (void)state;
    uint16_t w[64 * 8];
    for (int i = 0; i < 64 * 8; i++) w[i] = (uint16_t)(i % 3 ? 0x3c00 + i : i * 977);
    uint8_t *buf;
    size_t n;
    assert_int_equal(cllm_ccode_encode_bf16(w, 8, 64, 1, &buf, &n), CLLM_OK);
    uint16_t out[64 * 8];
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    assert_true(in.n_exc > 1);
    assert_int_equal(cllm_ccode_decode(buf, n - 1, out, sizeof out, NULL, 0), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out - 2, NULL, 0), CLLM_ERR_ARG);
    buf[24] = 60;  // cols 60: not whole chunks (the fuzzer's first find: columns past the row)
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_ERR_FORMAT);
    buf[24] = 64;
    // The first entry's weight: its lane's code words (the code is 0 there).
    const uint32_t e0 = cllm_load_le16(buf + lay.off[CLLM_CCB_S_EXC]);
    const uint32_t cn = cllm_load_le32(buf + lay.off[CLLM_CCB_S_COUNTS]);
    const uint32_t b0 = (cn & 511u) ? 0 : (cn >> 9 & 511u) ? 1 : (cn >> 18 & 511u) ? 2 : 3;
    const uint32_t sl = e0 & 255u, l = sl >> 3, p = 4 * b0 + ((sl >> 1) & 3u), r = cllm_ccb_row(l, p);
    const uint32_t h = sl & 1u, bit = p < 15 ? 3 * (p % 5) + 16 * h : 15 + 16 * h;
    const uint64_t cw = p < 15 && p >= 10 ? lay.off[CLLM_CCB_S_CODE2] + 4 * l
                                          : lay.off[CLLM_CCB_S_CODEW] + 8 * l + (p >= 5 && p < 15 ? 4 : 0);
    const uint64_t flips[] = {0,
                              6,
                              12,
                              lay.off[CLLM_CCB_S_BASE],
                              lay.off[CLLM_CCB_S_FIRST] + 4,
                              lay.off[CLLM_CCB_S_COUNTS] + 3,
                              lay.off[CLLM_CCB_S_EXC],
                              lay.off[CLLM_CCB_S_EXC] + 1,
                              cw + bit / 8,
                              lay.off[CLLM_CCB_S_BYTES] + 16 * 1 + 2 * 1};  // lane 1, j 1: row 8
    const uint8_t set[] = {0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0};  // 0: flip bit 0 (or the code's bit)
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        const uint8_t old = buf[flips[k]];
        uint8_t v = set[k] ? set[k] : (uint8_t)(old ^ 0x01);
        if (k == 5) v = (uint8_t)(old ^ 0x80);        // counts bit 31: reserved
        if (k == 7) v = buf[lay.off[CLLM_CCB_S_BASE] + r];  // the exponent inside the window
        if (k == 8) v = (uint8_t)(old ^ (1u << (bit % 8)));
        buf[flips[k]] = v;
        const cllm_status st = cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0);
        assert_true(st == CLLM_ERR_FORMAT || st == CLLM_ERR_CORRUPT);
        buf[flips[k]] = old;
    }
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, NULL, 0), CLLM_OK);
    free(buf);
}

// int8 corruptions: a flag bit (side entries no longer match), a first-entry index, the last
// pair, a canonical violation.
static void test_corrupt_int8(void **state) {
    (void)state;
    int8_t q[16 * 64];
    float sc[16];
    for (int i = 0; i < 16 * 64; i++) q[i] = (int8_t)(i % 37 == 0 ? 100 : i % 9 - 4);
    for (int i = 0; i < 16; i++) sc[i] = 0.5f;
    uint8_t *buf;
    size_t n;
    assert_int_equal(cllm_ccode_encode_int8(q, sc, 16, 64, 64, 1, &buf, &n), CLLM_OK);
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    assert_int_equal(cllm_ccode_read_info(buf, n, &in, &lay), CLLM_OK);
    assert_true(in.n_exc > 0 && in.n_exc < 128);
    int8_t out[16 * 64];
    float osc[16];
    assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, osc, sizeof osc), CLLM_OK);
    assert_memory_equal(out, q, sizeof q);
    const uint64_t f = lay.off[CLLM_CC8_S_FLAGS];  // pairs (word, first entry)
    const uint64_t flips[] = {f, f + 4, f + 8, f + 15, f + 4 * 8 + 4};
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        const uint8_t old = buf[flips[k]];
        buf[flips[k]] = (uint8_t)(old ^ 0x01);
        assert_int_equal(cllm_ccode_decode(buf, n, out, sizeof out, osc, sizeof osc),
                         CLLM_ERR_CORRUPT);
        buf[flips[k]] = old;
    }
    // A flagged vector whose values then all fit 6 bits: lane 0's vector 0 is q2[0..8) =
    // {-100, 1, ..., 1}; with its side bits cleared -100 (0x9c) reads as 28: all fit.
    int8_t q2[16 * 64];
    memcpy(q2, q, sizeof q2);
    for (int j = 0; j < 8; j++) q2[j] = (int8_t)(j == 0 ? -100 : 1);
    uint8_t *b2;
    size_t n2;
    assert_int_equal(cllm_ccode_encode_int8(q2, sc, 16, 64, 64, 1, &b2, &n2), CLLM_OK);
    cllm_ccode_layout l2;
    assert_int_equal(cllm_ccode_read_info(b2, n2, &in, &l2), CLLM_OK);
    assert_true(b2[l2.off[CLLM_CC8_S_FLAGS]] & 1);
    b2[l2.off[CLLM_CC8_S_XHI]] = 0, b2[l2.off[CLLM_CC8_S_XHI] + 1] = 0;
    assert_int_equal(cllm_ccode_decode(b2, n2, out, sizeof out, osc, sizeof osc),
                     CLLM_ERR_CORRUPT);
    free(b2);
    free(buf);
}

// The fuzz target's seeds (every file of fuzz/corpus/fuzz_ccode, written by
// fuzz/make_ccode_seeds) are of the current version: each header parses, each buffer decodes, but
// those made to be refused ("flipped" in the name).
static void test_fuzz_seeds(void **state) {
    (void)state;
    const char *src = getenv("CLLM_SRC");
    char dir[4000];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/fuzz_ccode", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d) fprintf(stderr, "cannot open %s\n", dir);
    assert_non_null(d);
    int seen = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.') continue;
        const char *name = de->d_name;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        seen++;
        uint8_t *buf = NULL;
        size_t n = 0;
        cllm_status st = cllm_read_file(path, 1u << 20, &buf, &n);
        if (st != CLLM_OK) fprintf(stderr, "%s\n", cllm_last_error());
        assert_int_equal(st, CLLM_OK);
        cllm_ccode_info in;
        cllm_ccode_layout lay;
        st = cllm_ccode_read_info(buf, n, &in, &lay);
        if (st != CLLM_OK)
            fprintf(stderr, "%s: %s (run fuzz/make_ccode_seeds)\n", name, cllm_last_error());
        assert_int_equal(st, CLLM_OK);
        const size_t esz = in.kind == CLLM_CCODE_INT8 ? 1 : 2, elems = (size_t)(in.rows * in.cols);
        const size_t n_sc = (size_t)(lay.gpr * in.rows);
        uint8_t *out = malloc(elems * esz + 1);
        float *sc = malloc(n_sc * sizeof(float) + 1);
        st = cllm_ccode_decode(buf, n, out, elems * esz, sc, n_sc * sizeof(float));
        assert_int_equal(st, strstr(name, "flipped") ? CLLM_ERR_CORRUPT : CLLM_OK);
        free(out), free(sc), free(buf);
    }
    closedir(d);
    assert_true(seen >= 8);  // make_ccode_seeds writes 8
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_seeds),
        cmocka_unit_test(test_bf16_every_pattern), cmocka_unit_test(test_bf16_all_exceptions),
        cmocka_unit_test(test_bf16_edges),         cmocka_unit_test(test_bf16_size),
        cmocka_unit_test(test_int8_roundtrip),     cmocka_unit_test(test_int8_lanes),
        cmocka_unit_test(test_int8_size),
        cmocka_unit_test(test_f16_every_pattern),  cmocka_unit_test(test_f16_all_exceptions),
        cmocka_unit_test(test_f16_edges),          cmocka_unit_test(test_f16_size),
        cmocka_unit_test(test_corrupt_f16),
        cmocka_unit_test(test_corrupt),            cmocka_unit_test(test_corrupt_int8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
