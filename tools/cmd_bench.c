// codecllm bench MODEL.cllm [-p 128] [-n 128] [-r 3] [-b 1,8,32] [--weights raw,device,stream]
//                [--vram SIZE] [--backend cuda|cpu] [-t N] [-c CTX] [-o md|json]
//
// In the spirit of llama-bench: for each weights mode, pp<p> (one forward over a p-token prompt)
// and tg<n> (n single-token steps from an empty cache), tokens/s as mean ± sd over r repetitions,
// peak memory, and for streamed weights the split of time into copy / decode / compute.
// With -b, in the spirit of llama-batched-bench: for each count B, B sequences with different
// prompts are prefilled (one batched call), then decoded together for n steps; aggregate and
// per-sequence tokens/s and the KV cache's size.
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char bench_usage[] =
    "codecllm bench MODEL.cllm [-p 128] [-n 128] [-r 3] [-b 1,8,32] [--weights raw,device,stream]\n"
    "               [--vram SIZE] [--backend cuda|cpu] [-t N] [-c CTX] [-o md|json]\n"
    "  -p N         prompt tokens for the prefill test (0: skip); with -b, per sequence\n"
    "  -n N         generated tokens for the decode test (0: skip); with -b, per sequence\n"
    "  -r N         repetitions (mean ± sd)\n"
    "  -b LIST      comma-separated sequence counts: B sequences prefilled together, then decoded\n"
    "               together n steps; aggregate and per-sequence tokens/s, KV cache size\n"
    "               (context: -c, default p + n)\n"
    "  --weights    comma-separated weights modes (GPU: raw,device,stream; CPU: stream,resident)\n"
    "  --vram SIZE  GPU: let the planner place layers within SIZE (e.g. 3.6GiB); adds a 'plan' row\n"
    "  -o md|json   output format (default md)\n"
    "  --no-verify  skip the checksum check of every byte at open (default: once, first mode)";

typedef struct bench_cfg {
    const char *path;
    int n_prompt, n_gen, reps, n_threads, json;
    int no_verify;  // set after the first open: the file is checked once, not once per mode
    uint32_t ctx;
    uint64_t vram;
    cllm_backend_kind backend;
    char modes[8][16];
    int n_modes;
    uint32_t n_layers;
    int batch[16];  // -b: sequence counts (n_batch 0: the single-sequence tests)
    int n_batch;
} bench_cfg;

typedef struct bench_result {
    double mean, sd;
    int valid;
} bench_result;

static bench_result summarize(const double *v, int n) {
    bench_result r = {0, 0, n > 0};
    for (int i = 0; i < n; i++) r.mean += v[i];
    if (n) r.mean /= n;
    for (int i = 0; i < n && n > 1; i++) r.sd += (v[i] - r.mean) * (v[i] - r.mean);
    if (n > 1) r.sd = sqrt(r.sd / (n - 1));
    return r;
}

// Deterministic token ids in [3, vocab) like llama-bench's random prompt.
static void fill_tokens(int32_t *t, int n, uint32_t vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)(3 + (seed >> 33) % (vocab > 3 ? vocab - 3 : 1));
    }
}

// Time split of one test, from engine stats taken before and after it.
typedef struct bench_split {
    double copy, decode, compute;
    uint64_t tokens;
} bench_split;

static void split_add(bench_split *acc, const cllm_engine_stats *a, const cllm_engine_stats *b) {
    acc->copy += b->copy_seconds - a->copy_seconds;
    acc->decode += b->decode_seconds - a->decode_seconds;
    acc->compute += b->compute_seconds - a->compute_seconds;
    acc->tokens += b->n_tokens - a->n_tokens;
}

