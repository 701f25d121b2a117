// GGML tensor types: layouts and float32 dequantizers, bit-identical to gguf-py's reference.
//
// Precision contract: the reference computes every step in float32 (numpy float32 arrays, no
// float64 intermediates) as `scale * q` or `scale * q +/- min`, e.g. Q4_K: (d * sc) * q - dmin * m.
// Every product there is exact in float32: an fp16 significand (at most 2047) times a sub-block
// scale times a quant or level stays below 2^24 (the largest: Q6_K 2047*128*32, IQ4_XS
// 2047*32*127), and MXFP4's scale is a power of two. So the only rounding is the final add or
// subtract, and the results depend neither on the order of the products nor on a fused
// multiply-add nor on excess precision (x87's 64-bit significand rounds that one exact sum
// twice, which is harmless for 64 >= 2*24 + 2). A NaN or infinite scale gives NaN where the
// reference does; the formulas keep the reference's order, so built with GCC on x86 even the NaN
// bits match (an fp16 NaN scale's payload survives), but C, like IEEE 754, leaves a NaN result's
// sign and payload open, and clang does flip the sign of some.
#include "gguf_quant.h"

#include "../common/cllm_half.h"

#include <string.h>

#define QK_K 256

// Converts `n_blocks` whole blocks starting at src (n_blocks * block_bytes bytes) into dst.
typedef void (*ggml_deq_fn)(const uint8_t *src, float *dst, uint64_t n_blocks);

typedef struct ggml_type_info {
    const char *name; // NULL: id unknown
    uint32_t block_elems;
    uint32_t block_bytes;
    ggml_deq_fn deq; // NULL: known layout, no dequantizer
} ggml_type_info;

static inline float f16_at(const uint8_t *p) { return cllm_f16_to_f32(cllm_load_le16(p)); }

// ---- plain floats ------------------------------------------------------------------------------

static void deq_f32(const uint8_t *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = cllm_bits_to_f32(cllm_load_le32(src + 4 * i));
}

// numpy's float16 -> float32 keeps NaN payloads (signalling ones too), as cllm_f16_to_f32 does.
static void deq_f16(const uint8_t *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = f16_at(src + 2 * i);
}

static void deq_bf16(const uint8_t *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = cllm_bf16_to_f32(cllm_load_le16(src + 2 * i));
}

// ---- 32-element blocks -------------------------------------------------------------------------
// Element j < 16 takes the low nibble of qs[j], element j + 16 the high nibble of qs[j].

static void deq_q4_0(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 18, dst += 32) {
        const float d = f16_at(src);
        const uint8_t *qs = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((qs[j] & 0xf) - 8);
            dst[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

static void deq_q4_1(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 20, dst += 32) {
        const float d = f16_at(src), m = f16_at(src + 2);
        const uint8_t *qs = src + 4;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)(qs[j] & 0xf) + m;
            dst[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

// Q5: bit j of the little-endian u32 qh is bit 4 of element j.
static void deq_q5_0(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 22, dst += 32) {
        const float d = f16_at(src);
        const uint32_t qh = cllm_load_le32(src + 2);
        const uint8_t *qs = src + 6;
        for (int j = 0; j < 16; j++) {
            int lo = (int)((qs[j] & 0xf) | (((qh >> j) & 1u) << 4));
            int hi = (int)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
            dst[j] = d * (float)(lo - 16);
            dst[j + 16] = d * (float)(hi - 16);
        }
    }
}

static void deq_q5_1(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 24, dst += 32) {
        const float d = f16_at(src), m = f16_at(src + 2);
        const uint32_t qh = cllm_load_le32(src + 4);
        const uint8_t *qs = src + 8;
        for (int j = 0; j < 16; j++) {
            uint32_t lo = (qs[j] & 0xfu) | (((qh >> j) & 1u) << 4);
            uint32_t hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4);
            dst[j] = d * (float)lo + m;
            dst[j + 16] = d * (float)hi + m;
        }
    }
}

static void deq_q8_0(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 34, dst += 32) {
        const float d = f16_at(src);
        for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)src[2 + j] * d;
    }
}

// The 16 non-uniform levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl).
static const int8_t k_iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

