// The backend seam: what the engine asks of a place that runs the forward pass.
//
// A backend is a table of functions over an opaque state. The engine owns the bound weights and
// validates every argument of a forward call (token ids, positions, capacities) before handing it
// over, so a backend trusts its inputs and only reports what it alone can detect (a corrupt block,
// a device failure). The CPU backend (src/backend_cpu) is the reference; a CUDA backend
// (src/cuda) implements the same table.
#ifndef CLLM_BACKEND_H
#define CLLM_BACKEND_H

#include "cllm_weights.h"

typedef struct cllm_backend_ops {
    const char *name;

    // Creates the state: decode scratch or resident weights, KV cache for `context_len`
    // positions, activations. `w` and the container behind it outlive the state; `opt` has been
    // checked by the engine (n_threads >= 1, kv_dtype F32 or F16). Allocates everything forward
    // will need. @return CLLM_OK, UNSUPPORTED (weights mode), NOMEM, CORRUPT, DEVICE.
    cllm_status (*create)(const cllm_weights *w, const cllm_engine_options *opt,
                          uint32_t context_len, void **state);
    void (*free)(void *state);

    // Runs tokens[0..n) at positions pos.. (pos + n <= context_len, every id < vocab, positions
    // < pos cached). logits: (n, vocab) when all_logits, else (vocab) for the last token.
    // @return CLLM_OK, CORRUPT, DEVICE.
    cllm_status (*forward)(void *state, const int32_t *tokens, size_t n, size_t pos,
                           float *logits, int all_logits);

    // Fills the memory and timing fields of *out (backend, weights, *_bytes, *_seconds).
    void (*stats)(const void *state, cllm_engine_stats *out);
} cllm_backend_ops;

// The CPU backend (always available).
const cllm_backend_ops *cllm_backend_cpu(void);

#endif
