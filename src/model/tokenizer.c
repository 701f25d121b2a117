// Tokenizer public API, the vocabulary (piece arena + hash table) and decoding.
// See cllm_tokenizer.h for the layout and the split of the tokenizer files.
#include "cllm_tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define TOK_MAX_FILE ((size_t)512 << 20) // tokenizer files we read (real ones: < 20 MB)

// ---- small helpers ----------------------------------------------------------------------------

size_t tok_utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t need;
    uint32_t min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, min = 0x10000;
    else return 0;
    if (n < need) return 0;
    uint32_t cp = c & (0x7F >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    return need;
}

int tok_parse_byte_piece(const uint8_t *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

void tok_find_byte_pieces(cllm_tokenizer *t) {
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (size_t id = 0; id < t->v.n; id++) {
        if (!(t->v.flags[id] & TOK_F_MODEL)) continue;
        int b = tok_parse_byte_piece(t->v.text + t->v.off[id], t->v.len[id]);
        if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = (int32_t)id;
    }
}

// Appends n bytes to a growable arena; *off receives where they start.
static cllm_status arena_append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *s,
                                size_t n, size_t *off) {
    size_t need;
    RETURN_IF(cllm_add_overflow(*len, n, &need), CLLM_ERR_NOMEM, "tokenizer arena overflows");
    if (need > *cap || !*buf) { // allocated even for empty pieces: offsets index a real buffer
        size_t ncap = *cap ? *cap : 4096;
        while (ncap < need) {
            RETURN_IF(cllm_mul_overflow(ncap, 2, &ncap), CLLM_ERR_NOMEM, "arena overflows");
        }
        uint8_t *nb = realloc(*buf, ncap);
        RETURN_IF(!nb, CLLM_ERR_NOMEM, "cannot grow the tokenizer arena to %zu bytes", ncap);
        *buf = nb;
        *cap = ncap;
    }
    if (n) memcpy(*buf + *len, s, n);
    *off = *len;
    *len = need;
    return CLLM_OK;
}

// ---- vocabulary -------------------------------------------------------------------------------

static cllm_status grow_array(void **p, size_t count, size_t elem) {
    size_t bytes;
    RETURN_IF(cllm_mul_overflow(count, elem, &bytes), CLLM_ERR_NOMEM, "vocabulary too large");
    void *np = realloc(*p, bytes ? bytes : 1);
    RETURN_IF(!np, CLLM_ERR_NOMEM, "cannot allocate %zu bytes for the vocabulary", bytes);
    *p = np;
    return CLLM_OK;
}

cllm_status tok_vocab_reserve(tok_vocab *v, size_t n) {
    RETURN_IF(n > TOK_MAX_VOCAB, CLLM_ERR_UNSUPPORTED, "vocabulary of %zu tokens (at most %zu)",
              n, TOK_MAX_VOCAB);
    if (n <= v->n) return CLLM_OK;
    if (n > v->id_cap) {
        size_t cap = v->id_cap ? v->id_cap : 256;
        while (cap < n) cap *= 2; // n <= 2^24: no overflow
        TRY(grow_array((void **)&v->off, cap, sizeof *v->off));
        TRY(grow_array((void **)&v->dec_off, cap, sizeof *v->dec_off));
        TRY(grow_array((void **)&v->len, cap, sizeof *v->len));
        TRY(grow_array((void **)&v->dec_len_of, cap, sizeof *v->dec_len_of));
        TRY(grow_array((void **)&v->flags, cap, sizeof *v->flags));
        v->id_cap = cap;
    }
    for (size_t i = v->n; i < n; i++) {
        v->off[i] = v->dec_off[i] = 0;
        v->len[i] = v->dec_len_of[i] = 0;
        v->flags[i] = 0;
    }
    v->n = n;
    return CLLM_OK;
}

cllm_status tok_vocab_set(tok_vocab *v, int32_t id, const uint8_t *s, size_t len, int in_model) {
    RETURN_IF(id < 0 || (size_t)id >= v->n, CLLM_ERR_INTERNAL, "token id %d out of range", id);
    RETURN_IF(v->flags[id] & TOK_F_PRESENT, CLLM_ERR_CORRUPT, "token id %d is given twice", id);
    RETURN_IF(len > TOK_MAX_PIECE, CLLM_ERR_UNSUPPORTED, "token %d is %zu bytes long", id, len);
    TRY(arena_append(&v->text, &v->text_len, &v->text_cap, s, len, &v->off[id]));
    v->len[id] = (uint32_t)len;
    v->flags[id] |= (uint8_t)(TOK_F_PRESENT | (in_model ? TOK_F_MODEL : 0));
    return CLLM_OK;
}

