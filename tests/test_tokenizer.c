// Tokenizers: the reference vectors of ../shared/tokenizers (Llama 2 tokenizer.bin, GPT-2
// tokenizer.json), hand-built fixtures (tests/fixtures/tokenizers), round trips, and malformed
// input.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecllm.h"
#include "common/cllm_common.h"
#include "format/cllm_format.h"
#include "model/cllm_bundle.h"
#include "model/cllm_tokenizer.h"
#include "model/gguf.h"
#include "testutil.h"

// ---- helpers ----------------------------------------------------------------------------------

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

static const char *fixture_path(const char *name) {
    static char path[4096];
    const char *src = getenv("CLLM_SRC");
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizers/%s", src ? src : "..", name);
    return path;
}

// Reference vectors: `.inp` holds each string followed by "\n__ggml_vocab_test__\n"; `.out`
// one line of space-separated ids per string.
#define MAX_VECTORS 64
#define MAX_IDS 1024
typedef struct vectors {
    uint8_t *inp, *outp;
    size_t n;
    const char *text[MAX_VECTORS];
    size_t len[MAX_VECTORS];
    int32_t ids[MAX_VECTORS][MAX_IDS];
    size_t n_ids[MAX_VECTORS];
} vectors;

static vectors *load_vectors(const char *stem) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char rel[256];
    vectors *v = calloc(1, sizeof *v);
    assert_non_null(v);
    size_t isz, osz;
    snprintf(rel, sizeof rel, "tokenizers/%s.vectors.inp", stem);
    v->inp = read_all(cllm_test_shared_path(rel), &isz);
    snprintf(rel, sizeof rel, "tokenizers/%s.vectors.out", stem);
    v->outp = read_all(cllm_test_shared_path(rel), &osz);
    for (size_t pos = 0; pos < isz;) {
        uint8_t *end = memmem(v->inp + pos, isz - pos, sep, sizeof sep - 1);
        assert_non_null(end);
        assert_true(v->n < MAX_VECTORS);
        v->text[v->n] = (const char *)v->inp + pos;
        v->len[v->n] = (size_t)(end - (v->inp + pos));
        v->n++;
        pos = (size_t)(end - v->inp) + sizeof sep - 1;
    }
    char *line = (char *)v->outp;
    for (size_t i = 0; i < v->n; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        for (char *p = line, *q; (v->n_ids[i] < MAX_IDS); p = q) {
            long x = strtol(p, &q, 10);
            if (q == p) break;
            v->ids[i][v->n_ids[i]++] = (int32_t)x;
        }
        line = nl + 1;
    }
    return v;
}

static void free_vectors(vectors *v) {
    free(v->inp);
    free(v->outp);
    free(v);
}

static size_t encode(const cllm_tokenizer *t, const char *s, size_t len, int add_bos,
                     int32_t *ids, size_t cap) {
    size_t n = 0;
    cllm_status st = cllm_tokenizer_encode(t, s, len, add_bos, ids, cap, &n);
    if (st != CLLM_OK) fail_msg("encode failed: %s", cllm_last_error());
    return n;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

// Encodes every vector; reports each mismatch and fails when there is any.
static void check_vectors(const cllm_tokenizer *t, const vectors *v, const char *name) {
    int32_t got[MAX_IDS * 2];
    size_t failed = 0;
    assert_int_equal(v->n, 46);
    for (size_t i = 0; i < v->n; i++) {
        size_t n = encode(t, v->text[i], v->len[i], 0, got, MAX_IDS * 2);
        if (n == v->n_ids[i] && memcmp(got, v->ids[i], n * sizeof *got) == 0) continue;
        failed++;
        fprintf(stderr, "%s vector %zu \"%.*s\" differs\n", name, i, (int)v->len[i], v->text[i]);
        print_ids("expected", v->ids[i], v->n_ids[i]);
        print_ids("got     ", got, n);
    }
    if (failed) fail_msg("%zu of %zu %s vectors differ", failed, v->n, name);
}

// Concatenated decoding of ids, starting after `prev`.
static size_t decode_all(const cllm_tokenizer *t, int32_t prev, const int32_t *ids, size_t n,
                         char *out, size_t cap) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        cllm_status st = cllm_tokenizer_decode_token(t, prev, ids[i], out + total, cap - total,
                                                     &len);
        if (st != CLLM_OK) fail_msg("decode of %d failed: %s", ids[i], cllm_last_error());
        total += len;
        prev = ids[i];
    }
    return total;
}

// decode(encode(x)) == expected(x) for every vector. SentencePiece vocabularies (strip = 1):
// encode adds the dummy-prefix space; decoding as if after BOS (prev = bos for the first token)
// drops it, so the concatenation must equal x exactly; decoding from prev = -1 must give " " + x
// for non-empty x. Byte-level vocabularies: the concatenation equals x exactly.
static void check_round_trips(const cllm_tokenizer *t, const vectors *v, int strip) {
    int32_t ids[MAX_IDS * 2];
    char out[8192];
    size_t failed = 0;
    for (size_t i = 0; i < v->n; i++) {
        size_t n = encode(t, v->text[i], v->len[i], 0, ids, MAX_IDS * 2);
        size_t len = decode_all(t, strip ? cllm_tokenizer_bos(t) : -1, ids, n, out, sizeof out);
        int ok = len == v->len[i] && memcmp(out, v->text[i], len) == 0;
        if (strip && v->len[i] > 0) {
            size_t len2 = decode_all(t, -1, ids, n, out, sizeof out);
            ok = ok && len2 == v->len[i] + 1 && out[0] == ' ' &&
                 memcmp(out + 1, v->text[i], v->len[i]) == 0;
        }
        if (!ok) {
            failed++;
            fprintf(stderr, "round trip %zu \"%.*s\" gave \"%.*s\"\n", i, (int)v->len[i],
                    v->text[i], (int)len, out);
        }
    }
    if (failed) fail_msg("%zu round trips differ", failed);
}

