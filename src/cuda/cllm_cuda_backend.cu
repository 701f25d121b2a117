// The CUDA backend: create (device, plan, buffers, weights), free, stats. The forward pass and its
// pipeline invariants are in cllm_cuda_forward.cu, the memory plan in cllm_cuda_plan.cu.
//
// Everything a forward call needs is allocated here, through the tracking allocator, after the
// plan has checked that the total fits (the budget, and the device's free memory).
#include "cllm_cuda_be.h"

#include <cublas_v2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void be_log(const be_state *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cllm_vlogf(s->log, s->log_user, fmt, ap);
    va_end(ap);
}

static cllm_status dalloc(be_state *s, uint64_t bytes, void **p) {
    RETURN_IF(bytes > SIZE_MAX, CLLM_ERR_NOMEM, "device allocation of %llu bytes",
              (unsigned long long)bytes);
    return cllm_cuda_alloc(s->mem, (size_t)cllm_align_up(bytes, BE_ALIGN), p);
}

#define DALLOC(s, bytes, ptr) dalloc((s), (bytes), (void **)(ptr))

static uint64_t al(uint64_t x) { return cllm_align_up(x, BE_ALIGN); }

// ---- setup -----------------------------------------------------------------------------------

// All pipeline events in one array: per group decoded, released, decode and stall timing pairs;
// per copy unit copied and a timing pair; per layer the timing marks; the fork event.
static cllm_status create_events(be_state *s) {
    const size_t G = (size_t)s->n_groups, C = (size_t)s->n_copies, L = s->n_layers;
    const size_t n_sync = 2 * G + C + 1, n = n_sync + 4 * G + 2 * C + L + 2;
    cudaEvent_t *ev = (cudaEvent_t *)calloc(n, sizeof *ev);
    RETURN_IF(!ev, CLLM_ERR_NOMEM, "cuda backend: events");
    s->ev_decoded = ev;
    s->ev_released = ev + G;
    s->ev_copied = ev + 2 * G;
    s->ev_layer = ev + n_sync;  // ev[n_sync - 1] is the fork event
    s->ev_dec_t = s->ev_layer + L + 2;
    s->ev_stall_t = s->ev_dec_t + 2 * G;
    s->ev_cp_t = s->ev_stall_t + 2 * G;
    for (size_t i = 0; i < n; i++) {
        // Synchronisation-only events skip timing (cheaper records and waits).
        CLLM_CUDA_TRY(cudaEventCreateWithFlags(&ev[i], i < n_sync ? cudaEventDisableTiming : 0));
        s->n_events = (int)i + 1;
    }
    s->ev_fork = ev[n_sync - 1];
    return CLLM_OK;
}

static cllm_status init_mats(be_state *s) {
    s->n_mats = (size_t)s->n_layers * BE_MATS_PER_LAYER + 1;
    s->mats = (be_mat *)calloc(s->n_mats, sizeof *s->mats);
    const size_t nt = (size_t)s->n_layers + 1;
    s->t_copy = (double *)calloc(3 * nt, sizeof(double));
    RETURN_IF(!s->mats || !s->t_copy, CLLM_ERR_NOMEM, "cuda backend: tables");
    s->t_dec = s->t_copy + nt;
    s->t_comp = s->t_dec + nt;
    for (uint32_t l = 0; l < s->n_layers; l++)
        for (int i = 0; i < BE_MATS_PER_LAYER; i++) {
            be_mat *m = &s->mats[(size_t)l * BE_MATS_PER_LAYER + i];
            m->w = &s->w->layers[l].all[cllm_layout_matrix_tensor(i)];
            m->layer = l;
        }
    s->mats[s->n_mats - 1].w = s->w->classifier;
    s->mats[s->n_mats - 1].layer = s->n_layers;
    return CLLM_OK;
}

