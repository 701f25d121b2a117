// Kernel benchmark: the fused compute-code matvecs (weights compressed in VRAM) against the raw
// BF16 and int8 matvecs, batch 1, on the Llama-2-7B shapes, with synth-like weights (as `codecllm
// synth`: Student-t(5), log-normal row scales, 0.5% of input columns 6x larger; int8: per-channel
// quantisation of the same values). Prints time per matvec (median of bursts of back-to-back
// launches over rotating copies, so no run finds its weights in L2), GB/s of bytes read, GB/s of
// bf16-equivalent weights, bits/weight in VRAM, the fused/raw speed ratio, that the fused output
// is bit-identical to the raw one, and the compute-code encode (load) time of a 7B layer.
//
// Usage: bench_fused [N]      the first N shapes only (default all 4; exit 77 without a GPU or a
//                             CUDA build)
//        bench_fused --scan   one launch's time against its rows (R x 4096, R = 1024 .. 32768) for
//                             raw and fused bf16, f16 and int8, and the least-squares line
//                             t = a + bytes / B over R >= 2048: a is what a launch costs beyond its
//                             bytes (ramp, last wave, drain), B the bandwidth once streaming
//        bench_fused --waves  the same kinds at R = 1024 .. 16384 in steps of 1024 (no fit): the
//                             time's steps with the blocks' waves
//        bench_fused --swiglu the gate/up + SwiGLU launch (two 11008 x 4096 matrices), one token
//                             and as columns at n = 1 .. 8 (batched decode's largest job), raw
//                             and fused bf16 and int8, each column against the one-token launch
#ifdef CLLM_HAVE_CUDA
#include "codec/cllm_codec.h"
#include "common/cllm_half.h"
#include "cuda/cllm_cuda.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MUST(expr)                                                                                 \
    do {                                                                                           \
        cllm_status must_st_ = (expr);                                                             \
        if (must_st_ != CLLM_OK) {                                                                 \
            fprintf(stderr, "FATAL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,              \
                    cllm_status_name(must_st_), cllm_last_error());                                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define ROT_MAX 32
#define BURST 50

static cllm_cuda_mem *g_mem;
static void *g_stream;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(uint64_t h) { return ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double gauss(uint64_t seed, uint64_t i) {
    return sqrt(-2.0 * log(unif(mix(seed + 2 * i)))) * cos(6.283185307179586 * unif(mix(seed + 2 * i + 1)));
}

// (rows, cols) synth-like fp32 weights.
static float *synth(uint64_t rows, uint64_t cols, uint64_t seed) {
    float *w = malloc(rows * cols * sizeof(float));
#pragma omp parallel for schedule(static)
    for (uint64_t r = 0; r < rows; r++) {
        const double scale = 0.02 * exp(0.3 * gauss(seed ^ 0x5555, r));
        for (uint64_t c = 0; c < cols; c++) {
            const uint64_t i = (r * cols + c) * 6;
            double chi = 0;
            for (int k = 1; k <= 5; k++) {
                const double g = gauss(seed, i + k);
                chi += g * g;
            }
            const double gain = unif(mix(seed * 31 + c)) < 0.005 ? 6.0 : 1.0;
            w[r * cols + c] = (float)(scale * gain * gauss(seed, i) / sqrt(chi / 5) * sqrt(0.6));
        }
    }
    return w;
}

typedef struct variant {
    const char *name;
    cllm_cuda_weight w[ROT_MAX];
    int n_rot;
    size_t bytes;  // per copy: everything a matvec reads of the weights
} variant;

static void *dev_copy(const void *src, size_t n, int from_host) {
    void *p;
    MUST(cllm_cuda_alloc(g_mem, n, &p));
    MUST(cllm_cuda_copy(p, src, n, g_stream));
    (void)from_host;
    return p;
}

// n_rot copies of the view v (data + scales; compute code: one buffer holding its scales).
static void make_rot(variant *var, const cllm_cuda_weight *v, size_t data_bytes, size_t sc_bytes) {
    var->n_rot = (int)(192.0 * 1048576 / (double)(data_bytes + sc_bytes)) + 1;
    if (var->n_rot > ROT_MAX) var->n_rot = ROT_MAX;
    if (var->n_rot < 2) var->n_rot = 2;
    var->bytes = data_bytes + sc_bytes;
    var->w[0] = *v;
    const int cc = v->kind >= CLLM_CUDA_W_CC_BF16;
    for (int r = 1; r < var->n_rot; r++) {
        var->w[r] = *v;
        var->w[r].data = dev_copy(v->data, data_bytes, 0);
        if (cc && v->scales)
            var->w[r].scales = (const float *)((const uint8_t *)var->w[r].data +
                                               ((const uint8_t *)v->scales - (const uint8_t *)v->data));
        else if (v->scales)
            var->w[r].scales = dev_copy(v->scales, sc_bytes, 0);
    }
    MUST(cllm_cuda_sync(g_stream));
}

static void free_rot(variant *var) {
    const int cc = var->w[0].kind >= CLLM_CUDA_W_CC_BF16;
    for (int r = 0; r < var->n_rot; r++) {
        MUST(cllm_cuda_release(g_mem, (void *)var->w[r].data));
        if (!cc) MUST(cllm_cuda_release(g_mem, (void *)var->w[r].scales));
    }
}

static int cmpf(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Median milliseconds per matvec over 15 bursts of BURST launches.
static double time_ms(const variant *var, const float *x, float *y) {
    cllm_cuda_timer *t;
    MUST(cllm_cuda_timer_create(&t));
    for (int i = 0; i < 10; i++)
        MUST(cllm_cuda_matvec(&var->w[i % var->n_rot], x, y, 0, g_stream));
    float ms[15];
    for (int b = 0; b < 15; b++) {
        MUST(cllm_cuda_timer_start(t, g_stream));
        for (int i = 0; i < BURST; i++)
            MUST(cllm_cuda_matvec(&var->w[(b * BURST + i) % var->n_rot], x, y, 0, g_stream));
        MUST(cllm_cuda_timer_stop(t, g_stream));
        MUST(cllm_cuda_timer_ms(t, &ms[b]));
    }
    cllm_cuda_timer_free(t);
    qsort(ms, 15, sizeof ms[0], cmpf);
    return ms[7] / BURST;
}

// Median microseconds per launch of one job over n columns, 15 bursts of BURST over the rotating
// copies: cllm_cuda_matvec_cols_job (gemm == 0) or cllm_cuda_gemm (gemm != 0: cuBLAS).
typedef struct cols_ctx {
    const float *x;
    float *y;
    void *scratch, *blas;
    size_t scratch_bytes;
} cols_ctx;

// gemm: 0 the column kernel, 1 cllm_cuda_gemm (cuBLAS; int8 after dequantising), 2 the
// tensor-core int8 GEMM.
static void cols_launch(const cols_ctx *c, const cllm_cuda_weight *w, uint32_t n, int gemm) {
    if (gemm == 2) {
        MUST(cllm_cuda_gemm_i8(w, c->x, n, c->y, w->rows, c->scratch, c->scratch_bytes, g_stream));
    } else if (gemm) {
        MUST(cllm_cuda_gemm(c->blas, w, c->x, n, c->y, w->rows, c->scratch, c->scratch_bytes,
                            g_stream));
    } else {
        const uint64_t ld = w->rows;
        MUST(cllm_cuda_matvec_cols_job(w, 1, CLLM_CUDA_COLS_SET, c->x, w->cols, n, &c->y, &ld,
                                       c->scratch, c->scratch_bytes, g_stream));
    }
}

static double time_cols_us(const variant *var, const cols_ctx *c, uint32_t n, int gemm) {
    cllm_cuda_timer *t;
    MUST(cllm_cuda_timer_create(&t));
    float ms[15];
    for (int b = -1; b < 15; b++) {
        MUST(cllm_cuda_timer_start(t, g_stream));
        for (int i = 0; i < BURST; i++)
            cols_launch(c, &var->w[(b * BURST + i + BURST) % var->n_rot], n, gemm);
        MUST(cllm_cuda_timer_stop(t, g_stream));
        MUST(cllm_cuda_timer_ms(t, &ms[b < 0 ? 0 : b]));
    }
    cllm_cuda_timer_free(t);
    qsort(ms, 15, sizeof ms[0], cmpf);
    return 1e3 * ms[7] / BURST;
}

// Several columns (batched decode): the column kernels of raw bf16, fused lossless and raw int8 at
// n = 1, 2, 4, 8 (µs per launch, and per token against n one-token launches), beside cuBLAS
// (cllm_cuda_gemm, the engine's path for longer steps) at n = 8, 16, 32. Bit-identity: each
// column of the column launch against the one-token launch (first copy).
static void bench_cols(const variant *v, uint64_t rows, uint64_t cols) {
    const uint32_t nmax = 256;
    float *x = malloc(nmax * cols * 4), *ya = malloc(8 * rows * 4), *yb = malloc(rows * 4);
    float *ga = malloc(nmax * rows * 4), *gb = malloc(nmax * rows * 4);
    for (uint64_t i = 0; i < nmax * cols; i++) x[i] = (float)gauss(99, i);
    cols_ctx c = {.x = dev_copy(x, nmax * cols * 4, 1)};
    MUST(cllm_cuda_alloc(g_mem, nmax * rows * 4, (void **)&c.y));
    c.scratch_bytes = 0;  // the largest GEMM scratch of the four kinds (either path)
    for (int ki = 0; ki < 4; ki++) {
        const size_t b = cllm_cuda_gemm_scratch_bytes(&v[ki].w[0], nmax),
                     b8 = cllm_cuda_gemm_i8_scratch(&v[ki].w[0], nmax);
        if (b > c.scratch_bytes) c.scratch_bytes = b;
        if (b8 > c.scratch_bytes) c.scratch_bytes = b8;
    }
    if (c.scratch_bytes < cllm_cuda_matvec_cols_scratch(cols))
        c.scratch_bytes = cllm_cuda_matvec_cols_scratch(cols);
    MUST(cllm_cuda_alloc(g_mem, c.scratch_bytes, &c.scratch));
    MUST(cllm_cuda_blas_create(&c.blas));
    for (int ki = 0; ki < 4; ki++) {  // raw bf16, fused lossless, raw int8, fused int8
        const variant *var = &v[ki];
        if (!cllm_cuda_matvec_cols_ok(&var->w[0])) goto gemm;
        const double one = time_cols_us(var, &c, 1, 0);
        for (uint32_t n = 1; n <= 8; n *= 2) {
            cols_launch(&c, &var->w[0], n, 0);
            MUST(cllm_cuda_copy(ya, c.y, n * rows * 4, g_stream));
            int same = 1;
            for (uint32_t k = 0; k < n; k++) {
                MUST(cllm_cuda_matvec(&var->w[0], c.x + k * cols, c.y, 0, g_stream));
                MUST(cllm_cuda_copy(yb, c.y, rows * 4, g_stream));
                MUST(cllm_cuda_sync(g_stream));
                same &= memcmp(ya + k * rows, yb, rows * 4) == 0;
            }
            const double us = time_cols_us(var, &c, n, 0);
            printf("%5llux%-5llu %-15s n=%u columns %8.2f us (%.3fx n one-token launches)  %s\n",
                   (unsigned long long)rows, (unsigned long long)cols, var->name, n, us,
                   n * one / us, same ? "bit-identical" : "DIFFERS");
        }
    gemm:  // prefill's GEMMs (compute code: unpacked into the scratch); each fused kind's output
           // against raw's on the same weights, bit for bit (first copy)
        for (uint32_t n = 8; n <= nmax; n *= 2) {
            printf("%5llux%-5llu %-15s n=%u GEMM %8.2f us", (unsigned long long)rows,
                   (unsigned long long)cols, var->name, n, time_cols_us(var, &c, n, 1));
            if (ki % 2) {
                cols_launch(&c, &v[ki - 1].w[0], n, 1);
                MUST(cllm_cuda_copy(ga, c.y, n * rows * 4, g_stream));
                cols_launch(&c, &var->w[0], n, 1);
                MUST(cllm_cuda_copy(gb, c.y, n * rows * 4, g_stream));
                MUST(cllm_cuda_sync(g_stream));
                printf("  %s", memcmp(ga, gb, n * rows * 4) ? "DIFFERS from raw" : "bit-identical to raw");
            }
            if (ki >= 2 && n <= 64)
                printf("  tensor-core int8 GEMM %8.2f us", time_cols_us(var, &c, n, 2));
            printf("\n");
        }
    }
    cllm_cuda_blas_destroy(c.blas);
    MUST(cllm_cuda_release(g_mem, (void *)c.x));
    MUST(cllm_cuda_release(g_mem, c.y));
    MUST(cllm_cuda_release(g_mem, c.scratch));
    free(x), free(ya), free(yb), free(ga), free(gb);
}

// µs per gate/up + SwiGLU launch of var (median of 15 bursts over rotating copies r, r + 1): the
// one-token launch when nc == 0, else the column launch of nc tokens.
static double swiglu_us(const variant *var, uint32_t nc, const float *xd, float *yd, void *scr,
                        size_t sb) {
    const uint64_t cols = var->w[0].cols, ld = var->w[0].rows;
    cllm_cuda_timer *t;
    MUST(cllm_cuda_timer_create(&t));
    float ms[15];
    for (int b = -1; b < 15; b++) {
        MUST(cllm_cuda_timer_start(t, g_stream));
        for (int i = 0; i < BURST; i++) {
            const int r = (b * BURST + 2 * i + 2 * BURST) % (var->n_rot - 1);
            if (nc == 0)
                MUST(cllm_cuda_matvec_swiglu(&var->w[r], &var->w[r + 1], xd, yd, g_stream));
            else
                MUST(cllm_cuda_matvec_cols_job(&var->w[r], 2, CLLM_CUDA_COLS_SWIGLU, xd, cols, nc,
                                               &yd, &ld, scr, sb, g_stream));
        }
        MUST(cllm_cuda_timer_stop(t, g_stream));
        MUST(cllm_cuda_timer_ms(t, &ms[b < 0 ? 0 : b]));
    }
    cllm_cuda_timer_free(t);
    qsort(ms, 15, sizeof ms[0], cmpf);
    return 1e3 * ms[7] / BURST;
}

// --swiglu: the one-token cllm_cuda_matvec_swiglu of a gate/up pair (fused checked bit for bit
// against raw), then cllm_cuda_matvec_cols_job(CLLM_CUDA_COLS_SWIGLU) at n = 1 .. 8, raw bf16,
// fused lossless, raw int8 and fused int8; µs per launch (swiglu_us) and whether each column
// equals the one-token launch on it.
static void bench_swiglu(void) {
    const uint64_t rows = 11008, cols = 4096, n = rows * cols;
    float *f = synth(rows, cols, 4242);
    uint16_t *bf = malloc(n * 2);
    int8_t *q = malloc(n);
    float *sc = malloc(rows * sizeof(float));
    for (uint64_t i = 0; i < n; i++) bf[i] = cllm_f32_to_bf16(f[i]);
    MUST(cllm_quantize_int8(f, CLLM_DTYPE_F32, rows, cols, 0, q, sc));
    free(f);
    variant v[4] = {{.name = "raw bf16"}, {.name = "fused lossless"}, {.name = "raw int8"},
                    {.name = "fused int8"}};
    cllm_cuda_weight w = {.rows = rows, .cols = cols, .kind = CLLM_CUDA_W_BF16}, cw;
    w.data = dev_copy(bf, n * 2, 1);
    make_rot(&v[0], &w, n * 2, 0);
    size_t cb;
    MUST(cllm_cuda_ccode_make_host(g_mem, CLLM_CUDA_W_BF16, bf, NULL, rows, cols, 0,
                                   omp_get_max_threads(), g_stream, &cw, &cb));
    make_rot(&v[1], &cw, cb, 0);
    cllm_cuda_weight wi = {.rows = rows, .cols = cols, .kind = CLLM_CUDA_W_INT8,
                           .group_size = (uint32_t)cols};
    wi.data = dev_copy(q, n, 1);
    wi.scales = dev_copy(sc, rows * 4, 1);
    make_rot(&v[2], &wi, n, rows * 4);
    MUST(cllm_cuda_ccode_make_host(g_mem, CLLM_CUDA_W_INT8, q, sc, rows, cols, (uint32_t)cols,
                                   omp_get_max_threads(), g_stream, &cw, &cb));
    make_rot(&v[3], &cw, cb, 0);
    free(q), free(sc);
    float *x = malloc(8 * cols * 4), *ya = malloc(8 * rows * 4), *yb = malloc(rows * 4);
    for (uint64_t i = 0; i < 8 * cols; i++) x[i] = (float)gauss(5, i);
    float *xd = dev_copy(x, 8 * cols * 4, 1), *yd;
    MUST(cllm_cuda_alloc(g_mem, 8 * rows * 4, (void **)&yd));
    const size_t sb = cllm_cuda_matvec_cols_scratch(cols);
    void *scr;
    MUST(cllm_cuda_alloc(g_mem, sb, &scr));
    const uint64_t ld = rows;
    float *y1[2] = {malloc(rows * 4), malloc(rows * 4)};  // raw's and fused's one-token output
    for (int k = 0; k < 4; k++) {
        const variant *var = &v[k];
        // The one-token launch (what a decode step of one sequence runs).
        MUST(cllm_cuda_matvec_swiglu(&var->w[0], &var->w[1], xd, yd, g_stream));
        MUST(cllm_cuda_copy(y1[k % 2], yd, rows * 4, g_stream));
        MUST(cllm_cuda_sync(g_stream));
        printf("gate/up 2 x %llux%llu  %-15s one token %8.2f us  %s\n", (unsigned long long)rows,
               (unsigned long long)cols, var->name, swiglu_us(var, 0, xd, yd, scr, sb),
               k % 2 == 0                                ? ""
               : memcmp(y1[0], y1[1], rows * 4) == 0 ? "bit-identical to raw"
                                                         : "DIFFERS from raw");
        for (uint32_t nc = 1; nc <= 8; nc++) {
            MUST(cllm_cuda_matvec_cols_job(&var->w[0], 2, CLLM_CUDA_COLS_SWIGLU, xd, cols, nc, &yd,
                                           &ld, scr, sb, g_stream));
            MUST(cllm_cuda_copy(ya, yd, nc * rows * 4, g_stream));
            int same = 1;
            for (uint32_t c = 0; c < nc; c++) {
                MUST(cllm_cuda_matvec_swiglu(&var->w[0], &var->w[1], xd + c * cols, yd, g_stream));
                MUST(cllm_cuda_copy(yb, yd, rows * 4, g_stream));
                MUST(cllm_cuda_sync(g_stream));
                same &= memcmp(ya + c * rows, yb, rows * 4) == 0;
            }
            printf("gate/up 2 x %llux%llu  %-15s n=%u  %8.2f us  %s\n", (unsigned long long)rows,
                   (unsigned long long)cols, var->name, nc, swiglu_us(var, nc, xd, yd, scr, sb),
                   same ? "bit-identical to one-token launches" : "DIFFERS");
        }
    }
    for (int k = 0; k < 4; k++) free_rot(&v[k]);
    MUST(cllm_cuda_release(g_mem, xd));
    MUST(cllm_cuda_release(g_mem, yd));
    MUST(cllm_cuda_release(g_mem, scr));
    free(bf), free(x), free(ya), free(yb), free(y1[0]), free(y1[1]);
}

// One shape: raw bf16, fused lossless, raw int8, fused int8. Adds the encode seconds of the two
// codes to enc_s[0] (bf16) and enc_s[1] (int8), `times` times (a layer holds that many).
static void bench_shape(uint64_t rows, uint64_t cols, int times, double *enc_s, double *tok_ms) {
    const uint64_t n = rows * cols;
    float *f = synth(rows, cols, rows * 1000003 + cols);
    uint16_t *bf = malloc(n * 2);
    int8_t *q = malloc(n);
    float *sc = malloc(rows * sizeof(float));
    for (uint64_t i = 0; i < n; i++) bf[i] = cllm_f32_to_bf16(f[i]);
    MUST(cllm_quantize_int8(f, CLLM_DTYPE_F32, rows, cols, 0, q, sc));
    free(f);
    const int nt = omp_get_max_threads();
    variant v[4] = {{.name = "raw bf16"}, {.name = "fused lossless"}, {.name = "raw int8"},
                    {.name = "fused int8"}};
    cllm_cuda_weight w = {.rows = rows, .cols = cols, .kind = CLLM_CUDA_W_BF16};
    w.data = dev_copy(bf, n * 2, 1);
    make_rot(&v[0], &w, n * 2, 0);
    cllm_cuda_weight cw;
    size_t cb;
    double t0 = now_s();
    MUST(cllm_cuda_ccode_make_host(g_mem, CLLM_CUDA_W_BF16, bf, NULL, rows, cols, 0, nt, g_stream,
                                   &cw, &cb));
    enc_s[0] += (now_s() - t0) * times;
    make_rot(&v[1], &cw, cb, 0);
    cllm_cuda_weight wi = {.rows = rows, .cols = cols, .kind = CLLM_CUDA_W_INT8,
                           .group_size = (uint32_t)cols};
    wi.data = dev_copy(q, n, 1);
    wi.scales = dev_copy(sc, rows * 4, 1);
    make_rot(&v[2], &wi, n, rows * 4);
    t0 = now_s();
    MUST(cllm_cuda_ccode_make_host(g_mem, CLLM_CUDA_W_INT8, q, sc, rows, cols, (uint32_t)cols, nt,
                                   g_stream, &cw, &cb));
    enc_s[1] += (now_s() - t0) * times;
    make_rot(&v[3], &cw, cb, 0);
    float *x = malloc(cols * 4), *ya = malloc(rows * 4), *yb = malloc(rows * 4);
    for (uint64_t c = 0; c < cols; c++) x[c] = (float)gauss(77, c);
    float *xd = dev_copy(x, cols * 4, 1), *yd;
    MUST(cllm_cuda_alloc(g_mem, rows * 4, (void **)&yd));
    double raw_ms[2] = {0, 0};
    for (int k = 0; k < 4; k++) {
        MUST(cllm_cuda_matvec(&v[k].w[0], xd, yd, 0, g_stream));
        MUST(cllm_cuda_copy(k % 2 ? yb : ya, yd, rows * 4, g_stream));
        MUST(cllm_cuda_sync(g_stream));
        const int same = k % 2 ? memcmp(ya, yb, rows * 4) == 0 : 1;
        const double ms = time_ms(&v[k], xd, yd);
        if (k % 2 == 0) raw_ms[k / 2] = ms;
        tok_ms[k] += ms * (times ? 32.0 * times : 1.0);  // 32 layers; the lm_head once
        printf("%5llux%-5llu %-15s %6.3f bits/w %8.2f us %7.1f GB/s read %7.1f GB/s bf16-eq",
               (unsigned long long)rows, (unsigned long long)cols, v[k].name,
               8.0 * (double)v[k].bytes / (double)n, ms * 1e3, v[k].bytes / (ms * 1e6),
               2.0 * (double)n / (ms * 1e6));
        if (k % 2) printf("  %.3fx raw  %s", raw_ms[k / 2] / ms, same ? "bit-identical" : "DIFFERS");
        printf("\n");
    }
    bench_cols(v, rows, cols);
    for (int k = 0; k < 4; k++) free_rot(&v[k]);
    MUST(cllm_cuda_release(g_mem, xd));
    MUST(cllm_cuda_release(g_mem, yd));
    free(bf), free(q), free(sc), free(x), free(ya), free(yb);
}

// --scan: per kind, time per launch of R x 4096 for R = 1024 .. 32768 and the fit t = a + bytes / B.
// --waves: R = 1024 .. 16384 in steps of 1024 (a 16-row tile per block: 64 .. 1024 blocks, i.e.
// about 0.25 .. 4 waves of the one-token kernels), no fit: whether a partial last wave costs a
// whole one.
enum { SCAN_MAX = 16 };
static void scan(int waves) {
    const uint64_t cols = 4096;
    static const uint64_t pow2[6] = {1024, 2048, 4096, 8192, 16384, 32768};
    const int NR = waves ? 16 : 6;
    uint64_t rs[SCAN_MAX];
    for (int ri = 0; ri < NR; ri++) rs[ri] = waves ? 1024 * (uint64_t)(ri + 1) : pow2[ri];
    static const char *names[6] = {"raw bf16", "fused bf16", "raw f16", "fused f16", "raw int8",
                                   "fused int8"};
    double us[6][SCAN_MAX], by[6][SCAN_MAX];
    const int nt = omp_get_max_threads();
    for (int ri = 0; ri < NR; ri++) {
        const uint64_t rows = rs[ri], n = rows * cols;
        float *f = synth(rows, cols, rows * 7919 + 1);
        uint16_t *bf = malloc(n * 2), *hf = malloc(n * 2);
        int8_t *q = malloc(n);
        float *sc = malloc(rows * sizeof(float));
        for (uint64_t i = 0; i < n; i++) bf[i] = cllm_f32_to_bf16(f[i]), hf[i] = cllm_f32_to_f16(f[i]);
        MUST(cllm_quantize_int8(f, CLLM_DTYPE_F32, rows, cols, 0, q, sc));
        free(f);
        float *x = malloc(cols * 4);
        for (uint64_t c = 0; c < cols; c++) x[c] = (float)gauss(77, c);
        float *xd = dev_copy(x, cols * 4, 1), *yd;
        MUST(cllm_cuda_alloc(g_mem, rows * 4, (void **)&yd));
        for (int k = 0; k < 6; k++) {
            variant v = {.name = names[k]};
            const int i8 = k >= 4, f16 = k == 2 || k == 3;
            cllm_cuda_weight w = {.rows = rows, .cols = cols,
                                  .kind = i8    ? CLLM_CUDA_W_INT8
                                          : f16 ? CLLM_CUDA_W_F16
                                                : CLLM_CUDA_W_BF16,
                                  .group_size = i8 ? (uint32_t)cols : 0};
            const void *host = i8 ? (const void *)q : f16 ? (const void *)hf : (const void *)bf;
            if (k % 2 == 0) {
                w.data = dev_copy(host, n * (i8 ? 1 : 2), 1);
                if (i8) w.scales = dev_copy(sc, rows * 4, 1);
                make_rot(&v, &w, n * (i8 ? 1 : 2), i8 ? rows * 4 : 0);
            } else {
                cllm_cuda_weight cw;
                size_t cb;
                MUST(cllm_cuda_ccode_make_host(g_mem, w.kind, host, i8 ? sc : NULL, rows, cols,
                                               i8 ? (uint32_t)cols : 0, nt, g_stream, &cw, &cb));
                make_rot(&v, &cw, cb, 0);
            }
            us[k][ri] = 1e3 * time_ms(&v, xd, yd);
            by[k][ri] = (double)v.bytes;
            free_rot(&v);
        }
        MUST(cllm_cuda_release(g_mem, xd));
        MUST(cllm_cuda_release(g_mem, yd));
        free(bf), free(hf), free(q), free(sc), free(x);
    }
    if (waves) {  // one line per R: rows, then each kind's us
        printf("one launch of R x 4096, us (rotating copies beyond L2)\nwaves | %6s", "rows");
        for (int k = 0; k < 6; k++) printf(" %11s", names[k]);
        printf("\n");
        for (int ri = 0; ri < NR; ri++) {
            printf("waves | %6llu", (unsigned long long)rs[ri]);
            for (int k = 0; k < 6; k++) printf(" %11.2f", us[k][ri]);
            printf("\n");
        }
        return;
    }
    printf("one launch of R x 4096, us (rotating copies beyond L2), and the fit over R >= 2048\n");
    printf("%-11s", "kind");
    for (int ri = 0; ri < NR; ri++) printf(" %8llu", (unsigned long long)rs[ri]);
    printf("   fixed a (us)   B (TB/s)   a at R=4096: share\n");
    for (int k = 0; k < 6; k++) {
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        int m = 0;
        for (int ri = 1; ri < NR; ri++, m++) {
            const double xb = by[k][ri], yt = us[k][ri];
            sx += xb, sy += yt, sxx += xb * xb, sxy += xb * yt;
        }
        const double b = (m * sxy - sx * sy) / (m * sxx - sx * sx), a = (sy - b * sx) / m;
        printf("%-11s", names[k]);
        for (int ri = 0; ri < NR; ri++) printf(" %8.2f", us[k][ri]);
        printf("   %12.2f   %8.2f   %5.1f%%\n", a, 1e-6 / b, 100.0 * a / us[k][2]);
    }
}

int main(int argc, char **argv) {
    const int do_waves = argc == 2 && strcmp(argv[1], "--waves") == 0;
    const int do_scan = do_waves || (argc == 2 && strcmp(argv[1], "--scan") == 0);
    const int do_swiglu = argc == 2 && strcmp(argv[1], "--swiglu") == 0;
    const int n_shapes = argc > 1 && !do_scan && !do_swiglu ? atoi(argv[1]) : 4;
    if (argc > 2 || n_shapes < 1 || n_shapes > 4) {
        fprintf(stderr, "usage: bench_fused [N | --scan | --waves | --swiglu]   (N = 1..4: the first N shapes)\n");
        return 2;
    }
    if (cllm_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char desc[256];
    MUST(cllm_cuda_device_open(0, desc, sizeof desc));
    MUST(cllm_cuda_mem_create(&g_mem));
    MUST(cllm_cuda_stream_create(&g_stream));
    printf("device: %s; batch 1 (n = 1 column); %d host threads for the encoder\n", desc,
           omp_get_max_threads());
    if (do_scan || do_swiglu) {
        if (do_scan) scan(do_waves);
        else bench_swiglu();
        cllm_cuda_mem_free_all(g_mem);
        cllm_cuda_stream_destroy(g_stream);
        return 0;
    }
    static const uint64_t shapes[4][3] = {{4096, 4096, 4}, {11008, 4096, 2}, {4096, 11008, 1},
                                          {32000, 4096, 0}};
    double enc[2] = {0, 0}, tok[4] = {0, 0, 0, 0};
    for (int s = 0; s < n_shapes; s++) bench_shape(shapes[s][0], shapes[s][1], (int)shapes[s][2], enc, tok);
    if (n_shapes == 4)
        printf("matvec time of one Llama-2-7B token (32 layers x 7 matrices + lm_head, separate launches):"
               " raw bf16 %.3f ms, fused lossless %.3f ms (%.3fx), raw int8 %.3f ms, fused int8 %.3f "
               "ms (%.3fx)\n", tok[0], tok[1], tok[0] / tok[1], tok[2], tok[3], tok[2] / tok[3]);
    printf("compute-code load (C encoder + upload) of one 7B layer (4 x 4096x4096, 2 x 11008x4096, "
           "4096x11008): lossless %.3f s, int8 %.3f s\n", enc[0], enc[1]);
    cllm_cuda_mem_free_all(g_mem);
    cllm_cuda_stream_destroy(g_stream);
    return 0;
}
#else
#include <stdio.h>
int main(void) {
    printf("SKIP: bench_fused needs the CUDA build\n");
    return 77;
}
#endif