static cllm_tokenizer *open_tok(const char *path) {
    cllm_tokenizer *t = NULL;
    cllm_status st = cllm_tokenizer_open(path, &t);
    if (st != CLLM_OK) fail_msg("cannot open %s: %s", path, cllm_last_error());
    return t;
}

// Encodes NUL-terminated s and compares with the expected ids.
static void expect_ids(const cllm_tokenizer *t, const char *s, const int32_t *want, size_t n) {
    int32_t got[256];
    size_t got_n = encode(t, s, strlen(s), 0, got, 256);
    if (got_n != n || memcmp(got, want, n * sizeof *got) != 0) {
        fprintf(stderr, "encoding \"%s\":\n", s);
        print_ids("expected", want, n);
        print_ids("got     ", got, got_n);
        fail_msg("wrong encoding of \"%s\"", s);
    }
}
#define EXPECT_IDS(t, s, ...)                                                                      \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        expect_ids((t), (s), want_, sizeof want_ / sizeof want_[0]);                               \
    } while (0)

// ---- reference vocabularies -------------------------------------------------------------------

static void test_llama2_vectors(void **state) {
    (void)state;
    const char *path = cllm_test_shared_path("tokenizers/llama2.tokenizer.bin");
    double t0 = cllm_now_seconds();
    cllm_tokenizer *t = open_tok(path);
    double dt = cllm_now_seconds() - t0;
    fprintf(stderr, "llama2 tokenizer.bin loaded in %.1f ms\n", dt * 1e3);
    assert_true(dt < 0.5); // 32000 pieces: milliseconds, with a wide margin for slow CI
    assert_int_equal(cllm_tokenizer_vocab_size(t), 32000);
    assert_int_equal(cllm_tokenizer_bos(t), 1);
    assert_int_equal(cllm_tokenizer_eos(t), 2);
    vectors *v = load_vectors("llama2");
    check_vectors(t, v, "llama2");
    check_round_trips(t, v, 1);
    free_vectors(v);
    cllm_tokenizer_free(t);
}

// Llama 2's vocabulary lets the scored encoder merge each space-led word on its own
// (space_splits); the result must equal merging the whole text at once. Random mixes of the
// reference strings (spaces, newlines, emoji, CJK, byte fallback) are encoded both ways.
static void test_llama2_word_split_exact(void **state) {
    (void)state;
    cllm_tokenizer *t = open_tok(cllm_test_shared_path("tokenizers/llama2.tokenizer.bin"));
    assert_int_equal(t->space_splits, 1);
    vectors *v = load_vectors("llama2");
    static const char *const seps[] = {" ", "  ", "\n", "", " \t ", "x "};
    size_t cap = 1 << 16;
    char *text = malloc(cap);
    int32_t *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    assert_true(text && a && b);
    uint64_t rng = 42;
    for (int round = 0; round < 20; round++) {
        size_t len = 0;
        for (int k = 0; k < 12; k++) {
            size_t i = cllm_test_rand(&rng) % v->n;
            const char *sep = seps[cllm_test_rand(&rng) % 6];
            if (len + v->len[i] + strlen(sep) >= cap) break;
            memcpy(text + len, v->text[i], v->len[i]);
            len += v->len[i];
            memcpy(text + len, sep, strlen(sep));
            len += strlen(sep);
        }
        t->space_splits = 1;
        size_t na = encode(t, text, len, 0, a, cap);
        t->space_splits = 0;
        size_t nb = encode(t, text, len, 0, b, cap);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
    }
    free(text);
    free(a);
    free(b);
    free_vectors(v);
    cllm_tokenizer_free(t);
}

static void test_gpt2_vectors(void **state) {
    (void)state;
    cllm_tokenizer *t = open_tok(cllm_test_shared_path("tokenizers/gpt2.tokenizer.json"));
    assert_int_equal(cllm_tokenizer_vocab_size(t), 50257);
    assert_int_equal(cllm_tokenizer_bos(t), -1);
    assert_int_equal(cllm_tokenizer_eos(t), 50256); // <|endoftext|>
    vectors *v = load_vectors("gpt2");
    check_vectors(t, v, "gpt2");
    check_round_trips(t, v, 0);
    free_vectors(v);
    cllm_tokenizer_free(t);
}


// ---- tokenizer bundles ------------------------------------------------------------------------

