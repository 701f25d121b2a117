// Fuzz target: bytes -> cllm_gguf_parse (the whole input is the file). A parsed file must keep
// its promises (tensor data aligned, inside the file, not overlapping); every getter runs on
// every pair, every array element is read, and when the metadata names a tokenizer, the bundle
// synthesised from it must either fail cleanly or load, encode and decode.
#include "codecllm.h"
#include "model/cllm_bundle.h"
#include "model/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char FUZZ_TEXT[] = "Hello world, y'all! 1234 \xC3\xBCn\xC3\xAF <s>\n\t  !!";

static void check_tensors(const cllm_gguf *g, size_t size) {
    for (size_t i = 0; i < g->n_tensors; i++) {
        const cllm_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment || t->offset < g->data_offset || t->offset > size ||
            t->size > size - t->offset)
            abort();
        for (size_t j = 0; j < i; j++) {
            const cllm_gguf_tensor *u = &g->tensors[j];
            if (t->offset < u->offset + u->size && u->offset < t->offset + t->size &&
                t->size && u->size)
                abort();
        }
    }
}

static void touch_pairs(const cllm_gguf *g) {
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < g->n_kv; i++) {
        const cllm_gguf_kv *kv = &g->kv[i];
        uint32_t u;
        int32_t s32;
        float f;
        int b;
        const char *s;
        size_t len;
        if (cllm_gguf_get_u32(g, kv->key, &u) == CLLM_OK) sink += u;
        if (cllm_gguf_get_i32(g, kv->key, &s32) == CLLM_OK) sink += (uint64_t)s32;
        if (cllm_gguf_get_f32(g, kv->key, &f) == CLLM_OK) sink += (uint64_t)(f != 0);
        if (cllm_gguf_get_bool(g, kv->key, &b) == CLLM_OK) sink += (uint64_t)b;
        if (cllm_gguf_get_str(g, kv->key, &s, &len) == CLLM_OK && len) sink += (uint8_t)s[len - 1];
        const cllm_gguf_kv *a;
        for (uint64_t k = 0; cllm_gguf_get_array(g, kv->key, CLLM_GGUF_STRING, &a) == CLLM_OK &&
                             k < a->n; k++) {
            cllm_gguf_arr_str(g, a, k, &s, &len);
            if (len) sink += (uint8_t)s[len - 1];
        }
        for (uint64_t k = 0; cllm_gguf_get_array(g, kv->key, CLLM_GGUF_F32, &a) == CLLM_OK &&
                             k < a->n; k++)
            sink += (uint64_t)(cllm_gguf_arr_f32(g, a, k) != 0);
        for (uint64_t k = 0; cllm_gguf_get_array(g, kv->key, CLLM_GGUF_I32, &a) == CLLM_OK &&
                             k < a->n; k++)
            sink += (uint64_t)cllm_gguf_arr_i64(g, a, k);
    }
    (void)sink;
}

static void try_tokenizer(const cllm_gguf *g) {
    if (!cllm_gguf_find(g, "tokenizer.ggml.model")) return;
    uint8_t *bundle = NULL;
    size_t size = 0;
    if (cllm_bundle_from_gguf(g, NULL, &bundle, &size) != CLLM_OK) {
        if (bundle) abort();
        return;
    }
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, bundle, size, 0, &t) == CLLM_OK) {
        int32_t ids[256];
        size_t n = 0;
        size_t vocab = cllm_tokenizer_vocab_size(t);
        if (cllm_tokenizer_encode(t, FUZZ_TEXT, sizeof FUZZ_TEXT - 1, 1, ids, 256, &n) ==
            CLLM_OK) {
            char buf[1 << 16];
            for (size_t i = 0; i < n; i++) {
                size_t len;
                if (ids[i] < 0 || (size_t)ids[i] >= vocab) abort();
                if (cllm_tokenizer_decode_token(t, -1, ids[i], buf, sizeof buf, &len) != CLLM_OK)
                    abort();
            }
        }
        cllm_tokenizer_free(t);
    }
    free(bundle);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cllm_gguf *g = NULL;
    if (cllm_gguf_parse(data, size, &g) != CLLM_OK) {
        if (g) abort(); // a failed parse leaves *out NULL
        return 0;
    }
    if (g->alignment == 0 || (g->alignment & (g->alignment - 1))) abort();
    check_tensors(g, size);
    touch_pairs(g);
    try_tokenizer(g);
    cllm_gguf_free(g);
    return 0;
}