// One test (pp: one forward over n tokens; tg: n single-token steps), repeated; tokens/s each.
static cllm_status bench_test(cllm_engine *e, const bench_cfg *b, int is_pp, uint32_t vocab,
                              float *logits, int32_t *tokens, double *rates, bench_split *split) {
    int n = is_pp ? b->n_prompt : b->n_gen;
    for (int rep = 0; rep < b->reps; rep++) {
        fill_tokens(tokens, n, vocab, (is_pp ? 1000u : 2000u) + (uint64_t)rep);
        cllm_engine_reset(e);
        cllm_engine_stats s0, s1;
        cllm_engine_stats_get(e, &s0);
        double t0 = cllm_now_seconds_cli();
        cllm_status st = CLLM_OK;
        if (is_pp) st = cllm_engine_forward(e, tokens, (size_t)n, 0, logits, vocab, 0);
        for (int i = 0; !is_pp && st == CLLM_OK && i < n; i++)
            st = cllm_engine_forward(e, tokens + i, 1, (size_t)i, logits, vocab, 0);
        if (st != CLLM_OK) return st;
        rates[rep] = n / (cllm_now_seconds_cli() - t0);
        cllm_engine_stats_get(e, &s1);
        split_add(split, &s0, &s1);
    }
    return CLLM_OK;
}

static const char *majority_codec(const cllm_container *c) {
    uint64_t elems[CLLM_CODEC_COUNT_] = {0};
    for (size_t i = 0; i < cllm_container_n_tensors(c); i++) {
        cllm_tensor_info t;
        if (cllm_container_tensor(c, i, &t) == CLLM_OK && t.codec < CLLM_CODEC_COUNT_)
            elems[t.codec] += t.n_elements;
    }
    int best = 0;
    for (int k = 1; k < CLLM_CODEC_COUNT_; k++)
        if (elems[k] > elems[best]) best = k;
    return cllm_codec_name((cllm_codec)best);
}

static void print_row(const bench_cfg *b, const cllm_container *c, const char *mode,
                      const char *test, bench_result r, const cllm_engine_stats *s,
                      const bench_split *sp, int *first) {
    const double gib = 1024.0 * 1024 * 1024;
    uint64_t peak = b->backend == CLLM_BACKEND_CUDA ? s->device_peak_bytes : s->peak_rss_bytes;
    double per = sp->tokens && b->n_layers ? 1e3 / (double)sp->tokens / b->n_layers : 0;
    int has_split = sp->copy > 0 || sp->decode > 0;
    if (b->json) {
        printf("%s  {\"model\": \"%s\", \"size_bytes\": %llu, \"codec\": \"%s\", \"backend\": \"%s\","
               " \"weights\": \"%s\", \"test\": \"%s\", \"tok_s\": %.4f, \"tok_s_sd\": %.4f,"
               " \"peak_bytes\": %llu, \"device_weight_bytes\": %llu,"
               " \"per_layer_ms\": {\"copy\": %.5f, \"decode\": %.5f, \"compute\": %.5f},"
               " \"predicted_token_s\": %.6f}",
               *first ? "" : ",\n", b->path, (unsigned long long)cllm_container_file_size(c),
               majority_codec(c), s->backend, mode, test, r.mean, r.sd, (unsigned long long)peak,
               (unsigned long long)s->device_weight_bytes, sp->copy * per, sp->decode * per,
               sp->compute * per, s->predicted_token_seconds);
        *first = 0;
        return;
    }
    printf("| %-24.24s | %7.2f GiB | %-8s | %-4s | %-8s | %6s | %9.2f ± %6.2f | %7.2f GiB |",
           b->path, (double)cllm_container_file_size(c) / gib, majority_codec(c), s->backend, mode,
           test, r.mean, r.sd, (double)peak / gib);
    if (has_split)
        printf(" %6.3f / %6.3f / %6.3f |\n", sp->copy * per, sp->decode * per, sp->compute * per);
    else
        printf(" %24s |\n", "-");
}

