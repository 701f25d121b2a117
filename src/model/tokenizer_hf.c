// Hugging Face tokenizer.json: parsing into the structures of cllm_tokenizer.h.
//
// Supported (anything else is refused with CLLM_ERR_UNSUPPORTED naming the component):
//   model: BPE with vocab {piece: id} and merges as "a b" strings or [["a", "b"], ...] pairs;
//     byte_fallback, unk_token, fuse_unk, ignore_merges; dropout is ignored (inference), subword
//     prefixes/suffixes must be empty.
//   added_tokens: matched verbatim (longest first) before anything else; lstrip/rstrip/
//     single_word/normalized flags are ignored.
//   normalizer: null, Sequence, Prepend, Replace (literal pattern), NFC (taken as the identity:
//     text is assumed to be NFC already).
//   pre_tokenizer: null, Sequence, Split (Regex or String pattern; Isolated, Removed,
//     MergedWithPrevious, MergedWithNext; not inverted), ByteLevel, Metaspace.
//   decoder: not read; decoding follows the pre-tokenizer (ByteLevel -> byte mapping reversed;
//     Metaspace or a Replace normalizer writing U+2581 -> it decodes to ' ').
//   BOS / EOS: the added token (else vocabulary piece) named "<s>" / "<|begin_of_text|>" and
//     "</s>" / "<|end_of_text|>" / "<|endoftext|>"; -1 when none (GPT-2 has no BOS). A bundle's
//     bos_token / eos_token name them instead.
// Tokenizer bundles (kind 3) wrap such an object with add_bos, the chat template and the names of
// BOS/EOS (tok_load_bundle, at the end).
#include "cllm_tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define HF_MAX_DEPTH 8 // nesting of Sequence components

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char METASPACE_DEFAULT[] = "\xE2\x96\x81"; // U+2581 LOWER ONE EIGHTH BLOCK

// ---- small JSON helpers -----------------------------------------------------------------------

// Optional boolean member (absent or null: `def`).
static cllm_status get_bool(const json_t *obj, const char *key, int def, int *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) *out = def;
    else if (json_is_boolean(v)) *out = json_is_true(v);
    else return CLLM_FAIL(CLLM_ERR_FORMAT, "tokenizer.json: \"%s\" is not a boolean", key);
    return CLLM_OK;
}

// Required string member (`what` names the component in the message).
static cllm_status get_string(const json_t *obj, const char *key, const char *what,
                              const char **s, size_t *len) {
    json_t *v = json_object_get(obj, key);
    RETURN_IF(!json_is_string(v), CLLM_ERR_FORMAT, "tokenizer.json: %s has no string \"%s\"",
              what, key);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return CLLM_OK;
}

static const char *type_of(const json_t *obj) {
    const char *s = json_string_value(json_object_get(obj, "type"));
    return s ? s : "";
}

// ---- steps ------------------------------------------------------------------------------------

static char *dup_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1); // n < size of the JSON text: no overflow
    if (d) {
        if (n) memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static cllm_status compile_re(const char *pat, size_t len, int literal, pcre2_code **out) {
    int err;
    PCRE2_SIZE at;
    // PCRE2_LITERAL admits PCRE2_UTF but not PCRE2_UCP (which only matters to \p, \s, \w).
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    *out = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &at, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return CLLM_FAIL(CLLM_ERR_FORMAT,
                         "tokenizer.json: regex /%.*s/ is invalid at offset %zu: %s",
                         len > 200 ? 200 : (int)len, pat, (size_t)at, (char *)msg);
    }
    return CLLM_OK;
}

// Appends a step; takes ownership of `re` (freed on failure).
static cllm_status add_step(cllm_tokenizer *t, tok_step_kind kind, const char *a, size_t a_len,
                            const char *b, size_t b_len, pcre2_code *re,
                            tok_split_behavior behavior) {
    if (t->n_steps == TOK_MAX_STEPS) {
        pcre2_code_free(re);
        return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tokenizer.json: more than %d normalizer and "
                         "pre-tokenizer steps", TOK_MAX_STEPS);
    }
    tok_step *st = &t->steps[t->n_steps++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    st->behavior = behavior;
    st->re = re;
    st->a = dup_bytes(a ? a : "", a_len);
    st->b = dup_bytes(b ? b : "", b_len);
    st->a_len = a_len;
    st->b_len = b_len;
    RETURN_IF(!st->a || !st->b, CLLM_ERR_NOMEM, "cannot allocate a tokenizer step");
    return CLLM_OK;
}

