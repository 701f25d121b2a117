// Importers: llama2.c (legacy stories260K.bin and a hand-made "ak42" v1 file) and Hugging Face
// directories written by hand (q/k permutation against a hand-computed example, config.json
// errors, missing files, biases, tokenizers).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/cllm_model.h"
#include "testutil.h"

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_bytes(path, text, strlen(text));
}

static float *read_tensor_f32(cllm_source *s, size_t i, size_t *n) {
    cllm_source_tensor t;
    assert_int_equal(cllm_source_tensor_info(s, i, &t), CLLM_OK);
    assert_int_equal(t.dtype, CLLM_DTYPE_F32);
    *n = t.shape[0] * (t.ndim == 2 ? t.shape[1] : 1);
    float *buf = malloc(*n * 4);
    assert_int_equal(cllm_source_read(s, i, buf, *n * 4), CLLM_OK);
    return buf;
}

// ---- llama2.c ----------------------------------------------------------------------------------

static void test_stories260k(void **state) {
    (void)state;
    const char *path = cllm_test_shared_path("models/stories260K.bin");
    cllm_source *s;
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_OK);
    const cllm_model_config *c = cllm_source_config(s);
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->context_len, 512);
    assert_int_equal(c->tied_embeddings, 1);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_true(c->rope_theta == 10000.0f && c->norm_eps == 1e-5f);
    assert_int_equal(cllm_source_n_tensors(s), 2 + 9 * 5);

    cllm_source_tensor t;
    assert_int_equal(cllm_source_tensor_info(s, 0, &t), CLLM_OK);
    assert_string_equal(t.name, "model.embed_tokens.weight");
    assert_int_equal(t.shape[0], 512);
    assert_int_equal(t.shape[1], 64);
    assert_int_equal(cllm_source_tensor_info(s, 1 + 9 + 2, &t), CLLM_OK);  // layer 1 k_proj
    assert_string_equal(t.name, "model.layers.1.self_attn.k_proj.weight");
    assert_int_equal(t.shape[0], 32);
    assert_int_equal(cllm_source_tensor_info(s, 46, &t), CLLM_OK);
    assert_string_equal(t.name, "model.norm.weight");
    assert_int_equal(cllm_source_tensor_info(s, 47, &t), CLLM_ERR_ARG);

    // The embedding starts right after the 28-byte header; layer 1's wq sits after the embedding,
    // all rms_att weights and layer 0's wq.
    uint8_t *file;
    size_t file_size;
    assert_int_equal(cllm_read_file(path, 1 << 22, &file, &file_size), CLLM_OK);
    size_t n;
    float *emb = read_tensor_f32(s, 0, &n);
    assert_memory_equal(emb, file + 28, n * 4);
    for (size_t k = 0; k < n; k++) assert_true(isfinite(emb[k]) && fabsf(emb[k]) < 10.0f);
    free(emb);
    float *wq1 = read_tensor_f32(s, 1 + 9 + 1, &n);
    assert_memory_equal(wq1, file + 28 + 4 * (512 * 64 + 5 * 64 + 64 * 64), n * 4);
    free(wq1);
    float *norm = read_tensor_f32(s, 46, &n);  // rms_final: just before the RoPE tables
    size_t norm_off = file_size - 4 * (64 + 2 * 512 * 4);
    assert_memory_equal(norm, file + norm_off, n * 4);
    free(norm);
    free(file);
    char small[8];
    assert_int_equal(cllm_source_read(s, 0, small, sizeof small), CLLM_ERR_ARG);
    const uint8_t *tok;
    size_t tok_size;
    assert_int_equal(cllm_source_tokenizer(s, &tok, &tok_size), CLLM_TOKENIZER_NONE);
    cllm_source_free(s);
}

// v1 layout of a tiny model; every float = 1000 * array + element, so a misplaced offset shows.
enum { V1_DIM = 8, V1_HID = 12, V1_L = 2, V1_H = 2, V1_KV = 1, V1_VOCAB = 10, V1_SEQ = 16 };

