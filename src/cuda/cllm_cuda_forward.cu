// The CUDA backend's forward pass: the same Llama block as src/engine/cllm_forward.c,
// run in chunks ("passes") of up to s->batch tokens, each ending with one synchronisation.
//
// Weights. Each layer's 7 matrices and the classifier are RAW (decoded in VRAM: read in place),
// DEVICE (payload in VRAM) or STREAM (payload in pinned host memory). The non-RAW ones are decoded
// in groups, one launch per group: {q,k,v}, {o}, {gate,up}, {down} of each layer, then the
// classifier in row chunks (cllm_cuda_backend.cu builds the schedule; cllm_cuda_plan.cu sizes
// the rings). A group decodes into its range of the scratch ring; a STREAM group first has its
// payloads copied into a range of the staging ring.
//
// Streams. copy (H2D copies), dec[0..1] (decodes: STREAM groups in order on dec[0], DEVICE
// groups alternating), compute (everything else). Decodes run ahead of compute by as many groups
// as the scratch ring holds, copies ahead of decodes by as many as the staging ring holds.
// Events, per pass (g: group, u: copy unit, both numbered in use order):
//   ev_copied[u]   copy stream, after unit u's copies. Decode of u's groups waits on it.
//   ev_decoded[g]  dec stream, after group g's decode (and STREAM int8 scales copy out of the
//                  staging range). Compute waits on it before reading g's scratch range; the
//                  copy of a later unit into a staging range overlapping u's waits on it for u's
//                  last group (copies[].wait_group). STREAM decodes are in order on dec[0], so
//                  the latest overlapping unit's decode implies all earlier ones.
//   ev_released[g] compute, after the last kernel reading g's scratch range. Decode of a later
//                  group into an overlapping range waits on it (groups[].wait_release); compute
//                  runs in order, so the latest overlapping group implies all earlier ones.
//   ev_fork        compute, at the pass start (after the decode status reset, before the
//                  embedding; inside the graph when capturing). A decode stream waits on it
//                  before its first decode of the pass (this also joins it to a graph capture).
// cudaStreamWaitEvent waits for the record enqueued last before it, so the host enqueues a wait
// only after the record it means (advance() checks this): copy u after the decode of its
// wait_group, decode g after its copy and after the release of its wait_release, compute's use of
// g after decode g. Records from the previous pass are complete (it ended with a
// synchronisation), so a range with no earlier overlapping group in this pass needs no wait. A
// wait only ever names a record already enqueued: nothing can hang.
//
// Batch-1 steps with no streamed matrix replay a CUDA graph captured at the first such step: the
// layers, final norm and classifier, decode branches included. Positions and tokens are read from
// ctl_dev, uploaded before each pass, so the graph does not depend on them; a decoded embedding
// table is read inside the graph (its first kernel), a compressed one is looked up before it.
//
// Programmatic dependent launch (PDL). With every matrix RAW (no decode streams in the graph) the
// graph's kernels are captured with CLLM_CUDA_PDL | CLLM_CUDA_RESIDENT: each kernel may be
// scheduled while its predecessor still runs, issues its first (resident) weight loads, then
// waits for the predecessor's completion (griddepcontrol.wait) before reading activations. The
// drain between kernels (~8 per layer) is then overlapped with weight streaming. The arithmetic
// is unchanged: the graph's first replay is compared bit for bit with direct launches, and a
// refused capture or a difference turns PDL off (logged), never the step.
#include "cllm_cuda_be.h"

#include <stdlib.h>
#include <string.h>

// What one pass runs.
struct be_pass {
    uint32_t nt;        // tokens
    uint32_t n_out;     // logits rows: 0, 1 (the last token) or nt
    uint32_t smem_pos;  // attention score buffer: positions (the context in a graph)
    int timing;         // record timing events (not inside a graph)
    int graph;          // being captured: the fork is recorded inside the graph
    unsigned lf;        // launch flags of the compute kernels (CLLM_CUDA_PDL or 0)
    int embed;          // the pass starts with the embedding (decoded table, captured)
};

#define REC(ev, stream) CLLM_CUDA_TRY(cudaEventRecord((ev), CLLM_STREAM(stream)))
#define WAIT(stream, ev) CLLM_CUDA_TRY(cudaStreamWaitEvent(CLLM_STREAM(stream), (ev), 0))

