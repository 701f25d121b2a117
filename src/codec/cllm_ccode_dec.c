// Decoder of the in-VRAM compute code (layout: cllm_ccode.h, docs/FORMAT.md). The buffer is
// untrusted: the header is checked, the layout's total must equal the buffer size, and every
// exception offset and entry is checked before it is used. Exactly what the fused kernels compute,
// in plain C: the specification they are tested against (through the raw kernels, bit for bit).
#include "cllm_ccode.h"

#include "../common/cllm_common.h"

#include <string.h>

cllm_status cllm_ccode_read_info(const uint8_t *buf, size_t n, cllm_ccode_info *info,
                                 cllm_ccode_layout *lay) {
    RETURN_IF(!buf || !info || !lay, CLLM_ERR_ARG, "ccode_read_info: NULL argument");
    RETURN_IF(n < CLLM_CCODE_HEADER_BYTES, CLLM_ERR_FORMAT,
              "compute code: %zu bytes, shorter than the header", n);
    RETURN_IF(cllm_load_le32(buf) != CLLM_CCODE_MAGIC, CLLM_ERR_FORMAT, "compute code: bad magic");
    RETURN_IF(cllm_load_le16(buf + 4) != CLLM_CCODE_VERSION, CLLM_ERR_FORMAT,
              "compute code: version %u (expected %u)", cllm_load_le16(buf + 4),
              CLLM_CCODE_VERSION);
    info->kind = cllm_load_le16(buf + 6);
    info->group_size = cllm_load_le32(buf + 8);
    info->rows = cllm_load_le64(buf + 16);
    info->cols = cllm_load_le64(buf + 24);
    info->n_exc = cllm_load_le64(buf + 32);
    int zero = cllm_load_le32(buf + 12) == 0;
    for (int i = 40; i < (int)CLLM_CCODE_HEADER_BYTES; i++) zero &= buf[i] == 0;
    RETURN_IF(!zero, CLLM_ERR_FORMAT, "compute code: reserved header bytes are not zero");
    RETURN_IF(info->kind != CLLM_CCODE_BF16 && info->kind != CLLM_CCODE_INT8 &&
                  info->kind != CLLM_CCODE_F16, CLLM_ERR_FORMAT,
              "compute code: unknown kind %u", info->kind);
    RETURN_IF(cllm_ccode_layout_of(info, lay) != 0, CLLM_ERR_FORMAT,
              "compute code: bad shape %llu x %llu, group %u, %llu exceptions",
              (unsigned long long)info->rows, (unsigned long long)info->cols, info->group_size,
              (unsigned long long)info->n_exc);
    RETURN_IF(lay->total != n, CLLM_ERR_FORMAT,
              "compute code: %zu bytes where the header describes %llu", n,
              (unsigned long long)lay->total);
    return CLLM_OK;
}

// ---- bf16 (MMA operand order) -------------------------------------------------------------------