// The Llama 2 vocabulary as llama.cpp stores it in GGUF (pieces with U+2581 for spaces, <s> and
// </s> as control tokens, byte pieces typed BYTE, scores), turned into a bundle: SentencePiece-
// style BPE whose merges come from the scores must reproduce SentencePiece's encodings.
static cllm_test_buf llama2_gguf(void) {
    size_t size;
    uint8_t *bin = read_all(cllm_test_shared_path("tokenizers/llama2.tokenizer.bin"), &size);
    cllm_test_buf pieces = {0}, scores = {0}, types = {0};
    size_t n = 0;
    for (size_t pos = 4; pos + 8 <= size; n++) {
        float score;
        memcpy(&score, bin + pos, 4);
        uint32_t len = cllm_load_le32(bin + pos + 4);
        const char *p = (const char *)bin + pos + 8;
        pos += 8 + len;
        char piece[256];
        size_t out = 0;
        if (len == 5 && !memcmp(p, "\n<s>\n", 5)) p = "<s>", len = 3;
        if (len == 6 && !memcmp(p, "\n</s>\n", 6)) p = "</s>", len = 4;
        for (uint32_t i = 0; i < len && out + 3 < sizeof piece; i++) {
            if (p[i] == ' ') memcpy(piece + out, "\xE2\x96\x81", 3), out += 3;
            else piece[out++] = p[i];
        }
        cllm_tb_strn(&pieces, piece, out);
        cllm_tb_f32(&scores, score);
        uint32_t type = 1;
        if (n == 0) type = 2;
        else if (n <= 2) type = 3;
        else if (tok_parse_byte_piece((const uint8_t *)piece, out) >= 0) type = 6;
        cllm_tb_u32(&types, type);
    }
    free(bin);
    cllm_test_buf b = {0};
    cllm_tb_u32(&b, CLLM_GGUF_MAGIC);
    cllm_tb_u32(&b, 3);
    cllm_tb_u64(&b, 0);
    cllm_tb_u64(&b, 8);
    cllm_tb_kv_str(&b, "tokenizer.ggml.model", "llama");
    cllm_tb_kv_array(&b, "tokenizer.ggml.tokens", 8, n);
    cllm_tb_bytes(&b, pieces.p, pieces.n);
    cllm_tb_kv_array(&b, "tokenizer.ggml.scores", 6, n);
    cllm_tb_bytes(&b, scores.p, scores.n);
    cllm_tb_kv_array(&b, "tokenizer.ggml.token_type", 5, n);
    cllm_tb_bytes(&b, types.p, types.n);
    cllm_tb_kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
    cllm_tb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
    cllm_tb_kv_u32(&b, "tokenizer.ggml.unknown_token_id", 0);
    cllm_tb_kv_bool(&b, "tokenizer.ggml.add_bos_token", 1);
    free(pieces.p);
    free(scores.p);
    free(types.p);
    return b;
}

static void test_gguf_llama2_vectors(void **state) {
    (void)state;
    cllm_test_buf b = llama2_gguf();
    cllm_gguf *g = NULL;
    assert_int_equal(cllm_gguf_parse(b.p, b.n, &g), CLLM_OK);
    uint8_t *bundle = NULL;
    size_t size = 0;
    double t0 = cllm_now_seconds();
    assert_int_equal(cllm_bundle_from_gguf(g, NULL, &bundle, &size), CLLM_OK);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, bundle, size, 32000, &t), CLLM_OK);
    fprintf(stderr, "llama2 GGUF -> bundle (%zu bytes) -> tokenizer in %.0f ms\n", size,
            (cllm_now_seconds() - t0) * 1e3);
    assert_int_equal(cllm_tokenizer_vocab_size(t), 32000);
    assert_int_equal(cllm_tokenizer_bos(t), 1);
    assert_int_equal(cllm_tokenizer_eos(t), 2);
    assert_int_equal(cllm_tokenizer_add_bos(t), 1);
    assert_null(cllm_tokenizer_chat_template(t));
    vectors *v = load_vectors("llama2");
    check_vectors(t, v, "llama2 (GGUF bundle)");
    check_round_trips(t, v, 1);
    free_vectors(v);
    cllm_tokenizer_free(t);
    free(bundle);
    cllm_gguf_free(g);
    free(b.p);
}

// A gpt2 tokenizer.json wrapped in a bundle with a chat template and an EOS name.
static void test_bundle_gpt2(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = read_all(cllm_test_shared_path("tokenizers/gpt2.tokenizer.json"), &size);
    json_t *tok = json_loadb((const char *)data, size, 0, NULL);
    free(data);
    assert_non_null(tok);
    uint8_t *bundle = NULL;
    size_t n = 0;
    assert_int_equal(cllm_bundle_encode(tok, 0, "{{ x }}", 7, NULL, "<|endoftext|>", NULL,
                                        &bundle, &n), CLLM_OK);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, bundle, n, 50257, &t), CLLM_OK);
    assert_string_equal(cllm_tokenizer_chat_template(t), "{{ x }}");
    assert_int_equal(cllm_tokenizer_add_bos(t), 0);
    assert_int_equal(cllm_tokenizer_eos(t), 50256);
    vectors *v = load_vectors("gpt2");
    check_vectors(t, v, "gpt2 (bundle)");
    free_vectors(v);
    cllm_tokenizer_free(t);
    // The model's vocabulary must hold every token.
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, bundle, n, 50000, &t),
                     CLLM_ERR_FORMAT);
    assert_null(t);
    free(bundle);
}

static void expect_bundle(const char *json, cllm_status want, const char *needle) {
    cllm_tokenizer *t = NULL;
    cllm_status st = cllm_tokenizer_load(CLLM_TOKENIZER_BUNDLE, (const uint8_t *)json,
                                         strlen(json), 0, &t);
    if (st != want || (needle && !strstr(cllm_last_error(), needle)))
        fail_msg("bundle %s: status %d (%s), expected %d", json, st, cllm_last_error(), want);
    if (st == CLLM_OK) cllm_tokenizer_free(t);
    else assert_null(t);
}

