// GGUF reader: the header (key/values and tensor infos) parsed and validated; see gguf.h for the
// layout. A cursor walks the header; in file mode it preads more of the file (doubling) whenever
// the parser needs bytes it has not read yet, so only the header region is ever read.
#include "gguf.h"

#include "cllm_model.h"
#include "gguf_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long ull;

// The parser's view of the file: bytes [0, have) are in buf.
typedef struct gguf_rd {
    int fd;               // -1: memory mode (buf holds the whole file)
    const char *path;
    uint8_t *buf;
    size_t have, cap;
    uint64_t file_size;
    uint64_t pos;         // next byte to parse
} gguf_rd;

// Makes bytes [pos, pos + n) available; fails when they lie beyond the file.
static cllm_status rd_need(gguf_rd *r, uint64_t n, const char *what) {
    uint64_t end;
    RETURN_IF(cllm_add_overflow_u64(r->pos, n, &end) || end > r->file_size, CLLM_ERR_CORRUPT,
              "truncated: %s needs %llu bytes at offset %llu, the file has %llu", what, (ull)n,
              (ull)r->pos, (ull)r->file_size);
    if (end <= r->have) return CLLM_OK;
    RETURN_IF(end > CLLM_GGUF_MAX_HEADER, CLLM_ERR_UNSUPPORTED,
              "the GGUF header is larger than %llu bytes (%s at offset %llu)",
              (ull)CLLM_GGUF_MAX_HEADER, what, (ull)r->pos);
    uint64_t want = r->have < 65536 ? 65536 : 2 * (uint64_t)r->have;
    if (want < end) want = end;
    if (want > r->file_size) want = r->file_size;
    if (want > CLLM_GGUF_MAX_HEADER) want = CLLM_GGUF_MAX_HEADER;
    if (want > r->cap) {
        uint8_t *nb = realloc(r->buf, (size_t)want);
        RETURN_IF(!nb, CLLM_ERR_NOMEM, "cannot allocate %llu bytes for the GGUF header", (ull)want);
        r->buf = nb;
        r->cap = (size_t)want;
    }
    TRY(cllm_pread_full(r->fd, r->buf + r->have, (size_t)want - r->have, r->have, r->path));
    r->have = (size_t)want;
    return CLLM_OK;
}

static cllm_status rd_u32(gguf_rd *r, const char *what, uint32_t *v) {
    TRY(rd_need(r, 4, what));
    *v = cllm_load_le32(r->buf + r->pos);
    r->pos += 4;
    return CLLM_OK;
}

static cllm_status rd_u64(gguf_rd *r, const char *what, uint64_t *v) {
    TRY(rd_need(r, 8, what));
    *v = cllm_load_le64(r->buf + r->pos);
    r->pos += 8;
    return CLLM_OK;
}

// A string: its length (bounded by `max` and the file) and the offset of its bytes; skips it.
static cllm_status rd_str(gguf_rd *r, uint64_t max, const char *what, uint64_t *off,
                          uint64_t *len) {
    TRY(rd_u64(r, what, len));
    RETURN_IF(*len > max, CLLM_ERR_CORRUPT, "%s at offset %llu: length %llu exceeds %llu", what,
              (ull)(r->pos - 8), (ull)*len, (ull)max);
    TRY(rd_need(r, *len, what));
    *off = r->pos;
    r->pos += *len;
    return CLLM_OK;
}

// Bytes of one scalar of type t (0 for string/array/unknown).
static uint32_t scalar_size(uint32_t t) {
    static const uint8_t sizes[CLLM_GGUF_VTYPE_COUNT_] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < CLLM_GGUF_VTYPE_COUNT_ ? sizes[t] : 0;
}

// ---- key/value pairs ----------------------------------------------------------------------------

static cllm_status parse_scalar(gguf_rd *r, cllm_gguf_kv *kv, uint32_t t) {
    uint32_t sz = scalar_size(t);
    kv->value_off = r->pos;
    TRY(rd_need(r, sz, kv->key));
    if (t == CLLM_GGUF_BOOL) {
        RETURN_IF(r->buf[r->pos] > 1, CLLM_ERR_CORRUPT, "key '%s': bool value %u is not 0 or 1",
                  kv->key, r->buf[r->pos]);
    }
    r->pos += sz;
    return CLLM_OK;
}