static size_t write_v1(const char *path, int shared, int version, long trim) {
    static const size_t per[] = {V1_DIM, V1_DIM, 0, 0, V1_DIM * V1_DIM, V1_DIM * 4 * V1_KV,
                                 V1_DIM * 4 * V1_KV, V1_DIM * V1_DIM, V1_HID * V1_DIM,
                                 V1_DIM * V1_HID, V1_HID * V1_DIM, 0};
    static const size_t whole[] = {0, 0, V1_DIM, V1_VOCAB * V1_DIM, 0, 0, 0, 0, 0, 0, 0,
                                   V1_VOCAB * V1_DIM};
    size_t total = 0;
    for (int a = 0; a < 12; a++) total += per[a] * V1_L + whole[a];
    if (shared) total -= V1_VOCAB * V1_DIM;
    size_t bytes = 256 + 4 * total;
    uint8_t *buf = calloc(1, bytes);
    int32_t params[7] = {V1_DIM, V1_HID, V1_L, V1_H, V1_KV, V1_VOCAB, V1_SEQ};
    cllm_store_le32(buf, 0x616b3432u);
    cllm_store_le32(buf + 4, (uint32_t)version);
    for (int k = 0; k < 7; k++) cllm_store_le32(buf + 8 + 4 * k, (uint32_t)params[k]);
    buf[36] = (uint8_t)shared;
    float *w = (float *)(buf + 256);
    size_t pos = 0;
    for (int a = 0; a < 12 && pos < total; a++) {
        size_t count = per[a] * V1_L + whole[a];
        for (size_t e = 0; e < count; e++) w[pos++] = (float)(1000 * a + (int)(e % 1000));
    }
    write_bytes(path, buf, (size_t)((long)bytes - trim));
    free(buf);
    return bytes;
}

// Array index in the v1 file of each canonical role, and elements per layer.
static void check_v1_tensor(cllm_source *s, size_t i) {
    static const int array_of_role[] = {[CLLM_ROLE_EMBED] = 3, [CLLM_ROLE_ATTN_NORM] = 0,
                                        [CLLM_ROLE_WQ] = 4,    [CLLM_ROLE_WK] = 5,
                                        [CLLM_ROLE_WV] = 6,    [CLLM_ROLE_WO] = 7,
                                        [CLLM_ROLE_FFN_NORM] = 1, [CLLM_ROLE_GATE] = 8,
                                        [CLLM_ROLE_UP] = 10,   [CLLM_ROLE_DOWN] = 9,
                                        [CLLM_ROLE_NORM] = 2,  [CLLM_ROLE_LM_HEAD] = 11};
    cllm_tensor_spec sp;
    cllm_llama_tensor_spec(cllm_source_config(s), i, &sp);
    size_t n;
    float *w = read_tensor_f32(s, i, &n);
    size_t first = sp.layer > 0 ? (size_t)sp.layer * n : 0;
    for (size_t e = 0; e < n; e++)
        assert_true(w[e] == (float)(1000 * array_of_role[sp.role] + (int)((first + e) % 1000)));
    free(w);
}

static void test_v1_export(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/v1.bin", cllm_test_tmpdir());
    for (int shared = 0; shared <= 1; shared++) {
        write_v1(path, shared, 1, 0);
        cllm_source *s;
        assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_OK);
        const cllm_model_config *c = cllm_source_config(s);
        assert_int_equal(c->tied_embeddings, (uint32_t)shared);
        assert_int_equal(c->n_kv_heads, 1);
        assert_int_equal(c->context_len, V1_SEQ);
        assert_int_equal(cllm_source_n_tensors(s), 2 + 9 * V1_L + (shared ? 0 : 1));
        for (size_t i = 0; i < cllm_source_n_tensors(s); i++) check_v1_tensor(s, i);
        cllm_source_free(s);
    }
    cllm_source *s = NULL;
    write_v1(path, 0, 1, 4);  // one float short
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), path));
    write_v1(path, 0, 2, 0);
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(cllm_last_error(), "version 2"));
    assert_null(s);
}

// stories260K with a separate classifier appended (negative vocab_size in the legacy header).
static void test_legacy_untied(void **state) {
    (void)state;
    uint8_t *file;
    size_t size;
    assert_int_equal(cllm_read_file(cllm_test_shared_path("models/stories260K.bin"), 1 << 22,
                                    &file, &size), CLLM_OK);
    size_t cls = 512 * 64 * 4;
    file = realloc(file, size + cls);
    cllm_store_le32(file + 20, (uint32_t)-512);
    float *wcls = (float *)(file + size);
    for (size_t k = 0; k < 512 * 64; k++) wcls[k] = (float)k;
    char path[512];
    snprintf(path, sizeof path, "%s/untied.bin", cllm_test_tmpdir());
    write_bytes(path, file, size + cls);
    cllm_source *s;
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_OK);
    assert_int_equal(cllm_source_config(s)->tied_embeddings, 0);
    assert_int_equal(cllm_source_config(s)->vocab_size, 512);
    assert_int_equal(cllm_source_n_tensors(s), 48);
    size_t n;
    float *w = read_tensor_f32(s, 47, &n);
    assert_int_equal(n, 512 * 64);
    assert_memory_equal(w, wcls, cls);
    free(w);
    cllm_source_free(s);
    write_bytes(path, file, size);  // untied header without the classifier
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), "separate classifier"));
    free(file);
}