// ---- weights pipeline ------------------------------------------------------------------------

static cllm_status issue_copy(be_state *s, const be_pass *p, int u) {
    const be_copy *c = &s->copies[u];
    if (c->wait_group >= 0) WAIT(s->copy, s->ev_decoded[c->wait_group]);
    if (p->timing) REC(s->ev_cp_t[2 * u], s->copy);
    for (int i = 0; i < c->n; i++)
        CLLM_CUDA_TRY(cudaMemcpyAsync(c->dst[i], c->src[i], c->bytes[i], cudaMemcpyHostToDevice,
                                      CLLM_STREAM(s->copy)));
    if (p->timing) REC(s->ev_cp_t[2 * u + 1], s->copy);
    REC(s->ev_copied[u], s->copy);
    return CLLM_OK;
}

static cllm_status issue_decode(be_state *s, const be_pass *p, int gi) {
    const be_group *g = &s->groups[gi];
    void *ds = s->dec[g->dec];
    if (!s->dec_joined[g->dec]) {
        WAIT(ds, s->ev_fork);
        s->dec_joined[g->dec] = 1;
    }
    if (g->copy >= 0) WAIT(ds, s->ev_copied[g->copy]);
    if (g->wait_release >= 0) WAIT(ds, s->ev_released[g->wait_release]);
    if (p->timing) REC(s->ev_dec_t[2 * gi], ds);
    TRY(cllm_cuda_decode(g->jobs, (size_t)g->n_jobs, s->status_dev, ds));
    for (int i = 0; i < g->n_jobs; i++)
        if (g->scales_bytes[i])
            TRY(cllm_cuda_copy(g->scales_dst[i], g->scales_src[i], g->scales_bytes[i], ds));
    if (p->timing) REC(s->ev_dec_t[2 * gi + 1], ds);
    REC(s->ev_decoded[gi], ds);
    return CLLM_OK;
}

// Enqueues every copy and decode whose waits name records already enqueued (see the top).
static cllm_status advance(be_state *s, const be_pass *p) {
    for (int progress = 1; progress;) {
        progress = 0;
        while (s->next_copy < s->n_copies_active) {
            const int w = s->copies[s->next_copy].wait_group;
            if (w >= 0 && w >= s->next_dec) break;
            TRY(issue_copy(s, p, s->next_copy++));
            progress = 1;
        }
        while (s->next_dec < s->n_groups_active) {
            const be_group *g = &s->groups[s->next_dec];
            if (g->copy >= s->next_copy || g->wait_release >= s->n_released) break;
            TRY(issue_decode(s, p, s->next_dec++));
            progress = 1;
        }
    }
    return CLLM_OK;
}

// Pass start: what is active, the fork point, the first copies and decodes.
static cllm_status pipe_start(be_state *s, const be_pass *p) {
    const int cls = p->n_out ? 0 : 1;  // the classifier's groups (last) only with logits
    s->n_groups_active = s->n_groups - (cls ? s->n_cls_groups : 0);
    s->n_copies_active = s->n_copies - (cls && s->cls_copied ? 1 : 0);
    s->next_copy = s->next_dec = s->n_released = 0;
    s->cur_group = -1;
    for (int d = 0; d < BE_DEC_STREAMS; d++) s->dec_joined[d] = 0;
    if (p->graph && s->n_groups_active) REC(s->ev_fork, s->compute);  // else pass_run did
    return advance(s, p);
}

// Makes group gi's scratch range readable on the compute stream.
static cllm_status acquire(be_state *s, const be_pass *p, int gi) {
    if (gi == s->cur_group) return CLLM_OK;
    RETURN_IF(gi >= s->next_dec, CLLM_ERR_DEVICE,
              "cuda pipeline: group %d used before its decode was enqueued", gi);  // a bug
    if (p->timing) REC(s->ev_stall_t[2 * gi], s->compute);
    WAIT(s->compute, s->ev_decoded[gi]);
    if (p->timing) REC(s->ev_stall_t[2 * gi + 1], s->compute);
    s->cur_group = gi;
    return CLLM_OK;
}

// Compute is done reading group gi's range: later decodes may overwrite it.
static cllm_status release(be_state *s, const be_pass *p, int gi) {
    REC(s->ev_released[gi], s->compute);
    s->n_released = gi + 1;
    return advance(s, p);
}

// ---- products --------------------------------------------------------------------------------

