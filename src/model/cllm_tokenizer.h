// Internal layout of cllm_tokenizer, shared by the tokenizer files of the model stage:
//
//   tokenizer.c         public API, the vocabulary (piece arena + hash table), decoding
//   tokenizer_merge.c   the merge engine both models use (linked symbols + a priority heap)
//   tokenizer_spm.c     llama2.c tokenizer.bin: loader and scored (SentencePiece-style) encoding
//   tokenizer_hf.c      Hugging Face tokenizer.json: parsing into the structures below
//   tokenizer_bpe.c     Hugging Face encoding: added tokens, normalizer/pre-tokenizer steps, BPE
//
// Depends on common only. A tokenizer is immutable after loading, so encode and decode may run on
// several threads at once; encode allocates its own scratch per call.
//
// Two models:
//   SCORED (llama2.c): every piece has a score; encoding starts from UTF-8 characters and
//     repeatedly merges the adjacent pair whose concatenation is a piece with the highest score
//     (leftmost on ties). Byte-fallback, BOS/EOS/UNK pieces never result from a merge.
//   RANKED (Hugging Face BPE): a table of merges (id_a, id_b) -> (rank, id_ab); encoding starts
//     from characters and repeatedly applies the merge of lowest rank (leftmost on ties).
// Both are the same loop with a different pair priority (tok_merge_word).
#ifndef CLLM_TOKENIZER_H
#define CLLM_TOKENIZER_H

#include "../common/cllm_common.h"

#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define TOK_MAX_VOCAB ((size_t)1 << 24) // ids are < 16M (largest real vocabularies: ~256k)
#define TOK_MAX_PIECE ((size_t)1 << 16) // bytes of one piece / added token
#define TOK_MAX_STEPS 32                // flattened normalizer + pre-tokenizer steps

typedef enum tok_model { TOK_MODEL_SCORED = 1, TOK_MODEL_RANKED = 2 } tok_model;

// How a token id turns back into bytes (computed once at load into the `dec` arena).
typedef enum tok_decode_mode {
    TOK_DECODE_RAW = 0,       // piece bytes; <0xNN> byte pieces -> the byte (llama2.c)
    TOK_DECODE_METASPACE = 1, // as RAW, and the replacement ("▁") -> ' '
    TOK_DECODE_BYTELEVEL = 2, // GPT-2 byte<->unicode mapping reversed
} tok_decode_mode;

// Per-id flags.
enum {
    TOK_F_PRESENT = 1, // the id has a piece (HF vocabularies may have holes)
    TOK_F_NOMERGE = 2, // SCORED: never the result of a merge (control and byte pieces)
    TOK_F_ADDED = 4,   // an added token (matched verbatim before the model runs)
    TOK_F_MODEL = 8,   // the piece belongs to the model's vocabulary (hashed for lookups)
};

// The pieces, one per id: model-form bytes (what the vocabulary file says, e.g. "Ġthe", "▁the",
// " the") in `text`, and the decoded bytes in `dec`. Offsets are into the arenas; the hash table
// maps model-form bytes to ids (open addressing, slot = id + 1, 0 = empty; capacity a power of 2
// at least twice the number of pieces).
typedef struct tok_vocab {
    size_t n;              // ids are 0..n-1
    size_t id_cap;         // allocated length of the per-id arrays
    uint8_t *text;         // model-form arena
    size_t text_len, text_cap;
    uint8_t *dec;          // decoded arena
    size_t dec_len, dec_cap;
    size_t *off, *dec_off; // (n)
    uint32_t *len, *dec_len_of; // (n)
    uint8_t *flags;        // (n) TOK_F_*
    uint32_t *slots;       // (mask + 1)
    size_t mask;
    size_t n_hashed;
} tok_vocab;

// Merge table of the RANKED model: key (id_a << 32 | id_b) -> rank and merged id; open addressing,
// rank UINT32_MAX marks an empty slot.
typedef struct tok_merges {
    uint64_t *keys;
    uint32_t *ranks;
    int32_t *ids;
    size_t mask;
    size_t n;
} tok_merges;

