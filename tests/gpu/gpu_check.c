// GPU checks and benchmarks of src/cuda: the rANS decoders against the C decoder (bit-exact),
// corruption reporting, every compute kernel against the library's C reference (src/ref: relative
// L2 error within a stated tolerance, or bit for bit), and timings (CUDA events, warm-up, median
// of many runs, rotating buffers). Prints a summary table at the end. Exit: 0 all passed, 1 a
// check failed, 77 no GPU.
//
// Usage: gpu_check [--quick]   (--quick: skips the 7B-layer decode benchmark)
#include "codec/cllm_ccode.h"
#include "codec/cllm_codec.h"
#include "common/cllm_half.h"
#include "cuda/cllm_cuda.h"
#include "ref/cllm_ref.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- bookkeeping -------------------------------------------------------------------------------

static int g_failed, g_passed;
static cllm_cuda_mem *g_mem;
static void *g_stream;
static char g_summary[32768];
static size_t g_summary_len;

static void summary(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void summary(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_summary + g_summary_len, sizeof g_summary - g_summary_len, fmt, ap);
    va_end(ap);
    if (n > 0 && g_summary_len + (size_t)n < sizeof g_summary) g_summary_len += (size_t)n;
}

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) g_passed++;
    else g_failed++;
    fflush(stdout);
}

#define MUST(expr)                                                                                 \
    do {                                                                                           \
        cllm_status must_st_ = (expr);                                                             \
        if (must_st_ != CLLM_OK) {                                                                 \
            fprintf(stderr, "FATAL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,              \
                    cllm_status_name(must_st_), cllm_last_error());                                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "FATAL: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *dev_alloc(size_t n) {
    void *p;
    MUST(cllm_cuda_alloc(g_mem, n, &p));
    return p;
}

static void *upload(const void *src, size_t n) {
    void *p = dev_alloc(n);
    MUST(cllm_cuda_copy(p, src, n, g_stream));
    return p;
}

static void download(void *dst, const void *src, size_t n) {
    MUST(cllm_cuda_copy(dst, src, n, g_stream));
    MUST(cllm_cuda_sync(g_stream));
}

// ---- random data (splitmix64, Box-Muller) -----------------------------------------------------

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uni(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static double normal(void) {
    double u = uni(), v = uni();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

enum dist { D_NORMAL, D_HEAVY, D_CONST };

// Element i depends only on (seed, i), so large tensors are generated in parallel.
static uint64_t hash64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float sample_at(enum dist d, uint64_t seed, uint64_t i) {
    if (d == D_CONST) return 0.015625f;
    uint64_t h1 = hash64(seed + 2 * i), h2 = hash64(~seed + 2 * i + 1);
    double u = ((h1 >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double v = (h2 >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2.0 * log(u));
    double n1 = r * cos(6.283185307179586 * v), n2 = r * sin(6.283185307179586 * v);
    if (d == D_NORMAL) return (float)(0.02 * n1);
    double s = 0.02 * exp(0.6 * n2);  // log-normal scale mixture: heavy tails
    if ((h2 & 1023) == 0) s *= 30.0;   // rare outliers
    return (float)(s * n1);
}

static void *make_tensor(cllm_dtype dt, uint64_t n, enum dist d) {
    void *p = xmalloc(n * cllm_dtype_size(dt));
    const uint64_t seed = rnd();
#pragma omp parallel for schedule(static)
    for (uint64_t i = 0; i < n; i++) {
        float f = sample_at(d, seed, i);
        if (dt == CLLM_DTYPE_F32) ((float *)p)[i] = f;
        else if (dt == CLLM_DTYPE_F16) ((uint16_t *)p)[i] = cllm_f32_to_f16(f);
        else ((uint16_t *)p)[i] = cllm_f32_to_bf16(f);
    }
    return p;
}

static void fill_floats(float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * normal());
}

// ---- a coded tensor on both sides ---------------------------------------------------------------

typedef struct coded_case {
    cllm_coded coded;
    cllm_coded_desc desc;
    uint8_t *ref;      // C decoder output
    size_t out_bytes;  // decoded bytes
    uint8_t *payload_dev;
} coded_case;

static void coded_make_sb(coded_case *c, cllm_codec codec, cllm_dtype dt, uint64_t rows,
                          uint64_t cols, uint32_t group_size, uint64_t block_symbols,
                          uint32_t scale_bits, enum dist d) {
    memset(c, 0, sizeof *c);
    void *src = make_tensor(dt, rows * cols, d);
    cllm_encode_params p = {.codec = codec, .group_size = group_size,
                            .block_symbols = block_symbols, .scale_bits = scale_bits};
    MUST(cllm_encode_tensor(src, dt, rows, cols, &p, &c->coded));
    free(src);
    MUST(cllm_desc_from_payload(&c->coded.info, c->coded.payload, c->coded.payload_size,
                                &c->desc));
    MUST(cllm_payload_check(&c->desc, c->coded.payload, c->coded.payload_size));
    c->out_bytes = rows * cols * (codec == CLLM_CODEC_INT8 ? 1 : cllm_dtype_size(dt));
    c->ref = xmalloc(c->out_bytes);
    MUST(cllm_decode_tensor(&c->coded.info, c->coded.payload, c->coded.payload_size, c->ref,
                            c->out_bytes, NULL, 0, 0));
    c->payload_dev = upload(c->coded.payload, c->coded.payload_size);
}

static void coded_make(coded_case *c, cllm_codec codec, cllm_dtype dt, uint64_t rows,
                       uint64_t cols, uint32_t group_size, uint64_t block_symbols, enum dist d) {
    coded_make_sb(c, codec, dt, rows, cols, group_size, block_symbols, 0, d);
}

static void coded_free(coded_case *c) {
    MUST(cllm_cuda_release(g_mem, c->payload_dev));
    free(c->ref);
    cllm_coded_free(&c->coded);
}

// Decodes blocks [b0, b0+nb) on the GPU; returns the status of the status check.
static cllm_status gpu_decode(const coded_case *c, void *out_dev, uint64_t b0, uint64_t nb,
                              cllm_cuda_decode_status *st_dev) {
    cllm_cuda_decode_job job;
    MUST(cllm_cuda_decode_job_init(&c->desc, c->payload_dev, out_dev, b0, nb, &job));
    MUST(cllm_cuda_decode_status_reset(st_dev, g_stream));
    MUST(cllm_cuda_decode(&job, 1, st_dev, g_stream));
    return cllm_cuda_decode_status_check(st_dev, g_stream);
}

// ---- decoder correctness ------------------------------------------------------------------------

typedef struct dec_shape {
    cllm_codec codec;
    cllm_dtype dt;
    uint64_t rows, cols;
    uint32_t group_size;
    uint64_t block_symbols;
    enum dist d;
    const char *what;
    uint32_t scale_bits;  // 0: the encoder's choice (int8: usually 14)
} dec_shape;

static const dec_shape k_shapes[] = {
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 1, 1, 0, 0, D_NORMAL, "1x1", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 1, 37, 0, 0, D_NORMAL, "1xN, N%32!=0", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 1, 70001, 0, 0, D_HEAVY, "one long row", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 37, 333, 0, 1000, D_NORMAL, "rows%rpb!=0, odd cols", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 64, 512, 0, 4096, D_CONST, "all equal", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 300, 1024, 0, 8192, D_HEAVY, "aligned, many blocks", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F16, 1, 1, 0, 0, D_NORMAL, "1x1", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F16, 37, 333, 0, 1000, D_HEAVY, "odd shape", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F16, 256, 1024, 0, 0, D_NORMAL, "default blocks", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F32, 1, 5, 0, 0, D_NORMAL, "1x5", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F32, 37, 333, 0, 1000, D_HEAVY, "odd shape", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F32, 128, 1024, 0, 0, D_CONST, "all equal", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 1, 1, 0, 0, D_NORMAL, "1x1", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 1, 45, 0, 0, D_NORMAL, "1xN", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 37, 333, 7, 1000, D_HEAVY, "odd shape, group 7", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_F32, 64, 512, 0, 4096, D_CONST, "all equal", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 300, 1024, 32, 8192, D_HEAVY, "aligned, group 32", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_F16, 1000, 4096, 0, 0, D_HEAVY, "default blocks", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 4096, 4096, 0, 0, D_HEAVY, "4096x4096", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 4096, 4096, 0, 0, D_HEAVY, "4096x4096", 0},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 11008, 4096, 0, 0, D_HEAVY, "11008x4096", 0},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 11008, 4096, 0, 0, D_HEAVY, "11008x4096", 0},
    // Each table size, on both kernel shapes (narrow: <= 2^12 slots; wide: 2^13, 2^14).
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 300, 1024, 0, 8192, D_HEAVY, "scale 12", 12},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 300, 1024, 0, 8192, D_HEAVY, "scale 13", 13},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 37, 333, 7, 1000, D_HEAVY, "scale 14, group 7", 14},
    {CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 1, 45, 0, 0, D_NORMAL, "scale 8", 8},
    {CLLM_CODEC_LOSSLESS, CLLM_DTYPE_F32, 37, 333, 0, 1000, D_HEAVY, "scale 10", 10},
};

static int decode_case(const dec_shape *s, cllm_cuda_decode_status *st_dev) {
    coded_case c;
    coded_make_sb(&c, s->codec, s->dt, s->rows, s->cols, s->group_size, s->block_symbols,
                  s->scale_bits, s->d);
    // One extra byte before the output: an unaligned destination takes the per-element path.
    uint8_t *out_dev = dev_alloc(c.out_bytes + 16);
    uint8_t *got = xmalloc(c.out_bytes);
    int ok = 1;
    const size_t esz = s->codec == CLLM_CODEC_INT8 ? 1 : cllm_dtype_size(s->dt);
    for (int shift = 0; shift < 2 && ok; shift++) {
        const size_t sh = shift ? esz : 0;  // element-aligned, not 16-byte aligned
        cllm_status st = gpu_decode(&c, out_dev + sh, 0, c.desc.n_blocks, st_dev);
        download(got, out_dev + sh, c.out_bytes);
        ok = st == CLLM_OK && memcmp(got, c.ref, c.out_bytes) == 0;
        if (st != CLLM_OK) printf("     status %s: %s\n", cllm_status_name(st), cllm_last_error());
    }
    if (ok && c.desc.n_blocks > 2) {  // decoding block 1 alone writes exactly its rows
        const size_t row_bytes = c.out_bytes / s->rows, r0 = c.desc.rows_per_block;
        MUST(cllm_cuda_copy(out_dev, c.ref, c.out_bytes, g_stream));
        memset(got, 0xa5, c.out_bytes);
        MUST(cllm_cuda_copy(out_dev + r0 * row_bytes, got, r0 * row_bytes, g_stream));
        cllm_status st = gpu_decode(&c, out_dev, 1, 1, st_dev);
        download(got, out_dev, c.out_bytes);
        ok = st == CLLM_OK && memcmp(got, c.ref, c.out_bytes) == 0;
    }
    check(ok, "decode %-8s %-4s %6llux%-6llu rpb %-5u blocks %-5llu scale %2u %s",
          cllm_codec_name(s->codec), cllm_dtype_name(s->dt), (unsigned long long)s->rows,
          (unsigned long long)s->cols, c.desc.rows_per_block, (unsigned long long)c.desc.n_blocks,
          c.desc.scale_bits, s->what);
    free(got);
    MUST(cllm_cuda_release(g_mem, out_dev));
    coded_free(&c);
    return ok;
}

// One call with a 2^12-slot lossless job, a 2^14-slot int8 job, a raw job and a 2^13-slot job:
// every table on the wide kernel shape, each output bit-exact.
static void mixed_batch_case(cllm_cuda_decode_status *st_dev) {
    coded_case c[3];
    coded_make_sb(&c[0], CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 300, 1024, 0, 8192, 12, D_HEAVY);
    coded_make_sb(&c[1], CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 300, 1024, 0, 8192, 14, D_HEAVY);
    coded_make_sb(&c[2], CLLM_CODEC_INT8, CLLM_DTYPE_BF16, 37, 333, 0, 1000, 13, D_HEAVY);
    cllm_coded raw;
    void *src = make_tensor(CLLM_DTYPE_F32, 5 * 7, D_NORMAL);
    cllm_encode_params rp = {.codec = CLLM_CODEC_RAW};
    MUST(cllm_encode_tensor(src, CLLM_DTYPE_F32, 5, 7, &rp, &raw));
    cllm_coded_desc rd;
    MUST(cllm_desc_from_payload(&raw.info, raw.payload, raw.payload_size, &rd));
    uint8_t *raw_dev = upload(raw.payload, raw.payload_size), *raw_out = dev_alloc(5 * 7 * 4);
    cllm_cuda_decode_job jobs[4];
    uint8_t *outs[3];
    for (int i = 0; i < 3; i++) {
        outs[i] = dev_alloc(c[i].out_bytes);
        MUST(cllm_cuda_decode_job_init(&c[i].desc, c[i].payload_dev, outs[i], 0,
                                       c[i].desc.n_blocks, &jobs[i == 2 ? 3 : i]));
    }
    MUST(cllm_cuda_decode_job_init(&rd, raw_dev, raw_out, 0, 5, &jobs[2]));
    MUST(cllm_cuda_decode_status_reset(st_dev, g_stream));
    MUST(cllm_cuda_decode(jobs, 4, st_dev, g_stream));
    int ok = cllm_cuda_decode_status_check(st_dev, g_stream) == CLLM_OK;
    for (int i = 0; i < 3 && ok; i++) {
        uint8_t *got = xmalloc(c[i].out_bytes);
        download(got, outs[i], c[i].out_bytes);
        ok = memcmp(got, c[i].ref, c[i].out_bytes) == 0;
        free(got);
    }
    float back[35];
    download(back, raw_out, sizeof back);
    ok = ok && memcmp(back, src, sizeof back) == 0;
    check(ok, "decode one call, scales 12/14/13 + raw: bit-exact");
    summary("%-44s %s\n", "decode: mixed table sizes in one call", ok ? "PASS" : "FAIL");
    for (int i = 0; i < 3; i++) {
        MUST(cllm_cuda_release(g_mem, outs[i]));
        coded_free(&c[i]);
    }
    MUST(cllm_cuda_release(g_mem, raw_dev));
    MUST(cllm_cuda_release(g_mem, raw_out));
    cllm_coded_free(&raw);
    free(src);
}

