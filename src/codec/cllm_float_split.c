// Float split of the lossless codec: each element's exponent field becomes a coded symbol, the
// remaining sign+mantissa bits go verbatim into a plane packed LSB-first at bit i * raw_bits
// (cllm_payload.h). Pure bit manipulation, so every pattern (NaN payloads, +-0, +-inf,
// subnormals) survives unchanged.
//
//   bf16: exp = bits 7..14 (8 bits),  plane = sign << 7  | mantissa7   (8 bits, one byte)
//   f16:  exp = bits 10..14 (5 bits), plane = sign << 10 | mantissa10  (11 bits)
//   f32:  exp = bits 23..30 (8 bits), plane = sign << 23 | mantissa23  (24 bits, three bytes)
#include "cllm_codec.h"

#include <string.h>

static void split_bf16(const uint8_t *src, uint64_t n, uint8_t *exps, uint8_t *plane) {
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        exps[i] = (uint8_t)(h >> 7);
        plane[i] = (uint8_t)(((h >> 8) & 0x80u) | (h & 0x7fu));
    }
}

static void split_f32(const uint8_t *src, uint64_t n, uint8_t *exps, uint8_t *plane) {
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + 4 * i, 4);
        exps[i] = (uint8_t)(u >> 23);
        uint32_t v = ((u >> 8) & 0x800000u) | (u & 0x7fffffu);
        plane[3 * i] = (uint8_t)v;
        plane[3 * i + 1] = (uint8_t)(v >> 8);
        plane[3 * i + 2] = (uint8_t)(v >> 16);
    }
}

// Eight f16 fields fill exactly 11 plane bytes (88 bits), so groups of 8 elements are
// byte-aligned and packed with two 64-bit words: bits 0..63 hold fields 0..4 and the low 9 bits
// of field 5, bits 64..87 the rest. Element i's field is (h >> 5 & 0x400) | (h & 0x3ff).
static inline uint32_t f16_field(const uint8_t *src, uint64_t i) {
    uint16_t h;
    memcpy(&h, src + 2 * i, 2);
    return ((h >> 5) & 0x400u) | (h & 0x3ffu);
}

static inline uint8_t f16_exp(const uint8_t *src, uint64_t i) {
    uint16_t h;
    memcpy(&h, src + 2 * i, 2);
    return (uint8_t)((h >> 10) & 0x1fu);
}

// Groups of 8, then the remaining fields through a bit accumulator from the group boundary; the
// final partial byte keeps zero high bits.
static void split_f16(const uint8_t *src, uint64_t n, uint8_t *exps, uint8_t *plane) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8, plane += 11) {
        uint64_t v[8];
        for (int k = 0; k < 8; k++) {
            v[k] = f16_field(src, i + k);
            exps[i + k] = f16_exp(src, i + k);
        }
        cllm_store_le64(plane, v[0] | v[1] << 11 | v[2] << 22 | v[3] << 33 | v[4] << 44 |
                                   v[5] << 55);
        const uint32_t hi = (uint32_t)(v[5] >> 9 | v[6] << 2 | v[7] << 13);  // 24 bits
        plane[8] = (uint8_t)hi, plane[9] = (uint8_t)(hi >> 8), plane[10] = (uint8_t)(hi >> 16);
    }
    uint64_t acc = 0;
    uint32_t bits = 0;
    for (; i < n; i++) {
        exps[i] = f16_exp(src, i);
        acc |= (uint64_t)f16_field(src, i) << bits;
        bits += 11;
        while (bits >= 8) {
            *plane++ = (uint8_t)acc;
            acc >>= 8;
            bits -= 8;
        }
    }
    if (bits) *plane = (uint8_t)acc;
}

void cllm_float_split(const void *src, uint32_t dtype, uint64_t n, uint8_t *exps, uint8_t *plane) {
    switch (dtype) {
    case CLLM_DTYPE_BF16: split_bf16(src, n, exps, plane); break;
    case CLLM_DTYPE_F16: split_f16(src, n, exps, plane); break;
    case CLLM_DTYPE_F32: split_f32(src, n, exps, plane); break;
    default: break;
    }
}

