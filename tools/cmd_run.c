// codecllm run MODEL.cllm [-p TEXT|- | -f FILE | --tokens LIST|@FILE] [-n N] [sampling flags]
//               [--output text|ids] [--ignore-eos] [engine flags]
//
// Prefills the prompt in one forward call, then samples and feeds one token at a time, printing
// text (or ids) as it goes. Tokens/s and peak memory go to stderr at the end.
#include "cli.h"
#include "cli_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char run_usage[] =
    "codecllm run MODEL.cllm [-p TEXT|- | -f FILE | --tokens LIST|@FILE] [-n N] [--temp T]\n"
    "             [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]\n"
    "             [--output text|ids] [--ignore-eos] [-t N] [-c CTX] [--backend B]\n"
    "             [--weights MODE] [--kv-type f32|f16] [--verbose]\n"
    "  -p TEXT              prompt text (needs the tokenizer stored in MODEL; BOS is added when\n"
    "                       the tokenizer asks for it); -p - reads the prompt from stdin\n"
    "  -f FILE              read the prompt text from FILE\n"
    "  --tokens LIST|@FILE  prompt as token ids (\"1,300,42\" or a file of ids)\n"
    "                       (none of these: the prompt is BOS alone)\n"
    CLI_SAMPLING_FLAGS_HELP
    "  --output text|ids    print text (default) or the whole sequence as ids on one line\n"
    "  --ignore-eos         keep generating after the end-of-sequence token\n"
    CLI_ENGINE_FLAGS_HELP;

typedef struct run_args {
    const char *model, *prompt, *prompt_file, *tokens;
    long long n_predict;
    cllm_sampler_params sp;
    int output_ids, ignore_eos;
    cli_engine_args eng;
} run_args;

// The option at argv[*i] that run alone has (with its value): 1 when consumed, 0 when not one,
// -1 after a usage error.
static int run_flag(int argc, char **argv, int *i, run_args *a) {
    const char *f = argv[*i];
    if (!strcmp(f, "--ignore-eos")) {
        a->ignore_eos = 1;
        return 1;
    }
    int takes = !strcmp(f, "-p") || !strcmp(f, "--prompt") || !strcmp(f, "-f") ||
                !strcmp(f, "--file") || !strcmp(f, "--tokens") || !strcmp(f, "--output");
    if (!takes) return 0;
    if (*i + 1 >= argc) return cli_usage_error("run", run_usage, "%s needs a value", f), -1;
    const char *v = argv[++*i];
    if (!strcmp(f, "--tokens")) a->tokens = v;
    else if (!strcmp(f, "-f") || !strcmp(f, "--file")) a->prompt_file = v;
    else if (strcmp(f, "--output")) a->prompt = v;
    else if (!strcmp(v, "ids") || !strcmp(v, "text")) a->output_ids = !strcmp(v, "ids");
    else return cli_usage_error("run", run_usage, "bad --output '%s' (text or ids)", v), -1;
    return 1;
}

static int parse_run_args(int argc, char **argv, run_args *a) {
    memset(a, 0, sizeof *a);
    cli_engine_args_init(&a->eng);
    cli_sampling_init(&a->sp, &a->n_predict);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_engine_flag("run", run_usage, argc, argv, &i, &a->eng);
        if (r == 0) r = cli_sampling_flag("run", run_usage, argc, argv, &i, &a->sp, &a->n_predict);
        if (r == 0) r = run_flag(argc, argv, &i, a);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: %s\n", run_usage);
            return -1;
        }
        if (f[0] == '-') return cli_usage_error("run", run_usage, "unknown option '%s'", f);
        if (a->model) return cli_usage_error("run", run_usage, "unexpected argument '%s'", f);
        a->model = f;
    }
    if (!a->model) return cli_usage_error("run", run_usage, "no model given");
    if (!!a->prompt + !!a->prompt_file + !!a->tokens > 1)
        return cli_usage_error("run", run_usage, "-p, -f and --tokens exclude each other");
    return CLI_EXIT_OK;
}

