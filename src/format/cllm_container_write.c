// .cllm writer: streams each tensor's payload to "<path>.tmp-XXXXXX" (created exclusively) as it
// is added, keeps the
// config and table in memory (128 + n_tensors * 256 bytes), and writes them with the header at
// finish, then fsyncs and renames. Until the rename, `path` is untouched: an interrupted convert
// never leaves a file that looks finished. Layout: docs/FORMAT.md, cllm_file_layout.h.
#include "cllm_file_layout.h"
#include "cllm_format.h"

#include "../codec/cllm_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

struct cllm_writer {
    char *path, *tmp_path;
    int fd;
    int failed;              // an add failed: only abort is possible
    int created;             // tmp_path exists and is ours to remove
    size_t n_tensors, n_added;
    uint8_t *meta;           // file bytes [128, table_end): config section, then the table
    size_t meta_size;
    uint64_t cursor;         // end of the last section written
    uint32_t *name_slots;    // open-addressing set of added names: entry index + 1, 0 = empty
    size_t name_cap;         // power of two >= 2 * n_tensors
    uint32_t tok_kind;
    uint64_t tok_offset, tok_size, tok_xxh3;
};

static cllm_status write_all(cllm_writer *w, const void *buf, size_t n, uint64_t off) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = pwrite(w->fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        RETURN_IF(k <= 0, CLLM_ERR_IO, "%s: write of %zu bytes at offset %llu failed: %s",
                  w->tmp_path, n, (unsigned long long)off, k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return CLLM_OK;
}

static uint8_t *entry_at(cllm_writer *w, size_t i) {
    return w->meta + CLLM_CONFIG_SIZE + i * CLLM_ENTRY_SIZE;
}

// ---- open ---------------------------------------------------------------------------------------

static cllm_status check_open_args(const char *path, const cllm_model_config *cfg, size_t n,
                                   cllm_tokenizer_kind kind, const uint8_t *tok, size_t tok_size) {
    RETURN_IF(!path || !*path || !cfg, CLLM_ERR_ARG, "writer: NULL path or config");
    RETURN_IF(n > UINT32_MAX, CLLM_ERR_ARG, "writer: %zu tensors, the format holds at most %u", n,
              UINT32_MAX);
    if (kind == CLLM_TOKENIZER_NONE) {
        RETURN_IF(tok_size != 0, CLLM_ERR_ARG, "writer: tokenizer kind none but %zu bytes given",
                  tok_size);
    } else {
        RETURN_IF(kind != CLLM_TOKENIZER_LLAMA2C && kind != CLLM_TOKENIZER_HF_JSON &&
                      kind != CLLM_TOKENIZER_SAFETENSORS_HEADER &&
                      kind != CLLM_TOKENIZER_BUNDLE,
                  CLLM_ERR_ARG, "writer: unknown tokenizer kind %d", (int)kind);
        RETURN_IF(!tok || tok_size == 0, CLLM_ERR_ARG, "writer: empty tokenizer blob");
    }
    RETURN_IF((cfg->arch == CLLM_ARCH_ARCHIVE) != (kind == CLLM_TOKENIZER_SAFETENSORS_HEADER),
              CLLM_ERR_ARG, "writer: an archive needs the safetensors header blob (kind %d), and "
              "only an archive may have it", CLLM_TOKENIZER_SAFETENSORS_HEADER);
    return cllm_config_validate(cfg);
}

static cllm_status writer_alloc(cllm_writer *w, const char *path, size_t n) {
    size_t table, cap = 16;
    RETURN_IF(cllm_mul_overflow(n, CLLM_ENTRY_SIZE, &table) ||
                  cllm_add_overflow(table, CLLM_CONFIG_SIZE, &w->meta_size),
              CLLM_ERR_ARG, "writer: table of %zu tensors overflows", n);
    while (cap < 2 * n) cap *= 2;  // n <= 2^32, so this ends
    w->name_cap = cap;
    w->path = strdup(path);
    w->meta = calloc(1, w->meta_size);
    w->name_slots = calloc(cap, sizeof *w->name_slots);
    RETURN_IF(!w->path || !w->meta || !w->name_slots, CLLM_ERR_NOMEM,
              "writer: cannot allocate a table of %zu tensors", n);
    return CLLM_OK;
}

// The tokenizer is the first section after the table.
static cllm_status write_tokenizer(cllm_writer *w, cllm_tokenizer_kind kind, const uint8_t *tok,
                                   size_t tok_size) {
    w->cursor = CLLM_CONFIG_OFFSET + w->meta_size;
    w->tok_kind = (uint32_t)kind;
    if (kind == CLLM_TOKENIZER_NONE) return CLLM_OK;
    w->tok_offset = cllm_align_up(w->cursor, CLLM_SECTION_ALIGN);
    w->tok_size = tok_size;
    w->tok_xxh3 = XXH3_64bits(tok, tok_size);
    TRY(write_all(w, tok, tok_size, w->tok_offset));
    w->cursor = w->tok_offset + tok_size;
    return CLLM_OK;
}

cllm_status cllm_writer_open(const char *path, const cllm_model_config *cfg, size_t n_tensors,
                             cllm_tokenizer_kind tok_kind, const uint8_t *tok, size_t tok_size,
                             cllm_writer **out) {
    return cllm_writer_open_ex(path, cfg, n_tensors, tok_kind, tok, tok_size, NULL, NULL, out);
}

cllm_status cllm_writer_open_ex(const char *path, const cllm_model_config *cfg, size_t n_tensors,
                                cllm_tokenizer_kind tok_kind, const uint8_t *tok, size_t tok_size,
                                cllm_temp_fn temp, void *temp_user, cllm_writer **out) {
    RETURN_IF(!out, CLLM_ERR_ARG, "writer: NULL out");
    *out = NULL;
    TRY(check_open_args(path, cfg, n_tensors, tok_kind, tok, tok_size));
    cllm_writer *w = calloc(1, sizeof *w);
    RETURN_IF(!w, CLLM_ERR_NOMEM, "writer: cannot allocate");
    w->fd = -1;
    w->n_tensors = n_tensors;
    cllm_status st = writer_alloc(w, path, n_tensors);
    if (st == CLLM_OK) {
        cllm_config_pack(cfg, w->meta);
        st = cllm_output_check(path);
    }
    if (st == CLLM_OK) {
        st = cllm_temp_create(path, temp, temp_user, &w->tmp_path, &w->fd);
        w->created = st == CLLM_OK;
    }
    if (st == CLLM_OK) st = write_tokenizer(w, tok_kind, tok, tok_size);
    if (st != CLLM_OK) {
        if (w->created && temp) temp(temp_user, w->tmp_path, 0);  // removed by the abort
        cllm_writer_abort(w);
        return st;
    }
    *out = w;
    return CLLM_OK;
}

// ---- add ----------------------------------------------------------------------------------------

static cllm_status check_name(const char *name) {
    size_t len = strnlen(name, CLLM_NAME_CAP);
    RETURN_IF(len == 0 || len >= CLLM_NAME_CAP, CLLM_ERR_ARG,
              "writer: tensor name must have 1..%u characters", CLLM_NAME_CAP - 1);
    for (size_t i = 0; i < len; i++)
        RETURN_IF(!cllm_name_char_ok((uint8_t)name[i]), CLLM_ERR_ARG,
                  "writer: tensor name '%s': character %zu is not printable ASCII (or is a space)",
                  name, i);
    return CLLM_OK;
}

// Inserts the name of entry `index` (already in the table) into the set; ARG when taken.
static cllm_status insert_name(cllm_writer *w, size_t index) {
    const char *name = (const char *)entry_at(w, index);
    size_t mask = w->name_cap - 1;
    for (size_t h = (size_t)XXH3_64bits(name, strlen(name)) & mask;; h = (h + 1) & mask) {
        uint32_t slot = w->name_slots[h];
        if (slot == 0) {
            w->name_slots[h] = (uint32_t)index + 1;
            return CLLM_OK;
        }
        RETURN_IF(strcmp((const char *)entry_at(w, slot - 1), name) == 0, CLLM_ERR_ARG,
                  "writer: tensor name '%s' used twice (tensors %u and %zu)", name, slot - 1,
                  index);
    }
}

// ndim 1..4, dims >= 1, and the 2-D view (rows = all but the last, cols = the last) must be the
// coded tensor's.
static cllm_status check_shape(uint32_t ndim, const uint64_t shape[4], const cllm_tensor_info *in) {
    RETURN_IF(ndim < 1 || ndim > 4, CLLM_ERR_ARG, "ndim %u outside 1..4", ndim);
    uint64_t rows = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        RETURN_IF(shape[d] < 1, CLLM_ERR_ARG, "shape[%u] is 0", d);
        if (d + 1 < ndim)
            RETURN_IF(cllm_mul_overflow_u64(rows, shape[d], &rows), CLLM_ERR_ARG,
                      "shape product overflows");
    }
    RETURN_IF(rows != in->rows || shape[ndim - 1] != in->cols, CLLM_ERR_ARG,
              "shape gives a (%llu, %llu) view but the coded tensor is (%llu, %llu)",
              (unsigned long long)rows, (unsigned long long)shape[ndim - 1],
              (unsigned long long)in->rows, (unsigned long long)in->cols);
    return CLLM_OK;
}