static size_t piece_hash(const uint8_t *s, size_t len) { return (size_t)XXH3_64bits(s, len); }

int32_t tok_vocab_find(const tok_vocab *v, const uint8_t *s, size_t len) {
    if (!v->slots) return -1;
    for (size_t h = piece_hash(s, len) & v->mask;; h = (h + 1) & v->mask) {
        uint32_t slot = v->slots[h];
        if (slot == 0) return -1;
        uint32_t id = slot - 1;
        if (v->len[id] == len && memcmp(v->text + v->off[id], s, len) == 0) return (int32_t)id;
    }
}

cllm_status tok_vocab_build_hash(tok_vocab *v) {
    size_t cap = 16;
    while (cap < 2 * v->n) cap *= 2; // n <= 2^24
    free(v->slots);
    v->slots = calloc(cap, sizeof *v->slots);
    RETURN_IF(!v->slots, CLLM_ERR_NOMEM, "cannot allocate the vocabulary hash (%zu slots)", cap);
    v->mask = cap - 1;
    v->n_hashed = 0;
    for (size_t id = 0; id < v->n; id++) {
        if (!(v->flags[id] & TOK_F_MODEL)) continue;
        const uint8_t *s = v->text + v->off[id];
        if (tok_vocab_find(v, s, v->len[id]) >= 0) continue; // duplicate piece: lower id wins
        size_t h = piece_hash(s, v->len[id]) & v->mask;
        while (v->slots[h]) h = (h + 1) & v->mask;
        v->slots[h] = (uint32_t)id + 1;
        v->n_hashed++;
    }
    return CLLM_OK;
}

static void vocab_free(tok_vocab *v) {
    free(v->text);
    free(v->dec);
    free(v->off);
    free(v->dec_off);
    free(v->len);
    free(v->dec_len_of);
    free(v->flags);
    free(v->slots);
}

// ---- decoded forms ----------------------------------------------------------------------------

// Inverse of tok_byte_to_cp over the 324 code points it produces (-1: not produced).
static void bytelevel_inverse(int16_t inv[324]) {
    for (int i = 0; i < 324; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;
}

// Decoded bytes of a byte-level piece into out (capacity >= len); 0 when a character is outside
// the mapping (the caller then keeps the piece as it is, as Hugging Face's decoder does).
static size_t decode_bytelevel(const int16_t inv[324], const uint8_t *s, size_t len,
                               uint8_t *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t cl = tok_utf8_len(s + i, len - i);
        if (cl == 0 || cl > 2) return 0;
        uint32_t cp = cl == 1 ? s[i] : ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
        if (cp >= 324 || inv[cp] < 0) return 0;
        out[n++] = (uint8_t)inv[cp];
        i += cl;
    }
    return n;
}

// Metaspace: the replacement string becomes ' ' (out capacity >= len).
static size_t decode_metaspace(const char *rep, const uint8_t *s, size_t len, uint8_t *out) {
    size_t rl = strlen(rep), n = 0;
    for (size_t i = 0; i < len;) {
        if (rl && i + rl <= len && memcmp(s + i, rep, rl) == 0) {
            out[n++] = ' ';
            i += rl;
        } else {
            out[n++] = s[i++];
        }
    }
    return n;
}

// Decoded form of one model piece into out (capacity >= len, len <= TOK_MAX_PIECE).
static size_t decode_piece(const cllm_tokenizer *t, const int16_t inv[324], const uint8_t *s,
                           size_t len, uint8_t *out) {
    int b = tok_parse_byte_piece(s, len);
    if (b >= 0 && (t->model == TOK_MODEL_SCORED || t->byte_fallback)) {
        out[0] = (uint8_t)b;
        return 1;
    }
    size_t n = 0;
    if (t->decode_mode == TOK_DECODE_BYTELEVEL) n = decode_bytelevel(inv, s, len, out);
    else if (t->decode_mode == TOK_DECODE_METASPACE) n = decode_metaspace(t->replacement, s, len,
                                                                          out);
    if (n == 0) {
        memcpy(out, s, len);
        n = len;
    }
    return n;
}