static uint64_t elem_bytes(uint32_t kind) {
    return kind == CLLM_CUDA_W_F32 ? 4 : kind == CLLM_CUDA_W_INT8 ? 1 : 2;
}

// y (n, rows), row pitch ldy floats, = x (n, cols) . W^T through cuBLAS. int8 goes in row chunks
// (bounded bf16 copy of W); a chunk, or a pitch other than rows, goes through ychunk, (n, m)
// scattered into y's columns.
static cllm_status gemm_rows(be_state *s, const cllm_cuda_weight *w, const float *x, uint32_t n,
                             float *y, uint64_t ldy) {
    const uint64_t rc = be_gemm_chunk_rows(w->kind, w->rows, w->cols);
    if (rc >= w->rows && ldy == w->rows)
        return cllm_cuda_gemm(s->blas, w, x, n, y, s->gemm_scratch, s->gemm_scratch_bytes,
                              s->compute);
    const uint64_t gpr = w->group_size ? (w->cols + w->group_size - 1) / w->group_size : 0;
    for (uint64_t r0 = 0; r0 < w->rows; r0 += rc) {
        const uint64_t m = w->rows - r0 < rc ? w->rows - r0 : rc;
        cllm_cuda_weight part = *w;
        part.rows = m;
        part.data = (const uint8_t *)w->data + r0 * w->cols * elem_bytes(w->kind);
        if (w->scales) part.scales = w->scales + r0 * gpr;
        TRY(cllm_cuda_gemm(s->blas, &part, x, n, s->ychunk, s->gemm_scratch,
                           s->gemm_scratch_bytes, s->compute));
        CLLM_CUDA_TRY(cudaMemcpy2DAsync(y + r0, ldy * 4, s->ychunk, m * 4, m * 4, n,
                                        cudaMemcpyDeviceToDevice, CLLM_STREAM(s->compute)));
    }
    return CLLM_OK;
}

// y (n, rows), row pitch ldy, = x (n, cols) . W^T, or y += that when `acc` (the GEMM path then
// goes through tmp, (n, rows) floats, and needs ldy == rows). Small n: one matvec per token (the
// batch-1 kernels, fp32 activations).
// lf: the matvecs' launch flags (see mat_flags).
static cllm_status matmul(be_state *s, const cllm_cuda_weight *w, const float *x, uint32_t n,
                          float *y, uint64_t ldy, int acc, float *tmp, unsigned lf) {
    if (n <= BE_MATVEC_MAX_N) {
        for (uint32_t t = 0; t < n; t++)
            TRY(cllm_cuda_matvec_ex(w, x + (size_t)t * w->cols, y + (size_t)t * ldy, acc, lf,
                                    s->compute));
        return CLLM_OK;
    }
    if (!acc) return gemm_rows(s, w, x, n, y, ldy);
    TRY(gemm_rows(s, w, x, n, tmp, w->rows));
    return cllm_cuda_add(y, tmp, (size_t)n * w->rows, s->compute);
}

// Launch flags of a matvec over matrices that are all RAW (`raw`) or not: PDL as the pass says;
// weight loads before the wait only for RAW matrices (a decoded range is written by a decode
// kernel the wait covers).
static unsigned mat_flags(const be_pass *p, int raw) {
    return p->lf | (p->lf && raw ? CLLM_CUDA_RESIDENT : 0u);
}

// Matrix j (in its group's scratch range unless RAW) times x; releases the group after its last
// matrix.
static cllm_status use(be_state *s, const be_pass *p, size_t j, const float *x, float *y, int acc,
                       float *tmp) {
    const be_mat *m = &s->mats[j];
    if (m->place != BE_RAW) TRY(acquire(s, p, m->group));
    TRY(matmul(s, &m->view, x, p->nt, y, m->view.rows, acc, tmp,
               mat_flags(p, m->place == BE_RAW)));
    return m->place != BE_RAW && m->last_in_group ? release(s, p, m->group) : CLLM_OK;
}

