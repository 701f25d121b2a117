// The Llama forward pass, written once, over a backend's ops and weight provider. Shapes: T =
// tokens in the chunk, D = dim, Q = n_heads * head_dim, K = n_kv_heads * head_dim,
// H = hidden_dim, V = vocab.
//
//   x = Embed[tokens]                                          (T, D)
//   for each layer:
//     h = RMSNorm(x) * w_att
//     q, k, v = Wq h, Wk h, Wv h                                (T, Q), (T, K), (T, K)
//     q, k = RoPE(q, pos), RoPE(k, pos); cache[pos..] = k, v
//     x += Wo Attention(q, cache[0..pos+t] for token t)         (T, D)
//     h = RMSNorm(x) * w_ffn
//     x += Wdown (silu(Wgate h) * Wup h)                        (T, H) -> (T, D)
//   logits = Wcls (RMSNorm(x) * w_final)                       (T or 1, V)
#include "cllm_forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cllm_forward {
    const cllm_backend_ops *ops;
    void *be;
    const cllm_provider_ops *pv;
    void *prov;
    cllm_weights_mode mode;
    cllm_model_config cfg;
    size_t ctx, B, D, Q, K, H, V;      // B: tokens per step (the backend's batch)
    uint32_t n_slots;                  // sequences the KV cache holds
    cllm_dtype kv_dtype;
    size_t kv_esize;
    uint8_t *kcache, *vcache;          // (n_layers, n_slots, ctx, K) elements of kv_dtype each
    float *x;                          // (T, D) residual stream
    float *xb;                         // (T, max(D, Q)) normalised input / block output
    float *q, *k, *v;                  // (T, Q), (T, K), (T, K)
    float *att;                        // (T, Q) attention output before Wo
    float *hb, *hb2;                   // (T, H) gate and up projections
    float *logits_be;                  // (T, V) in backend memory; NULL when ops->read is NULL
    uint32_t *pos, *slot, *out_tok;    // (T) host: a step's positions, slots, logits rows
    uint32_t *rows;                    // (T) host: embedding rows
    cllm_layer_view lv;                // the acquired group's matrices and the layer's norms
    int64_t held_layer;                // layer and group acquired; -1: none
    int held_group;
    uint64_t kv_bytes, act_bytes;
    uint64_t n_tokens, n_forward;
    double compute_seconds, load_seconds;
};

// ---- the blocks -------------------------------------------------------------------------------

static cllm_kv_layer kv_layer(const cllm_forward *f, uint32_t l) {
    const size_t off = (size_t)l * f->n_slots * f->ctx * f->K * f->kv_esize;
    cllm_kv_layer kv = {f->kcache + off, f->vcache + off, f->kv_dtype, f->ctx, f->n_slots};
    return kv;
}

// x (T, D) = the tokens' embedding rows: the whole table in one call when the provider hands it
// out at once, else a row at a time (announced first, so that the provider can ready them in one
// go).
static cllm_status embed_tokens(cllm_forward *f, const int32_t *tokens, size_t nt) {
    cllm_wview tab;
    if (f->pv->max_rows(f->prov, CLLM_GLOBAL_EMBED) >= f->V) {
        for (size_t t = 0; t < nt; t++) f->rows[t] = (uint32_t)tokens[t];
        TRY(f->pv->acquire_rows(f->prov, CLLM_GLOBAL_EMBED, 0, f->V, &tab));
        cllm_status st = f->ops->embed(f->be, f->x, &tab, f->rows, nt);
        f->pv->release_rows(f->prov, CLLM_GLOBAL_EMBED);
        return st;
    }
    if (f->pv->prepare_rows) {
        for (size_t t = 0; t < nt; t++) f->rows[t] = (uint32_t)tokens[t];
        TRY(f->pv->prepare_rows(f->prov, CLLM_GLOBAL_EMBED, f->rows, nt));
    }
    for (size_t t = 0; t < nt; t++) {
        const uint64_t r = (uint64_t)tokens[t];
        const uint32_t zero = 0;
        TRY(f->pv->acquire_rows(f->prov, CLLM_GLOBAL_EMBED, r, r + 1, &tab));
        cllm_status st = f->ops->embed(f->be, f->x + t * f->D, &tab, &zero, 1);
        f->pv->release_rows(f->prov, CLLM_GLOBAL_EMBED);
        TRY(st);
    }
    return CLLM_OK;
}

static void release_held(cllm_forward *f) {
    if (f->held_layer < 0) return;
    f->pv->release_group(f->prov, (uint32_t)f->held_layer, f->held_group);
    f->held_layer = -1;
}

