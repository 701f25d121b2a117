// The CUDA backend's memory plan: what every placement costs in device bytes, the per-token time
// model, and the planner that picks a placement per layer under a VRAM budget.
//
// Weight buffers of the non-RAW matrices (see cllm_cuda_backend.cu for the pipeline):
//   scratch ring = depth x the largest decode group's decoded bytes; depth 3 when any layer is
//                  DEVICE (decode streams filling ranges while compute reads another; with four
//                  streams the ring, not the stream count, bounds how far decodes run ahead),
//                  else 2 (one range decoding while compute reads the other);
//   staging ring = staging_depth (at least 2: one copying while the one before decodes; the
//                  planner may buy more) x the largest STREAM group's payloads, and at least the
//                  classifier's whole payload when it is streamed.
// The classifier is decoded in row chunks no larger than the largest layer group, so it never
// sizes the scratch ring.
//
// Time model for one batch-1 token (predicted_token_seconds): a deterministic discrete-event
// simulation of the pass (sim_run), on the host, of the groups in forward order with the real
// rings' ranges and waits (both from be_sched_groups and cllm_sched_build: one schedule). Each
// group carries its copy time (payload / H2D rate, measured with a 64 MiB pinned copy), its decode
// time (the probe's launch of the same group of layer 0, measured at create by be_measure_gpu;
// classifier chunks interpolated by bytes), its matvec time (the probe's matvecs, by bytes) and
// the rest of the layer's compute (SIM_LAYER_OTHER_S). Engines: the copy engine (serial), the
// decode streams (each in order; concurrent decodes each slow down as the probe's two- and
// four-stream runs say), compute (serial, in order). A copy needs its staging range freed (the decode of the
// unit last there done), a decode its copy and its scratch range released (compute done reading
// the group last there), a matvec its decode. The token is the makespan. A closed form
// (max(copy, GPU)) misses what the rings cost: with ~2 groups of staging the copy engine stops
// while compute runs through layers that copy nothing, and decodes then wait for copies.
// The planner greedily takes the move (a unit to a cheaper-to-run placement, or one more staging
// slot) with the most simulated seconds saved per added byte, evaluating the exact byte total
// (rings included) of each move. Level FUSED (be_level) is a RAW placement whose matrices are
// held in compute code: no decode in the pipeline, its matvecs slower by the probe's measured
// factor (layer 0 transcoded at create), its bytes estimated (BE_CC_EXC_ASSUMED exceptions,
// scaled by the probe's layer-0 ratio); steps longer than the matvecs take unpack row chunks into
// the GEMM scratch.
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

// Compute-code bytes of w with `exc` exceptions per weight (0: the fused kernels do not take it).
static uint64_t fused_estimate(const cllm_weight *w, double exc) {
    return cllm_cuda_ccode_estimate_bytes(cllm_weight_decoded_kind(w), w->desc.rows, w->desc.cols,
                                          w->desc.codec == CLLM_CODEC_INT8 ? w->desc.group_size : 0,
                                          exc);
}

// ---- bytes -----------------------------------------------------------------------------------

static int cls_tied(const be_state *s) { return s->w->classifier == &s->w->embed; }
static const be_mat *cls_mat(const be_state *s) { return &s->plan.mats[s->plan.n_mats - 1]; }

// (The tied classifier too: the embedding lookup reads its compute code.)
int be_mat_fusable(const be_state *s, size_t j) { return fused_estimate(s->plan.mats[j].w, 0) > 0; }

// Bytes of w in compute code: the estimate with BE_CC_EXC_ASSUMED exceptions, scaled by the probe's
// layer-0 ratio when measured, at least the exception-free size.
static uint64_t cc_bytes(const be_state *s, const cllm_weight *w) {
    const double lo = (double)fused_estimate(w, 0), est = (double)fused_estimate(w, BE_CC_EXC_ASSUMED);
    const double r = s->plan.probe.fused_ratio;
    const double b = r > 0 ? est * r : est;
    return al((uint64_t)(b > lo ? b : lo));
}

uint64_t be_mat_fused_bytes(const be_state *s, size_t j) {
    const cllm_weight *w = s->plan.mats[j].w;
    return be_mat_fusable(s, j) ? cc_bytes(s, w) : be_mat_raw_bytes(w);
}

// Fused matvecs' time over raw's: the probe's layer 0, else the default.
static double fused_slowdown(const be_state *s) {
    const be_probe *pr = &s->plan.probe;
    return pr->ok && pr->comp > 0 && pr->comp_fused > 0 ? pr->comp_fused / pr->comp : BE_FUSED_SLOWDOWN;
}

// Whether the embedding is decoded whole into VRAM on its own (all-raw modes without a planner).
static int embed_decoded_own(const be_state *s) {
    return s->budget == 0 && (s->mode == CLLM_WEIGHTS_RAW || s->mode == CLLM_WEIGHTS_RESIDENT) &&
           !cls_tied(s);
}

// Whether the embedding is held in compute code of its own, read a weight at a time by the
// lookup (no decode per token): beside an untied classifier held in compute code, when the fused
// kernels' shape rules take it.
static int embed_fused_own(const be_state *s) {
    return !cls_tied(s) && cls_mat(s)->fused && fused_estimate(&s->w->embed, 0) > 0;
}

int be_embed_mode(const be_state *s) {
    if (cls_tied(s) && cls_mat(s)->place == BE_RAW) return BE_EMBED_CLASSIFIER;
    if (embed_decoded_own(s)) return BE_EMBED_DECODED;
    return embed_fused_own(s) ? BE_EMBED_FUSED : BE_EMBED_COMPRESSED;
}

static uint64_t embed_unit_rows(const cllm_weight *e) {
    return e->desc.codec == CLLM_CODEC_RAW ? 1 : e->desc.rows_per_block;
}

static uint64_t embed_bytes(const be_state *s) {
    const cllm_weight *e = &s->w->embed;
    if (cls_tied(s) && cls_mat(s)->place == BE_RAW) return 0;  // reads the classifier's table
    if (embed_decoded_own(s)) return be_mat_raw_bytes(e);
    if (embed_fused_own(s)) return cc_bytes(s, e);
    uint64_t unit = embed_unit_rows(e) * e->desc.cols * e->elem_size;
    return be_mat_comp_bytes(e) + al(((uint64_t)s->batch + 1) * al(unit));  // + the spare unit
}

