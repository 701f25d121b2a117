#include "cllm_ref.h"

#include "common/cllm_half.h"

#include <math.h>
#include <string.h>

#define LANES 8

cllm_wview cllm_wview_rows(const cllm_wview *w, uint64_t r0, uint64_t n) {
    const size_t esize = w->kind == CLLM_W_I8 ? 1 : cllm_dtype_size((cllm_dtype)w->kind);
    cllm_wview v = *w;
    v.rows = n;
    v.data = (const uint8_t *)w->data + r0 * w->cols * esize;
    if (w->kind == CLLM_W_I8) v.scales = w->scales + r0 * w->groups_per_row;
    return v;
}

// Adds the LANES partial sums in a fixed pairwise order.
static inline float lanes_sum(const float acc[LANES]) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// The three float dot products differ only in how a weight is widened; each is written out so
// the compiler can vectorise the LANES-wide inner loop.
static float dot_f32(const float *w, const float *x, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += w[i + j] * x[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += w[i] * x[i];
    return lanes_sum(acc);
}

static float dot_bf16(const uint16_t *w, const float *x, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += cllm_bf16_to_f32(w[i + j]) * x[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += cllm_bf16_to_f32(w[i]) * x[i];
    return lanes_sum(acc);
}

// binary16 -> binary32 without branches, so that the loops over a row vectorise
// (cllm_f16_to_f32 normalises subnormals in a loop, which made f16 matvecs 25x slower than f32
// ones). The magnitude bits shifted into place, read as a float and scaled by 2^112, give every
// finite value exactly (the multiply normalises subnormals; it needs subnormal floats, which
// this library never turns off); inf and NaN then get the all-ones exponent back with their
// payload. Bit for bit cllm_f16_to_f32 for all 65536 inputs (tests/test_engine.c).
static inline float f16_to_f32_vec(uint16_t h) {
    const uint32_t mag = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t u = cllm_f32_to_bits(cllm_bits_to_f32(mag) * 0x1p112f);
    u |= (h & 0x7c00u) == 0x7c00u ? 0x7f800000u : 0u;
    return cllm_bits_to_f32(u | (uint32_t)(h & 0x8000u) << 16);
}

static float dot_f16(const uint16_t *w, const float *x, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += f16_to_f32_vec(w[i + j]) * x[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += f16_to_f32_vec(w[i]) * x[i];
    return lanes_sum(acc);
}

static float dot_i8_lanes(const int8_t *w, const float *x, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (float)w[i + j] * x[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (float)w[i] * x[i];
    return lanes_sum(acc);
}

// x86-64's baseline (SSE2) has no instruction that widens int8 to int32, and compilers widen
// int8 vectors element by element, which made the int8 dot product slower than f32's on the CPU.
// With AVX2 (checked at run time) the same lanes are computed with vector instructions: lane j
// adds (float)w[i] * x[i] for i = j (mod 8) in order, a multiply then an add (no fused
// multiply-add), the tail as dot_i8_lanes: the same bits.
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CLLM_DOT_I8_AVX2 1
__attribute__((target("avx2"))) static float dot_i8_avx2(const int8_t *w, const float *x,
                                                         size_t n) {
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m256i wi = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w + i)));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(wi), _mm256_loadu_ps(x + i)));
    }
    float a[LANES];
    _mm256_storeu_ps(a, acc);
    for (int j = 0; i < n; i++, j++) a[j] += (float)w[i] * x[i];
    return lanes_sum(a);
}
#endif

static float dot_i8(const int8_t *w, const float *x, size_t n) {
#ifdef CLLM_DOT_I8_AVX2
    if (__builtin_cpu_supports("avx2")) return dot_i8_avx2(w, x, n);
#endif
    return dot_i8_lanes(w, x, n);
}

// Int8 row: each group's integer-valued products are summed, then scaled once; the row sum adds
// the scaled group sums in order.
static float dot_i8_row(const cllm_wview *w, uint64_t r, const float *x) {
    const int8_t *row = (const int8_t *)w->data + r * w->cols;
    const float *sc = w->scales + r * w->groups_per_row;
    float sum = 0.0f;
    for (uint64_t g = 0; g < w->groups_per_row; g++) {
        uint64_t c0 = g * w->group_size;
        uint64_t n = w->cols - c0 < w->group_size ? w->cols - c0 : w->group_size;
        sum += sc[g] * dot_i8(row + c0, x + c0, n);
    }
    return sum;
}

// ---- int8: four tokens per pass over a row (prefill) -----------------------------------------------
//
// With AVX2, each token's sum takes exactly its own dot product's lanes and order (dot_i8_avx2):
// the weights are widened once for the four, and the four add chains are independent, where one
// token at a time waits on one chain. The same bits. (A portable version of the same loops for
// every kind spilled its 32 accumulators on SSE2 and was slower for f32.)
#define MM_T 4

