// Byte layout of one coded tensor payload, derived from its description alone, so the writer,
// the reader's validation, the CPU decoder and the CUDA decoder agree by construction.
// Compiles as C11 and under nvcc.
//
// RAW:       data[rows * cols * dtype_size]
// LOSSLESS:  freq[256] uint16 | index[n_blocks + 1] uint64 | streams[stream_bytes] | pad to 64 |
//            plane[ceil(n * raw_bits / 8)] | pad to 64
// INT8:      freq[256] uint16 | index[n_blocks + 1] uint64 | streams[stream_bytes] | pad to 64 |
//            scales[rows * groups_per_row] float32 | pad to 64
//
// index[b] is the offset of block b's bytes from the start of `streams`; index[0] = 0,
// index[n_blocks] = stream_bytes, every entry a multiple of 4, each block at least
// CLLM_RANS_STATE_BYTES long (see cllm_rans_layout.h for a block's bytes).
// Lossless symbols are the exponent fields (8 bits for bf16/f32, 5 for f16); `plane` holds the
// remaining sign+mantissa bits of element i at bit offset i * raw_bits, LSB first, where
// raw_bits = 8 (bf16: sign<<7 | mantissa7), 11 (f16: sign<<10 | mantissa10) or
// 24 (f32: sign<<23 | mantissa23). Int8 symbols are the int8 values as bytes (two's complement).
// With predictor LEFT the coded symbol of element (r, c) is sym(r, c) - sym(r, c - 1) mod 256,
// with sym(r, -1) = 0.
// All padding bytes are zero.
#ifndef CLLM_PAYLOAD_H
#define CLLM_PAYLOAD_H

#include <stdint.h>

#define CLLM_PAYLOAD_ALIGN 64
#define CLLM_FREQ_BYTES (2 * 256)

enum { CLLM_PRED_NONE = 0, CLLM_PRED_LEFT = 1, CLLM_PRED_COUNT_ = 2 };

// Everything that determines a payload's layout. Validated by cllm_payload_layout.
typedef struct cllm_coded_desc {
    uint32_t codec;          // cllm_codec
    uint32_t dtype;          // cllm_dtype of the source
    uint64_t rows, cols;
    uint32_t scale_bits;     // coded codecs
    uint32_t rows_per_block; // coded codecs, >= 1
    uint32_t group_size;     // int8: 1..cols (cols = per channel)
    uint32_t predictor;      // CLLM_PRED_*
    uint64_t n_blocks;       // = ceil(rows / rows_per_block)
    uint64_t stream_bytes;   // total bytes of all blocks
} cllm_coded_desc;

// Offsets (from the payload start) and sizes of each section.
typedef struct cllm_payload_layout_t {
    uint64_t freq_off;
    uint64_t index_off;
    uint64_t streams_off;
    uint64_t side_off;       // lossless: plane; int8: scales; raw: the data (0)
    uint64_t side_size;
    uint64_t total_size;     // the payload's size including final padding
    uint32_t raw_bits;       // lossless: bits per element in the plane
    uint64_t groups_per_row; // int8
} cllm_payload_layout_t;

#endif
