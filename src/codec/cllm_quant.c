// Symmetric int8 quantisation, per row or per group of `group_size` consecutive weights of a row.
//
// The exact arithmetic (IEEE float32, round-to-nearest, no fused or reassociated operations; the
// library is built without -ffast-math), so that `verify` can re-quantise bit for bit:
//   w      = the source element widened exactly to float (bf16/f16 -> f32 is exact)
//   amax   = max over the group of fabsf(w)                       (exact)
//   scale  = amax / 127.0f                                        (one float division)
//   q      = 0                                    if scale == 0 (all-zero group, or amax / 127
//                                                 underflowing to 0: amax < ~1.1e-43)
//          = (int8) clamp(roundf(w / scale), -127, 127)   otherwise (one float division; roundf
//                                                 rounds halves away from zero)
// scales[row * groups_per_row + g] = scale (0 for a zero group). A non-finite weight anywhere in
// the tensor is CLLM_ERR_UNSUPPORTED.
#include "cllm_codec.h"
#include "../common/cllm_half.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Widens elements [0, n) of src (any supported dtype) to float.
static void widen(const uint8_t *src, cllm_dtype dtype, uint64_t n, float *dst) {
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        switch (dtype) {
        case CLLM_DTYPE_F32: memcpy(&dst[i], src + 4 * i, 4); break;
        case CLLM_DTYPE_BF16:
            memcpy(&h, src + 2 * i, 2);
            dst[i] = cllm_bf16_to_f32(h);
            break;
        default:
            memcpy(&h, src + 2 * i, 2);
            dst[i] = cllm_f16_to_f32(h);
            break;
        }
    }
}

// Quantises one group of n floats; returns 0, or 1 when a value is not finite.
static int quantize_group(const float *w, uint64_t n, int8_t *q, float *scale) {
    float amax = 0.0f;
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(w[i])) return 1;
        float a = fabsf(w[i]);
        if (a > amax) amax = a;
    }
    const float s = amax / 127.0f;
    *scale = s;
    if (s == 0.0f) {
        memset(q, 0, n);
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        float r = roundf(w[i] / s);
        if (r > 127.0f) r = 127.0f;
        if (r < -127.0f) r = -127.0f;
        q[i] = (int8_t)r;
    }
    return 0;
}

cllm_status cllm_quantize_int8(const void *src, cllm_dtype dtype, uint64_t rows, uint64_t cols,
                               uint32_t group_size, int8_t *q, float *scales) {
    RETURN_IF(!src || !q || !scales, CLLM_ERR_ARG, "quantize: NULL argument");
    RETURN_IF(cllm_dtype_size(dtype) == 0, CLLM_ERR_ARG, "quantize: unknown dtype %d", (int)dtype);
    RETURN_IF(rows < 1 || cols < 1, CLLM_ERR_ARG, "quantize: empty shape %llux%llu",
              (unsigned long long)rows, (unsigned long long)cols);
    uint64_t n;
    RETURN_IF(cllm_mul_overflow_u64(rows, cols, &n) || cols > SIZE_MAX / sizeof(float),
              CLLM_ERR_ARG, "quantize: shape overflows");
    const uint64_t g = group_size ? group_size : cols;
    RETURN_IF(g > cols, CLLM_ERR_ARG, "quantize: group_size %u larger than cols %llu", group_size,
              (unsigned long long)cols);
    const uint64_t gpr = cols / g + (cols % g != 0);
    float *row = malloc((size_t)cols * sizeof(float));
    RETURN_IF(!row, CLLM_ERR_NOMEM, "quantize: cannot allocate a row of %llu floats",
              (unsigned long long)cols);
    const size_t esize = cllm_dtype_size(dtype);
    for (uint64_t r = 0; r < rows; r++) {
        widen((const uint8_t *)src + r * cols * esize, dtype, cols, row);
        for (uint64_t k = 0; k < gpr; k++) {
            uint64_t c0 = k * g, len = cols - c0 < g ? cols - c0 : g;
            if (quantize_group(row + c0, len, q + r * cols + c0, &scales[r * gpr + k])) {
                free(row);
                return CLLM_FAIL(CLLM_ERR_UNSUPPORTED,
                                 "quantize: non-finite weight in row %llu, group %llu",
                                 (unsigned long long)r, (unsigned long long)k);
            }
        }
    }
    free(row);
    return CLLM_OK;
}
