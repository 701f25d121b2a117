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

// This thread's share of the regions: each region split in equal 16-byte-multiple chunks over
// the launch's threads (one prefetch instruction per thread and region at most).
static __device__ __forceinline__ void cllm_l2_prefetch(const cllm_cuda_prefetch &pf) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint64_t nt = (uint64_t)gridDim.x * gridDim.y * blockDim.x;
    const uint64_t t = ((uint64_t)blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
    for (uint32_t i = 0; i < pf.n && i < CLLM_CUDA_PF_MAX; i++) {
        const uint64_t chunk = ((pf.bytes[i] + nt - 1) / nt + 15) & ~15ull, off = t * chunk;
        if (off >= pf.bytes[i]) continue;
        const uint32_t len = (uint32_t)min(chunk, (uint64_t)pf.bytes[i] - off);
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;"
                     :: "l"((const char *)pf.p[i] + off), "r"(len) : "memory");
    }
#endif
}

#endif
