// Tokenizer bundles: building them (from GGUF metadata, or from an HF directory's tokenizer.json
// and tokenizer_config.json) and serialising them. Loading is tok_load_bundle (tokenizer_hf.c).
//
// GGUF `tokenizer.ggml.*` becomes a Hugging Face tokenizer.json object:
//   model "gpt2" (byte-level BPE): vocab from `tokens`, merges from `merges` ("a b"),
//     added_tokens for CONTROL (3) and USER_DEFINED (4) tokens, the pre-tokenizer named by `pre`:
//       default / gpt-2  ByteLevel with the GPT-2 regex
//       llama-bpe        Split(Llama 3 regex, Isolated) + ByteLevel without regex; ignore_merges
//       smollm           Split(\p{N}, Isolated) + ByteLevel with the GPT-2 regex
//       qwen2            Split(Qwen2 regex, Isolated) + ByteLevel without regex
//     anything else is UNSUPPORTED, naming it.
//   model "llama" (SentencePiece): BPE with byte_fallback over the pieces; merges derived from the
//     scores: every (a, b) with a, b and ab normal pieces (ab at most 128 bytes), ranked by ab's
//     score (highest first, ties by the id of ab, then of a); normalizer Prepend("▁") (when
//     add_space_prefix) + Replace(" " -> "▁"), as Hugging Face's Llama tokenizer.json.
// add_bos: `add_bos_token` (default: true for llama, false for gpt2); bos/eos tokens from
// `bos_token_id` / `eos_token_id`; `tokenizer.chat_template`.
#include "cllm_bundle.h"

#include <stdlib.h>
#include <string.h>

#define GG_TYPE_NORMAL 1
#define GG_TYPE_UNKNOWN 2
#define GG_TYPE_CONTROL 3
#define GG_TYPE_USER_DEFINED 4

static const char SPM_SPACE[] = "\xE2\x96\x81"; // U+2581

static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// ---- serialising
// ---------------------------------------------------------------------------------

cllm_status cllm_bundle_encode(json_t *tokenizer, int add_bos, const char *chat_template,
                               size_t chat_template_len, const char *bos_token,
                               const char *eos_token, json_t *source, uint8_t **out,
                               size_t *size) {
    *out = NULL;
    *size = 0;
    json_t *root = json_object();
    if (!root || !tokenizer) {
        json_decref(root);
        json_decref(tokenizer);
        json_decref(source);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory building a tokenizer bundle");
    }
    json_object_set_new(root, "codecllm_bundle", json_integer(CLLM_BUNDLE_VERSION));
    json_object_set_new(root, "tokenizer", tokenizer);
    json_object_set_new(root, "add_bos", json_boolean(add_bos));
    cllm_status st = CLLM_OK;
    if (chat_template) {
        json_t *ct = json_stringn(chat_template, chat_template_len);
        if (!ct) st = CLLM_FAIL(CLLM_ERR_FORMAT, "the chat template is not valid UTF-8");
        json_object_set_new(root, "chat_template", ct);
    }
    if (bos_token) json_object_set_new(root, "bos_token", json_string(bos_token));
    if (eos_token) json_object_set_new(root, "eos_token", json_string(eos_token));
    if (source) json_object_set_new(root, "source", source);
    char *text = st == CLLM_OK ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    TRY(st);
    RETURN_IF(!text, CLLM_ERR_NOMEM, "out of memory serialising a tokenizer bundle");
    *out = (uint8_t *)text;
    *size = strlen(text);
    return CLLM_OK;
}

// ---- GGUF: shared pieces
// -------------------------------------------------------------------------

typedef struct gg_tok {
    const cllm_gguf *g;
    const cllm_gguf_kv *tokens, *types; // types may be NULL (every token normal)
    uint64_t n;
} gg_tok;

static int token_type(const gg_tok *k, uint64_t id) {
    return k->types ? (int)cllm_gguf_arr_i64(k->g, k->types, id) : GG_TYPE_NORMAL;
}

