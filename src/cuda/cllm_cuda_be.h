// Private to the CUDA backend's .cu files (cllm_cuda_ops.cu: the op table; cllm_cuda_backend.cu:
// the weight provider and its pipeline; cllm_cuda_plan.cu: the plan; cllm_cuda_be_kernels.cu):
// their states and the functions they share. C++ (nvcc) only.
#ifndef CLLM_CUDA_BE_H
#define CLLM_CUDA_BE_H

#include "cllm_cuda_check.h"

extern "C" {
#include "ref/cllm_ref.h"  // RoPE frequencies and angles: the CPU's, bit for bit
#include "engine/cllm_backend.h"
#include "engine/cllm_sched.h"
}
#include "cllm_cuda_backend.h"

#define BE_BATCH 256                     // tokens per step of a long call (the table's batch)
#define BE_MATVEC_MAX_N 4                // steps of at most this many tokens use matvecs
#define BE_COLS_MAX_N 8                  // int8 steps of at most this many: column launches
#define BE_GEMM_I8_MAX_N 64              // int8 GEMM on the tensor cores up to here (PERF.md 8d)
#define BE_BLAS_WS (32ull << 20)         // cuBLAS workspace (set explicitly: no lazy allocation)
#define BE_ALIGN 256
#define BE_MATS_PER_LAYER CLLM_LAYER_N_MATRICES // wq wk wv wo gate up down (the layout table)
#define BE_GROUPS_PER_LAYER CLLM_LAYER_N_GROUPS // decode launches per layer: the layout's groups
#define BE_GROUP_MAX_MATS 3
#define BE_DEC_STREAMS 4                 // decode streams created; DEVICE groups alternate among
                                         // the first n_dec_streams, STREAM groups use [0]
// n_dec_streams. Each decode launch is latency-bound (a block's steps run one after another), so
// launches on more streams overlap: a 7B layer in device mode on an H100 at 8c5d181, 4 streams
// against 2: int8 tg 64.6 against 46.0 tok/s, lossless 63.8 against 59.3 (docs/PERF.md).
#define BE_DEC_STREAMS_DEFAULT 4
#define BE_PROBE_DEC_STREAMS 2           // the probe's dual run (sim_slowdowns calibrates on it)
_Static_assert(BE_GROUPS_PER_LAYER <= BE_DEC_STREAMS, "the probe's quad run: a stream per group");
#define BE_ATT_MAX_POS 49152             // attention scores live in shared memory
#define BE_ATT_MAX_HD 256

// Cost model constants (H2D, decode and matvec times are measured at create; these are the
// fallbacks when a probe fails).
#define BE_DECODE_RATE 700e9             // decoded bytes per second of the GPU rANS decoder
#define BE_MATVEC_RATE 1.8e12            // weight bytes per second read by a matvec (H100 raw tg)
#define BE_STAGING_DEPTH_MIN 2           // staging ring depth in largest STREAM groups: one copying
#define BE_STAGING_DEPTH_MAX 8           // while the one before decodes; the planner may add more

// Where a matrix lives between forward calls.
enum be_place { BE_RAW = 0, BE_DEVICE = 1, BE_STREAM = 2 };

// What the planner chooses per unit (a layer's 7 matrices, or the classifier), fastest first: RAW
// (decoded), FUSED (RAW placement, the matrices transcoded to compute code at load: be_mat.fused),
// DEVICE, STREAM.
enum be_level { BE_L_RAW = 0, BE_L_FUSED = 1, BE_L_DEVICE = 2, BE_L_STREAM = 3 };

// Exceptions per weight a plan assumes for compute code before the code exists (synthesized 7B:
// lossless 2.2%, int8 1.3%); with a VRAM budget the probe's layer 0 corrects it.
#define BE_CC_EXC_ASSUMED 0.03
// Fused matvecs' time over raw's when the probe did not measure it (H200, 7B, batch 1: raw tg /
// fused tg = 212.96 / 136.25 lossless, 320.46 / 232.06 int8: PERF.md 7c).
#define BE_FUSED_SLOWDOWN 1.56

// Decode group i of a layer is its matrices [cllm_layout_group_first(i),
// cllm_layout_group_first(i + 1)) (model/cllm_layout.h). Matrices needed together share a launch.