static void join_bf16(const uint8_t *exps, const uint8_t *plane, uint64_t n, uint8_t *dst) {
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b = plane[i];
        uint16_t h = (uint16_t)(((b & 0x80u) << 8) | ((uint32_t)exps[i] << 7) | (b & 0x7fu));
        memcpy(dst + 2 * i, &h, 2);
    }
}

static void join_f32(const uint8_t *exps, const uint8_t *plane, uint64_t n, uint8_t *dst) {
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = plane[3 * i] | ((uint32_t)plane[3 * i + 1] << 8) |
                     ((uint32_t)plane[3 * i + 2] << 16);
        uint32_t u = ((v & 0x800000u) << 8) | ((uint32_t)exps[i] << 23) | (v & 0x7fffffu);
        memcpy(dst + 4 * i, &u, 4);
    }
}

static inline void f16_store(uint8_t *dst, uint8_t exp, uint32_t v) {
    uint16_t h = (uint16_t)(((v & 0x400u) << 5) | ((uint32_t)(exp & 0x1fu) << 10) | (v & 0x3ffu));
    memcpy(dst, &h, 2);
}

// Scalar join through a bit accumulator. Reads exactly the plane bytes that hold bits
// [first*11, (first+n)*11): never past the plane.
static void join_f16_bits(const uint8_t *exps, const uint8_t *plane, uint64_t first, uint64_t n,
                          uint8_t *dst) {
    uint64_t bit = first * 11;
    const uint8_t *p = plane + bit / 8;
    uint32_t skip = (uint32_t)(bit % 8);
    uint64_t acc = 0;
    uint32_t bits = 0;
    if (n && skip) {
        acc = *p++ >> skip;
        bits = 8 - skip;
    }
    for (uint64_t i = 0; i < n; i++) {
        while (bits < 11) {
            acc |= (uint64_t)*p++ << bits;
            bits += 8;
        }
        f16_store(dst + 2 * i, exps[i], (uint32_t)acc & 0x7ffu);
        acc >>= 11;
        bits -= 11;
    }
}

// Elements up to a multiple of 8 one by one, then whole 8-element groups (11 bytes, read as the
// 64-bit words at bytes 0 and 3: fields 0..4 from the first, 5..7 from the second), then the
// rest. Reads only the bytes of the requested elements, like join_f16_bits.
static void join_f16(const uint8_t *exps, const uint8_t *plane, uint64_t first, uint64_t n,
                     uint8_t *dst) {
    uint64_t head = (8 - first % 8) % 8;
    if (head > n) head = n;
    join_f16_bits(exps, plane, first, head, dst);
    uint64_t i = head;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *g = plane + (first + i) / 8 * 11;
        const uint64_t lo = cllm_load_le64(g), hi = cllm_load_le64(g + 3);
        uint8_t *d = dst + 2 * i;
        for (int k = 0; k < 5; k++)
            f16_store(d + 2 * k, exps[i + k], (uint32_t)(lo >> 11 * k) & 0x7ffu);
        for (int k = 5; k < 8; k++)
            f16_store(d + 2 * k, exps[i + k], (uint32_t)(hi >> (11 * k - 24)) & 0x7ffu);
    }
    join_f16_bits(exps + i, plane, first + i, n - i, dst + 2 * i);
}

void cllm_float_join(const uint8_t *exps, const uint8_t *plane, uint32_t dtype, uint64_t first,
                     uint64_t n, void *dst) {
    switch (dtype) {
    case CLLM_DTYPE_BF16: join_bf16(exps, plane + first, n, dst); break;
    case CLLM_DTYPE_F16: join_f16(exps, plane, first, n, dst); break;
    case CLLM_DTYPE_F32: join_f32(exps, plane + 3 * first, n, dst); break;
    default: break;
    }
}
