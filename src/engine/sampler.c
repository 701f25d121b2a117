// Token sampler: an optional repeat penalty on the logits of recently accepted tokens; then greedy
// at temperature 0; otherwise softmax(logits / T), truncated to the top_k most likely tokens, then
// to the smallest nucleus whose probability (renormalised after top-k) reaches top_p, then to the
// tokens at least min_p times as likely as the most likely one, then one draw. Temperature first,
// as llama2.c does. The random stream is the sampler's own (xorshift64* seeded through
// splitmix64): no global state, reproducible by seed.
#include "common/cllm_common.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float p;    // unnormalised probability exp((logit - max) / T)
    int32_t id;
} cand;

#define REPEAT_LAST_N_DEFAULT 64
#define REPEAT_LAST_N_MAX 65536

struct cllm_sampler {
    cllm_sampler_params p;
    size_t vocab;
    uint64_t rng;   // xorshift64* state, never 0
    cand *work;     // vocab candidates
    double *pr;     // (vocab) exp((logit - max) / T) of the current call
    // Repeat penalty (penalty != 1): a ring of the last `hist_cap` accepted tokens, the penalised
    // copy of the logits and a per-id mark so that each distinct token is penalised once.
    float penalty;
    int32_t *hist;
    size_t hist_cap, hist_n, hist_next;
    float *penalised;   // (vocab)
    uint8_t *mark;      // (vocab), all zero between calls
};

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t xorshift64s(uint64_t *x) {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

cllm_status cllm_sampler_create(const cllm_sampler_params *p, size_t vocab, cllm_sampler **out) {
    RETURN_IF(!p || !out || vocab == 0 || vocab > INT32_MAX, CLLM_ERR_ARG, "sampler: bad argument");
    *out = NULL;
    RETURN_IF(!isfinite(p->temperature) || !isfinite(p->top_p) || p->top_p <= 0.0f, CLLM_ERR_ARG,
              "sampler: temperature %g, top_p %g", (double)p->temperature, (double)p->top_p);
    RETURN_IF(!isfinite(p->min_p) || p->min_p < 0.0f || p->min_p > 1.0f, CLLM_ERR_ARG,
              "sampler: min_p %g is outside [0, 1]", (double)p->min_p);
    RETURN_IF(!(p->repeat_penalty == 0.0f ||
                (p->repeat_penalty >= 0.01f && p->repeat_penalty <= 100.0f)),
              CLLM_ERR_ARG, "sampler: repeat penalty %g is outside [0.01, 100] (0 or 1: off)",
              (double)p->repeat_penalty);
    RETURN_IF(p->repeat_last_n > REPEAT_LAST_N_MAX, CLLM_ERR_ARG,
              "sampler: repeat_last_n %u exceeds %d", p->repeat_last_n, REPEAT_LAST_N_MAX);
    cllm_sampler *s = calloc(1, sizeof *s);
    RETURN_IF(!s, CLLM_ERR_NOMEM, "sampler");
    s->penalty = p->repeat_penalty > 0.0f && p->repeat_penalty != 1.0f ? p->repeat_penalty : 1.0f;
    if (s->penalty != 1.0f) {
        s->hist_cap = p->repeat_last_n ? p->repeat_last_n : REPEAT_LAST_N_DEFAULT;
        s->hist = malloc(s->hist_cap * sizeof *s->hist);
        s->penalised = malloc(vocab * sizeof *s->penalised);
        s->mark = calloc(vocab, 1);
    }
    s->work = malloc(vocab * sizeof *s->work);
    s->pr = malloc(vocab * sizeof *s->pr);
    if (!s->work || !s->pr || (s->penalty != 1.0f && (!s->hist || !s->penalised || !s->mark))) {
        cllm_sampler_free(s);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "sampler: %zu candidates", vocab);
    }
    s->p = *p;
    s->vocab = vocab;
    uint64_t seed = p->seed;
    s->rng = splitmix64(&seed);
    if (s->rng == 0) s->rng = 0x9e3779b97f4a7c15ull;
    *out = s;
    return CLLM_OK;
}