cllm_status tok_build_decoded(cllm_tokenizer *t) {
    tok_vocab *v = &t->v;
    int16_t inv[324];
    bytelevel_inverse(inv);
    uint8_t *tmp = malloc(TOK_MAX_PIECE);
    RETURN_IF(!tmp, CLLM_ERR_NOMEM, "cannot allocate decode scratch");
    cllm_status st = CLLM_OK;
    for (size_t id = 0; id < v->n && st == CLLM_OK; id++) {
        if (!(v->flags[id] & TOK_F_PRESENT)) continue;
        const uint8_t *s = v->text + v->off[id];
        size_t n = v->len[id];
        if (v->flags[id] & TOK_F_MODEL) n = decode_piece(t, inv, s, n, tmp);
        else memcpy(tmp, s, n);
        st = arena_append(&v->dec, &v->dec_len, &v->dec_cap, tmp, n, &v->dec_off[id]);
        v->dec_len_of[id] = (uint32_t)n;
    }
    free(tmp);
    TRY(st);
    // Added tokens decode to their content, whatever the model vocabulary says for the same id.
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        TRY(arena_append(&v->dec, &v->dec_len, &v->dec_cap, t->added_text + a->off, a->len,
                         &v->dec_off[a->id]));
        v->dec_len_of[a->id] = a->len;
    }
    return CLLM_OK;
}

// ---- public API -------------------------------------------------------------------------------

void cllm_tokenizer_free(cllm_tokenizer *t) {
    if (!t) return;
    vocab_free(&t->v);
    free(t->scores);
    free(t->merges.keys);
    free(t->merges.ranks);
    free(t->merges.ids);
    tok_steps_free(t);
    free(t->added);
    free(t->added_text);
    free(t->chat_template);
    free(t);
}

