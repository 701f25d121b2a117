// codecllm inspect FILE.cllm [--json] [--zstd] [--zstd-level L] [--ccode] [--threads N]
//
// Per tensor and per layer type: elements, codec, bits per weight, ratio to the source dtype, the
// recorded order-0 entropy of the coded symbols, the bound it implies, (with --zstd) what zstd
// (the original design's CPU path) gets on the same bytes the codec started from, and (with
// --ccode) what the GPU's fused mode holds in VRAM for each matrix: the compute code's bits
// per weight and its share of exceptions. Also says whether a tokenizer and a chat template are
// stored.
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static const char inspect_usage[] =
    "codecllm inspect FILE.cllm [--json] [--zstd] [--zstd-level L] [--ccode] [--threads N]\n"
    "  --json        machine-readable output (schema in docs/INSPECT.md)\n"
    "  --zstd        add a column with what zstd gets on the same bytes (slow: about 2 MB/s per\n"
    "                thread at level 19; progress on a terminal)\n"
    "  --zstd-level  zstd level for that column (default 19; implies --zstd)\n"
    "  --ccode       add the columns of the GPU's fused mode: bits per weight of each matrix\n"
    "                in VRAM as compute code, and its exceptions (decodes and re-encodes\n"
    "                every matrix: seconds per GB)\n"
    "  --threads N   threads for zstd and the compute-code encoder (default: zstd one, the\n"
    "                encoder all cores)";

// Layer types, in the order they are printed.
static const char *const kind_names[] = {"embeddings", "attn_q", "attn_k", "attn_v", "attn_o",
                                         "mlp_gate", "mlp_up", "mlp_down", "norms", "lm_head",
                                         "other"};
enum { N_KINDS = sizeof kind_names / sizeof kind_names[0] };

static int tensor_kind(const char *name) {
    static const char *const suffix[] = {"embed_tokens.weight", "q_proj.weight", "k_proj.weight",
                                         "v_proj.weight", "o_proj.weight", "gate_proj.weight",
                                         "up_proj.weight", "down_proj.weight"};
    for (int k = 0; k < 8; k++) {
        size_t ls = strlen(suffix[k]), ln = strlen(name);
        if (ln >= ls && !strcmp(name + ln - ls, suffix[k])) return k;
    }
    if (strstr(name, "norm")) return 8;
    if (!strcmp(name, "lm_head.weight")) return 9;
    return 10;
}

typedef struct stat_row {
    uint64_t elements, source_bytes, coded_bytes, zstd_bytes;
    uint64_t cc_elements, cc_bytes, cc_exc;  // --ccode: the matrices with a compute code
    double entropy_bits;  // sum over elements of the per-symbol entropy
    double bound_bits;    // order-0 bound in bits (entropy + stored raw bits)
} stat_row;

// Bits per element stored beside the coded symbols (lossless: sign + mantissa).
static unsigned raw_bits(const cllm_tensor_info *t) {
    if (t->codec != CLLM_CODEC_LOSSLESS) return 0;
    return t->dtype == CLLM_DTYPE_BF16 ? 8 : t->dtype == CLLM_DTYPE_F16 ? 11 : 24;
}

// zstd on the bytes the codec started from: the source tensor (raw, lossless) or its int8 values.
static int zstd_size(const cllm_container *c, size_t i, const cllm_tensor_info *t, int level,
                     int threads, uint64_t *out) {
    size_t n = (size_t)t->n_elements;
    size_t bytes = t->codec == CLLM_CODEC_INT8 ? n : n * cllm_dtype_size(t->dtype);
    void *buf = malloc(bytes ? bytes : 1);
    size_t bound = ZSTD_compressBound(bytes);
    void *dst = malloc(bound);
    int rc = -1;
    if (buf && dst && cllm_container_decode(c, i, buf, bytes, NULL, 0, 0) == CLLM_OK) {
        ZSTD_CCtx *z = ZSTD_createCCtx();
        if (z) {
            ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, level);
            ZSTD_CCtx_setParameter(z, ZSTD_c_nbWorkers, threads);
            size_t r = ZSTD_compress2(z, dst, bound, buf, bytes);
            if (!ZSTD_isError(r)) {
                *out = r;
                rc = 0;
            }
            ZSTD_freeCCtx(z);
        }
    }
    free(buf);
    free(dst);
    return rc;
}

// The layer types the fused mode holds in compute code (the embedding, the layer matrices, lm_head).
static int ccode_kind(int kind) { return kind <= 7 || kind == 9; }

