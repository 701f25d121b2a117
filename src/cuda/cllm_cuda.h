// CUDA side of codecllm: GPU rANS decoders, compute kernels for batch-1 decode and small-batch
// prefill, a tracking device allocator and pinned-host helpers.
//
// A plain C11 header: C code includes it without CUDA headers (streams and cuBLAS handles travel
// as void *). Every launcher is asynchronous on the stream it is given, checks its arguments and
// the launch, and returns a cllm_status (CLLM_ERR_DEVICE with the CUDA error string on a CUDA
// failure). Pointers named *_dev are device pointers. Each kernel's plain C reference, the
// specification it is checked against, lives in tests/gpu/gpu_check.c (until the CPU backend's
// reference functions exist) and is named there.
#ifndef CLLM_CUDA_H
#define CLLM_CUDA_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define CLLM_CUDA_STATIC_ASSERT(c, m) static_assert(c, m)
extern "C" {
#else
#define CLLM_CUDA_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

// ---- device, errors ---------------------------------------------------------------------------

// Number of CUDA devices (0 when there is no driver or no device; never fails).
int cllm_cuda_device_count(void);
// Selects device `dev` for the calling thread and fills a one-line description ("NVIDIA H100 80GB
// HBM3, sm_90, 132 SMs, 79.1 GiB"). `desc` may be NULL.
cllm_status cllm_cuda_device_open(int dev, char *desc, size_t desc_cap);
// Free and total memory of device `dev` in bytes (selects the device for the calling thread).
cllm_status cllm_cuda_mem_info(int dev, size_t *free_bytes, size_t *total_bytes);
// Waits for all work on `stream` (NULL: the legacy default stream) and reports any earlier
// asynchronous failure.
cllm_status cllm_cuda_sync(void *stream);

// ---- memory -----------------------------------------------------------------------------------

// Tracks every device allocation of a backend: current and peak bytes. Not thread-safe: one
// tracker per backend, used from the backend's thread.
typedef struct cllm_cuda_mem cllm_cuda_mem;

cllm_status cllm_cuda_mem_create(cllm_cuda_mem **out);
// Frees every allocation still held, then the tracker. NULL is fine.
void cllm_cuda_mem_free_all(cllm_cuda_mem *m);
// cudaMalloc through the tracker (256-byte aligned). bytes == 0 gives NULL and CLLM_OK.
cllm_status cllm_cuda_alloc(cllm_cuda_mem *m, size_t bytes, void **dev);
// Frees an allocation made by cllm_cuda_alloc (NULL is fine; an unknown pointer is CLLM_ERR_ARG).
cllm_status cllm_cuda_release(cllm_cuda_mem *m, void *dev);
size_t cllm_cuda_mem_current(const cllm_cuda_mem *m);
size_t cllm_cuda_mem_peak(const cllm_cuda_mem *m);

// Page-locked host memory (for fast, asynchronous uploads).
cllm_status cllm_cuda_host_alloc(size_t bytes, void **host);
void cllm_cuda_host_free(void *host);
// Pins an existing host range (e.g. a mapped .cllm file), read-only where the device allows it.
cllm_status cllm_cuda_host_register(void *host, size_t bytes);
cllm_status cllm_cuda_host_unregister(void *host);

// Copies (cudaMemcpyAsync, kind inferred from the pointers).
cllm_status cllm_cuda_copy(void *dst, const void *src, size_t bytes, void *stream);

// Stream and event helpers for C callers (benchmarks, the backend).
cllm_status cllm_cuda_stream_create(void **stream);
void cllm_cuda_stream_destroy(void *stream);
typedef struct cllm_cuda_timer cllm_cuda_timer;  // a pair of CUDA events
cllm_status cllm_cuda_timer_create(cllm_cuda_timer **out);
void cllm_cuda_timer_free(cllm_cuda_timer *t);
cllm_status cllm_cuda_timer_start(cllm_cuda_timer *t, void *stream);
cllm_status cllm_cuda_timer_stop(cllm_cuda_timer *t, void *stream);
// Waits for the stop event; milliseconds between start and stop.
cllm_status cllm_cuda_timer_ms(cllm_cuda_timer *t, float *ms);

// ---- rANS decoding ----------------------------------------------------------------------------

// One tensor's part of a decode launch: blocks [first_block, first_block + n_blocks) of a coded
// payload. The payload must have passed cllm_payload_check on the host before upload; the kernel
// still bounds every read by the block index and stream_bytes, so a bad payload can only yield
// wrong output and an error, never an access outside it.
// Layout and codec fields come from cllm_payload_layout (see cllm_cuda_decode_job_init).
typedef struct cllm_cuda_decode_job {
    const uint8_t *payload;  // device: whole payload, 16-byte aligned
    void *out;               // device: the tensor's first element (int8: rows*cols int8 values);
                             // only the rows of the requested blocks are written
    uint64_t rows, cols;
    uint64_t first_block, n_blocks;
    uint64_t stream_bytes;   // all blocks of the tensor (bounds every block)
    uint64_t index_off, streams_off, side_off;
    uint32_t codec;          // cllm_codec: LOSSLESS or INT8 (RAW jobs are plain copies)
    uint32_t dtype;          // cllm_dtype of the source (lossless output dtype)
    uint32_t scale_bits;
    uint32_t rows_per_block;
    uint32_t item_begin;     // set by the launcher: first work item of this job
    uint32_t reserved_;
} cllm_cuda_decode_job;
CLLM_CUDA_STATIC_ASSERT(sizeof(cllm_cuda_decode_job) == 104, "decode job is 104 bytes");

// Fills a job from a payload description (validated by cllm_payload_layout; the caller has run
// cllm_payload_check on the host copy). Blocks [first_block, first_block + n_blocks) must lie
// inside the tensor. Predictor LEFT is CLLM_ERR_UNSUPPORTED on the GPU. For RAW, the job is a
// copy of rows [first_block, first_block + n_blocks) (a "block" is one row).
struct cllm_coded_desc;
cllm_status cllm_cuda_decode_job_init(const struct cllm_coded_desc *d, const uint8_t *payload_dev,
                                      void *out_dev, uint64_t first_block, uint64_t n_blocks,
                                      cllm_cuda_decode_job *job);

// Device status of decode launches: zeroed by cllm_cuda_decode_status_reset, set by a kernel when a
// block fails its checks (first failure kept). Lives in device memory (16 bytes).
typedef struct cllm_cuda_decode_status {
    uint32_t failed;        // 0: all blocks decoded and checked
    uint32_t job;           // first failing job (index in the launch)
    uint64_t block;         // its block index in the tensor
} cllm_cuda_decode_status;
CLLM_CUDA_STATIC_ASSERT(sizeof(cllm_cuda_decode_status) == 16, "decode status is 16 bytes");

cllm_status cllm_cuda_decode_status_reset(cllm_cuda_decode_status *status_dev, void *stream);
// Synchronises `stream` and reads the status: CLLM_ERR_CORRUPT naming job and block on failure.
cllm_status cllm_cuda_decode_status_check(const cllm_cuda_decode_status *status_dev, void *stream);

// Decodes every job in one launch (split into launches of at most CLLM_CUDA_DECODE_MAX_JOBS coded
// jobs). Asynchronous: corruption is reported through `status_dev` (see above), so a per-layer
// decode costs no synchronisation; call cllm_cuda_decode_status_check when the result matters.
// Output bytes are bit-identical to cllm_decode_blocks.
#define CLLM_CUDA_DECODE_MAX_JOBS 16
cllm_status cllm_cuda_decode(const cllm_cuda_decode_job *jobs, size_t n_jobs,
                             cllm_cuda_decode_status *status_dev, void *stream);

// Device pointer to an int8 payload's scales (rows * groups_per_row floats, in the payload).
const float *cllm_cuda_int8_scales(const cllm_cuda_decode_job *job);

// ---- compute kernels (batch-1 decode, small-batch prefill) ---------------------------------

// Weight matrix as the kernels see it: (rows, cols) row-major in `dtype`, or int8 with float
// scales (scale of w[r][c] = scales[r * groups_per_row + c / group_size]).
typedef struct cllm_cuda_weight {
    const void *data;        // device
    const float *scales;     // device, int8 only
    uint64_t rows, cols;
    uint32_t kind;           // cllm_cuda_wkind
    uint32_t group_size;     // int8: weights per scale (cols = per row)
} cllm_cuda_weight;
CLLM_CUDA_STATIC_ASSERT(sizeof(cllm_cuda_weight) == 40, "weight view is 40 bytes");

typedef enum cllm_cuda_wkind {
    CLLM_CUDA_W_F32 = 0,   // same values as cllm_dtype
    CLLM_CUDA_W_F16 = 1,
    CLLM_CUDA_W_BF16 = 2,
    CLLM_CUDA_W_INT8 = 3,
    // In-VRAM compute code (src/codec/cllm_ccode.h; made by cllm_cuda_ccode_make): data is the
    // whole code buffer (header included), decoded inside the matvec. The matvec launchers, the
    // GEMMs (which unpack row chunks into their scratch) and embed (one weight at a time) take
    // these kinds; results are bit-identical to the
    // raw kind's (CC_BF16: BF16 with cols % 64 == 0, the tensor-core path; CC_INT8: INT8 on the
    // tensor-core path, i.e.
    // cols % 64 == 0 and group_size == cols or a multiple of 64; scales point into the buffer;
    // CC_F16: F16 with cols % 8 == 0).
    CLLM_CUDA_W_CC_BF16 = 4,
    CLLM_CUDA_W_CC_INT8 = 5,
    CLLM_CUDA_W_CC_F16 = 6,
} cllm_cuda_wkind;

// ---- compute code (weights compressed in VRAM, decoded inside the matvec) ----------------------

// Makes the compute code of a raw device matrix `raw` (BF16, F16: lossless; INT8: symbols and scales)
// in a new allocation of `mem`: downloads it, encodes it with the C encoder (cllm_ccode_encode_*,
// n_threads OpenMP threads), uploads the code. Synchronous on `stream`. *out: a view of kind
// CLLM_CUDA_W_CC_BF16 / _CC_F16 / _CC_INT8 whose data (the buffer) the caller releases with
// cllm_cuda_release(mem, (void *)out->data); *bytes: the buffer's size (everything the view
// reads). @return CLLM_OK; CLLM_ERR_UNSUPPORTED for another kind or a shape the fused kernels do
// not take (BF16: cols % 8 != 0; INT8: see above) or the code cannot hold; CLLM_ERR_NOMEM;
// CLLM_ERR_DEVICE.
cllm_status cllm_cuda_ccode_make(cllm_cuda_mem *mem, const cllm_cuda_weight *raw, int n_threads,
                                 void *stream, cllm_cuda_weight *out, size_t *bytes);

// Bytes of the compute code of a (rows, cols) matrix of raw kind `kind` (BF16 or INT8; group_size:
// INT8 columns per scale) if `exc_fraction` of its weights fell outside the code's window (BF16:
// exception entries; INT8: their 8-value vectors flagged, taken as independent): what a plan counts
// before the code is made (the real count depends on the values). 0 when the fused kernels do not
// take the kind or shape (cllm_cuda_ccode_make would refuse it with CLLM_ERR_UNSUPPORTED).
size_t cllm_cuda_ccode_estimate_bytes(uint32_t kind, uint64_t rows, uint64_t cols,
                                      uint32_t group_size, double exc_fraction);

// The same from host copies of the matrix (rows * cols bf16 values, or int8 symbols with
// rows * groups_per_row scales): no download.
cllm_status cllm_cuda_ccode_make_host(cllm_cuda_mem *mem, uint32_t kind, const void *data,
                                      const float *scales, uint64_t rows, uint64_t cols,
                                      uint32_t group_size, int n_threads, void *stream,
                                      cllm_cuda_weight *out, size_t *bytes);

// Launch options of the *_ex launchers (bit flags; 0 gives the plain launch). Results are bit-
// identical with any flags: they change only when a kernel may start.
//   CLLM_CUDA_PDL       programmatic dependent launch (sm_90+): the kernel may be scheduled while
//                       the previous kernel on the stream is still running; it waits for that
//                       kernel's completion (griddepcontrol.wait) before touching memory any
//                       earlier kernel writes, and lets its own successor be scheduled early.
//                       Every compute kernel (these launchers' and the backend's) waits so,
//                       whether or not it was launched with the flag, so a chain of PDL launches
//                       stays ordered (the decode launchers take no flags: always plain). Captured into a CUDA
//                       graph the stream edge becomes programmatic. A device or driver that
//                       refuses the attribute fails the launch (CLLM_ERR_DEVICE): the caller
//                       falls back to flags 0.
//   CLLM_CUDA_RESIDENT  (matvecs and RMSNorm, with PDL) no kernel that may still be running
//                       writes the weights (resident, not decoded just in time): the first
//                       weight loads are issued before the wait, overlapping the previous
//                       kernel's tail.
#define CLLM_CUDA_PDL 1u
#define CLLM_CUDA_RESIDENT 2u

// y[r] = sum_c W[r][c] * x[c] (+ y[r] when accumulate), fp32 accumulation. x: cols floats,
// y: rows floats. Reference: cllm_k_matmul (src/ref; tolerance 1e-5 relative L2).
// int8 with cols % 64 == 0, group_size == cols or a multiple of 64, and 16-byte aligned data and x
// runs on the integer tensor cores: x is taken per 64 columns as a fixed-point value with 29 bits
// below the block's largest |x| (exact to ~2^-29 of it), the products are exact; a NaN or infinity
// in x makes the affected rows NaN. Other shapes take the per-element paths (unchanged results).
cllm_status cllm_cuda_matvec(const cllm_cuda_weight *w, const float *x_dev, float *y_dev,
                             int accumulate, void *stream);

// y_dev[i] = W_i x for i < n_w (1..CLLM_CUDA_MATVEC_MAX) in one launch (q/k/v, gate/up): every
// w[i] of w[0]'s kind and cols (int8: and group_size, else CLLM_ERR_ARG); rows may differ. Same
// arithmetic as cllm_cuda_matvec (no accumulate). Reference: cllm_k_matmul per matrix.
#define CLLM_CUDA_MATVEC_MAX 3
cllm_status cllm_cuda_matvec_multi(const cllm_cuda_weight *w, int n_w, const float *x_dev,
                                   float *const *y_dev, void *stream);

// out[r] = silu((gate x)[r]) * (up x)[r] in one launch (replaces two matvecs and cllm_cuda_swiglu):
// gate and up of one kind and shape (int8: and group_size, else CLLM_ERR_ARG). out: rows floats,
// must not alias x. Reference: cllm_k_matmul of both, then cllm_k_swiglu.
cllm_status cllm_cuda_matvec_swiglu(const cllm_cuda_weight *gate, const cllm_cuda_weight *up,
                                    const float *x_dev, float *out_dev, void *stream);

// Several activation columns (batched decode): y[c * ldy + r] = W x_c, x_c = x + c * ldx, for
// c < n <= CLLM_CUDA_MATVEC_COLS, in one launch that reads the weights once. Kinds BF16 and F16
// with cols % 8 == 0, 16-byte aligned data and columns (ldx % 4 == 0), except BF16 with cols % 64
// == 0 (the tensor-core kernel: it needs cllm_cuda_matvec_cols_job's scratch); others
// CLLM_ERR_UNSUPPORTED. Column c is bit-identical to cllm_cuda_matvec on x_c (one order).
#define CLLM_CUDA_MATVEC_COLS 8
cllm_status cllm_cuda_matvec_cols(const cllm_cuda_weight *w, const float *x_dev, uint64_t ldx,
                                  uint32_t n, float *y_dev, uint64_t ldy, void *stream);

// Compute code back to raw weights: rows [r0, r0 + n_rows) of w (CC_BF16, CC_F16, CC_INT8; CC_BF16
// and CC_INT8: r0 a multiple of 16) decoded into dst (16-byte aligned, n_rows x cols elements), bit for bit the
// rows it was made from: bf16 for CC_BF16; for CC_INT8 the int8 values, or with `bf16` their
// dequantised bf16 values (q * scale rounded to nearest even, as the int8 GEMM's dequantisation).
// *out = the raw view of dst (int8: w's scales from row r0 on, inside w's buffer). One launch on
// `stream`. Steps too long for the fused matvecs (prefill) give the GEMM this (cllm_cuda_gemm).
cllm_status cllm_cuda_ccode_unpack_rows(const cllm_cuda_weight *w, uint64_t r0, uint64_t n_rows,
                                        int bf16, void *dst, size_t dst_bytes,
                                        cllm_cuda_weight *out, void *stream);

// The column launch for a whole job (batched decode's q/k/v, Wo and Wdown into the residual,
// gate/up + SwiGLU): for c < n <= CLLM_CUDA_MATVEC_COLS and x_c = x + c * ldx,
//   CLLM_CUDA_COLS_SET     y[i][c * ldy[i] + r]  = (W_i x_c)[r]     (n_w matrices of one width)
//   CLLM_CUDA_COLS_ACC     y[i][c * ldy[i] + r] += (W_i x_c)[r]
//   CLLM_CUDA_COLS_SWIGLU  y[0][c * ldy[0] + r]  = silu(W_0 x_c) * (W_1 x_c)  (n_w = 2, equal rows;
//                          y_dev and ldy need only entry 0)
// Kinds where cllm_cuda_matvec_cols_ok: BF16, F16, CC_F16 (cols % 8 == 0), CC_BF16 (cols % 64 ==
// 0) and INT8 (cols % 64 == 0, one group per row or groups of a multiple of 64), with 16-byte
// aligned data and columns. INT8, CC_BF16 and BF16 with cols % 64 == 0 also need `scratch`
// (16-byte aligned) of cllm_cuda_matvec_cols_scratch(cols) bytes: x is turned into the
// tensor-core kernels' fragments (int8 digit planes, bf16 parts) there once per launch. Column c is
// bit-identical to the one-token launch (cllm_cuda_matvec_ex / _multi_ex / _swiglu_ex) on x_c.
enum { CLLM_CUDA_COLS_SET = 0, CLLM_CUDA_COLS_ACC = 1, CLLM_CUDA_COLS_SWIGLU = 2 };
int cllm_cuda_matvec_cols_ok(const cllm_cuda_weight *w);
size_t cllm_cuda_matvec_cols_scratch(uint64_t cols);
cllm_status cllm_cuda_matvec_cols_job(const cllm_cuda_weight *w, int n_w, int mode,
                                      const float *x_dev, uint64_t ldx, uint32_t n,
                                      float *const *y_dev, const uint64_t *ldy, void *scratch,
                                      size_t scratch_bytes, void *stream);

// The same launches with launch options (see CLLM_CUDA_PDL above).
cllm_status cllm_cuda_matvec_ex(const cllm_cuda_weight *w, const float *x_dev, float *y_dev,
                                int accumulate, unsigned flags, void *stream);
cllm_status cllm_cuda_matvec_multi_ex(const cllm_cuda_weight *w, int n_w, const float *x_dev,
                                      float *const *y_dev, unsigned flags, void *stream);
cllm_status cllm_cuda_matvec_swiglu_ex(const cllm_cuda_weight *gate, const cllm_cuda_weight *up,
                                       const float *x_dev, float *out_dev, unsigned flags,
                                       void *stream);

// out[t][i] = x[t][i] / sqrt(mean_i(x[t][i]^2) + eps) * weight[i] for t < n_rows. In place is
// fine. Reference: cllm_k_rmsnorm.
cllm_status cllm_cuda_rmsnorm(const float *x_dev, const float *weight_dev, float *out_dev,
                              uint32_t n_rows, uint32_t dim, float eps, void *stream);
cllm_status cllm_cuda_rmsnorm_ex(const float *x_dev, const float *weight_dev, float *out_dev,
                                 uint32_t n_rows, uint32_t dim, float eps, unsigned flags,
                                 void *stream);

// Where the tokens of a step sit, read on the device (so that a CUDA graph replays for any
// positions): token t at position pos[t] of KV slot slot[t] (slot NULL: every token in slot 0).
// Caches are (n_slots, slot_stride, n_kv_heads, head_dim): slot s starts s * slot_stride
// positions after the pointer a launcher is given. pos[t] < slot_stride.
typedef struct cllm_cuda_tokpos {
    const uint32_t *pos;     // device, one per token
    const uint32_t *slot;    // device, one per token, or NULL
    uint32_t slot_stride;    // positions per slot (the context)
    uint32_t reserved_;
} cllm_cuda_tokpos;
CLLM_CUDA_STATIC_ASSERT(sizeof(cllm_cuda_tokpos) == 24, "token positions are 24 bytes");

// RoPE + KV store (graph-replayable: positions and slots are read on the device, see
// cllm_cuda_tokpos). Pair (2i, 2i+1) of every head of token t of q (n_tok, n_heads, hd) is
// rotated in place by the angle of position pos[t] in cos_t/sin_t (ctx, hd/2: the CPU's tables
// from cllm_k_rope_angles), and k (n_tok, n_kv_heads, hd) rotated into the cache kc, v copied
// into vc, at position pos[t] of slot slot[t]. Reference: cllm_k_rope + cllm_k_store_kv, bit for
// bit (no FMA contraction). flags: CLLM_CUDA_PDL.
cllm_status cllm_cuda_rope_store(float *q, const float *k, const float *v, float *kc, float *vc,
                                 const float *cos_t, const float *sin_t, cllm_cuda_tokpos tp,
                                 uint32_t n_tok, uint32_t n_heads, uint32_t n_kv_heads,
                                 uint32_t hd, unsigned flags, void *stream);

// Attention of n_q queries over fp32 caches (see cllm_cuda_tokpos): query t attends to positions
// 0..pos[t] of slot slot[t]; q/out (n_q, n_heads, head_dim); GQA: head h reads kv head h /
// (n_heads / n_kv_heads); scores scaled by 1/sqrt(head_dim). smem_pos > every pos[t] sizes the
// score buffer (the context when captured in a graph); head_dim <= 256, smem_pos <= 49152. Reference: cllm_k_attention_head, within 1e-5 relative L2 (fast exp).
// cllm_cuda_attention_init(max_pos) raises the shared-memory limit once, before capture.
cllm_status cllm_cuda_attention_init(uint32_t max_pos);
cllm_status cllm_cuda_attention(const float *q, const float *kc, const float *vc, float *out,
                                cllm_cuda_tokpos tp, uint32_t n_q, uint32_t smem_pos,
                                uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd,
                                unsigned flags, void *stream);

// Batch-1 split attention (flash-decoding), the same result as cllm_cuda_attention within 1e-5
// relative L2 (reference: cllm_k_attention_head): query t of n_q (1..4) sits at position pos[t]
// of slot slot[t] (read on the device: replays in a CUDA graph; see cllm_cuda_tokpos). The positions are spread over n_kv_heads x n_splits
// blocks of 4 warps; the heads sharing a kv head share its K/V loads (n_heads / n_kv_heads of 1,
// 2, 4 or 8), head_dim a multiple of 4 up to 256, q and caches 16-byte aligned. max_pos (> every
// pos[t] it will see; the context) fixes n_splits, so results do not depend on the
// position's range. scratch: cllm_cuda_attention_split_scratch bytes of device memory whose first
// 256-byte-rounded n_q * n_kv_heads words are zero before the first launch (each launch leaves
// them zero again); one launch at a time per scratch. flags: CLLM_CUDA_PDL.
int cllm_cuda_attention_split_ok(uint32_t n_q, uint32_t n_heads, uint32_t n_kv_heads,
                                 uint32_t head_dim);
size_t cllm_cuda_attention_split_scratch(uint32_t n_q, uint32_t max_pos, uint32_t n_heads,
                                         uint32_t n_kv_heads, uint32_t head_dim);
cllm_status cllm_cuda_attention_split(const float *q_dev, const float *k_cache_dev,
                                      const float *v_cache_dev, float *out_dev,
                                      cllm_cuda_tokpos tp, uint32_t n_q, uint32_t max_pos,
                                      uint32_t n_heads, uint32_t n_kv_heads, uint32_t head_dim,
                                      void *scratch_dev, size_t scratch_bytes, unsigned flags,
                                      void *stream);
// cllm_cuda_rope_store then cllm_cuda_attention_split in one launch, the same bits (out and the
// caches; q is not rotated in place): q, k, v (n_q, heads, head_dim) unrotated as the q/k/v
// matvecs wrote them (k and v 16-byte aligned). Each query rotates its heads in registers, reads
// the step's own positions of its slot from k and v, and the block that owns a query's position
// stores its rotated key and its value into the caches.
cllm_status cllm_cuda_rope_attention_split(const float *q_dev, const float *k_dev,
                                           const float *v_dev, float *k_cache_dev,
                                           float *v_cache_dev, const float *cos_t,
                                           const float *sin_t, float *out_dev,
                                           cllm_cuda_tokpos tp, uint32_t n_q, uint32_t max_pos,
                                           uint32_t n_heads, uint32_t n_kv_heads,
                                           uint32_t head_dim, void *scratch_dev,
                                           size_t scratch_bytes, unsigned flags, void *stream);

// out[i] = silu(gate[i]) * up[i], n elements (out may alias gate). Reference: cllm_k_swiglu.
cllm_status cllm_cuda_swiglu(const float *gate_dev, const float *up_dev, float *out_dev, size_t n,
                             void *stream);
// x[i] += y[i], n elements.
cllm_status cllm_cuda_add(float *x_dev, const float *y_dev, size_t n, void *stream);

// out[t][:] = row tokens[t] of the embedding table `w` (rows = vocab, cols = dim), dequantised to
// fp32, bit-identical from a raw kind or its compute code. tokens: n_tok int32 on the device; an
// id outside [0, rows) gives a zero row.
cllm_status cllm_cuda_embed(const cllm_cuda_weight *w, const int32_t *tokens_dev, uint32_t n_tok,
                            float *out_dev, void *stream);
// out[:] = row `row` (< rows) of `w`, the row index passed with the launch (no upload).
cllm_status cllm_cuda_embed_row(const cllm_cuda_weight *w, uint64_t row, float *out_dev,
                                void *stream);


// ---- prefill GEMM through cuBLAS --------------------------------------------------------------

// A handle for the GEMMs (cuBLAS and cuBLASLt); an optional device workspace for both (without
// one, cuBLAS allocates its own and the integer GEMM takes algorithms that need none).
cllm_status cllm_cuda_blas_create(void **handle);
cllm_status cllm_cuda_blas_workspace(void *handle, void *ws_dev, size_t bytes);
void cllm_cuda_blas_destroy(void *handle);

// Y[t * ldy + r] = (X W^T)[t][r] (t < n_tok, r < rows, ldy >= rows) in fp32, for every kind:
//   int8 (and CC_INT8) with one scale per row, cols % 16 == 0: integer tensor cores through
//     cuBLASLt, X (16-byte aligned) as two int8 digits per value (15 bits of each token row's
//     maximum), W read as int8 once per 128 tokens, compute code unpacked to int8 in row chunks
//     first (int32 sums: the same bits as the raw matrix);
//   f32: SGEMM (no scratch);
//   otherwise cublasGemmEx on X rounded to bf16 (f16 for f16 weights) in `scratch`, W in row
//     chunks of cllm_cuda_gemm_chunk_rows, one call each: bf16/f16 whole and in place; grouped
//     int8 in chunks of at most CLLM_CUDA_GEMM_CHUNK bytes dequantised to bf16 in `scratch` after
//     X; compute code unpacked there to bf16 (CC_INT8: and dequantised) in its raw kind's chunks,
//     so that it gives its raw kind's bits.
// `scratch_cap` in bytes (cllm_cuda_gemm_scratch_bytes, enough for any row range of w too).
// Tolerance against cllm_k_matmul per token: bf16/grouped int8 ~ 1e-2 relative L2 (X rounding),
// per-row int8 and f32 ~ 1e-4.
cllm_status cllm_cuda_gemm(void *blas, const cllm_cuda_weight *w, const float *x_dev,
                           uint32_t n_tok, float *y_dev, uint64_t ldy, void *scratch_dev,
                           size_t scratch_cap, void *stream);
size_t cllm_cuda_gemm_scratch_bytes(const cllm_cuda_weight *w, uint32_t n_tok);
// cllm_cuda_gemm of n_w <= CLLM_CUDA_GEMM_SHARED_MAX weights of one width on the same X (q/k/v,
// gate/up): y_dev[i] (pitch ldy[i]) = X W_i^T, each bit for bit its own cllm_cuda_gemm. When every
// weight takes the integer path, X is split into digits once for all of them. `scratch_cap`: the
// largest cllm_cuda_gemm_scratch_bytes of the weights.
#define CLLM_CUDA_GEMM_SHARED_MAX 3
cllm_status cllm_cuda_gemm_shared(void *blas, const cllm_cuda_weight *w, int n_w,
                                  const float *x_dev, uint32_t n_tok, float *const *y_dev,
                                  const uint64_t *ldy, void *scratch_dev, size_t scratch_cap,
                                  void *stream);
#ifndef CLLM_CUDA_GEMM_CHUNK
#define CLLM_CUDA_GEMM_CHUNK (64ull << 20)
#endif
uint64_t cllm_cuda_gemm_chunk_rows(uint32_t kind, uint64_t rows, uint64_t cols);

// int8 weights (cllm_cuda_gemm_i8_ok: INT8 or CC_INT8, cols % 64 == 0, one group per row or
// groups of a multiple of 64, 16-byte aligned data) on the bf16 tensor cores without a bf16 copy
// of W: Y[t * ldy + r] = sum_c q[r][c] bf16(x_t[c]) times the scales in fp32 (exact int8 x bf16
// products, fp32 sums in a fixed order; a row's result does not depend on the others). `scratch`
// (16-byte aligned) holds x in bf16 and, for CC_INT8, one row chunk of the int8 values unpacked
// (the same rows' results as the raw int8 matrix, bit for bit): cllm_cuda_gemm_i8_scratch bytes
// (enough for any row range of w too). Tolerance against cllm_k_matmul: ~1e-2 relative L2 (x rounding).
int cllm_cuda_gemm_i8_ok(const cllm_cuda_weight *w);
size_t cllm_cuda_gemm_i8_scratch(const cllm_cuda_weight *w, uint32_t n_tok);
cllm_status cllm_cuda_gemm_i8(const cllm_cuda_weight *w, const float *x_dev, uint32_t n_tok,
                              float *y_dev, uint64_t ldy, void *scratch_dev, size_t scratch_cap,
                              void *stream);

#ifdef __cplusplus
}
#endif
#endif