void cllm_sampler_free(cllm_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->pr);
    free(s->hist);
    free(s->penalised);
    free(s->mark);
    free(s);
}

void cllm_sampler_accept(cllm_sampler *s, int32_t token) {
    if (!s || s->penalty == 1.0f || token < 0 || (size_t)token >= s->vocab) return;
    s->hist[s->hist_next] = token;
    s->hist_next = (s->hist_next + 1) % s->hist_cap;
    if (s->hist_n < s->hist_cap) s->hist_n++;
}

void cllm_sampler_reset(cllm_sampler *s) {
    if (s) s->hist_n = s->hist_next = 0;
}

// The logits with the repeat penalty applied once to each distinct token of the history (as in
// the CTRL paper: a positive logit is divided by the penalty, a negative one multiplied).
static const float *apply_penalty(cllm_sampler *s, const float *logits, size_t n) {
    if (s->penalty == 1.0f || s->hist_n == 0) return logits;
    memcpy(s->penalised, logits, n * sizeof *logits);
    for (size_t i = 0; i < s->hist_n; i++) {
        int32_t id = s->hist[i];
        if ((size_t)id >= n || s->mark[id]) continue;
        s->mark[id] = 1;
        float l = s->penalised[id];
        float v = l > 0.0f ? l / s->penalty : l * s->penalty;
        s->penalised[id] = isinf(v) && !isinf(l) ? copysignf(FLT_MAX, v) : v;
    }
    for (size_t i = 0; i < s->hist_n; i++) s->mark[s->hist[i]] = 0;
    return s->penalised;
}

double cllm_sampler_uniform(cllm_sampler *s) {
    return (double)(xorshift64s(&s->rng) >> 11) * 0x1.0p-53;
}

static int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

// Most likely first; equal probabilities by id, so the order is fully determined.
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

// Restores the heap order of h[0..m) below position i: the root is the candidate that sorts last
// (cand_cmp), so that it is the one a better candidate replaces.
static void heap_down(cand *h, size_t m, size_t i) {
    for (;;) {
        size_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < m && cand_cmp(&h[l], &h[w]) > 0) w = l;
        if (r < m && cand_cmp(&h[r], &h[w]) > 0) w = r;
        if (w == i) return;
        const cand t = h[i];
        h[i] = h[w], h[w] = t;
        i = w;
    }
}

// Fills s->work with the candidates worth sorting and sorts them; returns their count, and in
// *total the sum of every token's probability. With 0 < top_k < n only the top_k first candidates
// of the full order are kept (selected through a heap of top_k, then sorted: the same candidates
// in the same order as sorting all n, without sorting all n). With top_p < 1 and no top_k, a
// token whose probability is below (1 - top_p) / (n - 1) cannot be in the nucleus (the tokens
// above it would already reach top_p), so it is dropped before sorting.
static size_t sorted_candidates(cllm_sampler *s, const float *logits, size_t n, float mx,
                                double *total) {
    const double inv_t = 1.0 / (double)s->p.temperature;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        s->pr[i] = exp(((double)logits[i] - mx) * inv_t);
        sum += s->pr[i];
    }
    *total = sum;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        const size_t k = s->p.top_k;
        cand *h = s->work;
        for (size_t i = 0; i < n; i++) {
            const cand c = {(float)s->pr[i], (int32_t)i};
            if (i < k) {
                h[i] = c;
                if (i == k - 1)
                    for (size_t j = k / 2; j-- > 0;) heap_down(h, k, j);
            } else if (cand_cmp(&c, &h[0]) < 0) {
                h[0] = c;
                heap_down(h, k, 0);
            }
        }
        qsort(h, k, sizeof *h, cand_cmp);
        return k;
    }
    const int top_p_only = s->p.top_p < 1.0f && (s->p.top_k == 0 || s->p.top_k >= n);
    double cutoff = top_p_only && n > 1 ? (1.0 - s->p.top_p) / (double)(n - 1) * sum : 0.0;
    // min-p keeps p >= min_p * p_max, and p_max = exp(0) = 1 here: nothing below can survive.
    if (s->p.min_p > 0.0f && (s->p.top_k == 0 || s->p.top_k >= n) && (double)s->p.min_p > cutoff)
        cutoff = (double)s->p.min_p;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const double p = s->pr[i];
        if (p < cutoff) continue;
        s->work[m].p = (float)p;
        s->work[m].id = (int32_t)i;
        m++;
    }
    if (m == 0) {  // rounding pushed everything under the cutoff: keep the argmax
        s->work[0].p = 1.0f;
        s->work[0].id = argmax(logits, n);
        return 1;
    }
    qsort(s->work, m, sizeof *s->work, cand_cmp);
    return m;
}

