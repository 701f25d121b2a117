// Generation over one engine whose KV cache is kept between prompts (chat turns, server requests):
// a prompt runs only from the longest prefix already cached, then tokens are sampled one at a time.
// Shared by chat and serve so that both answer a prompt exactly as `run` does.
#ifndef CLLM_CLI_GEN_H
#define CLLM_CLI_GEN_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cli_gen {
    cllm_engine *e;
    const cllm_tokenizer *tok;
    cllm_sampler *smp;   // not owned; may change between prompts
    int32_t eos, eot;    // end of sequence, the template's end of turn (or -1)
    int32_t *cached;     // tokens at positions [0, n_cached) of the KV cache (ctx capacity)
    size_t n_cached;
    float *logits;       // vocab: the logits after the last cached token
} cli_gen;

typedef enum {
    CLI_GEN_TOKEN, // a token was produced (its text in piece), generation may go on
    CLI_GEN_END,   // end of sequence or of turn: no token
    CLI_GEN_FULL,  // a token was produced and the context is now full: no more
} cli_gen_event;

// Allocates the token and logit buffers. Returns CLLM_OK or CLLM_ERR_NOMEM.
cllm_status cli_gen_init(cli_gen *g, cllm_engine *e, const cllm_tokenizer *tok, int32_t eot);
void cli_gen_free(cli_gen *g);
// Forgets the cache (the engine's too).
void cli_gen_reset(cli_gen *g);

// The id of `text` when it is exactly one token (an end-of-turn marker), else -1.
int32_t cli_gen_single_token(const cllm_tokenizer *tok, const char *text);

// Runs ids[0..n) (n + 1 <= the context, checked by the caller) from the longest cached prefix;
// *from is the first position run (the sampler has not seen ids[*from..n): the caller accepts
// what it wants). The logits then predict the token after ids[n-1].
cllm_status cli_gen_prefill(cli_gen *g, const int32_t *ids, size_t n, size_t *from);

// Samples the next token with g->smp, accepts it, decodes its text into piece (cap bytes; *len
// 0 when it has none) and runs it through the model. See cli_gen_event.
cllm_status cli_gen_next(cli_gen *g, cli_gen_event *ev, char *piece, size_t cap, size_t *len);

#endif
