// Frequency tables and the 32-lane rANS block coder: normalisation invariants, round trips of
// odd sizes and degenerate alphabets, and rejection of every kind of damaged block.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/cllm_codec.h"
#include "common/cllm_half.h"
#include "testutil.h"

// Geometric-ish distribution over `alphabet` symbols (skewed like weight exponents).
static void skewed_symbols(uint8_t *s, uint64_t n, int alphabet, uint64_t seed) {
    for (uint64_t i = 0; i < n; i++) {
        double u = cllm_test_uniform(&seed);
        int k = (int)(-log(1.0 - u) * 3.0);
        s[i] = (uint8_t)(k % alphabet);
    }
}

static void hist(const uint8_t *s, uint64_t n, uint64_t counts[256]) {
    memset(counts, 0, 256 * sizeof counts[0]);
    for (uint64_t i = 0; i < n; i++) counts[s[i]]++;
}

static void assert_table_ok(const uint64_t counts[256], const uint16_t freq[256], uint32_t sb) {
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        sum += freq[s];
        assert_true(freq[s] <= CLLM_RANS_MAX_FREQ);
        if (counts[s]) assert_true(freq[s] >= 1);
        else assert_int_equal(freq[s], 0);
    }
    assert_int_equal(sum, 1u << sb);
}

static void test_freq_build_sums(void **state) {
    (void)state;
    uint64_t seed = 1;
    for (uint32_t sb = CLLM_RANS_MIN_SCALE_BITS; sb <= CLLM_RANS_MAX_SCALE_BITS; sb++) {
        for (int trial = 0; trial < 40; trial++) {
            uint64_t counts[256] = {0};
            int present = 1 + (int)(cllm_test_rand(&seed) % 256);
            for (int k = 0; k < present; k++) {
                uint64_t r = cllm_test_rand(&seed);
                counts[r % 256] += (trial % 3 == 0) ? (r >> 40) : 1 + (r >> 60);
            }
            if (trial == 7) counts[3] = UINT64_MAX / 512;  // huge counts
            uint32_t n_present = 0;
            for (int s = 0; s < 256; s++) n_present += counts[s] != 0;
            if (!n_present) counts[0] = 1, n_present = 1;
            uint16_t freq[256];
            if (n_present * CLLM_RANS_MAX_FREQ < (1u << sb)) {  // cannot fill the scale
                assert_int_equal(cllm_freq_build(counts, sb, freq), CLLM_ERR_UNSUPPORTED);
                continue;
            }
            assert_int_equal(cllm_freq_build(counts, sb, freq), CLLM_OK);
            assert_table_ok(counts, freq, sb);
        }
    }
    // Every symbol present at the smallest scale: all frequencies are 1.
    uint64_t all[256];
    for (int s = 0; s < 256; s++) all[s] = 1000 + (uint64_t)s * 7;
    uint16_t freq[256];
    assert_int_equal(cllm_freq_build(all, 8, freq), CLLM_OK);
    for (int s = 0; s < 256; s++) assert_int_equal(freq[s], 1);
    // Empty histogram and bad scale are argument errors.
    uint64_t none[256] = {0};
    assert_int_equal(cllm_freq_build(none, 12, freq), CLLM_ERR_ARG);
    assert_int_equal(cllm_freq_build(all, 7, freq), CLLM_ERR_ARG);
    assert_int_equal(cllm_freq_build(all, CLLM_RANS_MAX_SCALE_BITS + 1, freq), CLLM_ERR_ARG);
    // At 14 bits a frequency stops at 2^12: three symbols cannot fill the scale, four exactly do
    // (however skewed their counts), and a dominant symbol is capped.
    uint64_t few[256] = {0};
    few[1] = 1000000, few[2] = 1, few[3] = 1;
    assert_int_equal(cllm_freq_build(few, 14, freq), CLLM_ERR_UNSUPPORTED);
    few[4] = 1;
    assert_int_equal(cllm_freq_build(few, 14, freq), CLLM_OK);
    for (int s = 1; s <= 4; s++) assert_int_equal(freq[s], 4096);
    few[5] = 7;
    assert_int_equal(cllm_freq_build(few, 14, freq), CLLM_OK);
    assert_table_ok(few, freq, 14);
    assert_int_equal(freq[1], 4096);
}

