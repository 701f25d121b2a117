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

// Writes row r of an f16 matrix: bytes, code words, group offsets, exceptions (from index `first`).
static void f16_row(const uint16_t *w, uint64_t cols, uint32_t base, uint64_t r,
                    const cllm_ccode_layout *lay, uint8_t *buf, uint64_t first) {
    uint8_t *bytes = buf + lay->off[CLLM_CC16_S_BYTES] + r * lay->nvec * 8;
    uint8_t *lo = buf + lay->off[CLLM_CC16_S_CODELO] + r * lay->nvec * 4;
    uint8_t *hi = buf + lay->off[CLLM_CC16_S_CODEHI] + r * lay->nvec * 2;
    uint8_t *goff = buf + lay->off[CLLM_CC16_S_GOFF] + r * (lay->ngroups + 1) * 2;
    uint8_t *exc = buf + lay->off[CLLM_CC16_S_EXC] + first * 2;
    uint32_t n = 0;  // exceptions of this row so far
    for (uint64_t v = 0; v < lay->nvec; v++) {
        if (v % 32 == 0) put16(goff + (v / 32) * 2, (uint16_t)n);
        uint64_t word = 0;
        for (uint32_t p = 0; p < CLLM_CC16_VEC; p++) {
            const uint64_t c = v * CLLM_CC16_VEC + p;
            if (c >= cols) break;  // padding: byte 0, field 0
            const uint16_t h = w[c];
            const uint32_t code = code_of(h, base, 1);
            bytes[c] = (uint8_t)(((h >> 8) & 0x80u) | (h & 0x7fu));
            if (code == CLLM_CC16_EXC) {  // code 0 and an entry: exponent = base ^ delta
                const uint32_t delta = exp_of(h, 1) ^ base;
                put16(exc + 2 * n++, (uint16_t)((c % CLLM_CC16_GROUP) | delta << 8));
            }
            const uint32_t field = (code == CLLM_CC16_EXC ? 0 : code) << 3 | ((h >> 7) & 7u);
            word |= (uint64_t)field << (6 * p);  // mantissa bits 7..9, then the code
        }
        put32(lo + 4 * v, (uint32_t)word);
        put16(hi + 2 * v, (uint16_t)(word >> 32));
    }
    put16(goff + lay->ngroups * 2, (uint16_t)n);
}