static uint64_t activation_bytes(const be_state *s) {
    const uint64_t B = s->batch, wide = s->dim > s->q_dim ? s->dim : s->q_dim;
    uint64_t t = al(B * s->dim * 4) + al(B * wide * 4) + 2 * al(B * s->q_dim * 4) +
                 2 * al(B * s->kv_dim * 4) + 2 * al(B * s->hidden * 4);
    t += al(B * s->vocab * 4) + al(B * s->dim * 4);                     // logits, matmul_add
    t += 2 * al((uint64_t)s->n_layers * s->dim * 4) + al(s->dim * 4);    // norms
    t += 2 * al((uint64_t)s->ctx * (s->head_dim / 2) * 4);              // RoPE tables
    t += al(2 * B * 4) + al(B * 4) + al(sizeof(cllm_cuda_decode_status));  // ctl, rows, status
    t += al(s->att_scratch_bytes);                                       // split attention
    return t;
}

// GEMM scratch (prefill), its int8 row-chunk output and the cuBLAS workspace.
uint64_t be_gemm_sizes(const be_state *s, uint64_t *scratch_out) {
    uint64_t scratch = 0;
    if (s->batch > BE_MATVEC_MAX_N) {
        for (size_t j = 0; j < s->plan.n_mats; j++) {
            const be_mat *m = &s->plan.mats[j];
            cllm_cuda_weight v;
            memset(&v, 0, sizeof v);
            v.rows = m->w->desc.rows;
            v.cols = m->w->desc.cols;
            v.kind = cllm_weight_decoded_kind(m->w);
            // Compute code takes its row chunks through the scratch (bf16, or int8 below 64 tokens).
            if (m->fused)
                v.kind = v.kind == CLLM_CUDA_W_INT8  ? CLLM_CUDA_W_CC_INT8
                         : v.kind == CLLM_CUDA_W_F16 ? CLLM_CUDA_W_CC_F16
                                                     : CLLM_CUDA_W_CC_BF16;
            uint64_t b = cllm_cuda_gemm_scratch_bytes(&v, s->batch);
            const uint64_t b8 = cllm_cuda_gemm_i8_scratch(&v, s->batch);
            b = b8 > b ? b8 : b;
            scratch = b > scratch ? b : scratch;
        }
    }
    if (scratch_out) *scratch_out = al(scratch);
    return s->batch > BE_MATVEC_MAX_N ? al(scratch) + BE_BLAS_WS : 0;
}

uint64_t be_group_dec_bytes(const be_state *s, uint32_t l, int i) {
    uint64_t b = 0;
    for (int k = cllm_layout_group_first(i); k < cllm_layout_group_first(i + 1); k++)
        b += be_mat_raw_bytes(s->plan.mats[(size_t)l * BE_MATS_PER_LAYER + k].w);
    return b;
}

uint64_t be_group_comp_bytes(const be_state *s, uint32_t l, int i) {
    uint64_t b = 0;
    for (int k = cllm_layout_group_first(i); k < cllm_layout_group_first(i + 1); k++)
        b += be_mat_comp_bytes(s->plan.mats[(size_t)l * BE_MATS_PER_LAYER + k].w);
    return b;
}

// Decoded bytes of `rows` classifier rows (+ their int8 scales), aligned.
uint64_t be_cls_rows_bytes(const be_state *s, uint64_t rows) {
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
    const uint64_t row = be_cls_rows_bytes(s, 1);
    uint64_t rows = cap / row / unit * unit;
    rows = rows ? rows : unit;
    return rows < w->desc.rows ? rows : w->desc.rows;
}

static int staging_depth(const be_state *s) {
    return s->plan.staging_depth >= BE_STAGING_DEPTH_MIN ? s->plan.staging_depth : BE_STAGING_DEPTH_MIN;
}

// Ring sizes of the current placements (see the top of this file).
static void ring_sizes(const be_state *s, uint64_t *scratch, uint64_t *staging) {
    uint64_t max_dec = 0, max_comp = 0;
    int any_device = 0;
    for (uint32_t l = 0; l < s->n_layers; l++) {
        const int p = s->plan.mats[(size_t)l * BE_MATS_PER_LAYER].place;
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
        const uint64_t c = be_cls_rows_bytes(s, be_cls_chunk_rows(s));
        max_dec = c > max_dec ? c : max_dec;
        any_device |= cls_mat(s)->place == BE_DEVICE;
        if (cls_mat(s)->place == BE_STREAM) cls_comp = be_mat_comp_bytes(cls_mat(s)->w);
    }
    *scratch = max_dec * (any_device ? 3 : 2);
    const uint64_t ring = (uint64_t)staging_depth(s) * max_comp;
    *staging = ring > cls_comp ? ring : cls_comp;
}

// Device bytes of the current placements (s->plan.mats[].place).
static be_bytes plan_bytes(const be_state *s) {
    be_bytes b;
    memset(&b, 0, sizeof b);
    uint64_t max_load = 0, max_fused_raw = 0;
    for (size_t j = 0; j < s->plan.n_mats; j++) {
        const be_mat *m = &s->plan.mats[j];
        const cllm_weight *w = m->w;
        if (m->place == BE_RAW) {
            if (m->fused) {  // decoded at load, then transcoded (the decoded copy freed)
                b.fused += be_mat_fused_bytes(s, j);
                const uint64_t r = be_mat_raw_bytes(w);
                max_fused_raw = r > max_fused_raw ? r : max_fused_raw;
            } else {
                b.raw += be_mat_raw_bytes(w);
            }
            if (w->desc.codec != CLLM_CODEC_RAW && be_mat_comp_bytes(w) > max_load)
                max_load = be_mat_comp_bytes(w);
        } else if (m->place == BE_DEVICE && !(j == s->plan.n_mats - 1 && cls_tied(s))) {
            b.compressed += be_mat_comp_bytes(w);
        }
    }
    const cllm_weight *e = &s->w->embed;
    if ((embed_decoded_own(s) || embed_fused_own(s)) && e->desc.codec != CLLM_CODEC_RAW &&
        be_mat_comp_bytes(e) > max_load)
        max_load = be_mat_comp_bytes(e);
    if (embed_fused_own(s) && be_mat_raw_bytes(e) > max_fused_raw)
        max_fused_raw = be_mat_raw_bytes(e);  // decoded beside its code for a moment
    ring_sizes(s, &b.scratch, &b.staging);
    b.embed = embed_bytes(s);
    b.kv = 2 * al((uint64_t)s->n_layers * s->n_seq * s->ctx * s->kv_dim * 4);  // every slot
    b.act = activation_bytes(s);
    b.gemm = be_gemm_sizes(s, NULL);
    // Load uploads go through the staging ring when it is large enough; a matrix becoming compute
    // code is held decoded beside its code for a moment.
    b.load_tmp = (b.staging >= max_load ? 0 : max_load) + max_fused_raw;
    b.total = b.raw + b.fused + b.compressed + b.staging + b.scratch + b.embed + b.kv + b.act +
              b.gemm;
    return b;
}

// Bytes at the peak: after load, or during it (the load-time upload buffer).
static uint64_t plan_need(const be_state *s) {
    const be_bytes b = plan_bytes(s);
    return b.total + b.load_tmp;
}

