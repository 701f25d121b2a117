// 32-lane interleaved rANS block decoder (layout: cllm_rans_layout.h). Input is untrusted: the
// decoder carries an end pointer, and a block is accepted only if every word is consumed, every
// lane ends at L and the padding is zero.
//
// Safety of the state arithmetic on any input: the table is validated (sums to M), so for x in
// [L, 2^32) one step gives freq * (x >> sb) + bias < freq << (32 - sb) <= 2^32, and since
// x >> sb >= 2^(16-sb) >= 4 (sb <= 14) the result is >= 4, so one 16-bit renormalisation
// restores x >= L.
//
// Two implementations of the same steps: the portable scalar loop (the reference) and, on x86-64
// CPUs with AVX2, eight lanes per vector (cllm_rans_decode_block picks at run time). Both consume
// words in the same order under the same bounds, so they accept and reject exactly the same
// blocks; tests/test_rans.c runs them against each other.
#include "cllm_codec.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CLLM_RANS_DEC_AVX2 1
#include <immintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the rANS decoder loads 16-bit words in host order: little-endian hosts only"
#endif

static inline uint32_t load_word(const uint8_t *p) {
    uint16_t w;
    memcpy(&w, p, 2);
    return w;
}

// One full step of all 32 lanes with no bounds checks: the caller guarantees at least
// 2 * CLLM_RANS_LANES readable bytes at p. Branchless: the word is always loaded, the new state
// is selected with a mask (a conditional expression here compiles to an unpredictable branch),
// and p moves only when the lane renormalises. Always inlined so a constant sb folds.
static inline __attribute__((always_inline)) const uint8_t *
step_fast(const cllm_rans_slot *slot, uint32_t sb, uint32_t *x, const uint8_t *p, uint8_t *out) {
    const uint32_t mask = (1u << sb) - 1;
    for (int l = 0; l < CLLM_RANS_LANES; l++) {
        uint32_t s = x[l];
        const uint32_t e = slot[s & mask];
        s = CLLM_RANS_SLOT_FREQ(e) * (s >> sb) + CLLM_RANS_SLOT_BIAS(e);
        out[l] = (uint8_t)e;
        const uint32_t need = s < CLLM_RANS_L;
        const uint32_t keep = need - 1;  // all ones when no word is needed
        const uint32_t w = load_word(p);
        x[l] = (s & keep) | (((s << 16) | w) & ~keep);
        p += 2 * need;
    }
    return p;
}

// A step of the first `lanes` lanes, checking the end pointer before every word. NULL when the
// block runs out of words (truncated or corrupt).
static const uint8_t *step_checked(const cllm_rans_slot *slot, uint32_t sb, uint32_t *x,
                                   const uint8_t *p, const uint8_t *end, uint8_t *out,
                                   uint32_t lanes) {
    const uint32_t mask = (1u << sb) - 1;
    for (uint32_t l = 0; l < lanes; l++) {
        uint32_t s = x[l];
        const uint32_t e = slot[s & mask];
        s = CLLM_RANS_SLOT_FREQ(e) * (s >> sb) + CLLM_RANS_SLOT_BIAS(e);
        out[l] = (uint8_t)e;
        if (s < CLLM_RANS_L) {
            if (end - p < 2) return NULL;
            s = (s << 16) | load_word(p);
            p += 2;
        }
        x[l] = s;
    }
    return p;
}

// After the last step: every lane back at L, all words read, 0 or 2 zero padding bytes.
static cllm_status check_end(const uint32_t *x, const uint8_t *p, const uint8_t *end) {
    for (int l = 0; l < CLLM_RANS_LANES; l++)
        RETURN_IF(x[l] != CLLM_RANS_L, CLLM_ERR_CORRUPT,
                  "rANS block: lane %d ends in state 0x%08x, not 0x%08x", l, x[l], CLLM_RANS_L);
    ptrdiff_t left = end - p;
    RETURN_IF(left != 0 && left != 2, CLLM_ERR_CORRUPT,
              "rANS block: %td bytes left after the last word", left);
    RETURN_IF(left == 2 && (p[0] | p[1]), CLLM_ERR_CORRUPT, "rANS block: non-zero padding");
    return CLLM_OK;
}

// Argument checks and the initial lane states, shared by both paths.
static cllm_status decode_begin(const cllm_rans_dec_table *t, const uint8_t *src, size_t size,
                                const uint8_t *syms, uint64_t n, uint32_t x[CLLM_RANS_LANES]) {
    RETURN_IF(!t || !src || (!syms && n), CLLM_ERR_ARG, "decode block: NULL argument");
    RETURN_IF(t->scale_bits < CLLM_RANS_MIN_SCALE_BITS || t->scale_bits > CLLM_RANS_MAX_SCALE_BITS,
              CLLM_ERR_ARG, "decode block: table scale_bits %u out of range", t->scale_bits);
    RETURN_IF(size < CLLM_RANS_STATE_BYTES || size % 4 != 0, CLLM_ERR_CORRUPT,
              "rANS block: %zu bytes, not a multiple of 4 of at least %d", size,
              CLLM_RANS_STATE_BYTES);
    for (int l = 0; l < CLLM_RANS_LANES; l++) {
        x[l] = cllm_load_le32(src + 4 * l);
        RETURN_IF(x[l] < CLLM_RANS_L, CLLM_ERR_CORRUPT,
                  "rANS block: lane %d starts in state 0x%08x, below L", l, x[l]);
    }
    return CLLM_OK;
}