static void test_legacy_rejects(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/legacy.bin", cllm_test_tmpdir());
    int32_t h[7] = {64, 172, 5, 8, 3, 512, 512};  // 3 kv heads do not divide 8
    write_bytes(path, h, sizeof h);
    cllm_source *s = NULL;
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "n_kv_heads"));
    int32_t h2[7] = {64, 172, 5, 8, 4, 512, 0};
    write_bytes(path, h2, sizeof h2);
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "seq_len"));
    int32_t h3[7] = {64, 172, 5, 8, 4, 512, 512};  // valid header, no weights
    write_bytes(path, h3, sizeof h3);
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_CORRUPT);
    write_bytes(path, h3, 10);
    assert_int_equal(cllm_source_open(path, NULL, &s), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_source_open("/nonexistent/x.bin", NULL, &s), CLLM_ERR_IO);
    assert_null(s);
}

// ---- Hugging Face ------------------------------------------------------------------------------

// A 1-layer model: dim 16, 2 heads of 8, 1 kv head, hidden 4, vocab 4. Every f32 weight of
// q/k/v holds its row index so the permutation can be read off.
#define HF_CONFIG_FMT                                                                              \
    "{\"architectures\": [\"%s\"], \"hidden_size\": 16, \"intermediate_size\": 4, "             \
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "        \
    "\"vocab_size\": 4, \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-05, "             \
    "\"tie_word_embeddings\": %s, \"bos_token_id\": 1, \"eos_token_id\": [2, 3] %s}"

static void write_hf_config(const char *dir, const char *arch, int tied, const char *extra) {
    char text[2048];
    snprintf(text, sizeof text, HF_CONFIG_FMT, arch, tied ? "true" : "false", extra);
    write_text(dir, "config.json", text);
}