// The prompt as ids: --tokens as given, -p encoded (BOS first when the tokenizer asks for it:
// cllm_tokenizer_add_bos), or BOS alone.
static int prompt_ids(const run_args *a, const cllm_engine *e, const cllm_tokenizer *tok,
                      int32_t **ids, size_t *n) {
    const cllm_model_config *cfg = cllm_engine_config(e);
    if (a->tokens) {
        int prc = cli_parse_tokens(a->tokens, ids, n);
        if (prc == -2) return CLI_EXIT_FAIL;  // the file could not be read: said already
        if (prc != 0)
            return cli_usage_error("run", run_usage, "cannot read token ids from '%s'", a->tokens);
        return cli_check_ids("run", *ids, *n, cfg->vocab_size);
    }
    if (!a->prompt && !a->prompt_file) {
        int32_t bos = cfg->bos_id >= 0 ? cfg->bos_id : (tok ? cllm_tokenizer_bos(tok) : -1);
        if (bos < 0) {
            fprintf(stderr, "codecllm run: error: the model has no BOS token: give a prompt\n");
            return CLI_EXIT_FAIL;
        }
        *ids = malloc(sizeof **ids);
        if (!*ids) return CLI_EXIT_FAIL;
        (*ids)[0] = bos;
        *n = 1;
        return CLI_EXIT_OK;
    }
    // -p TEXT, or the text of -f FILE / -p - (stdin).
    char *text = NULL;
    size_t len = 0;
    const char *file = a->prompt_file ? a->prompt_file
                       : !strcmp(a->prompt, "-") ? "-"
                                                 : NULL;
    int rc = file ? cli_read_bytes("run", file, &text, &len) : CLI_EXIT_OK;
    if (rc == CLI_EXIT_OK)
        rc = cli_tokenize("run", tok, file ? text : a->prompt, file ? len : strlen(a->prompt),
                          cllm_tokenizer_add_bos(tok), ids, n);
    free(text);
    if (rc != CLI_EXIT_OK) return rc;
    return cli_check_ids("run", *ids, *n, cfg->vocab_size);
}

// Output of one token: its id (ids mode) or its text after `prev`.
static void emit(const run_args *a, const cllm_tokenizer *tok, int32_t prev, int32_t id,
                 int first) {
    if (a->output_ids) {
        printf(first ? "%d" : " %d", id);
    } else {
        char piece[512];
        size_t len = 0;
        if (cllm_tokenizer_decode_token(tok, prev, id, piece, sizeof piece, &len) == CLLM_OK)
            fwrite(piece, 1, len, stdout);
    }
    fflush(stdout);
}

typedef struct gen_result {
    size_t n_generated;
    double t_prefill, t_gen;
    int context_full, eos;
} gen_result;

// Prefill, then sample / emit / feed until n_predict tokens, EOS or a full context.
static int generate(const run_args *a, cllm_engine *e, const cllm_tokenizer *tok,
                    cllm_sampler *smp, const int32_t *prompt, size_t n_prompt, float *logits,
                    gen_result *r) {
    const cllm_model_config *cfg = cllm_engine_config(e);
    const size_t vocab = cfg->vocab_size, ctx = cllm_engine_context(e);
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < n_prompt; i++) {
        if (!a->output_ids && i == 0 && prompt[0] == cfg->bos_id) continue;  // BOS has no text
        emit(a, tok, i ? prompt[i - 1] : -1, prompt[i], i == 0);
    }
    double t0 = cllm_now_seconds_cli();
    cllm_status st = cllm_engine_forward(e, prompt, n_prompt, 0, logits, vocab, 0);
    if (st != CLLM_OK) return cli_fail("run", st, "prefill");
    r->t_prefill = cllm_now_seconds_cli() - t0;
    for (size_t i = 0; i < n_prompt; i++) cllm_sampler_accept(smp, prompt[i]);
    t0 = cllm_now_seconds_cli();
    int32_t prev = prompt[n_prompt - 1];
    for (size_t pos = n_prompt; r->n_generated < (size_t)a->n_predict; pos++) {
        int32_t next;
        st = cllm_sampler_sample(smp, logits, vocab, &next);
        if (st != CLLM_OK) return cli_fail("run", st, "sampling");
        if (next == cfg->eos_id && !a->ignore_eos) {
            r->eos = 1;
            break;
        }
        cllm_sampler_accept(smp, next);
        emit(a, tok, prev, next, 0);
        prev = next;
        if (++r->n_generated == (size_t)a->n_predict) break;
        if (pos >= ctx) {
            r->context_full = 1;
            break;
        }
        st = cllm_engine_forward(e, &next, 1, pos, logits, vocab, 0);
        if (st != CLLM_OK) return cli_fail("run", st, "generation");
    }
    r->t_gen = cllm_now_seconds_cli() - t0;
    return CLI_EXIT_OK;
}

