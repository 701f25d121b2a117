// codecllm convert IN OUT.cllm --codec lossless|int8|raw [--group G] [--predictor none|left]
//                  [--tokenizer FILE] [--threads N]
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char convert_usage[] =
    "codecllm convert IN OUT.cllm [--codec lossless|int8|raw] [--group G] [--predictor none|left]\n"
    "                 [--tokenizer FILE] [--threads N]\n"
    "  IN: a llama2.c checkpoint (.bin), a Hugging Face directory (config.json + safetensors)\n"
    "      or a GGUF file (llama/mistral/qwen2; quantized tensors are stored dequantized to f32)\n"
    "  --codec      lossless (default): bit-exact, exponent entropy-coded\n"
    "               int8: per-output-channel int8 (or per group of G weights), entropy-coded\n"
    "               raw: stored as is\n"
    "  --group G    int8 only: one scale per G consecutive weights of a row (default: per row)\n"
    "  --predictor  left: code differences to the left neighbour (measured not to pay; see PERF.md)\n"
    "  --block-symbols N  target symbols per rANS block, rounded to whole rows (default 32768\n"
    "               for lossless, 65536 for int8): smaller blocks decode faster on a GPU; each\n"
    "               block costs 128 bytes of lane state\n"
    "  --scale-bits B  rANS probability scale 8..14 for every tensor (default: per tensor, 12 for\n"
    "               lossless, 12..14 for int8, whichever codes smallest)\n"
    "  --tokenizer  tokenizer.bin or tokenizer.json to store (HF directories bring their own)\n"
    "  --threads N  encoder threads (default: all cores)\n"
    "  --allow-nonfinite  keep NaN/Inf weights (lossless and raw; an error without this flag,\n"
    "               and always with int8)\n"
    "  OUT is written to a new temporary file beside it, then renamed: an existing OUT that is a\n"
    "  regular file is replaced; one that is an input, a directory or a device is refused.";

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    cllm_convert_options opt;
    memset(&opt, 0, sizeof opt);
    opt.encode.codec = CLLM_CODEC_LOSSLESS;
    long long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s\n", convert_usage);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "--codec") && has_val) {
            if (cllm_codec_parse(argv[++i], &opt.encode.codec) != CLLM_OK)
                return cli_usage_error("convert", convert_usage, "unknown codec '%s'", argv[i]);
        } else if (!strcmp(a, "--group") && has_val) {
            if (cli_parse_int(argv[++i], 1, 1 << 24, &v))
                return cli_usage_error("convert", convert_usage, "bad --group '%s'", argv[i]);
            opt.encode.group_size = (uint32_t)v;
        } else if (!strcmp(a, "--predictor") && has_val) {
            const char *p = argv[++i];
            if (!strcmp(p, "none")) opt.encode.predictor = 0;
            else if (!strcmp(p, "left")) opt.encode.predictor = 1;
            else return cli_usage_error("convert", convert_usage, "unknown predictor '%s'", p);
        } else if (!strcmp(a, "--block-symbols") && has_val) {
            if (cli_parse_int(argv[++i], 32, 1ll << 31, &v))
                return cli_usage_error("convert", convert_usage, "bad --block-symbols '%s'", argv[i]);
            opt.encode.block_symbols = (uint64_t)v;
        } else if (!strcmp(a, "--scale-bits") && has_val) {
            if (cli_parse_int(argv[++i], CLLM_SCALE_BITS_MIN, CLLM_SCALE_BITS_MAX, &v))
                return cli_usage_error("convert", convert_usage, "bad --scale-bits '%s'", argv[i]);
            opt.encode.scale_bits = (uint32_t)v;
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && has_val) {
            if (cli_parse_int(argv[++i], 1, 4096, &v))
                return cli_usage_error("convert", convert_usage, "bad --threads '%s'", argv[i]);
            opt.encode.n_threads = (int)v;
        } else if (!strcmp(a, "--allow-nonfinite")) {
            opt.allow_nonfinite = 1;
        } else if (!strcmp(a, "--tokenizer") && has_val) {
            opt.tokenizer_path = argv[++i];
        } else if (a[0] == '-') {
            return cli_usage_error("convert", convert_usage, "unknown or incomplete option '%s'", a);
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_usage_error("convert", convert_usage, "unexpected argument '%s'", a);
        }
    }
    if (!in || !out) return cli_usage_error("convert", convert_usage, "need IN and OUT");
    if (opt.encode.group_size && opt.encode.codec != CLLM_CODEC_INT8)
        return cli_usage_error("convert", convert_usage, "--group applies to --codec int8 only");
    cli_progress prog;
    cli_progress_init(&prog, "convert");
    opt.progress = cli_progress_cb;
    opt.progress_user = &prog;
    opt.temp = cli_temp_hook;
    double t0 = cllm_now_seconds_cli();
    cllm_status st = cllm_convert(in, out, &opt);
    cli_progress_end(&prog);
    if (st != CLLM_OK) return cli_fail("convert", st, out);
    fprintf(stderr, "codecllm convert: wrote %s (%s) in %.1f s\n", out,
            cllm_codec_name(opt.encode.codec), cllm_now_seconds_cli() - t0);
    return CLI_EXIT_OK;
}