// ---- time: a simulation of one batch-1 token -------------------------------------------------
//
// Plain C on plain arrays (no device, no be_state), so that it reads as the specification of what
// the pipeline in cllm_cuda_backend.cu does with the placements, and can be checked on any host.

// One use of weights by the forward, in order: a layer's decode group ({q,k,v} {o} {gate,up}
// {down}; RAW groups only compute), or a classifier row chunk.
// The simulation's side of a group (its schedule: cllm_sched_group, same index).
struct sim_group {
    double t_copy;         // opens_unit: copy engine seconds of the unit
    double t_dec;          // non-RAW: decode seconds when no other decode runs
    double t_pre;          // compute seconds before the group's acquire (norms, RoPE, attention)
    double t_use;          // compute seconds from the acquire to the release (the matvecs)
    // Set by sim_run: end times, seconds from the pass start.
    double dec_end, rel_end;
};

// A copy unit's side (its schedule: cllm_sched_copy, same index).
struct sim_copy {
    double t;              // copy engine seconds
    double end;            // set by sim_run
};

// A pass's schedule and its timings, in use order.
struct sim_pass {
    cllm_sched_group *sg;
    cllm_sched_copy *sc;
    sim_group *g;
    sim_copy *c;
    int n, n_c;
};

struct sim_result {
    double token;          // makespan: the pass start to compute's last release
    double copy_busy, dec_busy, comp_busy;  // seconds each engine works (decodes: wall time
                                            // with at least one decode running)
    double gpu_busy;       // seconds with a decode or compute running
    double ring_stall;     // copy engine idle with copies left, waiting for a staging range
};

#define SIM_NEVER 1e30

// Engine state during sim_run.
struct sim_state {
    double t;
    int next_copy;         // copy engine: next unit; busy until copy_end when copying
    int copying;
    double copy_end;
    int dec_next[BE_DEC_STREAMS];  // per decode stream: next group index to consider
    int dec_cur[BE_DEC_STREAMS];   // group decoding (-1: idle)
    double dec_left[BE_DEC_STREAMS];  // its solo seconds left
    int comp_next, comp_phase;     // compute: group, 0 idle before its pre-work, 1 pre-work,
    double comp_end;               // 2 waiting for its decode, 3 using
};

static int sim_next_on(const cllm_sched_group *sg, int n, int d, int from) {
    while (from < n && (sg[from].place == BE_RAW || sg[from].dec != d)) from++;
    return from;
}

// Starts whatever may start at st->t; returns whether anything did.
static int sim_start(sim_state *st, sim_pass *ps) {
    sim_group *g = ps->g;
    const sim_copy *c = ps->c;
    const int n = ps->n, n_c = ps->n_c;
    int any = 0;
    const double t = st->t;
    if (!st->copying && st->next_copy < n_c) {
        const int w = ps->sc[st->next_copy].wait_group;
        if (w < 0 || g[w].dec_end <= t) {
            st->copying = 1;
            st->copy_end = t + c[st->next_copy].t;
            any = 1;
        }
    }
    for (int d = 0; d < BE_DEC_STREAMS; d++) {
        const int i = st->dec_next[d];
        if (st->dec_cur[d] >= 0 || i >= n) continue;
        const int cp = ps->sg[i].copy, wr = ps->sg[i].wait_release;
        if ((cp >= 0 && c[cp].end > t) || (wr >= 0 && g[wr].rel_end > t)) continue;
        st->dec_cur[d] = i;
        st->dec_left[d] = g[i].t_dec;
        st->dec_next[d] = sim_next_on(ps->sg, n, d, i + 1);
        any = 1;
    }
    if (st->comp_next < n) {
        sim_group *x = &g[st->comp_next];
        if (st->comp_phase == 0) {
            st->comp_phase = 1;
            st->comp_end = t + x->t_pre;
            any = 1;
        }
        if (st->comp_phase == 1 && st->comp_end <= t) st->comp_phase = 2;
        if (st->comp_phase == 2 && (ps->sg[st->comp_next].place == BE_RAW || x->dec_end <= t)) {
            st->comp_phase = 3;
            st->comp_end = t + x->t_use;
            any = 1;
        }
    }
    return any;
}

// One deterministic discrete-event run of a pass (groups and copy units scheduled by
// cllm_sched_build). Engines: the copy engine (serial, units in order, each after the decode
// that frees its staging range), the decode streams (each serial, its groups in order, each after
// its copy and the release of the scratch range it reuses), compute (serial, in order: pre-work,
// then the matvecs once the group is decoded, then the release). Decodes share the GPU: with one
// running it progresses at 1/k[0] of its solo speed (beside the matvecs), with two each at
// 1/k[1], with three or more each at 1/k[2].
static void sim_run(sim_pass *ps, const double k_share[3], sim_result *r) {
    sim_group *g = ps->g;
    sim_copy *c = ps->c;
    const int n = ps->n, n_c = ps->n_c;
    sim_state st;
    memset(&st, 0, sizeof st);
    memset(r, 0, sizeof *r);
    for (int i = 0; i < n; i++) g[i].dec_end = g[i].rel_end = SIM_NEVER;
    for (int u = 0; u < n_c; u++) c[u].end = SIM_NEVER;
    for (int d = 0; d < BE_DEC_STREAMS; d++) {
        st.dec_cur[d] = -1;
        st.dec_next[d] = sim_next_on(ps->sg, n, d, 0);
    }
    while (st.comp_next < n) {
        while (sim_start(&st, ps)) {
        }
        int active = 0;
        for (int d = 0; d < BE_DEC_STREAMS; d++) active += st.dec_cur[d] >= 0;
        const double k = k_share[active > 2 ? 2 : active > 1 ? 1 : 0];
        double next = SIM_NEVER;
        if (st.copying) next = fmin(next, st.copy_end);
        if (st.comp_phase == 1 || st.comp_phase == 3) next = fmin(next, st.comp_end);
        for (int d = 0; d < BE_DEC_STREAMS; d++)
            if (st.dec_cur[d] >= 0) next = fmin(next, st.t + st.dec_left[d] * k);
        if (next >= SIM_NEVER) break;  // nothing can run: a schedule bug (never with real rings)
        const double dt = next - st.t;
        if (st.copying) r->copy_busy += dt;
        else if (st.next_copy < n_c) r->ring_stall += dt;
        if (active) r->dec_busy += dt;
        if (st.comp_phase == 1 || st.comp_phase == 3) r->comp_busy += dt;
        if (active || st.comp_phase == 1 || st.comp_phase == 3) r->gpu_busy += dt;
        st.t = next;
        if (st.copying && st.copy_end <= next) {
            c[st.next_copy++].end = next;
            st.copying = 0;
        }
        for (int d = 0; d < BE_DEC_STREAMS; d++) {
            if (st.dec_cur[d] < 0) continue;
            st.dec_left[d] -= dt / k;
            if (st.dec_left[d] <= 1e-12) {
                g[st.dec_cur[d]].dec_end = next;
                st.dec_cur[d] = -1;
            }
        }
        if (st.comp_phase == 1 && st.comp_end <= next) st.comp_phase = 2;
        if (st.comp_phase == 3 && st.comp_end <= next) {
            g[st.comp_next++].rel_end = next;
            st.comp_phase = 0;
        }
    }
    r->token = st.comp_next < n ? SIM_NEVER : st.t;
}

