// The in-VRAM compute code: weights kept compressed in GPU memory in a layout a matvec decodes in
// a few integer instructions per weight (no serial chain), so the fused kernels read it directly.
// rANS stays the file/transport code; the compute code is made from decoded weights at load time.
// The encoder (cllm_ccode_enc.c) and the decoder (cllm_ccode_dec.c) are the specification; the
// layout is documented byte for byte in docs/FORMAT.md ("in-VRAM compute code").
//
// A buffer is a 64-byte header followed by sections, each starting at a multiple of 16 bytes
// from the buffer start. The section offsets depend only on (kind, rows, cols, group_size): the
// exception list is last. This header compiles as C11 and under nvcc (the kernels use
// cllm_ccode_layout_of to find the sections).
//
// BF16 (lossless), version 4: the weights in the order the tensor-core matvec feeds them to its
// m16n8k16 MMAs, so that a lane decodes its own operand registers. A tile is 16 rows (rows past the
// matrix are padding: weight 0, base 0), cut into chunks of 64 columns, each four MMA blocks of 16
// columns. Lane l = 4 g + q of a warp holds, per chunk, 32 weights as 16 register pairs p = 4 b + j
// (block b, register j of the A fragment, half h): row g + 8 (j & 1), column
// col(b) + 2 (j >> 1) + h, where col(b) = 8 q + 4 b for b < 2 and 32 + 8 q + 4 (b - 2) otherwise
// (so lane q holds columns 8q..8q+7 and 32+8q..32+8q+7 of both its rows: the raw bf16 kernel loads
// them as two 16-byte runs per row, and x's fragments follow the same columns). Per weight:
//   a byte, sign << 7 | mantissa bits 0..6 (bytes plane: per chunk two runs of 32 lanes x 16
//   bytes, pair p's halves at byte 512 (b / 2) + 16 l + 8 (b % 2) + 2 j + h);
//   a 3-bit code, exponent = base[row] + code, in three code words per chunk and lane: pair p < 15
//   at bits 3 (p % 5) (h = 0) and 16 + 3 (p % 5) (h = 1) of word p / 5; pair 15's codes bit i at
//   bits 15 and 31 of word i (one shift and one AND give a pair's two codes 16 bits apart);
//   a weight whose exponent lies outside [base, base + 7] has code 0 and an exception entry
//   s | exponent << 8, s = 8 l + 2 j + h (the weight's place in its block: lane, register, half,
//   the fused kernel's table index), sorted by block, then s; per chunk the index of its first
//   entry (first[], one more at the end: n_exc) and the entry counts of its blocks 0..2 (9 bits
//   each; block 3 has the rest). (Version 3 had pos = row * 16 + k slot in the entry.)
// F16 (lossless), row-major vectors: a lane of the matvec owns 8 consecutive weights ("a vector"):
// each weight is a byte b = h bit 15 << 7 | h bits 0..6 (bytes plane) and a code; 32 vectors (256
// weights) form a group, the unit of exception lookup. It has a 5-bit exponent (h bits 10..14) and
// three more mantissa bits per weight. The byte is again h bit 15 << 7 | h bits 0..6; each weight has a 6-bit field,
// h bits 7..9 then its 3-bit code (exponent = base + code, base <= 24), so a vector's fields form
// a 48-bit word (field p at bits 6p..6p+5), stored as a 32-bit low part (codelo) and a 16-bit high
// part (codehi). An exception entry is pos | delta << 8 (pos = column % 256, delta = true exponent
// XOR base), sorted by column within a row. The kernels rebuild h as a bf16-like
// word: sign and low bits from the byte, then field << 7 plus base << 10 (the exponent << 10 for an
// exception), and convert h with the raw f16 kernels' conversion.
//
// INT8: the per-channel int8 symbols q of 16-row tiles x 64-column chunks (the int8 tensor-core
// matvec's unit). Lane l of a warp feeds the MMAs 32 values of a block (rows g and g + 8 of the
// tile, l = 4 g + k, 16 columns from 16 k each), four vectors of 8. Every value's v = (q + 32) mod
// 64 sits in two planes (low 4 bits, bits 4-5) arranged so that the lane gets its 32 with two
// loads. A vector whose 8 values all lie in [-32, 31] needs nothing more (q = v - 32, rebuilt as
// the byte (v + 96) XOR 0x80: no sign extension); any other vector is flagged in the block's
// 128-bit mask and has a 16-bit side entry whose bits 4i, 4i + 1 correct value i's bits 6-7 and
// bits 4i + 2, 4i + 3 value i + 4's (XOR; i < 4: nibble i serves byte i of both words). The mask
// is stored as four (32-bit word, index of the word's first side entry) pairs, so that lane l
// loads pair l / 8 and finds its entries at that index plus the flags below its bits. No
// exceptions: every value is read where it is loaded.
#ifndef CLLM_CCODE_H
#define CLLM_CCODE_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define CLLM_CCODE_HD __host__ __device__ static inline
extern "C" {
#else
#define CLLM_CCODE_HD static inline
#endif

#define CLLM_CCODE_MAGIC 0x43434c43u  // "CLCC" little-endian
#define CLLM_CCODE_VERSION 6u  // 6: int8 stores (q + 32) mod 64 (5: int8 side entries by nibble)
#define CLLM_CCODE_HEADER_BYTES 64u

typedef enum cllm_ccode_kind {
    CLLM_CCODE_BF16 = 1,  // lossless bf16
    CLLM_CCODE_INT8 = 2,  // int8 symbols + fp32 scales
    CLLM_CCODE_F16 = 3,   // lossless fp16
} cllm_ccode_kind;

// BF16 geometry.
#define CLLM_CCB_CHUNK 64        // columns per chunk (cols must be a multiple)
#define CLLM_CCB_BYTES 1024      // bytes plane per (tile, chunk)
// F16 geometry.
#define CLLM_CC16_VEC 8          // weights per vector (one lane's share of a warp step)
#define CLLM_CC16_GROUP 256      // weights per group (32 vectors: one warp step)
#define CLLM_CC16_BASE_MAX 248u  // base + 7 <= 255: base + code never carries into the sign
#define CLLM_CCF16_BASE_MAX 24u  // f16: base + 7 <= 31
// INT8 geometry.
#define CLLM_CC8_TILE_ROWS 16
#define CLLM_CC8_CHUNK 64        // columns per chunk
#define CLLM_CC8_NIB_BYTES 512   // nibble plane bytes per (tile, chunk)
#define CLLM_CC8_HI_BYTES 256    // high-bit plane bytes per (tile, chunk)
#define CLLM_CC8_FLAG_BYTES 32   // flag pairs per (tile, chunk): 4 x (u32 word, u32 first entry);
                                 // word w bit 4 (l % 8) + v: lane l = 8 w + .. 's vector v (v: 0, 1
                                 // row g columns 0-7, 8-15 of the lane's 16; 2, 3 row g + 8)

// Sections, in buffer order.
enum {
    // BF16
    CLLM_CCB_S_BYTES = 0,   // (ntiles, nch, 2, 32 lanes, 16) bytes: sign << 7 | mantissa bits 0..6
    CLLM_CCB_S_CODEW,       // (ntiles, nch, 32 lanes) 2 x uint32: code words 0 and 1
    CLLM_CCB_S_CODE2,       // (ntiles, nch, 32 lanes) uint32: code word 2
    CLLM_CCB_S_BASE,        // (ntiles * 16) uint8: exponent of code 0 (<= CLLM_CC16_BASE_MAX;
                            // padding rows 0)
    CLLM_CCB_S_FIRST,       // (ntiles * nch + 1) uint32: first entry of each chunk; last = n_exc
    CLLM_CCB_S_COUNTS,      // (ntiles * nch) uint32: entries of blocks 0, 1, 2 at bits 0, 9, 18
    CLLM_CCB_S_EXC,         // (n_exc) uint16: slot | exponent << 8
    CLLM_CCB_N_SECTIONS,
    // F16
    CLLM_CC16_S_BYTES = 0,  // (rows, nvec, 8) bytes: sign << 7 | mantissa bits 0..6
    CLLM_CC16_S_CODELO,     // (rows, nvec) uint32: bits 0..31 of the vector's 48-bit code word
    CLLM_CC16_S_CODEHI,     // (rows, nvec) uint16: bits 32..47
    CLLM_CC16_S_BASE,       // (rows) uint8: exponent of code 0, <= CLLM_CCF16_BASE_MAX
    CLLM_CC16_S_ROWEXC,     // (rows + 1) uint32: first exception of each row; last = n_exc
    CLLM_CC16_S_GOFF,       // (rows, ngroups + 1) uint16: row-relative first exception per group
    CLLM_CC16_S_EXC,        // (n_exc) uint16: pos | delta << 8 (pos = column % 256, delta =
                            // true exponent XOR base); sorted by column within a row
    CLLM_CC16_N_SECTIONS,
    // INT8
    CLLM_CC8_S_NIB = 0,     // (ntiles, nch, 512) bytes
    CLLM_CC8_S_HI,          // (ntiles, nch, 256) bytes
    CLLM_CC8_S_SCALES,      // (rows, groups_per_row) float
    CLLM_CC8_S_FLAGS,       // (ntiles * nch * 4 + 1) x (u32 word, u32 first side entry); the last
                            // pair (0, n_exc)
    CLLM_CC8_S_XHI,         // (n_exc) uint16: the flagged vectors' bits 6-7 XOR their sign
                            // extension, in (block, bit) order
    CLLM_CC8_N_SECTIONS,
};
#define CLLM_CCODE_MAX_SECTIONS 7

// Header fields (little-endian): magic u32 @0, version u16 @4, kind u16 @6, group_size u32 @8
// (int8; 0 for bf16), reserved u32 @12 (0), rows u64 @16, cols u64 @24, n_exc u64 @32, zero to 64.
typedef struct cllm_ccode_info {
    uint32_t kind;        // cllm_ccode_kind
    uint32_t group_size;  // int8: columns per scale (1..cols); bf16: 0
    uint64_t rows, cols;
    uint64_t n_exc;       // bf16, f16: exception entries; int8: flagged vectors (side entries)
} cllm_ccode_info;

// Section offsets (from the buffer start, header included) and sizes in bytes.
typedef struct cllm_ccode_layout {
    uint64_t off[CLLM_CCODE_MAX_SECTIONS], size[CLLM_CCODE_MAX_SECTIONS];
    uint64_t total;  // buffer bytes
    uint64_t nvec, ngroups;        // f16: vectors and groups per row
    uint64_t ntiles, nch, gpr;     // bf16, int8: tiles, chunks per row; int8: scale groups per row
    int n_sections;
} cllm_ccode_layout;

// Layout of a buffer described by `in`. Returns 0 on success, -1 when a size overflows 2^62 or a
// field is out of range (unknown kind, zero or oversized group, bf16 cols not a multiple of 64).
// n_exc may be 0 for the offsets of every section but the exception list's size.
CLLM_CCODE_HD int cllm_ccode_layout_of(const cllm_ccode_info *in, cllm_ccode_layout *lay) {
    const uint64_t lim = 1ull << 62, r = in->rows, c = in->cols;
    uint64_t sz[CLLM_CCODE_MAX_SECTIONS] = {0};
    int n = 0;
    if (r >= (1ull << 40) || c >= (1ull << 40) || in->n_exc >= (1ull << 40)) return -1;
    lay->nvec = lay->ngroups = lay->ntiles = lay->nch = lay->gpr = 0;
    if (in->kind == CLLM_CCODE_BF16) {
        if (in->group_size != 0 || c % CLLM_CCB_CHUNK != 0) return -1;  // whole chunks only
        const uint64_t nt = (r + 15) / 16, nc = (c + CLLM_CCB_CHUNK - 1) / CLLM_CCB_CHUNK;
        lay->ntiles = nt, lay->nch = nc;
        if (nt && nc > lim / 2048 / nt) return -1;
        if (in->n_exc > nt * nc * 1024) return -1;  // at most every weight
        sz[0] = nt * nc * CLLM_CCB_BYTES, sz[1] = nt * nc * 32 * 8, sz[2] = nt * nc * 32 * 4;
        sz[3] = nt * 16, sz[4] = (nt * nc + 1) * 4, sz[5] = nt * nc * 4, sz[6] = in->n_exc * 2;
        n = CLLM_CCB_N_SECTIONS;
    } else if (in->kind == CLLM_CCODE_F16) {
        if (in->group_size != 0) return -1;
        const uint64_t nv = (c + CLLM_CC16_VEC - 1) / CLLM_CC16_VEC, ng = (nv + 31) / 32;
        if (r && nv > lim / 16 / r) return -1;
        lay->nvec = nv, lay->ngroups = ng;
        sz[0] = r * nv * 8, sz[1] = r * nv * 4, sz[2] = r * nv * 2, sz[3] = r;
        sz[4] = (r + 1) * 4;
        sz[5] = r * (ng + 1) * 2, sz[6] = in->n_exc * 2;
        n = CLLM_CC16_N_SECTIONS;
    } else if (in->kind == CLLM_CCODE_INT8) {
        if (in->group_size == 0 || (c && in->group_size > c)) return -1;
        const uint64_t nt = (r + 15) / 16, nc = (c + 63) / 64, g = (c + in->group_size - 1) / in->group_size;
        lay->ntiles = nt, lay->nch = nc, lay->gpr = g;
        if (nt && nc > lim / 1024 / nt) return -1;
        if (in->n_exc > nt * nc * 128) return -1;  // at most every vector flagged
        sz[0] = nt * nc * CLLM_CC8_NIB_BYTES, sz[1] = nt * nc * CLLM_CC8_HI_BYTES;
        sz[2] = r * g * 4, sz[3] = (nt * nc * 4 + 1) * 8, sz[4] = in->n_exc * 2;
        n = CLLM_CC8_N_SECTIONS;
    } else {
        return -1;
    }
    uint64_t at = CLLM_CCODE_HEADER_BYTES;
    for (int i = 0; i < n; i++) {
        lay->off[i] = at, lay->size[i] = sz[i];
        at = (at + sz[i] + 15) & ~15ull;
    }
    for (int i = n; i < CLLM_CCODE_MAX_SECTIONS; i++) lay->off[i] = at, lay->size[i] = 0;
    lay->total = at;
    lay->n_sections = n;
    return 0;
}

// Whether the fused kernels take a (rows, cols) matrix of this kind: bf16 with cols % 64 == 0 (the
// tensor-core matvec's chunks); f16 with cols % 8 == 0; int8 with cols % 64 == 0 and one scale per
// row or groups of a multiple of 64 columns. group_size: int8 columns per scale (0 or cols: per row).
CLLM_CCODE_HD int cllm_ccode_takes(uint32_t kind, uint64_t cols, uint32_t group_size) {
    if (kind == CLLM_CCODE_BF16) return cols > 0 && cols % CLLM_CCB_CHUNK == 0;
    if (kind == CLLM_CCODE_F16) return cols > 0 && cols % CLLM_CC16_VEC == 0;
    if (kind != CLLM_CCODE_INT8) return 0;
    return cols > 0 && cols % CLLM_CC8_CHUNK == 0 &&
           (group_size == 0 || group_size == cols || group_size % CLLM_CC8_CHUNK == 0);
}

// ---- bf16: where a lane's weights sit (shared by the encoder, the decoder and the kernels) -------

// Column within its chunk of lane l's pair p (= 4 b + j), half h; its row within the tile.
CLLM_CCODE_HD uint32_t cllm_ccb_col(uint32_t l, uint32_t p, uint32_t h) {
    const uint32_t q = l & 3u, b = p >> 2;
    return (b < 2 ? 8 * q + 4 * b : 32 + 8 * q + 4 * (b - 2)) + 2 * ((p & 3u) >> 1) + h;
}
CLLM_CCODE_HD uint32_t cllm_ccb_row(uint32_t l, uint32_t p) { return l / 4 + 8 * (p & 1u); }
// The weight's entry slot within its block b = p >> 2: 8 l + 2 j + h (< 256).
CLLM_CCODE_HD uint32_t cllm_ccb_slot(uint32_t l, uint32_t p, uint32_t h) {
    return 8 * l + 2 * (p & 3u) + h;
}

// Pair p's two codes from a lane's three code words: half 0 at bits 0..2, half 1 at 16..18.
CLLM_CCODE_HD uint32_t cllm_ccb_codes(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t p) {
    if (p < 15) return ((p < 5 ? w0 : p < 10 ? w1 : w2) >> (3 * (p % 5))) & 0x00070007u;
    return ((w0 >> 15) & 0x00010001u) | ((w1 >> 14) & 0x00020002u) | ((w2 >> 13) & 0x00040004u);
}

// ---- int8: a lane's words, as the fused kernels rebuild them ------------------------------------
//
// The loader of the fused int8 matvec and of its unpack kernel (cllm_cuda_kernels.cu), here so
// that the C tests run the same code: lane l of a warp, block b, from its nibble load (16 bytes at
// nib + 512 b + 16 l as four little-endian words n0..n3), its bit-4-5 load (8 bytes at hi + 256 b
// + 8 l: h0, h1), its flag pair (pairs[4 b + l / 8]: the mask word pw and the word's first side
// entry p0, relative to `side`), gives the values it feeds to the MMAs: a[0..3] row g, a[4..7]
// row g + 8 (word k: values 4k .. 4k + 3 of the lane's 16, byte i = value 4k + i): the int8
// symbols q.

// Correction code c (0..3) to the byte XORed into a value's u = v + 96: (c << 6) ^ 0x80, so that
// one XOR corrects bits 6-7 of q + 128 and turns it into q.
#define CLLM_CC8_TAB 0x4000c080u

CLLM_CCODE_HD uint32_t cllm_cc8_popc(uint32_t x) {
#if defined(__CUDA_ARCH__)
    return __popc(x);
#else
    return (uint32_t)__builtin_popcount(x);
#endif
}

// Word of 4 values from their stored 6 bits v = (q + 32) mod 64 (low nibbles at bits 0..3 of
// each byte of nib, bits 4-5 at bits p, p + 1 of each byte of hs; p is 0, 2, 4 or 6, a constant
// wherever this is inlined): each byte v + 96, which is q + 128 for q in [-32, 31] and agrees with
// q + 128 in bits 0-5 for every q (no carry leaves a byte: v + 96 < 160). Built as (nib & 0x0f..)
// | 0x60.. (v + 96 less bits 4-5) plus bits 4-5 moved by a shift that rides on the add (one IMAD
// or LEA.HI on the GPU; the AND is opaque so that the compiler keeps it where it is).
CLLM_CCODE_HD uint32_t cllm_cc8_word(uint32_t nib, uint32_t hs, uint32_t p) {
    uint32_t hm;
#if defined(__CUDA_ARCH__)
    if (p == 0) asm("and.b32 %0, %1, 0x03030303;" : "=r"(hm) : "r"(hs));
    else if (p == 2) asm("and.b32 %0, %1, 0x0c0c0c0c;" : "=r"(hm) : "r"(hs));
    else if (p == 4) asm("and.b32 %0, %1, 0x30303030;" : "=r"(hm) : "r"(hs));
    else asm("and.b32 %0, %1, 0xc0c0c0c0;" : "=r"(hm) : "r"(hs));
    uint32_t lo;  // one LOP3 (the compiler spends two on the two constants)
    asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(lo) : "r"(nib), "r"(0x0f0f0f0fu), "r"(0x60606060u));
#else
    hm = hs & (0x03030303u << p);
    const uint32_t lo = (nib & 0x0f0f0f0fu) | 0x60606060u;
#endif
    return (p <= 4 ? hm << (4 - p) : hm >> (p - 4)) + lo;
}

