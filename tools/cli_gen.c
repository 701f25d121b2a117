// Generation with a KV cache kept between prompts: see cli_gen.h.
#include "cli_gen.h"

#include <stdlib.h>
#include <string.h>

cllm_status cli_gen_init(cli_gen *g, cllm_engine *e, const cllm_tokenizer *tok, int32_t eot) {
    const cllm_model_config *cfg = cllm_engine_config(e);
    *g = (cli_gen){.e = e, .tok = tok, .eos = cfg->eos_id, .eot = eot};
    g->logits = malloc((size_t)cfg->vocab_size * sizeof *g->logits);
    g->cached = malloc((size_t)cllm_engine_context(e) * sizeof *g->cached);
    if (!g->logits || !g->cached) {
        cli_gen_free(g);
        return CLLM_ERR_NOMEM;
    }
    return CLLM_OK;
}

void cli_gen_free(cli_gen *g) {
    free(g->logits);
    free(g->cached);
    g->logits = NULL;
    g->cached = NULL;
}

void cli_gen_reset(cli_gen *g) {
    g->n_cached = 0;
    cllm_engine_reset(g->e);
}

int32_t cli_gen_single_token(const cllm_tokenizer *tok, const char *text) {
    int32_t ids[4];
    size_t n = 0;
    if (!text || cllm_tokenizer_encode(tok, text, strlen(text), 0, ids, 4, &n) != CLLM_OK || n != 1)
        return -1;
    return ids[0];
}

cllm_status cli_gen_prefill(cli_gen *g, const int32_t *ids, size_t n, size_t *from) {
    if (n == 0 || n + 1 > cllm_engine_context(g->e)) return CLLM_ERR_ARG;
    size_t p = 0;
    while (p < g->n_cached && p < n && g->cached[p] == ids[p]) p++;
    if (p == n) p--;  // the last token must run again to give the next logits
    const size_t vocab = cllm_engine_config(g->e)->vocab_size;
    g->n_cached = p;  // what stays valid even if the forward fails part way
    cllm_status st = cllm_engine_forward(g->e, ids + p, n - p, p, g->logits, vocab, 0);
    if (st != CLLM_OK) return st;
    memcpy(g->cached, ids, n * sizeof *ids);  // n < ctx, the capacity
    g->n_cached = n;
    *from = p;
    return CLLM_OK;
}

cllm_status cli_gen_next(cli_gen *g, cli_gen_event *ev, char *piece, size_t cap, size_t *len) {
    const size_t vocab = cllm_engine_config(g->e)->vocab_size, ctx = cllm_engine_context(g->e);
    int32_t next, prev = g->cached[g->n_cached - 1];
    *len = 0;
    cllm_status st = cllm_sampler_sample(g->smp, g->logits, vocab, &next);
    if (st != CLLM_OK) return st;
    if (next == g->eos || next == g->eot) {
        *ev = CLI_GEN_END;
        return CLLM_OK;
    }
    cllm_sampler_accept(g->smp, next);
    if (cllm_tokenizer_decode_token(g->tok, prev, next, piece, cap, len) != CLLM_OK) *len = 0;
    g->cached[g->n_cached++] = next;  // < ctx: checked below before the next forward
    if (g->n_cached >= ctx) {
        *ev = CLI_GEN_FULL;
        return CLLM_OK;
    }
    *ev = CLI_GEN_TOKEN;
    return cllm_engine_forward(g->e, &next, 1, g->n_cached - 1, g->logits, vocab, 0);
}
