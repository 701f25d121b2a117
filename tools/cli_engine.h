// Pieces shared by the commands that run a model (run, logits, compare, perplexity): the common
// engine flags, opening a container with its engine, the container's tokenizer, the end-of-run
// report, and log-probabilities in double.
#ifndef CLLM_CLI_ENGINE_H
#define CLLM_CLI_ENGINE_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>

#define CLI_ENGINE_FLAGS_HELP                                                                      \
    "  -t N                 threads (default: all cores)\n"                                        \
    "  -c N                 context length cap (default: the model's)\n"                          \
    "  --backend B          auto (default: cuda when a GPU is present, else cpu), cpu or cuda\n"  \
    "  --weights MODE       auto (default), stream or resident on the CPU; raw, device or stream\n" \
    "                       on the GPU. CPU auto: resident (decoded once: fastest) when the\n"     \
    "                       decoded weights take at most half the free RAM, else stream (each\n"   \
    "                       layer decoded just in time: least memory). GPU auto: raw (decoded\n"  \
    "                       once) when it fits in 85% of free VRAM, else device (compressed in\n" \
    "                       VRAM, decoded per use), else stream (compressed in host RAM).\n"      \
    "                       GPU fused: compute code in VRAM read by the kernels (~11.4 bits per\n" \
    "                       BF16 weight, ~6.4 per int8; decoding faster than raw, prefill\n"     \
    "                       slower; on request only)\n"                                           \
    "  --vram SIZE          GPU: plan layer placement within SIZE of device memory (e.g. 6GiB)\n" \
    "  --gpu N              GPU index (default 0)\n"                                              \
    "  --kv-type T          KV cache type: f32 (default) or f16\n"                                 \
    "  --no-verify          skip the checksum check of every byte at open (default: verify)\n"    \
    "  --verbose            engine log (backend and weights mode chosen), memory breakdown and\n" \
    "                       peak RSS on stderr"

// Sampling flags of run and chat.
#define CLI_SAMPLING_FLAGS_HELP                                                                    \
    "  -n N                 tokens to generate (default 256; stops at EOS or a full context)\n"   \
    "  --temp T             temperature (default 0.8; 0 = greedy)\n"                              \
    "  --top-k K            keep the K most likely tokens (default 40; 0 = all)\n"                \
    "  --top-p P            nucleus sampling threshold (default 0.95; 1 = off)\n"                 \
    "  --min-p P            drop tokens below P times the most likely (default 0.05; 0 = off)\n"  \
    "  --repeat-penalty R   penalise the last --repeat-last-n tokens (default 1 = off)\n"          \
    "  --repeat-last-n N    tokens the penalty looks back over (default 64)\n"                   \
    "  --seed S             random seed (default: from the clock)\n"

// Sampler parameters with the defaults above; *n_predict = 256.
void cli_sampling_init(cllm_sampler_params *p, long long *n_predict);
// Consumes the sampling flag at argv[*i] (and its value): 1 when consumed, 0 when not one, -1
// after printing a usage error.
int cli_sampling_flag(const char *cmd, const char *usage, int argc, char **argv, int *i,
                      cllm_sampler_params *p, long long *n_predict);

typedef struct cli_engine_args {
    cllm_engine_options opt;
    int verbose;
} cli_engine_args;

// Defaults (zeroed options, verbose off).
void cli_engine_args_init(cli_engine_args *a);

// Consumes the common flag at argv[*i] (and its value): returns 1 when consumed (with *i on its
// last word), 0 when argv[*i] is not a common flag, -1 after printing a usage error.
int cli_engine_flag(const char *cmd, const char *usage, int argc, char **argv, int *i,
                    cli_engine_args *a);

// Opens `path` and an engine over it. On failure prints the error and returns the exit code
// (non-zero), leaving *c and *e NULL.
int cli_engine_open(const char *cmd, const char *path, const cli_engine_args *a,
                    cllm_container **c, cllm_engine **e);

// The tokenizer stored in the container. On failure prints an error mentioning `why` (e.g.
// "-p needs a tokenizer") and returns non-zero.
int cli_container_tokenizer(const char *cmd, const char *path, const cllm_container *c,
                            const char *why, cllm_tokenizer **out);

// Memory report on stderr: compressed, decoded, scratch, KV, activations, peak RSS (all with
// `verbose`; only peak RSS otherwise).
void cli_engine_report(const cllm_engine *e, int verbose);

// log softmax(logits)[id] in double, over n logits.
double cli_log_prob(const float *logits, size_t n, int32_t id);

// Index of the largest logit (lowest on ties).
int32_t cli_argmax(const float *logits, size_t n);

// Checks every id is in [0, vocab): prints an error naming the first bad one and returns non-zero.
int cli_check_ids(const char *cmd, const int32_t *ids, size_t n, uint32_t vocab);

// Reads a whole file as bytes into a malloc'd buffer (NUL-terminated; *len excludes the NUL), at
// most CLI_TEXT_MAX bytes (cli_read_text). Prints an error and returns non-zero on failure.
int cli_read_bytes(const char *cmd, const char *path, char **data, size_t *len);

// Encodes len bytes of text (with BOS when add_bos) into a malloc'd array of *n ids.
// Prints an error and returns non-zero on failure.
int cli_tokenize(const char *cmd, const cllm_tokenizer *tok, const char *text, size_t len,
                 int add_bos, int32_t **ids, size_t *n);

#endif
