// Fuzz target: bytes -> container open from memory -> decode every tensor -> verify every byte.
// Each input is opened twice: as a reader would (checksums compared first, so mutations mostly
// stop there) and with CLLM_OPEN_NO_CHECKSUMS, which lets the fuzzer reach the structural checks
// of the header, config, table and payloads, and the decoders behind them.
// Invariants checked (a violation aborts, which the fuzzer reports): a successful open has
// tensors findable by their own names, payloads inside the input, and verify_bytes never fails
// for any reason but CORRUPT.
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/cllm_codec.h"
#include "format/cllm_format.h"

// Bounds what one input may make us allocate for decoding (the input itself is small, but its
// table may describe tensors whose decoded form is far larger than the payload).
#define FUZZ_MAX_DECODE (16u << 20)

static void check_invariants(const cllm_container *c, const uint8_t *data, size_t size) {
    if (cllm_container_file_size(c) != size) abort();
    for (size_t i = 0; i < cllm_container_n_tensors(c); i++) {
        cllm_tensor_info info;
        if (cllm_container_tensor(c, i, &info) != CLLM_OK) abort();
        if (cllm_container_find(c, info.name) != (int64_t)i) abort();
        const uint8_t *p = cllm_container_payload(c, i);
        if (p < data || info.data_size > size || (size_t)(p - data) > size - info.data_size)
            abort();
    }
    const uint8_t *tok;
    size_t tok_size;
    if (cllm_container_tokenizer(c, &tok, &tok_size) != CLLM_TOKENIZER_NONE &&
        (tok < data || tok_size > size || (size_t)(tok - data) > size - tok_size))
        abort();
}

static void decode_all(const cllm_container *c, int check_sum) {
    for (size_t i = 0; i < cllm_container_n_tensors(c); i++) {
        cllm_tensor_info info;
        cllm_payload_layout_t lay;
        if (cllm_container_tensor(c, i, &info) != CLLM_OK) abort();
        if (cllm_payload_layout(cllm_container_desc(c, i), &lay) != CLLM_OK) abort();
        size_t elem = info.codec == CLLM_CODEC_INT8 ? 1 : cllm_dtype_size(info.dtype);
        if (info.n_elements > FUZZ_MAX_DECODE / elem) continue;
        size_t out_size = (size_t)info.n_elements * elem;
        size_t scales_size = info.codec == CLLM_CODEC_INT8 ? (size_t)lay.side_size : 0;
        if (scales_size > FUZZ_MAX_DECODE) continue;
        void *out = malloc(out_size);
        float *scales = scales_size ? malloc(scales_size) : NULL;
        if (out && (scales || !scales_size))
            (void)cllm_container_decode(c, i, out, out_size, scales, scales_size, check_sum);
        free(out);
        free(scales);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        omp_set_num_threads(1);  // tiny tensors: threads would only add start-up noise
        once = 1;
    }
    for (int pass = 0; pass < 2; pass++) {
        unsigned flags = pass ? CLLM_OPEN_NO_CHECKSUMS : 0;
        cllm_container *c = NULL;
        if (cllm_container_open_memory(data, size, "fuzz", flags, &c) != CLLM_OK) {
            if (c) abort();
            continue;
        }
        check_invariants(c, data, size);
        decode_all(c, pass == 0);
        size_t n_bad = 0;
        cllm_status st = cllm_container_verify_bytes(c, NULL, NULL, &n_bad);
        if (st != CLLM_OK && st != CLLM_ERR_CORRUPT) abort();
        if ((st == CLLM_OK) != (n_bad == 0)) abort();
        cllm_container_free(c);
    }
    return 0;
}
