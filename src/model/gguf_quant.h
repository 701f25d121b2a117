// GGML tensor types as stored in GGUF files: names, block layouts, and dequantization to float32.
//
// Depends on common only. The specification is the reference dequantizer of the `gguf` Python
// package (gguf.quants.dequantize, version recorded in scripts/gen-gguf-quant-vectors.py), which
// follows ggml's dequantize_row_* functions: every result here is bit-identical to it, including
// those of subnormal and infinite fp16 scales; a NaN where it has a NaN (sign and payload of a
// NaN from arithmetic can depend on the compiler). tests/test_gguf_quant.c checks fixtures it
// produced.
//
// Block layouts, (elements, bytes) per block, little-endian; "fp16" is an IEEE binary16 scale:
//   Q4_0   (32, 18):   fp16 d, u8 qs[16]                   y = d * (q - 8)
//   Q4_1   (32, 20):   fp16 d, fp16 m, u8 qs[16]           y = d * q + m
//   Q5_0   (32, 22):   fp16 d, u32 qh, u8 qs[16]           y = d * (q - 16), bit 4 of q from qh
//   Q5_1   (32, 24):   fp16 d, fp16 m, u32 qh, u8 qs[16]   y = d * q + m
//   Q8_0   (32, 34):   fp16 d, i8 qs[32]                   y = q * d
//   Q2_K   (256, 84):  u8 scales[16], qs[64], fp16 d, fp16 dmin
//   Q3_K   (256, 110): u8 hmask[32], qs[64], scales[12], fp16 d
//   Q4_K   (256, 144): fp16 d, fp16 dmin, u8 scales[12], qs[128]
//   Q5_K   (256, 176): fp16 d, fp16 dmin, u8 scales[12], qh[32], qs[128]
//   Q6_K   (256, 210): u8 ql[128], qh[64], i8 scales[16], fp16 d
//   IQ4_NL (32, 18), IQ4_XS (256, 136), TQ1_0 (256, 54), TQ2_0 (256, 66), MXFP4 (32, 17)
// The bit positions of each quant are written out in gguf_quant.c.
#ifndef CLLM_GGUF_QUANT_H
#define CLLM_GGUF_QUANT_H

#include "../common/cllm_common.h"

#include <stddef.h>
#include <stdint.h>

// GGML tensor type ids as stored in GGUF files (ggml_type numbering; gaps are ids ggml retired).
enum {
    CLLM_GGML_F32 = 0,
    CLLM_GGML_F16 = 1,
    CLLM_GGML_Q4_0 = 2,
    CLLM_GGML_Q4_1 = 3,
    CLLM_GGML_Q5_0 = 6,
    CLLM_GGML_Q5_1 = 7,
    CLLM_GGML_Q8_0 = 8,
    CLLM_GGML_Q8_1 = 9,
    CLLM_GGML_Q2_K = 10,
    CLLM_GGML_Q3_K = 11,
    CLLM_GGML_Q4_K = 12,
    CLLM_GGML_Q5_K = 13,
    CLLM_GGML_Q6_K = 14,
    CLLM_GGML_Q8_K = 15,
    CLLM_GGML_IQ2_XXS = 16,
    CLLM_GGML_IQ2_XS = 17,
    CLLM_GGML_IQ3_XXS = 18,
    CLLM_GGML_IQ1_S = 19,
    CLLM_GGML_IQ4_NL = 20,
    CLLM_GGML_IQ3_S = 21,
    CLLM_GGML_IQ2_S = 22,
    CLLM_GGML_IQ4_XS = 23,
    CLLM_GGML_I8 = 24,
    CLLM_GGML_I16 = 25,
    CLLM_GGML_I32 = 26,
    CLLM_GGML_I64 = 27,
    CLLM_GGML_F64 = 28,
    CLLM_GGML_IQ1_M = 29,
    CLLM_GGML_BF16 = 30,
    CLLM_GGML_TQ1_0 = 34,
    CLLM_GGML_TQ2_0 = 35,
    CLLM_GGML_MXFP4 = 39,
    CLLM_GGML_NVFP4 = 40,
    CLLM_GGML_Q1_0 = 41,
    CLLM_GGML_TYPE_LIMIT_ = 42, // every known id is below this
};

// Name ("Q4_1", "F32", ...) of a type id, or NULL when the id is unknown to this build.
const char *cllm_ggml_type_name(uint32_t type);

// Elements per block and bytes per block of a type; returns 0 and sets nothing when the type is
// unknown; returns 1 for any known type (even one we cannot dequantize, so a reader can still
// size and skip it). F32/F16/BF16 (and the integer types): a block of 1 element.
// Q8_1 is 36 bytes per block, as in ggml (fp16 d and s); gguf-py's table still says 40.
int cllm_ggml_type_layout(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);

// 1 when cllm_ggml_dequantize supports the type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4. 0 otherwise.
int cllm_ggml_can_dequantize(uint32_t type);

// Bytes that `n` elements of `type` occupy (n / block_elems * block_bytes). The same count works
// for one row (n = the row length) or a whole tensor (n = all its elements).
// @return CLLM_ERR_UNSUPPORTED for an unknown type id, CLLM_ERR_CORRUPT when n is not a multiple
//         of the block size or the byte count overflows size_t; *bytes is set only on CLLM_OK.
cllm_status cllm_ggml_row_bytes(uint32_t type, uint64_t n, size_t *bytes);

// Dequantizes n elements (a multiple of the block size) of `type` from src into dst[0..n) as
// float32, exactly as the reference does (see the top of this file). src_size must equal
// cllm_ggml_row_bytes(type, n). Blocks are independent: a caller that streams may convert any
// run of whole blocks by itself (e.g. one row at a time) and gets the same floats.
// @return CLLM_OK; CLLM_ERR_UNSUPPORTED for an unknown type or one that cannot be dequantized;
//         CLLM_ERR_CORRUPT when n is not a multiple of the block size or src_size is not the
//         size of n elements; CLLM_ERR_ARG for NULL src/dst with n > 0. dst is untouched on error.
cllm_status cllm_ggml_dequantize(uint32_t type, const uint8_t *src, size_t src_size, float *dst,
                                 uint64_t n);

#endif
