// The CUDA backend's memory plan: what every placement costs in device bytes, the per-token time
// model, and the planner that picks a placement per layer under a VRAM budget.
//
// Time model for one batch-1 token (predicted_token_seconds):
//   copy = streamed compressed bytes / H2D rate (measured at create: a 64 MiB pinned copy)
//   gpu  = decoded bytes read by the matvecs / BE_MATVEC_RATE
//        + decoded bytes produced by the decoder (device + streamed) / BE_DECODE_RATE
//   token = max(copy, gpu) + 0.05 * min(copy, gpu)  (the copy engine runs ahead of the decoder
//           and the kernels; the small second term stands for imperfect overlap and breaks ties)
// Per byte of VRAM, keeping a layer compressed saves its whole PCIe copy (1 / H2D per byte) while
// keeping it decoded saves copy + decode over more bytes, so while copy-bound the planner mostly
// makes layers compressed-resident, then spends what is left on decoded-resident layers once the
// GPU side is the bottleneck. It does this greedily by saved seconds per added byte, evaluating the
// exact byte total (staging and scratch included) of each candidate move.
#include "cllm_cuda_be.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)
#define DEVICE_MARGIN (256ull << 20)  // left free for the CUDA context, cuBLAS and fragmentation

static uint64_t al(uint64_t x) { return cllm_align_up(x, BE_ALIGN); }

static uint64_t int8_scales_bytes(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_INT8 ? w->desc.rows * w->layout.groups_per_row * 4 : 0;
}

uint64_t be_mat_raw_bytes(const cllm_weight *w) {
    return al(w->decoded_bytes) + al(int8_scales_bytes(w));
}

uint64_t be_mat_comp_bytes(const cllm_weight *w) { return al(w->payload_size); }

uint64_t be_gemm_chunk_rows(uint32_t kind, uint64_t rows, uint64_t cols) {
    if (kind != CLLM_CUDA_W_INT8) return rows;
    uint64_t rc = BE_GEMM_W_CAP / (cols * 2);
    rc = rc ? rc : 1;
    return rc < rows ? rc : rows;
}

// ---- bytes -----------------------------------------------------------------------------------

static int cls_tied(const be_state *s) { return s->w->classifier == &s->w->embed; }
static const be_mat *cls_mat(const be_state *s) { return &s->mats[s->n_mats - 1]; }

// Whether the embedding is decoded whole into VRAM on its own (all-raw modes without a planner).
static int embed_decoded_own(const be_state *s) {
    return s->budget == 0 && (s->mode == CLLM_WEIGHTS_RAW || s->mode == CLLM_WEIGHTS_RESIDENT) &&
           !cls_tied(s);
}

int be_embed_mode(const be_state *s) {
    if (cls_tied(s) && cls_mat(s)->place == BE_RAW) return BE_EMBED_CLASSIFIER;
    return embed_decoded_own(s) ? BE_EMBED_DECODED : BE_EMBED_COMPRESSED;
}

static uint64_t embed_unit_rows(const cllm_weight *e) {
    return e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
}

static uint64_t embed_bytes(const be_state *s) {
    const cllm_weight *e = &s->w->embed;
    if (cls_tied(s) && cls_mat(s)->place == BE_RAW) return 0;  // reads the classifier's table
    if (embed_decoded_own(s)) return be_mat_raw_bytes(e);
    uint64_t unit = embed_unit_rows(e) * e->desc.cols * e->elem_size;
    return be_mat_comp_bytes(e) + al((uint64_t)s->batch * al(unit));
}

static uint64_t activation_bytes(const be_state *s) {
    const uint64_t B = s->batch, wide = s->dim > s->q_dim ? s->dim : s->q_dim;
    uint64_t t = al(B * s->dim * 4) + al(B * wide * 4) + 2 * al(B * s->q_dim * 4) +
                 2 * al(B * s->kv_dim * 4) + 2 * al(B * s->hidden * 4);
    t += al((uint64_t)BE_LOGIT_ROWS * s->vocab * 4);
    t += 2 * al((uint64_t)s->n_layers * s->dim * 4) + al(s->dim * 4);    // norms
    t += 2 * al((uint64_t)s->ctx * (s->head_dim / 2) * 4);              // RoPE tables
    t += al((B + 1) * 4) + al(sizeof(cllm_cuda_decode_status));         // ctl, status
    return t;
}