// Writes model.safetensors with the canonical tensors (+ `extra_name` if non-NULL).
static void write_hf_weights(const char *dir, int with_lm_head, const char *extra_name,
                             uint64_t vocab_rows) {
    cllm_model_config c = {.arch = CLLM_ARCH_LLAMA, .dim = 16, .hidden_dim = 4, .n_layers = 1,
                           .n_heads = 2, .n_kv_heads = 1, .head_dim = 8, .vocab_size = 4,
                           .tied_embeddings = with_lm_head ? 0 : 1};
    size_t n = cllm_llama_n_tensors(&c);
    cllm_tensor_spec sp[16];
    cllm_st_spec specs[16];
    const void *data[16];
    float *bufs[16];
    for (size_t i = 0; i < n; i++) {
        cllm_llama_tensor_spec(&c, i, &sp[i]);
        if (i == 0) sp[i].shape[0] = vocab_rows;
        specs[i] = (cllm_st_spec){sp[i].name, CLLM_DTYPE_F32, sp[i].ndim,
                                  {sp[i].shape[0], sp[i].shape[1]}};
        uint64_t cols = sp[i].ndim == 2 ? sp[i].shape[1] : 1;
        bufs[i] = malloc(sp[i].shape[0] * cols * 4);
        for (uint64_t r = 0; r < sp[i].shape[0]; r++)
            for (uint64_t k = 0; k < cols; k++) bufs[i][r * cols + k] = (float)r;
        data[i] = bufs[i];
    }
    float bias[8] = {0};
    if (extra_name) {
        specs[n] = (cllm_st_spec){extra_name, CLLM_DTYPE_F32, 1, {8, 0}};
        data[n] = bias;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(cllm_st_write_file(path, specs, n + (extra_name ? 1 : 0), data), CLLM_OK);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
}

static const char *fresh_dir(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", cllm_test_tmpdir(), name);
    mkdir(dir, 0755);
    return dir;
}

static void test_hf_permutation(void **state) {
    (void)state;
    const char *dir = fresh_dir("hf_perm");
    write_hf_config(dir, "LlamaForCausalLM", 1, "");
    write_hf_weights(dir, 0, NULL, 4);
    cllm_source *s;
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_OK);
    const cllm_model_config *c = cllm_source_config(s);
    assert_int_equal(c->eos_id, 2);  // first of the list
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(cllm_source_n_tensors(s), 11);
    // head_dim 8: engine row 2i + c <- HF row c*4 + i.
    static const float q_rows[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
    static const float k_rows[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    size_t n;
    float *q = read_tensor_f32(s, 2, &n);
    for (size_t r = 0; r < 16; r++)
        for (size_t k = 0; k < 16; k++) assert_true(q[r * 16 + k] == q_rows[r]);
    free(q);
    float *kk = read_tensor_f32(s, 3, &n);
    for (size_t r = 0; r < 8; r++) assert_true(kk[r * 16] == k_rows[r]);
    free(kk);
    float *v = read_tensor_f32(s, 4, &n);  // v is not permuted
    for (size_t r = 0; r < 8; r++) assert_true(v[r * 16] == (float)r);
    free(v);
    cllm_source_free(s);
}

static void test_hf_tied_untied_tokenizer(void **state) {
    (void)state;
    const char *dir = fresh_dir("hf_untied");
    write_hf_config(dir, "MistralForCausalLM", 0, ", \"sliding_window\": null");
    write_hf_weights(dir, 1, "model.rotary_emb.inv_freq", 4);  // extras are ignored
    write_text(dir, "tokenizer.json", "{\"model\": {}}");
    cllm_source *s;
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_OK);
    assert_int_equal(cllm_source_n_tensors(s), 12);
    cllm_source_tensor t;
    assert_int_equal(cllm_source_tensor_info(s, 11, &t), CLLM_OK);
    assert_string_equal(t.name, "lm_head.weight");
    const uint8_t *tok;
    size_t tok_size;
    assert_int_equal(cllm_source_tokenizer(s, &tok, &tok_size), CLLM_TOKENIZER_HF_JSON);
    assert_int_equal(tok_size, 13);
    cllm_source_free(s);
    // Override with a llama2.c tokenizer.bin.
    char tok_path[1024];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.bin", dir);
    write_bytes(tok_path, "\x01\x02\x03", 3);
    assert_int_equal(cllm_source_open(dir, tok_path, &s), CLLM_OK);
    assert_int_equal(cllm_source_tokenizer(s, &tok, &tok_size), CLLM_TOKENIZER_LLAMA2C);
    assert_int_equal(tok_size, 3);
    cllm_source_free(s);
    // tokenizer.json with tokenizer_config.json beside it: a bundle with the chat template,
    // add_bos and the EOS name.
    write_text(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
               "\"b\": 1, \"ab\": 2, \"<s>\": 3}, \"merges\": [\"a b\"]}}");
    write_text(dir, "tokenizer_config.json", "{\"add_bos_token\": false, \"eos_token\": "
               "{\"content\": \"b\"}, \"chat_template\": [{\"name\": \"tool\", \"template\": "
               "\"T\"}, {\"name\": \"default\", \"template\": \"{{ m }}\"}]}");
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_OK);
    assert_int_equal(cllm_source_tokenizer(s, &tok, &tok_size), CLLM_TOKENIZER_BUNDLE);
    cllm_tokenizer *tk = NULL;
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, tok, tok_size, 0, &tk), CLLM_OK);
    assert_string_equal(cllm_tokenizer_chat_template(tk), "{{ m }}");
    assert_int_equal(cllm_tokenizer_add_bos(tk), 0);
    assert_int_equal(cllm_tokenizer_bos(tk), 3);
    assert_int_equal(cllm_tokenizer_eos(tk), 1);
    cllm_tokenizer_free(tk);
    cllm_source_free(s);
    // No add_bos_token: as for a bare tokenizer.json (a vocabulary with <s> adds it).
    write_text(dir, "tokenizer_config.json", "{\"chat_template\": \"X\"}");
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_OK);
    assert_int_equal(cllm_source_tokenizer(s, &tok, &tok_size), CLLM_TOKENIZER_BUNDLE);
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, tok, tok_size, 0, &tk), CLLM_OK);
    assert_int_equal(cllm_tokenizer_add_bos(tk), 1);
    cllm_tokenizer_free(tk);
    cllm_source_free(s);
    write_text(dir, "tokenizer_config.json", "{\"chat_template\": ");
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "tokenizer_config.json"));
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer_config.json", dir);
    unlink(tok_path);
    // Untied config without lm_head in the file.
    write_hf_weights(dir, 0, NULL, 4);
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "'lm_head.weight' is missing"));
}

static void expect_open_error(const char *dir, cllm_status want, const char *fragment) {
    cllm_source *s = NULL;
    cllm_status st = cllm_source_open(dir, NULL, &s);
    if (st != want || !strstr(cllm_last_error(), fragment))
        fprintf(stderr, "status %d (want %d): %s (want '%s')\n", st, want, cllm_last_error(),
                fragment);
    assert_int_equal(st, want);
    assert_non_null(strstr(cllm_last_error(), fragment));
    assert_null(s);
}