// One large matrix (7 per layer, then the classifier), in use order.
struct be_mat {
    const cllm_weight *w;
    uint32_t layer;              // n_layers for the classifier
    int place;                   // be_place
    int level;                   // be_level of its unit (the planner's choice)
    int fused;                   // RAW and transcoded to compute code at load (level FUSED)
    cllm_wview view;             // what the kernels read: the RAW buffer, or its scratch range
    const uint8_t *payload_dev;  // DEVICE: resident payload
    const uint8_t *host_src;     // STREAM: pinned copy of the payload (or the mapping)
    int group;                   // DEVICE / STREAM layer matrix: its decode group
    int last_in_group;           // the group's scratch range is released after this matrix's use
};

// A decode group: DEVICE or STREAM matrices decoded by ONE launch into a range of the scratch
// ring, in use order (g = 0.. over the whole pass; the classifier's row chunks come last).
struct be_group {
    cllm_cuda_decode_job jobs[BE_GROUP_MAX_MATS];
    int n_jobs;
    int place;                   // BE_DEVICE or BE_STREAM
    int dec;                     // decode stream index
    int copy;                    // STREAM: the copy unit decoded from; -1 for DEVICE
    int wait_release;            // latest earlier group whose scratch range overlaps (-1: none)
    uint32_t layer;
    uint64_t off, bytes;         // scratch ring range [off, off + bytes)
    // STREAM int8: scales copied from the staging range into the scratch with the decode (the
    // staging range is recycled once the decode is done).
    const uint8_t *scales_src[BE_GROUP_MAX_MATS];
    uint8_t *scales_dst[BE_GROUP_MAX_MATS];
    size_t scales_bytes[BE_GROUP_MAX_MATS];
};

// A copy unit: the payloads of one STREAM group (or the whole classifier, which all its chunks
// decode from) copied into a range of the staging ring.
struct be_copy {
    const uint8_t *src[BE_GROUP_MAX_MATS];
    uint8_t *dst[BE_GROUP_MAX_MATS];
    size_t bytes[BE_GROUP_MAX_MATS];
    int n;
    uint64_t off, size;          // staging ring range
    int last_group;              // the range is free once this group's decode is done
    int wait_group;              // decode whose end frees this range (-1: none in the pass)
    uint32_t layer;
};

// A row chunk of the classifier: rows [row0, row0 + view.rows), decoded by `group` (-1: RAW).
struct be_chunk {
    uint64_t row0;
    cllm_wview view;
    int group;
};

// Per-layer GPU times measured at create on a real layer (see be_measure_gpu), seconds.
struct be_probe {
    int ok;
    double layer_bytes;          // decoded bytes of the probed layer (matrices + int8 scales)
    double comp;                 // its 7 matvecs alone
    double pipe_stream;          // decodes on one stream (as STREAM groups) beside the matvecs
    double pipe_device;          // decodes alternating on two streams (DEVICE) beside the matvecs
    double pipe_quad;            // each of the 4 decode launches on its own stream, beside them
    double dec_serial;           // the 4 group launches on one stream, nothing else running
    double dec_group[BE_GROUPS_PER_LAYER];  // each group's launch alone (0: not measured)
    double comp_fused;           // the 7 matvecs on the layer's compute code (0: not measured)
    double fused_ratio;          // the layer's compute-code bytes over the plan's estimate (0: none)
};

// Byte figures of a placement (see be_plan_bytes).
struct be_bytes {
    uint64_t raw, compressed;    // matrices: decoded resident, compressed resident
    uint64_t fused;              // matrices in compute code (estimated; shapes the fused kernels
                                 // do not take count decoded)
    uint64_t staging, scratch;   // staging ring, decode scratch ring (see be_ring_sizes)
    uint64_t embed;              // embedding: resident payload + row scratch, decoded table, or
                                 // compute code (estimated); 0 when it reads the classifier's
    uint64_t kv, act, gemm;      // KV cache; activations/norms/RoPE/logits/ctl; GEMM + cuBLAS
    uint64_t load_tmp;           // load-time upload buffer (freed after load)
    uint64_t total;              // everything held after load
};

// The plan (cllm_cuda_plan.cu): where every matrix lives and what that costs.
struct be_plan_data {
    double h2d_rate;             // bytes per second, measured at create (with a budget)
    be_probe probe;              // measured at create (be_measure_gpu, with a budget)
    be_mat *mats;                // n_mats = n_layers * 7 + 1, classifier last
    size_t n_mats;
    int n_streamed;              // STREAM matrices
    be_bytes bytes;
    double predicted;            // seconds per batch-1 token (with a budget)
    int staging_depth;           // staging ring = this x the largest STREAM group (0 reads as 2)
    int min_level;               // fastest be_level the budget planner may choose
    char *text;                  // the plan in lines, for the log
};