static int has_step(const cllm_tokenizer *t, tok_step_kind kind, const char *a) {
    for (size_t i = 0; i < t->n_steps; i++) {
        const tok_step *st = &t->steps[i];
        if (st->kind != kind) continue;
        if (!a) return 1;
        const char *s = kind == TOK_STEP_REPLACE ? st->b : st->a;
        if (strcmp(s, a) == 0) return 1;
    }
    return 0;
}

// ---- normalizer -------------------------------------------------------------------------------

static cllm_status parse_replace(cllm_tokenizer *t, const json_t *n) {
    json_t *pat = json_object_get(n, "pattern");
    RETURN_IF(!json_is_object(pat), CLLM_ERR_FORMAT, "tokenizer.json: Replace has no pattern");
    RETURN_IF(json_object_get(pat, "Regex"), CLLM_ERR_UNSUPPORTED,
              "tokenizer.json: Replace normalizer with a Regex pattern");
    const char *a = NULL, *b = NULL;
    size_t a_len = 0, b_len = 0;
    TRY(get_string(pat, "String", "Replace pattern", &a, &a_len));
    TRY(get_string(n, "content", "Replace", &b, &b_len));
    RETURN_IF(a_len == 0, CLLM_ERR_FORMAT, "tokenizer.json: Replace pattern is empty");
    return add_step(t, TOK_STEP_REPLACE, a, a_len, b, b_len, NULL, 0);
}

static cllm_status parse_normalizer(cllm_tokenizer *t, const json_t *n, int depth) {
    if (!n || json_is_null(n)) return CLLM_OK;
    RETURN_IF(!json_is_object(n), CLLM_ERR_FORMAT, "tokenizer.json: normalizer is not an object");
    RETURN_IF(depth > HF_MAX_DEPTH, CLLM_ERR_UNSUPPORTED, "tokenizer.json: normalizers nest "
              "deeper than %d", HF_MAX_DEPTH);
    const char *type = type_of(n);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(n, "normalizers");
        RETURN_IF(!json_is_array(list), CLLM_ERR_FORMAT,
                  "tokenizer.json: normalizer Sequence has no \"normalizers\" list");
        for (size_t i = 0; i < json_array_size(list); i++) {
            TRY(parse_normalizer(t, json_array_get(list, i), depth + 1));
        }
        return CLLM_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *s = NULL;
        size_t len = 0;
        TRY(get_string(n, "prepend", "Prepend", &s, &len));
        return add_step(t, TOK_STEP_PREPEND, s, len, NULL, 0, NULL, 0);
    }
    if (strcmp(type, "Replace") == 0) return parse_replace(t, n);
    if (strcmp(type, "NFC") == 0) return CLLM_OK; // identity: see the top of this file
    return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tokenizer.json: normalizer type \"%s\"", type);
}

// ---- pre-tokenizer ----------------------------------------------------------------------------

static cllm_status parse_behavior(const json_t *p, tok_split_behavior *out) {
    const char *b = json_string_value(json_object_get(p, "behavior"));
    RETURN_IF(!b, CLLM_ERR_FORMAT, "tokenizer.json: Split has no behavior");
    if (strcmp(b, "Isolated") == 0) *out = TOK_SPLIT_ISOLATED;
    else if (strcmp(b, "Removed") == 0) *out = TOK_SPLIT_REMOVED;
    else if (strcmp(b, "MergedWithPrevious") == 0) *out = TOK_SPLIT_MERGED_PREVIOUS;
    else if (strcmp(b, "MergedWithNext") == 0) *out = TOK_SPLIT_MERGED_NEXT;
    else return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tokenizer.json: Split behavior \"%s\"", b);
    return CLLM_OK;
}

