// The CUDA op table (engine/cllm_backend.h): the engine's forward pass runs on one GPU through
// these ops, every one asynchronous on the compute stream; the weight provider (the copy/decode
// pipeline, cllm_cuda_backend.cu) hands out views into device memory.
//
// Matrix products: steps of at most BE_MATVEC_MAX_N tokens run the fp32 matvec kernels (q/k/v
// as one launch, gate/up fused with SwiGLU, Wo and Wdown accumulating into the residual), as
// column launches where the kind has them (weights read once per step; each token bit-identical
// to its one-token launch); int8 takes column launches up to BE_COLS_MAX_N tokens.
// Larger steps run GEMMs (int8 up to BE_GEMM_I8_MAX_N tokens on the bf16 tensor cores; beyond,
// int8 with one scale per row through cuBLASLt's integer GEMM, everything else through cuBLAS
// with bf16 inputs and fp32 output, W in row chunks). Results therefore depend on how a sequence
// is split into steps (include/codecllm.h states it). Compute code (fused mode) takes the fused
// matvecs where its raw kind takes matvecs, and for longer steps the same GEMMs, each row chunk
// unpacked into the GEMM scratch: fused mode gives raw mode's bits.
//
// Steps. The positions and KV slots of a step's tokens live in device memory (ctl_dev, uploaded
// by `step`), so the kernels do not depend on them, and a step of n <= BE_GRAPH_MAX_N tokens that
// each want their logits (a decode step of n sequences; n = 1: one sequence) with nothing streamed
// replays a CUDA graph captured from the first such step of n tokens: the layers and the
// classifier, decode branches included (the provider's pipeline forks its decode streams from
// the compute stream inside the capture and joins them at each acquire).
//
// Programmatic dependent launch (PDL). With every matrix RAW (no decode streams in the graph) the
// graph's kernels are captured with CLLM_CUDA_PDL | CLLM_CUDA_RESIDENT: each kernel may be
// scheduled while its predecessor still runs, issues its first (resident) weight loads, then
// waits for the predecessor's completion (griddepcontrol.wait) before reading activations. The
// drain between kernels (~8 per layer) is then overlapped with weight streaming. The arithmetic
// is unchanged: the graph's first replay is compared bit for bit with direct launches, and a
// refused capture or a difference turns PDL off (logged), never the step.
#include "cllm_cuda_be.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BE_MAX_BUFFERS 32  // engine buffers tracked for the graph check

#define BE_READ_ROWS 16    // logits rows read through a pinned buffer (2 MiB at 32000 words)
#define BE_GRAPH_MAX_N 64  // steps of 1..64 tokens that each want their logits: one graph each
// A size's graph is captured at its BE_GRAPH_AFTER-th step: a server whose batch grows one sequence
// at a time (each size seen once or twice) captures nothing until a size repeats (each capture with
// its check costs ~0.1 s: 32 sizes made the first round of a 32-client load 4-5x slower).
#define BE_GRAPH_AFTER 3

// A step graph (one per token count).
struct be_graph {
    cudaGraphExec_t exec;
    int state;                   // 0 not tried, 1 ready, -1 failed (direct launches)
    // PDL inside the graph (all matrices RAW): 0 not tried, 1 in use, -1 off (refused, or the
    // graph with it differed from direct launches).
    int pdl;
    int checked;                 // the first replay was compared with direct launches
    int seen;                    // steps of this size so far (captured from the BE_GRAPH_AFTER-th)
};

struct be_dev {
    cllm_model_config cfg;
    cllm_engine_options opt;
    uint32_t ctx, batch;
    size_t dim, q_dim, kv_dim, hidden, vocab, head_dim;
    char device_desc[160];

    cllm_cuda_mem *mem;
    void *compute;               // cudaStream_t
    void *blas;
    void *gemm_scratch, *blas_ws;
    size_t gemm_scratch_bytes;
    float *acc_tmp;              // (batch, dim): matmul_add's GEMM output before the add
    void *cols_scratch;          // int8 column launches: x as digit planes
    size_t cols_scratch_bytes;
    float *rope_cos, *rope_sin;  // (ctx, head_dim / 2)
    uint32_t *ctl_dev, *ctl_host; // (2, batch): the step's positions, then slots (host: pinned)
    uint32_t *rows_dev, *rows_host; // (batch): embedding rows (host: pinned)
    float *read_host;            // (BE_READ_ROWS, vocab) pinned: a short step's logits out
    cllm_cuda_decode_status *status_dev;
    uint64_t own_bytes;

    // Split attention for steps of at most BE_MATVEC_MAX_N tokens where it takes the heads; it
    // does their RoPE and KV store too, from what rope_kv left here (rope_q NULL: none pending).
    int att_split;
    const float *rope_q, *rope_k, *rope_v;
    const float *rope_kc;
    void *att_scratch;
    size_t att_scratch_bytes;

    // The current step.
    uint32_t smem_pos;           // attention score buffer: positions (the context in a graph)
    unsigned lf;                 // launch flags while capturing with PDL (else 0)
    int first_launch;            // the next launch is the graph's first (never PDL)
    be_state *prov;              // the provider created on this backend
    be_graph graphs[BE_GRAPH_MAX_N + 1];  // [n]: the n-token step's graph ([0] unused)
    void *buf[BE_MAX_BUFFERS];   // engine buffers (alloc): the graph check's inputs and outputs
    size_t buf_bytes[BE_MAX_BUFFERS];
    int n_buf;
};