// Corrupts a state, a word and the padding-or-last word of a valid payload; each must be reported
// (and the C decoder must agree that the payload is corrupt).
static void corrupt_cases(cllm_cuda_decode_status *st_dev) {
    coded_case c;
    coded_make(&c, CLLM_CODEC_LOSSLESS, CLLM_DTYPE_BF16, 64, 1000, 0, 16000, D_HEAVY);
    cllm_payload_layout_t lay;
    MUST(cllm_payload_layout(&c.desc, &lay));
    uint8_t *out_dev = dev_alloc(c.out_bytes);
    uint8_t *tmp = xmalloc(c.out_bytes);
    const uint64_t b1 = cllm_load_le64(c.coded.payload + lay.index_off + 8);
    const struct { const char *what; uint64_t off; uint8_t xor_; } k[] = {
        {"state of lane 3, block 0", lay.streams_off + 12, 0x01},
        {"a word of block 0", lay.streams_off + CLLM_RANS_STATE_BYTES + 40, 0x10},
        {"last bytes of block 0", lay.streams_off + b1 - 2, 0x80},
        {"state of lane 31, block 1", lay.streams_off + b1 + 124, 0x40},
    };
    int all = 1;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        c.coded.payload[k[i].off] ^= k[i].xor_;
        cllm_status cst = cllm_decode_tensor(&c.coded.info, c.coded.payload, c.coded.payload_size,
                                             tmp, c.out_bytes, NULL, 0, 0);
        MUST(cllm_cuda_copy(c.payload_dev, c.coded.payload, c.coded.payload_size, g_stream));
        cllm_status gst = gpu_decode(&c, out_dev, 0, c.desc.n_blocks, st_dev);
        int ok = gst == CLLM_ERR_CORRUPT && cst == CLLM_ERR_CORRUPT;
        check(ok, "corrupt payload (%s): GPU %s, C %s", k[i].what, cllm_status_name(gst),
              cllm_status_name(cst));
        all &= ok;
        c.coded.payload[k[i].off] ^= k[i].xor_;
    }
    MUST(cllm_cuda_copy(c.payload_dev, c.coded.payload, c.coded.payload_size, g_stream));
    check(gpu_decode(&c, out_dev, 0, c.desc.n_blocks, st_dev) == CLLM_OK,
          "restored payload decodes cleanly");
    // The LEFT predictor is refused up front.
    cllm_coded_desc d = c.desc;
    d.predictor = CLLM_PRED_LEFT;
    cllm_cuda_decode_job job;
    check(cllm_cuda_decode_job_init(&d, c.payload_dev, out_dev, 0, 1, &job) == CLLM_ERR_UNSUPPORTED,
          "predictor LEFT: CLLM_ERR_UNSUPPORTED");
    summary("%-44s %s\n", "decode: corruption reported", all ? "PASS" : "FAIL");
    free(tmp);
    MUST(cllm_cuda_release(g_mem, out_dev));
    coded_free(&c);
}

// ---- timing -----------------------------------------------------------------------------------

typedef void (*bench_fn)(void *ctx, int iter);

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Median milliseconds of `runs` timed calls after `warm` untimed ones.
static float bench_ms(bench_fn fn, void *ctx, int warm, int runs) {
    cllm_cuda_timer *t;
    MUST(cllm_cuda_timer_create(&t));
    for (int i = 0; i < warm; i++) fn(ctx, i);
    float ms[256];
    if (runs > 256) runs = 256;
    for (int i = 0; i < runs; i++) {
        MUST(cllm_cuda_timer_start(t, g_stream));
        fn(ctx, warm + i);
        MUST(cllm_cuda_timer_stop(t, g_stream));
        MUST(cllm_cuda_timer_ms(t, &ms[i]));
    }
    cllm_cuda_timer_free(t);
    qsort(ms, (size_t)runs, sizeof ms[0], cmp_float);
    return ms[runs / 2];
}

// ---- decode benchmark -------------------------------------------------------------------------

#define ROT 3  // rotating payload copies and outputs, so no run finds its data in L2

typedef struct dec_bench {
    size_t n_jobs;
    cllm_cuda_decode_job jobs[ROT][8];
    cllm_cuda_decode_status *st_dev;
} dec_bench;

static void dec_bench_run(void *ctx, int iter) {
    dec_bench *b = ctx;
    MUST(cllm_cuda_decode(b->jobs[iter % ROT], b->n_jobs, b->st_dev, g_stream));
}

// Encodes `n` tensors, checks one GPU decode of all of them in one launch bit for bit, and times it.
static void decode_bench(const char *name, cllm_codec codec, size_t n, const uint64_t (*shape)[2],
                         uint64_t block_symbols, uint32_t scale_bits,
                         cllm_cuda_decode_status *st_dev) {
    coded_case c[8];
    dec_bench b = {.n_jobs = n, .st_dev = st_dev};
    uint8_t *extra[ROT][8] = {{0}}, *outs[ROT][8] = {{0}};
    size_t out_total = 0, in_total = 0, n_blocks = 0;
    for (size_t i = 0; i < n; i++) {
        coded_make_sb(&c[i], codec, CLLM_DTYPE_BF16, shape[i][0], shape[i][1], 0, block_symbols,
                      scale_bits, D_HEAVY);
        out_total += c[i].out_bytes;
        in_total += c[i].coded.payload_size;
        n_blocks += c[i].desc.n_blocks;
        for (int r = 0; r < ROT; r++) {
            uint8_t *pl = r ? (extra[r][i] = upload(c[i].coded.payload, c[i].coded.payload_size))
                            : c[i].payload_dev;
            outs[r][i] = dev_alloc(c[i].out_bytes);
            MUST(cllm_cuda_decode_job_init(&c[i].desc, pl, outs[r][i], 0, c[i].desc.n_blocks,
                                           &b.jobs[r][i]));
        }
    }
    MUST(cllm_cuda_decode_status_reset(st_dev, g_stream));
    for (int r = 0; r < ROT; r++) dec_bench_run(&b, r);
    int ok = cllm_cuda_decode_status_check(st_dev, g_stream) == CLLM_OK;
    for (size_t i = 0; i < n && ok; i++) {
        uint8_t *got = xmalloc(c[i].out_bytes);
        for (int r = 0; r < ROT && ok; r++) {
            download(got, outs[r][i], c[i].out_bytes);
            ok = memcmp(got, c[i].ref, c[i].out_bytes) == 0;
        }
        free(got);
    }
    check(ok, "decode bench %s: %zu tensors, %zu blocks, bit-exact", name, n, n_blocks);
    float ms = bench_ms(dec_bench_run, &b, 3, 30);
    double out_gbs = out_total / (ms * 1e6), all_gbs = (out_total + in_total) / (ms * 1e6);
    printf("BENCH decode %-34s %8.3f ms  out %7.1f GB/s  in+out %7.1f GB/s  (%.3f bits/sym)\n",
           name, ms, out_gbs, all_gbs, 8.0 * in_total / (double)(out_total / (codec == CLLM_CODEC_INT8 ? 1 : 2)));
    summary("%-44s %s  %8.3f ms %8.1f GB/s out %8.1f GB/s in+out\n", name, ok ? "PASS" : "FAIL",
            ms, out_gbs, all_gbs);
    MUST(cllm_cuda_decode_status_check(st_dev, g_stream));
    for (size_t i = 0; i < n; i++) {
        for (int r = 0; r < ROT; r++) {
            MUST(cllm_cuda_release(g_mem, outs[r][i]));
            if (r) MUST(cllm_cuda_release(g_mem, extra[r][i]));
        }
        coded_free(&c[i]);
    }
}

// ---- C references: the library's own (src/ref), the specification of each kernel ------------

// The reference kernels' view of a weight whose data and scales are host copies.
static cllm_wview ref_view(const cllm_cuda_weight *w, const void *data, const float *scales) {
    cllm_wview v;
    memset(&v, 0, sizeof v);
    v.kind = (cllm_wkind)w->kind;
    v.rows = w->rows;
    v.cols = w->cols;
    v.data = data;
    if (w->kind == CLLM_CUDA_W_INT8) {
        v.scales = scales;
        v.group_size = w->group_size;
        v.groups_per_row = (w->cols + w->group_size - 1) / w->group_size;
    }
    return v;
}

static void ref_matvec(const cllm_cuda_weight *w, const void *data, const float *scales,
                       const float *x, float *y) {
    const cllm_wview v = ref_view(w, data, scales);
    cllm_k_matmul(y, w->rows, &v, x, w->cols, 1, omp_get_max_threads());
}

static void ref_rmsnorm(const float *x, const float *w, float *o, uint32_t n_rows, uint32_t dim,
                        float eps) {
    for (uint32_t t = 0; t < n_rows; t++)
        cllm_k_rmsnorm(o + (size_t)t * dim, x + (size_t)t * dim, w, dim, eps);
}

// Causal attention of n_q queries at pos0.. over caches (positions, nkv, hd).
static void ref_attention(const float *q, const float *kc, const float *vc, float *out,
                          uint32_t n_q, uint32_t pos0, uint32_t nh, uint32_t nkv, uint32_t hd) {
    float *scores = xmalloc((pos0 + n_q) * sizeof(float));
    for (uint32_t t = 0; t < n_q; t++)
        for (uint32_t h = 0; h < nh; h++) {
            const size_t kv_off = (size_t)(h / (nh / nkv)) * hd, o = ((size_t)t * nh + h) * hd;
            cllm_k_attention_head(out + o, q + o, kc + kv_off, vc + kv_off, CLLM_DTYPE_F32,
                                  pos0 + t + 1, hd, (size_t)nkv * hd, scores);
        }
    free(scores);
}

static double rel_l2(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// ---- compute kernel checks -----------------------------------------------------------------------

// A weight of one kind on the host (random, heavy-tailed; int8: uniform in [-127, 127] with
// positive scales) and its device copies.
typedef struct host_weight {
    cllm_cuda_weight w;  // data/scales: host pointers
    size_t bytes, n_sc;
} host_weight;

static void host_weight_make(host_weight *h, uint32_t kind, uint64_t rows, uint64_t cols,
                             uint32_t group) {
    const size_t esz = kind == CLLM_CUDA_W_F32 ? 4 : kind == CLLM_CUDA_W_INT8 ? 1 : 2;
    const size_t n = rows * cols;
    const uint32_t gs = group ? group : (uint32_t)cols;
    uint8_t *data = xmalloc(n * esz);
    const uint64_t seed = rnd();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float f = sample_at(D_HEAVY, seed, i);
        if (kind == CLLM_CUDA_W_F32) ((float *)data)[i] = f;
        else if (kind == CLLM_CUDA_W_F16) ((uint16_t *)data)[i] = cllm_f32_to_f16(f);
        else if (kind == CLLM_CUDA_W_BF16) ((uint16_t *)data)[i] = cllm_f32_to_bf16(f);
        else ((int8_t *)data)[i] = (int8_t)((int)(hash64(seed + i) % 255) - 127);
    }
    h->n_sc = kind == CLLM_CUDA_W_INT8 ? rows * ((cols + gs - 1) / gs) : 0;
    float *scales = h->n_sc ? xmalloc(h->n_sc * sizeof(float)) : NULL;
    for (size_t i = 0; i < h->n_sc; i++) scales[i] = (float)(0.001 + 0.001 * uni());
    h->w = (cllm_cuda_weight){.data = data, .scales = scales, .rows = rows, .cols = cols,
                              .kind = kind, .group_size = gs};
    h->bytes = n * esz;
}

static void host_weight_free(host_weight *h) {
    free((void *)h->w.data), free((void *)h->w.scales);
}

static cllm_cuda_weight weight_upload(const host_weight *h) {
    cllm_cuda_weight d = h->w;
    d.data = upload(h->w.data, h->bytes);
    d.scales = h->n_sc ? upload(h->w.scales, h->n_sc * sizeof(float)) : NULL;
    return d;
}

static void weight_release(cllm_cuda_weight *d) {
    MUST(cllm_cuda_release(g_mem, (void *)d->data));
    MUST(cllm_cuda_release(g_mem, (void *)d->scales));
}

static void ref_matvec_h(const host_weight *h, const float *x, float *y) {
    ref_matvec(&h->w, h->w.data, h->w.scales, x, y);
}

// Fills a device vector with NaN, so that an output row the kernel never writes fails the check.
static void poison(float *dev, size_t n) {
    void *nan = xmalloc(n * sizeof(float));
    memset(nan, 0xff, n * sizeof(float));
    MUST(cllm_cuda_copy(dev, nan, n * sizeof(float), g_stream));
    MUST(cllm_cuda_sync(g_stream));
    free(nan);
}

// x of normal values; outliers: a few entries 1000x larger and some tiny ones (the int8 tensor
// core path scales each 64 columns by their largest |x|).
static void make_x(float *x, size_t n, int outliers) {
    fill_floats(x, n, 1.0);
    if (!outliers) return;
    for (size_t i = 0; i < n; i += 1 + (size_t)(rnd() % 997)) x[i] *= 1000.0f;
    for (size_t i = 3; i < n; i += 1 + (size_t)(rnd() % 61)) x[i] *= 1e-6f;
}

// ---- matvec benchmarks: single launches (GPU idle before each, so host launch latency counts)
// and bursts of MV_BURST back-to-back launches (per-launch time, as in a CUDA graph) ----------

#define MV_ROT 8     // weight copies rotated through (at least 128 MiB in all, beyond L2)
#define MV_BURST 20  // launches per timed burst

enum mv_mode { MV_SINGLE, MV_MULTI, MV_SEPARATE, MV_SWIGLU, MV_SWIGLU_UNFUSED };

typedef struct mv_bench {
    enum mv_mode mode;
    int n_w, n_rot, reps;
    cllm_cuda_weight w[MV_ROT][CLLM_CUDA_MATVEC_MAX];
    const float *x;
    float *y[CLLM_CUDA_MATVEC_MAX];
} mv_bench;

static void mv_bench_run(void *ctx, int iter) {
    mv_bench *b = ctx;
    for (int k = 0; k < b->reps; k++) {
        const cllm_cuda_weight *w = b->w[(iter * b->reps + k) % b->n_rot];
        switch (b->mode) {
        case MV_SINGLE: MUST(cllm_cuda_matvec(w, b->x, b->y[0], 0, g_stream)); break;
        case MV_MULTI: MUST(cllm_cuda_matvec_multi(w, b->n_w, b->x, b->y, g_stream)); break;
        case MV_SEPARATE:
            for (int i = 0; i < b->n_w; i++)
                MUST(cllm_cuda_matvec(&w[i], b->x, b->y[i], 0, g_stream));
            break;
        case MV_SWIGLU: MUST(cllm_cuda_matvec_swiglu(&w[0], &w[1], b->x, b->y[0], g_stream)); break;
        case MV_SWIGLU_UNFUSED:
            MUST(cllm_cuda_matvec(&w[0], b->x, b->y[0], 0, g_stream));
            MUST(cllm_cuda_matvec(&w[1], b->x, b->y[1], 0, g_stream));
            MUST(cllm_cuda_swiglu(b->y[0], b->y[1], b->y[0], w[0].rows, g_stream));
            break;
        }
    }
}

