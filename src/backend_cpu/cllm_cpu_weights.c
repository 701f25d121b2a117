// The CPU weight providers, over host memory:
//   resident: every matrix decoded once at load into its own buffer; views fixed.
//   stream:   each decode group of a layer (q/k/v, o, gate/up, down: model/cllm_layout.h)
//             decoded just in time into one reused scratch (sized for the largest group), the
//             embedding one decode unit at a time, the classifier in chunks of whole units that
//             fit the scratch.
// In both, raw tensors aligned for their dtype are read in place from the mapping (their decoded
// bytes are the payload), and the RMSNorm weights are decoded to fp32 at load.
#include "cllm_cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_ALIGN 64

typedef struct cpu_prov {
    const cllm_weights *w;
    cllm_weights_mode mode;
    int n_threads;
    size_t dim;
    float *norms;                // (2 * n_layers + 1, dim): attn l at 2l, ffn at 2l + 1, final last
    cllm_layer_view *resident;   // resident: (n_layers)
    void **bufs;                 // resident: every buffer allocated
    size_t n_bufs;
    cllm_wview embed, cls;       // valid when embed_ready / cls_ready (resident, or in place)
    int embed_ready, cls_ready;
    uint8_t *scratch;            // stream: one decoded group, or rows of a global tensor
    size_t scratch_bytes;
    uint8_t *block_scratch;      // n_threads * block_stride bytes for cllm_weight_decode_rows
    size_t block_stride;
    uint64_t decoded_bytes, norm_bytes;
    double decode_seconds;
} cpu_prov;

// A view of tensor `w` decoded at `data` (kind from its codec and dtype, scales from its payload).
static cllm_wview view_of(const cllm_weight *w, const void *data) {
    cllm_wview v;
    memset(&v, 0, sizeof v);
    v.kind = (cllm_wkind)cllm_weight_decoded_kind(w);
    v.rows = w->desc.rows;
    v.cols = w->desc.cols;
    v.data = data;
    if (v.kind == CLLM_W_I8) {
        v.scales = w->scales;
        v.group_size = w->desc.group_size;
        v.groups_per_row = w->layout.groups_per_row;
    }
    return v;
}

// A view of rows [r0, r1) of `w` decoded at `data` (int8: the scales of those rows).
static cllm_wview view_rows(const cllm_weight *w, const void *data, uint64_t r0, uint64_t r1) {
    cllm_wview v = view_of(w, data);
    v.rows = r1 - r0;
    if (v.kind == CLLM_W_I8) v.scales = w->scales + r0 * v.groups_per_row;
    return v;
}

// 1 when `w` can be read in place from its payload (raw, aligned for its dtype).
static int in_place(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_RAW && (uintptr_t)w->payload % w->elem_size == 0;
}

static cllm_wview norm_view(const cpu_prov *p, size_t index) {
    cllm_wview v;
    memset(&v, 0, sizeof v);
    v.kind = CLLM_W_F32;
    v.rows = 1;
    v.cols = p->dim;
    v.data = p->norms + index * p->dim;
    return v;
}

// Rows of one decode unit of `w`: a block (coded) or a row (raw).
static uint64_t unit_rows(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_RAW ? 1 : w->desc.rows_per_block;
}

static cllm_status decode_timed(cpu_prov *p, const cllm_weight *w, uint64_t r0, uint64_t r1,
                                void *dst, size_t cap) {
    double t0 = cllm_now_seconds();
    cllm_status st = cllm_weight_decode_rows(w, r0, r1, dst, cap, p->block_scratch,
                                             p->block_stride, p->n_threads);
    p->decode_seconds += cllm_now_seconds() - t0;
    return st;
}

// ---- layers ---------------------------------------------------------------------------------

static void norm_views(const cpu_prov *p, uint32_t l, cllm_layer_view *out) {
    out->t[CLLM_LT_ATTN_NORM] = norm_view(p, 2 * (size_t)l);
    out->t[CLLM_LT_FFN_NORM] = norm_view(p, 2 * (size_t)l + 1);
}

