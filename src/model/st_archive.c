// Packed safetensors archives: the segment plan shared by pack and unpack, the output checks, and
// the archive view (cllm_archive_*): the stored header parsed and checked against the container's
// tensors. docs/FORMAT.md ("Packed safetensors") is the specification.
#include "st_archive.h"

#include "../format/cllm_format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long ull;

_Static_assert(CLLM_ARCHIVE_MAX_DIMS == CLLM_ST_MAX_DIMS, "archive shape holds any st shape");

// ---- segments -----------------------------------------------------------------------------------

cllm_status cllm_st_segments(const cllm_st_header *h, cllm_st_segment **out, size_t *n) {
    *out = NULL;
    *n = 0;
    // At most one gap before each tensor plus one after the last.
    size_t cap = 2 * h->n_tensors + 1;
    cllm_st_segment *s = malloc(cap * sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "cannot allocate %zu segments", cap);
    size_t k = 0;
    uint64_t pos = 0;  // end of the last segment; tensors are sorted and disjoint
    for (size_t i = 0; i < h->n_tensors; i++) {
        const cllm_st_tensor *t = &h->tensors[i];
        if (t->end == t->begin) continue;  // no bytes: described by the header alone
        if (t->begin > pos) s[k++] = (cllm_st_segment){NULL, pos, t->begin};
        s[k++] = (cllm_st_segment){t, t->begin, t->end};
        pos = t->end;
    }
    if (h->data_size > pos) s[k++] = (cllm_st_segment){NULL, pos, h->data_size};
    *out = s;
    *n = k;
    if (k == 0) {
        free(s);
        *out = NULL;
    }
    return CLLM_OK;
}

void cllm_st_segment_plan(const cllm_st_segment *s, size_t k, cllm_st_entry_plan *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "seg.%zu", k);
    const cllm_st_tensor *t = s->tensor;
    if (!t || !t->supported) {
        out->dtype = CLLM_DTYPE_U8;
        out->ndim = 1;
        out->shape[0] = s->end - s->begin;
    } else {
        out->dtype = t->dtype;
        out->coded_ok = 1;
        if (t->ndim == 0) {
            out->ndim = 1;
            out->shape[0] = 1;
        } else if (t->ndim <= 4) {
            out->ndim = t->ndim;
            memcpy(out->shape, t->shape, t->ndim * sizeof t->shape[0]);
        } else {
            // The product of all dimensions fits (the parser checked); so does any part of it.
            out->ndim = 2;
            out->shape[0] = t->n_elements / t->shape[t->ndim - 1];
            out->shape[1] = t->shape[t->ndim - 1];
        }
    }
    out->cols = out->shape[out->ndim - 1];
    out->rows = 1;
    for (uint32_t d = 0; d + 1 < out->ndim; d++) out->rows *= out->shape[d];
}

cllm_status cllm_st_check_output(const struct stat *in_st, const char *out_path, int force) {
    struct stat os;
    if (stat(out_path, &os) != 0) {
        RETURN_IF(errno != ENOENT, CLLM_ERR_IO, "%s: cannot stat: %s", out_path, strerror(errno));
        return CLLM_OK;  // a dangling symlink is replaced by the rename, not followed
    }
    RETURN_IF(os.st_dev == in_st->st_dev && os.st_ino == in_st->st_ino, CLLM_ERR_ARG,
              "output %s is the input file", out_path);
    TRY(cllm_output_check(out_path));  // a directory, FIFO or device is never replaced
    RETURN_IF(!force, CLLM_ERR_ARG, "output %s exists (--force replaces it)", out_path);
    return CLLM_OK;
}

// ---- the archive view ---------------------------------------------------------------------------

struct cllm_archive {
    const cllm_container *c;
    cllm_st_header h;
    cllm_st_segment *segs;   // one per container tensor, in order
    size_t n_segs;
    cllm_archive_summary sum;
};

// Original file size: the header blob plus every tensor's decoded bytes.
static cllm_status archive_file_size(const cllm_container *c, uint64_t blob, uint64_t *size) {
    *size = blob;
    for (size_t i = 0; i < cllm_container_n_tensors(c); i++) {
        cllm_tensor_info t;
        TRY(cllm_container_tensor(c, i, &t));
        uint64_t bytes;
        RETURN_IF(cllm_mul_overflow_u64(t.n_elements, cllm_dtype_size(t.dtype), &bytes) ||
                      cllm_add_overflow_u64(*size, bytes, size),
                  CLLM_ERR_CORRUPT, "tensor %zu: the restored file size overflows", i);
    }
    return CLLM_OK;
}