static void deq_iq4_nl(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 18, dst += 32) {
        const float d = f16_at(src);
        const uint8_t *qs = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)k_iq4nl_levels[qs[j] & 0xf];
            dst[j + 16] = d * (float)k_iq4nl_levels[qs[j] >> 4];
        }
    }
}

// MXFP4: one E8M0 exponent byte e, then 16 bytes of E2M1 codes. The reference's scale is half of
// 2^(e-127) (its levels are doubled): bits (e-1) << 23, or a subnormal for e < 2.
static void deq_mxfp4(const uint8_t *src, float *dst, uint64_t n_blocks) {
    static const int8_t levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    for (uint64_t b = 0; b < n_blocks; b++, src += 17, dst += 32) {
        const uint32_t e = src[0];
        const float d = cllm_bits_to_f32(e < 2 ? 0x00200000u << e : (e - 1) << 23);
        const uint8_t *qs = src + 1;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)levels[qs[j] & 0xf];
            dst[j + 16] = d * (float)levels[qs[j] >> 4];
        }
    }
}

// ---- K-quants (256-element super-blocks) -------------------------------------------------------

// Q2_K: element e = 128*h + 32*s + i holds bits 2s..2s+1 of qs[32h + i]; scales[e / 16] holds
// the sub-block's scale (low nibble, times d) and min (high nibble, times dmin).
static void deq_q2_k(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 84, dst += QK_K) {
        const uint8_t *scales = src, *qs = src + 16;
        const float d = f16_at(src + 80), dmin = f16_at(src + 82);
        for (int g = 0; g < 16; g++) {  // sub-block g: e = 16g + i, so h = g/8, s = (g%8)/2
            const float dl = d * (float)(scales[g] & 0xf), ml = dmin * (float)(scales[g] >> 4);
            const uint8_t *q = qs + 32 * (g / 8) + 16 * (g % 2);
            const int shift = 2 * ((g % 8) / 2);
            for (int i = 0; i < 16; i++) dst[16 * g + i] = dl * (float)((q[i] >> shift) & 3) - ml;
        }
    }
}

// Q3_K's 16 six-bit scales: the low 4 bits of scale k are nibble k/8 of byte k%8, the high 2
// bits are bits 2*(k/4).. of byte 8 + k%4. Stored with an offset of 32.
static void q3_k_scales(const uint8_t *sc12, int scales[16]) {
    for (int k = 0; k < 16; k++) {
        int lo = (sc12[k % 8] >> (4 * (k / 8))) & 0xf;
        int hi = (sc12[8 + k % 4] >> (2 * (k / 4))) & 3;
        scales[k] = (lo | (hi << 4)) - 32;
    }
}

// Q3_K: element e = 128*h + 32*s + i: bits 2s..2s+1 of qs[32h + i], minus 4 unless bit e/32 of
// hmask[i] is set.
static void deq_q3_k(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 110, dst += QK_K) {
        const float d = f16_at(src + 108);
        int scales[16];
        q3_k_scales(src + 96, scales);
        for (int g = 0; g < 16; g++) {  // sub-block g: e = 16g + i
            const float dl = d * (float)scales[g];
            const uint8_t *hm = src + 16 * (g % 2), *q = src + 32 + 32 * (g / 8) + 16 * (g % 2);
            const int shift = 2 * ((g % 8) / 2), bit = g / 2;
            for (int i = 0; i < 16; i++) {
                int v = ((q[i] >> shift) & 3) - (((hm[i] >> bit) & 1) ? 0 : 4);
                dst[16 * g + i] = dl * (float)v;
            }
        }
    }
}

// Q4_K/Q5_K's 8 six-bit scales and mins from 12 bytes: sub-blocks 0..3 use the low 6 bits of
// bytes k (scale) and 4+k (min); 4..7 take their low 4 bits from byte 8+k-4 (scale: low nibble,
// min: high nibble) and their high 2 bits from the top bits of bytes k-4 and k.
static void k_scale_min(const uint8_t *s12, uint8_t sc[8], uint8_t mn[8]) {
    for (int k = 0; k < 4; k++) {
        sc[k] = s12[k] & 63;
        mn[k] = s12[4 + k] & 63;
        sc[4 + k] = (uint8_t)((s12[8 + k] & 0xf) | ((s12[k] >> 2) & 0x30));
        mn[4 + k] = (uint8_t)((s12[8 + k] >> 4) | ((s12[4 + k] >> 2) & 0x30));
    }
}

