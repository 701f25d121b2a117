// Fuzz target: bytes -> cllm_tokenizer_load, then encode and decode a short fixed text.
// The first byte picks the kind (3: a tokenizer bundle; otherwise even: llama2.c tokenizer.bin,
// odd: tokenizer.json), the rest is the file. Loading may fail with any status but must never crash, leak or hang; a loaded
// tokenizer must encode to ids inside its vocabulary that decode without error.
#include "codecllm.h"

#include <stdint.h>
#include <stdlib.h>

static const char FUZZ_TEXT[] = "Hello world, y'all! 1234 \xC3\xBCn\xC3\xAF \xC2\xBD <s>\n\t  !!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    cllm_tokenizer_kind kind = data[0] == 3   ? CLLM_TOKENIZER_BUNDLE
                               : data[0] & 1 ? CLLM_TOKENIZER_HF_JSON
                                             : CLLM_TOKENIZER_LLAMA2C;
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_load(kind, data + 1, size - 1, 0, &t) != CLLM_OK) {
        if (t) abort(); // a failed load leaves *out NULL
        return 0;
    }
    size_t vocab = cllm_tokenizer_vocab_size(t);
    if (vocab == 0 || cllm_tokenizer_bos(t) >= (int32_t)vocab ||
        cllm_tokenizer_eos(t) >= (int32_t)vocab) {
        abort();
    }
    int32_t ids[256];
    size_t n = 0;
    if (cllm_tokenizer_encode(t, FUZZ_TEXT, sizeof FUZZ_TEXT - 1, 1, ids, 256, &n) == CLLM_OK) {
        char buf[1 << 16];
        int32_t prev = -1;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            if (ids[i] < 0 || (size_t)ids[i] >= vocab) abort();
            if (cllm_tokenizer_decode_token(t, prev, ids[i], buf, sizeof buf, &len) != CLLM_OK) {
                abort();
            }
            prev = ids[i];
        }
    }
    cllm_tokenizer_free(t);
    return 0;
}
