#include "cli_engine.h"

#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_engine_args_init(cli_engine_args *a) {
    memset(a, 0, sizeof *a);
    a->opt.backend = CLLM_BACKEND_AUTO;
    a->opt.weights = CLLM_WEIGHTS_AUTO;
}

void cli_sampling_init(cllm_sampler_params *p, long long *n_predict) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    *n_predict = 256;
}

static int is_sampling_flag(const char *f) {
    static const char *const flags[] = {"--temp",  "--top-k",          "--top-p",
                                        "--min-p", "--repeat-penalty", "--repeat-last-n",
                                        "--seed",  "-n",               "--n-predict"};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
        if (!strcmp(f, flags[k])) return 1;
    return 0;
}

int cli_sampling_flag(const char *cmd, const char *usage, int argc, char **argv, int *i,
                      cllm_sampler_params *p, long long *n_predict) {
    const char *f = argv[*i];
    if (!is_sampling_flag(f)) return 0;
    if (*i + 1 >= argc) return cli_usage_error(cmd, usage, "%s needs a value", f), -1;
    const char *v = argv[++*i];
    double d = 0;
    long long n = 0;
    int bad;
    if (!strcmp(f, "--temp") || !strcmp(f, "--top-p") || !strcmp(f, "--min-p") ||
        !strcmp(f, "--repeat-penalty")) {
        bad = cli_parse_float(v, &d);
        if (!strcmp(f, "--temp")) bad = bad || d < 0, p->temperature = (float)d;
        else if (!strcmp(f, "--top-p")) bad = bad || d <= 0 || d > 1, p->top_p = (float)d;
        else if (!strcmp(f, "--min-p")) bad = bad || d < 0 || d > 1, p->min_p = (float)d;
        else bad = bad || d < 0.01 || d > 100, p->repeat_penalty = (float)d;
    } else if (!strcmp(f, "--top-k") || !strcmp(f, "--repeat-last-n")) {
        bad = cli_parse_int(v, 0, !strcmp(f, "--top-k") ? UINT32_MAX : 65536, &n);
        if (!strcmp(f, "--top-k")) p->top_k = (uint32_t)n;
        else p->repeat_last_n = (uint32_t)n;
    } else if (!strcmp(f, "--seed")) {
        bad = cli_parse_int(v, 0, INT64_MAX, &n);
        p->seed = (uint64_t)n;
    } else {
        bad = cli_parse_int(v, 0, INT32_MAX, n_predict);
    }
    if (bad) return cli_usage_error(cmd, usage, "bad value '%s' for %s", v, f), -1;
    return 1;
}

static void log_to_stderr(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "%s\n", line);
}

int cli_engine_flag(const char *cmd, const char *usage, int argc, char **argv, int *i,
                    cli_engine_args *a) {
    const char *f = argv[*i];
    if (!strcmp(f, "--verbose")) {
        a->verbose = 1;
        a->opt.log = log_to_stderr;
        return 1;
    }
    if (!strcmp(f, "--no-verify")) {
        a->opt.no_verify = 1;
        return 1;
    }
    int takes = !strcmp(f, "-t") || !strcmp(f, "--threads") || !strcmp(f, "-c") ||
                !strcmp(f, "--ctx-size") || !strcmp(f, "--weights") || !strcmp(f, "--kv-type") ||
                !strcmp(f, "--backend") || !strcmp(f, "--vram") || !strcmp(f, "--gpu");
    if (!takes) return 0;
    if (*i + 1 >= argc) return cli_usage_error(cmd, usage, "%s needs a value", f), -1;
    const char *v = argv[++*i];
    long long n;
    if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        if (cli_parse_int(v, 1, 4096, &n)) return cli_usage_error(cmd, usage, "bad -t '%s'", v), -1;
        a->opt.n_threads = (int)n;
    } else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) {
        if (cli_parse_int(v, 1, UINT32_MAX, &n))
            return cli_usage_error(cmd, usage, "bad -c '%s'", v), -1;
        a->opt.context_len = (uint32_t)n;
    } else if (!strcmp(f, "--weights")) {
        if (cllm_weights_mode_parse(v, &a->opt.weights) != CLLM_OK) {
            char all[64] = "";  // every mode the library names
            for (int m = 0; strcmp(cllm_weights_mode_name((cllm_weights_mode)m), "?") != 0; m++)
                snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", m ? ", " : "",
                         cllm_weights_mode_name((cllm_weights_mode)m));
            return cli_usage_error(cmd, usage, "bad --weights '%s' (%s)", v, all), -1;
        }
    } else if (!strcmp(f, "--backend")) {
        if (!strcmp(v, "cpu")) a->opt.backend = CLLM_BACKEND_CPU;
        else if (!strcmp(v, "cuda")) a->opt.backend = CLLM_BACKEND_CUDA;
        else if (!strcmp(v, "auto")) a->opt.backend = CLLM_BACKEND_AUTO;
        else return cli_usage_error(cmd, usage, "bad --backend '%s' (auto, cpu or cuda)", v), -1;
    } else if (!strcmp(f, "--vram")) {
        if (cli_parse_size(v, &a->opt.vram_budget) || a->opt.vram_budget == 0)
            return cli_usage_error(cmd, usage, "bad --vram '%s' (e.g. 6GiB, 800MiB)", v), -1;
    } else if (!strcmp(f, "--gpu")) {
        if (cli_parse_int(v, 0, 64, &n)) return cli_usage_error(cmd, usage, "bad --gpu '%s'", v), -1;
        a->opt.device = (int)n;
    } else {
        cllm_dtype dt;
        if (cllm_dtype_parse(v, &dt) != CLLM_OK || dt == CLLM_DTYPE_BF16)
            return cli_usage_error(cmd, usage, "bad --kv-type '%s' (f32 or f16)", v), -1;
        a->opt.kv_dtype = dt;
    }
    return 1;
}

