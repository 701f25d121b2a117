// The CUDA backend's memory plan: what every placement costs in device bytes, the per-token time
// model, and the planner that picks a placement per layer under a VRAM budget.
//
// Weight buffers of the non-RAW matrices (see cllm_cuda_forward.cu for the pipeline):
//   scratch ring = depth x the largest decode group's decoded bytes; depth 3 when any layer is
//                  DEVICE (two decode streams each filling a range while compute reads a third),
//                  else 2 (one range decoding while compute reads the other);
//   staging ring = 2 x the largest STREAM group's payloads (one copying while the one before
//                  decodes), and at least the classifier's whole payload when it is streamed.
// The classifier is decoded in row chunks no larger than the largest layer group, so it never
// sizes the scratch ring.
//
// Time model for one batch-1 token (predicted_token_seconds), from s->probe (measured at create
// on a real layer: be_measure_gpu) and the H2D rate (a 64 MiB pinned copy):
//   copy = streamed compressed bytes / H2D rate
//   gpu  = sum over layers of the layer's measured GPU time for its placement, scaled by decoded
//          bytes (RAW: matvecs alone; DEVICE: decodes on two streams beside the matvecs; STREAM:
//          decodes on one stream beside the matvecs); the classifier scaled from a layer
//   fill = the first group's copy and decode (nothing overlaps the pipeline's start)
//   token = max(copy, gpu) + 0.05 * min(copy, gpu) + fill  (the copy engine runs ahead of the
//           decoder and the kernels; the small second term stands for imperfect overlap)
// Per byte of VRAM, keeping a layer compressed saves its whole PCIe copy while keeping it decoded
// saves its decode time over more bytes, so the planner greedily takes the move with the most
// seconds saved per added byte, evaluating the exact byte total (rings included) of each move.
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
        // Classifier row chunks: (logits rows, chunk rows) scattered into the logits.
        const uint64_t n = s->batch < BE_LOGIT_ROWS ? s->batch : BE_LOGIT_ROWS;
        const uint64_t c = n * be_cls_chunk_rows(s) * 4;
        ych = c > ych ? c : ych;
    }
    if (scratch_out) *scratch_out = al(scratch);
    if (ychunk_out) *ychunk_out = al(ych);
    return s->batch > BE_MATVEC_MAX_N ? al(scratch) + al(ych) + BE_BLAS_WS : 0;
}

uint64_t be_group_dec_bytes(const be_state *s, uint32_t l, int i) {
    uint64_t b = 0;
    for (int k = be_group_first[i]; k < be_group_first[i + 1]; k++)
        b += be_mat_raw_bytes(s->mats[(size_t)l * BE_MATS_PER_LAYER + k].w);
    return b;
}

uint64_t be_group_comp_bytes(const be_state *s, uint32_t l, int i) {
    uint64_t b = 0;
    for (int k = be_group_first[i]; k < be_group_first[i + 1]; k++)
        b += be_mat_comp_bytes(s->mats[(size_t)l * BE_MATS_PER_LAYER + k].w);
    return b;
}

// Decoded bytes of `rows` classifier rows (+ their int8 scales), aligned.
static uint64_t cls_rows_bytes(const be_state *s, uint64_t rows) {
    const cllm_weight *w = cls_mat(s)->w;
    const uint64_t scales_per_row = int8_scales_bytes(w) / w->desc.rows;
    return al(rows * w->desc.cols * w->elem_size) + al(rows * scales_per_row);
}

uint64_t be_cls_chunk_rows(const be_state *s) {
    const cllm_weight *w = cls_mat(s)->w;
    const uint64_t unit = w->desc.codec == CLLM_CODEC_RAW ? 1 : w->desc.rows_per_block;
    uint64_t cap = 0;
    for (uint32_t l = 0; l < s->n_layers; l++)
        for (int i = 0; i < BE_GROUPS_PER_LAYER; i++)
            if (be_group_dec_bytes(s, l, i) > cap) cap = be_group_dec_bytes(s, l, i);
    const uint64_t row = cls_rows_bytes(s, 1);
    uint64_t rows = cap / row / unit * unit;
    rows = rows ? rows : unit;
    return rows < w->desc.rows ? rows : w->desc.rows;
}

