// Shared pieces of the codecllm command: each subcommand lives in its own tools/cmd_*.c and uses
// only the public API (include/codecllm.h) plus these helpers.
#ifndef CLLM_CLI_H
#define CLLM_CLI_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>

// Exit codes: 0 success, 1 failure (bad data, mismatch, I/O...), 2 usage error.
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

// Subcommands: argv[0] is the subcommand name.
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_unpack(int argc, char **argv);

// `inspect` of a packed safetensors archive (tools/cmd_pack.c): per tensor with the real names
// from the stored header, then totals. Returns an exit code.
int cli_inspect_archive(const cllm_container *c, const char *path, int json);

// Prints "codecllm <cmd>: error: <what>: <library message>" to stderr and returns CLI_EXIT_FAIL
// (CLI_EXIT_USAGE for CLLM_ERR_ARG).
int cli_fail(const char *cmd, cllm_status st, const char *what);
// Prints "codecllm <cmd>: <message>" and the usage hint, returns CLI_EXIT_USAGE.
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...);

// Parses a non-negative integer / a float / a byte size ("512", "6GiB", "1.5G", "800MB").
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int cli_parse_float(const char *s, double *out);
int cli_parse_size(const char *s, uint64_t *out);
// Parses "1,300,42" or "@FILE" (ids separated by commas/whitespace) into a malloc'd array.
int cli_parse_tokens(const char *s, int32_t **out, size_t *n);

// Progress line on stderr when it is a terminal (tensor i/N, MB/s, ETA); silent otherwise.
typedef struct cli_progress {
    int enabled;
    double t_start;
    const char *label;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label);
void cli_progress_cb(void *user, size_t done, size_t total, uint64_t bytes_done,
                     uint64_t bytes_total, const char *what);
void cli_progress_end(cli_progress *p);

// Monotonic clock in seconds.
double cllm_now_seconds_cli(void);

#endif
