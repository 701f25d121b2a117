// codecllm compare A.cllm B.cllm [--tokens LIST|@FILE | --sample N --seed S --sequences K]
//
// Runs both models on the same sequences (given, or K sequences of N tokens sampled from A at
// temperature 1 starting from BOS) and reports, over every position: max |logit difference|,
// mean KL(A || B) (in double), top-1 agreement, the perplexity of each model on the sequences,
// and "bit-identical" when every logit matches exactly.
#include "cli.h"
#include "cli_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char compare_usage[] =
    "codecllm compare A.cllm B.cllm [--tokens LIST|@FILE | --sample N --seed S --sequences K]\n"
    "             [-t N] [-c CTX] [--weights stream|resident] [--kv-type f32|f16] [--verbose]\n"
    "  --tokens LIST|@FILE  one given sequence\n"
    "  --sample N           tokens per sampled sequence, BOS included (default 256)\n"
    "  --seed S             sampling seed (default 1)\n"
    "  --sequences K        sequences to sample from A (default 4)\n" CLI_ENGINE_FLAGS_HELP;

typedef struct cmp_acc {
    double max_abs;     // max |a - b| over every logit
    double kl_sum;      // sum over positions of KL(A || B)
    size_t n_pos;
    size_t top1_agree;
    double nll_a, nll_b; // next-token negative log-likelihoods
    size_t n_pred;
    int identical;
} cmp_acc;

