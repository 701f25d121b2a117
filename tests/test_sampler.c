// Sampler tests: greedy, top-k and top-p truncation, temperature, seed reproducibility, refusal
// of bad logits, and every truncated draw against a spelled-out reference that sorts all tokens.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "codecllm.h"

#include <math.h>
#include <stdlib.h>
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

// The sampler's documented truncation spelled out with a sort of every token (the spec the
// sampler's selection of the top_k through a heap must reproduce): candidates (p as float, id)
// ordered by p descending then id, top_k, then the nucleus of top_p of the remaining mass, then
// min_p of the first; a draw at u times the kept mass (without any truncation, in id order).
typedef struct ref_cand {
    float p;
    int32_t id;
} ref_cand;

static int ref_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t ref_sample(const float *l, size_t n, const cllm_sampler_params *p, double u) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    const double inv_t = 1.0 / (double)p->temperature;
    ref_cand *c = malloc(n * sizeof *c);
    assert_non_null(c);
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = exp(((double)l[i] - mx) * inv_t);
        total += e;
        c[i].p = (float)e;
        c[i].id = (int32_t)i;
    }
    if ((p->top_k == 0 || p->top_k >= n) && p->top_p >= 1.0f && p->min_p <= 0.0f) {
        // No truncation: the draw walks the tokens in id order (no sort needed).
        const double r = u * total;
        double cum = 0.0;
        int32_t tok = 0;
        for (size_t i = 0; i < n; i++) {
            const double e = exp(((double)l[i] - mx) * inv_t);
            if (e > 0.0) tok = (int32_t)i;
            cum += e;
            if (r < cum) {
                tok = (int32_t)i;
                break;
            }
        }
        free(c);
        return tok;
    }
    qsort(c, n, sizeof *c, ref_cmp);
    size_t m = n;
    if (p->top_k > 0 && p->top_k < n) {
        m = p->top_k;
        total = 0.0;
        for (size_t i = 0; i < m; i++) total += c[i].p;
    }
    if (p->top_p < 1.0f) {
        double cum = 0.0, want = (double)p->top_p * total;
        size_t keep = m;
        for (size_t i = 0; i < m; i++) {
            cum += c[i].p;
            if (cum >= want) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
        total = cum;
    }
    if (p->min_p > 0.0f) {
        const double floor_p = (double)p->min_p * c[0].p;
        size_t keep = 1;
        while (keep < m && (double)c[keep].p >= floor_p) keep++;
        m = keep;
        total = 0.0;
        for (size_t i = 0; i < m; i++) total += c[i].p;
    }
    const double r = u * total;
    double cum = 0.0;
    int32_t tok = c[m - 1].id;
    for (size_t i = 0; i < m; i++) {
        cum += c[i].p;
        if (r < cum) {
            tok = c[i].id;
            break;
        }
    }
    free(c);
    return tok;
}

// Random logits (ties, -inf, a wide and a narrow spread), vocabularies from 2 to 50,000 and every
// truncation mix with top_k: each draw equals the reference's at the same uniform (a second
// sampler with the same seed gives the sampler's own stream; a truncated draw takes one).
static void test_against_reference(void **state) {
    (void)state;
    static const size_t vocabs[] = {2, 7, 64, 1000, 50000};
    static const uint32_t ks[] = {1, 2, 40, 999};
    static const float tps[] = {1.0f, 0.95f, 0.5f};
    static const float mps[] = {0.0f, 0.05f};
    uint64_t st = 12345;
    int draws = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof vocabs[0]; vi++) {
        const size_t n = vocabs[vi];
        float *l = malloc(n * sizeof *l);
        assert_non_null(l);
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t pi = 0; pi < sizeof tps / sizeof tps[0]; pi++)
                for (size_t mi = 0; mi < sizeof mps / sizeof mps[0]; mi++) {
                    const cllm_sampler_params prm = {.temperature = 0.8f, .top_k = ks[ki],
                                                     .top_p = tps[pi], .min_p = mps[mi],
                                                     .seed = 7 + ki};
                    cllm_sampler *s = NULL, *u = NULL;
                    assert_int_equal(cllm_sampler_create(&prm, n, &s), CLLM_OK);
                    assert_int_equal(cllm_sampler_create(&prm, n, &u), CLLM_OK);
                    for (int it = 0; it < 6; it++) {
                        const double spread = it % 2 ? 8.0 : 0.5;
                        for (size_t i = 0; i < n; i++) {
                            st = st * 6364136223846793005ull + 1442695040888963407ull;
                            const uint32_t b = (uint32_t)(st >> 33);
                            l[i] = b % 17 == 0 ? 1.0f  // ties
                                   : b % 101 == 0 ? -INFINITY
                                                  : (float)(spread * ((double)(b % 100000) / 50000.0 - 1.0));
                        }
                        int32_t got;
                        assert_int_equal(cllm_sampler_sample(s, l, n, &got), CLLM_OK);
                        const int32_t want = ref_sample(l, n, &prm, cllm_sampler_uniform(u));
                        if (got != want)
                            fail_msg("vocab %zu top_k %u top_p %g min_p %g draw %d: %d, reference %d",
                                     n, prm.top_k, (double)prm.top_p, (double)prm.min_p, it, got,
                                     want);
                        draws++;
                    }
                    cllm_sampler_free(s);
                    cllm_sampler_free(u);
                }
        free(l);
    }
    assert_int_equal(draws, 5 * 4 * 3 * 2 * 6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),      cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),       cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_seed),        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_bad_input),   cmocka_unit_test(test_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