// GEMM scratch (prefill), its int8 row-chunk output and the cuBLAS workspace.
uint64_t be_gemm_sizes(const be_state *s, uint64_t *scratch_out, uint64_t *ychunk_out) {
    uint64_t scratch = 0, ych = 0;
    if (s->batch > BE_MATVEC_MAX_N) {
        for (size_t j = 0; j < s->n_mats; j++) {
            const cllm_weight *w = s->mats[j].w;
            cllm_cuda_weight v;
            memset(&v, 0, sizeof v);
            v.cols = w->desc.cols;
            v.kind = cllm_weight_decoded_kind(w);
            v.rows = be_gemm_chunk_rows(v.kind, w->desc.rows, v.cols);
            uint64_t b = cllm_cuda_gemm_scratch_bytes(&v, s->batch);
            scratch = b > scratch ? b : scratch;
            if (v.rows < w->desc.rows && s->batch * v.rows * 4 > ych) ych = s->batch * v.rows * 4;
        }
    }
    if (scratch_out) *scratch_out = al(scratch);
    if (ychunk_out) *ychunk_out = al(ych);
    return s->batch > BE_MATVEC_MAX_N ? al(scratch) + al(ych) + BE_BLAS_WS : 0;
}

// Device bytes of the current placements (s->mats[].place).
static be_bytes plan_bytes(const be_state *s) {
    be_bytes b;
    memset(&b, 0, sizeof b);
    uint64_t max_stream = 0, max_scratch = 0, max_load = 0;
    for (size_t j = 0; j < s->n_mats; j++) {
        const be_mat *m = &s->mats[j];
        const cllm_weight *w = m->w;
        if (m->place == BE_RAW) {
            b.raw += be_mat_raw_bytes(w);
            if (w->desc.codec != CLLM_CODEC_RAW && be_mat_comp_bytes(w) > max_load)
                max_load = be_mat_comp_bytes(w);
            continue;
        }
        if (be_mat_raw_bytes(w) > max_scratch) max_scratch = be_mat_raw_bytes(w);
        if (m->place == BE_DEVICE && !(j == s->n_mats - 1 && cls_tied(s)))
            b.compressed += be_mat_comp_bytes(w);
        if (m->place == BE_STREAM && be_mat_comp_bytes(w) > max_stream)
            max_stream = be_mat_comp_bytes(w);
    }
    if (embed_decoded_own(s) && s->w->embed.desc.codec != CLLM_CODEC_RAW &&
        be_mat_comp_bytes(&s->w->embed) > max_load)
        max_load = be_mat_comp_bytes(&s->w->embed);
    b.staging = max_stream * (uint64_t)s->n_slots;
    b.scratch = max_scratch;
    b.embed = embed_bytes(s);
    b.kv = 2 * al((uint64_t)s->n_layers * s->ctx * s->kv_dim * 4);
    b.act = activation_bytes(s);
    b.gemm = be_gemm_sizes(s, NULL, NULL);
    // Load uploads go through the staging ring when there is one.
    b.load_tmp = max_stream >= max_load ? 0 : max_load;
    b.total = b.raw + b.compressed + b.staging + b.scratch + b.embed + b.kv + b.act + b.gemm;
    return b;
}

// Bytes at the peak: after load, or during it (the load-time upload buffer).
static uint64_t plan_need(const be_state *s) {
    const be_bytes b = plan_bytes(s);
    return b.total + b.load_tmp;
}

// ---- time ------------------------------------------------------------------------------------

static double plan_seconds(const be_state *s, double *copy_out, double *gpu_out) {
    double copy = 0, gpu = 0;
    for (size_t j = 0; j < s->n_mats; j++) {
        const be_mat *m = &s->mats[j];
        const double dec = (double)m->w->decoded_bytes + (double)int8_scales_bytes(m->w);
        gpu += dec / BE_MATVEC_RATE;
        if (m->place != BE_RAW) gpu += dec / BE_DECODE_RATE;
        if (m->place == BE_STREAM) copy += (double)m->w->payload_size / s->h2d_rate;
    }
    if (copy_out) *copy_out = copy;
    if (gpu_out) *gpu_out = gpu;
    return fmax(copy, gpu) + 0.05 * fmin(copy, gpu);
}

// ---- planner ---------------------------------------------------------------------------------

static void set_unit(be_state *s, uint32_t u, int place) {
    if (u == s->n_layers) {
        s->mats[s->n_mats - 1].place = place;
        return;
    }
    for (int i = 0; i < BE_MATS_PER_LAYER; i++) s->mats[(size_t)u * BE_MATS_PER_LAYER + i].place = place;
}

static int unit_place(const be_state *s, uint32_t u) {
    return u == s->n_layers ? s->mats[s->n_mats - 1].place
                            : s->mats[(size_t)u * BE_MATS_PER_LAYER].place;
}