// Times b as it stands (single launch) and in bursts; prints and adds summary rows. `bytes`:
// weight and scale bytes one call reads.
static void mv_time(mv_bench *b, const char *name, double bytes, int ok, int single) {
    if (single) {
        b->reps = 1;
        float ms = bench_ms(mv_bench_run, b, 5, 50);
        printf("BENCH %-40s %8.4f ms  %7.1f GB/s of weights\n", name, ms, bytes / (ms * 1e6));
        summary("%-44s %s  %8.4f ms %8.1f GB/s weights\n", name, ok ? "PASS" : "FAIL", ms,
                bytes / (ms * 1e6));
    }
    b->reps = MV_BURST;
    float ms = bench_ms(mv_bench_run, b, 2, 20) / MV_BURST;
    char bname[96];
    snprintf(bname, sizeof bname, "%.36s b2b", name);
    printf("BENCH %-40s %8.4f ms  %7.1f GB/s of weights (per launch, %d back to back)\n", bname,
           ms, bytes / (ms * 1e6), MV_BURST);
    summary("%-44s %s  %8.4f ms %8.1f GB/s weights\n", bname, ok ? "PASS" : "FAIL", ms,
            bytes / (ms * 1e6));
}

static int mv_rot_copies(double bytes) {
    int n = (int)(128.0 * 1048576 / bytes) + 1;
    return n < 3 ? 3 : n > MV_ROT ? MV_ROT : n;
}

static const char *wkind_name(uint32_t k) {
    static const char *n[] = {"f32", "f16", "bf16", "int8", "cc-bf16", "cc-int8", "cc-f16"};
    return k < 7 ? n[k] : "?";
}

// W random of the given kind; checks y = W x (tolerance 1e-5; the fp32-accumulation error of
// 11008 terms is ~1e-6) into a NaN-poisoned y, then y += W x, and, when `bench`, times it in GB/s
// of weights (single launches and back-to-back bursts).
static void matvec_case(uint32_t kind, uint64_t rows, uint64_t cols, uint32_t group, int bench,
                        int outliers) {
    host_weight h;
    host_weight_make(&h, kind, rows, cols, group);
    float *x = xmalloc(cols * sizeof(float)), *y = xmalloc(rows * sizeof(float));
    float *want = xmalloc(rows * sizeof(float));
    make_x(x, cols, outliers);
    ref_matvec_h(&h, x, want);
    mv_bench b = {.mode = MV_SINGLE, .n_w = 1};
    const double bytes = h.bytes + h.n_sc * 4.0;
    b.n_rot = bench ? mv_rot_copies(bytes) : 1;
    for (int r = 0; r < b.n_rot; r++) b.w[r][0] = weight_upload(&h);
    b.x = upload(x, cols * sizeof(float));
    b.y[0] = dev_alloc(rows * sizeof(float));
    poison(b.y[0], rows);
    MUST(cllm_cuda_matvec(&b.w[0][0], b.x, b.y[0], 0, g_stream));
    download(y, b.y[0], rows * sizeof(float));
    double err = rel_l2(y, want, rows);
    MUST(cllm_cuda_matvec(&b.w[0][0], b.x, b.y[0], 1, g_stream));  // accumulate: y += W x
    download(y, b.y[0], rows * sizeof(float));
    for (size_t i = 0; i < rows; i++) want[i] *= 2.0f;
    double err2 = rel_l2(y, want, rows);
    int ok = err < 1e-5 && err2 < 1e-5;
    check(ok, "matvec %-4s %6llux%-6llu group %-5u%s rel L2 %.2e (accumulate %.2e), tol 1e-5",
          wkind_name(kind), (unsigned long long)rows, (unsigned long long)cols, h.w.group_size,
          outliers ? " x outliers" : "", err, err2);
    char name[96];
    snprintf(name, sizeof name, "matvec %s %llux%llu g%u%s", wkind_name(kind),
             (unsigned long long)rows, (unsigned long long)cols, h.w.group_size,
             outliers ? " xo" : "");
    if (bench) mv_time(&b, name, bytes, ok, 1);
    else summary("%-44s %s  rel L2 %.1e\n", name, ok ? "PASS" : "FAIL", err);
    for (int r = 0; r < b.n_rot; r++) weight_release(&b.w[r][0]);
    MUST(cllm_cuda_release(g_mem, (void *)b.x));
    MUST(cllm_cuda_release(g_mem, b.y[0]));
    host_weight_free(&h);
    free(x), free(y), free(want);
}

// n matrices (rows[i] x cols) sharing x. swiglu (n == 2, equal rows): cllm_cuda_matvec_swiglu
// against silu(ref gate) * ref up; else cllm_cuda_matvec_multi against ref_matvec per matrix.
// Outputs start NaN-poisoned. `bench`: the fused launch against the separate launches.
static void multi_case(uint32_t kind, int n, const uint64_t *rows, uint64_t cols, uint32_t group,
                       int swiglu, int bench) {
    host_weight h[CLLM_CUDA_MATVEC_MAX];
    float *want[CLLM_CUDA_MATVEC_MAX], *got = NULL, *x = xmalloc(cols * sizeof(float));
    make_x(x, cols, 0);
    mv_bench b = {.mode = swiglu ? MV_SWIGLU : MV_MULTI, .n_w = n};
    double bytes = 0;
    uint64_t total_rows = 0;
    for (int i = 0; i < n; i++) {
        host_weight_make(&h[i], kind, rows[i], cols, group);
        want[i] = xmalloc(rows[i] * sizeof(float));
        ref_matvec_h(&h[i], x, want[i]);
        bytes += h[i].bytes + h[i].n_sc * 4.0;
        total_rows += rows[i];
    }
    if (swiglu) cllm_k_swiglu(want[0], want[1], rows[0]);
    b.n_rot = bench ? mv_rot_copies(bytes) : 1;
    for (int r = 0; r < b.n_rot; r++)
        for (int i = 0; i < n; i++) b.w[r][i] = weight_upload(&h[i]);
    b.x = upload(x, cols * sizeof(float));
    for (int i = 0; i < n; i++) {
        b.y[i] = dev_alloc(rows[i] * sizeof(float));
        poison(b.y[i], rows[i]);
    }
    b.reps = 1;
    mv_bench_run(&b, 0);
    double err = 0;
    for (int i = 0; i < (swiglu ? 1 : n); i++) {
        got = xmalloc(rows[i] * sizeof(float));
        download(got, b.y[i], rows[i] * sizeof(float));
        err = fmax(err, rel_l2(got, want[i], rows[i]));
        free(got);
    }
    int ok = err < 1e-5;
    char name[96];
    snprintf(name, sizeof name, "%s %s %dx%llux%llu g%u", swiglu ? "matvec_swiglu" : "matvec_multi",
             wkind_name(kind), n, (unsigned long long)rows[0], (unsigned long long)cols,
             h[0].w.group_size);
    check(ok, "%s (%llu rows in all) rel L2 %.2e, tol 1e-5", name,
          (unsigned long long)total_rows, err);
    if (bench) {
        mv_time(&b, name, bytes, ok, 0);
        b.mode = swiglu ? MV_SWIGLU_UNFUSED : MV_SEPARATE;
        snprintf(name, sizeof name, "%s %s %dx%llux%llu", swiglu ? "2 matvec+swiglu" : "matvec x",
                 wkind_name(kind), n, (unsigned long long)rows[0], (unsigned long long)cols);
        mv_time(&b, name, bytes, ok, 0);
    } else {
        summary("%-44s %s  rel L2 %.1e\n", name, ok ? "PASS" : "FAIL", err);
    }
    for (int r = 0; r < b.n_rot; r++)
        for (int i = 0; i < n; i++) weight_release(&b.w[r][i]);
    MUST(cllm_cuda_release(g_mem, (void *)b.x));
    for (int i = 0; i < n; i++) {
        MUST(cllm_cuda_release(g_mem, b.y[i]));
        host_weight_free(&h[i]);
        free(want[i]);
    }
    free(x);
}

// Split attention (position read from the device, splits fixed by a 4096-position context)
// against ref_attention at positions 1, 17, 128, 1000, 4000 (4 causal queries at 17), tolerance
// 1e-5; the scratch is reused, so its counters must come back to zero after each launch.
static void attention_split_cases(void) {
    const uint32_t ctx = 4096, pos[5] = {1, 17, 128, 1000, 4000};
    const uint32_t heads[3][3] = {{32, 32, 128}, {32, 8, 128}, {6, 6, 48}};  // nh, nkv, hd
    for (int hc = 0; hc < 3; hc++) {
        const uint32_t nh = heads[hc][0], nkv = heads[hc][1], hd = heads[hc][2];
        size_t sb = 0;
        for (uint32_t q = 1; q <= 4; q++) {
            size_t b = cllm_cuda_attention_split_scratch(q, ctx, nh, nkv, hd);
            sb = b > sb ? b : sb;
        }
        check(sb > 0, "attention_split: %u/%u x %u not supported", nh, nkv, hd);
        if (!sb) continue;
        void *zeros = calloc(1, sb);
        void *scratch = upload(zeros, sb);
        free(zeros);
        const size_t nkvs = (size_t)ctx * nkv * hd;
        float *kc = xmalloc(nkvs * 4), *vc = xmalloc(nkvs * 4);
        fill_floats(kc, nkvs, 1.0), fill_floats(vc, nkvs, 1.0);
        float *kd = upload(kc, nkvs * 4), *vd = upload(vc, nkvs * 4);
        for (int pi = 0; pi < 5; pi++) {
            const uint32_t nqy = hc == 2 && pi == 1 ? 4 : 1, p0 = pos[pi];
            const size_t nq = (size_t)nqy * nh * hd;
            float *q = xmalloc(nq * 4), *o = xmalloc(nq * 4), *want = xmalloc(nq * 4);
            fill_floats(q, nq, 1.0);
            ref_attention(q, kc, vc, want, nqy, p0, nh, nkv, hd);
            uint32_t pt[4];
            for (uint32_t t = 0; t < nqy; t++) pt[t] = p0 + t;
            float *qd = upload(q, nq * 4), *od = dev_alloc(nq * 4);
            uint32_t *pd = upload(pt, nqy * sizeof *pt);
            const cllm_cuda_tokpos tp = {pd, NULL, ctx, 0};
            MUST(cllm_cuda_attention_split(qd, kd, vd, od, tp, nqy, ctx, nh, nkv, hd, scratch, sb,
                                           0, g_stream));
            download(o, od, nq * 4);
            const double e = rel_l2(o, want, nq);
            check(e < 1e-5, "attention_split %u queries at %u, %u/%u heads x %u: rel L2 %.2e, "
                  "tol 1e-5", nqy, p0, nh, nkv, hd, e);
            char name[96];
            snprintf(name, sizeof name, "attention_split %u/%ux%u q%u at %u", nh, nkv, hd, nqy, p0);
            summary("%-44s %s  rel L2 %.1e\n", name, e < 1e-5 ? "PASS" : "FAIL", e);
            MUST(cllm_cuda_release(g_mem, qd));
            MUST(cllm_cuda_release(g_mem, od));
            MUST(cllm_cuda_release(g_mem, pd));
            free(q), free(o), free(want);
        }
        MUST(cllm_cuda_release(g_mem, kd));
        MUST(cllm_cuda_release(g_mem, vd));
        MUST(cllm_cuda_release(g_mem, scratch));
        free(kc), free(vc);
    }
}

// Argument checks of the multi launchers: mismatched kinds, widths or group sizes, too many
// matrices, NULL outputs.
static void multi_arg_cases(void) {
    uint8_t *buf = dev_alloc(4096);
    float *v = dev_alloc(4096);
    cllm_cuda_weight w[4];
    for (int i = 0; i < 4; i++)
        w[i] = (cllm_cuda_weight){.data = buf, .scales = v, .rows = 8, .cols = 64,
                                  .kind = CLLM_CUDA_W_BF16, .group_size = 64};
    float *y[4] = {v, v + 8, v + 16, v + 24};
    int ok = cllm_cuda_matvec_multi(w, 4, v, y, g_stream) == CLLM_ERR_ARG;
    ok &= cllm_cuda_matvec_multi(w, 0, v, y, g_stream) == CLLM_ERR_ARG;
    w[1].kind = CLLM_CUDA_W_F16;
    ok &= cllm_cuda_matvec_multi(w, 2, v, y, g_stream) == CLLM_ERR_ARG;
    w[1].kind = CLLM_CUDA_W_BF16, w[1].cols = 32;
    ok &= cllm_cuda_matvec_multi(w, 2, v, y, g_stream) == CLLM_ERR_ARG;
    w[1].cols = 64, w[1].rows = 16;  // rows may differ in multi, not in swiglu
    ok &= cllm_cuda_matvec_multi(w, 2, v, y, g_stream) == CLLM_OK;
    ok &= cllm_cuda_matvec_swiglu(&w[0], &w[1], v, y[3], g_stream) == CLLM_ERR_ARG;
    w[0].kind = w[1].kind = CLLM_CUDA_W_INT8, w[1].rows = 8, w[1].group_size = 32;
    ok &= cllm_cuda_matvec_swiglu(&w[0], &w[1], v, y[3], g_stream) == CLLM_ERR_ARG;
    y[1] = NULL;
    ok &= cllm_cuda_matvec_multi(w, 2, v, y, g_stream) == CLLM_ERR_ARG;
    MUST(cllm_cuda_sync(g_stream));
    check(ok, "matvec_multi/swiglu refuse mismatched or missing arguments");
    summary("%-44s %s\n", "matvec_multi/swiglu argument checks", ok ? "PASS" : "FAIL");
    MUST(cllm_cuda_release(g_mem, buf));
    MUST(cllm_cuda_release(g_mem, v));
}

// Realistic data for the compute code: int8 symbols ~ N(0, 9^2) (clamped; ~0.1% exceptions, and
// a few full-range values), bf16 as host_weight_make; `specials`: NaN, +-inf, +-0 and subnormals
// sprinkled in (bf16, f16; 2: and a quarter of the values any pattern), or a row of
// all-exception values (int8; 2: every value).
static void ccode_data(host_weight *h, int specials) {
    const size_t n = h->w.rows * h->w.cols;
    if (h->w.kind == CLLM_CUDA_W_INT8) {
        int8_t *q = (int8_t *)h->w.data;
        for (size_t i = 0; i < n; i++) {
            long v = lround(9.0 * normal());
            if (rnd() % 997 == 0) v = (long)(rnd() % 255) - 127;
            q[i] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
        }
        if (specials == 2)  // every value outside [-32, 31]: every vector flagged
            for (size_t i = 0; i < n; i++)
                q[i] = (int8_t)((int)(33 + rnd() % 95) * (rnd() % 2 ? 1 : -1));
        else if (specials)
            for (size_t c = 0; c < h->w.cols; c++) q[c] = (int8_t)(c % 2 ? 100 : -128 + (int)(c % 7));
        return;
    }
    if (!specials) return;
    // NaNs (payloads), infinities, zeros, subnormals, the smallest normal, the largest finite.
    static const uint16_t sp[] = {0x7fc0, 0xffc1, 0x7f80, 0xff80, 0x0000, 0x8000, 0x0001, 0x807f,
                                  0x0080, 0x7f7f};
    static const uint16_t sp16[] = {0x7e00, 0xfd01, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001, 0x83ff,
                                    0x0400, 0x7bff};
    const uint16_t *t = h->w.kind == CLLM_CUDA_W_F16 ? sp16 : sp;
    uint16_t *w = (uint16_t *)h->w.data;
    for (size_t i = 0; i < n; i += 1 + rnd() % 500) w[i] = t[rnd() % 10];
    if (specials == 2)  // a quarter of the values any pattern: most of those exceptions, so that
        for (size_t i = 0; i < n; i++)  // batches and groups hold more entries than a warp reads ahead
            if (rnd() % 4 == 0) w[i] = (uint16_t)rnd();
}

