// The CUDA weight provider: the placements of the plan (cllm_cuda_plan.cu), the weights loaded
// accordingly, and the copy/decode pipeline that hands the engine each decode group in device
// memory (acquire_group / acquire_rows) and takes it back (release_*).
//
// Weights. Each layer's 7 matrices and the classifier are RAW (decoded in VRAM: read in place;
// at level FUSED transcoded at load to compute code, which the matvecs decode as they read),
// DEVICE (payload in VRAM) or STREAM (payload in pinned host memory). The non-RAW ones are decoded
// in groups, one launch per group: {q,k,v}, {o}, {gate,up}, {down} of each layer, then the
// classifier in row chunks. A group decodes into its range of the scratch ring; a STREAM group
// first has its payloads copied into a range of the staging ring.
//
// Streams. copy (H2D copies), dec[0..] (decodes: STREAM groups in order on dec[0], DEVICE groups
// alternating), compute (the backend's: every op). Decodes run ahead of compute by as many groups
// as the scratch ring holds, copies ahead of decodes by as many as the staging ring holds.
// Events, per step (g: group, u: copy unit, both numbered in use order):
//   ev_copied[u]   copy stream, after unit u's copies. Decode of u's groups waits on it.
//   ev_decoded[g]  dec stream, after group g's decode (and STREAM int8 scales copy out of the
//                  staging range). Compute waits on it at the acquire of g; the copy of a later
//                  unit into a staging range overlapping u's waits on it for u's last group
//                  (copies[].wait_group). STREAM decodes are in order on dec[0], so the latest
//                  overlapping unit's decode implies all earlier ones.
//   ev_released[g] compute, at the release of g (after the last kernel reading its range). Decode
//                  of a later group into an overlapping range waits on it (groups[].wait_release);
//                  compute runs in order, so the latest overlapping group implies all earlier ones.
//   ev_fork        compute, at the step start (inside the graph when capturing). A decode stream
//                  waits on it before its first decode of the step (this also joins it to a
//                  graph capture).
// cudaStreamWaitEvent waits for the record enqueued last before it, so the host enqueues a wait
// only after the record it means (advance() checks this): copy u after the decode of its
// wait_group, decode g after its copy and after the release of its wait_release, compute's use of
// g after decode g. Records from the previous step are complete (be_pipe_end synchronises every
// stream), so a range with no earlier overlapping group in this step needs no wait. A wait only
// ever names a record already enqueued: nothing can hang.
#include "cllm_cuda_be.h"

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
#define REC(ev, stream) CLLM_CUDA_TRY(cudaEventRecord((ev), CLLM_STREAM(stream)))
#define WAIT(stream, ev) CLLM_CUDA_TRY(cudaStreamWaitEvent(CLLM_STREAM(stream), (ev), 0))

static uint64_t al(uint64_t x) { return cllm_align_up(x, BE_ALIGN); }

// ---- setup -----------------------------------------------------------------------------------

// The pipeline events in one array: per group decoded and released, per copy unit copied, and
// the fork event last. Synchronisation only: no timing (cheaper records and waits).
static cllm_status create_events(be_state *s) {
    const size_t G = (size_t)s->sched.n_groups, C = (size_t)s->sched.n_copies, n = 2 * G + C + 1;
    cudaEvent_t *ev = (cudaEvent_t *)calloc(n, sizeof *ev);
    RETURN_IF(!ev, CLLM_ERR_NOMEM, "cuda provider: events");
    s->pipe.ev_decoded = ev;
    s->pipe.ev_released = ev + G;
    s->pipe.ev_copied = ev + 2 * G;
    for (size_t i = 0; i < n; i++) {
        CLLM_CUDA_TRY(cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming));
        s->pipe.n_events = (int)i + 1;
    }
    s->pipe.ev_fork = ev[n - 1];
    return CLLM_OK;
}

static cllm_status init_mats(be_state *s) {
    s->plan.n_mats = (size_t)s->n_layers * BE_MATS_PER_LAYER + 1;
    s->plan.mats = (be_mat *)calloc(s->plan.n_mats, sizeof *s->plan.mats);
    s->sched.layer_group0 = (int *)calloc(s->n_layers ? s->n_layers : 1, sizeof(int));
    RETURN_IF(!s->plan.mats || !s->sched.layer_group0, CLLM_ERR_NOMEM, "cuda provider: tables");
    for (uint32_t l = 0; l < s->n_layers; l++)
        for (int i = 0; i < BE_MATS_PER_LAYER; i++) {
            be_mat *m = &s->plan.mats[(size_t)l * BE_MATS_PER_LAYER + i];
            m->w = &s->w->layers[l].all[cllm_layout_matrix_tensor(i)];
            m->layer = l;
        }
    s->plan.mats[s->plan.n_mats - 1].w = s->w->classifier;
    s->plan.mats[s->plan.n_mats - 1].layer = s->n_layers;
    return CLLM_OK;
}