// Ring sizes of the current placements (see the top of this file).
static void ring_sizes(const be_state *s, uint64_t *scratch, uint64_t *staging) {
    uint64_t max_dec = 0, max_comp = 0;
    int any_device = 0;
    for (uint32_t l = 0; l < s->n_layers; l++) {
        const int p = s->mats[(size_t)l * BE_MATS_PER_LAYER].place;
        if (p == BE_RAW) continue;
        any_device |= p == BE_DEVICE;
        for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
            if (be_group_dec_bytes(s, l, i) > max_dec) max_dec = be_group_dec_bytes(s, l, i);
            if (p == BE_STREAM && be_group_comp_bytes(s, l, i) > max_comp)
                max_comp = be_group_comp_bytes(s, l, i);
        }
    }
    uint64_t cls_comp = 0;
    if (cls_mat(s)->place != BE_RAW) {
        const uint64_t c = cls_rows_bytes(s, be_cls_chunk_rows(s));
        max_dec = c > max_dec ? c : max_dec;
        any_device |= cls_mat(s)->place == BE_DEVICE;
        if (cls_mat(s)->place == BE_STREAM) cls_comp = be_mat_comp_bytes(cls_mat(s)->w);
    }
    *scratch = max_dec * (any_device ? 3 : 2);
    *staging = 2 * max_comp > cls_comp ? 2 * max_comp : cls_comp;
}

// Device bytes of the current placements (s->mats[].place).
static be_bytes plan_bytes(const be_state *s) {
    be_bytes b;
    memset(&b, 0, sizeof b);
    uint64_t max_load = 0;
    for (size_t j = 0; j < s->n_mats; j++) {
        const be_mat *m = &s->mats[j];
        const cllm_weight *w = m->w;
        if (m->place == BE_RAW) {
            b.raw += be_mat_raw_bytes(w);
            if (w->desc.codec != CLLM_CODEC_RAW && be_mat_comp_bytes(w) > max_load)
                max_load = be_mat_comp_bytes(w);
        } else if (m->place == BE_DEVICE && !(j == s->n_mats - 1 && cls_tied(s))) {
            b.compressed += be_mat_comp_bytes(w);
        }
    }
    if (embed_decoded_own(s) && s->w->embed.desc.codec != CLLM_CODEC_RAW &&
        be_mat_comp_bytes(&s->w->embed) > max_load)
        max_load = be_mat_comp_bytes(&s->w->embed);
    ring_sizes(s, &b.scratch, &b.staging);
    b.embed = embed_bytes(s);
    b.kv = 2 * al((uint64_t)s->n_layers * s->ctx * s->kv_dim * 4);
    b.act = activation_bytes(s);
    b.gemm = be_gemm_sizes(s, NULL, NULL);
    // Load uploads go through the staging ring when it is large enough.
    b.load_tmp = b.staging >= max_load ? 0 : max_load;
    b.total = b.raw + b.compressed + b.staging + b.scratch + b.embed + b.kv + b.act + b.gemm;
    return b;
}

// Bytes at the peak: after load, or during it (the load-time upload buffer).
static uint64_t plan_need(const be_state *s) {
    const be_bytes b = plan_bytes(s);
    return b.total + b.load_tmp;
}

// ---- time ------------------------------------------------------------------------------------

// GPU seconds of `bytes` decoded bytes of matrices placed `place`, scaled from the probed layer.
static double gpu_seconds(const be_state *s, int place, double bytes) {
    const be_probe *pr = &s->probe;
    if (!pr->ok)  // no overlap assumed
        return bytes / BE_MATVEC_RATE + (place == BE_RAW ? 0 : bytes / BE_DECODE_RATE);
    const double t = place == BE_RAW      ? pr->comp
                     : place == BE_DEVICE ? pr->pipe_device
                                          : pr->pipe_stream;
    return t * bytes / pr->layer_bytes;
}

// Decoded bytes of unit u (a layer's 7 matrices, or the classifier when u == n_layers).
static double unit_dec_bytes(const be_state *s, uint32_t u) {
    if (u == s->n_layers) return (double)be_mat_raw_bytes(cls_mat(s)->w);
    double b = 0;
    for (int k = 0; k < BE_MATS_PER_LAYER; k++)
        b += (double)be_mat_raw_bytes(s->mats[(size_t)u * BE_MATS_PER_LAYER + k].w);
    return b;
}