// Decodes (tile t, chunk ch) whose entries are [e0, e0 + tot) (checked to lie in the list) split
// into blocks by counts n[4]: exponent = base + code, then each block's entries (strictly
// increasing slot, each on a code 0, each giving an exponent outside its row's window) patch
// theirs. Padding rows must decode to 0 (the code is canonical).
static cllm_status bf16_chunk(const uint8_t *buf, const cllm_ccode_info *in,
                              const cllm_ccode_layout *lay, uint64_t t, uint64_t ch, uint64_t e0,
                              const uint32_t n[4], uint16_t *out) {
    const uint64_t ck = t * lay->nch + ch;
    const uint8_t *bytes = buf + lay->off[CLLM_CCB_S_BYTES] + ck * CLLM_CCB_BYTES;
    const uint8_t *cw = buf + lay->off[CLLM_CCB_S_CODEW] + ck * 32 * 8;
    const uint8_t *c2 = buf + lay->off[CLLM_CCB_S_CODE2] + ck * 32 * 4;
    const uint8_t *base = buf + lay->off[CLLM_CCB_S_BASE] + t * 16;
    const uint8_t *exc = buf + lay->off[CLLM_CCB_S_EXC];
    uint16_t v[32][16][2];  // this chunk's weights, [lane][pair][half]
    for (uint32_t l = 0; l < 32; l++) {
        const uint32_t w0 = cllm_load_le32(cw + 8 * l), w1 = cllm_load_le32(cw + 8 * l + 4);
        const uint32_t w2 = cllm_load_le32(c2 + 4 * l);
        for (uint32_t p = 0; p < 16; p++) {
            const uint32_t codes = cllm_ccb_codes(w0, w1, w2, p), b = p >> 2, j = p & 3u;
            for (uint32_t h = 0; h < 2; h++) {
                const uint32_t by = bytes[512 * (b / 2) + 16 * l + 8 * (b % 2) + 2 * j + h];
                const uint32_t ex = base[cllm_ccb_row(l, p)] + (codes >> (16 * h) & 7u);
                v[l][p][h] = (uint16_t)((by & 0x80u) << 8 | ex << 7 | (by & 0x7fu));
            }
        }
    }
    uint64_t e = e0;
    for (uint32_t b = 0; b < 4; b++) {
        int32_t last = -1;
        for (uint32_t k = 0; k < n[b]; k++, e++) {
            const uint16_t ent = cllm_load_le16(exc + 2 * e);
            const uint32_t sl = ent & 0xffu, ex = ent >> 8, l = sl >> 3, j = (sl >> 1) & 3u;
            const uint32_t p = 4 * b + j, h = sl & 1u, bs = base[cllm_ccb_row(l, p)];
            const uint32_t w0 = cllm_load_le32(cw + 8 * l), w1 = cllm_load_le32(cw + 8 * l + 4);
            const uint32_t code = cllm_ccb_codes(w0, w1, cllm_load_le32(c2 + 4 * l), p) >> (16 * h) & 7u;
            RETURN_IF((int32_t)sl <= last || code != 0 || (ex >= bs && ex <= bs + 7),
                      CLLM_ERR_CORRUPT,
                      "compute code: tile %llu chunk %llu: exception %llu (block %u, slot %u) is "
                      "out of order, on a non-zero code or inside its row's window",
                      (unsigned long long)t, (unsigned long long)ch, (unsigned long long)e, b, sl);
            last = (int32_t)sl;
            v[l][p][h] = (uint16_t)((v[l][p][h] & 0x807fu) | ex << 7);
        }
    }
    for (uint32_t l = 0; l < 32; l++)
        for (uint32_t p = 0; p < 16; p++)
            for (uint32_t h = 0; h < 2; h++) {
                const uint64_t r = t * 16 + cllm_ccb_row(l, p), c = ch * 64 + cllm_ccb_col(l, p, h);
                if (r < in->rows) out[r * in->cols + c] = v[l][p][h];
                else
                    RETURN_IF(v[l][p][h] != 0, CLLM_ERR_CORRUPT,
                              "compute code: tile %llu chunk %llu: padding row %llu holds 0x%04x",
                              (unsigned long long)t, (unsigned long long)ch,
                              (unsigned long long)r, v[l][p][h]);
            }
    return CLLM_OK;
}

static cllm_status decode_bf16(const uint8_t *buf, const cllm_ccode_info *in,
                               const cllm_ccode_layout *lay, uint16_t *out) {
    const uint8_t *first = buf + lay->off[CLLM_CCB_S_FIRST];
    const uint8_t *counts = buf + lay->off[CLLM_CCB_S_COUNTS];
    const uint8_t *base = buf + lay->off[CLLM_CCB_S_BASE];
    const uint64_t nck = lay->ntiles * lay->nch;
    RETURN_IF(cllm_load_le32(first) != 0 || cllm_load_le32(first + 4 * nck) != in->n_exc,
              CLLM_ERR_CORRUPT, "compute code: the chunks' first entries do not span the list");
    for (uint64_t r = 0; r < lay->ntiles * 16; r++)
        RETURN_IF(base[r] > (r < in->rows ? CLLM_CC16_BASE_MAX : 0u), CLLM_ERR_CORRUPT,
                  "compute code: row %llu: base exponent %u above %u", (unsigned long long)r,
                  base[r], r < in->rows ? CLLM_CC16_BASE_MAX : 0u);
    for (uint64_t k = 0; k < nck; k++) {
        const uint64_t e0 = cllm_load_le32(first + 4 * k), e1 = cllm_load_le32(first + 4 * k + 4);
        const uint32_t cn = cllm_load_le32(counts + 4 * k);
        uint32_t n[4] = {cn & 511u, cn >> 9 & 511u, cn >> 18 & 511u, 0};
        const uint64_t lead = (uint64_t)n[0] + n[1] + n[2];
        RETURN_IF(e1 < e0 || e1 > in->n_exc || e1 - e0 > 1024 || cn >> 27 || lead > e1 - e0 ||
                      n[0] > 256 || n[1] > 256 || n[2] > 256 || e1 - e0 - lead > 256,
                  CLLM_ERR_CORRUPT,
                  "compute code: chunk %llu: entries [%llu, %llu) with block counts 0x%08x do not "
                  "fit its blocks", (unsigned long long)k, (unsigned long long)e0,
                  (unsigned long long)e1, cn);
        n[3] = (uint32_t)(e1 - e0 - lead);
        TRY(bf16_chunk(buf, in, lay, k / lay->nch, k % lay->nch, e0, n, out));
    }
    return CLLM_OK;
}