int cli_engine_open(const char *cmd, const char *path, const cli_engine_args *a,
                    cllm_container **c, cllm_engine **e) {
    *c = NULL;
    *e = NULL;
    cllm_status st = cllm_container_open(path, c);
    if (st != CLLM_OK) return cli_fail(cmd, st, path);
    st = cllm_engine_open(*c, &a->opt, e);
    if (st != CLLM_OK) {
        cllm_container_free(*c);
        *c = NULL;
        cli_fail(cmd, st, path);
        if (st == CLLM_ERR_CORRUPT)
            fprintf(stderr, "codecllm %s: the file is damaged (`codecllm verify %s` lists every "
                            "problem; --no-verify skips this check)\n", cmd, path);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_container_tokenizer(const char *cmd, const char *path, const cllm_container *c,
                            const char *why, cllm_tokenizer **out) {
    const uint8_t *data;
    size_t size;
    cllm_tokenizer_kind kind = cllm_container_tokenizer(c, &data, &size);
    if (kind == CLLM_TOKENIZER_NONE) {
        fprintf(stderr,
                "codecllm %s: error: %s has no tokenizer; %s (give ids with --tokens and use "
                "--output ids, or convert with a tokenizer)\n",
                cmd, path, why);
        return CLI_EXIT_FAIL;
    }
    cllm_status st = cllm_tokenizer_load(kind, data, size, cllm_container_config(c)->vocab_size,
                                         out);
    if (st != CLLM_OK) return cli_fail(cmd, st, "loading the container's tokenizer");
    return CLI_EXIT_OK;
}

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

void cli_engine_report(const cllm_engine *e, int verbose) {
    cllm_engine_stats s;
    cllm_engine_stats_get(e, &s);
    if (verbose) {
        fprintf(stderr,
                "memory: compressed weights %.2f MiB (mapped), decoded weights %.2f MiB, "
                "decode scratch %.2f MiB, KV cache %.2f MiB (%u positions), activations %.2f MiB\n",
                mib(s.compressed_bytes), mib(s.decoded_bytes), mib(s.scratch_bytes),
                mib(s.kv_bytes), s.context_len, mib(s.activation_bytes));
        fprintf(stderr, "time: load %.3f s, weight decoding %.3f s, compute %.3f s (%s, %s)\n",
                s.load_seconds, s.decode_seconds, s.compute_seconds, s.backend,
                cllm_weights_mode_name(s.weights));
    }
    if (s.device_peak_bytes) {
        if (verbose && s.plan) fprintf(stderr, "plan:\n%s\n", s.plan);
        fprintf(stderr, "peak VRAM (allocator): %.2f MiB, of which weights %.2f MiB\n",
                mib(s.device_peak_bytes), mib(s.device_weight_bytes));
        if (s.predicted_token_seconds > 0)
            fprintf(stderr, "time-model prediction: %.2f tokens/s\n",
                    1.0 / s.predicted_token_seconds);
    }
    fprintf(stderr, "peak memory (RSS): %.2f MiB\n", mib(s.peak_rss_bytes));
}

double cli_log_prob(const float *logits, size_t n, int32_t id) {
    double mx = logits[0];
    for (size_t i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    return (double)logits[id] - mx - log(sum);
}

int32_t cli_argmax(const float *logits, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

int cli_check_ids(const char *cmd, const int32_t *ids, size_t n, uint32_t vocab) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab) {
            fprintf(stderr,
                    "codecllm %s: error: token id %d (index %zu) is outside the vocabulary of "
                    "%u\n",
                    cmd, ids[i], i, vocab);
            return CLI_EXIT_FAIL;
        }
    return CLI_EXIT_OK;
}

int cli_read_bytes(const char *cmd, const char *path, char **data, size_t *len) {
    (void)cmd;  // cli_read_text names the file in its message
    return cli_read_text(path, CLI_TEXT_MAX, data, len);
}

int cli_tokenize(const char *cmd, const cllm_tokenizer *tok, const char *text, size_t len,
                 int add_bos, int32_t **ids, size_t *n) {
    size_t cap = len + 2, need = 0;
    *ids = malloc(cap * sizeof **ids);
    cllm_status st = *ids ? cllm_tokenizer_encode(tok, text, len, add_bos, *ids, cap, &need)
                          : CLLM_ERR_NOMEM;
    if (st == CLLM_ERR_ARG && need > cap) {  // more ids than bytes: retry with the size asked
        free(*ids);
        *ids = malloc(need * sizeof **ids);
        st = *ids ? cllm_tokenizer_encode(tok, text, len, add_bos, *ids, need, &need)
                  : CLLM_ERR_NOMEM;
    }
    if (st != CLLM_OK) {
        free(*ids);
        *ids = NULL;
        int rc = cli_fail(cmd, st, "tokenizing");
        return rc == CLI_EXIT_OK ? CLI_EXIT_FAIL : rc;
    }
    *n = need;
    return CLI_EXIT_OK;
}
