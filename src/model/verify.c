// `verify`: every checksum and padding byte of a .cllm file and, against the source model, every
// tensor decoded and compared: bit-exact for raw and lossless, exact re-quantisation for int8.
#include "../format/cllm_format.h"
#include "../common/cllm_half.h"
#include "cllm_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        cllm_logf(v->report, v->user, "tensor '%s': cannot re-quantise the source: %s", ti->name, cllm_last_error());
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
    if (!ok) cllm_logf(v->report, v->user, "tensor '%s': int8 values or scales differ from re-quantising the source",
                 ti->name);
    else cllm_logf(v->report, v->user, "tensor '%s': int8 re-quantisation exact, max |error| %.3g", ti->name, max_err);
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
                cllm_logf(v->report, v->user, "tensor '%s': dtype %s, source has %s", ti.name, cllm_dtype_name(ti.dtype),
                    cllm_dtype_name(st.dtype));
                return CLLM_OK;
            }
        }
    }
    if (idx == cllm_source_n_tensors(src)) {
        cllm_logf(v->report, v->user, "tensor '%s' is not in the source", ti.name);
        return CLLM_OK;
    }
    size_t n = (size_t)ti.n_elements, bytes = n * cllm_dtype_size(ti.dtype);
    uint64_t groups = ti.codec == CLLM_CODEC_INT8 ? (ti.cols + ti.group_size - 1) / ti.group_size : 0;
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
        if (!*ok) cllm_logf(v->report, v->user, "tensor '%s': decoded bytes differ from the source", ti.name);
    }
    return CLLM_OK;
}

static cllm_status verify_against(verify_ctx *v, const cllm_container *c, const char *against) {
    cllm_source *src;
    TRY(cllm_source_open(against, NULL, &src));
    cllm_status st = CLLM_OK;
    size_t n = cllm_container_n_tensors(c);
    if (cllm_source_n_tensors(src) != n) {
        cllm_logf(v->report, v->user, "the container has %zu tensors, the source %zu", n, cllm_source_n_tensors(src));
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
    if (st == CLLM_OK && against) st = verify_against(&v, c, against);
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
