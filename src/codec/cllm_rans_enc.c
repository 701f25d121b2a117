// 32-lane interleaved rANS block encoder (layout: cllm_rans_layout.h).
//
// The encoder runs the decoder's schedule backwards: symbol j (lane j % 32, step j / 32) is coded
// for j = n-1 down to 0, so the words it emits, read back to front, are in the order the decoder
// consumes them (step by step, lanes 0..31). Words are written downwards from the end of the
// words region and moved into place once their count is known.
#include "cllm_codec.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the rANS coder stores 16-bit words in host order: little-endian hosts only"
#endif

// Codes syms[0..n) into the words region ending at `top` (growing down); returns the new bottom.
// Every lane starts at L, so the decoder must finish at L. Invariant: x in [L, 2^32) after each
// step; x >= x_max[s] needs exactly one 16-bit shift because x < 2^32 and x_max >= 2^(32-12).
// A symbol of frequency 0 is divided by 1 instead and makes the result non-zero (the block is
// then meaningless): checking in the loop costs less than a separate pass over the symbols.
// (A reciprocal multiply instead of the division measured no faster here: the loop is bound by
// the latency of each lane's state chain, not by the divider.)
static uint32_t encode_lanes(const cllm_rans_enc_table *t, const uint8_t *syms, uint64_t n,
                             uint8_t *top, uint32_t state[CLLM_RANS_LANES], uint8_t **bottom) {
    const uint32_t sb = t->scale_bits;
    uint8_t *w = top;
    uint32_t zero_freq = 0;
    for (int l = 0; l < CLLM_RANS_LANES; l++) state[l] = CLLM_RANS_L;
    for (uint64_t j = n; j-- > 0;) {
        const uint32_t lane = (uint32_t)(j & (CLLM_RANS_LANES - 1));
        const uint32_t s = syms[j];
        uint32_t x = state[lane];
        const uint32_t f = t->freq[s] | (t->freq[s] == 0);
        zero_freq |= t->freq[s] == 0;
        // Branchless emit: the 2 bytes below w are always free (the state area lies below the
        // words region), so writing them unconditionally and moving w only when needed is safe.
        const uint32_t need = (uint64_t)x >= t->x_max[s];
        const uint16_t word = (uint16_t)x;  // host is little-endian (checked below)
        memcpy(w - 2, &word, 2);
        w -= 2 * need;
        x >>= 16 * need;
        const uint32_t q = x / f;
        state[lane] = (q << sb) + (x - q * f) + t->cum[s];
    }
    *bottom = w;
    return zero_freq;
}

cllm_status cllm_rans_encode_block(const cllm_rans_enc_table *t, const uint8_t *syms, uint64_t n,
                                   uint8_t *dst, size_t cap, size_t *written) {
    RETURN_IF(!t || !dst || !written || (!syms && n), CLLM_ERR_ARG, "encode block: NULL argument");
    RETURN_IF(n > (UINT64_MAX - 64) / 2 || cap < cllm_rans_block_bound(n), CLLM_ERR_ARG,
              "encode block: capacity %zu below the bound for %llu symbols", cap,
              (unsigned long long)n);
    RETURN_IF(t->scale_bits < CLLM_RANS_MIN_SCALE_BITS || t->scale_bits > CLLM_RANS_MAX_SCALE_BITS,
              CLLM_ERR_ARG, "encode block: table scale_bits %u out of range", t->scale_bits);
    // Words region: dst + STATE_BYTES .. + 2n (at most one word per symbol).
    uint8_t *base = dst + CLLM_RANS_STATE_BYTES;
    uint32_t state[CLLM_RANS_LANES];
    uint8_t *bottom;
    if (encode_lanes(t, syms, n, base + 2 * n, state, &bottom)) {
        uint64_t j = 0;  // name the first symbol without probability (there is one)
        while (t->freq[syms[j]] != 0) j++;
        return CLLM_FAIL(CLLM_ERR_ARG, "encode block: symbol %d has frequency 0", syms[j]);
    }
    size_t k = (size_t)((base + 2 * n) - bottom) / 2;
    // Decoder order is the emission order reversed, which is memory order from `bottom` up.
    memmove(base, bottom, 2 * k);
    for (int l = 0; l < CLLM_RANS_LANES; l++) cllm_store_le32(dst + 4 * l, state[l]);
    size_t size = CLLM_RANS_STATE_BYTES + 2 * k;
    if (size % 4) {
        dst[size] = 0;
        dst[size + 1] = 0;
        size += 2;
    }
    *written = size;
    return CLLM_OK;
}