// No truncation: one draw straight from softmax(logits / T), no sorting.
static int32_t draw_untruncated(cllm_sampler *s, const float *logits, size_t n, float mx) {
    const double inv_t = 1.0 / (double)s->p.temperature;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        s->pr[i] = exp(((double)logits[i] - mx) * inv_t);
        total += s->pr[i];
    }
    double r = cllm_sampler_uniform(s) * total, cum = 0.0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        const double p = s->pr[i];
        if (p > 0.0) last = i;
        cum += p;
        if (r < cum) return (int32_t)i;
    }
    return (int32_t)last;  // r landed on the rounding slack at the end
}

cllm_status cllm_sampler_sample(cllm_sampler *s, const float *logits, size_t n, int32_t *token) {
    RETURN_IF(!s || !logits || !token || n == 0 || n > s->vocab, CLLM_ERR_ARG,
              "sampler: %zu logits for a vocabulary of %zu", n, s ? s->vocab : 0);
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        RETURN_IF(isnan(logits[i]) || logits[i] == INFINITY, CLLM_ERR_ARG,
                  "sampler: logit %zu is %g", i, (double)logits[i]);
        mx = logits[i] > mx ? logits[i] : mx;
    }
    RETURN_IF(mx == -INFINITY, CLLM_ERR_ARG, "sampler: every logit is -inf");
    logits = apply_penalty(s, logits, n);
    if (s->penalty != 1.0f) {
        mx = -INFINITY;
        for (size_t i = 0; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    }
    if (s->p.temperature <= 0.0f) {
        *token = argmax(logits, n);
        return CLLM_OK;
    }
    if ((s->p.top_k == 0 || s->p.top_k >= n) && s->p.top_p >= 1.0f && s->p.min_p <= 0.0f) {
        *token = draw_untruncated(s, logits, n, mx);
        return CLLM_OK;
    }
    double total;
    size_t m = sorted_candidates(s, logits, n, mx, &total);
    if (s->p.top_k > 0 && s->p.top_k < n) {  // (m == top_k: the top_k selected)
        m = s->p.top_k;
        total = 0.0;
        for (size_t i = 0; i < m; i++) total += s->work[i].p;
    }
    if (s->p.top_p < 1.0f) {  // smallest prefix reaching top_p of the (renormalised) mass
        double cum = 0.0, want = (double)s->p.top_p * total;
        size_t keep = m;
        for (size_t i = 0; i < m; i++) {
            cum += s->work[i].p;
            if (cum >= want) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
        total = cum;
    }
    if (s->p.min_p > 0.0f) {  // sorted: keep the prefix at least min_p times the first
        double floor_p = (double)s->p.min_p * s->work[0].p;
        size_t keep = 1;
        while (keep < m && (double)s->work[keep].p >= floor_p) keep++;
        m = keep;  // the total also drops what the pre-sort cutoff removed
        total = 0.0;
        for (size_t i = 0; i < m; i++) total += s->work[i].p;
    }
    double r = cllm_sampler_uniform(s) * total, cum = 0.0;
    for (size_t i = 0; i < m; i++) {
        cum += s->work[i].p;
        if (r < cum) {
            *token = s->work[i].id;
            return CLLM_OK;
        }
    }
    *token = s->work[m - 1].id;  // r landed on the rounding slack at the end
    return CLLM_OK;
}
