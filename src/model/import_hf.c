// Hugging Face directories: config.json + model.safetensors (or model.safetensors.index.json and
// its shards) + optional tokenizer.json. Every field of config.json and every safetensors header
// is untrusted; errors name the file, the tensor and the field.
#include "cllm_bundle.h"
#include "cllm_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HF_MAX_CONFIG ((size_t)16 << 20)
#define HF_MAX_INDEX ((size_t)64 << 20)
#define HF_MAX_SHARDS 4096

typedef struct hf_shard {
    char *name;         // file name inside the directory
    uint32_t file;      // index into cllm_source.files
    cllm_st_header hdr;
} hf_shard;

typedef struct hf_ctx {
    cllm_source *s;
    const char *dir;
    char path[4096];    // scratch for joined paths (names the file in errors)
    hf_shard *shards;
    size_t n_shards;
    json_t *weight_map; // borrowed from the index JSON (NULL for a single file)
} hf_ctx;

static cllm_status hf_join(hf_ctx *x, const char *name) {
    int n = snprintf(x->path, sizeof x->path, "%s/%s", x->dir, name);
    RETURN_IF(n < 0 || (size_t)n >= sizeof x->path, CLLM_ERR_ARG, "path %s/%s is too long", x->dir,
              name);
    return CLLM_OK;
}

static cllm_status hf_load_json(const char *path, size_t max, json_t **out) {
    uint8_t *data = NULL;
    size_t size = 0;
    TRY(cllm_read_file(path, max, &data, &size));
    json_error_t jerr;
    *out = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    free(data);
    RETURN_IF(!*out, CLLM_ERR_FORMAT, "%s: invalid JSON: %s (line %d, column %d)", path, jerr.text,
              jerr.line, jerr.column);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return CLLM_FAIL(CLLM_ERR_FORMAT, "%s: top level is not an object", path);
    }
    return CLLM_OK;
}

// ---- config.json -------------------------------------------------------------------------------

// An unsigned 32-bit field; a missing or null field takes `def` unless `required`.
static cllm_status hf_u32(json_t *root, const char *field, int required, uint32_t def,
                          uint32_t *out) {
    json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v)) {
        RETURN_IF(required, CLLM_ERR_FORMAT, "field %s is missing", field);
        *out = def;
        return CLLM_OK;
    }
    RETURN_IF(!json_is_integer(v), CLLM_ERR_FORMAT, "field %s is not an integer", field);
    json_int_t i = json_integer_value(v);
    RETURN_IF(i < 0 || i > (json_int_t)UINT32_MAX, CLLM_ERR_FORMAT,
              "field %s = %lld is out of range", field, (long long)i);
    *out = (uint32_t)i;
    return CLLM_OK;
}

static cllm_status hf_float(json_t *obj, const char *field, int required, float def, float *out) {
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        RETURN_IF(required, CLLM_ERR_FORMAT, "field %s is missing", field);
        *out = def;
        return CLLM_OK;
    }
    RETURN_IF(!json_is_number(v), CLLM_ERR_FORMAT, "field %s is not a number", field);
    double d = json_number_value(v);
    RETURN_IF(!isfinite(d) || fabs(d) > 1e30, CLLM_ERR_FORMAT, "field %s = %g is out of range",
              field, d);
    *out = (float)d;
    return CLLM_OK;
}

// bos_token_id / eos_token_id: an integer, a list of integers (the first is taken), or null.
static cllm_status hf_token_id(json_t *root, const char *field, int32_t *out) {
    json_t *v = json_object_get(root, field);
    *out = -1;
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return CLLM_OK;
    RETURN_IF(!json_is_integer(v) || json_integer_value(v) < 0 ||
                  json_integer_value(v) > INT32_MAX,
              CLLM_ERR_FORMAT, "field %s is not a valid token id", field);
    *out = (int32_t)json_integer_value(v);
    return CLLM_OK;
}

typedef enum { HF_LLAMA, HF_MISTRAL, HF_QWEN2 } hf_family;

static cllm_status hf_family_of(json_t *root, hf_family *fam) {
    static const struct {
        const char *arch, *type;
        hf_family fam;
    } known[] = {{"LlamaForCausalLM", "llama", HF_LLAMA},
                 {"MistralForCausalLM", "mistral", HF_MISTRAL},
                 {"Qwen2ForCausalLM", "qwen2", HF_QWEN2}};
    const char *arch = json_string_value(json_array_get(json_object_get(root, "architectures"), 0));
    const char *type = json_string_value(json_object_get(root, "model_type"));
    RETURN_IF(!arch && !type, CLLM_ERR_FORMAT, "neither architectures nor model_type is given");
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        if ((arch && strcmp(arch, known[k].arch) == 0) ||
            (!arch && strcmp(type, known[k].type) == 0)) {
            *fam = known[k].fam;
            return CLLM_OK;
        }
    }
    return CLLM_FAIL(CLLM_ERR_UNSUPPORTED,
                     "architecture '%.64s' is not supported (Llama, Mistral, Qwen2 are)",
                     arch ? arch : type);
}