// KL(softmax(a) || softmax(b)) in double.
static double kl_div(const float *a, const float *b, size_t n) {
    double ma = a[0], mb = b[0], sa = 0, sb = 0;
    for (size_t i = 1; i < n; i++) {
        ma = a[i] > ma ? a[i] : ma;
        mb = b[i] > mb ? b[i] : mb;
    }
    for (size_t i = 0; i < n; i++) {
        sa += exp((double)a[i] - ma);
        sb += exp((double)b[i] - mb);
    }
    double la = log(sa), lb = log(sb), kl = 0;
    for (size_t i = 0; i < n; i++) {
        double lp = (double)a[i] - ma - la, lq = (double)b[i] - mb - lb;
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

// Adds one sequence of T tokens with logits la, lb (T, V).
static void accumulate(cmp_acc *acc, const int32_t *ids, size_t T, const float *la,
                       const float *lb, size_t V) {
    if (memcmp(la, lb, T * V * sizeof *la) != 0) acc->identical = 0;
    for (size_t t = 0; t < T; t++) {
        const float *a = la + t * V, *b = lb + t * V;
        for (size_t i = 0; i < V; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            acc->max_abs = d > acc->max_abs ? d : acc->max_abs;
        }
        acc->kl_sum += kl_div(a, b, V);
        acc->top1_agree += cli_argmax(a, V) == cli_argmax(b, V);
        acc->n_pos++;
        if (t + 1 < T) {
            acc->nll_a -= cli_log_prob(a, V, ids[t + 1]);
            acc->nll_b -= cli_log_prob(b, V, ids[t + 1]);
            acc->n_pred++;
        }
    }
}

// Samples ids[1..T) from A at temperature 1 after ids[0] (BOS), keeping A's logits (T, V).
static int sample_from(cllm_engine *a, cllm_sampler *smp, int32_t *ids, size_t T, float *la) {
    const size_t V = cllm_engine_config(a)->vocab_size;
    cllm_engine_reset(a);
    for (size_t i = 0; i < T; i++) {
        cllm_status st = cllm_engine_forward(a, &ids[i], 1, i, la + i * V, V, 0);
        if (st != CLLM_OK) return cli_fail("compare", st, "model A");
        if (i + 1 < T && (st = cllm_sampler_sample(smp, la + i * V, V, &ids[i + 1])) != CLLM_OK)
            return cli_fail("compare", st, "sampling");
    }
    return CLI_EXIT_OK;
}

static int teacher(cllm_engine *e, const int32_t *ids, size_t T, float *l, const char *which) {
    const size_t V = cllm_engine_config(e)->vocab_size;
    cllm_engine_reset(e);
    cllm_status st = cllm_engine_forward(e, ids, T, 0, l, T * V, 1);
    return st == CLLM_OK ? CLI_EXIT_OK : cli_fail("compare", st, which);
}

static void print_result(const cmp_acc *acc, size_t n_seq, size_t T) {
    printf("sequences: %zu x %zu tokens (%zu positions)\n", n_seq, T, acc->n_pos);
    printf("max |logit diff|: %.6g\n", acc->max_abs);
    printf("mean KL(A||B): %.6g\n", acc->kl_sum / (double)acc->n_pos);
    printf("top-1 agreement: %.2f%% (%zu / %zu)\n",
           100.0 * (double)acc->top1_agree / (double)acc->n_pos, acc->top1_agree, acc->n_pos);
    if (acc->n_pred)
        printf("perplexity: A %.4f, B %.4f\n", exp(acc->nll_a / (double)acc->n_pred),
               exp(acc->nll_b / (double)acc->n_pred));
    printf("%s\n", acc->identical ? "bit-identical: every logit matches exactly"
                                  : "not bit-identical");
}

typedef struct cmp_args {
    const char *path_a, *path_b, *tokens;
    long long sample_len, n_seq;
    uint64_t seed;
    cli_engine_args eng;
} cmp_args;

// Runs the given sequence or K sampled ones through both engines.
static int compare_engines(const cmp_args *a, cllm_engine *ea, cllm_engine *eb) {
    const size_t V = cllm_engine_config(ea)->vocab_size;
    if (cllm_engine_config(eb)->vocab_size != V) {
        fprintf(stderr, "codecllm compare: error: vocabularies differ (%zu vs %u)\n", V,
                cllm_engine_config(eb)->vocab_size);
        return CLI_EXIT_FAIL;
    }
    int32_t *ids = NULL;
    size_t T = (size_t)a->sample_len, n_seq = (size_t)a->n_seq;
    if (a->tokens) {
        int prc = cli_parse_tokens(a->tokens, &ids, &T);
        if (prc == -2) return CLI_EXIT_FAIL;
        if (prc != 0)
            return cli_usage_error("compare", compare_usage, "cannot read ids from '%s'",
                                   a->tokens);
        n_seq = 1;
        if (cli_check_ids("compare", ids, T, (uint32_t)V)) return free(ids), CLI_EXIT_FAIL;
    } else if (cllm_engine_config(ea)->bos_id < 0) {
        fprintf(stderr, "codecllm compare: error: model A has no BOS token to sample from\n");
        return CLI_EXIT_FAIL;
    }
    size_t ctx = cllm_engine_context(ea) < cllm_engine_context(eb) ? cllm_engine_context(ea)
                                                                   : cllm_engine_context(eb);
    if (T == 0 || T > ctx) {
        fprintf(stderr, "codecllm compare: error: %zu tokens; the context holds %zu\n", T, ctx);
        free(ids);
        return CLI_EXIT_FAIL;
    }
    if (!ids) ids = malloc(T * sizeof *ids);
    float *la = malloc(T * V * sizeof *la), *lb = malloc(T * V * sizeof *lb);
    cllm_sampler_params sp = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = a->seed};
    cllm_sampler *smp = NULL;
    int rc = ids && la && lb && cllm_sampler_create(&sp, V, &smp) == CLLM_OK
                 ? CLI_EXIT_OK
                 : cli_fail("compare", CLLM_ERR_NOMEM, "buffers");
    cmp_acc acc = {.identical = 1};
    for (size_t s = 0; s < n_seq && rc == CLI_EXIT_OK; s++) {
        if (a->tokens) {
            rc = teacher(ea, ids, T, la, "model A");
        } else {
            ids[0] = cllm_engine_config(ea)->bos_id;
            rc = sample_from(ea, smp, ids, T, la);
        }
        if (rc == CLI_EXIT_OK) rc = teacher(eb, ids, T, lb, "model B");
        if (rc == CLI_EXIT_OK) accumulate(&acc, ids, T, la, lb, V);
    }
    if (rc == CLI_EXIT_OK) print_result(&acc, n_seq, T);
    cllm_sampler_free(smp);
    free(la);
    free(lb);
    free(ids);
    return rc;
}

static int parse_compare(int argc, char **argv, cmp_args *a) {
    memset(a, 0, sizeof *a);
    cli_engine_args_init(&a->eng);
    a->sample_len = 256;
    a->n_seq = 4;
    a->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_engine_flag("compare", compare_usage, argc, argv, &i, &a->eng);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        long long n;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: %s\n", compare_usage);
            return -1;
        } else if (!strcmp(f, "--tokens") && v) {
            a->tokens = argv[++i];
        } else if (!strcmp(f, "--sample") && v && !cli_parse_int(v, 1, 1 << 24, &n)) {
            a->sample_len = n, i++;
        } else if (!strcmp(f, "--sequences") && v && !cli_parse_int(v, 1, 1 << 20, &n)) {
            a->n_seq = n, i++;
        } else if (!strcmp(f, "--seed") && v && !cli_parse_int(v, 0, INT64_MAX, &n)) {
            a->seed = (uint64_t)n, i++;
        } else if (f[0] != '-' && !a->path_a) {
            a->path_a = f;
        } else if (f[0] != '-' && !a->path_b) {
            a->path_b = f;
        } else {
            return cli_usage_error("compare", compare_usage, "bad or unexpected argument '%s'", f);
        }
    }
    if (!a->path_b) return cli_usage_error("compare", compare_usage, "two models are required");
    return CLI_EXIT_OK;
}

int cmd_compare(int argc, char **argv) {
    cmp_args a;
    int rc = parse_compare(argc, argv, &a);
    if (rc != CLI_EXIT_OK) return rc < 0 ? CLI_EXIT_OK : rc;
    cllm_container *ca = NULL, *cb = NULL;
    cllm_engine *ea = NULL, *eb = NULL;
    rc = cli_engine_open("compare", a.path_a, &a.eng, &ca, &ea);
    if (rc == CLI_EXIT_OK) rc = cli_engine_open("compare", a.path_b, &a.eng, &cb, &eb);
    if (rc == CLI_EXIT_OK) rc = compare_engines(&a, ea, eb);
    if (rc == CLI_EXIT_OK && a.eng.verbose) cli_engine_report(eb, 1);
    cllm_engine_free(ea);
    cllm_engine_free(eb);
    cllm_container_free(ca);
    cllm_container_free(cb);
    return rc;
}
