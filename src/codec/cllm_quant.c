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

#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// Widens elements [0, n) of src (any supported dtype) to float. One loop per dtype so the bf16 and
// f32 loops vectorise.
static void widen(const uint8_t *src, cllm_dtype dtype, uint64_t n, float *dst) {
    uint16_t h;
    switch (dtype) {
    case CLLM_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CLLM_DTYPE_BF16:
        for (uint64_t i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            dst[i] = cllm_bf16_to_f32(h);
        }
        break;
    default:
        for (uint64_t i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            dst[i] = cllm_f16_to_f32(h);
        }
        break;
    }
}

// clamp(roundf(y), -127, 127) for y = w / scale, without the libm call (which blocks
// vectorisation and dominated the encoder's time). Bit-identical: clamping y to [-128, 128] first
// changes no result (anything beyond rounds beyond 127 and is clamped anyway), t = trunc(y) is
// then exact in int32, y - t is exact (the fraction of a float below 2^23 is representable), and
// roundf rounds half away from zero: |y - t| >= 0.5 moves t one step away from zero.
static inline int8_t round_clamp(float y) {
    y = y < -128.0f ? -128.0f : y;
    y = y > 128.0f ? 128.0f : y;
    int32_t t = (int32_t)y;
    const float frac = y - (float)t;
    t += (frac >= 0.5f) - (frac <= -0.5f);
    t = t > 127 ? 127 : t;
    t = t < -127 ? -127 : t;
    return (int8_t)t;
}

// round_clamp(w[i] / s) for i in [0, n rounded down to 16), 4 lanes at a time with the same
// operations (divps is the IEEE division; maxps/minps equal the scalar clamps for the non-NaN y
// here); returns the count done. GCC does not vectorise round_clamp itself.
static uint64_t quantize_sse2(const float *w, uint64_t n, float s, int8_t *q) {
#if defined(__SSE2__)
    const __m128 sv = _mm_set1_ps(s), lo = _mm_set1_ps(-128.0f), hi = _mm_set1_ps(128.0f);
    const __m128 half = _mm_set1_ps(0.5f), mhalf = _mm_set1_ps(-0.5f);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i t[4];
        for (int k = 0; k < 4; k++) {
            __m128 y = _mm_div_ps(_mm_loadu_ps(w + i + 4 * k), sv);
            y = _mm_min_ps(_mm_max_ps(y, lo), hi);
            const __m128i tr = _mm_cvttps_epi32(y);
            const __m128 frac = _mm_sub_ps(y, _mm_cvtepi32_ps(tr));
            const __m128i up = _mm_castps_si128(_mm_cmpge_ps(frac, half));   // -1: add 1
            const __m128i down = _mm_castps_si128(_mm_cmple_ps(frac, mhalf)); // -1: subtract 1
            t[k] = _mm_add_epi32(_mm_sub_epi32(tr, up), down);
        }
        const __m128i c127 = _mm_set1_epi16(127), m127 = _mm_set1_epi16(-127);
        const __m128i a = _mm_max_epi16(_mm_min_epi16(_mm_packs_epi32(t[0], t[1]), c127), m127);
        const __m128i b = _mm_max_epi16(_mm_min_epi16(_mm_packs_epi32(t[2], t[3]), c127), m127);
        _mm_storeu_si128((__m128i *)(void *)(q + i), _mm_packs_epi16(a, b));
    }
    return i;
#else
    (void)w, (void)n, (void)s, (void)q;
    return 0;
#endif
}

// Quantises one group of n floats; returns 0, or 1 when a value is not finite. amax is found on
// the bit patterns: for non-negative floats integer order is float order, and |w| >= inf (bits
// >= 0x7f800000) exactly when w is inf or NaN, so one integer max both finds amax (= the
// fabsf maximum, exactly) and detects non-finite values, and it vectorises.
static int quantize_group(const float *w, uint64_t n, int8_t *q, float *scale) {
    uint32_t amax_bits = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &w[i], 4);
        u &= 0x7fffffffu;
        amax_bits = u > amax_bits ? u : amax_bits;
    }
    if (amax_bits >= 0x7f800000u) return 1;
    float amax;
    memcpy(&amax, &amax_bits, 4);
    const float s = amax / 127.0f;
    *scale = s;
    if (s == 0.0f) {
        memset(q, 0, n);
        return 0;
    }
    uint64_t i = quantize_sse2(w, n, s, q);
    for (; i < n; i++) q[i] = round_clamp(w[i] / s);
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