static void test_bundle_errors(void **state) {
    (void)state;
#define TINY "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, " \
             "\"merges\": [\"a b\"]}}"
    expect_bundle("{\"codecllm_bundle\": 1, \"add_bos\": false, \"tokenizer\": " TINY "}",
                  CLLM_OK, NULL);
    expect_bundle("{\"codecllm_bundle\": 2, \"add_bos\": false, \"tokenizer\": " TINY "}",
                  CLLM_ERR_UNSUPPORTED, "version 2");
    expect_bundle("{\"add_bos\": false, \"tokenizer\": " TINY "}", CLLM_ERR_FORMAT,
                  "codecllm_bundle");
    expect_bundle("{\"codecllm_bundle\": 1, \"tokenizer\": " TINY "}", CLLM_ERR_FORMAT,
                  "add_bos");
    expect_bundle("{\"codecllm_bundle\": 1, \"add_bos\": 1, \"tokenizer\": " TINY "}",
                  CLLM_ERR_FORMAT, "add_bos");
    expect_bundle("{\"codecllm_bundle\": 1, \"add_bos\": true, \"tokenizer\": 3}",
                  CLLM_ERR_FORMAT, "tokenizer");
    expect_bundle("{\"codecllm_bundle\": 1, \"add_bos\": true, \"chat_template\": 5, "
                  "\"tokenizer\": " TINY "}", CLLM_ERR_FORMAT, "chat_template");
    expect_bundle("{\"codecllm_bundle\": 1, \"add_bos\": true, \"eos_token\": \"zz\", "
                  "\"tokenizer\": " TINY "}", CLLM_ERR_FORMAT, "zz");
    expect_bundle("{\"codecllm_bundle\": 1, \"add_bos\": true, \"tokenizer\": {\"model\": "
                  "{\"type\": \"WordPiece\", \"vocab\": {}}}}", CLLM_ERR_UNSUPPORTED, "WordPiece");
    expect_bundle("{\"codecllm_bundle\": 1,", CLLM_ERR_FORMAT, "invalid JSON");
    expect_bundle("[1]", CLLM_ERR_FORMAT, "not a JSON object");
#undef TINY
}

static void test_llama2_api(void **state) {
    (void)state;
    size_t size;
    uint8_t *bin = read_all(cllm_test_shared_path("tokenizers/llama2.tokenizer.bin"), &size);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, bin, size, 32001, &t),
                     CLLM_ERR_FORMAT);
    assert_null(t);
    assert_non_null(strstr(cllm_last_error(), "32000"));
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, bin, size - 3, 0, &t),
                     CLLM_ERR_CORRUPT); // the last piece is cut short
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, bin, size, 32000, &t), CLLM_OK);
    free(bin);
    EXPECT_IDS(t, "Hello world", 15043, 3186);
    // add_bos, and the capacity protocol: too small -> ARG with the needed count.
    int32_t ids[8];
    size_t n = 0;
    assert_int_equal(cllm_tokenizer_encode(t, "Hello world", 11, 1, ids, 2, &n), CLLM_ERR_ARG);
    assert_int_equal(n, 3);
    assert_int_equal(cllm_tokenizer_encode(t, "Hello world", 11, 1, ids, n, &n), CLLM_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 15043);
    assert_int_equal(cllm_tokenizer_encode(t, NULL, 0, 1, ids, 8, &n), CLLM_OK);
    assert_int_equal(n, 1);
    // Decoding: the leading space goes after BOS only; byte pieces give raw bytes.
    char buf[64];
    size_t len;
    assert_int_equal(cllm_tokenizer_decode_token(t, 1, 15043, buf, sizeof buf, &len), CLLM_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "Hello", 5);
    assert_int_equal(cllm_tokenizer_decode_token(t, -1, 15043, buf, sizeof buf, &len), CLLM_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(cllm_tokenizer_decode_token(t, 15043, 13, buf, sizeof buf, &len), CLLM_OK);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], '\n');
    assert_int_equal(cllm_tokenizer_decode_token(t, 15043, 3 + 0xE2, buf, sizeof buf, &len),
                     CLLM_OK);
    assert_int_equal((uint8_t)buf[0], 0xE2);
    assert_int_equal(cllm_tokenizer_decode_token(t, -1, 15043, buf, 5, &len), CLLM_ERR_ARG);
    assert_int_equal(cllm_tokenizer_decode_token(t, -1, 32000, buf, sizeof buf, &len),
                     CLLM_ERR_ARG);
    assert_int_equal(cllm_tokenizer_decode_token(t, -1, -1, buf, sizeof buf, &len), CLLM_ERR_ARG);
    cllm_tokenizer_free(t);
}

// ---- hand-built fixtures ----------------------------------------------------------------------

