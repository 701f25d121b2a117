// The rANS stream layout shared by the C coder and the CUDA decoder. Compiles as C11 and under
// nvcc. This header is the specification; docs/FORMAT.md repeats it in prose.
//
// Coder: static rANS, 32-bit state x in [L, 2^32) with L = 2^16, 16-bit renormalisation words,
// probability scale M = 2^scale_bits with CLLM_RANS_MIN_SCALE_BITS <= scale_bits <=
// CLLM_RANS_MAX_SCALE_BITS. Alphabet: 256 byte symbols, frequency table of 256 uint16 that sums to M
// (absent symbols have frequency 0) with every frequency <= CLLM_RANS_MAX_FREQ (a bound that only
// constrains scale_bits > 12: it keeps the decoder's slot entry in 32 bits, see below).
//
//   decode:  slot = x & (M-1);  s = symbol of slot;  x = freq[s] * (x >> scale_bits) + slot - cum[s];
//            if (x < L) x = (x << 16) | next_word();
//   encode:  (the inverse, run backwards) if (x >= freq[s] << (32 - scale_bits)) { emit(x & 0xffff);
//            x >>= 16; }  x = ((x / freq[s]) << scale_bits) + (x % freq[s]) + cum[s];
//
// With scale_bits <= 16 one renormalisation word always suffices, so every decode step reads at
// most one word per lane.
//
// Scale choice: a present symbol costs at least 1/M of the probability space, so a small M
// overcharges the rare values of a distribution with a long tail. int8 weights have ~190 values
// rarer than 1/4096 (0.5% of the mass): 12 bits cost ~1.1% over the entropy there, 14 bits ~0.2%.
// Exponent distributions (lossless) have short tails but a mode above 1/4, which the frequency
// bound forbids beyond 12 bits; the encoder picks per tensor (cllm_tensor_enc.c).
//
// Blocks: a tensor is viewed as (rows, cols); a block is `rows_per_block` whole rows (the last
// block may have fewer), n = rows_in_block * cols symbols. Inside a block, 32 lanes are
// interleaved: symbol j of the block belongs to lane j % 32 and is decoded at step j / 32, so a
// warp decoding step t writes 32 consecutive symbols. At the last step only lanes
// j < n - 32 * (steps - 1) are active.
//
// Block bytes (little-endian):
//   uint32 state[32]   initial decoder state of each lane, each in [L, 2^32)
//   uint16 word[k]     renormalisation words in the order the decoder reads them: at each step,
//                      the active lanes that need a word take the next words in lane order
//                      0..31 (a warp: ballot, then popcount of the lower lanes)
//   0 or 2 zero bytes  padding to a multiple of 4
// After the last step every lane's state must equal L and all k words must have been read:
// a decoder that finds otherwise reports corruption.
#ifndef CLLM_RANS_LAYOUT_H
#define CLLM_RANS_LAYOUT_H

#include <stdint.h>

#define CLLM_RANS_LANES 32
#define CLLM_RANS_L (1u << 16)
#define CLLM_RANS_MIN_SCALE_BITS 8
#define CLLM_RANS_MAX_SCALE_BITS 14
#define CLLM_RANS_DEFAULT_SCALE_BITS 12     // lossless; int8 tries up to CLLM_RANS_INT8_SCALE_BITS
#define CLLM_RANS_INT8_SCALE_BITS 14
#define CLLM_RANS_MAX_FREQ 4096u            // every frequency <= 2^12 (any scale_bits)
#define CLLM_RANS_ALPHABET 256
#define CLLM_RANS_STATE_BYTES (4 * CLLM_RANS_LANES)
// Default target symbols per block (int8) before rounding to whole rows. A block's 128 state
// bytes and 8 index bytes are 0.33% of its coded size at 5 bits/symbol; the number of blocks sets
// how many independent chains a GPU decodes at once (a 7B int8 layer on an H100: 724 GB/s with
// 2^16, 481 GB/s with 2^17, 747 GB/s with 2^15, which adds 0.25% to the size and takes the
// worst 7B tensor to +0.72% over its bound).
#define CLLM_RANS_DEFAULT_BLOCK_SYMBOLS (1u << 16)
// Lossless tensors carry 8+ raw bits per weight beside the symbols, so smaller blocks (more
// independent chains for a GPU to decode at once: measured 1.07 TB/s instead of 0.75 TB/s on an
// H100 for a 7B layer) still cost only ~0.3% of the coded size in lane states.
#define CLLM_RANS_LOSSLESS_BLOCK_SYMBOLS (1u << 15)

// Decode table entry for one slot, packed so that one 32-bit load yields everything a decode step
// needs (freq <= CLLM_RANS_MAX_FREQ, and so slot - cum < freq, keeps each field in 12 bits):
//   bits 0..7   symbol
//   bits 8..19  freq[symbol] - 1
//   bits 20..31 slot - cum[symbol]
typedef uint32_t cllm_rans_slot;

#define CLLM_RANS_SLOT(sym, freq, bias)                                                            \
    ((uint32_t)(sym) | ((uint32_t)((freq) - 1) << 8) | ((uint32_t)(bias) << 20))
#define CLLM_RANS_SLOT_SYM(e) ((e) & 0xffu)
#define CLLM_RANS_SLOT_FREQ(e) ((((e) >> 8) & 0xfffu) + 1u)
#define CLLM_RANS_SLOT_BIAS(e) ((e) >> 20)

_Static_assert(CLLM_RANS_MAX_FREQ == 1u << 12, "slot packing holds 12-bit fields");
_Static_assert(CLLM_RANS_MAX_SCALE_BITS <= 15, "uint16 frequencies below M; >= 2 state bits above");
_Static_assert(sizeof(cllm_rans_slot) == 4, "slot entry is 32 bits");

#endif