static cllm_status resident_group(void *prov, uint32_t l, int group, cllm_layer_view *out) {
    const cpu_prov *p = prov;
    (void)group;  // every matrix of the layer is there
    *out = p->resident[l];
    return CLLM_OK;
}

// Decodes the matrices of decode group `group` of layer l into the scratch, each on a
// SCRATCH_ALIGN boundary.
static cllm_status stream_group(void *prov, uint32_t l, int group, cllm_layer_view *out) {
    cpu_prov *p = prov;
    const cllm_layer_weights *L = &p->w->layers[l];
    norm_views(p, l, out);
    uint64_t off = 0;
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) {
        const cllm_weight *w = &L->all[i];
        if (cllm_llama_layer_layout[i].group != group) continue;
        if (in_place(w)) {
            out->t[i] = view_of(w, w->payload);
            continue;
        }
        off = cllm_align_up(off, SCRATCH_ALIGN);
        // off + decoded_bytes <= scratch_bytes: the scratch was sized by group_scratch_bytes.
        TRY(decode_timed(p, w, 0, w->desc.rows, p->scratch + off, (size_t)w->decoded_bytes));
        out->t[i] = view_of(w, p->scratch + off);
        off += w->decoded_bytes;
    }
    return CLLM_OK;
}

static void release_nothing(void *prov, uint32_t l, int group) {
    (void)prov;
    (void)l;
    (void)group;
}

// ---- global tensors -------------------------------------------------------------------------

static const cllm_weight *global_weight(const cpu_prov *p, cllm_global_tensor g) {
    return g == CLLM_GLOBAL_EMBED ? &p->w->embed : p->w->classifier;
}

static uint64_t prov_max_rows(const void *prov, cllm_global_tensor g) {
    const cpu_prov *p = prov;
    if (g == CLLM_GLOBAL_NORM) return 1;
    const cllm_weight *w = global_weight(p, g);
    if (g == CLLM_GLOBAL_EMBED ? p->embed_ready : p->cls_ready) return w->desc.rows;
    const uint64_t unit = unit_rows(w);
    return p->scratch_bytes / (w->desc.cols * w->elem_size) / unit * unit;  // >= unit: sizing
}

static cllm_status prov_rows(void *prov, cllm_global_tensor g, uint64_t r0, uint64_t r1,
                             cllm_wview *out) {
    cpu_prov *p = prov;
    if (g == CLLM_GLOBAL_NORM) {
        *out = norm_view(p, 2 * (size_t)p->w->cfg.n_layers);
        return CLLM_OK;
    }
    if (g == CLLM_GLOBAL_EMBED ? p->embed_ready : p->cls_ready) {
        *out = cllm_wview_rows(g == CLLM_GLOBAL_EMBED ? &p->embed : &p->cls, r0, r1 - r0);
        return CLLM_OK;
    }
    // Decode the whole units covering [r0, r1) into the scratch (free: no layer is acquired).
    const cllm_weight *w = global_weight(p, g);
    const uint64_t unit = unit_rows(w), u0 = r0 / unit * unit;
    uint64_t u1 = (r1 + unit - 1) / unit * unit;
    if (u1 > w->desc.rows) u1 = w->desc.rows;
    TRY(decode_timed(p, w, u0, u1, p->scratch, p->scratch_bytes));
    cllm_wview units = view_rows(w, p->scratch, u0, u1);
    *out = cllm_wview_rows(&units, r0 - u0, r1 - r0);
    return CLLM_OK;
}

static void release_rows_nothing(void *prov, cllm_global_tensor g) {
    (void)prov;
    (void)g;
}

// ---- load -----------------------------------------------------------------------------------

// Decodes all of `w` into a new buffer (or reads it in place) and returns its view.
static cllm_status resident_decode(cpu_prov *p, const cllm_weight *w, cllm_wview *view) {
    if (in_place(w)) {
        *view = view_of(w, w->payload);
        return CLLM_OK;
    }
    void *buf = malloc(w->decoded_bytes ? (size_t)w->decoded_bytes : 1);
    RETURN_IF(!buf, CLLM_ERR_NOMEM, "%s: cannot allocate %llu bytes", w->name,
              (unsigned long long)w->decoded_bytes);
    p->bufs[p->n_bufs++] = buf;
    p->decoded_bytes += w->decoded_bytes;
    TRY(decode_timed(p, w, 0, w->desc.rows, buf, (size_t)w->decoded_bytes));
    *view = view_of(w, buf);
    return CLLM_OK;
}