// Q4_K: element e = 64*p + 32*s + i is nibble s of qs[32p + i]; sub-block e/32.
static void deq_q4_k(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 144, dst += QK_K) {
        const float d = f16_at(src), dmin = f16_at(src + 2);
        const uint8_t *qs = src + 16;
        uint8_t sc[8], mn[8];
        k_scale_min(src + 4, sc, mn);
        for (int sb = 0; sb < 8; sb++) {
            const float dl = d * (float)sc[sb], ml = dmin * (float)mn[sb];
            const uint8_t *q = qs + 32 * (sb / 2);
            const int shift = 4 * (sb % 2);
            float *y = dst + 32 * sb;
            for (int i = 0; i < 32; i++) y[i] = dl * (float)((q[i] >> shift) & 0xf) - ml;
        }
    }
}

// Q5_K: Q4_K's layout plus bit e/32 of qh[i] (i = e % 32) as bit 4.
static void deq_q5_k(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 176, dst += QK_K) {
        const float d = f16_at(src), dmin = f16_at(src + 2);
        const uint8_t *qh = src + 16, *qs = src + 48;
        uint8_t sc[8], mn[8];
        k_scale_min(src + 4, sc, mn);
        for (int sb = 0; sb < 8; sb++) {
            const float dl = d * (float)sc[sb], ml = dmin * (float)mn[sb];
            const uint8_t *q = qs + 32 * (sb / 2);
            const int shift = 4 * (sb % 2);
            float *y = dst + 32 * sb;
            for (int i = 0; i < 32; i++) {
                int v = ((q[i] >> shift) & 0xf) | (((qh[i] >> sb) & 1) << 4);
                y[i] = dl * (float)v - ml;
            }
        }
    }
}

// Q6_K: element e = 128*h + 64*s + i (i < 64) has nibble s of ql[64h + i] as bits 0..3 and bits
// 2t..2t+1 of qh[32h + e%32] (t = (e%128)/32) as bits 4..5; minus 32; int8 scale e/16.
static void deq_q6_k(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 210, dst += QK_K) {
        const int8_t *scales = (const int8_t *)(src + 192);
        const float d = f16_at(src + 208);
        for (int g = 0; g < 16; g++) {  // sub-block g: e = 16g + i, e%128 = 16(g%8) + i
            const float dl = d * (float)scales[g];
            const uint8_t *ql = src + 64 * (g / 8) + 16 * (g % 4);
            const uint8_t *qh = src + 128 + 32 * (g / 8) + 16 * (g % 2);
            const int lshift = 4 * ((g % 8) / 4), hshift = 2 * ((g % 8) / 2);
            for (int i = 0; i < 16; i++) {
                int v = ((ql[i] >> lshift) & 0xf) | (((qh[i] >> hshift) & 3) << 4);
                dst[16 * g + i] = dl * (float)(v - 32);
            }
        }
    }
}

// IQ4_XS: fp16 d, u16 scales_h, u8 scales_l[4], qs[128]. Sub-block j (32 elements) has the
// 6-bit scale nibble (j%2) of scales_l[j/2] | bits 2j..2j+1 of scales_h << 4, offset 32; its
// elements are the low then the high nibbles of qs[16j .. 16j+16) mapped through the IQ4 levels.
static void deq_iq4_xs(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 136, dst += QK_K) {
        const float d = f16_at(src);
        const uint32_t scales_h = cllm_load_le16(src + 2);
        const uint8_t *scales_l = src + 4, *qs = src + 8;
        for (int j = 0; j < 8; j++) {
            int lo = (scales_l[j / 2] >> (4 * (j % 2))) & 0xf;
            int ls = lo | (int)(((scales_h >> (2 * j)) & 3u) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t *q = qs + 16 * j;
            float *y = dst + 32 * j;
            for (int i = 0; i < 16; i++) {
                y[i] = dl * (float)k_iq4nl_levels[q[i] & 0xf];
                y[i + 16] = dl * (float)k_iq4nl_levels[q[i] >> 4];
            }
        }
    }
}