static void pack_entry(uint8_t *p, const char *name, uint32_t ndim, const uint64_t shape[4],
                       const cllm_coded_desc *d, const cllm_coded *coded, uint64_t offset) {
    memset(p, 0, CLLM_ENTRY_SIZE);
    memcpy(p + CLLM_ENT_NAME, name, strlen(name));
    cllm_store_le32(p + CLLM_ENT_DTYPE, d->dtype);
    cllm_store_le32(p + CLLM_ENT_CODEC, d->codec);
    cllm_store_le32(p + CLLM_ENT_NDIM, ndim);
    cllm_store_le32(p + CLLM_ENT_SCALE_BITS, d->scale_bits);
    for (uint32_t k = 0; k < ndim; k++) cllm_store_le64(p + CLLM_ENT_SHAPE + 8 * k, shape[k]);
    cllm_store_le64(p + CLLM_ENT_DATA_OFFSET, offset);
    cllm_store_le64(p + CLLM_ENT_DATA_SIZE, coded->payload_size);
    cllm_store_le64(p + CLLM_ENT_DATA_XXH3, XXH3_64bits(coded->payload, coded->payload_size));
    cllm_store_le32(p + CLLM_ENT_ROWS_PER_BLOCK, d->rows_per_block);
    cllm_store_le32(p + CLLM_ENT_GROUP_SIZE, d->group_size);
    cllm_store_le32(p + CLLM_ENT_PREDICTOR, d->predictor);
    cllm_store_le64(p + CLLM_ENT_N_BLOCKS, d->n_blocks);
    cllm_store_le64(p + CLLM_ENT_STREAM_BYTES, d->stream_bytes);
    uint64_t hbits;
    memcpy(&hbits, &coded->info.symbol_entropy, 8);
    cllm_store_le64(p + CLLM_ENT_ENTROPY, hbits);
}