// Matrices j0 .. j0+n_w-1 share their input x. For a few tokens with matching kinds and widths
// they run as one launch per token (small matrices such as q/k/v then fill the GPU like one large
// one); otherwise one matmul each. ys[i]: (nt, rows_i).
// nw: x is the residual stream and the matrices read RMSNorm(x) * nw (eps of the model) through
// s->xb, one RMSNorm launch first. lf0: launch flags of that first launch (no PDL on a graph's
// first kernel). (An RMSNorm fused into the matvecs measured slower: docs/PERF.md.)
static cllm_status use_shared_x(be_state *s, const be_pass *p, size_t j0, int n_w, const float *x,
                                float *const *ys, const float *nw, unsigned lf0) {
    const be_mat *m = &s->mats[j0];
    int fused = p->nt <= BE_MATVEC_MAX_N && n_w <= CLLM_CUDA_MATVEC_MAX;
    for (int i = 1; i < n_w && fused; i++)
        fused = m[i].view.kind == m[0].view.kind && m[i].view.cols == m[0].view.cols &&
                m[i].view.group_size == m[0].view.group_size;
    if (nw) {
        TRY(cllm_cuda_rmsnorm_ex(x, nw, s->xb, p->nt, (uint32_t)s->dim, s->cfg.norm_eps, lf0,
                                 s->compute));
        x = s->xb;
    }
    if (!fused) {
        for (int i = 0; i < n_w; i++) TRY(use(s, p, j0 + (size_t)i, x, ys[i], 0, NULL));
        return CLLM_OK;
    }
    cllm_cuda_weight w[CLLM_CUDA_MATVEC_MAX];
    int raw = 1;
    for (int i = 0; i < n_w; i++) {
        if (m[i].place != BE_RAW) TRY(acquire(s, p, m[i].group));
        w[i] = m[i].view;
        raw &= m[i].place == BE_RAW;
    }
    for (uint32_t t = 0; t < p->nt; t++) {
        float *yt[CLLM_CUDA_MATVEC_MAX];
        for (int i = 0; i < n_w; i++) yt[i] = ys[i] + (size_t)t * w[i].rows;
        const float *xt = x + (size_t)t * w[0].cols;
        TRY(cllm_cuda_matvec_multi_ex(w, n_w, xt, yt, mat_flags(p, raw), s->compute));
    }
    for (int i = 0; i < n_w; i++)
        if (m[i].place != BE_RAW && m[i].last_in_group) TRY(release(s, p, m[i].group));
    return CLLM_OK;
}

// out = silu(Wgate h) * (Wup h): one fused launch per token for a few tokens, else two matmuls
// and the SwiGLU pass.
// nw: as in use_shared_x (h is then the residual stream).
static cllm_status use_gate_up(be_state *s, const be_pass *p, size_t jg, const float *h,
                               const float *nw) {
    const be_mat *g = &s->mats[jg], *u = &s->mats[jg + 1];
    const int fused = p->nt <= BE_MATVEC_MAX_N && g->view.kind == u->view.kind &&
                      g->view.rows == u->view.rows && g->view.cols == u->view.cols &&
                      g->view.group_size == u->view.group_size;
    if (nw) {
        TRY(cllm_cuda_rmsnorm_ex(h, nw, s->xb, p->nt, (uint32_t)s->dim, s->cfg.norm_eps, p->lf,
                                 s->compute));
        h = s->xb;
    }
    if (!fused) {
        TRY(use(s, p, jg, h, s->hb, 0, NULL));
        TRY(use(s, p, jg + 1, h, s->hb2, 0, NULL));
        return cllm_cuda_swiglu(s->hb, s->hb2, s->hb, (size_t)p->nt * s->hidden, s->compute);
    }
    if (g->place != BE_RAW) TRY(acquire(s, p, g->group));
    if (u->place != BE_RAW) TRY(acquire(s, p, u->group));
    const unsigned lf = mat_flags(p, g->place == BE_RAW && u->place == BE_RAW);
    for (uint32_t t = 0; t < p->nt; t++) {
        const float *ht = h + (size_t)t * g->view.cols;
        TRY(cllm_cuda_matvec_swiglu_ex(&g->view, &u->view, ht, s->hb + (size_t)t * s->hidden, lf,
                                       s->compute));
    }
    if (g->place != BE_RAW && g->last_in_group) TRY(release(s, p, g->group));
    if (u->place != BE_RAW && u->last_in_group) TRY(release(s, p, u->group));
    return CLLM_OK;
}

// ---- the blocks ------------------------------------------------------------------------------