// Time of the pipeline's start: the first group's copy and decode, which nothing overlaps.
static double fill_seconds(const be_state *s) {
    for (uint32_t u = 0; u <= s->n_layers; u++) {
        const int p = u == s->n_layers ? cls_mat(s)->place
                                       : s->mats[(size_t)u * BE_MATS_PER_LAYER].place;
        if (p == BE_RAW) continue;
        const double frac = 1.0 / BE_GROUPS_PER_LAYER;
        double t = s->probe.ok ? frac * s->probe.dec_serial * unit_dec_bytes(s, u) /
                                     s->probe.layer_bytes
                               : frac * unit_dec_bytes(s, u) / BE_DECODE_RATE;
        if (p == BE_STREAM && u < s->n_layers)
            t += (double)be_group_comp_bytes(s, u, 0) / s->h2d_rate;
        return t;
    }
    return 0;
}

static double plan_seconds(const be_state *s, double *copy_out, double *gpu_out) {
    double copy = 0, gpu = 0;
    for (size_t j = 0; j < s->n_mats; j++) {
        const be_mat *m = &s->mats[j];
        if (m->place == BE_STREAM) copy += (double)m->w->payload_size / s->h2d_rate;
    }
    for (uint32_t u = 0; u <= s->n_layers; u++) {
        const int p = u == s->n_layers ? cls_mat(s)->place
                                       : s->mats[(size_t)u * BE_MATS_PER_LAYER].place;
        gpu += gpu_seconds(s, p, unit_dec_bytes(s, u));
    }
    if (copy_out) *copy_out = copy;
    if (gpu_out) *gpu_out = gpu;
    return fmax(copy, gpu) + 0.05 * fmin(copy, gpu) + fill_seconds(s);
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
    char probe[200];
    const be_probe *pr = &s->probe;
    if (pr->ok)
        snprintf(probe, sizeof probe,
                 "measured per layer: matvecs %.3f ms, decodes %.3f ms (4 launches), with the "
                 "matvecs %.3f ms on one decode stream, %.3f ms on two",
                 pr->comp * 1e3, pr->dec_serial * 1e3, pr->pipe_stream * 1e3,
                 pr->pipe_device * 1e3);
    else
        snprintf(probe, sizeof probe, "assumed: decode %.0f GB/s, matvec %.1f TB/s, serial",
                 BE_DECODE_RATE / 1e9, BE_MATVEC_RATE / 1e12);
    snprintf(t + len, cap - len,
             "embedding: %s (%.2f GiB)\n"
             "fixed: KV %.2f GiB (context %u), activations %.2f GiB, GEMM %.2f GiB, decode "
             "scratch ring %.2f GiB, staging ring %.2f MiB\n"
             "total %.2f GiB of device memory%s\n"
             "predicted %.2f ms/token = %.1f tok/s, %s (copy %.2f ms at %.1f GB/s measured, GPU "
             "%.2f ms; %s)",
             b->embed == 0 ? "reads the classifier's decoded table"
             : embed_decoded_own(s) ? "decoded resident"
                                    : "compressed resident, rows decoded per token",
             b->embed / GIB, b->kv / GIB, s->ctx, b->act / GIB, b->gemm / GIB, b->scratch / GIB,
             b->staging / MIB, b->total / GIB,
             s->budget ? " (planned under the VRAM budget)" : "", s->predicted * 1e3,
             s->predicted > 0 ? 1.0 / s->predicted : 0.0, copy > gpu ? "copy-bound" : "GPU-bound",
             copy * 1e3, s->h2d_rate / 1e9, gpu * 1e3, probe);
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

// ---- GPU probe -------------------------------------------------------------------------------

// One layer as the forward runs it: its payloads resident, each group's jobs decoding into one
// range `out` (the largest group's size; every group reuses it), the matvecs reading the same
// range. The matvecs race the decodes on purpose: only times are taken, no values are used.
struct probe_ctx {
    cllm_cuda_decode_job jobs[BE_GROUPS_PER_LAYER][BE_GROUP_MAX_MATS];
    int n_jobs[BE_GROUPS_PER_LAYER];
    cllm_cuda_weight views[BE_MATS_PER_LAYER];
    uint8_t *payload, *out;
    float *xy;                   // x (largest cols), then y (largest rows)
    size_t x_floats;
    cllm_cuda_decode_status *status;
    cudaEvent_t e0, e1, join[BE_DEC_STREAMS];
};

enum { PROBE_DEC = 1, PROBE_DUAL = 2, PROBE_MATVEC = 4 };

static cllm_status probe_alloc(be_state *s, probe_ctx *c) {
    uint64_t comp = 0, out = 0, cols = 0, rows = 0;
    for (int k = 0; k < BE_MATS_PER_LAYER; k++) {
        const cllm_weight *w = s->mats[k].w;
        comp += be_mat_comp_bytes(w);
        cols = w->desc.cols > cols ? w->desc.cols : cols;
        rows = w->desc.rows > rows ? w->desc.rows : rows;
    }
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++)
        out = be_group_dec_bytes(s, 0, i) > out ? be_group_dec_bytes(s, 0, i) : out;
    c->x_floats = (size_t)al(cols);
    TRY(cllm_cuda_alloc(s->mem, (size_t)comp, (void **)&c->payload));
    TRY(cllm_cuda_alloc(s->mem, (size_t)out, (void **)&c->out));
    TRY(cllm_cuda_alloc(s->mem, (size_t)(c->x_floats + rows) * 4, (void **)&c->xy));
    TRY(cllm_cuda_alloc(s->mem, sizeof *c->status, (void **)&c->status));
    CLLM_CUDA_TRY(cudaMemset(c->xy, 0, (size_t)(c->x_floats + rows) * 4));
    CLLM_CUDA_TRY(cudaMemset(c->status, 0, sizeof *c->status));
    CLLM_CUDA_TRY(cudaEventCreate(&c->e0));
    CLLM_CUDA_TRY(cudaEventCreate(&c->e1));
    for (int d = 0; d < BE_DEC_STREAMS; d++)
        CLLM_CUDA_TRY(cudaEventCreateWithFlags(&c->join[d], cudaEventDisableTiming));
    return CLLM_OK;
}