// Features of the Llama family that the engine does not implement.
static cllm_status hf_check_features(json_t *root, hf_family fam, uint32_t max_pos) {
    json_t *use_sw = json_object_get(root, "use_sliding_window");
    json_t *sw = json_object_get(root, "sliding_window");
    RETURN_IF(json_is_true(use_sw), CLLM_ERR_UNSUPPORTED,
              "field use_sliding_window: sliding-window attention is not supported");
    // Qwen2 carries sliding_window even when use_sliding_window is false.
    int sw_applies = !(fam == HF_QWEN2 && use_sw);
    if (sw_applies && sw && !json_is_null(sw)) {
        RETURN_IF(!json_is_integer(sw), CLLM_ERR_FORMAT, "field sliding_window is not an integer");
        RETURN_IF(json_integer_value(sw) < (json_int_t)max_pos, CLLM_ERR_UNSUPPORTED,
                  "field sliding_window = %lld: sliding-window attention (a window shorter than "
                  "max_position_embeddings = %u) is not supported",
                  (long long)json_integer_value(sw), max_pos);
    }
    RETURN_IF(json_is_true(json_object_get(root, "attention_bias")), CLLM_ERR_UNSUPPORTED,
              "field attention_bias: attention biases are not supported");
    RETURN_IF(json_is_true(json_object_get(root, "mlp_bias")), CLLM_ERR_UNSUPPORTED,
              "field mlp_bias: MLP biases are not supported");
    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    RETURN_IF(act && strcmp(act, "silu") != 0, CLLM_ERR_UNSUPPORTED,
              "field hidden_act = '%.32s' is not supported (silu is)", act);
    return CLLM_OK;
}

static cllm_status hf_rope_scaling(json_t *root, cllm_model_config *c) {
    json_t *rs = json_object_get(root, "rope_scaling");
    c->rope_scaling = CLLM_ROPE_SCALING_NONE;
    if (!rs || json_is_null(rs)) return CLLM_OK;
    RETURN_IF(!json_is_object(rs), CLLM_ERR_FORMAT, "field rope_scaling is not an object");
    const char *type = json_string_value(json_object_get(rs, "rope_type"));
    if (!type) type = json_string_value(json_object_get(rs, "type"));
    RETURN_IF(!type, CLLM_ERR_FORMAT, "field rope_scaling has no rope_type");
    if (strcmp(type, "default") == 0) return CLLM_OK;
    RETURN_IF(strcmp(type, "llama3") != 0, CLLM_ERR_UNSUPPORTED,
              "field rope_scaling.rope_type = '%.32s' is not supported (llama3 is)", type);
    c->rope_scaling = CLLM_ROPE_SCALING_LLAMA3;
    TRY(hf_float(rs, "factor", 1, 0, &c->rope_factor));
    TRY(hf_float(rs, "low_freq_factor", 1, 0, &c->rope_low_freq_factor));
    TRY(hf_float(rs, "high_freq_factor", 1, 0, &c->rope_high_freq_factor));
    TRY(hf_u32(rs, "original_max_position_embeddings", 1, 0, &c->rope_original_context));
    return CLLM_OK;
}

static cllm_status hf_config_fields(json_t *root, cllm_model_config *c) {
    hf_family fam = HF_LLAMA;
    TRY(hf_family_of(root, &fam));
    memset(c, 0, sizeof *c);
    c->arch = CLLM_ARCH_LLAMA;
    TRY(hf_u32(root, "hidden_size", 1, 0, &c->dim));
    TRY(hf_u32(root, "intermediate_size", 1, 0, &c->hidden_dim));
    TRY(hf_u32(root, "num_hidden_layers", 1, 0, &c->n_layers));
    TRY(hf_u32(root, "num_attention_heads", 1, 0, &c->n_heads));
    TRY(hf_u32(root, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads));
    TRY(hf_u32(root, "vocab_size", 1, 0, &c->vocab_size));
    TRY(hf_u32(root, "max_position_embeddings", 1, 0, &c->context_len));
    TRY(hf_float(root, "rms_norm_eps", 0, 1e-6f, &c->norm_eps));
    TRY(hf_float(root, "rope_theta", 0, 10000.0f, &c->rope_theta));
    RETURN_IF(c->n_heads == 0, CLLM_ERR_FORMAT, "field num_attention_heads is 0");
    TRY(hf_u32(root, "head_dim", 0, c->dim / c->n_heads, &c->head_dim));
    RETURN_IF(c->head_dim * c->n_heads != c->dim, CLLM_ERR_UNSUPPORTED,
              "field head_dim = %u: only head_dim = hidden_size / num_attention_heads = %u/%u is "
              "supported", c->head_dim, c->dim, c->n_heads);
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    RETURN_IF(tie && !json_is_boolean(tie) && !json_is_null(tie), CLLM_ERR_FORMAT,
              "field tie_word_embeddings is not a boolean");
    c->tied_embeddings = json_is_true(tie) ? 1 : 0;
    TRY(hf_rope_scaling(root, c));
    TRY(hf_token_id(root, "bos_token_id", &c->bos_id));
    TRY(hf_token_id(root, "eos_token_id", &c->eos_id));
    TRY(hf_check_features(root, fam, c->context_len));
    return cllm_config_validate(c);
}

