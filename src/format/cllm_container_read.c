// .cllm reader: maps the file read-only and validates every byte of its header, config and
// table (and each payload's structure) before handing anything out. docs/FORMAT.md specifies the
// bytes; cllm_file_layout.h holds the offsets.
//
// Validation order (each step trusts only what the previous ones established):
//   size >= 128 -> magic -> version -> header checksum -> header fields (fixed values, reserved
//   zeros, file_size == real size, table inside the file) -> meta checksum -> config ->
//   tokenizer placement and checksum -> each entry (enums, shape, payload layout, placement,
//   payload structure) -> unique names -> file ends right after the last section.
#include "cllm_container_impl.h"

#include "../codec/cllm_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

typedef unsigned long long ull;

// ---- header -------------------------------------------------------------------------------------

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

// Magic, version and header checksum: after this the header's fields are the writer's own.
static cllm_status check_header_identity(const cllm_container *c, unsigned flags) {
    const uint8_t *h = c->base;
    RETURN_IF(c->size < CLLM_HEADER_SIZE, CLLM_ERR_FORMAT,
              "file is %llu bytes, smaller than the %u-byte .cllm header", (ull)c->size,
              CLLM_HEADER_SIZE);
    RETURN_IF(memcmp(h, CLLM_FILE_MAGIC, CLLM_FILE_MAGIC_SIZE) != 0, CLLM_ERR_FORMAT,
              "not a .cllm file (magic is not \"CODECLLM\")");
    uint32_t version = cllm_load_le32(h + CLLM_HDR_VERSION);
    RETURN_IF(version != CLLM_FILE_VERSION, CLLM_ERR_UNSUPPORTED,
              "format version %u, this build reads %u", version, CLLM_FILE_VERSION);
    uint64_t stored = cllm_load_le64(h + CLLM_HDR_XXH3);
    uint64_t computed = XXH3_64bits(h, CLLM_HDR_XXH3);
    RETURN_IF(stored != computed && !(flags & CLLM_OPEN_NO_CHECKSUMS), CLLM_ERR_CORRUPT,
              "header checksum mismatch (stored 0x%016llx, computed 0x%016llx)", (ull)stored,
              (ull)computed);
    return CLLM_OK;
}

// Fixed-value fields, reserved bytes, file size and table extent.
static cllm_status parse_header_fields(cllm_container *c) {
    const uint8_t *h = c->base;
    RETURN_IF(cllm_load_le32(h + CLLM_HDR_HEADER_SIZE) != CLLM_HEADER_SIZE ||
                  cllm_load_le32(h + CLLM_HDR_ENTRY_SIZE) != CLLM_ENTRY_SIZE ||
                  cllm_load_le64(h + CLLM_HDR_CONFIG_OFFSET) != CLLM_CONFIG_OFFSET ||
                  cllm_load_le64(h + CLLM_HDR_CONFIG_SIZE) != CLLM_CONFIG_SIZE ||
                  cllm_load_le64(h + CLLM_HDR_TABLE_OFFSET) != CLLM_TABLE_OFFSET,
              CLLM_ERR_FORMAT,
              "header: header_size, entry_size, config or table offset/size differ from v1's "
              "fixed values (128, 256, 128, 128, 256)");
    RETURN_IF(cllm_load_le32(h + CLLM_HDR_RESERVED0) != 0 ||
                  !all_zero(h + CLLM_HDR_RESERVED1, 16),
              CLLM_ERR_CORRUPT, "header: reserved bytes are not zero");
    uint64_t file_size = cllm_load_le64(h + CLLM_HDR_FILE_SIZE);
    RETURN_IF(file_size > c->size, CLLM_ERR_CORRUPT,
              "file is truncated: header says %llu bytes, the file has %llu", (ull)file_size,
              (ull)c->size);
    RETURN_IF(file_size < c->size, CLLM_ERR_CORRUPT,
              "file has %llu bytes after its end (header says %llu bytes, the file has %llu)",
              (ull)(c->size - file_size), (ull)file_size, (ull)c->size);
    RETURN_IF(file_size % CLLM_SECTION_ALIGN != 0, CLLM_ERR_CORRUPT,
              "file_size %llu is not a multiple of %u", (ull)file_size, CLLM_SECTION_ALIGN);
    c->n_tensors = cllm_load_le32(h + CLLM_HDR_N_TENSORS);
    // n_tensors < 2^32, so the product and sum fit in 64 bits.
    uint64_t table_size = (uint64_t)c->n_tensors * CLLM_ENTRY_SIZE;
    RETURN_IF(cllm_load_le64(h + CLLM_HDR_TABLE_SIZE) != table_size, CLLM_ERR_CORRUPT,
              "header: table_size %llu != n_tensors %u * %u",
              (ull)cllm_load_le64(h + CLLM_HDR_TABLE_SIZE), c->n_tensors, CLLM_ENTRY_SIZE);
    c->table_end = CLLM_TABLE_OFFSET + table_size;
    RETURN_IF(c->table_end > file_size, CLLM_ERR_CORRUPT,
              "header: %u tensors need a %llu-byte table, beyond the file's %llu bytes",
              c->n_tensors, (ull)table_size, (ull)file_size);
    c->tok_offset = cllm_load_le64(h + CLLM_HDR_TOK_OFFSET);
    c->tok_size = cllm_load_le64(h + CLLM_HDR_TOK_SIZE);
    c->tok_kind = cllm_load_le32(h + CLLM_HDR_TOK_KIND);
    c->tok_xxh3 = cllm_load_le64(h + CLLM_HDR_TOK_XXH3);
    c->meta_xxh3 = cllm_load_le64(h + CLLM_HDR_META_XXH3);
    c->header_xxh3 = cllm_load_le64(h + CLLM_HDR_XXH3);
    return CLLM_OK;
}