static void add_cc(stat_row *r, const cllm_tensor_info *t, uint64_t cc_bytes, uint64_t cc_exc) {
    if (!cc_bytes) return;
    r->cc_elements += t->n_elements;
    r->cc_bytes += cc_bytes;
    r->cc_exc += cc_exc;
}

static void add_row(stat_row *r, const cllm_tensor_info *t, uint64_t zbytes) {
    r->elements += t->n_elements;
    r->source_bytes += t->n_elements * cllm_dtype_size(t->dtype);
    r->coded_bytes += t->data_size;
    r->zstd_bytes += zbytes;
    r->entropy_bits += t->symbol_entropy * (double)t->n_elements;
    double per = t->codec == CLLM_CODEC_RAW ? 8.0 * (double)cllm_dtype_size(t->dtype)
                                            : t->symbol_entropy + raw_bits(t);
    r->bound_bits += per * (double)t->n_elements;
}

static json_t *row_json(const stat_row *r, int with_zstd, int with_cc) {
    double n = r->elements ? (double)r->elements : 1;
    json_t *o = json_object();
    json_object_set_new(o, "elements", json_integer((json_int_t)r->elements));
    json_object_set_new(o, "source_bytes", json_integer((json_int_t)r->source_bytes));
    json_object_set_new(o, "coded_bytes", json_integer((json_int_t)r->coded_bytes));
    json_object_set_new(o, "bits_per_weight", json_real(8.0 * (double)r->coded_bytes / n));
    json_object_set_new(o, "bound_bits_per_weight", json_real(r->bound_bits / n));
    json_object_set_new(o, "ratio", json_real(r->coded_bytes ? (double)r->source_bytes /
                                                                   (double)r->coded_bytes : 0));
    if (with_zstd) {
        json_object_set_new(o, "zstd_bytes", json_integer((json_int_t)r->zstd_bytes));
        json_object_set_new(o, "zstd_bits_per_weight", json_real(8.0 * (double)r->zstd_bytes / n));
    }
    if (with_cc && r->cc_elements) {
        const double m = (double)r->cc_elements;
        json_object_set_new(o, "ccode_elements", json_integer((json_int_t)r->cc_elements));
        json_object_set_new(o, "ccode_bytes", json_integer((json_int_t)r->cc_bytes));
        json_object_set_new(o, "ccode_bits_per_weight", json_real(8.0 * (double)r->cc_bytes / m));
        json_object_set_new(o, "ccode_exceptions", json_integer((json_int_t)r->cc_exc));
    } else if (with_cc) {
        json_object_set_new(o, "ccode_bits_per_weight", json_null());
    }
    return o;
}

static void print_row(const char *name, const char *codec, const stat_row *r, int with_zstd,
                      int with_cc, const char *entropy) {
    double n = r->elements ? (double)r->elements : 1;
    printf("%-48s %-8s %12llu %7.3f %7.3f %6.3fx %8s", name, codec,
           (unsigned long long)r->elements, 8.0 * (double)r->coded_bytes / n, r->bound_bits / n,
           r->coded_bytes ? (double)r->source_bytes / (double)r->coded_bytes : 0.0, entropy);
    if (with_zstd) printf(" %7.3f", 8.0 * (double)r->zstd_bytes / n);
    if (with_cc && r->cc_elements)
        printf(" %7.3f %6.2f%%", 8.0 * (double)r->cc_bytes / (double)r->cc_elements,
               100.0 * (double)r->cc_exc / (double)r->cc_elements);
    else if (with_cc)
        printf(" %7s %7s", "-", "-");
    printf("\n");
}

// One tensor's JSON row (docs/INSPECT.md).
static json_t *tensor_json(const cllm_tensor_info *t, const stat_row *r, int with_zstd,
                           int with_cc) {
    json_t *row = row_json(r, with_zstd, with_cc);
    json_t *shape = json_array();
    for (uint32_t d = 0; d < t->ndim; d++)
        json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
    json_object_set_new(row, "name", json_string(t->name));
    json_object_set_new(row, "shape", shape);
    json_object_set_new(row, "dtype", json_string(cllm_dtype_name(t->dtype)));
    json_object_set_new(row, "codec", json_string(cllm_codec_name(t->codec)));
    json_object_set_new(row, "layer_type", json_string(kind_names[tensor_kind(t->name)]));
    json_object_set_new(row, "data_offset", json_integer((json_int_t)t->data_offset));
    if (t->codec != CLLM_CODEC_RAW) {
        json_object_set_new(row, "symbol_entropy", json_real(t->symbol_entropy));
        json_object_set_new(row, "scale_bits", json_integer(t->scale_bits));
    }
    if (t->codec == CLLM_CODEC_INT8)
        json_object_set_new(row, "group_size", json_integer(t->group_size));
    return row;
}