// ---- programmatic dependent launch: a layer-shaped chain of launches ------------------------------
//
// Per layer, as the batch-1 forward pass: xb = rmsnorm(x), q/k/v = W xb (one launch), x += Wo q,
// xb = rmsnorm(x), h = silu(Wg xb) * (Wu xb), x += Wd h. With CLLM_CUDA_PDL each kernel may start
// while its predecessor runs (and with CLLM_CUDA_RESIDENT loads weights before waiting): the
// results must be bit-identical to plain launches and match the C reference.

enum { CH_Q, CH_K, CH_V, CH_O, CH_G, CH_U, CH_D, CH_N };

typedef struct chain_bufs {
    float *x, *xb, *q, *k, *v, *h, *nw;  // device; nw: 2 x dim norm weights
} chain_bufs;

static cllm_status chain_run(const cllm_cuda_weight *w, const chain_bufs *b, uint32_t dim,
                             int layers, unsigned flags) {
    float *qkv[3] = {b->q, b->k, b->v};
    for (int l = 0; l < layers; l++) {
        cllm_status st = cllm_cuda_rmsnorm_ex(b->x, b->nw, b->xb, 1, dim, 1e-5f, flags, g_stream);
        if (st == CLLM_OK) st = cllm_cuda_matvec_multi_ex(w + CH_Q, 3, b->xb, qkv, flags, g_stream);
        if (st == CLLM_OK) st = cllm_cuda_matvec_ex(&w[CH_O], b->q, b->x, 1, flags, g_stream);
        if (st == CLLM_OK)
            st = cllm_cuda_rmsnorm_ex(b->x, b->nw + dim, b->xb, 1, dim, 1e-5f, flags, g_stream);
        if (st == CLLM_OK)
            st = cllm_cuda_matvec_swiglu_ex(&w[CH_G], &w[CH_U], b->xb, b->h, flags, g_stream);
        if (st == CLLM_OK) st = cllm_cuda_matvec_ex(&w[CH_D], b->h, b->x, 1, flags, g_stream);
        if (st != CLLM_OK) return st;
    }
    return cllm_cuda_sync(g_stream);
}

// The same chain on the host (ref_* per stage, fp32 between stages).
static void chain_ref(const host_weight *hw, const float *nw, float *x, uint32_t dim, int layers,
                      float *q_out, float *h_out) {
    const uint64_t hid = hw[CH_G].w.rows, kv = hw[CH_K].w.rows;
    float *xb = xmalloc(dim * 4), *q = xmalloc(dim * 4), *t = xmalloc((hid > dim ? hid : dim) * 4);
    float *k = xmalloc(kv * 4), *u = xmalloc(hid * 4), *h = xmalloc(hid * 4);
    for (int l = 0; l < layers; l++) {
        ref_rmsnorm(x, nw, xb, 1, dim, 1e-5f);
        ref_matvec_h(&hw[CH_Q], xb, q);
        ref_matvec_h(&hw[CH_K], xb, k);  // k, v: checked through the PDL/plain comparison only
        ref_matvec_h(&hw[CH_O], q, t);
        for (uint32_t i = 0; i < dim; i++) x[i] += t[i];
        ref_rmsnorm(x, nw + dim, xb, 1, dim, 1e-5f);
        ref_matvec_h(&hw[CH_G], xb, t);
        ref_matvec_h(&hw[CH_U], xb, u);
        memcpy(h, t, hid * 4);
        cllm_k_swiglu(h, u, hid);
        ref_matvec_h(&hw[CH_D], h, t);
        for (uint32_t i = 0; i < dim; i++) x[i] += t[i];
    }
    memcpy(q_out, q, dim * 4), memcpy(h_out, h, hid * 4);
    free(xb), free(q), free(t), free(k), free(u), free(h);
}

// cc: the weights as compute code (cllm_cuda_ccode_make of the raw ones: the same results).
static void chain_case(uint32_t kind, uint32_t dim, uint32_t kv, uint32_t hid, uint32_t group,
                       int cc) {
    const int layers = 2;
    const uint64_t shape[CH_N][2] = {{dim, dim}, {kv, dim}, {kv, dim}, {dim, dim},
                                     {hid, dim}, {hid, dim}, {dim, hid}};
    host_weight hw[CH_N];
    cllm_cuda_weight w[CH_N];
    for (int i = 0; i < CH_N; i++) {
        const uint32_t g = group && shape[i][1] % group == 0 ? group : 0;
        host_weight_make(&hw[i], kind, shape[i][0], shape[i][1], g);
        if (cc) ccode_data(&hw[i], 0);
        w[i] = weight_upload(&hw[i]);
        if (cc) {
            cllm_cuda_weight raw = w[i];
            size_t bytes;
            MUST(cllm_cuda_ccode_make(g_mem, &raw, omp_get_max_threads(), g_stream, &w[i],
                                      &bytes));
            weight_release(&raw);
        }
    }
    float *x0 = xmalloc(dim * 4), *nw = xmalloc(2 * dim * 4);
    fill_floats(x0, dim, 1.0), fill_floats(nw, 2 * dim, 1.0);
    chain_bufs b = {.x = dev_alloc(dim * 4), .xb = dev_alloc(dim * 4), .q = dev_alloc(dim * 4),
                    .k = dev_alloc(kv * 4), .v = dev_alloc(kv * 4), .h = dev_alloc(hid * 4),
                    .nw = upload(nw, 2 * dim * 4)};
    // [run][x, q, k, v, h] downloaded after each run; run 0 plain, 1 PDL, 2 PDL + resident.
    const size_t n_out[5] = {dim, dim, kv, kv, hid};
    float *const dev_out[5] = {b.x, b.q, b.k, b.v, b.h};
    float *got[3][5];
    const unsigned flags[3] = {0, CLLM_CUDA_PDL, CLLM_CUDA_PDL | CLLM_CUDA_RESIDENT};
    cllm_status st[3];
    for (int r = 0; r < 3; r++) {
        MUST(cllm_cuda_copy(b.x, x0, dim * 4, g_stream));
        for (int o = 1; o < 5; o++) poison(dev_out[o], n_out[o]);
        poison(b.xb, dim);
        st[r] = chain_run(w, &b, dim, layers, flags[r]);
        if (st[r] != CLLM_OK) {
            printf("  chain run %d (flags %u): %s: %s\n", r, flags[r], cllm_status_name(st[r]),
                   cllm_last_error());
            MUST(cllm_cuda_sync(g_stream));
        }
        for (int o = 0; o < 5; o++) {
            got[r][o] = xmalloc(n_out[o] * 4);
            download(got[r][o], dev_out[o], n_out[o] * 4);
        }
    }
    float *q_ref = xmalloc(dim * 4), *h_ref = xmalloc((size_t)hid * 4);
    chain_ref(hw, nw, x0, dim, layers, q_ref, h_ref);  // x0 becomes the reference x
    const double ex = rel_l2(got[0][0], x0, dim), eq = rel_l2(got[0][1], q_ref, dim);
    const double eh = rel_l2(got[0][4], h_ref, hid);
    int same = st[1] == CLLM_OK && st[2] == CLLM_OK;
    for (int r = 1; r < 3 && same; r++)
        for (int o = 0; o < 5; o++) same &= memcmp(got[r][o], got[0][o], n_out[o] * 4) == 0;
    const int ok = st[0] == CLLM_OK && same && ex < 1e-4 && eq < 1e-4 && eh < 1e-4;
    char name[96];
    snprintf(name, sizeof name, "PDL chain %s%s %u/%u/%u g%u x%d", cc ? "cc " : "",
             wkind_name(kind), dim, kv, hid, group, layers);
    check(ok, "%s: PDL runs %s plain launches; rel L2 vs ref x %.2e q %.2e h %.2e, tol 1e-4",
          name, same ? "bit-identical to" : "DIFFER from (or refused)", ex, eq, eh);
    summary("%-44s %s  rel L2 %.1e\n", name, ok ? "PASS" : "FAIL", fmax(ex, fmax(eq, eh)));
    for (int r = 0; r < 3; r++)
        for (int o = 0; o < 5; o++) free(got[r][o]);
    for (int o = 0; o < 5; o++) MUST(cllm_cuda_release(g_mem, dev_out[o]));
    MUST(cllm_cuda_release(g_mem, b.xb));
    MUST(cllm_cuda_release(g_mem, b.nw));
    for (int i = 0; i < CH_N; i++) {
        if (cc)  // (a compute code's scales lie inside its buffer)
            MUST(cllm_cuda_release(g_mem, (void *)w[i].data));
        else
            weight_release(&w[i]);
        host_weight_free(&hw[i]);
    }
    free(x0), free(nw), free(q_ref), free(h_ref);
}

// RoPE inside the split attention (cllm_cuda_rope_attention_split, what the engine runs for steps
// of up to 4 tokens) against cllm_cuda_rope_store then cllm_cuda_attention_split on copies of the
// same inputs: the outputs and both whole caches bit-identical. Steps: one token; a chunk of 3
// tokens of one slot (each query reads the earlier ones' fresh keys); 4 tokens of two slots,
// interleaved; positions 0 and 1. Heads: MHA, GQA 4 and 8 (head_dim 256: two vectors a lane),
// head_dim 48. Caches of 2 slots x 512 positions filled with noise.
static void rope_attention_split_cases(void) {
    const uint32_t ctx = 512, heads[4][3] = {{32, 32, 128}, {32, 8, 128}, {8, 1, 256}, {6, 6, 48}};
    const uint32_t steps[4][4][2] = {{{37, 1}}, {{100, 0}, {101, 0}, {102, 0}},
                                     {{50, 1}, {9, 0}, {51, 1}, {10, 0}}, {{0, 1}, {1, 1}}};
    const uint32_t n_steps[4] = {1, 3, 4, 2};
    int all = 1;
    for (int hc = 0; hc < 4; hc++) {
        const uint32_t nh = heads[hc][0], nkv = heads[hc][1], hd = heads[hc][2], half = hd / 2;
        cllm_model_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.head_dim = hd, cfg.rope_theta = 10000.0f;
        double freqs[128];
        float *cs = xmalloc((size_t)ctx * half * 4), *sn = xmalloc((size_t)ctx * half * 4);
        cllm_k_rope_freqs(&cfg, freqs);
        for (uint32_t p = 0; p < ctx; p++)
            cllm_k_rope_angles(freqs, half, p, cs + (size_t)p * half, sn + (size_t)p * half);
        float *csd = upload(cs, (size_t)ctx * half * 4), *snd = upload(sn, (size_t)ctx * half * 4);
        size_t sb = 0;
        for (uint32_t q = 1; q <= 4; q++) {
            const size_t b = cllm_cuda_attention_split_scratch(q, ctx, nh, nkv, hd);
            sb = b > sb ? b : sb;
        }
        void *zeros = calloc(1, sb);
        void *scratch = upload(zeros, sb);
        free(zeros);
        const size_t ncache = 2 * (size_t)ctx * nkv * hd;
        float *kc = xmalloc(ncache * 4), *vc = xmalloc(ncache * 4);
        float *got[2][3];  // [path][out, k cache, v cache]
        for (int sc = 0; sc < 4; sc++) {
            const uint32_t nt = n_steps[sc];
            uint32_t pt[4], sl[4];
            for (uint32_t t = 0; t < nt; t++) pt[t] = steps[sc][t][0], sl[t] = steps[sc][t][1];
            const size_t nq = (size_t)nt * nh * hd, nk = (size_t)nt * nkv * hd;
            float *q = xmalloc(nq * 4), *k = xmalloc(nk * 4), *v = xmalloc(nk * 4);
            fill_floats(q, nq, 1.0), fill_floats(k, nk, 1.0), fill_floats(v, nk, 1.0);
            fill_floats(kc, ncache, 1.0), fill_floats(vc, ncache, 1.0);
            uint32_t *pd = upload(pt, nt * 4), *sd = upload(sl, nt * 4);
            const cllm_cuda_tokpos tp = {pd, sd, ctx, 0};
            for (int path = 0; path < 2; path++) {
                float *qd = upload(q, nq * 4), *kd = upload(k, nk * 4), *vd = upload(v, nk * 4);
                float *kcd = upload(kc, ncache * 4), *vcd = upload(vc, ncache * 4);
                float *od = dev_alloc(nq * 4);
                if (path == 0) {
                    MUST(cllm_cuda_rope_store(qd, kd, vd, kcd, vcd, csd, snd, tp, nt, nh, nkv, hd,
                                              0, g_stream));
                    MUST(cllm_cuda_attention_split(qd, kcd, vcd, od, tp, nt, ctx, nh, nkv, hd,
                                                   scratch, sb, 0, g_stream));
                } else {
                    MUST(cllm_cuda_rope_attention_split(qd, kd, vd, kcd, vcd, csd, snd, od, tp, nt,
                                                        ctx, nh, nkv, hd, scratch, sb, 0,
                                                        g_stream));
                }
                got[path][0] = xmalloc(nq * 4), got[path][1] = xmalloc(ncache * 4);
                got[path][2] = xmalloc(ncache * 4);
                download(got[path][0], od, nq * 4), download(got[path][1], kcd, ncache * 4);
                download(got[path][2], vcd, ncache * 4);
                float *dev[] = {qd, kd, vd, kcd, vcd, od};
                for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
                    MUST(cllm_cuda_release(g_mem, dev[i]));
            }
            const int same = memcmp(got[0][0], got[1][0], nq * 4) == 0 &&
                             memcmp(got[0][1], got[1][1], ncache * 4) == 0 &&
                             memcmp(got[0][2], got[1][2], ncache * 4) == 0;
            check(same, "rope + split attention, %u/%u heads x %u, step %d (%u tokens): not "
                  "bit-identical to rope_store + attention_split", nh, nkv, hd, sc, nt);
            all &= same;
            for (int path = 0; path < 2; path++)
                for (int i = 0; i < 3; i++) free(got[path][i]);
            MUST(cllm_cuda_release(g_mem, pd));
            MUST(cllm_cuda_release(g_mem, sd));
            free(q), free(k), free(v);
        }
        MUST(cllm_cuda_release(g_mem, scratch));
        MUST(cllm_cuda_release(g_mem, csd));
        MUST(cllm_cuda_release(g_mem, snd));
        free(kc), free(vc), free(cs), free(sn);
    }
    summary("%-44s %s  bit-identical\n", "rope + split attention (16 cases)", all ? "PASS" : "FAIL");
}

