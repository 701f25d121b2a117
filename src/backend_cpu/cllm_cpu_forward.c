// The Llama forward pass on the CPU, for a chunk of up to CLLM_CPU_BATCH tokens at consecutive
// positions. Shapes: B = tokens in the chunk, D = dim, Q = n_heads * head_dim,
// K = n_kv_heads * head_dim, H = hidden_dim, V = vocab.
//
//   x = Embed[tokens]                                          (B, D)
//   for each layer:
//     h = RMSNorm(x) * w_att
//     q, k, v = Wq h, Wk h, Wv h                                (B, Q), (B, K), (B, K)
//     q, k = RoPE(q, pos), RoPE(k, pos); cache[pos..] = k, v
//     x += Wo Attention(q, cache[0..pos+t] for token t)         (B, D)
//     h = RMSNorm(x) * w_ffn
//     x += Wdown (silu(Wgate h) * Wup h)                        (B, H) -> (B, D)
//   logits = Wcls (RMSNorm(x) * w_final)                       (B or 1, V)
#include "cllm_cpu.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

// ---- embedding -------------------------------------------------------------------------------

// Row r of the embedding into out (D floats). Stream mode decodes the block holding the row into
// the scratch (free at this point: no layer is decoded yet).
static cllm_status embed_row(cpu_state *s, int32_t token, float *out) {
    if (s->embed_ready) {
        cllm_k_row_to_f32(&s->embed_view, (uint64_t)token, out);
        return CLLM_OK;
    }
    const cllm_weight *w = &s->w->embed;
    uint64_t unit = w->desc.codec == CLLM_CODEC_RAW ? 1 : w->desc.rows_per_block;
    uint64_t r0 = (uint64_t)token / unit * unit;
    uint64_t r1 = r0 + unit < w->desc.rows ? r0 + unit : w->desc.rows;
    double t0 = cllm_now_seconds();
    TRY(cllm_weight_decode_rows(w, r0, r1, s->scratch, s->scratch_bytes, s->block_scratch,
                                s->block_stride, s->n_threads));
    s->decode_seconds += cllm_now_seconds() - t0;
    cllm_wview part = cpu_view_rows(w, s->scratch, r0, r1);
    cllm_k_row_to_f32(&part, (uint64_t)token - r0, out);
    return CLLM_OK;
}

// ---- attention -------------------------------------------------------------------------------

// Address of position p of layer l in a cache: (n_layers, ctx, K) elements.
static inline uint8_t *kv_at(const cpu_state *s, uint8_t *cache, uint32_t l, size_t p) {
    return cache + ((size_t)l * s->ctx + p) * s->kv_dim * s->kv_esize;
}

// q, k, v of every token, rotated, with k and v appended to the cache. h = s->xb (B, D).
static void qkv_rotate_store(cpu_state *s, uint32_t l, const cpu_layer_views *lv, size_t nt,
                             size_t pos) {
    const size_t D = s->dim, Q = s->q_dim, K = s->kv_dim, half = s->head_dim / 2;
    cllm_k_matmul(s->q, Q, &lv->wq, s->xb, D, nt, s->n_threads);
    cllm_k_matmul(s->k, K, &lv->wk, s->xb, D, nt, s->n_threads);
    cllm_k_matmul(s->v, K, &lv->wv, s->xb, D, nt, s->n_threads);
    for (size_t t = 0; t < nt; t++) {
        const float *c = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
        cllm_k_rope(s->q + t * Q, s->cfg.n_heads, s->head_dim, c, sn);
        cllm_k_rope(s->k + t * K, s->cfg.n_kv_heads, s->head_dim, c, sn);
        cllm_k_store_kv(kv_at(s, s->kcache, l, pos + t), s->k + t * K, K, s->kv_dtype);
        cllm_k_store_kv(kv_at(s, s->vcache, l, pos + t), s->v + t * K, K, s->kv_dtype);
    }
}

// x += Wo Attention(RoPE(Wq h), RoPE(Wk h), Wv h) with h = RMSNorm(x) * w_att.
static void attention_block(cpu_state *s, uint32_t l, const cpu_layer_views *lv, size_t nt,
                            size_t pos) {
    const size_t D = s->dim, Q = s->q_dim, hd = s->head_dim;
    const size_t n_heads = s->cfg.n_heads, group = n_heads / s->cfg.n_kv_heads;
    for (size_t t = 0; t < nt; t++)
        cllm_k_rmsnorm(s->xb + t * D, s->x + t * D, s->norm_att + l * D, D, s->cfg.norm_eps);
    qkv_rotate_store(s, l, lv, nt, pos);
    // Token t sees positions 0..pos+t (causal). Query head h reads KV head h / group (GQA).
    const int64_t n_items = (int64_t)(nt * n_heads);
    const int par = (nt * n_heads) * (pos + nt) * hd >= CLLM_K_PARALLEL_MIN_WORK;
#pragma omp parallel for schedule(static) num_threads(s->n_threads) if (par)
    for (int64_t it = 0; it < n_items; it++) {
        size_t t = (size_t)it / n_heads, h = (size_t)it % n_heads;
        size_t kv_off = (h / group) * hd * s->kv_esize;
        float *scores = s->scores + (size_t)omp_get_thread_num() * s->ctx;
        cllm_k_attention_head(s->att + t * Q + h * hd, s->q + t * Q + h * hd,
                              kv_at(s, s->kcache, l, 0) + kv_off,
                              kv_at(s, s->vcache, l, 0) + kv_off, s->kv_dtype, pos + t + 1, hd,
                              s->kv_dim, scores);
    }
    cllm_k_matmul(s->xb, D, &lv->wo, s->att, Q, nt, s->n_threads);
    for (size_t i = 0; i < nt * D; i++) s->x[i] += s->xb[i];
}