// Bit of a side entry where value j (< 8) of its vector has its correction (two bits).
CLLM_CCODE_HD uint32_t cllm_cc8_side_bit(uint32_t j) { return j < 4 ? 4 * j : 4 * (j - 4) + 2; }

// The XOR word for 4 values from a side entry's corrections at bits 4i, 4i + 1 (i < 4; the other
// bits 0): byte i = byte c_i of CLLM_CC8_TAB. On the GPU one byte permute.
CLLM_CCODE_HD uint32_t cllm_cc8_fix(uint32_t sel) {
#if defined(__CUDA_ARCH__)
    return __byte_perm(CLLM_CC8_TAB, 0u, sel);
#else
    uint32_t r = 0;
    for (int i = 0; i < 4; i++)
        r |= (CLLM_CC8_TAB >> (8 * ((sel >> (4 * i)) & 3u)) & 0xffu) << (8 * i);
    return r;
#endif
}

// A side entry holds, for each of its vector's 8 values, the XOR of bits 6-7 of q + 128 with
// those of v + 96 (0 for a value in [-32, 31]): an unflagged vector is a zero entry, and every
// vector is rebuilt the same way, branch-free (one predicated load per vector).
CLLM_CCODE_HD void cllm_cc8_lane(uint32_t n0, uint32_t n1, uint32_t n2, uint32_t n3, uint32_t h0,
                                 uint32_t h1, uint32_t pw, uint32_t p0, const uint16_t *side,
                                 uint32_t lane, uint32_t a[8]) {
    a[0] = cllm_cc8_word(n0, h0, 0), a[1] = cllm_cc8_word(n0 >> 4, h0, 2);
    a[2] = cllm_cc8_word(n1, h0, 4), a[3] = cllm_cc8_word(n1 >> 4, h0, 6);
    a[4] = cllm_cc8_word(n2, h1, 0), a[5] = cllm_cc8_word(n2 >> 4, h1, 2);
    a[6] = cllm_cc8_word(n3, h1, 4), a[7] = cllm_cc8_word(n3 >> 4, h1, 6);
    const uint32_t sh = 4 * (lane & 7), mine = (pw >> sh) & 15u;
    uint32_t i = p0 + cllm_cc8_popc(pw & ((1u << sh) - 1u));  // vector v: words 2v, 2v + 1
    for (int v = 0; v < 4; v++) {
        const uint32_t f = (mine >> v) & 1u, e = f ? side[i] : 0u;
        i += f;
        a[2 * v] ^= cllm_cc8_fix(e & 0x3333u), a[2 * v + 1] ^= cllm_cc8_fix(e >> 2 & 0x3333u);
    }
}

