// Internal codec API: frequency tables, the 32-lane interleaved rANS block coder, the float
// split of the lossless codec, int8 quantisation, and whole-tensor encode/decode.
// The stream format is specified in cllm_rans_layout.h and cllm_payload.h.
#ifndef CLLM_CODEC_H
#define CLLM_CODEC_H

#include "../common/cllm_common.h"
#include "cllm_payload.h"
#include "cllm_rans_layout.h"

// ---- frequency tables -------------------------------------------------------------------------

// Normalises `counts` to frequencies summing to 2^scale_bits, every present symbol >= 1, chosen to
// minimise the coded size (greedy on the cost of each adjustment). All-zero counts: ARG.
cllm_status cllm_freq_build(const uint64_t counts[256], uint32_t scale_bits, uint16_t freq[256]);

// Checks an untrusted table: scale_bits in [MIN, MAX] and the frequencies sum to 2^scale_bits.
// CLLM_ERR_CORRUPT naming what is wrong.
cllm_status cllm_freq_validate(const uint16_t freq[256], uint32_t scale_bits);

// Coded size in bits that `freq` gives to a message with histogram `counts` (sum count*-log2 p).
double cllm_freq_cost_bits(const uint64_t counts[256], const uint16_t freq[256],
                           uint32_t scale_bits);

// Encoder-side table (frequencies, cumulative frequencies, renormalisation bounds).
typedef struct cllm_rans_enc_table {
    uint32_t scale_bits;
    uint32_t freq[256];
    uint32_t cum[256];
    uint64_t x_max[256];     // renormalise while x >= x_max[s]
} cllm_rans_enc_table;

// Decoder-side table: one packed slot entry per probability slot (2^scale_bits entries).
typedef struct cllm_rans_dec_table {
    uint32_t scale_bits;
    cllm_rans_slot slot[1u << CLLM_RANS_MAX_SCALE_BITS];
} cllm_rans_dec_table;

cllm_status cllm_rans_enc_table_init(cllm_rans_enc_table *t, const uint16_t freq[256],
                                     uint32_t scale_bits);
// Validates `freq` (untrusted: sums to 2^scale_bits, scale_bits in range) and builds the table.
// CLLM_ERR_CORRUPT when invalid.
cllm_status cllm_rans_dec_table_init(cllm_rans_dec_table *t, const uint16_t freq[256],
                                     uint32_t scale_bits);

// ---- one block ----------------------------------------------------------------------------------

// Upper bound on a block's coded bytes for n symbols.
static inline uint64_t cllm_rans_block_bound(uint64_t n) {
    return CLLM_RANS_STATE_BYTES + 2 * n + 4;
}

// Encodes n symbols into dst (capacity cap, at least cllm_rans_block_bound(n)); *written gets the
// block's size (a multiple of 4). Every symbol must have a non-zero frequency in the table.
cllm_status cllm_rans_encode_block(const cllm_rans_enc_table *t, const uint8_t *syms, uint64_t n,
                                   uint8_t *dst, size_t cap, size_t *written);

// Decodes n symbols from src[0..size) (untrusted). Checks that every word is consumed, the
// final states equal L and the padding is zero: CLLM_ERR_CORRUPT otherwise.
cllm_status cllm_rans_decode_block(const cllm_rans_dec_table *t, const uint8_t *src, size_t size,
                                   uint8_t *syms, uint64_t n);

// The two implementations behind cllm_rans_decode_block, exposed for tests and benchmarks: the
// scalar reference, and the AVX2 path (CLLM_ERR_UNSUPPORTED when the build or the CPU lacks AVX2).
// Both accept and reject exactly the same inputs.
cllm_status cllm_rans_decode_block_scalar(const cllm_rans_dec_table *t, const uint8_t *src,
                                          size_t size, uint8_t *syms, uint64_t n);
cllm_status cllm_rans_decode_block_avx2(const cllm_rans_dec_table *t, const uint8_t *src,
                                        size_t size, uint8_t *syms, uint64_t n);

// ---- payload layout -----------------------------------------------------------------------------

// Computes the layout of a payload from its description, validating every field and every
// product against overflow. CLLM_ERR_CORRUPT (with a message naming the field) when invalid.
// Rules beyond the byte layout: RAW has scale_bits = rows_per_block = group_size = predictor =
// n_blocks = stream_bytes = 0; coded codecs have 1 <= rows_per_block <= rows; lossless has
// group_size 0; stream_bytes is a multiple of 4 and >= n_blocks * CLLM_RANS_STATE_BYTES.
cllm_status cllm_payload_layout(const cllm_coded_desc *d, cllm_payload_layout_t *lay);

// Validates the frequency table and block index of a payload of `size` bytes (untrusted) against
// its layout: index monotone, multiples of 4, within stream_bytes, blocks large enough; `size`
// equals the layout's total_size; padding bytes (and unused bits of the plane's last byte) zero.
cllm_status cllm_payload_check(const cllm_coded_desc *d, const uint8_t *payload, uint64_t size);

// ---- float split (lossless) ---------------------------------------------------------------------

// Exponent symbols and sign+mantissa plane of n elements of `dtype`. plane capacity:
// ceil(n * raw_bits / 8) bytes, zero-initialised by the caller.
void cllm_float_split(const void *src, uint32_t dtype, uint64_t n, uint8_t *exps, uint8_t *plane);
// Inverse: rebuilds elements [first, first + n): exps[i] is the exponent of element first + i,
// `plane` is the whole tensor's plane (only the bytes holding those elements are read), dst[0]
// receives element `first`. Exponents are masked to their field width (the decoder rejects
// out-of-range f16 exponents before joining).
void cllm_float_join(const uint8_t *exps, const uint8_t *plane, uint32_t dtype, uint64_t first,
                     uint64_t n, void *dst);
uint32_t cllm_float_raw_bits(uint32_t dtype);

// ---- whole tensors -------------------------------------------------------------------------------

// Fills the description fields of a cllm_tensor_info from a coded desc and back.
void cllm_desc_to_info(const cllm_coded_desc *d, cllm_tensor_info *info);
// stream_bytes is not part of the info: cllm_info_to_desc leaves it 0, and
// cllm_desc_from_payload reads it from the payload's last index entry (bounds-checked, otherwise
// untrusted: cllm_payload_layout / cllm_payload_check validate it afterwards).
void cllm_info_to_desc(const cllm_tensor_info *info, cllm_coded_desc *d);
cllm_status cllm_desc_from_payload(const cllm_tensor_info *info, const uint8_t *payload,
                                   uint64_t size, cllm_coded_desc *d);

// Decodes rows [row_begin, row_end) of block-aligned range (row_begin and row_end multiples of
// rows_per_block, or row_end == rows) into `out` laid out as the whole tensor would be (out
// points at the tensor's first element; only the requested rows are written). Raw: one block
// (the range is [0, 0) or [0, 1)), copied.
// Lossless: source dtype values. Int8: int8 values (scales are read from the payload).
// `scratch` holds at least rows_per_block * cols bytes (lossless only; may be NULL otherwise).
// `d` must have passed cllm_payload_check for this payload (the freq table in `t` is its table);
// block offsets are re-checked against the stream bounds, and every block is decoded with the
// untrusted-input checks of cllm_rans_decode_block. Allocates nothing.
cllm_status cllm_decode_blocks(const cllm_coded_desc *d, const cllm_rans_dec_table *t,
                               const uint8_t *payload, uint64_t payload_size, uint64_t block_begin,
                               uint64_t block_end, void *out, uint8_t *scratch);

#endif
