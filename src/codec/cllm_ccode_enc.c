// Encoder of the in-VRAM compute code (layout: cllm_ccode.h, docs/FORMAT.md). Two passes over the
// rows (or tiles): count the exceptions of each, then, with their prefix sums known, write every
// section; both passes are independent per row, so they run on OpenMP threads.
#include "cllm_ccode.h"

#include "../common/cllm_common.h"

#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void write_header(uint8_t *buf, const cllm_ccode_info *in) {
    memset(buf, 0, CLLM_CCODE_HEADER_BYTES);
    put32(buf, CLLM_CCODE_MAGIC);
    put16(buf + 4, CLLM_CCODE_VERSION);
    put16(buf + 6, (uint16_t)in->kind);
    put32(buf + 8, in->group_size);
    put64(buf + 16, in->rows);
    put64(buf + 24, in->cols);
    put64(buf + 32, in->n_exc);
}

// Allocates the zeroed buffer of `in` (n_exc known) and writes its header.
static cllm_status alloc_buffer(const cllm_ccode_info *in, cllm_ccode_layout *lay, uint8_t **out,
                                size_t *out_bytes) {
    RETURN_IF(cllm_ccode_layout_of(in, lay) != 0 || lay->total > SIZE_MAX, CLLM_ERR_UNSUPPORTED,
              "compute code: a %llu x %llu matrix is beyond the layout's limits",
              (unsigned long long)in->rows, (unsigned long long)in->cols);
    *out = calloc(1, (size_t)lay->total);
    RETURN_IF(!*out, CLLM_ERR_NOMEM, "compute code: %llu bytes", (unsigned long long)lay->total);
    *out_bytes = (size_t)lay->total;
    write_header(*out, in);
    return CLLM_OK;
}

// ---- bf16 and f16 -------------------------------------------------------------------------------

// f16: 0 for bf16 (exponent h bits 7..14), 1 for f16 (h bits 10..14).
static uint32_t exp_of(uint16_t h, int f16) { return f16 ? (h >> 10) & 0x1fu : (h >> 7) & 0xffu; }

// The base whose window [base, base + 7] holds the most weights of the row (smallest on ties).
static uint32_t row_base(const uint16_t *w, uint64_t cols, int f16) {
    uint64_t hist[256] = {0};
    for (uint64_t c = 0; c < cols; c++) hist[exp_of(w[c], f16)]++;
    uint64_t win = 0, best = 0;
    uint32_t base = 0;
    for (uint32_t e = 0; e < 8; e++) win += hist[e];
    best = win;
    for (uint32_t b = 1; b <= (f16 ? CLLM_CCF16_BASE_MAX : CLLM_CC16_BASE_MAX); b++) {
        win += hist[b + 7] - hist[b - 1];
        if (win > best) best = win, base = b;
    }
    return base;
}

// Offset of h's exponent from the base, or CLLM_CC16_EXC when outside the window.
#define CLLM_CC16_EXC 8u
static uint32_t code_of(uint16_t h, uint32_t base, int f16) {
    const uint32_t d = exp_of(h, f16) - base;  // wraps for exponents below the base
    return d < 8 ? d : CLLM_CC16_EXC;
}