// What the container stores besides weights: its tokenizer (kind, size) and chat template.
typedef struct tok_summary {
    const char *kind;          // "none", "llama2.c tokenizer.bin", ...
    size_t n_tokens;           // 0 when none or when it does not load
    const char *chat_format;   // recognised family, "unknown" or NULL (no template)
} tok_summary;

static void summarize_tokenizer(const cllm_container *c, tok_summary *ts) {
    static const char *const kinds[] = {"none", "llama2.c tokenizer.bin",
                                        "Hugging Face tokenizer.json", "tokenizer bundle"};
    const uint8_t *data = NULL;
    size_t size = 0;
    cllm_tokenizer_kind kind = cllm_container_tokenizer(c, &data, &size);
    memset(ts, 0, sizeof *ts);
    ts->kind = (unsigned)kind < sizeof kinds / sizeof kinds[0] ? kinds[kind] : "other";
    cllm_tokenizer *t = NULL;
    if (kind == CLLM_TOKENIZER_NONE ||
        cllm_tokenizer_load(kind, data, size, cllm_container_config(c)->vocab_size, &t) != CLLM_OK)
        return;
    ts->n_tokens = cllm_tokenizer_vocab_size(t);
    const char *jinja = cllm_tokenizer_chat_template(t);
    if (jinja) {
        const char *name = cllm_chat_format_name(cllm_chat_detect(jinja));
        ts->chat_format = name ? name : "unknown";
    }
    cllm_tokenizer_free(t);
}

static void print_tokenizer(const tok_summary *ts) {
    if (!ts->n_tokens) {
        printf("tokenizer: %s\n", strcmp(ts->kind, "none") ? "present but does not load" : "none");
        return;
    }
    printf("tokenizer: %s, %zu tokens; chat template: %s%s\n", ts->kind, ts->n_tokens,
           ts->chat_format ? ts->chat_format : "none",
           ts->chat_format && strcmp(ts->chat_format, "unknown") ? " (recognised)" : "");
}

static json_t *tokenizer_json(const tok_summary *ts) {
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(ts->kind));
    json_object_set_new(o, "tokens", json_integer((json_int_t)ts->n_tokens));
    json_object_set_new(o, "chat_template", ts->chat_format ? json_string(ts->chat_format)
                                                            : json_null());
    return o;
}

