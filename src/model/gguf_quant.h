// TEMPORARY stand-in for the gguf-quant branch (F32/F16/BF16/Q4_0/Q4_1/Q8_0 only); removed when
// that branch is merged.
#ifndef CLLM_GGUF_QUANT_H
#define CLLM_GGUF_QUANT_H

#include "../common/cllm_common.h"

#include <stdint.h>

enum {
    CLLM_GGML_F32 = 0,
    CLLM_GGML_F16 = 1,
    CLLM_GGML_Q4_0 = 2,
    CLLM_GGML_Q4_1 = 3,
    CLLM_GGML_Q5_0 = 6,
    CLLM_GGML_Q5_1 = 7,
    CLLM_GGML_Q8_0 = 8,
    CLLM_GGML_Q4_K = 12,
    CLLM_GGML_Q5_K = 13,
    CLLM_GGML_Q6_K = 14,
    CLLM_GGML_BF16 = 30,
};

const char *cllm_ggml_type_name(uint32_t type);
// 1 and the block layout when the type is known, else 0.
int cllm_ggml_type_layout(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);
int cllm_ggml_can_dequantize(uint32_t type);
cllm_status cllm_ggml_dequantize(uint32_t type, const uint8_t *src, size_t src_size, float *dst,
                                 uint64_t n);

#endif