static cllm_status parse_split(cllm_tokenizer *t, const json_t *p) {
    json_t *pat = json_object_get(p, "pattern");
    RETURN_IF(!json_is_object(pat), CLLM_ERR_FORMAT, "tokenizer.json: Split has no pattern");
    int invert = 0;
    TRY(get_bool(p, "invert", 0, &invert));
    RETURN_IF(invert, CLLM_ERR_UNSUPPORTED, "tokenizer.json: inverted Split");
    tok_split_behavior behavior = TOK_SPLIT_ISOLATED;
    TRY(parse_behavior(p, &behavior));
    int literal = json_object_get(pat, "Regex") == NULL;
    const char *s = NULL;
    size_t len = 0;
    TRY(get_string(pat, literal ? "String" : "Regex", "Split pattern", &s, &len));
    RETURN_IF(len == 0, CLLM_ERR_FORMAT, "tokenizer.json: Split pattern is empty");
    pcre2_code *re;
    TRY(compile_re(s, len, literal, &re));
    return add_step(t, TOK_STEP_SPLIT, NULL, 0, NULL, 0, re, behavior);
}

// ByteLevel = ' ' prefix (add_prefix_space) + GPT-2 regex split (use_regex) + byte mapping.
static cllm_status parse_bytelevel(cllm_tokenizer *t, const json_t *p) {
    int prefix = 0, use_regex = 0;
    TRY(get_bool(p, "add_prefix_space", 1, &prefix));
    TRY(get_bool(p, "use_regex", 1, &use_regex));
    if (prefix) TRY(add_step(t, TOK_STEP_PREFIX_SPACE, NULL, 0, NULL, 0, NULL, 0));
    if (use_regex) {
        pcre2_code *re;
        TRY(compile_re(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, &re));
        TRY(add_step(t, TOK_STEP_SPLIT, NULL, 0, NULL, 0, re, TOK_SPLIT_ISOLATED));
    }
    t->decode_mode = TOK_DECODE_BYTELEVEL;
    return add_step(t, TOK_STEP_BYTEMAP, NULL, 0, NULL, 0, NULL, 0);
}

// Metaspace = ' ' -> replacement, replacement prefix (prepend_scheme), split before each
// replacement (split).
static cllm_status parse_metaspace(cllm_tokenizer *t, const json_t *p) {
    const char *rep = METASPACE_DEFAULT;
    size_t rep_len = sizeof METASPACE_DEFAULT - 1;
    if (json_object_get(p, "replacement")) TRY(get_string(p, "replacement", "Metaspace", &rep,
                                                          &rep_len));
    RETURN_IF(rep_len == 0 || rep_len >= sizeof t->replacement, CLLM_ERR_UNSUPPORTED,
              "tokenizer.json: Metaspace replacement of %zu bytes", rep_len);
    int prefix = 0, split = 0;
    TRY(get_bool(p, "add_prefix_space", 1, &prefix));
    TRY(get_bool(p, "split", 1, &split));
    const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
    if (!scheme) scheme = prefix ? "always" : "never";
    tok_step_kind kind;
    if (strcmp(scheme, "always") == 0) kind = TOK_STEP_META_PREPEND;
    else if (strcmp(scheme, "first") == 0) kind = TOK_STEP_META_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0) kind = 0;
    else return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tokenizer.json: prepend_scheme \"%s\"", scheme);
    TRY(add_step(t, TOK_STEP_REPLACE, " ", 1, rep, rep_len, NULL, 0));
    if (kind) TRY(add_step(t, kind, rep, rep_len, NULL, 0, NULL, 0));
    if (split) {
        pcre2_code *re;
        TRY(compile_re(rep, rep_len, 1, &re));
        TRY(add_step(t, TOK_STEP_SPLIT, NULL, 0, NULL, 0, re, TOK_SPLIT_MERGED_NEXT));
    }
    t->decode_mode = TOK_DECODE_METASPACE;
    memcpy(t->replacement, rep, rep_len);
    t->replacement[rep_len] = '\0';
    t->strip_after_bos = kind != 0;
    return CLLM_OK;
}

static cllm_status parse_pretokenizer(cllm_tokenizer *t, const json_t *p, int depth) {
    if (!p || json_is_null(p)) return CLLM_OK;
    RETURN_IF(!json_is_object(p), CLLM_ERR_FORMAT,
              "tokenizer.json: pre_tokenizer is not an object");
    RETURN_IF(depth > HF_MAX_DEPTH, CLLM_ERR_UNSUPPORTED, "tokenizer.json: pre-tokenizers nest "
              "deeper than %d", HF_MAX_DEPTH);
    const char *type = type_of(p);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(p, "pretokenizers");
        RETURN_IF(!json_is_array(list), CLLM_ERR_FORMAT,
                  "tokenizer.json: pre_tokenizer Sequence has no \"pretokenizers\" list");
        for (size_t i = 0; i < json_array_size(list); i++) {
            TRY(parse_pretokenizer(t, json_array_get(list, i), depth + 1));
        }
        return CLLM_OK;
    }
    if (strcmp(type, "Split") == 0) return parse_split(t, p);
    if (strcmp(type, "ByteLevel") == 0) return parse_bytelevel(t, p);
    if (strcmp(type, "Metaspace") == 0) return parse_metaspace(t, p);
    return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer type \"%s\"", type);
}

