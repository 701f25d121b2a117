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

// ---- bf16 and f16 -------------------------------------------------------------------------------

// Code word of vector v of row r: bf16 24 bits, f16 48 bits.
static uint64_t code_word(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t r,
                          uint64_t v, int f16) {
    const uint64_t i = r * lay->nvec + v;
    if (f16)
        return cllm_load_le32(buf + lay->off[CLLM_CC16_S_CODELO] + 4 * i) |
               (uint64_t)cllm_load_le16(buf + lay->off[CLLM_CC16_S_CODEHI] + 2 * i) << 32;
    return cllm_load_le16(buf + lay->off[CLLM_CC16_S_CODELO] + 2 * i) |
           (uint32_t)buf[lay->off[CLLM_CC16_S_CODEHI] + i] << 16;
}

// Weight p's exponent code in a code word.
static uint32_t code_at(uint64_t word, uint32_t p, int f16) {
    return f16 ? (uint32_t)(word >> (6 * p + 3)) & 7u : (uint32_t)(word >> (3 * p)) & 7u;
}

// The weight from its byte b, exponent ex and (f16) mantissa bits 7..9 m3.
static uint16_t b16_value(uint32_t b, uint32_t ex, uint32_t m3, int f16) {
    return (uint16_t)((b & 0x80u) << 8 | (f16 ? ex << 10 | m3 << 7 : ex << 7) | (b & 0x7fu));
}

// Decodes group g of row r (columns [256 g, min(256 g + 256, cols))): exponent = base + code,
// then the group's entries [e0, e1) patch theirs (strictly increasing columns inside the matrix,
// each on a code 0, each giving an exponent outside the window: the code is canonical).
static cllm_status b16_group(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t cols,
                             uint64_t r, uint64_t g, uint32_t base, const uint8_t *exc,
                             uint64_t e0, uint64_t e1, uint16_t *out, int f16) {
    const uint8_t *bytes = buf + lay->off[CLLM_CC16_S_BYTES] + r * lay->nvec * 8;
    const uint64_t v_end = g * 32 + 32 < lay->nvec ? g * 32 + 32 : lay->nvec;
    uint16_t *o = out + r * cols;
    for (uint64_t v = g * 32; v < v_end; v++) {
        const uint64_t word = code_word(buf, lay, r, v, f16);
        for (uint32_t p = 0; p < CLLM_CC16_VEC && v * CLLM_CC16_VEC + p < cols; p++) {
            const uint64_t c = v * CLLM_CC16_VEC + p;
            const uint32_t b = bytes[c], ex = base + code_at(word, p, f16);
            o[c] = b16_value(b, ex, (uint32_t)(word >> (6 * p)) & 7u, f16);
        }
    }
    int64_t last = -1;
    for (uint64_t e = e0; e < e1; e++) {
        const uint16_t ent = cllm_load_le16(exc + 2 * e);
        const uint64_t c = g * CLLM_CC16_GROUP + (ent & 0xffu);
        const uint32_t ex = base ^ (uint32_t)(ent >> 8);
        RETURN_IF((int64_t)(ent & 0xffu) <= last || c >= cols ||
                      code_at(code_word(buf, lay, r, c / 8, f16), (uint32_t)(c % 8), f16) != 0 ||
                      (ex >= base && ex <= base + 7) || (f16 && ex > 31),
                  CLLM_ERR_CORRUPT,
                  "compute code: row %llu: exception %llu (column %llu) is out of order, outside "
                  "the row, on a non-zero code, inside the window or beyond the exponent field", (unsigned long long)r,
                  (unsigned long long)e, (unsigned long long)c);
        last = ent & 0xffu;
        o[c] = f16 ? (uint16_t)((o[c] & 0x83ffu) | ex << 10) : (uint16_t)((o[c] & 0x807fu) | ex << 7);
    }
    return CLLM_OK;
}

static cllm_status decode_b16(const uint8_t *buf, const cllm_ccode_info *in,
                              const cllm_ccode_layout *lay, uint16_t *out) {
    const int f16 = in->kind == CLLM_CCODE_F16;
    const uint32_t base_max = f16 ? CLLM_CCF16_BASE_MAX : CLLM_CC16_BASE_MAX;
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
        RETURN_IF(base > base_max, CLLM_ERR_CORRUPT,
                  "compute code: row %llu: base exponent %u above %u", (unsigned long long)r,
                  base, base_max);
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
            TRY(b16_group(buf, lay, in->cols, r, g, base, exc, r0 + g0, r0 + g1, out, f16));
        }
    }
    return CLLM_OK;
}

// ---- int8 ---------------------------------------------------------------------------------------

// The low 6 bits of value j (0..15) of half h of lane l in a block.
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
                const uint32_t ext = low | (low & 32u ? 0xc0u : 0u);  // sign-extended
                const int x = (int8_t)(uint8_t)(ext ^ ((e >> (2 * j)) & 3u) << 6);
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
        return decode_b16(buf, &in, &lay, out);
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