static cllm_status parse_string_array(gguf_rd *r, cllm_gguf_kv *kv) {
    // Every string takes at least its 8-byte length: the count is bounded by the file.
    RETURN_IF(kv->n > (r->file_size - r->pos) / 8, CLLM_ERR_CORRUPT,
              "key '%s': %llu strings cannot fit in the %llu bytes left", kv->key, (ull)kv->n,
              (ull)(r->file_size - r->pos));
    kv->str_off = malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->str_off);
    RETURN_IF(!kv->str_off, CLLM_ERR_NOMEM, "key '%s': cannot index %llu strings", kv->key,
              (ull)kv->n);
    for (uint64_t i = 0; i < kv->n; i++) {
        uint64_t len = 0;
        TRY(rd_str(r, r->file_size, kv->key, &kv->str_off[i], &len));
    }
    return CLLM_OK;
}

static cllm_status parse_array(gguf_rd *r, cllm_gguf_kv *kv) {
    TRY(rd_u32(r, kv->key, &kv->elem_type));
    TRY(rd_u64(r, kv->key, &kv->n));
    uint32_t et = kv->elem_type;
    RETURN_IF(et == CLLM_GGUF_ARRAY, CLLM_ERR_UNSUPPORTED, "key '%s': arrays of arrays are not "
              "supported", kv->key);
    RETURN_IF(et >= CLLM_GGUF_VTYPE_COUNT_, CLLM_ERR_CORRUPT,
              "key '%s': unknown array element type %u", kv->key, et);
    kv->value_off = r->pos;
    if (et == CLLM_GGUF_STRING) return parse_string_array(r, kv);
    uint64_t bytes;
    RETURN_IF(cllm_mul_overflow_u64(kv->n, scalar_size(et), &bytes) ||
                  bytes > r->file_size - r->pos,
              CLLM_ERR_CORRUPT, "key '%s': %llu elements of %u bytes exceed the %llu bytes left",
              kv->key, (ull)kv->n, scalar_size(et), (ull)(r->file_size - r->pos));
    TRY(rd_need(r, bytes, kv->key));
    if (et == CLLM_GGUF_BOOL) {
        for (uint64_t i = 0; i < kv->n; i++)
            RETURN_IF(r->buf[r->pos + i] > 1, CLLM_ERR_CORRUPT,
                      "key '%s': element %llu: bool value %u is not 0 or 1", kv->key, (ull)i,
                      r->buf[r->pos + i]);
    }
    r->pos += bytes;
    return CLLM_OK;
}

// The key: 1..65535 bytes without NUL (the specification asks for ASCII identifiers; any other
// printable byte is allowed, a NUL would cut the copy).
static cllm_status parse_key(gguf_rd *r, size_t i, char **key) {
    uint64_t off = 0, len = 0;
    TRY(rd_str(r, CLLM_GGUF_MAX_KEY, "key", &off, &len));
    RETURN_IF(len == 0, CLLM_ERR_CORRUPT, "key/value pair %zu: empty key", i);
    RETURN_IF(memchr(r->buf + off, 0, (size_t)len), CLLM_ERR_CORRUPT,
              "key/value pair %zu: the key holds a NUL byte", i);
    *key = malloc((size_t)len + 1);
    RETURN_IF(!*key, CLLM_ERR_NOMEM, "out of memory for a key");
    memcpy(*key, r->buf + off, (size_t)len);
    (*key)[len] = '\0';
    return CLLM_OK;
}

