// llama2.c tokenizer.bin: loader and SentencePiece-style scored encoding.
//
// File format (little-endian), as llama2.c's export writes it:
//   int32 max_token_length
//   then per token, for ids 0, 1, 2, ... until the end of the file:
//     float32 score, int32 length (0 <= length <= max_token_length), length bytes of the piece
// The token count is not stored. Pieces use a plain ' ' where SentencePiece writes U+2581; the
// Llama 2 vocabulary has <unk> = 0, "\n<s>\n" = 1, "\n</s>\n" = 2 and the byte pieces
// <0x00>..<0xFF> at ids 3..258.
#include "cllm_tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Walks the token records once: validates every length and score and counts the tokens.
static cllm_status llama2c_count(const uint8_t *data, size_t size, size_t *count) {
    RETURN_IF(size < 4, CLLM_ERR_FORMAT, "tokenizer.bin is %zu bytes, too short for a header",
              size);
    int32_t max_len = (int32_t)cllm_load_le32(data);
    RETURN_IF(max_len <= 0 || (size_t)max_len > TOK_MAX_PIECE, CLLM_ERR_FORMAT,
              "tokenizer.bin: max_token_length %d is not in [1, %zu]", max_len, TOK_MAX_PIECE);
    size_t pos = 4, n = 0;
    while (pos < size) {
        RETURN_IF(size - pos < 8, CLLM_ERR_CORRUPT,
                  "tokenizer.bin: token %zu is truncated (%zu bytes left at offset %zu)", n,
                  size - pos, pos);
        uint32_t bits = cllm_load_le32(data + pos);
        float score;
        memcpy(&score, &bits, sizeof score);
        int32_t len = (int32_t)cllm_load_le32(data + pos + 4);
        RETURN_IF(!isfinite(score), CLLM_ERR_CORRUPT, "tokenizer.bin: token %zu has score %g", n,
                  (double)score);
        RETURN_IF(len < 0 || len > max_len, CLLM_ERR_CORRUPT,
                  "tokenizer.bin: token %zu has length %d (max_token_length %d)", n, len, max_len);
        pos += 8;
        RETURN_IF((size_t)len > size - pos, CLLM_ERR_CORRUPT,
                  "tokenizer.bin: token %zu needs %d bytes, %zu are left", n, len, size - pos);
        pos += (size_t)len;
        n++;
        RETURN_IF(n > TOK_MAX_VOCAB, CLLM_ERR_UNSUPPORTED,
                  "tokenizer.bin: more than %zu tokens", TOK_MAX_VOCAB);
    }
    RETURN_IF(n == 0, CLLM_ERR_FORMAT, "tokenizer.bin holds no tokens");
    *count = n;
    return CLLM_OK;
}

// Id of the first of the given pieces present in the vocabulary, or -1.
static int32_t find_any(const tok_vocab *v, const char *a, const char *b) {
    int32_t id = tok_vocab_find(v, (const uint8_t *)a, strlen(a));
    return id >= 0 ? id : tok_vocab_find(v, (const uint8_t *)b, strlen(b));
}

// True when no mergeable piece holds a ' ' right after a non-space byte (Llama 2: spaces only
// lead pieces or form runs). Then no merge crosses such a space, and encoding each word alone
// gives exactly the tokens of encoding the whole text, with a far smaller merge heap.
static int no_inner_spaces(const cllm_tokenizer *t) {
    for (size_t id = 0; id < t->v.n; id++) {
        if (t->v.flags[id] & TOK_F_NOMERGE) continue;
        const uint8_t *s = t->v.text + t->v.off[id];
        for (size_t i = 1; i < t->v.len[id]; i++) {
            if (s[i] == ' ' && s[i - 1] != ' ') return 0;
        }
    }
    return 1;
}

