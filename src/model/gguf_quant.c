// TEMPORARY stand-in for the gguf-quant branch; removed when that branch is merged.
#include "gguf_quant.h"

#include "../common/cllm_half.h"

#include <string.h>

static const struct {
    uint32_t type, elems, bytes;
    const char *name;
} layouts[] = {
    {CLLM_GGML_F32, 1, 4, "F32"},     {CLLM_GGML_F16, 1, 2, "F16"},
    {CLLM_GGML_Q4_0, 32, 18, "Q4_0"}, {CLLM_GGML_Q4_1, 32, 20, "Q4_1"},
    {CLLM_GGML_Q5_0, 32, 22, "Q5_0"}, {CLLM_GGML_Q5_1, 32, 24, "Q5_1"},
    {CLLM_GGML_Q8_0, 32, 34, "Q8_0"}, {CLLM_GGML_Q4_K, 256, 144, "Q4_K"},
    {CLLM_GGML_Q5_K, 256, 176, "Q5_K"}, {CLLM_GGML_Q6_K, 256, 210, "Q6_K"},
    {CLLM_GGML_BF16, 1, 2, "BF16"},
};

const char *cllm_ggml_type_name(uint32_t type) {
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (layouts[i].type == type) return layouts[i].name;
    return "unknown";
}

int cllm_ggml_type_layout(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes) {
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        if (layouts[i].type != type) continue;
        *block_elems = layouts[i].elems;
        *block_bytes = layouts[i].bytes;
        return 1;
    }
    return 0;
}

int cllm_ggml_can_dequantize(uint32_t type) {
    return type == CLLM_GGML_Q4_0 || type == CLLM_GGML_Q4_1 || type == CLLM_GGML_Q8_0;
}

cllm_status cllm_ggml_dequantize(uint32_t type, const uint8_t *src, size_t src_size, float *dst,
                                 uint64_t n) {
    uint32_t be = 0, bb = 0;
    RETURN_IF(!cllm_ggml_can_dequantize(type) || !cllm_ggml_type_layout(type, &be, &bb) ||
                  n % be || src_size != n / be * bb,
              CLLM_ERR_ARG, "dequantize: bad arguments");
    for (uint64_t b = 0; b < n / be; b++) {
        const uint8_t *p = src + b * bb;
        float *o = dst + b * be;
        float d = cllm_f16_to_f32(cllm_load_le16(p));
        if (type == CLLM_GGML_Q8_0) {
            for (int i = 0; i < 32; i++) o[i] = d * (float)(int8_t)p[2 + i];
        } else if (type == CLLM_GGML_Q4_0) {
            for (int i = 0; i < 16; i++) {
                o[i] = d * (float)((p[2 + i] & 15) - 8);
                o[i + 16] = d * (float)((p[2 + i] >> 4) - 8);
            }
        } else {
            float m = cllm_f16_to_f32(cllm_load_le16(p + 2));
            for (int i = 0; i < 16; i++) {
                o[i] = d * (float)(p[4 + i] & 15) + m;
                o[i + 16] = d * (float)(p[4 + i] >> 4) + m;
            }
        }
    }
    return CLLM_OK;
}