static void test_hf_bad_config(void **state) {
    (void)state;
    const char *dir = fresh_dir("hf_bad");
    write_hf_weights(dir, 0, NULL, 4);
    expect_open_error(dir, CLLM_ERR_IO, "config.json");  // no config yet
    write_text(dir, "config.json", "{\"hidden_size\": 16,");
    expect_open_error(dir, CLLM_ERR_FORMAT, "invalid JSON");
    write_text(dir, "config.json", "[{\"hidden_size\": 16}]");  // leaked its JSON before
    expect_open_error(dir, CLLM_ERR_FORMAT, "top level is not an object");
    write_hf_config(dir, "GPT2LMHeadModel", 1, "");
    expect_open_error(dir, CLLM_ERR_UNSUPPORTED, "GPT2LMHeadModel");
    write_hf_config(dir, "LlamaForCausalLM", 1, ", \"head_dim\": 4");
    expect_open_error(dir, CLLM_ERR_UNSUPPORTED, "head_dim");
    write_hf_config(dir, "LlamaForCausalLM", 1, ", \"rope_scaling\": {\"type\": \"yarn\"}");
    expect_open_error(dir, CLLM_ERR_UNSUPPORTED, "yarn");
    write_hf_config(dir, "LlamaForCausalLM", 1,
                    ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}");
    expect_open_error(dir, CLLM_ERR_FORMAT, "low_freq_factor is missing");
    write_hf_config(dir, "MistralForCausalLM", 1, ", \"sliding_window\": 16");
    expect_open_error(dir, CLLM_ERR_UNSUPPORTED, "sliding_window = 16");
    write_hf_config(dir, "LlamaForCausalLM", 1, ", \"hidden_act\": \"gelu\"");
    expect_open_error(dir, CLLM_ERR_UNSUPPORTED, "gelu");
    write_hf_config(dir, "LlamaForCausalLM", 1, ", \"rope_theta\": \"big\"");
    expect_open_error(dir, CLLM_ERR_FORMAT, "rope_theta is not a number");
    write_hf_config(dir, "LlamaForCausalLM", 1, ", \"num_key_value_heads\": 3");
    expect_open_error(dir, CLLM_ERR_FORMAT, "duplicate object key");
    write_text(dir, "config.json",
               "{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 4, "
               "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 3, "
               "\"vocab_size\": 4, \"max_position_embeddings\": 8}");
    expect_open_error(dir, CLLM_ERR_FORMAT, "n_kv_heads = 3");
    write_text(dir, "config.json",
               "{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 4, "
               "\"num_hidden_layers\": -1, \"num_attention_heads\": 2, "
               "\"vocab_size\": 4, \"max_position_embeddings\": 8}");
    expect_open_error(dir, CLLM_ERR_FORMAT, "num_hidden_layers = -1 is out of range");
    write_text(dir, "config.json",
               "{\"model_type\": \"llama\", \"hidden_size\": 16, \"num_hidden_layers\": 1, "
               "\"num_attention_heads\": 2, \"vocab_size\": 4, \"max_position_embeddings\": 8}");
    expect_open_error(dir, CLLM_ERR_FORMAT, "intermediate_size is missing");
    // Weights that do not match the config.
    write_hf_config(dir, "LlamaForCausalLM", 1, "");
    write_hf_weights(dir, 0, NULL, 5);
    expect_open_error(dir, CLLM_ERR_FORMAT, "shape [5, 16] does not match [4, 16]");
    write_hf_config(dir, "Qwen2ForCausalLM", 1, ", \"use_sliding_window\": false, "
                    "\"sliding_window\": 4");
    write_hf_weights(dir, 0, "model.layers.0.self_attn.q_proj.bias", 4);
    expect_open_error(dir, CLLM_ERR_UNSUPPORTED, "'model.layers.0.self_attn.q_proj.bias'");
    write_hf_weights(dir, 0, NULL, 4);
    cllm_source *s;
    assert_int_equal(cllm_source_open(dir, NULL, &s), CLLM_OK);  // Qwen2 without biases
    cllm_source_free(s);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    expect_open_error(dir, CLLM_ERR_IO, "no model.safetensors");
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"model.embed_tokens.weight\": \"../../etc/passwd\"}}");
    expect_open_error(dir, CLLM_ERR_FORMAT, "not a plain file name");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_v1_export),
        cmocka_unit_test(test_legacy_untied),
        cmocka_unit_test(test_legacy_rejects),
        cmocka_unit_test(test_hf_permutation),
        cmocka_unit_test(test_hf_tied_untied_tokenizer),
        cmocka_unit_test(test_hf_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
