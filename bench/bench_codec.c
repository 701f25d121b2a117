// Codec benchmark: single-thread encode/decode throughput and coded size against the order-0
// bound, for synthetic 7B-like tensors (and optionally the real stories260K checkpoint).
//
//   bench_codec [stories260K.bin] [--threads N] [--quick]
//
// Throughput: encode MB/s of source bytes, decode MB/s of decoded bytes (int8: one byte per
// weight), best of a few runs, n_threads = 1 unless --threads says otherwise. A first table
// times the rANS block coder alone (one thread, M symbols/s = MB/s of int8 symbols): encode, and
// decode with the scalar reference and the AVX2 path.
// Size: bits/weight of the whole payload; bound = H(exponent) + raw bits (lossless) or
// H(int8 symbols) (int8), H measured without predictor.
#include "codec/cllm_codec.h"
#include "common/cllm_half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uni(uint64_t *s) { return ((double)(rng_next(s) >> 11) + 0.5) * 0x1.0p-53; }

// Student-t with nu degrees of freedom (Bailey's polar method).
static double student_t(uint64_t *s, double nu) {
    for (;;) {
        double u = 2 * uni(s) - 1, v = 2 * uni(s) - 1, w = u * u + v * v;
        if (w >= 1 || w == 0) continue;
        return u * sqrt(nu * (pow(w, -2 / nu) - 1) / w);
    }
}

// 7B-like weights: base std 0.02, Student-t nu = 5 scaled to unit variance, lognormal row scales
// (sigma 0.3), ~0.2% outlier columns x5..10.
static float *synth_weights(uint64_t rows, uint64_t cols, uint64_t seed) {
    float *w = malloc(rows * cols * sizeof(float));
    double *col_gain = malloc(cols * sizeof(double));
    for (uint64_t c = 0; c < cols; c++)
        col_gain[c] = uni(&seed) < 0.002 ? 5 + 5 * uni(&seed) : 1.0;
    const double nu = 5, tstd = sqrt(nu / (nu - 2));
    for (uint64_t r = 0; r < rows; r++) {
        double g = sqrt(-2 * log(uni(&seed))) * cos(6.283185307179586 * uni(&seed));
        double row_scale = 0.02 * exp(0.3 * g) / tstd;
        for (uint64_t c = 0; c < cols; c++)
            w[r * cols + c] = (float)(student_t(&seed, nu) * row_scale * col_gain[c]);
    }
    free(col_gain);
    return w;
}

static void *convert(const float *w, uint64_t n, cllm_dtype dt) {
    if (dt == CLLM_DTYPE_F32) {
        float *o = malloc(n * 4);
        memcpy(o, w, n * 4);
        return o;
    }
    uint16_t *h = malloc(n * 2);
    for (uint64_t i = 0; i < n; i++)
        h[i] = dt == CLLM_DTYPE_BF16 ? cllm_f32_to_bf16(w[i]) : cllm_f32_to_f16(w[i]);
    return h;
}

typedef struct bench_opts {
    int threads;
    int reps;
} bench_opts;

// Order-0 bound in bits for the whole tensor (symbols without predictor).
static double order0_bound(const void *src, cllm_dtype dt, cllm_codec codec, uint64_t rows,
                           uint64_t cols) {
    uint64_t n = rows * cols, counts[256] = {0};
    uint8_t *syms = malloc(n);
    if (codec == CLLM_CODEC_LOSSLESS) {
        uint8_t *plane = calloc(n * 3 + 1, 1);
        cllm_float_split(src, dt, n, syms, plane);
        free(plane);
    } else {
        float *scales = malloc(rows * cols * 4);
        cllm_quantize_int8(src, dt, rows, cols, 0, (int8_t *)syms, scales);
        free(scales);
    }
    for (uint64_t i = 0; i < n; i++) counts[syms[i]]++;
    free(syms);
    double raw = codec == CLLM_CODEC_LOSSLESS ? cllm_float_raw_bits(dt) : 0;
    return (cllm_entropy_bits(counts) + raw) * (double)n;
}

