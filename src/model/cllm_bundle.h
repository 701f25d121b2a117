// Tokenizer bundles (container tokenizer kind 3, docs/FORMAT.md "Tokenizer bundle"): a UTF-8 JSON
// object
//   {"codecllm_bundle": 1, "tokenizer": {<a Hugging Face tokenizer.json object>}, "add_bos": bool,
//    "chat_template": "...", "bos_token": "...", "eos_token": "...",
//    "source": {"format": "gguf", "tensor_types": {"Q4_1": 210, ...}, "dequantized": true}}
// where every member after add_bos is optional. Built by the importers (from GGUF metadata, or
// from an HF directory's tokenizer.json + tokenizer_config.json), read by cllm_tokenizer_load.
#ifndef CLLM_BUNDLE_H
#define CLLM_BUNDLE_H

#include "../common/cllm_common.h"
#include "gguf.h"

#include <jansson.h>

#define CLLM_BUNDLE_VERSION 1

// Serialises a bundle. Steals the references to `tokenizer` and `source` (either may be NULL on
// a failed allocation upstream: then NOMEM). `chat_template`, `bos_token`, `eos_token` may be
// NULL. *out is malloc'd (no NUL counted in *size).
cllm_status cllm_bundle_encode(json_t *tokenizer, int add_bos, const char *chat_template,
                               size_t chat_template_len, const char *bos_token,
                               const char *eos_token, json_t *source, uint8_t **out,
                               size_t *size);

// The tokenizer of a GGUF file's `tokenizer.ggml.*` metadata as a bundle (see
// tokenizer_gguf.c for the models and pre-tokenizers supported). Steals `source`.
// @return CLLM_OK, FORMAT (missing/mistyped key), CORRUPT (inconsistent arrays, ids out of
//         range), UNSUPPORTED (tokenizer model or pre-tokenizer), NOMEM.
cllm_status cllm_bundle_from_gguf(const cllm_gguf *g, json_t *source, uint8_t **out,
                                  size_t *size);

// An HF directory's tokenizer.json with tokenizer_config.json beside it (chat_template,
// add_bos_token, bos_token, eos_token) as a bundle.
cllm_status cllm_bundle_from_hf(const char *tokenizer_path, const char *config_path,
                                uint8_t **out, size_t *size);

#endif
