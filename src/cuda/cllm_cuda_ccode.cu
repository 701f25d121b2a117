// Compute-code transcoder: a raw device matrix -> its in-VRAM compute code (src/codec/cllm_ccode.h),
// through the C encoder on the host (the specification; the kernels read what it writes).
#include "cllm_cuda_check.h"

#include <math.h>

extern "C" {
#include "../codec/cllm_ccode.h"
}

#include <stdlib.h>

// The compute-code kind of a raw weight kind (BF16, F16, INT8), or 0.
static uint32_t ccode_kind_of(uint32_t kind) {
    return kind == CLLM_CUDA_W_BF16  ? (uint32_t)CLLM_CCODE_BF16
           : kind == CLLM_CUDA_W_F16 ? (uint32_t)CLLM_CCODE_F16
           : kind == CLLM_CUDA_W_INT8 ? (uint32_t)CLLM_CCODE_INT8
                                      : 0u;
}

// Shapes the fused kernels take (see cllm_cuda.h, CLLM_CUDA_W_CC_*): the compute code's rule.
static bool ccode_shape_ok(uint32_t kind, uint64_t cols, uint32_t group_size) {
    return cllm_ccode_takes(ccode_kind_of(kind), cols, group_size) != 0;
}

extern "C" size_t cllm_cuda_ccode_estimate_bytes(uint32_t kind, uint64_t rows, uint64_t cols,
                                                  uint32_t group_size, double exc_fraction) {
    if (!ccode_kind_of(kind) || rows == 0 || cols == 0) return 0;
    const uint32_t gs = kind == CLLM_CUDA_W_INT8 ? (group_size ? group_size : (uint32_t)cols) : 0;
    if (!ccode_shape_ok(kind, cols, gs)) return 0;
    const double f = exc_fraction < 0 ? 0 : exc_fraction > 1 ? 1 : exc_fraction;
    // int8 stores no exceptions but a side entry per 8-value vector holding an escape: with
    // escapes independent at rate f, a share 1 - (1 - f)^8 of the vectors.
    const double n_aux = kind != CLLM_CUDA_W_INT8
                             ? f * (double)rows * (double)cols
                             : (1.0 - pow(1.0 - f, 8.0)) * (double)((rows + 15) / 16 * 16) *
                                   (double)cols / 8.0;
    cllm_ccode_info in = {ccode_kind_of(kind), gs, rows, cols, (uint64_t)n_aux};
    cllm_ccode_layout lay;
    if (cllm_ccode_layout_of(&in, &lay) != 0 || lay.total > SIZE_MAX) return 0;
    return (size_t)lay.total;
}

extern "C" cllm_status cllm_cuda_ccode_make_host(cllm_cuda_mem *mem, uint32_t kind,
                                                 const void *data, const float *scales,
                                                 uint64_t rows, uint64_t cols,
                                                 uint32_t group_size, int n_threads, void *stream,
                                                 cllm_cuda_weight *out, size_t *bytes) {
    RETURN_IF(!mem || !data || !out || !bytes || rows == 0 || cols == 0, CLLM_ERR_ARG,
              "ccode_make: bad argument");
    RETURN_IF(!ccode_kind_of(kind), CLLM_ERR_UNSUPPORTED,
              "ccode_make: no compute code for weight kind %u", kind);
    RETURN_IF(!ccode_shape_ok(kind, cols, group_size), CLLM_ERR_UNSUPPORTED,
              "ccode_make: the fused kernels do not take %llu columns (group %u)",
              (unsigned long long)cols, group_size);
    uint8_t *buf = NULL;
    size_t n = 0;
    if (kind == CLLM_CUDA_W_BF16)
        TRY(cllm_ccode_encode_bf16((const uint16_t *)data, rows, cols, n_threads, &buf, &n));
    else if (kind == CLLM_CUDA_W_F16)
        TRY(cllm_ccode_encode_f16((const uint16_t *)data, rows, cols, n_threads, &buf, &n));
    else
        TRY(cllm_ccode_encode_int8((const int8_t *)data, scales, rows, cols, group_size,
                                   n_threads, &buf, &n));
    cllm_ccode_info in = {ccode_kind_of(kind), kind == CLLM_CUDA_W_INT8 ? group_size : 0u, rows,
                          cols, 0};
    cllm_ccode_layout lay;
    (void)cllm_ccode_layout_of(&in, &lay);  // valid: the encoder made it
    void *dev = NULL;
    cllm_status st = cllm_cuda_alloc(mem, n, &dev);
    if (st == CLLM_OK) st = cllm_cuda_copy(dev, buf, n, stream);
    if (st == CLLM_OK) st = cllm_cuda_sync(stream);  // buf is freed next
    free(buf);
    if (st != CLLM_OK) {
        (void)cllm_cuda_release(mem, dev);
        return st;
    }
    *out = (cllm_cuda_weight){};
    out->data = dev;
    out->rows = rows, out->cols = cols;
    if (kind != CLLM_CUDA_W_INT8) {
        out->kind = kind == CLLM_CUDA_W_F16 ? CLLM_CUDA_W_CC_F16 : CLLM_CUDA_W_CC_BF16;
    } else {
        out->kind = CLLM_CUDA_W_CC_INT8;
        out->group_size = group_size;
        out->scales = (const float *)((const uint8_t *)dev + lay.off[CLLM_CC8_S_SCALES]);
    }
    *bytes = n;
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_ccode_make(cllm_cuda_mem *mem, const cllm_cuda_weight *raw,
                                            int n_threads, void *stream, cllm_cuda_weight *out,
                                            size_t *bytes) {
    RETURN_IF(!raw || !raw->data || raw->rows == 0 || raw->cols == 0, CLLM_ERR_ARG,
              "ccode_make: empty weight");
    RETURN_IF(!ccode_kind_of(raw->kind), CLLM_ERR_UNSUPPORTED,
              "ccode_make: no compute code for weight kind %u", raw->kind);
    RETURN_IF(raw->rows * raw->cols > SIZE_MAX / 2, CLLM_ERR_UNSUPPORTED, "ccode_make: too large");
    const size_t n = (size_t)(raw->rows * raw->cols) * (raw->kind == CLLM_CUDA_W_INT8 ? 1 : 2);
    const uint32_t gs = raw->group_size ? raw->group_size : (uint32_t)raw->cols;
    const size_t n_sc = raw->kind == CLLM_CUDA_W_INT8
                            ? (size_t)raw->rows * ((raw->cols + gs - 1) / gs) * sizeof(float) : 0;
    RETURN_IF(raw->kind == CLLM_CUDA_W_INT8 && !raw->scales, CLLM_ERR_ARG,
              "ccode_make: int8 weight without scales");
    void *host = NULL;
    TRY(cllm_cuda_host_alloc(n + n_sc, &host));
    cllm_status st = cllm_cuda_copy(host, raw->data, n, stream);
    if (st == CLLM_OK && n_sc) st = cllm_cuda_copy((uint8_t *)host + n, raw->scales, n_sc, stream);
    if (st == CLLM_OK) st = cllm_cuda_sync(stream);
    if (st == CLLM_OK)
        st = cllm_cuda_ccode_make_host(mem, raw->kind, host,
                                       n_sc ? (const float *)((uint8_t *)host + n) : NULL,
                                       raw->rows, raw->cols, gs, n_threads, stream, out, bytes);
    cllm_cuda_host_free(host);
    return st;
}