// x += Wo Attention(RoPE(Wq h), RoPE(Wk h), Wv h), h = RMSNorm(x) * w_att.
static cllm_status attention_block(be_state *s, const be_pass *p, uint32_t l) {
    const size_t j = (size_t)l * BE_MATS_PER_LAYER, D = s->dim;
    const size_t kv_off = (size_t)l * s->ctx * s->kv_dim;
    const unsigned lf0 = l == 0 && !p->embed ? 0u : p->lf;  // no PDL on a graph's first kernel
    float *const qkv[3] = {s->q, s->k, s->v};
    TRY(use_shared_x(s, p, j, 3, s->x, qkv, s->norm_att + l * D, lf0));
    TRY(cllm_cuda_rope_store(s->q, s->k, s->v, s->kc + kv_off, s->vc + kv_off, s->rope_cos,
                             s->rope_sin, s->ctl_dev, p->nt, s->cfg.n_heads, s->cfg.n_kv_heads,
                             (uint32_t)s->head_dim, p->lf, s->compute));
    if (s->att_split && p->nt <= BE_MATVEC_MAX_N)  // splits fixed by the context: graph-safe
        TRY(cllm_cuda_attention_split(s->q, s->kc + kv_off, s->vc + kv_off, s->att, s->ctl_dev,
                                      p->nt, s->ctx, s->cfg.n_heads, s->cfg.n_kv_heads,
                                      (uint32_t)s->head_dim, s->att_scratch,
                                      s->att_scratch_bytes, p->lf, s->compute));
    else
        TRY(cllm_cuda_attention(s->q, s->kc + kv_off, s->vc + kv_off, s->att, s->ctl_dev,
                                p->nt, p->smem_pos, s->cfg.n_heads, s->cfg.n_kv_heads,
                                (uint32_t)s->head_dim, p->lf, s->compute));
    return use(s, p, j + 3, s->att, s->x, 1, s->xb);
}

// x += Wdown (silu(Wgate h) * Wup h), h = RMSNorm(x) * w_ffn.
static cllm_status mlp_block(be_state *s, const be_pass *p, uint32_t l) {
    const size_t j = (size_t)l * BE_MATS_PER_LAYER, D = s->dim;
    TRY(use_gate_up(s, p, j + 4, s->x, s->norm_ffn + l * D));
    return use(s, p, j + 6, s->hb, s->x, 1, s->xb);
}

// logits rows of the last n_out tokens: Wcls (RMSNorm(x) * w_final), classifier chunk by chunk
// (rows [row0, row0 + m) of every logits row), BE_LOGIT_ROWS tokens at a time, each piece copied
// to `host` (NULL: left in logits_dev, as in the graph; then n_out <= BE_LOGIT_ROWS).
static cllm_status head(be_state *s, const be_pass *p, float *host) {
    const size_t D = s->dim, V = s->vocab, first = p->nt - p->n_out;
    TRY(cllm_cuda_rmsnorm_ex(s->x + first * D, s->norm_final, s->xb, p->n_out, (uint32_t)D,
                             s->cfg.norm_eps, p->lf, s->compute));
    for (int c = 0; c < s->n_chunks; c++) {
        const be_chunk *ch = &s->chunks[c];
        const uint64_t m = ch->view.rows;
        if (ch->group >= 0) TRY(acquire(s, p, ch->group));
        for (uint32_t g = 0; g < p->n_out; g += BE_LOGIT_ROWS) {
            const uint32_t ng = p->n_out - g < BE_LOGIT_ROWS ? p->n_out - g : BE_LOGIT_ROWS;
            float *y = s->logits_dev + ch->row0;
            TRY(matmul(s, &ch->view, s->xb + g * D, ng, y, V, 0, NULL,
                       mat_flags(p, ch->group < 0)));
            if (host)
                CLLM_CUDA_TRY(cudaMemcpy2DAsync(host + g * V + ch->row0, V * 4, y, V * 4, m * 4,
                                                ng, cudaMemcpyDeviceToHost,
                                                CLLM_STREAM(s->compute)));
        }
        if (ch->group >= 0) TRY(release(s, p, ch->group));
    }
    return CLLM_OK;
}

static cllm_status embed(be_state *s, const int32_t *tokens, uint32_t nt);