// Writes row r: bytes, code words, group offsets, exceptions (from index `first`).
static void b16_row(const uint16_t *w, uint64_t cols, uint32_t base, uint64_t r,
                    const cllm_ccode_layout *lay, uint8_t *buf, uint64_t first, int f16) {
    const uint64_t wide = f16 ? 2 : 1;  // code word of 24 or 48 bits
    uint8_t *bytes = buf + lay->off[CLLM_CC16_S_BYTES] + r * lay->nvec * 8;
    uint8_t *lo = buf + lay->off[CLLM_CC16_S_CODELO] + r * lay->nvec * 2 * wide;
    uint8_t *hi = buf + lay->off[CLLM_CC16_S_CODEHI] + r * lay->nvec * wide;
    uint8_t *goff = buf + lay->off[CLLM_CC16_S_GOFF] + r * (lay->ngroups + 1) * 2;
    uint8_t *exc = buf + lay->off[CLLM_CC16_S_EXC] + first * 2;
    uint32_t n = 0;  // exceptions of this row so far
    for (uint64_t v = 0; v < lay->nvec; v++) {
        if (v % 32 == 0) put16(goff + (v / 32) * 2, (uint16_t)n);
        uint64_t word = 0;
        for (uint32_t p = 0; p < CLLM_CC16_VEC; p++) {
            const uint64_t c = v * CLLM_CC16_VEC + p;
            if (c >= cols) break;  // padding: byte 0, code 0 (f16: field 0)
            const uint16_t h = w[c];
            const uint32_t code = code_of(h, base, f16);
            bytes[c] = (uint8_t)(((h >> 8) & 0x80u) | (h & 0x7fu));
            if (code == CLLM_CC16_EXC) {  // code 0 and an entry: exponent = base ^ delta
                const uint32_t delta = exp_of(h, f16) ^ base;
                put16(exc + 2 * n++, (uint16_t)((c % CLLM_CC16_GROUP) | delta << 8));
            }
            const uint32_t field = (code == CLLM_CC16_EXC ? 0 : code) << (f16 ? 3 : 0) |
                                   (f16 ? (h >> 7) & 7u : 0);  // f16: mantissa bits 7..9
            word |= (uint64_t)field << (f16 ? 6 * p : 3 * p);
        }
        if (f16) {
            put32(lo + 4 * v, (uint32_t)word);
            put16(hi + 2 * v, (uint16_t)(word >> 32));
        } else {
            put16(lo + 2 * v, (uint16_t)word);
            hi[v] = (uint8_t)(word >> 16);
        }
    }
    put16(goff + lay->ngroups * 2, (uint16_t)n);
}

static cllm_status encode_b16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                              uint8_t **out, size_t *out_bytes, int f16) {
    RETURN_IF(!out || !out_bytes || (!w && rows && cols), CLLM_ERR_ARG,
              "ccode_encode_%s: NULL argument", f16 ? "f16" : "bf16");
    *out = NULL, *out_bytes = 0;
    cllm_ccode_info in = {.kind = f16 ? CLLM_CCODE_F16 : CLLM_CCODE_BF16, .rows = rows, .cols = cols};
    cllm_ccode_layout lay;
    RETURN_IF(cllm_ccode_layout_of(&in, &lay) != 0 || rows > SIZE_MAX / 8, CLLM_ERR_UNSUPPORTED,
              "compute code: a %llu x %llu matrix is beyond the layout's limits",
              (unsigned long long)rows, (unsigned long long)cols);
    uint8_t *base = malloc(rows ? (size_t)rows : 1);
    uint64_t *first = malloc(((size_t)rows + 1) * sizeof *first);
    cllm_status st = base && first ? CLLM_OK : CLLM_ERR_NOMEM;
    int too_many = 0;
    const int nt = n_threads > 1 ? n_threads : 1;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt) if (st == CLLM_OK && rows * cols > 65536) reduction(| : too_many)
    for (uint64_t r = 0; r < (st == CLLM_OK ? rows : 0); r++) {
        const uint16_t *row = w + r * cols;
        base[r] = (uint8_t)row_base(row, cols, f16);
        uint64_t n = 0;
        for (uint64_t c = 0; c < cols; c++) n += code_of(row[c], base[r], f16) == CLLM_CC16_EXC;
        first[r + 1] = n;
        too_many |= n > 0xffff;
    }
    if (st == CLLM_OK && too_many) {
        st = CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "compute code: a row has more than 65535 escapes");
    } else if (st == CLLM_OK) {
        first[0] = 0;
        for (uint64_t r = 0; r < rows; r++) first[r + 1] += first[r];
        in.n_exc = first[rows];
        st = alloc_buffer(&in, &lay, out, out_bytes);
    } else {
        st = CLLM_FAIL(CLLM_ERR_NOMEM, "compute code: row tables of %llu rows",
                       (unsigned long long)rows);
    }
    if (st == CLLM_OK) {
        uint8_t *buf = *out;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt) if (rows * cols > 65536)
        for (uint64_t r = 0; r < rows; r++) {
            buf[lay.off[CLLM_CC16_S_BASE] + r] = base[r];
            put32(buf + lay.off[CLLM_CC16_S_ROWEXC] + r * 4, (uint32_t)first[r]);
            b16_row(w + r * cols, cols, base[r], r, &lay, buf, first[r], f16);
        }
        put32(buf + lay.off[CLLM_CC16_S_ROWEXC] + rows * 4, (uint32_t)first[rows]);
        if (first[rows] > 0xffffffffull) {
            free(*out), *out = NULL, *out_bytes = 0;
            st = CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "compute code: more than 2^32 - 1 exceptions");
        }
    }
    free(base), free(first);
    return st;
}

