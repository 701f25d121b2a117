// The codecllm command: dispatches to the subcommands in tools/cmd_*.c.
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} cli_command;

#ifndef CLLM_HAVE_HTTP
// This build has no HTTP library (CMake found no libmicrohttpd).
static int cmd_serve_missing(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "codecllm serve: this build has no HTTP server: install libmicrohttpd-dev "
                    "(scripts/install-deps.sh) and rebuild\n");
    return CLI_EXIT_FAIL;
}
#define cmd_serve cmd_serve_missing
#endif

static const cli_command commands[] = {
    {"synth", cmd_synth, "write a synthetic Hugging Face model directory"},
    {"convert", cmd_convert, "compress a llama2.c, Hugging Face or GGUF model into a .cllm file"},
    {"inspect", cmd_inspect, "sizes and entropy per tensor and layer type; tokenizer, template"},
    {"verify", cmd_verify, "check every checksum; with --against, decode and compare"},
    {"run", cmd_run, "generate text or token ids"},
    {"chat", cmd_chat, "interactive chat with the model's chat template"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (chat, completions, streaming)"},
    {"logits", cmd_logits, "teacher-forced logits of a token sequence"},
    {"compare", cmd_compare, "compare two models' logits (KL, top-1, perplexity)"},
    {"perplexity", cmd_perplexity, "perplexity of a text file"},
    {"bench", cmd_bench, "tokens/s, peak memory and time split, per weights mode"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"pack", cmd_pack, "lossless archive of any safetensors file (restored by unpack)"},
    {"unpack", cmd_unpack, "restore a packed safetensors file byte for byte"},
};

static void usage(FILE *f) {
    fprintf(f, "codecllm %s: LLM weights kept compressed, decoded just in time\n\n"
               "usage: codecllm COMMAND [ARGS]   (codecllm COMMAND --help for details)\n\n",
            CLLM_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("%s\n", cllm_build_info());
        if (cllm_backend_available(CLLM_BACKEND_CUDA)) printf("a CUDA GPU is present\n");
        return CLI_EXIT_OK;
    }
    cli_signals_init();  // temporary files go away with an interrupted command
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "codecllm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