static cllm_status gg_tok_init(const cllm_gguf *g, gg_tok *k) {
    memset(k, 0, sizeof *k);
    k->g = g;
    TRY(cllm_gguf_get_array(g, "tokenizer.ggml.tokens", CLLM_GGUF_STRING, &k->tokens));
    k->n = k->tokens->n;
    RETURN_IF(k->n == 0 || k->n > ((uint64_t)1 << 24), CLLM_ERR_FORMAT,
              "tokenizer.ggml.tokens holds %llu tokens", (unsigned long long)k->n);
    if (cllm_gguf_find(g, "tokenizer.ggml.token_type")) {
        TRY(cllm_gguf_get_array(g, "tokenizer.ggml.token_type", CLLM_GGUF_I32, &k->types));
        RETURN_IF(k->types->n != k->n, CLLM_ERR_CORRUPT,
                  "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                  (unsigned long long)k->types->n, (unsigned long long)k->n);
    }
    return CLLM_OK;
}

// {piece: id} over every token (a repeated piece keeps its lowest id, as the loader's hash does).
static cllm_status gg_vocab(const gg_tok *k, json_t *vocab) {
    for (uint64_t id = 0; id < k->n; id++) {
        const char *s;
        size_t len;
        cllm_gguf_arr_str(k->g, k->tokens, id, &s, &len);
        if (json_object_getn(vocab, s, len)) continue;
        json_t *v = json_integer((json_int_t)id);
        RETURN_IF(!v || json_object_setn_new(vocab, s, len, v) != 0, CLLM_ERR_FORMAT,
                  "token %llu is not valid UTF-8 (or out of memory)", (unsigned long long)id);
    }
    return CLLM_OK;
}

static json_t *added_token(uint64_t id, const char *s, size_t len, int special) {
    json_t *a = json_object();
    json_object_set_new(a, "id", json_integer((json_int_t)id));
    json_object_set_new(a, "content", json_stringn(s, len));
    json_object_set_new(a, "single_word", json_false());
    json_object_set_new(a, "lstrip", json_false());
    json_object_set_new(a, "rstrip", json_false());
    json_object_set_new(a, "normalized", json_false());
    json_object_set_new(a, "special", json_boolean(special));
    return a;
}

// Control and user-defined tokens (and, with `with_unknown`, the unknown token), matched
// literally before anything else.
static cllm_status gg_added(const gg_tok *k, int with_unknown, json_t *list) {
    for (uint64_t id = 0; id < k->n; id++) {
        int t = token_type(k, id);
        if (t != GG_TYPE_CONTROL && t != GG_TYPE_USER_DEFINED &&
            !(with_unknown && t == GG_TYPE_UNKNOWN))
            continue;
        const char *s;
        size_t len;
        cllm_gguf_arr_str(k->g, k->tokens, id, &s, &len);
        if (len == 0) continue; // nothing to match
        RETURN_IF(json_array_append_new(list, added_token(id, s, len, t != GG_TYPE_USER_DEFINED)),
                  CLLM_ERR_NOMEM, "out of memory");
    }
    return CLLM_OK;
}

static json_t *split_step(const char *regex) {
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", regex,
                     "behavior", "Isolated", "invert", 0);
}

static json_t *bytelevel_step(int use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                     "trim_offsets", 1, "use_regex", use_regex);
}

static json_t *sequence2(json_t *a, json_t *b) {
    return json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers", a, b);
}

// The pre-tokenizer named by tokenizer.ggml.pre (absent: default).
static cllm_status gpt2_pretokenizer(const cllm_gguf *g, json_t **out, int *ignore_merges) {
    const char *pre = "default";
    size_t len = strlen(pre);
    if (cllm_gguf_find(g, "tokenizer.ggml.pre")) TRY(cllm_gguf_get_str(g, "tokenizer.ggml.pre",
                                                                       &pre, &len));
#define PRE_IS(name) (len == strlen(name) && memcmp(pre, name, len) == 0)
    *ignore_merges = 0;
    if (PRE_IS("default") || PRE_IS("gpt-2")) {
        *out = bytelevel_step(1);
    } else if (PRE_IS("llama-bpe") || PRE_IS("llama3") || PRE_IS("llama-v3")) {
        *out = sequence2(split_step(LLAMA3_RE), bytelevel_step(0));
        *ignore_merges = 1;
    } else if (PRE_IS("smollm")) {
        *out = sequence2(split_step("\\p{N}"), bytelevel_step(1));
    } else if (PRE_IS("qwen2")) {
        *out = sequence2(split_step(QWEN2_RE), bytelevel_step(0));
    } else {
        return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tokenizer.ggml.pre = '%.*s' is not supported "
                         "(default, llama-bpe, smollm, qwen2 are)", len > 64 ? 64 : (int)len, pre);
    }