// No single unit moved from one symbol to another lowers the cost: the greedy result is optimal.
static void test_freq_build_optimal(void **state) {
    (void)state;
    uint8_t *s = malloc(200000);
    skewed_symbols(s, 200000, 40, 5);
    uint64_t counts[256];
    hist(s, 200000, counts);
    counts[200] = 1;  // a rare symbol still gets probability
    uint16_t freq[256];
    assert_int_equal(cllm_freq_build(counts, 12, freq), CLLM_OK);
    double best = cllm_freq_cost_bits(counts, freq, 12);
    for (int i = 0; i < 256; i++) {
        for (int j = 0; j < 256; j++) {
            if (i == j || !counts[i] || !counts[j] || freq[j] <= 1) continue;
            freq[i]++, freq[j]--;
            assert_true(cllm_freq_cost_bits(counts, freq, 12) >= best - 1e-6);
            freq[i]--, freq[j]++;
        }
    }
    // And it is close to the entropy bound.
    double h = cllm_entropy_bits(counts) * 200001;
    assert_true(best <= h * 1.002 + 64);
    free(s);
}

// Whether a histogram has enough symbols to fill 2^sb slots at most CLLM_RANS_MAX_FREQ each.
static int scale_fits(const uint64_t counts[256], uint32_t sb) {
    uint32_t present = 0;
    for (int s = 0; s < 256; s++) present += counts[s] != 0;
    return present * CLLM_RANS_MAX_FREQ >= (1u << sb);
}

// Encodes, decodes and compares n symbols; returns the block size (0 when the histogram cannot
// fill scale sb, which freq_build must refuse).
static size_t round_trip(const uint8_t *syms, uint64_t n, uint32_t sb) {
    uint64_t counts[256];
    hist(syms, n, counts);
    if (n == 0) counts[0] = 1;
    uint16_t freq[256];
    if (!scale_fits(counts, sb)) {
        assert_int_equal(cllm_freq_build(counts, sb, freq), CLLM_ERR_UNSUPPORTED);
        return 0;
    }
    assert_int_equal(cllm_freq_build(counts, sb, freq), CLLM_OK);
    cllm_rans_enc_table enc;
    static cllm_rans_dec_table dec;
    assert_int_equal(cllm_rans_enc_table_init(&enc, freq, sb), CLLM_OK);
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, sb), CLLM_OK);
    size_t cap = (size_t)cllm_rans_block_bound(n), size = 0;
    uint8_t *blk = malloc(cap);
    assert_int_equal(cllm_rans_encode_block(&enc, syms, n, blk, cap, &size), CLLM_OK);
    assert_int_equal(size % 4, 0);
    assert_true(size >= CLLM_RANS_STATE_BYTES && size <= cap);
    uint8_t *back = malloc(n + 1);
    // Decode from an exact-size copy so ASan sees any read past the block.
    uint8_t *exact = malloc(size);
    memcpy(exact, blk, size);
    assert_int_equal(cllm_rans_decode_block(&dec, exact, size, back, n), CLLM_OK);
    assert_memory_equal(back, syms, n);
    free(exact);
    free(back);
    free(blk);
    return size;
}

static void test_block_round_trips(void **state) {
    (void)state;
    static const uint64_t sizes[] = {0, 1, 2, 31, 32, 33, 63, 64, 65, 100, 1000, 4097, 65536 + 7};
    uint8_t *s = malloc(70000);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (uint32_t sb = CLLM_RANS_MIN_SCALE_BITS; sb <= CLLM_RANS_MAX_SCALE_BITS; sb++) {
            skewed_symbols(s, sizes[k], 256, 10 + k);
            round_trip(s, sizes[k], sb);
            uint64_t seed = 99 + k;  // uniform bytes: incompressible, ~1 word per 2 symbols
            for (uint64_t i = 0; i < sizes[k]; i++) s[i] = (uint8_t)cllm_test_rand(&seed);
            round_trip(s, sizes[k], sb);
        }
    }
    free(s);
}