// ---- ternary -----------------------------------------------------------------------------------

// TQ1_0 packs 5 (qs) or 4 (qh) base-3 digits per byte as a fixed-point fraction: digit p of byte
// x is ((uint8)(x * 3^p) * 3) >> 8. Elements: digit p of qs[i] (i < 32) is element 32p + i,
// of qs[32 + i] (i < 16) element 160 + 16p + i, of qh[i] (i < 4) element 240 + 4p + i.
static int tq1_digit(uint8_t x, int p) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t v = (uint8_t)(x * pow3[p]);
    return ((v * 3) >> 8) - 1;
}

static void deq_tq1_0(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 54, dst += QK_K) {
        const uint8_t *qs = src, *qh = src + 48;
        const float d = f16_at(src + 52);
        for (int p = 0; p < 5; p++) {
            for (int i = 0; i < 32; i++) dst[32 * p + i] = d * (float)tq1_digit(qs[i], p);
            for (int i = 0; i < 16; i++)
                dst[160 + 16 * p + i] = d * (float)tq1_digit(qs[32 + i], p);
        }
        for (int p = 0; p < 4; p++)
            for (int i = 0; i < 4; i++) dst[240 + 4 * p + i] = d * (float)tq1_digit(qh[i], p);
    }
}

// TQ2_0: element 128h + 32s + i is bits 2s..2s+1 of qs[32h + i], minus 1.
static void deq_tq2_0(const uint8_t *src, float *dst, uint64_t n_blocks) {
    for (uint64_t b = 0; b < n_blocks; b++, src += 66, dst += QK_K) {
        const float d = f16_at(src + 64);
        for (int g = 0; g < 8; g++) {  // g = 4h + s
            const uint8_t *q = src + 32 * (g / 4);
            const int shift = 2 * (g % 4);
            for (int i = 0; i < 32; i++) dst[32 * g + i] = d * (float)(((q[i] >> shift) & 3) - 1);
        }
    }
}

// ---- the type table ----------------------------------------------------------------------------

// Indexed by id. Layouts as in gguf-py's GGML_QUANT_SIZES, except Q8_1 (ggml's own 36 bytes).
static const ggml_type_info k_types[CLLM_GGML_TYPE_LIMIT_] = {
    [CLLM_GGML_F32] = {"F32", 1, 4, deq_f32},
    [CLLM_GGML_F16] = {"F16", 1, 2, deq_f16},
    [CLLM_GGML_Q4_0] = {"Q4_0", 32, 18, deq_q4_0},
    [CLLM_GGML_Q4_1] = {"Q4_1", 32, 20, deq_q4_1},
    [CLLM_GGML_Q5_0] = {"Q5_0", 32, 22, deq_q5_0},
    [CLLM_GGML_Q5_1] = {"Q5_1", 32, 24, deq_q5_1},
    [CLLM_GGML_Q8_0] = {"Q8_0", 32, 34, deq_q8_0},
    [CLLM_GGML_Q8_1] = {"Q8_1", 32, 36, NULL},
    [CLLM_GGML_Q2_K] = {"Q2_K", QK_K, 84, deq_q2_k},
    [CLLM_GGML_Q3_K] = {"Q3_K", QK_K, 110, deq_q3_k},
    [CLLM_GGML_Q4_K] = {"Q4_K", QK_K, 144, deq_q4_k},
    [CLLM_GGML_Q5_K] = {"Q5_K", QK_K, 176, deq_q5_k},
    [CLLM_GGML_Q6_K] = {"Q6_K", QK_K, 210, deq_q6_k},
    [CLLM_GGML_Q8_K] = {"Q8_K", QK_K, 292, NULL},
    [CLLM_GGML_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, NULL},
    [CLLM_GGML_IQ2_XS] = {"IQ2_XS", QK_K, 74, NULL},
    [CLLM_GGML_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, NULL},
    [CLLM_GGML_IQ1_S] = {"IQ1_S", QK_K, 50, NULL},
    [CLLM_GGML_IQ4_NL] = {"IQ4_NL", 32, 18, deq_iq4_nl},
    [CLLM_GGML_IQ3_S] = {"IQ3_S", QK_K, 110, NULL},
    [CLLM_GGML_IQ2_S] = {"IQ2_S", QK_K, 82, NULL},
    [CLLM_GGML_IQ4_XS] = {"IQ4_XS", QK_K, 136, deq_iq4_xs},
    [CLLM_GGML_I8] = {"I8", 1, 1, NULL},
    [CLLM_GGML_I16] = {"I16", 1, 2, NULL},
    [CLLM_GGML_I32] = {"I32", 1, 4, NULL},
    [CLLM_GGML_I64] = {"I64", 1, 8, NULL},
    [CLLM_GGML_F64] = {"F64", 1, 8, NULL},
    [CLLM_GGML_IQ1_M] = {"IQ1_M", QK_K, 56, NULL},
    [CLLM_GGML_BF16] = {"BF16", 1, 2, deq_bf16},
    [CLLM_GGML_TQ1_0] = {"TQ1_0", QK_K, 54, deq_tq1_0},
    [CLLM_GGML_TQ2_0] = {"TQ2_0", QK_K, 66, deq_tq2_0},
    [CLLM_GGML_MXFP4] = {"MXFP4", 32, 17, deq_mxfp4},
    [CLLM_GGML_NVFP4] = {"NVFP4", 64, 36, NULL},
    [CLLM_GGML_Q1_0] = {"Q1_0", 128, 18, NULL},
};