#undef PRE_IS
    RETURN_IF(!*out, CLLM_ERR_NOMEM, "out of memory");
    return CLLM_OK;
}

// ---- GGUF: gpt2 ---------------------------------------------------------------------------------

static cllm_status gpt2_merges(const cllm_gguf *g, json_t *merges) {
    const cllm_gguf_kv *m;
    TRY(cllm_gguf_get_array(g, "tokenizer.ggml.merges", CLLM_GGUF_STRING, &m));
    for (uint64_t i = 0; i < m->n; i++) {
        const char *s;
        size_t len;
        cllm_gguf_arr_str(g, m, i, &s, &len);
        json_t *v = json_stringn(s, len);
        RETURN_IF(!v, CLLM_ERR_FORMAT, "merge %llu is not valid UTF-8", (unsigned long long)i);
        RETURN_IF(json_array_append_new(merges, v), CLLM_ERR_NOMEM, "out of memory");
    }
    return CLLM_OK;
}

static cllm_status gpt2_tokenizer(const gg_tok *k, json_t *root) {
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array(), *pre = NULL;
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}", "type", "BPE",
                              "dropout", "unk_token", "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "vocab",
                              vocab, "merges", merges);
    json_object_set_new(root, "model", model);
    json_object_set_new(root, "added_tokens", added);
    RETURN_IF(!model || !added, CLLM_ERR_NOMEM, "out of memory");
    TRY(gg_vocab(k, vocab));
    TRY(gpt2_merges(k->g, merges));
    TRY(gg_added(k, 0, added));
    int ignore_merges = 0;
    TRY(gpt2_pretokenizer(k->g, &pre, &ignore_merges));
    json_object_set_new(model, "ignore_merges", json_boolean(ignore_merges));
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", pre);
    json_object_set_new(root, "decoder", bytelevel_step(1));
    return CLLM_OK;
}

// ---- GGUF: llama (SentencePiece)
// ------------------------------------------------------------------

typedef struct spm_merge {
    float score;
    int32_t ab, a, b;
} spm_merge;

static int cmp_spm_merge(const void *pa, const void *pb) {
    const spm_merge *x = pa, *y = pb;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->ab != y->ab) return x->ab < y->ab ? -1 : 1;
    return (x->a > y->a) - (x->a < y->a);
}

// Id of the normal piece s[0..len) in `vocab`, or -1.
static int32_t normal_id(const gg_tok *k, const json_t *vocab, const char *s, size_t len) {
    json_t *v = json_object_getn(vocab, s, len);
    if (!v) return -1;
    json_int_t id = json_integer_value(v);
    return token_type(k, (uint64_t)id) == GG_TYPE_NORMAL ? (int32_t)id : -1;
}

// SentencePiece pieces are at most 16 characters (max_sentencepiece_length): longer pieces are
// never merge results, which also bounds the quadratic cost of splitting a piece.
#define SPM_MAX_MERGED 128

// Every split of every normal piece into two normal pieces, at UTF-8 character boundaries.
static cllm_status spm_collect(const gg_tok *k, const cllm_gguf_kv *scores, const json_t *vocab,
                               spm_merge **out, size_t *n_out) {
    size_t n = 0, cap = 1024;
    spm_merge *m = malloc(cap * sizeof *m);
    RETURN_IF(!m, CLLM_ERR_NOMEM, "out of memory");
    for (uint64_t id = 0; id < k->n; id++) {
        if (token_type(k, id) != GG_TYPE_NORMAL) continue;
        const char *s;
        size_t len;
        cllm_gguf_arr_str(k->g, k->tokens, id, &s, &len);
        if (len > SPM_MAX_MERGED || normal_id(k, vocab, s, len) != (int32_t)id) continue;
        for (size_t cut = 1; cut < len; cut++) {
            if (((uint8_t)s[cut] & 0xC0) == 0x80) continue; // inside a character
            int32_t a = normal_id(k, vocab, s, cut), b = normal_id(k, vocab, s + cut, len - cut);
            if (a < 0 || b < 0) continue;
            if (n == cap) {
                spm_merge *nm = realloc(m, 2 * cap * sizeof *m);
                if (!nm) free(m);
                RETURN_IF(!nm, CLLM_ERR_NOMEM, "out of memory for %zu merges", 2 * cap);
                m = nm;
                cap *= 2;
            }
            m[n++] = (spm_merge){cllm_gguf_arr_f32(k->g, scores, id), (int32_t)id, a, b};
        }
    }
    qsort(m, n, sizeof *m, cmp_spm_merge);
    *out = m;
    *n_out = n;
    return CLLM_OK;
}