// A single-symbol table (freq = M) codes nothing: the block is just the 32 states at L.
static void test_single_symbol(void **state) {
    (void)state;
    uint8_t s[1000];
    memset(s, 77, sizeof s);
    assert_int_equal(round_trip(s, sizeof s, 12), CLLM_RANS_STATE_BYTES);
    assert_int_equal(round_trip(s, sizeof s, 8), CLLM_RANS_STATE_BYTES);
}

// Builds a block of n skewed symbols into a malloc'd buffer; returns its size.
typedef struct fixture {
    cllm_rans_enc_table enc;
    cllm_rans_dec_table dec;
    uint8_t syms[5000], back[5000];
    uint8_t *blk;
    size_t size;
    uint64_t n;
} fixture;

static fixture *make_fixture(uint64_t n, int want_padding) {
    fixture *f = calloc(1, sizeof *f);
    for (uint64_t seed = 1;; seed++) {
        skewed_symbols(f->syms, n, 60, seed);
        uint64_t counts[256];
        hist(f->syms, n, counts);
        uint16_t freq[256];
        assert_int_equal(cllm_freq_build(counts, 12, freq), CLLM_OK);
        cllm_rans_enc_table_init(&f->enc, freq, 12);
        cllm_rans_dec_table_init(&f->dec, freq, 12);
        free(f->blk);
        f->blk = malloc((size_t)cllm_rans_block_bound(n) + 8);
        cllm_rans_encode_block(&f->enc, f->syms, n, f->blk, (size_t)cllm_rans_block_bound(n),
                               &f->size);
        f->n = n;
        if (!want_padding) return f;
        // The block ends in 2 padding bytes iff damaging its last byte is reported as padding.
        f->blk[f->size - 1] = 1;
        cllm_status st = cllm_rans_decode_block(&f->dec, f->blk, f->size, f->back, n);
        f->blk[f->size - 1] = 0;
        if (st == CLLM_ERR_CORRUPT && strstr(cllm_last_error(), "padding")) return f;
    }
}

static void free_fixture(fixture *f) {
    free(f->blk);
    free(f);
}

static void expect_corrupt(fixture *f, size_t size, const char *what) {
    cllm_status st = cllm_rans_decode_block(&f->dec, f->blk, size, f->back, f->n);
    if (st != CLLM_ERR_CORRUPT) fail_msg("%s: expected CORRUPT, got %d", what, st);
}

static void test_rejects_damaged_blocks(void **state) {
    (void)state;
    fixture *f = make_fixture(3001, 0);
    assert_int_equal(cllm_rans_decode_block(&f->dec, f->blk, f->size, f->back, f->n), CLLM_OK);
    expect_corrupt(f, f->size - 4, "truncated");
    expect_corrupt(f, 100, "shorter than the states");
    expect_corrupt(f, f->size - 1, "size not a multiple of 4");
    // Extra words: 4 more zero bytes after the block.
    memset(f->blk + f->size, 0, 4);
    expect_corrupt(f, f->size + 4, "extra words");
    // Bad final state: a flipped bit in a lane's initial state.
    f->blk[5] ^= 0x10;
    expect_corrupt(f, f->size, "bad state");
    f->blk[5] ^= 0x10;
    // Initial state below L.
    uint8_t save[4];
    memcpy(save, f->blk + 8, 4);
    cllm_store_le32(f->blk + 8, 0x1234);
    expect_corrupt(f, f->size, "state below L");
    memcpy(f->blk + 8, save, 4);
    // A flipped word in the middle of the stream.
    f->blk[CLLM_RANS_STATE_BYTES + 40] ^= 0x5a;
    expect_corrupt(f, f->size, "flipped word");
    f->blk[CLLM_RANS_STATE_BYTES + 40] ^= 0x5a;
    // Fewer symbols than coded: words are left over or states are not L.
    assert_int_equal(cllm_rans_decode_block(&f->dec, f->blk, f->size, f->back, f->n - 32),
                     CLLM_ERR_CORRUPT);
    assert_int_equal(cllm_rans_decode_block(&f->dec, f->blk, f->size, f->back, f->n), CLLM_OK);
    free_fixture(f);

    f = make_fixture(2000, 1);  // a block that ends with 2 padding bytes
    f->blk[f->size - 2] = 0x01;
    expect_corrupt(f, f->size, "non-zero padding");
    free_fixture(f);
}