// The group a norm is acquired with when none of its layer is held: the group of the matrices
// that read its output (q/k/v after the attention norm, gate/up after the MLP norm).
static int norm_group(cllm_layer_tensor t) {
    return cllm_llama_layer_layout[t == CLLM_LT_ATTN_NORM ? CLLM_LT_WQ : CLLM_LT_GATE].group;
}

// The view of tensor t of layer l: acquires its decode group (releasing the one held) unless
// that group is held already. Norms come with every group.
static cllm_status need(cllm_forward *f, uint32_t l, cllm_layer_tensor t, const cllm_wview **v) {
    int g = cllm_llama_layer_layout[t].group;
    if (g < 0) g = f->held_layer == (int64_t)l ? f->held_group : norm_group(t);
    if (f->held_layer != (int64_t)l || f->held_group != g) {
        release_held(f);
        TRY(f->pv->acquire_group(f->prov, l, g, &f->lv));
        f->held_layer = l;
        f->held_group = g;
    }
    *v = &f->lv.t[t];
    return CLLM_OK;
}

// Matrix t was the last of its decode group to be used (the layout's matrix order is the use
// order): the group goes back at once, so that a provider decoding ahead (the GPU's scratch ring)
// may reuse its memory while attention or SwiGLU run, not only at the next group's acquire.
static void done_with(cllm_forward *f, cllm_layer_tensor t) {
    const int g = cllm_llama_layer_layout[t].group;
    if (g >= 0 && cllm_layout_matrix_tensor(cllm_layout_group_first(g + 1) - 1) == (int)t)
        release_held(f);
}

// out (T, rows of W) = W x for tensor t of layer l.
static cllm_status mm(cllm_forward *f, uint32_t l, cllm_layer_tensor t, float *out, size_t ldo,
                      const float *x, size_t ldx, size_t nt) {
    const cllm_wview *w;
    TRY(need(f, l, t, &w));
    TRY(f->ops->matmul(f->be, out, ldo, w, x, ldx, nt));
    done_with(f, t);
    return CLLM_OK;
}

static cllm_status norm(cllm_forward *f, uint32_t l, cllm_layer_tensor t, size_t nt) {
    const cllm_wview *w;
    TRY(need(f, l, t, &w));
    return f->ops->rmsnorm(f->be, f->xb, f->x, w, nt, f->D, f->cfg.norm_eps);
}

// x += W in for `in` (T, W.cols) of row pitch ldin: the fused op, or W in into xb, then the add.
static cllm_status residual(cllm_forward *f, uint32_t l, cllm_layer_tensor t, const float *in,
                            size_t ldin, size_t nt) {
    if (f->ops->matmul_add) {
        const cllm_wview *w;
        TRY(need(f, l, t, &w));
        TRY(f->ops->matmul_add(f->be, f->x, w, in, nt));
        done_with(f, t);
        return CLLM_OK;
    }
    TRY(mm(f, l, t, f->xb, f->D, in, ldin, nt));
    return f->ops->add(f->be, f->x, f->xb, nt * f->D);
}

// x += Wo Attention(RoPE(Wq h), RoPE(Wk h), Wv h) with h = RMSNorm(x) * w_att.
static cllm_status attention_block(cllm_forward *f, uint32_t l, const cllm_step *sp) {
    const cllm_backend_ops *o = f->ops;
    const size_t nt = sp->n_tok;
    const size_t D = f->D, Q = f->Q, K = f->K;
    const cllm_kv_layer kv = kv_layer(f, l);
    TRY(norm(f, l, CLLM_LT_ATTN_NORM, nt));
    const cllm_layer_tensor_desc *lay = cllm_llama_layer_layout;
    if (o->matmul_multi && lay[CLLM_LT_WQ].group == lay[CLLM_LT_WK].group &&
        lay[CLLM_LT_WK].group == lay[CLLM_LT_WV].group) {  // one group: views held together
        const cllm_wview *w[3];
        TRY(need(f, l, CLLM_LT_WQ, &w[0]));
        TRY(need(f, l, CLLM_LT_WK, &w[1]));
        TRY(need(f, l, CLLM_LT_WV, &w[2]));
        float *const out[3] = {f->q, f->k, f->v};
        TRY(o->matmul_multi(f->be, out, w, 3, f->xb, nt));
        done_with(f, CLLM_LT_WV);
    } else {
        TRY(mm(f, l, CLLM_LT_WQ, f->q, Q, f->xb, D, nt));
        TRY(mm(f, l, CLLM_LT_WK, f->k, K, f->xb, D, nt));
        TRY(mm(f, l, CLLM_LT_WV, f->v, K, f->xb, D, nt));
    }
    TRY(o->rope_kv(f->be, f->q, f->k, f->v, &kv, sp));
    TRY(o->attention(f->be, f->att, f->q, &kv, sp));
    return residual(f, l, CLLM_LT_WO, f->att, Q, nt);
}