// The two XOR words of side entry e, as cllm_cc8_lane applies them to its vector's words 2 v and
// 2 v + 1 (a zero entry, an unflagged vector, gives CLLM_CC8_X0 twice).
#define CLLM_CC8_X0 0x80808080u
CLLM_CCODE_HD void cllm_cc8_xor(uint32_t e, uint32_t x[2]) {
    x[0] = cllm_cc8_fix(e & 0x3333u), x[1] = cllm_cc8_fix(e >> 2 & 0x3333u);
}

// cllm_cc8_lane with the side entries staged as XOR words (the fused kernels' form when a tile's
// list fits in shared memory): tab (8-byte aligned) holds CLLM_CC8_X0 at [0] and [1] and, for
// entry k of the list that p0 indexes, cllm_cc8_xor(side[k]) at [2 k + 2] and [2 k + 3]. The
// same words: one 8-byte load and two XORs per vector, no branch.
CLLM_CCODE_HD void cllm_cc8_lane_tab(uint32_t n0, uint32_t n1, uint32_t n2, uint32_t n3,
                                     uint32_t h0, uint32_t h1, uint32_t pw, uint32_t p0,
                                     const uint32_t *tab, uint32_t lane, uint32_t a[8]) {
    a[0] = cllm_cc8_word(n0, h0, 0), a[1] = cllm_cc8_word(n0 >> 4, h0, 2);
    a[2] = cllm_cc8_word(n1, h0, 4), a[3] = cllm_cc8_word(n1 >> 4, h0, 6);
    a[4] = cllm_cc8_word(n2, h1, 0), a[5] = cllm_cc8_word(n2 >> 4, h1, 2);
    a[6] = cllm_cc8_word(n3, h1, 4), a[7] = cllm_cc8_word(n3 >> 4, h1, 6);
    const uint32_t sh = 4 * (lane & 7), mine = (pw >> sh) & 15u;
    uint32_t i = 1 + p0 + cllm_cc8_popc(pw & ((1u << sh) - 1u));  // vector v: words 2v, 2v + 1
    for (int v = 0; v < 4; v++) {
        const uint32_t f = (mine >> v) & 1u, k = f ? i : 0u;
#if defined(__CUDA_ARCH__)
        const uint2 x = ((const uint2 *)tab)[k];
        a[2 * v] ^= x.x, a[2 * v + 1] ^= x.y;
#else
        a[2 * v] ^= tab[2 * k], a[2 * v + 1] ^= tab[2 * k + 1];
#endif
        i += f;
    }
}

