// Model sources: the public cllm_source_* API, the canonical Llama tensor layout, and the RoPE
// row permutation shared by the importers.
#include "cllm_model.h"
#include "gguf_quant.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t cllm_llama_n_tensors(const cllm_model_config *cfg) {
    return 2 + (size_t)CLLM_LAYER_N_TENSORS * cfg->n_layers + (cfg->tied_embeddings ? 0 : 1);
}

static void set_shape(cllm_tensor_spec *t, uint64_t rows, uint64_t cols) {
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
}

static void spec_from(const cllm_model_config *c, const cllm_layer_tensor_desc *d,
                      cllm_tensor_spec *t) {
    t->role = d->role;
    if (d->rows == CLLM_DIM_NONE) set_shape(t, cllm_llama_dim(c, d->cols), 0);
    else set_shape(t, cllm_llama_dim(c, d->rows), cllm_llama_dim(c, d->cols));
}

void cllm_llama_tensor_spec(const cllm_model_config *c, size_t i, cllm_tensor_spec *t) {
    const size_t n_layer_tensors = (size_t)CLLM_LAYER_N_TENSORS * c->n_layers;
    memset(t, 0, sizeof *t);
    t->layer = -1;
    if (i == 0 || i > n_layer_tensors) {
        const cllm_layer_tensor_desc *d =
            &cllm_llama_global_layout[i == 0 ? CLLM_GI_EMBED
                                      : i == n_layer_tensors + 1 ? CLLM_GI_NORM
                                                                 : CLLM_GI_LM_HEAD];
        snprintf(t->name, sizeof t->name, "%s", d->suffix);
        spec_from(c, d, t);
        return;
    }
    const cllm_layer_tensor_desc *d = &cllm_llama_layer_layout[(i - 1) % CLLM_LAYER_N_TENSORS];
    t->layer = (int)((i - 1) / CLLM_LAYER_N_TENSORS);
    snprintf(t->name, sizeof t->name, "model.layers.%d.%s", t->layer, d->suffix);
    spec_from(c, d, t);
}

void cllm_rope_unpermute_rows(uint8_t *rows, uint32_t n_heads, uint32_t head_dim, uint64_t cols,
                              uint32_t elem_size, uint8_t *scratch) {
    size_t row_bytes = (size_t)cols * elem_size;
    size_t half = head_dim / 2;
    for (uint32_t h = 0; h < n_heads; h++) {
        uint8_t *head = rows + (size_t)h * head_dim * row_bytes;
        memcpy(scratch, head, (size_t)head_dim * row_bytes);
        // scratch holds HF rows (c, i) at c*half + i; engine row 2i + c receives it.
        for (size_t i = 0; i < half; i++)
            for (size_t c = 0; c < 2; c++)
                memcpy(head + (2 * i + c) * row_bytes, scratch + (c * half + i) * row_bytes,
                       row_bytes);
    }
}

cllm_status cllm_source_add_file(cllm_source *s, const char *path, uint32_t *index,
                                 uint64_t *size) {
    cllm_src_file *files = realloc(s->files, (s->n_files + 1) * sizeof *files);
    RETURN_IF(!files, CLLM_ERR_NOMEM, "out of memory");
    s->files = files;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    RETURN_IF(fd < 0, CLLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return CLLM_FAIL(CLLM_ERR_IO, "%s is not a readable regular file", path);
    }
    char *copy = strdup(path);
    if (!copy) {
        close(fd);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory");
    }
    files[s->n_files] = (cllm_src_file){.path = copy, .fd = fd, .size = (uint64_t)sb.st_size};
    *index = (uint32_t)s->n_files++;
    if (size) *size = (uint64_t)sb.st_size;
    return CLLM_OK;
}

