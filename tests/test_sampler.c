// Sampler tests: greedy, top-k and top-p truncation, temperature, seed reproducibility, and
// refusal of bad logits.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "codecllm.h"

#include <math.h>
#include <string.h>

static cllm_sampler *make(float temp, uint32_t top_k, float top_p, uint64_t seed, size_t vocab) {
    cllm_sampler_params p = {.temperature = temp, .top_k = top_k, .top_p = top_p, .seed = seed};
    cllm_sampler *s = NULL;
    assert_int_equal(cllm_sampler_create(&p, vocab, &s), CLLM_OK);
    return s;
}

// Histogram of `draws` samples.
static void histogram(cllm_sampler *s, const float *logits, size_t n, int draws, int *counts) {
    memset(counts, 0, n * sizeof *counts);
    for (int i = 0; i < draws; i++) {
        int32_t t;
        assert_int_equal(cllm_sampler_sample(s, logits, n, &t), CLLM_OK);
        assert_true(t >= 0 && (size_t)t < n);
        counts[t]++;
    }
}

static void test_greedy(void **state) {
    (void)state;
    float l[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, -INFINITY};
    cllm_sampler *s = make(0.0f, 0, 1.0f, 1, 6);
    int32_t t;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cllm_sampler_sample(s, l, 6, &t), CLLM_OK);
        assert_int_equal(t, 1);  // the first of the tied maxima
    }
    cllm_sampler_free(s);
}

static void test_top_k(void **state) {
    (void)state;
    float l[8] = {1.0f, 4.0f, 2.0f, 3.9f, 0.0f, 3.8f, -2.0f, 1.5f};
    cllm_sampler *s = make(1.0f, 3, 1.0f, 42, 8);
    int counts[8];
    histogram(s, l, 8, 3000, counts);
    for (int i = 0; i < 8; i++) {
        int in_top3 = i == 1 || i == 3 || i == 5;
        if (in_top3) assert_true(counts[i] > 700);  // ~ 36%, 33%, 30%
        else assert_int_equal(counts[i], 0);
    }
    cllm_sampler_free(s);
    s = make(1.0f, 1, 1.0f, 42, 8);  // top-1 is greedy
    histogram(s, l, 8, 100, counts);
    assert_int_equal(counts[1], 100);
    cllm_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    // Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (logits are their logs).
    float l[5];
    const double p[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    for (int i = 0; i < 5; i++) l[i] = (float)log(p[i]);
    int counts[5];
    cllm_sampler *s = make(1.0f, 0, 0.7f, 3, 5);  // nucleus {0, 1}: 0.75 >= 0.7
    histogram(s, l, 5, 3000, counts);
    assert_int_equal(counts[2] + counts[3] + counts[4], 0);
    assert_true(counts[0] > 1800 && counts[0] < 2200);  // 2/3 of the draws
    cllm_sampler_free(s);
    s = make(1.0f, 0, 0.8f, 3, 5);  // {0, 1, 2}: 0.875 >= 0.8
    histogram(s, l, 5, 3000, counts);
    assert_true(counts[2] > 0);
    assert_int_equal(counts[3] + counts[4], 0);
    cllm_sampler_free(s);
    s = make(1.0f, 2, 0.9f, 3, 5);  // top-k 2 first, then top-p over the renormalised pair
    histogram(s, l, 5, 3000, counts);
    assert_int_equal(counts[2] + counts[3] + counts[4], 0);
    assert_true(counts[1] > 0);
    cllm_sampler_free(s);
}

static void test_temperature(void **state) {
    (void)state;
    float l[2] = {0.0f, (float)log(3.0)};  // p = 1/4, 3/4 at T = 1
    int counts[2];
    cllm_sampler *s = make(1.0f, 0, 1.0f, 11, 2);
    histogram(s, l, 2, 8000, counts);
    assert_true(fabs(counts[1] / 8000.0 - 0.75) < 0.03);
    cllm_sampler_free(s);
    s = make(0.5f, 0, 1.0f, 11, 2);  // p ~ 1 : 9 at T = 1/2
    histogram(s, l, 2, 8000, counts);
    assert_true(fabs(counts[1] / 8000.0 - 0.9) < 0.03);
    cllm_sampler_free(s);
}

static void test_seed(void **state) {
    (void)state;
    float l[50];
    for (int i = 0; i < 50; i++) l[i] = (float)sin(i * 0.7) * 2.0f;
    int32_t a[200], b[200], c[200];
    cllm_sampler *s1 = make(0.9f, 20, 0.95f, 1234, 50), *s2 = make(0.9f, 20, 0.95f, 1234, 50);
    cllm_sampler *s3 = make(0.9f, 20, 0.95f, 1235, 50);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(cllm_sampler_sample(s1, l, 50, &a[i]), CLLM_OK);
        assert_int_equal(cllm_sampler_sample(s2, l, 50, &b[i]), CLLM_OK);
        assert_int_equal(cllm_sampler_sample(s3, l, 50, &c[i]), CLLM_OK);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, c, sizeof a) != 0);
    double u = cllm_sampler_uniform(s1);
    assert_true(u >= 0.0 && u < 1.0);
    cllm_sampler_free(s1);
    cllm_sampler_free(s2);
    cllm_sampler_free(s3);
}