// x += Wdown (silu(Wgate h) * Wup h) with h = RMSNorm(x) * w_ffn. The fused gate/up op runs
// when the backend has one and both matrices are in one decode group.
static cllm_status mlp_block(cllm_forward *f, uint32_t l, size_t nt) {
    const cllm_backend_ops *o = f->ops;
    const size_t D = f->D, H = f->H;
    TRY(norm(f, l, CLLM_LT_FFN_NORM, nt));
    const cllm_layer_tensor_desc *lay = cllm_llama_layer_layout;
    if (o->gate_up_swiglu && lay[CLLM_LT_GATE].group == lay[CLLM_LT_UP].group) {
        const cllm_wview *gate, *up;
        TRY(need(f, l, CLLM_LT_GATE, &gate));
        TRY(need(f, l, CLLM_LT_UP, &up));
        TRY(o->gate_up_swiglu(f->be, f->hb, f->hb2, gate, up, f->xb, nt));
        done_with(f, CLLM_LT_UP);
    } else {
        TRY(mm(f, l, CLLM_LT_GATE, f->hb, H, f->xb, D, nt));
        TRY(mm(f, l, CLLM_LT_UP, f->hb2, H, f->xb, D, nt));
        TRY(o->swiglu(f->be, f->hb, f->hb2, nt * H));
    }
    return residual(f, l, CLLM_LT_DOWN, f->hb, H, nt);
}

static cllm_status layer(cllm_forward *f, uint32_t l, const cllm_step *sp) {
    cllm_status st = attention_block(f, l, sp);
    if (st == CLLM_OK) st = mlp_block(f, l, sp->n_tok);
    release_held(f);
    return st;
}

// logits (n_out, V) = Wcls (RMSNorm(x[out_tok[i]]) * w_final), the classifier in row ranges the
// provider can hand out at once (each logit is one dot product either way). The normed rows are
// gathered into xb by runs of consecutive tokens.
static cllm_status classifier(cllm_forward *f, const cllm_step *sp, float *logits) {
    const size_t D = f->D, V = f->V, n_out = sp->n_out;
    cllm_wview norm;
    TRY(f->pv->acquire_rows(f->prov, CLLM_GLOBAL_NORM, 0, 1, &norm));
    cllm_status st = CLLM_OK;
    for (size_t i = 0; i < n_out && st == CLLM_OK;) {
        size_t run = 1;
        while (i + run < n_out && sp->out_tok[i + run] == sp->out_tok[i] + run) run++;
        st = f->ops->rmsnorm(f->be, f->xb + i * D, f->x + (size_t)sp->out_tok[i] * D, &norm, run,
                             D, f->cfg.norm_eps);
        i += run;
    }
    f->pv->release_rows(f->prov, CLLM_GLOBAL_NORM);
    TRY(st);
    const uint64_t chunk = f->pv->max_rows(f->prov, CLLM_GLOBAL_CLASSIFIER);
    for (uint64_t r0 = 0; r0 < V; r0 += chunk) {
        const uint64_t r1 = r0 + chunk < V ? r0 + chunk : V;
        cllm_wview part;
        TRY(f->pv->acquire_rows(f->prov, CLLM_GLOBAL_CLASSIFIER, r0, r1, &part));
        st = f->ops->matmul(f->be, logits + r0, V, &part, f->xb, D, n_out);
        f->pv->release_rows(f->prov, CLLM_GLOBAL_CLASSIFIER);
        TRY(st);
    }
    return CLLM_OK;
}

// The part of a step a backend may capture and replay (cllm_backend_ops.step).
typedef struct step_body {
    cllm_forward *f;
    const cllm_step *sp;
    float *logits;  // (n_out, V): backend memory, or the caller's buffer when ops->read is NULL
} step_body;

static cllm_status run_body(void *arg) {
    const step_body *b = arg;
    for (uint32_t l = 0; l < b->f->cfg.n_layers; l++) TRY(layer(b->f, l, b->sp));
    return b->sp->n_out ? classifier(b->f, b->sp, b->logits) : CLLM_OK;
}