// [Embedding,] layers, final norm and classifier (what the graph captures).
static cllm_status body(be_state *s, const be_pass *p, float *logits_host) {
    TRY(pipe_start(s, p));
    if (p->embed) TRY(embed(s, NULL, p->nt));  // decoded table: reads the tokens in ctl_dev
    for (uint32_t l = 0; l < s->n_layers; l++) {
        if (p->timing) REC(s->ev_layer[l], s->compute);
        TRY(attention_block(s, p, l));
        TRY(mlp_block(s, p, l));
    }
    if (p->timing) REC(s->ev_layer[s->n_layers], s->compute);
    if (p->n_out) TRY(head(s, p, logits_host));
    if (p->timing) REC(s->ev_layer[s->n_layers + 1], s->compute);
    return CLLM_OK;
}

// x (nt, D) = embedding rows of the tokens. Compressed-resident table: each token's block is
// decoded into its own unit of embed_scratch (the job's `out` is placed so that the token's row
// lands there), then read like a whole table. A decoded table reads the tokens from ctl_dev only
// (`tokens` may then be NULL).
static cllm_status embed(be_state *s, const int32_t *tokens, uint32_t nt) {
    if (s->embed_direct)
        return cllm_cuda_embed(&s->embed_view, s->ctl_dev + 1, nt, s->x, s->compute);
    const cllm_weight *e = &s->w->embed;
    const uint64_t unit = e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
    const uint64_t row_bytes = e->desc.cols * e->elem_size;
    for (uint32_t t = 0; t < nt; t++) {
        const uint64_t b = (uint64_t)tokens[t] / unit;
        uint8_t *out = s->embed_scratch + (size_t)t * s->embed_unit_bytes - b * unit * row_bytes;
        TRY(cllm_cuda_decode_job_init(&e->desc, s->embed_payload_dev, out, b, 1,
                                      &s->embed_jobs[t]));
    }
    TRY(cllm_cuda_decode(s->embed_jobs, nt, s->status_dev, s->compute));
    for (uint32_t t = 0; t < nt; t++) {
        cllm_cuda_weight v = s->embed_view;
        v.data = s->embed_jobs[t].out;
        TRY(cllm_cuda_embed(&v, s->ctl_dev + 1 + t, 1, s->x + (size_t)t * s->dim, s->compute));
    }
    return CLLM_OK;
}

// ---- CUDA graph ------------------------------------------------------------------------------

static cllm_status graph_capture(be_state *s) {
    const be_pass p = {1, 1, s->ctx, 0, 1, s->pdl_state == 1 ? CLLM_CUDA_PDL : 0u,
                       s->embed_direct};
    cudaStream_t cs = CLLM_STREAM(s->compute);
    CLLM_CUDA_TRY(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
    cllm_status st = body(s, &p, NULL);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cs, &g);
    if (st == CLLM_OK && e != cudaSuccess)
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    if (st == CLLM_OK && (e = cudaGraphInstantiate(&s->graph, g, 0)) != cudaSuccess)
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    if (g) (void)cudaGraphDestroy(g);
    return st;
}

// Captures the batch-1 step once (with PDL when every matrix is RAW; refused: again without);
// on failure logs why and falls back to direct launches.
static void graph_ensure(be_state *s) {
    if (s->graph_state != 0) return;
    if (s->pdl_state == 0) s->pdl_state = s->n_groups == 0 ? 1 : -1;
    cllm_status st = graph_capture(s);
    if (st != CLLM_OK && s->pdl_state == 1) {
        (void)cudaGetLastError();
        be_log(s, "cuda: CUDA graph capture with programmatic dependent launch failed (%s); "
                  "capturing without", cllm_last_error());
        s->pdl_state = -1;
        st = graph_capture(s);
    }
    if (st == CLLM_OK) {
        s->graph_state = 1;
        be_log(s, "cuda: batch-1 step captured in a CUDA graph (programmatic dependent launch %s)",
               s->pdl_state == 1 ? "on" : "off");
        return;
    }
    (void)cudaGetLastError();
    s->graph = NULL;
    s->graph_state = -1;
    be_log(s, "cuda: CUDA graph capture failed (%s); using direct launches", cllm_last_error());
}

// The embedding the graph does not include, then the graph.
static cllm_status graph_replay(be_state *s, const int32_t *tokens) {
    if (!s->embed_direct) TRY(embed(s, tokens, 1));
    CLLM_CUDA_TRY(cudaGraphLaunch(s->graph, CLLM_STREAM(s->compute)));
    return CLLM_OK;
}