// RoPE + KV store, the kernel the engine runs: 3 tokens at positions 4093.. (large angles) of KV
// slots 1, 0, 1 of a 2-slot cache, 32 q heads, 8 kv heads, head_dim 128, Llama 3 frequencies, the
// CPU's cos/sin tables. Bit-identical to cllm_k_rope + cllm_k_store_kv at each (slot, position).
static void rope_store_case(void) {
    const uint32_t nt = 3, nh = 32, nkv = 8, hd = 128, pos0 = 4093, ctx = 4096, half = hd / 2;
    cllm_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.head_dim = hd, cfg.rope_theta = 500000.0f, cfg.rope_scaling = CLLM_ROPE_SCALING_LLAMA3;
    cfg.rope_factor = 8.0f, cfg.rope_low_freq_factor = 1.0f, cfg.rope_high_freq_factor = 4.0f;
    cfg.rope_original_context = 8192;
    double freqs[64];
    float *cs = xmalloc((size_t)ctx * half * 4), *sn = xmalloc((size_t)ctx * half * 4);
    cllm_k_rope_freqs(&cfg, freqs);
    for (uint32_t p = 0; p < ctx; p++)
        cllm_k_rope_angles(freqs, half, p, cs + (size_t)p * half, sn + (size_t)p * half);
    const size_t nq = (size_t)nt * nh * hd, nk = (size_t)nt * nkv * hd;
    const size_t ncache = 2 * (size_t)ctx * nkv * hd;
    const uint32_t pt[3] = {pos0, pos0 + 1, pos0 + 2}, slot[3] = {1, 0, 1};
    float *q = xmalloc(nq * 4), *k = xmalloc(nk * 4), *v = xmalloc(nk * 4);
    float *gq = xmalloc(nq * 4), *gk = xmalloc(ncache * 4), *gv = xmalloc(ncache * 4);
    fill_floats(q, nq, 1.0), fill_floats(k, nk, 1.0), fill_floats(v, nk, 1.0);
    float *qd = upload(q, nq * 4), *kd = upload(k, nk * 4), *vd = upload(v, nk * 4);
    float *kcd = dev_alloc(ncache * 4), *vcd = dev_alloc(ncache * 4);
    float *csd = upload(cs, (size_t)ctx * half * 4), *snd = upload(sn, (size_t)ctx * half * 4);
    uint32_t *pd = upload(pt, sizeof pt), *sd = upload(slot, sizeof slot);
    const cllm_cuda_tokpos tp = {pd, sd, ctx, 0};
    MUST(cllm_cuda_rope_store(qd, kd, vd, kcd, vcd, csd, snd, tp, nt, nh, nkv, hd, 0, g_stream));
    download(gq, qd, nq * 4), download(gk, kcd, ncache * 4), download(gv, vcd, ncache * 4);
    int same = 1;
    for (uint32_t t = 0; t < nt; t++) {
        const float *c = cs + (size_t)(pos0 + t) * half, *s = sn + (size_t)(pos0 + t) * half;
        cllm_k_rope(q + (size_t)t * nh * hd, nh, hd, c, s);
        cllm_k_rope(k + (size_t)t * nkv * hd, nkv, hd, c, s);
        const size_t at = ((size_t)slot[t] * ctx + pt[t]) * nkv * hd;
        same &= memcmp(gk + at, k + (size_t)t * nkv * hd, (size_t)nkv * hd * 4) == 0;
        same &= memcmp(gv + at, v + (size_t)t * nkv * hd, (size_t)nkv * hd * 4) == 0;
    }
    same &= memcmp(gq, q, nq * 4) == 0;
    check(same, "rope_store %u tokens at %u, %u/%u heads x %u: not bit-identical to cllm_k_rope",
          nt, pos0, nh, nkv, hd);
    summary("%-44s %s  bit-identical\n", "rope_store (llama3 freqs)", same ? "PASS" : "FAIL");
    float *dev[] = {qd, kd, vd, kcd, vcd, csd, snd};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) MUST(cllm_cuda_release(g_mem, dev[i]));
    MUST(cllm_cuda_release(g_mem, pd));
    MUST(cllm_cuda_release(g_mem, sd));
    free(cs), free(sn), free(q), free(k), free(v), free(gq), free(gk), free(gv);
}

// Attention, the kernel the engine runs for passes the split kernel does not take: GQA 32/8 x 128
// over 1000 positions (1 query), and 4 causal queries with head_dim 48 (llama2.c stories15M),
// against cllm_k_attention_head, tolerance 1e-5. The queries read KV slot 1 of a 2-slot cache
// whose slot 0 holds other values.
static void attention_cases(void) {
    const uint32_t cfg[2][5] = {{1, 999, 32, 8, 128}, {4, 17, 6, 6, 48}};
    MUST(cllm_cuda_attention_init(4096));
    for (int ci = 0; ci < 2; ci++) {
        uint32_t nqy = cfg[ci][0], pos0 = cfg[ci][1], nh = cfg[ci][2], nkv = cfg[ci][3], hd = cfg[ci][4];
        uint32_t npos = pos0 + nqy;
        size_t nq = (size_t)nqy * nh * hd, nkvs = (size_t)npos * nkv * hd;
        float *q = xmalloc(nq * 4), *kc = xmalloc(nkvs * 4), *vc = xmalloc(nkvs * 4);
        float *o = xmalloc(nq * 4), *want = xmalloc(nq * 4);
        fill_floats(q, nq, 1.0), fill_floats(kc, nkvs, 1.0), fill_floats(vc, nkvs, 1.0);
        ref_attention(q, kc, vc, want, nqy, pos0, nh, nkv, hd);
        uint32_t pt[4];
        for (uint32_t t = 0; t < nqy; t++) pt[t] = pos0 + t;
        float *k2 = xmalloc(2 * nkvs * 4), *v2 = xmalloc(2 * nkvs * 4);
        fill_floats(k2, nkvs, 2.0), fill_floats(v2, nkvs, 3.0);  // slot 0: not read
        memcpy(k2 + nkvs, kc, nkvs * 4), memcpy(v2 + nkvs, vc, nkvs * 4);
        const uint32_t slot[4] = {1, 1, 1, 1};
        float *qd = upload(q, nq * 4), *kd = upload(k2, 2 * nkvs * 4);
        float *vd = upload(v2, 2 * nkvs * 4), *od = dev_alloc(nq * 4);
        free(k2), free(v2);
        uint32_t *pd = upload(pt, nqy * sizeof *pt), *sd = upload(slot, nqy * sizeof *slot);
        const cllm_cuda_tokpos tp = {pd, sd, npos, 0};
        MUST(cllm_cuda_attention(qd, kd, vd, od, tp, nqy, npos, nh, nkv, hd, 0, g_stream));
        download(o, od, nq * 4);
        double e = rel_l2(o, want, nq);
        check(e < 1e-5, "attention %u queries at %u, %u/%u heads x %u: rel L2 %.2e, tol 1e-5",
              nqy, pos0, nh, nkv, hd, e);
        summary("%-44s %s  rel L2 %.1e\n", ci ? "attention (causal, hd 48)" : "attention (GQA)",
                e < 1e-5 ? "PASS" : "FAIL", e);
        MUST(cllm_cuda_release(g_mem, qd)); MUST(cllm_cuda_release(g_mem, kd));
        MUST(cllm_cuda_release(g_mem, vd)); MUST(cllm_cuda_release(g_mem, od));
        MUST(cllm_cuda_release(g_mem, pd));
        MUST(cllm_cuda_release(g_mem, sd));
        free(q), free(kc), free(vc), free(o), free(want);
    }
}

static void small_kernels(void) {
    // RMSNorm: 3 rows of each width, tolerance 1e-5: the vector path (4096, 576, 64; 16384, its
    // widest) and the plain loop (an odd width; one wider than the vector path holds).
    static const uint32_t dims[] = {4097, 4096, 576, 64, 16384, 16388};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        uint32_t rows = 3, dim = dims[di];
        size_t n = (size_t)rows * dim;
        float *x = xmalloc(n * 4), *w = xmalloc(dim * 4), *o = xmalloc(n * 4), *want = xmalloc(n * 4);
        fill_floats(x, n, 2.0), fill_floats(w, dim, 1.0);
        ref_rmsnorm(x, w, want, rows, dim, 1e-5f);
        float *xd = upload(x, n * 4), *wd = upload(w, dim * 4), *od = dev_alloc(n * 4);
        MUST(cllm_cuda_rmsnorm(xd, wd, od, rows, dim, 1e-5f, g_stream));
        download(o, od, n * 4);
        double e = rel_l2(o, want, n);
        check(e < 1e-5, "rmsnorm %ux%u rel L2 %.2e, tol 1e-5", rows, dim, e);
        char what[48];
        snprintf(what, sizeof what, "rmsnorm 3x%u", dim);
        summary("%-44s %s  rel L2 %.1e\n", what, e < 1e-5 ? "PASS" : "FAIL", e);
        MUST(cllm_cuda_release(g_mem, xd)); MUST(cllm_cuda_release(g_mem, wd));
        MUST(cllm_cuda_release(g_mem, od));
        free(x), free(w), free(o), free(want);
    }
    rope_store_case();
    rope_attention_split_cases();
    attention_cases();
    // SwiGLU (tolerance 1e-5: fast exp) and add (exact).
    {
        size_t n = 11008 + 5;
        float *g = xmalloc(n * 4), *u = xmalloc(n * 4), *o = xmalloc(n * 4), *want = xmalloc(n * 4);
        fill_floats(g, n, 3.0), fill_floats(u, n, 1.0);
        memcpy(want, g, n * 4);
        cllm_k_swiglu(want, u, n);
        float *gd = upload(g, n * 4), *ud = upload(u, n * 4);
        MUST(cllm_cuda_swiglu(gd, ud, gd, n, g_stream));
        download(o, gd, n * 4);
        double e = rel_l2(o, want, n);
        check(e < 1e-5, "swiglu n=%zu rel L2 %.2e, tol 1e-5", n, e);
        MUST(cllm_cuda_add(gd, ud, n, g_stream));
        download(want, gd, n * 4);
        int add_ok = 1;
        for (size_t i = 0; i < n; i++) add_ok &= want[i] == o[i] + u[i];
        check(add_ok, "add n=%zu exact", n);
        summary("%-44s %s  rel L2 %.1e\n", "swiglu + add", e < 1e-5 && add_ok ? "PASS" : "FAIL", e);
        MUST(cllm_cuda_release(g_mem, gd)); MUST(cllm_cuda_release(g_mem, ud));
        free(g), free(u), free(o), free(want);
    }
    // Embedding rows (every kind, exact against cllm_k_row_to_f32).
    {
        const uint32_t vocab = 1000, dim = 72, kinds[] = {0, 1, 2, 3};
        int all = 1;
        for (int ki = 0; ki < 4; ki++) {
            uint32_t kind = kinds[ki];
            size_t esz = kind == 0 ? 4 : kind == 3 ? 1 : 2, n = (size_t)vocab * dim;
            uint8_t *data = xmalloc(n * esz);
            float scales[1000 * 3];
            for (size_t i = 0; i < n * esz; i++) data[i] = (uint8_t)rnd();
            if (kind == 0)
                for (size_t i = 0; i < n; i++) ((float *)data)[i] = (float)normal();
            for (size_t i = 0; i < 3000; i++) scales[i] = (float)uni();
            cllm_cuda_weight w = {.rows = vocab, .cols = dim, .kind = kind, .group_size = 24};
            int32_t toks[3] = {0, 999, 517};
            w.data = upload(data, n * esz);
            w.scales = kind == 3 ? upload(scales, sizeof scales) : NULL;
            int32_t *td = upload(toks, sizeof toks);
            float *od = dev_alloc(3 * dim * 4), got[3 * 72];
            MUST(cllm_cuda_embed(&w, td, 3, od, g_stream));
            download(got, od, sizeof got);
            const cllm_wview v = ref_view(&w, data, scales);
            for (int t = 0; t < 3; t++) {
                float want[72];
                cllm_k_row_to_f32(&v, (uint64_t)toks[t], want);
                for (uint32_t c = 0; c < dim; c++)
                    all &= memcmp(&want[c], &got[t * dim + c], 4) == 0 ||
                           (want[c] != want[c] && got[t * dim + c] != got[t * dim + c]);
            }
            MUST(cllm_cuda_release(g_mem, (void *)w.data)); MUST(cllm_cuda_release(g_mem, (void *)w.scales));
            MUST(cllm_cuda_release(g_mem, td)); MUST(cllm_cuda_release(g_mem, od));
            free(data);
        }
        check(all, "embed f32/f16/bf16/int8 rows exact");
        summary("%-44s %s\n", "embed", all ? "PASS" : "FAIL");
    }
    // Embedding rows from compute code (f16, bf16, int8 in groups of 64 and per row: the fused
    // mode's table) and one row by index (cllm_cuda_embed_row): bit-identical to the raw rows.
    // Random bytes give bf16/f16 every exponent (exceptions at their densest); a row of the int8
    // table is all escapes and one all small values.
    {
        const uint32_t vocab = 1000, dim = 192, kinds[] = {1, 2, 3, 3}, gss[] = {0, 0, 64, 192};
        int all = 1;
        for (int ki = 0; ki < 4; ki++) {
            const uint32_t kind = kinds[ki];
            const size_t esz = kind == 3 ? 1 : 2, n = (size_t)vocab * dim;
            uint8_t *data = xmalloc(n * esz);
            float *scales = xmalloc((size_t)vocab * 3 * 4);
            for (size_t i = 0; i < n * esz; i++) data[i] = (uint8_t)rnd();
            if (kind == 3)
                for (uint32_t c = 0; c < dim; c++)
                    data[5 * dim + c] = (uint8_t)(c % 2 ? 127 : -128), data[6 * dim + c] = (uint8_t)(c % 64 - 32);
            for (size_t i = 0; i < (size_t)vocab * 3; i++) scales[i] = (float)uni();
            cllm_cuda_weight w = {.rows = vocab, .cols = dim, .kind = kind, .group_size = gss[ki]};
            w.data = upload(data, n * esz);
            w.scales = kind == 3 ? upload(scales, (size_t)vocab * 3 * 4) : NULL;
            cllm_cuda_weight cc;
            size_t bytes = 0;
            MUST(cllm_cuda_ccode_make(g_mem, &w, omp_get_max_threads(), g_stream, &cc, &bytes));
            int32_t toks[6] = {0, 999, 517, 5, 6, 1000};  // the last outside the table: zeros
            int32_t *td = upload(toks, sizeof toks);
            float *od = dev_alloc(2 * 6 * dim * 4), *got = xmalloc(2 * 6 * dim * 4);
            MUST(cllm_cuda_embed(&w, td, 6, od, g_stream));
            MUST(cllm_cuda_embed(&cc, td, 6, od + 6 * dim, g_stream));
            download(got, od, 2 * 6 * dim * 4);
            int same = memcmp(got, got + 6 * dim, 6 * dim * 4) == 0;
            for (uint32_t c = 0; c < dim; c++) same &= got[5 * dim + c] == 0.f;
            for (int t = 0; t < 5; t++) {  // one row at a time, from both
                MUST(cllm_cuda_embed_row(&w, (uint64_t)toks[t], od, g_stream));
                MUST(cllm_cuda_embed_row(&cc, (uint64_t)toks[t], od + dim, g_stream));
                download(got + 6 * dim, od, 2 * dim * 4);
                same &= memcmp(got + 6 * dim, got + t * dim, dim * 4) == 0 &&
                        memcmp(got + 7 * dim, got + t * dim, dim * 4) == 0;
            }
            same &= cllm_cuda_embed_row(&cc, vocab, od, g_stream) == CLLM_ERR_ARG;
            check(same, "embed from compute code kind %u group %u: rows differ from raw", kind,
                  gss[ki]);
            all &= same;
            MUST(cllm_cuda_release(g_mem, (void *)w.data)); MUST(cllm_cuda_release(g_mem, (void *)w.scales));
            MUST(cllm_cuda_release(g_mem, (void *)cc.data));
            MUST(cllm_cuda_release(g_mem, td)); MUST(cllm_cuda_release(g_mem, od));
            free(data), free(scales), free(got);
        }
        summary("%-44s %s\n", "embed from compute code, embed_row", all ? "PASS" : "FAIL");
    }
}

