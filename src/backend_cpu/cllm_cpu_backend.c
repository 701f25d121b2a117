// CPU backend setup: weight residency (stream or resident), the KV cache, activations.
// Everything a forward call needs is allocated here; the forward pass allocates nothing.
#include "cllm_cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_ALIGN 64

cllm_wview cpu_view(const cllm_weight *w, const void *data) {
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

cllm_wview cpu_view_rows(const cllm_weight *w, const void *data, uint64_t r0, uint64_t r1) {
    cllm_wview v = cpu_view(w, data);
    v.rows = r1 - r0;
    if (v.kind == CLLM_W_I8) v.scales = w->scales + r0 * v.groups_per_row;
    return v;
}

int cpu_in_place(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_RAW && (uintptr_t)w->payload % w->elem_size == 0;
}

// Bytes a layer takes decoded into the scratch (tensors read in place take none), each tensor
// starting on a SCRATCH_ALIGN boundary. The seven matrices are indices 1..4 and 6..8.
static uint64_t layer_scratch_bytes(const cllm_layer_weights *L) {
    uint64_t total = 0;
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) {
        if (i == 0 || i == 5 || cpu_in_place(&L->all[i])) continue;
        total = cllm_align_up(total, SCRATCH_ALIGN) + L->all[i].decoded_bytes;
    }
    return total;
}

// Bytes of the rows of one decode unit of `w`: a block (coded) or a row (raw).
static uint64_t unit_bytes(const cllm_weight *w) {
    uint64_t rows = w->desc.codec == CLLM_CODEC_RAW ? 1 : w->desc.rows_per_block;
    return rows * w->desc.cols * w->elem_size;
}

cllm_status cpu_layer_views_get(cpu_state *s, uint32_t l, cpu_layer_views *out) {
    if (s->mode == CLLM_WEIGHTS_RESIDENT) {
        *out = s->resident_views[l];
        return CLLM_OK;
    }
    const cllm_layer_weights *L = &s->w->layers[l];
    cllm_wview *dst[CLLM_LAYER_N_TENSORS] = {NULL,     &out->wq,   &out->wk, &out->wv, &out->wo,
                                             NULL,     &out->gate, &out->up, &out->down};
    uint64_t off = 0;
    double t0 = cllm_now_seconds();
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) {
        const cllm_weight *w = &L->all[i];
        if (!dst[i]) continue;
        if (cpu_in_place(w)) {
            *dst[i] = cpu_view(w, w->payload);
            continue;
        }
        off = cllm_align_up(off, SCRATCH_ALIGN);
        // off + decoded_bytes <= scratch_bytes: the scratch was sized by layer_scratch_bytes.
        TRY(cllm_weight_decode_rows(w, 0, w->desc.rows, s->scratch + off, (size_t)w->decoded_bytes,
                                    s->block_scratch, s->block_stride, s->n_threads));
        *dst[i] = cpu_view(w, s->scratch + off);
        off += w->decoded_bytes;
    }
    s->decode_seconds += cllm_now_seconds() - t0;
    return CLLM_OK;
}

// ---- resident mode ------------------------------------------------------------------------------

// Decodes all of `w` into a new buffer (or reads it in place) and returns its view.
static cllm_status resident_decode(cpu_state *s, const cllm_weight *w, cllm_wview *view) {
    if (cpu_in_place(w)) {
        *view = cpu_view(w, w->payload);
        return CLLM_OK;
    }
    void *buf = malloc(w->decoded_bytes ? (size_t)w->decoded_bytes : 1);
    RETURN_IF(!buf, CLLM_ERR_NOMEM, "%s: cannot allocate %llu bytes", w->name,
              (unsigned long long)w->decoded_bytes);
    s->resident_bufs[s->n_resident_bufs++] = buf;
    s->decoded_bytes += w->decoded_bytes;
    TRY(cllm_weight_decode_rows(w, 0, w->desc.rows, buf, (size_t)w->decoded_bytes, s->block_scratch,
                                s->block_stride, s->n_threads));
    *view = cpu_view(w, buf);
    return CLLM_OK;
}

static cllm_status resident_load(cpu_state *s) {
    const cllm_weights *w = s->w;
    size_t n_bufs = 2 + (size_t)CLLM_LAYER_N_TENSORS * s->cfg.n_layers;
    s->resident_bufs = calloc(n_bufs, sizeof *s->resident_bufs);
    s->resident_views = calloc(s->cfg.n_layers, sizeof *s->resident_views);
    RETURN_IF(!s->resident_bufs || !s->resident_views, CLLM_ERR_NOMEM, "resident tables");
    for (uint32_t l = 0; l < s->cfg.n_layers; l++) {
        const cllm_layer_weights *L = &w->layers[l];
        cpu_layer_views *v = &s->resident_views[l];
        TRY(resident_decode(s, &L->wq, &v->wq));
        TRY(resident_decode(s, &L->wk, &v->wk));
        TRY(resident_decode(s, &L->wv, &v->wv));
        TRY(resident_decode(s, &L->wo, &v->wo));
        TRY(resident_decode(s, &L->gate, &v->gate));
        TRY(resident_decode(s, &L->up, &v->up));
        TRY(resident_decode(s, &L->down, &v->down));
    }
    TRY(resident_decode(s, &w->embed, &s->embed_view));
    s->embed_ready = 1;
    if (w->classifier == &w->embed) {
        s->cls_view = s->embed_view;
    } else {
        TRY(resident_decode(s, w->classifier, &s->cls_view));
    }
    s->cls_ready = 1;
    return CLLM_OK;
}