#ifdef CLLM_DOT_I8_AVX2
__attribute__((target("avx2"))) static void dot4_i8_avx2(const int8_t *w,
                                                         const float *const x[MM_T], size_t n,
                                                         float out[MM_T]) {
    __m256 acc[MM_T];
    for (int t = 0; t < MM_T; t++) acc[t] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m256 wv =
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w + i))));
        for (int t = 0; t < MM_T; t++)
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(wv, _mm256_loadu_ps(x[t] + i)));
    }
    for (int t = 0; t < MM_T; t++) {
        float a[LANES];
        _mm256_storeu_ps(a, acc[t]);
        size_t k = i;
        for (int j = 0; k < n; k++, j++) a[j] += (float)w[k] * x[t][k];
        out[t] = lanes_sum(a);
    }
}

// dot_i8_row of row r for the four token rows x[0..4).
static void dot4_i8_row(const cllm_wview *w, uint64_t r, const float *const x[MM_T],
                        float out[MM_T]) {
    const size_t n = w->cols;
    const int8_t *row = (const int8_t *)w->data + r * n;
    const float *sc = w->scales + r * w->groups_per_row;
    float sum[MM_T] = {0};
    for (uint64_t g = 0; g < w->groups_per_row; g++) {
        const uint64_t c0 = g * w->group_size;
        const uint64_t m = n - c0 < w->group_size ? n - c0 : w->group_size;
        const float *xg[MM_T];
        float d[MM_T];
        for (int t = 0; t < MM_T; t++) xg[t] = x[t] + c0;
        dot4_i8_avx2(row + c0, xg, m, d);
        for (int t = 0; t < MM_T; t++) sum[t] += sc[g] * d[t];
    }
    for (int t = 0; t < MM_T; t++) out[t] = sum[t];
}
#endif

float cllm_k_dot_row(const cllm_wview *w, uint64_t r, const float *x) {
    size_t n = w->cols;
    switch (w->kind) {
    case CLLM_W_F32: return dot_f32((const float *)w->data + r * n, x, n);
    case CLLM_W_BF16: return dot_bf16((const uint16_t *)w->data + r * n, x, n);
    case CLLM_W_F16: return dot_f16((const uint16_t *)w->data + r * n, x, n);
    case CLLM_W_I8: return dot_i8_row(w, r, x);
    case CLLM_W_CC_BF16:
    case CLLM_W_CC_F16:
    case CLLM_W_CC_I8: break;  // GPU-only kinds: never handed to the reference kernels
    }
    return 0.0f;
}

void cllm_k_matmul(float *out, size_t ldo, const cllm_wview *w, const float *x, size_t ldx,
                   size_t n_tok, int n_threads) {
    const int64_t rows = (int64_t)w->rows;
    const int par = n_threads > 1 && w->rows * w->cols * n_tok >= CLLM_K_PARALLEL_MIN_WORK;
    // Rows outside, tokens inside: a weight row is read from memory once per call and reused
    // from cache for every token of the batch; int8 with AVX2 four tokens per pass (dot4_i8_row:
    // the same bits as one at a time).
    int four = 0;
#ifdef CLLM_DOT_I8_AVX2
    four = w->kind == CLLM_W_I8 && n_tok >= MM_T && __builtin_cpu_supports("avx2");
#endif
    (void)four;
#pragma omp parallel for schedule(static) num_threads(n_threads) if (par)
    for (int64_t r = 0; r < rows; r++) {
        size_t t = 0;
#ifdef CLLM_DOT_I8_AVX2
        for (; four && t + MM_T <= n_tok; t += MM_T) {
            const float *xt[MM_T];
            float o[MM_T];
            for (int k = 0; k < MM_T; k++) xt[k] = x + (t + (size_t)k) * ldx;
            dot4_i8_row(w, (uint64_t)r, xt, o);
            for (int k = 0; k < MM_T; k++) out[(t + (size_t)k) * ldo + (size_t)r] = o[k];
        }
#endif
        for (; t < n_tok; t++) out[t * ldo + (size_t)r] = cllm_k_dot_row(w, (uint64_t)r, x + t * ldx);
    }
}