static cllm_status parse_meta(cllm_container *c, unsigned flags) {
    uint64_t computed = XXH3_64bits(c->base + CLLM_CONFIG_OFFSET,
                                    (size_t)(c->table_end - CLLM_CONFIG_OFFSET));
    RETURN_IF(computed != c->meta_xxh3 && !(flags & CLLM_OPEN_NO_CHECKSUMS), CLLM_ERR_CORRUPT,
              "config/table checksum mismatch (stored 0x%016llx, computed 0x%016llx)",
              (ull)c->meta_xxh3, (ull)computed);
    return cllm_config_unpack(c->base + CLLM_CONFIG_OFFSET, &c->cfg);
}

// The tokenizer blob, when present, is the first section after the table. Returns in *cursor the
// end of the last section so far.
static cllm_status parse_tokenizer(cllm_container *c, unsigned flags, uint64_t *cursor) {
    *cursor = c->table_end;
    // An archive's blob is its safetensors header, which only an archive has.
    const int archive = c->cfg.arch == CLLM_ARCH_ARCHIVE;
    RETURN_IF(archive != (c->tok_kind == CLLM_TOKENIZER_SAFETENSORS_HEADER), CLLM_ERR_CORRUPT,
              "header: architecture %u with tokenizer kind %u (a packed safetensors archive has "
              "kind %d, and only an archive has it)", c->cfg.arch, c->tok_kind,
              CLLM_TOKENIZER_SAFETENSORS_HEADER);
    if (c->tok_kind == CLLM_TOKENIZER_NONE) {
        RETURN_IF(c->tok_offset || c->tok_size || c->tok_xxh3, CLLM_ERR_CORRUPT,
                  "header: no tokenizer, but tokenizer offset/size/checksum are not 0");
        return CLLM_OK;
    }
    RETURN_IF(c->tok_kind != CLLM_TOKENIZER_LLAMA2C && c->tok_kind != CLLM_TOKENIZER_HF_JSON &&
                  c->tok_kind != CLLM_TOKENIZER_SAFETENSORS_HEADER &&
                  c->tok_kind != CLLM_TOKENIZER_BUNDLE,
              CLLM_ERR_FORMAT, "header: unknown tokenizer kind %u", c->tok_kind);
    uint64_t expect = cllm_align_up(c->table_end, CLLM_SECTION_ALIGN);
    RETURN_IF(c->tok_offset != expect, CLLM_ERR_CORRUPT,
              "tokenizer at offset %llu, expected %llu (the first page after the table)",
              (ull)c->tok_offset, (ull)expect);
    RETURN_IF(c->tok_size < 1 || c->tok_size > c->size - c->tok_offset, CLLM_ERR_CORRUPT,
              "tokenizer of %llu bytes at offset %llu: empty or beyond the file's %llu bytes",
              (ull)c->tok_size, (ull)c->tok_offset, (ull)c->size);
    uint64_t computed = XXH3_64bits(c->base + c->tok_offset, (size_t)c->tok_size);
    RETURN_IF(computed != c->tok_xxh3 && !(flags & CLLM_OPEN_NO_CHECKSUMS), CLLM_ERR_CORRUPT,
              "tokenizer checksum mismatch (stored 0x%016llx, computed 0x%016llx)",
              (ull)c->tok_xxh3, (ull)computed);
    *cursor = c->tok_offset + c->tok_size;
    return CLLM_OK;
}