static int bench_mode(bench_cfg *b, cllm_container *c, const char *mode, int *first) {
    cllm_engine_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = b->backend;
    opt.n_threads = b->n_threads;
    opt.context_len = b->ctx;
    opt.vram_budget = b->vram;
    opt.no_verify = b->no_verify;
    if (strcmp(mode, "plan") && cllm_weights_mode_parse(mode, &opt.weights) != CLLM_OK)
        return cli_usage_error("bench", bench_usage, "unknown weights mode '%s'", mode);
    if (!strcmp(mode, "plan")) opt.weights = CLLM_WEIGHTS_STREAM;
    cllm_engine *e;
    cllm_status st = cllm_engine_open(c, &opt, &e);
    if (st != CLLM_OK) return cli_fail("bench", st, mode);
    b->no_verify = 1;
    uint32_t vocab = cllm_container_config(c)->vocab_size;
    int n_tok = b->n_prompt > b->n_gen ? b->n_prompt : b->n_gen;
    if (n_tok < 4) n_tok = 4;
    const uint32_t ctx = cllm_engine_context(e);
    if ((uint32_t)n_tok > ctx) {
        cllm_engine_free(e);
        return cli_usage_error("bench", bench_usage, "-p/-n %d exceed the context of %u", n_tok,
                               ctx);
    }
    float *logits = malloc(sizeof(float) * vocab);
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)(n_tok > 0 ? n_tok : 1));
    double *rates = malloc(sizeof(double) * (size_t)b->reps);
    int rc = CLI_EXIT_OK;
    if (!logits || !tokens || !rates) rc = cli_fail("bench", CLLM_ERR_NOMEM, "buffers");
    // Warm-up: one full-size prefill (library initialisation, GEMM heuristics) and a few single
    // steps (graph capture), untimed.
    if (rc == CLI_EXIT_OK) {
        int n_warm = b->n_prompt > 4 ? b->n_prompt : 4;
        if ((uint32_t)n_warm + 3 > cllm_engine_context(e)) n_warm = (int)cllm_engine_context(e) - 3;
        fill_tokens(tokens, n_warm, vocab, 7);
        cllm_engine_reset(e);
        st = cllm_engine_forward(e, tokens, (size_t)n_warm, 0, logits, vocab, 0);
        for (int i = n_warm; st == CLLM_OK && i < n_warm + 3; i++)
            st = cllm_engine_forward(e, tokens, 1, (size_t)i, logits, vocab, 0);
        if (st != CLLM_OK) rc = cli_fail("bench", st, "warm-up");
    }
    for (int is_pp = 1; is_pp >= 0 && rc == CLI_EXIT_OK; is_pp--) {
        int n = is_pp ? b->n_prompt : b->n_gen;
        if (n <= 0) continue;
        bench_split sp = {0};
        st = bench_test(e, b, is_pp, vocab, logits, tokens, rates, &sp);
        if (st != CLLM_OK) {
            rc = cli_fail("bench", st, mode);
            break;
        }
        cllm_engine_stats s;
        cllm_engine_stats_get(e, &s);
        char test[32];
        snprintf(test, sizeof test, "%s%d", is_pp ? "pp" : "tg", n);
        print_row(b, c, mode, test, summarize(rates, b->reps), &s, &sp, first);
        if (!strcmp(mode, "plan") && s.plan && !b->json && !is_pp)
            fprintf(stderr, "plan (--vram %.2f GiB, predicted %.2f tok/s):\n%s\n",
                    (double)b->vram / (1024.0 * 1024 * 1024),
                    s.predicted_token_seconds > 0 ? 1.0 / s.predicted_token_seconds : 0.0, s.plan);
    }
    fflush(stdout);
    free(logits);
    free(tokens);
    free(rates);
    cllm_engine_free(e);
    return rc;
}

// ---- -b: many sequences at once ----------------------------------------------------------