// cuBLAS prefill GEMM of 7 tokens against ref_matvec per token.
// Two shapes: the int8 dequantisation's vector path (cols % 8 == 0, groups of 128) and its
// element path (odd columns, groups of 29).
static void gemm_cases(void *blas) {
    const uint32_t kinds[] = {CLLM_CUDA_W_F32, CLLM_CUDA_W_BF16, CLLM_CUDA_W_F16, CLLM_CUDA_W_INT8};
    // The third shape: int8 with one scale per row takes the integer GEMM (x as two int8 digits).
    const uint64_t shape_rows[3] = {1000, 37, 301}, shape_cols[3] = {512, 203, 1024};
    const uint32_t shape_group[3] = {128, 29, 1024};
    const uint32_t nt = 7;
    for (int si = 0; si < 3; si++)
    for (int ki = 0; ki < 4; ki++) {
        const uint64_t rows = shape_rows[si], cols = shape_cols[si];
        uint32_t kind = kinds[ki];
        size_t esz = kind == 0 ? 4 : kind == 3 ? 1 : 2, n = rows * cols;
        uint8_t *data = xmalloc(n * esz);
        float *scales = xmalloc(rows * 8 * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            float f = (float)(0.02 * normal());
            if (kind == 0) ((float *)data)[i] = f;
            else if (kind == 1) ((uint16_t *)data)[i] = cllm_f32_to_f16(f);
            else if (kind == 2) ((uint16_t *)data)[i] = cllm_f32_to_bf16(f);
            else ((int8_t *)data)[i] = (int8_t)((int)(rnd() % 255) - 127);
        }
        for (size_t i = 0; i < rows * 8; i++) scales[i] = (float)(0.001 * (1 + uni()));
        cllm_cuda_weight w = {.rows = rows, .cols = cols, .kind = kind, .group_size = shape_group[si]};
        float *x = xmalloc(nt * cols * 4), *y = xmalloc(nt * rows * 4), *want = xmalloc(nt * rows * 4);
        fill_floats(x, nt * cols, 1.0);
        for (uint32_t t = 0; t < nt; t++) ref_matvec(&w, data, scales, x + t * cols, want + t * rows);
        w.data = upload(data, n * esz);
        w.scales = kind == 3 ? upload(scales, rows * 8 * sizeof(float)) : NULL;
        float *xd = upload(x, nt * cols * 4), *yd = dev_alloc(nt * rows * 4);
        size_t sb = cllm_cuda_gemm_scratch_bytes(&w, nt);
        void *scratch = dev_alloc(sb);
        MUST(cllm_cuda_gemm(blas, &w, xd, nt, yd, rows, scratch, sb, g_stream));
        download(y, yd, nt * rows * 4);
        const int per_row_i8 = kind == 3 && w.group_size == cols;
        double e = rel_l2(y, want, nt * rows), tol = kind == 0 ? 1e-5 : per_row_i8 ? 1e-3 : 1e-2;
        if (cllm_cuda_gemm_i8_ok(&w)) {  // the tensor-core int8 GEMM on the same inputs (x in bf16)
            poison(yd, nt * rows);
            MUST(cllm_cuda_gemm_i8(&w, xd, nt, yd, rows, scratch, sb, g_stream));
            download(y, yd, nt * rows * 4);
            const double e8 = rel_l2(y, want, nt * rows);
            check(e8 < 1e-2, "gemm_i8 %u tokens x %llux%llu g%u rel L2 %.2e, tol 1e-2", nt,
                  (unsigned long long)rows, (unsigned long long)cols, w.group_size, e8);
        }
        check(e < tol, "gemm %-4s %u tokens x %llux%llu rel L2 %.2e, tol %.0e", wkind_name(kind),
              nt, (unsigned long long)rows, (unsigned long long)cols, e, tol);
        char name[64];
        snprintf(name, sizeof name, "gemm (cuBLAS) %s %llux%llu", wkind_name(kind),
                 (unsigned long long)rows, (unsigned long long)cols);
        summary("%-44s %s  rel L2 %.1e\n", name, e < tol ? "PASS" : "FAIL", e);
        MUST(cllm_cuda_release(g_mem, (void *)w.data)); MUST(cllm_cuda_release(g_mem, (void *)w.scales));
        MUST(cllm_cuda_release(g_mem, xd)); MUST(cllm_cuda_release(g_mem, yd));
        MUST(cllm_cuda_release(g_mem, scratch));
        free(data), free(scales), free(x), free(y), free(want);
    }
}

// The tensor-core int8 GEMM (cllm_cuda_gemm_i8) on shapes with row and token tails, per-row and
// grouped scales, x with outliers, against ref_matvec per token (tolerance 1e-2: x in bf16).
static void gemm_i8_cases(void) {
    static const struct { uint64_t rows, cols; uint32_t group, nt; } cs[] = {
        {1000, 512, 0, 7}, {37, 1024, 128, 33}, {4096, 4096, 0, 32}, {300, 11008, 64, 64},
        {11008, 4096, 128, 40}, {64, 192, 64, 1}, {4096, 11008, 0, 129}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        host_weight h;
        host_weight_make(&h, CLLM_CUDA_W_INT8, cs[ci].rows, cs[ci].cols, cs[ci].group);
        const uint64_t rows = cs[ci].rows, cols = cs[ci].cols;
        const uint32_t nt = cs[ci].nt;
        float *x = xmalloc(nt * cols * 4), *y = xmalloc(nt * (rows + 5) * 4),
              *want = xmalloc(nt * rows * 4);
        make_x(x, nt * cols, 1);
        for (uint32_t t = 0; t < nt; t++) ref_matvec_h(&h, x + t * cols, want + t * rows);
        cllm_cuda_weight w = weight_upload(&h);
        const size_t sb = cllm_cuda_gemm_i8_scratch(&w, nt);
        float *xd = upload(x, nt * cols * 4), *yd = dev_alloc(nt * (rows + 5) * 4);
        void *scratch = dev_alloc(sb);
        poison(yd, nt * (rows + 5));
        MUST(cllm_cuda_gemm_i8(&w, xd, nt, yd, rows + 5, scratch, sb, g_stream));  // pitch > rows
        download(y, yd, nt * (rows + 5) * 4);
        double num = 0, den = 0;
        for (uint32_t t = 0; t < nt; t++)
            for (uint64_t r = 0; r < rows; r++) {
                const double d = (double)y[t * (rows + 5) + r] - want[t * rows + r];
                num += d * d, den += (double)want[t * rows + r] * want[t * rows + r];
            }
        const double e = sqrt(num / (den > 0 ? den : 1));
        check(e < 1e-2, "gemm_i8 %3u tokens x %5llux%-5llu g%-5u rel L2 %.2e, tol 1e-2", nt,
              (unsigned long long)rows, (unsigned long long)cols, w.group_size, e);
        weight_release(&w);
        MUST(cllm_cuda_release(g_mem, xd));
        MUST(cllm_cuda_release(g_mem, yd));
        MUST(cllm_cuda_release(g_mem, scratch));
        host_weight_free(&h);
        free(x), free(y), free(want);
    }
}

// ---- fused compute-code matvecs: bit-identical to the raw kernels ------------------------------

// y for raw and fused views through one launcher: 0 single, 1 accumulate, 2 PDL + resident,
// 3 multi (w, w2), 4 swiglu (w, w2). Outputs (rows * 2 floats) into out.
static void fused_run(int how, const cllm_cuda_weight *w, const cllm_cuda_weight *w2,
                      const float *x, float *y_dev, float *out, uint64_t rows) {
    poison(y_dev, 2 * rows);
    if (how == 1) {  // accumulate onto y = 0.5, 1.5, 2.5, ...
        float *init = xmalloc(rows * sizeof(float));
        for (uint64_t r = 0; r < rows; r++) init[r] = 0.5f + (float)(r % 100);
        MUST(cllm_cuda_copy(y_dev, init, rows * sizeof(float), g_stream));
        MUST(cllm_cuda_sync(g_stream));
        free(init);
    }
    float *ys[2] = {y_dev, y_dev + rows};
    const cllm_cuda_weight ws[2] = {*w, *w2};
    switch (how) {
    case 0: case 1: MUST(cllm_cuda_matvec(w, x, y_dev, how, g_stream)); break;
    case 2:
        MUST(cllm_cuda_matvec_ex(w, x, y_dev, 0, CLLM_CUDA_PDL | CLLM_CUDA_RESIDENT, g_stream));
        break;
    case 3: MUST(cllm_cuda_matvec_multi(ws, 2, x, ys, g_stream)); break;
    default: MUST(cllm_cuda_matvec_swiglu(w, w2, x, y_dev, g_stream)); break;
    }
    download(out, y_dev, 2 * rows * sizeof(float));
}

// Several columns (cllm_cuda_matvec_cols, bf16 only): raw and compute code memcmp-equal for n = 2,
// 3, 8, and column c of the raw result equal to the one-column matvec of x_c.
static int cols_check(const cllm_cuda_weight *raw, const cllm_cuda_weight *cc, uint64_t rows,
                      uint64_t cols) {
    static const uint32_t ns[3] = {2, 3, 8};
    float *x = xmalloc(8 * cols * 4), *a = xmalloc(8 * rows * 4), *b = xmalloc(8 * rows * 4);
    float *one = xmalloc(rows * 4);
    make_x(x, 8 * cols, 1);
    float *xd = upload(x, 8 * cols * 4), *yd = dev_alloc(8 * rows * 4), *y1 = dev_alloc(rows * 4);
    const size_t sb = cllm_cuda_matvec_cols_scratch(cols);
    void *scratch = dev_alloc(sb);
    const uint64_t ld = rows;
    int ok = 1;
    for (int k = 0; k < 3; k++) {
        const uint32_t n = ns[k];
        poison(yd, 8 * rows);
        MUST(cllm_cuda_matvec_cols_job(raw, 1, CLLM_CUDA_COLS_SET, xd, cols, n, &yd, &ld, scratch,
                                       sb, g_stream));
        download(a, yd, n * rows * 4);
        poison(yd, 8 * rows);
        MUST(cllm_cuda_matvec_cols_job(cc, 1, CLLM_CUDA_COLS_SET, xd, cols, n, &yd, &ld, scratch,
                                       sb, g_stream));
        download(b, yd, n * rows * 4);
        ok &= memcmp(a, b, n * rows * 4) == 0;
        for (uint32_t c = 0; c < n; c++) {
            MUST(cllm_cuda_matvec(raw, xd + c * cols, y1, 0, g_stream));
            download(one, y1, rows * 4);
            ok &= memcmp(one, a + c * rows, rows * 4) == 0;
        }
    }
    MUST(cllm_cuda_release(g_mem, xd));
    MUST(cllm_cuda_release(g_mem, yd));
    MUST(cllm_cuda_release(g_mem, y1));
    MUST(cllm_cuda_release(g_mem, scratch));
    free(x), free(a), free(b), free(one);
    return ok;
}

// Two matrices of one kind and shape, their compute codes made on the GPU side; the code C-decodes
// to the raw data; every launcher's output memcmp-equal to the raw kernel's.
static void *g_blas;  // cuBLAS handle for the GEMM checks

// The prefill GEMMs on compute code against the raw matrix (h: its host copy), nt tokens: cuBLAS
// (row chunks unpacked into the scratch) and, for int8, the tensor-core GEMM. Outputs at a pitch
// above rows must be bit-identical, and the raw one near the reference on the first and last
// token (chunks placed right; not with `specials`: NaN and inf weights): an error of at most
// 1e-2 of |W| |x| in L2 (x is rounded to bf16; one row of 8 columns can cancel to far below
// that scale, so a plain relative error would be a test of luck).
// Returns 1 if every path passes.
static int gemm_same(const host_weight *h, const cllm_cuda_weight *raw, const cllm_cuda_weight *cc,
                     uint32_t nt, int specials) {
    const uint64_t rows = raw->rows, cols = raw->cols, ldy = rows + 3;
    float *x = xmalloc(nt * cols * 4), *a = xmalloc(nt * ldy * 4), *b = xmalloc(nt * ldy * 4);
    float *want = xmalloc(rows * 4), *scale = xmalloc(rows * 4), *xa = xmalloc(cols * 4);
    make_x(x, nt * cols, 1);
    host_weight ha = *h;  // |W|: sign bits (bf16) or values (int8) made positive
    ha.w.data = xmalloc(h->bytes);
    memcpy((void *)ha.w.data, h->w.data, h->bytes);
    for (size_t i = 0; i < (raw->kind == CLLM_CUDA_W_INT8 ? h->bytes : h->bytes / 2); i++) {
        if (raw->kind == CLLM_CUDA_W_INT8) ((int8_t *)ha.w.data)[i] = (int8_t)abs(((int8_t *)ha.w.data)[i]);
        else ((uint16_t *)ha.w.data)[i] &= 0x7fffu;
    }
    float *xd = upload(x, nt * cols * 4), *yd = dev_alloc(nt * ldy * 4);
    int same = 1;
    for (int path = 0; path < (raw->kind == CLLM_CUDA_W_INT8 ? 2 : 1); path++) {
        for (int k = 0; k < 2; k++) {
            const cllm_cuda_weight *w = k ? cc : raw;
            const size_t sb = path ? cllm_cuda_gemm_i8_scratch(w, nt) : cllm_cuda_gemm_scratch_bytes(w, nt);
            void *scratch = dev_alloc(sb);
            poison(yd, nt * ldy);
            MUST(path ? cllm_cuda_gemm_i8(w, xd, nt, yd, ldy, scratch, sb, g_stream)
                      : cllm_cuda_gemm(g_blas, w, xd, nt, yd, ldy, scratch, sb, g_stream));
            download(k ? b : a, yd, nt * ldy * 4);
            MUST(cllm_cuda_release(g_mem, scratch));
        }
        for (uint32_t t = 0; t < nt; t++)
            if (memcmp(a + t * ldy, b + t * ldy, rows * 4) != 0) same = 0;
        if (!path) {  // the shared-x GEMM of {cc, raw, cc}: each output as its own GEMM's
            const cllm_cuda_weight ws[3] = {*cc, *raw, *cc};
            float *ys[3] = {yd, dev_alloc(nt * ldy * 4), dev_alloc(nt * ldy * 4)};
            const uint64_t lds[3] = {ldy, ldy, ldy};
            const size_t sb = cllm_cuda_gemm_scratch_bytes(cc, nt) > cllm_cuda_gemm_scratch_bytes(raw, nt)
                                  ? cllm_cuda_gemm_scratch_bytes(cc, nt)
                                  : cllm_cuda_gemm_scratch_bytes(raw, nt);
            void *scratch = dev_alloc(sb);
            for (int i = 0; i < 3; i++) poison(ys[i], nt * ldy);
            MUST(cllm_cuda_gemm_shared(g_blas, ws, 3, xd, nt, ys, lds, scratch, sb, g_stream));
            float *g = xmalloc(nt * ldy * 4);
            for (int i = 0; i < 3; i++) {
                download(g, ys[i], nt * ldy * 4);
                for (uint32_t t = 0; t < nt; t++)
                    if (memcmp(g + t * ldy, (i == 1 ? a : b) + t * ldy, rows * 4) != 0) {
                        if (same) printf("  gemm_shared output %d token %u differs from its own GEMM\n", i, t);
                        same = 0;
                    }
            }
            free(g);
            MUST(cllm_cuda_release(g_mem, scratch));
            MUST(cllm_cuda_release(g_mem, ys[1]));
            MUST(cllm_cuda_release(g_mem, ys[2]));
        }
        const uint32_t ts[2] = {0, nt - 1};
        for (int i = 0; i < (specials ? 0 : 2); i++) {
            const uint32_t t = ts[i];
            ref_matvec_h(h, x + t * cols, want);
            for (uint64_t c = 0; c < cols; c++) xa[c] = fabsf(x[t * cols + c]);
            ref_matvec_h(&ha, xa, scale);
            double num = 0, den = 0;
            for (uint64_t r = 0; r < rows; r++) {
                const double dlt = (double)a[t * ldy + r] - want[r];
                num += dlt * dlt, den += (double)scale[r] * scale[r];
            }
            const double e = den > 0 ? sqrt(num / den) : sqrt(num);
            if (!(e < 1e-2)) {
                same = 0;
                printf("  GEMM (%s) token %u error %.2e of |W| |x| against the reference\n",
                       path ? "tensor-core int8" : "cuBLAS", t, e);
            }
        }
    }
    MUST(cllm_cuda_release(g_mem, xd));
    MUST(cllm_cuda_release(g_mem, yd));
    free(x), free(a), free(b), free(want), free(scale), free(xa), free((void *)ha.w.data);
    return same;
}