// ---- one weight at a time (the embedding lookup, cllm_cuda_kernels.cu) ---------------------------
//
// Weight (r, c) of a buffer the encoder made (trusted, as the fused kernels trust theirs: no
// checks; r < rows, c < cols), sections found through `lay` (cllm_ccode_layout_of, any n_exc),
// as the raw kind's value: bf16 or f16 bits, or the int8 symbol q. A weight on a code 0 looks its
// exception up (binary search in its block's, or group's, sorted entries). The C tests compare
// every weight with cllm_ccode_decode.

// Little-endian 16- and 32-bit loads at offsets that are multiples of 2 and 4 in the buffer.
CLLM_CCODE_HD uint32_t cllm_cc_ld16(const uint8_t *p) {
#if defined(__CUDA_ARCH__)
    return *(const uint16_t *)p;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
#endif
}
CLLM_CCODE_HD uint32_t cllm_cc_ld32(const uint8_t *p) {
#if defined(__CUDA_ARCH__)
    return *(const uint32_t *)p;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#endif
}

// Index in [lo, hi) of the sorted entry whose low byte is `key`, or hi when none is.
CLLM_CCODE_HD uint64_t cllm_cc_find(const uint8_t *exc, uint64_t lo, uint64_t hi, uint32_t key) {
    uint64_t a = lo, b = hi;
    while (a < b) {
        const uint64_t m = a + (b - a) / 2;
        const uint32_t k = cllm_cc_ld16(exc + 2 * m) & 0xffu;
        if (k == key) return m;
        if (k < key) a = m + 1;
        else b = m;
    }
    return hi;
}