// One repetition: B prompts of p tokens in one batched call, then n steps of one token of every
// sequence. Seconds of each phase into *t_pp, *t_tg.
static cllm_status batch_rep(cllm_engine *e, const bench_cfg *b, int n_seq, int rep,
                             int32_t *tokens, cllm_batch_item *items, float *logits,
                             double *t_pp, double *t_tg) {
    const uint32_t vocab = cllm_engine_config(e)->vocab_size;
    const size_t p = (size_t)b->n_prompt, cap = (size_t)n_seq * vocab;
    const size_t per = p + (size_t)b->n_gen;
    for (int s = 0; s < n_seq; s++) {
        cllm_engine_seq_reset(e, (uint32_t)s);
        fill_tokens(tokens + (size_t)s * per, (int)per, vocab, 3000u + 1000u * (uint64_t)rep + (uint64_t)s);
        items[s] = (cllm_batch_item){(uint32_t)s, tokens + (size_t)s * per, p, 0, 1};
    }
    double t0 = cllm_now_seconds_cli();
    cllm_status st = p ? cllm_engine_forward_batch(e, items, (size_t)n_seq, logits, cap) : CLLM_OK;
    double t1 = cllm_now_seconds_cli();
    for (int i = 0; st == CLLM_OK && i < b->n_gen; i++) {
        for (int s = 0; s < n_seq; s++) {
            items[s].tokens = tokens + (size_t)s * per + p + (size_t)i;
            items[s].n = 1;
            items[s].pos = p + (size_t)i;
        }
        st = cllm_engine_forward_batch(e, items, (size_t)n_seq, logits, cap);
    }
    *t_pp = t1 - t0;
    *t_tg = cllm_now_seconds_cli() - t1;
    return st;
}

static void batch_row(const bench_cfg *b, const cllm_container *c, const char *mode, int n_seq,
                      const double *t_pp, const double *t_tg, const cllm_engine_stats *s,
                      int *first) {
    double spp[1000], stg[1000], tpp = 0, ttg = 0;
    for (int r = 0; r < b->reps; r++) {
        spp[r] = t_pp[r] > 0 ? (double)n_seq * b->n_prompt / t_pp[r] : 0;
        stg[r] = t_tg[r] > 0 ? (double)n_seq * b->n_gen / t_tg[r] : 0;
        tpp += t_pp[r] / b->reps;
        ttg += t_tg[r] / b->reps;
    }
    bench_result pp = summarize(spp, b->reps), tg = summarize(stg, b->reps);
    uint64_t peak = b->backend == CLLM_BACKEND_CUDA ? s->device_peak_bytes : s->peak_rss_bytes;
    const double mib = 1024.0 * 1024, gib = mib * 1024;
    if (b->json) {
        printf("%s  {\"model\": \"%s\", \"codec\": \"%s\", \"backend\": \"%s\", \"weights\": \"%s\","
               " \"n_seq\": %d, \"pp\": %d, \"tg\": %d, \"kv_bytes\": %llu, \"t_pp\": %.6f,"
               " \"s_pp\": %.4f, \"t_tg\": %.6f, \"s_tg\": %.4f, \"s_tg_sd\": %.4f,"
               " \"s_tg_per_seq\": %.4f, \"peak_bytes\": %llu}",
               *first ? "" : ",\n", b->path, majority_codec(c), s->backend, mode, n_seq,
               b->n_prompt, b->n_gen, (unsigned long long)s->kv_bytes, tpp, pp.mean, ttg, tg.mean,
               tg.sd, tg.mean / n_seq, (unsigned long long)peak);
        *first = 0;
        return;
    }
    printf("| %-24.24s | %-8s | %-4s | %-8s | %4d | %5d | %5d | %5.0f MiB | %8.3f | %10.2f |"
           " %8.3f | %9.2f ± %6.2f | %12.2f | %7.2f GiB |\n",
           b->path, majority_codec(c), s->backend, mode, n_seq, b->n_prompt, b->n_gen,
           (double)s->kv_bytes / mib, tpp, pp.mean, ttg, tg.mean, tg.sd, tg.mean / n_seq,
           (double)peak / gib);
}

