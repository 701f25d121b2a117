// llama2.c checkpoints: the legacy layout (run.c) and the "ak42" version 1 export.
//
// Legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
// vocab_size means a separate classifier), then float32 arrays: token embedding (vocab, dim),
// rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim),
// rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
// two unused RoPE tables of seq_len * head_dim / 2 floats each, [wcls (vocab, dim)].
// Version 1: u32 magic "ak42", i32 version = 1, the 7 int32 (vocab positive), u8 shared
// classifier, zeros up to 256 bytes; then float32: rms_att (all layers), rms_ffn, rms_final,
// embedding, wq, wk, wv, wo, w1, w2, w3, [wcls].
// Both store q/k rows in the engine's RoPE convention already (no permutation).
#include "cllm_model.h"

#include <stdlib.h>
#include <string.h>

#define L2C_MAGIC 0x616b3432u
#define L2C_V1_HEADER 256u
#define L2C_ROPE_TABLES (-1) // a pseudo role: the legacy RoPE tables, skipped

// Elements of one layer's slice (or of the whole array for unlayered roles).
static uint64_t l2c_elems(const cllm_model_config *c, int role) {
    uint64_t dim = c->dim, kv = (uint64_t)c->n_kv_heads * c->head_dim;
    switch (role) {
    case CLLM_ROLE_EMBED:
    case CLLM_ROLE_LM_HEAD: return (uint64_t)c->vocab_size * dim;
    case CLLM_ROLE_ATTN_NORM:
    case CLLM_ROLE_FFN_NORM:
    case CLLM_ROLE_NORM: return dim;
    case CLLM_ROLE_WQ:
    case CLLM_ROLE_WO: return dim * dim;
    case CLLM_ROLE_WK:
    case CLLM_ROLE_WV: return kv * dim;
    case CLLM_ROLE_GATE:
    case CLLM_ROLE_UP:
    case CLLM_ROLE_DOWN: return (uint64_t)c->hidden_dim * dim;
    default: return (uint64_t)c->context_len * c->head_dim;  // both RoPE tables
    }
}

static int l2c_layered(int role) {
    return role != CLLM_ROLE_EMBED && role != CLLM_ROLE_LM_HEAD && role != CLLM_ROLE_NORM &&
           role != L2C_ROPE_TABLES;
}

static const int legacy_order[] = {
    CLLM_ROLE_EMBED, CLLM_ROLE_ATTN_NORM, CLLM_ROLE_WQ,   CLLM_ROLE_WK,   CLLM_ROLE_WV,
    CLLM_ROLE_WO,    CLLM_ROLE_FFN_NORM,  CLLM_ROLE_GATE, CLLM_ROLE_DOWN, CLLM_ROLE_UP,
    CLLM_ROLE_NORM,  L2C_ROPE_TABLES,     CLLM_ROLE_LM_HEAD};
static const int v1_order[] = {
    CLLM_ROLE_ATTN_NORM, CLLM_ROLE_FFN_NORM, CLLM_ROLE_NORM, CLLM_ROLE_EMBED, CLLM_ROLE_WQ,
    CLLM_ROLE_WK,        CLLM_ROLE_WV,       CLLM_ROLE_WO,   CLLM_ROLE_GATE,  CLLM_ROLE_DOWN,
    CLLM_ROLE_UP,        CLLM_ROLE_LM_HEAD};

// Walks the arrays in file order: base[role] gets each array's file offset, *end the end of the
// last. Dimensions were bounded by cllm_config_validate, but the sums are still checked.
static cllm_status l2c_layout(const cllm_model_config *c, const int *order, size_t n,
                              uint64_t header, uint64_t base[CLLM_ROLE_LM_HEAD + 1],
                              uint64_t *end) {
    uint64_t pos = header;
    for (size_t k = 0; k < n; k++) {
        int role = order[k];
        if (role == CLLM_ROLE_LM_HEAD && c->tied_embeddings) continue;
        uint64_t count = l2c_elems(c, role), bytes;
        if (l2c_layered(role)) RETURN_IF(cllm_mul_overflow_u64(count, c->n_layers, &count),
                                         CLLM_ERR_FORMAT, "weights size overflows");
        RETURN_IF(cllm_mul_overflow_u64(count, 4, &bytes) ||
                      cllm_add_overflow_u64(pos, bytes, &pos),
                  CLLM_ERR_FORMAT, "weights size overflows");
        if (role >= 0) base[role] = pos - bytes;
    }
    *end = pos;
    return CLLM_OK;
}

static int32_t l2c_i32(const uint8_t *p) { return (int32_t)cllm_load_le32(p); }