// ---- buffers ------------------------------------------------------------------------------------

// calloc of n * size bytes with the product overflow-checked; adds the bytes to *total.
static void *alloc_array(size_t n, size_t size, uint64_t *total) {
    size_t bytes;
    if (cllm_mul_overflow(n, size, &bytes)) return NULL;
    *total += bytes;
    return calloc(bytes ? bytes : 1, 1);
}

static cllm_status alloc_norms(cpu_state *s) {
    const cllm_weights *w = s->w;
    uint64_t ignored = 0;
    s->norm_att = alloc_array((size_t)s->cfg.n_layers * s->dim, sizeof(float), &s->act_bytes);
    s->norm_ffn = alloc_array((size_t)s->cfg.n_layers * s->dim, sizeof(float), &s->act_bytes);
    s->norm_final = alloc_array(s->dim, sizeof(float), &ignored);
    RETURN_IF(!s->norm_att || !s->norm_ffn || !s->norm_final, CLLM_ERR_NOMEM, "norm weights");
    for (uint32_t l = 0; l < s->cfg.n_layers; l++) {
        TRY(cllm_weight_decode_f32(&w->layers[l].attn_norm, s->norm_att + l * s->dim, s->dim));
        TRY(cllm_weight_decode_f32(&w->layers[l].ffn_norm, s->norm_ffn + l * s->dim, s->dim));
    }
    return cllm_weight_decode_f32(&w->norm, s->norm_final, s->dim);
}

static cllm_status alloc_kv(cpu_state *s) {
    size_t n;
    RETURN_IF(cllm_mul_overflow((size_t)s->cfg.n_layers * s->ctx, s->kv_dim, &n) ||
                  cllm_mul_overflow(n, s->kv_esize, &n),
              CLLM_ERR_NOMEM, "KV cache size overflows");
    // calloc: pages of positions never reached are never touched.
    s->kcache = calloc(n ? n : 1, 1);
    s->vcache = calloc(n ? n : 1, 1);
    RETURN_IF(!s->kcache || !s->vcache, CLLM_ERR_NOMEM, "KV cache: 2 x %zu bytes", n);
    s->kv_bytes = 2 * (uint64_t)n;
    return CLLM_OK;
}

static cllm_status alloc_activations(cpu_state *s) {
    const size_t B = CLLM_CPU_BATCH, half = s->head_dim / 2;
    const size_t wide = s->dim > s->q_dim ? s->dim : s->q_dim;
    uint64_t *t = &s->act_bytes;
    s->x = alloc_array(B * s->dim, sizeof(float), t);
    s->xb = alloc_array(B * wide, sizeof(float), t);
    s->q = alloc_array(B * s->q_dim, sizeof(float), t);
    s->k = alloc_array(B * s->kv_dim, sizeof(float), t);
    s->v = alloc_array(B * s->kv_dim, sizeof(float), t);
    s->att = alloc_array(B * s->q_dim, sizeof(float), t);
    s->hb = alloc_array(B * s->hidden, sizeof(float), t);
    s->hb2 = alloc_array(B * s->hidden, sizeof(float), t);
    s->scores = alloc_array((size_t)s->n_threads, s->ctx * sizeof(float), t);
    s->rope_cos = alloc_array(B * half, sizeof(float), t);
    s->rope_sin = alloc_array(B * half, sizeof(float), t);
    s->freqs = alloc_array(half, sizeof(double), t);
    RETURN_IF(!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
                  !s->scores || !s->rope_cos || !s->rope_sin || !s->freqs,
              CLLM_ERR_NOMEM, "activations");
    cllm_k_rope_freqs(&s->cfg, s->freqs);
    return CLLM_OK;
}

