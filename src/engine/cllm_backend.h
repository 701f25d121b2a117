// The backend seam: an op table and weight providers (see ../shared/STYLE.md, "The engine owns
// the model; backends own the hardware").
//
// The engine (cllm_forward.c) writes the Llama block order once and calls these ops; a backend
// implements the arithmetic on its hardware, and a weight provider per placement hands the engine
// a layer's weights and takes them back. Every pointer an op receives (activations, KV cache,
// weight data) lives in the backend's memory: what its `alloc` returned or what its provider
// handed out. The engine validates every argument of a forward call (token ids, positions,
// capacities) before any op runs, so ops trust their inputs and only report what they alone can
// detect (a corrupt block, a device failure).
//
// Shapes below: T = tokens of a step (<= the backend's batch), D = dim, Q = n_heads * head_dim,
// K = n_kv_heads * head_dim, H = hidden_dim.
#ifndef CLLM_BACKEND_H
#define CLLM_BACKEND_H

#include "cllm_weights.h"
#include "ref/cllm_ref.h"

// Tokens the engine runs through the layers together: each weight row is read once per chunk.
// Longer calls are split into chunks of this many; on the CPU results do not depend on it (every
// output is one dot product).
#define CLLM_ENGINE_BATCH 64

// A layer's weights as a provider hands them out, indexed by cllm_layer_tensor: the two norm
// weights (F32 views of shape (1, D)) and the matrices of the acquired decode group.
typedef struct cllm_layer_view {
    cllm_wview t[CLLM_LAYER_N_TENSORS];
} cllm_layer_view;

// The tensors outside the layers.
typedef enum cllm_global_tensor {
    CLLM_GLOBAL_EMBED = 0,      // (vocab, D)
    CLLM_GLOBAL_NORM = 1,       // (1, D), F32
    CLLM_GLOBAL_CLASSIFIER = 2, // (vocab, D): lm_head, or the embedding when tied
} cllm_global_tensor;

// One layer's slice of the KV cache: n_slots sequences of (ctx, K) elements of `dtype` each, for
// keys and for values; slot s starts s * ctx * K elements after k (and v).
typedef struct cllm_kv_layer {
    void *k, *v;
    cllm_dtype dtype; // F32 or F16
    size_t ctx;
    uint32_t n_slots;
} cllm_kv_layer;

// What one step of the forward pass computes: n_tok tokens, token t belonging to the sequence in
// KV slot slot[t] at position pos[t]. Tokens of one slot come in increasing positions; the slot's
// positions below pos[t] hold keys and values (earlier steps', or this step's earlier tokens, which
// rope_kv stores before attention reads them). The engine checked every entry: slot < n_slots,
// pos < ctx, no hole. Host arrays, valid while the step runs.
typedef struct cllm_step {
    size_t n_tok;              // 1..the backend's batch (>= CLLM_ENGINE_BATCH)
    const uint32_t *pos;       // (n_tok)
    const uint32_t *slot;      // (n_tok)
    uint32_t max_pos;          // 1 + max pos[t]: the longest attention span of the step
    size_t n_out;              // tokens whose logits the step computes (0..n_tok)
    const uint32_t *out_tok;   // (n_out) their indices in the step, increasing
} cllm_step;

// A weight provider: one placement of the weights (decoded resident, decoded just in time into
// reused scratch, compressed in device memory, ...). The engine acquires a layer's decode groups
// (model/cllm_layout.h: q/k/v, o, gate/up, down) in order, one at a time, each released before
// the next is acquired, and at most one global-tensor range, never while a group is held; views
// stay valid until their release. Providers count their own decode time and memory.
typedef struct cllm_provider_ops {
    const char *name;
    // Creates the provider on the backend state `be` (the backend outlives it). `w` and its
    // container outlive the provider. Load-time decoding happens here.
    // @return CLLM_OK, NOMEM, CORRUPT, DEVICE.
    cllm_status (*create)(void *be, const cllm_weights *w, void **prov);
    void (*free)(void *prov);
    // Sets out->t[] of the matrices of decode group `group` of layer l and of the layer's two
    // norms (other entries unspecified). @return CLLM_OK, CORRUPT (a block fails its checks),
    // DEVICE.
    cllm_status (*acquire_group)(void *prov, uint32_t l, int group, cllm_layer_view *out);
    void (*release_group)(void *prov, uint32_t l, int group);
    // Most rows of global tensor g one acquire_rows may ask for (>= 1).
    uint64_t (*max_rows)(const void *prov, cllm_global_tensor g);
    // A view of rows [r0, r1) of g: either r1 - r0 == 1, or r0 a multiple of max_rows and
    // r1 - r0 <= max_rows. @return as acquire_group.
    cllm_status (*acquire_rows)(void *prov, cllm_global_tensor g, uint64_t r0, uint64_t r1,
                                cllm_wview *out);
    void (*release_rows)(void *prov, cllm_global_tensor g);
    // Fills decoded_bytes, scratch_bytes and decode_seconds of *out.
    void (*stats)(const void *prov, cllm_engine_stats *out);
    // Optional (NULL: none). Rows rows[0..n) of g (n <= the step's tokens) are asked for one at a
    // time next: the provider may ready them together (the CUDA provider decodes every block
    // they need in one batched decode instead of one decode per acquire_rows).
    // @return as acquire_group.
    cllm_status (*prepare_rows)(void *prov, cllm_global_tensor g, const uint32_t *rows, size_t n);
} cllm_provider_ops;

