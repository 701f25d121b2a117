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

// 11-bit fields through a bit accumulator; the final partial byte keeps zero high bits.
static void split_f16(const uint8_t *src, uint64_t n, uint8_t *exps, uint8_t *plane) {
    uint64_t acc = 0;
    uint32_t bits = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        exps[i] = (uint8_t)((h >> 10) & 0x1fu);
        acc |= (uint64_t)(((h >> 5) & 0x400u) | (h & 0x3ffu)) << bits;
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

// Reads exactly the plane bytes that hold bits [first*11, (first+n)*11): never past the plane.
static void join_f16(const uint8_t *exps, const uint8_t *plane, uint64_t first, uint64_t n,
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
        uint32_t v = (uint32_t)acc & 0x7ffu;
        acc >>= 11;
        bits -= 11;
        uint16_t h = (uint16_t)(((v & 0x400u) << 5) | ((uint32_t)(exps[i] & 0x1fu) << 10) |
                                (v & 0x3ffu));
        memcpy(dst + 2 * i, &h, 2);
    }
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
