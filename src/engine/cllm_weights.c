#include "cllm_weights.h"

#include "common/cllm_half.h"
#include "format/cllm_format.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the engine reads little-endian payloads (fp32 scales, raw tensors) in place"
#endif

// ---- one tensor ---------------------------------------------------------------------------------

// Builds the decode table and the pointers into the payload of a weight whose desc and payload
// are set. The desc is untrusted here: layout and payload checks run before anything is indexed.
static cllm_status weight_prepare(cllm_weight *w) {
    const cllm_coded_desc *d = &w->desc;
    TRY(cllm_payload_layout(d, &w->layout));
    TRY(cllm_payload_check(d, w->payload, w->payload_size));
    RETURN_IF(d->dtype != CLLM_DTYPE_F32 && d->dtype != CLLM_DTYPE_F16 &&
                  d->dtype != CLLM_DTYPE_BF16,
              CLLM_ERR_UNSUPPORTED, "dtype %s: weights are f32, f16 or bf16",
              cllm_dtype_name((cllm_dtype)d->dtype));
    w->elem_size = d->codec == CLLM_CODEC_INT8 ? 1u : (uint32_t)cllm_dtype_size(d->dtype);
    w->decoded_bytes = d->rows * d->cols * w->elem_size;  // layout checked the element count
    if (d->codec == CLLM_CODEC_RAW) return CLLM_OK;
    w->block_scratch_bytes = (uint64_t)d->rows_per_block * d->cols;
    if (d->codec == CLLM_CODEC_INT8) {
        const uint8_t *sc = w->payload + w->layout.side_off;
        // Scales are read in place; a 4096-aligned payload keeps them aligned (side_off is a
        // multiple of 64), memory-built payloads are malloc-aligned.
        RETURN_IF((uintptr_t)sc % _Alignof(float) != 0, CLLM_ERR_UNSUPPORTED,
                  "int8 scales not 4-byte aligned");
        w->scales = (const float *)sc;
    }
    w->table = malloc(sizeof *w->table);
    RETURN_IF(!w->table, CLLM_ERR_NOMEM, "decode table");
    uint16_t freq[256];
    for (int s = 0; s < 256; s++) freq[s] = cllm_load_le16(w->payload + w->layout.freq_off + 2 * s);
    return cllm_rans_dec_table_init(w->table, freq, d->scale_bits);
}

// Looks up `name`, checks it has shape (rows, cols) (or (cols) when rows == 0: a 1-D vector) and
// prepares it. Errors name the tensor.
static cllm_status bind_one(cllm_weight_lookup_fn lookup, void *user, const char *name,
                            uint64_t rows, uint64_t cols, cllm_weight *w) {
    cllm_weight_src src;
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    cllm_status st = lookup(user, name, &src);
    if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", name);
    int ok = rows == 0 ? (src.ndim == 1 && src.shape[0] == cols)
                       : (src.ndim == 2 && src.shape[0] == rows && src.shape[1] == cols);
    ok = ok && src.desc.rows == (rows ? rows : 1) && src.desc.cols == cols;
    if (!ok) {
        char got[96] = "?";
        if (src.ndim == 1) snprintf(got, sizeof got, "(%llu)", (unsigned long long)src.shape[0]);
        if (src.ndim == 2)
            snprintf(got, sizeof got, "(%llu, %llu)", (unsigned long long)src.shape[0],
                     (unsigned long long)src.shape[1]);
        if (rows == 0)
            return CLLM_FAIL(CLLM_ERR_FORMAT, "tensor '%s': shape %s, the config says (%llu)", name,
                             got, (unsigned long long)cols);
        return CLLM_FAIL(CLLM_ERR_FORMAT, "tensor '%s': shape %s, the config says (%llu, %llu)",
                         name, got, (unsigned long long)rows, (unsigned long long)cols);
    }
    w->desc = src.desc;
    w->payload = src.payload;
    w->payload_size = src.payload_size;
    st = weight_prepare(w);
    if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", name);
    return CLLM_OK;
}

static void weight_release(cllm_weight *w) {
    free(w->table);
    w->table = NULL;
}

// ---- the model ----------------------------------------------------------------------------------

// Binds tensor `d` of the layout (layer l, or l < 0: a global tensor) into w.
static cllm_status bind_desc(const cllm_weights *ws, cllm_weight_lookup_fn lookup, void *user,
                             const cllm_layer_tensor_desc *d, int64_t l, cllm_weight *w) {
    char name[96];
    if (l < 0) snprintf(name, sizeof name, "%s", d->suffix);
    else snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, d->suffix);
    return bind_one(lookup, user, name, cllm_llama_dim(&ws->cfg, d->rows),
                    cllm_llama_dim(&ws->cfg, d->cols), w);
}

static cllm_status bind_layer(cllm_weights *ws, cllm_weight_lookup_fn lookup, void *user,
                              uint32_t l) {
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++)
        TRY(bind_desc(ws, lookup, user, &cllm_llama_layer_layout[i], l, &ws->layers[l].all[i]));
    return CLLM_OK;
}