static cllm_status resident_load(cpu_prov *p) {
    const cllm_weights *w = p->w;
    const uint32_t n_layers = w->cfg.n_layers;
    p->bufs = calloc(2 + (size_t)CLLM_LAYER_N_TENSORS * n_layers, sizeof *p->bufs);
    p->resident = calloc(n_layers ? n_layers : 1, sizeof *p->resident);
    RETURN_IF(!p->bufs || !p->resident, CLLM_ERR_NOMEM, "resident tables");
    for (uint32_t l = 0; l < n_layers; l++) {
        norm_views(p, l, &p->resident[l]);
        for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++)
            if (cllm_layer_tensor_is_matrix(i))
                TRY(resident_decode(p, &w->layers[l].all[i], &p->resident[l].t[i]));
    }
    TRY(resident_decode(p, &w->embed, &p->embed));
    p->embed_ready = 1;
    if (w->classifier == &w->embed) p->cls = p->embed;
    else TRY(resident_decode(p, w->classifier, &p->cls));
    p->cls_ready = 1;
    return CLLM_OK;
}

static cllm_status load_norms(cpu_prov *p) {
    const cllm_weights *w = p->w;
    const size_t n = 2 * (size_t)w->cfg.n_layers + 1;
    p->norm_bytes = (uint64_t)n * p->dim * sizeof(float);
    p->norms = calloc(n * p->dim, sizeof(float));
    RETURN_IF(!p->norms, CLLM_ERR_NOMEM, "norm weights");
    for (uint32_t l = 0; l < w->cfg.n_layers; l++) {
        TRY(cllm_weight_decode_f32(&w->layers[l].attn_norm, p->norms + 2 * l * p->dim, p->dim));
        TRY(cllm_weight_decode_f32(&w->layers[l].ffn_norm, p->norms + (2 * l + 1) * p->dim,
                                   p->dim));
    }
    return cllm_weight_decode_f32(&w->norm, p->norms + (n - 1) * p->dim, p->dim);
}

// Bytes decode group `group` of a layer takes decoded into the scratch (tensors read in place
// take none), each tensor starting on a SCRATCH_ALIGN boundary.
static uint64_t group_scratch_bytes(const cllm_layer_weights *L, int group) {
    uint64_t total = 0;
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) {
        if (cllm_llama_layer_layout[i].group != group || in_place(&L->all[i])) continue;
        total = cllm_align_up(total, SCRATCH_ALIGN) + L->all[i].decoded_bytes;
    }
    return total;
}

// Stream scratch: the largest decode group, and at least one decode unit of the embedding and
// the classifier when they are not read in place.
static cllm_status alloc_scratch(cpu_prov *p) {
    const cllm_weights *w = p->w;
    uint64_t need = 0;
    for (uint32_t l = 0; l < w->cfg.n_layers; l++)
        for (int g = 0; g < CLLM_LAYER_N_GROUPS; g++) {
            uint64_t b = group_scratch_bytes(&w->layers[l], g);
            need = b > need ? b : need;
        }
    const cllm_weight *g[2] = {&w->embed, w->classifier};
    for (int i = 0; i < 2; i++) {
        uint64_t unit = unit_rows(g[i]) * g[i]->desc.cols * g[i]->elem_size;
        if (!in_place(g[i]) && unit > need) need = unit;
    }
    RETURN_IF(need > SIZE_MAX / 2, CLLM_ERR_NOMEM, "scratch of %llu bytes",
              (unsigned long long)need);
    p->scratch_bytes = (size_t)need;
    p->scratch = aligned_alloc(SCRATCH_ALIGN, cllm_align_up(need ? need : 1, SCRATCH_ALIGN));
    RETURN_IF(!p->scratch, CLLM_ERR_NOMEM, "decode scratch of %llu bytes",
              (unsigned long long)need);
    return CLLM_OK;
}