// The schedule (cllm_cuda_backend.cu, built at load from the plan): decode groups, copy units,
// the rings, and the tensors read in place (norms, embedding).
struct be_sched {
    be_group *groups;            // decode groups in use order, classifier chunks last
    int n_groups, n_cls_groups;
    int *layer_group0;           // (n_layers): layer l's first group, -1 when RAW
    be_copy *copies;             // copy units in use order, the classifier's last
    int n_copies, cls_copied;    // cls_copied: the last copy unit is the classifier's
    be_chunk *chunks;            // classifier row chunks (1 when RAW)
    int n_chunks;
    uint64_t cls_chunk_rows;
    uint8_t *staging, *scratch;  // the two rings (sizes in plan.bytes)
    uint8_t *host_pinned;        // STREAM payload copies (NULL: read from the mapping)
    float *norms;                // (2 * n_layers + 1, dim): attn, ffn of each layer, final
    cllm_wview embed_view;       // the whole table, decoded or compute code (embed_direct), else
                                 // the layout of a row
    int embed_direct;
    const uint8_t *embed_payload_dev;
    // Compressed-resident embedding: decode units for a step's rows (prepare_rows: up to batch
    // blocks, one batched decode; unit `batch` serves an unannounced row). Decoded blocks stay
    // valid (the weights never change): embed_block[u] is the block unit u holds, or UINT64_MAX.
    uint8_t *embed_scratch;
    uint64_t *embed_block;       // (batch + 1)
    cllm_cuda_decode_job *embed_jobs;  // (batch)
    uint32_t embed_units;        // batch + 1
    cllm_cuda_decode_job embed_job;
    // Level FUSED: the matrices held in compute code, their bytes and weights, those that stay
    // decoded (a shape the fused kernels do not take; their decoded bytes), the transcoding time.
    int n_fused, n_fused_raw;
    uint64_t fused_bytes, fused_weights, fused_raw_bytes;
    uint64_t embed_made_bytes;   // BE_EMBED_FUSED: the embedding's bytes as made
    double fuse_s;
};

// The pipeline at run time (cllm_cuda_backend.cu): events, and the host side of one step.
struct be_pipe {
    cudaEvent_t ev_fork;         // compute: step start; a decode stream joins on it
    cudaEvent_t *ev_decoded;     // per group: its decode (and scales copy) done
    cudaEvent_t *ev_released;    // per group: compute's last read of its scratch range done
    cudaEvent_t *ev_copied;      // per copy unit: its payloads are in the staging ring
    int n_events;                // created so far (for free)
    int n_groups_active, n_copies_active;  // this step's (the classifier's only with logits)
    int next_copy, next_dec, n_released, cur_group;
    int wait_pending;            // compute has not yet waited for cur_group's decode
    int dec_joined[BE_DEC_STREAMS];
    uint64_t n_passes;
};

// The backend's own state (cllm_cuda_ops.cu): the device, the compute stream, op scratch, the
// step's positions and the graph. The provider borrows the device, stream and memory tracker.
struct be_dev;

// The weight provider (cllm_cuda_backend.cu): shapes and borrowed handles, then its plan,
// schedule and pipeline.
struct be_state {
    struct be_dev *dev;          // the backend it was created on (outlives it)
    const cllm_weights *w;
    cllm_model_config cfg;
    cllm_weights_mode mode;
    uint64_t budget;
    cllm_log_fn log;
    void *log_user;
    uint32_t ctx, batch, n_layers;
    size_t dim, q_dim, kv_dim, hidden, vocab, head_dim;
    int n_threads;               // host threads (the compute-code encoder at load)
    uint32_t n_seq;              // KV cache slots (sequences decoded together)
    const char *device_desc;
    size_t att_scratch_bytes;    // the backend's split-attention scratch (counted by the plan)
    double load_s;

    // Borrowed from the backend.
    cllm_cuda_mem *mem;
    void *compute;               // cudaStream_t: kernels
    cllm_cuda_decode_status *status_dev;
    // Owned.
    void *copy;                  // cudaStream_t: copy engine
    void *dec[BE_DEC_STREAMS];   // cudaStream_t: decodes (run ahead of compute)
    int n_dec_streams;           // DEVICE groups alternate among dec[0 .. n_dec_streams)

    be_plan_data plan;
    be_sched sched;
    be_pipe pipe;
};

// Log a line through the engine's callback (no-op without one).
void be_log(const be_state *s, const char *fmt, ...) CLLM_PRINTF(2, 3);