// ---- f16 (row-major vectors) --------------------------------------------------------------------

// Code word of vector v of row r: 48 bits.
static uint64_t code_word(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t r,
                          uint64_t v) {
    const uint64_t i = r * lay->nvec + v;
    return cllm_load_le32(buf + lay->off[CLLM_CC16_S_CODELO] + 4 * i) |
           (uint64_t)cllm_load_le16(buf + lay->off[CLLM_CC16_S_CODEHI] + 2 * i) << 32;
}

// Weight p's exponent code in a code word.
static uint32_t code_at(uint64_t word, uint32_t p) { return (uint32_t)(word >> (6 * p + 3)) & 7u; }

// Decodes group g of row r (columns [256 g, min(256 g + 256, cols))): exponent = base + code,
// then the group's entries [e0, e1) patch theirs (strictly increasing columns inside the matrix,
// each on a code 0, each giving an exponent outside the window: the code is canonical).
static cllm_status f16_group(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t cols,
                             uint64_t r, uint64_t g, uint32_t base, const uint8_t *exc,
                             uint64_t e0, uint64_t e1, uint16_t *out) {
    const uint8_t *bytes = buf + lay->off[CLLM_CC16_S_BYTES] + r * lay->nvec * 8;
    const uint64_t v_end = g * 32 + 32 < lay->nvec ? g * 32 + 32 : lay->nvec;
    uint16_t *o = out + r * cols;
    for (uint64_t v = g * 32; v < v_end; v++) {
        const uint64_t word = code_word(buf, lay, r, v);
        for (uint32_t p = 0; p < CLLM_CC16_VEC && v * CLLM_CC16_VEC + p < cols; p++) {
            const uint64_t c = v * CLLM_CC16_VEC + p;
            const uint32_t b = bytes[c], ex = base + code_at(word, p);
            o[c] = (uint16_t)((b & 0x80u) << 8 | ex << 10 | ((uint32_t)(word >> (6 * p)) & 7u) << 7 |
                              (b & 0x7fu));
        }
    }
    int64_t last = -1;
    for (uint64_t e = e0; e < e1; e++) {
        const uint16_t ent = cllm_load_le16(exc + 2 * e);
        const uint64_t c = g * CLLM_CC16_GROUP + (ent & 0xffu);
        const uint32_t ex = base ^ (uint32_t)(ent >> 8);
        RETURN_IF((int64_t)(ent & 0xffu) <= last || c >= cols ||
                      code_at(code_word(buf, lay, r, c / 8), (uint32_t)(c % 8)) != 0 ||
                      (ex >= base && ex <= base + 7) || ex > 31,
                  CLLM_ERR_CORRUPT,
                  "compute code: row %llu: exception %llu (column %llu) is out of order, outside "
                  "the row, on a non-zero code, inside the window or beyond the exponent field", (unsigned long long)r,
                  (unsigned long long)e, (unsigned long long)c);
        last = ent & 0xffu;
        o[c] = (uint16_t)((o[c] & 0x83ffu) | ex << 10);
    }
    return CLLM_OK;
}

