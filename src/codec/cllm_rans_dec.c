// 32-lane interleaved rANS block decoder (layout: cllm_rans_layout.h). Input is untrusted: the
// decoder carries an end pointer, and a block is accepted only if every word is consumed, every
// lane ends at L and the padding is zero.
//
// Safety of the state arithmetic on any input: the table is validated (sums to M), so for x in
// [L, 2^32) one step gives freq * (x >> sb) + bias < 2^32, and since x >> sb >= 2^(16-sb) >= 16
// the result is >= 16, so one 16-bit renormalisation restores x >= L.
#include "cllm_codec.h"

#include <string.h>

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
static inline __attribute__((always_inline)) const uint8_t *step_fast(const cllm_rans_slot *slot, uint32_t sb, uint32_t *x,
                                       const uint8_t *p, uint8_t *out) {
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

cllm_status cllm_rans_decode_block(const cllm_rans_dec_table *t, const uint8_t *src, size_t size,
                                   uint8_t *syms, uint64_t n) {
    RETURN_IF(!t || !src || (!syms && n), CLLM_ERR_ARG, "decode block: NULL argument");
    RETURN_IF(t->scale_bits < CLLM_RANS_MIN_SCALE_BITS || t->scale_bits > CLLM_RANS_MAX_SCALE_BITS,
              CLLM_ERR_ARG, "decode block: table scale_bits %u out of range", t->scale_bits);
    RETURN_IF(size < CLLM_RANS_STATE_BYTES || size % 4 != 0, CLLM_ERR_CORRUPT,
              "rANS block: %zu bytes, not a multiple of 4 of at least %d", size,
              CLLM_RANS_STATE_BYTES);
    uint32_t x[CLLM_RANS_LANES];
    for (int l = 0; l < CLLM_RANS_LANES; l++) {
        x[l] = cllm_load_le32(src + 4 * l);
        RETURN_IF(x[l] < CLLM_RANS_L, CLLM_ERR_CORRUPT,
                  "rANS block: lane %d starts in state 0x%08x, below L", l, x[l]);
    }
    const uint8_t *p = src + CLLM_RANS_STATE_BYTES, *end = src + size;
    const uint32_t sb = t->scale_bits;
    const uint64_t full = n / CLLM_RANS_LANES;
    const uint32_t rest = (uint32_t)(n % CLLM_RANS_LANES);
    uint64_t step = 0;
    // Fast steps while a whole step's worth of words (64 bytes) remains; the tail is checked.
    // The default scale gets its own loop so the shift and mask are constants.
    if (sb == CLLM_RANS_DEFAULT_SCALE_BITS) {
        for (; step < full && end - p >= 2 * CLLM_RANS_LANES; step++)
            p = step_fast(t->slot, CLLM_RANS_DEFAULT_SCALE_BITS, x, p,
                          syms + step * CLLM_RANS_LANES);
    }
    for (; step < full && end - p >= 2 * CLLM_RANS_LANES; step++)
        p = step_fast(t->slot, sb, x, p, syms + step * CLLM_RANS_LANES);
    for (; step < full; step++) {
        p = step_checked(t->slot, sb, x, p, end, syms + step * CLLM_RANS_LANES, CLLM_RANS_LANES);
        RETURN_IF(!p, CLLM_ERR_CORRUPT, "rANS block truncated at step %llu",
                  (unsigned long long)step);
    }
    if (rest) {
        p = step_checked(t->slot, sb, x, p, end, syms + full * CLLM_RANS_LANES, rest);
        RETURN_IF(!p, CLLM_ERR_CORRUPT, "rANS block truncated at its last step");
    }
    return check_end(x, p, end);
}
