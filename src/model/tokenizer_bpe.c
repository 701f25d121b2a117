// Hugging Face tokenizer.json encoding: added tokens, normalizer and pre-tokenizer steps, BPE.
//
// encode(text) = for each span of text between added tokens (matched verbatim, longest first):
//   words = [span]; for each step: words = step(words); for each word: emit BPE(word)
// and each added token emits its id. BPE(word): when ignore_merges and the word is a piece, that
// piece; otherwise the word's UTF-8 characters looked up in the vocabulary (unknown ones become
// byte pieces with byte_fallback, else <unk>), merged by rank (tok_merge_word).
#include "cllm_tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define TOK_MATCH_LIMIT 10000000u // PCRE2 backtracking budget per match: no regex hangs encode

// ---- GPT-2 byte mapping and the merge table ---------------------------------------------------

uint32_t tok_byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    // The 68 other bytes, in order, map to 256, 257, ...: 0..32, then 127..160, then 173.
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67;
}

static size_t merge_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key;
}

cllm_status tok_merges_init(tok_merges *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) {
        RETURN_IF(cap > ((size_t)1 << 40), CLLM_ERR_NOMEM, "%zu merges are too many", n);
        cap *= 2;
    }
    m->keys = malloc(cap * sizeof *m->keys);
    m->ranks = malloc(cap * sizeof *m->ranks);
    m->ids = malloc(cap * sizeof *m->ids);
    RETURN_IF(!m->keys || !m->ranks || !m->ids, CLLM_ERR_NOMEM,
              "cannot allocate a table of %zu merges", n);
    for (size_t i = 0; i < cap; i++) m->ranks[i] = UINT32_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return CLLM_OK;
}

void tok_merges_add(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t h = merge_hash(key) & m->mask;
    for (; m->ranks[h] != UINT32_MAX; h = (h + 1) & m->mask) {
        if (m->keys[h] == key) return; // duplicate: the first (lowest) rank stays
    }
    m->keys[h] = key;
    m->ranks[h] = rank;
    m->ids[h] = id;
    m->n++;
}

int tok_merges_find(const tok_merges *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    if (!m->keys) return 0;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t h = merge_hash(key) & m->mask; m->ranks[h] != UINT32_MAX; h = (h + 1) & m->mask) {
        if (m->keys[h] == key) {
            *rank = m->ranks[h];
            *id = m->ids[h];
            return 1;
        }
    }
    return 0;
}

void tok_steps_free(cllm_tokenizer *t) {
    for (size_t i = 0; i < t->n_steps; i++) {
        free(t->steps[i].a);
        free(t->steps[i].b);
        pcre2_code_free(t->steps[i].re);
    }
    t->n_steps = 0;
}

// ---- word lists -------------------------------------------------------------------------------

typedef struct tok_span {
    size_t off, len;
} tok_span;

// A list of words: their bytes in `buf`, spans in `w`. A word is built with words_put calls
// between words_open and words_close; empty words are dropped.
typedef struct tok_words {
    uint8_t *buf;
    size_t len, cap;
    tok_span *w;
    size_t n, ncap;
    size_t open_at;
} tok_words;

static void words_free(tok_words *ws) {
    free(ws->buf);
    free(ws->w);
}

static cllm_status words_put(tok_words *ws, const void *s, size_t n) {
    size_t need;
    RETURN_IF(cllm_add_overflow(ws->len, n, &need), CLLM_ERR_NOMEM, "text too long");
    if (need > ws->cap) {
        size_t cap = ws->cap ? ws->cap : 256;
        while (cap < need) RETURN_IF(cllm_mul_overflow(cap, 2, &cap), CLLM_ERR_NOMEM, "too long");
        uint8_t *nb = realloc(ws->buf, cap);
        RETURN_IF(!nb, CLLM_ERR_NOMEM, "cannot allocate %zu bytes of words", cap);
        ws->buf = nb;
        ws->cap = cap;
    }
    if (n) memcpy(ws->buf + ws->len, s, n);
    ws->len = need;
    return CLLM_OK;
}

static void words_open(tok_words *ws) { ws->open_at = ws->len; }

static cllm_status words_close(tok_words *ws) {
    if (ws->len == ws->open_at) return CLLM_OK;
    if (ws->n == ws->ncap) {
        size_t cap = ws->ncap ? 2 * ws->ncap : 64;
        tok_span *nw = realloc(ws->w, cap * sizeof *nw); // cap <= bytes of text: no overflow
        RETURN_IF(!nw, CLLM_ERR_NOMEM, "cannot allocate %zu words", cap);
        ws->w = nw;
        ws->ncap = cap;
    }
    ws->w[ws->n++] = (tok_span){ws->open_at, ws->len - ws->open_at};
    return CLLM_OK;
}