// ---- time: the simulation's inputs from the placements and the probe -------------------------

// Compute of a layer besides its matvecs (norms, RoPE, attention, residual adds, launch gaps),
// which the probe does not time: measured on an H100 for a 7B-shaped layer at batch 1 (layer
// compute 0.19-0.21 ms with the probe's matvecs 0.097 ms). Split before each group's acquire as
// the forward runs it: norm | RoPE + attention | norm | -.
#define SIM_LAYER_OTHER_S 100e-6
// The same when nothing is streamed: the step replays a CUDA graph (with PDL when every matrix is
// RAW; a streamed step launches directly). H200, 7B raw: tg 221 tok/s = 4.52 ms/token against
// 4.28 ms of probe-timed matvecs, ~8 us per layer.
#define SIM_LAYER_OTHER_GRAPH_S 10e-6
// The planner's objective adds shares of the decode and copy engines' busy time to the simulated
// token: the simulation hides decodes behind compute, but both read HBM and share the SMs. H200,
// 7B lossless: device mode's token is longer than raw's by about half its layers' serial decode
// time ((1/78.3 - 1/213.0) s against 32 x 0.486 ms: 0.52), so a decode counts half; a copy
// (another engine, PCIe) a twentieth, to prefer less traffic where the token ties.
#define SIM_DECODE_WEIGHT 0.5
#define SIM_COPY_WEIGHT 0.05
static const double sim_pre_share[BE_GROUPS_PER_LAYER] = {0.2, 0.6, 0.2, 0.0};

// Planner workspace: the groups and copy units of one pass (n_layers * 4 + classifier chunks).
struct plan_ws {
    sim_pass p;
    int cap;
};

// Solo decode seconds of `bytes` decoded bytes: layer group i scaled from the probe's group i;
// a classifier chunk (i < 0) interpolated between the probe's groups by bytes (its launches are
// latency-bound, not byte-bound, so the nearest measured sizes say more than a rate).
static double sim_dec_seconds(const be_state *s, int i, double bytes) {
    const be_probe *pr = &s->plan.probe;
    if (!pr->ok) return bytes / BE_DECODE_RATE;
    double gb[BE_GROUPS_PER_LAYER], gt[BE_GROUPS_PER_LAYER];
    int n = 0;
    for (int k = 0; k < BE_GROUPS_PER_LAYER; k++) {
        gb[k] = (double)be_group_dec_bytes(s, 0, k);
        gt[k] = pr->dec_group[k] > 0 ? pr->dec_group[k] : pr->dec_serial * gb[k] / pr->layer_bytes;
        n += gb[k] > 0;
    }
    if (i >= 0) return gb[i] > 0 ? gt[i] * bytes / gb[i] : 0;
    int lo = -1, hi = -1;  // the largest measured size <= bytes, the smallest >= bytes
    for (int k = 0; k < BE_GROUPS_PER_LAYER && n; k++) {
        if (gb[k] <= bytes && (lo < 0 || gb[k] > gb[lo])) lo = k;
        if (gb[k] >= bytes && (hi < 0 || gb[k] < gb[hi])) hi = k;
    }
    if (lo < 0 && hi < 0) return bytes / BE_DECODE_RATE;
    if (lo < 0) return gt[hi] * bytes / gb[hi];
    if (hi < 0 || gb[hi] == gb[lo]) return gt[lo] * bytes / gb[lo];
    return gt[lo] + (gt[hi] - gt[lo]) * (bytes - gb[lo]) / (gb[hi] - gb[lo]);
}

static double sim_matvec_seconds(const be_state *s, double bytes) {
    const be_probe *pr = &s->plan.probe;
    return pr->ok ? pr->comp * bytes / pr->layer_bytes : bytes / BE_MATVEC_RATE;
}

// Decode slowdowns: k[0] = one decode stream beside the matvecs over the decodes alone; k[1] from
// the two-stream run, whose streams hold groups {0, 2} and {1, 3}: both run for the shorter one's
// work at k[1], then the rest at k[0] (within [k[0], 2 k[0]]: two decodes cannot run slower than
// halves); k[2] from the four-stream run, taken as all four sharing the GPU until the longest
// group is done (within [k[1], 2 k[1]]).
static void sim_slowdowns(const be_state *s, double k[3]) {
    const be_probe *pr = &s->plan.probe;
    k[0] = 1, k[1] = 2, k[2] = 4;
    if (!pr->ok || pr->dec_serial <= 0) return;
    k[0] = fmin(fmax(pr->pipe_stream / pr->dec_serial, 1.0), 2.0);
    double w[BE_PROBE_DEC_STREAMS] = {0, 0}, longest = 0;
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
        const double t = sim_dec_seconds(s, i, (double)be_group_dec_bytes(s, 0, i));
        w[i % BE_PROBE_DEC_STREAMS] += t;
        longest = fmax(longest, t);
    }
    const double lo = fmin(w[0], w[1]), hi = fmax(w[0], w[1]);
    const double k2 = lo > 0 ? (pr->pipe_device - (hi - lo) * k[0]) / lo : 2 * k[0];
    k[1] = fmin(fmax(k2, k[0]), 2 * k[0]);
    const double k4 = longest > 0 && pr->pipe_quad > 0 ? pr->pipe_quad / longest : 2 * k[1];
    k[2] = fmin(fmax(k4, k[1]), 2 * k[1]);
}

int be_sched_groups(const be_state *s, cllm_sched_group *g) {
    int n = 0;
    for (uint32_t l = 0; l < s->n_layers; l++)
        for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
            cllm_sched_group *x = &g[n++];
            memset(x, 0, sizeof *x);
            x->place = s->plan.mats[(size_t)l * BE_MATS_PER_LAYER].place;
            x->dec_bytes = be_group_dec_bytes(s, l, i);
            x->opens_unit = x->place == BE_STREAM;
            x->unit_bytes = be_group_comp_bytes(s, l, i);
        }
    const be_mat *m = cls_mat(s);
    const uint64_t rows = m->w->desc.rows;
    const uint64_t rc = m->place == BE_RAW ? rows : be_cls_chunk_rows(s);
    for (uint64_t r0 = 0; r0 < rows; r0 += rc) {
        cllm_sched_group *x = &g[n++];
        memset(x, 0, sizeof *x);
        x->place = m->place;
        x->dec_bytes = be_cls_rows_bytes(s, rows - r0 < rc ? rows - r0 : rc);
        x->opens_unit = r0 == 0 && m->place == BE_STREAM;
        x->unit_bytes = be_mat_comp_bytes(m->w);
    }
    return n;
}

