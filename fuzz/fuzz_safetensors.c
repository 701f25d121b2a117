// Fuzz target: arbitrary bytes as a safetensors file -> header parser. Must never crash, leak or
// read outside the input; a header it accepts must satisfy the parser's promises.
#include <stdint.h>
#include <stdlib.h>

#include "model/cllm_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cllm_st_header h;
    if (cllm_st_parse(data, size, size, &h) != CLLM_OK) return 0;
    // Invariants of an accepted header: sorted, disjoint ranges inside the data area whose sizes
    // match their shapes.
    if (h.data_offset + h.data_size != size) abort();
    for (size_t i = 0; i < h.n_tensors; i++) {
        const cllm_st_tensor *t = &h.tensors[i];
        if (t->end > h.data_size || t->end < t->begin) abort();
        if (t->end - t->begin != t->n_elements * t->elem_size) abort();
        if (i > 0 && t->begin < h.tensors[i - 1].end) abort();
        if (cllm_st_find(&h, t->name) == NULL) abort();
    }
    cllm_st_header_free(&h);
    return 0;
}
