// The L2 prefetch a launch may carry (cllm_cuda_prefetch, src/cuda/cllm_cuda.h).
#ifndef CLLM_CUDA_PF_CUH
#define CLLM_CUDA_PF_CUH

#include "cllm_cuda.h"

// Where a kernel issues its prefetch: 1 at entry, before the PDL wait (while the kernel ahead
// still runs), 0 right after the wait.
#ifndef CLLM_PF_EARLY
#define CLLM_PF_EARLY 0
#endif

// The share of the L2 a hint may fill, in percent (cllm_cuda_ops.cu: cuda_prefetch).
#ifndef CLLM_PF_PCT
#define CLLM_PF_PCT 70
#endif

// This thread's share of the regions: 128-byte lines t, t + threads, ... of each (prefetch.L2
// per line: fire and forget, no registers held).
static __device__ __forceinline__ void cllm_l2_prefetch(const cllm_cuda_prefetch &pf) {
    const uint64_t nt = (uint64_t)gridDim.x * gridDim.y * gridDim.z * blockDim.x;
    const uint64_t t =
        (((uint64_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x) * blockDim.x +
        threadIdx.x;
    for (uint32_t i = 0; i < pf.n && i < CLLM_CUDA_PF_MAX; i++)
        for (uint64_t off = t * 128; off < pf.bytes[i]; off += nt * 128)
            asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)pf.p[i] + off));
}

#endif