static void test_rejects_bad_tables(void **state) {
    (void)state;
    static cllm_rans_dec_table dec;
    uint16_t freq[256] = {0};
    freq[0] = 4000, freq[1] = 95;  // sums to 4095
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 12), CLLM_ERR_CORRUPT);
    freq[1] = 96;
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 12), CLLM_OK);
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 13), CLLM_ERR_CORRUPT);
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 7), CLLM_ERR_CORRUPT);
    freq[0] = 65535, freq[1] = 65535;  // sum would wrap a 16-bit accumulator
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 12), CLLM_ERR_CORRUPT);
    freq[0] = 8191, freq[1] = 8193;  // sums to 2^14 but one frequency exceeds 2^12
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 14), CLLM_ERR_CORRUPT);
    freq[0] = freq[1] = freq[2] = freq[3] = 4096;
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 14), CLLM_OK);
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 15), CLLM_ERR_CORRUPT);
    // The encoder refuses a symbol without probability instead of dividing by zero.
    cllm_rans_enc_table enc;
    uint16_t f2[256] = {0};
    f2[0] = 256;
    assert_int_equal(cllm_rans_enc_table_init(&enc, f2, 8), CLLM_OK);
    uint8_t s[3] = {0, 1, 0}, out[256];
    size_t w;
    assert_int_equal(cllm_rans_encode_block(&enc, s, 3, out, sizeof out, &w), CLLM_ERR_ARG);
    assert_int_equal(cllm_rans_encode_block(&enc, s, 3, out, 100, &w), CLLM_ERR_ARG);
}

// The slot table agrees with the frequency table it was built from.
static void test_slot_packing(void **state) {
    (void)state;
    static cllm_rans_dec_table dec;
    uint16_t freq[256] = {0};
    freq[5] = 4095, freq[200] = 1;
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 12), CLLM_OK);
    assert_int_equal(CLLM_RANS_SLOT_SYM(dec.slot[0]), 5);
    assert_int_equal(CLLM_RANS_SLOT_FREQ(dec.slot[4094]), 4095);
    assert_int_equal(CLLM_RANS_SLOT_BIAS(dec.slot[4094]), 4094);
    assert_int_equal(CLLM_RANS_SLOT_SYM(dec.slot[4095]), 200);
    assert_int_equal(CLLM_RANS_SLOT_FREQ(dec.slot[4095]), 1);
    assert_int_equal(CLLM_RANS_SLOT_BIAS(dec.slot[4095]), 0);
    // 14 bits: the fields stay in 12 bits because no frequency exceeds 2^12.
    memset(freq, 0, sizeof freq);
    freq[0] = 4096, freq[1] = 4096, freq[2] = 4096, freq[3] = 4095, freq[255] = 1;
    assert_int_equal(cllm_rans_dec_table_init(&dec, freq, 14), CLLM_OK);
    assert_int_equal(CLLM_RANS_SLOT_SYM(dec.slot[16382]), 3);
    assert_int_equal(CLLM_RANS_SLOT_FREQ(dec.slot[16382]), 4095);
    assert_int_equal(CLLM_RANS_SLOT_BIAS(dec.slot[16382]), 4094);
    assert_int_equal(CLLM_RANS_SLOT_SYM(dec.slot[16383]), 255);
    assert_int_equal(CLLM_RANS_SLOT_FREQ(dec.slot[8191]), 4096);
    assert_int_equal(CLLM_RANS_SLOT_BIAS(dec.slot[8191]), 4095);
}