cllm_status cllm_source_alloc_tensors(cllm_source *s) {
    size_t n = cllm_llama_n_tensors(&s->cfg);
    s->tensors = calloc(n, sizeof *s->tensors);
    RETURN_IF(!s->tensors, CLLM_ERR_NOMEM, "out of memory for %zu tensors", n);
    s->n_tensors = n;
    for (size_t i = 0; i < n; i++) {
        cllm_tensor_spec sp;
        cllm_llama_tensor_spec(&s->cfg, i, &sp);
        cllm_src_entry *e = &s->tensors[i];
        memcpy(e->name, sp.name, sizeof e->name);
        e->ndim = sp.ndim;
        e->shape[0] = sp.shape[0];
        e->shape[1] = sp.shape[1];
    }
    return CLLM_OK;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

cllm_status cllm_source_load_tokenizer(cllm_source *s, const char *path) {
    free(s->tok);
    s->tok = NULL;
    s->tok_size = 0;
    s->tok_kind = CLLM_TOKENIZER_NONE;
    TRY(cllm_read_file(path, (size_t)256 << 20, &s->tok, &s->tok_size));
    s->tok_kind = has_suffix(path, ".json") ? CLLM_TOKENIZER_HF_JSON : CLLM_TOKENIZER_LLAMA2C;
    RETURN_IF(s->tok_size == 0, CLLM_ERR_FORMAT, "tokenizer %s is empty", path);
    return CLLM_OK;
}

// A regular file whose first four bytes are "GGUF".
static int is_gguf(const char *path) {
    uint8_t magic[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = pread(fd, magic, sizeof magic, 0);
    close(fd);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

// A quantized GGUF tensor: its stored blocks are read whole and dequantized into buf (F32).
static cllm_status read_dequantized(const cllm_src_file *f, const cllm_src_entry *e, void *buf) {
    RETURN_IF(e->stored_size > SIZE_MAX, CLLM_ERR_NOMEM, "tensor '%s' is too large", e->name);
    uint8_t *tmp = malloc(e->stored_size ? (size_t)e->stored_size : 1);
    RETURN_IF(!tmp, CLLM_ERR_NOMEM, "tensor '%s': out of memory for %llu bytes", e->name,
              (unsigned long long)e->stored_size);
    cllm_status st = cllm_pread_full(f->fd, tmp, (size_t)e->stored_size, e->offset, f->path);
    if (st == CLLM_OK)
        st = cllm_ggml_dequantize(e->ggml_type, tmp, (size_t)e->stored_size, buf, e->size / 4);
    free(tmp);
    if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", e->name);
    return CLLM_OK;
}

// ---- public API --------------------------------------------------------------------------------

cllm_status cllm_source_open(const char *path, const char *tokenizer_path, cllm_source **out) {
    RETURN_IF(!path || !out, CLLM_ERR_ARG, "cllm_source_open: path and out are required");
    *out = NULL;
    // safetensors and llama2.c files are little-endian and are read straight into buffers.
    const uint16_t probe = 1;
    RETURN_IF(*(const uint8_t *)&probe != 1, CLLM_ERR_UNSUPPORTED,
              "model sources are little-endian; big-endian hosts are not supported");
    struct stat sb;
    RETURN_IF(stat(path, &sb) != 0, CLLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    cllm_source *s = calloc(1, sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "out of memory");
    cllm_status st;
    if (S_ISDIR(sb.st_mode)) st = cllm_import_hf(s, path);
    else if (is_gguf(path)) st = cllm_import_gguf(s, path);
    else st = cllm_import_llama2c(s, path);
    if (st == CLLM_OK && tokenizer_path) {
        st = cllm_source_load_tokenizer(s, tokenizer_path);
        if (st != CLLM_OK) cllm_error_context(st, "tokenizer");
    }
    if (st != CLLM_OK) {
        cllm_source_free(s);
        return st;
    }
    *out = s;
    return CLLM_OK;
}

void cllm_source_free(cllm_source *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) {
        close(s->files[i].fd);
        free(s->files[i].path);
    }
    free(s->files);
    free(s->tensors);
    free(s->tok);
    free(s);
}

const cllm_model_config *cllm_source_config(const cllm_source *s) { return s ? &s->cfg : NULL; }

size_t cllm_source_n_tensors(const cllm_source *s) { return s ? s->n_tensors : 0; }

cllm_status cllm_source_tensor_info(const cllm_source *s, size_t i, cllm_source_tensor *out) {
    RETURN_IF(!s || !out, CLLM_ERR_ARG, "cllm_source_tensor_info: NULL argument");
    RETURN_IF(i >= s->n_tensors, CLLM_ERR_ARG, "tensor index %zu out of range (%zu tensors)", i,
              s->n_tensors);
    const cllm_src_entry *e = &s->tensors[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof out->shape);
    return CLLM_OK;
}

cllm_status cllm_source_read(cllm_source *s, size_t i, void *buf, size_t cap) {
    RETURN_IF(!s || !buf, CLLM_ERR_ARG, "cllm_source_read: NULL argument");
    RETURN_IF(i >= s->n_tensors, CLLM_ERR_ARG, "tensor index %zu out of range (%zu tensors)", i,
              s->n_tensors);
    const cllm_src_entry *e = &s->tensors[i];
    RETURN_IF(e->size > SIZE_MAX || cap < e->size, CLLM_ERR_ARG,
              "tensor '%s': buffer of %zu bytes is smaller than the %llu needed", e->name, cap,
              (unsigned long long)e->size);
    const cllm_src_file *f = &s->files[e->file];
    if (e->ggml_type) {
        TRY(read_dequantized(f, e, buf));
    } else {
        cllm_status st = cllm_pread_full(f->fd, buf, (size_t)e->size, e->offset, f->path);
        if (st != CLLM_OK) return cllm_error_context(st, "tensor '%s'", e->name);
    }
    if (e->permute_heads == 0) return CLLM_OK;
    uint32_t esize = cllm_dtype_size(e->dtype);
    size_t scratch_bytes = (size_t)s->cfg.head_dim * (size_t)e->shape[1] * esize;
    uint8_t *scratch = malloc(scratch_bytes);
    RETURN_IF(!scratch, CLLM_ERR_NOMEM, "tensor '%s': out of memory for %zu bytes", e->name,
              scratch_bytes);
    cllm_rope_unpermute_rows(buf, e->permute_heads, s->cfg.head_dim, e->shape[1], esize, scratch);
    free(scratch);
    return CLLM_OK;
}

cllm_tokenizer_kind cllm_source_tokenizer(const cllm_source *s, const uint8_t **data,
                                          size_t *size) {
    if (data) *data = s ? s->tok : NULL;
    if (size) *size = s ? s->tok_size : 0;
    return s ? s->tok_kind : CLLM_TOKENIZER_NONE;
}