// ---- model: vocab, merges, options ------------------------------------------------------------

// The vocabulary arrays are indexed by id, so ids are bounded by what the file holds before any
// is allocated: below twice its entries (vocab + added tokens) plus 1024 (real tokenizers are
// dense, 0..entries-1; the slack tolerates holes). A 59-byte file naming id 16777215 would
// otherwise cost hundreds of MB.
static size_t id_limit_of(const json_t *vocab, const json_t *added) {
    size_t n = json_object_size(vocab) + json_array_size(added);  // both 0 when not that type
    size_t limit = n > (TOK_MAX_VOCAB - 1024) / 2 ? TOK_MAX_VOCAB : 2 * n + 1024;
    return limit < TOK_MAX_VOCAB ? limit : TOK_MAX_VOCAB;
}

static cllm_status check_id(const json_t *v, const char *what, size_t limit, size_t *id) {
    RETURN_IF(!json_is_integer(v), CLLM_ERR_FORMAT, "tokenizer.json: %s: id is not an integer",
              what);
    json_int_t x = json_integer_value(v);
    RETURN_IF(x < 0 || (uint64_t)x >= limit, CLLM_ERR_FORMAT,
              "tokenizer.json: %s: id %lld is outside [0, %zu) (ids must stay below twice the "
              "number of entries plus 1024, and below %zu)",
              what, (long long)x, limit, TOK_MAX_VOCAB);
    *id = (size_t)x;
    return CLLM_OK;
}

static cllm_status parse_vocab(cllm_tokenizer *t, const json_t *vocab, size_t limit) {
    RETURN_IF(!json_is_object(vocab), CLLM_ERR_FORMAT,
              "tokenizer.json: model.vocab is not an object");
    const char *key;
    size_t key_len, id = 0, max_id = 0;
    json_t *v;
    json_object_keylen_foreach((json_t *)vocab, key, key_len, v) {
        TRY(check_id(v, "model.vocab", limit, &id));
        if (id > max_id) max_id = id;
    }
    TRY(tok_vocab_reserve(&t->v, json_object_size(vocab) ? max_id + 1 : 0));
    json_object_keylen_foreach((json_t *)vocab, key, key_len, v) {
        TRY(check_id(v, "model.vocab", limit, &id));
        cllm_status st = tok_vocab_set(&t->v, (int32_t)id, (const uint8_t *)key, key_len, 1);
        if (st != CLLM_OK) return cllm_error_context(st, "tokenizer.json: model.vocab");
    }
    return CLLM_OK;
}

static int cmp_added(const void *pa, const void *pb) {
    const tok_added *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; // longest first
    return a->id < b->id ? -1 : a->id > b->id;
}

static cllm_status parse_added_one(cllm_tokenizer *t, const json_t *a, size_t i, size_t limit,
                                   size_t *text_len) {
    RETURN_IF(!json_is_object(a), CLLM_ERR_FORMAT, "tokenizer.json: added_tokens[%zu] is not an "
              "object", i);
    size_t id = 0, len = 0;
    const char *s = NULL;
    TRY(check_id(json_object_get(a, "id"), "added_tokens", limit, &id));
    TRY(get_string(a, "content", "an added token", &s, &len));
    RETURN_IF(len == 0 || len > TOK_MAX_PIECE, CLLM_ERR_FORMAT,
              "tokenizer.json: added token %zu has %zu bytes of content", id, len);
    TRY(tok_vocab_reserve(&t->v, id + 1));
    if (!(t->v.flags[id] & TOK_F_PRESENT)) TRY(tok_vocab_set(&t->v, (int32_t)id,
                                                             (const uint8_t *)s, len, 0));
    t->v.flags[id] |= TOK_F_ADDED;
    t->added[t->n_added++] = (tok_added){(int32_t)id, (uint32_t)len, *text_len};
    memcpy(t->added_text + *text_len, s, len);
    *text_len += len;
    t->added_first[(uint8_t)s[0]] = 1;
    return CLLM_OK;
}