static cllm_status parse_kv(gguf_rd *r, cllm_gguf *g, size_t i) {
    cllm_gguf_kv *kv = &g->kv[i];
    char *key = NULL;
    TRY(parse_key(r, i, &key));
    kv->key = key;
    g->n_kv = i + 1; // owned from here on: freed by cllm_gguf_free (duplicates: check_keys)
    TRY(rd_u32(r, key, &kv->type));
    kv->n = 1;
    switch (kv->type) {
    case CLLM_GGUF_STRING: return rd_str(r, r->file_size, key, &kv->value_off, &kv->len);
    case CLLM_GGUF_ARRAY: return parse_array(r, kv);
    default:
        RETURN_IF(kv->type >= CLLM_GGUF_VTYPE_COUNT_, CLLM_ERR_CORRUPT,
                  "key '%s': unknown value type %u", key, kv->type);
        return parse_scalar(r, kv, kv->type);
    }
}

// ---- tensor infos -------------------------------------------------------------------------------

static cllm_status parse_dims(gguf_rd *r, cllm_gguf_tensor *t) {
    TRY(rd_u32(r, t->name, &t->n_dims));
    RETURN_IF(t->n_dims < 1 || t->n_dims > CLLM_GGUF_MAX_DIMS, CLLM_ERR_CORRUPT,
              "tensor '%s': %u dimensions (1..%u allowed)", t->name, t->n_dims,
              CLLM_GGUF_MAX_DIMS);
    t->n_elements = 1;
    for (uint32_t d = 0; d < CLLM_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        TRY(rd_u64(r, t->name, &t->ne[d]));
        RETURN_IF(t->ne[d] == 0 || t->ne[d] > INT64_MAX, CLLM_ERR_CORRUPT,
                  "tensor '%s': dimension %u is %llu", t->name, d, (ull)t->ne[d]);
        RETURN_IF(cllm_mul_overflow_u64(t->n_elements, t->ne[d], &t->n_elements) ||
                      t->n_elements > INT64_MAX,
                  CLLM_ERR_CORRUPT, "tensor '%s': the element count overflows", t->name);
    }
    return CLLM_OK;
}

// Byte size from the type's block layout: rows of ne[0] values hold whole blocks.
static cllm_status tensor_size(cllm_gguf_tensor *t) {
    uint32_t be = 0, bb = 0;
    RETURN_IF(!cllm_ggml_type_layout(t->type, &be, &bb), CLLM_ERR_UNSUPPORTED,
              "tensor '%s': unknown ggml type %u", t->name, t->type);
    RETURN_IF(t->ne[0] % be != 0, CLLM_ERR_CORRUPT,
              "tensor '%s': %llu values per row are not whole %s blocks of %u", t->name,
              (ull)t->ne[0], cllm_ggml_type_name(t->type), be);
    RETURN_IF(cllm_mul_overflow_u64(t->n_elements / be, bb, &t->size), CLLM_ERR_CORRUPT,
              "tensor '%s': the byte size overflows", t->name);
    return CLLM_OK;
}

static cllm_status parse_tensor(gguf_rd *r, cllm_gguf *g, size_t i) {
    cllm_gguf_tensor *t = &g->tensors[i];
    uint64_t off = 0, len = 0;
    TRY(rd_str(r, CLLM_GGUF_MAX_NAME, "tensor name", &off, &len));
    RETURN_IF(len == 0 || memchr(r->buf + off, 0, (size_t)len), CLLM_ERR_CORRUPT,
              "tensor %zu: the name is empty or holds a NUL byte", i);
    memcpy(t->name, r->buf + off, (size_t)len);
    t->name[len] = '\0';
    g->n_tensors = i + 1;
    TRY(parse_dims(r, t));
    TRY(rd_u32(r, t->name, &t->type));
    TRY(rd_u64(r, t->name, &t->offset)); // relative until check_tensors
    return tensor_size(t);
}

static int cmp_keys(const void *a, const void *b) {
    return strcmp((*(const cllm_gguf_kv *const *)a)->key, (*(const cllm_gguf_kv *const *)b)->key);
}