// Before the first replay of a graph captured with PDL: the same step by direct launches (no PDL)
// and by the graph must give bit-identical logits (same kernels on the same data; the KV cache
// entries at `pos` are rewritten with the same values, the embedding is read again). On a
// difference PDL is turned off and the step captured again without it. Runs once (allocates).
static cllm_status graph_check(be_state *s, const int32_t *tokens, size_t pos) {
    s->graph_checked = 1;
    if (s->pdl_state != 1) return CLLM_OK;
    const size_t bytes = s->vocab * sizeof(float);
    float *ref = (float *)malloc(2 * bytes);
    RETURN_IF(!ref, CLLM_ERR_NOMEM, "cuda: %zu bytes for the graph check", 2 * bytes);
    const be_pass d = {1, 1, (uint32_t)(pos + 1), 0, 0, 0u, 0};
    cllm_status st = embed(s, tokens, 1);
    if (st == CLLM_OK) st = body(s, &d, NULL);
    if (st == CLLM_OK) st = cllm_cuda_copy(ref, s->logits_dev, bytes, s->compute);
    if (st == CLLM_OK) st = graph_replay(s, tokens);
    if (st == CLLM_OK) st = cllm_cuda_copy(ref + s->vocab, s->logits_dev, bytes, s->compute);
    if (st == CLLM_OK) st = cllm_cuda_sync(s->compute);
    const int same = st == CLLM_OK && memcmp(ref, ref + s->vocab, bytes) == 0;
    free(ref);
    TRY(st);
    if (same) {
        be_log(s, "cuda: graph with programmatic dependent launch matches direct launches");
        return CLLM_OK;
    }
    be_log(s, "cuda: graph with programmatic dependent launch differs from direct launches; "
              "capturing without");
    (void)cudaGraphExecDestroy(s->graph);
    s->graph = NULL;
    s->graph_state = 0;
    s->pdl_state = -1;
    graph_ensure(s);
    return CLLM_OK;
}

// ---- passes ----------------------------------------------------------------------------------

static double elapsed(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return ms * 1e-3;
}

// Per-layer busy time of each engine in the pass just synchronised, added to the totals. Copy:
// the copies of the layer's units; decode: its groups' launches (running ahead, beside other
// layers' kernels); compute: the compute stream's time from the layer's start to the next, less
// its stalls waiting for decodes.
static void read_times(be_state *s, int graph_used) {
    const uint32_t L = s->n_layers;
    memset(s->t_copy, 0, 3 * ((size_t)L + 1) * sizeof(double));
    if (graph_used) {
        s->t_comp[L] = elapsed(s->ev_layer[0], s->ev_layer[L + 1]);
        s->compute_s += s->t_comp[L];
        return;
    }
    double *stall = s->t_comp;  // stalls first, then replaced by busy time below
    for (int g = 0; g < s->n_groups_active; g++) {
        const uint32_t l = s->groups[g].layer;
        s->t_dec[l] += elapsed(s->ev_dec_t[2 * g], s->ev_dec_t[2 * g + 1]);
        stall[l] += elapsed(s->ev_stall_t[2 * g], s->ev_stall_t[2 * g + 1]);
    }
    for (int u = 0; u < s->n_copies_active; u++)
        s->t_copy[s->copies[u].layer] += elapsed(s->ev_cp_t[2 * u], s->ev_cp_t[2 * u + 1]);
    for (uint32_t l = 0; l <= L; l++) {
        const double total = elapsed(s->ev_layer[l], s->ev_layer[l + 1]);
        s->t_comp[l] = total > stall[l] ? total - stall[l] : 0;
        s->copy_s += s->t_copy[l];
        s->decode_s += s->t_dec[l];
        s->compute_s += s->t_comp[l];
    }
}

