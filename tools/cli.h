// Shared pieces of the codecllm command: each subcommand lives in its own tools/cmd_*.c and uses
// only the public API (include/codecllm.h) plus these helpers.
#ifndef CLLM_CLI_H
#define CLLM_CLI_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Exit codes: 0 success, 1 failure (bad data, mismatch, I/O...), 2 usage error.
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

// Subcommands: argv[0] is the subcommand name.
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
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
// (whatever the status: usage errors are the command's own, reported by cli_usage_error).
int cli_fail(const char *cmd, cllm_status st, const char *what);
// Prints "codecllm <cmd>: <message>" and the usage hint, returns CLI_EXIT_USAGE.
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...);

// Parses a non-negative integer / a float / a byte size ("512", "6GiB", "1.5G", "800MB").
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int cli_parse_float(const char *s, double *out);
int cli_parse_size(const char *s, uint64_t *out);
// Parses "1,300,42" or "@FILE" (ids separated by commas/whitespace; FILE at most CLI_TOKENS_MAX
// bytes) into a malloc'd array. @return 0, -1 (not a list of ids), -2 (FILE could not be read:
// the error is printed).
int cli_parse_tokens(const char *s, int32_t **out, size_t *n);

// Size limits of the inputs read whole: a token-id file, a text (prompt, perplexity, tokenize).
#define CLI_TOKENS_MAX ((size_t)64 << 20)
#define CLI_TEXT_MAX ((size_t)256 << 20)

// Reads a whole file, or standard input when path_or_dash is "-", into a malloc'd buffer
// (NUL-terminated; *len excludes the NUL; NUL bytes inside are kept). Reads at most max_bytes:
// a larger input (a regular file by its size, a pipe or device such as /dev/zero once max_bytes
// have been read) is refused, as is a directory. On failure prints "codecllm: error: ..." naming
// the file and returns CLI_EXIT_FAIL with *out NULL; returns 0 on success. The caller frees *out.
int cli_read_text(const char *path_or_dash, size_t max_bytes, char **out, size_t *len);

// Temporary files and signals. cli_temp_hook is a cllm_temp_fn: it records (created = 1) or
// forgets (0) a temporary path; cli_signals_init installs SIGINT/SIGTERM/SIGHUP handlers that
// remove every recorded temporary file, then die of the signal as they would have.
void cli_temp_hook(void *user, const char *path, int created);
void cli_signals_init(void);

// An output file written through a temporary: cli_out_open creates "<path>.tmp-XXXXXX"
// exclusively beside `path` (refusing a `path` that exists and is not a regular file);
// cli_out_commit flushes, fsyncs and renames it onto `path` (an existing regular file is
// replaced); cli_out_abort removes it. `path` is never left half-written. Both print errors and
// return CLI_EXIT_FAIL on failure (the temporary is removed).
typedef struct cli_out {
    FILE *f;
    char *tmp;
    const char *path;
} cli_out;
int cli_out_open(const char *cmd, const char *path, cli_out *o);
int cli_out_commit(const char *cmd, cli_out *o);
void cli_out_abort(cli_out *o);

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