// ---- MLP -------------------------------------------------------------------------------------

// x += Wdown (silu(Wgate h) * Wup h) with h = RMSNorm(x) * w_ffn.
static void mlp_block(cpu_state *s, uint32_t l, const cpu_layer_views *lv, size_t nt) {
    const size_t D = s->dim, H = s->hidden;
    for (size_t t = 0; t < nt; t++)
        cllm_k_rmsnorm(s->xb + t * D, s->x + t * D, s->norm_ffn + l * D, D, s->cfg.norm_eps);
    cllm_k_matmul(s->hb, H, &lv->gate, s->xb, D, nt, s->n_threads);
    cllm_k_matmul(s->hb2, H, &lv->up, s->xb, D, nt, s->n_threads);
    for (size_t t = 0; t < nt; t++) cllm_k_swiglu(s->hb + t * H, s->hb2 + t * H, H);
    cllm_k_matmul(s->xb, D, &lv->down, s->hb, H, nt, s->n_threads);
    for (size_t i = 0; i < nt * D; i++) s->x[i] += s->xb[i];
}

// ---- classifier ------------------------------------------------------------------------------

// logits (n_out, V) = Wcls h for h = s->xb (n_out, D). Stream mode decodes the classifier in
// chunks of whole blocks that fit the scratch; each logit is one dot product either way.
static cllm_status classifier(cpu_state *s, size_t n_out, float *logits) {
    const size_t D = s->dim, V = s->vocab;
    if (s->cls_ready) {
        cllm_k_matmul(logits, V, &s->cls_view, s->xb, D, n_out, s->n_threads);
        return CLLM_OK;
    }
    const cllm_weight *w = s->w->classifier;
    const uint64_t row_bytes = w->desc.cols * w->elem_size;
    const uint64_t unit = w->desc.codec == CLLM_CODEC_RAW ? 1 : w->desc.rows_per_block;
    const uint64_t chunk = s->scratch_bytes / row_bytes / unit * unit;  // >= unit: see sizing
    for (uint64_t r0 = 0; r0 < w->desc.rows; r0 += chunk) {
        uint64_t r1 = r0 + chunk < w->desc.rows ? r0 + chunk : w->desc.rows;
        double t0 = cllm_now_seconds();
        TRY(cllm_weight_decode_rows(w, r0, r1, s->scratch, s->scratch_bytes, s->block_scratch,
                                    s->block_stride, s->n_threads));
        s->decode_seconds += cllm_now_seconds() - t0;
        cllm_wview part = cpu_view_rows(w, s->scratch, r0, r1);
        cllm_k_matmul(logits + r0, V, &part, s->xb, D, n_out, s->n_threads);
    }
    return CLLM_OK;
}

// ---- one chunk -------------------------------------------------------------------------------

static cllm_status forward_chunk(cpu_state *s, const int32_t *tokens, size_t nt, size_t pos,
                                 float *logits, int all_logits) {
    const size_t D = s->dim, half = s->head_dim / 2;
    for (size_t t = 0; t < nt; t++) {
        TRY(embed_row(s, tokens[t], s->x + t * D));
        cllm_k_rope_angles(s->freqs, half, pos + t, s->rope_cos + t * half,
                           s->rope_sin + t * half);
    }
    for (uint32_t l = 0; l < s->cfg.n_layers; l++) {
        cpu_layer_views lv;
        TRY(cpu_layer_views_get(s, l, &lv));  // stream: decodes layer l into the scratch
        attention_block(s, l, &lv, nt, pos);
        mlp_block(s, l, &lv, nt);
    }
    if (!logits) return CLLM_OK;
    const size_t first = all_logits ? 0 : nt - 1, n_out = nt - first;
    for (size_t t = 0; t < n_out; t++)
        cllm_k_rmsnorm(s->xb + t * D, s->x + (first + t) * D, s->norm_final, D, s->cfg.norm_eps);
    return classifier(s, n_out, logits);
}

cllm_status cpu_forward(void *state, const int32_t *tokens, size_t n, size_t pos, float *logits,
                        int all_logits) {
    cpu_state *s = state;
    double t0 = cllm_now_seconds(), dec0 = s->decode_seconds;
    cllm_status st = CLLM_OK;
    for (size_t done = 0; done < n && st == CLLM_OK;) {
        size_t nt = n - done < CLLM_CPU_BATCH ? n - done : CLLM_CPU_BATCH;
        int last = done + nt == n;
        // Logits: every chunk's rows (all_logits), or only the last token's.
        float *out = all_logits ? logits + done * s->vocab : (last ? logits : NULL);
        st = forward_chunk(s, tokens + done, nt, pos + done, out, all_logits);
        done += nt;
    }
    s->n_forward++;
    s->n_tokens += n;
    s->compute_seconds += (cllm_now_seconds() - t0) - (s->decode_seconds - dec0);
    return st;
}
