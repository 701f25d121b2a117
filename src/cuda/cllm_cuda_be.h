// Private to the CUDA backend's .cu files (cllm_cuda_backend.cu, cllm_cuda_plan.cu,
// cllm_cuda_forward.cu, cllm_cuda_be_kernels.cu): the backend state and the functions they share.
// C++ (nvcc) only.
#ifndef CLLM_CUDA_BE_H
#define CLLM_CUDA_BE_H

#include "cllm_cuda_check.h"

extern "C" {
#include "backend_cpu/cllm_kernels.h"  // RoPE frequencies and angles: the CPU's, bit for bit
#include "engine/cllm_backend.h"
}
#include "cllm_cuda_backend.h"

#define BE_SLOTS 4                       // staging ring slots (streamed payloads in flight)
#define BE_BATCH 256                     // tokens per prefill chunk
#define BE_MATVEC_MAX_N 4                // chunks of at most this many tokens use matvecs
#define BE_LOGIT_ROWS 32                 // logits rows computed per classifier pass
#define BE_GEMM_W_CAP (64ull << 20)      // int8 GEMM: bf16 copy of at most this many bytes of W
#define BE_BLAS_WS (32ull << 20)         // cuBLAS workspace (set explicitly: no lazy allocation)
#define BE_ALIGN 256
#define BE_MATS_PER_LAYER 7              // wq wk wv wo gate up down, in use order
#define BE_ATT_MAX_POS 49152             // attention scores live in shared memory
#define BE_ATT_MAX_HD 256

// Cost model constants (the H2D rate is measured at create).
#define BE_DECODE_RATE 700e9             // decoded bytes per second of the GPU rANS decoder
#define BE_MATVEC_RATE 2.5e12            // weight bytes per second read by a matvec

// Where a matrix lives between forward calls.
enum be_place { BE_RAW = 0, BE_DEVICE = 1, BE_STREAM = 2 };

// One large matrix (7 per layer, then the classifier), in use order.
struct be_mat {
    const cllm_weight *w;
    uint32_t layer;              // n_layers for the classifier
    int place;                   // be_place
    cllm_cuda_weight view;       // what the kernels read: the RAW buffer, or the scratch
    cllm_cuda_decode_job job;    // DEVICE / STREAM: decode of the whole matrix into the scratch
    const uint8_t *payload_dev;  // DEVICE: resident payload; STREAM: its staging slot
    const uint8_t *host_src;     // STREAM: pinned copy of the payload (or the mapping)
    const uint8_t *scales_src;   // STREAM int8: scales inside the slot, copied to the scratch
    size_t scales_bytes;
    int stream_idx;              // STREAM: position among the streamed matrices
    int slot;                    // STREAM: stream_idx % n_slots
};

// Byte figures of a placement (see be_plan_bytes).
struct be_bytes {
    uint64_t raw, compressed;    // matrices: decoded resident, compressed resident
    uint64_t staging, scratch;   // ring (n_slots x largest streamed payload), decode scratch
    uint64_t embed;              // embedding: resident payload + row scratch, or decoded table
    uint64_t kv, act, gemm;      // KV cache; activations/norms/RoPE/logits/ctl; GEMM + cuBLAS
    uint64_t load_tmp;           // load-time upload buffer (freed after load)
    uint64_t total;              // everything held after load
};

struct be_state {
    const cllm_weights *w;
    cllm_model_config cfg;
    cllm_weights_mode mode;
    uint64_t budget;
    cllm_log_fn log;
    void *log_user;
    uint32_t ctx, batch, n_layers;
    size_t dim, q_dim, kv_dim, hidden, vocab, head_dim;
    char device_desc[160];
    int device;                  // CUDA device index (selected again by every forward call)

    cllm_cuda_mem *mem;
    void *compute, *copy;        // cudaStream_t: compute (decode + kernels) and copy engine
    void *blas;
    double h2d_rate;             // bytes per second, measured at create

    be_mat *mats;                // n_mats = n_layers * 7 + 1, classifier last
    size_t n_mats;
    size_t *stream_mat;          // matrix index of the k-th streamed matrix (n_streamed)
    int n_streamed, n_slots;
    uint8_t *slots[BE_SLOTS];
    size_t slot_bytes;
    uint8_t *scratch;            // one decoded matrix (+ its int8 scales)
    size_t scratch_bytes;
    uint8_t *host_pinned;        // STREAM payload copies (NULL: read from the mapping)