// Keys are unique (sorted, O(n log n): a file may hold up to CLLM_GGUF_MAX_KV pairs).
static cllm_status check_keys(const cllm_gguf *g) {
    const cllm_gguf_kv **order = malloc((g->n_kv ? g->n_kv : 1) * sizeof *order);
    RETURN_IF(!order, CLLM_ERR_NOMEM, "out of memory for %zu keys", g->n_kv);
    for (size_t i = 0; i < g->n_kv; i++) order[i] = &g->kv[i];
    qsort(order, g->n_kv, sizeof *order, cmp_keys);
    cllm_status st = CLLM_OK;
    for (size_t i = 1; i < g->n_kv && st == CLLM_OK; i++)
        if (strcmp(order[i - 1]->key, order[i]->key) == 0)
            st = CLLM_FAIL(CLLM_ERR_CORRUPT, "key '%s' appears twice", order[i]->key);
    free(order);
    return st;
}

static int cmp_by_offset(const void *a, const void *b) {
    const cllm_gguf_tensor *x = *(const cllm_gguf_tensor *const *)a;
    const cllm_gguf_tensor *y = *(const cllm_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const cllm_gguf_tensor *const *)a)->name,
                  (*(const cllm_gguf_tensor *const *)b)->name);
}

// Data ranges aligned, inside the file, disjoint; names unique. Offsets become absolute.
static cllm_status check_tensors(cllm_gguf *g) {
    uint64_t data_size = g->file_size - g->data_offset; // data_offset <= file_size: checked
    for (size_t i = 0; i < g->n_tensors; i++) {
        cllm_gguf_tensor *t = &g->tensors[i];
        RETURN_IF(t->offset % g->alignment != 0, CLLM_ERR_CORRUPT,
                  "tensor '%s': data offset %llu is not a multiple of the alignment %u", t->name,
                  (ull)t->offset, g->alignment);
        RETURN_IF(t->offset > data_size || t->size > data_size - t->offset, CLLM_ERR_CORRUPT,
                  "tensor '%s': %llu bytes at data offset %llu lie beyond the file (%llu bytes "
                  "of data)", t->name, (ull)t->size, (ull)t->offset, (ull)data_size);
        t->offset += g->data_offset;
    }
    const cllm_gguf_tensor **order = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *order);
    RETURN_IF(!order, CLLM_ERR_NOMEM, "out of memory for %zu tensors", g->n_tensors);
    for (size_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    cllm_status st = CLLM_OK;
    qsort(order, g->n_tensors, sizeof *order, cmp_by_offset);
    for (size_t i = 1; i < g->n_tensors && st == CLLM_OK; i++) {
        if (order[i - 1]->offset + order[i - 1]->size > order[i]->offset)
            st = CLLM_FAIL(CLLM_ERR_CORRUPT, "tensors '%s' and '%s' overlap", order[i - 1]->name,
                           order[i]->name);
    }
    qsort(order, g->n_tensors, sizeof *order, cmp_by_name);
    for (size_t i = 1; i < g->n_tensors && st == CLLM_OK; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            st = CLLM_FAIL(CLLM_ERR_CORRUPT, "tensor '%s' appears twice", order[i]->name);
    }
    free(order);
    return st;
}

// ---- the whole header ---------------------------------------------------------------------------

static cllm_status parse_preamble(gguf_rd *r, cllm_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    uint32_t magic;
    TRY(rd_need(r, 4, "magic"));
    magic = cllm_load_le32(r->buf);
    RETURN_IF(magic != CLLM_GGUF_MAGIC, CLLM_ERR_FORMAT, "not a GGUF file (bad magic)");
    r->pos = 4;
    TRY(rd_u32(r, "version", &g->version));
    uint32_t swapped = __builtin_bswap32(g->version);
    RETURN_IF((g->version & 0xFFFF) == 0 && swapped >= 1 && swapped <= 3, CLLM_ERR_UNSUPPORTED,
              "big-endian GGUF files are not supported");
    RETURN_IF(g->version == 1, CLLM_ERR_UNSUPPORTED, "GGUF version 1 is not supported (2 and 3 "
              "are)");
    RETURN_IF(g->version != 2 && g->version != 3, CLLM_ERR_FORMAT, "unknown GGUF version %u",
              g->version);
    TRY(rd_u64(r, "tensor count", n_tensors));
    TRY(rd_u64(r, "key/value count", n_kv));
    // A pair takes at least 13 bytes (key length, one key byte, type, a one-byte value), a tensor
    // info at least 33 (name length, one name byte, n_dims, one dimension, type, offset).
    uint64_t left = r->file_size - r->pos;
    RETURN_IF(*n_kv > CLLM_GGUF_MAX_KV || *n_kv > left / 13, CLLM_ERR_CORRUPT,
              "%llu key/value pairs: more than the file (or the limit of %llu) can hold",
              (ull)*n_kv, (ull)CLLM_GGUF_MAX_KV);
    RETURN_IF(*n_tensors > CLLM_GGUF_MAX_TENSORS || *n_tensors > left / 33, CLLM_ERR_CORRUPT,
              "%llu tensors: more than the file (or the limit of %llu) can hold", (ull)*n_tensors,
              (ull)CLLM_GGUF_MAX_TENSORS);
    return CLLM_OK;
}