int be_sched_groups_max(const be_state *s) {
    const uint64_t rc = be_cls_chunk_rows(s);
    return (int)(s->n_layers * BE_GROUPS_PER_LAYER + (cls_mat(s)->w->desc.rows + rc - 1) / rc + 1);
}

// The timings of the pass's groups g[0..n) (schedule sg) from the probe; layer groups come
// BE_GROUPS_PER_LAYER per layer, then the classifier's chunks.
static void sim_times(const be_state *s, const cllm_sched_group *sg, int n, sim_group *g) {
    const int n_layer_groups = (int)s->n_layers * BE_GROUPS_PER_LAYER;
    int streamed = 0;
    for (int j = 0; j < n; j++) streamed |= sg[j].place == BE_STREAM;
    const double other = streamed ? SIM_LAYER_OTHER_S : SIM_LAYER_OTHER_GRAPH_S;
    for (int j = 0; j < n; j++) {
        const cllm_sched_group *x = &sg[j];
        const int i = j < n_layer_groups ? j % BE_GROUPS_PER_LAYER : -1;  // -1: classifier
        sim_group *t = &g[j];
        memset(t, 0, sizeof *t);
        t->t_copy = (double)x->unit_bytes / s->plan.h2d_rate;
        t->t_dec = x->place == BE_RAW ? 0 : sim_dec_seconds(s, i, (double)x->dec_bytes);
        t->t_pre = i >= 0 ? other * sim_pre_share[i]
                          : (j == n_layer_groups ? other * sim_pre_share[0] : 0);
        const be_mat *m0 = i >= 0 ? &s->plan.mats[(size_t)(j / BE_GROUPS_PER_LAYER) * BE_MATS_PER_LAYER]
                                  : cls_mat(s);
        t->t_use = sim_matvec_seconds(s, (double)x->dec_bytes) * (m0->fused ? fused_slowdown(s) : 1.0);
    }
}

static int plan_ws_init(const be_state *s, plan_ws *ws) {
    ws->cap = be_sched_groups_max(s);
    ws->p.sg = (cllm_sched_group *)calloc((size_t)ws->cap, sizeof *ws->p.sg);
    ws->p.sc = (cllm_sched_copy *)calloc((size_t)ws->cap, sizeof *ws->p.sc);
    ws->p.g = (sim_group *)calloc((size_t)ws->cap, sizeof *ws->p.g);
    ws->p.c = (sim_copy *)calloc((size_t)ws->cap, sizeof *ws->p.c);
    return ws->p.sg && ws->p.sc && ws->p.g && ws->p.c;
}

static void plan_ws_free(plan_ws *ws) {
    free(ws->p.sg);
    free(ws->p.sc);
    free(ws->p.g);
    free(ws->p.c);
}

// Simulated token of the current placements and staging depth.
static double plan_seconds(const be_state *s, plan_ws *ws, sim_result *r) {
    sim_result tmp;
    r = r ? r : &tmp;
    uint64_t scratch = 0, staging = 0;
    ring_sizes(s, &scratch, &staging);
    sim_pass *ps = &ws->p;
    ps->n = be_sched_groups(s, ps->sg);
    ps->n_c = cllm_sched_build(ps->sg, ps->n, ps->sc, scratch, staging, s->n_dec_streams);
    sim_times(s, ps->sg, ps->n, ps->g);
    for (int i = 0; i < ps->n; i++)
        if (ps->sg[i].place == BE_STREAM && ps->sg[i].opens_unit)
            ps->c[ps->sg[i].copy].t = ps->g[i].t_copy;
    double k[3];
    sim_slowdowns(s, k);
    sim_run(ps, k, r);
    return r->token;
}

// ---- planner ---------------------------------------------------------------------------------

// Unit u (layer u, or the classifier for u = n_layers) to be_level `level`.
static void set_unit(be_state *s, uint32_t u, int level) {
    const int place = level == BE_L_STREAM ? BE_STREAM : level == BE_L_DEVICE ? BE_DEVICE : BE_RAW;
    const size_t j0 = u == s->n_layers ? s->plan.n_mats - 1 : (size_t)u * BE_MATS_PER_LAYER;
    const size_t j1 = u == s->n_layers ? s->plan.n_mats : j0 + BE_MATS_PER_LAYER;
    for (size_t j = j0; j < j1; j++) {
        be_mat *m = &s->plan.mats[j];
        m->level = level;
        m->place = place;
        m->fused = level == BE_L_FUSED && be_mat_fusable(s, j);
    }
}

static int unit_level(const be_state *s, uint32_t u) {
    return u == s->n_layers ? s->plan.mats[s->plan.n_mats - 1].level
                            : s->plan.mats[(size_t)u * BE_MATS_PER_LAYER].level;
}

enum { STAGING_MOVE = BE_L_STREAM + 1 };  // plan_step: the move that deepens the staging ring

static int any_streamed(const be_state *s) {
    for (uint32_t u = 0; u <= s->n_layers; u++)
        if (unit_level(s, u) == BE_L_STREAM) return 1;
    return 0;
}

// The planner's objective: the simulated token plus weighted decode and copy time (see above).
static double plan_objective(const be_state *s, plan_ws *ws) {
    sim_result r;
    const double t = plan_seconds(s, ws, &r);
    return t + SIM_DECODE_WEIGHT * r.dec_busy + SIM_COPY_WEIGHT * r.copy_busy;
}

// Score of a move from (t0, b0) to the current state: objective seconds saved per byte added
// (a move adding no bytes first); 0 when it does not fit or saves nothing.
static double move_score(const be_state *s, plan_ws *ws, double t0, uint64_t b0, uint64_t budget) {
    const uint64_t b1 = plan_need(s);
    if (b1 > budget) return 0;
    const double gain = t0 - plan_objective(s, ws);
    if (gain <= 1e-9) return 0;
    return b1 <= b0 ? DBL_MAX : gain / (double)(b1 - b0);
}