static cllm_status parse_added(cllm_tokenizer *t, const json_t *list, size_t limit) {
    if (!list || json_is_null(list)) return CLLM_OK;
    RETURN_IF(!json_is_array(list), CLLM_ERR_FORMAT,
              "tokenizer.json: added_tokens is not a list");
    size_t n = json_array_size(list), total = 0;
    for (size_t i = 0; i < n; i++) { // contents live in the JSON: the sum cannot overflow
        total += json_string_length(json_object_get(json_array_get(list, i), "content"));
    }
    t->added = malloc((n ? n : 1) * sizeof *t->added);
    t->added_text = malloc(total ? total : 1);
    RETURN_IF(!t->added || !t->added_text, CLLM_ERR_NOMEM, "cannot allocate %zu added tokens", n);
    size_t text_len = 0;
    for (size_t i = 0; i < n; i++)
        TRY(parse_added_one(t, json_array_get(list, i), i, limit, &text_len));
    qsort(t->added, t->n_added, sizeof *t->added, cmp_added);
    return CLLM_OK;
}

// One merge: "a b" (split at the first space) or ["a", "b"].
static cllm_status merge_parts(const json_t *m, size_t i, const char **a, size_t *a_len,
                               const char **b, size_t *b_len) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        RETURN_IF(!sp, CLLM_ERR_FORMAT, "tokenizer.json: merge %zu \"%.*s\" has no space", i,
                  n > 64 ? 64 : (int)n, s);
        *a = s, *a_len = (size_t)(sp - s);
        *b = sp + 1, *b_len = n - *a_len - 1;
        return CLLM_OK;
    }
    RETURN_IF(!json_is_array(m) || json_array_size(m) != 2 ||
                  !json_is_string(json_array_get(m, 0)) || !json_is_string(json_array_get(m, 1)),
              CLLM_ERR_FORMAT, "tokenizer.json: merge %zu is neither \"a b\" nor [\"a\", \"b\"]",
              i);
    *a = json_string_value(json_array_get(m, 0));
    *a_len = json_string_length(json_array_get(m, 0));
    *b = json_string_value(json_array_get(m, 1));
    *b_len = json_string_length(json_array_get(m, 1));
    return CLLM_OK;
}

static cllm_status add_merge(cllm_tokenizer *t, const json_t *m, size_t i, uint8_t **buf,
                             size_t *cap) {
    const char *a = NULL, *b = NULL;
    size_t a_len = 0, b_len = 0;
    TRY(merge_parts(m, i, &a, &a_len, &b, &b_len));
    size_t n = a_len + b_len; // both are strings of the JSON text: no overflow
    if (n > *cap) {
        uint8_t *nb = realloc(*buf, n);
        RETURN_IF(!nb, CLLM_ERR_NOMEM, "cannot allocate %zu bytes for a merge", n);
        *buf = nb;
        *cap = n;
    }
    if (a_len) memcpy(*buf, a, a_len);
    if (b_len) memcpy(*buf + a_len, b, b_len);
    int32_t ia = tok_vocab_find(&t->v, (const uint8_t *)a, a_len);
    int32_t ib = tok_vocab_find(&t->v, (const uint8_t *)b, b_len);
    int32_t iab = tok_vocab_find(&t->v, *buf, n);
    RETURN_IF(ia < 0 || ib < 0 || iab < 0, CLLM_ERR_CORRUPT,
              "tokenizer.json: merge %zu (\"%.*s\" \"%.*s\"): \"%.*s\" is not in the vocabulary",
              i, a_len > 64 ? 64 : (int)a_len, a, b_len > 64 ? 64 : (int)b_len, b,
              n > 128 ? 128 : (int)n, ia < 0 ? a : ib < 0 ? b : (const char *)*buf);
    tok_merges_add(&t->merges, ia, ib, (uint32_t)i, iab);
    return CLLM_OK;
}