static cllm_status spm_merges(const gg_tok *k, const json_t *vocab, json_t *merges) {
    const cllm_gguf_kv *scores;
    TRY(cllm_gguf_get_array(k->g, "tokenizer.ggml.scores", CLLM_GGUF_F32, &scores));
    RETURN_IF(scores->n != k->n, CLLM_ERR_CORRUPT,
              "tokenizer.ggml.scores has %llu entries for %llu tokens",
              (unsigned long long)scores->n, (unsigned long long)k->n);
    spm_merge *m = NULL;
    size_t n = 0;
    TRY(spm_collect(k, scores, vocab, &m, &n));
    cllm_status st = CLLM_OK;
    for (size_t i = 0; i < n && st == CLLM_OK; i++) {
        const char *a, *b;
        size_t al, bl;
        cllm_gguf_arr_str(k->g, k->tokens, (uint64_t)m[i].a, &a, &al);
        cllm_gguf_arr_str(k->g, k->tokens, (uint64_t)m[i].b, &b, &bl);
        json_t *pair = json_pack("[s%, s%]", a, al, b, bl);
        if (!pair || json_array_append_new(merges, pair))
            st = CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory for %zu merges", n);
    }
    free(m);
    return st;
}

static json_t *spm_normalizer(int prefix) {
    json_t *list = json_array();
    if (prefix) json_array_append_new(list, json_pack("{s:s, s:s}", "type", "Prepend", "prepend",
                                                      SPM_SPACE));
    json_array_append_new(list, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern",
                                          "String", " ", "content", SPM_SPACE));
    return json_pack("{s:s, s:o}", "type", "Sequence", "normalizers", list);
}

static cllm_status spm_tokenizer(const gg_tok *k, json_t *root) {
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE",
                              "dropout", "continuing_subword_prefix", "end_of_word_suffix",
                              "fuse_unk", 1, "byte_fallback", 1, "ignore_merges", 0, "vocab",
                              vocab, "merges", merges);
    json_object_set_new(root, "model", model);
    json_object_set_new(root, "added_tokens", added);
    RETURN_IF(!model || !added, CLLM_ERR_NOMEM, "out of memory");
    TRY(gg_vocab(k, vocab));
    TRY(spm_merges(k, vocab, merges));
    TRY(gg_added(k, 1, added));
    int32_t unk = -1;
    if (cllm_gguf_find(k->g, "tokenizer.ggml.unknown_token_id")) {
        TRY(cllm_gguf_get_i32(k->g, "tokenizer.ggml.unknown_token_id", &unk));
    }
    for (uint64_t id = 0; unk < 0 && id < k->n; id++)
        if (token_type(k, id) == GG_TYPE_UNKNOWN) unk = (int32_t)id;
    if (unk >= 0 && (uint64_t)unk < k->n) {
        const char *s;
        size_t len;
        cllm_gguf_arr_str(k->g, k->tokens, (uint64_t)unk, &s, &len);
        json_object_set_new(model, "unk_token", json_stringn(s, len));
    }
    int prefix = 1;
    if (cllm_gguf_find(k->g, "tokenizer.ggml.add_space_prefix"))
        TRY(cllm_gguf_get_bool(k->g, "tokenizer.ggml.add_space_prefix", &prefix));
    json_object_set_new(root, "normalizer", spm_normalizer(prefix));
    json_object_set_new(root, "pre_tokenizer", json_null());
    return CLLM_OK;
}

// ---- GGUF: the bundle ---------------------------------------------------------------------------