// Adds the word a + b (either may be empty).
static cllm_status words_add2(tok_words *ws, const void *a, size_t an, const void *b, size_t bn) {
    words_open(ws);
    TRY(words_put(ws, a, an));
    TRY(words_put(ws, b, bn));
    return words_close(ws);
}

// ---- steps ------------------------------------------------------------------------------------

// Per-call matching state (PCRE2 match data is not shareable across threads).
typedef struct tok_ctx {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    tok_words a, b;
    tok_work work;
} tok_ctx;

// Adds the pieces of `s` cut by the matches of `re` according to `behavior`.
static cllm_status split_word(const tok_step *st, tok_ctx *ctx, const uint8_t *s, size_t n,
                              tok_words *out) {
    size_t pos = 0, cut = 0;
    while (pos < n) {
        int rc = pcre2_match(st->re, s, n, pos, PCRE2_NO_UTF_CHECK, ctx->md, ctx->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "pre-tokenizer regex failed: %s", (char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ctx->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { // an empty match cuts nothing; step over one character
            size_t cl = ms < n ? tok_utf8_len(s + ms, n - ms) : 1;
            pos = ms + (cl ? cl : 1);
            continue;
        }
        size_t end = st->behavior == TOK_SPLIT_MERGED_PREVIOUS ? me : ms;
        TRY(words_add2(out, s + cut, end - cut, NULL, 0));
        cut = end;
        if (st->behavior == TOK_SPLIT_ISOLATED) TRY(words_add2(out, s + ms, me - ms, NULL, 0));
        if (st->behavior != TOK_SPLIT_MERGED_NEXT) cut = me;
        pos = me;
    }
    return words_add2(out, s + cut, n - cut, NULL, 0);
}

static cllm_status replace_word(const tok_step *st, const uint8_t *s, size_t n, tok_words *out) {
    words_open(out);
    for (size_t i = 0; i < n;) {
        if (i + st->a_len <= n && memcmp(s + i, st->a, st->a_len) == 0) {
            TRY(words_put(out, st->b, st->b_len));
            i += st->a_len;
        } else {
            TRY(words_put(out, s + i, 1));
            i++;
        }
    }
    return words_close(out);
}

static cllm_status bytemap_word(const uint8_t *s, size_t n, tok_words *out) {
    words_open(out);
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_byte_to_cp(s[i]); // < 0x800: one or two UTF-8 bytes
        uint8_t u[2] = {(uint8_t)(0xC0 | (cp >> 6)), (uint8_t)(0x80 | (cp & 0x3F))};
        if (cp < 0x80) TRY(words_put(out, &s[i], 1));
        else TRY(words_put(out, u, 2));
    }
    return words_close(out);
}

static int starts_with(const uint8_t *s, size_t n, const char *p, size_t pn) {
    return n >= pn && memcmp(s, p, pn) == 0;
}

// Applies one step to word i of the list. `first` is set for the first word of a segment that
// starts at the beginning of the text.
static cllm_status step_word(const tok_step *st, tok_ctx *ctx, const uint8_t *s, size_t n,
                             int first, tok_words *out) {
    switch (st->kind) {
    case TOK_STEP_PREPEND: return words_add2(out, st->a, st->a_len, s, n);
    case TOK_STEP_REPLACE: return replace_word(st, s, n, out);
    case TOK_STEP_SPLIT: return split_word(st, ctx, s, n, out);
    case TOK_STEP_BYTEMAP: return bytemap_word(s, n, out);
    case TOK_STEP_PREFIX_SPACE: {
        int add = !starts_with(s, n, " ", 1);
        return words_add2(out, " ", add ? 1 : 0, s, n);
    }
    case TOK_STEP_META_PREPEND:
    case TOK_STEP_META_PREPEND_FIRST: {
        int add = !starts_with(s, n, st->a, st->a_len) &&
                  (st->kind == TOK_STEP_META_PREPEND || first);
        return words_add2(out, st->a, add ? st->a_len : 0, s, n);
    }
    }
    return CLLM_FAIL(CLLM_ERR_INTERNAL, "unknown tokenizer step %d", (int)st->kind);
}

// ---- BPE --------------------------------------------------------------------------------------

// Symbols of one word: its characters, unknown ones as byte pieces, <unk> or an error.
static cllm_status bpe_symbols(const cllm_tokenizer *t, tok_work *w, const uint8_t *s, size_t n) {
    int last_unk = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = tok_utf8_len(s + i, n - i);
        if (cl == 0) cl = 1; // cannot happen on validated text; stay safe
        int32_t id = tok_vocab_find(&t->v, s + i, cl);
        int fallback = id < 0 && t->byte_fallback;
        for (size_t j = i; fallback && j < i + cl; j++) fallback = t->byte_id[s[j]] >= 0;
        if (id >= 0) {
            tok_work_push(w, id, i, cl, 0);
        } else if (fallback) {
            for (size_t j = i; j < i + cl; j++) tok_work_push(w, t->byte_id[s[j]], j, 1, 0);
        } else if (t->unk >= 0 && t->fuse_unk && last_unk) {
            w->sym[w->n_sym - 1].len += (uint32_t)cl;
        } else if (t->unk >= 0) {
            tok_work_push(w, t->unk, i, cl, 0);
        } else {
            return CLLM_FAIL(CLLM_ERR_ARG,
                             "character \"%.*s\" is not in the vocabulary, which has no byte "
                             "fallback and no unk token", (int)cl, (const char *)(s + i));
        }
        last_unk = id < 0 && !fallback;
        i += cl;
    }
    return CLLM_OK;
}