static cllm_status decode_f16(const uint8_t *buf, const cllm_ccode_info *in,
                              const cllm_ccode_layout *lay, uint16_t *out) {
    const uint8_t *rowexc = buf + lay->off[CLLM_CC16_S_ROWEXC];
    const uint8_t *exc = buf + lay->off[CLLM_CC16_S_EXC];
    RETURN_IF(cllm_load_le32(rowexc) != 0 || cllm_load_le32(rowexc + 4 * in->rows) != in->n_exc,
              CLLM_ERR_CORRUPT, "compute code: row exception table does not span the list");
    for (uint64_t r = 0; r < in->rows; r++) {
        const uint64_t r0 = cllm_load_le32(rowexc + 4 * r), r1 = cllm_load_le32(rowexc + 4 * r + 4);
        RETURN_IF(r1 < r0 || r1 > in->n_exc, CLLM_ERR_CORRUPT,
                  "compute code: row %llu: exception range [%llu, %llu) outside [0, %llu)",
                  (unsigned long long)r, (unsigned long long)r0, (unsigned long long)r1,
                  (unsigned long long)in->n_exc);
        const uint32_t base = buf[lay->off[CLLM_CC16_S_BASE] + r];
        RETURN_IF(base > CLLM_CCF16_BASE_MAX, CLLM_ERR_CORRUPT,
                  "compute code: row %llu: base exponent %u above %u", (unsigned long long)r,
                  base, CLLM_CCF16_BASE_MAX);
        const uint8_t *goff = buf + lay->off[CLLM_CC16_S_GOFF] + r * (lay->ngroups + 1) * 2;
        RETURN_IF(cllm_load_le16(goff) != 0 ||
                      cllm_load_le16(goff + 2 * lay->ngroups) != r1 - r0,
                  CLLM_ERR_CORRUPT, "compute code: row %llu: group offsets do not span its %llu "
                  "exceptions", (unsigned long long)r, (unsigned long long)(r1 - r0));
        for (uint64_t g = 0; g < lay->ngroups; g++) {
            const uint64_t g0 = cllm_load_le16(goff + 2 * g), g1 = cllm_load_le16(goff + 2 * g + 2);
            RETURN_IF(g1 < g0 || g1 > r1 - r0, CLLM_ERR_CORRUPT,
                      "compute code: row %llu: group offsets run backwards at group %llu",
                      (unsigned long long)r, (unsigned long long)g);
            TRY(f16_group(buf, lay, in->cols, r, g, base, exc, r0 + g0, r0 + g1, out));
        }
    }
    return CLLM_OK;
}

// ---- int8 ---------------------------------------------------------------------------------------

// The stored 6 bits of value j (0..15) of half h of lane l in a block: (q + 32) mod 64.
static uint32_t int8_low6(const uint8_t *nib, const uint8_t *hi, uint32_t l, uint32_t h,
                          uint32_t j) {
    const uint32_t i = j % 4, k = j / 4;  // byte i of word k
    const uint8_t n = nib[l * 16 + h * 8 + (k / 2) * 4 + i];
    const uint32_t lo4 = k % 2 ? n >> 4 : n & 15u;
    const uint32_t hi2 = (hi[l * 8 + h * 4 + i] >> (2 * k)) & 3u;
    return lo4 | hi2 << 4;
}

// Decodes (tile t, chunk ch) whose flagged vectors' side entries start at `first` (entries
// [first, first + flags) were checked to lie in the list). A flagged vector must hold a value
// outside [-32, 31] (the code is canonical). Bit 4 (l % 8) + v of word l / 8: lane l's vector v.
static cllm_status int8_block(const uint8_t *buf, const cllm_ccode_info *in,
                              const cllm_ccode_layout *lay, uint64_t t, uint64_t ch,
                              uint64_t first, int8_t *q) {
    const uint64_t blk = t * lay->nch + ch;
    const uint8_t *nib = buf + lay->off[CLLM_CC8_S_NIB] + blk * CLLM_CC8_NIB_BYTES;
    const uint8_t *hi = buf + lay->off[CLLM_CC8_S_HI] + blk * CLLM_CC8_HI_BYTES;
    const uint8_t *flags = buf + lay->off[CLLM_CC8_S_FLAGS] + blk * CLLM_CC8_FLAG_BYTES;
    const uint8_t *side = buf + lay->off[CLLM_CC8_S_XHI] + first * 2;
    for (uint32_t l = 0; l < 32; l++)
        for (uint32_t v = 0; v < 4; v++) {
            const uint32_t h = v / 2;
            const int flagged = (cllm_load_le32(flags + 8 * (l / 8)) >> (4 * (l % 8) + v)) & 1;
            const uint32_t e = flagged ? cllm_load_le16(side) : 0;
            side += flagged ? 2 : 0;
            int fits = 1;
            for (uint32_t j = 0; j < 8; j++) {
                const uint32_t jj = 8 * (v % 2) + j, low = int8_low6(nib, hi, l, h, jj);
                const uint32_t u = (low + 96) ^ ((e >> cllm_cc8_side_bit(j)) & 3u) << 6;  // q + 128
                const int x = (int)u - 128;
                fits &= x >= -32 && x <= 31;
                const uint64_t r = t * 16 + l / 4 + 8 * h, c = ch * 64 + 16 * (l % 4) + jj;
                if (r < in->rows && c < in->cols) q[r * in->cols + c] = (int8_t)x;
                else if (x != 0)
                    return CLLM_FAIL(CLLM_ERR_CORRUPT,
                                     "compute code: tile %llu chunk %llu: padding value %d at "
                                     "row %llu column %llu", (unsigned long long)t,
                                     (unsigned long long)ch, x, (unsigned long long)r,
                                     (unsigned long long)c);
            }
            RETURN_IF(flagged && fits, CLLM_ERR_CORRUPT,
                      "compute code: tile %llu chunk %llu: lane %u vector %u is flagged but "
                      "fits 6 bits", (unsigned long long)t, (unsigned long long)ch, l, v);
        }
    return CLLM_OK;
}