// Totals over every bound tensor (the classifier counted once when tied).
static void weights_totals(cllm_weights *ws) {
    const cllm_weight *all[3] = {&ws->embed, &ws->norm,
                                 ws->cfg.tied_embeddings ? NULL : &ws->lm_head};
    for (int i = 0; i < 3; i++) {
        if (!all[i]) continue;
        ws->compressed_bytes += all[i]->payload_size;
        if (all[i]->block_scratch_bytes > ws->max_block_scratch)
            ws->max_block_scratch = all[i]->block_scratch_bytes;
    }
    for (uint32_t l = 0; l < ws->cfg.n_layers; l++) {
        const cllm_weight *lw = ws->layers[l].all;
        for (size_t i = 0; i < CLLM_LAYER_N_TENSORS; i++) {
            ws->compressed_bytes += lw[i].payload_size;
            if (lw[i].block_scratch_bytes > ws->max_block_scratch)
                ws->max_block_scratch = lw[i].block_scratch_bytes;
        }
    }
}

static cllm_status bind_all(cllm_weights *ws, cllm_weight_lookup_fn lookup, void *user) {
    const cllm_layer_tensor_desc *g = cllm_llama_global_layout;
    TRY(bind_desc(ws, lookup, user, &g[CLLM_GI_EMBED], -1, &ws->embed));
    for (uint32_t l = 0; l < ws->cfg.n_layers; l++) TRY(bind_layer(ws, lookup, user, l));
    TRY(bind_desc(ws, lookup, user, &g[CLLM_GI_NORM], -1, &ws->norm));
    if (ws->cfg.tied_embeddings) {
        ws->classifier = &ws->embed;
    } else {
        TRY(bind_desc(ws, lookup, user, &g[CLLM_GI_LM_HEAD], -1, &ws->lm_head));
        ws->classifier = &ws->lm_head;
    }
    weights_totals(ws);
    return CLLM_OK;
}

cllm_status cllm_weights_bind_lookup(const cllm_model_config *cfg, cllm_weight_lookup_fn lookup,
                                     void *user, cllm_weights **out) {
    RETURN_IF(!cfg || !lookup || !out, CLLM_ERR_ARG, "weights: NULL argument");
    *out = NULL;
    TRY(cllm_config_validate(cfg));
    RETURN_IF(cfg->arch != CLLM_ARCH_LLAMA, CLLM_ERR_UNSUPPORTED, "architecture %u", cfg->arch);
    RETURN_IF(cfg->head_dim % 2 != 0, CLLM_ERR_UNSUPPORTED, "odd head_dim %u (RoPE rotates pairs)",
              cfg->head_dim);
    cllm_weights *ws = calloc(1, sizeof *ws);
    RETURN_IF(!ws, CLLM_ERR_NOMEM, "weights");
    ws->cfg = *cfg;
    ws->layers = calloc(cfg->n_layers, sizeof *ws->layers);
    if (!ws->layers) {
        free(ws);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "weights: %u layers", cfg->n_layers);
    }
    cllm_status st = bind_all(ws, lookup, user);
    if (st != CLLM_OK) {
        cllm_weights_free(ws);
        return st;
    }
    *out = ws;
    return CLLM_OK;
}

// Lookup over a container: its table entry, coded description and payload.
static cllm_status container_lookup(void *user, const char *name, cllm_weight_src *out) {
    const cllm_container *c = user;
    int64_t i = cllm_container_find(c, name);
    RETURN_IF(i < 0, CLLM_ERR_FORMAT, "missing from the container");
    cllm_tensor_info info;
    TRY(cllm_container_tensor(c, (size_t)i, &info));
    const cllm_coded_desc *d = cllm_container_desc(c, (size_t)i);
    RETURN_IF(!d, CLLM_ERR_INTERNAL, "no coded description");
    out->ndim = info.ndim;
    memcpy(out->shape, info.shape, sizeof out->shape);
    out->desc = *d;
    out->payload = cllm_container_payload(c, (size_t)i);
    out->payload_size = info.data_size;
    return CLLM_OK;
}

cllm_status cllm_weights_bind(const cllm_container *c, cllm_weights **out) {
    RETURN_IF(!c || !out, CLLM_ERR_ARG, "weights: NULL argument");
    RETURN_IF(cllm_container_is_archive(c), CLLM_ERR_UNSUPPORTED,
              "%s is a packed safetensors archive, not a model: use codecllm unpack",
              cllm_container_label(c));
    cllm_status st = cllm_weights_bind_lookup(cllm_container_config(c), container_lookup,
                                              (void *)c, out);
    if (st != CLLM_OK) return cllm_error_context(st, "%s", cllm_container_label(c));
    return CLLM_OK;
}

void cllm_weights_free(cllm_weights *ws) {
    if (!ws) return;
    weight_release(&ws->embed);
    weight_release(&ws->norm);
    weight_release(&ws->lm_head);
    if (ws->layers) {
        for (uint32_t l = 0; l < ws->cfg.n_layers; l++) {
            cllm_weight *lw = ws->layers[l].all;
            for (size_t i = 0; i < CLLM_LAYER_N_TENSORS; i++) weight_release(&lw[i]);
        }
    }
    free(ws->layers);
    free(ws);
}