static cllm_status bpe_word(const cllm_tokenizer *t, tok_ctx *ctx, const uint8_t *s, size_t n,
                            tok_out *out) {
    if (t->ignore_merges) {
        int32_t id = tok_vocab_find(&t->v, s, n);
        if (id >= 0) {
            tok_emit(out, id);
            return CLLM_OK;
        }
    }
    TRY(tok_work_reserve(&ctx->work, n)); // at most one symbol per byte
    TRY(bpe_symbols(t, &ctx->work, s, n));
    tok_merge_word(t, &ctx->work, s, out);
    return CLLM_OK;
}

// Runs the steps and BPE over one span of text between added tokens.
static cllm_status encode_segment(const cllm_tokenizer *t, tok_ctx *ctx, const uint8_t *s,
                                  size_t n, int at_start, tok_out *out) {
    tok_words *in = &ctx->a, *next = &ctx->b;
    in->len = in->n = 0;
    TRY(words_add2(in, s, n, NULL, 0));
    for (size_t k = 0; k < t->n_steps; k++) {
        next->len = next->n = 0;
        for (size_t i = 0; i < in->n; i++) {
            TRY(step_word(&t->steps[k], ctx, in->buf + in->w[i].off, in->w[i].len,
                          at_start && i == 0, next));
        }
        tok_words *tmp = in;
        in = next;
        next = tmp;
    }
    for (size_t i = 0; i < in->n; i++) TRY(bpe_word(t, ctx, in->buf + in->w[i].off, in->w[i].len,
                                                   out));
    return CLLM_OK;
}

// The added token starting at s (longest first), or NULL.
static const tok_added *match_added(const cllm_tokenizer *t, const uint8_t *s, size_t n) {
    for (size_t k = 0; k < t->n_added; k++) {
        const tok_added *a = &t->added[k];
        if (a->len <= n && memcmp(s, t->added_text + a->off, a->len) == 0) return a;
    }
    return NULL;
}

static cllm_status encode_text(const cllm_tokenizer *t, tok_ctx *ctx, const uint8_t *s,
                               size_t n, tok_out *out) {
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        const tok_added *a = t->added_first[s[i]] ? match_added(t, s + i, n - i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        if (i > seg) TRY(encode_segment(t, ctx, s + seg, i - seg, seg == 0, out));
        tok_emit(out, a->id);
        i += a->len;
        seg = i;
    }
    if (n > seg) TRY(encode_segment(t, ctx, s + seg, n - seg, seg == 0, out));
    return CLLM_OK;
}

cllm_status tok_encode_ranked(const cllm_tokenizer *t, const uint8_t *text, size_t len,
                              tok_out *out) {
    // Hugging Face tokenizers take Unicode strings; the regexes below rely on valid UTF-8.
    for (size_t i = 0; i < len;) {
        size_t cl = tok_utf8_len(text + i, len - i);
        RETURN_IF(cl == 0, CLLM_ERR_ARG, "text is not valid UTF-8 at byte %zu", i);
        i += cl;
    }
    tok_ctx ctx = {0};
    cllm_status st = CLLM_OK;
    ctx.md = pcre2_match_data_create(1, NULL);
    ctx.mctx = pcre2_match_context_create(NULL);
    if (!ctx.md || !ctx.mctx) st = CLLM_FAIL(CLLM_ERR_NOMEM, "cannot allocate regex match data");
    if (st == CLLM_OK) {
        pcre2_set_match_limit(ctx.mctx, TOK_MATCH_LIMIT);
        st = encode_text(t, &ctx, text, len, out);
    }
    pcre2_match_data_free(ctx.md);
    pcre2_match_context_free(ctx.mctx);
    words_free(&ctx.a);
    words_free(&ctx.b);
    tok_work_free(&ctx.work);
    return st;
}