static void fused_case(uint32_t kind, uint64_t rows, uint64_t cols, uint32_t group, int specials) {
    host_weight h[2];
    cllm_cuda_weight raw[2], cc[2];
    size_t bytes[2];
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        host_weight_make(&h[i], kind, rows, cols, group);
        ccode_data(&h[i], i == 0 ? specials : 0);
        raw[i] = weight_upload(&h[i]);
        MUST(cllm_cuda_ccode_make(g_mem, &raw[i], omp_get_max_threads(), g_stream, &cc[i],
                                  &bytes[i]));
        uint8_t *buf = xmalloc(bytes[i]), *back = xmalloc(h[i].bytes);
        float *sc = xmalloc(h[i].n_sc * sizeof(float) + 4);
        download(buf, cc[i].data, bytes[i]);
        ok &= cllm_ccode_decode(buf, bytes[i], back, h[i].bytes, sc, h[i].n_sc * 4) == CLLM_OK &&
              memcmp(back, h[i].w.data, h[i].bytes) == 0 &&
              (!h[i].n_sc || memcmp(sc, h[i].w.scales, h[i].n_sc * 4) == 0);
        // The GPU unpack (prefill's path to the GEMM) gives the raw matrix back, bit for bit:
        // whole, and rows [16, rows) (cc8 takes 16-row tiles); int8 also dequantised to bf16.
        const size_t esz = kind == CLLM_CUDA_W_INT8 ? 1 : 2;
        void *ud = dev_alloc(rows * cols * 2 + 16);
        for (int part = 0; part < (rows > 16 ? 2 : 1); part++) {
            const uint64_t r0 = part ? 16 : 0, nr = rows - r0;
            cllm_cuda_weight un;
            memset(back, 0xa5, h[i].bytes);
            const int un_ok =
                cllm_cuda_ccode_unpack_rows(&cc[i], r0, nr, 0, ud, rows * cols * 2, &un,
                                            g_stream) == CLLM_OK &&
                un.kind == kind && un.rows == nr && un.cols == cols && un.data == ud &&
                (kind != CLLM_CUDA_W_INT8 ||
                 un.scales == cc[i].scales + r0 * ((cols + h[i].w.group_size - 1) / h[i].w.group_size));
            if (un_ok) download(back, ud, nr * cols * esz);
            if (!un_ok || memcmp(back, (const uint8_t *)h[i].w.data + r0 * cols * esz, nr * cols * esz) != 0) {
                ok = 0;
                printf("  unpack of %s %llux%llu rows %llu.. differs from the raw matrix\n",
                       wkind_name(kind), (unsigned long long)rows, (unsigned long long)cols,
                       (unsigned long long)r0);
            }
        }
        if (kind == CLLM_CUDA_W_INT8) {  // dequantised: bf16(q * scale), as the GEMM's dequantisation
            cllm_cuda_weight un;
            uint16_t *got = xmalloc(rows * cols * 2);
            int dq_ok = cllm_cuda_ccode_unpack_rows(&cc[i], 0, rows, 1, ud, rows * cols * 2, &un,
                                                    g_stream) == CLLM_OK &&
                        un.kind == CLLM_CUDA_W_BF16;
            if (dq_ok) download(got, ud, rows * cols * 2);
            const uint64_t gs = h[i].w.group_size, gpr = (cols + gs - 1) / gs;
            for (uint64_t r = 0; dq_ok && r < rows; r++)
                for (uint64_t c = 0; c < cols; c++) {
                    const float v = (float)((const int8_t *)h[i].w.data)[r * cols + c] *
                                    h[i].w.scales[r * gpr + c / gs];
                    if (got[r * cols + c] != cllm_f32_to_bf16(v)) { dq_ok = 0; break; }
                }
            if (!dq_ok) {
                ok = 0;
                printf("  bf16 unpack of int8 %llux%llu differs from bf16(q * scale)\n",
                       (unsigned long long)rows, (unsigned long long)cols);
            }
            free(got);
        }
        MUST(cllm_cuda_release(g_mem, ud));
        free(buf), free(back), free(sc);
    }
    const int code_ok = ok;
    float *x = xmalloc(cols * sizeof(float)), *a = xmalloc(2 * rows * 4), *b = xmalloc(2 * rows * 4);
    make_x(x, cols, 1);
    float *xd = upload(x, cols * sizeof(float)), *yd = dev_alloc(2 * rows * sizeof(float));
    static const char *how_name[5] = {"single", "accumulate", "pdl+resident", "multi", "swiglu"};
    char bad[128] = "";
    for (int how = 0; how < 5; how++) {
        fused_run(how, &raw[0], &raw[1], xd, yd, a, rows);
        fused_run(how, &cc[0], &cc[1], xd, yd, b, rows);
        const size_t nout = how == 3 ? 2 * rows : rows;
        if (memcmp(a, b, nout * sizeof(float)) != 0) {
            ok = 0;
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s", how_name[how]);
        }
    }
    if (kind != CLLM_CUDA_W_INT8 && !cols_check(&raw[0], &cc[0], rows, cols)) {
        ok = 0;
        snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " cols");
    }
    if (!gemm_same(&h[0], &raw[0], &cc[0], 12, specials) ||
        !gemm_same(&h[0], &raw[0], &cc[0], 70, specials)) {
        ok = 0;
        snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " gemm");
    }
    const double bpw = 8.0 * (double)bytes[0] / (double)(rows * cols);
    check(ok, "fused %s %6llux%-6llu g%-5u%s: code decodes %s, unpacks and outputs bit-identical to "
          "raw (bf16, f16: and n = 2, 3, 8 columns; GEMMs of 12 and 70 tokens)%s%s "
          "(%.3f bits/weight)", wkind_name(kind), (unsigned long long)rows,
          (unsigned long long)cols, h[0].w.group_size, specials ? " specials" : "",
          code_ok ? "exactly" : "WRONG", ok ? "" : ", differ:", bad, bpw);
    char name[96];
    snprintf(name, sizeof name, "fused %s %llux%llu g%u%s", wkind_name(kind),
             (unsigned long long)rows, (unsigned long long)cols, h[0].w.group_size,
             specials ? " sp" : "");
    summary("%-44s %s  %.3f bits/weight\n", name, ok ? "PASS" : "FAIL", bpw);
    for (int i = 0; i < 2; i++) {
        weight_release(&raw[i]);
        MUST(cllm_cuda_release(g_mem, (void *)cc[i].data));
        host_weight_free(&h[i]);
    }
    MUST(cllm_cuda_release(g_mem, xd));
    MUST(cllm_cuda_release(g_mem, yd));
    free(x), free(a), free(b);
}

// Column launches of a whole job (cllm_cuda_matvec_cols_job) on device weights w[0..n_w): for
// n = 1..8 columns (x with outliers), each column memcmp-equal to the one-token launch on x_c
// (mode SET: matvec_multi_ex, ACC: matvec_ex accumulate onto the same start values, SWIGLU:
// matvec_swiglu_ex), and every row written (equal but unwritten rows would pass the first test).
// Returns 1 when every column of every n matches.
static int cols_job_check(const cllm_cuda_weight *w, int n_w, int mode) {
    const uint64_t cols = w[0].cols;
    uint64_t rows[CLLM_CUDA_MATVEC_MAX], ld[CLLM_CUDA_MATVEC_MAX], tot = 0;
    const int n_out = mode == CLLM_CUDA_COLS_SWIGLU ? 1 : n_w;
    for (int i = 0; i < n_out; i++) rows[i] = ld[i] = w[i].rows + 3, tot += rows[i];  // pitch > rows
    float *x = xmalloc(8 * cols * 4), *init = xmalloc(8 * tot * 4);
    float *a = xmalloc(8 * tot * 4), *b = xmalloc(8 * tot * 4);
    make_x(x, 8 * cols, 1);
    for (uint64_t i = 0; i < 8 * tot; i++) init[i] = 0.25f + (float)(i % 97);
    const size_t scratch_bytes = cllm_cuda_matvec_cols_scratch(cols);
    float *xd = upload(x, 8 * cols * 4), *yd = dev_alloc(8 * tot * 4);
    void *scratch = dev_alloc(scratch_bytes);
    float *y[CLLM_CUDA_MATVEC_MAX];
    for (int i = 0, o = 0; i < n_out; o += (int)(8 * rows[i]), i++) y[i] = yd + o;
    int ok = 1;
    for (uint32_t n = 1; n <= CLLM_CUDA_MATVEC_COLS; n++) {
        for (int pass = 0; pass < 2; pass++) {  // 0: the column launch, 1: one token at a time
            if (mode == CLLM_CUDA_COLS_ACC) {
                MUST(cllm_cuda_copy(yd, init, 8 * tot * 4, g_stream));
            } else {
                poison(yd, 8 * tot);
            }
            if (pass == 0) {
                MUST(cllm_cuda_matvec_cols_job(w, n_w, mode, xd, cols, n, y, ld, scratch,
                                               scratch_bytes, g_stream));
            } else {
                for (uint32_t c = 0; c < n; c++) {
                    float *yc[CLLM_CUDA_MATVEC_MAX];
                    for (int i = 0; i < n_out; i++) yc[i] = y[i] + c * ld[i];
                    if (mode == CLLM_CUDA_COLS_SWIGLU)
                        MUST(cllm_cuda_matvec_swiglu_ex(&w[0], &w[1], xd + c * cols, yc[0], 0, g_stream));
                    else if (mode == CLLM_CUDA_COLS_ACC)
                        MUST(cllm_cuda_matvec_ex(&w[0], xd + c * cols, yc[0], 1, 0, g_stream));
                    else
                        MUST(cllm_cuda_matvec_multi_ex(w, n_w, xd + c * cols, yc, 0, g_stream));
                }
            }
            download(pass ? b : a, yd, 8 * tot * 4);
        }
        for (int i = 0, o = 0; i < n_out; o += (int)(8 * rows[i]), i++)
            for (uint32_t c = 0; c < n; c++) {
                ok &= memcmp(a + o + c * ld[i], b + o + c * ld[i], w[i].rows * 4) == 0;
                for (uint64_t r = 0; r < w[i].rows; r++) {  // none left as poison(), unwritten
                    uint32_t u;
                    memcpy(&u, a + o + c * ld[i] + r, 4);
                    ok &= u != 0xffffffffu;
                }
            }
    }
    MUST(cllm_cuda_release(g_mem, xd));
    MUST(cllm_cuda_release(g_mem, yd));
    MUST(cllm_cuda_release(g_mem, scratch));
    free(x), free(init), free(a), free(b);
    return ok;
}

// cols_job_check on random weights of a kind in every mode (multi with n_w matrices of rows[i]).
static void cols_job_case(uint32_t kind, int n_w, const uint64_t *rows, uint64_t cols,
                          uint32_t group) {
    host_weight h[CLLM_CUDA_MATVEC_MAX];
    cllm_cuda_weight w[CLLM_CUDA_MATVEC_MAX], sq[2];
    for (int i = 0; i < n_w; i++) {
        host_weight_make(&h[i], kind, rows[i], cols, group);
        w[i] = weight_upload(&h[i]);
    }
    sq[0] = w[0], sq[1] = w[0];  // swiglu: gate and up of equal rows (one matrix twice)
    const int set = cols_job_check(w, n_w, CLLM_CUDA_COLS_SET);
    const int acc = cols_job_check(w, 1, CLLM_CUDA_COLS_ACC);
    const int sw = cols_job_check(sq, 2, CLLM_CUDA_COLS_SWIGLU);
    check(set && acc && sw, "matvec_cols_job %s %d x (%llu..) x %llu g%u: n = 1..8 columns "
          "bit-identical to one-token launches (set %s, accumulate %s, swiglu %s)",
          wkind_name(kind), n_w, (unsigned long long)rows[0], (unsigned long long)cols,
          w[0].group_size, set ? "ok" : "DIFFER", acc ? "ok" : "DIFFER", sw ? "ok" : "DIFFER");
    for (int i = 0; i < n_w; i++) weight_release(&w[i]), host_weight_free(&h[i]);
}