// tiny_bytelevel.json: byte-level BPE, Llama-3 Split regex + ByteLevel(use_regex false), merges in
// the [["a", "b"], ...] form, ignore_merges, added tokens <|begin_of_text|> = 20 and
// <|end_of_text|> = 21. Vocabulary: h0 e1 l2 o3 Ġ4 w5 r6 d7 i8 !9 he10 ll11 hell12 hello13 Ġw14
// or15 Ġwor16 ld17 !!18 Ġhi19 Ġh22 Ċ23; merges by rank: 0 h+e, 1 l+l, 2 he+ll, 3 hell+o,
// 4 Ġ+w, 5 o+r, 6 Ġw+or, 7 l+d, 8 !+!, 9 Ġ+h.
static void test_fixture_bytelevel(void **state) {
    (void)state;
    cllm_tokenizer *t = open_tok(fixture_path("tiny_bytelevel.json"));
    assert_int_equal(cllm_tokenizer_vocab_size(t), 24);
    assert_int_equal(cllm_tokenizer_bos(t), 20);
    assert_int_equal(cllm_tokenizer_eos(t), 21);
    // The regex gives "hello" | " world". hello: h+e (0), l+l (1), he+ll (2), hell+o (3).
    // Ġworld: Ġ+w (4), o+r (5), Ġw+or (6), l+d (7); "Ġwor ld" is no merge -> Ġwor ld.
    EXPECT_IDS(t, "hello world", 13, 16, 17);
    // Added tokens are cut out first and keep their ids; the text between them is encoded alone.
    EXPECT_IDS(t, "<|begin_of_text|>hello world<|end_of_text|>", 20, 13, 16, 17, 21);
    // "  hello": \s+(?!\S) takes the first space alone, [^\r\n\p{L}\p{N}]?\p{L}+ takes " hello".
    // In Ġhello the pair Ġ+h (rank 9) loses to h+e (rank 0), and Ġ+he never merges: Ġ hello.
    EXPECT_IDS(t, "  hello", 4, 4, 13);
    // ignore_merges: "Ġhi" is a piece although no merge builds it; "hi" is not -> h i.
    EXPECT_IDS(t, " hi", 19);
    EXPECT_IDS(t, "hi", 0, 8);
    // "!!!" is one word; the leftmost !+! merges first: !! !.
    EXPECT_IDS(t, "hi!!!", 0, 8, 18, 9);
    // "\n" is its own word (\s*[\r\n]+) and maps to Ċ.
    EXPECT_IDS(t, "hello\n", 13, 23);
    // 'x' is not in the vocabulary, which has neither byte fallback nor unk.
    int32_t ids[16];
    size_t n;
    assert_int_equal(cllm_tokenizer_encode(t, "hex", 3, 0, ids, 16, &n), CLLM_ERR_ARG);
    assert_non_null(strstr(cllm_last_error(), "\"x\""));
    // Hugging Face tokenizers take Unicode text: invalid UTF-8 is refused.
    assert_int_equal(cllm_tokenizer_encode(t, "he\xff", 3, 0, ids, 16, &n), CLLM_ERR_ARG);
    // Round trips (add_bos is a no-op check here: BOS exists, so it comes first).
    static const char *const texts[] = {"hello world", "  hello", " hi", "hi!!!", "hello\n",
                                        "<|begin_of_text|>hello<|end_of_text|>", ""};
    char out[256];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t m = encode(t, texts[i], strlen(texts[i]), 1, ids, 16);
        assert_int_equal(ids[0], 20);
        size_t len = decode_all(t, -1, ids + 1, m - 1, out, sizeof out);
        assert_int_equal(len, strlen(texts[i]));
        assert_memory_equal(out, texts[i], len);
    }
    cllm_tokenizer_free(t);
}

// tiny_spm.json: SentencePiece-style BPE as Llama 2's tokenizer.json: normalizer Prepend("▁") +
// Replace(" ", "▁"), byte_fallback, unk <unk>, fuse_unk. Vocabulary: <unk>0 <s>1 </s>2 <0x0A>3
// <0xC3>4 <0xA9>5 ▁6 a7 b8 c9 ▁a10 ab11 ▁ab12 bc13 ▁abc14 ▁▁15; merges ("a b" strings) by
// rank: 0 ▁+a, 1 a+b, 2 ▁a+b, 3 b+c, 4 ▁ab+c, 5 ▁+▁.
static void test_fixture_spm(void **state) {
    (void)state;
    cllm_tokenizer *t = open_tok(fixture_path("tiny_spm.json"));
    assert_int_equal(cllm_tokenizer_vocab_size(t), 16);
    assert_int_equal(cllm_tokenizer_bos(t), 1);
    assert_int_equal(cllm_tokenizer_eos(t), 2);
    // ▁abc: ▁+a (0) beats a+b (1); then ▁a+b (2) beats b+c (3); then ▁ab+c (4).
    EXPECT_IDS(t, "abc", 14);
    // ▁ab▁c: ▁+a, ▁a+b; "▁ c" and "▁ab ▁" do not merge.
    EXPECT_IDS(t, "ab c", 12, 6, 9);
    // ▁cab: only a+b applies.
    EXPECT_IDS(t, "cab", 6, 9, 11);
    // ▁bc\n: "\n" is not a piece -> byte fallback <0x0A>.
    EXPECT_IDS(t, "bc\n", 6, 13, 3);
    // é = C3 A9: byte fallback. ñ = C3 B1: <0xB1> is missing -> <unk>; two such characters in a
    // row fuse into one <unk> (fuse_unk).
    EXPECT_IDS(t, "\xC3\xA9", 6, 4, 5);
    EXPECT_IDS(t, "\xC3\xB1", 6, 0);
    EXPECT_IDS(t, "\xC3\xB1\xC3\xB1" "a", 6, 0, 7);
    // ▁▁▁a: ▁+a (rank 0, at the end) first, then the leftmost ▁+▁.
    EXPECT_IDS(t, "  a", 15, 10);
    // An added token in the text; the rest gets its own "▁" prefix.
    EXPECT_IDS(t, "<s>a", 1, 10);
    int32_t ids[16];
    size_t n = 99;
    assert_int_equal(cllm_tokenizer_encode(t, "", 0, 0, ids, 16, &n), CLLM_OK);
    assert_int_equal(n, 0); // no "▁" for empty text
    // Round trips: decoding after BOS drops the "▁" prefix, so the text comes back exactly.
    static const char *const texts[] = {"abc", "ab c", "cab", "bc\n", "\xC3\xA9", "  a", "a  b"};
    char out[256];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t m = encode(t, texts[i], strlen(texts[i]), 1, ids, 16);
        assert_int_equal(ids[0], 1);
        size_t len = decode_all(t, ids[0], ids + 1, m - 1, out, sizeof out);
        assert_int_equal(len, strlen(texts[i]));
        assert_memory_equal(out, texts[i], len);
    }
    cllm_tokenizer_free(t);
}

