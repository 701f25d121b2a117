// Batched decoding (cllm_engine_forward_batch) on the CPU with stories260K: sequences with
// different prompts, joining and leaving between calls, long prompts spread over several steps,
// give bit for bit the logits each gives alone; every argument error is refused with a message.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecllm.h"
#include "testutil.h"

#define VOCAB 512
#define N_SEQ 5
#define N_GEN 24

static char model_path[512];

// stories260K converted once (lossless, so the stream provider decodes per use).
static const char *model(void) {
    if (model_path[0]) return model_path;
    const char *in = cllm_test_shared_path("models/stories260K.bin");
    snprintf(model_path, sizeof model_path, "%s/stories260K.cllm", cllm_test_tmpdir());
    cllm_convert_options opt;
    memset(&opt, 0, sizeof opt);
    opt.encode.codec = CLLM_CODEC_LOSSLESS;
    opt.encode.n_threads = 1;
    if (cllm_convert(in, model_path, &opt) != CLLM_OK) fail_msg("convert: %s", cllm_last_error());
    return model_path;
}

static cllm_engine *open_engine(cllm_container **c, uint32_t n_seq, int threads) {
    assert_int_equal(cllm_container_open(model(), c), CLLM_OK);
    cllm_engine_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_seq = n_seq;
    opt.n_threads = threads;
    opt.no_verify = 1;
    cllm_engine *e;
    if (cllm_engine_open(*c, &opt, &e) != CLLM_OK) fail_msg("open: %s", cllm_last_error());
    return e;
}

static int32_t argmax(const float *l) {
    int32_t best = 0;
    for (int v = 1; v < VOCAB; v++)
        if (l[v] > l[best]) best = v;
    return best;
}

// Prompt s: lengths 1 to 150 (several steps of 64 tokens), different ids.
static const size_t prompt_len[N_SEQ] = {1, 7, 70, 3, 150};
static void prompt(int s, int32_t *ids) {
    ids[0] = 1;
    uint64_t st = 77 + (uint64_t)s;
    for (size_t i = 1; i < prompt_len[s]; i++) ids[i] = (int32_t)(3 + cllm_test_rand(&st) % 500);
}

// Sequence s alone (seq 0 of its own engine): the prompt in one call, then N_GEN greedy tokens;
// ref receives the (N_GEN + 1, VOCAB) logits after the prompt and after each generated token.
static void alone(int s, float *ref) {
    cllm_container *c;
    cllm_engine *e = open_engine(&c, 1, 1);
    int32_t ids[160];
    prompt(s, ids);
    size_t n = prompt_len[s];
    assert_int_equal(cllm_engine_forward(e, ids, n, 0, ref, VOCAB, 0), CLLM_OK);
    for (int g = 0; g < N_GEN; g++) {
        int32_t t = argmax(ref + (size_t)g * VOCAB);
        assert_int_equal(cllm_engine_forward(e, &t, 1, n + (size_t)g, ref + (size_t)(g + 1) * VOCAB,
                                             VOCAB, 0),
                         CLLM_OK);
    }
    cllm_engine_free(e);
    cllm_container_free(c);
}

// All sequences in one engine: sequence s joins at call 2*s (its prompt in chunks of at most 40
// tokens, one chunk per call, beside the others' decode steps) and decodes N_GEN tokens; slots
// are used in reverse order. Every logits row must equal the lone run's bit for bit.
static void test_batch_equals_alone(void **state) {
    (void)state;
    float *ref = malloc((size_t)N_SEQ * (N_GEN + 1) * VOCAB * sizeof *ref);
    for (int s = 0; s < N_SEQ; s++) alone(s, ref + (size_t)s * (N_GEN + 1) * VOCAB);
    cllm_container *c;
    cllm_engine *e = open_engine(&c, N_SEQ, 2);
    int32_t ids[N_SEQ][160], next[N_SEQ];
    size_t fed[N_SEQ] = {0}, gen[N_SEQ] = {0};
    for (int s = 0; s < N_SEQ; s++) prompt(s, ids[s]);
    float logits[N_SEQ * VOCAB];
    for (int call = 0; call < 200; call++) {
        cllm_batch_item items[N_SEQ];
        int who[N_SEQ];
        size_t n_items = 0;
        for (int s = 0; s < N_SEQ; s++) {
            if (call < 2 * s || gen[s] == N_GEN) continue;
            cllm_batch_item it = {(uint32_t)(N_SEQ - 1 - s), NULL, 0, 0, 1};
            if (fed[s] < prompt_len[s]) {  // a prompt chunk
                it.tokens = ids[s] + fed[s];
                it.n = prompt_len[s] - fed[s] < 40 ? prompt_len[s] - fed[s] : 40;
                it.pos = fed[s];
                it.want_logits = fed[s] + it.n == prompt_len[s];
            } else {
                it.tokens = &next[s];
                it.n = 1;
                it.pos = prompt_len[s] + gen[s];
            }
            who[n_items] = s;
            items[n_items++] = it;
        }
        if (n_items == 0) break;
        if (cllm_engine_forward_batch(e, items, n_items, logits, sizeof logits / sizeof *logits))
            fail_msg("forward_batch: %s", cllm_last_error());
        for (size_t i = 0, row = 0; i < n_items; i++) {
            int s = who[i];
            int was_prompt = fed[s] < prompt_len[s];
            if (was_prompt) fed[s] += items[i].n;
            else gen[s]++;
            if (!items[i].want_logits) continue;
            const float *want = ref + ((size_t)s * (N_GEN + 1) + (was_prompt ? 0 : gen[s])) * VOCAB;
            if (memcmp(logits + row * VOCAB, want, VOCAB * sizeof(float)))
                fail_msg("sequence %d, %s %zu: logits differ from the lone run", s,
                         was_prompt ? "prompt" : "token", gen[s]);
            next[s] = argmax(logits + row * VOCAB);
            row++;
        }
    }
    for (int s = 0; s < N_SEQ; s++) {
        assert_int_equal(gen[s], N_GEN);
        assert_int_equal(cllm_engine_seq_n_past(e, (uint32_t)(N_SEQ - 1 - s)),
                         prompt_len[s] + N_GEN);
    }
    cllm_engine_free(e);
    cllm_container_free(c);
    free(ref);
}

