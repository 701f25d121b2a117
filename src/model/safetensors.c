// safetensors: header parser (untrusted input) and writer. Format in cllm_model.h.
#include "cllm_model.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Element sizes of every dtype the reference implementation knows, so that bounds are checked
// even for tensors we will not read.
static const struct {
    const char *name;
    uint32_t size;
    int supported;
    cllm_dtype dtype;
} st_dtypes[] = {
    {"F32", 4, 1, CLLM_DTYPE_F32},  {"F16", 2, 1, CLLM_DTYPE_F16},  {"BF16", 2, 1, CLLM_DTYPE_BF16},
    {"F64", 8, 0, CLLM_DTYPE_F32},  {"I64", 8, 0, CLLM_DTYPE_F32},  {"U64", 8, 0, CLLM_DTYPE_F32},
    {"I32", 4, 0, CLLM_DTYPE_F32},  {"U32", 4, 0, CLLM_DTYPE_F32},  {"I16", 2, 0, CLLM_DTYPE_F32},
    {"U16", 2, 0, CLLM_DTYPE_F32},  {"I8", 1, 0, CLLM_DTYPE_F32},   {"U8", 1, 0, CLLM_DTYPE_F32},
    {"BOOL", 1, 0, CLLM_DTYPE_F32}, {"F8_E4M3", 1, 0, CLLM_DTYPE_F32},
    {"F8_E5M2", 1, 0, CLLM_DTYPE_F32}, {"F8_E8M0", 1, 0, CLLM_DTYPE_F32},
    {"C64", 8, 0, CLLM_DTYPE_F32},
};

static const char *st_dtype_string(cllm_dtype dt) {
    switch (dt) {
    case CLLM_DTYPE_F32: return "F32";
    case CLLM_DTYPE_F16: return "F16";
    case CLLM_DTYPE_BF16: return "BF16";
    default: return NULL;
    }
}

// Reads a non-negative JSON integer (safetensors writes plain integers; reals are refused).
static int st_json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0) return 0;
    *out = (uint64_t)x;
    return 1;
}

static cllm_status st_parse_dtype(const char *name, json_t *obj, cllm_st_tensor *t) {
    const char *s = json_string_value(json_object_get(obj, "dtype"));
    RETURN_IF(!s, CLLM_ERR_FORMAT, "tensor '%s': dtype missing or not a string", name);
    for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++) {
        if (strcmp(s, st_dtypes[k].name) == 0) {
            snprintf(t->dtype_name, sizeof t->dtype_name, "%s", st_dtypes[k].name);
            t->elem_size = st_dtypes[k].size;
            t->supported = st_dtypes[k].supported;
            t->dtype = st_dtypes[k].dtype;
            return CLLM_OK;
        }
    }
    return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "tensor '%s': dtype '%.32s' is not supported", name, s);
}

static cllm_status st_parse_shape(const char *name, json_t *obj, cllm_st_tensor *t) {
    json_t *shape = json_object_get(obj, "shape");
    RETURN_IF(!json_is_array(shape), CLLM_ERR_FORMAT, "tensor '%s': shape missing or not an array",
              name);
    size_t nd = json_array_size(shape);
    RETURN_IF(nd > CLLM_ST_MAX_DIMS, CLLM_ERR_UNSUPPORTED,
              "tensor '%s': shape has %zu dimensions (at most %d supported)", name, nd,
              CLLM_ST_MAX_DIMS);
    t->ndim = (uint32_t)nd;
    uint64_t n = 1;
    for (size_t d = 0; d < nd; d++) {
        RETURN_IF(!st_json_u64(json_array_get(shape, d), &t->shape[d]), CLLM_ERR_FORMAT,
                  "tensor '%s': shape[%zu] is not a non-negative integer", name, d);
        RETURN_IF(cllm_mul_overflow_u64(n, t->shape[d], &n), CLLM_ERR_CORRUPT,
                  "tensor '%s': shape overflows 64 bits", name);
    }
    t->n_elements = n;
    return CLLM_OK;
}