static int run_one(const char *name, const void *src, cllm_dtype dt, uint64_t rows, uint64_t cols,
                   cllm_codec codec, uint32_t pred, const bench_opts *o, double *size_out) {
    const uint64_t n = rows * cols;
    const size_t src_bytes = n * cllm_dtype_size(dt);
    cllm_encode_params p = {.codec = codec, .predictor = pred, .n_threads = o->threads};
    cllm_coded c = {0};
    double t_enc = 1e30, t_dec = 1e30;
    for (int rep = 0; rep < o->reps; rep++) {
        cllm_coded_free(&c);
        double t0 = cllm_now_seconds();
        if (cllm_encode_tensor(src, dt, rows, cols, &p, &c) != CLLM_OK) {
            fprintf(stderr, "%s: encode failed: %s\n", name, cllm_last_error());
            return 1;
        }
        double t1 = cllm_now_seconds();
        if (t1 - t0 < t_enc) t_enc = t1 - t0;
    }
    size_t out_bytes = codec == CLLM_CODEC_INT8 ? n : src_bytes;
    uint8_t *out = malloc(src_bytes);
    float *scales = malloc(rows * 4 + 4);
    for (int rep = 0; rep < o->reps; rep++) {
        double t0 = cllm_now_seconds();
        cllm_status st = cllm_decode_tensor(&c.info, c.payload, c.payload_size, out, src_bytes,
                                            scales, rows * 4 + 4, o->threads);
        double t1 = cllm_now_seconds();
        if (st != CLLM_OK) {
            fprintf(stderr, "%s: decode failed: %s\n", name, cllm_last_error());
            return 1;
        }
        if (t1 - t0 < t_dec) t_dec = t1 - t0;
    }
    if (codec == CLLM_CODEC_LOSSLESS && memcmp(out, src, src_bytes) != 0) {
        fprintf(stderr, "%s: lossless round trip differs!\n", name);
        return 1;
    }
    double bits = 8.0 * (double)c.payload_size;
    double bound = order0_bound(src, dt, codec, rows, cols);
    double scale_bits = codec == CLLM_CODEC_INT8 ? 32.0 * (double)rows : 0;
    printf("%-22s %-5s %-8s %-4s %8.4f %8.4f %7.3f%% %7.3f%% %8.1f %8.1f\n", name,
           cllm_dtype_name(dt), cllm_codec_name(codec), pred ? "left" : "none", bits / n,
           bound / n, 100 * (bits / bound - 1), 100 * ((bits - scale_bits) / bound - 1),
           src_bytes / t_enc / 1e6, out_bytes / t_dec / 1e6);
    *size_out = bits;
    free(out), free(scales);
    cllm_coded_free(&c);
    return 0;
}

static int bench_tensor(const char *name, const float *w, uint64_t rows, uint64_t cols,
                        const cllm_dtype *dts, int n_dts, const bench_opts *o) {
    int bad = 0;
    for (int k = 0; k < n_dts; k++) {
        void *src = convert(w, rows * cols, dts[k]);
        double none, left;
        bad |= run_one(name, src, dts[k], rows, cols, CLLM_CODEC_LOSSLESS, 0, o, &none);
        bad |= run_one(name, src, dts[k], rows, cols, CLLM_CODEC_LOSSLESS, 1, o, &left);
        printf("%-22s LEFT predictor / none: %.4f\n", "", left / none);
        if (k == 0) {  // int8 once, from the first dtype
            bad |= run_one(name, src, dts[k], rows, cols, CLLM_CODEC_INT8, 0, o, &none);
            bad |= run_one(name, src, dts[k], rows, cols, CLLM_CODEC_INT8, 1, o, &left);
            printf("%-22s LEFT predictor / none: %.4f\n", "", left / none);
        }
        free(src);
    }
    return bad;
}

// Best-of-reps seconds of one block operation (0: encode, 1: scalar decode, 2: AVX2 decode);
// negative when the operation fails (AVX2 missing).
static double time_block(int op, const cllm_rans_enc_table *enc, const cllm_rans_dec_table *dec,
                         const uint8_t *syms, uint64_t n, uint8_t *blk, size_t cap, size_t *size,
                         uint8_t *back, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = cllm_now_seconds();
        cllm_status st = op == 0   ? cllm_rans_encode_block(enc, syms, n, blk, cap, size)
                         : op == 1 ? cllm_rans_decode_block_scalar(dec, blk, *size, back, n)
                                   : cllm_rans_decode_block_avx2(dec, blk, *size, back, n);
        double t = cllm_now_seconds() - t0;
        if (st != CLLM_OK) return -1;
        if (op && memcmp(back, syms, n) != 0) return -1;
        if (t < best) best = t;
    }
    return best;
}