static void cols_job_cases(void) {
    static const uint64_t qkv[3] = {512, 128, 128}, odd[3] = {37, 100, 17}, big[1] = {11008},
                          down[1] = {4096};
    cols_job_case(CLLM_CUDA_W_BF16, 3, qkv, 1024, 0);
    cols_job_case(CLLM_CUDA_W_F16, 3, odd, 1000, 0);
    cols_job_case(CLLM_CUDA_W_BF16, 1, big, 4096, 0);
    cols_job_case(CLLM_CUDA_W_INT8, 3, qkv, 1024, 0);
    cols_job_case(CLLM_CUDA_W_INT8, 3, odd, 1024, 128);  // rows % 16, grouped
    cols_job_case(CLLM_CUDA_W_INT8, 1, down, 11008, 0);  // 172 chunks (> one block's smem share)
    cols_job_case(CLLM_CUDA_W_INT8, 1, big, 4096, 64);
    // Compute code (lossless bf16 and f16): the swiglu/multi loaders with two rows per warp.
    host_weight h;
    cllm_cuda_weight raw, cc[2];
    size_t bytes;
    for (int f16 = 0; f16 < 2; f16++) {
        host_weight_make(&h, f16 ? CLLM_CUDA_W_F16 : CLLM_CUDA_W_BF16, 300, 1024, 0);
        ccode_data(&h, 1);
        raw = weight_upload(&h);
        MUST(cllm_cuda_ccode_make(g_mem, &raw, omp_get_max_threads(), g_stream, &cc[0], &bytes));
        cc[1] = cc[0];
        const int ok = cols_job_check(cc, 2, CLLM_CUDA_COLS_SET) &&
                       cols_job_check(cc, 2, CLLM_CUDA_COLS_SWIGLU) &&
                       cols_job_check(cc, 1, CLLM_CUDA_COLS_ACC);
        check(ok, "matvec_cols_job %s 300 x 1024 specials: n = 1..8 columns bit-identical to "
              "one-token launches (multi, swiglu, accumulate)", wkind_name(cc[0].kind));
        MUST(cllm_cuda_release(g_mem, (void *)cc[0].data));
        weight_release(&raw), host_weight_free(&h);
    }
    // Compute code (int8): realistic symbols with some full-range ones; then every vector flagged
    // (the side entries of every lane).
    for (int sp = 0; sp < 3; sp += 2) {
        host_weight_make(&h, CLLM_CUDA_W_INT8, 300, 1024, 0);
        ccode_data(&h, sp);
        raw = weight_upload(&h);
        MUST(cllm_cuda_ccode_make(g_mem, &raw, omp_get_max_threads(), g_stream, &cc[0], &bytes));
        cc[1] = cc[0];
        const int ok8 = cols_job_check(cc, 2, CLLM_CUDA_COLS_SET) &&
                        cols_job_check(cc, 2, CLLM_CUDA_COLS_SWIGLU) &&
                        cols_job_check(cc, 1, CLLM_CUDA_COLS_ACC);
        check(ok8, "matvec_cols_job cc-int8 300 x 1024%s: n = 1..8 columns bit-identical to "
              "one-token launches (multi, swiglu, accumulate)", sp ? " (all flagged)" : "");
        MUST(cllm_cuda_release(g_mem, (void *)cc[0].data));
        weight_release(&raw), host_weight_free(&h);
    }
}

static void fused_cases(void) {
    fused_case(CLLM_CUDA_W_BF16, 1, 64, 0, 0);        // one row: a tile of padding
    fused_case(CLLM_CUDA_W_BF16, 37, 320, 0, 1);      // a partial tile, specials
    fused_case(CLLM_CUDA_W_BF16, 300, 1024, 0, 0);
    fused_case(CLLM_CUDA_W_BF16, 64, 4096, 0, 1);
    fused_case(CLLM_CUDA_W_BF16, 4096, 4096, 0, 0);
    fused_case(CLLM_CUDA_W_BF16, 1000, 11008, 0, 1);  // > 48 KiB of shared memory
    fused_case(CLLM_CUDA_W_BF16, 48, 4096, 0, 2);     // dense exceptions (> 32 per chunk)
    fused_case(CLLM_CUDA_W_F16, 1, 8, 0, 0);
    fused_case(CLLM_CUDA_W_F16, 37, 336, 0, 1);       // a partial group, specials
    fused_case(CLLM_CUDA_W_F16, 300, 1024, 0, 0);
    fused_case(CLLM_CUDA_W_F16, 64, 4104, 0, 1);      // 4 full batches + tail steps
    fused_case(CLLM_CUDA_W_F16, 4096, 4096, 0, 0);
    fused_case(CLLM_CUDA_W_F16, 1000, 11008, 0, 1);
    fused_case(CLLM_CUDA_W_F16, 48, 4104, 0, 2);
    fused_case(CLLM_CUDA_W_INT8, 16, 64, 0, 1);
    fused_case(CLLM_CUDA_W_INT8, 37, 320, 0, 0);      // rows % 16
    fused_case(CLLM_CUDA_W_INT8, 300, 1024, 64, 1);   // grouped scales, an all-exception row
    fused_case(CLLM_CUDA_W_INT8, 4096, 4096, 0, 0);
    fused_case(CLLM_CUDA_W_INT8, 1000, 11008, 128, 0);
    fused_case(CLLM_CUDA_W_INT8, 64, 14336, 0, 1);    // > 48 KiB of shared memory
    fused_case(CLLM_CUDA_W_INT8, 48, 4096, 0, 2);     // every vector flagged: side lists longer
                                                      // than the staging (read from global)
    // > 2 tiles per SM: blocks of two tiles (301: the last pair has one, partial), in every mode
    fused_case(CLLM_CUDA_W_INT8, 4807, 1024, 0, 1);
    fused_case(CLLM_CUDA_W_INT8, 4807, 1024, 0, 2);   // and with lists longer than the staging
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    // --decode-layer: only the 7B-layer decode benchmarks (bit-exact checked), for a profiler.
    const int layer_only = argc > 1 && strcmp(argv[1], "--decode-layer") == 0;
    // --fused: only the compute-code checks (fused kernels against the raw ones).
    const int fused_only = argc > 1 && strcmp(argv[1], "--fused") == 0;
    if (cllm_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char desc[256];
    MUST(cllm_cuda_device_open(0, desc, sizeof desc));
    printf("device: %s\n", desc);
    MUST(cllm_cuda_mem_create(&g_mem));
    MUST(cllm_cuda_stream_create(&g_stream));
    cllm_cuda_decode_status *st_dev = dev_alloc(sizeof *st_dev);

    static const uint64_t layer[7][2] = {{4096, 4096},  {4096, 4096},  {4096, 4096}, {4096, 4096},
                                         {11008, 4096}, {11008, 4096}, {4096, 11008}};
    if (layer_only) {
        decode_bench("int8 7B layer (7 tensors)", CLLM_CODEC_INT8, 7, layer, 0, 0, st_dev);
        decode_bench("lossless bf16 7B layer (7 tensors)", CLLM_CODEC_LOSSLESS, 7, layer, 0, 0,
                     st_dev);
        printf("%s", g_summary);
        return g_failed ? 1 : 0;
    }
    MUST(cllm_cuda_blas_create(&g_blas));
    if (fused_only) {
        MUST(cllm_cuda_release(g_mem, st_dev));
        fused_cases();
        cols_job_cases();
        gemm_i8_cases();
        printf("%s", g_summary);
        check(cllm_cuda_mem_current(g_mem) == 0, "every device allocation released");
        printf("checks: %d passed, %d failed\n", g_passed, g_failed);
        return g_failed ? 1 : 0;
    }
    int n_ok = 0, n_cases = (int)(sizeof k_shapes / sizeof k_shapes[0]);
    for (int i = 0; i < n_cases; i++) n_ok += decode_case(&k_shapes[i], st_dev);
    summary("%-44s %s  %d/%d shapes\n", "decode: bit-exact vs C decoder",
            n_ok == n_cases ? "PASS" : "FAIL", n_ok, n_cases);
    mixed_batch_case(st_dev);
    corrupt_cases(st_dev);

    // Decode benchmarks: single large tensors, then a Llama-2-7B layer's 7 matrices per launch
    // (default blocks: 2^15 symbols lossless, 2^16 int8; then other block sizes and table scales).
    static const uint64_t sq[1][2] = {{4096, 4096}}, tall[1][2] = {{11008, 4096}};
    decode_bench("lossless bf16 4096x4096", CLLM_CODEC_LOSSLESS, 1, sq, 0, 0, st_dev);
    decode_bench("int8 4096x4096", CLLM_CODEC_INT8, 1, sq, 0, 0, st_dev);
    decode_bench("lossless bf16 11008x4096", CLLM_CODEC_LOSSLESS, 1, tall, 0, 0, st_dev);
    decode_bench("int8 11008x4096", CLLM_CODEC_INT8, 1, tall, 0, 0, st_dev);
    if (!quick) {
        decode_bench("lossless bf16 7B layer (7 tensors)", CLLM_CODEC_LOSSLESS, 7, layer, 0, 0,
                     st_dev);
        decode_bench("int8 7B layer (7 tensors)", CLLM_CODEC_INT8, 7, layer, 0, 0, st_dev);
        decode_bench("int8 7B layer, scale 12", CLLM_CODEC_INT8, 7, layer, 0, 12, st_dev);
        decode_bench("int8 7B layer, scale 13", CLLM_CODEC_INT8, 7, layer, 0, 13, st_dev);
        decode_bench("lossless bf16 7B layer, 2^15-sym blocks", CLLM_CODEC_LOSSLESS, 7, layer,
                     1u << 15, 0, st_dev);
        decode_bench("int8 7B layer, 2^17-sym blocks", CLLM_CODEC_INT8, 7, layer, 1u << 17, 0,
                     st_dev);
        decode_bench("int8 7B layer, 2^15-sym blocks", CLLM_CODEC_INT8, 7, layer, 1u << 15, 0,
                     st_dev);
    }

    // Compute kernels.
    const uint32_t kinds[] = {CLLM_CUDA_W_BF16, CLLM_CUDA_W_F16, CLLM_CUDA_W_F32, CLLM_CUDA_W_INT8};
    for (int k = 0; k < 4; k++) {
        matvec_case(kinds[k], 37, 1001, 0, 0, 0);  // the any-shape path
        matvec_case(kinds[k], 4096, 4096, 0, 1, 0);
        matvec_case(kinds[k], 11008, 4096, 0, 1, 0);
        matvec_case(kinds[k], 4096, 11008, 0, 1, 0);
    }
    matvec_case(CLLM_CUDA_W_INT8, 4096, 4096, 128, 1, 0);   // tensor cores, groups of 128
    matvec_case(CLLM_CUDA_W_INT8, 32000, 4096, 0, 1, 0);    // lm_head
    matvec_case(CLLM_CUDA_W_INT8, 100, 1000, 7, 0, 0);      // any-shape path
    matvec_case(CLLM_CUDA_W_INT8, 1000, 192, 64, 0, 0);     // tensor cores: rows % 16, 3 chunks
    matvec_case(CLLM_CUDA_W_INT8, 37, 11008, 0, 0, 1);      // tensor cores, x with outliers
    matvec_case(CLLM_CUDA_W_INT8, 300, 4096, 128, 0, 1);
    matvec_case(CLLM_CUDA_W_INT8, 11008, 4096, 32, 1, 0);   // group 32: the old per-element
    matvec_case(CLLM_CUDA_W_INT8, 300, 1024, 32, 0, 0);     // conversion path (16-byte vectors)
    matvec_case(CLLM_CUDA_W_INT8, 64, 14336, 0, 0, 0);      // > 48 KiB of shared memory
    matvec_case(CLLM_CUDA_W_BF16, 300, 4096, 0, 0, 1);
    // One launch for q/k/v and for gate/up (+ SwiGLU), against separate launches.
    static const uint64_t qkv[3] = {4096, 4096, 4096}, gqa[3] = {4096, 1024, 1024},
                          gu[2] = {11008, 11008}, odd[3] = {37, 1000, 17},
                          sq_odd[2] = {1000, 1000};
    for (int k = 0; k < 4; k++) {
        const int bench = kinds[k] != CLLM_CUDA_W_F16;
        multi_case(kinds[k], 3, qkv, 4096, 0, 0, bench);
        multi_case(kinds[k], 2, gu, 4096, 0, 0, bench);
        multi_case(kinds[k], 2, gu, 4096, 0, 1, bench);
        multi_case(kinds[k], 3, odd, 1001, 0, 0, 0);  // any-shape path
        multi_case(kinds[k], 2, sq_odd, 1001, 0, 1, 0);
    }
    multi_case(CLLM_CUDA_W_BF16, 3, gqa, 4096, 0, 0, 1);
    multi_case(CLLM_CUDA_W_INT8, 3, gqa, 4096, 128, 0, 0);
    multi_case(CLLM_CUDA_W_INT8, 2, gu, 4096, 128, 1, 0);
    multi_case(CLLM_CUDA_W_INT8, 2, sq_odd, 1024, 32, 1, 0);  // 16-byte vector path
    multi_case(CLLM_CUDA_W_INT8, 2, sq_odd, 1024, 64, 1, 0);  // tensor cores, rows % 16
    multi_arg_cases();
    fused_cases();
    cols_job_cases();
    attention_split_cases();
    chain_case(CLLM_CUDA_W_BF16, 4096, 1024, 11008, 0, 0);  // 16-byte vector kernels (7B shapes)
    chain_case(CLLM_CUDA_W_BF16, 4096, 1024, 11008, 0, 1);  // the same as compute code
    chain_case(CLLM_CUDA_W_F16, 4096, 1024, 11008, 0, 1);   // f16 compute code
    chain_case(CLLM_CUDA_W_INT8, 4096, 1024, 11008, 128, 0);  // tensor cores, grouped scales
    chain_case(CLLM_CUDA_W_INT8, 4096, 1024, 11008, 0, 1);  // compute code, one scale per row
    chain_case(CLLM_CUDA_W_INT8, 1024, 256, 2752, 0, 0);    // tensor cores, one scale per row
    chain_case(CLLM_CUDA_W_F16, 1000, 37, 200, 0, 0);   // 16-byte f16, rows not a multiple of 8
    chain_case(CLLM_CUDA_W_INT8, 1008, 37, 208, 16, 0);  // int8 vector kernel (groups of 16)
    chain_case(CLLM_CUDA_W_F16, 1001, 37, 203, 0, 0);     // any-shape kernel
    small_kernels();
    gemm_cases(g_blas);
    gemm_i8_cases();
    cllm_cuda_blas_destroy(g_blas);

    MUST(cllm_cuda_release(g_mem, st_dev));
    printf("device memory: peak %.1f MiB through the tracker, %zu bytes still held\n",
           cllm_cuda_mem_peak(g_mem) / 1048576.0, cllm_cuda_mem_current(g_mem));
    check(cllm_cuda_mem_current(g_mem) == 0, "every device allocation released");
    printf("\n==== SUMMARY (%s) ====\n%-44s %s\n%s", desc, "check / benchmark", "result",
           g_summary);
    printf("checks: %d passed, %d failed\n", g_passed, g_failed);
    cllm_cuda_mem_free_all(g_mem);
    cllm_cuda_stream_destroy(g_stream);
    return g_failed ? 1 : 0;
}