static void dev_log(const be_dev *d, const char *fmt, ...) CLLM_PRINTF(2, 3);
static void dev_log(const be_dev *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cllm_vlogf(d->opt.log, d->opt.log_user, fmt, ap);
    va_end(ap);
}

static cllm_status dalloc(be_dev *d, uint64_t bytes, void **p) {
    RETURN_IF(bytes > SIZE_MAX, CLLM_ERR_NOMEM, "device allocation of %llu bytes",
              (unsigned long long)bytes);
    d->own_bytes += cllm_align_up(bytes, BE_ALIGN);
    return cllm_cuda_alloc(d->mem, (size_t)cllm_align_up(bytes, BE_ALIGN), p);
}
#define DALLOC(d, bytes, ptr) dalloc((d), (bytes), (void **)(ptr))

// Launch flags of the next compute kernel: PDL while capturing with it, except the graph's first
// kernel; weight loads before the wait only for resident weights (PDL is only on with every
// matrix RAW).
static unsigned lflags(be_dev *d, int weights) {
    if (!d->lf) return 0;
    if (d->first_launch) {
        d->first_launch = 0;
        return 0;
    }
    return d->lf | (weights ? CLLM_CUDA_RESIDENT : 0u);
}

// ---- setup -----------------------------------------------------------------------------------