// One greedy step: the move (unit to a cheaper-to-run placement) with the most seconds saved per
// byte added that still fits `budget`. Returns 0 when no move helps.
static int plan_step(be_state *s, uint64_t budget) {
    const double t0 = plan_seconds(s, NULL, NULL);
    const uint64_t b0 = plan_need(s);
    double best = 0;
    uint32_t best_u = 0;
    int best_p = -1;
    for (uint32_t u = 0; u <= s->n_layers; u++) {
        const int cur = unit_place(s, u);
        for (int p = BE_RAW; p < cur; p++) {
            set_unit(s, u, p);
            const uint64_t b1 = plan_need(s);
            const double gain = t0 - plan_seconds(s, NULL, NULL);
            set_unit(s, u, cur);
            if (b1 > budget || gain <= 0) continue;
            const double score = b1 <= b0 ? DBL_MAX : gain / (double)(b1 - b0);
            if (score > best) best = score, best_u = u, best_p = p;
        }
    }
    if (best_p < 0) return 0;
    set_unit(s, best_u, best_p);
    return 1;
}

static void bytes_breakdown(const be_state *s, const be_bytes *b, char *buf, size_t cap) {
    snprintf(buf, cap,
             "KV %.2f GiB at context %u, activations %.2f GiB, GEMM %.2f GiB, decode scratch "
             "%.2f GiB, staging %.2f GiB, embedding %.2f GiB, decoded weights %.2f GiB, "
             "compressed weights %.2f GiB",
             b->kv / GIB, s->ctx, b->act / GIB, b->gemm / GIB, b->scratch / GIB,
             b->staging / GIB, b->embed / GIB, b->raw / GIB, b->compressed / GIB);
}

static cllm_status plan_budget(be_state *s, uint64_t budget) {
    for (uint32_t u = 0; u <= s->n_layers; u++) set_unit(s, u, BE_STREAM);
    be_bytes b = plan_bytes(s);
    if (b.total + b.load_tmp > budget) {
        char why[512];
        bytes_breakdown(s, &b, why, sizeof why);
        return CLLM_FAIL(CLLM_ERR_NOMEM,
                         "VRAM budget %.2f GiB is below the minimum of %.2f GiB for this model at "
                         "context %u (%s)",
                         budget / GIB, (b.total + b.load_tmp) / GIB, s->ctx, why);
    }
    while (plan_step(s, budget)) {
    }
    return CLLM_OK;
}

// ---- plan text -------------------------------------------------------------------------------

static void unit_line(const be_state *s, uint32_t u0, uint32_t u1, char *buf, size_t cap,
                      size_t *len) {
    const int p = unit_place(s, u0);
    uint64_t dec = 0, comp = 0;
    const char *codec = "";
    for (size_t j = 0; j < s->n_mats; j++) {
        const be_mat *m = &s->mats[j];
        if (m->layer < u0 || m->layer > u1) continue;
        dec += be_mat_raw_bytes(m->w);
        comp += m->w->payload_size;
        codec = cllm_codec_name((cllm_codec)m->w->desc.codec);
    }
    char what[64];
    if (u0 == s->n_layers)
        snprintf(what, sizeof what, "classifier");
    else if (u0 == u1)
        snprintf(what, sizeof what, "layer %u", u0);
    else
        snprintf(what, sizeof what, "layers %u-%u", u0, u1);
    int n = 0;
    if (p == BE_RAW)
        n = snprintf(buf + *len, cap - *len, "%s: raw resident (%s decoded, %.2f GiB)\n", what,
                     codec, dec / GIB);
    else if (p == BE_DEVICE)
        n = snprintf(buf + *len, cap - *len,
                     "%s: compressed resident (%s, %.2f GiB, decoded per token)\n", what, codec,
                     comp / GIB);
    else
        n = snprintf(buf + *len, cap - *len, "%s: streamed (%s, %.2f GB/token over PCIe)\n", what,
                     codec, comp / 1e9);
    if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

static cllm_status plan_text(be_state *s) {
    const size_t cap = 4096;
    char *t = (char *)malloc(cap);
    RETURN_IF(!t, CLLM_ERR_NOMEM, "plan text");
    size_t len = 0;
    t[0] = 0;
    for (uint32_t u0 = 0; u0 < s->n_layers;) {
        uint32_t u1 = u0;
        while (u1 + 1 < s->n_layers && unit_place(s, u1 + 1) == unit_place(s, u0)) u1++;
        unit_line(s, u0, u1, t, cap, &len);
        u0 = u1 + 1;
    }
    unit_line(s, s->n_layers, s->n_layers, t, cap, &len);
    const be_bytes *b = &s->bytes;
    double copy, gpu;
    plan_seconds(s, &copy, &gpu);
    snprintf(t + len, cap - len,
             "embedding: %s (%.2f GiB)\n"
             "fixed: KV %.2f GiB (context %u), activations %.2f GiB, GEMM %.2f GiB, decode "
             "scratch %.2f GiB, staging %d x %.2f MiB\n"
             "total %.2f GiB of device memory%s\n"
             "predicted %.2f ms/token %s (copy %.2f ms at %.1f GB/s measured, GPU %.2f ms at "
             "decode %.0f GB/s, matvec %.1f TB/s assumed)",
             b->embed == 0 ? "reads the classifier's decoded table"
             : embed_decoded_own(s) ? "decoded resident"
                                    : "compressed resident, rows decoded per token",
             b->embed / GIB, b->kv / GIB, s->ctx, b->act / GIB, b->gemm / GIB, b->scratch / GIB,
             s->n_streamed ? s->n_slots : 0, s->n_streamed ? b->staging / s->n_slots / MIB : 0.0,
             b->total / GIB, s->budget ? " (planned under the VRAM budget)" : "",
             s->predicted * 1e3, copy > gpu ? "copy-bound" : "GPU-bound", copy * 1e3,
             s->h2d_rate / 1e9, gpu * 1e3, BE_DECODE_RATE / 1e9, BE_MATVEC_RATE / 1e12);
    free(s->plan);
    s->plan = t;
    return CLLM_OK;
}

// ---- entry points ----------------------------------------------------------------------------

cllm_status be_measure_h2d(be_state *s) {
    const size_t bytes = 64u << 20;
    void *host = NULL, *dev = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms = 0;
    cllm_status st = cllm_cuda_host_alloc(bytes, &host);
    if (st == CLLM_OK) st = cllm_cuda_alloc(s->mem, bytes, &dev);
    if (st == CLLM_OK && (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess))
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "cudaEventCreate failed");
    if (st == CLLM_OK) {
        memset(host, 1, bytes);
        cudaStream_t cs = CLLM_STREAM(s->copy);
        cudaError_t e = cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, cs);  // warm-up
        if (e == cudaSuccess) e = cudaEventRecord(e0, cs);
        if (e == cudaSuccess) e = cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, cs);
        if (e == cudaSuccess) e = cudaEventRecord(e1, cs);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (e != cudaSuccess)
            st = CLLM_FAIL(CLLM_ERR_DEVICE, "H2D probe: %s", cudaGetErrorString(e));
    }
    if (e0) (void)cudaEventDestroy(e0);
    if (e1) (void)cudaEventDestroy(e1);
    (void)cllm_cuda_release(s->mem, dev);
    cllm_cuda_host_free(host);
    if (st != CLLM_OK || ms <= 0) {
        (void)cudaGetLastError();
        s->h2d_rate = 25e9;
        be_log(s, "cuda: H2D rate probe failed (%s); assuming 25 GB/s", cllm_last_error());
        return CLLM_OK;
    }
    s->h2d_rate = bytes / (ms * 1e-3);
    return CLLM_OK;
}