// cllm_cuda_plan.cu
uint64_t be_mat_raw_bytes(const cllm_weight *w);   // decoded + int8 scales, aligned
uint64_t be_mat_comp_bytes(const cllm_weight *w);  // payload, aligned
// Bytes plan j's matrix takes in compute code: the estimate (BE_CC_EXC_ASSUMED exceptions, scaled
// by the probe's layer-0 ratio when measured); decoded bytes for what the fused kernels do not
// take.
uint64_t be_mat_fused_bytes(const be_state *s, size_t j);
// Whether plan j's matrix becomes compute code at level FUSED (a kind and shape the fused kernels
// take; the tied classifier too, the embedding lookup reading its code).
int be_mat_fusable(const be_state *s, size_t j);
cllm_status be_measure_h2d(be_state *s);
// Times, on the device, one real layer's decode launches (grouped as the forward groups them)
// and its matvecs, alone and overlapped; fills s->probe (probe.ok = 0 when it cannot run).
cllm_status be_measure_gpu(be_state *s);
// Rows per classifier chunk: each chunk decodes into at most the largest layer group's bytes.
uint64_t be_cls_chunk_rows(const be_state *s);
// Decoded bytes (matrices + int8 scales, aligned) and payload bytes of group i of layer l.
uint64_t be_group_dec_bytes(const be_state *s, uint32_t l, int i);
uint64_t be_group_comp_bytes(const be_state *s, uint32_t l, int i);
// Decoded bytes (aligned, int8 scales included) of a classifier chunk of `rows` rows.
uint64_t be_cls_rows_bytes(const be_state *s, uint64_t rows);
// The pass's groups in use order from the placements, RAW ones included (layers' decode groups,
// then the classifier's row chunks), as cllm_sched_build takes them; returns their number, at
// most be_sched_groups_max. The backend's pipeline and the planner's simulation both use it.
int be_sched_groups(const be_state *s, cllm_sched_group *g);
int be_sched_groups_max(const be_state *s);
// Chooses every matrix's placement (mode, or the planner under a budget), fills s->bytes,
// s->predicted and s->plan, and checks the total against the budget and the free device memory.
cllm_status be_plan(be_state *s);

// Rows per GEMM pass of a (rows, cols) matrix of `kind` (int8: bounded bf16 copy; else all rows).
// GEMM scratch and int8 row-chunk output bytes; returns them + the cuBLAS workspace (0: no GEMM).
uint64_t be_gemm_sizes(const be_state *s, uint64_t *scratch_out);
// How the embedding is read, given the placements.
enum { BE_EMBED_CLASSIFIER = 0, BE_EMBED_DECODED = 1, BE_EMBED_COMPRESSED = 2, BE_EMBED_FUSED = 3 };
int be_embed_mode(const be_state *s);

// cllm_cuda_backend.cu: the pipeline around one step. begin: what is active (the classifier's
// groups only when the step has logits), the fork point, the first copies and decodes; end: waits
// for every stream and reports a corrupt block.
cllm_status be_pipe_begin(be_state *s, int with_classifier);
cllm_status be_pipe_end(be_state *s);
// Enqueues the compute stream's wait for the acquired group's decode if still pending: every op
// that reads a matrix calls it first.
cllm_status be_pipe_wait(be_state *s);
const cllm_provider_ops *be_provider(cllm_weights_mode mode);

// cllm_cuda_ops.cu: what the provider asks of the backend.
// The planner's GEMM sizes: allocates the GEMM scratch, its row-chunk output and cuBLAS.
cllm_status be_dev_gemm_alloc(struct be_dev *d, uint64_t scratch);
// Fills the provider's borrowed fields (shapes, device, stream, memory, status).
void be_dev_lend(struct be_dev *d, be_state *s);
// The kernels' view of a weight view (the launchers' plain C struct): the kinds share values.
static_assert((int)CLLM_W_CC_BF16 == (int)CLLM_CUDA_W_CC_BF16 &&
                  (int)CLLM_W_CC_F16 == (int)CLLM_CUDA_W_CC_F16 && (int)CLLM_W_F16 == (int)CLLM_CUDA_W_F16 &&
                  (int)CLLM_W_CC_I8 == (int)CLLM_CUDA_W_CC_INT8 &&
                  (int)CLLM_W_I8 == (int)CLLM_CUDA_W_INT8 && (int)CLLM_W_BF16 == (int)CLLM_CUDA_W_BF16,
              "cllm_wkind and cllm_cuda_wkind values");
static inline cllm_cuda_weight be_kw(const cllm_wview *v) {
    cllm_cuda_weight k;
    k.data = v->data;
    k.scales = v->scales;
    k.rows = v->rows;
    k.cols = v->cols;
    k.kind = (uint32_t)v->kind;
    k.group_size = (uint32_t)v->group_size;
    return k;
}

#endif
