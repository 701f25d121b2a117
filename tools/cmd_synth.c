// codecllm synth --preset NAME [--dtype bf16|f16|f32] [--seed S] [--layers N] [--threads N] OUT_DIR
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char synth_usage[] =
    "codecllm synth [--preset NAME] [--dtype bf16|f16|f32] [--seed S] [--layers N] [--threads N]\n"
    "               [--force] OUT_DIR\n"
    "  writes a Hugging Face model directory (config.json + safetensors) with random weights\n"
    "  shaped like trained ones (heavy tails, per-row scale spread, outlier channels).\n"
    "  --force      write into an existing non-empty OUT_DIR (its model files are replaced)";

// 1 when `dir` exists and holds something (so writing there could replace a user's files).
static int dir_has_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno != ENOENT;  // not a directory, or unreadable: synth reports it
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));)
        found = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return found;
}

int cmd_synth(int argc, char **argv) {
    cllm_synth_options opt;
    memset(&opt, 0, sizeof opt);
    opt.preset = "tiny";
    opt.dtype = CLLM_DTYPE_BF16;
    opt.seed = 1;
    const char *out = NULL;
    int force = 0;
    long long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s\n  presets:", synth_usage);
            for (const char *const *p = cllm_synth_presets(); *p; p++) printf(" %s", *p);
            printf("\n");
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--preset") && has_val) {
            opt.preset = argv[++i];
        } else if (!strcmp(a, "--dtype") && has_val) {
            if (cllm_dtype_parse(argv[++i], &opt.dtype) != CLLM_OK)
                return cli_usage_error("synth", synth_usage, "unknown dtype '%s'", argv[i]);
        } else if (!strcmp(a, "--seed") && has_val) {
            if (cli_parse_int(argv[++i], 0, INT64_MAX, &v))
                return cli_usage_error("synth", synth_usage, "bad --seed '%s'", argv[i]);
            opt.seed = (uint64_t)v;
        } else if (!strcmp(a, "--layers") && has_val) {
            if (cli_parse_int(argv[++i], 1, 1024, &v))
                return cli_usage_error("synth", synth_usage, "bad --layers '%s'", argv[i]);
            opt.n_layers_override = (int)v;
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && has_val) {
            if (cli_parse_int(argv[++i], 1, 4096, &v))
                return cli_usage_error("synth", synth_usage, "bad --threads '%s'", argv[i]);
            opt.n_threads = (int)v;
        } else if (a[0] == '-' || out) {
            return cli_usage_error("synth", synth_usage, "unexpected argument '%s'", a);
        } else {
            out = a;
        }
    }
    if (!out) return cli_usage_error("synth", synth_usage, "need OUT_DIR");
    if (!force && dir_has_entries(out)) {
        fprintf(stderr, "codecllm synth: error: %s exists and is not an empty directory (use "
                        "--force to write into it)\n", out);
        return CLI_EXIT_FAIL;
    }
    cli_progress prog;
    cli_progress_init(&prog, "synth");
    opt.progress = cli_progress_cb;
    opt.progress_user = &prog;
    opt.temp = cli_temp_hook;
    double t0 = cllm_now_seconds_cli();
    cllm_status st = cllm_synth(out, &opt);
    cli_progress_end(&prog);
    if (st != CLLM_OK) return cli_fail("synth", st, out);
    fprintf(stderr, "codecllm synth: wrote %s (preset %s, %s) in %.1f s\n", out, opt.preset,
            cllm_dtype_name(opt.dtype), cllm_now_seconds_cli() - t0);
    return CLI_EXIT_OK;
}