// The text of the token named by key (an id), or NULL when the key is absent. *buf is malloc'd.
static cllm_status special_token(const gg_tok *k, const char *key, char **buf) {
    *buf = NULL;
    if (!cllm_gguf_find(k->g, key)) return CLLM_OK;
    uint32_t id = 0;
    TRY(cllm_gguf_get_u32(k->g, key, &id));
    RETURN_IF(id >= k->n, CLLM_ERR_CORRUPT, "%s = %u is outside the %llu tokens", key, id,
              (unsigned long long)k->n);
    const char *s;
    size_t len;
    cllm_gguf_arr_str(k->g, k->tokens, id, &s, &len);
    *buf = strndup(s, len);
    RETURN_IF(!*buf, CLLM_ERR_NOMEM, "out of memory");
    return CLLM_OK;
}

static cllm_status gguf_tokenizer_json(const cllm_gguf *g, const gg_tok *k, json_t *root,
                                       int *add_bos) {
    const char *model = NULL;
    size_t len = 0;
    TRY(cllm_gguf_get_str(g, "tokenizer.ggml.model", &model, &len));
    int spm = len == 5 && memcmp(model, "llama", 5) == 0;
    int gpt2 = len == 4 && memcmp(model, "gpt2", 4) == 0;
    RETURN_IF(!spm && !gpt2, CLLM_ERR_UNSUPPORTED,
              "tokenizer.ggml.model = '%.*s' is not supported (gpt2, llama are)",
              len > 64 ? 64 : (int)len, model);
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "post_processor", json_null());
    TRY(spm ? spm_tokenizer(k, root) : gpt2_tokenizer(k, root));
    *add_bos = spm;
    if (cllm_gguf_find(g, "tokenizer.ggml.add_bos_token"))
        TRY(cllm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", add_bos));
    return CLLM_OK;
}

cllm_status cllm_bundle_from_gguf(const cllm_gguf *g, json_t *source, uint8_t **out,
                                  size_t *size) {
    gg_tok k;
    char *bos = NULL, *eos = NULL;
    int add_bos = 0;
    const char *tmpl = NULL;
    size_t tmpl_len = 0;
    json_t *root = json_object();
    cllm_status st = root ? gg_tok_init(g, &k) : CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory");
    if (st == CLLM_OK) st = gguf_tokenizer_json(g, &k, root, &add_bos);
    if (st == CLLM_OK) st = special_token(&k, "tokenizer.ggml.bos_token_id", &bos);
    if (st == CLLM_OK) st = special_token(&k, "tokenizer.ggml.eos_token_id", &eos);
    if (st == CLLM_OK && cllm_gguf_find(g, "tokenizer.chat_template"))
        st = cllm_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tmpl_len);
    if (st == CLLM_OK) {
        st = cllm_bundle_encode(root, add_bos, tmpl, tmpl_len, bos, eos, source, out, size);
    } else {
        json_decref(root);
        json_decref(source);
    }
    free(bos);
    free(eos);
    return st;
}

// ---- Hugging Face directories
// ---------------------------------------------------------------------

static cllm_status load_json_file(const char *path, json_t **out) {
    uint8_t *data = NULL;
    size_t size = 0;
    TRY(cllm_read_file(path, (size_t)256 << 20, &data, &size));
    json_error_t err;
    *out = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &err);
    free(data);
    RETURN_IF(!*out, CLLM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path,
              err.line, err.column, err.text);
    RETURN_IF(!json_is_object(*out), CLLM_ERR_FORMAT, "%s: top level is not an object", path);
    return CLLM_OK;
}

// chat_template: a string, or a list of {"name", "template"} (the one named "default").
static const json_t *hf_chat_template(const json_t *cfg) {
    const json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) return ct;
    for (size_t i = 0; json_is_array(ct) && i < json_array_size(ct); i++) {
        const json_t *e = json_array_get(ct, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        const json_t *t = json_object_get(e, "template");
        if (name && strcmp(name, "default") == 0 && json_is_string(t)) return t;
    }
    return NULL;
}

// bos_token / eos_token: a string or an AddedToken object {"content": ...}.
static const char *hf_token_text(const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_string_value(v);
}