static void expect_arg(cllm_engine *e, const cllm_batch_item *it, size_t n, float *l, size_t cap,
                       const char *msg) {
    assert_int_equal(cllm_engine_forward_batch(e, it, n, l, cap), CLLM_ERR_ARG);
    if (!strstr(cllm_last_error(), msg)) fail_msg("'%s' lacks '%s'", cllm_last_error(), msg);
}

static void test_batch_args(void **state) {
    (void)state;
    cllm_container *c;
    cllm_engine *e = open_engine(&c, 3, 1);
    assert_int_equal(cllm_engine_n_seq(e), 3);
    assert_true(cllm_engine_step_tokens(e) >= 1);
    float l[3 * VOCAB];
    int32_t ok[4] = {1, 5, 6, 7}, bad = VOCAB;
    cllm_batch_item two[2] = {{0, ok, 2, 0, 1}, {2, ok, 4, 0, 1}};
    expect_arg(e, two, 0, l, 3 * VOCAB, "no items");
    expect_arg(e, NULL, 1, l, 3 * VOCAB, "no items");
    cllm_batch_item it = {3, ok, 1, 0, 1};
    expect_arg(e, &it, 1, l, VOCAB, "sequence 3, the engine holds 3");
    cllm_batch_item dup[2] = {{1, ok, 1, 0, 1}, {1, ok + 1, 1, 1, 1}};
    expect_arg(e, dup, 2, l, 3 * VOCAB, "item 1: sequence 1 appears twice");
    it = (cllm_batch_item){1, ok, 0, 0, 1};
    expect_arg(e, &it, 1, l, VOCAB, "item 0: no tokens");
    it = (cllm_batch_item){1, &bad, 1, 0, 1};
    expect_arg(e, &it, 1, l, VOCAB, "outside the vocabulary");
    it = (cllm_batch_item){1, ok, 1, 1, 1};
    expect_arg(e, &it, 1, l, VOCAB, "leaves a hole");
    static int32_t ones[513];
    for (int i = 0; i < 513; i++) ones[i] = 1;
    it = (cllm_batch_item){1, ones, 513, 0, 1};
    expect_arg(e, &it, 1, l, VOCAB, "exceed the context of 512");
    expect_arg(e, two, 2, l, 2 * VOCAB - 1, "logits buffer holds");
    expect_arg(e, two, 2, NULL, 0, "logits buffer holds");
    cllm_batch_item four[4] = {{0, ok, 1, 0, 0}, {1, ok, 1, 0, 0}, {2, ok, 1, 0, 0}, {0, ok, 1, 0, 0}};
    expect_arg(e, four, 4, l, 3 * VOCAB, "4 items, the engine holds 3");
    // Nothing ran: every sequence is still empty.
    for (uint32_t s = 0; s < 3; s++) assert_int_equal(cllm_engine_seq_n_past(e, s), 0);
    // No logits wanted: no buffer needed.
    cllm_batch_item quiet[2] = {{0, ok, 2, 0, 0}, {2, ok, 4, 0, 0}};
    assert_int_equal(cllm_engine_forward_batch(e, quiet, 2, NULL, 0), CLLM_OK);
    assert_int_equal(cllm_engine_seq_n_past(e, 0), 2);
    assert_int_equal(cllm_engine_seq_n_past(e, 1), 0);
    assert_int_equal(cllm_engine_seq_n_past(e, 2), 4);
    // The single-sequence calls are sequence 0.
    assert_int_equal(cllm_engine_n_past(e), 2);
    assert_int_equal(cllm_engine_forward(e, ok + 2, 1, 2, l, VOCAB, 0), CLLM_OK);
    assert_int_equal(cllm_engine_seq_n_past(e, 0), 3);
    cllm_engine_seq_reset(e, 2);
    assert_int_equal(cllm_engine_seq_n_past(e, 2), 0);
    assert_int_equal(cllm_engine_seq_n_past(e, 0), 3);
    cllm_engine_reset(e);
    assert_int_equal(cllm_engine_seq_n_past(e, 0), 0);
    assert_int_equal(cllm_engine_seq_n_past(e, 7), 0);  // out of range: 0, no crash
    cllm_engine_seq_reset(e, 7);
    expect_arg(NULL, &it, 1, l, VOCAB, "NULL engine");
    cllm_engine_free(e);
    cllm_container_free(c);
    // Too many sequences for an engine.
    assert_int_equal(cllm_container_open(model(), &c), CLLM_OK);
    cllm_engine_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_seq = 1u << 20;
    opt.no_verify = 1;
    assert_int_equal(cllm_engine_open(c, &opt, &e), CLLM_ERR_ARG);
    assert_non_null(strstr(cllm_last_error(), "n_seq"));
    cllm_container_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_equals_alone),
        cmocka_unit_test(test_batch_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