// The 7 parameters shared by both headers. Legacy files (`legacy`) mark an untied classifier
// with a negative vocab_size.
static cllm_status l2c_params(const uint8_t *p, int legacy, cllm_model_config *c) {
    static const char *names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                   "n_kv_heads", "vocab_size", "seq_len"};
    int32_t v[7];
    for (int k = 0; k < 7; k++) v[k] = l2c_i32(p + 4 * k);
    int untied = legacy && v[5] < 0 && v[5] != INT32_MIN;
    if (untied) v[5] = -v[5];
    for (int k = 0; k < 7; k++)
        RETURN_IF(v[k] <= 0, CLLM_ERR_FORMAT, "header field %s = %d must be positive", names[k],
                  v[k]);
    memset(c, 0, sizeof *c);
    c->arch = CLLM_ARCH_LLAMA;
    c->dim = (uint32_t)v[0];
    c->hidden_dim = (uint32_t)v[1];
    c->n_layers = (uint32_t)v[2];
    c->n_heads = (uint32_t)v[3];
    c->n_kv_heads = (uint32_t)v[4];
    c->vocab_size = (uint32_t)v[5];
    c->context_len = (uint32_t)v[6];
    c->head_dim = c->dim / c->n_heads;
    c->tied_embeddings = untied ? 0 : 1;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_scaling = CLLM_ROPE_SCALING_NONE;
    c->bos_id = c->vocab_size > 1 ? 1 : -1;
    c->eos_id = c->vocab_size > 2 ? 2 : -1;
    return cllm_config_validate(c);
}

static cllm_status l2c_header(cllm_source *s, const char *path, uint64_t size, int *legacy) {
    uint8_t h[L2C_V1_HEADER];
    RETURN_IF(size < 28, CLLM_ERR_FORMAT, "file of %llu bytes is too short for a llama2.c header",
              (unsigned long long)size);
    size_t want = size < L2C_V1_HEADER ? 28 : L2C_V1_HEADER;
    TRY(cllm_pread_full(s->files[0].fd, h, want, 0, path));
    *legacy = cllm_load_le32(h) != L2C_MAGIC;
    // A legacy header has no magic: any file parses as one. Say what a misfit most likely is.
    RETURN_IF(!memcmp(h, "GGUF", 4), CLLM_ERR_FORMAT,
              "a GGUF file, not a llama2.c checkpoint (convert reads llama2.c .bin files and "
              "Hugging Face directories)");
    if (*legacy) {
        cllm_status st = l2c_params(h, 1, &s->cfg);
        if (st != CLLM_OK)
            return cllm_error_context(st, "not a llama2.c checkpoint (no 'ak42' magic, and as a "
                                          "legacy header its first 28 bytes describe no model)");
        return CLLM_OK;
    }
    RETURN_IF(want < L2C_V1_HEADER, CLLM_ERR_FORMAT, "'ak42' header truncated (%llu bytes)",
              (unsigned long long)size);
    int32_t version = l2c_i32(h + 4);
    RETURN_IF(version == 2, CLLM_ERR_UNSUPPORTED,
              "'ak42' version 2 (int8 Q8_0 export) is not supported; export version 1 (float32)");
    RETURN_IF(version != 1, CLLM_ERR_UNSUPPORTED, "'ak42' version %d is not supported", version);
    TRY(l2c_params(h + 8, 0, &s->cfg));
    uint8_t shared = h[36];
    RETURN_IF(shared > 1, CLLM_ERR_FORMAT, "header field shared_classifier = %u must be 0 or 1",
              shared);
    s->cfg.tied_embeddings = shared;
    for (size_t k = 37; k < L2C_V1_HEADER; k++)
        RETURN_IF(h[k] != 0, CLLM_ERR_FORMAT, "header padding byte %zu is not zero", k);
    return CLLM_OK;
}

static cllm_status l2c_import(cllm_source *s, const char *path) {
    uint32_t fi;
    uint64_t size;
    TRY(cllm_source_add_file(s, path, &fi, &size));
    int legacy = 1;
    TRY(l2c_header(s, path, size, &legacy));
    uint64_t base[CLLM_ROLE_LM_HEAD + 1] = {0}, end = 0;
    if (legacy)
        TRY(l2c_layout(&s->cfg, legacy_order, sizeof legacy_order / sizeof(int), 28, base, &end));
    else
        TRY(l2c_layout(&s->cfg, v1_order, sizeof v1_order / sizeof(int), L2C_V1_HEADER, base,
                       &end));
    RETURN_IF(end != size, CLLM_ERR_CORRUPT,
              "not a llama2.c checkpoint, or a damaged one: the file is %llu bytes but its %s "
              "header implies %llu (dim %u, hidden %u, %u layers, "
              "vocab %u, %s classifier)",
              (unsigned long long)size, legacy ? "legacy" : "'ak42' v1", (unsigned long long)end,
              s->cfg.dim, s->cfg.hidden_dim, s->cfg.n_layers, s->cfg.vocab_size,
              s->cfg.tied_embeddings ? "shared" : "separate");
    TRY(cllm_source_alloc_tensors(s));
    for (size_t i = 0; i < s->n_tensors; i++) {
        cllm_tensor_spec sp;
        cllm_llama_tensor_spec(&s->cfg, i, &sp);
        cllm_src_entry *e = &s->tensors[i];
        uint64_t bytes = 4 * l2c_elems(&s->cfg, (int)sp.role);
        e->dtype = CLLM_DTYPE_F32;
        e->file = fi;
        e->size = bytes;
        e->offset = base[sp.role] + (sp.layer > 0 ? (uint64_t)sp.layer * bytes : 0);
    }
    return CLLM_OK;
}

cllm_status cllm_import_llama2c(cllm_source *s, const char *path) {
    cllm_status st = l2c_import(s, path);
    if (st != CLLM_OK) cllm_error_context(st, "%s", path);
    return st;
}