// One greedy step: the move with the most simulated seconds saved per byte added that still fits
// `budget`: a unit (layer or classifier) to a cheaper-to-run placement, or one more staging ring
// slot (copies run further ahead through layers that copy nothing). Returns 0 when none helps.
static int plan_step(be_state *s, uint64_t budget, plan_ws *ws) {
    const double t0 = plan_objective(s, ws);
    const uint64_t b0 = plan_need(s);
    double best = 0;
    uint32_t best_u = 0;
    int best_p = -1;
    for (uint32_t u = 0; u <= s->n_layers; u++) {
        const int cur = unit_level(s, u);
        for (int p = s->plan.min_level; p < cur; p++) {
            set_unit(s, u, p);
            const double score = move_score(s, ws, t0, b0, budget);
            set_unit(s, u, cur);
            if (score > best) best = score, best_u = u, best_p = p;
        }
    }
    const int depth = staging_depth(s);
    if (any_streamed(s) && depth < BE_STAGING_DEPTH_MAX) {
        s->plan.staging_depth = depth + 1;
        const double score = move_score(s, ws, t0, b0, budget);
        s->plan.staging_depth = depth;
        if (score > best) best = score, best_p = STAGING_MOVE;
    }
    if (best_p < 0) return 0;
    if (best_p == STAGING_MOVE)
        s->plan.staging_depth = depth + 1;
    else
        set_unit(s, best_u, best_p);
    return 1;
}

static void bytes_breakdown(const be_state *s, const be_bytes *b, char *buf, size_t cap) {
    snprintf(buf, cap,
             "KV %.2f GiB at context %u x %u sequence(s), activations %.2f GiB, GEMM %.2f GiB, "
             "decode scratch %.2f GiB, staging %.2f GiB, embedding %.2f GiB, decoded weights "
             "%.2f GiB, compute-code weights %.2f GiB (estimated), "
             "compressed weights %.2f GiB",
             b->kv / GIB, s->ctx, s->n_seq, b->act / GIB, b->gemm / GIB, b->scratch / GIB,
             b->staging / GIB, b->embed / GIB, b->raw / GIB, b->fused / GIB, b->compressed / GIB);
}

// Every unit at `level`, the staging ring at its minimum; 1 when that fits `budget`.
static int plan_uniform(be_state *s, int level, uint64_t budget) {
    for (uint32_t u = 0; u <= s->n_layers; u++) set_unit(s, u, level);
    s->plan.staging_depth = BE_STAGING_DEPTH_MIN;
    return plan_need(s) <= budget;
}

// Greedy from several starts (every unit streamed; every unit compressed resident, and every unit
// in compute code, where those fit): a greedy path can spend the budget on upgrades that a
// later, larger saving needed (the last streamed layer keeps the step off its CUDA graph). The
// plan with the least objective wins.
static cllm_status plan_budget(be_state *s, uint64_t budget, plan_ws *ws) {
    plan_uniform(s, BE_L_STREAM, budget);
    be_bytes b = plan_bytes(s);
    if (b.total + b.load_tmp > budget) {
        char why[512];
        bytes_breakdown(s, &b, why, sizeof why);
        return CLLM_FAIL(CLLM_ERR_NOMEM,
                         "VRAM budget %.2f GiB is below the minimum of %.2f GiB for this model at "
                         "context %u (%s)",
                         budget / GIB, (b.total + b.load_tmp) / GIB, s->ctx, why);
    }
    int *best = (int *)malloc((s->n_layers + 1) * sizeof *best);
    RETURN_IF(!best, CLLM_ERR_NOMEM, "cuda plan: levels");
    double best_obj = DBL_MAX;
    int best_depth = BE_STAGING_DEPTH_MIN;
    static const int starts[3] = {BE_L_STREAM, BE_L_DEVICE, BE_L_FUSED};
    for (int k = 0; k < 3; k++) {
        if (starts[k] < s->plan.min_level || !plan_uniform(s, starts[k], budget)) continue;
        while (plan_step(s, budget, ws)) {
        }
        const double obj = plan_objective(s, ws);
        if (obj < best_obj) {
            best_obj = obj, best_depth = s->plan.staging_depth;
            for (uint32_t u = 0; u <= s->n_layers; u++) best[u] = unit_level(s, u);
        }
    }
    for (uint32_t u = 0; u <= s->n_layers; u++) set_unit(s, u, best[u]);
    s->plan.staging_depth = best_depth;
    free(best);
    return CLLM_OK;
}

// ---- plan text -------------------------------------------------------------------------------