static cllm_status parse_merges(cllm_tokenizer *t, const json_t *merges) {
    RETURN_IF(!json_is_array(merges), CLLM_ERR_FORMAT,
              "tokenizer.json: model.merges is not a list");
    size_t n = json_array_size(merges);
    RETURN_IF(n >= UINT32_MAX, CLLM_ERR_UNSUPPORTED, "tokenizer.json: %zu merges", n);
    TRY(tok_merges_init(&t->merges, n));
    uint8_t *buf = NULL;
    size_t cap = 0;
    cllm_status st = CLLM_OK;
    for (size_t i = 0; i < n && st == CLLM_OK; i++) {
        st = add_merge(t, json_array_get(merges, i), i, &buf, &cap);
    }
    free(buf);
    return st;
}

static cllm_status parse_model_options(cllm_tokenizer *t, const json_t *model) {
    TRY(get_bool(model, "byte_fallback", 0, &t->byte_fallback));
    TRY(get_bool(model, "ignore_merges", 0, &t->ignore_merges));
    TRY(get_bool(model, "fuse_unk", 0, &t->fuse_unk));
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, affixes[i]);
        RETURN_IF(v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0),
                  CLLM_ERR_UNSUPPORTED, "tokenizer.json: BPE with a %s", affixes[i]);
    }
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        RETURN_IF(!json_is_string(unk), CLLM_ERR_FORMAT, "tokenizer.json: unk_token is not a "
                  "string");
        t->unk = tok_vocab_find(&t->v, (const uint8_t *)json_string_value(unk),
                                json_string_length(unk));
        RETURN_IF(t->unk < 0, CLLM_ERR_CORRUPT, "tokenizer.json: unk_token \"%s\" is not in the "
                  "vocabulary", json_string_value(unk));
    }
    return CLLM_OK;
}

// ---- the whole file ---------------------------------------------------------------------------

// Id of the first name that is an added token, else a vocabulary piece; -1 when none is.
static int32_t find_special(const cllm_tokenizer *t, const char *const *names) {
    for (const char *const *p = names; *p; p++) {
        size_t len = strlen(*p);
        for (size_t i = 0; i < t->n_added; i++) {
            const tok_added *a = &t->added[i];
            if (a->len == len && memcmp(t->added_text + a->off, *p, len) == 0) return a->id;
        }
    }
    for (const char *const *p = names; *p; p++) {
        int32_t id = tok_vocab_find(&t->v, (const uint8_t *)*p, strlen(*p));
        if (id >= 0) return id;
    }
    return -1;
}

// Decoding of vocabularies whose normalizer writes U+2581 for spaces (Llama 2 / Mistral
// tokenizer.json: Prepend("▁") + Replace(" ", "▁")), which no pre-tokenizer announces.
static void detect_sentencepiece_normalizer(cllm_tokenizer *t) {
    if (t->decode_mode != TOK_DECODE_RAW || !has_step(t, TOK_STEP_REPLACE, METASPACE_DEFAULT)) {
        return;
    }
    t->decode_mode = TOK_DECODE_METASPACE;
    memcpy(t->replacement, METASPACE_DEFAULT, sizeof METASPACE_DEFAULT);
    t->strip_after_bos = has_step(t, TOK_STEP_PREPEND, METASPACE_DEFAULT);
}

static cllm_status parse_root(cllm_tokenizer *t, const json_t *root) {
    RETURN_IF(!json_is_object(root), CLLM_ERR_FORMAT, "tokenizer.json is not a JSON object");
    json_t *model = json_object_get(root, "model");
    RETURN_IF(!json_is_object(model), CLLM_ERR_FORMAT, "tokenizer.json has no \"model\" object");
    const char *type = type_of(model);
    RETURN_IF(type[0] ? strcmp(type, "BPE") != 0 : !json_object_get(model, "merges"),
              CLLM_ERR_UNSUPPORTED, "tokenizer.json: model type \"%s\" (only BPE is supported)",
              type);
    t->model = TOK_MODEL_RANKED;
    t->decode_mode = TOK_DECODE_RAW;
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    const size_t id_limit = id_limit_of(vocab, added);
    TRY(parse_vocab(t, vocab, id_limit));
    TRY(parse_added(t, added, id_limit));
    RETURN_IF(t->v.n == 0, CLLM_ERR_FORMAT, "tokenizer.json: the vocabulary is empty");
    TRY(tok_vocab_build_hash(&t->v));
    TRY(parse_model_options(t, model));
    TRY(parse_merges(t, json_object_get(model, "merges")));
    tok_find_byte_pieces(t);
    TRY(parse_normalizer(t, json_object_get(root, "normalizer"), 0));
    TRY(parse_pretokenizer(t, json_object_get(root, "pre_tokenizer"), 0));
    detect_sentencepiece_normalizer(t);
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL};
    t->bos = find_special(t, bos_names);
    t->eos = find_special(t, eos_names);
    return tok_build_decoded(t);
}