CLLM_CCODE_HD uint32_t cllm_ccb_at(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t r,
                                   uint64_t c) {
    const uint64_t t = r / 16, ck = t * lay->nch + c / 64;
    const uint32_t rr = (uint32_t)(r % 16), w = (uint32_t)(c % 32), in8 = w % 8;
    // The lane, pair and half holding it (the inverse of cllm_ccb_row / cllm_ccb_col).
    const uint32_t b = 2 * (uint32_t)(c % 64 / 32) + in8 / 4, j = 2 * (in8 % 4 / 2) + rr / 8;
    const uint32_t h = in8 % 2, l = 4 * (rr % 8) + w / 8, p = 4 * b + j;
    const uint32_t by = buf[lay->off[CLLM_CCB_S_BYTES] + ck * CLLM_CCB_BYTES + 512 * (b / 2) +
                            16 * l + 8 * (b % 2) + 2 * j + h];
    const uint8_t *cw = buf + lay->off[CLLM_CCB_S_CODEW] + ck * 256 + 8 * l;
    const uint32_t code = cllm_ccb_codes(cllm_cc_ld32(cw), cllm_cc_ld32(cw + 4),
                                         cllm_cc_ld32(buf + lay->off[CLLM_CCB_S_CODE2] + ck * 128 + 4 * l),
                                         p) >> (16 * h) & 7u;
    uint32_t ex = buf[lay->off[CLLM_CCB_S_BASE] + r] + code;
    if (code == 0) {
        const uint8_t *first = buf + lay->off[CLLM_CCB_S_FIRST] + 4 * ck;
        const uint32_t cn = cllm_cc_ld32(buf + lay->off[CLLM_CCB_S_COUNTS] + 4 * ck);
        uint64_t lo = cllm_cc_ld32(first);
        for (uint32_t k = 0; k < b; k++) lo += cn >> (9 * k) & 511u;
        const uint64_t hi = b < 3 ? lo + (cn >> (9 * b) & 511u) : cllm_cc_ld32(first + 4);
        const uint8_t *exc = buf + lay->off[CLLM_CCB_S_EXC];
        const uint64_t e = cllm_cc_find(exc, lo, hi, 8 * l + 2 * j + h);
        if (e < hi) ex = cllm_cc_ld16(exc + 2 * e) >> 8;
    }
    return (by & 0x80u) << 8 | ex << 7 | (by & 0x7fu);
}