static cllm_engine *batch_engine(bench_cfg *b, cllm_container *c, const char *mode, int n_seq,
                                 cllm_status *st) {
    cllm_engine_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = b->backend;
    opt.n_threads = b->n_threads;
    opt.context_len = b->ctx ? b->ctx : (uint32_t)(b->n_prompt + b->n_gen);
    opt.vram_budget = b->vram;
    opt.no_verify = b->no_verify;
    opt.n_seq = (uint32_t)n_seq;
    opt.weights = CLLM_WEIGHTS_STREAM;
    *st = strcmp(mode, "plan") ? cllm_weights_mode_parse(mode, &opt.weights) : CLLM_OK;
    cllm_engine *e = NULL;
    if (*st == CLLM_OK) *st = cllm_engine_open(c, &opt, &e);
    if (*st == CLLM_OK) b->no_verify = 1;
    return e;
}

// B sequences: a warm-up repetition, then r timed ones; one row.
static int bench_batch(bench_cfg *b, cllm_container *c, const char *mode, int n_seq, int *first) {
    if (b->n_prompt + b->n_gen < 1)
        return cli_usage_error("bench", bench_usage, "-b needs -p or -n above 0");
    cllm_status st;
    cllm_engine *e = batch_engine(b, c, mode, n_seq, &st);
    if (!e) return cli_fail("bench", st, mode);
    if ((size_t)b->n_prompt + (size_t)b->n_gen > cllm_engine_context(e)) {
        cllm_engine_free(e);
        return cli_usage_error("bench", bench_usage, "-p + -n exceed the context");
    }
    const size_t vocab = cllm_engine_config(e)->vocab_size;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)n_seq * (size_t)(b->n_prompt + b->n_gen));
    cllm_batch_item *items = malloc(sizeof *items * (size_t)n_seq);
    float *logits = malloc(sizeof(float) * vocab * (size_t)n_seq);
    double t_pp[1000], t_tg[1000], w0, w1;
    int rc = tokens && items && logits ? CLI_EXIT_OK : cli_fail("bench", CLLM_ERR_NOMEM, "buffers");
    if (rc == CLI_EXIT_OK)
        st = batch_rep(e, b, n_seq, 999, tokens, items, logits, &w0, &w1);  // warm-up
    for (int r = 0; rc == CLI_EXIT_OK && st == CLLM_OK && r < b->reps; r++)
        st = batch_rep(e, b, n_seq, r, tokens, items, logits, &t_pp[r], &t_tg[r]);
    if (rc == CLI_EXIT_OK && st != CLLM_OK) rc = cli_fail("bench", st, mode);
    if (rc == CLI_EXIT_OK) {
        cllm_engine_stats s;
        cllm_engine_stats_get(e, &s);
        batch_row(b, c, mode, n_seq, t_pp, t_tg, &s, first);
        fflush(stdout);
    }
    free(tokens);
    free(items);
    free(logits);
    cllm_engine_free(e);
    return rc;
}

static int parse_batch(bench_cfg *b, const char *list) {
    b->n_batch = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long long v;
        if (b->n_batch == 16 || cli_parse_int(tok, 1, 4096, &v)) return -1;
        b->batch[b->n_batch++] = (int)v;
    }
    return b->n_batch ? 0 : -1;
}

static int parse_modes(bench_cfg *b, const char *list) {
    b->n_modes = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (b->n_modes == 8 || strlen(tok) >= sizeof b->modes[0]) return -1;
        snprintf(b->modes[b->n_modes++], sizeof b->modes[0], "%s", tok);
    }
    return b->n_modes ? 0 : -1;
}