static cllm_status parse_alignment(cllm_gguf *g, const uint8_t *buf) {
    g->alignment = CLLM_GGUF_DEFAULT_ALIGNMENT;
    const cllm_gguf_kv *kv = cllm_gguf_find(g, "general.alignment");
    if (!kv) return CLLM_OK;
    RETURN_IF(kv->type != CLLM_GGUF_U32, CLLM_ERR_CORRUPT,
              "general.alignment has value type %u, not u32", kv->type);
    uint32_t a = cllm_load_le32(buf + kv->value_off);
    RETURN_IF(a == 0 || (a & (a - 1)) != 0 || a > (1u << 30), CLLM_ERR_CORRUPT,
              "general.alignment = %u is not a power of two (up to 2^30)", a);
    g->alignment = a;
    return CLLM_OK;
}

static cllm_status parse_all(gguf_rd *r, cllm_gguf *g) {
    uint64_t n_tensors = 0, n_kv = 0;
    TRY(parse_preamble(r, g, &n_tensors, &n_kv));
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
    RETURN_IF(!g->kv || !g->tensors, CLLM_ERR_NOMEM, "out of memory for the GGUF tables");
    for (size_t i = 0; i < n_kv; i++) TRY(parse_kv(r, g, i));
    TRY(check_keys(g));
    TRY(parse_alignment(g, r->buf));
    for (size_t i = 0; i < n_tensors; i++) TRY(parse_tensor(r, g, i));
    g->hdr_size = (size_t)r->pos;
    // The data section starts at the next multiple of the alignment (pos < 2^63: no overflow).
    g->data_offset = cllm_align_up(r->pos, g->alignment);
    RETURN_IF(n_tensors && g->data_offset > g->file_size, CLLM_ERR_CORRUPT,
              "the data section would start at %llu, beyond the file's %llu bytes",
              (ull)g->data_offset, (ull)g->file_size);
    return check_tensors(g);
}

// Runs the parser and keeps the header bytes in g->hdr.
static cllm_status parse_with(gguf_rd *r, cllm_gguf **out) {
    *out = NULL;
    cllm_gguf *g = calloc(1, sizeof *g);
    RETURN_IF(!g, CLLM_ERR_NOMEM, "out of memory");
    g->file_size = r->file_size;
    cllm_status st = parse_all(r, g);
    if (st == CLLM_OK) {
        g->hdr = malloc(g->hdr_size ? g->hdr_size : 1);
        if (!g->hdr) st = CLLM_FAIL(CLLM_ERR_NOMEM, "out of memory for the GGUF header");
        else memcpy(g->hdr, r->buf, g->hdr_size);
    }
    if (st != CLLM_OK) {
        cllm_gguf_free(g);
        return st;
    }
    *out = g;
    return CLLM_OK;
}

cllm_status cllm_gguf_parse(const uint8_t *data, size_t size, cllm_gguf **out) {
    RETURN_IF(!out || (!data && size), CLLM_ERR_ARG, "gguf_parse: NULL argument");
    gguf_rd r = {.fd = -1, .path = "memory", .buf = (uint8_t *)data, .have = size, .cap = size,
                 .file_size = size};
    // Memory mode never grows the buffer: every byte is in `have`, so rd_need only bounds-checks.
    return parse_with(&r, out);
}