// ---- the AVX2 decoder against the scalar reference -------------------------------------------

// Decodes src[0..size) as n symbols with both paths (from exact-size copies, so ASan sees any
// over-read) and requires the same status and, on success, the same symbols. Returns the status.
static cllm_status decode_both(const cllm_rans_dec_table *t, const uint8_t *src, size_t size,
                               uint64_t n) {
    uint8_t *copy = malloc(size ? size : 1), *a = malloc(n + 1), *b = malloc(n + 1);
    memcpy(copy, src, size);
    cllm_status sa = cllm_rans_decode_block_scalar(t, copy, size, a, n);
    cllm_status sb = cllm_rans_decode_block_avx2(t, copy, size, b, n);
    if (sb != CLLM_ERR_UNSUPPORTED) {
        if (sa != sb) fail_msg("scalar status %d, avx2 status %d (n %llu, size %zu)", sa, sb,
                               (unsigned long long)n, size);
        if (sa == CLLM_OK) assert_memory_equal(a, b, n);
    }
    free(copy), free(a), free(b);
    return sa;
}

// Random blocks for every scale, odd sizes, skewed and uniform symbols; then damaged copies of
// each (flipped bytes, truncations, wrong symbol counts, random bytes) must be rejected (or
// accepted) identically by both paths.
static void test_avx2_matches_scalar(void **state) {
    (void)state;
    static const uint64_t sizes[] = {0, 1, 31, 32, 33, 64, 95, 1000, 4097, 30011};
    static cllm_rans_dec_table dec;
    cllm_rans_enc_table enc;
    uint64_t seed = 4242;
    uint8_t *s = malloc(30011);
    for (uint32_t sb = CLLM_RANS_MIN_SCALE_BITS; sb <= CLLM_RANS_MAX_SCALE_BITS; sb++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            const uint64_t n = sizes[k];
            for (int kind = 0; kind < 3; kind++) {
                if (kind == 0) skewed_symbols(s, n, 256, seed++);
                else if (kind == 1) skewed_symbols(s, n, 3, seed++);  // few words: long runs
                else for (uint64_t i = 0; i < n; i++) s[i] = (uint8_t)cllm_test_rand(&seed);
                uint64_t counts[256];
                hist(s, n, counts);
                counts[0] += n == 0;
                for (int a = 0; !scale_fits(counts, sb); a++)  // too few symbols for sb
                    counts[a] += counts[a] == 0;
                uint16_t freq[256];
                assert_int_equal(cllm_freq_build(counts, sb, freq), CLLM_OK);
                assert_int_equal(cllm_rans_enc_table_init(&enc, freq, sb), CLLM_OK);
                assert_int_equal(cllm_rans_dec_table_init(&dec, freq, sb), CLLM_OK);
                size_t cap = (size_t)cllm_rans_block_bound(n) + 64, size = 0;
                uint8_t *blk = calloc(cap, 1);
                assert_int_equal(cllm_rans_encode_block(&enc, s, n, blk, cap, &size), CLLM_OK);
                assert_int_equal(decode_both(&dec, blk, size, n), CLLM_OK);
                for (int trial = 0; trial < 12; trial++) {
                    size_t at = (size_t)(cllm_test_rand(&seed) % size);
                    uint8_t flip = (uint8_t)(1 + cllm_test_rand(&seed) % 255);
                    blk[at] ^= flip;
                    decode_both(&dec, blk, size, n);
                    blk[at] ^= flip;
                    size_t cut = (size_t)(cllm_test_rand(&seed) % (size + 8));
                    assert_int_not_equal(cut == size ? CLLM_ERR_CORRUPT
                                                     : decode_both(&dec, blk, cut, n),
                                         CLLM_OK);
                    decode_both(&dec, blk, size, n + 1 + cllm_test_rand(&seed) % 40);
                    if (n > 0) decode_both(&dec, blk, size, n - 1 - cllm_test_rand(&seed) % n);
                }
                for (size_t i = CLLM_RANS_STATE_BYTES; i < size; i++)  // random words
                    blk[i] = (uint8_t)cllm_test_rand(&seed);
                decode_both(&dec, blk, size, n);
                free(blk);
            }
        }
    }
    free(s);
}