static cllm_status hf_config(hf_ctx *x) {
    TRY(hf_join(x, "config.json"));
    json_t *root = NULL;
    TRY(hf_load_json(x->path, HF_MAX_CONFIG, &root));
    cllm_status st = hf_config_fields(root, &x->s->cfg);
    json_decref(root);
    if (st != CLLM_OK) cllm_error_context(st, "%s", x->path);
    return st;
}

// ---- shards ------------------------------------------------------------------------------------

static cllm_status hf_open_shard(hf_ctx *x, const char *name) {
    for (size_t k = 0; k < x->n_shards; k++)
        if (strcmp(x->shards[k].name, name) == 0) return CLLM_OK;
    RETURN_IF(x->n_shards >= HF_MAX_SHARDS, CLLM_ERR_FORMAT, "more than %d shards",
              HF_MAX_SHARDS);
    // A shard name comes from an untrusted index: it must stay inside the directory.
    RETURN_IF(!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0,
              CLLM_ERR_FORMAT, "shard file name '%.64s' is not a plain file name", name);
    hf_shard *sh = realloc(x->shards, (x->n_shards + 1) * sizeof *sh);
    RETURN_IF(!sh, CLLM_ERR_NOMEM, "out of memory");
    x->shards = sh;
    sh = &x->shards[x->n_shards];
    memset(sh, 0, sizeof *sh);
    sh->name = strdup(name);
    RETURN_IF(!sh->name, CLLM_ERR_NOMEM, "out of memory");
    x->n_shards++;
    TRY(hf_join(x, name));
    TRY(cllm_source_add_file(x->s, x->path, &sh->file, NULL));
    return cllm_st_read_header(x->s->files[sh->file].fd, x->path, &sh->hdr);
}

static cllm_status hf_index(hf_ctx *x, json_t *index) {
    x->weight_map = json_object_get(index, "weight_map");
    RETURN_IF(!json_is_object(x->weight_map), CLLM_ERR_FORMAT, "weight_map is missing");
    const char *key;
    json_t *val;
    json_object_foreach(x->weight_map, key, val) {
        RETURN_IF(!json_is_string(val), CLLM_ERR_FORMAT, "weight_map['%.96s'] is not a string",
                  key);
        TRY(hf_open_shard(x, json_string_value(val)));
    }
    return CLLM_OK;
}

// Opens model.safetensors, or the shards named by model.safetensors.index.json. The index JSON
// stays alive in *index (weight_map borrows from it).
static cllm_status hf_weights(hf_ctx *x, json_t **index) {
    TRY(hf_join(x, "model.safetensors"));
    if (access(x->path, F_OK) == 0) return hf_open_shard(x, "model.safetensors");
    TRY(hf_join(x, "model.safetensors.index.json"));
    RETURN_IF(access(x->path, F_OK) != 0, CLLM_ERR_IO,
              "%s: no model.safetensors or model.safetensors.index.json", x->dir);
    TRY(hf_load_json(x->path, HF_MAX_INDEX, index));
    char index_path[sizeof x->path];
    memcpy(index_path, x->path, sizeof index_path);
    cllm_status st = hf_index(x, *index);
    if (st != CLLM_OK) cllm_error_context(st, "%s", index_path);
    return st;
}

// Biased projections (Qwen2, Llama with attention_bias) would be silently dropped: refuse them.
static cllm_status hf_check_biases(hf_ctx *x) {
    for (size_t k = 0; k < x->n_shards; k++) {
        const cllm_st_header *h = &x->shards[k].hdr;
        for (size_t t = 0; t < h->n_tensors; t++)
            RETURN_IF(strstr(h->tensors[t].name, "_proj.bias"), CLLM_ERR_UNSUPPORTED,
                      "%s/%s: tensor '%s': projection biases are not supported", x->dir,
                      x->shards[k].name, h->tensors[t].name);
    }
    return CLLM_OK;
}