static double provider_decode_seconds(const cllm_forward *f) {
    cllm_engine_stats s;
    memset(&s, 0, sizeof s);
    f->pv->stats(f->prov, &s);
    return s.decode_seconds;
}

// One step (checked by the caller: n_tok <= CLLM_ENGINE_BATCH, slots, positions, token ids).
static cllm_status forward_step(cllm_forward *f, const int32_t *tokens, const cllm_step *sp,
                                float *logits) {
    TRY(embed_tokens(f, tokens, sp->n_tok));
    step_body b = {f, sp, f->ops->read ? f->logits_be : logits};
    TRY(f->ops->step ? f->ops->step(f->be, sp, run_body, &b) : run_body(&b));
    if (!f->ops->read || !sp->n_out) return CLLM_OK;
    return f->ops->read(f->be, logits, f->logits_be, sp->n_out * f->V * sizeof(float));
}

cllm_status cllm_forward_step(cllm_forward *f, const int32_t *tokens, const cllm_step *sp,
                              float *logits) {
    double t0 = cllm_now_seconds(), dec0 = provider_decode_seconds(f);
    cllm_status st = forward_step(f, tokens, sp, logits);
    f->n_forward++;
    f->n_tokens += sp->n_tok;
    f->compute_seconds += (cllm_now_seconds() - t0) - (provider_decode_seconds(f) - dec0);
    return st;
}

cllm_status cllm_forward_run(cllm_forward *f, uint32_t slot, const int32_t *tokens, size_t n,
                             size_t pos, float *logits, int all_logits) {
    double t0 = cllm_now_seconds(), dec0 = provider_decode_seconds(f);
    cllm_status st = CLLM_OK;
    for (size_t done = 0; done < n && st == CLLM_OK;) {
        const size_t nt = n - done < f->B ? n - done : f->B;
        const int last = done + nt == n;
        for (size_t t = 0; t < nt; t++) {
            f->pos[t] = (uint32_t)(pos + done + t);
            f->slot[t] = slot;
            f->out_tok[t] = (uint32_t)t;
        }
        // Logits: every chunk's rows (all_logits), or only the last token's.
        cllm_step sp = {nt, f->pos, f->slot, (uint32_t)(pos + done + nt), 0, f->out_tok};
        float *out = NULL;
        if (all_logits) {
            sp.n_out = nt;
            out = logits + done * f->V;
        } else if (last) {
            sp.n_out = 1;
            sp.out_tok = f->out_tok + nt - 1;
            out = logits;
        }
        st = forward_step(f, tokens + done, &sp, out);
        done += nt;
    }
    f->n_forward++;
    f->n_tokens += n;
    f->compute_seconds += (cllm_now_seconds() - t0) - (provider_decode_seconds(f) - dec0);
    return st;
}

// ---- setup ------------------------------------------------------------------------------------

// n * size bytes of backend memory, the product overflow-checked; adds the bytes to *total.
static void *be_array(cllm_forward *f, size_t n, size_t size, uint64_t *total) {
    size_t bytes;
    if (cllm_mul_overflow(n, size, &bytes)) return NULL;
    *total += bytes;
    return f->ops->alloc(f->be, bytes);
}

static cllm_status alloc_buffers(cllm_forward *f) {
    const size_t B = f->B, wide = f->D > f->Q ? f->D : f->Q;
    size_t kv_elems;
    RETURN_IF(cllm_mul_overflow((size_t)f->cfg.n_layers * f->n_slots, f->ctx, &kv_elems) ||
                  cllm_mul_overflow(kv_elems, f->K, &kv_elems),
              CLLM_ERR_NOMEM, "KV cache size overflows");
    f->kcache = be_array(f, kv_elems, f->kv_esize, &f->kv_bytes);
    f->vcache = be_array(f, kv_elems, f->kv_esize, &f->kv_bytes);
    RETURN_IF(!f->kcache || !f->vcache, CLLM_ERR_NOMEM, "KV cache: 2 x %zu elements", kv_elems);
    uint64_t *t = &f->act_bytes;
    f->x = be_array(f, B * f->D, sizeof(float), t);
    f->xb = be_array(f, B * wide, sizeof(float), t);
    f->q = be_array(f, B * f->Q, sizeof(float), t);
    f->k = be_array(f, B * f->K, sizeof(float), t);
    f->v = be_array(f, B * f->K, sizeof(float), t);
    f->att = be_array(f, B * f->Q, sizeof(float), t);
    f->hb = be_array(f, B * f->H, sizeof(float), t);
    f->hb2 = be_array(f, B * f->H, sizeof(float), t);
    if (f->ops->read) f->logits_be = be_array(f, B * f->V, sizeof(float), t);
    RETURN_IF(!f->x || !f->xb || !f->q || !f->k || !f->v || !f->att || !f->hb || !f->hb2 ||
                  (f->ops->read && !f->logits_be),
              CLLM_ERR_NOMEM, "activations");
    f->pos = calloc(B, sizeof *f->pos);
    f->slot = calloc(B, sizeof *f->slot);
    f->out_tok = calloc(B, sizeof *f->out_tok);
    f->rows = calloc(B, sizeof *f->rows);
    RETURN_IF(!f->pos || !f->slot || !f->out_tok || !f->rows, CLLM_ERR_NOMEM, "step arrays");
    return CLLM_OK;
}