void cllm_k_row_to_f32(const cllm_wview *w, uint64_t r, float *out) {
    size_t n = w->cols;
    switch (w->kind) {
    case CLLM_W_F32: memcpy(out, (const float *)w->data + r * n, n * sizeof *out); break;
    case CLLM_W_BF16: {
        const uint16_t *row = (const uint16_t *)w->data + r * n;
        for (size_t i = 0; i < n; i++) out[i] = cllm_bf16_to_f32(row[i]);
        break;
    }
    case CLLM_W_F16: {
        const uint16_t *row = (const uint16_t *)w->data + r * n;
        for (size_t i = 0; i < n; i++) out[i] = f16_to_f32_vec(row[i]);
        break;
    }
    case CLLM_W_I8: {
        const int8_t *row = (const int8_t *)w->data + r * n;
        const float *sc = w->scales + r * w->groups_per_row;
        for (size_t i = 0; i < n; i++) out[i] = (float)row[i] * sc[i / w->group_size];
        break;
    }
    case CLLM_W_CC_BF16:
    case CLLM_W_CC_F16:
    case CLLM_W_CC_I8: memset(out, 0, n * sizeof *out); break;  // GPU-only kinds (see above)
    }
}

void cllm_k_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps) {
    float ss = dot_f32(x, x, n);
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) out[i] = weight[i] * (inv * x[i]);
}

// Llama 3 remapping: long wavelengths (beyond the original context / low_freq_factor) are slowed
// by `factor`, short ones (below original / high_freq_factor) kept, and the band between
// interpolated linearly in original_context / wavelength.
static double llama3_freq(const cllm_model_config *cfg, double freq) {
    const double two_pi = 6.283185307179586476925;
    double orig = (double)cfg->rope_original_context;
    double low_wavelen = orig / (double)cfg->rope_low_freq_factor;
    double high_wavelen = orig / (double)cfg->rope_high_freq_factor;
    double wavelen = two_pi / freq;
    if (wavelen < high_wavelen) return freq;
    if (wavelen > low_wavelen) return freq / (double)cfg->rope_factor;
    double smooth = (orig / wavelen - (double)cfg->rope_low_freq_factor) /
                    ((double)cfg->rope_high_freq_factor - (double)cfg->rope_low_freq_factor);
    return (1.0 - smooth) * freq / (double)cfg->rope_factor + smooth * freq;
}

void cllm_k_rope_freqs(const cllm_model_config *cfg, double *freqs) {
    size_t n_pairs = cfg->head_dim / 2;
    for (size_t i = 0; i < n_pairs; i++) {
        double f = pow((double)cfg->rope_theta, -(double)(2 * i) / (double)cfg->head_dim);
        freqs[i] = cfg->rope_scaling == CLLM_ROPE_SCALING_LLAMA3 ? llama3_freq(cfg, f) : f;
    }
}

void cllm_k_rope_angles(const double *freqs, size_t n_pairs, size_t pos, float *cos_out,
                        float *sin_out) {
    for (size_t i = 0; i < n_pairs; i++) {
        double a = (double)pos * freqs[i];
        cos_out[i] = (float)cos(a);
        sin_out[i] = (float)sin(a);
    }
}

void cllm_k_rope(float *vec, size_t n_heads, size_t head_dim, const float *cos_v,
                 const float *sin_v) {
    for (size_t h = 0; h < n_heads; h++) {
        float *v = vec + h * head_dim;
        for (size_t i = 0; i < head_dim / 2; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cos_v[i] - b * sin_v[i];
            v[2 * i + 1] = a * sin_v[i] + b * cos_v[i];
        }
    }
}

void cllm_k_softmax(float *x, size_t n) {
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

static inline float kv_at(const void *p, size_t i, cllm_dtype dt) {
    return dt == CLLM_DTYPE_F16 ? cllm_f16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

void cllm_k_attention_head(float *out, const float *q, const void *k, const void *v,
                           cllm_dtype kv_dtype, size_t n_pos, size_t head_dim, size_t stride,
                           float *scores) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (size_t j = 0; j < n_pos; j++) {
        float acc[LANES] = {0};
        size_t base = j * stride;
        size_t i = 0;
        for (; i + LANES <= head_dim; i += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += q[i + l] * kv_at(k, base + i + l, kv_dtype);
        for (int l = 0; i < head_dim; i++, l++) acc[l] += q[i] * kv_at(k, base + i, kv_dtype);
        scores[j] = lanes_sum(acc) * scale;
    }
    cllm_k_softmax(scores, n_pos);
    for (size_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (size_t j = 0; j < n_pos; j++) {
        float p = scores[j];
        size_t base = j * stride;
        for (size_t i = 0; i < head_dim; i++) out[i] += p * kv_at(v, base + i, kv_dtype);
    }
}

void cllm_k_swiglu(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void cllm_k_store_kv(void *dst, const float *src, size_t n, cllm_dtype kv_dtype) {
    if (kv_dtype == CLLM_DTYPE_F16) {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = cllm_f32_to_f16(src[i]);
    } else {
        memcpy(dst, src, n * sizeof *src);
    }
}