static cllm_status add_tensor(cllm_writer *w, const char *name, uint32_t ndim,
                              const uint64_t shape[4], const cllm_coded *coded) {
    TRY(check_name(name));
    TRY(check_shape(ndim, shape, &coded->info));
    double h = coded->info.symbol_entropy;
    RETURN_IF(!(h >= 0.0 && h <= 8.0), CLLM_ERR_ARG, "symbol_entropy %g outside [0, 8]", h);
    cllm_coded_desc d;
    TRY(cllm_desc_from_payload(&coded->info, coded->payload, coded->payload_size, &d));
    TRY(cllm_payload_check(&d, coded->payload, coded->payload_size));
    uint64_t offset = cllm_align_up(w->cursor, CLLM_SECTION_ALIGN), end;
    RETURN_IF(cllm_add_overflow_u64(offset, coded->payload_size, &end) ||
                  end > UINT64_MAX - CLLM_SECTION_ALIGN,
              CLLM_ERR_ARG, "file size overflows");
    pack_entry(entry_at(w, w->n_added), name, ndim, shape, &d, coded, offset);
    TRY(insert_name(w, w->n_added));
    TRY(write_all(w, coded->payload, coded->payload_size, offset));
    w->cursor = end;
    w->n_added++;
    return CLLM_OK;
}

cllm_status cllm_writer_add(cllm_writer *w, const char *name, uint32_t ndim,
                            const uint64_t shape[4], const cllm_coded *coded) {
    RETURN_IF(!w || !name || !shape || !coded || (!coded->payload && coded->payload_size),
              CLLM_ERR_ARG, "writer add: NULL argument");
    RETURN_IF(w->failed, CLLM_ERR_ARG, "writer add: an earlier add failed");
    RETURN_IF(w->n_added >= w->n_tensors, CLLM_ERR_ARG,
              "writer add: tensor '%s' is one more than the %zu announced", name, w->n_tensors);
    cllm_status st = add_tensor(w, name, ndim, shape, coded);
    if (st != CLLM_OK) {
        w->failed = 1;
        return cllm_error_context(st, "%s: tensor '%s'", w->path, name);
    }
    return CLLM_OK;
}

// ---- finish -------------------------------------------------------------------------------------