static cllm_status st_parse_offsets(const char *name, json_t *obj, uint64_t data_size,
                                    cllm_st_tensor *t) {
    json_t *off = json_object_get(obj, "data_offsets");
    RETURN_IF(!json_is_array(off) || json_array_size(off) != 2, CLLM_ERR_FORMAT,
              "tensor '%s': data_offsets missing or not an array of 2", name);
    RETURN_IF(!st_json_u64(json_array_get(off, 0), &t->begin) ||
                  !st_json_u64(json_array_get(off, 1), &t->end),
              CLLM_ERR_FORMAT, "tensor '%s': data_offsets are not non-negative integers", name);
    RETURN_IF(t->end < t->begin, CLLM_ERR_CORRUPT,
              "tensor '%s': data_offsets [%llu, %llu] end before begin", name,
              (unsigned long long)t->begin, (unsigned long long)t->end);
    RETURN_IF(t->end > data_size, CLLM_ERR_CORRUPT,
              "tensor '%s': data_offsets [%llu, %llu] beyond the data area of %llu bytes", name,
              (unsigned long long)t->begin, (unsigned long long)t->end,
              (unsigned long long)data_size);
    uint64_t bytes;
    RETURN_IF(cllm_mul_overflow_u64(t->n_elements, t->elem_size, &bytes) ||
                  bytes != t->end - t->begin,
              CLLM_ERR_CORRUPT,
              "tensor '%s': data_offsets [%llu, %llu] span %llu bytes but %llu elements of %s "
              "need %llu",
              name, (unsigned long long)t->begin, (unsigned long long)t->end,
              (unsigned long long)(t->end - t->begin), (unsigned long long)t->n_elements,
              t->dtype_name, (unsigned long long)(t->n_elements * t->elem_size));
    return CLLM_OK;
}

static cllm_status st_parse_tensor(const char *name, json_t *obj, uint64_t data_size,
                                   cllm_st_tensor *t) {
    RETURN_IF(!json_is_object(obj), CLLM_ERR_FORMAT, "tensor '%s': entry is not an object", name);
    RETURN_IF(json_object_size(obj) != 3, CLLM_ERR_FORMAT,
              "tensor '%s': expected exactly dtype, shape and data_offsets (%zu keys)", name,
              json_object_size(obj));
    TRY(st_parse_dtype(name, obj, t));
    TRY(st_parse_shape(name, obj, t));
    TRY(st_parse_offsets(name, obj, data_size, t));
    t->name = strdup(name);
    RETURN_IF(!t->name, CLLM_ERR_NOMEM, "out of memory");
    return CLLM_OK;
}

static int st_cmp_begin(const void *a, const void *b) {
    const cllm_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// After sorting by begin, each range must start at or after the previous one ends.
static cllm_status st_check_overlaps(const cllm_st_header *h) {
    for (size_t i = 1; i < h->n_tensors; i++) {
        const cllm_st_tensor *p = &h->tensors[i - 1], *t = &h->tensors[i];
        RETURN_IF(t->begin < p->end, CLLM_ERR_CORRUPT,
                  "tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                  t->name, (unsigned long long)t->begin, (unsigned long long)t->end, p->name,
                  (unsigned long long)p->begin, (unsigned long long)p->end);
    }
    return CLLM_OK;
}

static cllm_status st_parse_object(json_t *root, cllm_st_header *h) {
    RETURN_IF(!json_is_object(root), CLLM_ERR_FORMAT, "header is not a JSON object");
    size_t n = json_object_size(root);
    h->tensors = calloc(n ? n : 1, sizeof *h->tensors);
    RETURN_IF(!h->tensors, CLLM_ERR_NOMEM, "out of memory for %zu tensors", n);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            RETURN_IF(!json_is_object(val), CLLM_ERR_FORMAT, "__metadata__ is not an object");
            continue;
        }
        cllm_st_tensor *t = &h->tensors[h->n_tensors];
        cllm_status st = st_parse_tensor(key, val, h->data_size, t);
        if (st != CLLM_OK) {
            free(t->name);
            t->name = NULL;
            return st;
        }
        h->n_tensors++;
    }
    qsort(h->tensors, h->n_tensors, sizeof *h->tensors, st_cmp_begin);
    return st_check_overlaps(h);
}