// Norm weights in fp32 and the RoPE tables, computed on the host exactly as the CPU does.
static cllm_status upload_norms_rope(be_state *s) {
    const size_t D = s->dim, L = s->n_layers, n_pairs = s->head_dim / 2;
    const size_t n_norm = 2 * L * D + D, n_rope = 2 * (size_t)s->ctx * n_pairs;
    float *h = (float *)malloc((n_norm > n_rope ? n_norm : n_rope) * sizeof(float));
    double *freqs = (double *)malloc(n_pairs * sizeof(double));
    cllm_status st = h && freqs ? CLLM_OK : CLLM_FAIL(CLLM_ERR_NOMEM, "norm/RoPE staging");
    for (size_t l = 0; l < L && st == CLLM_OK; l++) {
        st = cllm_weight_decode_f32(&s->w->layers[l].attn_norm, h + l * D, D);
        if (st == CLLM_OK) st = cllm_weight_decode_f32(&s->w->layers[l].ffn_norm, h + (L + l) * D, D);
    }
    if (st == CLLM_OK) st = cllm_weight_decode_f32(&s->w->norm, h + 2 * L * D, D);
    if (st == CLLM_OK) st = DALLOC(s, n_norm * 4, &s->norm_att);
    if (st == CLLM_OK && cudaMemcpy(s->norm_att, h, n_norm * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "norm upload: %s", cudaGetErrorString(cudaGetLastError()));
    if (st == CLLM_OK) {
        s->norm_ffn = s->norm_att + L * D;
        s->norm_final = s->norm_att + 2 * L * D;
        cllm_k_rope_freqs(&s->cfg, freqs);
        for (size_t p = 0; p < s->ctx; p++)
            cllm_k_rope_angles(freqs, n_pairs, p, h + p * n_pairs, h + (s->ctx + p) * n_pairs);
        st = DALLOC(s, n_rope * 4, &s->rope_cos);
    }
    if (st == CLLM_OK && cudaMemcpy(s->rope_cos, h, n_rope * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "RoPE upload: %s", cudaGetErrorString(cudaGetLastError()));
    s->rope_sin = s->rope_cos + (size_t)s->ctx * n_pairs;
    free(h);
    free(freqs);
    return st;
}

static cllm_status alloc_activations(be_state *s) {
    const uint64_t B = s->batch, wide = s->dim > s->q_dim ? s->dim : s->q_dim;
    TRY(DALLOC(s, B * s->dim * 4, &s->x));
    TRY(DALLOC(s, B * wide * 4, &s->xb));
    TRY(DALLOC(s, B * s->q_dim * 4, &s->q));
    TRY(DALLOC(s, B * s->q_dim * 4, &s->att));
    TRY(DALLOC(s, B * s->kv_dim * 4, &s->k));
    TRY(DALLOC(s, B * s->kv_dim * 4, &s->v));
    TRY(DALLOC(s, B * s->hidden * 4, &s->hb));
    TRY(DALLOC(s, B * s->hidden * 4, &s->hb2));
    TRY(DALLOC(s, (uint64_t)BE_LOGIT_ROWS * s->vocab * 4, &s->logits_dev));
    TRY(DALLOC(s, (B + 1) * 4, &s->ctl_dev));
    TRY(DALLOC(s, sizeof(cllm_cuda_decode_status), &s->status_dev));
    TRY(cllm_cuda_host_alloc((B + 1) * 4, (void **)&s->ctl_host));
    const uint64_t kv = (uint64_t)s->n_layers * s->ctx * s->kv_dim * 4;
    TRY(DALLOC(s, kv, &s->kc));
    TRY(DALLOC(s, kv, &s->vc));
    return upload_norms_rope(s);
}

static cllm_status alloc_gemm(be_state *s) {
    uint64_t scratch = 0, ychunk = 0;
    if (!be_gemm_sizes(s, &scratch, &ychunk)) return CLLM_OK;
    s->gemm_scratch_bytes = (size_t)scratch;
    TRY(DALLOC(s, scratch, &s->gemm_scratch));
    TRY(DALLOC(s, ychunk, &s->ychunk));
    TRY(DALLOC(s, BE_BLAS_WS, &s->blas_ws));
    TRY(cllm_cuda_blas_create(&s->blas));
    // An explicit workspace: cuBLAS then allocates nothing on the forward path.
    cublasStatus_t bs = cublasSetWorkspace((cublasHandle_t)s->blas, s->blas_ws, BE_BLAS_WS);
    RETURN_IF(bs != CUBLAS_STATUS_SUCCESS, CLLM_ERR_DEVICE, "cublasSetWorkspace: status %d",
              (int)bs);
    return CLLM_OK;
}

// The decode scratch ring and the staging ring (sizes from the plan; see cllm_cuda_plan.cu).
static cllm_status alloc_weight_buffers(be_state *s) {
    TRY(DALLOC(s, s->bytes.scratch, &s->scratch));
    return DALLOC(s, s->bytes.staging, &s->staging);
}

// ---- weights ---------------------------------------------------------------------------------

static cllm_cuda_weight base_view(const cllm_weight *w, const void *data) {
    cllm_cuda_weight v;
    memset(&v, 0, sizeof v);
    v.data = data;
    v.rows = w->desc.rows;
    v.cols = w->desc.cols;
    v.kind = cllm_weight_decoded_kind(w);
    v.group_size = w->desc.codec == CLLM_CODEC_INT8 ? w->desc.group_size : 0;
    return v;
}

static uint64_t total_blocks(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_RAW ? w->desc.rows : w->desc.n_blocks;
}

static size_t scales_bytes(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_INT8
               ? (size_t)(w->desc.rows * w->layout.groups_per_row * sizeof(float))
               : 0;
}

// Decodes `w` whole into a new device buffer on the GPU (uploading its payload through `tmp`):
// (rows, cols) decoded elements, then, for int8, the scales.
static cllm_status load_decoded(be_state *s, const cllm_weight *w, uint8_t *tmp,
                                cllm_cuda_weight *view) {
    uint8_t *buf;
    TRY(DALLOC(s, be_mat_raw_bytes(w), &buf));
    *view = base_view(w, buf);
    // Uploads go on the compute stream so that the decode is ordered after them.
    if (w->desc.codec == CLLM_CODEC_RAW)
        return cllm_cuda_copy(buf, w->payload, w->decoded_bytes, s->compute);
    // The previous tensor's decode has completed (status_check synchronises), so tmp is free.
    TRY(cllm_cuda_copy(tmp, w->payload, w->payload_size, s->compute));
    cllm_cuda_decode_job job;
    TRY(cllm_cuda_decode_job_init(&w->desc, tmp, buf, 0, total_blocks(w), &job));
    TRY(cllm_cuda_decode_status_reset(s->status_dev, s->compute));
    TRY(cllm_cuda_decode(&job, 1, s->status_dev, s->compute));
    if (w->desc.codec == CLLM_CODEC_INT8) {
        float *sc = (float *)(buf + al(w->decoded_bytes));
        TRY(cllm_cuda_copy(sc, tmp + w->layout.side_off, scales_bytes(w), s->compute));
        view->scales = sc;
    }
    return cllm_cuda_decode_status_check(s->status_dev, s->compute);
}

static cllm_status load_compressed(be_state *s, const cllm_weight *w, const uint8_t **dev) {
    uint8_t *buf;
    TRY(DALLOC(s, be_mat_comp_bytes(w), &buf));
    TRY(cllm_cuda_copy(buf, w->payload, w->payload_size, s->compute));
    *dev = buf;
    return CLLM_OK;
}

// Pinned host copies of the streamed payloads (one allocation); the mapping itself on failure.
static cllm_status pin_streamed(be_state *s) {
    uint64_t total = 0;
    for (size_t j = 0; j < s->n_mats; j++)
        if (s->mats[j].place == BE_STREAM) total += cllm_align_up(s->mats[j].w->payload_size, 4096);
    if (total == 0) return CLLM_OK;
    if (cllm_cuda_host_alloc((size_t)total, (void **)&s->host_pinned) != CLLM_OK) {
        (void)cudaGetLastError();
        s->host_pinned = NULL;
        be_log(s, "cuda: cannot pin %.2f GiB of host memory for the streamed payloads (%s); "
                  "copying from the file mapping instead (slower, synchronous)",
               total / 1073741824.0, cllm_last_error());
    }
    uint64_t off = 0;
    for (size_t j = 0; j < s->n_mats; j++) {
        be_mat *m = &s->mats[j];
        if (m->place != BE_STREAM) continue;
        if (!s->host_pinned) {
            m->host_src = m->w->payload;
            continue;
        }
        memcpy(s->host_pinned + off, m->w->payload, m->w->payload_size);
        m->host_src = s->host_pinned + off;
        off += cllm_align_up(m->w->payload_size, 4096);
    }
    return CLLM_OK;
}

// ---- pipeline schedule ----------------------------------------------------------------------
//
// The ranges, decode streams and waits of every group and copy unit come from one schedule
// (be_sched_groups, then cllm_sched_build in src/engine/cllm_sched.c: the rules are written down
// there), the one the planner simulates; here they are materialised as decode jobs and copies.

// Job (and for STREAM int8 the scales copy) of rows [r0, r0 + nr) of matrix m, decoded from
// `src` (its payload on the device) into `dst`; returns the view of those rows.
static cllm_status sched_job(be_group *g, const be_mat *m, const uint8_t *src, uint8_t *dst,
                             uint64_t r0, uint64_t nr, cllm_cuda_weight *view) {
    const cllm_weight *w = m->w;
    const uint64_t unit = w->desc.codec == CLLM_CODEC_RAW ? 1 : w->desc.rows_per_block;
    const uint64_t row = w->desc.cols * w->elem_size;
    cllm_cuda_decode_job *job = &g->jobs[g->n_jobs];
    // The job writes the rows of its blocks at out + row index * row: out sits r0 rows before dst.
    TRY(cllm_cuda_decode_job_init(&w->desc, src, dst - r0 * row, r0 / unit,
                                  (nr + unit - 1) / unit, job));
    *view = base_view(w, dst);
    view->rows = nr;
    if (w->desc.codec == CLLM_CODEC_INT8) {
        const uint64_t gpr = w->layout.groups_per_row;
        if (g->place == BE_DEVICE) {
            view->scales = cllm_cuda_int8_scales(job) + r0 * gpr;
        } else {  // the staging range is recycled after the decode: the scales go along
            g->scales_src[g->n_jobs] = src + w->layout.side_off + r0 * gpr * 4;
            g->scales_dst[g->n_jobs] = dst + al(nr * row);
            g->scales_bytes[g->n_jobs] = (size_t)(nr * gpr * 4);
            view->scales = (const float *)g->scales_dst[g->n_jobs];
        }
    }
    g->n_jobs++;
    return CLLM_OK;
}

// Layer l's groups s->groups[*gi..] (in schedule order): their copies and decode jobs.
static cllm_status sched_layer(be_state *s, uint32_t l, int *gi) {
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
        const int k0 = (*gi)++;
        be_group *g = &s->groups[k0];
        be_copy *c = g->copy >= 0 ? &s->copies[g->copy] : NULL;
        g->layer = l;
        if (c) c->layer = l;
        uint64_t doff = 0, soff = 0;
        for (int k = cllm_layout_group_first(i); k < cllm_layout_group_first(i + 1); k++) {
            be_mat *m = &s->mats[(size_t)l * BE_MATS_PER_LAYER + k];
            const uint8_t *src = m->payload_dev;
            if (c) {
                c->src[c->n] = m->host_src;
                c->dst[c->n] = s->staging + c->off + soff;
                c->bytes[c->n] = m->w->payload_size;
                src = c->dst[c->n++];
                soff += be_mat_comp_bytes(m->w);
            }
            TRY(sched_job(g, m, src, s->scratch + g->off + doff, 0, m->w->desc.rows, &m->view));
            m->group = k0;
            m->last_in_group = k == cllm_layout_group_first(i + 1) - 1;
            doff += be_mat_raw_bytes(m->w);
        }
    }
    return CLLM_OK;
}

// The classifier in row chunks of be_cls_chunk_rows (one chunk, its own view, when RAW), its
// groups s->groups[*gi..].
static cllm_status sched_classifier(be_state *s, int *gi) {
    be_mat *m = &s->mats[s->n_mats - 1];
    const cllm_weight *w = m->w;
    if (m->place == BE_RAW) {
        s->chunks[0].row0 = 0;
        s->chunks[0].view = m->view;
        s->chunks[0].group = -1;
        s->n_chunks = 1;
        return CLLM_OK;
    }
    const uint8_t *src = m->payload_dev;
    if (m->place == BE_STREAM) {
        be_copy *c = &s->copies[s->groups[*gi].copy];  // opened by the first chunk
        c->layer = s->n_layers;
        c->src[0] = m->host_src;
        c->dst[0] = s->staging + c->off;
        c->bytes[0] = w->payload_size;
        c->n = 1;
        src = c->dst[0];
        s->cls_copied = 1;
    }
    const uint64_t rc = be_cls_chunk_rows(s);
    for (uint64_t r0 = 0; r0 < w->desc.rows; r0 += rc) {
        const uint64_t nr = w->desc.rows - r0 < rc ? w->desc.rows - r0 : rc;
        be_chunk *ch = &s->chunks[s->n_chunks++];
        ch->row0 = r0;
        ch->group = *gi;
        be_group *g = &s->groups[(*gi)++];
        g->layer = s->n_layers;
        TRY(sched_job(g, m, src, s->scratch + g->off, r0, nr, &ch->view));
        s->n_cls_groups++;
    }
    return CLLM_OK;
}

// The non-RAW groups of the pass and their copy units, placed by cllm_sched_build.
static cllm_status place_schedule(be_state *s, cllm_sched_group *all, cllm_sched_group *sg,
                                  cllm_sched_copy *sc) {
    const int n_all = be_sched_groups(s, all);
    int n = 0;
    for (int i = 0; i < n_all; i++)
        if (all[i].place != BE_RAW) sg[n++] = all[i];
    const int n_c = cllm_sched_build(sg, n, sc, s->bytes.scratch, s->bytes.staging,
                                     s->n_dec_streams);
    s->groups = (be_group *)calloc(n ? (size_t)n : 1, sizeof *s->groups);
    s->copies = (be_copy *)calloc(n_c ? (size_t)n_c : 1, sizeof *s->copies);
    RETURN_IF(!s->groups || !s->copies, CLLM_ERR_NOMEM, "cuda backend: schedule");
    for (int i = 0; i < n; i++) {
        be_group *g = &s->groups[i];
        g->place = sg[i].place;
        g->dec = sg[i].dec;
        g->copy = sg[i].copy;
        g->wait_release = sg[i].wait_release;
        g->off = sg[i].off;
        g->bytes = sg[i].dec_bytes;
    }
    for (int u = 0; u < n_c; u++) {
        be_copy *c = &s->copies[u];
        c->off = sc[u].off;
        c->size = sc[u].size;
        c->last_group = sc[u].last_group;
        c->wait_group = sc[u].wait_group;
    }
    s->n_groups = n;
    s->n_copies = n_c;
    return CLLM_OK;
}

// Builds groups, copy units and classifier chunks (after the rings and payloads exist).
static cllm_status build_schedule(be_state *s) {
    const be_mat *cls = &s->mats[s->n_mats - 1];
    const uint64_t rc = be_cls_chunk_rows(s);
    const size_t n_chunks = cls->place == BE_RAW ? 1 : (size_t)((cls->w->desc.rows + rc - 1) / rc);
    const size_t cap = (size_t)be_sched_groups_max(s);
    cllm_sched_group *all = (cllm_sched_group *)calloc(cap, sizeof *all);
    cllm_sched_group *sg = (cllm_sched_group *)calloc(cap, sizeof *sg);
    cllm_sched_copy *sc = (cllm_sched_copy *)calloc(cap, sizeof *sc);
    s->chunks = (be_chunk *)calloc(n_chunks, sizeof *s->chunks);
    cllm_status st = all && sg && sc && s->chunks
                         ? place_schedule(s, all, sg, sc)
                         : CLLM_FAIL(CLLM_ERR_NOMEM, "cuda backend: schedule");
    free(all);
    free(sg);
    free(sc);
    TRY(st);
    int gi = 0;
    for (uint32_t l = 0; l < s->n_layers; l++)
        if (s->mats[(size_t)l * BE_MATS_PER_LAYER].place != BE_RAW) TRY(sched_layer(s, l, &gi));
    return sched_classifier(s, &gi);
}

static cllm_status load_embedding(be_state *s) {
    const cllm_weight *e = &s->w->embed;
    const int mode = be_embed_mode(s);
    s->embed_direct = mode != BE_EMBED_COMPRESSED;
    if (mode == BE_EMBED_CLASSIFIER) {
        s->embed_view = s->mats[s->n_mats - 1].view;
        return CLLM_OK;
    }
    if (mode == BE_EMBED_DECODED) return CLLM_OK;  // decoded by load_weights
    TRY(load_compressed(s, e, &s->embed_payload_dev));
    const uint64_t unit_rows = e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
    s->embed_unit_bytes = (size_t)al(unit_rows * e->desc.cols * e->elem_size);
    TRY(DALLOC(s, (uint64_t)s->batch * s->embed_unit_bytes, &s->embed_scratch));
    s->embed_jobs = (cllm_cuda_decode_job *)calloc(s->batch, sizeof *s->embed_jobs);
    RETURN_IF(!s->embed_jobs, CLLM_ERR_NOMEM, "embedding jobs");
    s->embed_view = base_view(e, NULL);
    if (e->desc.codec == CLLM_CODEC_INT8)
        s->embed_view.scales = (const float *)(s->embed_payload_dev + e->layout.side_off);
    return CLLM_OK;
}

static cllm_status load_weights(be_state *s) {
    // Load-time uploads go through the staging ring unless the plan reserved a larger buffer.
    uint8_t *tmp = s->staging;
    if (s->bytes.load_tmp) TRY(DALLOC(s, s->bytes.load_tmp, &tmp));
    cllm_status st = CLLM_OK;
    for (size_t j = 0; j < s->n_mats && st == CLLM_OK; j++) {
        be_mat *m = &s->mats[j];
        if (m->place == BE_RAW) st = load_decoded(s, m->w, tmp, &m->view);
        if (st != CLLM_OK) st = cllm_error_context(st, "%s", m->w->name);
    }
    if (st == CLLM_OK && be_embed_mode(s) == BE_EMBED_DECODED) {
        st = load_decoded(s, &s->w->embed, tmp, &s->embed_view);
        if (st != CLLM_OK) st = cllm_error_context(st, "%s", s->w->embed.name);
    }
    if (s->bytes.load_tmp) (void)cllm_cuda_release(s->mem, tmp);
    TRY(st);
    TRY(load_embedding(s));
    TRY(pin_streamed(s));
    const int tied = s->w->classifier == &s->w->embed;
    for (size_t j = 0; j < s->n_mats; j++) {
        be_mat *m = &s->mats[j];
        if (m->place != BE_DEVICE) continue;
        if (j == s->n_mats - 1 && tied)
            m->payload_dev = s->embed_payload_dev;  // compressed-resident already, as the embedding
        else
            TRY(load_compressed(s, m->w, &m->payload_dev));
    }
    st = build_schedule(s);
    return st == CLLM_OK ? create_events(s) : st;
}

// ---- the backend table -----------------------------------------------------------------------

static void cuda_free(void *state) {
    be_state *s = (be_state *)state;
    if (!s) return;
    if (s->compute) (void)cudaStreamSynchronize(CLLM_STREAM(s->compute));
    if (s->copy) (void)cudaStreamSynchronize(CLLM_STREAM(s->copy));
    if (s->graph) (void)cudaGraphExecDestroy(s->graph);
    for (int d = 0; d < BE_DEC_STREAMS; d++)
        if (s->dec[d]) (void)cudaStreamSynchronize(CLLM_STREAM(s->dec[d]));
    for (int i = 0; i < s->n_events; i++) (void)cudaEventDestroy(s->ev_decoded[i]);
    free(s->ev_decoded);
    cllm_cuda_blas_destroy(s->blas);
    cllm_cuda_stream_destroy(s->compute);
    cllm_cuda_stream_destroy(s->copy);
    for (int d = 0; d < BE_DEC_STREAMS; d++) cllm_cuda_stream_destroy(s->dec[d]);
    cllm_cuda_host_free(s->host_pinned);
    cllm_cuda_host_free(s->ctl_host);
    cllm_cuda_mem_free_all(s->mem);
    (void)cudaGetLastError();
    free(s->embed_jobs);
    free(s->mats);
    free(s->groups);
    free(s->copies);
    free(s->chunks);
    free(s->t_copy);
    free(s->plan);
    free(s);
}

static void set_shapes(be_state *s, const cllm_weights *w, const cllm_engine_options *opt,
                       uint32_t context_len) {
    s->w = w;
    s->cfg = w->cfg;
    s->mode = opt->weights;
    s->budget = opt->vram_budget;
    s->log = opt->log;
    s->log_user = opt->log_user;
    s->ctx = context_len;
    s->batch = context_len < BE_BATCH ? context_len : BE_BATCH;
    s->n_layers = w->cfg.n_layers;
    s->dim = w->cfg.dim;
    s->head_dim = w->cfg.head_dim;
    s->q_dim = (size_t)w->cfg.n_heads * w->cfg.head_dim;
    s->kv_dim = (size_t)w->cfg.n_kv_heads * w->cfg.head_dim;
    s->hidden = w->cfg.hidden_dim;
    s->vocab = w->cfg.vocab_size;
    s->device = opt->device;
}

static cllm_status cuda_setup(be_state *s, int device) {
    TRY(cllm_cuda_device_open(device, s->device_desc, sizeof s->device_desc));
    RETURN_IF(s->head_dim > BE_ATT_MAX_HD, CLLM_ERR_UNSUPPORTED,
              "cuda backend: head_dim %zu (at most %d)", s->head_dim, BE_ATT_MAX_HD);
    TRY(cllm_cuda_attention_init(s->ctx));
    TRY(cllm_cuda_mem_create(&s->mem));
    TRY(cllm_cuda_stream_create(&s->compute));
    TRY(cllm_cuda_stream_create(&s->copy));
    for (int d = 0; d < BE_DEC_STREAMS; d++) TRY(cllm_cuda_stream_create(&s->dec[d]));
    s->n_dec_streams = BE_DEC_STREAMS_DEFAULT;
    TRY(init_mats(s));
    // The timing probes (an H2D copy, decodes and matvecs of layer 0: a fraction of a second)
    // feed the planner and its prediction only: a fixed weights mode places nothing.
    if (s->budget > 0) {
        TRY(be_measure_h2d(s));
        TRY(be_measure_gpu(s));
    }
    TRY(be_fast_choose(s));
    TRY(be_plan(s));
    TRY(alloc_activations(s));
    TRY(be_fast_alloc(s));
    TRY(alloc_gemm(s));
    TRY(alloc_weight_buffers(s));
    TRY(load_weights(s));
    // Pageable uploads may still be in flight on any stream: wait for all of them.
    CLLM_CUDA_TRY(cudaDeviceSynchronize());
    return CLLM_OK;
}

static cllm_status cuda_create(const cllm_weights *w, const cllm_engine_options *opt,
                               uint32_t context_len, void **state) {
    RETURN_IF(opt->kv_dtype != CLLM_DTYPE_F32, CLLM_ERR_UNSUPPORTED,
              "cuda backend: KV cache dtype %s is not supported (f32 only)",
              cllm_dtype_name(opt->kv_dtype));
    const int n_dev = cllm_cuda_device_count();
    RETURN_IF(n_dev == 0, CLLM_ERR_DEVICE, "cuda backend: no CUDA device (or no driver)");
    RETURN_IF(opt->device < 0 || opt->device >= n_dev, CLLM_ERR_DEVICE,
              "cuda backend: device %d requested, %d present", opt->device, n_dev);
    be_state *s = (be_state *)calloc(1, sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "cuda backend state");
    const double t0 = cllm_now_seconds();
    set_shapes(s, w, opt, context_len);
    cllm_status st = cuda_setup(s, opt->device);
    if (st != CLLM_OK) {
        cuda_free(s);
        return cllm_error_context(st, "cuda backend");
    }
    s->load_s = cllm_now_seconds() - t0;
    be_log(s, "cuda: %s; %.2f GiB of device memory, loaded in %.2f s", s->device_desc,
           cllm_cuda_mem_peak(s->mem) / 1073741824.0, s->load_s);
    for (const char *p = s->plan; p && *p;) {  // the plan, one log line per line
        const char *nl = strchr(p, '\n');
        const int len = nl ? (int)(nl - p) : (int)strlen(p);
        be_log(s, "cuda plan: %.*s", len, p);
        p += len + (nl ? 1 : 0);
    }
    *state = s;
    return CLLM_OK;
}

static void cuda_stats(const void *state, cllm_engine_stats *out) {
    const be_state *s = (const be_state *)state;
    const be_bytes *b = &s->bytes;
    out->backend = "cuda";
    out->weights = s->mode;
    out->context_len = s->ctx;
    out->decoded_bytes = b->raw + (be_embed_mode(s) == BE_EMBED_DECODED ? b->embed : 0);
    out->scratch_bytes = b->scratch + b->gemm +
                         (s->embed_scratch ? (uint64_t)s->batch * s->embed_unit_bytes : 0);
    out->kv_bytes = b->kv;
    out->activation_bytes = b->act;
    out->n_tokens = s->n_tokens;
    out->n_forward = s->n_forward;
    out->decode_seconds = s->decode_s;
    out->compute_seconds = s->compute_s;
    out->load_seconds = s->load_s;
    out->device_peak_bytes = cllm_cuda_mem_peak(s->mem);
    out->device_weight_bytes = b->raw + b->compressed + b->staging + b->scratch + b->embed;
    out->copy_seconds = s->copy_s;
    out->predicted_token_seconds = s->predicted;
    out->plan = s->plan;
}

static const cllm_whole_backend cuda_ops = {
    "cuda", cuda_create, cuda_free, be_forward, cuda_stats,
};

extern "C" const cllm_whole_backend *cllm_backend_cuda(void) { return &cuda_ops; }

extern "C" cllm_status cllm_cuda_backend_layer_times(const void *state, double *copy_s,
                                                     double *decode_s, double *compute_s,
                                                     size_t n) {
    const be_state *s = (const be_state *)state;
    RETURN_IF(!s || n < (size_t)s->n_layers + 1, CLLM_ERR_ARG,
              "layer times: %zu entries, %u needed", n, s ? s->n_layers + 1 : 0);
    const size_t bytes = ((size_t)s->n_layers + 1) * sizeof(double);
    if (copy_s) memcpy(copy_s, s->t_copy, bytes);
    if (decode_s) memcpy(decode_s, s->t_dec, bytes);
    if (compute_s) memcpy(compute_s, s->t_comp, bytes);
    return CLLM_OK;
}