static void shapes(cllm_forward *f, const cllm_weights *w, const cllm_engine_options *opt,
                   uint32_t ctx) {
    const cllm_model_config *c = &w->cfg;
    f->cfg = *c;
    f->mode = opt->weights;
    f->ctx = ctx;
    f->D = c->dim;
    f->Q = (size_t)c->n_heads * c->head_dim;
    f->K = (size_t)c->n_kv_heads * c->head_dim;
    f->H = c->hidden_dim;
    f->V = c->vocab_size;
    f->n_slots = opt->n_seq ? opt->n_seq : 1;
    f->B = f->ops->batch > CLLM_ENGINE_BATCH ? f->ops->batch : CLLM_ENGINE_BATCH;
    f->kv_dtype = opt->kv_dtype;
    f->kv_esize = cllm_dtype_size(opt->kv_dtype);
}

cllm_status cllm_forward_create(const cllm_backend_ops *ops, const cllm_weights *w,
                                const cllm_engine_options *opt, uint32_t ctx, cllm_forward **out) {
    *out = NULL;
    const cllm_provider_ops *pv = ops->provider(opt->weights);
    if (!pv) {  // name the modes this backend has
        char modes[96] = "";
        for (int m = 0; strcmp(cllm_weights_mode_name((cllm_weights_mode)m), "?") != 0; m++)
            if (ops->provider((cllm_weights_mode)m))  // every mode the names table knows
                snprintf(modes + strlen(modes), sizeof modes - strlen(modes), "%s%s",
                         modes[0] ? ", " : "", cllm_weights_mode_name((cllm_weights_mode)m));
        return CLLM_FAIL(CLLM_ERR_UNSUPPORTED,
                         "the %s backend has no weights mode '%s' (it has: %s)", ops->name,
                         cllm_weights_mode_name(opt->weights), modes);
    }
    cllm_forward *f = calloc(1, sizeof *f);
    RETURN_IF(!f, CLLM_ERR_NOMEM, "forward state");
    double t0 = cllm_now_seconds();
    f->ops = ops;
    f->pv = pv;
    f->held_layer = -1;
    shapes(f, w, opt, ctx);
    cllm_status st = ops->create(&w->cfg, opt, ctx, &f->be);
    if (st == CLLM_OK) st = pv->create(f->be, w, &f->prov);
    if (st == CLLM_OK) st = alloc_buffers(f);
    if (st != CLLM_OK) {
        cllm_forward_free(f);
        return st;
    }
    f->load_seconds = cllm_now_seconds() - t0;
    *out = f;
    return CLLM_OK;
}

void cllm_forward_free(cllm_forward *f) {
    if (!f) return;
    if (f->be) {
        void *bufs[] = {f->kcache, f->vcache, f->x,   f->xb,  f->q,        f->k,
                        f->v,      f->att,    f->hb,  f->hb2, f->logits_be};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) f->ops->release(f->be, bufs[i]);
        if (f->prov) f->pv->free(f->prov);
        f->ops->free(f->be);
    }
    free(f->pos);
    free(f->slot);
    free(f->out_tok);
    free(f->rows);
    free(f);
}

void cllm_forward_stats(const cllm_forward *f, cllm_engine_stats *out) {
    out->weights = f->mode;
    out->kv_bytes = f->kv_bytes;
    out->activation_bytes = f->act_bytes;
    f->ops->stats(f->be, out);
    f->pv->stats(f->prov, out);
    out->n_tokens = f->n_tokens;
    out->n_forward = f->n_forward;
    out->compute_seconds = f->compute_seconds;
    out->load_seconds = f->load_seconds;
}
