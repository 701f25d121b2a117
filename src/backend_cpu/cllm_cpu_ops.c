// The CPU op table: the reference kernels (src/ref) over host memory, split over OpenMP threads
// where the work is large enough. Every output is computed in the reference's fixed order, so
// results do not depend on the thread count or on how the engine chunks a sequence.
#include "cllm_cpu.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// calloc of n * size bytes with the product overflow-checked; adds the bytes to *total.
static void *alloc_array(size_t n, size_t size, uint64_t *total) {
    size_t bytes;
    if (cllm_mul_overflow(n, size, &bytes)) return NULL;
    *total += bytes;
    return calloc(bytes ? bytes : 1, 1);
}

static void cpu_free(void *state) {
    cpu_state *s = state;
    if (!s) return;
    free(s->scores);
    free(s->freqs);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->angles_pos);
    free(s);
}

static cllm_status cpu_create(const cllm_model_config *cfg, const cllm_engine_options *opt,
                              uint32_t ctx, void **state) {
    cpu_state *s = calloc(1, sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "cpu backend state");
    s->cfg = *cfg;
    s->n_threads = opt->n_threads;
    s->ctx = ctx;
    s->q_dim = (size_t)cfg->n_heads * cfg->head_dim;
    s->kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim;
    const size_t half = cfg->head_dim / 2;
    s->scores = alloc_array((size_t)s->n_threads, s->ctx * sizeof(float), &s->act_bytes);
    s->freqs = alloc_array(half, sizeof(double), &s->act_bytes);
    s->rope_cos = alloc_array(CLLM_ENGINE_BATCH * half, sizeof(float), &s->act_bytes);
    s->rope_sin = alloc_array(CLLM_ENGINE_BATCH * half, sizeof(float), &s->act_bytes);
    s->angles_pos = alloc_array(CLLM_ENGINE_BATCH, sizeof(uint32_t), &s->act_bytes);
    if (!s->scores || !s->freqs || !s->rope_cos || !s->rope_sin || !s->angles_pos) {
        cpu_free(s);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "cpu backend scratch");
    }
    cllm_k_rope_freqs(cfg, s->freqs);
    *state = s;
    return CLLM_OK;
}

static void *cpu_alloc(void *state, size_t bytes) {
    (void)state;
    return calloc(bytes ? bytes : 1, 1);  // calloc: KV pages never reached are never touched
}

static void cpu_release(void *state, void *p) {
    (void)state;
    free(p);
}

static cllm_status cpu_embed(void *state, float *x, const cllm_wview *table, const uint32_t *rows,
                             size_t n) {
    (void)state;
    for (size_t t = 0; t < n; t++) cllm_k_row_to_f32(table, rows[t], x + t * table->cols);
    return CLLM_OK;
}

static cllm_status cpu_rmsnorm(void *state, float *out, const float *x, const cllm_wview *w,
                               size_t n_tok, size_t dim, float eps) {
    (void)state;
    for (size_t t = 0; t < n_tok; t++)
        cllm_k_rmsnorm(out + t * dim, x + t * dim, w->data, dim, eps);
    return CLLM_OK;
}

static cllm_status cpu_matmul(void *state, float *out, size_t ldo, const cllm_wview *w,
                              const float *x, size_t ldx, size_t n_tok) {
    const cpu_state *s = state;
    cllm_k_matmul(out, ldo, w, x, ldx, n_tok, s->n_threads);
    return CLLM_OK;
}

// Address of position p of slot `slot` in a layer's cache `base` of (n_slots, ctx, K) elements.
static inline uint8_t *kv_row(const cpu_state *s, const cllm_kv_layer *kv, void *base,
                              uint32_t slot, size_t p) {
    return (uint8_t *)base + ((size_t)slot * kv->ctx + p) * s->kv_dim * cllm_dtype_size(kv->dtype);
}

// Fills rope_cos/sin rows with the step's angles unless they hold them already (every layer of a
// step has the same positions).
static void step_angles(cpu_state *s, const cllm_step *st) {
    const size_t half = s->cfg.head_dim / 2;
    int same = s->angles_n == st->n_tok;
    for (size_t t = 0; same && t < st->n_tok; t++) same = s->angles_pos[t] == st->pos[t];
    if (same) return;
    for (size_t t = 0; t < st->n_tok; t++) {
        cllm_k_rope_angles(s->freqs, half, st->pos[t], s->rope_cos + t * half,
                           s->rope_sin + t * half);
        s->angles_pos[t] = st->pos[t];
    }
    s->angles_n = st->n_tok;
}