// Container tensor i must be exactly what the plan of segment i says.
static cllm_status check_entry(const cllm_container *c, size_t i, const cllm_st_segment *s) {
    cllm_st_entry_plan p;
    cllm_st_segment_plan(s, i, &p);
    cllm_tensor_info t;
    TRY(cllm_container_tensor(c, i, &t));
    const char *what = s->tensor ? s->tensor->name : "(gap)";
    RETURN_IF(strcmp(t.name, p.name) != 0, CLLM_ERR_CORRUPT,
              "tensor %zu is named '%s', expected '%s'", i, t.name, p.name);
    RETURN_IF(t.dtype != p.dtype, CLLM_ERR_CORRUPT, "tensor %zu (%s): dtype %s, expected %s", i,
              what, cllm_dtype_name(t.dtype), cllm_dtype_name(p.dtype));
    RETURN_IF(t.codec != CLLM_CODEC_RAW && !(p.coded_ok && t.codec == CLLM_CODEC_LOSSLESS),
              CLLM_ERR_CORRUPT, "tensor %zu (%s): codec %s is not allowed here", i, what,
              cllm_codec_name(t.codec));
    int same = t.ndim == p.ndim;
    for (uint32_t d = 0; same && d < p.ndim; d++) same = t.shape[d] == p.shape[d];
    RETURN_IF(!same, CLLM_ERR_CORRUPT,
              "tensor %zu (%s): shape disagrees with the stored header (%u dims, first %llu; "
              "expected %u dims, first %llu)", i, what, t.ndim, (ull)t.shape[0], p.ndim,
              (ull)p.shape[0]);
    return CLLM_OK;
}

static cllm_status archive_check(cllm_archive *a) {
    const uint8_t *blob = NULL;
    size_t blob_size = 0;
    cllm_tokenizer_kind kind = cllm_container_tokenizer(a->c, &blob, &blob_size);
    RETURN_IF(kind != CLLM_TOKENIZER_SAFETENSORS_HEADER || blob_size < 8, CLLM_ERR_CORRUPT,
              "archive without a safetensors header blob");
    uint64_t n = cllm_load_le64(blob);
    RETURN_IF(n != blob_size - 8, CLLM_ERR_CORRUPT,
              "stored safetensors header: length field %llu, but the blob holds %zu bytes after it",
              (ull)n, blob_size - 8);
    uint64_t file_size;
    TRY(archive_file_size(a->c, blob_size, &file_size));
    cllm_status st = cllm_st_parse(blob, blob_size, file_size, &a->h);
    if (st != CLLM_OK) return cllm_error_context(st, "stored safetensors header");
    TRY(cllm_st_segments(&a->h, &a->segs, &a->n_segs));
    size_t nt = cllm_container_n_tensors(a->c);
    RETURN_IF(a->n_segs != nt, CLLM_ERR_CORRUPT,
              "the stored header describes %zu stored tensors and gaps, the archive holds %zu",
              a->n_segs, nt);
    for (size_t i = 0; i < nt; i++) {
        TRY(check_entry(a->c, i, &a->segs[i]));
        a->sum.n_gaps += a->segs[i].tensor == NULL;
    }
    a->sum.file_size = file_size;
    a->sum.header_size = blob_size;
    a->sum.n_st_tensors = a->h.n_tensors;
    for (size_t i = 0; i < a->h.n_tensors; i++)
        a->sum.n_empty += a->h.tensors[i].begin == a->h.tensors[i].end;
    return CLLM_OK;
}

cllm_status cllm_archive_open(const cllm_container *c, cllm_archive **out) {
    RETURN_IF(!c || !out, CLLM_ERR_ARG, "archive open: NULL argument");
    *out = NULL;
    RETURN_IF(!cllm_container_is_archive(c), CLLM_ERR_FORMAT,
              "%s is a model, not a packed safetensors archive", cllm_container_label(c));
    cllm_archive *a = calloc(1, sizeof *a);
    RETURN_IF(!a, CLLM_ERR_NOMEM, "cannot allocate an archive");
    a->c = c;
    cllm_status st = archive_check(a);
    if (st != CLLM_OK) {
        cllm_archive_free(a);
        return cllm_error_context(st, "%s", cllm_container_label(c));
    }
    *out = a;
    return CLLM_OK;
}

void cllm_archive_free(cllm_archive *a) {
    if (!a) return;
    free(a->segs);
    cllm_st_header_free(&a->h);
    free(a);
}

void cllm_archive_summary_get(const cllm_archive *a, cllm_archive_summary *out) {
    if (!out) return;
    if (!a) memset(out, 0, sizeof *out);
    else *out = a->sum;
}

cllm_status cllm_archive_segment_get(const cllm_archive *a, size_t i, cllm_archive_segment *out) {
    RETURN_IF(!a || !out, CLLM_ERR_ARG, "archive segment: NULL argument");
    RETURN_IF(i >= a->n_segs, CLLM_ERR_ARG, "archive segment %zu out of range (%zu)", i,
              a->n_segs);
    const cllm_st_segment *s = &a->segs[i];
    memset(out, 0, sizeof *out);
    out->begin = s->begin;
    out->end = s->end;
    out->dtype = "";
    if (s->tensor) {
        out->name = s->tensor->name;
        out->dtype = s->tensor->dtype_name;
        out->ndim = s->tensor->ndim;
        memcpy(out->shape, s->tensor->shape, sizeof out->shape);
    }
    return CLLM_OK;
}
