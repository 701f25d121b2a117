// The size of a container tensor's in-VRAM compute code (cllm_container_ccode_size): the tensor
// decoded on the host, then encoded by the compute code's C encoder (src/codec/cllm_ccode.h), the
// specification the GPU's fused mode uses.
#include "codec/cllm_ccode.h"
#include "common/cllm_common.h"

#include <stdlib.h>

cllm_status cllm_container_ccode_size(const cllm_container *c, size_t i, int n_threads,
                                      uint64_t *bytes, uint64_t *n_exc) {
    RETURN_IF(!c || !bytes || !n_exc, CLLM_ERR_ARG, "ccode_size: NULL argument");
    cllm_tensor_info t;
    TRY(cllm_container_tensor(c, i, &t));
    const int f16 = t.codec != CLLM_CODEC_INT8 && t.dtype == CLLM_DTYPE_F16;
    const int b16 = (t.codec != CLLM_CODEC_INT8 && t.dtype == CLLM_DTYPE_BF16) || f16;
    RETURN_IF(!b16 && t.codec != CLLM_CODEC_INT8, CLLM_ERR_UNSUPPORTED,
              "%s: no compute code for %s %s (bf16, f16 or int8)", t.name,
              cllm_codec_name(t.codec), cllm_dtype_name(t.dtype));
    const uint32_t kind = f16 ? CLLM_CCODE_F16 : b16 ? CLLM_CCODE_BF16 : CLLM_CCODE_INT8;
    RETURN_IF(!cllm_ccode_takes(kind, t.cols, b16 ? 0 : t.group_size), CLLM_ERR_UNSUPPORTED,
              "%s: the fused kernels do not take %llu columns", t.name,
              (unsigned long long)t.cols);
    RETURN_IF(t.n_elements > SIZE_MAX / 2, CLLM_ERR_UNSUPPORTED, "%s: too large", t.name);
    const size_t n = (size_t)t.n_elements * (b16 ? 2 : 1);
    const size_t n_sc = b16 ? 0 : (size_t)t.rows * ((t.cols + t.group_size - 1) / t.group_size) * 4;
    uint8_t *w = malloc(n ? n : 1);
    float *sc = n_sc ? malloc(n_sc) : NULL;
    uint8_t *code = NULL;
    size_t code_n = 0;
    cllm_status st = w && (sc || !n_sc) ? CLLM_OK : CLLM_FAIL(CLLM_ERR_NOMEM, "ccode_size: %s", t.name);
    if (st == CLLM_OK) st = cllm_container_decode(c, i, w, n, sc, n_sc, 1);
    if (st == CLLM_OK)
        st = f16   ? cllm_ccode_encode_f16((const uint16_t *)w, t.rows, t.cols, n_threads, &code, &code_n)
             : b16 ? cllm_ccode_encode_bf16((const uint16_t *)w, t.rows, t.cols, n_threads, &code, &code_n)
                   : cllm_ccode_encode_int8((const int8_t *)w, sc, t.rows, t.cols, t.group_size,
                                          n_threads, &code, &code_n);
    cllm_ccode_info info;
    cllm_ccode_layout lay;
    if (st == CLLM_OK) st = cllm_ccode_read_info(code, code_n, &info, &lay);
    // int8: the values of its flagged vectors (bits 6-7 stored aside), 8 per side entry
    if (st == CLLM_OK) *bytes = code_n, *n_exc = b16 ? info.n_exc : 8 * info.n_exc;
    free(code);
    free(sc);
    free(w);
    return st;
}
