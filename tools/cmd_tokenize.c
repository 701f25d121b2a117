// codecllm tokenize --tokenizer FILE [--bos] (--file TEXT_FILE | TEXT)
// codecllm detokenize --tokenizer FILE IDS...
//
// The tokenizer FILE is a tokenizer.json, a llama2.c tokenizer.bin, or a .cllm carrying one.
// Text files are read as bytes; detokenize writes the bytes of the pieces, nothing added.
#include "cli.h"
#include "cli_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char tokenize_usage[] =
    "codecllm tokenize --tokenizer FILE [--bos] (--file TEXT_FILE | TEXT)\n"
    "  prints the ids of TEXT (or of the file's bytes) separated by spaces";
static const char detokenize_usage[] =
    "codecllm detokenize --tokenizer FILE IDS...\n"
    "  IDS: ids as separate arguments or comma-separated; prints their text";

static int open_tokenizer(const char *cmd, const char *path, cllm_tokenizer **tok) {
    cllm_status st = cllm_tokenizer_open(path, tok);
    if (st != CLLM_OK) {
        int rc = cli_fail(cmd, st, path);
        return rc == CLI_EXIT_OK ? CLI_EXIT_FAIL : rc;
    }
    return CLI_EXIT_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *file = NULL, *text = NULL;
    int bos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s\n", tokenize_usage);
            return CLI_EXIT_OK;
        }
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--bos")) bos = 1;
        else if (!strcmp(argv[i], "--") && i + 1 < argc && !text) text = argv[++i];  // "-text"
        else if (argv[i][0] != '-' && !text) text = argv[i];
        else return cli_usage_error("tokenize", tokenize_usage, "unexpected argument '%s'",
                                    argv[i]);
    }
    if (!tok_path || (!file) == (!text))
        return cli_usage_error("tokenize", tokenize_usage,
                               "--tokenizer and exactly one of --file or TEXT are required");
    cllm_tokenizer *tok;
    int rc = open_tokenizer("tokenize", tok_path, &tok);
    if (rc != CLI_EXIT_OK) return rc;
    char *bytes = NULL;
    size_t len = text ? strlen(text) : 0, n = 0;
    int32_t *ids = NULL;
    if (file) rc = cli_read_bytes("tokenize", file, &bytes, &len);
    if (rc == CLI_EXIT_OK)
        rc = cli_tokenize("tokenize", tok, file ? bytes : text, len, bos, &ids, &n);
    for (size_t i = 0; rc == CLI_EXIT_OK && i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    if (rc == CLI_EXIT_OK) printf("\n");
    free(ids);
    free(bytes);
    cllm_tokenizer_free(tok);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *tok_path = NULL;
    int32_t *all = NULL;
    size_t n_all = 0;
    int rc = CLI_EXIT_OK;
    for (int i = 1; i < argc && rc == CLI_EXIT_OK; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s\n", detokenize_usage);
            free(all);
            return CLI_EXIT_OK;
        }
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            tok_path = argv[++i];
            continue;
        }
        int32_t *ids;
        size_t n;
        int32_t *grown = NULL;
        int prc = cli_parse_tokens(argv[i], &ids, &n);
        if (prc != 0) {
            rc = prc == -2 ? CLI_EXIT_FAIL
                           : cli_usage_error("detokenize", detokenize_usage, "bad ids '%s'", argv[i]);
            break;
        }
        if (n_all + n > 0) grown = realloc(all, (n_all + n) * sizeof *all);
        if (grown) {
            memcpy(grown + n_all, ids, n * sizeof *ids);
            all = grown;
            n_all += n;
        } else if (n_all + n > 0) {
            rc = cli_fail("detokenize", CLLM_ERR_NOMEM, "ids");
        }
        free(ids);
    }
    if (rc == CLI_EXIT_OK && !tok_path)
        rc = cli_usage_error("detokenize", detokenize_usage, "--tokenizer is required");
    cllm_tokenizer *tok = NULL;
    if (rc == CLI_EXIT_OK) rc = open_tokenizer("detokenize", tok_path, &tok);
    for (size_t i = 0; rc == CLI_EXIT_OK && i < n_all; i++) {
        char piece[1024];
        size_t len;
        cllm_status st = cllm_tokenizer_decode_token(tok, i ? all[i - 1] : -1, all[i], piece,
                                                     sizeof piece, &len);
        if (st != CLLM_OK) rc = cli_fail("detokenize", st, "decoding");
        else fwrite(piece, 1, len, stdout);
    }
    fflush(stdout);
    cllm_tokenizer_free(tok);
    free(all);
    return rc == CLI_EXIT_USAGE || rc == CLI_EXIT_OK ? rc : CLI_EXIT_FAIL;
}
