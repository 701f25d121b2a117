// Device helpers shared by the int8 kernels (cllm_cuda_gemm.cu, cllm_cuda_kernels.cu).
#ifndef CLLM_CUDA_I8_CUH
#define CLLM_CUDA_I8_CUH

#include <cuda_bf16.h>
#include <stdint.h>

// Byte I of u (an int8 value) as an exact float, without a conversion instruction: with the sign
// bit flipped the byte is u8 = q + 128, and the float with bits 0x4b0000|u8 is 2^23 + u8.
template <int I>
static __device__ __forceinline__ float cllm_i8_float(uint32_t u) {
    return __fsub_rn(__uint_as_float(__byte_perm(u ^ 0x80808080u, 0x4b000000u, 0x7540 | I)),
                     8388736.0f);
}

// The four int8 values of u times s, each rounded to bf16 (nearest even), as two words (values
// 0 and 1, then 2 and 3; the lower value in the lower half): bit for bit
// __float2bfloat16_rn((float)q * s) per value.
static __device__ __forceinline__ uint2 cllm_i8x4_bf16(uint32_t u, float s) {
    const __nv_bfloat162 a = __floats2bfloat162_rn(__fmul_rn(cllm_i8_float<0>(u), s),
                                                   __fmul_rn(cllm_i8_float<1>(u), s));
    const __nv_bfloat162 b = __floats2bfloat162_rn(__fmul_rn(cllm_i8_float<2>(u), s),
                                                   __fmul_rn(cllm_i8_float<3>(u), s));
    return make_uint2(*(const uint32_t *)&a, *(const uint32_t *)&b);
}

#endif