uint32_t cllm_weight_decoded_kind(const cllm_weight *w) {
    return w->desc.codec == CLLM_CODEC_INT8 ? 3u : w->desc.dtype;
}

// ---- decoding -----------------------------------------------------------------------------------

cllm_status cllm_weight_decode_rows(const cllm_weight *w, uint64_t row_begin, uint64_t row_end,
                                    void *dst, size_t dst_cap, uint8_t *block_scratch,
                                    size_t block_scratch_stride, int n_threads) {
    const cllm_coded_desc *d = &w->desc;
    RETURN_IF(row_begin > row_end || row_end > d->rows, CLLM_ERR_ARG, "%s: rows [%llu, %llu)",
              w->name, (unsigned long long)row_begin, (unsigned long long)row_end);
    const uint64_t row_bytes = d->cols * w->elem_size;
    RETURN_IF(dst_cap < (row_end - row_begin) * row_bytes, CLLM_ERR_ARG,
              "%s: destination too small", w->name);
    if (d->codec == CLLM_CODEC_RAW) {
        memcpy(dst, w->payload + row_begin * row_bytes,
               (size_t)((row_end - row_begin) * row_bytes));
        return CLLM_OK;
    }
    const uint64_t rpb = d->rows_per_block;
    RETURN_IF(row_begin % rpb != 0 || (row_end % rpb != 0 && row_end != d->rows), CLLM_ERR_ARG,
              "%s: rows [%llu, %llu) not block-aligned", w->name, (unsigned long long)row_begin,
              (unsigned long long)row_end);
    RETURN_IF(block_scratch_stride < w->block_scratch_bytes, CLLM_ERR_ARG, "%s: block scratch",
              w->name);
    const int64_t b0 = (int64_t)(row_begin / rpb), b1 = (int64_t)((row_end + rpb - 1) / rpb);
    // cllm_decode_blocks writes block b at its offset in the whole tensor: hand it the address the
    // tensor's first element would have so that row_begin lands on dst (computed on integers;
    // only in-range addresses are ever dereferenced).
    void *base = (void *)((uintptr_t)dst - (uintptr_t)(row_begin * row_bytes));
    cllm_par_error err = {CLLM_OK, {0}};
    if (n_threads < 1) n_threads = 1;
    // Small ranges stay on this thread: waking a team costs more than decoding a few blocks.
    const int par = n_threads > 1 && b1 - b0 > 1 && (row_end - row_begin) * d->cols >= (1u << 20);
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (par)
    for (int64_t b = b0; b < b1; b++) {
        if (cllm_par_error_failed(&err)) continue;
        uint8_t *scratch = block_scratch + (size_t)omp_get_thread_num() * block_scratch_stride;
        cllm_status st = cllm_decode_blocks(d, w->table, w->payload, w->payload_size,
                                            (uint64_t)b, (uint64_t)b + 1, base, scratch);
        if (st != CLLM_OK) cllm_par_error_set(&err, st);
    }
    RETURN_IF(err.st != CLLM_OK, err.st, "%s: %s", w->name, err.msg);
    return CLLM_OK;
}

cllm_status cllm_weight_decode_f32(const cllm_weight *w, float *dst, size_t n) {
    RETURN_IF(n != w->desc.rows * w->desc.cols, CLLM_ERR_ARG, "%s: %zu values wanted", w->name, n);
    uint8_t *tmp = malloc(w->decoded_bytes ? (size_t)w->decoded_bytes : 1);
    uint8_t *scratch = malloc(w->block_scratch_bytes ? (size_t)w->block_scratch_bytes : 1);
    cllm_status st = CLLM_OK;
    if (!tmp || !scratch)
        st = CLLM_FAIL(CLLM_ERR_NOMEM, "%s: %llu bytes", w->name,
                       (unsigned long long)w->decoded_bytes);
    if (st == CLLM_OK)
        st = cllm_weight_decode_rows(w, 0, w->desc.rows, tmp, (size_t)w->decoded_bytes, scratch,
                                     (size_t)w->block_scratch_bytes, 1);
    for (size_t i = 0; st == CLLM_OK && i < n; i++) {
        switch (cllm_weight_decoded_kind(w)) {
        case CLLM_DTYPE_F32: memcpy(&dst[i], tmp + 4 * i, 4); break;
        case CLLM_DTYPE_F16: dst[i] = cllm_f16_to_f32(cllm_load_le16(tmp + 2 * i)); break;
        case CLLM_DTYPE_BF16: dst[i] = cllm_bf16_to_f32(cllm_load_le16(tmp + 2 * i)); break;
        default: {
            uint64_t g = (i % w->desc.cols) / w->desc.group_size;
            uint64_t r = i / w->desc.cols;
            dst[i] = (float)(int8_t)tmp[i] * w->scales[r * w->layout.groups_per_row + g];
        }
        }
    }
    free(tmp);
    free(scratch);
    return st;
}