static cllm_status alloc_block_scratch(cpu_prov *p) {
    const uint64_t max = p->w->max_block_scratch;
    p->block_stride = (size_t)cllm_align_up(max ? max : 1, SCRATCH_ALIGN);
    size_t bytes;
    RETURN_IF(cllm_mul_overflow((size_t)p->n_threads, p->block_stride, &bytes), CLLM_ERR_NOMEM,
              "block scratch size overflows");
    p->block_scratch = calloc(bytes ? bytes : 1, 1);
    RETURN_IF(!p->block_scratch, CLLM_ERR_NOMEM, "block scratch");
    return CLLM_OK;
}

// ---- the provider tables --------------------------------------------------------------------

static void prov_free(void *prov) {
    cpu_prov *p = prov;
    if (!p) return;
    for (size_t i = 0; i < p->n_bufs; i++) free(p->bufs[i]);
    free(p->bufs);
    free(p->resident);
    free(p->norms);
    free(p->scratch);
    free(p->block_scratch);
    free(p);
}

static cllm_status prov_setup(cpu_prov *p) {
    TRY(load_norms(p));
    TRY(alloc_block_scratch(p));
    if (p->mode == CLLM_WEIGHTS_RESIDENT) return resident_load(p);
    TRY(alloc_scratch(p));
    const cllm_weights *w = p->w;
    if (in_place(&w->embed)) {
        p->embed = view_of(&w->embed, w->embed.payload);
        p->embed_ready = 1;
    }
    if (in_place(w->classifier)) {
        p->cls = view_of(w->classifier, w->classifier->payload);
        p->cls_ready = 1;
    }
    return CLLM_OK;
}

static cllm_status prov_create(void *be, const cllm_weights *w, cllm_weights_mode mode,
                               void **prov) {
    const cpu_state *s = be;
    cpu_prov *p = calloc(1, sizeof *p);
    RETURN_IF(!p, CLLM_ERR_NOMEM, "cpu weight provider");
    p->w = w;
    p->mode = mode;
    p->n_threads = s->n_threads;
    p->dim = w->cfg.dim;
    cllm_status st = prov_setup(p);
    if (st != CLLM_OK) {
        prov_free(p);
        return st;
    }
    *prov = p;
    return CLLM_OK;
}

static cllm_status create_resident(void *be, const cllm_weights *w, void **prov) {
    return prov_create(be, w, CLLM_WEIGHTS_RESIDENT, prov);
}

static cllm_status create_stream(void *be, const cllm_weights *w, void **prov) {
    return prov_create(be, w, CLLM_WEIGHTS_STREAM, prov);
}

static void prov_stats(const void *prov, cllm_engine_stats *out) {
    const cpu_prov *p = prov;
    out->decoded_bytes = p->decoded_bytes;
    out->scratch_bytes = p->scratch_bytes + (uint64_t)p->n_threads * p->block_stride;
    out->activation_bytes += p->norm_bytes;
    out->decode_seconds = p->decode_seconds;
}

static const cllm_provider_ops resident_ops = {
    .name = "resident",
    .create = create_resident,
    .free = prov_free,
    .acquire_group = resident_group,
    .release_group = release_nothing,
    .max_rows = prov_max_rows,
    .acquire_rows = prov_rows,
    .release_rows = release_rows_nothing,
    .stats = prov_stats,
};

static const cllm_provider_ops stream_ops = {
    .name = "stream",
    .create = create_stream,
    .free = prov_free,
    .acquire_group = stream_group,
    .release_group = release_nothing,
    .max_rows = prov_max_rows,
    .acquire_rows = prov_rows,
    .release_rows = release_rows_nothing,
    .stats = prov_stats,
};

const cllm_provider_ops *cpu_provider(cllm_weights_mode mode) {
    return mode == CLLM_WEIGHTS_RESIDENT ? &resident_ops
           : mode == CLLM_WEIGHTS_STREAM ? &stream_ops
                                         : NULL;
}