static void report(const gen_result *r, size_t n_prompt, const cllm_engine *e, int verbose) {
    fprintf(stderr, "prefill: %zu tokens in %.3f s (%.1f tokens/s)\n", n_prompt, r->t_prefill,
            r->t_prefill > 0 ? (double)n_prompt / r->t_prefill : 0.0);
    fprintf(stderr, "generation: %zu tokens in %.3f s (%.1f tokens/s)\n", r->n_generated,
            r->t_gen, r->t_gen > 0 ? (double)r->n_generated / r->t_gen : 0.0);
    cli_engine_report(e, verbose);
}

static int run_model(const run_args *a, cllm_engine *e, const cllm_tokenizer *tok) {
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    int rc = prompt_ids(a, e, tok, &prompt, &n_prompt);
    const size_t ctx = cllm_engine_context(e);
    if (rc == CLI_EXIT_OK && (n_prompt == 0 || n_prompt > ctx)) {
        fprintf(stderr, "codecllm run: error: the prompt has %zu tokens; the context holds %zu\n",
                n_prompt, ctx);
        rc = CLI_EXIT_FAIL;
    }
    const size_t vocab = cllm_engine_config(e)->vocab_size;
    float *logits = malloc(vocab * sizeof *logits);
    cllm_sampler *smp = NULL;
    if (rc == CLI_EXIT_OK && !logits) rc = cli_fail("run", CLLM_ERR_NOMEM, "logits");
    cllm_status st = rc == CLI_EXIT_OK ? cllm_sampler_create(&a->sp, vocab, &smp) : CLLM_OK;
    if (st != CLLM_OK) rc = cli_fail("run", st, "sampler");
    gen_result r;
    if (rc == CLI_EXIT_OK) rc = generate(a, e, tok, smp, prompt, n_prompt, logits, &r);
    if (rc == CLI_EXIT_OK) {
        printf("\n");
        fflush(stdout);
        if (a->eng.verbose) fprintf(stderr, "seed: %llu\n", (unsigned long long)a->sp.seed);
        report(&r, n_prompt, e, a->eng.verbose);
        const char *tmpl = tok ? cllm_tokenizer_chat_template(tok) : NULL;
        if (r.eos && r.n_generated == 0 && tmpl && tmpl[0])  // an instruct model, a bare prompt
            fprintf(stderr,
                    "codecllm run: the model ended the text at once (end-of-sequence token); it "
                    "has a chat template: 'codecllm chat' applies it (or --ignore-eos)\n");
        if (r.context_full)  // a normal end of generation, like EOS (see -n in --help)
            fprintf(stderr,
                    "codecllm run: the context of %zu positions is full: stopped after %zu of "
                    "%lld tokens (raise -c if the model allows)\n",
                    ctx, r.n_generated, a->n_predict);
    }
    cllm_sampler_free(smp);
    free(logits);
    free(prompt);
    return rc;
}

int cmd_run(int argc, char **argv) {
    run_args a;
    int rc = parse_run_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK) return rc < 0 ? CLI_EXIT_OK : rc;
    cllm_container *c;
    cllm_engine *e;
    rc = cli_engine_open("run", a.model, &a.eng, &c, &e);
    if (rc != CLI_EXIT_OK) return rc;
    cllm_tokenizer *tok = NULL;
    if (a.prompt || a.prompt_file || !a.output_ids) {
        const char *why = a.tokens || !(a.prompt || a.prompt_file) ? "text output needs one"
                                                                   : "a text prompt needs one";
        rc = cli_container_tokenizer("run", a.model, c, why, &tok);
    }
    if (rc == CLI_EXIT_OK) rc = run_model(&a, e, tok);
    cllm_tokenizer_free(tok);
    cllm_engine_free(e);
    cllm_container_free(c);
    return rc;
}