// ---- the quantiser against its specification (cllm_quant.c) ---------------------------------

static int8_t quant_ref(float w, float scale) {
    if (scale == 0.0f) return 0;
    float r = roundf(w / scale);
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int8_t)r;
}

// Exact halves, values next to halves, subnormal and huge groups, odd group sizes, every dtype:
// the vectorised quantiser must equal the literal formula.
static void test_quantize_matches_spec(void **state) {
    (void)state;
    const uint64_t rows = 7, cols = 77;
    float *w = malloc(rows * cols * 4), *sc = malloc(rows * cols * 4);
    int8_t *q = malloc(rows * cols);
    uint64_t seed = 77;
    for (int round = 0; round < 40; round++) {
        for (uint64_t i = 0; i < rows * cols; i++) {
            double u = cllm_test_uniform(&seed) * 2 - 1;
            uint64_t r = i / cols;
            float mag = r == 0 ? 1e-44f : r == 1 ? 1e-40f : r == 2 ? 3e38f : 1.0f;
            w[i] = (float)u * mag;
            if (r == 3) w[i] = (float)((int)(u * 254) / 2.0);  // exact halves of 127/amax steps
            if (r == 4 && i % 3 == 0) w[i] = nextafterf(w[i - 1], 0);
        }
        w[3 * cols] = 127.0f;  // row 3: scale exactly 1, so w / scale hits the .5 ties
        const uint32_t group = round % 4 == 0 ? 0 : (uint32_t)(1 + round % 23);
        for (int dt = 0; dt < 3; dt++) {
            static const cllm_dtype dts[] = {CLLM_DTYPE_F32, CLLM_DTYPE_BF16, CLLM_DTYPE_F16};
            uint16_t *h = malloc(rows * cols * 2);
            float *wide = malloc(rows * cols * 4);
            for (uint64_t i = 0; i < rows * cols; i++) {
                if (dts[dt] == CLLM_DTYPE_BF16) h[i] = cllm_f32_to_bf16(w[i]);
                const float c = w[i] > 6e4f ? 6e4f : w[i] < -6e4f ? -6e4f : w[i];  // f16 range
                if (dts[dt] == CLLM_DTYPE_F16) h[i] = cllm_f32_to_f16(c);
                wide[i] = dts[dt] == CLLM_DTYPE_F32 ? w[i]
                          : dts[dt] == CLLM_DTYPE_BF16 ? cllm_bf16_to_f32(h[i])
                                                       : cllm_f16_to_f32(h[i]);
            }
            const void *src = dts[dt] == CLLM_DTYPE_F32 ? (const void *)w : (const void *)h;
            assert_int_equal(cllm_quantize_int8(src, dts[dt], rows, cols, group, q, sc), CLLM_OK);
            const uint64_t g = group ? group : cols, gpr = (cols + g - 1) / g;
            for (uint64_t r = 0; r < rows; r++) {
                for (uint64_t k = 0; k < gpr; k++) {
                    float amax = 0;
                    for (uint64_t c = k * g; c < cols && c < (k + 1) * g; c++)
                        amax = fabsf(wide[r * cols + c]) > amax ? fabsf(wide[r * cols + c]) : amax;
                    const float scale = amax / 127.0f;
                    assert_memory_equal(&sc[r * gpr + k], &scale, 4);
                    for (uint64_t c = k * g; c < cols && c < (k + 1) * g; c++)
                        if (q[r * cols + c] != quant_ref(wide[r * cols + c], scale))
                            fail_msg("dtype %d row %llu col %llu: %d, spec %d", (int)dts[dt],
                                     (unsigned long long)r, (unsigned long long)c,
                                     q[r * cols + c], quant_ref(wide[r * cols + c], scale));
                }
            }
            free(h), free(wide);
        }
    }
    w[5 * cols + 40] = INFINITY;
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, rows, cols, 0, q, sc),
                     CLLM_ERR_UNSUPPORTED);
    w[5 * cols + 40] = NAN;
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, rows, cols, 16, q, sc),
                     CLLM_ERR_UNSUPPORTED);
    free(w), free(sc), free(q);
}