static void pack_header(const cllm_writer *w, uint64_t file_size, uint8_t h[CLLM_HEADER_SIZE]) {
    memset(h, 0, CLLM_HEADER_SIZE);
    memcpy(h + CLLM_HDR_MAGIC, CLLM_FILE_MAGIC, CLLM_FILE_MAGIC_SIZE);
    cllm_store_le32(h + CLLM_HDR_VERSION, CLLM_FILE_VERSION);
    cllm_store_le32(h + CLLM_HDR_HEADER_SIZE, CLLM_HEADER_SIZE);
    cllm_store_le64(h + CLLM_HDR_FILE_SIZE, file_size);
    cllm_store_le32(h + CLLM_HDR_N_TENSORS, (uint32_t)w->n_tensors);
    cllm_store_le32(h + CLLM_HDR_ENTRY_SIZE, CLLM_ENTRY_SIZE);
    cllm_store_le64(h + CLLM_HDR_CONFIG_OFFSET, CLLM_CONFIG_OFFSET);
    cllm_store_le64(h + CLLM_HDR_CONFIG_SIZE, CLLM_CONFIG_SIZE);
    cllm_store_le64(h + CLLM_HDR_TABLE_OFFSET, CLLM_TABLE_OFFSET);
    cllm_store_le64(h + CLLM_HDR_TABLE_SIZE, (uint64_t)w->n_tensors * CLLM_ENTRY_SIZE);
    cllm_store_le64(h + CLLM_HDR_TOK_OFFSET, w->tok_offset);
    cllm_store_le64(h + CLLM_HDR_TOK_SIZE, w->tok_size);
    cllm_store_le32(h + CLLM_HDR_TOK_KIND, w->tok_kind);
    cllm_store_le64(h + CLLM_HDR_TOK_XXH3, w->tok_xxh3);
    cllm_store_le64(h + CLLM_HDR_META_XXH3, XXH3_64bits(w->meta, w->meta_size));
    cllm_store_le64(h + CLLM_HDR_XXH3, XXH3_64bits(h, CLLM_HDR_XXH3));
}

// Makes the rename itself durable: fsync the directory holding `path`.
static cllm_status sync_parent_dir(const char *path) {
    char *dir = strdup(path);
    RETURN_IF(!dir, CLLM_ERR_NOMEM, "cannot allocate a path");
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cllm_status st = CLLM_OK;
    if (fd < 0 || fsync(fd) != 0)
        st = CLLM_FAIL(CLLM_ERR_IO, "cannot sync directory of %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

static cllm_status finish_file(cllm_writer *w) {
    RETURN_IF(w->failed, CLLM_ERR_ARG, "writer finish: an earlier add failed");
    RETURN_IF(w->n_added != w->n_tensors, CLLM_ERR_ARG,
              "writer finish: %zu of the %zu announced tensors were added", w->n_added,
              w->n_tensors);
    uint64_t file_size = cllm_align_up(w->cursor, CLLM_SECTION_ALIGN);
    uint8_t header[CLLM_HEADER_SIZE];
    pack_header(w, file_size, header);
    TRY(write_all(w, w->meta, w->meta_size, CLLM_CONFIG_OFFSET));
    TRY(write_all(w, header, sizeof header, 0));
    // The gaps were never written: extending the file leaves them (and the tail) reading as zero.
    RETURN_IF(ftruncate(w->fd, (off_t)file_size) != 0, CLLM_ERR_IO, "%s: cannot size to %llu: %s",
              w->tmp_path, (unsigned long long)file_size, strerror(errno));
    RETURN_IF(fsync(w->fd) != 0, CLLM_ERR_IO, "%s: fsync failed: %s", w->tmp_path,
              strerror(errno));
    int fd = w->fd;
    w->fd = -1;
    RETURN_IF(close(fd) != 0, CLLM_ERR_IO, "%s: close failed: %s", w->tmp_path, strerror(errno));
    TRY(cllm_output_check(w->path));  // again: something may have appeared there meanwhile
    RETURN_IF(rename(w->tmp_path, w->path) != 0, CLLM_ERR_IO, "cannot rename %s to %s: %s",
              w->tmp_path, w->path, strerror(errno));
    w->created = 0;
    return sync_parent_dir(w->path);
}

static void writer_free(cllm_writer *w) {
    if (w->fd >= 0) close(w->fd);
    free(w->path);
    free(w->tmp_path);
    free(w->meta);
    free(w->name_slots);
    free(w);
}

cllm_status cllm_writer_finish(cllm_writer *w) {
    RETURN_IF(!w, CLLM_ERR_ARG, "writer finish: NULL writer");
    cllm_status st = finish_file(w);
    if (st != CLLM_OK) {
        // After the rename only the directory sync can fail: then the finished file stays and
        // the temporary name no longer exists.
        if (w->created) unlink(w->tmp_path);
        writer_free(w);
        return st;
    }
    writer_free(w);
    return CLLM_OK;
}

void cllm_writer_abort(cllm_writer *w) {
    if (!w) return;
    if (w->created) unlink(w->tmp_path);
    writer_free(w);
}

const char *cllm_writer_temp_path(const cllm_writer *w) {
    return w && w->tmp_path ? w->tmp_path : "";
}
