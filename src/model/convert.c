// `convert`: source model (llama2.c checkpoint or HF directory) -> .cllm container, streaming
// tensor by tensor. Peak memory is about three times the largest tensor (source bytes, symbols and
// the coded payload) plus the encoder's per-thread block buffers.
#include "../codec/cllm_codec.h"
#include "../format/cllm_format.h"
#include "cllm_model.h"

#include <stdlib.h>
#include <string.h>

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
        st = cllm_writer_open(out_path, cllm_source_config(cs.src), n, kind, tok, tok_size, &cs.w);
    for (size_t i = 0; st == CLLM_OK && i < n; i++) st = convert_tensor(&cs, i, opt);
    if (st == CLLM_OK) {
        st = cllm_writer_finish(cs.w);
        cs.w = NULL;
    }
    cllm_writer_abort(cs.w);
    free(cs.buf);
    cllm_source_free(cs.src);
    if (st != CLLM_OK) return cllm_error_context(st, "convert %s", in_path);
    return CLLM_OK;
}