// Steps [step, n / 32) and the partial last step with bounds checks, then the end checks.
static cllm_status decode_finish(const cllm_rans_dec_table *t, uint32_t *x, const uint8_t *p,
                                 const uint8_t *end, uint8_t *syms, uint64_t n, uint64_t step) {
    const uint64_t full = n / CLLM_RANS_LANES;
    const uint32_t rest = (uint32_t)(n % CLLM_RANS_LANES);
    for (; step < full; step++) {
        p = step_checked(t->slot, t->scale_bits, x, p, end, syms + step * CLLM_RANS_LANES,
                         CLLM_RANS_LANES);
        RETURN_IF(!p, CLLM_ERR_CORRUPT, "rANS block truncated at step %llu",
                  (unsigned long long)step);
    }
    if (rest) {
        p = step_checked(t->slot, t->scale_bits, x, p, end, syms + full * CLLM_RANS_LANES, rest);
        RETURN_IF(!p, CLLM_ERR_CORRUPT, "rANS block truncated at its last step");
    }
    return check_end(x, p, end);
}

// The portable reference decoder.
cllm_status cllm_rans_decode_block_scalar(const cllm_rans_dec_table *t, const uint8_t *src,
                                          size_t size, uint8_t *syms, uint64_t n) {
    uint32_t x[CLLM_RANS_LANES];
    TRY(decode_begin(t, src, size, syms, n, x));
    const uint8_t *p = src + CLLM_RANS_STATE_BYTES, *end = src + size;
    const uint32_t sb = t->scale_bits;
    const uint64_t full = n / CLLM_RANS_LANES;
    uint64_t step = 0;
    // Fast steps while a whole step's worth of words (64 bytes) remains; the rest is checked.
    // The default scale gets its own loop so the shift and mask are constants.
    if (sb == CLLM_RANS_DEFAULT_SCALE_BITS) {
        for (; step < full && end - p >= 2 * CLLM_RANS_LANES; step++)
            p = step_fast(t->slot, CLLM_RANS_DEFAULT_SCALE_BITS, x, p,
                          syms + step * CLLM_RANS_LANES);
    }
    for (; step < full && end - p >= 2 * CLLM_RANS_LANES; step++)
        p = step_fast(t->slot, sb, x, p, syms + step * CLLM_RANS_LANES);
    return decode_finish(t, x, p, end, syms, n, step);
}

#ifdef CLLM_RANS_DEC_AVX2
// lane_rank[m] byte i = number of set bits of m below bit i: for a group of 8 lanes whose
// renormalising lanes are the bits of m, the index (among the words that group reads) of lane
// i's word, i.e. the lane-order prefix count the layout prescribes. Built by the preprocessor.
#define RANK_BIT(m, i) (((m) >> (i)) & 1u)
#define RANK_BELOW(m, i)                                                                           \
    ((i) > 0 ? RANK_BIT(m, 0) : 0u) + ((i) > 1 ? RANK_BIT(m, 1) : 0u) +                          \
        ((i) > 2 ? RANK_BIT(m, 2) : 0u) + ((i) > 3 ? RANK_BIT(m, 3) : 0u) +                       \
        ((i) > 4 ? RANK_BIT(m, 4) : 0u) + ((i) > 5 ? RANK_BIT(m, 5) : 0u) +                       \
        ((i) > 6 ? RANK_BIT(m, 6) : 0u)
#define RANK_ROW(m)                                                                                \
    ((uint64_t)(RANK_BELOW(m, 1)) << 8 | (uint64_t)(RANK_BELOW(m, 2)) << 16 |                     \
     (uint64_t)(RANK_BELOW(m, 3)) << 24 | (uint64_t)(RANK_BELOW(m, 4)) << 32 |                    \
     (uint64_t)(RANK_BELOW(m, 5)) << 40 | (uint64_t)(RANK_BELOW(m, 6)) << 48 |                    \
     (uint64_t)(RANK_BELOW(m, 7)) << 56)
#define RANK_ROW4(m) RANK_ROW(m), RANK_ROW((m) + 1), RANK_ROW((m) + 2), RANK_ROW((m) + 3)
#define RANK_ROW16(m) RANK_ROW4(m), RANK_ROW4((m) + 4), RANK_ROW4((m) + 8), RANK_ROW4((m) + 12)
#define RANK_ROW64(m)                                                                              \
    RANK_ROW16(m), RANK_ROW16((m) + 16), RANK_ROW16((m) + 32), RANK_ROW16((m) + 48)