// One normalizer or pre-tokenizer step. A segment of text (between added tokens) becomes a list
// of words; each step maps the list to a new list, in order. HF's composite components are
// flattened into these at load (ByteLevel = PREFIX_SPACE? + SPLIT(GPT-2 regex)? + BYTEMAP;
// Metaspace = REPLACE(" " -> "▁") + PREPEND_FIRST/ALWAYS + SPLIT("▁", merged with next)?).
typedef enum tok_step_kind {
    TOK_STEP_PREPEND = 1,        // normalizer Prepend: s + word, for non-empty words
    TOK_STEP_REPLACE,            // normalizer Replace with a literal pattern
    TOK_STEP_SPLIT,              // Split by a PCRE2 pattern with a behaviour
    TOK_STEP_PREFIX_SPACE,       // ByteLevel add_prefix_space: ' ' + word unless it starts so
    TOK_STEP_BYTEMAP,            // ByteLevel: bytes -> GPT-2 unicode characters
    TOK_STEP_META_PREPEND,       // Metaspace: s + word unless it starts with s (all words)
    TOK_STEP_META_PREPEND_FIRST, // ... only the first word of a segment at the start of the text
} tok_step_kind;

typedef enum tok_split_behavior {
    TOK_SPLIT_ISOLATED = 0,     // gaps and matches are words of their own
    TOK_SPLIT_REMOVED,          // matches are dropped
    TOK_SPLIT_MERGED_PREVIOUS,  // a match ends the word before it
    TOK_SPLIT_MERGED_NEXT,      // a match starts the word after it
} tok_split_behavior;

typedef struct tok_step {
    tok_step_kind kind;
    tok_split_behavior behavior;
    char *a, *b;          // PREPEND/META_*: a; REPLACE: a -> b (malloc'd, NUL-terminated)
    size_t a_len, b_len;
    pcre2_code *re;       // SPLIT
} tok_step;

typedef struct tok_added {
    int32_t id;
    uint32_t len;
    size_t off;                // content is added_text[off, off + len)
} tok_added;

struct cllm_tokenizer {
    tok_model model;
    tok_vocab v;
    int32_t bos, eos, unk;     // -1 when absent
    int add_bos;               // prompts start with BOS (cllm_tokenizer_add_bos)
    char *chat_template;       // NUL-terminated Jinja text, NULL when none
    int32_t byte_id[256];      // id of the <0xNN> piece of each byte, -1 when absent
    int byte_fallback;         // unknown characters become byte pieces
    float *scores;             // SCORED: (n)
    int space_splits;          // SCORED: no mergeable piece has a ' ' after a non-space, so the
                               // text splits before such spaces into words merged separately
    tok_merges merges;         // RANKED
    int ignore_merges;         // RANKED: a word that is a piece is emitted whole
    int fuse_unk;              // RANKED: consecutive unknown characters give one <unk>
    tok_decode_mode decode_mode;
    int strip_after_bos;       // decode drops the leading ' ' of the piece after BOS
    char replacement[8];       // METASPACE: the replacement character's bytes (NUL-terminated)
    tok_step steps[TOK_MAX_STEPS];
    size_t n_steps;
    tok_added *added;          // added tokens, longest content first
    size_t n_added;
    uint8_t *added_text;       // their contents, concatenated
    uint8_t added_first[256];  // 1: some added token starts with this byte
};

// ---- tokenizer.c: vocabulary ------------------------------------------------------------------
// Grows the per-id arrays so that ids < n exist (new ids are holes).
cllm_status tok_vocab_reserve(tok_vocab *v, size_t n);
// Sets the piece of `id` (< v->n); `in_model` marks it as part of the model vocabulary (looked up
// by tok_vocab_find). Fails with CORRUPT when `id` already has a piece.
cllm_status tok_vocab_set(tok_vocab *v, int32_t id, const uint8_t *s, size_t len, int in_model);
// Id of the piece equal to s[0..len), or -1.
int32_t tok_vocab_find(const tok_vocab *v, const uint8_t *s, size_t len);
// Builds the hash table over the model pieces (call once all pieces are set); when two ids have
// the same piece, the lower id is found.
cllm_status tok_vocab_build_hash(tok_vocab *v);
// Fills the decoded arena for every id according to t->decode_mode / t->byte_fallback.
cllm_status tok_build_decoded(cllm_tokenizer *t);
// Byte value of a "<0xNN>" piece, or -1.
int tok_parse_byte_piece(const uint8_t *s, size_t len);
// Fills t->byte_id from the vocabulary's <0xNN> pieces.
void tok_find_byte_pieces(cllm_tokenizer *t);
// Length of the UTF-8 character at s[0..n) (n > 0): 1..4 for a valid sequence, 0 when invalid.
size_t tok_utf8_len(const uint8_t *s, size_t n);