static void test_min_p(void **state) {
    (void)state;
    // p ~ {0.63, 0.23, 0.086, 0.032}: min_p 0.2 keeps ids 0 and 1 (0.23 / 0.63 = 0.37), drops the
    // rest (0.086 / 0.63 = 0.14).
    float l[4] = {3.0f, 2.0f, 1.0f, 0.0f};
    cllm_sampler_params p = {.temperature = 1.0f, .top_p = 1.0f, .seed = 5, .min_p = 0.2f};
    cllm_sampler *s = NULL;
    assert_int_equal(cllm_sampler_create(&p, 4, &s), CLLM_OK);
    int counts[4] = {0};
    histogram(s, l, 4, 4000, counts);
    assert_int_equal(counts[2] + counts[3], 0);
    assert_true(fabs(counts[0] / 4000.0 - 0.731) < 0.03);  // e / (e + 1) after renormalising
    cllm_sampler_free(s);
    p.min_p = 1.5f;
    assert_int_equal(cllm_sampler_create(&p, 4, &s), CLLM_ERR_ARG);
}

static void test_repeat_penalty(void **state) {
    (void)state;
    float l[4] = {2.0f, 1.9f, -1.0f, -1.1f};
    cllm_sampler_params p = {.temperature = 0.0f, .top_p = 1.0f, .repeat_penalty = 1.5f,
                             .repeat_last_n = 2};
    cllm_sampler *s = NULL;
    assert_int_equal(cllm_sampler_create(&p, 4, &s), CLLM_OK);
    int32_t t;
    assert_int_equal(cllm_sampler_sample(s, l, 4, &t), CLLM_OK);
    assert_int_equal(t, 0);
    cllm_sampler_accept(s, 0);  // 2.0 / 1.5 = 1.33 < 1.9
    assert_int_equal(cllm_sampler_sample(s, l, 4, &t), CLLM_OK);
    assert_int_equal(t, 1);
    cllm_sampler_accept(s, 0);  // counted once
    cllm_sampler_accept(s, 1);
    assert_int_equal(cllm_sampler_sample(s, l, 4, &t), CLLM_OK);
    assert_int_equal(t, 0);     // 1.33 against 1.27
    cllm_sampler_accept(s, 3);  // the ring of 2 forgets id 0: {1, 3}
    cllm_sampler_accept(s, 3);
    assert_int_equal(cllm_sampler_sample(s, l, 4, &t), CLLM_OK);
    assert_int_equal(t, 0);
    cllm_sampler_reset(s);
    assert_int_equal(cllm_sampler_sample(s, l, 4, &t), CLLM_OK);
    assert_int_equal(t, 0);
    float neg[2] = {-1.0f, -1.2f};  // a negative logit is multiplied: -1.5 < -1.2
    cllm_sampler_accept(s, 0);
    assert_int_equal(cllm_sampler_sample(s, neg, 2, &t), CLLM_OK);
    assert_int_equal(t, 1);
    cllm_sampler_free(s);
    p.repeat_penalty = -1.0f;
    assert_int_equal(cllm_sampler_create(&p, 4, &s), CLLM_ERR_ARG);
}

static void test_bad_input(void **state) {
    (void)state;
    cllm_sampler_params p = {.temperature = 1.0f, .top_p = 1.0f};
    cllm_sampler *s = NULL;
    assert_int_equal(cllm_sampler_create(&p, 0, &s), CLLM_ERR_ARG);
    p.top_p = 0.0f;
    assert_int_equal(cllm_sampler_create(&p, 4, &s), CLLM_ERR_ARG);
    p.top_p = 1.0f;
    p.temperature = NAN;
    assert_int_equal(cllm_sampler_create(&p, 4, &s), CLLM_ERR_ARG);
    s = make(1.0f, 0, 1.0f, 1, 4);
    float l[5] = {0, 1, NAN, 2, 3};
    int32_t t;
    assert_int_equal(cllm_sampler_sample(s, l, 4, &t), CLLM_ERR_ARG);  // NaN
    assert_int_equal(cllm_sampler_sample(s, l + 3, 5, &t), CLLM_ERR_ARG);  // n > vocab
    float inf[2] = {-INFINITY, -INFINITY};
    assert_int_equal(cllm_sampler_sample(s, inf, 2, &t), CLLM_ERR_ARG);
    cllm_sampler_free(s);
    cllm_sampler_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),      cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),       cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_seed),        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
