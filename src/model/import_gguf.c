// GGUF files (llama.cpp): config from `<arch>.*` metadata, tensors bound by their GGUF names,
// the tokenizer synthesised from `tokenizer.ggml.*` into a bundle.
//
// Name map (GGUF dims are reversed: a (rows, cols) matrix has ne = {cols, rows}):
//   token_embd -> model.embed_tokens        blk.N.attn_norm -> input_layernorm
//   blk.N.attn_q/k/v/output -> self_attn.q/k/v/o_proj
//   blk.N.ffn_norm -> post_attention_layernorm   blk.N.ffn_gate/up/down -> mlp.*_proj
//   output_norm -> model.norm                output -> lm_head (absent: tied embeddings)
// Llama 3.1-style RoPE scaling (rope_freqs.weight) is recognised and stored as its parameters.
// RoPE: llama.cpp's converter stores llama/mistral q/k rows permuted back to the adjacent-pair
// convention the engine uses (read as stored); qwen2 keeps Hugging Face's rotate-half rows
// (llama.cpp runs it with NEOX RoPE), undone here as for HF checkpoints.
// F32/F16/BF16 tensors keep their dtype; quantized ones are dequantized to F32 when read.
#include "cllm_bundle.h"
#include "cllm_model.h"
#include "gguf.h"
#include "gguf_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { GG_LLAMA, GG_MISTRAL, GG_QWEN2 } gg_family;

typedef struct gg_ctx {
    cllm_source *s;
    const char *path;
    cllm_gguf *g;
    const char *arch;      // general.architecture (NUL-terminated copy in archbuf)
    char archbuf[32];
    gg_family fam;
    uint8_t *used;         // (g->n_tensors) 1: bound to a canonical entry
} gg_ctx;

// ---- config -------------------------------------------------------------------------------------

static cllm_status gg_arch(gg_ctx *x) {
    const char *s = NULL;
    size_t len = 0;
    TRY(cllm_gguf_get_str(x->g, "general.architecture", &s, &len));
    static const struct {
        const char *name;
        gg_family fam;
    } known[] = {{"llama", GG_LLAMA}, {"mistral", GG_MISTRAL}, {"qwen2", GG_QWEN2}};
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        if (len == strlen(known[k].name) && memcmp(s, known[k].name, len) == 0) {
            x->fam = known[k].fam;
            snprintf(x->archbuf, sizeof x->archbuf, "%s", known[k].name);
            x->arch = x->archbuf;
            return CLLM_OK;
        }
    }
    return CLLM_FAIL(CLLM_ERR_UNSUPPORTED,
                     "architecture '%.*s' is not supported (llama, mistral, qwen2 are)",
                     len > 64 ? 64 : (int)len, s);
}

// `<arch>.<suffix>` as a u32; absent: `def` unless `required`.
static cllm_status gg_u32(gg_ctx *x, const char *suffix, int required, uint32_t def,
                          uint32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", x->arch, suffix);
    if (!required && !cllm_gguf_find(x->g, key)) {
        *out = def;
        return CLLM_OK;
    }
    return cllm_gguf_get_u32(x->g, key, out);
}

static cllm_status gg_f32(gg_ctx *x, const char *suffix, int required, float def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", x->arch, suffix);
    if (!required && !cllm_gguf_find(x->g, key)) {
        *out = def;
        return CLLM_OK;
    }
    return cllm_gguf_get_f32(x->g, key, out);
}

static cllm_status gg_token_id(gg_ctx *x, const char *key, int32_t *out) {
    *out = -1;
    if (!cllm_gguf_find(x->g, key)) return CLLM_OK;
    uint32_t v = 0;
    TRY(cllm_gguf_get_u32(x->g, key, &v));
    RETURN_IF(v >= x->s->cfg.vocab_size, CLLM_ERR_FORMAT,
              "GGUF key '%s' = %u is outside the vocabulary of %u tokens", key, v,
              x->s->cfg.vocab_size);
    *out = (int32_t)v;
    return CLLM_OK;
}

