// `convert`: source model (llama2.c checkpoint or HF directory) -> .cllm container, streaming
// tensor by tensor. Peak memory is about three times the largest tensor (source bytes, symbols and
// the coded payload) plus the encoder's per-thread block buffers.
#include "../codec/cllm_codec.h"
#include "../format/cllm_format.h"
#include "cllm_model.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Tensors below this many elements are stored raw: a frequency table and 32 lane states cost more
// than entropy coding can save.
#define CLLM_MIN_CODED_ELEMENTS 1024

// Codec actually used for a tensor: 1-D tensors (norm weights) and tiny tensors stay raw; they are
// a negligible share of the bytes and the engine reads them in float.
static cllm_codec pick_codec(const cllm_source_tensor *t, uint64_t n_elements, cllm_codec wanted) {
    if (wanted == CLLM_CODEC_RAW) return CLLM_CODEC_RAW;
    if (t->ndim < 2 || n_elements < CLLM_MIN_CODED_ELEMENTS) return CLLM_CODEC_RAW;
    return wanted;
}

static cllm_status tensor_elements(const cllm_source_tensor *t, uint64_t *rows, uint64_t *cols) {
    uint64_t r = 1;
    for (uint32_t d = 0; d + 1 < t->ndim; d++)
        RETURN_IF(cllm_mul_overflow_u64(r, t->shape[d], &r), CLLM_ERR_FORMAT,
                  "tensor '%s': shape overflows", t->name);
    *rows = r;
    *cols = t->shape[t->ndim - 1];
    return CLLM_OK;
}

// Encodes one source tensor held in `buf`; falls back to raw when lossless coding does not pay.
static cllm_status encode_one(const cllm_source_tensor *t, const void *buf, uint64_t rows,
                              uint64_t cols, const cllm_encode_params *base, cllm_coded *coded) {
    cllm_encode_params p = *base;
    p.codec = pick_codec(t, rows * cols, base->codec);
    cllm_status st = cllm_encode_tensor(buf, t->dtype, rows, cols, &p, coded);
    if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", t->name);
    size_t raw_size = (size_t)(rows * cols) * cllm_dtype_size(t->dtype);
    if (p.codec == CLLM_CODEC_LOSSLESS && coded->payload_size >= raw_size) {
        cllm_coded_free(coded);
        p.codec = CLLM_CODEC_RAW;
        st = cllm_encode_tensor(buf, t->dtype, rows, cols, &p, coded);
        if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", t->name);
    }
    return CLLM_OK;
}

// Counts NaN and infinite values of n elements of `dtype` (by their exponent bits: all ones).
static uint64_t count_nonfinite(const void *buf, cllm_dtype dtype, uint64_t n, uint64_t *first) {
    uint64_t bad = 0;
    *first = 0;
    for (uint64_t i = 0; i < n; i++) {
        int nf;
        if (dtype == CLLM_DTYPE_F32) {
            uint32_t u;
            memcpy(&u, (const uint8_t *)buf + 4 * i, 4);
            nf = (u & 0x7f800000u) == 0x7f800000u;
        } else {
            uint16_t h;
            memcpy(&h, (const uint8_t *)buf + 2 * i, 2);
            nf = dtype == CLLM_DTYPE_F16 ? (h & 0x7c00u) == 0x7c00u : (h & 0x7f80u) == 0x7f80u;
        }
        if (nf && bad++ == 0) *first = i;
    }
    return bad;
}

// NaN/Inf weights are almost always a broken checkpoint: an error naming the tensor, unless the
// user keeps them on purpose (lossless and raw store any bit pattern; int8 cannot scale them).
static cllm_status check_finite(const cllm_source_tensor *t, const void *buf, uint64_t n,
                                cllm_codec codec, int allow) {
    uint64_t first;
    uint64_t bad = count_nonfinite(buf, t->dtype, n, &first);
    if (bad == 0) return CLLM_OK;
    RETURN_IF(codec == CLLM_CODEC_INT8, CLLM_ERR_FORMAT,
              "tensor '%s' has %llu NaN/infinite value%s (first at element %llu): int8 cannot "
              "represent them",
              t->name, (unsigned long long)bad, bad == 1 ? "" : "s", (unsigned long long)first);
    RETURN_IF(!allow, CLLM_ERR_FORMAT,
              "tensor '%s' has %llu NaN/infinite value%s (first at element %llu); convert with "
              "allow_nonfinite (--allow-nonfinite) to keep them",
              t->name, (unsigned long long)bad, bad == 1 ? "" : "s", (unsigned long long)first);
    return CLLM_OK;
}

typedef struct convert_state {
    cllm_source *src;
    cllm_writer *w;
    void *buf;
    size_t buf_cap;
    uint64_t bytes_total, bytes_done;
} convert_state;

