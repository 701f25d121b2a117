// The CUDA backend: implements the backend seam (engine/cllm_backend.h) on one GPU.
//
// Weights modes: RAW / RESIDENT (every matrix decoded once at load, on the GPU, and kept decoded
// in VRAM), DEVICE (compressed payloads resident in VRAM, each matrix decoded just before use),
// STREAM (compressed payloads in pinned host memory, copied through a device staging ring and
// decoded on the GPU: only compressed bytes cross PCIe). Decodes run on their own streams, one
// launch per group of matrices used together, ahead of the kernels that read them. With a VRAM
// budget a planner picks one of the three per layer. The ops: cllm_cuda_ops.cu; the provider and
// its pipeline invariants: cllm_cuda_backend.cu; the plan: cllm_cuda_plan.cu.
// A plain C11 header.
#ifndef CLLM_CUDA_BACKEND_H
#define CLLM_CUDA_BACKEND_H

#include "engine/cllm_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CUDA op table and its weight provider (one for every weights mode, and for a VRAM budget).
// create fails with CLLM_ERR_DEVICE ("no CUDA device") when there is no usable GPU,
// CLLM_ERR_UNSUPPORTED for an f16 KV cache or a context above the attention limit; the
// provider's create with CLLM_ERR_NOMEM when the model does not fit the device (or the VRAM
// budget): the message says what it needs.
const cllm_backend_ops *cllm_backend_cuda(void);

#ifdef __cplusplus
}
#endif
#endif
