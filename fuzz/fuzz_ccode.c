// Fuzz target: an arbitrary buffer into the compute-code decoder (cllm_ccode_decode). The header
// bounds the output (at most 2^22 values here); a buffer that decodes must re-encode to a buffer
// that decodes to the same values (the encoder may pick other bases, so bytes may differ).
#include "codec/cllm_ccode.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    if (cllm_ccode_read_info(data, size, &in, &lay) != CLLM_OK) return 0;
    const uint64_t elems = in.rows * in.cols;
    if (elems > (1u << 22)) return 0;
    const size_t esz = in.kind == CLLM_CCODE_INT8 ? 1 : 2, n_sc = (size_t)(lay.gpr * in.rows);
    if (in.kind == CLLM_CCODE_INT8 && n_sc > (1u << 22)) return 0;
    uint8_t *copy = malloc(size);  // exact size: a read past the end is an ASan error
    uint8_t *out = malloc((size_t)elems * esz + 1);
    float *sc = malloc(n_sc * sizeof(float) + 1);
    memcpy(copy, data, size);
    if (cllm_ccode_decode(copy, size, out, (size_t)elems * esz, sc, n_sc * sizeof(float)) ==
        CLLM_OK) {
        uint8_t *again = NULL;
        size_t n2 = 0;
        cllm_status st =
            in.kind == CLLM_CCODE_BF16
                ? cllm_ccode_encode_bf16((const uint16_t *)out, in.rows, in.cols, 1, &again, &n2)
            : in.kind == CLLM_CCODE_F16
                ? cllm_ccode_encode_f16((const uint16_t *)out, in.rows, in.cols, 1, &again, &n2)
                : cllm_ccode_encode_int8((const int8_t *)out, sc, in.rows, in.cols, in.group_size,
                                         1, &again, &n2);
        if (st == CLLM_OK) {
            uint8_t *back = malloc((size_t)elems * esz + 1);
            float *sc2 = malloc(n_sc * sizeof(float) + 1);
            if (cllm_ccode_decode(again, n2, back, (size_t)elems * esz, sc2,
                                  n_sc * sizeof(float)) != CLLM_OK ||
                memcmp(back, out, (size_t)elems * esz) != 0 ||
                (in.kind == CLLM_CCODE_INT8 && memcmp(sc2, sc, n_sc * sizeof(float)) != 0))
                abort();
            free(back), free(sc2);
        } else if (st != CLLM_ERR_UNSUPPORTED) {
            abort();
        }
        free(again);
    }
    free(copy), free(out), free(sc);
    return 0;
}