static cllm_status pass_run(be_state *s, const int32_t *tokens, uint32_t nt, size_t pos,
                            uint32_t n_out, float *logits_host) {
    const be_pass p = {nt, n_out, (uint32_t)(pos + nt), 1, 0, 0u, 0};
    // ctl_host is free: the previous pass ended with a synchronisation.
    s->ctl_host[0] = (int32_t)pos;
    memcpy(s->ctl_host + 1, tokens, (size_t)nt * sizeof(int32_t));
    TRY(cllm_cuda_copy(s->ctl_dev, s->ctl_host, ((size_t)nt + 1) * sizeof(int32_t), s->compute));
    TRY(cllm_cuda_decode_status_reset(s->status_dev, s->compute));
    REC(s->ev_fork, s->compute);  // before the embedding: decodes need not wait for it
    const int graph_ok = nt == 1 && n_out == 1 && s->n_streamed == 0 && s->graph_state >= 0;
    if (graph_ok) graph_ensure(s);
    if (graph_ok && s->graph_state == 1 && !s->graph_checked) TRY(graph_check(s, tokens, pos));
    const int graph_used = graph_ok && s->graph_state == 1;
    if (graph_used) {
        REC(s->ev_layer[0], s->compute);
        TRY(graph_replay(s, tokens));
        REC(s->ev_layer[s->n_layers + 1], s->compute);
        CLLM_CUDA_TRY(cudaMemcpyAsync(logits_host, s->logits_dev, s->vocab * sizeof(float),
                                      cudaMemcpyDeviceToHost, CLLM_STREAM(s->compute)));
    } else {
        TRY(embed(s, tokens, nt));
        TRY(body(s, &p, logits_host));
    }
    // Compute waited for every decode it read, and every decode for its copies; the streams are
    // synchronised anyway so that nothing of this pass is in flight at the next.
    TRY(cllm_cuda_decode_status_check(s->status_dev, s->compute));  // synchronises compute
    TRY(cllm_cuda_sync(s->copy));
    for (int d = 0; d < BE_DEC_STREAMS; d++) TRY(cllm_cuda_sync(s->dec[d]));
    read_times(s, graph_used);
    return CLLM_OK;
}

cllm_status be_fast_choose(be_state *s) {
    const uint32_t nh = s->cfg.n_heads, nkv = s->cfg.n_kv_heads, hd = (uint32_t)s->head_dim;
    // Split attention for passes of at most BE_MATVEC_MAX_N tokens where it takes the heads,
    // else cllm_cuda_attention. (The RMSNorm fused into the matvecs measured slower and was deleted:
    // docs/PERF.md.)
    s->att_split = cllm_cuda_attention_split_ok(1, nh, nkv, hd);
    if (!s->att_split)
        be_log(s, "cuda: split attention cannot take heads %u/%u x %u; using cllm_cuda_attention", nh,
               nkv, hd);
    s->att_scratch_bytes = 0;
    for (uint32_t q = 1; q <= BE_MATVEC_MAX_N && s->att_split; q++) {
        const size_t b = cllm_cuda_attention_split_scratch(q, s->ctx, nh, nkv, hd);
        s->att_scratch_bytes = b > s->att_scratch_bytes ? b : s->att_scratch_bytes;
    }
    return CLLM_OK;
}

cllm_status be_fast_alloc(be_state *s) {
    if (!s->att_split) return CLLM_OK;
    TRY(cllm_cuda_alloc(s->mem, s->att_scratch_bytes, &s->att_scratch));
    CLLM_CUDA_TRY(cudaMemsetAsync(s->att_scratch, 0, s->att_scratch_bytes,
                                  CLLM_STREAM(s->compute)));
    return CLLM_OK;
}

cllm_status be_forward(void *state, const int32_t *tokens, size_t n, size_t pos, float *logits,
                       int all_logits) {
    be_state *s = (be_state *)state;
    CLLM_CUDA_TRY(cudaSetDevice(s->device));  // the device is per host thread
    cllm_status st = CLLM_OK;
    for (size_t done = 0; done < n && st == CLLM_OK;) {
        const uint32_t nt = (uint32_t)(n - done < s->batch ? n - done : s->batch);
        const int last = done + nt == n;
        const uint32_t n_out = all_logits ? nt : (last ? 1 : 0);
        float *out = all_logits ? logits + done * s->vocab : (last ? logits : NULL);
        st = pass_run(s, tokens + done, nt, pos + done, n_out, out);
        done += nt;
    }
    if (st != CLLM_OK) {  // leave no work in flight behind a failure
        (void)cudaStreamSynchronize(CLLM_STREAM(s->compute));
        (void)cudaStreamSynchronize(CLLM_STREAM(s->copy));
        for (int d = 0; d < BE_DEC_STREAMS; d++)
            (void)cudaStreamSynchronize(CLLM_STREAM(s->dec[d]));
        (void)cudaGetLastError();
    }
    s->n_forward++;
    s->n_tokens += n;
    return st;
}