// Uploads layer 0's payloads and builds the jobs and views.
static cllm_status probe_setup(be_state *s, probe_ctx *c) {
    uint64_t poff = 0;
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
        uint64_t ooff = 0;
        c->n_jobs[i] = 0;
        for (int k = be_group_first[i]; k < be_group_first[i + 1]; k++) {
            const cllm_weight *w = s->mats[k].w;
            uint8_t *src = c->payload + poff, *dst = c->out + ooff;
            CLLM_CUDA_TRY(cudaMemcpy(src, w->payload, w->payload_size, cudaMemcpyHostToDevice));
            cllm_cuda_decode_job *job = &c->jobs[i][c->n_jobs[i]++];
            const uint64_t nb = w->desc.codec == CLLM_CODEC_RAW ? w->desc.rows : w->desc.n_blocks;
            TRY(cllm_cuda_decode_job_init(&w->desc, src, dst, 0, nb, job));
            cllm_cuda_weight *v = &c->views[k];
            memset(v, 0, sizeof *v);
            v->data = dst;
            v->rows = w->desc.rows;
            v->cols = w->desc.cols;
            v->kind = cllm_weight_decoded_kind(w);
            v->group_size = w->desc.codec == CLLM_CODEC_INT8 ? w->desc.group_size : 0;
            v->scales = cllm_cuda_int8_scales(job);
            poff += be_mat_comp_bytes(w);
            ooff += be_mat_raw_bytes(w);
        }
    }
    // The uploads and memsets ran on the legacy stream, which the (non-blocking) streams do not
    // wait for.
    CLLM_CUDA_TRY(cudaDeviceSynchronize());
    return CLLM_OK;
}