cllm_status cllm_bundle_from_hf(const char *tokenizer_path, const char *config_path,
                                uint8_t **out, size_t *size) {
    json_t *tok = NULL, *cfg = NULL;
    TRY(load_json_file(tokenizer_path, &tok));
    cllm_status st = load_json_file(config_path, &cfg);
    if (st != CLLM_OK) {
        json_decref(tok);
        return st;
    }
    const json_t *add = json_object_get(cfg, "add_bos_token");
    int add_bos;
    if (json_is_boolean(add)) {
        add_bos = json_is_true(add);
    } else { // as the loader decides for a bare tokenizer.json: when the vocabulary has a BOS
        cllm_tokenizer *t = NULL;
        char *text = json_dumps(tok, JSON_COMPACT);
        st = text ? cllm_tokenizer_load(CLLM_TOKENIZER_HF_JSON, (const uint8_t *)text,
                                        strlen(text), 0, &t)
                  : CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory");
        add_bos = t ? cllm_tokenizer_add_bos(t) : 0;
        cllm_tokenizer_free(t);
        free(text);
    }
    const json_t *ct = hf_chat_template(cfg);
    if (st == CLLM_OK) {
        st = cllm_bundle_encode(tok, add_bos, json_string_value(ct), json_string_length(ct),
                                hf_token_text(cfg, "bos_token"), hf_token_text(cfg, "eos_token"),
                                NULL, out, size);
    } else {
        json_decref(tok);
    }
    json_decref(cfg);
    if (st != CLLM_OK) return cllm_error_context(st, "%s", tokenizer_path);
    return CLLM_OK;
}

// ---- the source note (public: cllm_container_source_note)
// ----------------------------------------

// "F32 61, Q4_1 210, Q8_0 1" from {"F32": 61, ...}.
static void append_types(const json_t *types, char *buf, size_t cap, size_t *n) {
    const char *key;
    json_t *v;
    int first = 1;
    json_object_foreach((json_t *)types, key, v) {
        if (*n >= cap) return;
        int w = snprintf(buf + *n, cap - *n, "%s%s %lld", first ? "" : ", ", key,
                         (long long)json_integer_value(v));
        if (w > 0) *n += (size_t)w;
        first = 0;
    }
}

static cllm_status source_note(const json_t *src, char *buf, size_t cap) {
    const char *format = json_string_value(json_object_get(src, "format"));
    const json_t *types = json_object_get(src, "tensor_types");
    const json_t *deq = json_object_get(src, "dequantized");
    RETURN_IF(!format || (types && !json_is_object(types)) || (deq && !json_is_boolean(deq)),
              CLLM_ERR_FORMAT, "tokenizer bundle: \"source\" is malformed");
    size_t n = 0;
    int w = snprintf(buf, cap, "source: %s", format);
    n = w > 0 ? (size_t)w : 0;
    if (types && n < cap) {
        w = snprintf(buf + n, cap - n, " (tensor types: ");
        n += w > 0 ? (size_t)w : 0;
        append_types(types, buf, cap, &n);
        if (n < cap) n += (size_t)snprintf(buf + n, cap - n, ")");
    }
    if (json_is_true(deq) && n < cap)
        snprintf(buf + n, cap - n, "; quantized tensors are stored as their float32 "
                 "dequantization: lossless means bit-exact to those values, not to the "
                 "quantized blocks");
    return CLLM_OK;
}

cllm_status cllm_container_source_note(const cllm_container *c, char *buf, size_t cap) {
    RETURN_IF(!c || !buf || cap == 0, CLLM_ERR_ARG, "container_source_note: bad argument");
    buf[0] = '\0';
    const uint8_t *data = NULL;
    size_t size = 0;
    if (cllm_container_tokenizer(c, &data, &size) != CLLM_TOKENIZER_BUNDLE) return CLLM_OK;
    json_error_t err;
    json_t *root = json_loadb((const char *)data, size, 0, &err);
    RETURN_IF(!root, CLLM_ERR_FORMAT, "tokenizer bundle: invalid JSON at line %d: %s", err.line,
              err.text);
    const json_t *src = json_object_get(root, "source");
    cllm_status st = CLLM_OK;
    if (src && !json_is_null(src)) {
        st = json_is_object(src) ? source_note(src, buf, cap)
                                 : CLLM_FAIL(CLLM_ERR_FORMAT, "tokenizer bundle: \"source\" is "
                                             "not an object");
    }
    json_decref(root);
    return st;
}