// ---- table entries ------------------------------------------------------------------------------

// name[128]: 1..127 printable characters, then NULs to the end of the field.
static cllm_status parse_name(const uint8_t *p, uint32_t i, char name[CLLM_NAME_CAP]) {
    size_t len = 0;
    while (len < CLLM_NAME_CAP && p[len] != 0) {
        RETURN_IF(!cllm_name_char_ok(p[len]), CLLM_ERR_CORRUPT,
                  "tensor %u: name byte %zu is 0x%02x, not printable ASCII", i, len, p[len]);
        len++;
    }
    RETURN_IF(len == 0, CLLM_ERR_CORRUPT, "tensor %u: empty name", i);
    RETURN_IF(len == CLLM_NAME_CAP, CLLM_ERR_CORRUPT, "tensor %u: name is not NUL-terminated", i);
    RETURN_IF(!all_zero(p + len, CLLM_NAME_CAP - len), CLLM_ERR_CORRUPT,
              "tensor %u: bytes after the name's NUL are not zero", i);
    memcpy(name, p, CLLM_NAME_CAP);
    return CLLM_OK;
}

// ndim, shape and the 2-D view: rows = product of all but the last dimension, cols = the last.
static cllm_status parse_shape(const uint8_t *p, cllm_tensor_info *info) {
    info->ndim = cllm_load_le32(p + CLLM_ENT_NDIM);
    RETURN_IF(info->ndim < 1 || info->ndim > 4, CLLM_ERR_CORRUPT, "ndim %u outside 1..4",
              info->ndim);
    uint64_t n = 1;
    for (uint32_t d = 0; d < 4; d++) {
        uint64_t s = cllm_load_le64(p + CLLM_ENT_SHAPE + 8 * d);
        info->shape[d] = s;
        if (d >= info->ndim) {
            RETURN_IF(s != 0, CLLM_ERR_CORRUPT, "shape[%u] = %llu beyond ndim %u, not 0", d,
                      (ull)s, info->ndim);
            continue;
        }
        RETURN_IF(s < 1, CLLM_ERR_CORRUPT, "shape[%u] is 0", d);
        RETURN_IF(cllm_mul_overflow_u64(n, s, &n), CLLM_ERR_CORRUPT, "shape product overflows");
    }
    info->n_elements = n;
    info->cols = info->shape[info->ndim - 1];
    info->rows = n / info->cols;
    return CLLM_OK;
}

// Everything an entry says about the tensor, before its placement in the file.
static cllm_status parse_entry_fields(const uint8_t *p, cllm_entry *e) {
    cllm_tensor_info *info = &e->info;
    cllm_coded_desc *d = &e->desc;
    memset(info, 0, sizeof *info);
    memset(d, 0, sizeof *d);
    uint32_t dtype = cllm_load_le32(p + CLLM_ENT_DTYPE), codec = cllm_load_le32(p + CLLM_ENT_CODEC);
    RETURN_IF(dtype >= CLLM_DTYPE_COUNT_, CLLM_ERR_FORMAT, "unknown dtype %u", dtype);
    RETURN_IF(codec >= CLLM_CODEC_COUNT_, CLLM_ERR_FORMAT, "unknown codec %u", codec);
    RETURN_IF(cllm_load_le32(p + CLLM_ENT_RESERVED0) != 0 || !all_zero(p + CLLM_ENT_RESERVED1, 16),
              CLLM_ERR_CORRUPT, "reserved bytes are not zero");
    TRY(parse_shape(p, info));
    double h;
    uint64_t hbits = cllm_load_le64(p + CLLM_ENT_ENTROPY);
    memcpy(&h, &hbits, 8);
    // Written as `h >= 0 && h <= 8` so that NaN fails too.
    RETURN_IF(!(h >= 0.0 && h <= 8.0), CLLM_ERR_CORRUPT, "symbol_entropy %g outside [0, 8]", h);
    info->name = e->name;
    info->dtype = (cllm_dtype)dtype;
    info->codec = (cllm_codec)codec;
    info->scale_bits = cllm_load_le32(p + CLLM_ENT_SCALE_BITS);
    info->rows_per_block = cllm_load_le32(p + CLLM_ENT_ROWS_PER_BLOCK);
    info->group_size = cllm_load_le32(p + CLLM_ENT_GROUP_SIZE);
    info->predictor = cllm_load_le32(p + CLLM_ENT_PREDICTOR);
    info->n_blocks = cllm_load_le64(p + CLLM_ENT_N_BLOCKS);
    info->symbol_entropy = h;
    info->data_offset = cllm_load_le64(p + CLLM_ENT_DATA_OFFSET);
    info->data_size = cllm_load_le64(p + CLLM_ENT_DATA_SIZE);
    info->checksum = cllm_load_le64(p + CLLM_ENT_DATA_XXH3);
    cllm_info_to_desc(info, d);
    d->stream_bytes = cllm_load_le64(p + CLLM_ENT_STREAM_BYTES);
    return CLLM_OK;
}