static cllm_status convert_tensor(convert_state *cs, size_t i, const cllm_convert_options *opt) {
    cllm_source_tensor t;
    TRY(cllm_source_tensor_info(cs->src, i, &t));
    uint64_t rows = 0, cols = 0;
    TRY(tensor_elements(&t, &rows, &cols));
    size_t bytes;
    RETURN_IF(cllm_mul_overflow((size_t)(rows * cols), cllm_dtype_size(t.dtype), &bytes),
              CLLM_ERR_FORMAT, "tensor '%s' is too large", t.name);
    if (bytes > cs->buf_cap) {
        free(cs->buf);
        cs->buf = malloc(bytes ? bytes : 1);
        cs->buf_cap = cs->buf ? bytes : 0;
        RETURN_IF(!cs->buf, CLLM_ERR_NOMEM, "cannot allocate %zu bytes for tensor '%s'", bytes,
                  t.name);
    }
    TRY(cllm_source_read(cs->src, i, cs->buf, cs->buf_cap));
    TRY(check_finite(&t, cs->buf, rows * cols, pick_codec(&t, rows * cols, opt->encode.codec),
                     opt->allow_nonfinite));
    cllm_coded coded;
    memset(&coded, 0, sizeof coded);
    TRY(encode_one(&t, cs->buf, rows, cols, &opt->encode, &coded));
    cllm_status st = cllm_writer_add(cs->w, t.name, t.ndim, t.shape, &coded);
    cllm_coded_free(&coded);
    if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", t.name);
    cs->bytes_done += bytes;
    if (opt->progress)
        opt->progress(opt->progress_user, i + 1, cllm_source_n_tensors(cs->src), cs->bytes_done,
                      cs->bytes_total, t.name);
    return CLLM_OK;
}

static cllm_status source_total_bytes(cllm_source *src, uint64_t *total) {
    *total = 0;
    for (size_t i = 0; i < cllm_source_n_tensors(src); i++) {
        cllm_source_tensor t;
        TRY(cllm_source_tensor_info(src, i, &t));
        uint64_t n = cllm_dtype_size(t.dtype);
        for (uint32_t d = 0; d < t.ndim; d++) n *= t.shape[d];
        *total += n;
    }
    return CLLM_OK;
}

// Replacing an input with the output would destroy the source: refuse an OUT that is IN, the
// tokenizer, or (IN a directory) any file directly inside IN.
static cllm_status check_not_an_input(const char *in_path, const char *tok_path,
                                      const char *out_path) {
    RETURN_IF(cllm_same_file(in_path, out_path) || cllm_same_file(tok_path, out_path),
              CLLM_ERR_IO, "output %s is an input of this conversion; refusing to overwrite it",
              out_path);
    struct stat sb;
    if (stat(in_path, &sb) != 0 || !S_ISDIR(sb.st_mode) || stat(out_path, &sb) != 0) return CLLM_OK;
    DIR *d = opendir(in_path);
    if (!d) return CLLM_OK;  // the importer reports an unreadable directory
    cllm_status st = CLLM_OK;
    char path[4352];
    for (struct dirent *e; st == CLLM_OK && (e = readdir(d));) {
        snprintf(path, sizeof path, "%s/%s", in_path, e->d_name);
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && cllm_same_file(path, out_path))
            st = CLLM_FAIL(CLLM_ERR_IO,
                           "output %s is %s of the source directory; refusing to overwrite it",
                           out_path, path);
    }
    closedir(d);
    return st;
}

// The tokenizer must load, and fit the model's vocabulary, before it is stored.
static cllm_status check_tokenizer(cllm_source *src) {
    const uint8_t *tok = NULL;
    size_t size = 0;
    cllm_tokenizer_kind kind = cllm_source_tokenizer(src, &tok, &size);
    if (kind == CLLM_TOKENIZER_NONE) return CLLM_OK;
    cllm_tokenizer *t = NULL;
    cllm_status st = cllm_tokenizer_load(kind, tok, size, cllm_source_config(src)->vocab_size, &t);
    cllm_tokenizer_free(t);
    if (st != CLLM_OK) return cllm_error_context(st, "tokenizer");
    return CLLM_OK;
}

cllm_status cllm_convert(const char *in_path, const char *out_path,
                         const cllm_convert_options *opt) {
    RETURN_IF(!in_path || !out_path || !opt, CLLM_ERR_ARG, "convert: missing argument");
    RETURN_IF(opt->encode.codec >= CLLM_CODEC_COUNT_, CLLM_ERR_ARG, "convert: unknown codec %u",
              (unsigned)opt->encode.codec);
    TRY(check_not_an_input(in_path, opt->tokenizer_path, out_path));
    TRY(cllm_output_check(out_path));
    convert_state cs;
    memset(&cs, 0, sizeof cs);
    TRY(cllm_source_open(in_path, opt->tokenizer_path, &cs.src));
    const uint8_t *tok = NULL;
    size_t tok_size = 0;
    cllm_tokenizer_kind kind = cllm_source_tokenizer(cs.src, &tok, &tok_size);
    size_t n = cllm_source_n_tensors(cs.src);
    cllm_status st = check_tokenizer(cs.src);
    if (st == CLLM_OK) st = source_total_bytes(cs.src, &cs.bytes_total);
    if (st == CLLM_OK)
        st = cllm_writer_open_ex(out_path, cllm_source_config(cs.src), n, kind, tok, tok_size,
                                 opt->temp, opt->temp_user, &cs.w);  // announced as created
    char *tmp = NULL;  // the writer's temporary name, kept to announce its end
    if (st == CLLM_OK) tmp = strdup(cllm_writer_temp_path(cs.w));
    for (size_t i = 0; st == CLLM_OK && i < n; i++) st = convert_tensor(&cs, i, opt);
    if (st == CLLM_OK) {
        st = cllm_writer_finish(cs.w);
        cs.w = NULL;
    }
    cllm_writer_abort(cs.w);
    if (tmp && opt->temp) opt->temp(opt->temp_user, tmp, 0);
    free(tmp);
    free(cs.buf);
    cllm_source_free(cs.src);
    if (st != CLLM_OK) return cllm_error_context(st, "convert %s", in_path);
    return CLLM_OK;
}