cllm_status tok_load_hf(cllm_tokenizer *t, const uint8_t *data, size_t size) {
    json_error_t err;
    json_t *root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &err);
    RETURN_IF(!root, CLLM_ERR_FORMAT, "tokenizer.json: invalid JSON at line %d, column %d: %s",
              err.line, err.column, err.text);
    cllm_status st = parse_root(t, root);
    json_decref(root);
    return st;
}

// ---- tokenizer bundles (docs/FORMAT.md, "Tokenizer bundle") -------------------------------------

// bos_token / eos_token of a bundle: the named token replaces the one found by name. -1 stays
// when the member is absent.
static cllm_status bundle_special(cllm_tokenizer *t, const json_t *root, const char *key,
                                  int32_t *id) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return CLLM_OK;
    RETURN_IF(!json_is_string(v), CLLM_ERR_FORMAT, "tokenizer bundle: \"%s\" is not a string",
              key);
    const char *names[2] = {json_string_value(v), NULL};
    *id = find_special(t, names);
    RETURN_IF(*id < 0, CLLM_ERR_FORMAT, "tokenizer bundle: %s \"%.64s\" is not a token", key,
              names[0]);
    return CLLM_OK;
}

static cllm_status bundle_root(cllm_tokenizer *t, const json_t *root) {
    RETURN_IF(!json_is_object(root), CLLM_ERR_FORMAT, "tokenizer bundle is not a JSON object");
    json_t *ver = json_object_get(root, "codecllm_bundle");
    RETURN_IF(!json_is_integer(ver), CLLM_ERR_FORMAT,
              "tokenizer bundle: \"codecllm_bundle\" (the version) is missing");
    RETURN_IF(json_integer_value(ver) != 1, CLLM_ERR_UNSUPPORTED,
              "tokenizer bundle version %lld (this build reads version 1)",
              (long long)json_integer_value(ver));
    json_t *add = json_object_get(root, "add_bos");
    RETURN_IF(!json_is_boolean(add), CLLM_ERR_FORMAT, "tokenizer bundle: \"add_bos\" is not a "
              "boolean");
    json_t *ct = json_object_get(root, "chat_template");
    RETURN_IF(ct && !json_is_null(ct) && !json_is_string(ct), CLLM_ERR_FORMAT,
              "tokenizer bundle: \"chat_template\" is not a string");
    json_t *src = json_object_get(root, "source");
    RETURN_IF(src && !json_is_null(src) && !json_is_object(src), CLLM_ERR_FORMAT,
              "tokenizer bundle: \"source\" is not an object");
    json_t *tok = json_object_get(root, "tokenizer");
    RETURN_IF(!json_is_object(tok), CLLM_ERR_FORMAT, "tokenizer bundle: \"tokenizer\" is not an "
              "object");
    TRY(parse_root(t, tok));
    TRY(bundle_special(t, root, "bos_token", &t->bos));
    TRY(bundle_special(t, root, "eos_token", &t->eos));
    t->add_bos = json_is_true(add);
    if (json_is_string(ct)) {
        size_t n = json_string_length(ct);
        RETURN_IF(memchr(json_string_value(ct), 0, n), CLLM_ERR_FORMAT,
                  "tokenizer bundle: the chat template holds a NUL character");
        t->chat_template = dup_bytes(json_string_value(ct), n);
        RETURN_IF(!t->chat_template, CLLM_ERR_NOMEM, "out of memory for the chat template");
    }
    return CLLM_OK;
}

cllm_status tok_load_bundle(cllm_tokenizer *t, const uint8_t *data, size_t size) {
    json_error_t err;
    json_t *root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &err);
    RETURN_IF(!root, CLLM_ERR_FORMAT, "tokenizer bundle: invalid JSON at line %d, column %d: %s",
              err.line, err.column, err.text);
    cllm_status st = bundle_root(t, root);
    json_decref(root);
    return st;
}