static int parse_bench_args(bench_cfg *b, int argc, char **argv) {
    long long v;
    const char *modes = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s\n", bench_usage);
            return -1;
        }
        int bad = 0;
        if (!strcmp(a, "--no-verify")) {
            b->no_verify = 1;
            continue;
        }
        if (a[0] != '-') {
            if (b->path) bad = 1;
            b->path = a;
            continue;
        }
        if (!val) return cli_usage_error("bench", bench_usage, "option %s needs a value", a);
        i++;
        if (!strcmp(a, "-p")) bad = cli_parse_int(val, 0, 1 << 20, &v), b->n_prompt = (int)v;
        else if (!strcmp(a, "-n")) bad = cli_parse_int(val, 0, 1 << 20, &v), b->n_gen = (int)v;
        else if (!strcmp(a, "-r")) bad = cli_parse_int(val, 1, 1000, &v), b->reps = (int)v;
        else if (!strcmp(a, "-t")) bad = cli_parse_int(val, 1, 4096, &v), b->n_threads = (int)v;
        else if (!strcmp(a, "-c")) bad = cli_parse_int(val, 1, 1 << 22, &v), b->ctx = (uint32_t)v;
        else if (!strcmp(a, "--vram")) bad = cli_parse_size(val, &b->vram);
        else if (!strcmp(a, "--weights")) modes = val;
        else if (!strcmp(a, "-b")) bad = parse_batch(b, val);
        else if (!strcmp(a, "-o")) bad = strcmp(val, "md") && strcmp(val, "json"), b->json = !strcmp(val, "json");
        else if (!strcmp(a, "--backend")) {
            if (!strcmp(val, "cpu")) b->backend = CLLM_BACKEND_CPU;
            else if (!strcmp(val, "cuda")) b->backend = CLLM_BACKEND_CUDA;
            else bad = 1;
        } else
            return cli_usage_error("bench", bench_usage, "unknown option '%s'", a);
        if (bad) return cli_usage_error("bench", bench_usage, "bad value '%s' for %s", val, a);
    }
    if (!b->path) return cli_usage_error("bench", bench_usage, "need MODEL.cllm");
    if (!modes) modes = b->backend == CLLM_BACKEND_CUDA ? "raw,device,stream" : "stream,resident";
    if (parse_modes(b, modes)) return cli_usage_error("bench", bench_usage, "bad --weights");
    if (b->vram && b->n_modes < 8) snprintf(b->modes[b->n_modes++], sizeof b->modes[0], "plan");
    return 0;
}

int cmd_bench(int argc, char **argv) {
    bench_cfg b;
    memset(&b, 0, sizeof b);
    b.n_prompt = 128;
    b.n_gen = 128;
    b.reps = 3;
    b.backend = cllm_backend_available(CLLM_BACKEND_CUDA) ? CLLM_BACKEND_CUDA : CLLM_BACKEND_CPU;
    int rc = parse_bench_args(&b, argc, argv);
    if (rc) return rc < 0 ? CLI_EXIT_OK : rc;
    cllm_container *c;
    cllm_status st = cllm_container_open(b.path, &c);
    if (st != CLLM_OK) return cli_fail("bench", st, b.path);
    b.n_layers = cllm_container_config(c)->n_layers;
    if (b.json) printf("[\n");
    else if (b.n_batch)
        printf("| %-24s | %-8s | %-4s | %-8s | %4s | %5s | %5s | %9s | %8s | %10s | %8s | %18s |"
               " %12s | %11s |\n|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n",
               "model", "codec", "back", "weights", "B", "PP", "TG", "KV", "T_PP s", "S_PP t/s",
               "T_TG s", "S_TG t/s", "per seq t/s", "peak mem", "---", "---", "---", "---",
               "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:");
    else
        printf("| %-24s | %11s | %-8s | %-4s | %-8s | %6s | %18s | %11s | %24s |\n"
               "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n",
               "model", "size", "codec", "back", "weights", "test", "t/s", "peak mem",
               "copy/decode/compute ms/layer", "---", "---:", "---", "---", "---", "---", "---:",
               "---:", "---:");
    int first = 1;
    for (int m = 0; m < b.n_modes && rc == CLI_EXIT_OK; m++)
        for (int k = 0; k < (b.n_batch ? b.n_batch : 1) && rc == CLI_EXIT_OK; k++)
            rc = b.n_batch ? bench_batch(&b, c, b.modes[m], b.batch[k], &first)
                           : bench_mode(&b, c, b.modes[m], &first);
    if (b.json) printf("\n]\n");
    cllm_container_free(c);
    return rc;
}