// Layout, placement (the next page after `*cursor`, inside the file) and payload structure.
static cllm_status check_entry_payload(const cllm_container *c, cllm_entry *e, uint64_t *cursor) {
    const cllm_tensor_info *info = &e->info;
    cllm_payload_layout_t lay;
    TRY(cllm_payload_layout(&e->desc, &lay));
    RETURN_IF(lay.total_size != info->data_size, CLLM_ERR_CORRUPT,
              "data_size %llu, but its description implies %llu bytes", (ull)info->data_size,
              (ull)lay.total_size);
    // *cursor <= c->size, which is a multiple of 4096: aligning it cannot overflow or pass size.
    uint64_t expect = cllm_align_up(*cursor, CLLM_SECTION_ALIGN);
    RETURN_IF(info->data_offset != expect, CLLM_ERR_CORRUPT,
              "data_offset %llu, expected %llu (the first page after the previous section)",
              (ull)info->data_offset, (ull)expect);
    RETURN_IF(info->data_offset > c->size || info->data_size > c->size - info->data_offset,
              CLLM_ERR_CORRUPT, "payload [%llu, +%llu) extends beyond the file's %llu bytes",
              (ull)info->data_offset, (ull)info->data_size, (ull)c->size);
    TRY(cllm_payload_check(&e->desc, c->base + info->data_offset, info->data_size));
    *cursor = info->data_offset + info->data_size;
    return CLLM_OK;
}

static cllm_status parse_entries(cllm_container *c, uint64_t *cursor) {
    if (c->n_tensors == 0) return CLLM_OK;
    // The table lies inside the file, so n_tensors <= size / 256 bounds these allocations.
    c->entries = calloc(c->n_tensors, sizeof *c->entries);
    c->by_name = calloc(c->n_tensors, sizeof *c->by_name);
    RETURN_IF(!c->entries || !c->by_name, CLLM_ERR_NOMEM, "cannot allocate a table of %u tensors",
              c->n_tensors);
    for (uint32_t i = 0; i < c->n_tensors; i++) {
        const uint8_t *p = c->base + CLLM_TABLE_OFFSET + (uint64_t)i * CLLM_ENTRY_SIZE;
        cllm_entry *e = &c->entries[i];
        TRY(parse_name(p + CLLM_ENT_NAME, i, e->name));
        cllm_status st = parse_entry_fields(p, e);
        if (st == CLLM_OK) st = check_entry_payload(c, e, cursor);
        if (st != CLLM_OK) return cllm_error_context(st, "tensor %u ('%s')", i, e->name);
        c->by_name[i] = i;
    }
    return CLLM_OK;
}

// qsort has no context argument, so sort (name, index) pairs; sorting (n log n) rather than
// comparing all pairs keeps a hostile table of millions of entries cheap.
typedef struct name_ref {
    const char *name;
    uint32_t index;
} name_ref;