static cllm_status cpu_rope_kv(void *state, float *q, float *k, const float *v,
                               const cllm_kv_layer *kv, const cllm_step *st) {
    cpu_state *s = state;
    const size_t Q = s->q_dim, K = s->kv_dim, hd = s->cfg.head_dim, half = hd / 2;
    step_angles(s, st);
    for (size_t t = 0; t < st->n_tok; t++) {
        const float *c = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
        cllm_k_rope(q + t * Q, s->cfg.n_heads, hd, c, sn);
        cllm_k_rope(k + t * K, s->cfg.n_kv_heads, hd, c, sn);
        cllm_k_store_kv(kv_row(s, kv, kv->k, st->slot[t], st->pos[t]), k + t * K, K, kv->dtype);
        cllm_k_store_kv(kv_row(s, kv, kv->v, st->slot[t], st->pos[t]), v + t * K, K, kv->dtype);
    }
    return CLLM_OK;
}

static cllm_status cpu_attention(void *state, float *out, const float *q,
                                 const cllm_kv_layer *kv, const cllm_step *st) {
    cpu_state *s = state;
    const size_t Q = s->q_dim, hd = s->cfg.head_dim, n_heads = s->cfg.n_heads;
    const size_t group = n_heads / s->cfg.n_kv_heads;
    const size_t esize = cllm_dtype_size(kv->dtype);
    const size_t n_tok = st->n_tok;
    const int64_t n_items = (int64_t)(n_tok * n_heads);
    const int par = (n_tok * n_heads) * st->max_pos * hd >= CLLM_K_PARALLEL_MIN_WORK;
#pragma omp parallel for schedule(static) num_threads(s->n_threads) if (par)
    for (int64_t it = 0; it < n_items; it++) {
        size_t t = (size_t)it / n_heads, h = (size_t)it % n_heads;
        size_t kv_off = (h / group) * hd * esize;
        float *scores = s->scores + (size_t)omp_get_thread_num() * s->ctx;
        cllm_k_attention_head(out + t * Q + h * hd, q + t * Q + h * hd,
                              kv_row(s, kv, kv->k, st->slot[t], 0) + kv_off,
                              kv_row(s, kv, kv->v, st->slot[t], 0) + kv_off, kv->dtype,
                              (size_t)st->pos[t] + 1, hd, s->kv_dim, scores);
    }
    return CLLM_OK;
}

static cllm_status cpu_swiglu(void *state, float *gate, const float *up, size_t n) {
    (void)state;
    cllm_k_swiglu(gate, up, n);
    return CLLM_OK;
}

static cllm_status cpu_add(void *state, float *x, const float *y, size_t n) {
    (void)state;
    for (size_t i = 0; i < n; i++) x[i] += y[i];
    return CLLM_OK;
}

// Both projections of a row in one pass over h, then SwiGLU: the same dot products and the same
// silu(g) * u as the fallback, so the same bits.
static cllm_status cpu_gate_up_swiglu(void *state, float *gate, float *up, const cllm_wview *wg,
                                      const cllm_wview *wu, const float *h, size_t n_tok) {
    const cpu_state *s = state;
    const size_t H = wg->rows, D = wg->cols;
    const int64_t rows = (int64_t)H;
    const int par = s->n_threads > 1 && 2 * H * D * n_tok >= CLLM_K_PARALLEL_MIN_WORK;
#pragma omp parallel for schedule(static) num_threads(s->n_threads) if (par)
    for (int64_t r = 0; r < rows; r++)
        for (size_t t = 0; t < n_tok; t++) {
            size_t o = t * H + (size_t)r;
            gate[o] = cllm_k_dot_row(wg, (uint64_t)r, h + t * D);
            up[o] = cllm_k_dot_row(wu, (uint64_t)r, h + t * D);
            cllm_k_swiglu(gate + o, up + o, 1);
        }
    return CLLM_OK;
}

static void cpu_stats(const void *state, cllm_engine_stats *out) {
    const cpu_state *s = state;
    out->backend = "cpu";
    out->activation_bytes += s->act_bytes;
}

static const cllm_backend_ops cpu_ops = {
    .name = "cpu",
    .create = cpu_create,
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .provider = cpu_provider,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope_kv = cpu_rope_kv,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .gate_up_swiglu = cpu_gate_up_swiglu,
    .stats = cpu_stats,
};

const cllm_backend_ops *cllm_backend_cpu(void) { return &cpu_ops; }
