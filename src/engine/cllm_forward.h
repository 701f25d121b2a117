// The forward pass over a backend's op table and weight provider (cllm_backend.h). Owns the KV
// cache and the activations (allocated in the backend's memory), runs a call in chunks of
// CLLM_ENGINE_BATCH tokens. Private to src/engine.
#ifndef CLLM_FORWARD_H
#define CLLM_FORWARD_H

#include "cllm_backend.h"

typedef struct cllm_forward cllm_forward;

// Creates the backend state, the provider for opt->weights, the KV cache of `ctx` positions and
// the activations. `w` (and its container) outlive the result; `opt` was checked by the engine.
// @return CLLM_OK, UNSUPPORTED (no provider for the weights mode), NOMEM, CORRUPT, DEVICE.
cllm_status cllm_forward_create(const cllm_backend_ops *ops, const cllm_weights *w,
                                const cllm_engine_options *opt, uint32_t ctx, cllm_forward **out);
void cllm_forward_free(cllm_forward *f);

// tokens[0..n) of the sequence in KV slot `slot` at positions pos.. (checked by the engine:
// slot < n_seq, pos + n <= ctx, ids < vocab), in steps of at most CLLM_ENGINE_BATCH tokens.
// logits: (n, vocab) when all_logits, else (vocab) for the last token.
// @return CLLM_OK, CORRUPT (a weight block fails its checks), DEVICE.
cllm_status cllm_forward_run(cllm_forward *f, uint32_t slot, const int32_t *tokens, size_t n,
                             size_t pos, float *logits, int all_logits);

// One step of tokens from any sequences (see cllm_step; checked by the caller: n_tok <=
// CLLM_ENGINE_BATCH, every slot < n_seq and position < ctx without holes, ids < vocab).
// logits: (sp->n_out, vocab) host floats, the rows of sp->out_tok (NULL when n_out is 0).
// @return as cllm_forward_run.
cllm_status cllm_forward_step(cllm_forward *f, const int32_t *tokens, const cllm_step *sp,
                              float *logits);

// Fills backend, weights, memory and timing fields of *out.
void cllm_forward_stats(const cllm_forward *f, cllm_engine_stats *out);

#endif