static int name_ref_cmp(const void *a, const void *b) {
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

static cllm_status check_unique_names(cllm_container *c) {
    if (c->n_tensors == 0) return CLLM_OK;
    name_ref *refs = malloc((size_t)c->n_tensors * sizeof *refs);
    RETURN_IF(!refs, CLLM_ERR_NOMEM, "cannot allocate the name index");
    for (uint32_t i = 0; i < c->n_tensors; i++) refs[i] = (name_ref){c->entries[i].name, i};
    qsort(refs, c->n_tensors, sizeof *refs, name_ref_cmp);
    for (uint32_t i = 0; i < c->n_tensors; i++) {
        c->by_name[i] = refs[i].index;
        if (i > 0 && strcmp(refs[i - 1].name, refs[i].name) == 0) {
            uint32_t a = refs[i - 1].index, b = refs[i].index;
            free(refs);
            return CLLM_FAIL(CLLM_ERR_CORRUPT, "tensors %u and %u are both named '%s'", a, b,
                             c->entries[a].name);
        }
    }
    free(refs);
    return CLLM_OK;
}

static cllm_status parse_container(cllm_container *c, unsigned flags) {
    TRY(check_header_identity(c, flags));
    TRY(parse_header_fields(c));
    TRY(parse_meta(c, flags));
    uint64_t cursor;
    TRY(parse_tokenizer(c, flags, &cursor));
    TRY(parse_entries(c, &cursor));
    TRY(check_unique_names(c));
    uint64_t end = cllm_align_up(cursor, CLLM_SECTION_ALIGN);
    RETURN_IF(end != c->size, CLLM_ERR_CORRUPT,
              "the last section ends at %llu, so the file should be %llu bytes, not %llu",
              (ull)cursor, (ull)end, (ull)c->size);
    return CLLM_OK;
}

// ---- open / free --------------------------------------------------------------------------------

static cllm_status container_new(const char *label, cllm_container **out) {
    cllm_container *c = calloc(1, sizeof *c);
    char *copy = strdup(label ? label : "<memory>");
    if (!c || !copy) {
        free(c);
        free(copy);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "cannot allocate a container");
    }
    c->label = copy;
    *out = c;
    return CLLM_OK;
}

cllm_status cllm_container_open_memory(const uint8_t *data, size_t size, const char *label,
                                       unsigned flags, cllm_container **out) {
    RETURN_IF(!out || (!data && size), CLLM_ERR_ARG, "container open: NULL argument");
    *out = NULL;
    cllm_container *c = NULL;
    TRY(container_new(label, &c));
    c->base = data;
    c->size = size;
    cllm_status st = parse_container(c, flags);
    if (st != CLLM_OK) {
        st = cllm_error_context(st, "%s", c->label);
        cllm_container_free(c);
        return st;
    }
    *out = c;
    return CLLM_OK;
}