// The shard that holds `name`: the one the index names (single file: the only one). The tensor
// must be present in exactly one shard header.
static cllm_status hf_locate(hf_ctx *x, const char *name, const hf_shard **shard,
                             const cllm_st_tensor **t) {
    size_t want = 0, found = 0;
    if (x->weight_map) {
        const char *file = json_string_value(json_object_get(x->weight_map, name));
        RETURN_IF(!file, CLLM_ERR_FORMAT,
                  "%s/model.safetensors.index.json: tensor '%s' is missing from weight_map",
                  x->dir, name);
        // Every weight_map value was opened as a shard, so the search ends inside the array.
        while (want + 1 < x->n_shards && strcmp(x->shards[want].name, file) != 0) want++;
    }
    for (size_t k = 0; k < x->n_shards; k++) {
        const cllm_st_tensor *hit = cllm_st_find(&x->shards[k].hdr, name);
        if (!hit) continue;
        found++;
        RETURN_IF(found > 1, CLLM_ERR_FORMAT, "%s: tensor '%s' is stored in more than one shard",
                  x->dir, name);
        RETURN_IF(k != want, CLLM_ERR_FORMAT, "%s/%s: tensor '%s' is stored here, not in %s as "
                  "the index says", x->dir, x->shards[k].name, name, x->shards[want].name);
        *shard = &x->shards[k];
        *t = hit;
    }
    RETURN_IF(!found, CLLM_ERR_FORMAT, "%s/%s: tensor '%s' is missing", x->dir,
              x->shards[want].name, name);
    return CLLM_OK;
}

static void fmt_shape(char *buf, size_t cap, const uint64_t *shape, uint32_t ndim) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static cllm_status hf_bind(hf_ctx *x, size_t i) {
    cllm_src_entry *e = &x->s->tensors[i];
    const hf_shard *sh = NULL;
    const cllm_st_tensor *t = NULL;
    TRY(hf_locate(x, e->name, &sh, &t));
    RETURN_IF(!t->supported, CLLM_ERR_UNSUPPORTED, "%s/%s: tensor '%s': dtype %s is not supported",
              x->dir, sh->name, e->name, t->dtype_name);
    int same = t->ndim == e->ndim;
    for (uint32_t d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) {
        char got[128], want[128];
        fmt_shape(got, sizeof got, t->shape, t->ndim);
        fmt_shape(want, sizeof want, e->shape, e->ndim);
        return CLLM_FAIL(CLLM_ERR_FORMAT, "%s/%s: tensor '%s': shape %s does not match %s from "
                         "config.json", x->dir, sh->name, e->name, got, want);
    }
    e->dtype = t->dtype;
    e->file = sh->file;
    e->offset = sh->hdr.data_offset + t->begin;
    e->size = t->end - t->begin;
    cllm_tensor_spec sp;
    cllm_llama_tensor_spec(&x->s->cfg, i, &sp);
    if (sp.role == CLLM_ROLE_WQ) e->permute_heads = x->s->cfg.n_heads;
    if (sp.role == CLLM_ROLE_WK) e->permute_heads = x->s->cfg.n_kv_heads;
    return CLLM_OK;
}

// tokenizer.json alone is stored as it is; with tokenizer_config.json beside it, as a bundle that
// also carries the chat template, add_bos and the BOS/EOS names.
static cllm_status hf_tokenizer(hf_ctx *x) {
    TRY(hf_join(x, "tokenizer.json"));
    if (access(x->path, F_OK) != 0) return CLLM_OK;
    char tok_path[sizeof x->path];
    memcpy(tok_path, x->path, sizeof tok_path);
    TRY(hf_join(x, "tokenizer_config.json"));
    if (access(x->path, F_OK) != 0) return cllm_source_load_tokenizer(x->s, tok_path);
    TRY(cllm_bundle_from_hf(tok_path, x->path, &x->s->tok, &x->s->tok_size));
    x->s->tok_kind = CLLM_TOKENIZER_BUNDLE;
    return CLLM_OK;
}

static cllm_status hf_import(hf_ctx *x, json_t **index) {
    TRY(hf_config(x));
    TRY(hf_weights(x, index));
    TRY(hf_check_biases(x));
    TRY(cllm_source_alloc_tensors(x->s));
    for (size_t i = 0; i < x->s->n_tensors; i++) TRY(hf_bind(x, i));
    return hf_tokenizer(x);
}

cllm_status cllm_import_hf(cllm_source *s, const char *dir) {
    hf_ctx x = {.s = s, .dir = dir};
    json_t *index = NULL;
    cllm_status st = hf_import(&x, &index);
    for (size_t k = 0; k < x.n_shards; k++) {
        free(x.shards[k].name);
        cllm_st_header_free(&x.shards[k].hdr);
    }
    free(x.shards);
    json_decref(index);
    return st;
}