CLLM_CCODE_HD uint32_t cllm_cc16_at(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t r,
                                    uint64_t c) {
    const uint64_t i = r * lay->nvec + c / 8;
    const uint32_t p = (uint32_t)(c % 8), by = buf[lay->off[CLLM_CC16_S_BYTES] + r * lay->nvec * 8 + c];
    const uint64_t word = cllm_cc_ld32(buf + lay->off[CLLM_CC16_S_CODELO] + 4 * i) |
                          (uint64_t)cllm_cc_ld16(buf + lay->off[CLLM_CC16_S_CODEHI] + 2 * i) << 32;
    const uint32_t base = buf[lay->off[CLLM_CC16_S_BASE] + r], code = (uint32_t)(word >> (6 * p + 3)) & 7u;
    uint32_t ex = base + code;
    if (code == 0) {
        const uint8_t *go = buf + lay->off[CLLM_CC16_S_GOFF] + (r * (lay->ngroups + 1) + c / 256) * 2;
        const uint64_t r0 = cllm_cc_ld32(buf + lay->off[CLLM_CC16_S_ROWEXC] + 4 * r);
        const uint64_t lo = r0 + cllm_cc_ld16(go), hi = r0 + cllm_cc_ld16(go + 2);
        const uint8_t *exc = buf + lay->off[CLLM_CC16_S_EXC];
        const uint64_t e = cllm_cc_find(exc, lo, hi, (uint32_t)(c % 256));
        if (e < hi) ex = base ^ cllm_cc_ld16(exc + 2 * e) >> 8;
    }
    return (by & 0x80u) << 8 | ex << 10 | ((uint32_t)(word >> (6 * p)) & 7u) << 7 | (by & 0x7fu);
}