// Maps `path` read-only; a file smaller than the header is refused before mapping (mmap of 0
// bytes fails, and nothing smaller can be a container).
static cllm_status map_file(const char *path, void **map, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    RETURN_IF(fd < 0, CLLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat stt;
    cllm_status st = CLLM_OK;
    if (fstat(fd, &stt) != 0) {
        st = CLLM_FAIL(CLLM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(stt.st_mode)) {
        st = CLLM_FAIL(CLLM_ERR_IO, "%s: not a regular file", path);
    } else if ((uint64_t)stt.st_size < CLLM_HEADER_SIZE) {
        st = CLLM_FAIL(CLLM_ERR_FORMAT, "%s: file is %lld bytes, smaller than the %u-byte .cllm "
                       "header", path, (long long)stt.st_size, CLLM_HEADER_SIZE);
    } else if ((uint64_t)stt.st_size > SIZE_MAX) {
        st = CLLM_FAIL(CLLM_ERR_IO, "%s: too large to map", path);
    } else {
        *size = (size_t)stt.st_size;
        *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (*map == MAP_FAILED)
            st = CLLM_FAIL(CLLM_ERR_IO, "%s: cannot map %zu bytes: %s", path, *size,
                           strerror(errno));
    }
    close(fd);
    return st;
}

cllm_status cllm_container_open(const char *path, cllm_container **out) {
    RETURN_IF(!path || !out, CLLM_ERR_ARG, "container open: NULL argument");
    *out = NULL;
    void *map = NULL;
    size_t size = 0;
    TRY(map_file(path, &map, &size));
    cllm_container *c = NULL;
    cllm_status st = container_new(path, &c);
    if (st != CLLM_OK) {
        munmap(map, size);
        return st;
    }
    c->map = map;
    c->map_size = size;
    c->base = map;
    c->size = size;
    st = parse_container(c, 0);
    if (st != CLLM_OK) {
        st = cllm_error_context(st, "%s", path);
        cllm_container_free(c);
        return st;
    }
    *out = c;
    return CLLM_OK;
}

void cllm_container_free(cllm_container *c) {
    if (!c) return;
    if (c->map) munmap(c->map, c->map_size);
    free(c->entries);
    free(c->by_name);
    free(c->label);
    free(c);
}

// ---- accessors ----------------------------------------------------------------------------------

const cllm_model_config *cllm_container_config(const cllm_container *c) {
    return c ? &c->cfg : NULL;
}

size_t cllm_container_n_tensors(const cllm_container *c) { return c ? c->n_tensors : 0; }

cllm_status cllm_container_tensor(const cllm_container *c, size_t i, cllm_tensor_info *info) {
    RETURN_IF(!c || !info, CLLM_ERR_ARG, "container tensor: NULL argument");
    RETURN_IF(i >= c->n_tensors, CLLM_ERR_ARG, "%s: tensor index %zu out of range (%u tensors)",
              c->label, i, c->n_tensors);
    *info = c->entries[i].info;
    return CLLM_OK;
}

int64_t cllm_container_find(const cllm_container *c, const char *name) {
    if (!c || !name) return -1;
    size_t lo = 0, hi = c->n_tensors;  // binary search over by_name: [lo, hi) may hold it
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t idx = c->by_name[mid];
        int cmp = strcmp(name, c->entries[idx].name);
        if (cmp == 0) return (int64_t)idx;
        if (cmp < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

const uint8_t *cllm_container_payload(const cllm_container *c, size_t i) {
    if (!c || i >= c->n_tensors) return NULL;
    return c->base + c->entries[i].info.data_offset;
}

const cllm_coded_desc *cllm_container_desc(const cllm_container *c, size_t i) {
    if (!c || i >= c->n_tensors) return NULL;
    return &c->entries[i].desc;
}

const char *cllm_container_label(const cllm_container *c) { return c ? c->label : ""; }

void cllm_container_drop_pages(const cllm_container *c, size_t i) {
    if (!c || !c->map || i >= c->n_tensors) return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    // Whole pages inside the payload only: a neighbour's bytes stay mapped.
    uint64_t begin = cllm_align_up(c->entries[i].info.data_offset, (uint64_t)page);
    uint64_t end = (c->entries[i].info.data_offset + c->entries[i].info.data_size) /
                   (uint64_t)page * (uint64_t)page;
    // The mapping is private and read-only: dropping loses nothing.
    if (end > begin) (void)madvise((uint8_t *)c->map + begin, (size_t)(end - begin), MADV_DONTNEED);
}

cllm_tokenizer_kind cllm_container_tokenizer(const cllm_container *c, const uint8_t **data,
                                              size_t *size) {
    const uint8_t *d = NULL;
    size_t n = 0;
    cllm_tokenizer_kind kind = CLLM_TOKENIZER_NONE;
    if (c && c->tok_kind != CLLM_TOKENIZER_NONE) {
        d = c->base + c->tok_offset;
        n = (size_t)c->tok_size;
        kind = (cllm_tokenizer_kind)c->tok_kind;
    }
    if (data) *data = d;
    if (size) *size = n;
    return kind;
}

uint64_t cllm_container_file_size(const cllm_container *c) { return c ? c->size : 0; }

int cllm_container_is_archive(const cllm_container *c) {
    return c && c->cfg.arch == CLLM_ARCH_ARCHIVE;
}

cllm_status cllm_container_decode(const cllm_container *c, size_t i, void *out, size_t out_cap,
                                  float *scales, size_t scales_cap, int check_sum) {
    RETURN_IF(!c, CLLM_ERR_ARG, "container decode: NULL container");
    RETURN_IF(i >= c->n_tensors, CLLM_ERR_ARG, "%s: tensor index %zu out of range (%u tensors)",
              c->label, i, c->n_tensors);
    const cllm_entry *e = &c->entries[i];
    const uint8_t *payload = c->base + e->info.data_offset;
    if (check_sum) {
        uint64_t computed = XXH3_64bits(payload, (size_t)e->info.data_size);
        RETURN_IF(computed != e->info.checksum, CLLM_ERR_CORRUPT,
                  "%s: tensor '%s': payload checksum mismatch (stored 0x%016llx, computed "
                  "0x%016llx)", c->label, e->name, (ull)e->info.checksum, (ull)computed);
    }
    cllm_status st = cllm_decode_tensor(&e->info, payload, e->info.data_size, out, out_cap, scales,
                                        scales_cap, 0);
    if (st != CLLM_OK) return cllm_error_context(st, "%s: tensor '%s'", c->label, e->name);
    return CLLM_OK;
}
