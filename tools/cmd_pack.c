// codecllm pack FILE.safetensors OUT.cllm [--threads N] [--force]
// codecllm unpack FILE.cllm OUT.safetensors [--threads N] [--force]
// and the archive view of `inspect` (real tensor names from the stored header).
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char pack_usage[] =
    "codecllm pack FILE.safetensors OUT.cllm [--threads N] [--force]\n"
    "  lossless archive of any safetensors file: f32/f16/bf16 tensors entropy-coded (exponent\n"
    "  rANS, sign and mantissa stored), every other dtype and the header stored as they are;\n"
    "  `codecllm unpack` restores the file byte for byte\n"
    "  --threads N  encoder threads (default: all cores)\n"
    "  --force      replace OUT if it exists";

static const char unpack_usage[] =
    "codecllm unpack FILE.cllm OUT.safetensors [--threads N] [--force]\n"
    "  restores the safetensors file packed by `codecllm pack`, byte for byte (every checksum\n"
    "  checked); OUT appears only when complete\n"
    "  --threads N  decoder threads (default: all cores)\n"
    "  --force      replace OUT if it exists";

// Copies `s` into `buf` with control bytes shown as '?': names come from an untrusted header and
// must not move the terminal's cursor.
static const char *printable(const char *s, char *buf, size_t cap) {
    size_t i = 0;
    for (; s && s[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    buf[i] = '\0';
    return buf;
}

static void progress_cb(void *user, size_t done, size_t total, uint64_t bytes_done,
                        uint64_t bytes_total, const char *what) {
    char name[64];
    cli_progress_cb(user, done, total, bytes_done, bytes_total, printable(what, name, sizeof name));
}

// Shared argument parsing: two paths, --threads, --force.
static int parse_args(const char *cmd, const char *usage, int argc, char **argv, const char **in,
                      const char **out, cllm_pack_options *opt) {
    long long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s\n", usage);
            return -1;
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 1, 4096, &v))
                return cli_usage_error(cmd, usage, "bad --threads '%s'", argv[i]);
            opt->n_threads = (int)v;
        } else if (!strcmp(a, "--force") || !strcmp(a, "-f")) {
            opt->force = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, usage, "unknown or incomplete option '%s'", a);
        } else if (!*in) {
            *in = a;
        } else if (!*out) {
            *out = a;
        } else {
            return cli_usage_error(cmd, usage, "unexpected argument '%s'", a);
        }
    }
    if (!*in || !*out) return cli_usage_error(cmd, usage, "need an input and an output file");
    return 0;
}

typedef cllm_status (*pack_fn)(const char *, const char *, const cllm_pack_options *);

static int run_pack(const char *cmd, const char *usage, pack_fn fn, int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    cllm_pack_options opt;
    memset(&opt, 0, sizeof opt);
    int rc = parse_args(cmd, usage, argc, argv, &in, &out, &opt);
    if (rc) return rc < 0 ? CLI_EXIT_OK : rc;
    cli_progress prog;
    cli_progress_init(&prog, cmd);
    opt.progress = progress_cb;
    opt.progress_user = &prog;
    opt.temp = cli_temp_hook;  // SIGINT/SIGTERM remove the temporary output
    double t0 = cllm_now_seconds_cli();
    cllm_status st = fn(in, out, &opt);
    cli_progress_end(&prog);
    if (st != CLLM_OK) return cli_fail(cmd, st, in);
    fprintf(stderr, "codecllm %s: wrote %s in %.2f s\n", cmd, out, cllm_now_seconds_cli() - t0);
    return CLI_EXIT_OK;
}

int cmd_pack(int argc, char **argv) {
    return run_pack("pack", pack_usage, cllm_pack_safetensors, argc, argv);
}

int cmd_unpack(int argc, char **argv) {
    return run_pack("unpack", unpack_usage, cllm_unpack, argc, argv);
}

// ---- inspect ------------------------------------------------------------------------------------

typedef struct arch_row {
    uint64_t elements, bytes, coded;
    double bound_bits;
} arch_row;

static void row_add(arch_row *r, const arch_row *x) {
    r->elements += x->elements;
    r->bytes += x->bytes;
    r->coded += x->coded;
    r->bound_bits += x->bound_bits;
}

// One segment's figures: elements of the safetensors dtype (bytes for a gap), original bytes,
// stored bytes and the order-0 bound (lossless: exponent entropy + sign/mantissa bits; raw: all).
static arch_row segment_row(const cllm_tensor_info *t, const cllm_archive_segment *s) {
    arch_row r = {0};
    r.bytes = s->end - s->begin;
    r.coded = t->data_size;
    r.elements = r.bytes;
    if (s->name) {
        r.elements = 1;
        for (uint32_t d = 0; d < s->ndim; d++) r.elements *= s->shape[d];
    }
    unsigned raw = t->dtype == CLLM_DTYPE_BF16 ? 8 : t->dtype == CLLM_DTYPE_F16 ? 11 : 24;
    r.bound_bits = t->codec == CLLM_CODEC_LOSSLESS
                       ? (t->symbol_entropy + raw) * (double)t->n_elements
                       : 8.0 * (double)r.bytes;
    return r;
}

