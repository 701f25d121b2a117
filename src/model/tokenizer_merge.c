// The merge loop shared by both tokenizer models.
//
// A word is a list of symbols (initially characters, or byte pieces), linked in order. Every
// adjacent pair that can merge is a candidate in a max-heap ordered by (priority, -position).
// Popping the best candidate and merging it is exactly "repeatedly merge the best adjacent pair,
// leftmost on ties" (llama2.c's loop, SentencePiece's and Hugging Face's BPE) in O(n log n)
// instead of O(n^2). Candidates are not removed when a merge changes a neighbour: a popped
// candidate is stale unless both symbols still have the recorded lengths and are still neighbours
// (symbols only grow, and a merged-away symbol gets length 0).
#include "cllm_tokenizer.h"

#include <stdlib.h>

void tok_work_free(tok_work *w) {
    free(w->sym);
    free(w->heap);
    w->sym = NULL;
    w->heap = NULL;
    w->sym_cap = w->heap_cap = w->n_sym = w->n_heap = 0;
}

cllm_status tok_work_reserve(tok_work *w, size_t n) {
    w->n_sym = 0;
    w->n_heap = 0;
    RETURN_IF(n > UINT32_MAX / 4, CLLM_ERR_ARG, "word of %zu symbols is too long to encode", n);
    if (n > w->sym_cap) {
        size_t cap = n < 64 ? 64 : n;
        tok_sym *s = realloc(w->sym, cap * sizeof *s);
        RETURN_IF(!s, CLLM_ERR_NOMEM, "cannot allocate %zu tokenizer symbols", cap);
        w->sym = s;
        w->sym_cap = cap;
    }
    // Each merge pushes at most two new candidates: n - 1 initial + 2 (n - 1) in all.
    size_t hcap = 3 * w->sym_cap;
    if (hcap > w->heap_cap) {
        tok_cand *h = realloc(w->heap, hcap * sizeof *h);
        RETURN_IF(!h, CLLM_ERR_NOMEM, "cannot allocate %zu merge candidates", hcap);
        w->heap = h;
        w->heap_cap = hcap;
    }
    return CLLM_OK;
}

void tok_work_push(tok_work *w, int32_t id, size_t start, size_t len, int nomerge) {
    int32_t i = (int32_t)w->n_sym++;
    tok_sym *s = &w->sym[i];
    s->id = id;
    s->start = (uint32_t)start;
    s->len = (uint32_t)len;
    s->prev = i - 1;
    s->next = -1;
    s->nomerge = (uint8_t)(nomerge != 0);
    if (i > 0) w->sym[i - 1].next = i;
}

// a ranks before b: higher priority, then further left.
static int cand_before(const tok_cand *a, const tok_cand *b) {
    if (a->prio != b->prio) return a->prio > b->prio;
    return a->pos < b->pos;
}

static void heap_push(tok_work *w, const tok_cand *c) {
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(c, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = *c;
}

static tok_cand heap_pop(tok_work *w) {
    tok_cand top = w->heap[0];
    tok_cand last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

// Pushes the candidate merging symbols l and r (adjacent) when the pair merges at all.
static void consider_pair(const cllm_tokenizer *t, tok_work *w, const uint8_t *word, int32_t l,
                          int32_t r) {
    if (l < 0 || r < 0) return;
    const tok_sym *a = &w->sym[l], *b = &w->sym[r];
    tok_cand c = {0};
    if (t->model == TOK_MODEL_SCORED) {
        if (a->nomerge || b->nomerge) return;
        // Adjacent symbols cover adjacent byte spans: their concatenation is a span of the word.
        int32_t id = tok_vocab_find(&t->v, word + a->start, (size_t)a->len + b->len);
        if (id < 0 || (t->v.flags[id] & TOK_F_NOMERGE)) return;
        c.prio = t->scores[id];
        c.id = id;
    } else {
        uint32_t rank;
        if (!tok_merges_find(&t->merges, a->id, b->id, &rank, &c.id)) return;
        c.prio = -(double)rank;
    }
    c.left = (uint32_t)l;
    c.right = (uint32_t)r;
    c.left_len = a->len;
    c.right_len = b->len;
    c.pos = a->start;
    heap_push(w, &c);
}

void tok_merge_word(const cllm_tokenizer *t, tok_work *w, const uint8_t *word, tok_out *out) {
    for (size_t i = 0; i + 1 < w->n_sym; i++) consider_pair(t, w, word, (int32_t)i, (int32_t)i + 1);
    while (w->n_heap > 0) {
        tok_cand c = heap_pop(w);
        tok_sym *a = &w->sym[c.left], *b = &w->sym[c.right];
        if (a->len != c.left_len || b->len != c.right_len || a->next != (int32_t)c.right) continue;
        a->id = c.id;
        a->len += b->len;
        a->next = b->next;
        if (b->next >= 0) w->sym[b->next].prev = (int32_t)c.left;
        b->len = 0; // merged away: every candidate naming it is stale
        consider_pair(t, w, word, a->prev, (int32_t)c.left);
        consider_pair(t, w, word, (int32_t)c.left, a->next);
    }
    for (int32_t i = w->n_sym ? 0 : -1; i >= 0; i = w->sym[i].next) tok_emit(out, w->sym[i].id);
}
