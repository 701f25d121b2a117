// `verify`: every checksum and padding byte of a .cllm file and, against the source model, every
// tensor decoded and compared: bit-exact for raw and lossless, exact re-quantisation for int8.
#include "../format/cllm_format.h"
#include "../common/cllm_half.h"
#include "cllm_model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct verify_ctx {
    cllm_report_fn report;
    void *user;
    cllm_verify_result *res;
    // Reused buffers, grown to the largest tensor.
    uint8_t *src, *dec, *q;
    float *scales_dec, *scales_ref;
    size_t src_cap, dec_cap, q_cap, sc_cap, ref_cap;
} verify_ctx;

static cllm_status grow(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return CLLM_OK;
    free(*buf);
    *buf = malloc(need ? need : 1);
    *cap = *buf ? need : 0;
    RETURN_IF(!*buf, CLLM_ERR_NOMEM, "cannot allocate %zu bytes", need);
    return CLLM_OK;
}

static float source_value(const uint8_t *src, cllm_dtype dt, size_t i) {
    if (dt == CLLM_DTYPE_F32) {
        float f;
        memcpy(&f, src + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, src + 2 * i, 2);
    return dt == CLLM_DTYPE_BF16 ? cllm_bf16_to_f32(h) : cllm_f16_to_f32(h);
}

// Int8: the decoded integers and scales must equal a fresh quantisation of the source; also
// records the largest |q * scale - w|.
static int compare_int8(verify_ctx *v, const cllm_tensor_info *ti, size_t n) {
    uint64_t groups = (ti->cols + ti->group_size - 1) / ti->group_size;
    size_t n_scales = (size_t)(ti->rows * groups);
    if (cllm_quantize_int8(v->src, ti->dtype, ti->rows, ti->cols, ti->group_size, (int8_t *)v->q,
                           v->scales_ref) != CLLM_OK) {
        cllm_logf(v->report, v->user, "tensor '%s': cannot re-quantise the source: %s", ti->name,
                  cllm_last_error());
        return 0;
    }
    int ok = memcmp(v->q, v->dec, n) == 0 &&
             memcmp(v->scales_ref, v->scales_dec, n_scales * sizeof(float)) == 0;
    double max_err = 0;
    for (size_t i = 0; i < n; i++) {
        float s = v->scales_dec[(i / ti->cols) * groups + (i % ti->cols) / ti->group_size];
        double err = fabs((double)((int8_t)v->dec[i]) * s - source_value(v->src, ti->dtype, i));
        if (err > max_err) max_err = err;
    }
    if (max_err > v->res->max_abs_err) v->res->max_abs_err = max_err;
    if (!ok)
        cllm_logf(v->report, v->user,
                  "tensor '%s': int8 values or scales differ from re-quantising the source",
                  ti->name);
    else
        cllm_logf(v->report, v->user, "tensor '%s': int8 re-quantisation exact, max |error| %.3g",
                  ti->name, max_err);
    return ok;
}

static cllm_status check_tensor(verify_ctx *v, const cllm_container *c, size_t i,
                                cllm_source *src, int *ok) {
    cllm_tensor_info ti;
    TRY(cllm_container_tensor(c, i, &ti));
    *ok = 0;
    size_t idx = cllm_source_n_tensors(src);
    for (size_t j = 0; j < cllm_source_n_tensors(src); j++) {
        cllm_source_tensor st;
        TRY(cllm_source_tensor_info(src, j, &st));
        if (!strcmp(st.name, ti.name)) {
            idx = j;
            if (st.dtype != ti.dtype) {
                cllm_logf(v->report, v->user, "tensor '%s': dtype %s, source has %s", ti.name,
                          cllm_dtype_name(ti.dtype), cllm_dtype_name(st.dtype));
                return CLLM_OK;
            }
        }
    }
    if (idx == cllm_source_n_tensors(src)) {
        cllm_logf(v->report, v->user, "tensor '%s' is not in the source", ti.name);
        return CLLM_OK;
    }
    size_t n = (size_t)ti.n_elements, bytes = n * cllm_dtype_size(ti.dtype);
    uint64_t groups =
        ti.codec == CLLM_CODEC_INT8 ? (ti.cols + ti.group_size - 1) / ti.group_size : 0;
    size_t sc_bytes = (size_t)(ti.rows * groups) * sizeof(float);
    TRY(grow((void **)&v->src, &v->src_cap, bytes));
    TRY(grow((void **)&v->dec, &v->dec_cap, bytes));
    TRY(grow((void **)&v->q, &v->q_cap, n));
    TRY(grow((void **)&v->scales_dec, &v->sc_cap, sc_bytes));
    TRY(grow((void **)&v->scales_ref, &v->ref_cap, sc_bytes));
    TRY(cllm_source_read(src, idx, v->src, bytes));
    cllm_status st = cllm_container_decode(c, i, v->dec, v->dec_cap, v->scales_dec, v->sc_cap, 0);
    if (st != CLLM_OK) {
        cllm_logf(v->report, v->user, "tensor '%s': decode failed: %s", ti.name, cllm_last_error());
        return CLLM_OK;
    }
    if (ti.codec == CLLM_CODEC_INT8) {
        v->res->n_int8++;
        *ok = compare_int8(v, &ti, n);
    } else {
        *ok = memcmp(v->src, v->dec, bytes) == 0;
        if (!*ok)
            cllm_logf(v->report, v->user, "tensor '%s': decoded bytes differ from the source",
                      ti.name);
    }
    return CLLM_OK;
}

static cllm_status verify_against(verify_ctx *v, const cllm_container *c, const char *against) {
    cllm_source *src;
    TRY(cllm_source_open(against, NULL, &src));
    cllm_status st = CLLM_OK;
    size_t n = cllm_container_n_tensors(c);
    if (cllm_source_n_tensors(src) != n) {
        cllm_logf(v->report, v->user, "the container has %zu tensors, the source %zu", n,
                  cllm_source_n_tensors(src));
        v->res->n_failed++;
    }
    if (memcmp(cllm_source_config(src), cllm_container_config(c), sizeof(cllm_model_config))) {
        cllm_logf(v->report, v->user, "the container's model config differs from the source's");
        v->res->n_failed++;
    }
    for (size_t i = 0; st == CLLM_OK && i < n; i++) {
        int ok = 0;
        st = check_tensor(v, c, i, src, &ok);
        if (!ok) v->res->n_failed++;
    }
    cllm_source_free(src);
    return st;
}

// ---- packed safetensors archives ----------------------------------------------------------------

// Segment i decoded and compared with the same bytes of the original file.
static cllm_status compare_segment(verify_ctx *v, const cllm_container *c, size_t i, int fd,
                                   uint64_t at, const char *against, int *ok) {
    cllm_tensor_info ti;
    TRY(cllm_container_tensor(c, i, &ti));
    size_t bytes = (size_t)(ti.n_elements * cllm_dtype_size(ti.dtype));  // archive-checked
    TRY(grow((void **)&v->src, &v->src_cap, bytes));
    TRY(grow((void **)&v->dec, &v->dec_cap, bytes));
    TRY(cllm_pread_full(fd, v->src, bytes, at, against));
    *ok = cllm_container_decode(c, i, v->dec, v->dec_cap, NULL, 0, 0) == CLLM_OK &&
          memcmp(v->src, v->dec, bytes) == 0;
    return CLLM_OK;
}

// Every byte the archive restores against the safetensors file `against`.
static cllm_status archive_against(verify_ctx *v, const cllm_container *c, const cllm_archive *a,
                                   const char *against) {
    int fd = open(against, O_RDONLY | O_CLOEXEC);
    RETURN_IF(fd < 0, CLLM_ERR_IO, "%s: cannot open: %s", against, strerror(errno));
    cllm_archive_summary sum;
    cllm_archive_summary_get(a, &sum);
    struct stat sb;
    cllm_status st = fstat(fd, &sb) == 0 ? CLLM_OK : CLLM_FAIL(CLLM_ERR_IO, "%s: cannot stat",
                                                                against);
    if (st == CLLM_OK && (uint64_t)sb.st_size != sum.file_size) {
        cllm_logf(v->report, v->user, "restores %llu bytes, %s has %llu",
                  (unsigned long long)sum.file_size, against, (unsigned long long)sb.st_size);
        v->res->n_failed++;
        st = CLLM_ERR_MISMATCH;  // nothing more to compare
    }
    const uint8_t *blob = NULL;
    size_t blob_size = 0;
    cllm_container_tokenizer(c, &blob, &blob_size);
    if (st == CLLM_OK) st = grow((void **)&v->src, &v->src_cap, blob_size);
    if (st == CLLM_OK) st = cllm_pread_full(fd, v->src, blob_size, 0, against);
    if (st == CLLM_OK && memcmp(v->src, blob, blob_size) != 0) {
        cllm_logf(v->report, v->user, "the stored safetensors header differs from %s", against);
        v->res->n_failed++;
    }
    for (size_t i = 0; st == CLLM_OK && i < cllm_container_n_tensors(c); i++) {
        cllm_archive_segment seg;
        int ok = 0;
        st = cllm_archive_segment_get(a, i, &seg);
        if (st == CLLM_OK) st = compare_segment(v, c, i, fd, blob_size + seg.begin, against, &ok);
        if (st == CLLM_OK && !ok) {
            cllm_logf(v->report, v->user, "tensor '%s': restored bytes differ from %s",
                      seg.name ? seg.name : "(gap)", against);
            v->res->n_failed++;
        }
    }
    close(fd);
    return st == CLLM_ERR_MISMATCH ? CLLM_OK : st;
}

// An archive: its stored header must match its tensors; with `against`, every restored byte.
static cllm_status verify_archive(verify_ctx *v, const cllm_container *c, const char *against) {
    cllm_archive *a = NULL;
    if (cllm_archive_open(c, &a) != CLLM_OK) {
        cllm_logf(v->report, v->user, "%s", cllm_last_error());
        v->res->n_failed++;
        return CLLM_OK;
    }
    cllm_status st = against ? archive_against(v, c, a, against) : CLLM_OK;
    cllm_archive_free(a);
    return st;
}


// The stored tokenizer must load and fit the model's vocabulary (a model cannot use it otherwise).
static void check_tokenizer(verify_ctx *v, const cllm_container *c) {
    const uint8_t *data = NULL;
    size_t size = 0;
    cllm_tokenizer_kind kind = cllm_container_tokenizer(c, &data, &size);
    if (kind == CLLM_TOKENIZER_NONE) return;
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_load(kind, data, size, cllm_container_config(c)->vocab_size, &t) !=
        CLLM_OK) {
        cllm_logf(v->report, v->user, "tokenizer: %s", cllm_last_error());
        v->res->n_failed++;
    }
    cllm_tokenizer_free(t);
}