// ---- f16 split/join: grouped paths against the bit-by-bit format -------------------------------

// Random f16 patterns, odd counts, joins of every sub-range start and length mod 8.
static void test_f16_split_join(void **state) {
    (void)state;
    const uint64_t n = 203;
    uint16_t src[203], back[203];
    uint8_t exps[203], plane[(203 * 11 + 7) / 8 + 1];
    uint64_t seed = 11;
    for (uint64_t i = 0; i < n; i++) src[i] = (uint16_t)cllm_test_rand(&seed);
    for (uint64_t m = 0; m <= n; m += (m < 20 ? 1 : 37)) {
        memset(plane, 0xee, sizeof plane);
        memset(plane, 0, (m * 11 + 7) / 8);
        cllm_float_split(src, CLLM_DTYPE_F16, m, exps, plane);
        assert_int_equal(plane[(m * 11 + 7) / 8], 0xee);  // nothing written past the plane
        for (uint64_t i = 0; i < m; i++) {  // the format: field i at bit 11 i, LSB first
            uint32_t v = 0;
            for (int b = 0; b < 11; b++)
                v |= (uint32_t)((plane[(11 * i + b) / 8] >> ((11 * i + b) % 8)) & 1u) << b;
            assert_int_equal(v, ((src[i] >> 5) & 0x400u) | (src[i] & 0x3ffu));
            assert_int_equal(exps[i], (src[i] >> 10) & 0x1fu);
        }
        for (uint64_t first = 0; first < m && first < 19; first++) {
            for (uint64_t len = 0; first + len <= m; len += (len < 20 ? 1 : 29)) {
                memset(back, 0, sizeof back);
                cllm_float_join(exps + first, plane, CLLM_DTYPE_F16, first, len, back);
                assert_memory_equal(back, src + first, 2 * len);
            }
        }
    }
}

// LEFT predictor round trips for row lengths around the 16-byte vector width.
static void test_left_predictor_rows(void **state) {
    (void)state;
    static const uint64_t widths[] = {1, 15, 16, 17, 33, 64, 100};
    uint64_t seed = 5;
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
        const uint64_t rows = 9, cols = widths[k];
        uint16_t *w = malloc(rows * cols * 2), *back = malloc(rows * cols * 2);
        for (uint64_t i = 0; i < rows * cols; i++)
            w[i] = cllm_f32_to_bf16((float)cllm_test_normal(&seed) * 0.02f);
        cllm_encode_params p = {.codec = CLLM_CODEC_LOSSLESS, .predictor = CLLM_PRED_LEFT,
                                .n_threads = 1, .block_symbols = 3 * cols};
        cllm_coded c;
        assert_int_equal(cllm_encode_tensor(w, CLLM_DTYPE_BF16, rows, cols, &p, &c), CLLM_OK);
        assert_int_equal(cllm_decode_tensor(&c.info, c.payload, c.payload_size, back,
                                            rows * cols * 2, NULL, 0, 1),
                         CLLM_OK);
        assert_memory_equal(back, w, rows * cols * 2);
        cllm_coded_free(&c);
        free(w), free(back);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_freq_build_sums),      cmocka_unit_test(test_freq_build_optimal),
        cmocka_unit_test(test_block_round_trips),    cmocka_unit_test(test_single_symbol),
        cmocka_unit_test(test_rejects_damaged_blocks), cmocka_unit_test(test_rejects_bad_tables),
        cmocka_unit_test(test_slot_packing),         cmocka_unit_test(test_avx2_matches_scalar),
        cmocka_unit_test(test_quantize_matches_spec), cmocka_unit_test(test_f16_split_join),
        cmocka_unit_test(test_left_predictor_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