// The whole document; takes ownership of `tensors`.
static void print_json(const cllm_container *c, const char *path, uint64_t file_bytes,
                       json_t *tensors, const stat_row *kinds, const stat_row *total,
                       int with_zstd, int with_cc) {
    json_t *root = json_object(), *jk = json_object();
    char note[512];
    json_object_set_new(root, "file", json_string(path));
    if (cllm_container_source_note(c, note, sizeof note) == CLLM_OK && note[0])
        json_object_set_new(root, "source_note", json_string(note));
    json_object_set_new(root, "file_bytes", json_integer((json_int_t)file_bytes));
    tok_summary ts;
    summarize_tokenizer(c, &ts);
    json_object_set_new(root, "tokenizer", tokenizer_json(&ts));
    json_object_set_new(root, "tensors", tensors);
    for (int k = 0; k < N_KINDS; k++)
        if (kinds[k].elements)
            json_object_set_new(jk, kind_names[k], row_json(&kinds[k], with_zstd, with_cc));
    json_object_set_new(root, "layer_types", jk);
    json_object_set_new(root, "total", row_json(total, with_zstd, with_cc));
    json_dumpf(root, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(root);
}

typedef struct inspect_opts {
    int json, zstd, level, threads, ccode;
} inspect_opts;

static int inspect_file(const char *path, const inspect_opts *o) {
    cllm_container *c;
    cllm_status st = cllm_container_open(path, &c);
    if (st != CLLM_OK) return cli_fail("inspect", st, path);
    if (cllm_container_is_archive(c)) {
        int arc = cli_inspect_archive(c, path, o->json);
        cllm_container_free(c);
        return arc;
    }
    size_t n = cllm_container_n_tensors(c);
    stat_row kinds[N_KINDS], total;
    memset(kinds, 0, sizeof kinds);
    memset(&total, 0, sizeof total);
    json_t *jt = json_array();
    cli_progress prog;
    cli_progress_init(&prog, "inspect");
    if (!o->json) {
        const cllm_model_config *cfg = cllm_container_config(c);
        printf("%s: %zu tensors, %llu bytes; dim %u, hidden %u, layers %u, heads %u/%u, vocab %u\n",
               path, n, (unsigned long long)cllm_container_file_size(c), cfg->dim, cfg->hidden_dim,
               cfg->n_layers, cfg->n_heads, cfg->n_kv_heads, cfg->vocab_size);
        char note[512];
        if (cllm_container_source_note(c, note, sizeof note) == CLLM_OK && note[0])
            printf("%s\n", note);
        tok_summary ts;
        summarize_tokenizer(c, &ts);
        print_tokenizer(&ts);
        printf("%-48s %-8s %12s %7s %7s %7s %8s%s%s\n", "tensor", "codec", "elements", "bits/w",
               "bound", "ratio", "H(sym)", o->zstd ? " zstd b/w" : "",
               o->ccode ? " cc b/w     exc" : "");
    }
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        cllm_tensor_info t;
        if ((st = cllm_container_tensor(c, i, &t)) != CLLM_OK) {
            rc = cli_fail("inspect", st, path);
            break;
        }
        uint64_t zb = 0;
        if (o->zstd && zstd_size(c, i, &t, o->level, o->threads, &zb)) {
            rc = cli_fail("inspect", CLLM_ERR_CORRUPT, t.name);
            break;
        }
        // --ccode: the layer matrices' compute code; a tensor it cannot hold stays "-".
        uint64_t cb = 0, ce = 0;
        if (o->ccode && ccode_kind(tensor_kind(t.name))) {
            const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
            st = cllm_container_ccode_size(c, i, o->threads ? o->threads : (int)(ncpu > 0 ? ncpu : 1),
                                           &cb, &ce);
            if (st == CLLM_ERR_UNSUPPORTED) {
                cb = ce = 0;
            } else if (st != CLLM_OK) {
                rc = cli_fail("inspect", st, t.name);
                break;
            }
        }
        stat_row r;
        memset(&r, 0, sizeof r);
        add_row(&r, &t, zb);
        add_row(&kinds[tensor_kind(t.name)], &t, zb);
        add_row(&total, &t, zb);
        add_cc(&r, &t, cb, ce);
        add_cc(&kinds[tensor_kind(t.name)], &t, cb, ce);
        add_cc(&total, &t, cb, ce);
        char ent[32];
        snprintf(ent, sizeof ent, t.codec == CLLM_CODEC_RAW ? "-" : "%.3f", t.symbol_entropy);
        if (o->json) {
            json_array_append_new(jt, tensor_json(&t, &r, o->zstd, o->ccode));
        } else {
            print_row(t.name, cllm_codec_name(t.codec), &r, o->zstd, o->ccode, ent);
        }
        cli_progress_cb(&prog, i + 1, n, i + 1, n, t.name);
    }
    cli_progress_end(&prog);
    if (rc == CLI_EXIT_OK && o->json) {
        print_json(c, path, cllm_container_file_size(c), jt, kinds, &total, o->zstd, o->ccode);
        jt = NULL;
    } else if (rc == CLI_EXIT_OK) {
        printf("\nper layer type:\n");
        for (int k = 0; k < N_KINDS; k++)
            if (kinds[k].elements) print_row(kind_names[k], "", &kinds[k], o->zstd, o->ccode, "");
        print_row("TOTAL", "", &total, o->zstd, o->ccode, "");
        if (o->ccode)
            printf("cc b/w: the compute code the GPU's fused mode holds in VRAM (the matrices "
                   "with one; rows: over those), exc: the share of their weights its main planes "
                   "do not hold alone (bf16, f16: exceptions; int8: values of flagged vectors)\n");
    }
    json_decref(jt);
    cllm_container_free(c);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    inspect_opts o = {.json = 0, .zstd = 0, .level = 19, .threads = 0, .ccode = 0};
    const char *path = NULL;
    long long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s\n", inspect_usage);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--ccode")) {
            o.ccode = 1;
        } else if (!strcmp(a, "--zstd") || !strcmp(a, "--no-zstd")) {
            o.zstd = !strcmp(a, "--zstd");  // --no-zstd: the default, accepted as before
        } else if (!strcmp(a, "--zstd-level") && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 1, ZSTD_maxCLevel(), &v))
                return cli_usage_error("inspect", inspect_usage, "bad --zstd-level '%s'", argv[i]);
            o.level = (int)v;
            o.zstd = 1;
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 0, 256, &v))
                return cli_usage_error("inspect", inspect_usage, "bad --threads '%s'", argv[i]);
            o.threads = (int)v;
        } else if (a[0] == '-' || path) {
            return cli_usage_error("inspect", inspect_usage, "unexpected argument '%s'", a);
        } else {
            path = a;
        }
    }
    if (!path) return cli_usage_error("inspect", inspect_usage, "need FILE.cllm");
    return inspect_file(path, &o);
}
