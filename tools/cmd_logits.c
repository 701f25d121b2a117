// codecllm logits MODEL.cllm --tokens LIST|@FILE --out FILE.f32 [engine flags]
//
// Teacher-forced logits: row i holds the logits after tokens[0..i]. Written as float32
// little-endian, shape (T, vocab), row-major.
#include "cli.h"
#include "cli_engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char logits_usage[] =
    "codecllm logits MODEL.cllm --tokens LIST|@FILE --out FILE.f32 [-t N] [-c CTX]\n"
    "             [--weights stream|resident] [--kv-type f32|f16] [--verbose]\n"
    "  --tokens LIST|@FILE  the sequence (\"1,300,42\" or a file of ids)\n"
    "  --out FILE           float32 little-endian logits, shape (T, vocab); written to a new\n"
    "                       temporary file and renamed when complete (an existing regular FILE\n"
    "                       is replaced then, never left partial)\n" CLI_ENGINE_FLAGS_HELP;

// Through a temporary file and a rename: `path` is never left partial (a full disk, a signal).
static int write_f32(const char *path, const float *x, size_t n) {
    cli_out o;
    if (cli_out_open("logits", path, &o) != CLI_EXIT_OK) return CLI_EXIT_FAIL;
    size_t wrote = fwrite(x, sizeof *x, n, o.f);  // the host is little-endian (library checks it)
    if (wrote != n) {
        fprintf(stderr, "codecllm logits: error: writing %s failed: %s\n", path, strerror(errno));
        cli_out_abort(&o);
        return CLI_EXIT_FAIL;
    }
    return cli_out_commit("logits", &o);
}

static int logits_of(cllm_engine *e, const int32_t *ids, size_t n, const char *out, int verbose) {
    const size_t vocab = cllm_engine_config(e)->vocab_size;
    if (cli_check_ids("logits", ids, n, (uint32_t)vocab)) return CLI_EXIT_FAIL;
    if (n == 0 || n > cllm_engine_context(e)) {
        fprintf(stderr, "codecllm logits: error: %zu tokens; the context holds %u\n", n,
                cllm_engine_context(e));
        return CLI_EXIT_FAIL;
    }
    float *logits = malloc(n * vocab * sizeof *logits);  // n <= context, both uint32
    if (!logits) return cli_fail("logits", CLLM_ERR_NOMEM, "logits buffer");
    double t0 = cllm_now_seconds_cli();
    cllm_status st = cllm_engine_forward(e, ids, n, 0, logits, n * vocab, 1);
    double dt = cllm_now_seconds_cli() - t0;
    int rc = st == CLLM_OK ? write_f32(out, logits, n * vocab) : cli_fail("logits", st, "forward");
    if (rc == CLI_EXIT_OK) {
        fprintf(stderr, "logits: %zu x %zu written to %s (%.1f tokens/s)\n", n, vocab, out,
                dt > 0 ? (double)n / dt : 0.0);
        cli_engine_report(e, verbose);
    }
    free(logits);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    cli_engine_args eng;
    cli_engine_args_init(&eng);
    const char *model = NULL, *tokens = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_engine_flag("logits", logits_usage, argc, argv, &i, &eng);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s\n", logits_usage);
            return CLI_EXIT_OK;
        }
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-' && !model) model = argv[i];
        else return cli_usage_error("logits", logits_usage, "unexpected argument '%s'", argv[i]);
    }
    if (!model || !tokens || !out)
        return cli_usage_error("logits", logits_usage, "MODEL, --tokens and --out are required");
    int32_t *ids;
    size_t n;
    int prc = cli_parse_tokens(tokens, &ids, &n);
    if (prc == -2) return CLI_EXIT_FAIL;
    if (prc != 0)
        return cli_usage_error("logits", logits_usage, "cannot read token ids from '%s'", tokens);
    cllm_container *c;
    cllm_engine *e;
    int rc = cli_engine_open("logits", model, &eng, &c, &e);
    if (rc == CLI_EXIT_OK) rc = logits_of(e, ids, n, out, eng.verbose);
    cllm_engine_free(e);
    cllm_container_free(c);
    free(ids);
    return rc;
}