// The op table. Ops return CLLM_OK or what the hardware reports (DEVICE); optional ops may be
// NULL, and the engine then runs their plain fallback (named with each).
typedef struct cllm_backend_ops {
    const char *name;
    // Tokens per step when the engine splits a long call (0: CLLM_ENGINE_BATCH; never fewer).
    // Steps built by a caller (cllm_forward_step) stay within CLLM_ENGINE_BATCH. The CUDA backend
    // asks for more: each of its prefill GEMMs reads the weights once per step.
    uint32_t batch;
    // State for `cfg` with a KV cache of `ctx` positions: threads, device, op scratch. `opt` was
    // checked by the engine. @return CLLM_OK, UNSUPPORTED, NOMEM, DEVICE.
    cllm_status (*create)(const cllm_model_config *cfg, const cllm_engine_options *opt,
                          uint32_t ctx, void **state);
    void (*free)(void *state);
    // `bytes` of zeroed backend memory (NULL when it cannot), and its release (NULL accepted).
    void *(*alloc)(void *state, size_t bytes);
    void (*release)(void *state, void *p);
    // The provider for a weights mode, or NULL when this backend has none.
    const cllm_provider_ops *(*provider)(cllm_weights_mode mode);

    // Reads `bytes` of backend memory at src into host memory (logits). NULL: backend memory is
    // host memory, and the engine has the classifier write into the caller's buffer directly.
    cllm_status (*read)(void *state, void *host, const void *src, size_t bytes);
    // Optional: runs body(arg) -- the step's layers and classifier, a fixed sequence of ops and
    // provider calls on the engine's buffers -- for step `st`, directly or by replaying what an
    // earlier body of the same n_tok and n_out launched (then body is not called; the backend
    // must see positions and slots through `st`, e.g. uploaded to device memory here). Replays are
    // allowed only when `read` is set (the body's pointers are then all engine buffers, the same
    // for every step). NULL: the engine calls body(arg).
    cllm_status (*step)(void *state, const cllm_step *st, cllm_status (*body)(void *arg),
                        void *arg);

    // x (n, D) = rows rows[0..n) of `table` widened to fp32 (rows: host array, each < table->rows).
    cllm_status (*embed)(void *state, float *x, const cllm_wview *table, const uint32_t *rows,
                         size_t n);
    // out[t] = RMSNorm(x[t]) * w for t < T; rows of D floats (out may alias x).
    cllm_status (*rmsnorm)(void *state, float *out, const float *x, const cllm_wview *w,
                           size_t n_tok, size_t dim, float eps);
    // out[t * ldo + r] = W[r] . x[t * ldx + :] for t < T, r < W.rows.
    cllm_status (*matmul)(void *state, float *out, size_t ldo, const cllm_wview *w,
                          const float *x, size_t ldx, size_t n_tok);
    // Rotates q (T, Q) and k (T, K) of token t for position st->pos[t] and stores k, v (T, K) at
    // that position of slot st->slot[t] of the layer's cache.
    cllm_status (*rope_kv)(void *state, float *q, float *k, const float *v,
                           const cllm_kv_layer *kv, const cllm_step *st);
    // out (T, Q): attention of query t over positions 0..st->pos[t] of slot st->slot[t] (GQA:
    // query head h reads KV head h / (n_heads / n_kv_heads)).
    cllm_status (*attention)(void *state, float *out, const float *q, const cllm_kv_layer *kv,
                             const cllm_step *st);
    // gate[i] = silu(gate[i]) * up[i], n values.
    cllm_status (*swiglu)(void *state, float *gate, const float *up, size_t n);
    // x[i] += y[i], n values (the residual).
    cllm_status (*add)(void *state, float *x, const float *y, size_t n);

    // Optional, fused: out[i] (T, w[i]->rows) = W_i x for i < n (<= 3: q, k, v of one decode
    // group) sharing x (T, cols). Fallback: n matmuls.
    cllm_status (*matmul_multi)(void *state, float *const *out, const cllm_wview *const *w, int n,
                                const float *x, size_t n_tok);
    // Optional, fused: out (T, W.rows) += W x for x (T, W.cols) (the residual after Wo and
    // Wdown). Fallback: matmul into scratch, then add.
    cllm_status (*matmul_add)(void *state, float *out, const cllm_wview *w, const float *x,
                              size_t n_tok);
    // Optional, fused: gate (T, H) = silu(Wgate h) * Wup h for h (T, D). Fallback: matmul
    // Wgate into gate, matmul Wup into up, swiglu. Must give the same result as the fallback.
    cllm_status (*gate_up_swiglu)(void *state, float *gate, float *up, const cllm_wview *wgate,
                                  const cllm_wview *wup, const float *h, size_t n_tok);

    // Fills backend and the backend's own memory (activation_bytes) in *out.
    void (*stats)(const void *state, cllm_engine_stats *out);
} cllm_backend_ops;

// The CPU backend (always available): host memory, OpenMP, the reference kernels.
const cllm_backend_ops *cllm_backend_cpu(void);

#endif