static void print_arch_row(const char *name, const char *dtype, const char *codec,
                           const arch_row *r) {
    double n = r->elements ? (double)r->elements : 1;
    char buf[256];
    printf("%-48s %-8s %-8s %12llu %13llu %7.3f %7.3f %7.3fx\n", printable(name, buf, sizeof buf),
           dtype, codec, (unsigned long long)r->elements, (unsigned long long)r->bytes,
           8.0 * (double)r->coded / n, r->bound_bits / n,
           r->coded ? (double)r->bytes / (double)r->coded : 0.0);
}

static json_t *arch_row_json(const arch_row *r) {
    double n = r->elements ? (double)r->elements : 1;
    return json_pack("{s:I, s:I, s:I, s:f, s:f}", "elements", (json_int_t)r->elements, "bytes",
                     (json_int_t)r->bytes, "coded_bytes", (json_int_t)r->coded, "bits_per_weight",
                     8.0 * (double)r->coded / n, "bound_bits_per_weight", r->bound_bits / n);
}

static json_t *segment_json(const cllm_tensor_info *t, const cllm_archive_segment *s,
                            const arch_row *r) {
    json_t *o = arch_row_json(r), *shape = json_array();
    for (uint32_t d = 0; d < s->ndim; d++)
        json_array_append_new(shape, json_integer((json_int_t)s->shape[d]));
    json_object_set_new(o, "name", s->name ? json_string(s->name) : json_null());
    json_object_set_new(o, "dtype", json_string(s->name ? s->dtype : "gap"));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "codec", json_string(cllm_codec_name(t->codec)));
    json_object_set_new(o, "data_offsets", json_pack("[I,I]", (json_int_t)s->begin,
                                                     (json_int_t)s->end));
    return o;
}

static void print_summary(const char *path, const cllm_container *c,
                          const cllm_archive_summary *sum, const arch_row *fl,
                          const arch_row *total, json_t *jt) {
    uint64_t file = cllm_container_file_size(c);
    if (jt) {
        json_t *root = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "file",
                                 path, "archive", 1, "file_bytes", (json_int_t)file,
                                 "original_bytes", (json_int_t)sum->file_size, "header_bytes",
                                 (json_int_t)sum->header_size, "st_tensors",
                                 (json_int_t)sum->n_st_tensors, "empty_tensors",
                                 (json_int_t)sum->n_empty, "tensors", jt, "float_tensors",
                                 arch_row_json(fl), "total", arch_row_json(total));
        json_dumpf(root, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(root);
        return;
    }
    printf("\n");
    if (fl->elements) print_arch_row("f32/f16/bf16 tensors", "", "", fl);
    print_arch_row("TOTAL (data area)", "", "", total);
    printf("file: %llu bytes packed into %llu (%.3fx, %.2f%% of the original)\n",
           (unsigned long long)sum->file_size, (unsigned long long)file,
           file ? (double)sum->file_size / (double)file : 0.0,
           sum->file_size ? 100.0 * (double)file / (double)sum->file_size : 0.0);
}

int cli_inspect_archive(const cllm_container *c, const char *path, int json) {
    cllm_archive *a = NULL;
    cllm_status st = cllm_archive_open(c, &a);
    if (st != CLLM_OK) return cli_fail("inspect", st, path);
    cllm_archive_summary sum;
    cllm_archive_summary_get(a, &sum);
    size_t n = cllm_container_n_tensors(c);
    json_t *jt = json ? json_array() : NULL;
    if (!json) {
        printf("%s: packed safetensors archive: %zu tensors (%zu empty), %zu gaps, header %llu "
               "bytes\n", path, sum.n_st_tensors, sum.n_empty, sum.n_gaps,
               (unsigned long long)sum.header_size);
        printf("%-48s %-8s %-8s %12s %13s %7s %7s %8s\n", "tensor", "dtype", "codec", "elements",
               "bytes", "bits/w", "bound", "ratio");
    }
    arch_row fl = {0}, total = {0};
    for (size_t i = 0; i < n && st == CLLM_OK; i++) {
        cllm_tensor_info t;
        cllm_archive_segment s;
        st = cllm_container_tensor(c, i, &t);
        if (st == CLLM_OK) st = cllm_archive_segment_get(a, i, &s);
        if (st != CLLM_OK) break;
        arch_row r = segment_row(&t, &s);
        row_add(&total, &r);
        if (t.dtype != CLLM_DTYPE_U8) row_add(&fl, &r);
        if (jt) json_array_append_new(jt, segment_json(&t, &s, &r));
        else print_arch_row(s.name ? s.name : "(gap)", s.name ? s.dtype : "-",
                            cllm_codec_name(t.codec), &r);
    }
    if (st == CLLM_OK) print_summary(path, c, &sum, &fl, &total, jt);
    else json_decref(jt);
    cllm_archive_free(a);
    return st == CLLM_OK ? CLI_EXIT_OK : cli_fail("inspect", st, path);
}
