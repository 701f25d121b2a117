// Internal to the .cu files: CUDA headers, the C headers of the library with C linkage, and the
// error-check macros. Never included from C.
#ifndef CLLM_CUDA_CHECK_H
#define CLLM_CUDA_CHECK_H

#ifndef __CUDACC__
#error "cllm_cuda_check.h is for .cu files"
#endif

#include <cuda_runtime.h>

// The C headers use C11 _Static_assert, which C++ spells static_assert.
#ifndef _Static_assert
#define _Static_assert static_assert
#endif

extern "C" {
#include "../codec/cllm_codec.h"
#include "../common/cllm_common.h"
}
#include "../common/cllm_half.h"
#include "cllm_cuda.h"

// Returns CLLM_ERR_DEVICE naming the call and the CUDA error string when `call` fails.
#define CLLM_CUDA_TRY(call)                                                                        \
    do {                                                                                           \
        cudaError_t cuda_err_ = (call);                                                            \
        if (cuda_err_ != cudaSuccess)                                                              \
            return cllm_fail(CLLM_ERR_DEVICE, __FILE__, __LINE__, "%s: %s", #call,                 \
                             cudaGetErrorString(cuda_err_));                                       \
    } while (0)

// After a <<<...>>> launch: configuration errors (and sticky earlier faults).
#define CLLM_CUDA_CHECK_LAUNCH(what)                                                               \
    do {                                                                                           \
        cudaError_t cuda_err_ = cudaGetLastError();                                                \
        if (cuda_err_ != cudaSuccess)                                                              \
            return cllm_fail(CLLM_ERR_DEVICE, __FILE__, __LINE__, "launch of %s: %s", (what),     \
                             cudaGetErrorString(cuda_err_));                                       \
    } while (0)

#define CLLM_STREAM(s) ((cudaStream_t)(s))

#endif