cllm_status cllm_st_parse(const uint8_t *buf, size_t buf_size, uint64_t file_size,
                          cllm_st_header *out) {
    RETURN_IF(!buf || !out || buf_size > file_size, CLLM_ERR_ARG, "cllm_st_parse: bad arguments");
    memset(out, 0, sizeof *out);
    RETURN_IF(buf_size < 8, CLLM_ERR_FORMAT, "file of %llu bytes is too short for a header",
              (unsigned long long)file_size);
    uint64_t n = cllm_load_le64(buf);
    RETURN_IF(n > CLLM_ST_MAX_HEADER, CLLM_ERR_FORMAT,
              "header length %llu exceeds the %llu bytes allowed", (unsigned long long)n,
              (unsigned long long)CLLM_ST_MAX_HEADER);
    RETURN_IF(n > file_size - 8, CLLM_ERR_FORMAT,
              "header length %llu exceeds the file (%llu bytes)", (unsigned long long)n,
              (unsigned long long)file_size);
    RETURN_IF(n > buf_size - 8, CLLM_ERR_ARG, "cllm_st_parse: buffer holds less than the header");
    RETURN_IF(n < 2 || buf[8] != '{', CLLM_ERR_FORMAT, "header does not start with '{'");
    out->data_offset = 8 + n;
    out->data_size = file_size - out->data_offset;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    RETURN_IF(!root, CLLM_ERR_FORMAT, "header JSON: %s (line %d, column %d)", jerr.text,
              jerr.line, jerr.column);
    cllm_status st = st_parse_object(root, out);
    json_decref(root);
    if (st != CLLM_OK) cllm_st_header_free(out);
    return st;
}

cllm_status cllm_st_read_header(int fd, const char *path, cllm_st_header *out) {
    memset(out, 0, sizeof *out);
    struct stat sb;
    RETURN_IF(fstat(fd, &sb) != 0, CLLM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    uint64_t file_size = (uint64_t)sb.st_size;
    uint8_t len[8];
    RETURN_IF(file_size < 8, CLLM_ERR_FORMAT, "%s: %llu bytes is too short for safetensors", path,
              (unsigned long long)file_size);
    TRY(cllm_pread_full(fd, len, 8, 0, path));
    uint64_t n = cllm_load_le64(len);
    RETURN_IF(n > CLLM_ST_MAX_HEADER || n > file_size - 8, CLLM_ERR_FORMAT,
              "%s: header length %llu exceeds the file (%llu bytes) or the %llu allowed", path,
              (unsigned long long)n, (unsigned long long)file_size,
              (unsigned long long)CLLM_ST_MAX_HEADER);
    uint8_t *buf = malloc((size_t)n + 8);
    RETURN_IF(!buf, CLLM_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path,
              (unsigned long long)n);
    cllm_status st = cllm_pread_full(fd, buf, (size_t)n + 8, 0, path);
    if (st == CLLM_OK) {
        st = cllm_st_parse(buf, (size_t)n + 8, file_size, out);
        if (st != CLLM_OK) cllm_error_context(st, "%s", path);
    }
    free(buf);
    return st;
}

void cllm_st_header_free(cllm_st_header *h) {
    if (!h) return;
    for (size_t i = 0; i < h->n_tensors; i++) free(h->tensors[i].name);
    free(h->tensors);
    memset(h, 0, sizeof *h);
}

const cllm_st_tensor *cllm_st_find(const cllm_st_header *h, const char *name) {
    for (size_t i = 0; i < h->n_tensors; i++)
        if (strcmp(h->tensors[i].name, name) == 0) return &h->tensors[i];
    return NULL;
}

// ---- writer ------------------------------------------------------------------------------------

static cllm_status st_spec_json(const cllm_st_spec *sp, uint64_t *pos, json_t **out) {
    const char *dt = st_dtype_string(sp->dtype);
    RETURN_IF(!dt || sp->ndim < 1 || sp->ndim > 4 || !sp->name, CLLM_ERR_ARG,
              "tensor '%s': bad dtype or ndim for safetensors", sp->name ? sp->name : "?");
    uint64_t bytes = cllm_dtype_size(sp->dtype);
    for (uint32_t d = 0; d < sp->ndim; d++)
        RETURN_IF(sp->shape[d] > (uint64_t)INT64_MAX ||
                      cllm_mul_overflow_u64(bytes, sp->shape[d], &bytes),
                  CLLM_ERR_ARG, "tensor '%s': shape overflows", sp->name);
    uint64_t end;
    RETURN_IF(cllm_add_overflow_u64(*pos, bytes, &end) || end > (uint64_t)INT64_MAX, CLLM_ERR_ARG,
              "tensor '%s': data offsets overflow", sp->name);
    json_t *shape = json_array();
    for (uint32_t d = 0; shape && d < sp->ndim; d++)
        json_array_append_new(shape, json_integer((json_int_t)sp->shape[d]));
    *out = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dt, "shape", shape, "data_offsets",
                     (json_int_t)*pos, (json_int_t)end);
    RETURN_IF(!*out, CLLM_ERR_NOMEM, "out of memory building the safetensors header");
    *pos = end;
    return CLLM_OK;
}