// Inline variants for the components the fixtures do not use: a Metaspace pre-tokenizer
// (prepend_scheme "first", split) with NFC, and ByteLevel with add_prefix_space and its own regex.
static cllm_tokenizer *load_inline(const char *json) {
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_load(CLLM_TOKENIZER_HF_JSON, (const uint8_t *)json, strlen(json), 0, &t) !=
        CLLM_OK) {
        fail_msg("load failed: %s", cllm_last_error());
    }
    return t;
}

static void test_metaspace_and_prefix_space(void **state) {
    (void)state;
    cllm_tokenizer *t = load_inline(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, "
        "\"\\u2581\": 3, \"H\": 4, \"e\": 5, \"\\u2581H\": 6, \"<0x0A>\": 7}, \"merges\": "
        "[\"\\u2581 H\"], \"byte_fallback\": true, \"unk_token\": \"<unk>\"}, \"added_tokens\": "
        "[{\"id\": 1, \"content\": \"<s>\", \"special\": true}], \"normalizer\": {\"type\": "
        "\"NFC\"}, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", "
        "\"prepend_scheme\": \"first\", \"split\": true}}");
    // "▁He\n": ▁+H merges; \n by byte fallback.
    EXPECT_IDS(t, "He\n", 6, 5, 7);
    // After an added token the segment is not at the start: no prefix ("first"); the split
    // before each ▁ gives "He" | "▁He".
    EXPECT_IDS(t, "<s>He He", 1, 4, 5, 6, 5);
    char out[32];
    int32_t ids[8];
    size_t n = encode(t, "He He", 5, 1, ids, 8);
    assert_int_equal(ids[0], 1);
    size_t len = decode_all(t, 1, ids + 1, n - 1, out, sizeof out);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "He He", 5);
    cllm_tokenizer_free(t);

    t = load_inline("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"H\": 0, \"e\": 1, \"l\": 2, "
                    "\"o\": 3, \"\\u0120\": 4, \"He\": 5, \"<|endoftext|>\": 6}, \"merges\": "
                    "[\"H e\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                    "\"add_prefix_space\": true, \"use_regex\": true}}");
    assert_int_equal(cllm_tokenizer_bos(t), -1);
    assert_int_equal(cllm_tokenizer_eos(t), 6);
    // " Hello" -> "ĠHello" -> Ġ He l l o; add_bos adds nothing without a BOS.
    n = encode(t, "Hello", 5, 1, ids, 8);
    const int32_t want[] = {4, 5, 2, 2, 3};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    len = decode_all(t, -1, ids, n, out, sizeof out);
    assert_int_equal(len, 6);
    assert_memory_equal(out, " Hello", 6);
    cllm_tokenizer_free(t);
}

// ---- malformed input --------------------------------------------------------------------------

// A tokenizer.bin of the given pieces (scores 0 except where given).
static size_t make_bin(uint8_t *buf, int32_t max_len, const char *const *pieces, size_t n,
                       const float *scores) {
    size_t pos = 0;
    cllm_store_le32(buf, (uint32_t)max_len);
    pos += 4;
    for (size_t i = 0; i < n; i++) {
        float sc = scores ? scores[i] : 0.0f;
        memcpy(buf + pos, &sc, 4);
        cllm_store_le32(buf + pos + 4, (uint32_t)strlen(pieces[i]));
        memcpy(buf + pos + 8, pieces[i], strlen(pieces[i]));
        pos += 8 + strlen(pieces[i]);
    }
    return pos;
}

static cllm_status load_bin(const uint8_t *buf, size_t size) {
    cllm_tokenizer *t = NULL;
    cllm_status st = cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, buf, size, 0, &t);
    if (st == CLLM_OK) assert_non_null(t);
    else assert_null(t), assert_true(cllm_last_error()[0] != 0);
    cllm_tokenizer_free(t);
    return st;
}