cllm_status cllm_ccode_encode_bf16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                                   uint8_t **out, size_t *out_bytes) {
    return encode_b16(w, rows, cols, n_threads, out, out_bytes, 0);
}

cllm_status cllm_ccode_encode_f16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                                  uint8_t **out, size_t *out_bytes) {
    return encode_b16(w, rows, cols, n_threads, out, out_bytes, 1);
}

// ---- int8 ---------------------------------------------------------------------------------------

// Symbol (r, c) or 0 outside the matrix (tile padding).
static int q_at(const int8_t *q, uint64_t rows, uint64_t cols, uint64_t r, uint64_t c) {
    return r < rows && c < cols ? q[r * cols + c] : 0;
}

static int fits6(int v) { return v >= -32 && v <= 31; }

// Value j (0..15) of half h of lane l in (tile t, chunk ch): row 16 t + l / 4 + 8 h, column
// 64 ch + 16 (l % 4) + j (see cllm_ccode.h).
static int lane_value(const int8_t *q, uint64_t rows, uint64_t cols, uint64_t t, uint64_t ch,
                      uint32_t l, uint32_t h, uint32_t j) {
    return q_at(q, rows, cols, t * 16 + l / 4 + 8 * h, ch * 64 + 16 * (l % 4) + j);
}

// Whether lane l's vector v (half v / 2, values 8 (v % 2) .. + 7) has a value outside [-32, 31].
static int flagged8(const int8_t *q, uint64_t rows, uint64_t cols, uint64_t t, uint64_t ch,
                    uint32_t l, uint32_t v) {
    for (uint32_t j = 0; j < 8; j++)
        if (!fits6(lane_value(q, rows, cols, t, ch, l, v / 2, 8 * (v % 2) + j))) return 1;
    return 0;
}

// Flagged vectors of (tile t, chunk ch).
static uint64_t count_flagged8(const int8_t *q, uint64_t rows, uint64_t cols, uint64_t t,
                               uint64_t ch) {
    uint64_t n = 0;
    for (uint32_t l = 0; l < 32; l++)
        for (uint32_t v = 0; v < 4; v++) n += (uint64_t)flagged8(q, rows, cols, t, ch, l, v);
    return n;
}