// Seconds of one run of `what` (PROBE_* flags): decodes on s->dec (all on [0], or alternating
// with PROBE_DUAL), matvecs on s->compute, all started together and joined on compute.
static cllm_status probe_once(be_state *s, probe_ctx *c, int what, double *sec) {
    cudaStream_t cs = CLLM_STREAM(s->compute);
    const int n_dec = what & PROBE_DEC ? (what & PROBE_DUAL ? BE_DEC_STREAMS : 1) : 0;
    CLLM_CUDA_TRY(cudaEventRecord(c->e0, cs));
    for (int d = 0; d < n_dec; d++)
        CLLM_CUDA_TRY(cudaStreamWaitEvent(CLLM_STREAM(s->dec[d]), c->e0, 0));
    for (int i = 0; i < BE_GROUPS_PER_LAYER && n_dec; i++)
        TRY(cllm_cuda_decode(c->jobs[i], (size_t)c->n_jobs[i], c->status, s->dec[i % n_dec]));
    for (int k = 0; k < BE_MATS_PER_LAYER && (what & PROBE_MATVEC); k++)
        TRY(cllm_cuda_matvec(&c->views[k], c->xy, c->xy + c->x_floats, 0, s->compute));
    for (int d = 0; d < n_dec; d++) {
        CLLM_CUDA_TRY(cudaEventRecord(c->join[d], CLLM_STREAM(s->dec[d])));
        CLLM_CUDA_TRY(cudaStreamWaitEvent(cs, c->join[d], 0));
    }
    CLLM_CUDA_TRY(cudaEventRecord(c->e1, cs));
    CLLM_CUDA_TRY(cudaEventSynchronize(c->e1));
    float ms = 0;
    CLLM_CUDA_TRY(cudaEventElapsedTime(&ms, c->e0, c->e1));
    *sec = ms * 1e-3;
    return CLLM_OK;
}

// Best of 3 runs (after a warm-up run).
static cllm_status probe_time(be_state *s, probe_ctx *c, int what, double *sec) {
    double t = 0, best = 0;
    TRY(probe_once(s, c, what, &t));
    for (int r = 0; r < 3; r++) {
        TRY(probe_once(s, c, what, &t));
        best = r == 0 || t < best ? t : best;
    }
    *sec = best;
    return CLLM_OK;
}

static cllm_status probe_run(be_state *s, probe_ctx *c) {
    be_probe *pr = &s->probe;
    TRY(probe_alloc(s, c));
    TRY(probe_setup(s, c));
    TRY(probe_time(s, c, PROBE_MATVEC, &pr->comp));
    TRY(probe_time(s, c, PROBE_DEC, &pr->dec_serial));
    TRY(probe_time(s, c, PROBE_DEC | PROBE_MATVEC, &pr->pipe_stream));
    TRY(probe_time(s, c, PROBE_DEC | PROBE_DUAL | PROBE_MATVEC, &pr->pipe_device));
    TRY(cllm_cuda_decode_status_check(c->status, s->compute));
    pr->layer_bytes = 0;
    for (int k = 0; k < BE_MATS_PER_LAYER; k++) pr->layer_bytes += (double)be_mat_raw_bytes(s->mats[k].w);
    pr->ok = pr->comp > 0 && pr->pipe_stream > 0 && pr->pipe_device > 0 && pr->layer_bytes > 0;
    return CLLM_OK;
}

cllm_status be_measure_gpu(be_state *s) {
    probe_ctx c;
    memset(&c, 0, sizeof c);
    memset(&s->probe, 0, sizeof s->probe);
    cllm_status st = s->n_layers ? probe_run(s, &c) : CLLM_OK;
    if (c.e0) (void)cudaEventDestroy(c.e0);
    if (c.e1) (void)cudaEventDestroy(c.e1);
    for (int d = 0; d < BE_DEC_STREAMS; d++)
        if (c.join[d]) (void)cudaEventDestroy(c.join[d]);
    (void)cllm_cuda_release(s->mem, c.status);
    (void)cllm_cuda_release(s->mem, c.xy);
    (void)cllm_cuda_release(s->mem, c.out);
    (void)cllm_cuda_release(s->mem, c.payload);
    if (st == CLLM_ERR_CORRUPT) return st;  // the container's layer 0 does not decode
    if (st != CLLM_OK || !s->probe.ok) {
        (void)cudaDeviceSynchronize();
        (void)cudaGetLastError();
        s->probe.ok = 0;
        be_log(s, "cuda: GPU timing probe failed (%s); assuming fixed rates", cllm_last_error());
    }
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
    for (size_t j = 0; j < s->n_mats; j++) s->n_streamed += s->mats[j].place == BE_STREAM;
    s->bytes = plan_bytes(s);
    s->predicted = plan_seconds(s, NULL, NULL);
    TRY(check_device_fits(s));
    return plan_text(s);
}