CLLM_CCODE_HD int32_t cllm_cc8_at(const uint8_t *buf, const cllm_ccode_layout *lay, uint64_t r,
                                  uint64_t c) {
    const uint64_t blk = r / 16 * lay->nch + c / 64;
    const uint32_t rr = (uint32_t)(r % 16), h = rr / 8, cc = (uint32_t)(c % 64);
    const uint32_t l = 4 * (rr % 8) + cc / 16, jj = cc % 16, i = jj % 4, k = jj / 4;
    const uint32_t n = buf[lay->off[CLLM_CC8_S_NIB] + blk * CLLM_CC8_NIB_BYTES + 16 * l + 8 * h +
                           4 * (k / 2) + i];
    const uint32_t hs = buf[lay->off[CLLM_CC8_S_HI] + blk * CLLM_CC8_HI_BYTES + 8 * l + 4 * h + i];
    uint32_t u = ((k % 2 ? n >> 4 : n & 15u) | (hs >> (2 * k) & 3u) << 4) + 96;  // v + 96
    const uint8_t *pair = buf + lay->off[CLLM_CC8_S_FLAGS] + blk * CLLM_CC8_FLAG_BYTES + 8 * (l / 8);
    const uint32_t pw = cllm_cc_ld32(pair), bit = 4 * (l % 8) + 2 * h + jj / 8;
    if (pw >> bit & 1u) {
        const uint64_t e = cllm_cc_ld32(pair + 4) + cllm_cc8_popc(pw & ((1u << bit) - 1u));
        const uint32_t side = cllm_cc_ld16(buf + lay->off[CLLM_CC8_S_XHI] + 2 * e);
        u ^= (side >> cllm_cc8_side_bit(jj % 8) & 3u) << 6;
    }
    return (int32_t)u - 128;
}