cllm_status cllm_verify(const char *path, const char *against, int n_threads,
                        cllm_report_fn report, void *report_user, cllm_verify_result *result) {
    (void)n_threads;
    RETURN_IF(!path || !result, CLLM_ERR_ARG, "verify: missing argument");
    memset(result, 0, sizeof *result);
    cllm_container *c;
    TRY(cllm_container_open(path, &c));
    verify_ctx v = {.report = report, .user = report_user, .res = result};
    result->n_tensors = cllm_container_n_tensors(c);
    size_t n_bad = 0;
    cllm_status st = cllm_container_verify_bytes(c, report, report_user, &n_bad);
    if (st == CLLM_ERR_CORRUPT) st = CLLM_OK;  // counted below, reported line by line
    result->n_failed += n_bad;
    if (st == CLLM_OK && cllm_container_is_archive(c)) {
        st = verify_archive(&v, c, against);
    } else if (st == CLLM_OK) {
        check_tokenizer(&v, c);
        if (against) st = verify_against(&v, c, against);
    }
    free(v.src);
    free(v.dec);
    free(v.q);
    free(v.scales_dec);
    free(v.scales_ref);
    cllm_container_free(c);
    if (st != CLLM_OK) return st;
    RETURN_IF(result->n_failed, CLLM_ERR_MISMATCH, "%s: %zu problem(s) found", path,
              result->n_failed);
    return CLLM_OK;
}