cllm_status cllm_tokenizer_load(cllm_tokenizer_kind kind, const uint8_t *data, size_t size,
                                size_t vocab_hint, cllm_tokenizer **out) {
    RETURN_IF(!out, CLLM_ERR_ARG, "tokenizer_load: out is NULL");
    *out = NULL;
    RETURN_IF(!data && size, CLLM_ERR_ARG, "tokenizer_load: data is NULL");
    cllm_tokenizer *t = calloc(1, sizeof *t);
    RETURN_IF(!t, CLLM_ERR_NOMEM, "cannot allocate a tokenizer");
    t->bos = t->eos = t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    cllm_status st;
    if (kind == CLLM_TOKENIZER_LLAMA2C) {
        st = tok_load_llama2c(t, data, size, vocab_hint);
        t->add_bos = 1;
    } else if (kind == CLLM_TOKENIZER_HF_JSON || kind == CLLM_TOKENIZER_BUNDLE) {
        if (kind == CLLM_TOKENIZER_HF_JSON) {
            st = tok_load_hf(t, data, size);
            t->add_bos = t->bos >= 0; // GPT-2 has none; Llama's post-processor adds it
        } else {
            st = tok_load_bundle(t, data, size);
        }
        if (st == CLLM_OK && vocab_hint && t->v.n > vocab_hint) {
            st = CLLM_FAIL(CLLM_ERR_FORMAT, "the tokenizer has %zu tokens, the model only %zu",
                           t->v.n, vocab_hint);
        }
    } else {
        st = CLLM_FAIL(CLLM_ERR_ARG, "tokenizer kind %d is not a tokenizer", (int)kind);
    }
    if (st != CLLM_OK) {
        cllm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CLLM_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// The tokenizer stored in a .cllm container; the model's vocabulary size is the hint.
static cllm_status open_from_container(const char *path, cllm_tokenizer **out) {
    cllm_container *c = NULL;
    TRY(cllm_container_open(path, &c));
    const uint8_t *data = NULL;
    size_t size = 0;
    cllm_tokenizer_kind kind = cllm_container_tokenizer(c, &data, &size);
    const cllm_model_config *cfg = cllm_container_config(c);
    size_t hint = cfg ? cfg->vocab_size : 0;
    cllm_status st;
    if (cllm_container_is_archive(c))
        st = CLLM_FAIL(CLLM_ERR_FORMAT, "%s is a packed safetensors archive, not a model: use "
                       "codecllm unpack", path);
    else if (kind == CLLM_TOKENIZER_NONE) st = CLLM_FAIL(CLLM_ERR_FORMAT, "it holds no tokenizer");
    else st = cllm_tokenizer_load(kind, data, size, hint, out);
    cllm_container_free(c); // the bytes were copied
    return st;
}

cllm_status cllm_tokenizer_open(const char *path, cllm_tokenizer **out) {
    RETURN_IF(!out, CLLM_ERR_ARG, "tokenizer_open: out is NULL");
    *out = NULL;
    RETURN_IF(!path, CLLM_ERR_ARG, "tokenizer_open: path is NULL");
    cllm_status st;
    if (ends_with(path, ".cllm")) {
        st = open_from_container(path, out);
    } else {
        uint8_t *data = NULL;
        size_t size = 0;
        st = cllm_read_file(path, TOK_MAX_FILE, &data, &size);
        if (st == CLLM_OK) {
            cllm_tokenizer_kind kind =
                ends_with(path, ".json") ? CLLM_TOKENIZER_HF_JSON : CLLM_TOKENIZER_LLAMA2C;
            st = cllm_tokenizer_load(kind, data, size, 0, out);
        }
        free(data);
    }
    if (st != CLLM_OK) return cllm_error_context(st, "%s", path);
    return CLLM_OK;
}

size_t cllm_tokenizer_vocab_size(const cllm_tokenizer *t) { return t ? t->v.n : 0; }
int32_t cllm_tokenizer_bos(const cllm_tokenizer *t) { return t ? t->bos : -1; }
int32_t cllm_tokenizer_eos(const cllm_tokenizer *t) { return t ? t->eos : -1; }
int cllm_tokenizer_add_bos(const cllm_tokenizer *t) { return t ? t->add_bos : 0; }
const char *cllm_tokenizer_chat_template(const cllm_tokenizer *t) {
    return t ? t->chat_template : NULL;
}

cllm_status cllm_tokenizer_encode(const cllm_tokenizer *t, const char *text, size_t len,
                                  int add_bos, int32_t *tokens, size_t cap, size_t *n_tokens) {
    RETURN_IF(!t || !n_tokens, CLLM_ERR_ARG, "tokenizer_encode: NULL tokenizer or n_tokens");
    *n_tokens = 0;
    RETURN_IF(!text && len, CLLM_ERR_ARG, "tokenizer_encode: text is NULL");
    RETURN_IF(!tokens && cap, CLLM_ERR_ARG, "tokenizer_encode: tokens is NULL");
    tok_out out = {tokens, cap, 0};
    // A vocabulary without BOS (GPT-2) ignores add_bos.
    if (add_bos && t->bos >= 0) tok_emit(&out, t->bos);
    const uint8_t *s = (const uint8_t *)text;
    if (t->model == TOK_MODEL_SCORED) TRY(tok_encode_scored(t, s, len, &out));
    else TRY(tok_encode_ranked(t, s, len, &out));
    *n_tokens = out.n;
    RETURN_IF(out.n > cap, CLLM_ERR_ARG, "the text needs %zu tokens, the buffer holds %zu", out.n,
              cap);
    return CLLM_OK;
}

cllm_status cllm_tokenizer_decode_token(const cllm_tokenizer *t, int32_t prev, int32_t token,
                                        char *buf, size_t cap, size_t *len) {
    RETURN_IF(!t || !len, CLLM_ERR_ARG, "tokenizer_decode_token: NULL tokenizer or len");
    *len = 0;
    RETURN_IF(token < 0 || (size_t)token >= t->v.n, CLLM_ERR_ARG,
              "token %d is outside the vocabulary (%zu tokens)", token, t->v.n);
    const uint8_t *s = t->v.dec + t->v.dec_off[token];
    size_t n = t->v.dec_len_of[token];
    // SentencePiece: the first piece after BOS carries the dummy-prefix space; drop it.
    if (t->strip_after_bos && prev >= 0 && prev == t->bos && n > 0 && s[0] == ' ') s++, n--;
    *len = n;
    RETURN_IF(n > cap || (!buf && n), CLLM_ERR_ARG,
              "token %d decodes to %zu bytes, the buffer holds %zu", token, n, cap);
    if (n) memcpy(buf, s, n);
    return CLLM_OK;
}