static cllm_status st_header_json(const cllm_st_spec *specs, size_t n, char **text,
                                  uint64_t *data_size) {
    json_t *root = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
    RETURN_IF(!root, CLLM_ERR_NOMEM, "out of memory building the safetensors header");
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = NULL;
        cllm_status st = st_spec_json(&specs[i], &pos, &t);
        if (st == CLLM_OK && json_object_get(root, specs[i].name)) {
            json_decref(t);
            st = CLLM_FAIL(CLLM_ERR_ARG, "tensor '%s' appears twice", specs[i].name);
        }
        // json_object_set_new takes `t` even when it fails.
        if (st == CLLM_OK && json_object_set_new(root, specs[i].name, t) != 0)
            st = CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory building the safetensors header");
        if (st != CLLM_OK) {
            json_decref(root);
            return st;
        }
    }
    *text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(root);
    RETURN_IF(!*text, CLLM_ERR_NOMEM, "out of memory dumping the safetensors header");
    *data_size = pos;
    return CLLM_OK;
}

cllm_status cllm_st_build_header(const cllm_st_spec *specs, size_t n, uint8_t **out,
                                 size_t *out_size, uint64_t *data_size) {
    RETURN_IF(!out || !out_size || !data_size || (n && !specs), CLLM_ERR_ARG,
              "cllm_st_build_header: bad arguments");
    *out = NULL;
    char *text = NULL;
    TRY(st_header_json(specs, n, &text, data_size));
    size_t len = strlen(text);
    size_t padded = (len + 7) & ~(size_t)7;  // data area starts 8-aligned
    uint8_t *buf = malloc(8 + padded);
    if (!buf) {
        free(text);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory for a %zu-byte header", padded);
    }
    cllm_store_le64(buf, padded);
    memcpy(buf + 8, text, len);
    memset(buf + 8 + len, ' ', padded - len);
    free(text);
    *out = buf;
    *out_size = 8 + padded;
    return CLLM_OK;
}

cllm_status cllm_st_write_file(const char *path, const cllm_st_spec *specs, size_t n,
                               const void *const *data) {
    uint8_t *hdr = NULL;
    size_t hdr_size = 0;
    uint64_t data_size = 0;
    TRY(cllm_st_build_header(specs, n, &hdr, &hdr_size, &data_size));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(hdr);
        return CLLM_FAIL(CLLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    cllm_status st = cllm_write_full(fd, hdr, hdr_size, path);
    free(hdr);
    for (size_t i = 0; i < n && st == CLLM_OK; i++) {
        uint64_t bytes = cllm_dtype_size(specs[i].dtype);
        for (uint32_t d = 0; d < specs[i].ndim; d++) bytes *= specs[i].shape[d];  // checked above
        st = cllm_write_full(fd, data[i], (size_t)bytes, path);
    }
    if (close(fd) != 0 && st == CLLM_OK)
        st = CLLM_FAIL(CLLM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

// ---- I/O helpers shared by the model stage -----------------------------------------------------

cllm_status cllm_pread_full(int fd, void *buf, size_t size, uint64_t offset, const char *path) {
    uint8_t *p = buf;
    while (size > 0) {
        size_t chunk = size > ((size_t)1 << 30) ? ((size_t)1 << 30) : size;
        ssize_t got = pread(fd, p, chunk, (off_t)offset);
        if (got < 0 && errno == EINTR) continue;
        RETURN_IF(got < 0, CLLM_ERR_IO, "%s: read at offset %llu failed: %s", path,
                  (unsigned long long)offset, strerror(errno));
        RETURN_IF(got == 0, CLLM_ERR_IO, "%s: unexpected end of file at offset %llu", path,
                  (unsigned long long)offset);
        p += got;
        size -= (size_t)got;
        offset += (uint64_t)got;
    }
    return CLLM_OK;
}

cllm_status cllm_write_full(int fd, const void *buf, size_t size, const char *path) {
    const uint8_t *p = buf;
    while (size > 0) {
        size_t chunk = size > ((size_t)1 << 30) ? ((size_t)1 << 30) : size;
        ssize_t put = write(fd, p, chunk);
        if (put < 0 && errno == EINTR) continue;
        RETURN_IF(put <= 0, CLLM_ERR_IO, "%s: write failed: %s", path,
                  put < 0 ? strerror(errno) : "no progress");
        p += put;
        size -= (size_t)put;
    }
    return CLLM_OK;
}
