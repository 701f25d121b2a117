// Writes the seed corpus of fuzz_ccode (fuzz/corpus/fuzz_ccode) with the current encoder: small
// bf16, f16 and int8 matrices with exceptions and flagged vectors, an empty int8 matrix, and a
// bf16 buffer with one exception entry moved inside its row's window (refused by the decoder).
// Run it after a compute-code version change: make_ccode_seeds DIR (test_ccode checks that every
// seed's header is current).
#include "codec/cllm_ccode.h"
#include "common/cllm_half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_s = 0x2545f4914f6cdd1dull;
static double uni(void) {  // xorshift64*, in [0, 1)
    g_s ^= g_s >> 12, g_s ^= g_s << 25, g_s ^= g_s >> 27;
    return (double)((g_s * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static int put(const char *dir, const char *name, const uint8_t *buf, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_ccode_seeds: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

// rows x cols of Gaussian weights, one in 40 scaled far out of its row's window.
static uint16_t *weights(uint64_t rows, uint64_t cols, int f16) {
    uint16_t *w = malloc(rows * cols * 2 + 2);
    if (!w) abort();
    for (uint64_t i = 0; i < rows * cols; i++) {
        float x = (float)(sqrt(-2.0 * log(1.0 - uni())) * cos(6.283185307 * uni())) * 0.02f;
        if (uni() < 0.025) x *= 4096.0f;
        w[i] = f16 ? cllm_f32_to_f16(x) : cllm_f32_to_bf16(x);
    }
    return w;
}

static int b16(const char *dir, const char *name, uint64_t rows, uint64_t cols, int f16,
               int flip) {
    uint16_t *w = weights(rows, cols, f16);
    uint8_t *buf = NULL;
    size_t n = 0;
    cllm_status st = f16 ? cllm_ccode_encode_f16(w, rows, cols, 1, &buf, &n)
                         : cllm_ccode_encode_bf16(w, rows, cols, 1, &buf, &n);
    int bad = st != CLLM_OK;
    if (!bad && flip) {  // the first exception entry's exponent set to its row's base
        cllm_ccode_info in;
        cllm_ccode_layout lay;
        bad = cllm_ccode_read_info(buf, n, &in, &lay) != CLLM_OK || in.n_exc == 0;
        if (!bad) {
            uint8_t *e = buf + lay.off[CLLM_CCB_S_EXC];
            const uint32_t s = e[0], row = (s & 255u) >> 5 | (s & 2u) << 2;  // from its slot
            e[1] = buf[lay.off[CLLM_CCB_S_BASE] + row];
        }
    }
    if (!bad) bad = put(dir, name, buf, n);
    free(buf), free(w);
    return bad;
}

static int i8(const char *dir, const char *name, uint64_t rows, uint64_t cols, uint32_t group) {
    int8_t *q = malloc(rows * cols + 1);
    const uint64_t gpr = (cols + group - 1) / group;
    float *sc = malloc(rows * gpr * sizeof(float) + 1);
    if (!q || !sc) abort();
    for (uint64_t i = 0; i < rows * cols; i++)
        q[i] = (int8_t)(uni() < 0.1 ? (int)(uni() * 256) - 128 : (int)(uni() * 40) - 20);
    for (uint64_t i = 0; i < rows * gpr; i++) sc[i] = 0.001f + (float)uni() * 0.01f;
    uint8_t *buf = NULL;
    size_t n = 0;
    int bad = cllm_ccode_encode_int8(q, sc, rows, cols, group, 1, &buf, &n) != CLLM_OK;
    if (!bad) bad = put(dir, name, buf, n);
    free(buf), free(q), free(sc);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_ccode_seeds DIR\n");
        return 2;
    }
    const char *d = argv[1];
    int bad = b16(d, "bf16_1x64", 1, 64, 0, 0) | b16(d, "bf16_3x128", 3, 128, 0, 0) |
              b16(d, "bf16_flipped_exc", 3, 128, 0, 1) | b16(d, "f16_1x1", 1, 1, 1, 0) |
              b16(d, "f16_3x40", 3, 40, 1, 0) | i8(d, "int8_2x64", 2, 64, 64) |
              i8(d, "int8_17x70_g7", 17, 70, 7) | i8(d, "int8_empty", 0, 64, 64);
    return bad;
}