// ---- encoder (cllm_ccode_enc.c) -----------------------------------------------------------------

// Encodes a (rows, cols) row-major bf16 matrix (any bit patterns: NaN, infinities, subnormals,
// zeros become exceptions when outside a row's 8-exponent window). *out: a malloc'd buffer of
// *out_bytes (the caller frees it). Uses up to n_threads OpenMP threads (<= 1: one).
// @return CLLM_OK, CLLM_ERR_ARG, CLLM_ERR_NOMEM, CLLM_ERR_UNSUPPORTED (a row with more than 65535
// exceptions, or a shape beyond the layout's limits).
cllm_status cllm_ccode_encode_bf16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                                   uint8_t **out, size_t *out_bytes);

// The same for a row-major fp16 matrix (kind F16; every bit pattern, subnormals included).
cllm_status cllm_ccode_encode_f16(const uint16_t *w, uint64_t rows, uint64_t cols, int n_threads,
                                  uint8_t **out, size_t *out_bytes);

// Encodes int8 symbols (rows, cols) with their scales (rows, ceil(cols / group_size)), as made by
// cllm_quantize_int8. Same ownership and statuses as cllm_ccode_encode_bf16.
cllm_status cllm_ccode_encode_int8(const int8_t *q, const float *scales, uint64_t rows,
                                   uint64_t cols, uint32_t group_size, int n_threads,
                                   uint8_t **out, size_t *out_bytes);

// ---- decoder (cllm_ccode_dec.c): reads an untrusted buffer ---------------------------------------

// Parses and checks the header of `buf` (n bytes): magic, version, kind, fields, and that the
// layout's total equals n. @return CLLM_OK or CLLM_ERR_FORMAT naming the bad field.
cllm_status cllm_ccode_read_info(const uint8_t *buf, size_t n, cllm_ccode_info *info,
                                 cllm_ccode_layout *lay);

// Decodes a whole buffer after checking every count and offset in it (exception offsets monotone
// and in range, each escape matched by exactly one entry, bases in range). bf16 and f16: out
// receives rows * cols uint16 (out_cap bytes); int8: out receives rows * cols int8 and scales rows *
// groups_per_row floats (scales_cap bytes). @return CLLM_OK, CLLM_ERR_FORMAT / CLLM_ERR_CORRUPT
// naming the first inconsistency, CLLM_ERR_ARG when a capacity is too small.
cllm_status cllm_ccode_decode(const uint8_t *buf, size_t n, void *out, size_t out_cap,
                              float *scales, size_t scales_cap);

#ifdef __cplusplus
}
#endif
#endif