// Norm weights in fp32, (2 * n_layers + 1, dim): attention and MLP norm of each layer, final.
static cllm_status upload_norms(be_state *s) {
    const size_t D = s->dim, L = s->n_layers, n = (2 * L + 1) * D;
    float *h = (float *)malloc(n * sizeof(float));
    cllm_status st = h ? CLLM_OK : CLLM_FAIL(CLLM_ERR_NOMEM, "norm staging");
    for (size_t l = 0; l < L && st == CLLM_OK; l++) {
        st = cllm_weight_decode_f32(&s->w->layers[l].attn_norm, h + 2 * l * D, D);
        if (st == CLLM_OK)
            st = cllm_weight_decode_f32(&s->w->layers[l].ffn_norm, h + (2 * l + 1) * D, D);
    }
    if (st == CLLM_OK) st = cllm_weight_decode_f32(&s->w->norm, h + 2 * L * D, D);
    if (st == CLLM_OK) st = DALLOC(s, n * 4, &s->sched.norms);
    if (st == CLLM_OK && cudaMemcpy(s->sched.norms, h, n * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        st = CLLM_FAIL(CLLM_ERR_DEVICE, "norm upload: %s", cudaGetErrorString(cudaGetLastError()));
    free(h);
    return st;
}

// The decode scratch ring and the staging ring (sizes from the plan; see cllm_cuda_plan.cu), and
// the backend's GEMM buffers (sized by the plan).
static cllm_status alloc_weight_buffers(be_state *s) {
    uint64_t scratch = 0;
    if (be_gemm_sizes(s, &scratch)) TRY(be_dev_gemm_alloc(s->dev, scratch));
    TRY(DALLOC(s, s->plan.bytes.scratch, &s->sched.scratch));
    return DALLOC(s, s->plan.bytes.staging, &s->sched.staging);
}

// ---- weights ---------------------------------------------------------------------------------

static cllm_wview base_view(const cllm_weight *w, const void *data) {
    cllm_wview v;
    memset(&v, 0, sizeof v);
    v.data = data;
    v.rows = w->desc.rows;
    v.cols = w->desc.cols;
    v.kind = (cllm_wkind)cllm_weight_decoded_kind(w);
    if (w->desc.codec == CLLM_CODEC_INT8) {
        v.group_size = w->desc.group_size;
        v.groups_per_row = w->layout.groups_per_row;
    }
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
                                cllm_wview *view) {
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
    for (size_t j = 0; j < s->plan.n_mats; j++)
        if (s->plan.mats[j].place == BE_STREAM) total += cllm_align_up(s->plan.mats[j].w->payload_size, 4096);
    if (total == 0) return CLLM_OK;
    if (cllm_cuda_host_alloc((size_t)total, (void **)&s->sched.host_pinned) != CLLM_OK) {
        (void)cudaGetLastError();
        s->sched.host_pinned = NULL;
        be_log(s, "cuda: cannot pin %.2f GiB of host memory for the streamed payloads (%s); "
                  "copying from the file mapping instead (slower, synchronous)",
               total / 1073741824.0, cllm_last_error());
    }
    uint64_t off = 0;
    for (size_t j = 0; j < s->plan.n_mats; j++) {
        be_mat *m = &s->plan.mats[j];
        if (m->place != BE_STREAM) continue;
        if (!s->sched.host_pinned) {
            m->host_src = m->w->payload;
            continue;
        }
        memcpy(s->sched.host_pinned + off, m->w->payload, m->w->payload_size);
        m->host_src = s->sched.host_pinned + off;
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
                             uint64_t r0, uint64_t nr, cllm_wview *view) {
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

// Layer l's groups s->sched.groups[*gi..] (in schedule order): their copies and decode jobs.
static cllm_status sched_layer(be_state *s, uint32_t l, int *gi) {
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
        const int k0 = (*gi)++;
        be_group *g = &s->sched.groups[k0];
        be_copy *c = g->copy >= 0 ? &s->sched.copies[g->copy] : NULL;
        g->layer = l;
        if (c) c->layer = l;
        uint64_t doff = 0, soff = 0;
        for (int k = cllm_layout_group_first(i); k < cllm_layout_group_first(i + 1); k++) {
            be_mat *m = &s->plan.mats[(size_t)l * BE_MATS_PER_LAYER + k];
            const uint8_t *src = m->payload_dev;
            if (c) {
                c->src[c->n] = m->host_src;
                c->dst[c->n] = s->sched.staging + c->off + soff;
                c->bytes[c->n] = m->w->payload_size;
                src = c->dst[c->n++];
                soff += be_mat_comp_bytes(m->w);
            }
            TRY(sched_job(g, m, src, s->sched.scratch + g->off + doff, 0, m->w->desc.rows, &m->view));
            if (k == 0) s->sched.layer_group0[l] = k0;
            m->group = k0;
            m->last_in_group = k == cllm_layout_group_first(i + 1) - 1;
            doff += be_mat_raw_bytes(m->w);
        }
    }
    return CLLM_OK;
}

// The classifier in row chunks of be_cls_chunk_rows (one chunk, its own view, when RAW), its
// groups s->sched.groups[*gi..].
static cllm_status sched_classifier(be_state *s, int *gi) {
    be_mat *m = &s->plan.mats[s->plan.n_mats - 1];
    const cllm_weight *w = m->w;
    if (m->place == BE_RAW) {
        s->sched.cls_chunk_rows = w->desc.rows;
        s->sched.chunks[0].row0 = 0;
        s->sched.chunks[0].view = m->view;
        s->sched.chunks[0].group = -1;
        s->sched.n_chunks = 1;
        return CLLM_OK;
    }
    s->sched.cls_chunk_rows = be_cls_chunk_rows(s);
    const uint8_t *src = m->payload_dev;
    if (m->place == BE_STREAM) {
        be_copy *c = &s->sched.copies[s->sched.groups[*gi].copy];  // opened by the first chunk
        c->layer = s->n_layers;
        c->src[0] = m->host_src;
        c->dst[0] = s->sched.staging + c->off;
        c->bytes[0] = w->payload_size;
        c->n = 1;
        src = c->dst[0];
        s->sched.cls_copied = 1;
    }
    const uint64_t rc = s->sched.cls_chunk_rows;
    for (uint64_t r0 = 0; r0 < w->desc.rows; r0 += rc) {
        const uint64_t nr = w->desc.rows - r0 < rc ? w->desc.rows - r0 : rc;
        be_chunk *ch = &s->sched.chunks[s->sched.n_chunks++];
        ch->row0 = r0;
        ch->group = *gi;
        be_group *g = &s->sched.groups[(*gi)++];
        g->layer = s->n_layers;
        TRY(sched_job(g, m, src, s->sched.scratch + g->off, r0, nr, &ch->view));
        s->sched.n_cls_groups++;
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
    const int n_c = cllm_sched_build(sg, n, sc, s->plan.bytes.scratch, s->plan.bytes.staging,
                                     s->n_dec_streams);
    s->sched.groups = (be_group *)calloc(n ? (size_t)n : 1, sizeof *s->sched.groups);
    s->sched.copies = (be_copy *)calloc(n_c ? (size_t)n_c : 1, sizeof *s->sched.copies);
    RETURN_IF(!s->sched.groups || !s->sched.copies, CLLM_ERR_NOMEM, "cuda backend: schedule");
    for (int i = 0; i < n; i++) {
        be_group *g = &s->sched.groups[i];
        g->place = sg[i].place;
        g->dec = sg[i].dec;
        g->copy = sg[i].copy;
        g->wait_release = sg[i].wait_release;
        g->off = sg[i].off;
        g->bytes = sg[i].dec_bytes;
    }
    for (int u = 0; u < n_c; u++) {
        be_copy *c = &s->sched.copies[u];
        c->off = sc[u].off;
        c->size = sc[u].size;
        c->last_group = sc[u].last_group;
        c->wait_group = sc[u].wait_group;
    }
    s->sched.n_groups = n;
    s->sched.n_copies = n_c;
    return CLLM_OK;
}

// Builds groups, copy units and classifier chunks (after the rings and payloads exist).
static cllm_status build_schedule(be_state *s) {
    const be_mat *cls = &s->plan.mats[s->plan.n_mats - 1];
    const uint64_t rc = be_cls_chunk_rows(s);
    const size_t n_chunks = cls->place == BE_RAW ? 1 : (size_t)((cls->w->desc.rows + rc - 1) / rc);
    const size_t cap = (size_t)be_sched_groups_max(s);
    cllm_sched_group *all = (cllm_sched_group *)calloc(cap, sizeof *all);
    cllm_sched_group *sg = (cllm_sched_group *)calloc(cap, sizeof *sg);
    cllm_sched_copy *sc = (cllm_sched_copy *)calloc(cap, sizeof *sc);
    s->sched.chunks = (be_chunk *)calloc(n_chunks, sizeof *s->sched.chunks);
    cllm_status st = all && sg && sc && s->sched.chunks
                         ? place_schedule(s, all, sg, sc)
                         : CLLM_FAIL(CLLM_ERR_NOMEM, "cuda backend: schedule");
    free(all);
    free(sg);
    free(sc);
    TRY(st);
    int gi = 0;
    for (uint32_t l = 0; l < s->n_layers; l++) {
        s->sched.layer_group0[l] = -1;
        if (s->plan.mats[(size_t)l * BE_MATS_PER_LAYER].place != BE_RAW) TRY(sched_layer(s, l, &gi));
    }
    return sched_classifier(s, &gi);
}

// Bytes of one embedding decode unit in the scratch (aligned).
static uint64_t embed_unit_bytes(const be_state *s) {
    const cllm_weight *e = &s->w->embed;
    const uint64_t unit_rows = e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
    return cllm_align_up(unit_rows * e->desc.cols * e->elem_size, BE_ALIGN);
}

static cllm_status load_embedding(be_state *s) {
    const cllm_weight *e = &s->w->embed;
    const int mode = be_embed_mode(s);
    s->sched.embed_direct = mode != BE_EMBED_COMPRESSED;
    if (mode == BE_EMBED_CLASSIFIER) {
        s->sched.embed_view = s->plan.mats[s->plan.n_mats - 1].view;
        return CLLM_OK;
    }
    if (mode == BE_EMBED_DECODED || mode == BE_EMBED_FUSED) return CLLM_OK;  // by load_weights
    TRY(load_compressed(s, e, &s->sched.embed_payload_dev));
    s->sched.embed_units = s->batch + 1;
    s->sched.embed_block = (uint64_t *)malloc(s->sched.embed_units * sizeof(uint64_t));
    s->sched.embed_jobs = (cllm_cuda_decode_job *)calloc(s->batch, sizeof(cllm_cuda_decode_job));
    RETURN_IF(!s->sched.embed_block || !s->sched.embed_jobs, CLLM_ERR_NOMEM, "embedding jobs");
    for (uint32_t u = 0; u < s->sched.embed_units; u++) s->sched.embed_block[u] = UINT64_MAX;
    TRY(DALLOC(s, (uint64_t)s->sched.embed_units * embed_unit_bytes(s), &s->sched.embed_scratch));
    s->sched.embed_view = base_view(e, NULL);
    if (e->desc.codec == CLLM_CODEC_INT8)
        s->sched.embed_view.scales = (const float *)(s->sched.embed_payload_dev + e->layout.side_off);
    return CLLM_OK;
}

// Level FUSED: a decoded buffer (view, of tensor w) becomes its in-VRAM compute code, which the
// matvec kernels (and the embedding lookup) decode as they read it (same results as the decoded
// matrix); *bytes: what it takes now. A shape the fused kernels do not take, or a matrix the code
// cannot hold, stays decoded (*made 0).
static cllm_status view_to_compute_code(be_state *s, const cllm_weight *w, cllm_wview *view,
                                        uint64_t *bytes, int *made) {
    const cllm_cuda_weight raw = be_kw(view);
    cllm_cuda_weight cc;
    size_t n = 0;
    const double t0 = cllm_now_seconds();
    cllm_status st = cllm_cuda_ccode_make(s->mem, &raw, s->n_threads, s->compute, &cc, &n);
    s->sched.fuse_s += cllm_now_seconds() - t0;
    *made = 0;
    *bytes = be_mat_raw_bytes(w);
    if (st == CLLM_ERR_UNSUPPORTED) {
        be_log(s, "cuda: %s stays decoded (%s)", w->name, cllm_last_error());
        return CLLM_OK;
    }
    TRY(st);
    TRY(cllm_cuda_release(s->mem, (void *)raw.data));
    view->data = cc.data;
    view->scales = cc.scales;
    view->kind = (cllm_wkind)cc.kind;
    *made = 1;
    *bytes = n;
    return CLLM_OK;
}

static cllm_status to_compute_code(be_state *s, be_mat *m) {
    uint64_t bytes = 0;
    int made = 0;
    TRY(view_to_compute_code(s, m->w, &m->view, &bytes, &made));
    if (!made) {
        s->sched.n_fused_raw++;
        s->sched.fused_raw_bytes += bytes;
        return CLLM_OK;
    }
    s->sched.n_fused++;
    s->sched.fused_bytes += bytes;
    s->sched.fused_weights += m->view.rows * m->view.cols;
    return CLLM_OK;
}

static cllm_status load_weights(be_state *s) {
    // Load-time uploads go through the staging ring unless the plan reserved a larger buffer.
    uint8_t *tmp = s->sched.staging;
    if (s->plan.bytes.load_tmp) TRY(DALLOC(s, s->plan.bytes.load_tmp, &tmp));
    cllm_status st = CLLM_OK;
    for (size_t j = 0; j < s->plan.n_mats && st == CLLM_OK; j++) {
        be_mat *m = &s->plan.mats[j];
        if (m->place == BE_RAW) st = load_decoded(s, m->w, tmp, &m->view);
        if (st == CLLM_OK && m->fused) st = to_compute_code(s, m);
        if (st != CLLM_OK) st = cllm_error_context(st, "%s", m->w->name);
    }
    const int emode = be_embed_mode(s);
    if (st == CLLM_OK && (emode == BE_EMBED_DECODED || emode == BE_EMBED_FUSED)) {
        st = load_decoded(s, &s->w->embed, tmp, &s->sched.embed_view);
        int made = 0;
        if (st == CLLM_OK && emode == BE_EMBED_FUSED)
            st = view_to_compute_code(s, &s->w->embed, &s->sched.embed_view,
                                      &s->sched.embed_made_bytes, &made);
        if (st != CLLM_OK) st = cllm_error_context(st, "%s", s->w->embed.name);
    }
    if (s->plan.bytes.load_tmp) (void)cllm_cuda_release(s->mem, tmp);
    TRY(st);
    TRY(load_embedding(s));
    TRY(pin_streamed(s));
    const int tied = s->w->classifier == &s->w->embed;
    for (size_t j = 0; j < s->plan.n_mats; j++) {
        be_mat *m = &s->plan.mats[j];
        if (m->place != BE_DEVICE) continue;
        if (j == s->plan.n_mats - 1 && tied)
            m->payload_dev = s->sched.embed_payload_dev;  // compressed-resident already, as the embedding
        else
            TRY(load_compressed(s, m->w, &m->payload_dev));
    }
    st = build_schedule(s);
    return st == CLLM_OK ? create_events(s) : st;
}

// ---- the pipeline ----------------------------------------------------------------------------

static cllm_status issue_copy(be_state *s, int u) {
    const be_copy *c = &s->sched.copies[u];
    if (c->wait_group >= 0) WAIT(s->copy, s->pipe.ev_decoded[c->wait_group]);
    for (int i = 0; i < c->n; i++)
        CLLM_CUDA_TRY(cudaMemcpyAsync(c->dst[i], c->src[i], c->bytes[i], cudaMemcpyHostToDevice,
                                      CLLM_STREAM(s->copy)));
    REC(s->pipe.ev_copied[u], s->copy);
    return CLLM_OK;
}

static cllm_status issue_decode(be_state *s, int gi) {
    const be_group *g = &s->sched.groups[gi];
    void *ds = s->dec[g->dec];
    if (!s->pipe.dec_joined[g->dec]) {
        WAIT(ds, s->pipe.ev_fork);
        s->pipe.dec_joined[g->dec] = 1;
    }
    if (g->copy >= 0) WAIT(ds, s->pipe.ev_copied[g->copy]);
    if (g->wait_release >= 0) WAIT(ds, s->pipe.ev_released[g->wait_release]);
    TRY(cllm_cuda_decode(g->jobs, (size_t)g->n_jobs, s->status_dev, ds));
    for (int i = 0; i < g->n_jobs; i++)
        if (g->scales_bytes[i])
            TRY(cllm_cuda_copy(g->scales_dst[i], g->scales_src[i], g->scales_bytes[i], ds));
    REC(s->pipe.ev_decoded[gi], ds);
    return CLLM_OK;
}

// Enqueues every copy and decode whose waits name records already enqueued (see the top).
static cllm_status advance(be_state *s) {
    for (int progress = 1; progress;) {
        progress = 0;
        while (s->pipe.next_copy < s->pipe.n_copies_active) {
            const int w = s->sched.copies[s->pipe.next_copy].wait_group;
            if (w >= 0 && w >= s->pipe.next_dec) break;
            TRY(issue_copy(s, s->pipe.next_copy++));
            progress = 1;
        }
        while (s->pipe.next_dec < s->pipe.n_groups_active) {
            const be_group *g = &s->sched.groups[s->pipe.next_dec];
            if (g->copy >= s->pipe.next_copy || g->wait_release >= s->pipe.n_released) break;
            TRY(issue_decode(s, s->pipe.next_dec++));
            progress = 1;
        }
    }
    return CLLM_OK;
}

cllm_status be_pipe_begin(be_state *s, int with_classifier) {
    const int cls = with_classifier ? 0 : 1;  // the classifier's groups (last) only with logits
    s->pipe.n_groups_active = s->sched.n_groups - (cls ? s->sched.n_cls_groups : 0);
    s->pipe.n_copies_active = s->sched.n_copies - (cls && s->sched.cls_copied ? 1 : 0);
    s->pipe.next_copy = s->pipe.next_dec = s->pipe.n_released = 0;
    s->pipe.cur_group = -1;
    s->pipe.wait_pending = 0;
    for (int d = 0; d < BE_DEC_STREAMS; d++) s->pipe.dec_joined[d] = 0;
    s->pipe.n_passes++;
    if (!s->pipe.n_groups_active) return CLLM_OK;
    REC(s->pipe.ev_fork, s->compute);
    return advance(s);
}

cllm_status be_pipe_end(be_state *s) {
    // Compute waited for every decode it read, and every decode for its copies; the streams are
    // synchronised anyway so that nothing of this step is in flight at the next. Without groups
    // (raw and fused placements) nothing of a step runs on the decode and copy streams (create
    // ended with a device synchronisation), and without a compressed embedding nothing decodes:
    // compute alone is synchronised (each idle stream's synchronisation cost ~1.5 us of host time
    // between steps, the status copy ~5 us; PERF.md 7ag).
    const int piped = s->sched.n_groups > 0 || s->sched.n_copies > 0;
    if (!piped && s->sched.embed_direct) return cllm_cuda_sync(s->compute);
    cllm_status st = cllm_cuda_decode_status_check(s->status_dev, s->compute);  // synchronises
    for (int d = 0; piped && d < BE_DEC_STREAMS; d++) {
        const cllm_status sd = cllm_cuda_sync(s->dec[d]);
        st = st == CLLM_OK ? sd : st;
    }
    const cllm_status sc = piped ? cllm_cuda_sync(s->copy) : CLLM_OK;
    st = st == CLLM_OK ? sc : st;
    if (st == CLLM_ERR_CORRUPT) (void)cllm_cuda_decode_status_reset(s->status_dev, s->compute);
    return st;
}

// Group gi's scratch range becomes readable on the compute stream before the next op that reads
// a matrix (be_pipe_wait): ops on resident data (the RMSNorm before q/k/v and gate/up) run
// before compute waits for the decode.
static cllm_status acquire(be_state *s, int gi) {
    if (gi == s->pipe.cur_group) return CLLM_OK;
    RETURN_IF(gi >= s->pipe.next_dec, CLLM_ERR_DEVICE,
              "cuda pipeline: group %d used before its decode was enqueued", gi);  // a bug
    s->pipe.cur_group = gi;
    s->pipe.wait_pending = 1;
    return CLLM_OK;
}

cllm_status be_pipe_wait(be_state *s) {
    if (!s->pipe.wait_pending) return CLLM_OK;
    s->pipe.wait_pending = 0;
    WAIT(s->compute, s->pipe.ev_decoded[s->pipe.cur_group]);
    return CLLM_OK;
}

// Compute is done reading group gi's range: later decodes may overwrite it. (The wait is
// enqueued first if no op read the group: the range is free only after its decode.)
static cllm_status release(be_state *s, int gi) {
    TRY(be_pipe_wait(s));
    REC(s->pipe.ev_released[gi], s->compute);
    s->pipe.n_released = gi + 1;
    return advance(s);
}

// ---- the provider ----------------------------------------------------------------------------

static cllm_wview norm_view(const be_state *s, size_t index) {
    cllm_wview v;
    memset(&v, 0, sizeof v);
    v.kind = CLLM_W_F32;
    v.rows = 1;
    v.cols = s->dim;
    v.data = s->sched.norms + index * s->dim;
    return v;
}

static cllm_status prov_acquire_group(void *prov, uint32_t l, int group, cllm_layer_view *out) {
    be_state *s = (be_state *)prov;
    out->t[CLLM_LT_ATTN_NORM] = norm_view(s, 2 * (size_t)l);
    out->t[CLLM_LT_FFN_NORM] = norm_view(s, 2 * (size_t)l + 1);
    if (s->sched.layer_group0[l] >= 0) TRY(acquire(s, s->sched.layer_group0[l] + group));
    for (int k = cllm_layout_group_first(group); k < cllm_layout_group_first(group + 1); k++)
        out->t[cllm_layout_matrix_tensor(k)] = s->plan.mats[(size_t)l * BE_MATS_PER_LAYER + k].view;
    return CLLM_OK;
}

static void prov_release_group(void *prov, uint32_t l, int group) {
    be_state *s = (be_state *)prov;
    // A failed record or wait leaves the step failing at be_pipe_end (the error is sticky).
    if (s->sched.layer_group0[l] >= 0) (void)release(s, s->sched.layer_group0[l] + group);
}

static uint64_t prov_max_rows(const void *prov, cllm_global_tensor g) {
    const be_state *s = (const be_state *)prov;
    if (g == CLLM_GLOBAL_EMBED && s->sched.embed_direct) return s->vocab;  // the whole table at once
    return g == CLLM_GLOBAL_CLASSIFIER ? s->sched.cls_chunk_rows : 1;
}

// The unit holding embedding block b, or -1.
static int embed_unit_of(const be_state *s, uint64_t b) {
    for (uint32_t u = 0; u < s->sched.embed_units; u++)
        if (s->sched.embed_block[u] == b) return (int)u;
    return -1;
}

// The decode job of block b into unit u (unit u then holds nothing until the decode is issued).
static cllm_status embed_job(be_state *s, uint64_t b, uint32_t u, cllm_cuda_decode_job *job) {
    const cllm_weight *e = &s->w->embed;
    const uint64_t unit = e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
    const uint64_t row = e->desc.cols * e->elem_size;
    // The job writes block b's rows at out + row index * row: out sits b * unit rows before.
    uint8_t *dst = s->sched.embed_scratch + (uint64_t)u * embed_unit_bytes(s) - b * unit * row;
    s->sched.embed_block[u] = UINT64_MAX;
    return cllm_cuda_decode_job_init(&e->desc, s->sched.embed_payload_dev, dst, b, 1, job);
}

// prepare_rows: every block the rows need and no unit holds yet, decoded in one batched call into
// units 0..batch-1 (blocks already held keep their units).
static cllm_status prov_prepare_rows(void *prov, cllm_global_tensor g, const uint32_t *rows,
                                     size_t n) {
    be_state *s = (be_state *)prov;
    if (g != CLLM_GLOBAL_EMBED || s->sched.embed_direct) return CLLM_OK;
    const cllm_weight *e = &s->w->embed;
    const uint64_t unit = e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
    RETURN_IF(n > s->batch, CLLM_ERR_ARG, "prepare_rows: %zu rows (at most %u)", n, s->batch);
    RETURN_IF(s->batch > BE_BATCH, CLLM_ERR_ARG, "prepare_rows: batch %u", s->batch);
    uint8_t keep[BE_BATCH + 1] = {0};  // units this step reads: not reused for another block
    uint32_t n_jobs = 0, next = 0, unit_of_job[BE_BATCH];
    uint64_t block_of_job[BE_BATCH];
    for (size_t i = 0; i < n; i++) {
        RETURN_IF(rows[i] >= e->desc.rows, CLLM_ERR_ARG, "prepare_rows: row %u", rows[i]);
        const uint64_t b = rows[i] / unit;
        const int have = embed_unit_of(s, b);
        if (have >= 0 && have < (int)s->batch) {
            keep[have] = 1;
            continue;
        }
        while (next < s->batch && keep[next]) next++;
        RETURN_IF(next >= s->batch, CLLM_ERR_ARG, "prepare_rows: units exhausted");
        keep[next] = 1;
        unit_of_job[n_jobs] = next, block_of_job[n_jobs] = b;
        TRY(embed_job(s, b, next, &s->sched.embed_jobs[n_jobs++]));
    }
    if (n_jobs) TRY(cllm_cuda_decode(s->sched.embed_jobs, n_jobs, s->status_dev, s->compute));
    for (uint32_t j = 0; j < n_jobs; j++) s->sched.embed_block[unit_of_job[j]] = block_of_job[j];
    return CLLM_OK;
}

// Row r of the embedding: in place in a decoded table, else in the unit that holds its block
// (prepare_rows), else its block decoded into the last unit.
static cllm_status embed_row(be_state *s, uint64_t r, cllm_wview *out) {
    const cllm_weight *e = &s->w->embed;
    const uint64_t esize = e->elem_size, row = e->desc.cols * esize;
    const uint8_t *data;
    if (s->sched.embed_direct) {
        // A compute-code table has no one-row view: its rows are read through the whole table.
        RETURN_IF(s->sched.embed_view.kind >= CLLM_W_CC_BF16 && s->sched.embed_view.rows != 1,
                  CLLM_ERR_UNSUPPORTED, "embedding row %llu alone: the table is compute code",
                  (unsigned long long)r);
        data = (const uint8_t *)s->sched.embed_view.data + r * row;
    } else {
        const uint64_t unit = e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
        const uint64_t b = r / unit;
        int u = embed_unit_of(s, b);
        if (u < 0) {
            u = (int)s->sched.embed_units - 1;
            TRY(embed_job(s, b, (uint32_t)u, &s->sched.embed_job));
            TRY(cllm_cuda_decode(&s->sched.embed_job, 1, s->status_dev, s->compute));
            s->sched.embed_block[u] = b;
        }
        data = s->sched.embed_scratch + (uint64_t)u * embed_unit_bytes(s) + (r - b * unit) * row;
    }
    *out = s->sched.embed_view;
    out->rows = 1;
    out->data = data;
    if (out->scales) out->scales += r * out->groups_per_row;
    return CLLM_OK;
}

static cllm_status prov_acquire_rows(void *prov, cllm_global_tensor g, uint64_t r0, uint64_t r1,
                                     cllm_wview *out) {
    be_state *s = (be_state *)prov;
    if (g == CLLM_GLOBAL_EMBED && r1 - r0 > 1) {  // a decoded table (prov_max_rows)
        *out = s->sched.embed_view;
        return CLLM_OK;
    }
    if (g == CLLM_GLOBAL_EMBED) return embed_row(s, r0, out);
    if (g == CLLM_GLOBAL_NORM) {
        *out = norm_view(s, 2 * (size_t)s->n_layers);
        return CLLM_OK;
    }
    const be_chunk *ch = &s->sched.chunks[r0 / s->sched.cls_chunk_rows];
    RETURN_IF(ch->row0 != r0 || ch->view.rows != r1 - r0, CLLM_ERR_ARG,
              "cuda provider: classifier rows %llu..%llu are not a chunk",
              (unsigned long long)r0, (unsigned long long)r1);  // a bug
    if (ch->group >= 0) TRY(acquire(s, ch->group));
    *out = ch->view;
    return CLLM_OK;
}

static void prov_release_rows(void *prov, cllm_global_tensor g) {
    be_state *s = (be_state *)prov;
    if (g == CLLM_GLOBAL_CLASSIFIER && s->pipe.cur_group >= 0 &&
        s->pipe.cur_group >= s->sched.n_groups - s->sched.n_cls_groups)
        (void)release(s, s->pipe.cur_group);
}

static void prov_free(void *prov) {
    be_state *s = (be_state *)prov;
    if (!s) return;
    if (s->compute) (void)cudaStreamSynchronize(CLLM_STREAM(s->compute));
    if (s->copy) (void)cudaStreamSynchronize(CLLM_STREAM(s->copy));
    for (int d = 0; d < BE_DEC_STREAMS; d++)
        if (s->dec[d]) (void)cudaStreamSynchronize(CLLM_STREAM(s->dec[d]));
    for (int i = 0; i < s->pipe.n_events; i++) (void)cudaEventDestroy(s->pipe.ev_decoded[i]);
    free(s->pipe.ev_decoded);
    cllm_cuda_stream_destroy(s->copy);
    for (int d = 0; d < BE_DEC_STREAMS; d++) cllm_cuda_stream_destroy(s->dec[d]);
    cllm_cuda_host_free(s->sched.host_pinned);
    // Device buffers belong to the backend's tracker (freed with it).
    (void)cudaGetLastError();
    free(s->plan.mats);
    free(s->sched.layer_group0);
    free(s->sched.embed_block);
    free(s->sched.embed_jobs);
    free(s->sched.groups);
    free(s->sched.copies);
    free(s->sched.chunks);
    free(s->plan.text);
    free(s);
}

static cllm_status prov_setup(be_state *s) {
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
    TRY(be_plan(s));
    TRY(upload_norms(s));
    TRY(alloc_weight_buffers(s));
    TRY(load_weights(s));
    // Pageable uploads may still be in flight on any stream: wait for all of them.
    CLLM_CUDA_TRY(cudaDeviceSynchronize());
    return CLLM_OK;
}

static cllm_status prov_create(void *be, const cllm_weights *w, void **prov) {
    be_state *s = (be_state *)calloc(1, sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "cuda provider state");
    const double t0 = cllm_now_seconds();
    be_dev_lend((be_dev *)be, s);
    s->w = w;
    cllm_status st = prov_setup(s);
    if (st != CLLM_OK) {
        prov_free(s);
        return cllm_error_context(st, "cuda backend");
    }
    s->load_s = cllm_now_seconds() - t0;
    be_log(s, "cuda: %s; %.2f GiB of device memory, weights loaded in %.2f s", s->device_desc,
           cllm_cuda_mem_peak(s->mem) / 1073741824.0, s->load_s);
    if (s->sched.n_fused + s->sched.n_fused_raw > 0)
        be_log(s, "cuda: fused: %d matrices in compute code, %.2f GiB (%.2f bits/weight; the plan "
                  "assumed %.2f GiB), made in %.2f s; %d kept decoded",
               s->sched.n_fused, s->sched.fused_bytes / 1073741824.0,
               s->sched.fused_weights ? 8.0 * s->sched.fused_bytes / s->sched.fused_weights : 0.0,
               s->plan.bytes.fused / 1073741824.0, s->sched.fuse_s, s->sched.n_fused_raw);
    if (be_embed_mode(s) == BE_EMBED_FUSED)
        be_log(s, "cuda: fused: the embedding takes %.2f GiB (%s; the plan assumed %.2f GiB)",
               s->sched.embed_made_bytes / 1073741824.0,
               s->sched.embed_view.kind >= CLLM_W_CC_BF16 ? "compute code" : "kept decoded",
               s->plan.bytes.embed / 1073741824.0);
    for (const char *p = s->plan.text; p && *p;) {  // the plan, one log line per line
        const char *nl = strchr(p, '\n');
        const int len = nl ? (int)(nl - p) : (int)strlen(p);
        be_log(s, "cuda plan: %.*s", len, p);
        p += len + (nl ? 1 : 0);
    }
    *prov = s;
    return CLLM_OK;
}

static void prov_stats(const void *prov, cllm_engine_stats *out) {
    const be_state *s = (const be_state *)prov;
    const be_bytes *b = &s->plan.bytes;
    out->decoded_bytes = b->raw + (be_embed_mode(s) == BE_EMBED_DECODED ? b->embed : 0);
    out->scratch_bytes = b->scratch + b->gemm;
    // Compute code as made (the plan's figure is an estimate); level-FUSED matrices that stayed
    // decoded count as decoded.
    out->decoded_bytes += s->sched.fused_raw_bytes;
    // (The embedding in compute code: as made, the plan's being an estimate; decoded when the code
    // could not hold it.)
    const int embed_cc = be_embed_mode(s) == BE_EMBED_FUSED;
    const uint64_t embed = embed_cc ? s->sched.embed_made_bytes : b->embed;
    if (embed_cc && s->sched.embed_view.kind < CLLM_W_CC_BF16) out->decoded_bytes += embed;
    out->device_weight_bytes = b->raw + b->compressed + b->staging + b->scratch + embed +
                               s->sched.fused_bytes + s->sched.fused_raw_bytes;
    out->predicted_token_seconds = s->plan.predicted;
    out->plan = s->plan.text;
}

static const cllm_provider_ops cuda_provider = {
    "cuda",          prov_create,       prov_free,         prov_acquire_group,
    prov_release_group, prov_max_rows,  prov_acquire_rows, prov_release_rows,
    prov_stats,      prov_prepare_rows,
};

// One provider for every mode: the plan reads the mode (and the VRAM budget) from the options.
const cllm_provider_ops *be_provider(cllm_weights_mode mode) {
    (void)mode;
    return &cuda_provider;
}