static cllm_status upload_rope(be_dev *d) {
    const size_t n_pairs = d->head_dim / 2, n = 2 * (size_t)d->ctx * n_pairs;
    float *h = (float *)malloc(n * sizeof(float));
    double *freqs = (double *)malloc((n_pairs ? n_pairs : 1) * sizeof(double));
    cllm_status st = h && freqs ? CLLM_OK : CLLM_FAIL(CLLM_ERR_NOMEM, "RoPE tables");
    if (st == CLLM_OK) {
        cllm_k_rope_freqs(&d->cfg, freqs);
        for (size_t p = 0; p < d->ctx; p++)
            cllm_k_rope_angles(freqs, n_pairs, p, h + p * n_pairs, h + (d->ctx + p) * n_pairs);
        st = DALLOC(d, n * 4, &d->rope_cos);
    }
    if (st == CLLM_OK && cudaMemcpy(d->rope_cos, h, n * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "RoPE upload: %s", cudaGetErrorString(cudaGetLastError()));
    d->rope_sin = d->rope_cos + (size_t)d->ctx * n_pairs;
    free(h);
    free(freqs);
    return st;
}

// Split attention where it takes the heads, its scratch zeroed (before any capture).
static cllm_status att_setup(be_dev *d) {
    const uint32_t nh = d->cfg.n_heads, nkv = d->cfg.n_kv_heads, hd = (uint32_t)d->head_dim;
    d->att_split = cllm_cuda_attention_split_ok(1, nh, nkv, hd);
    if (!d->att_split) {
        dev_log(d, "cuda: split attention cannot take heads %u/%u x %u; using cllm_cuda_attention",
                nh, nkv, hd);
        return CLLM_OK;
    }
    for (uint32_t q = 1; q <= BE_MATVEC_MAX_N; q++) {
        const size_t b = cllm_cuda_attention_split_scratch(q, d->ctx, nh, nkv, hd);
        d->att_scratch_bytes = b > d->att_scratch_bytes ? b : d->att_scratch_bytes;
    }
    TRY(DALLOC(d, d->att_scratch_bytes, &d->att_scratch));
    CLLM_CUDA_TRY(cudaMemsetAsync(d->att_scratch, 0, d->att_scratch_bytes,
                                  CLLM_STREAM(d->compute)));
    return CLLM_OK;
}

static cllm_status dev_setup(be_dev *d) {
    TRY(cllm_cuda_device_open(d->opt.device, d->device_desc, sizeof d->device_desc));
    RETURN_IF(d->head_dim > BE_ATT_MAX_HD, CLLM_ERR_UNSUPPORTED,
              "cuda backend: head_dim %zu (at most %d)", d->head_dim, BE_ATT_MAX_HD);
    TRY(cllm_cuda_attention_init(d->ctx));
    TRY(cllm_cuda_mem_create(&d->mem));
    TRY(cllm_cuda_stream_create(&d->compute));
    TRY(upload_rope(d));
    TRY(DALLOC(d, 2 * (uint64_t)d->batch * 4, &d->ctl_dev));
    TRY(DALLOC(d, (uint64_t)d->batch * 4, &d->rows_dev));
    TRY(DALLOC(d, sizeof(cllm_cuda_decode_status), &d->status_dev));
    TRY(cllm_cuda_decode_status_reset(d->status_dev, d->compute));  // be_pipe_end: again
    TRY(cllm_cuda_host_alloc(2 * (size_t)d->batch * 4, (void **)&d->ctl_host));
    TRY(cllm_cuda_host_alloc((size_t)d->batch * 4, (void **)&d->rows_host));
    TRY(cllm_cuda_host_alloc((size_t)BE_READ_ROWS * d->vocab * 4, (void **)&d->read_host));
    TRY(DALLOC(d, (uint64_t)d->batch * d->dim * 4, &d->acc_tmp));
    d->cols_scratch_bytes = cllm_cuda_matvec_cols_scratch(d->hidden > d->dim ? d->hidden : d->dim);
    TRY(DALLOC(d, d->cols_scratch_bytes, &d->cols_scratch));
    TRY(att_setup(d));
    CLLM_CUDA_TRY(cudaDeviceSynchronize());
    return CLLM_OK;
}

static void cuda_free(void *state) {
    be_dev *d = (be_dev *)state;
    if (!d) return;
    if (d->compute) (void)cudaStreamSynchronize(CLLM_STREAM(d->compute));
    for (int i = 0; i <= BE_GRAPH_MAX_N; i++)
        if (d->graphs[i].exec) (void)cudaGraphExecDestroy(d->graphs[i].exec);
    cllm_cuda_blas_destroy(d->blas);
    cllm_cuda_stream_destroy(d->compute);
    cllm_cuda_host_free(d->ctl_host);
    cllm_cuda_host_free(d->rows_host);
    cllm_cuda_host_free(d->read_host);
    cllm_cuda_mem_free_all(d->mem);
    (void)cudaGetLastError();
    free(d);
}

static cllm_status cuda_create(const cllm_model_config *cfg, const cllm_engine_options *opt,
                               uint32_t ctx, void **state) {
    RETURN_IF(opt->kv_dtype != CLLM_DTYPE_F32, CLLM_ERR_UNSUPPORTED,
              "cuda backend: KV cache dtype %s is not supported (f32 only)",
              cllm_dtype_name(opt->kv_dtype));
    const int n_dev = cllm_cuda_device_count();
    RETURN_IF(n_dev == 0, CLLM_ERR_DEVICE, "cuda backend: no CUDA device (or no driver)");
    RETURN_IF(opt->device < 0 || opt->device >= n_dev, CLLM_ERR_DEVICE,
              "cuda backend: device %d requested, %d present", opt->device, n_dev);
    be_dev *d = (be_dev *)calloc(1, sizeof *d);
    RETURN_IF(!d, CLLM_ERR_NOMEM, "cuda backend state");
    d->cfg = *cfg;
    d->opt = *opt;
    d->ctx = ctx;
    d->batch = BE_BATCH;
    d->dim = cfg->dim;
    d->head_dim = cfg->head_dim;
    d->q_dim = (size_t)cfg->n_heads * cfg->head_dim;
    d->kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim;
    d->hidden = cfg->hidden_dim;
    d->vocab = cfg->vocab_size;
    cllm_status st = dev_setup(d);
    if (st != CLLM_OK) {
        cuda_free(d);
        return cllm_error_context(st, "cuda backend");
    }
    *state = d;
    return CLLM_OK;
}

void be_dev_lend(be_dev *d, be_state *s) {
    s->dev = d;
    s->cfg = d->cfg;
    s->mode = d->opt.weights;
    s->budget = d->opt.vram_budget;
    s->n_threads = d->opt.n_threads;
    s->n_seq = d->opt.n_seq ? d->opt.n_seq : 1;
    s->log = d->opt.log;
    s->log_user = d->opt.log_user;
    s->ctx = d->ctx;
    s->batch = d->batch;
    s->n_layers = d->cfg.n_layers;
    s->dim = d->dim;
    s->head_dim = d->head_dim;
    s->q_dim = d->q_dim;
    s->kv_dim = d->kv_dim;
    s->hidden = d->hidden;
    s->vocab = d->vocab;
    s->device_desc = d->device_desc;
    s->att_scratch_bytes = d->att_scratch_bytes;
    s->mem = d->mem;
    s->compute = d->compute;
    s->status_dev = d->status_dev;
    d->prov = s;
}

cllm_status be_dev_gemm_alloc(be_dev *d, uint64_t scratch) {
    if (!scratch) return CLLM_OK;
    d->gemm_scratch_bytes = (size_t)scratch;
    TRY(DALLOC(d, scratch, &d->gemm_scratch));
    TRY(DALLOC(d, BE_BLAS_WS, &d->blas_ws));
    TRY(cllm_cuda_blas_create(&d->blas));
    // An explicit workspace: cuBLAS then allocates nothing on the forward path.
    TRY(cllm_cuda_blas_workspace(d->blas, d->blas_ws, BE_BLAS_WS));
    return CLLM_OK;
}

// ---- memory ----------------------------------------------------------------------------------

static void *cuda_alloc(void *state, size_t bytes) {
    be_dev *d = (be_dev *)state;
    void *p = NULL;
    if (cllm_cuda_alloc(d->mem, bytes ? bytes : 1, &p) != CLLM_OK) return NULL;
    if (cudaMemset(p, 0, bytes ? bytes : 1) != cudaSuccess) {
        (void)cllm_cuda_release(d->mem, p);
        return NULL;
    }
    if (d->n_buf < BE_MAX_BUFFERS) {
        d->buf[d->n_buf] = p;
        d->buf_bytes[d->n_buf++] = bytes;
    }
    return p;
}

static void cuda_release(void *state, void *p) {
    be_dev *d = (be_dev *)state;
    if (!p) return;
    for (int i = 0; i < d->n_buf; i++)
        if (d->buf[i] == p) {
            d->buf[i] = d->buf[--d->n_buf];
            d->buf_bytes[i] = d->buf_bytes[d->n_buf];
            break;
        }
    (void)cllm_cuda_release(d->mem, p);
}

// Through the pinned buffer when it holds them (the logits of a step of up to BE_READ_ROWS
// tokens): into pageable memory the copy cost the host ~20 us more for 128 KB, the driver staging
// it in pieces (PERF.md 7ag).
static cllm_status cuda_read(void *state, void *host, const void *src, size_t bytes) {
    be_dev *d = (be_dev *)state;
    const int staged = bytes <= (size_t)BE_READ_ROWS * d->vocab * 4;
    CLLM_CUDA_TRY(cudaMemcpyAsync(staged ? d->read_host : host, src, bytes,
                                  cudaMemcpyDeviceToHost, CLLM_STREAM(d->compute)));
    TRY(cllm_cuda_sync(d->compute));
    if (staged) memcpy(host, d->read_host, bytes);
    return CLLM_OK;
}

// ---- ops -------------------------------------------------------------------------------------

// One row: its index passed with the launch (no upload). More: the rows uploaded through
// rows_host, which is free (the previous step ended with a synchronisation).
static cllm_status cuda_embed(void *state, float *x, const cllm_wview *table, const uint32_t *rows,
                              size_t n) {
    be_dev *d = (be_dev *)state;
    CLLM_CUDA_TRY(cudaSetDevice(d->opt.device));  // a step's first op (the device is per thread)
    const cllm_cuda_weight k = be_kw(table);
    if (n == 1) return cllm_cuda_embed_row(&k, rows[0], x, d->compute);
    RETURN_IF(n > d->batch, CLLM_ERR_ARG, "cuda embed: %zu rows", n);
    memcpy(d->rows_host, rows, n * sizeof *rows);
    TRY(cllm_cuda_copy(d->rows_dev, d->rows_host, n * sizeof *rows, d->compute));
    return cllm_cuda_embed(&k, (const int32_t *)d->rows_dev, (uint32_t)n, x, d->compute);
}

static cllm_status cuda_rmsnorm(void *state, float *out, const float *x, const cllm_wview *w,
                                size_t n_tok, size_t dim, float eps) {
    be_dev *d = (be_dev *)state;
    // The norm weights are resident in every weights mode (uploaded at create).
    return cllm_cuda_rmsnorm_ex(x, (const float *)w->data, out, (uint32_t)n_tok, (uint32_t)dim,
                                eps, lflags(d, 1), d->compute);
}

// y[i] (n, rows of w[i]), row pitch ldy[i] floats, = x (n, cols) . W_i^T for n_w weights of one
// width on the same x: int8 (raw or compute code) steps of up to BE_GEMM_I8_MAX_N tokens on the
// tensor cores (no bf16 copy of W); longer ones would read W once per 32 tokens there, and
// cllm_cuda_gemm_shared wins (per-row int8: the integer GEMM, x split into digits once for every
// weight; else cuBLAS on W in row chunks, dequantised or unpacked to bf16 in the scratch). Token
// chunks only if the scratch is short (the plan sizes it for the step).
static cllm_status gemm_w(be_dev *d, const cllm_cuda_weight *w, int n_w, const float *x,
                          uint32_t n, float *const *y, const uint64_t *ldy) {
    RETURN_IF(!d->blas, CLLM_ERR_DEVICE, "cuda: GEMM without a cuBLAS handle");  // a bug
    int i8 = n <= BE_GEMM_I8_MAX_N;
    for (int i = 0; i < n_w; i++) i8 = i8 && cllm_cuda_gemm_i8_ok(&w[i]);
    auto need = [&](uint32_t nb) {
        size_t m = 0;
        for (int i = 0; i < n_w; i++) {
            const size_t b = i8 ? cllm_cuda_gemm_i8_scratch(&w[i], nb)
                                : cllm_cuda_gemm_scratch_bytes(&w[i], nb);
            m = b > m ? b : m;
        }
        return m;
    };
    uint32_t nb = n;
    while (nb > 1 && need(nb) > d->gemm_scratch_bytes) nb = (nb + 1) / 2;
    for (uint32_t t0 = 0; t0 < n; t0 += nb) {
        const uint32_t nt = n - t0 < nb ? n - t0 : nb;
        const float *xt = x + (size_t)t0 * w[0].cols;
        float *yt[CLLM_CUDA_GEMM_SHARED_MAX];
        for (int i = 0; i < n_w; i++) yt[i] = y[i] + (size_t)t0 * ldy[i];
        if (!i8) {
            TRY(cllm_cuda_gemm_shared(d->blas, w, n_w, xt, nt, yt, ldy, d->gemm_scratch,
                                      d->gemm_scratch_bytes, d->compute));
            continue;
        }
        for (int i = 0; i < n_w; i++)
            TRY(cllm_cuda_gemm_i8(&w[i], xt, nt, yt[i], ldy[i], d->gemm_scratch,
                                  d->gemm_scratch_bytes, d->compute));
    }
    return CLLM_OK;
}

static int is_ccode(uint32_t kind) {
    return kind == CLLM_CUDA_W_CC_BF16 || kind == CLLM_CUDA_W_CC_INT8 || kind == CLLM_CUDA_W_CC_F16;
}

// Most tokens a compute-code matrix takes through the fused matvec kernels: as many as its raw
// kind's matvecs take (int8: 8, bf16: 4), so that the fused mode's results equal the raw mode's
// bit for bit at every step size. A longer step takes the GEMM, as the raw kind does.
static size_t cc_matvec_max(uint32_t kind) {
    return kind == CLLM_CUDA_W_CC_INT8 ? BE_COLS_MAX_N : BE_MATVEC_MAX_N;
}

// Steps of 2..BE_COLS_MAX_N tokens on kinds with a column kernel (cllm_cuda_matvec_cols_ok) run
// one launch per job for up to CLLM_CUDA_MATVEC_COLS tokens: the weights are read once and each
// token's result is bit-identical to its one-token launch. One-token steps keep the one-token
// launches (graph and PDL).
// Up to which step size: int8 up to 8 tokens (its column kernel reads the weights once and runs
// two tokens per MMA: 8 columns cost ~1.6x one token, cuBLAS after dequantising ~2.4x); bf16 and
// f16 up to BE_MATVEC_MAX_N (bf16's tensor-core column kernel: 8 columns of 4096 x 4096 cost
// 1.66x one token, cuBLAS 1.09x; f16's fp32 column kernel ~3-4.5x; measured on the H200,
// docs/PERF.md sections 8c and 7y). So a fused bf16 step of 5-8 tokens unpacks and takes cuBLAS,
// as raw bf16 does, to stay bit-identical to it.
static int cols_step(const cllm_cuda_weight *k, int n, size_t n_tok) {
    const size_t max = k[0].kind == CLLM_CUDA_W_INT8 || k[0].kind == CLLM_CUDA_W_CC_INT8
                           ? BE_COLS_MAX_N
                           : BE_MATVEC_MAX_N;
    if (n_tok < 2 || n_tok > max) return 0;
    for (int i = 0; i < n; i++)
        if (!cllm_cuda_matvec_cols_ok(&k[i])) return 0;
    return 1;
}

// Whether a step of n_tok tokens on k goes to the GEMM (cuda_matmul), not the matvec kernels.
static int takes_gemm(const cllm_cuda_weight *k, size_t n_tok) {
    return n_tok > BE_MATVEC_MAX_N && !cols_step(k, 1, n_tok) &&
           !(is_ccode(k->kind) && n_tok <= cc_matvec_max(k->kind));
}

// The job w[0..n) in column launches of up to CLLM_CUDA_MATVEC_COLS tokens: x (n_tok, pitch ldx),
// y[i] (n_tok, pitch ldy[i]).
static cllm_status cols_job(be_dev *d, const cllm_cuda_weight *k, int n, int mode, const float *x,
                            size_t ldx, size_t n_tok, float *const *y, const uint64_t *ldy) {
    for (size_t t = 0; t < n_tok; t += CLLM_CUDA_MATVEC_COLS) {
        const size_t nb = n_tok - t < CLLM_CUDA_MATVEC_COLS ? n_tok - t : CLLM_CUDA_MATVEC_COLS;
        float *yt[CLLM_CUDA_MATVEC_MAX];
        for (int i = 0; i < n; i++) yt[i] = y[i] + t * ldy[i];
        TRY(cllm_cuda_matvec_cols_job(k, n, mode, x + t * ldx, ldx, (uint32_t)nb, yt, ldy,
                                      d->cols_scratch, d->cols_scratch_bytes, d->compute));
    }
    return CLLM_OK;
}

// out (n, rows), pitch ldo, = W x_t through the matvec kernels: column launches where the kind
// has them, else a launch per token. Compute-code weights (no GEMM) take every n here.
static cllm_status matvecs(be_dev *d, const cllm_cuda_weight *k, const float *x, size_t ldx,
                           size_t n_tok, float *out, size_t ldo) {
    if (n_tok > 1 && cllm_cuda_matvec_cols_ok(k) && ldx % 4 == 0) {
        const uint64_t ld = ldo;
        return cols_job(d, k, 1, CLLM_CUDA_COLS_SET, x, ldx, n_tok, &out, &ld);
    }
    for (size_t t = 0; t < n_tok; t++)
        TRY(cllm_cuda_matvec_ex(k, x + t * ldx, out + t * ldo, 0, lflags(d, 1), d->compute));
    return CLLM_OK;
}

static cllm_status cuda_matmul(void *state, float *out, size_t ldo, const cllm_wview *w,
                               const float *x, size_t ldx, size_t n_tok) {
    be_dev *d = (be_dev *)state;
    TRY(be_pipe_wait(d->prov));
    const cllm_cuda_weight k = be_kw(w);
    if (!takes_gemm(&k, n_tok)) return matvecs(d, &k, x, ldx, n_tok, out, ldo);
    RETURN_IF(ldx != w->cols, CLLM_ERR_ARG, "cuda matmul: input pitch %zu for %llu columns", ldx,
              (unsigned long long)w->cols);
    const uint64_t ld = ldo;
    return gemm_w(d, &k, 1, x, (uint32_t)n_tok, &out, &ld);
}

// q/k/v: one launch per token (or per column launch) when the kinds and widths match (small
// matrices then fill the GPU like one large one), else one matmul each.
static cllm_status cuda_matmul_multi(void *state, float *const *out, const cllm_wview *const *w,
                                     int n, const float *x, size_t n_tok) {
    be_dev *d = (be_dev *)state;
    TRY(be_pipe_wait(d->prov));
    cllm_cuda_weight k[CLLM_CUDA_MATVEC_MAX];
    int same = n <= CLLM_CUDA_MATVEC_MAX;
    for (int i = 0; i < n && same; i++) {
        k[i] = be_kw(w[i]);
        same = k[i].kind == k[0].kind && k[i].cols == k[0].cols &&
               k[i].group_size == k[0].group_size;
    }
    if (same && cols_step(k, n, n_tok)) {
        uint64_t ld[CLLM_CUDA_MATVEC_MAX];
        for (int i = 0; i < n; i++) ld[i] = k[i].rows;
        return cols_job(d, k, n, CLLM_CUDA_COLS_SET, x, k[0].cols, n_tok, out, ld);
    }
    if (same && n <= CLLM_CUDA_GEMM_SHARED_MAX && takes_gemm(&k[0], n_tok)) {
        uint64_t ld[CLLM_CUDA_GEMM_SHARED_MAX];
        for (int i = 0; i < n; i++) ld[i] = k[i].rows;
        return gemm_w(d, k, n, x, (uint32_t)n_tok, out, ld);
    }
    if (!same || n_tok > BE_MATVEC_MAX_N) {
        for (int i = 0; i < n; i++)
            TRY(cuda_matmul(state, out[i], w[i]->rows, w[i], x, w[i]->cols, n_tok));
        return CLLM_OK;
    }
    for (size_t t = 0; t < n_tok; t++) {
        float *yt[CLLM_CUDA_MATVEC_MAX];
        for (int i = 0; i < n; i++) yt[i] = out[i] + t * k[i].rows;
        TRY(cllm_cuda_matvec_multi_ex(k, n, x + t * k[0].cols, yt, lflags(d, 1), d->compute));
    }
    return CLLM_OK;
}

static cllm_status cuda_matmul_add(void *state, float *out, const cllm_wview *w, const float *x,
                                   size_t n_tok) {
    be_dev *d = (be_dev *)state;
    TRY(be_pipe_wait(d->prov));
    const cllm_cuda_weight k = be_kw(w);
    if (cols_step(&k, 1, n_tok)) {
        const uint64_t ld = k.rows;
        return cols_job(d, &k, 1, CLLM_CUDA_COLS_ACC, x, k.cols, n_tok, &out, &ld);
    }
    if (n_tok <= BE_MATVEC_MAX_N) {
        for (size_t t = 0; t < n_tok; t++)
            TRY(cllm_cuda_matvec_ex(&k, x + t * k.cols, out + t * k.rows, 1, lflags(d, 1),
                                    d->compute));
        return CLLM_OK;
    }
    RETURN_IF(n_tok * k.rows > (size_t)d->batch * d->dim, CLLM_ERR_ARG,
              "cuda matmul_add: %zu x %llu outputs", n_tok, (unsigned long long)k.rows);
    if (is_ccode(k.kind) && n_tok <= cc_matvec_max(k.kind))
        TRY(matvecs(d, &k, x, k.cols, n_tok, d->acc_tmp, k.rows));
    else
        TRY(gemm_w(d, &k, 1, x, (uint32_t)n_tok, &d->acc_tmp, &k.rows));
    return cllm_cuda_add(out, d->acc_tmp, n_tok * k.rows, d->compute);
}

static cllm_status cuda_gate_up_swiglu(void *state, float *gate, float *up, const cllm_wview *wg,
                                       const cllm_wview *wu, const float *h, size_t n_tok) {
    be_dev *d = (be_dev *)state;
    TRY(be_pipe_wait(d->prov));
    const cllm_cuda_weight gu[2] = {be_kw(wg), be_kw(wu)};
    const cllm_cuda_weight &g = gu[0], &u = gu[1];
    const int same = g.kind == u.kind && g.rows == u.rows && g.cols == u.cols &&
                     g.group_size == u.group_size;
    if (same && cols_step(gu, 2, n_tok)) {
        float *y[2] = {gate, gate};  // swiglu mode writes y[0] only
        const uint64_t ld[2] = {g.rows, g.rows};
        return cols_job(d, gu, 2, CLLM_CUDA_COLS_SWIGLU, h, g.cols, n_tok, y, ld);
    }
    if (same && takes_gemm(&g, n_tok)) {
        float *const y[2] = {gate, up};
        const uint64_t ld[2] = {g.rows, u.rows};
        TRY(gemm_w(d, gu, 2, h, (uint32_t)n_tok, y, ld));
        return cllm_cuda_swiglu(gate, up, gate, n_tok * g.rows, d->compute);
    }
    if (!same || n_tok > BE_MATVEC_MAX_N) {
        TRY(cuda_matmul(state, gate, g.rows, wg, h, g.cols, n_tok));
        TRY(cuda_matmul(state, up, u.rows, wu, h, u.cols, n_tok));
        return cllm_cuda_swiglu(gate, up, gate, n_tok * g.rows, d->compute);
    }
    for (size_t t = 0; t < n_tok; t++)
        TRY(cllm_cuda_matvec_swiglu_ex(&g, &u, h + t * g.cols, gate + t * g.rows, lflags(d, 1),
                                       d->compute));
    return CLLM_OK;
}

// The step's positions and slots as the kernels read them (uploaded by `step`).
static cllm_cuda_tokpos tokpos(const be_dev *d, const cllm_kv_layer *kv) {
    const cllm_cuda_tokpos tp = {d->ctl_dev, d->ctl_dev + d->batch, (uint32_t)kv->ctx, 0};
    return tp;
}

// Whether a step's attention takes the split kernel (graph-safe: its splits are fixed by the
// context), which then also does the step's RoPE and KV store (cuda_rope_kv defers them).
static int split_attention(const be_dev *d, size_t n_tok) {
    return d->att_split && n_tok <= BE_MATVEC_MAX_N;
}

static cllm_status cuda_rope_kv(void *state, float *q, float *k, const float *v,
                                const cllm_kv_layer *kv, const cllm_step *st) {
    be_dev *d = (be_dev *)state;
    if (split_attention(d, st->n_tok)) {  // done by the attention launch (one kernel fewer)
        d->rope_q = q, d->rope_k = k, d->rope_v = v, d->rope_kc = (float *)kv->k;
        return CLLM_OK;
    }
    d->rope_q = NULL;
    return cllm_cuda_rope_store(q, k, v, (float *)kv->k, (float *)kv->v, d->rope_cos, d->rope_sin,
                                tokpos(d, kv), (uint32_t)st->n_tok, d->cfg.n_heads,
                                d->cfg.n_kv_heads, (uint32_t)d->head_dim, lflags(d, 0),
                                d->compute);
}

static cllm_status cuda_attention(void *state, float *out, const float *q,
                                  const cllm_kv_layer *kv, const cllm_step *st) {
    be_dev *d = (be_dev *)state;
    const size_t n_tok = st->n_tok;
    const float *kc = (const float *)kv->k, *vc = (const float *)kv->v;
    const uint32_t nh = d->cfg.n_heads, nkv = d->cfg.n_kv_heads, hd = (uint32_t)d->head_dim;
    if (split_attention(d, n_tok)) {
        RETURN_IF(d->rope_q != q || d->rope_kc != kc, CLLM_ERR_ARG,
                  "cuda attention: not the step's rope_kv (q or cache)");
        d->rope_q = NULL;
        return cllm_cuda_rope_attention_split(q, d->rope_k, d->rope_v, (float *)kc, (float *)vc,
                                              d->rope_cos, d->rope_sin, out, tokpos(d, kv),
                                              (uint32_t)n_tok, d->ctx, nh, nkv, hd,
                                              d->att_scratch, d->att_scratch_bytes, lflags(d, 0),
                                              d->compute);
    }
    return cllm_cuda_attention(q, kc, vc, out, tokpos(d, kv), (uint32_t)n_tok, d->smem_pos, nh, nkv,
                               hd, lflags(d, 0), d->compute);
}

static cllm_status cuda_swiglu(void *state, float *gate, const float *up, size_t n) {
    return cllm_cuda_swiglu(gate, up, gate, n, ((be_dev *)state)->compute);
}

static cllm_status cuda_add(void *state, float *x, const float *y, size_t n) {
    return cllm_cuda_add(x, y, n, ((be_dev *)state)->compute);
}

// ---- steps and the graph ---------------------------------------------------------------------

typedef cllm_status (*be_body_fn)(void *ctx);

// One body run by direct launches (capturing: into the graph), inside the provider's pipeline.
static cllm_status run_body(be_dev *d, const cllm_step *st, be_body_fn body, void *ctx) {
    TRY(be_pipe_begin(d->prov, st->n_out > 0));
    return body(ctx);
}

static cllm_status graph_capture(be_dev *d, be_graph *gr, const cllm_step *st, be_body_fn body,
                                 void *ctx) {
    cudaStream_t cs = CLLM_STREAM(d->compute);
    CLLM_CUDA_TRY(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
    d->lf = gr->pdl == 1 ? CLLM_CUDA_PDL : 0u;
    d->first_launch = 1;
    d->smem_pos = d->ctx;
    cllm_status s = run_body(d, st, body, ctx);
    d->lf = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cs, &g);
    if (s == CLLM_OK && e != cudaSuccess)
        s = CLLM_FAIL(CLLM_ERR_DEVICE, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    if (s == CLLM_OK && (e = cudaGraphInstantiate(&gr->exec, g, 0)) != cudaSuccess)
        s = CLLM_FAIL(CLLM_ERR_DEVICE, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    if (g) (void)cudaGraphDestroy(g);
    return s;
}

// Captures the batch-1 step once (with PDL when every matrix is RAW; refused: again without);
// on failure logs why and falls back to direct launches.
static void graph_ensure(be_dev *d, be_graph *gr, const cllm_step *st, be_body_fn body, void *ctx) {
    if (gr->state != 0) return;
    if (gr->pdl == 0) gr->pdl = d->prov->sched.n_groups == 0 ? 1 : -1;
    cllm_status s = graph_capture(d, gr, st, body, ctx);
    if (s != CLLM_OK && gr->pdl == 1) {
        (void)cudaGetLastError();
        dev_log(d, "cuda: CUDA graph capture with programmatic dependent launch failed (%s); "
                   "capturing without", cllm_last_error());
        gr->pdl = -1;
        s = graph_capture(d, gr, st, body, ctx);
    }
    if (s == CLLM_OK) {
        gr->state = 1;
        dev_log(d, "cuda: %zu-token step captured in a CUDA graph (programmatic dependent launch "
                   "%s)", st->n_tok, gr->pdl == 1 ? "on" : "off");
        return;
    }
    (void)cudaGetLastError();
    gr->exec = NULL;
    gr->state = -1;
    dev_log(d, "cuda: CUDA graph capture failed (%s); using direct launches", cllm_last_error());
}

// The graph holds the pipeline's fork, copies and decodes: nothing to enqueue beside it.
static cllm_status graph_replay(be_dev *d, const be_graph *gr) {
    CLLM_CUDA_TRY(cudaGraphLaunch(gr->exec, CLLM_STREAM(d->compute)));
    return CLLM_OK;
}

// The engine's buffers (up to 64 MiB each: activations and logits, not the KV cache, whose
// entries at the step's position are rewritten with the same values) copied to or from a
// contiguous host area of `total` bytes. dir 0: buffers to host, 1: host to buffers.
static cllm_status buffers_copy(be_dev *d, uint8_t *host, int dir, size_t *total) {
    size_t off = 0;
    for (int i = 0; i < d->n_buf; i++) {
        if (d->buf_bytes[i] > (64u << 20)) continue;
        if (host && dir == 0)
            TRY(cllm_cuda_copy(host + off, d->buf[i], d->buf_bytes[i], d->compute));
        if (host && dir == 1)
            TRY(cllm_cuda_copy(d->buf[i], host + off, d->buf_bytes[i], d->compute));
        off += d->buf_bytes[i];
    }
    *total = off;
    return host ? cllm_cuda_sync(d->compute) : CLLM_OK;
}

// Before the first replay of a graph captured with PDL: the step by direct launches (no PDL) and
// by the graph, from the same inputs, must leave bit-identical buffers. On a difference PDL is
// turned off and the step captured again without it. Runs once (allocates).
static cllm_status graph_check(be_dev *d, be_graph *gr, const cllm_step *st, be_body_fn body,
                               void *ctx) {
    gr->checked = 1;
    if (gr->pdl != 1) return CLLM_OK;
    size_t n = 0;
    TRY(buffers_copy(d, NULL, 0, &n));
    uint8_t *h = (uint8_t *)malloc(3 * (n ? n : 1));
    RETURN_IF(!h, CLLM_ERR_NOMEM, "cuda: %zu bytes for the graph check", 3 * n);
    cllm_status s = buffers_copy(d, h, 0, &n);  // the inputs
    d->smem_pos = st->max_pos;
    if (s == CLLM_OK) s = run_body(d, st, body, ctx);
    if (s == CLLM_OK) s = be_pipe_end(d->prov);
    if (s == CLLM_OK) s = buffers_copy(d, h + n, 0, &n);
    if (s == CLLM_OK) s = buffers_copy(d, h, 1, &n);
    if (s == CLLM_OK) s = graph_replay(d, gr);
    if (s == CLLM_OK) s = be_pipe_end(d->prov);
    if (s == CLLM_OK) s = buffers_copy(d, h + 2 * n, 0, &n);
    const int same = s == CLLM_OK && memcmp(h + n, h + 2 * n, n) == 0;
    if (s == CLLM_OK) s = buffers_copy(d, h, 1, &n);  // the step runs again from its inputs
    free(h);
    TRY(s);
    if (same) {
        dev_log(d, "cuda: graph with programmatic dependent launch matches direct launches");
        return CLLM_OK;
    }
    dev_log(d, "cuda: graph with programmatic dependent launch differs from direct launches; "
               "capturing without");
    (void)cudaGraphExecDestroy(gr->exec);
    gr->exec = NULL;
    gr->state = 0;
    gr->pdl = -1;
    graph_ensure(d, gr, st, body, ctx);
    return CLLM_OK;
}

// The graph of a step that can replay one: nothing streamed, at most BE_GRAPH_MAX_N tokens, each
// wanting its logits (token i's in row i: what the capture baked in). Everything else a step
// varies by (positions, slots, token ids) is read from device memory.
static be_graph *graph_of(be_dev *d, const cllm_step *st) {
    if (st->n_tok == 0 || st->n_tok > BE_GRAPH_MAX_N || st->n_out != st->n_tok ||
        d->prov->plan.n_streamed != 0)
        return NULL;
    for (size_t i = 0; i < st->n_out; i++)
        if (st->out_tok[i] != i) return NULL;
    be_graph *gr = &d->graphs[st->n_tok];
    if (gr->seen < BE_GRAPH_AFTER) gr->seen++;
    return gr->seen >= BE_GRAPH_AFTER ? gr : NULL;
}

static cllm_status step_run(be_dev *d, const cllm_step *st, be_body_fn body, void *ctx) {
    // ctl_host is free: the previous step ended with a synchronisation.
    RETURN_IF(st->n_tok > d->batch, CLLM_ERR_ARG, "cuda step: %zu tokens", st->n_tok);
    memcpy(d->ctl_host, st->pos, st->n_tok * sizeof *st->pos);
    memcpy(d->ctl_host + d->batch, st->slot, st->n_tok * sizeof *st->slot);
    TRY(cllm_cuda_copy(d->ctl_dev, d->ctl_host, 2 * (size_t)d->batch * 4, d->compute));
    be_graph *gr = graph_of(d, st);
    const int graph_ok = gr && gr->state >= 0;
    if (graph_ok) graph_ensure(d, gr, st, body, ctx);
    if (graph_ok && gr->state == 1 && !gr->checked) TRY(graph_check(d, gr, st, body, ctx));
    if (graph_ok && gr->state == 1) {
        TRY(graph_replay(d, gr));
    } else {
        d->smem_pos = st->max_pos;
        TRY(run_body(d, st, body, ctx));
    }
    return be_pipe_end(d->prov);
}

static cllm_status cuda_step(void *state, const cllm_step *st, be_body_fn body, void *ctx) {
    be_dev *d = (be_dev *)state;
    CLLM_CUDA_TRY(cudaSetDevice(d->opt.device));  // the device is per host thread
    cllm_status s = step_run(d, st, body, ctx);
    if (s != CLLM_OK) {  // leave no work in flight behind a failure
        (void)be_pipe_end(d->prov);
        (void)cudaGetLastError();
    }
    return s;
}

static void cuda_stats(const void *state, cllm_engine_stats *out) {
    const be_dev *d = (const be_dev *)state;
    out->backend = "cuda";
    out->activation_bytes += d->own_bytes;
    out->device_peak_bytes = cllm_cuda_mem_peak(d->mem);
}

static const cllm_provider_ops *cuda_provider(cllm_weights_mode mode) { return be_provider(mode); }

static const cllm_backend_ops cuda_ops = {
    "cuda",
    BE_BATCH,
    cuda_create,
    cuda_free,
    cuda_alloc,
    cuda_release,
    cuda_provider,
    cuda_read,
    cuda_step,
    cuda_embed,
    cuda_rmsnorm,
    cuda_matmul,
    cuda_rope_kv,
    cuda_attention,
    cuda_swiglu,
    cuda_add,
    cuda_matmul_multi,
    cuda_matmul_add,
    cuda_gate_up_swiglu,
    cuda_stats,
};

extern "C" const cllm_backend_ops *cllm_backend_cuda(void) { return &cuda_ops; }