static uint32_t popcount32(uint32_t b) {
    uint32_t n = 0;
    for (; b; b &= b - 1) n++;
    return n;
}

static cllm_status decode_int8(const uint8_t *buf, const cllm_ccode_info *in,
                               const cllm_ccode_layout *lay, int8_t *q, float *scales) {
    const uint8_t *fl = buf + lay->off[CLLM_CC8_S_FLAGS];
    const uint64_t nb = lay->ntiles * lay->nch, np = 4 * nb;  // pairs before the last
    RETURN_IF(cllm_load_le32(fl + 8 * np) != 0 || cllm_load_le32(fl + 8 * np + 4) != in->n_exc,
              CLLM_ERR_CORRUPT, "compute code: the last flag pair is not (0, %llu)",
              (unsigned long long)in->n_exc);
    // Each pair's first entry is the previous pair's plus its flags; pair 0's is 0.
    uint64_t at = 0;
    for (uint64_t p = 0; p < np; p++) {
        RETURN_IF(cllm_load_le32(fl + 8 * p + 4) != at, CLLM_ERR_CORRUPT,
                  "compute code: flag pair %llu: first side entry %u where %llu come before it",
                  (unsigned long long)p, cllm_load_le32(fl + 8 * p + 4), (unsigned long long)at);
        at += popcount32(cllm_load_le32(fl + 8 * p));
    }
    RETURN_IF(at != in->n_exc, CLLM_ERR_CORRUPT,
              "compute code: %llu flagged vectors for %llu side entries", (unsigned long long)at,
              (unsigned long long)in->n_exc);
    for (uint64_t b = 0; b < nb; b++)
        TRY(int8_block(buf, in, lay, b / lay->nch, b % lay->nch, cllm_load_le32(fl + 32 * b + 4),
                       q));
    if (lay->size[CLLM_CC8_S_SCALES])
        memcpy(scales, buf + lay->off[CLLM_CC8_S_SCALES], (size_t)lay->size[CLLM_CC8_S_SCALES]);
    return CLLM_OK;
}

cllm_status cllm_ccode_decode(const uint8_t *buf, size_t n, void *out, size_t out_cap,
                              float *scales, size_t scales_cap) {
    cllm_ccode_info in;
    cllm_ccode_layout lay;
    TRY(cllm_ccode_read_info(buf, n, &in, &lay));
    const uint64_t elems = in.rows * in.cols;  // < 2^62 by the layout check
    if (in.kind == CLLM_CCODE_BF16 || in.kind == CLLM_CCODE_F16) {
        RETURN_IF(elems > out_cap / 2 || (elems && !out), CLLM_ERR_ARG,
                  "compute code: output of %zu bytes for %llu %s values", out_cap,
                  (unsigned long long)elems, in.kind == CLLM_CCODE_F16 ? "f16" : "bf16");
        return in.kind == CLLM_CCODE_F16 ? decode_f16(buf, &in, &lay, out)
                                         : decode_bf16(buf, &in, &lay, out);
    }
    RETURN_IF(elems > out_cap || (elems && !out), CLLM_ERR_ARG,
              "compute code: output of %zu bytes for %llu int8 values", out_cap,
              (unsigned long long)elems);
    RETURN_IF(lay.size[CLLM_CC8_S_SCALES] > scales_cap ||
                  (lay.size[CLLM_CC8_S_SCALES] && !scales),
              CLLM_ERR_ARG, "compute code: %zu bytes for %llu bytes of scales", scales_cap,
              (unsigned long long)lay.size[CLLM_CC8_S_SCALES]);
    return decode_int8(buf, &in, &lay, out, scales);
}