// Stream scratch: the largest layer, and at least one decode unit of the embedding and the
// classifier (decoded unit by unit when they are not read in place).
static cllm_status alloc_scratch(cpu_state *s) {
    const cllm_weights *w = s->w;
    uint64_t need = 0;
    if (s->mode == CLLM_WEIGHTS_STREAM) {
        for (uint32_t l = 0; l < s->cfg.n_layers; l++) {
            uint64_t b = layer_scratch_bytes(&w->layers[l]);
            need = b > need ? b : need;
        }
        if (!cpu_in_place(&w->embed) && unit_bytes(&w->embed) > need) need = unit_bytes(&w->embed);
        if (!cpu_in_place(w->classifier) && unit_bytes(w->classifier) > need)
            need = unit_bytes(w->classifier);
        RETURN_IF(need > SIZE_MAX / 2, CLLM_ERR_NOMEM, "scratch of %llu bytes",
                  (unsigned long long)need);
        s->scratch_bytes = (size_t)need;
        s->scratch = aligned_alloc(SCRATCH_ALIGN, cllm_align_up(need ? need : 1, SCRATCH_ALIGN));
        RETURN_IF(!s->scratch, CLLM_ERR_NOMEM, "decode scratch of %llu bytes",
                  (unsigned long long)need);
    }
    s->block_stride = (size_t)cllm_align_up(w->max_block_scratch ? w->max_block_scratch : 1,
                                            SCRATCH_ALIGN);
    s->block_scratch = alloc_array((size_t)s->n_threads, s->block_stride, &need);
    RETURN_IF(!s->block_scratch, CLLM_ERR_NOMEM, "block scratch");
    return CLLM_OK;
}

// ---- the backend table --------------------------------------------------------------------------

static void cpu_free(void *state) {
    cpu_state *s = state;
    if (!s) return;
    for (size_t i = 0; i < s->n_resident_bufs; i++) free(s->resident_bufs[i]);
    free(s->resident_bufs);
    free(s->resident_views);
    void *bufs[] = {s->norm_att, s->norm_ffn, s->norm_final, s->scratch, s->block_scratch,
                    s->kcache,   s->vcache,   s->x,          s->xb,      s->q,
                    s->k,        s->v,        s->att,        s->hb,      s->hb2,
                    s->scores,   s->rope_cos, s->rope_sin,   s->freqs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s);
}

static void cpu_shapes(cpu_state *s, const cllm_weights *w, const cllm_engine_options *opt,
                       uint32_t context_len) {
    s->w = w;
    s->cfg = w->cfg;
    s->mode = opt->weights;
    s->kv_dtype = opt->kv_dtype;
    s->kv_esize = opt->kv_dtype == CLLM_DTYPE_F16 ? 2 : 4;
    s->n_threads = opt->n_threads;
    s->ctx = context_len;
    s->dim = w->cfg.dim;
    s->head_dim = w->cfg.head_dim;
    s->q_dim = (size_t)w->cfg.n_heads * w->cfg.head_dim;
    s->kv_dim = (size_t)w->cfg.n_kv_heads * w->cfg.head_dim;
    s->hidden = w->cfg.hidden_dim;
    s->vocab = w->cfg.vocab_size;
}

static cllm_status cpu_setup(cpu_state *s) {
    TRY(alloc_norms(s));
    TRY(alloc_scratch(s));
    TRY(alloc_kv(s));
    TRY(alloc_activations(s));
    if (s->mode == CLLM_WEIGHTS_RESIDENT) return resident_load(s);
    // Stream: tensors read in place need no decoding for their views.
    if (cpu_in_place(&s->w->embed)) {
        s->embed_view = cpu_view(&s->w->embed, s->w->embed.payload);
        s->embed_ready = 1;
    }
    if (cpu_in_place(s->w->classifier)) {
        s->cls_view = cpu_view(s->w->classifier, s->w->classifier->payload);
        s->cls_ready = 1;
    }
    return CLLM_OK;
}

static cllm_status cpu_create(const cllm_weights *w, const cllm_engine_options *opt,
                              uint32_t context_len, void **state) {
    RETURN_IF(opt->weights != CLLM_WEIGHTS_STREAM && opt->weights != CLLM_WEIGHTS_RESIDENT,
              CLLM_ERR_UNSUPPORTED, "cpu backend: weights mode '%s' (stream or resident)",
              cllm_weights_mode_name(opt->weights));
    cpu_state *s = calloc(1, sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "cpu backend state");
    double t0 = cllm_now_seconds();
    cpu_shapes(s, w, opt, context_len);
    cllm_status st = cpu_setup(s);
    if (st != CLLM_OK) {
        cpu_free(s);
        return st;
    }
    s->load_seconds = cllm_now_seconds() - t0;
    *state = s;
    return CLLM_OK;
}

static void cpu_stats(const void *state, cllm_engine_stats *out) {
    const cpu_state *s = state;
    out->backend = "cpu";
    out->weights = s->mode;
    out->decoded_bytes = s->decoded_bytes;
    out->scratch_bytes = s->scratch_bytes + (uint64_t)s->n_threads * s->block_stride;
    out->kv_bytes = s->kv_bytes;
    out->activation_bytes = s->act_bytes;
    out->n_tokens = s->n_tokens;
    out->n_forward = s->n_forward;
    out->decode_seconds = s->decode_seconds;
    out->compute_seconds = s->compute_seconds;
    out->load_seconds = s->load_seconds;
}

static const cllm_backend_ops cpu_ops = {
    .name = "cpu",
    .create = cpu_create,
    .free = cpu_free,
    .forward = cpu_forward,
    .stats = cpu_stats,
};

const cllm_backend_ops *cllm_backend_cpu(void) { return &cpu_ops; }