static void unit_line(const be_state *s, uint32_t u0, uint32_t u1, char *buf, size_t cap,
                      size_t *len) {
    const int p = unit_level(s, u0);
    uint64_t dec = 0, comp = 0, fused = 0;
    const char *codec = "";
    for (size_t j = 0; j < s->plan.n_mats; j++) {
        const be_mat *m = &s->plan.mats[j];
        if (m->layer < u0 || m->layer > u1) continue;
        dec += be_mat_raw_bytes(m->w);
        comp += m->w->payload_size;
        fused += m->fused ? be_mat_fused_bytes(s, j) : be_mat_raw_bytes(m->w);
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
    if (p == BE_L_RAW)
        n = snprintf(buf + *len, cap - *len, "%s: raw resident (%s decoded, %.2f GiB)\n", what,
                     codec, dec / GIB);
    else if (p == BE_L_FUSED)
        n = snprintf(buf + *len, cap - *len,
                     "%s: compute code resident (%s, about %.2f GiB, decoded inside the matvecs)\n",
                     what, codec, fused / GIB);
    else if (p == BE_L_DEVICE)
        n = snprintf(buf + *len, cap - *len,
                     "%s: compressed resident (%s, %.2f GiB, decoded per token)\n", what, codec,
                     comp / GIB);
    else
        n = snprintf(buf + *len, cap - *len, "%s: streamed (%s, %.2f GB/token over PCIe)\n", what,
                     codec, comp / 1e9);
    if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

// The time model's lines of the plan text: the prediction, what it rests on (the probes), and the
// simulated pipeline.
static void plan_time_text(be_state *s, plan_ws *ws, char *t, size_t cap) {
    sim_result r;
    plan_seconds(s, ws, &r);
    const double gpu = r.gpu_busy;
    char probe[400];
    const be_probe *pr = &s->plan.probe;
    if (pr->ok)
        snprintf(probe, sizeof probe,
                 "measured per layer: matvecs %.3f ms (on compute code %.3f ms, its bytes %.2fx "
                 "the assumed), decodes %.3f ms (4 launches: %.3f %.3f %.3f %.3f alone), with the "
                 "matvecs %.3f ms on one decode stream, %.3f ms on two, %.3f ms on four; %d decode "
                 "streams",
                 pr->comp * 1e3, pr->comp_fused * 1e3, pr->fused_ratio, pr->dec_serial * 1e3,
                 pr->dec_group[0] * 1e3, pr->dec_group[1] * 1e3, pr->dec_group[2] * 1e3,
                 pr->dec_group[3] * 1e3, pr->pipe_stream * 1e3, pr->pipe_device * 1e3,
                 pr->pipe_quad * 1e3, s->n_dec_streams);
    else
        snprintf(probe, sizeof probe, "assumed: decode %.0f GB/s, matvec %.1f TB/s, serial",
                 BE_DECODE_RATE / 1e9, BE_MATVEC_RATE / 1e12);
    const char *bound = r.copy_busy >= r.dec_busy && r.copy_busy >= r.comp_busy ? "copy-bound"
                        : r.dec_busy >= r.comp_busy                             ? "decode-bound"
                                                                                : "compute-bound";
    snprintf(t, cap,
             "\npredicted %.2f ms/token = %.1f tok/s, %s (copy %.2f ms at %.1f GB/s measured, GPU "
             "%.2f ms; %s)\n"
             "simulated pipeline: %s, ring stalls %.2f ms (copy engine busy %.2f ms, decodes "
             "%.2f ms, compute %.2f ms; staging ring %d groups deep)",
             s->plan.predicted * 1e3, s->plan.predicted > 0 ? 1.0 / s->plan.predicted : 0.0,
             r.copy_busy > gpu ? "copy-bound" : "GPU-bound", r.copy_busy * 1e3, s->plan.h2d_rate / 1e9,
             gpu * 1e3, probe, bound, r.ring_stall * 1e3, r.copy_busy * 1e3, r.dec_busy * 1e3,
             r.comp_busy * 1e3, staging_depth(s));
}

static cllm_status plan_text(be_state *s, plan_ws *ws) {
    const size_t cap = 5120;
    char *t = (char *)malloc(cap);
    RETURN_IF(!t, CLLM_ERR_NOMEM, "plan text");
    size_t len = 0;
    t[0] = 0;
    for (uint32_t u0 = 0; u0 < s->n_layers;) {
        uint32_t u1 = u0;
        while (u1 + 1 < s->n_layers && unit_level(s, u1 + 1) == unit_level(s, u0)) u1++;
        unit_line(s, u0, u1, t, cap, &len);
        u0 = u1 + 1;
    }
    unit_line(s, s->n_layers, s->n_layers, t, cap, &len);
    const be_bytes *b = &s->plan.bytes;
    int n = snprintf(t + len, cap - len,
                     "embedding: %s (%.2f GiB)\n"
                     "fixed: KV %.2f GiB (context %u), activations %.2f GiB, GEMM %.2f GiB, decode "
                     "scratch ring %.2f GiB, staging ring %.2f MiB\n"
                     "total %.2f GiB of device memory%s",
                     b->embed == 0           ? "reads the classifier's table"
                     : embed_decoded_own(s) ? "decoded resident"
                     : embed_fused_own(s)   ? "compute code, read a weight at a time"
                                            : "compressed resident, rows decoded per token",
                     b->embed / GIB, b->kv / GIB, s->ctx, b->act / GIB, b->gemm / GIB,
                     b->scratch / GIB, b->staging / MIB, b->total / GIB,
                     s->budget ? " (planned under the VRAM budget)"
                               : " (no time model: the probes run for a VRAM budget only)");
    if (n > 0) len = len + (size_t)n < cap ? len + (size_t)n : cap - 1;
    if (s->budget > 0) plan_time_text(s, ws, t + len, cap - len);
    free(s->plan.text);
    s->plan.text = t;
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
        s->plan.h2d_rate = 25e9;
        be_log(s, "cuda: H2D rate probe failed (%s); assuming 25 GB/s", cllm_last_error());
        return CLLM_OK;
    }
    s->plan.h2d_rate = bytes / (ms * 1e-3);
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
    cllm_cuda_weight fviews[BE_MATS_PER_LAYER];  // the same in compute code where it takes them
    void *fbuf[BE_MATS_PER_LAYER];                // their compute-code buffers
    uint8_t *payload, *out;
    float *xy;                   // x (largest cols), then y (largest rows)
    size_t x_floats;
    cllm_cuda_decode_status *status;
    cudaEvent_t e0, e1, join[BE_DEC_STREAMS];
};

// PROBE_GROUP(i): with PROBE_DEC, only group i's launch (else all four). PROBE_DUAL: the
// launches alternate on two decode streams; PROBE_QUAD: each on its own stream. PROBE_FUSED: the
// matvecs read the compute-code views.
enum { PROBE_DEC = 1, PROBE_DUAL = 2, PROBE_MATVEC = 4, PROBE_QUAD = 8, PROBE_FUSED = 1 << 10 };
#define PROBE_GROUP(i) (((i) + 1) << 4)

static cllm_status probe_alloc(be_state *s, probe_ctx *c) {
    uint64_t comp = 0, out = 0, cols = 0, rows = 0;
    for (int k = 0; k < BE_MATS_PER_LAYER; k++) {
        const cllm_weight *w = s->plan.mats[k].w;
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
        for (int k = cllm_layout_group_first(i); k < cllm_layout_group_first(i + 1); k++) {
            const cllm_weight *w = s->plan.mats[k].w;
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

// Seconds of one run of `what` (PROBE_* flags): decodes on s->dec (all on [0], alternating with
// PROBE_DUAL, one per stream with PROBE_QUAD), matvecs on s->compute, all started together and
// joined on compute.
static cllm_status probe_once(be_state *s, probe_ctx *c, int what, double *sec) {
    cudaStream_t cs = CLLM_STREAM(s->compute);
    const int n_dec = !(what & PROBE_DEC) ? 0
                      : what & PROBE_QUAD ? BE_GROUPS_PER_LAYER
                      : what & PROBE_DUAL ? BE_PROBE_DEC_STREAMS : 1;
    CLLM_CUDA_TRY(cudaEventRecord(c->e0, cs));
    for (int d = 0; d < n_dec; d++)
        CLLM_CUDA_TRY(cudaStreamWaitEvent(CLLM_STREAM(s->dec[d]), c->e0, 0));
    const int only = ((what & (PROBE_FUSED - 1)) >> 4) - 1;
    for (int i = 0; i < BE_GROUPS_PER_LAYER && n_dec; i++)
        if (only < 0 || only == i)
            TRY(cllm_cuda_decode(c->jobs[i], (size_t)c->n_jobs[i], c->status, s->dec[i % n_dec]));
    for (int k = 0; k < BE_MATS_PER_LAYER && (what & PROBE_MATVEC); k++)
        TRY(cllm_cuda_matvec(what & PROBE_FUSED ? &c->fviews[k] : &c->views[k], c->xy,
                             c->xy + c->x_floats, 0, s->compute));
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

// Layer 0 in compute code: each group decoded alone, then its matrices transcoded (as load does
// for level FUSED); the 7 matvecs timed on them (comp_fused), and their bytes over the plan's
// estimate (fused_ratio), which then scales the estimate of every matrix.
static cllm_status probe_fused(be_state *s, probe_ctx *c) {
    be_probe *pr = &s->plan.probe;
    double est = 0, got = 0, t = 0;
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++) {
        TRY(probe_once(s, c, PROBE_DEC | PROBE_GROUP(i), &t));  // joined: the group is decoded
        for (int k = cllm_layout_group_first(i); k < cllm_layout_group_first(i + 1); k++) {
            c->fviews[k] = c->views[k];
            if (!be_mat_fusable(s, (size_t)k)) continue;
            size_t bytes = 0;
            cllm_cuda_weight cc;
            const cllm_status st = cllm_cuda_ccode_make(s->mem, &c->views[k], s->n_threads,
                                                        s->compute, &cc, &bytes);
            if (st == CLLM_ERR_UNSUPPORTED) continue;  // load keeps it decoded too
            TRY(st);
            c->fviews[k] = cc;
            c->fbuf[k] = (void *)cc.data;
            got += (double)bytes;
            est += (double)fused_estimate(s->plan.mats[k].w, BE_CC_EXC_ASSUMED);
        }
    }
    TRY(probe_time(s, c, PROBE_MATVEC | PROBE_FUSED, &pr->comp_fused));
    pr->fused_ratio = est > 0 ? got / est : 0;
    return CLLM_OK;
}

static cllm_status probe_run(be_state *s, probe_ctx *c) {
    be_probe *pr = &s->plan.probe;
    TRY(probe_alloc(s, c));
    TRY(probe_setup(s, c));
    TRY(probe_time(s, c, PROBE_MATVEC, &pr->comp));
    TRY(probe_time(s, c, PROBE_DEC, &pr->dec_serial));
    TRY(probe_time(s, c, PROBE_DEC | PROBE_MATVEC, &pr->pipe_stream));
    TRY(probe_time(s, c, PROBE_DEC | PROBE_DUAL | PROBE_MATVEC, &pr->pipe_device));
    TRY(probe_time(s, c, PROBE_DEC | PROBE_QUAD | PROBE_MATVEC, &pr->pipe_quad));
    // Each launch alone: the decoder is latency-bound, so a launch's time follows its blocks in
    // flight more than its bytes (the pipeline simulation needs each group's own time).
    for (int i = 0; i < BE_GROUPS_PER_LAYER; i++)
        TRY(probe_time(s, c, PROBE_DEC | PROBE_GROUP(i), &pr->dec_group[i]));
    TRY(probe_fused(s, c));
    TRY(cllm_cuda_decode_status_check(c->status, s->compute));
    pr->layer_bytes = 0;
    for (int k = 0; k < BE_MATS_PER_LAYER; k++) pr->layer_bytes += (double)be_mat_raw_bytes(s->plan.mats[k].w);
    pr->ok = pr->comp > 0 && pr->pipe_stream > 0 && pr->pipe_device > 0 && pr->layer_bytes > 0;
    return CLLM_OK;
}

cllm_status be_measure_gpu(be_state *s) {
    probe_ctx c;
    memset(&c, 0, sizeof c);
    memset(&s->plan.probe, 0, sizeof s->plan.probe);
    cllm_status st = s->n_layers ? probe_run(s, &c) : CLLM_OK;
    if (c.e0) (void)cudaEventDestroy(c.e0);
    if (c.e1) (void)cudaEventDestroy(c.e1);
    for (int d = 0; d < BE_DEC_STREAMS; d++)
        if (c.join[d]) (void)cudaEventDestroy(c.join[d]);
    for (int k = 0; k < BE_MATS_PER_LAYER; k++) (void)cllm_cuda_release(s->mem, c.fbuf[k]);
    (void)cllm_cuda_release(s->mem, c.status);
    (void)cllm_cuda_release(s->mem, c.xy);
    (void)cllm_cuda_release(s->mem, c.out);
    (void)cllm_cuda_release(s->mem, c.payload);
    if (st == CLLM_ERR_CORRUPT) return st;  // the container's layer 0 does not decode
    if (st != CLLM_OK || !s->plan.probe.ok) {
        (void)cudaDeviceSynchronize();
        (void)cudaGetLastError();
        s->plan.probe.ok = 0;
        be_log(s, "cuda: GPU timing probe failed (%s); assuming fixed rates", cllm_last_error());
    }
    return CLLM_OK;
}

static cllm_status check_device_fits(be_state *s) {
    size_t free_b = 0, total_b = 0;
    CLLM_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    const be_bytes *b = &s->plan.bytes;
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

// Placements (mode, or the planner under the budget) and their figures, with a workspace.
static cllm_status plan_with(be_state *s, plan_ws *ws) {
    if (s->budget > 0) {
        size_t free_b = 0, total_b = 0;
        CLLM_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
        uint64_t budget = s->budget;
        if (free_b > DEVICE_MARGIN && budget > free_b - DEVICE_MARGIN) {
            budget = free_b - DEVICE_MARGIN;
            be_log(s, "cuda: VRAM budget %.2f GiB capped to the %.2f GiB free (less a margin)",
                   s->budget / GIB, budget / GIB);
        }
        // Under a budget with --weights fused: compute code where weights are resident, never raw.
        s->plan.min_level = s->mode == CLLM_WEIGHTS_FUSED ? BE_L_FUSED : BE_L_RAW;
        TRY(plan_budget(s, budget, ws));
    } else {
        const int p = s->mode == CLLM_WEIGHTS_STREAM   ? BE_L_STREAM
                      : s->mode == CLLM_WEIGHTS_DEVICE ? BE_L_DEVICE
                      : s->mode == CLLM_WEIGHTS_FUSED  ? BE_L_FUSED
                                                       : BE_L_RAW;
        for (uint32_t u = 0; u <= s->n_layers; u++) set_unit(s, u, p);
        s->plan.staging_depth = BE_STAGING_DEPTH_MIN;
    }
    s->plan.n_streamed = 0;
    for (size_t j = 0; j < s->plan.n_mats; j++) s->plan.n_streamed += s->plan.mats[j].place == BE_STREAM;
    s->plan.bytes = plan_bytes(s);
    // A prediction needs the probes, which only a budget runs (be_state's create).
    s->plan.predicted = s->budget > 0 ? plan_seconds(s, ws, NULL) : 0.0;
    TRY(check_device_fits(s));
    return plan_text(s, ws);
}

cllm_status be_plan(be_state *s) {
    plan_ws ws;
    memset(&ws, 0, sizeof ws);
    cllm_status st = plan_ws_init(s, &ws) ? plan_with(s, &ws)
                                          : CLLM_FAIL(CLLM_ERR_NOMEM, "cuda plan: workspace");
    plan_ws_free(&ws);
    return st;
}
