// codecllm perplexity MODEL.cllm -f TEXT_FILE [-c CTX] [engine flags]
//
// Tokenizes the file with the model's tokenizer (no BOS), cuts the ids into windows of CTX - 1
// tokens, runs each window after BOS from a fresh cache, and scores every token of the window
// given BOS and the tokens before it. Prints the running perplexity per window and the total.
#include "cli.h"
#include "cli_engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ppl_usage[] =
    "codecllm perplexity MODEL.cllm -f TEXT_FILE [-c CTX] [-t N] [--weights stream|resident]\n"
    "             [--kv-type f32|f16] [--verbose]\n"
    "  -f FILE   text to score (read as bytes; needs the tokenizer stored in MODEL)\n"
    "  -c CTX    window length including BOS (default: min(the model's context, 512))\n"
    CLI_ENGINE_FLAGS_HELP;

// Scores ids[0..n) in windows; window tokens follow BOS at position 0.
static int score(cllm_engine *e, int32_t bos, const int32_t *ids, size_t n) {
    const size_t V = cllm_engine_config(e)->vocab_size, ctx = cllm_engine_context(e);
    const size_t win = ctx - 1;  // ctx >= 2: checked by the caller
    int32_t *seq = malloc(ctx * sizeof *seq);
    float *logits = malloc(ctx * V * sizeof *logits);
    if (!seq || !logits) {
        free(seq);
        free(logits);
        return cli_fail("perplexity", CLLM_ERR_NOMEM, "buffers");
    }
    double nll = 0.0, t0 = cllm_now_seconds_cli();
    size_t scored = 0, chunk = 0;
    int rc = CLI_EXIT_OK;
    for (size_t at = 0; at < n && rc == CLI_EXIT_OK; at += win, chunk++) {
        size_t m = n - at < win ? n - at : win;
        seq[0] = bos;
        memcpy(seq + 1, ids + at, m * sizeof *seq);
        cllm_engine_reset(e);
        cllm_status st = cllm_engine_forward(e, seq, m + 1, 0, logits, (m + 1) * V, 1);
        if (st != CLLM_OK) {
            rc = cli_fail("perplexity", st, "forward");
            break;
        }
        for (size_t i = 0; i < m; i++) nll -= cli_log_prob(logits + i * V, V, seq[i + 1]);
        scored += m;
        fprintf(stderr, "[%zu] %.4f\n", chunk + 1, exp(nll / (double)scored));
    }
    if (rc == CLI_EXIT_OK) {
        double dt = cllm_now_seconds_cli() - t0;
        printf("perplexity: %.4f over %zu tokens (%zu windows of up to %zu)\n",
               exp(nll / (double)scored), scored, chunk, win);
        fprintf(stderr, "%.1f tokens/s\n", dt > 0 ? (double)(scored + chunk) / dt : 0.0);
    }
    free(seq);
    free(logits);
    return rc;
}

static int perplexity_of(const char *model, const char *text_path, cllm_container *c,
                         cllm_engine *e) {
    cllm_tokenizer *tok = NULL;
    int rc = cli_container_tokenizer("perplexity", model, c, "perplexity needs one", &tok);
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    if (rc == CLI_EXIT_OK) rc = cli_read_bytes("perplexity", text_path, &text, &len);
    if (rc == CLI_EXIT_OK) rc = cli_tokenize("perplexity", tok, text, len, 0, &ids, &n);
    int32_t bos = cllm_engine_config(e)->bos_id;
    if (rc == CLI_EXIT_OK && bos < 0) bos = cllm_tokenizer_bos(tok);
    if (rc == CLI_EXIT_OK && (n == 0 || bos < 0 || cllm_engine_context(e) < 2)) {
        fprintf(stderr, "codecllm perplexity: error: %s\n",
                n == 0 ? "the text has no tokens"
                       : bos < 0 ? "the model has no BOS token" : "the context is too short");
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK)
        rc = cli_check_ids("perplexity", ids, n, cllm_engine_config(e)->vocab_size);
    if (rc == CLI_EXIT_OK) rc = score(e, bos, ids, n);
    free(ids);
    free(text);
    cllm_tokenizer_free(tok);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    cli_engine_args eng;
    cli_engine_args_init(&eng);
    const char *model = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_engine_flag("perplexity", ppl_usage, argc, argv, &i, &eng);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s\n", ppl_usage);
            return CLI_EXIT_OK;
        }
        if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc)
            file = argv[++i];
        else if (argv[i][0] != '-' && !model) model = argv[i];
        else return cli_usage_error("perplexity", ppl_usage, "unexpected argument '%s'", argv[i]);
    }
    if (!model || !file)
        return cli_usage_error("perplexity", ppl_usage, "MODEL and -f FILE are required");
    if (!eng.opt.context_len) eng.opt.context_len = 512;
    cllm_container *c;
    cllm_engine *e;
    int rc = cli_engine_open("perplexity", model, &eng, &c, &e);
    if (rc == CLI_EXIT_OK) rc = perplexity_of(model, file, c, e);
    if (rc == CLI_EXIT_OK) cli_engine_report(e, eng.verbose);
    cllm_engine_free(e);
    cllm_container_free(c);
    return rc;
}
