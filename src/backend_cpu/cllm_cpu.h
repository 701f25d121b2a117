// The CPU backend: the op table (cllm_cpu_ops.c) and the stream and resident weight providers
// (cllm_cpu_weights.c) over host memory and OpenMP threads. Private to src/backend_cpu.
#ifndef CLLM_CPU_H
#define CLLM_CPU_H

#include "engine/cllm_backend.h"

// The op table's state: what the ops need beyond their arguments.
typedef struct cpu_state {
    cllm_model_config cfg;
    int n_threads;
    size_t ctx;                  // positions in the KV cache
    size_t q_dim, kv_dim;
    float *scores;               // (n_threads, ctx) attention weights, one row per thread
    double *freqs;               // (head_dim / 2) RoPE frequencies
    float *rope_cos, *rope_sin;  // (CLLM_ENGINE_BATCH, head_dim / 2) angles of positions
    uint32_t *angles_pos;        // (CLLM_ENGINE_BATCH) the positions rope_cos/sin rows hold
    size_t angles_n;             // rows valid
    uint64_t act_bytes;
} cpu_state;

const cllm_provider_ops *cpu_provider(cllm_weights_mode mode);

#endif
