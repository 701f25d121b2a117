// Engine entry points beyond the public API, for tests and tools inside the library's tree.
#ifndef CLLM_ENGINE_INTERNAL_H
#define CLLM_ENGINE_INTERNAL_H

#include "cllm_backend.h"

// Opens an engine over already-bound weights, taking ownership of `w` (freed with the engine, or
// here on failure). Tests use it with weights bound from memory (cllm_weights_bind_lookup).
cllm_status cllm_engine_open_weights(cllm_weights *w, const cllm_engine_options *opt,
                                     cllm_engine **out);

// Same over a given op table (NULL: the one opt->backend names). Tests use it to run the engine's
// forward pass over a modified table (an optional op removed, to check its fallback).
cllm_status cllm_engine_open_ops(cllm_weights *w, const cllm_engine_options *opt,
                                 const cllm_backend_ops *ops, cllm_engine **out);

#endif