static cllm_status encode_f16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                              uint8_t **out, size_t *out_bytes) {
    RETURN_IF(!out || !out_bytes || (!w && rows && cols), CLLM_ERR_ARG,
              "ccode_encode_f16: NULL argument");
    *out = NULL, *out_bytes = 0;
    cllm_ccode_info in = {.kind = CLLM_CCODE_F16, .rows = rows, .cols = cols};
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
        base[r] = (uint8_t)row_base(row, cols, 1);
        uint64_t n = 0;
        for (uint64_t c = 0; c < cols; c++) n += code_of(row[c], base[r], 1) == CLLM_CC16_EXC;
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
            f16_row(w + r * cols, cols, base[r], r, &lay, buf, first[r]);
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

// bf16 weight (row, col) or 0 outside the matrix (tile padding).
static uint16_t b16_at(const uint16_t *w, uint64_t rows, uint64_t cols, uint64_t r, uint64_t c) {
    return r < rows && c < cols ? w[r * cols + c] : 0;
}

// Exceptions of each block of (tile t, chunk ch) into n[4].
static void ccb_count(const uint16_t *w, uint64_t rows, uint64_t cols, const uint8_t *base,
                      uint64_t t, uint64_t ch, uint64_t n[4]) {
    n[0] = n[1] = n[2] = n[3] = 0;
    for (uint32_t l = 0; l < 32; l++)
        for (uint32_t p = 0; p < 16; p++)
            for (uint32_t h = 0; h < 2; h++) {
                const uint32_t rt = cllm_ccb_row(l, p);
                const uint16_t v = b16_at(w, rows, cols, t * 16 + rt, ch * 64 + cllm_ccb_col(l, p, h));
                n[p >> 2] += code_of(v, base[t * 16 + rt], 0) == CLLM_CC16_EXC;
            }
}

// Writes (tile t, chunk ch): bytes, code words, and its entries from index `first` on (block by
// block, each sorted by slot).
static void ccb_chunk(const uint16_t *w, uint64_t rows, uint64_t cols, const uint8_t *base,
                      uint64_t t, uint64_t ch, const cllm_ccode_layout *lay, uint8_t *buf,
                      uint64_t first) {
    const uint64_t ck = t * lay->nch + ch;
    uint8_t *bytes = buf + lay->off[CLLM_CCB_S_BYTES] + ck * CLLM_CCB_BYTES;
    uint8_t *cw = buf + lay->off[CLLM_CCB_S_CODEW] + ck * 32 * 8;
    uint8_t *c2 = buf + lay->off[CLLM_CCB_S_CODE2] + ck * 32 * 4;
    uint8_t *exc = buf + lay->off[CLLM_CCB_S_EXC];
    uint16_t ent[4][256];  // per block, indexed by slot (one weight per slot)
    uint8_t has[4][256];
    memset(has, 0, sizeof has);
    uint32_t n[4] = {0, 0, 0, 0};
    for (uint32_t l = 0; l < 32; l++) {
        uint32_t word[3] = {0, 0, 0};
        for (uint32_t p = 0; p < 16; p++)
            for (uint32_t h = 0; h < 2; h++) {
                const uint32_t rt = cllm_ccb_row(l, p), b = p >> 2, j = p & 3u;
                const uint16_t v = b16_at(w, rows, cols, t * 16 + rt, ch * 64 + cllm_ccb_col(l, p, h));
                const uint32_t bs = base[t * 16 + rt], code = code_of(v, bs, 0);
                bytes[512 * (b / 2) + 16 * l + 8 * (b % 2) + 2 * j + h] =
                    (uint8_t)(((v >> 8) & 0x80u) | (v & 0x7fu));
                const uint32_t c = code == CLLM_CC16_EXC ? 0 : code;
                if (code == CLLM_CC16_EXC) {
                    const uint32_t sl = cllm_ccb_slot(l, p, h);
                    ent[b][sl] = (uint16_t)(sl | exp_of(v, 0) << 8), has[b][sl] = 1, n[b]++;
                }
                if (p < 15) word[p / 5] |= c << (3 * (p % 5) + 16 * h);
                else
                    for (uint32_t i = 0; i < 3; i++) word[i] |= (c >> i & 1u) << (15 + 16 * h);
            }
        put32(cw + l * 8, word[0]), put32(cw + l * 8 + 4, word[1]), put32(c2 + l * 4, word[2]);
    }
    uint64_t at = first;
    for (uint32_t b = 0; b < 4; b++)
        for (uint32_t sl = 0; sl < 256; sl++)
            if (has[b][sl]) put16(exc + 2 * at++, ent[b][sl]);
    put32(buf + lay->off[CLLM_CCB_S_COUNTS] + ck * 4, n[0] | n[1] << 9 | n[2] << 18);
}

static cllm_status encode_bf16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                               uint8_t **out, size_t *out_bytes) {
    RETURN_IF(!out || !out_bytes || (!w && rows && cols), CLLM_ERR_ARG,
              "ccode_encode_bf16: NULL argument");
    *out = NULL, *out_bytes = 0;
    RETURN_IF(cols % CLLM_CCB_CHUNK != 0, CLLM_ERR_UNSUPPORTED,
              "compute code: bf16 needs a multiple of %d columns, not %llu", CLLM_CCB_CHUNK,
              (unsigned long long)cols);
    cllm_ccode_info in = {.kind = CLLM_CCODE_BF16, .rows = rows, .cols = cols};
    cllm_ccode_layout lay;
    RETURN_IF(cllm_ccode_layout_of(&in, &lay) != 0 || lay.ntiles > SIZE_MAX / 16,
              CLLM_ERR_UNSUPPORTED, "compute code: a %llu x %llu matrix is beyond the layout's limits",
              (unsigned long long)rows, (unsigned long long)cols);
    const uint64_t nck = lay.ntiles * lay.nch;
    uint8_t *base = calloc(lay.ntiles ? (size_t)lay.ntiles * 16 : 1, 1);  // padding rows: 0
    uint64_t *first = nck < SIZE_MAX / 8 ? malloc(((size_t)nck + 1) * sizeof *first) : NULL;
    cllm_status st = base && first ? CLLM_OK
                                   : CLLM_FAIL(CLLM_ERR_NOMEM, "compute code: tables of %llu chunks",
                                               (unsigned long long)nck);
    const int nt = n_threads > 1 ? n_threads : 1;
    if (st == CLLM_OK) {
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt) if (rows * cols > 65536)
        for (uint64_t r = 0; r < rows; r++) base[r] = (uint8_t)row_base(w + r * cols, cols, 0);
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt) if (nck > 64)
        for (uint64_t k = 0; k < nck; k++) {
            uint64_t n[4];
            ccb_count(w, rows, cols, base, k / lay.nch, k % lay.nch, n);
            first[k + 1] = n[0] + n[1] + n[2] + n[3];
        }
        first[0] = 0;
        for (uint64_t k = 0; k < nck; k++) first[k + 1] += first[k];
        in.n_exc = first[nck];
        st = in.n_exc > 0xffffffffull
                 ? CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "compute code: more than 2^32 - 1 exceptions")
                 : alloc_buffer(&in, &lay, out, out_bytes);
    }
    if (st == CLLM_OK) {
        uint8_t *buf = *out;
        memcpy(buf + lay.off[CLLM_CCB_S_BASE], base, (size_t)lay.ntiles * 16);
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt) if (nck > 64)
        for (uint64_t k = 0; k < nck; k++) {
            put32(buf + lay.off[CLLM_CCB_S_FIRST] + k * 4, (uint32_t)first[k]);
            ccb_chunk(w, rows, cols, base, k / lay.nch, k % lay.nch, &lay, buf, first[k]);
        }
        put32(buf + lay.off[CLLM_CCB_S_FIRST] + nck * 4, (uint32_t)first[nck]);
    }
    free(base), free(first);
    return st;
}

cllm_status cllm_ccode_encode_bf16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                                   uint8_t **out, size_t *out_bytes) {
    return encode_bf16(w, rows, cols, n_threads, out, out_bytes);
}

cllm_status cllm_ccode_encode_f16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                                  uint8_t **out, size_t *out_bytes) {
    return encode_f16(w, rows, cols, n_threads, out, out_bytes);
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

// Writes (tile t, chunk ch): the planes of every value's (q + 32) mod 64, the flag pairs (word w:
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
                v[j] = (uint32_t)(lane_value(q, rows, cols, t, ch, l, h, j) + 32) & 63u;
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
                const int x = lane_value(q, rows, cols, t, ch, l, vv / 2, 8 * (vv % 2) + j);
                const uint32_t u = (uint32_t)(x + 128), w = (uint32_t)(x + 32) & 63u;
                e |= ((u >> 6) ^ ((w + 96) >> 6)) << cllm_cc8_side_bit(j);  // bits 6-7 of the XOR
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
