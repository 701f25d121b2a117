// State of the CPU backend, shared by its setup (cllm_cpu_backend.c: residency, buffers) and its
// forward pass (cllm_cpu_forward.c). Private to src/backend_cpu.
#ifndef CLLM_CPU_H
#define CLLM_CPU_H

#include "cllm_kernels.h"
#include "engine/cllm_backend.h"

// Tokens processed together: each weight row is read once per chunk. Longer sequences are run in
// chunks of this many tokens; results do not depend on it (every output is one dot product).
#define CLLM_CPU_BATCH 64

// The seven matrices of a layer as the kernels see them.
typedef struct cpu_layer_views {
    cllm_wview wq, wk, wv, wo, gate, up, down;
} cpu_layer_views;

typedef struct cpu_state {
    const cllm_weights *w;
    cllm_model_config cfg;
    cllm_weights_mode mode;
    cllm_dtype kv_dtype;
    int n_threads;
    size_t ctx;                   // positions in the KV cache
    size_t dim, q_dim, kv_dim, hidden, vocab, head_dim;

    // RMSNorm weights in fp32, decoded at load whatever the mode: (n_layers, dim) each, (dim)
    float *norm_att, *norm_ffn, *norm_final;

    // Decoded matrices. Resident: one buffer per tensor, views fixed at load. Stream: the layer
    // views are rebuilt per layer, pointing into `scratch`. Raw tensors are read in place from
    // the mapping in both modes (their decoded bytes are the payload).
    cpu_layer_views *resident_views; // resident: (n_layers)
    void **resident_bufs;            // resident: every buffer allocated (freed at the end)
    size_t n_resident_bufs;
    uint64_t decoded_bytes;
    cllm_wview embed_view, cls_view; // valid when embed_ready / cls_ready
    int embed_ready, cls_ready;

    uint8_t *scratch;                // stream: one decoded layer (or a chunk of the classifier)
    size_t scratch_bytes;
    uint8_t *block_scratch;          // n_threads * block_stride bytes for cllm_decode_blocks
    size_t block_stride;

    // KV cache: (n_layers, ctx, kv_dim) elements of kv_dtype, keys and values apart.
    uint8_t *kcache, *vcache;
    size_t kv_esize;
    uint64_t kv_bytes;

    // Activations for up to CLLM_CPU_BATCH tokens.
    float *x;          // (B, dim) residual stream
    float *xb;         // (B, max(dim, q_dim)) normalised input / block output
    float *q;          // (B, q_dim)
    float *k, *v;      // (B, kv_dim)
    float *att;        // (B, q_dim) attention output before Wo
    float *hb, *hb2;   // (B, hidden) gate and up projections
    float *scores;     // (n_threads, ctx) attention weights, one row per thread
    float *rope_cos, *rope_sin; // (B, head_dim / 2) angles of each token's position
    double *freqs;     // (head_dim / 2)
    uint64_t act_bytes;

    uint64_t n_tokens, n_forward;
    double decode_seconds, compute_seconds, load_seconds;
} cpu_state;

// A view of tensor `w` decoded at `data` (kind from its codec and dtype, scales from its payload).
cllm_wview cpu_view(const cllm_weight *w, const void *data);
// A view of rows [r0, r1) of `w` decoded at `data` (int8 scales of those rows).
cllm_wview cpu_view_rows(const cllm_weight *w, const void *data, uint64_t r0, uint64_t r1);
// 1 when `w` can be read in place from its payload (raw, aligned for its dtype).
int cpu_in_place(const cllm_weight *w);

// Views of layer l: resident ones, or (stream) the layer decoded into the scratch now.
cllm_status cpu_layer_views_get(cpu_state *s, uint32_t l, cpu_layer_views *out);

cllm_status cpu_forward(void *state, const int32_t *tokens, size_t n, size_t pos, float *logits,
                        int all_logits);

#endif