// Llama 3.1-style RoPE scaling as llama.cpp stores it: rope_freqs.weight holds, per frequency
// pair i, the divisor its converter derived from (factor, low_freq_factor, high_freq_factor,
// original context). The engine takes the parameters, so they are recovered: factor = the largest
// divisor, low 1, high 4 and the original context from `rope.scaling.original_context_length`
// (default 8192) as every Llama 3.1/3.2 model has them, and every divisor must then match.
static double llama3_divisor(const cllm_model_config *c, size_t i) {
    const double two_pi = 6.283185307179586476925;
    double f = pow((double)c->rope_theta, -(double)(2 * i) / (double)c->head_dim);
    double orig = c->rope_original_context, wavelen = two_pi / f;
    if (wavelen < orig / c->rope_high_freq_factor) return 1.0;
    if (wavelen > orig / c->rope_low_freq_factor) return c->rope_factor;
    double smooth = (orig / wavelen - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return 1.0 / ((1.0 - smooth) / c->rope_factor + smooth);
}

static cllm_status gg_rope_check(gg_ctx *x, const float *v, size_t n) {
    cllm_model_config *c = &x->s->cfg;
    float factor = 1.0f;
    for (size_t i = 0; i < n; i++) {
        RETURN_IF(!(isfinite(v[i]) && v[i] >= 1.0f && v[i] <= 1024.0f), CLLM_ERR_UNSUPPORTED,
                  "tensor 'rope_freqs.weight': value %zu = %g is not a Llama 3 divisor", i,
                  (double)v[i]);
        if (v[i] > factor) factor = v[i];
    }
    if (factor == 1.0f) return CLLM_OK; // no scaling at all
    c->rope_scaling = CLLM_ROPE_SCALING_LLAMA3;
    c->rope_factor = factor;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    TRY(gg_u32(x, "rope.scaling.original_context_length", 0, 8192, &c->rope_original_context));
    for (size_t i = 0; i < n; i++) {
        double want = llama3_divisor(c, i);
        RETURN_IF(fabs(v[i] / want - 1.0) > 1e-3, CLLM_ERR_UNSUPPORTED,
                  "tensor 'rope_freqs.weight': value %zu = %g, but Llama 3 scaling (factor %g, "
                  "low 1, high 4, original context %u) gives %g: these per-frequency RoPE "
                  "factors are not supported", i, (double)v[i], (double)factor,
                  c->rope_original_context, want);
    }
    return CLLM_OK;
}

static cllm_status gg_rope_freqs(gg_ctx *x, const cllm_gguf_tensor *t, int fd) {
    size_t n = x->s->cfg.head_dim / 2;
    RETURN_IF(t->type != CLLM_GGML_F32 || t->n_elements != n, CLLM_ERR_FORMAT,
              "tensor 'rope_freqs.weight': expected %zu F32 values (head_dim / 2)", n);
    x->used[t - x->g->tensors] = 1;
    float *v = malloc(n * sizeof *v);
    RETURN_IF(!v, CLLM_ERR_NOMEM, "out of memory");
    uint8_t *raw = (uint8_t *)v;
    cllm_status st = cllm_pread_full(fd, raw, n * 4, t->offset, x->path);
    for (size_t i = 0; st == CLLM_OK && i < n; i++) { // little-endian in the file
        uint32_t bits = cllm_load_le32(raw + 4 * i);
        memcpy(&v[i], &bits, 4);
    }
    if (st == CLLM_OK) st = gg_rope_check(x, v, n);
    free(v);
    return st;
}

// RoPE variants the engine does not run are refused: scaling types other than none (or llama3,
// via rope_freqs.weight), partial rotary embeddings.
static cllm_status gg_rope(gg_ctx *x, int fd) {
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", x->arch);
    if (cllm_gguf_find(x->g, key)) {
        const char *s = NULL;
        size_t len = 0;
        TRY(cllm_gguf_get_str(x->g, key, &s, &len));
        RETURN_IF(!(len == 4 && memcmp(s, "none", 4) == 0), CLLM_ERR_UNSUPPORTED,
                  "GGUF key '%s' = '%.*s': RoPE scaling is not supported", key,
                  len > 32 ? 32 : (int)len, s);
    }
    uint32_t rot = 0;
    TRY(gg_u32(x, "rope.dimension_count", 0, x->s->cfg.head_dim, &rot));
    RETURN_IF(rot != x->s->cfg.head_dim, CLLM_ERR_UNSUPPORTED,
              "%s.rope.dimension_count = %u: partial rotary embeddings (head_dim %u) are not "
              "supported", x->arch, rot, x->s->cfg.head_dim);
    const cllm_gguf_tensor *t = cllm_gguf_find_tensor(x->g, "rope_freqs.weight");
    return t ? gg_rope_freqs(x, t, fd) : CLLM_OK;
}

// Vocabulary size: the rows of token_embd.weight (the token list may be shorter, never longer).
static cllm_status gg_vocab(gg_ctx *x, uint32_t *vocab) {
    const cllm_gguf_tensor *t = cllm_gguf_find_tensor(x->g, "token_embd.weight");
    RETURN_IF(!t, CLLM_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    RETURN_IF(t->n_dims != 2 || t->ne[1] > UINT32_MAX, CLLM_ERR_FORMAT,
              "tensor 'token_embd.weight': not a matrix of at most 2^32 rows");
    *vocab = (uint32_t)t->ne[1];
    uint32_t meta = 0;
    TRY(gg_u32(x, "vocab_size", 0, *vocab, &meta));
    RETURN_IF(meta != *vocab, CLLM_ERR_FORMAT,
              "%s.vocab_size = %u differs from the %u rows of token_embd.weight", x->arch, meta,
              *vocab);
    const cllm_gguf_kv *tokens = cllm_gguf_find(x->g, "tokenizer.ggml.tokens");
    RETURN_IF(tokens && tokens->n > *vocab, CLLM_ERR_FORMAT,
              "tokenizer.ggml.tokens has %llu tokens, token_embd.weight only %u rows",
              (unsigned long long)tokens->n, *vocab);
    return CLLM_OK;
}

static cllm_status gg_config(gg_ctx *x, int fd) {
    cllm_model_config *c = &x->s->cfg;
    memset(c, 0, sizeof *c);
    c->arch = CLLM_ARCH_LLAMA;
    TRY(gg_u32(x, "embedding_length", 1, 0, &c->dim));
    TRY(gg_u32(x, "feed_forward_length", 1, 0, &c->hidden_dim));
    TRY(gg_u32(x, "block_count", 1, 0, &c->n_layers));
    TRY(gg_u32(x, "attention.head_count", 1, 0, &c->n_heads));
    TRY(gg_u32(x, "attention.head_count_kv", 0, c->n_heads, &c->n_kv_heads));
    TRY(gg_u32(x, "context_length", 1, 0, &c->context_len));
    TRY(gg_f32(x, "rope.freq_base", 0, 10000.0f, &c->rope_theta));
    TRY(gg_f32(x, "attention.layer_norm_rms_epsilon", 1, 0, &c->norm_eps));
    RETURN_IF(c->n_heads == 0 || c->dim % c->n_heads, CLLM_ERR_FORMAT,
              "%s.attention.head_count = %u does not divide embedding_length = %u", x->arch,
              c->n_heads, c->dim);
    c->head_dim = c->dim / c->n_heads;
    uint32_t kl = 0, vl = 0;
    TRY(gg_u32(x, "attention.key_length", 0, c->head_dim, &kl));
    TRY(gg_u32(x, "attention.value_length", 0, c->head_dim, &vl));
    RETURN_IF(kl != c->head_dim || vl != c->head_dim, CLLM_ERR_UNSUPPORTED,
              "%s.attention.key_length/value_length = %u/%u: only embedding_length / head_count "
              "= %u is supported", x->arch, kl, vl, c->head_dim);
    TRY(gg_vocab(x, &c->vocab_size));
    c->tied_embeddings = cllm_gguf_find_tensor(x->g, "output.weight") ? 0 : 1;
    TRY(gg_token_id(x, "tokenizer.ggml.bos_token_id", &c->bos_id));
    TRY(gg_token_id(x, "tokenizer.ggml.eos_token_id", &c->eos_id));
    TRY(gg_rope(x, fd));
    return cllm_config_validate(c);
}

// ---- tensors ------------------------------------------------------------------------------------

// The GGUF name of canonical tensor i (the layout table's gguf column).
static void gguf_name(const cllm_model_config *c, size_t i, char *buf, size_t cap) {
    size_t per_layer = (size_t)CLLM_LAYER_N_TENSORS * c->n_layers;
    if (i == 0) snprintf(buf, cap, "%s", cllm_llama_global_layout[CLLM_GI_EMBED].gguf);
    else if (i == per_layer + 1)
        snprintf(buf, cap, "%s", cllm_llama_global_layout[CLLM_GI_NORM].gguf);
    else if (i == per_layer + 2)
        snprintf(buf, cap, "%s", cllm_llama_global_layout[CLLM_GI_LM_HEAD].gguf);
    else snprintf(buf, cap, "blk.%zu.%s", (i - 1) / CLLM_LAYER_N_TENSORS,
                  cllm_llama_layer_layout[(i - 1) % CLLM_LAYER_N_TENSORS].gguf);
}

static cllm_status gg_check_shape(const cllm_gguf_tensor *t, const cllm_src_entry *e) {
    // GGUF ne = {cols, rows}; trailing dimensions of 1 are tolerated.
    uint64_t want[CLLM_GGUF_MAX_DIMS] = {1, 1, 1, 1};
    if (e->ndim == 2) want[0] = e->shape[1], want[1] = e->shape[0];
    else want[0] = e->shape[0];
    int same = 1;
    for (uint32_t d = 0; d < CLLM_GGUF_MAX_DIMS; d++) same = same && t->ne[d] == want[d];
    RETURN_IF(!same, CLLM_ERR_FORMAT,
              "tensor '%s': ne = [%llu, %llu, %llu, %llu], the config implies [%llu, %llu]",
              t->name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
              (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
              (unsigned long long)want[0], (unsigned long long)want[1]);
    return CLLM_OK;
}

static cllm_status gg_bind(gg_ctx *x, size_t i, uint32_t file) {
    cllm_src_entry *e = &x->s->tensors[i];
    char name[64];
    gguf_name(&x->s->cfg, i, name, sizeof name);
    const cllm_gguf_tensor *t = cllm_gguf_find_tensor(x->g, name);
    RETURN_IF(!t, CLLM_ERR_FORMAT, "tensor '%s' is missing", name);
    x->used[t - x->g->tensors] = 1;
    TRY(gg_check_shape(t, e));
    e->file = file;
    e->offset = t->offset;
    e->size = t->size;
    switch (t->type) {
    case CLLM_GGML_F32: e->dtype = CLLM_DTYPE_F32; break;
    case CLLM_GGML_F16: e->dtype = CLLM_DTYPE_F16; break;
    case CLLM_GGML_BF16: e->dtype = CLLM_DTYPE_BF16; break;
    default:
        RETURN_IF(!cllm_ggml_can_dequantize(t->type), CLLM_ERR_UNSUPPORTED,
                  "tensor '%s': ggml type %s (%u) is not supported", name,
                  cllm_ggml_type_name(t->type), t->type);
        e->dtype = CLLM_DTYPE_F32;
        e->ggml_type = t->type;
        e->stored_size = t->size;
        e->size = t->n_elements * 4; // n_elements < 2^63 / 4 for any tensor inside the file
        RETURN_IF(t->n_elements > UINT64_MAX / 4, CLLM_ERR_FORMAT, "tensor '%s' is too large",
                  name);
    }
    cllm_tensor_spec sp;
    cllm_llama_tensor_spec(&x->s->cfg, i, &sp);
    if (x->fam == GG_QWEN2 && sp.role == CLLM_ROLE_WQ) e->permute_heads = x->s->cfg.n_heads;
    if (x->fam == GG_QWEN2 && sp.role == CLLM_ROLE_WK) e->permute_heads = x->s->cfg.n_kv_heads;
    return CLLM_OK;
}

// Every GGUF tensor must have been bound: biases and unknown tensors are refused by name.
static cllm_status gg_check_extra(gg_ctx *x) {
    for (size_t k = 0; k < x->g->n_tensors; k++) {
        if (x->used[k]) continue;
        const char *n = x->g->tensors[k].name;
        size_t len = strlen(n);
        RETURN_IF(len > 5 && strcmp(n + len - 5, ".bias") == 0, CLLM_ERR_UNSUPPORTED,
                  "tensor '%s': biases are not supported", n);
        return CLLM_FAIL(CLLM_ERR_FORMAT, "tensor '%s' is not part of the %s layout", n, x->arch);
    }
    return CLLM_OK;
}

// {"format": "gguf", "tensor_types": {type: count}, "dequantized": bool}
static json_t *gg_source_json(const gg_ctx *x) {
    json_t *src = json_object(), *types = json_object();
    int deq = 0;
    if (!src || !types) {
        json_decref(src);
        json_decref(types);
        return NULL;
    }
    for (size_t k = 0; k < x->g->n_tensors; k++) {
        const char *tn = cllm_ggml_type_name(x->g->tensors[k].type); // known: the reader checked
        if (!tn) tn = "unknown";
        json_t *v = json_object_get(types, tn);
        json_object_set_new(types, tn, json_integer(v ? json_integer_value(v) + 1 : 1));
    }
    for (size_t i = 0; i < x->s->n_tensors; i++) deq = deq || x->s->tensors[i].ggml_type != 0;
    json_object_set_new(src, "format", json_string("gguf"));
    json_object_set_new(src, "tensor_types", types);
    json_object_set_new(src, "dequantized", json_boolean(deq));
    return src;
}

static cllm_status gg_import(gg_ctx *x) {
    uint32_t file = 0;
    uint64_t size = 0;
    TRY(cllm_source_add_file(x->s, x->path, &file, &size));
    TRY(cllm_gguf_read(x->s->files[file].fd, x->path, size, &x->g));
    TRY(gg_arch(x));
    x->used = calloc(x->g->n_tensors ? x->g->n_tensors : 1, 1);
    RETURN_IF(!x->used, CLLM_ERR_NOMEM, "out of memory");
    TRY(gg_config(x, x->s->files[file].fd));
    TRY(cllm_source_alloc_tensors(x->s));
    for (size_t i = 0; i < x->s->n_tensors; i++) TRY(gg_bind(x, i, file));
    TRY(gg_check_extra(x));
    if (!cllm_gguf_find(x->g, "tokenizer.ggml.model")) return CLLM_OK; // no tokenizer stored
    cllm_status st = cllm_bundle_from_gguf(x->g, gg_source_json(x), &x->s->tok, &x->s->tok_size);
    if (st != CLLM_OK) return cllm_error_context(st, "tokenizer");
    x->s->tok_kind = CLLM_TOKENIZER_BUNDLE;
    return CLLM_OK;
}

cllm_status cllm_import_gguf(cllm_source *s, const char *path) {
    gg_ctx x = {.s = s, .path = path};
    cllm_status st = gg_import(&x);
    int parsed = x.g != NULL;
    cllm_gguf_free(x.g);
    free(x.used);
    // Until the header is parsed, the messages already name the file.
    if (st != CLLM_OK && parsed) return cllm_error_context(st, "%s", path);
    return st;
}