static void test_malformed_bin(void **state) {
    (void)state;
    uint8_t buf[512];
    static const char *const pieces[] = {"<unk>", "\n<s>\n", "\n</s>\n", "a", "b", "ab"};
    const float scores[] = {0, 0, 0, -1, -1, 5};
    size_t size = make_bin(buf, 8, pieces, 6, scores);
    assert_int_equal(load_bin(buf, size), CLLM_OK);
    assert_int_equal(load_bin(buf, 0), CLLM_ERR_FORMAT);
    assert_int_equal(load_bin(buf, 3), CLLM_ERR_FORMAT);
    assert_int_equal(load_bin(buf, 4), CLLM_ERR_FORMAT); // no tokens
    assert_int_equal(load_bin(buf, 4 + 7), CLLM_ERR_CORRUPT); // record header cut
    assert_int_equal(load_bin(buf, size - 1), CLLM_ERR_CORRUPT); // piece bytes cut
    assert_non_null(strstr(cllm_last_error(), "token 5"));
    uint8_t bad[512];
    memcpy(bad, buf, size);
    cllm_store_le32(bad, 0); // max_token_length 0
    assert_int_equal(load_bin(bad, size), CLLM_ERR_FORMAT);
    cllm_store_le32(bad, (uint32_t)-5);
    assert_int_equal(load_bin(bad, size), CLLM_ERR_FORMAT);
    memcpy(bad, buf, size);
    cllm_store_le32(bad + 8, (uint32_t)-1); // length of token 0 negative
    assert_int_equal(load_bin(bad, size), CLLM_ERR_CORRUPT);
    cllm_store_le32(bad + 8, 0x7fffffff); // huge
    assert_int_equal(load_bin(bad, size), CLLM_ERR_CORRUPT);
    cllm_store_le32(bad + 8, 9); // above max_token_length 8
    assert_int_equal(load_bin(bad, size), CLLM_ERR_CORRUPT);
    memcpy(bad, buf, size);
    float nan_score = NAN;
    memcpy(bad + 4, &nan_score, 4);
    assert_int_equal(load_bin(bad, size), CLLM_ERR_CORRUPT);

    // This vocabulary has no " " and no byte pieces: the dummy prefix becomes <unk>; "ab" merges.
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, buf, size, 6, &t), CLLM_OK);
    EXPECT_IDS(t, "ab", 0, 5);
    EXPECT_IDS(t, "ba", 0, 4, 3);
    cllm_tokenizer_free(t);
    // Without <unk> the same text cannot be encoded.
    static const char *const no_unk[] = {"x", "a"};
    size = make_bin(buf, 8, no_unk, 2, NULL);
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, buf, size, 0, &t), CLLM_OK);
    assert_int_equal(cllm_tokenizer_bos(t), -1);
    int32_t ids[8];
    size_t n;
    assert_int_equal(cllm_tokenizer_encode(t, "a", 1, 0, ids, 8, &n), CLLM_ERR_ARG);
    cllm_tokenizer_free(t);
}

static cllm_status load_json(const char *json) {
    cllm_tokenizer *t = NULL;
    cllm_status st = cllm_tokenizer_load(CLLM_TOKENIZER_HF_JSON, (const uint8_t *)json,
                                         strlen(json), 0, &t);
    if (st == CLLM_OK) assert_non_null(t);
    else assert_null(t), assert_true(cllm_last_error()[0] != 0);
    cllm_tokenizer_free(t);
    return st;
}

#define MODEL(vocab, merges)                                                                       \
    "{\"model\": {\"type\": \"BPE\", \"vocab\": " vocab ", \"merges\": " merges "}"
#define AB "{\"a\": 0, \"b\": 1, \"ab\": 2}"

static void test_malformed_json(void **state) {
    (void)state;
    assert_int_equal(load_json(MODEL(AB, "[\"a b\"]") "}"), CLLM_OK);
    assert_int_equal(load_json(MODEL(AB, "[[\"a\", \"b\"]]") "}"), CLLM_OK);
    assert_int_equal(load_json(""), CLLM_ERR_FORMAT);
    assert_int_equal(load_json("{\"model\": "), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "invalid JSON"));
    assert_int_equal(load_json("[1, 2]"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json("{}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}"),
                     CLLM_ERR_UNSUPPORTED);
    assert_int_equal(load_json(MODEL("[]", "[]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "{}") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL("{\"a\": -1}", "[]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL("{\"a\": 1.5}", "[]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL("{\"a\": 99999999999}", "[]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL("{\"a\": 0, \"b\": 0}", "[]") "}"), CLLM_ERR_CORRUPT);
    // Merges naming unknown tokens, or of the wrong shape.
    assert_int_equal(load_json(MODEL(AB, "[\"a c\"]") "}"), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), "\"c\" is not in the vocabulary"));
    assert_int_equal(load_json(MODEL("{\"a\": 0, \"b\": 1}", "[[\"a\", \"b\"]]") "}"),
                     CLLM_ERR_CORRUPT); // "ab" missing
    assert_int_equal(load_json(MODEL(AB, "[\"ab\"]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "[[\"a\"]]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "[[\"a\", 1]]") "}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "[7]") "}"), CLLM_ERR_FORMAT);
    // Components.
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"pre_tokenizer\": {\"type\": \"Split\", "
                               "\"pattern\": {\"Regex\": \"(a\"}, \"behavior\": "
                               "\"Isolated\"}}"), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "regex"));
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"pre_tokenizer\": {\"type\": \"Split\", "
                               "\"pattern\": {\"Regex\": \"a\"}, \"behavior\": "
                               "\"Contiguous\"}}"), CLLM_ERR_UNSUPPORTED);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"pre_tokenizer\": {\"type\": "
                               "\"Whitespace\"}}"), CLLM_ERR_UNSUPPORTED);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"pre_tokenizer\": [1]}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"normalizer\": {\"type\": "
                               "\"Lowercase\"}}"), CLLM_ERR_UNSUPPORTED);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"added_tokens\": {}}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"added_tokens\": [{\"id\": 3}]}"),
                     CLLM_ERR_FORMAT);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"added_tokens\": [{\"id\": 3, "
                               "\"content\": \"\"}]}"), CLLM_ERR_FORMAT);
    assert_int_equal(load_json("{\"model\": {\"type\": \"BPE\", \"vocab\": " AB ", "
                               "\"merges\": [], \"unk_token\": \"<unk>\"}}"),
                     CLLM_ERR_CORRUPT);
    assert_int_equal(load_json("{\"model\": {\"type\": \"BPE\", \"vocab\": " AB ", "
                               "\"merges\": [], \"byte_fallback\": 1}}"), CLLM_ERR_FORMAT);
    // Ids are bounded by the entries before anything is allocated: a 59-byte file naming id
    // 16777215 cost 412 MB. The bound is 2 * entries + 1024 (here 3 vocab + 1 added: 1032).
    assert_int_equal(load_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":16777215},"
                               "\"merges\":[]}}"), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "id 16777215 is outside [0, 1026)"));
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"added_tokens\": [{\"id\": 1031, "
                               "\"content\": \"<x>\"}]}"), CLLM_OK);
    assert_int_equal(load_json(MODEL(AB, "[]") ", \"added_tokens\": [{\"id\": 1032, "
                               "\"content\": \"<x>\"}]}"), CLLM_ERR_FORMAT);
}

