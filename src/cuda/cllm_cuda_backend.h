// The CUDA backend: implements the backend seam (engine/cllm_backend.h) on one GPU.
//
// Weights modes: RAW / RESIDENT (every matrix decoded once at load, on the GPU, and kept decoded
// in VRAM), DEVICE (compressed payloads resident in VRAM, each matrix decoded just before use),
// STREAM (compressed payloads in pinned host memory, copied through a device staging ring and
// decoded on the GPU: only compressed bytes cross PCIe). Decodes run on their own streams, one
// launch per group of matrices used together, ahead of the kernels that read them. With a VRAM
// budget a planner picks one of the three per layer. Design notes and pipeline invariants: cllm_cuda_forward.cu.
// A plain C11 header.
#ifndef CLLM_CUDA_BACKEND_H
#define CLLM_CUDA_BACKEND_H

#include "engine/cllm_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CUDA backend table. create fails with CLLM_ERR_DEVICE ("no CUDA device") when there is no
// usable GPU, CLLM_ERR_UNSUPPORTED for an f16 KV cache or a context above the attention limit,
// CLLM_ERR_NOMEM when the model does not fit the device (or the VRAM budget): the message says
// what it needs.
const cllm_whole_backend *cllm_backend_cuda(void);

// Per-layer split of the last forward call's final chunk, in seconds, for benchmarks: index l <
// n_layers is layer l, index n_layers the classifier. Each is the busy time of one engine, and
// the three overlap: copy: copy-engine time of the layer's streamed payloads; decode: the
// layer's decode launches (on the decode streams, ahead of compute); compute: the compute
// stream's time over the layer less its waits for decodes. Arrays hold n_layers + 1 values; NULL
// arrays are skipped. Graph replays (batch-1 steps with nothing streamed) report the whole step
// as compute of index n_layers. @return CLLM_OK, ARG (n smaller than n_layers + 1).
cllm_status cllm_cuda_backend_layer_times(const void *state, double *copy_s, double *decode_s,
                                          double *compute_s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