    // Embedding: a decoded table (direct), or its resident payload + per-token block scratch.
    int embed_direct;
    cllm_cuda_weight embed_view;
    const uint8_t *embed_payload_dev;
    uint8_t *embed_scratch;
    size_t embed_unit_bytes;     // bytes of one decode unit (block, or row for RAW)
    cllm_cuda_decode_job *embed_jobs;  // host array, batch entries

    float *norm_att, *norm_ffn, *norm_final;  // (n_layers, dim) x 2, (dim)
    float *rope_cos, *rope_sin;               // (ctx, head_dim / 2)
    float *kc, *vc;                           // (n_layers, ctx, kv_dim) each
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2;  // (batch, ...)
    float *logits_dev;                        // (BE_LOGIT_ROWS, vocab)
    float *ychunk;                            // int8 GEMM row-chunk output
    void *gemm_scratch;
    size_t gemm_scratch_bytes;
    void *blas_ws;
    int32_t *ctl_dev, *ctl_host;  // [0] = first position of the chunk, [1..] its tokens (pinned)
    cllm_cuda_decode_status *status_dev;

    // Pipeline events (see cllm_cuda_forward.cu for what guards what).
    cudaEvent_t ev_copied[BE_SLOTS], ev_free[BE_SLOTS];
    cudaEvent_t *ev_layer;        // n_layers + 2 (timing)
    cudaEvent_t *ev_dec, *ev_cp;  // 2 per matrix (timing)
    int n_events;                 // created so far (for free)

    cudaGraphExec_t graph;        // n == 1 step (no streamed matrix)
    int graph_state;              // 0 not tried, 1 ready, -1 failed (direct launches)

    be_bytes bytes;
    double *t_copy, *t_dec, *t_comp;  // per layer + classifier, last chunk
    uint64_t n_tokens, n_forward;
    double copy_s, decode_s, compute_s, load_s;
    double predicted;
    char *plan;
};

// Log a line through the engine's callback (no-op without one).
void be_log(const be_state *s, const char *fmt, ...) CLLM_PRINTF(2, 3);

// cllm_cuda_plan.cu
uint64_t be_mat_raw_bytes(const cllm_weight *w);   // decoded + int8 scales, aligned
uint64_t be_mat_comp_bytes(const cllm_weight *w);  // payload, aligned
cllm_status be_measure_h2d(be_state *s);
// Chooses every matrix's placement (mode, or the planner under a budget), fills s->bytes,
// s->predicted and s->plan, and checks the total against the budget and the free device memory.
cllm_status be_plan(be_state *s);
// Rows per GEMM pass of a (rows, cols) matrix of `kind` (int8: bounded bf16 copy; else all rows).
uint64_t be_gemm_chunk_rows(uint32_t kind, uint64_t rows, uint64_t cols);
// GEMM scratch and int8 row-chunk output bytes; returns them + the cuBLAS workspace (0: no GEMM).
uint64_t be_gemm_sizes(const be_state *s, uint64_t *scratch_out, uint64_t *ychunk_out);
// How the embedding is read, given the placements.
enum { BE_EMBED_CLASSIFIER = 0, BE_EMBED_DECODED = 1, BE_EMBED_COMPRESSED = 2 };
int be_embed_mode(const be_state *s);

// cllm_cuda_be_kernels.cu: kernels reading the position from device memory (CUDA-graph safe).
// q (n_tok, n_heads, hd) rotated in place; k rotated and v copied into the caches at positions
// *pos_dev + t. cos/sin: (ctx, hd / 2) tables.
cllm_status be_rope_store(float *q, const float *k, const float *v, float *kc, float *vc,
                          const float *cos_t, const float *sin_t, const int32_t *pos_dev,
                          uint32_t n_tok, uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd,
                          void *stream);
// Causal attention of n_q queries at positions *pos_dev + t over the layer's caches.
// smem_pos >= *pos_dev + n_q sizes the score buffer (the context when captured in a graph).
cllm_status be_attention(const float *q, const float *kc, const float *vc, float *out,
                         const int32_t *pos_dev, uint32_t n_q, uint32_t smem_pos,
                         uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd, void *stream);
cllm_status be_attention_init(uint32_t max_pos);  // raises the shared-memory limit once

// cllm_cuda_forward.cu
cllm_status be_forward(void *state, const int32_t *tokens, size_t n, size_t pos, float *logits,
                       int all_logits);

#endif