// The block coder alone on int8 symbols of a synthetic 4096-column tensor (one default-size block).
static int bench_blocks(const float *w) {
    const uint64_t n = CLLM_RANS_DEFAULT_BLOCK_SYMBOLS, cols = 4096;
    int8_t *q = malloc(n);
    float *scales = malloc(n / cols * 4);
    cllm_quantize_int8(w, CLLM_DTYPE_F32, n / cols, cols, 0, q, scales);
    uint64_t counts[256] = {0};
    for (uint64_t i = 0; i < n; i++) counts[(uint8_t)q[i]]++;
    size_t cap = (size_t)cllm_rans_block_bound(n), size = 0;
    uint8_t *blk = malloc(cap), *back = malloc(n);
    static cllm_rans_dec_table dec;
    int bad = 0;
    printf("%-22s %5s %12s %12s %12s %8s\n", "rANS block (int8 syms)", "scale", "enc Msym/s",
           "dec scalar", "dec avx2", "avx2/sc");
    static const uint32_t sbs[] = {CLLM_RANS_MAX_SCALE_BITS, 13, 12, 8};
    for (size_t k = 0; k < sizeof sbs / sizeof sbs[0]; k++) {
        const uint32_t sb = sbs[k];
        uint16_t freq[256];
        cllm_rans_enc_table enc;
        if (cllm_freq_build(counts, sb, freq) != CLLM_OK ||
            cllm_rans_enc_table_init(&enc, freq, sb) != CLLM_OK ||
            cllm_rans_dec_table_init(&dec, freq, sb) != CLLM_OK) {
            bad = 1;
            break;
        }
        double te = time_block(0, &enc, &dec, (uint8_t *)q, n, blk, cap, &size, back, 20);
        double ts = time_block(1, &enc, &dec, (uint8_t *)q, n, blk, cap, &size, back, 20);
        double tv = time_block(2, &enc, &dec, (uint8_t *)q, n, blk, cap, &size, back, 20);
        bad |= te < 0 || ts < 0;
        printf("%-22s %5u %12.1f %12.1f %12.1f %8.2f\n", "", sb, n / te / 1e6, n / ts / 1e6,
               tv > 0 ? n / tv / 1e6 : 0.0, tv > 0 ? ts / tv : 0.0);
    }
    free(q), free(scales), free(blk), free(back);
    return bad;
}

// llama2.c checkpoint: 7 int32 header, then float32 tensors in a fixed order. Each stacked
// matrix (all layers) is benchmarked as one (L * rows, cols) tensor.
static int bench_llama2c(const char *path, const bench_opts *o) {
    uint8_t *data;
    size_t size;
    if (cllm_read_file(path, (size_t)1 << 32, &data, &size) != CLLM_OK || size < 28) {
        fprintf(stderr, "cannot read %s: %s\n", path, cllm_last_error());
        return 1;
    }
    int32_t h[7];
    memcpy(h, data, sizeof h);
    const uint64_t dim = (uint64_t)h[0], hid = (uint64_t)h[1], L = (uint64_t)h[2];
    const uint64_t kv = dim * (uint64_t)h[4] / (uint64_t)h[3], vocab = (uint64_t)abs(h[5]);
    struct { const char *name; uint64_t rows, cols; int bench; } t[] = {
        {"emb", vocab, dim, 1}, {"rms_att", L, dim, 0}, {"wq", L * dim, dim, 1},
        {"wk", L * kv, dim, 1}, {"wv", L * kv, dim, 1}, {"wo", L * dim, dim, 1},
        {"rms_ffn", L, dim, 0}, {"w1", L * hid, dim, 1}, {"w2", L * dim, hid, 1},
        {"w3", L * hid, dim, 1},
    };
    const uint8_t *p = data + 28, *end = data + size;
    const cllm_dtype dts[] = {CLLM_DTYPE_BF16, CLLM_DTYPE_F32};
    int bad = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint64_t bytes = t[i].rows * t[i].cols * 4;
        if ((uint64_t)(end - p) < bytes) {
            fprintf(stderr, "%s: truncated at %s\n", path, t[i].name);
            free(data);
            return 1;
        }
        if (t[i].bench) {
            float *w = malloc(bytes);
            memcpy(w, p, bytes);
            char name[64];
            snprintf(name, sizeof name, "260K.%s", t[i].name);
            bad |= bench_tensor(name, w, t[i].rows, t[i].cols, dts, 2, o);
            free(w);
        }
        p += bytes;
    }
    free(data);
    return bad;
}

static void print_cpu(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            printf("cpu: %s", strchr(line, ':') + 2);
            break;
        }
    }
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    bench_opts o = {.threads = 1, .reps = 3};
    const char *ckpt = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else ckpt = argv[i];
    }
    print_cpu();
    printf("threads: %d (tensor tables)\n", o.threads);
    int bad = 0;
    {
        float *w = synth_weights(CLLM_RANS_DEFAULT_BLOCK_SYMBOLS / 4096, 4096, 99);
        bad |= bench_blocks(w);
        free(w);
    }
    printf("%-22s %-5s %-8s %-4s %8s %8s %8s %8s %8s %8s\n", "tensor", "dtype", "codec", "pred",
           "bits/w", "bound", "overhd", "-scales", "enc MB/s", "dec MB/s");
    if (ckpt) bad |= bench_llama2c(ckpt, &o);
    const cllm_dtype dts[] = {CLLM_DTYPE_BF16, CLLM_DTYPE_F16, CLLM_DTYPE_F32};
    struct { const char *name; uint64_t rows, cols; } s[] = {
        {"7b.attn 4096x4096", 4096, 4096}, {"7b.mlp 11008x4096", 11008, 4096}};
    for (size_t i = 0; i < (quick ? 1u : 2u); i++) {
        float *w = synth_weights(s[i].rows, s[i].cols, 1234 + i);
        bad |= bench_tensor(s[i].name, w, s[i].rows, s[i].cols, dts, i == 0 ? 3 : 1, &o);
        free(w);
    }
    return bad;
}
