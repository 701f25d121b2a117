// codecllm verify FILE.cllm [--against SOURCE] [--quiet]
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char verify_usage[] =
    "codecllm verify FILE.cllm [--against SOURCE] [--quiet]\n"
    "  checks every checksum and padding byte; with --against (the .bin or HF directory the file\n"
    "  was converted from) decodes every tensor and compares: bit-exact for lossless and raw,\n"
    "  exact re-quantisation for int8. Exit code 0 only when everything matches.";

typedef struct verify_print {
    int quiet;
} verify_print;

static void print_line(void *user, const char *line) {
    const verify_print *vp = user;
    int is_problem = !strstr(line, "exact");
    if (!vp->quiet || is_problem) fprintf(is_problem ? stderr : stdout, "  %s\n", line);
}

int cmd_verify(int argc, char **argv) {
    const char *path = NULL, *against = NULL;
    verify_print vp = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s\n", verify_usage);
            return CLI_EXIT_OK;
        } else if (!strcmp(argv[i], "--against") && i + 1 < argc) {
            against = argv[++i];
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            vp.quiet = 1;
        } else if (argv[i][0] == '-' || path) {
            return cli_usage_error("verify", verify_usage, "unexpected argument '%s'", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage_error("verify", verify_usage, "need FILE.cllm");
    cllm_verify_result res;
    cllm_status st = cllm_verify(path, against, 0, print_line, &vp, &res);
    if (st == CLLM_ERR_MISMATCH) {
        fprintf(stderr, "codecllm verify: FAILED: %s: %zu problem(s) in %zu tensors\n", path,
                res.n_failed, res.n_tensors);
        return CLI_EXIT_FAIL;
    }
    if (st != CLLM_OK) return cli_fail("verify", st, path);
    printf("codecllm verify: OK: %s: %zu tensors, all checksums and padding good", path,
           res.n_tensors);
    if (against) printf("; matches %s", against);
    if (res.n_int8) printf(" (int8 max |error| against the source %.4g)", res.max_abs_err);
    printf("\n");
    return CLI_EXIT_OK;
}