cllm_status cllm_gguf_read(int fd, const char *path, uint64_t file_size, cllm_gguf **out) {
    RETURN_IF(!out || fd < 0, CLLM_ERR_ARG, "gguf_read: bad argument");
    gguf_rd r = {.fd = fd, .path = path ? path : "GGUF file", .file_size = file_size};
    cllm_status st = parse_with(&r, out);
    free(r.buf);
    if (st != CLLM_OK) return cllm_error_context(st, "%s", r.path);
    return CLLM_OK;
}

void cllm_gguf_free(cllm_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free((char *)g->kv[i].key);
        free(g->kv[i].str_off);
    }
    free(g->kv);
    free(g->tensors);
    free(g->hdr);
    free(g);
}

// ---- lookups ------------------------------------------------------------------------------------

const cllm_gguf_kv *cllm_gguf_find(const cllm_gguf *g, const char *key) {
    for (size_t i = 0; g && i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const cllm_gguf_tensor *cllm_gguf_find_tensor(const cllm_gguf *g, const char *name) {
    for (size_t i = 0; g && i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static cllm_status find_kv(const cllm_gguf *g, const char *key, const cllm_gguf_kv **kv) {
    *kv = cllm_gguf_find(g, key);
    RETURN_IF(!*kv, CLLM_ERR_FORMAT, "GGUF key '%s' is missing", key);
    return CLLM_OK;
}

static int is_int_type(uint32_t t) {
    return t <= CLLM_GGUF_I32 || t == CLLM_GGUF_U64 || t == CLLM_GGUF_I64;
}

// An integer element of type t at p, as a signed 128-bit-safe pair: *neg for negative values.
static void load_int(const uint8_t *p, uint32_t t, int64_t *v, uint64_t *u, int *neg) {
    switch (t) {
    case CLLM_GGUF_U8: *u = p[0], *neg = 0; break;
    case CLLM_GGUF_I8: *v = (int8_t)p[0], *neg = *v < 0; break;
    case CLLM_GGUF_U16: *u = cllm_load_le16(p), *neg = 0; break;
    case CLLM_GGUF_I16: *v = (int16_t)cllm_load_le16(p), *neg = *v < 0; break;
    case CLLM_GGUF_U32: *u = cllm_load_le32(p), *neg = 0; break;
    case CLLM_GGUF_I32: *v = (int32_t)cllm_load_le32(p), *neg = *v < 0; break;
    case CLLM_GGUF_U64: *u = cllm_load_le64(p), *neg = 0; break;
    default: *v = (int64_t)cllm_load_le64(p), *neg = *v < 0; break;
    }
    if (t == CLLM_GGUF_I8 || t == CLLM_GGUF_I16 || t == CLLM_GGUF_I32 || t == CLLM_GGUF_I64) {
        if (!*neg) *u = (uint64_t)*v;
    } else {
        *v = *u > INT64_MAX ? INT64_MAX : (int64_t)*u;
    }
}

static cllm_status get_int(const cllm_gguf *g, const char *key, int64_t lo, uint64_t hi,
                           int64_t *out) {
    const cllm_gguf_kv *kv;
    TRY(find_kv(g, key, &kv));
    RETURN_IF(!is_int_type(kv->type), CLLM_ERR_FORMAT, "GGUF key '%s' is not an integer", key);
    int64_t v = 0;
    uint64_t u = 0;
    int neg = 0;
    load_int(g->hdr + kv->value_off, kv->type, &v, &u, &neg);
    RETURN_IF(neg ? v < lo : u > hi, CLLM_ERR_FORMAT, "GGUF key '%s' = %s%llu is out of range",
              key, neg ? "-" : "", neg ? (ull)(-(v + 1)) + 1 : (ull)u);
    *out = neg ? v : (int64_t)u;
    return CLLM_OK;
}

cllm_status cllm_gguf_get_u32(const cllm_gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    TRY(get_int(g, key, 0, UINT32_MAX, &v));
    *out = (uint32_t)v;
    return CLLM_OK;
}

cllm_status cllm_gguf_get_i32(const cllm_gguf *g, const char *key, int32_t *out) {
    int64_t v;
    TRY(get_int(g, key, INT32_MIN, INT32_MAX, &v));
    *out = (int32_t)v;
    return CLLM_OK;
}

static double load_float(const uint8_t *p, uint32_t t) {
    if (t == CLLM_GGUF_F64) {
        uint64_t bits = cllm_load_le64(p);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    uint32_t bits = cllm_load_le32(p);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

cllm_status cllm_gguf_get_f32(const cllm_gguf *g, const char *key, float *out) {
    const cllm_gguf_kv *kv;
    TRY(find_kv(g, key, &kv));
    RETURN_IF(kv->type != CLLM_GGUF_F32 && kv->type != CLLM_GGUF_F64, CLLM_ERR_FORMAT,
              "GGUF key '%s' is not a float", key);
    double d = load_float(g->hdr + kv->value_off, kv->type);
    RETURN_IF(!isfinite(d) || fabs(d) > 3.0e38, CLLM_ERR_FORMAT,
              "GGUF key '%s' = %g is not a finite float", key, d);
    *out = (float)d;
    return CLLM_OK;
}

cllm_status cllm_gguf_get_bool(const cllm_gguf *g, const char *key, int *out) {
    const cllm_gguf_kv *kv;
    TRY(find_kv(g, key, &kv));
    RETURN_IF(kv->type != CLLM_GGUF_BOOL, CLLM_ERR_FORMAT, "GGUF key '%s' is not a bool", key);
    *out = g->hdr[kv->value_off] != 0;
    return CLLM_OK;
}

cllm_status cllm_gguf_get_str(const cllm_gguf *g, const char *key, const char **s, size_t *len) {
    const cllm_gguf_kv *kv;
    TRY(find_kv(g, key, &kv));
    RETURN_IF(kv->type != CLLM_GGUF_STRING, CLLM_ERR_FORMAT, "GGUF key '%s' is not a string",
              key);
    *s = (const char *)g->hdr + kv->value_off;
    *len = (size_t)kv->len;
    return CLLM_OK;
}

cllm_status cllm_gguf_get_array(const cllm_gguf *g, const char *key, cllm_gguf_vtype elem_type,
                                const cllm_gguf_kv **out) {
    const cllm_gguf_kv *kv;
    TRY(find_kv(g, key, &kv));
    RETURN_IF(kv->type != CLLM_GGUF_ARRAY, CLLM_ERR_FORMAT, "GGUF key '%s' is not an array", key);
    int ok = kv->elem_type == (uint32_t)elem_type;
    if (elem_type == CLLM_GGUF_F32) ok = ok || kv->elem_type == CLLM_GGUF_F64;
    if (elem_type == CLLM_GGUF_I32) ok = is_int_type(kv->elem_type);
    RETURN_IF(!ok, CLLM_ERR_FORMAT, "GGUF key '%s': array elements of type %u, expected %u", key,
              kv->elem_type, (unsigned)elem_type);
    *out = kv;
    return CLLM_OK;
}

void cllm_gguf_arr_str(const cllm_gguf *g, const cllm_gguf_kv *a, uint64_t i, const char **s,
                       size_t *len) {
    uint64_t off = a->str_off[i];
    *s = (const char *)g->hdr + off;
    *len = (size_t)cllm_load_le64(g->hdr + off - 8);
}

float cllm_gguf_arr_f32(const cllm_gguf *g, const cllm_gguf_kv *a, uint64_t i) {
    uint32_t sz = scalar_size(a->elem_type);
    return (float)load_float(g->hdr + a->value_off + i * sz, a->elem_type);
}

int64_t cllm_gguf_arr_i64(const cllm_gguf *g, const cllm_gguf_kv *a, uint64_t i) {
    int64_t v = 0;
    uint64_t u = 0;
    int neg = 0;
    load_int(g->hdr + a->value_off + i * scalar_size(a->elem_type), a->elem_type, &v, &u, &neg);
    return v;
}