static void test_api_errors(void **state) {
    (void)state;
    cllm_tokenizer *t = (cllm_tokenizer *)1;
    assert_int_equal(cllm_tokenizer_open("/nonexistent/tokenizer.bin", &t), CLLM_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(cllm_last_error(), "/nonexistent/tokenizer.bin"));
    assert_int_equal(cllm_tokenizer_open(NULL, &t), CLLM_ERR_ARG);
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_NONE, (const uint8_t *)"x", 1, 0, &t),
                     CLLM_ERR_ARG);
    assert_int_equal(cllm_tokenizer_load(CLLM_TOKENIZER_LLAMA2C, NULL, 5, 0, &t), CLLM_ERR_ARG);
    cllm_tokenizer_free(NULL);
    assert_int_equal(cllm_tokenizer_vocab_size(NULL), 0);
    assert_int_equal(cllm_tokenizer_bos(NULL), -1);
}

// ---- the tokenizer stored in a .cllm container ------------------------------------------------

// Writes a tensor-less container carrying `tok` (kind HF JSON unless size 0) with vocab_size.
static const char *write_container(const char *name, const uint8_t *tok, size_t size,
                                   uint32_t vocab_size) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", cllm_test_tmpdir(), name);
    cllm_model_config cfg = {
        .arch = CLLM_ARCH_LLAMA, .dim = 64, .hidden_dim = 172, .n_layers = 2, .n_heads = 4,
        .n_kv_heads = 2, .head_dim = 16, .vocab_size = vocab_size, .context_len = 128,
        .rope_theta = 10000.0f, .norm_eps = 1e-5f, .bos_id = 1, .eos_id = 2,
    };
    cllm_writer *w = NULL;
    cllm_tokenizer_kind kind = size ? CLLM_TOKENIZER_HF_JSON : CLLM_TOKENIZER_NONE;
    if (cllm_writer_open(path, &cfg, 0, kind, tok, size, &w) != CLLM_OK ||
        cllm_writer_finish(w) != CLLM_OK) {
        fail_msg("cannot write %s: %s", path, cllm_last_error());
    }
    return path;
}

static void test_open_container(void **state) {
    (void)state;
    size_t size;
    uint8_t *json = read_all(fixture_path("tiny_spm.json"), &size);
    cllm_tokenizer *t = open_tok(write_container("tok.cllm", json, size, 32));
    assert_int_equal(cllm_tokenizer_vocab_size(t), 16);
    EXPECT_IDS(t, "abc", 14);
    cllm_tokenizer_free(t);
    // The model's vocabulary (8) is smaller than the tokenizer's (16).
    const char *path = write_container("small_vocab.cllm", json, size, 8);
    assert_int_equal(cllm_tokenizer_open(path, &t), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "small_vocab.cllm"));
    free(json);
    path = write_container("no_tok.cllm", NULL, 0, 32);
    assert_int_equal(cllm_tokenizer_open(path, &t), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "no tokenizer"));
    assert_null(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_vectors),   cmocka_unit_test(test_llama2_api),
        cmocka_unit_test(test_gpt2_vectors),     cmocka_unit_test(test_fixture_bytelevel),
        cmocka_unit_test(test_fixture_spm),      cmocka_unit_test(test_malformed_bin),
        cmocka_unit_test(test_malformed_json),   cmocka_unit_test(test_api_errors),
        cmocka_unit_test(test_metaspace_and_prefix_space),
        cmocka_unit_test(test_open_container),
        cmocka_unit_test(test_llama2_word_split_exact),
        cmocka_unit_test(test_gguf_llama2_vectors), cmocka_unit_test(test_bundle_gpt2),
        cmocka_unit_test(test_bundle_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