static const ggml_type_info *type_info(uint32_t type) {
    if (type >= CLLM_GGML_TYPE_LIMIT_ || !k_types[type].name) return NULL;
    return &k_types[type];
}

const char *cllm_ggml_type_name(uint32_t type) {
    const ggml_type_info *t = type_info(type);
    return t ? t->name : NULL;
}

int cllm_ggml_type_layout(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes) {
    const ggml_type_info *t = type_info(type);
    if (!t) return 0;
    if (block_elems) *block_elems = t->block_elems;
    if (block_bytes) *block_bytes = t->block_bytes;
    return 1;
}

int cllm_ggml_can_dequantize(uint32_t type) {
    const ggml_type_info *t = type_info(type);
    return t && t->deq;
}

cllm_status cllm_ggml_row_bytes(uint32_t type, uint64_t n, size_t *bytes) {
    const ggml_type_info *t = type_info(type);
    RETURN_IF(!t, CLLM_ERR_UNSUPPORTED, "unknown GGML tensor type %u", type);
    RETURN_IF(n % t->block_elems != 0, CLLM_ERR_CORRUPT,
              "%s: %llu elements is not a multiple of the block size %u", t->name,
              (unsigned long long)n, t->block_elems);
    uint64_t total;
    RETURN_IF(cllm_mul_overflow_u64(n / t->block_elems, t->block_bytes, &total) ||
                  total > SIZE_MAX,
              CLLM_ERR_CORRUPT, "%s: %llu elements overflow the byte count", t->name,
              (unsigned long long)n);
    *bytes = (size_t)total;
    return CLLM_OK;
}

cllm_status cllm_ggml_dequantize(uint32_t type, const uint8_t *src, size_t src_size, float *dst,
                                 uint64_t n) {
    const ggml_type_info *t = type_info(type);
    RETURN_IF(!t, CLLM_ERR_UNSUPPORTED, "unknown GGML tensor type %u", type);
    RETURN_IF(!t->deq, CLLM_ERR_UNSUPPORTED, "GGML tensor type %s cannot be dequantized",
              t->name);
    size_t want = 0;
    TRY(cllm_ggml_row_bytes(type, n, &want));
    RETURN_IF(src_size != want, CLLM_ERR_CORRUPT, "%s: %llu elements take %zu bytes, got %zu",
              t->name, (unsigned long long)n, want, src_size);
    if (n == 0) return CLLM_OK;
    RETURN_IF(!src || !dst, CLLM_ERR_ARG, "%s: NULL buffer", t->name);
    t->deq(src, dst, n / t->block_elems);
    return CLLM_OK;
}
