// bf16 / fp16 <-> fp32 conversions, exact and branch-light. Compiles as C11 and under nvcc
// (host and device), so the CUDA kernels and the C reference share one definition.
#ifndef CLLM_HALF_H
#define CLLM_HALF_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define CLLM_HD __host__ __device__ static inline
#else
#define CLLM_HD static inline
#endif

CLLM_HD float cllm_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
CLLM_HD uint32_t cllm_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// bf16 is the top half of an fp32: widening is exact.
CLLM_HD float cllm_bf16_to_f32(uint16_t h) { return cllm_bits_to_f32((uint32_t)h << 16); }

// Round to nearest even; NaN stays NaN (quiet bit forced so truncation cannot make it inf).
CLLM_HD uint16_t cllm_f32_to_bf16(float f) {
    uint32_t u = cllm_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// IEEE binary16 -> fp32, exact for every input (subnormals, inf, NaN payloads kept).
CLLM_HD float cllm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1fu) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {  // subnormal: normalise
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    return cllm_bits_to_f32(u);
}

// fp32 -> binary16, round to nearest even, overflow to inf, NaN stays NaN.
CLLM_HD uint16_t cllm_f32_to_f16(float f) {
    uint32_t u = cllm_f32_to_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (a < 0x38800000u) {                                      // subnormal or zero in fp16
        if (a < 0x33000000u) return (uint16_t)sign;              // < 2^-25: rounds to 0
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;  // 14..24 extra bits dropped
        uint32_t half = 1u << (shift - 1);
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

#endif