// Writes (tile t, chunk ch): the planes of every value's low 6 bits, the flag pairs (word w:
// lanes 8 w .. 8 w + 7), and the side entries of its flagged vectors from index `first` on.
static void int8_block(const int8_t *q, uint64_t rows, uint64_t cols, uint64_t t, uint64_t ch,
                       const cllm_ccode_layout *lay, uint8_t *buf, uint64_t first) {
    const uint64_t blk = t * lay->nch + ch;
    uint8_t *nib = buf + lay->off[CLLM_CC8_S_NIB] + blk * CLLM_CC8_NIB_BYTES;
    uint8_t *hi = buf + lay->off[CLLM_CC8_S_HI] + blk * CLLM_CC8_HI_BYTES;
    uint8_t *flags = buf + lay->off[CLLM_CC8_S_FLAGS] + blk * CLLM_CC8_FLAG_BYTES;
    uint8_t *side = buf + lay->off[CLLM_CC8_S_XHI] + first * 2;
    uint32_t word[4] = {0, 0, 0, 0}, at = (uint32_t)first, starts[4];
    for (uint32_t l = 0; l < 32; l++) {
        if (l % 8 == 0) starts[l / 8] = at;
        for (uint32_t h = 0; h < 2; h++) {
            uint32_t v[16];
            for (uint32_t j = 0; j < 16; j++)
                v[j] = (uint32_t)(uint8_t)lane_value(q, rows, cols, t, ch, l, h, j) & 63u;
            for (uint32_t i = 0; i < 4; i++) {
                nib[l * 16 + h * 8 + i] = (uint8_t)((v[i] & 15) | (v[4 + i] & 15) << 4);
                nib[l * 16 + h * 8 + 4 + i] = (uint8_t)((v[8 + i] & 15) | (v[12 + i] & 15) << 4);
                hi[l * 8 + h * 4 + i] = (uint8_t)(v[i] >> 4 | (v[4 + i] >> 4) << 2 |
                                                  (v[8 + i] >> 4) << 4 | (v[12 + i] >> 4) << 6);
            }
        }
        for (uint32_t vv = 0; vv < 4; vv++) {  // in bit order: 4 l + vv
            if (!flagged8(q, rows, cols, t, ch, l, vv)) continue;
            word[l / 8] |= 1u << (4 * (l % 8) + vv);
            at++;
            uint32_t e = 0;
            for (uint32_t j = 0; j < 8; j++) {
                const uint32_t x = (uint8_t)lane_value(q, rows, cols, t, ch, l, vv / 2, 8 * (vv % 2) + j);
                e |= ((x >> 6) ^ (x & 32u ? 3u : 0u)) << (2 * j);  // bits 6-7 XOR bit 5's extension
            }
            side[0] = (uint8_t)e, side[1] = (uint8_t)(e >> 8), side += 2;
        }
    }
    for (uint32_t w = 0; w < 4; w++) put32(flags + 8 * w, word[w]), put32(flags + 8 * w + 4, starts[w]);
}

cllm_status cllm_ccode_encode_int8(const int8_t *q, const float *scales, uint64_t rows,
                                   uint64_t cols, uint32_t group_size, int n_threads,
                                   uint8_t **out, size_t *out_bytes) {
    RETURN_IF(!out || !out_bytes || ((!q || !scales) && rows && cols), CLLM_ERR_ARG,
              "ccode_encode_int8: NULL argument");
    *out = NULL, *out_bytes = 0;
    cllm_ccode_info in = {.kind = CLLM_CCODE_INT8, .group_size = group_size, .rows = rows,
                          .cols = cols};
    cllm_ccode_layout lay;
    RETURN_IF(group_size == 0 || (cols && group_size > cols), CLLM_ERR_ARG,
              "ccode_encode_int8: group size %u for %llu columns", group_size,
              (unsigned long long)cols);
    RETURN_IF(cllm_ccode_layout_of(&in, &lay) != 0, CLLM_ERR_UNSUPPORTED,
              "compute code: a %llu x %llu matrix is beyond the layout's limits",
              (unsigned long long)rows, (unsigned long long)cols);
    const uint64_t nb = lay.ntiles * lay.nch;
    uint64_t *first = malloc(((size_t)nb + 1) * sizeof *first);
    RETURN_IF(!first, CLLM_ERR_NOMEM, "compute code: offsets of %llu blocks",
              (unsigned long long)nb);
    const int nt = n_threads > 1 ? n_threads : 1;
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt) if (nb > 64)
    for (uint64_t b = 0; b < nb; b++)
        first[b + 1] = count_flagged8(q, rows, cols, b / lay.nch, b % lay.nch);
    first[0] = 0;
    for (uint64_t b = 0; b < nb; b++) first[b + 1] += first[b];
    in.n_exc = first[nb];
    cllm_status st = in.n_exc > 0xffffffffull
                         ? CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "compute code: over 2^32 flagged vectors")
                         : alloc_buffer(&in, &lay, out, out_bytes);
    if (st == CLLM_OK) {
        uint8_t *buf = *out;
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt) if (nb > 64)
        for (uint64_t b = 0; b < nb; b++) {

            int8_block(q, rows, cols, b / lay.nch, b % lay.nch, &lay, buf, first[b]);
        }
        put32(buf + lay.off[CLLM_CC8_S_FLAGS] + nb * CLLM_CC8_FLAG_BYTES + 4, (uint32_t)first[nb]);
        if (lay.size[CLLM_CC8_S_SCALES])
            memcpy(buf + lay.off[CLLM_CC8_S_SCALES], scales, (size_t)lay.size[CLLM_CC8_S_SCALES]);
    }
    free(first);
    return st;
}