static const uint64_t lane_rank[256] = {RANK_ROW64(0u), RANK_ROW64(64u), RANK_ROW64(128u),
                                        RANK_ROW64(192u)};

// Eight lanes of one step. The 8 words at p are loaded whether or not they are needed (the
// caller guarantees 64 readable bytes from the step's first word); lane i that renormalises
// takes word lane_rank[m][i], and p advances by the words taken. *sym gets the 8 table entries
// (symbol in the low byte).
__attribute__((target("avx2,popcnt"))) static inline __m256i
group_avx2(const cllm_rans_slot *slot, __m128i sb, __m256i mask, __m256i *x, const uint8_t **p) {
    const __m256i e = _mm256_i32gather_epi32((const int *)slot, _mm256_and_si256(*x, mask), 4);
    const __m256i freq = _mm256_add_epi32(
        _mm256_and_si256(_mm256_srli_epi32(e, 8), _mm256_set1_epi32(0xfff)), _mm256_set1_epi32(1));
    const __m256i s = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srl_epi32(*x, sb)),
                                       _mm256_srli_epi32(e, 20));
    const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(s, 16), _mm256_setzero_si256());
    const uint32_t m = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    const __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)*p));
    const __m256i rank = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)lane_rank[m]));
    const __m256i w = _mm256_permutevar8x32_epi32(words, rank);
    *x = _mm256_blendv_epi8(s, _mm256_or_si256(_mm256_slli_epi32(s, 16), w), need);
    *p += 2 * (uint32_t)__builtin_popcount(m);
    return e;
}

// Whole steps while 64 bytes of words remain (the reads of the scalar fast path); returns the
// number of steps done, x and *p updated.
__attribute__((target("avx2,popcnt"))) static uint64_t
steps_avx2(const cllm_rans_dec_table *t, uint32_t *xs, const uint8_t **pp, const uint8_t *end,
           uint8_t *syms, uint64_t full) {
    const __m128i sb = _mm_cvtsi32_si128((int)t->scale_bits);
    const __m256i mask = _mm256_set1_epi32((int)((1u << t->scale_bits) - 1));
    const __m256i low = _mm256_set1_epi32(0xff);
    // packs leave the dwords in the order 0,2,4,6,1,3,5,7 of the wanted 8 dwords
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)xs);
    __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 8));
    __m256i x2 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 16));
    __m256i x3 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 24));
    const uint8_t *p = *pp;
    uint64_t step = 0;
    for (; step < full && end - p >= 2 * CLLM_RANS_LANES; step++) {
        const __m256i e0 = group_avx2(t->slot, sb, mask, &x0, &p);
        const __m256i e1 = group_avx2(t->slot, sb, mask, &x1, &p);
        const __m256i e2 = group_avx2(t->slot, sb, mask, &x2, &p);
        const __m256i e3 = group_avx2(t->slot, sb, mask, &x3, &p);
        const __m256i a = _mm256_packus_epi32(_mm256_and_si256(e0, low), _mm256_and_si256(e1, low));
        const __m256i b = _mm256_packus_epi32(_mm256_and_si256(e2, low), _mm256_and_si256(e3, low));
        const __m256i out = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order);
        _mm256_storeu_si256((__m256i *)(void *)(syms + step * CLLM_RANS_LANES), out);
    }
    _mm256_storeu_si256((__m256i *)(void *)xs, x0);
    _mm256_storeu_si256((__m256i *)(void *)(xs + 8), x1);
    _mm256_storeu_si256((__m256i *)(void *)(xs + 16), x2);
    _mm256_storeu_si256((__m256i *)(void *)(xs + 24), x3);
    *pp = p;
    return step;
}

static int have_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}
#endif

// The AVX2 decoder: CLLM_ERR_UNSUPPORTED when this build or CPU lacks AVX2.
cllm_status cllm_rans_decode_block_avx2(const cllm_rans_dec_table *t, const uint8_t *src,
                                        size_t size, uint8_t *syms, uint64_t n) {
#ifdef CLLM_RANS_DEC_AVX2
    RETURN_IF(!have_avx2(), CLLM_ERR_UNSUPPORTED, "decode block: this CPU has no AVX2");
    uint32_t x[CLLM_RANS_LANES];
    TRY(decode_begin(t, src, size, syms, n, x));
    const uint8_t *p = src + CLLM_RANS_STATE_BYTES, *end = src + size;
    uint64_t step = steps_avx2(t, x, &p, end, syms, n / CLLM_RANS_LANES);
    return decode_finish(t, x, p, end, syms, n, step);
#else
    (void)t, (void)src, (void)size, (void)syms, (void)n;
    return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "decode block: built without AVX2 support");
#endif
}

cllm_status cllm_rans_decode_block(const cllm_rans_dec_table *t, const uint8_t *src, size_t size,
                                   uint8_t *syms, uint64_t n) {
#ifdef CLLM_RANS_DEC_AVX2
    if (have_avx2()) return cllm_rans_decode_block_avx2(t, src, size, syms, n);
#endif
    return cllm_rans_decode_block_scalar(t, src, size, syms, n);
}