cllm_status tok_load_llama2c(cllm_tokenizer *t, const uint8_t *data, size_t size,
                             size_t vocab_hint) {
    size_t n = 0;
    TRY(llama2c_count(data, size, &n));
    RETURN_IF(vocab_hint && n != vocab_hint, CLLM_ERR_FORMAT,
              "tokenizer.bin has %zu tokens, the model's vocabulary has %zu", n, vocab_hint);
    t->model = TOK_MODEL_SCORED;
    t->decode_mode = TOK_DECODE_RAW;
    t->strip_after_bos = 1;
    TRY(tok_vocab_reserve(&t->v, n));
    t->scores = malloc(n * sizeof *t->scores); // n <= 2^24
    RETURN_IF(!t->scores, CLLM_ERR_NOMEM, "cannot allocate %zu token scores", n);
    size_t pos = 4;
    for (size_t id = 0; id < n; id++) { // bounds were checked by llama2c_count
        uint32_t bits = cllm_load_le32(data + pos);
        memcpy(&t->scores[id], &bits, sizeof bits);
        size_t len = cllm_load_le32(data + pos + 4);
        TRY(tok_vocab_set(&t->v, (int32_t)id, data + pos + 8, len, 1));
        pos += 8 + len;
    }
    TRY(tok_vocab_build_hash(&t->v));
    tok_find_byte_pieces(t);
    t->bos = find_any(&t->v, "\n<s>\n", "<s>");
    t->eos = find_any(&t->v, "\n</s>\n", "</s>");
    t->unk = find_any(&t->v, "<unk>", "\n<unk>\n");
    // SentencePiece never produces control or byte pieces by merging characters.
    if (t->bos >= 0) t->v.flags[t->bos] |= TOK_F_NOMERGE;
    if (t->eos >= 0) t->v.flags[t->eos] |= TOK_F_NOMERGE;
    if (t->unk >= 0) t->v.flags[t->unk] |= TOK_F_NOMERGE;
    for (int b = 0; b < 256; b++) {
        if (t->byte_id[b] >= 0) t->v.flags[t->byte_id[b]] |= TOK_F_NOMERGE;
    }
    t->space_splits = no_inner_spaces(t);
    return tok_build_decoded(t);
}

// Symbols of word[begin, end): each UTF-8 character that is a piece, else its bytes as byte
// pieces (<unk> when the vocabulary lacks them), which never merge. Offsets are into `word`.
static cllm_status scored_symbols(const cllm_tokenizer *t, tok_work *w, const uint8_t *word,
                                  size_t begin, size_t end) {
    for (size_t i = begin; i < end;) {
        size_t cl = tok_utf8_len(word + i, end - i);
        if (cl) {
            int32_t id = tok_vocab_find(&t->v, word + i, cl);
            if (id >= 0 && !(t->v.flags[id] & TOK_F_NOMERGE)) {
                tok_work_push(w, id, i, cl, 0);
                i += cl;
                continue;
            }
        } else {
            cl = 1; // not UTF-8: the byte stands alone
        }
        for (size_t j = i; j < i + cl; j++) {
            int32_t id = t->byte_id[word[j]] >= 0 ? t->byte_id[word[j]] : t->unk;
            RETURN_IF(id < 0, CLLM_ERR_ARG,
                      "byte 0x%02X at offset %zu is not in the vocabulary, which has neither "
                      "byte pieces nor <unk>", word[j], j ? j - 1 : 0);
            tok_work_push(w, id, j, 1, 1);
        }
        i += cl;
    }
    return CLLM_OK;
}

// Encodes word[0, len) (the dummy-prefixed text), split into independent words when
// t->space_splits allows it.
static cllm_status scored_words(const cllm_tokenizer *t, tok_work *w, const uint8_t *word,
                                size_t len, tok_out *out) {
    size_t begin = 0;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && !(t->space_splits && word[i] == ' ' && word[i - 1] != ' ')) continue;
        TRY(tok_work_reserve(w, i - begin)); // at most one symbol per byte
        TRY(scored_symbols(t, w, word, begin, i));
        tok_merge_word(t, w, word, out);
        begin = i;
    }
    return CLLM_OK;
}

cllm_status tok_encode_scored(const cllm_tokenizer *t, const uint8_t *text, size_t len,
                              tok_out *out) {
    if (len == 0) return CLLM_OK; // no dummy prefix for empty text
    // Symbol offsets are 32-bit.
    RETURN_IF(len >= UINT32_MAX, CLLM_ERR_ARG, "text of %zu bytes is too long to encode", len);
    uint8_t *word = malloc(len + 1);
    RETURN_IF(!word, CLLM_ERR_NOMEM, "cannot allocate %zu bytes to encode", len + 1);
    word[0] = ' '; // SentencePiece's dummy prefix (add_dummy_prefix)
    memcpy(word + 1, text, len);
    tok_work w = {0};
    cllm_status st = scored_words(t, &w, word, len + 1, out);
    tok_work_free(&w);
    free(word);
    return st;
}