// ---- tokenizer_merge.c ------------------------------------------------------------------------
// Output of an encoding: ids are written while n < cap; n counts them all.
typedef struct tok_out {
    int32_t *tokens;
    size_t cap;
    size_t n;
} tok_out;

static inline void tok_emit(tok_out *o, int32_t id) {
    if (o->n < o->cap) o->tokens[o->n] = id;
    o->n++;
}

// A symbol of the word being merged: the byte span [start, start + len) of the word, its id.
typedef struct tok_sym {
    int32_t id;
    int32_t prev, next; // neighbours in the list, -1 at the ends
    uint32_t start, len;
    uint8_t nomerge;    // byte fallback / unknown character: never merged (SCORED)
} tok_sym;

// A candidate merge of two adjacent symbols, valid while both keep the recorded lengths and stay
// neighbours.
typedef struct tok_cand {
    double prio;        // larger first: the score (SCORED) or -rank (RANKED)
    uint32_t left, right;
    uint32_t left_len, right_len;
    uint32_t pos;       // start of the left symbol: leftmost first on equal priority
    int32_t id;         // the merged piece
} tok_cand;

// Scratch reused across the words of one encode call.
typedef struct tok_work {
    tok_sym *sym;
    size_t sym_cap, n_sym;
    tok_cand *heap;
    size_t heap_cap, n_heap;
} tok_work;

void tok_work_free(tok_work *w);
// Makes room for n symbols (and their 3n candidates); clears the symbol list.
cllm_status tok_work_reserve(tok_work *w, size_t n);
// Appends a symbol covering word[start, start + len).
void tok_work_push(tok_work *w, int32_t id, size_t start, size_t len, int nomerge);
// Merges the symbols of `word` (set with tok_work_push, adjacent and in order) to completion and
// emits their ids.
void tok_merge_word(const cllm_tokenizer *t, tok_work *w, const uint8_t *word, tok_out *out);

// ---- tokenizer_spm.c --------------------------------------------------------------------------
cllm_status tok_load_llama2c(cllm_tokenizer *t, const uint8_t *data, size_t size,
                             size_t vocab_hint);
cllm_status tok_encode_scored(const cllm_tokenizer *t, const uint8_t *text, size_t len,
                              tok_out *out);

// ---- tokenizer_hf.c / tokenizer_bpe.c ---------------------------------------------------------
cllm_status tok_load_hf(cllm_tokenizer *t, const uint8_t *data, size_t size);
// A tokenizer bundle (docs/FORMAT.md): its "tokenizer" object as tok_load_hf, then add_bos, the
// chat template, bos_token / eos_token. An unknown bundle version is CLLM_ERR_UNSUPPORTED.
cllm_status tok_load_bundle(cllm_tokenizer *t, const uint8_t *data, size_t size);
cllm_status tok_encode_ranked(const cllm_tokenizer *t, const uint8_t *text, size_t len,
                              tok_out *out);
// Merge lookup: rank and merged id of the pair, 0 when the pair does not merge.
int tok_merges_find(const tok_merges *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);
// Allocates a table for up to n merges.
cllm_status tok_merges_init(tok_merges *m, size_t n);
// Adds a merge (at most n of them); a pair already present keeps its first (lowest) rank.
void tok_merges_add(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
// GPT-2's byte -> unicode code point mapping (printable Latin-1 maps to itself, the rest to
// 256 + k in byte order).
uint32_t tok_byte_to_cp(uint8_t b);
// Releases the steps (regexes, strings).
void tok_steps_free(cllm_tokenizer *t);

#endif