static cllm_status check_device_fits(be_state *s) {
    size_t free_b = 0, total_b = 0;
    CLLM_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    const be_bytes *b = &s->bytes;
    const uint64_t need = b->total + b->load_tmp + DEVICE_MARGIN;
    if (need <= free_b) return CLLM_OK;
    char why[512];
    bytes_breakdown(s, b, why, sizeof why);
    return CLLM_FAIL(CLLM_ERR_NOMEM,
                     "'%s' weights need %.2f GiB of device memory at context %u (%s) plus a %.2f "
                     "GiB margin; %s has %.2f GiB free: try --weights stream, a VRAM budget or a "
                     "smaller context",
                     cllm_weights_mode_name(s->mode), (b->total + b->load_tmp) / GIB, s->ctx, why,
                     DEVICE_MARGIN / GIB, s->device_desc, free_b / GIB);
}

cllm_status be_plan(be_state *s) {
    if (s->budget > 0) {
        size_t free_b = 0, total_b = 0;
        CLLM_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
        uint64_t budget = s->budget;
        if (free_b > DEVICE_MARGIN && budget > free_b - DEVICE_MARGIN) {
            budget = free_b - DEVICE_MARGIN;
            be_log(s, "cuda: VRAM budget %.2f GiB capped to the %.2f GiB free (less a margin)",
                   s->budget / GIB, budget / GIB);
        }
        TRY(plan_budget(s, budget));
    } else {
        const int p = s->mode == CLLM_WEIGHTS_STREAM   ? BE_STREAM
                      : s->mode == CLLM_WEIGHTS_DEVICE ? BE_DEVICE
                                                       : BE_RAW;
        for (uint32_t u = 0; u <= s->n_layers; u++) set_unit(s, u, p);
    }
    s->n_streamed = 0;
    for (size_t j = 0; j < s->n_mats; j++) {
        if (s->mats[j].place != BE_STREAM) continue;
        s->stream_mat[s->n_streamed] = j;
        s->mats[j].stream_idx = s->n_streamed++;
    }
    s->bytes = plan_bytes(s);
    s->predicted = plan_seconds(s, NULL, NULL);
    TRY(check_device_fits(s));
    return plan_text(s);
}
