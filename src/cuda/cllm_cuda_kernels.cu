// Compute kernels for batch-1 decode and small-batch prefill: matvec over bf16/f16/f32/int8
// weights, RMSNorm, SwiGLU, residual add, embedding lookup (RoPE + KV store and attention:
// cllm_cuda_be_kernels.cu). All fp32 arithmetic with fp32 accumulation; each kernel's C reference (the spec) is named
// in cllm_cuda.h.
#include "cllm_cuda_check.h"
#include "cllm_cuda_i8.cuh"

extern "C" {
#include "../codec/cllm_ccode.h"
}

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <type_traits>

#define MV_WARPS 8  // rows per thread block of the matvec (one warp per row)

// ---- programmatic dependent launch (CLLM_CUDA_PDL) -------------------------------------------------
//
// Every kernel here triggers its dependents at entry (they may then be scheduled as soon as all of
// this grid's blocks are resident; they still wait for its completion) and waits, before its first
// access to memory an earlier kernel writes, for the previous grid's completion and memory flush.
// Both are no-ops when the launch had no PDL attribute. The wait is unconditional in every thread
// that reaches memory: a kernel that skipped it could finish before its predecessor, and its own
// dependent would then see the predecessor's writes unfinished.
static __device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// k<<<grid, block, smem, s>>>(args...), through cudaLaunchKernelEx with programmatic stream
// serialisation when flags has CLLM_CUDA_PDL.
template <typename... P, typename... A>
static cudaError_t launch_k(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                            unsigned flags, A &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
    cudaLaunchAttribute attr[1];
    if (flags & CLLM_CUDA_PDL) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr, cfg.numAttrs = 1;
    }
    return cudaLaunchKernelEx(&cfg, k, static_cast<A &&>(args)...);
}

// Launch check of launch_k's result: its own error, else configuration errors (and sticky faults).
#define CLLM_CUDA_CHECK_LAUNCH_EX(err, what)                                                       \
    do {                                                                                           \
        const cudaError_t launch_err_ = (err);                                                     \
        if (launch_err_ != cudaSuccess) {                                                          \
            (void)cudaGetLastError();                                                              \
            return cllm_fail(CLLM_ERR_DEVICE, __FILE__, __LINE__, "launch of %s: %s", (what),     \
                             cudaGetErrorString(launch_err_));                                     \
        }                                                                                          \
        CLLM_CUDA_CHECK_LAUNCH(what);                                                              \
    } while (0)

// ---- element access --------------------------------------------------------------------------------

static __device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
static __device__ __forceinline__ float bf16_hi(uint32_t u) {
    return __uint_as_float(u & 0xffff0000u);
}
static __device__ __forceinline__ float f16_bits(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)h));
}

// w[r][c] as fp32 (int8: times its scale). Any alignment.
static __device__ __forceinline__ float weight_at(const cllm_cuda_weight &w, uint64_t r, uint64_t c) {
    const uint64_t i = r * w.cols + c;
    switch (w.kind) {
    case CLLM_CUDA_W_F32: return __ldg((const float *)w.data + i);
    case CLLM_CUDA_W_F16: return f16_bits(__ldg((const unsigned short *)w.data + i));
    case CLLM_CUDA_W_BF16: return bf16_lo(__ldg((const unsigned short *)w.data + i));
    default: {
        const uint64_t gpr = (w.cols + w.group_size - 1) / w.group_size;
        const float s = __ldg(w.scales + r * gpr + c / w.group_size);
        return (float)((const int8_t *)w.data)[i] * s;
    }
    }
}

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int d = 16; d; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
    return v;
}

// ---- matvec ------------------------------------------------------------------------------------------
//
// Three kernels, one job description. A job is up to CLLM_CUDA_MATVEC_MAX matrices of one kind and
// width sharing x: blocks [block_end[i-1], block_end[i]) compute rows of w[i] into y[i]
// (block_end[-1] = 0), so q/k/v or gate/up run as one launch. In swiglu mode a block reads the
// same rows of w[0] (gate) and w[1] (up) and writes silu(gate x) * (up x) to y[0].
//   matvec_vec_kernel  bf16/f16/f32 (and int8 the mma kernel cannot take): one warp per row,
//                      16-byte loads, 4 in flight per lane and row.
//   matvec_i8_kernel   int8 with cols % 64 == 0 and per-row or 64-multiple groups: integer tensor
//                      cores (mma m16n8k32 s8) against x split into four signed byte digits.
//   matvec_any_kernel  any shape and alignment: one element per lane per step.
//   matvec_b16_kernel  bf16 with cols % 64 == 0: tensor cores (mma m16n8k16 bf16) against x split
//                      into three bf16 parts; raw BF16 and CC_BF16 alike.
// The compute-code kinds (weights compressed in VRAM, src/codec/cllm_ccode.h) reuse these with
// another loader: CC_F16 in matvec_vec_kernel (cc16_rows), CC_INT8 in matvec_i8_kernel (CC =
// true), CC_BF16 in matvec_b16_kernel (CC = true); each result is bit-identical to the raw kind's.
struct mv_job {
    cllm_cuda_weight w[CLLM_CUDA_MATVEC_MAX];
    float *y[CLLM_CUDA_MATVEC_MAX];
    uint32_t block_end[CLLM_CUDA_MATVEC_MAX];  // unused entries repeat the last
    int32_t acc;                                // y += W x instead of y = W x (not swiglu)
    int32_t pre;                                // weights resident: first loads before pdl_wait
    int32_t reserved_;
    uint64_t ldy[CLLM_CUDA_MATVEC_MAX];         // column launches: pitch of y[i] between columns
    // Compute-code kinds: section offsets of each matrix's buffer (cllm_ccode_layout_of).
    uint64_t cc_off[CLLM_CUDA_MATVEC_MAX][CLLM_CCODE_MAX_SECTIONS];
};

static __device__ __forceinline__ uint32_t mv_pick(const mv_job &m, uint32_t b) {
    return b < m.block_end[0] ? 0u : b < m.block_end[1] ? 1u : 2u;
}

static __device__ __forceinline__ float silu_mul(float g, float u) {
    return g / (1.0f + __expf(-g)) * u;  // as swiglu_kernel
}

// Writes a finished row: y[r] (+)= s, or in swiglu mode y0[r] = silu(s) * s_up.
static __device__ __forceinline__ void mv_store(const mv_job &m, uint32_t i, uint64_t r, float s,
                                                float s_up, bool swiglu) {
    float *y = m.y[i];
    if (swiglu) y[r] = silu_mul(s, s_up);
    else y[r] = m.acc ? y[r] + s : s;
}

// Dot of 8 fp32 weights with x[0..8) (two float4s) in one fixed order, spelled with explicit
// round-to-nearest intrinsics so that no contraction choice of the compiler can differ between
// the raw bf16/f16 kernels and the fused compute-code kernel (their results are bit-identical):
// t0 = ((w0 x0 + w1 x1) + w2 x2) + w3 x3 as a multiply and three FMAs, t1 likewise, t0 + t1.
static __device__ __forceinline__ float dot8f(const float (&w)[8], float4 a, float4 b) {
    float t0 = __fmul_rn(w[0], a.x), t1 = __fmul_rn(w[4], b.x);
    t0 = __fmaf_rn(w[1], a.y, t0), t1 = __fmaf_rn(w[5], b.y, t1);
    t0 = __fmaf_rn(w[2], a.z, t0), t1 = __fmaf_rn(w[6], b.z, t1);
    t0 = __fmaf_rn(w[3], a.w, t0), t1 = __fmaf_rn(w[7], b.w, t1);
    return __fadd_rn(t0, t1);
}

// Dot of 16 bytes of weights with the matching x (a float4 per 4 elements).
template <int KIND>
static __device__ __forceinline__ float dot16(uint4 v, const float4 *x) {
    if (KIND == CLLM_CUDA_W_F32) {
        const float4 a = __ldg(x);
        return __uint_as_float(v.x) * a.x + __uint_as_float(v.y) * a.y +
               __uint_as_float(v.z) * a.z + __uint_as_float(v.w) * a.w;
    } else if (KIND == CLLM_CUDA_W_INT8) {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float4 a = __ldg(x + k);
            s += (float)(int8_t)(u[k]) * a.x + (float)(int8_t)(u[k] >> 8) * a.y +
                 (float)(int8_t)(u[k] >> 16) * a.z + (float)(int8_t)(u[k] >> 24) * a.w;
        }
        return s;
    } else {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
        float w[8];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (KIND == CLLM_CUDA_W_BF16) w[2 * k] = bf16_lo(u[k]), w[2 * k + 1] = bf16_hi(u[k]);
            else w[2 * k] = f16_bits(u[k] & 0xffffu), w[2 * k + 1] = f16_bits(u[k] >> 16);
        }
        return dot8f(w, __ldg(x), __ldg(x + 1));
    }
}

// ---- the summation order of a row (every 16-byte-vector kernel: raw, compute code, columns) ----
//
// Step k of a row is its vectors 32 k .. 32 k + 31, vector 32 k + j belonging to lane j. Lane j
// keeps two partial sums, s0 over its even steps and s1 over its odd ones, each added in step
// order (__fadd_rn, one per vector); the row is warp_sum over the lanes of s0 + s1. (Two sums
// halve the chain of dependent adds between a batch's loads and the next batch: 7B raw BF16 tg
// 242 -> 247 tok/s on the H200, docs/PERF.md 7g.)
static __device__ __forceinline__ float row_total(float s0, float s1) {
    return warp_sum(__fadd_rn(s0, s1));
}

// This lane's partial dots of NR rows of equal width (sum[k][step parity], see row_total): vectors
// lane, lane + 32, ... of each row, 4 per row in flight. int8: sc[k] is row k's scales, vpg
// vectors per group.
// pre: the first batch of weight loads is issued before pdl_wait (weights no running kernel
// writes); x and the scales are read after it either way. The sums are the same either way.
template <int KIND, int NR>
static __device__ __forceinline__ void mv_rows(const uint4 *const (&row)[NR],
                                               const float *const (&sc)[NR], uint32_t vpg,
                                               uint32_t nvec, const float *x, uint32_t lane,
                                               bool pre, float (&sum)[NR][2]) {
    constexpr uint32_t EPV = KIND == CLLM_CUDA_W_F32 ? 4 : KIND == CLLM_CUDA_W_INT8 ? 16 : 8;
#pragma unroll
    for (int k = 0; k < NR; k++) sum[k][0] = sum[k][1] = 0.f;
    using batch = uint4[NR][4];
    auto load = [&](batch &a, uint32_t v) {
#pragma unroll
        for (int k = 0; k < NR; k++)
#pragma unroll
            for (int u = 0; u < 4; u++) a[k][u] = __ldg(row[k] + v + 32 * u);
    };
    auto add = [&](int k, bool odd, uint4 a, uint32_t vi) {  // (a branch: no indexed registers)
        const float d = dot16<KIND>(a, (const float4 *)(x + (size_t)vi * EPV));
        const float t = KIND == CLLM_CUDA_W_INT8 ? d * __ldg(sc[k] + vi / vpg) : d;
        if (odd) sum[k][1] = __fadd_rn(sum[k][1], t);
        else sum[k][0] = __fadd_rn(sum[k][0], t);
    };
    auto fold = [&](const batch &a, uint32_t v) {  // v: the vector of an even step
#pragma unroll
        for (int k = 0; k < NR; k++)
#pragma unroll
            for (int u = 0; u < 4; u++) add(k, u & 1, a[k][u], v + 32 * u);
    };
    auto full = [&](uint32_t v) { return v + 96 < nvec; };
    uint32_t v = lane;
    batch a;
    if (pre && full(v)) {  // the first batch in flight across the wait
        load(a, v);
        pdl_wait();
        fold(a, v);
        v += 128;
    } else {
        pdl_wait();
    }
    for (; full(v); v += 128) {
        load(a, v);
        fold(a, v);
    }
    for (bool odd = false; v < nvec; v += 32, odd = !odd)
#pragma unroll
        for (int k = 0; k < NR; k++) add(k, odd, __ldg(row[k] + v), v);
}

// ---- fused matvec over the row-vector compute code (CLLM_CUDA_W_CC_F16) ---------------------------
//
// The raw f16 kernel with another loader: lane `lane` takes vectors lane, lane + 32, ... of its
// row (8 weights each) in the same order and with the same dot8f, so the sums are bit-identical.
// A vector costs three loads (8 sign/mantissa bytes, the 16 + 8 bits of its code word) and, per
// weight, a byte permute, an AND, a shift-add and a LOP3 (layout: src/codec/cllm_ccode.h).
// Exceptions: step k of the warp is group k of the row; its entries (global, row-relative offsets
// goff[k], goff[k + 1]) are written by lanes in parallel into the warp's 256 addends in shared
// memory (addend[pos] = base << 23 normally, true exponent << 23 for an exception, whose code is 0),
// read back by the owning lanes, then restored.
//
// The code word is 48 bits per vector (a 6-bit field per weight: three mantissa bits, then the
// code) with a 5-bit exponent: the decode builds h in the upper half of a word (byte, then field
// << 23 plus base << 26) and converts it as the raw f16 kernels do.
struct cc16_row {
    const uint2 *bytes;     // (nvec) the row's sign/mantissa bytes, 8 per vector
    const uint8_t *lo;      // (nvec) code word bits 0..31 (u32)
    const uint8_t *hi;      // (nvec) code word bits 32..47 (u16)
    const uint16_t *goff;   // (ngroups + 1) row-relative exception offsets
    const uint16_t *exc;    // the row's exceptions: pos | delta << 8
    uint32_t base;          // exponent of code 0
};

// A vector's code word, 48 bits (x: bits 0..31, y: 32..47).
using cc16_word = uint2;

// Exponent position of the decode's addends: h's in the upper half of a word.
constexpr uint32_t CC16_SH = 26u;

// Vector v0 + du of a row (du: a constant step offset, so that the loads of a batch share one
// address and differ by immediates).
static __device__ __forceinline__ cc16_word cc16_load(const cc16_row &rw, uint32_t v0,
                                                      uint32_t du = 0) {
    return make_uint2(__ldg((const uint32_t *)rw.lo + v0 + du),
                      __ldg((const uint16_t *)rw.hi + v0 + du));
}

// Row r of a compute-code matrix w whose section offsets are off.
static __device__ __forceinline__ cc16_row cc16_row_at(const cllm_cuda_weight &w,
                                                       const uint64_t *off, uint64_t r) {
    const uint8_t *b = (const uint8_t *)w.data;
    const uint64_t nvec = w.cols / 8, ng = (nvec + 31) / 32;
    constexpr uint64_t wide = 2;
    cc16_row o;
    o.bytes = (const uint2 *)(b + off[CLLM_CC16_S_BYTES]) + r * nvec;
    o.lo = b + off[CLLM_CC16_S_CODELO] + r * nvec * 2 * wide;
    o.hi = b + off[CLLM_CC16_S_CODEHI] + r * nvec * wide;
    o.goff = (const uint16_t *)(b + off[CLLM_CC16_S_GOFF]) + r * (ng + 1);
    o.exc = (const uint16_t *)(b + off[CLLM_CC16_S_EXC]) +
            __ldg((const uint32_t *)(b + off[CLLM_CC16_S_ROWEXC]) + r);
    o.base = __ldg(b + off[CLLM_CC16_S_BASE] + r);
    return o;
}

static __device__ __forceinline__ cc16_row cc16_row_of(const mv_job &m, uint32_t wi, uint64_t r) {
    return cc16_row_at(m.w[wi], m.cc_off[wi], r);
}

// Byte i of w with its sign bit replicated over byte 3: bits 31..24 = sign, 23..16 = the byte.
template <int I>
static __device__ __forceinline__ uint32_t cc16_place(uint32_t w) {
    uint32_t u;
    asm("prmt.b32 %0, %1, 0, %2;" : "=r"(u) : "r"(w), "n"((0x8 | I) << 12 | I << 8 | 0x44));
    return u;
}

// The 8 weights of a vector as bits: h in the upper half of each word (sign from the byte, field *
// 2^23 + addend: mantissa bits 7..9, then the exponent at 2^26).
static __device__ __forceinline__ void cc16_bits(uint2 b, cc16_word c, const uint32_t (&q)[8],
                                                 uint32_t (&o)[8]) {
#pragma unroll
    for (int p = 0; p < 8; p++) {
        const uint32_t word = p < 4 ? b.x : b.y;
        const uint32_t u = (p & 3) == 0 ? cc16_place<0>(word) : (p & 3) == 1 ? cc16_place<1>(word)
                           : (p & 3) == 2 ? cc16_place<2>(word) : cc16_place<3>(word);
        const uint64_t c64 = (uint64_t)c.y << 32 | c.x;
        const uint32_t e = ((uint32_t)(c64 >> (6 * p)) << 23 & 0x1f800000u) + q[p];
        o[p] = (u & 0x807f0000u) | e;
    }
}

// cc16_bits' words as fp32 (the raw f16 kernels' conversion).
static __device__ __forceinline__ void cc16_float(const uint32_t (&o)[8], float (&w)[8]) {
#pragma unroll
    for (int p = 0; p < 8; p++) w[p] = f16_bits(o[p] >> 16);
}

// The 8 weights of a vector as fp32.
static __device__ __forceinline__ void cc16_decode(uint2 b, cc16_word c, const uint32_t (&q)[8],
                                                   float (&w)[8]) {
    uint32_t o[8];
    cc16_bits(b, c, q, o);
    cc16_float(o, w);
}

// This lane's 8 addends for group g of a row, whose entries are [g0, g1) of exc (row-relative):
// warp-uniform. Entries e0 .. e0 + 31 were read ahead, entry e0 + lane into ent (valid where
// e0 + lane lies below the end of the entries read ahead, which is at least g1); any entry of
// the group beyond those is read here.
static __device__ __forceinline__ void cc16_addends(const cc16_row &rw, uint32_t *qw, uint32_t g0,
                                                    uint32_t g1, uint32_t e0, uint32_t ent,
                                                    uint32_t lane, uint32_t (&q)[8]) {
    constexpr uint32_t SH = CC16_SH;
    const uint32_t b23 = rw.base << SH;
    if (g1 == g0) {
#pragma unroll
        for (int p = 0; p < 8; p++) q[p] = b23;
        return;
    }
    const bool own = e0 + lane >= g0 && e0 + lane < g1;
    const uint32_t far = max(g0, e0 + 32);
    __syncwarp();  // the previous group's restores are done
    if (own) qw[ent & 255u] = (rw.base ^ (ent >> 8)) << SH;
    for (uint32_t e = far + lane; e < g1; e += 32) {
        const uint32_t en = __ldg(rw.exc + e);
        qw[en & 255u] = (rw.base ^ (en >> 8)) << SH;
    }
    __syncwarp();
    const uint4 a = ((const uint4 *)qw)[2 * lane], b = ((const uint4 *)qw)[2 * lane + 1];
    q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w, q[4] = b.x, q[5] = b.y, q[6] = b.z, q[7] = b.w;
    __syncwarp();
    if (own) qw[ent & 255u] = b23;
    for (uint32_t e = far + lane; e < g1; e += 32) qw[__ldg(rw.exc + e) & 255u] = b23;
}

// cc16_addends for one group whose entries were not read ahead.
static __device__ __forceinline__ void cc16_addends_1(const cc16_row &rw, uint32_t *qw, uint32_t g,
                                                      uint32_t lane, uint32_t (&q)[8]) {
    const uint32_t g0 = __ldg(rw.goff + g), g1 = __ldg(rw.goff + g + 1);
    const uint32_t ent = g0 + lane < g1 ? __ldg(rw.exc + g0 + lane) : 0u;
    cc16_addends(rw, qw, g0, g1, g0, ent, lane, q);
}

// Fills a warp's 256 addends (lane: entries 8 lane .. 8 lane + 7) with the no-exception value.
static __device__ __forceinline__ void cc16_fill(uint32_t *qw, uint32_t base, uint32_t lane) {
    const uint32_t b = base << CC16_SH;
    ((uint4 *)qw)[2 * lane] = ((uint4 *)qw)[2 * lane + 1] = make_uint4(b, b, b, b);
}

// This lane's 8 addends for step u of a batch whose entries (at most 32) were all read ahead:
// own is the step of the lane's entry (none: 255), at addend addr with value vexc. No branch:
// a group without entries costs the three syncs and the two reads.
static __device__ __forceinline__ void cc16_addends_own(const cc16_row &rw, uint32_t *qw, uint32_t u,
                                                        uint32_t own, uint32_t addr, uint32_t vexc,
                                                        uint32_t lane, uint32_t (&q)[8]) {
    __syncwarp();  // the previous group's restores are done
    if (own == u) qw[addr] = vexc;
    __syncwarp();
    const uint4 a = ((const uint4 *)qw)[2 * lane], b = ((const uint4 *)qw)[2 * lane + 1];
    q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w, q[4] = b.x, q[5] = b.y, q[6] = b.z, q[7] = b.w;
    __syncwarp();
    if (own == u) qw[addr] = rw.base << CC16_SH;
}

// What cc16_rows does with the decoded steps of its rows: f.init(t) for row t first; per step
// k0 + u, f.begin(k0, u, act) before the rows' patches (the loads of x, in flight meanwhile),
// then f.add(t, k, v, w, xs) with row t's 8 weights w of vector v, step k, in row order.
// cc16_one: one column, the rows' partial dots as mv_rows<BF16, NR> (per-row and swiglu kernels).
template <int NR> struct cc16_one {
    const float *x;
    uint32_t lane;
    float (&sum)[NR][2];
    struct xv {
        float4 a, b;
    };
    __device__ __forceinline__ void init(int t) { sum[t][0] = sum[t][1] = 0.f; }
    __device__ __forceinline__ xv begin(uint32_t k0, uint32_t u, bool act) const {
        const float4 *xp = (const float4 *)x + 2 * (lane + 32 * k0);
        xv r{make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
        if (act) r.a = __ldg(xp + 64 * u), r.b = __ldg(xp + 64 * u + 1);
        return r;
    }
    __device__ __forceinline__ void add(int t, uint32_t k, uint32_t, const uint32_t (&o)[8],
                                        const xv &xs) {
        float w[8];
        cc16_float(o, w);
        const float d = dot8f(w, xs.a, xs.b);  // (a branch: no indexed registers)
        if (k & 1) sum[t][1] = __fadd_rn(sum[t][1], d);
        else sum[t][0] = __fadd_rn(sum[t][0], d);
    }
};

// One step of the column kernels: the NR rows' weights w of vector v, step k, dotted with each of
// the n <= NC columns x + c ldx and added to the sums of row_total's order.
template <int NR, int NC>
static __device__ __forceinline__ void cols_step(const float (&w)[NR][8], const float *x,
                                                 uint64_t ldx, uint32_t n, uint32_t v, uint32_t k,
                                                 float (&sum)[NR][NC][2]) {
#pragma unroll
    for (int c = 0; c < NC; c++) {
        if ((uint32_t)c >= n) break;
        const float4 *xc = (const float4 *)(x + (uint64_t)c * ldx) + 2 * v;
        const float4 xa = __ldg(xc), xb = __ldg(xc + 1);
#pragma unroll
        for (int t = 0; t < NR; t++) {
            const float d = dot8f(w[t], xa, xb);  // (a branch: no indexed registers)
            if (k & 1) sum[t][c][1] = __fadd_rn(sum[t][c][1], d);
            else sum[t][c][0] = __fadd_rn(sum[t][c][0], d);
        }
    }
}

// cc16_rows' fold for the column kernel: each of n <= NC columns x + c ldx, the rows' partial dots
// per column in the same order (step by step, even and odd steps apart), once every row of the
// step is decoded.
template <int NR, int NC> struct cc16_cols {
    const float *x;
    uint64_t ldx;
    uint32_t n;
    float (&sum)[NR][NC][2];
    float wk[NR][8];
    struct xv {};
    __device__ __forceinline__ void init(int t) {
#pragma unroll
        for (int c = 0; c < NC; c++) sum[t][c][0] = sum[t][c][1] = 0.f;
    }
    __device__ __forceinline__ xv begin(uint32_t, uint32_t, bool) const { return {}; }
    __device__ __forceinline__ void add(int t, uint32_t k, uint32_t v, const uint32_t (&o)[8], xv) {
        cc16_float(o, wk[t]);
        if (t == NR - 1) cols_step<NR, NC>(wk, x, ldx, n, v, k, sum);  // (t unrolled: a constant)
    }
};

// The steps of NR compute-code rows for this lane (NR = 2 in swiglu mode), folded by f (above). qs:
// this warp's NR x 256 addends in shared memory. Batches of 4 steps in flight while every lane has a
// full vector, then single steps (warp-uniform: the exception patch needs the whole warp).
// A batch's exception entries are read with its weights, one per lane; when they are at most 32
// (the common case: about 23 in 4 groups of synth-like weights), each lane knows before the first
// step which step its entry patches, and the steps take cc16_addends_own; otherwise cc16_addends.
template <int NR, class Fold>
static __device__ __forceinline__ void cc16_rows(const cc16_row (&rw)[NR], uint4 (*qs)[64],
                                                 uint32_t nvec, uint32_t lane, bool pre, Fold &f) {
#pragma unroll
    for (int t = 0; t < NR; t++) {
        cc16_fill((uint32_t *)qs[t], rw[t].base, lane);
        f.init(t);
    }
    __syncwarp();
    // The group offsets in a window held one per lane (lane i: goff[kb + i]), read by shuffles:
    // a batch's exception entries are read with its weights, in the same round trip.
    const uint32_t nsteps = (nvec + 31) / 32, nfull = nvec / 32;
    uint32_t gw[NR], kb = 0;
    auto window = [&](uint32_t k) {
        kb = k;
#pragma unroll
        for (int t = 0; t < NR; t++) gw[t] = __ldg(rw[t].goff + min(k + lane, nsteps));
    };
    struct batch {
        uint2 b[NR][4];
        cc16_word c[NR][4];
        uint32_t g[NR][5], ent[NR];
    };
    auto load = [&](batch &a, uint32_t k0, uint32_t n, bool guard) {
        if (k0 + n - kb > 31) window(k0);
#pragma unroll
        for (int t = 0; t < NR; t++) {
#pragma unroll
            for (uint32_t u = 0; u < 5; u++)
                if (u <= n) a.g[t][u] = __shfl_sync(0xffffffffu, gw[t], k0 + u - kb);
            a.ent[t] = lane < a.g[t][n] - a.g[t][0] ? __ldg(rw[t].exc + a.g[t][0] + lane) : 0u;
        }
        const uint32_t v0 = lane + 32 * k0;
#pragma unroll
        for (uint32_t u = 0; u < 4; u++) {
            if (u >= n) break;
#pragma unroll
            for (int t = 0; t < NR; t++)
                if (!guard || v0 + 32 * u < nvec) {
                    a.b[t][u] = __ldg(rw[t].bytes + v0 + 32 * u);
                    a.c[t][u] = cc16_load(rw[t], v0, 32 * u);
                }
        }
    };
    // fold(a, k0, n, guard, near): near (a std::integral_constant) says that every row's entries
    // of the batch were read ahead (at most 32), so that no step needs cc16_addends' reads.
    auto fold_as = [&](const batch &a, uint32_t k0, uint32_t n, bool guard, auto near) {
        // This lane's entry per row: its step (255: none), addend and value.
        uint32_t own[NR], addr[NR], vexc[NR];
        if constexpr (decltype(near)::value) {
#pragma unroll
            for (int t = 0; t < NR; t++) {
                const uint32_t e = a.g[t][0] + lane;
                uint32_t st = 0;
#pragma unroll
                for (uint32_t u = 1; u < 4; u++)
                    if (u < n) st += e >= a.g[t][u];
                own[t] = lane < a.g[t][n] - a.g[t][0] ? st : 255u;
                addr[t] = a.ent[t] & 255u;
                vexc[t] = (rw[t].base ^ (a.ent[t] >> 8)) << CC16_SH;
            }
        }
#pragma unroll
        for (uint32_t u = 0; u < 4; u++) {
            if (u >= n) break;
            const bool act = !guard || lane + 32 * (k0 + u) < nvec;
            const auto xs = f.begin(k0, u, act);
#pragma unroll
            for (int t = 0; t < NR; t++) {
                uint32_t q[8];
                if constexpr (decltype(near)::value)
                    cc16_addends_own(rw[t], (uint32_t *)qs[t], u, own[t], addr[t], vexc[t],
                                          lane, q);
                else
                    cc16_addends(rw[t], (uint32_t *)qs[t], a.g[t][u], a.g[t][u + 1],
                                      a.g[t][0], a.ent[t], lane, q);
                if (act) {
                    uint32_t o[8];
                    cc16_bits(a.b[t][u], a.c[t][u], q, o);
                    f.add(t, k0 + u, lane + 32 * (k0 + u), o, xs);
                }
            }
        }
    };
    auto fold = [&](const batch &a, uint32_t k0, uint32_t n, bool guard) {
        bool near = true;
#pragma unroll
        for (int t = 0; t < NR; t++) near = near && a.g[t][n] - a.g[t][0] <= 32;
        if (near) fold_as(a, k0, n, guard, std::true_type{});
        else fold_as(a, k0, n, guard, std::false_type{});
    };
    uint32_t k = 0;
    batch a;
    if (pre && nfull >= 4) {  // the first batch in flight across the wait
        window(0);
        load(a, 0, 4, false);
        pdl_wait();
        fold(a, 0, 4, false);
        k = 4;
    } else {
        pdl_wait();
        window(0);
    }
    for (; k + 4 <= nfull; k += 4) {
        load(a, k, 4, false);
        fold(a, k, 4, false);
    }
    for (; k < nsteps; k++) {
        load(a, k, 1, true);
        fold(a, k, 1, true);
    }
}

// One warp per row (MV_WARPS rows per block). Requires (host-checked): rows 16-byte aligned
// (cols * elem_size % 16 == 0, data aligned), x 16-byte aligned; int8: group_size a multiple of
// 16 (a 16-byte vector never straddles two groups).
//
// Raw bf16 declares four blocks per SM as its minimum (swiglu form too): ptxas then gives it 64
// registers, 32 warps fit per SM, and a 4096-row matrix is 0.97 waves of warps instead of 1.29;
// decode tg on the 7B rose 4.1% over a minimum of 1 (72 / 96 registers; PERF.md 7l), which in
// turn had gained 2.5% over none (40 / 58; 7k). The other kinds keep the allocation they were
// measured with (a minimum of 0 is none; compute-code bf16 spills at 4).
template <int KIND, bool SWIGLU>
static __global__ void __launch_bounds__(MV_WARPS * 32,
                                        KIND == CLLM_CUDA_W_BF16 || KIND == CLLM_CUDA_W_F16 ? 4 : 0)
    matvec_vec_kernel(const mv_job m, const float *__restrict__ x) {
    constexpr uint32_t EPV = KIND == CLLM_CUDA_W_F32 ? 4 : KIND == CLLM_CUDA_W_INT8 ? 16 : 8;
    constexpr int NR = SWIGLU ? 2 : 1;
    pdl_trigger();  // (CC_F16: EPV unused, the compute code has its own loader)
    const uint32_t lane = threadIdx.x & 31, i = SWIGLU ? 0 : mv_pick(m, blockIdx.x);
    const uint64_t r = (uint64_t)(blockIdx.x - (i ? m.block_end[i - 1] : 0)) * MV_WARPS +
                       threadIdx.x / 32;
    const uint64_t rows = m.w[i].rows, cols = m.w[i].cols;
    if (r >= rows) {
        pdl_wait();
        return;
    }
    float sum[NR][2];
    if constexpr (KIND == CLLM_CUDA_W_CC_F16) {
        __shared__ uint4 ccq[MV_WARPS][NR][64];
        cc16_row rw[NR];
        if (!m.pre) pdl_wait();  // not resident: nothing may be read before the wait
#pragma unroll
        for (int k = 0; k < NR; k++)
            rw[k] = cc16_row_of(m, SWIGLU ? (uint32_t)k : i, r);
        cc16_one<NR> f{x, lane, sum};
        cc16_rows<NR>(rw, ccq[threadIdx.x / 32], (uint32_t)(cols / 8), lane, m.pre != 0, f);
    } else {
        const uint32_t gs = m.w[i].group_size;
        const uint64_t gpr = KIND == CLLM_CUDA_W_INT8 ? (cols + gs - 1) / gs : 0;
        const uint4 *row[NR];
        const float *sc[NR];
#pragma unroll
        for (int k = 0; k < NR; k++) {
            const uint32_t wi = SWIGLU ? (uint32_t)k : i;
            row[k] = (const uint4 *)((const uint8_t *)m.w[wi].data + r * cols * (16 / EPV));
            sc[k] = KIND == CLLM_CUDA_W_INT8 ? m.w[wi].scales + r * gpr : nullptr;
        }
        mv_rows<KIND, NR>(row, sc, gs / 16, (uint32_t)(cols / EPV), x, lane, m.pre != 0, sum);
    }
    float s[NR];
#pragma unroll
    for (int k = 0; k < NR; k++) s[k] = row_total(sum[k][0], sum[k][1]);
    if (lane == 0) mv_store(m, i, r, s[0], s[NR - 1], SWIGLU);
}

// ---- several activation columns (batched decode): bf16, f16, CC_F16 ---------------------------------
//
// The job's rows for columns x_c = x + c * ldx, c < n <= NC: y[i][c * ldy[i] + r] (+)= (W_i x_c)[r],
// or in swiglu mode y[0][c * ldy[0] + r] = silu(gate x_c) * (up x_c). One warp per row (two rows,
// gate and up, in swiglu mode); lane `lane` takes vectors lane, lane + 32, ... as
// matvec_vec_kernel and adds each column's dot8f in the order of row_total, so column c equals a
// one-column launch on x_c bit for bit (raw and compute code alike). The weights are loaded (and
// decoded) once for all columns. Compute code with NC <= 4 goes through cc16_rows (batches of 4
// steps, as the one-column kernel); otherwise steps one at a time (warp-uniform: the compute
// code's exception patch needs the whole warp). On the H200 at 4096 x 4096 the batches took
// 18-25% off n = 1, 2, 4 but made NC = 8 1.33x slower (PERF.md 7p).
template <int KIND, int NC, bool SWIGLU>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_cols_kernel(const mv_job m, const float *__restrict__ x, uint64_t ldx, uint32_t n) {
    constexpr int NR = SWIGLU ? 2 : 1;
    constexpr bool CC = KIND == CLLM_CUDA_W_CC_F16;
    __shared__ uint4 ccq[CC ? MV_WARPS : 1][NR][64];
    pdl_trigger();
    pdl_wait();
    const uint32_t lane = threadIdx.x & 31, i = SWIGLU ? 0 : mv_pick(m, blockIdx.x);
    const uint64_t r = (uint64_t)(blockIdx.x - (i ? m.block_end[i - 1] : 0)) * MV_WARPS +
                       threadIdx.x / 32;
    if (r >= m.w[i].rows) return;
    const uint32_t nvec = (uint32_t)(m.w[i].cols / 8), nsteps = (nvec + 31) / 32;
    float sum[NR][NC][2];
    if constexpr (CC && NC <= 4) {  // the one-token kernel's loader, patch and batches of 4 steps
        cc16_row rw[NR];
#pragma unroll
        for (int t = 0; t < NR; t++) rw[t] = cc16_row_of(m, SWIGLU ? (uint32_t)t : i, r);
        cc16_cols<NR, NC> f{x, ldx, n, sum};
        cc16_rows<NR>(rw, ccq[threadIdx.x / 32], nvec, lane, false, f);
    } else {  // step by step
        cc16_row rw[NR];
        const uint4 *row[NR];
        uint32_t *qw[NR];
#pragma unroll
        for (int t = 0; t < NR; t++) {
            const uint32_t wi = SWIGLU ? (uint32_t)t : i;
#pragma unroll
            for (int c = 0; c < NC; c++) sum[t][c][0] = sum[t][c][1] = 0.f;
            row[t] = (const uint4 *)((const uint8_t *)m.w[wi].data + r * m.w[wi].cols * 2);
            qw[t] = (uint32_t *)ccq[CC ? threadIdx.x / 32 : 0][t];
            if (CC) {
                rw[t] = cc16_row_of(m, wi, r);
                cc16_fill(qw[t], rw[t].base, lane);
            }
        }
        __syncwarp();
        for (uint32_t k = 0; k < nsteps; k++) {
            const uint32_t v = lane + 32 * k;
            const bool act = v < nvec;
            float w[NR][8];
#pragma unroll
            for (int t = 0; t < NR; t++) {
                if (CC) {
                    uint2 b = make_uint2(0, 0);
                    cc16_word cw{};
                    uint32_t q[8];
                    if (act) b = __ldg(rw[t].bytes + v), cw = cc16_load(rw[t], v);
                    cc16_addends_1(rw[t], qw[t], k, lane, q);
                    cc16_decode(b, cw, q, w[t]);
                } else if (act) {
                    const uint4 a = __ldg(row[t] + v);
                    const uint32_t u[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        if (KIND == CLLM_CUDA_W_BF16)
                            w[t][2 * j] = bf16_lo(u[j]), w[t][2 * j + 1] = bf16_hi(u[j]);
                        else
                            w[t][2 * j] = f16_bits(u[j] & 0xffffu),
                            w[t][2 * j + 1] = f16_bits(u[j] >> 16);
                    }
                }
            }
            if (act) cols_step<NR, NC>(w, x, ldx, n, v, k, sum);
        }
    }
#pragma unroll
    for (int c = 0; c < NC; c++) {
        if ((uint32_t)c >= n) break;
        const float s = row_total(sum[0][c][0], sum[0][c][1]),
                    s_up = SWIGLU ? row_total(sum[NR - 1][c][0], sum[NR - 1][c][1]) : s;
        if (lane) continue;
        float *y = m.y[i] + (uint64_t)c * m.ldy[i];
        if (SWIGLU) y[r] = silu_mul(s, s_up);
        else y[r] = m.acc ? y[r] + s : s;
    }
}

// Any shape and alignment: one warp per row, one element per lane per iteration.
template <bool SWIGLU>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_any_kernel(const mv_job m, const float *__restrict__ x) {
    pdl_trigger();
    pdl_wait();
    const uint32_t lane = threadIdx.x & 31, i = SWIGLU ? 0 : mv_pick(m, blockIdx.x);
    const uint64_t r = (uint64_t)(blockIdx.x - (i ? m.block_end[i - 1] : 0)) * MV_WARPS +
                       threadIdx.x / 32;
    if (r >= m.w[i].rows) return;
    float sum = 0.f, sum_up = 0.f;
    for (uint64_t c = lane; c < m.w[i].cols; c += 32) {
        const float xc = __ldg(x + c);
        sum += weight_at(m.w[i], r, c) * xc;
        if (SWIGLU) sum_up += weight_at(m.w[1], r, c) * xc;
    }
    sum = warp_sum(sum);
    if (SWIGLU) sum_up = warp_sum(sum_up);
    if (lane == 0) mv_store(m, i, r, sum, sum_up, SWIGLU);
}

// ---- int8 matvec on the integer tensor cores ----------------------------------------------------
//
// Converting each int8 weight to float (I2F, a quarter-rate pipe) capped the plain kernel at
// ~1.4 TB/s. Here the weights never leave int8: x is split, per chunk of 64 columns, into a fixed-
// point integer X = x * 2^k (k from the chunk's largest |x|, |X| < 2^29, so X keeps every bit of x
// within 2^-29 of the chunk's maximum) written as four signed byte digits,
// X = d0 + d1 2^8 + d2 2^16 + d3 2^24. One mma.m16n8k32.s8.s8.s32 multiplies 16 rows x 32 columns
// of W by the digits (B columns n = 0..3, columns 4..7 zero) exactly in int32 (|D| < 2^20); the
// four int32 sums of a chunk are scaled by 2^-k (and the group scale) into fp32 accumulators, and
// the row is sum_p 2^(8p) acc_p times the row scale. Per KiB of weights a warp issues 2 loads, 1
// shared load, 2 MMAs and 8 conversion/FMA instructions instead of ~160 ALU instructions.
//
// A block is W warps on one 16-row tile (two tiles, gate and up, in swiglu mode; W, a template
// parameter, is MV8_WARPS, or MV8_WARPS_MAX for a job of few tiles: mv8_warps); warp w takes
// chunks w, w + W, ... and first turns its own chunks of x into B fragments in shared memory
// (one pass per 8 chunks, after issuing its first weight loads); partial rows are summed across
// the warps through shared memory at the end.
//
// mma fragments (PTX ISA, m16n8k32 .s8): lane = 4 g + q. A: a0..3 row g, k 4q..4q+3; a4..7 row
// g + 8, same k; a8..15 the same rows at k + 16. B: b0..3 k 4q..4q+3, b4..7 k 16 + 4q.., column g.
// D: d0, d1 row g, columns 2q, 2q + 1; d2, d3 row g + 8. k is only a position inside the dot
// product, so lane q loads 16 contiguous bytes (columns 16q..16q+15 of the chunk) of rows g and
// g + 8 and the MMAs take its words {0, 1} and {2, 3}; B is laid out to match.
#define MV8_WARPS 8      // warps per block of the int8 matvecs (a 16-row tile), or
#define MV8_WARPS_MAX 12 // this many for a job of few tiles (mv8_warps; PERF.md 7l)
// A wide block of one matrix with per-channel scales is held to two blocks per SM (80
// registers): the column kernel at 8 columns would otherwise take 89 and fit one block of 12
// warps per SM (8 columns 10% slower, PERF.md 7l). Grouped scales and swiglu pairs need more
// registers than that without spilling.
// Minimum blocks per SM: the 12-warp one-matrix kernels 2; the compute code's gate/up kernel 3
// (ptxas would take 92 registers, i.e. 2 blocks, where 80 do without spilling: 2 blocks cost 4%
// of int8 fused tg, PERF.md 7ab); its 8-warp one-matrix kernel 4 (64 registers with a 4-byte
// spill, where ptxas would take 78: 11008 x 4096 19.45 against 20.26 us, PERF.md 7ac).
#define MV8_MIN_BLOCKS(MT, GROUPED, W, CC)                                                         \
    ((W) > MV8_WARPS && (MT) == 1 && !(GROUPED) ? 2                                                \
     : (CC) && (W) == MV8_WARPS && (MT) == 2 && !(GROUPED) ? 3                                     \
     : (CC) && (W) == MV8_WARPS && (MT) == 1 && !(GROUPED) ? 4                                     \
                                                          : 0)
#define MV8_COLS 64                // columns per chunk (two MMAs)
#define MV8_CHUNK_SMEM (256 + 4)   // bytes of shared memory per chunk: B fragments, then 2^-k
#define CC8_XCAP 3072              // CC_INT8: XOR table entries per block (all tiles; cc8_stage)

static __device__ __forceinline__ void mma_s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Byte p of each of a, b, c, d (a in the lowest byte): digit p of four consecutive columns.
static __device__ __forceinline__ void transpose_bytes(uint32_t a, uint32_t b, uint32_t c,
                                                       uint32_t d, uint32_t (&o)[4]) {
    const uint32_t t0 = __byte_perm(a, b, 0x5140), t1 = __byte_perm(c, d, 0x5140);
    const uint32_t t2 = __byte_perm(a, b, 0x7362), t3 = __byte_perm(c, d, 0x7362);
    o[0] = __byte_perm(t0, t1, 0x5410), o[1] = __byte_perm(t0, t1, 0x7632);
    o[2] = __byte_perm(t2, t3, 0x5410), o[3] = __byte_perm(t2, t3, 0x7632);
}

// This lane's quarter q of chunk c: x[64c + 16q, +16) to digits. Digit p of the 16 values is the
// B fragment of lane 4p + q: frag[fstride c + 4p + q] = {columns 0-3, 4-7 (first MMA), 8-11, 12-15
// (second MMA)}. csc[c] = 2^-k, or NaN when the chunk holds a NaN or an infinity (the rows come
// out NaN). All four lanes of the quad must call it (the chunk maximum is a quad shuffle).
static __device__ __forceinline__ void mv8_quantize(const float *x, uint32_t c, uint32_t q,
                                                    bool valid, uint4 *frag, float *csc,
                                                    uint32_t fstride = 16) {
    float v[16];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float4 f = valid ? __ldg((const float4 *)(x + (size_t)c * MV8_COLS + 16 * q) + k)
                               : make_float4(0.f, 0.f, 0.f, 0.f);
        v[4 * k] = f.x, v[4 * k + 1] = f.y, v[4 * k + 2] = f.z, v[4 * k + 3] = f.w;
    }
    uint32_t mb = 0;  // largest |x| as bits: finite < infinity < NaN
#pragma unroll
    for (int k = 0; k < 16; k++) mb = max(mb, __float_as_uint(v[k]) & 0x7fffffffu);
    mb = max(mb, __shfl_xor_sync(0xffffffffu, mb, 1));
    mb = max(mb, __shfl_xor_sync(0xffffffffu, mb, 2));
    // max |x| < 2^e with e = biased exponent - 126, so |x| 2^k < 2^29 for k = 29 - e; k <= 126
    // keeps 2^k and 2^-k normal (x below 2^-97 loses bits, far under the tolerance).
    const int k = min(29 - ((int)(mb >> 23) - 126), 126);
    const float up = __int_as_float((k + 127) << 23);
    uint32_t d[16];
#pragma unroll
    for (int i = 0; i < 16; i++)  // signed digits: bias digits 0-2 by 128, carry, unbias
        d[i] = ((uint32_t)__float2int_rn(v[i] * up) + 0x00808080u) ^ 0x00808080u;
    if (!valid) return;
    uint32_t p[4][4];  // [group of 4 columns][digit]
#pragma unroll
    for (int gi = 0; gi < 4; gi++)
        transpose_bytes(d[4 * gi], d[4 * gi + 1], d[4 * gi + 2], d[4 * gi + 3], p[gi]);
#pragma unroll
    for (int di = 0; di < 4; di++)
        frag[(size_t)c * fstride + 4 * di + q] = make_uint4(p[0][di], p[1][di], p[2][di], p[3][di]);
    if (q == 0)
        csc[c] = mb >= 0x7f800000u ? __int_as_float(0x7fc00000) : __int_as_float((127 - k) << 23);
}

// One chunk's MMA result into the accumulators: d0, d1 (row g) scaled by s0, d2, d3 (row g + 8) by
// s8. Spelled as intrinsics: the one-token and the column kernels round identically.
static __device__ __forceinline__ void mv8_fold(float (&acc)[4], const int (&d)[4], float s0,
                                                float s8) {
    acc[0] = __fmaf_rn((float)d[0], s0, acc[0]), acc[1] = __fmaf_rn((float)d[1], s0, acc[1]);
    acc[2] = __fmaf_rn((float)d[2], s8, acc[2]), acc[3] = __fmaf_rn((float)d[3], s8, acc[3]);
}

// A lane's two digit planes (digits 2q', 2q' + 1 of weights 2^(16q'), 2^(16q' + 8)) as one value.
static __device__ __forceinline__ float mv8_digits(float lo, float hi, float pw) {
    return __fmaf_rn(hi, __fmul_rn(pw, 256.f), __fmul_rn(lo, pw));
}

// ---- the int8 compute code (CLLM_CUDA_W_CC_INT8) in the same kernel -------------------------------
//
// Lane 4 g + q of a warp gets, per (tile, chunk), the 32 values of rows g and g + 8 it feeds to
// the MMAs as a 16-byte nibble load and an 8-byte load of bits 4-5 (src/codec/cllm_ccode.h), and
// rebuilds the raw kernel's A words: each stored 6 bits v = (q + 32) mod 64 plus 96 per byte (q +
// 128 for q in [-32, 31], no sign extension), then XORed with 0x80 and, for its vectors flagged in
// the block's mask, bits 6-7 corrected by their side entries (one table gives both). No atomics,
// no barriers, no branches: lane l
// loads the block's flag pair l / 8 (a mask word and the index of its first side entry) with its
// weights and finds its entries at that index plus the flags below its own. The MMAs then see the
// raw int8 values: same results.

// A lane's A words of a block: cllm_cc8_lane (src/codec/cllm_ccode.h, shared with the C tests).
static __device__ __forceinline__ void cc8_words(uint4 n, uint2 h, uint32_t pw, uint32_t p0,
                                                 const uint16_t *side, uint32_t lane, uint4 &wa,
                                                 uint4 &wb) {
    uint32_t a[8];
    cllm_cc8_lane(n.x, n.y, n.z, n.w, h.x, h.y, pw, p0, side, lane, a);
    wa = make_uint4(a[0], a[1], a[2], a[3]), wb = make_uint4(a[4], a[5], a[6], a[7]);
}

// The same words from a block's staged XOR table (cllm_cc8_lane_tab; tab: see cc8_stage).
static __device__ __forceinline__ void cc8_words_tab(uint4 n, uint2 h, uint32_t pw, uint32_t p0,
                                                     const uint2 *tab, uint32_t lane, uint4 &wa,
                                                     uint4 &wb) {
    uint32_t a[8];
    cllm_cc8_lane_tab(n.x, n.y, n.z, n.w, h.x, h.y, pw, p0, (const uint32_t *)tab, lane, a);
    wa = make_uint4(a[0], a[1], a[2], a[3]), wb = make_uint4(a[4], a[5], a[6], a[7]);
}

// Stages the side entries of each of a block's MT tiles (fo[t]: this lane's flag pair of (tile,
// chunk `warp`), ex[t]: the whole side list) into tabs as XOR tables (cllm_cc8_lane_tab's tab,
// for the tile's own entries): tile t's table at tabs + t * (CC8_XCAP / MT), the list index of
// its first side entry in xo[t]. Returns whether every
// tile's list fit (block-uniform; else cc8_words reads the lists from global memory). All threads
// of the block call it; a __syncthreads must follow before the tables are read.
template <int MT, uint32_t W>
static __device__ __forceinline__ bool cc8_stage(const uint2 *const (&fo)[MT],
                                                 const uint16_t *const (&ex)[MT], uint32_t nch,
                                                 uint32_t warp, uint32_t lane, uint2 *tabs,
                                                 const uint2 *(&tb)[MT], uint32_t (&xo)[MT]) {
    constexpr uint32_t cap = CC8_XCAP / MT - 1, per = (cap + 32 * W - 1) / (32 * W);
    bool all = true;
#pragma unroll
    for (int t = 0; t < MT; t++) {
        const uint2 *fot = fo[t] - warp * 4 - lane / 8;  // pairs of (tile, chunk 0 ..)
        const uint32_t e0 = __ldg(fot).y, e1 = __ldg(fot + 4 * nch).y;
        uint2 *tab = tabs + t * (cap + 1);
        tb[t] = tab, xo[t] = e0;
        if (e1 - e0 > cap) {
            all = false;
            continue;
        }
        uint16_t tmp[per];  // all loads first: one round trip
#pragma unroll
        for (uint32_t j = 0; j < per; j++)
            if (threadIdx.x + 32 * W * j < e1 - e0)
                tmp[j] = __ldg(ex[t] + e0 + threadIdx.x + 32 * W * j);
#pragma unroll
        for (uint32_t j = 0; j < per; j++)
            if (threadIdx.x + 32 * W * j < e1 - e0) {
                uint32_t xw[2];
                cllm_cc8_xor(tmp[j], xw);
                tab[1 + threadIdx.x + 32 * W * j] = make_uint2(xw[0], xw[1]);
            }
        if (threadIdx.x == 0) tab[0] = make_uint2(CLLM_CC8_X0, CLLM_CC8_X0);
    }
    return all;
}

// ---- compute code back to raw weights (prefill: the GEMM reads them) --------------------------------
//
// Rows [r0, r0 + n_rows) of the matrix into dst (row r at dst row r - r0). cc16: one warp per
// row, the fused kernel's loop (cc16_rows) up to the bits (cc16_bits: the weight is the upper half
// of each word, bf16 or f16). cc8: one warp per (16-row tile,
// 64-column chunk), the fused kernel's fragment and flagged vectors; lane (g, q) holds rows g and
// g + 8 at columns 16q .. 16q + 15 of the chunk, as the raw int8 kernel loads them; written as the int8
// values or (bf16) dequantised as the GEMM's dequant_kernel does: bf16_rn((float)q * scale).
struct cc_unpack_args {
    cllm_cuda_weight w;
    uint64_t off[CLLM_CCODE_MAX_SECTIONS];
    uint64_t r0, n_rows;  // cc8: r0 % 16 == 0
    uint64_t n_units;     // warps with work: rows (cc16), tiles x chunks (cc8)
    int bf16;             // cc8: dequantised bf16 out instead of int8
    void *dst;
};

// cc16_rows' fold for the unpack: each vector's 8 weights (the upper halves of cc16_bits' words,
// no conversion) to its 16 bytes of the row.
struct cc16_out {
    uint4 *row;
    struct xv {};
    __device__ __forceinline__ void init(int) {}
    __device__ __forceinline__ xv begin(uint32_t, uint32_t, bool) const { return {}; }
    __device__ __forceinline__ void add(int, uint32_t, uint32_t v, const uint32_t (&o)[8], xv) {
        row[v] = make_uint4(o[0] >> 16 | (o[1] & 0xffff0000u), o[2] >> 16 | (o[3] & 0xffff0000u),
                            o[4] >> 16 | (o[5] & 0xffff0000u), o[6] >> 16 | (o[7] & 0xffff0000u));
    }
};

static __global__ void __launch_bounds__(MV_WARPS * 32) cc16_unpack_kernel(const cc_unpack_args a) {
    __shared__ uint4 qs[MV_WARPS][1][64];
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const uint64_t rl = (uint64_t)blockIdx.x * MV_WARPS + warp;  // one warp per row
    if (rl >= a.n_units) return;
    const uint64_t nvec = a.w.cols / 8;
    const cc16_row rw[1] = {cc16_row_at(a.w, a.off, a.r0 + rl)};
    cc16_out f{(uint4 *)a.dst + rl * nvec};
    cc16_rows<1>(rw, qs[warp], (uint32_t)nvec, lane, false, f);
}

// cc8 to int8 (the integer GEMM) or, BF16, to dequantised bf16 (the cuBLAS path for grouped
// scales): bf16_rn(q * scale), as dequant_kernel, without conversion instructions
// (cllm_i8x4_bf16). Each warp takes units (16-row tile, 64-column chunk) unit, unit + total
// warps, ... (32-bit indices: the host checks they fit) and decodes and patches one as the fused
// kernel does; int8 rows go out as lane (g, q) holds them (rows g and g + 8, 16 bytes at column
// 16q: 64-byte runs), bf16 through a 16 x 64 tile in shared memory as 512-byte runs.
template <bool BF16>
static __global__ void __launch_bounds__(MV_WARPS * 32) cc8_unpack_kernel(const cc_unpack_args a) {
    __shared__ uint4 stage[BF16 ? MV_WARPS : 1][16 * 8];
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t cols = (uint32_t)a.w.cols, nch = cols / MV8_COLS, gs = a.w.group_size;
    const uint32_t gpr = (cols + gs - 1) / gs, t0 = (uint32_t)(a.r0 / 16);
    const uint32_t rows = (uint32_t)a.w.rows, end = (uint32_t)(a.r0 + a.n_rows);
    const uint8_t *b = (const uint8_t *)a.w.data;
    const uint4 *nib = (const uint4 *)(b + a.off[CLLM_CC8_S_NIB]);
    const uint2 *his = (const uint2 *)(b + a.off[CLLM_CC8_S_HI]);
    const uint2 *flg = (const uint2 *)(b + a.off[CLLM_CC8_S_FLAGS]);
    const uint16_t *side = (const uint16_t *)(b + a.off[CLLM_CC8_S_XHI]);
    for (uint32_t unit = blockIdx.x * MV_WARPS + warp; unit < (uint32_t)a.n_units;
         unit += gridDim.x * MV_WARPS) {
        const uint32_t tile = t0 + unit / nch, ch = unit % nch;
        const uint64_t blk = (uint64_t)tile * nch + ch;
        const uint4 n = __ldg(nib + blk * 32 + lane);
        const uint2 h = __ldg(his + blk * 32 + lane);
        const uint2 fp = __ldg(flg + blk * 4 + lane / 8);  // (mask word, its first entry)
        const uint32_t r = tile * 16 + g, col = ch * MV8_COLS + 16 * q;
        float sa = 0.f, sb = 0.f;
        if (BF16) {
            sa = __ldg(a.w.scales + (uint64_t)min(r, rows - 1) * gpr + col / gs);
            sb = __ldg(a.w.scales + (uint64_t)min(r + 8, rows - 1) * gpr + col / gs);
        }
        uint4 wa, wb;
        cc8_words(n, h, fp.x, fp.y, side, lane, wa, wb);
        if (!BF16) {
            int8_t *dst = (int8_t *)a.dst + (uint64_t)(r - a.r0) * cols + col;
            if (r < end) *(uint4 *)dst = wa;
            if (r + 8 < end) *(uint4 *)(dst + 8ull * cols) = wb;
            continue;
        }
        const uint2 a0 = cllm_i8x4_bf16(wa.x, sa), a1 = cllm_i8x4_bf16(wa.y, sa);
        const uint2 a2 = cllm_i8x4_bf16(wa.z, sa), a3 = cllm_i8x4_bf16(wa.w, sa);
        const uint2 b0 = cllm_i8x4_bf16(wb.x, sb), b1 = cllm_i8x4_bf16(wb.y, sb);
        const uint2 b2 = cllm_i8x4_bf16(wb.z, sb), b3 = cllm_i8x4_bf16(wb.w, sb);
        uint4 *st = stage[BF16 ? warp : 0];
        __syncwarp();  // the previous unit's stores have read the stage
        st[g * 8 + 2 * q] = make_uint4(a0.x, a0.y, a1.x, a1.y);
        st[g * 8 + 2 * q + 1] = make_uint4(a2.x, a2.y, a3.x, a3.y);
        st[(g + 8) * 8 + 2 * q] = make_uint4(b0.x, b0.y, b1.x, b1.y);
        st[(g + 8) * 8 + 2 * q + 1] = make_uint4(b2.x, b2.y, b3.x, b3.y);
        __syncwarp();
        uint16_t *dst = (uint16_t *)a.dst;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t idx = 32 * j + lane, rr = tile * 16 + idx / 8;
            if (rr < end)
                ((uint4 *)(dst + (uint64_t)(rr - a.r0) * cols + ch * MV8_COLS))[idx % 8] = st[idx];
        }
    }
}

// Streamed weights: read once per launch, so they do not allocate in L1 (which keeps x, the
// columns' fragments and the exception lists there; PERF.md 7ae). volatile: kept in order with
// pdl_wait, as __ldg is (weights a previous kernel writes are read after it; same SASS).
static __device__ __forceinline__ uint4 ldg_stream(const uint4 *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}
static __device__ __forceinline__ uint2 ldg_stream(const uint2 *p) {
    uint2 r;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];"
                 : "=r"(r.x), "=r"(r.y)
                 : "l"(p));
    return r;
}
static __device__ __forceinline__ uint32_t ldg_stream(const uint32_t *p) {
    uint32_t r;
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}

// Where a lane of the int8 kernels loads its chunks: per tile t, raw: rows g and g + 8 at its
// bytes of chunk `warp` (pa, pb); CC: its nibbles, bits 4-5 (pb as uint2) and flag pair (fo) of
// block (tile, warp); grouped scales of rows g, g + 8 (sa, sb).
template <int MT> struct mv8_src {
    const uint4 *const *pa, *const *pb;
    const uint2 *const *fo;
    const float *const *sa, *const *sb;
};

// The lane's chunk jj (the warp's jj-th, jj < nj) of tile t into o (CC: the nibbles in o[0], bits
// 4-5 in o[1].x .y, the flag pair in o[1].z .w) and, GROUPED, its two rows' scales into os.
template <bool CC, bool GROUPED, uint32_t W, int MT>
static __device__ __forceinline__ void mv8_load1(const mv8_src<MT> &p, uint32_t jj, int t,
                                                 uint32_t warp, uint32_t gs, uint4 (&o)[2],
                                                 float (&os)[2]) {
    if (CC) {  // blocks of 512 / 256 bytes: W chunks on = 32 W uint4 / 32 W uint2
        o[0] = ldg_stream(p.pa[t] + 32 * W * jj);
        const uint2 h = ldg_stream((const uint2 *)p.pb[t] + 32 * W * jj);
        const uint2 f = ldg_stream(p.fo[t] + 4 * W * jj);  // W chunks on: W x 4 pairs
        o[1] = make_uint4(h.x, h.y, f.x, f.y);
    } else {
        const uint32_t step = jj * (W * MV8_COLS / 16);
        o[0] = ldg_stream(p.pa[t] + step), o[1] = ldg_stream(p.pb[t] + step);
    }
    if (GROUPED) {
        const uint32_t grp = (warp + W * jj) * MV8_COLS / gs;
        os[0] = __ldg(p.sa[t] + grp), os[1] = __ldg(p.sb[t] + grp);
    }
}

// The int8 kernels' pipeline step: the batch in flight (an, wn) becomes the batch in use.
template <uint32_t U, int MT>
static __device__ __forceinline__ void mv8_take(uint4 (&a)[U][MT][2], float (&ws)[U][MT][2],
                                                const uint4 (&an)[U][MT][2],
                                                const float (&wn)[U][MT][2]) {
#pragma unroll
    for (uint32_t u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < MT; t++)
#pragma unroll
            for (int k = 0; k < 2; k++) a[u][t][k] = an[u][t][k], ws[u][t][k] = wn[u][t][k];
}

// MT tiles per block: 1 (tile of w[i], multi mode) or 2 (gate and up, swiglu). GROUPED: scales per
// group of group_size (a multiple of 64) columns, applied per chunk; else one scale per row,
// applied at the end. CC: the weights are CC_INT8 compute code (see above), else raw int8.
// Requires (host-checked): cols % 64 == 0, data and x 16-byte aligned, nch * MV8_CHUNK_SMEM bytes
// of dynamic shared memory.
//
// PAIR (MT == 2, one-matrix jobs): the block's two tiles are tiles 2 b and 2 b + 1 of matrix i
// (block_end counts pairs; a missing second tile repeats the last one and stores nothing). Each
// row's sums are those of MT == 1 in the same order, so the outputs are the same bit for bit;
// x is turned into digits once for both tiles.
template <int MT, bool GROUPED, bool CC, uint32_t W, bool PAIR = false>
static __global__ void __launch_bounds__(W * 32, MV8_MIN_BLOCKS(MT, GROUPED, W, CC))
    matvec_i8_kernel(const mv_job m, const float *__restrict__ x) {
    static_assert(!PAIR || MT == 2, "PAIR: two tiles per block");
    constexpr bool SW = MT == 2 && !PAIR;  // gate and up
    // Chunks per batch of loads. Raw: 4 chunks of one matrix (8 x 16 bytes per lane), each batch
    // loaded where it is used. CC: 2, the next batch in flight while this one is decoded (PERF.md
    // 7t: fused +6.2% tg; raw lost 0.9% that way, and CC 4 chunks so lost 5%).
    constexpr uint32_t U = (CC ? 2 : 4) / MT;
    constexpr bool PIPE = CC;
    extern __shared__ uint4 mv8_smem[];
    __shared__ float red[MT][W][16];
    __shared__ uint2 ccx8t[CC ? CC8_XCAP : 1];  // CC: the tiles' staged XOR tables (cc8_stage)
    pdl_trigger();
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t i = SW ? 0 : mv_pick(m, blockIdx.x);
    const uint32_t tile = (blockIdx.x - (i ? m.block_end[i - 1] : 0)) * (PAIR ? 2 : 1);
    const uint64_t rows = m.w[i].rows, cols = m.w[i].cols;
    const uint32_t gs = m.w[i].group_size, nch = (uint32_t)(cols / MV8_COLS);
    const uint32_t nj = nch > warp ? (nch - warp + W - 1) / W : 0;  // my chunks
    const uint64_t gpr = (cols + gs - 1) / gs;
    const uint4 *pa[MT], *pb[MT];  // raw: rows g and g + 8 at this lane's bytes of chunk `warp`;
                                   // CC: nibbles and high bits of block (tile, warp) for this lane
    const uint2 *fo[MT];              // CC: this lane's flag pair of (tile, warp)
    const uint16_t *ex[MT];           // CC: the side entries
    uint32_t xo[MT];                  // CC, staged: list index of tile t's first side entry
    const uint2 *tb[MT];              // CC, staged: the XOR table of tile t
    const float *sa[MT], *sb[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        const uint32_t wi = SW ? t : i;
        const cllm_cuda_weight &w = m.w[wi];
        // PAIR: tile t of the pair (the last tile again when the matrix has no such tile)
        const uint64_t tt = PAIR ? min((uint64_t)tile + t, (rows - 1) / 16) : tile;
        const uint64_t ra = min(tt * 16 + g, rows - 1), rb = min(ra + 8, rows - 1);
        if (CC) {
            const uint8_t *base = (const uint8_t *)w.data;
            const uint64_t blk = tt * nch + warp;
            pa[t] = (const uint4 *)(base + m.cc_off[wi][CLLM_CC8_S_NIB] + blk * 512) + lane;
            pb[t] = (const uint4 *)((const uint2 *)(base + m.cc_off[wi][CLLM_CC8_S_HI] + blk * 256) + lane);
            fo[t] = (const uint2 *)(base + m.cc_off[wi][CLLM_CC8_S_FLAGS]) + blk * 4 + lane / 8;
            ex[t] = (const uint16_t *)(base + m.cc_off[wi][CLLM_CC8_S_XHI]);
            xo[t] = 0;
        } else {
            const uint8_t *base = (const uint8_t *)w.data + MV8_COLS * warp + 16 * q;
            pa[t] = (const uint4 *)(base + ra * cols), pb[t] = (const uint4 *)(base + rb * cols);
        }
        sa[t] = w.scales + ra * gpr, sb[t] = w.scales + rb * gpr;
    }
    // The batch in use (a, ws) and, PIPE, the next one in flight meanwhile (an, wn), copied into
    // (a, ws) at the end of each trip. (Refilling each slot of (a, ws) as soon as its words are
    // built, without (an, wn), was 1.5-3% slower here: PERF.md 7ac.)
    uint4 a[U][MT][2], an[U][MT][2];  // CC: nibbles; bits 4-5 in .x .y of [1], the flag pair
    float ws[U][MT][2], wn[U][MT][2];  // in .z .w
    const mv8_src<MT> src = {pa, pb, fo, sa, sb};
    auto load1 = [&](uint32_t jj, uint32_t u, int t, auto &oa, auto &ow) {  // jj (< nj) to (u, t)
        mv8_load1<CC, GROUPED, W>(src, jj, t, warp, gs, oa[u][t], ow[u][t]);
    };
    auto load = [&](uint32_t j0, auto &oa, auto &ow) {  // chunks j0 .. j0 + U - 1 (those < nj)
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
#pragma unroll
            for (int t = 0; t < MT; t++) load1(j0 + u, u, t, oa, ow);
        }
    };
    if (!m.pre) pdl_wait();
    load(0, a, ws);  // in flight while x is quantized (and, resident, while the previous kernel ends)
    // CC: each tile's side entries staged as an XOR table (a longer list stays in global memory)
    const bool staged = CC && cc8_stage<MT, W>(fo, ex, nch, warp, lane, ccx8t, tb, xo);
    if (CC) __syncthreads();
    if (m.pre) pdl_wait();
    uint4 *frag = mv8_smem;
    float *csc = (float *)(mv8_smem + (size_t)nch * 16);
    for (uint32_t s = 0; s * 8 < nj; s++) {
        const uint32_t j = 8 * s + g;
        mv8_quantize(x, warp + W * j, q, j < nj, frag, csc);
    }
    __syncwarp();  // a warp reads only the chunks it wrote
    float acc[MT][4];
#pragma unroll
    for (int t = 0; t < MT; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
    // The main loop; TB: the words from the staged XOR tables (a block-uniform choice: CC
    // compiles the loop twice).
    auto run = [&](auto tb_tag) {
        constexpr bool TB = decltype(tb_tag)::value;
        for (uint32_t j0 = 0; j0 < nj; j0 += U) {
            if (!PIPE && j0) load(j0, a, ws);
            if (PIPE && j0 + U < nj) load(j0 + U, an, wn);
#pragma unroll
            for (uint32_t u = 0; u < U; u++) {
                if (j0 + u >= nj) break;
                const uint32_t c = warp + W * (j0 + u);
                // B columns 4-7 (lanes 16-31) repeat columns 0-3: their sums, in lanes q >= 2,
                // are dropped below (one unconditional load instead of a select per chunk)
                const uint4 b = frag[(size_t)c * 16 + (lane & 15)];
                const float s = csc[c];
#pragma unroll
                for (int t = 0; t < MT; t++) {
                    uint4 wa = a[u][t][0], wb = a[u][t][1];
                    if (CC) {
                        const uint4 n = a[u][t][0], h = a[u][t][1];
                        if (TB)
                            cc8_words_tab(n, make_uint2(h.x, h.y), h.z, h.w - xo[t], tb[t], lane,
                                          wa, wb);
                        else  // the whole list in global memory
                            cc8_words(n, make_uint2(h.x, h.y), h.z, h.w, ex[t], lane, wa, wb);
                    }
                    const float s0 = GROUPED ? s * ws[u][t][0] : s;
                    const float s8 = GROUPED ? s * ws[u][t][1] : s;
                    int d[4] = {0, 0, 0, 0};
                    mma_s8(d, wa.x, wb.x, wa.y, wb.y, b.x, b.y);
                    mma_s8(d, wa.z, wb.z, wa.w, wb.w, b.z, b.w);
                    mv8_fold(acc[t], d, s0, s8);
                }
            }
            if (PIPE) mv8_take(a, ws, an, wn);
        }
    };
    if (staged)
        run(std::true_type{});
    else
        run(std::false_type{});
    // Lane q holds digits 2q, 2q + 1: weights 2^(16q), 2^(16q + 8); q >= 2 holds the repeated
    // columns and adds +0 (as zero columns would).
    const float pw = __int_as_float((127 + 16 * (int)q) << 23);
#pragma unroll
    for (int t = 0; t < MT; t++) {
        float va = mv8_digits(acc[t][0], acc[t][1], pw), vb = mv8_digits(acc[t][2], acc[t][3], pw);
        if (q >= 2) va = vb = 0.f;
        va = __fadd_rn(va, __shfl_xor_sync(0xffffffffu, va, 1));
        vb = __fadd_rn(vb, __shfl_xor_sync(0xffffffffu, vb, 1));
        va = __fadd_rn(va, __shfl_xor_sync(0xffffffffu, va, 2));
        vb = __fadd_rn(vb, __shfl_xor_sync(0xffffffffu, vb, 2));
        if (q == 0) red[t][warp][g] = va, red[t][warp][g + 8] = vb;
    }
    __syncthreads();
    const uint64_t r = (uint64_t)tile * 16 + threadIdx.x;  // PAIR: threads 16-31 the second tile
    if (threadIdx.x >= (PAIR ? 32 : 16) || r >= rows) return;
    if constexpr (PAIR) {
        const uint32_t t = threadIdx.x / 16;
        float sum = 0.f;
#pragma unroll
        for (uint32_t w = 0; w < W; w++) sum = __fadd_rn(sum, red[t][w][threadIdx.x % 16]);
        if (!GROUPED) sum = __fmul_rn(sum, __ldg(m.w[i].scales + r));  // per row
        mv_store(m, i, r, sum, sum, false);
    } else {
        float sum[MT];
#pragma unroll
        for (int t = 0; t < MT; t++) {
            sum[t] = 0.f;
#pragma unroll
            for (uint32_t w = 0; w < W; w++) sum[t] = __fadd_rn(sum[t], red[t][w][threadIdx.x]);
            if (!GROUPED) sum[t] = __fmul_rn(sum[t], __ldg(m.w[SW ? t : i].scales + r));  // per row
        }
        mv_store(m, i, r, sum[0], sum[MT - 1], SW);
    }
}

// The outputs of a block's 16-row tile from its warps' partial sums red[t][col][w][row] (matrix t,
// column col < ncols): each row's sum over the warps in warp order, scale(t, r, sum) applied, then
// stored: as columns of y (cols: SwiGLU of gate and up, or one matrix, accumulated when m.acc) or
// through mv_store (one token: the job's own output rules). Shared by the tensor-core kernels.
template <int MT, uint32_t W, int NT, typename Scale>
static __device__ __forceinline__ void mv_tile_out(const mv_job &m, uint32_t i, uint32_t tile,
                                                   uint64_t rows, const float (&red)[MT][NT][W][16],
                                                   uint32_t ncols, bool cols, Scale scale) {
    for (uint32_t e = threadIdx.x; e < 16 * ncols; e += 32 * W) {
        const uint32_t col = e / 16, rl = e % 16;
        const uint64_t r = (uint64_t)tile * 16 + rl;
        if (r >= rows) continue;
        float sum[MT];
#pragma unroll
        for (int t = 0; t < MT; t++) {
            sum[t] = 0.f;
#pragma unroll
            for (uint32_t w = 0; w < W; w++) sum[t] = __fadd_rn(sum[t], red[t][col][w][rl]);
            sum[t] = scale(t, r, sum[t]);
        }
        if (!cols) {
            mv_store(m, i, r, sum[0], sum[MT - 1], MT == 2);
        } else {
            float *y = m.y[i] + (uint64_t)col * m.ldy[i];
            if (MT == 2) y[r] = silu_mul(sum[0], sum[MT - 1]);
            else y[r] = m.acc ? y[r] + sum[0] : sum[0];
        }
    }
}

// ---- int8, several activation columns (batched decode) -------------------------------------------
//
// matvec_i8_kernel for n <= 2 NP columns: a second token's four digit planes fill B columns 4..7 of
// each MMA, so a pair of tokens costs what one does, and the weights are loaded once for all
// pairs. x is turned into B fragments once per launch by mv8_prep_kernel (not per block) into
// global scratch: pair p, chunk c: frag[(p nch + c) 32 + lane] (lanes 0-15: token 2p, 16-31: token
// 2p + 1, as mv8_quantize lays out one token), and 2^-k of token t in csc[t nch + c]. D lanes q = 0,
// 1 then hold token 2p's digit planes, q = 2, 3 token 2p + 1's; every rounding step is the one-token
// kernel's (mv8_fold, mv8_digits, the same warp and row order; its sum over the zero lanes, + 0,
// is spelled out), so column c is bit-identical to a one-token launch on x_c.
static __global__ void __launch_bounds__(256)
    mv8_prep_kernel(const float *__restrict__ x, uint64_t ldx, uint32_t n, uint32_t npad,
                    uint32_t nch, uint4 *frag, float *csc) {
    pdl_trigger();
    pdl_wait();
    const uint64_t quad = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / 4;
    const uint32_t q = threadIdx.x & 3;
    const bool in = quad < (uint64_t)npad * nch;  // every lane reaches the quad shuffles
    const uint32_t t = in ? (uint32_t)(quad / nch) : 0, c = in ? (uint32_t)(quad % nch) : 0;
    uint4 *ft = frag + (uint64_t)(t / 2) * nch * 32 + (t & 1) * 16;
    if (in && t >= n) {  // the pad column of an odd n: zero digits
#pragma unroll
        for (int di = 0; di < 4; di++) ft[(uint64_t)c * 32 + 4 * di + q] = make_uint4(0, 0, 0, 0);
        if (q == 0) csc[(uint64_t)t * nch + c] = 0.f;
    }
    const bool valid = in && t < n;
    mv8_quantize(x + (valid ? (uint64_t)t * ldx : 0), c, q, valid, ft, csc + (uint64_t)t * nch, 32);
}

// CC: the weights are CC_INT8 compute code, rebuilt per chunk by the one-token kernel's loader
// (cc8_words_tab from staged XOR tables, as matvec_i8_kernel's).
template <int MT, bool GROUPED, int NP, bool CC, uint32_t W>
static __global__ void __launch_bounds__(W * 32, MV8_MIN_BLOCKS(MT, GROUPED, W, false))
    matvec_i8_cols_kernel(const mv_job m, const uint4 *__restrict__ frag,
                          const float *__restrict__ csc, uint32_t n) {
    // CC: batches of 2 chunks, the next one in flight while this one is used (as matvec_i8_kernel's
    // compute code; PERF.md 7u: 4-9% faster at 4096^2 than 4-chunk batches loaded where used); raw:
    // batches of 4, each loaded where it is used.
    constexpr bool PIPE = CC;
    constexpr uint32_t U = (PIPE ? 2 : 4) / MT;
    __shared__ float red[MT][2 * NP][W][16];
    __shared__ uint2 ccx8t[CC ? CC8_XCAP : 1];  // CC: the tiles' staged XOR tables (cc8_stage)
    pdl_trigger();
    pdl_wait();
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t i = MT == 2 ? 0 : mv_pick(m, blockIdx.x);
    const uint32_t tile = blockIdx.x - (i ? m.block_end[i - 1] : 0);
    const uint64_t rows = m.w[i].rows, cols = m.w[i].cols;
    const uint32_t gs = m.w[i].group_size, nch = (uint32_t)(cols / MV8_COLS);
    const uint32_t nj = nch > warp ? (nch - warp + W - 1) / W : 0;
    const uint32_t np = (n + 1) / 2;
    const uint64_t gpr = (cols + gs - 1) / gs;
    const uint64_t ra = min((uint64_t)tile * 16 + g, rows - 1), rb = min(ra + 8, rows - 1);
    const uint4 *pa[MT], *pb[MT];  // CC: nibbles, bits 4-5 (as uint2) of block (tile, warp)
    const uint2 *fo[MT];           // CC: this lane's flag pair of (tile, warp)
    const uint16_t *ex[MT];        // CC: the side entries
    uint32_t xo[MT];               // CC, staged: list index of tile t's first side entry
    const uint2 *tb[MT];           // CC, staged: the XOR table of tile t
    const float *sa[MT], *sb[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        const uint32_t wi = MT == 2 ? t : i;
        const cllm_cuda_weight &w = m.w[wi];
        if (CC) {
            const uint8_t *base = (const uint8_t *)w.data;
            const uint64_t blk = (uint64_t)tile * nch + warp;
            pa[t] = (const uint4 *)(base + m.cc_off[wi][CLLM_CC8_S_NIB] + blk * 512) + lane;
            pb[t] = (const uint4 *)((const uint2 *)(base + m.cc_off[wi][CLLM_CC8_S_HI] + blk * 256) + lane);
            fo[t] = (const uint2 *)(base + m.cc_off[wi][CLLM_CC8_S_FLAGS]) + blk * 4 + lane / 8;
            ex[t] = (const uint16_t *)(base + m.cc_off[wi][CLLM_CC8_S_XHI]);
        } else {
            const uint8_t *base = (const uint8_t *)w.data + MV8_COLS * warp + 16 * q;
            pa[t] = (const uint4 *)(base + ra * cols), pb[t] = (const uint4 *)(base + rb * cols);
        }
        sa[t] = w.scales + ra * gpr, sb[t] = w.scales + rb * gpr;
    }
    float acc[MT][NP][4];
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int p = 0; p < NP; p++) acc[t][p][0] = acc[t][p][1] = acc[t][p][2] = acc[t][p][3] = 0.f;
    // INPLACE: each slot of (a, ws) is refilled with the next batch's chunk as soon as its words
    // are built (wd, wsd); else the next batch is loaded into (an, wn) at the top of each trip and
    // copied at its end. Measured per kernel (PERF.md 7ac): in place is faster for one matrix at
    // 8 columns (the copies would take 108 registers, 2 blocks per SM, where 80 fit 3: -20%) and
    // for one matrix of 8 warps at 1-2 columns (5%); copying is faster elsewhere (3-7%).
    constexpr bool INPLACE = PIPE && MT == 1 && (NP == 4 || (NP == 1 && W == MV8_WARPS));
    uint4 a[U][MT][2];
    float ws[U][MT][2];
    uint4 an[U][MT][2];  // (not INPLACE)
    float wn[U][MT][2];
    const mv8_src<MT> src = {pa, pb, fo, sa, sb};
    auto load1 = [&](uint32_t jj, uint32_t u, int t, auto &oa, auto &ow) {  // jj (< nj) to (u, t)
        mv8_load1<CC, GROUPED, W>(src, jj, t, warp, gs, oa[u][t], ow[u][t]);
    };
    auto load = [&](uint32_t j0, auto &oa, auto &ow) {  // chunks j0 .. j0 + U - 1 (those < nj)
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
#pragma unroll
            for (int t = 0; t < MT; t++) load1(j0 + u, u, t, oa, ow);
        }
    };
    if (PIPE && nj) load(0, a, ws);
    // CC: each tile's side entries staged as an XOR table (as matvec_i8_kernel's)
    const bool staged = CC && cc8_stage<MT, W>(fo, ex, nch, warp, lane, ccx8t, tb, xo);
    if (CC) __syncthreads();
    // The main loop; TB: the words from the staged XOR tables (block-uniform).
    auto run = [&](auto tb_tag) {
        constexpr bool TB = decltype(tb_tag)::value;
        for (uint32_t j0 = 0; j0 < nj; j0 += U) {
            if (!PIPE) load(j0, a, ws);
            if (PIPE && !INPLACE && j0 + U < nj) load(j0 + U, an, wn);
            uint4 wd[U][MT][2];  // the words in use (PIPE), once for every column pair
            float wsd[U][MT][2];
            if (PIPE)
#pragma unroll
                for (uint32_t u = 0; u < U; u++) {
                    if (j0 + u >= nj) break;
#pragma unroll
                    for (int t = 0; t < MT; t++) {
                        const uint4 nb = a[u][t][0], h = a[u][t][1];
                        if (CC && TB)
                            cc8_words_tab(nb, make_uint2(h.x, h.y), h.z, h.w - xo[t], tb[t], lane,
                                          wd[u][t][0], wd[u][t][1]);
                        else if (CC)
                            cc8_words(nb, make_uint2(h.x, h.y), h.z, h.w, ex[t], lane, wd[u][t][0],
                                      wd[u][t][1]);
                        else
                            wd[u][t][0] = nb, wd[u][t][1] = h;
                        wsd[u][t][0] = ws[u][t][0], wsd[u][t][1] = ws[u][t][1];
                        if (INPLACE && j0 + U + u < nj) load1(j0 + U + u, u, t, a, ws);  // slot free
                    }
                }
#pragma unroll
            for (uint32_t u = 0; u < U; u++) {
                if (j0 + u >= nj) break;
                const uint32_t c = warp + W * (j0 + u);
#pragma unroll
                for (int p = 0; p < NP; p++) {
                    if ((uint32_t)p >= np) break;
                    const uint4 b = __ldg(frag + ((uint64_t)p * nch + c) * 32 + lane);
                    const float s = __ldg(csc + (uint64_t)(2 * p + (q >> 1)) * nch + c);
#pragma unroll
                    for (int t = 0; t < MT; t++) {
                        const uint4 wa = PIPE ? wd[u][t][0] : a[u][t][0];
                        const uint4 wb = PIPE ? wd[u][t][1] : a[u][t][1];
                        const float w0 = PIPE ? wsd[u][t][0] : ws[u][t][0];
                        const float w1 = PIPE ? wsd[u][t][1] : ws[u][t][1];
                        int d[4] = {0, 0, 0, 0};
                        mma_s8(d, wa.x, wb.x, wa.y, wb.y, b.x, b.y);
                        mma_s8(d, wa.z, wb.z, wa.w, wb.w, b.z, b.w);
                        const float s0 = GROUPED ? s * w0 : s, s8 = GROUPED ? s * w1 : s;
                        mv8_fold(acc[t][p], d, s0, s8);
                    }
                }
            }
            if (PIPE && !INPLACE) mv8_take(a, ws, an, wn);
        }
    };
    if (staged)
        run(std::true_type{});
    else
        run(std::false_type{});
    const float pw = __int_as_float((127 + 16 * (int)(q & 1)) << 23);
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int p = 0; p < NP; p++) {
            if ((uint32_t)p >= np) break;
            float va = mv8_digits(acc[t][p][0], acc[t][p][1], pw);
            float vb = mv8_digits(acc[t][p][2], acc[t][p][3], pw);
            va = __fadd_rn(va, __shfl_xor_sync(0xffffffffu, va, 1));
            vb = __fadd_rn(vb, __shfl_xor_sync(0xffffffffu, vb, 1));
            va = __fadd_rn(va, 0.f), vb = __fadd_rn(vb, 0.f);  // the one-token kernel's zero lanes
            if ((q & 1) == 0)
                red[t][2 * p + (q >> 1)][warp][g] = va, red[t][2 * p + (q >> 1)][warp][g + 8] = vb;
        }
    __syncthreads();
    mv_tile_out<MT, W>(m, i, tile, rows, red, n, true, [&](int t, uint64_t r, float v) {
        return GROUPED ? v : __fmul_rn(v, __ldg(m.w[MT == 2 ? t : i].scales + r));  // per row
    });
}

// ---- bf16 on the tensor cores: raw bf16 and its compute code (CC_BF16) in one kernel -----------
//
// The bf16 matvec of matrices whose width is a multiple of 64 (raw BF16 and CC_BF16 alike, so that
// fused stays bit-identical to raw): m16n8k16 MMAs with fp32 accumulation. x is split exactly into
// three bf16 parts (hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid)), held in B columns
// 0-2 (one token) or 0-2 and 4-6 (two tokens per MMA: the column kernel). A block is MVB_WARPS
// warps on one 16-row tile (two, gate and up, in swiglu mode); warp w takes chunks of 64 columns w,
// w + MVB_WARPS, ...; per chunk lane (g, q) holds rows g and g + 8 at columns 8q..8q+7 and
// 32+8q..32+8q+7, four MMA blocks (cllm_ccode.h: cllm_ccb_col), and MMAs them in block order into
// one accumulator. Per warp a row is (hi + mid) + lo; the block's rows are the sum over warps in
// warp order (as the int8 kernel). Raw bf16 loads its rows as two 16-byte runs per row and chunk;
// CC_BF16 decodes the same registers from its bytes, code words and exceptions (below), so the
// MMAs see the same operands: the same results, bit for bit. PERF.md 7r has the probe behind it.
#ifndef MVB_WARPS
#define MVB_WARPS 8     // warps per 16-row tile (A/B knob: 16 halves the blocks of a long row)
#endif
#define MVB_FRAG 384  // bytes of x fragments per chunk and token: [half k][part g][lane q] uint4

// The three exact bf16 parts of x, as bits.
static __device__ __forceinline__ void bf16_split3(float x, uint32_t &hi, uint32_t &mid,
                                                   uint32_t &lo) {
    const __nv_bfloat16 h = __float2bfloat16_rn(x);
    const float r = __fsub_rn(x, __bfloat162float(h));
    const __nv_bfloat16 m = __float2bfloat16_rn(r);
    const __nv_bfloat16 l = __float2bfloat16_rn(__fsub_rn(r, __bfloat162float(m)));
    hi = __bfloat16_as_ushort(h), mid = __bfloat16_as_ushort(m), lo = __bfloat16_as_ushort(l);
}

// Columns 2 l, 2 l + 1 of a chunk of one token, v, into the chunk's fragments f (96 words): part g
// of columns 32 k + 8 q .. + 7 is uint4 (k 3 + g) 4 + q.
static __device__ __forceinline__ void mvb_frag_put(float2 v, uint32_t l, uint32_t *f) {
    uint32_t h0, m0, l0, h1, m1, l1;
    bf16_split3(v.x, h0, m0, l0);
    bf16_split3(v.y, h1, m1, l1);
    const uint32_t k = l / 16, q = (l % 16) / 4, wd = l % 4;
    f[((k * 3 + 0) * 4 + q) * 4 + wd] = h0 | h1 << 16;
    f[((k * 3 + 1) * 4 + q) * 4 + wd] = m0 | m1 << 16;
    f[((k * 3 + 2) * 4 + q) * 4 + wd] = l0 | l1 << 16;
}

// x of n tokens (pitch ldx) to fragments for the column kernel: token t, chunk c at
// frag + (t nch + c) MVB_FRAG / 16. One warp per (token, chunk).
static __global__ void __launch_bounds__(256)
    mvb_prep_kernel(const float *__restrict__ x, uint64_t ldx, uint32_t n, uint32_t nch,
                    uint4 *frag) {
    pdl_trigger();
    pdl_wait();
    const uint64_t u = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (u >= (uint64_t)n * nch) return;
    const uint32_t t = (uint32_t)(u / nch), c = (uint32_t)(u % nch);
    const float2 v = __ldg((const float2 *)(x + (uint64_t)t * ldx + (uint64_t)c * 64) + (threadIdx.x & 31));
    mvb_frag_put(v, threadIdx.x & 31, (uint32_t *)(frag + ((uint64_t)t * nch + c) * (MVB_FRAG / 16)));
}

template <int I0>
static __device__ __forceinline__ uint32_t ccb_bytes(uint32_t w) {  // bytes I0, I0 + 1, signs
    constexpr uint32_t sel = I0 | (8 | I0) << 4 | (I0 + 1) << 8 | (8 | (I0 + 1)) << 12;
    uint32_t r;
    asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r) : "r"(w), "n"(sel));
    return r;
}

// Register pair P (= 4 b + j) of a lane's chunk: bytes by, code words, addend (exponents << 7).
template <int P>
static __device__ __forceinline__ uint32_t ccb_reg(const uint4 (&by)[2], uint32_t w0, uint32_t w1,
                                                   uint32_t w2, uint32_t add) {
    constexpr int B = P / 4, J = P % 4;
    const uint4 v = by[B / 2];
    const uint32_t word = (B % 2) == 0 ? (J < 2 ? v.x : v.y) : (J < 2 ? v.z : v.w);
    const uint32_t u = (J % 2) == 0 ? ccb_bytes<0>(word) : ccb_bytes<2>(word);
    if (P == 15) return (u & 0x807f807fu) | ((cllm_ccb_codes(w0, w1, w2, P) << 7) + add);
    // Codes masked where they lie, then moved to bit 7 by the shift of a shift-and-add (one
    // IMAD or LEA.HI): the AND is opaque so that the compiler does not turn it into a shift,
    // a mask and an add (PERF.md 7z).
    constexpr int K = 3 * (P % 5), S = 7 - K;
    const uint32_t cw = P < 5 ? w0 : P < 10 ? w1 : w2;
    uint32_t cm;
    asm("and.b32 %0, %1, %2;" : "=r"(cm) : "r"(cw), "n"(0x00070007u << K));
    if constexpr (S >= 0) return (u & 0x807f807fu) | ((cm << S) + add);
    else return (u & 0x807f807fu) | ((cm >> -S) + add);
}

// A chunk's weights for the MMAs: a[b][j], block b, register j.
struct mvb_chunk {
    uint32_t a[4][4];
};

// One matrix's loads of one chunk: raw, rows g and g + 8 (two 16-byte runs each); CC_BF16, the
// lane's bytes and code words, and its exception entry (one per lane; the chunk's header was read
// a batch before: first entry, its successor's, the block counts).
struct mvb_ld {
    uint4 r[4];  // raw: row g run 0, 1, row g + 8 run 0, 1; CC: bytes (r[0], r[1]), words (r[2])
    uint32_t e0, tot, cn, ent;
};

// Row pointers and compute-code sections of one matrix for this lane.
// Cursors: each load (mvb_load) and each header read (mvb_header) moves its own to the warp's next
// chunk (MVB_WARPS on), so that the addresses are loop-carried registers, not recomputed.
struct mvb_src {
    const uint4 *ra, *rb;       // raw: rows g, g + 8 (16-byte units) at the next chunk to load
    const uint4 *bytes;         // CC: bytes of the next chunk to load, this lane
    const uint2 *cw;            // CC: its code words 0, 1, this lane
    const uint32_t *c2;         // CC: its code word 2, this lane
    const uint32_t *first, *counts;  // CC: the next header to read
    const uint16_t *exc;
};

// The cursors of one matrix for this lane, at chunk c0 of the tile.
template <bool CC>
static __device__ __forceinline__ mvb_src mvb_src_of(const cllm_cuda_weight &w, const uint64_t *off,
                                                     uint32_t tile, uint32_t c0, uint32_t g,
                                                     uint32_t lane) {
    const uint64_t rows = w.rows, cols = w.cols, nch = cols / 64;
    mvb_src o = {};
    if (CC) {
        const uint8_t *b = (const uint8_t *)w.data;
        const uint64_t ck = (uint64_t)tile * nch + c0;
        o.bytes = (const uint4 *)(b + off[CLLM_CCB_S_BYTES]) + ck * 64 + lane;
        o.cw = (const uint2 *)(b + off[CLLM_CCB_S_CODEW]) + ck * 32 + lane;
        o.c2 = (const uint32_t *)(b + off[CLLM_CCB_S_CODE2]) + ck * 32 + lane;
        o.first = (const uint32_t *)(b + off[CLLM_CCB_S_FIRST]) + ck;
        o.counts = (const uint32_t *)(b + off[CLLM_CCB_S_COUNTS]) + ck;
        o.exc = (const uint16_t *)(b + off[CLLM_CCB_S_EXC]);
    } else {
        const uint64_t ra = min((uint64_t)tile * 16 + g, rows - 1), rb = min(ra + 8, rows - 1);
        o.ra = (const uint4 *)((const uint16_t *)w.data + ra * cols) + (uint64_t)c0 * 8 + (lane & 3);
        o.rb = (const uint4 *)((const uint16_t *)w.data + rb * cols) + (uint64_t)c0 * 8 + (lane & 3);
    }
    return o;
}

// The next header of s (first entry, its successor's, block counts); the cursor moves on.
static __device__ __forceinline__ void mvb_header(mvb_src &s, uint2 &h, uint32_t &cn) {
    h = make_uint2(__ldg(s.first), __ldg(s.first + 1)), cn = __ldg(s.counts);
    s.first += MVB_WARPS, s.counts += MVB_WARPS;
}

// CC: the exception entries of a chunk (header h: its first entry and its successor's; block
// counts cn) into o: their count and this lane's entry.
static __device__ __forceinline__ void mvb_entries(const mvb_src &s, uint2 h, uint32_t cn,
                                                   uint32_t lane, mvb_ld &o) {
    o.e0 = h.x, o.tot = h.y - h.x, o.cn = cn;
    o.ent = lane < o.tot ? __ldg(s.exc + h.x + lane) : 0u;
}

// Loads the next chunk of s (CC: with its header h, read before); the cursor moves on.
template <bool CC>
static __device__ __forceinline__ void mvb_load(mvb_src &s, uint2 h, uint32_t cn, uint32_t lane,
                                                mvb_ld &o) {
    if (CC) {
        o.r[0] = ldg_stream(s.bytes), o.r[1] = ldg_stream(s.bytes + 32);
        const uint2 w = ldg_stream(s.cw);
        o.r[2] = make_uint4(w.x, w.y, ldg_stream(s.c2), 0u);
        mvb_entries(s, h, cn, lane, o);
        s.bytes += MVB_WARPS * 64, s.cw += MVB_WARPS * 32, s.c2 += MVB_WARPS * 32;
    } else {
        // (__ldg: raw bf16 without L1 allocation lost 8% tg, PERF.md 7ae)
        o.r[0] = __ldg(s.ra), o.r[1] = __ldg(s.ra + 4), o.r[2] = __ldg(s.rb), o.r[3] = __ldg(s.rb + 4);
        s.ra += MVB_WARPS * 8, s.rb += MVB_WARPS * 8;
    }
}

// The chunk's MMA operands from its loads. CC: tab is the warp's addend table (4 x 32 uint4, each
// lane's (base << 7 | base << 23) per register: u16 index 256 b + 8 l + 2 j + h, an entry's slot
// in block b; sbase the tile's 16 bases); the chunk's entries are stored over it, read back and
// restored (more than 32 entries: the rest read here).
template <bool CC>
static __device__ __forceinline__ void mvb_operands(const mvb_ld &d, const mvb_src &s, uint4 *tab,
                                                    const uint32_t *sbase, uint32_t lane,
                                                    mvb_chunk &o) {
    if (!CC) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const uint4 ga = d.r[b / 2], gb = d.r[2 + b / 2];
            o.a[b][0] = b % 2 ? ga.z : ga.x, o.a[b][2] = b % 2 ? ga.w : ga.y;
            o.a[b][1] = b % 2 ? gb.z : gb.x, o.a[b][3] = b % 2 ? gb.w : gb.y;
        }
        return;
    }
    uint16_t *t16 = (uint16_t *)tab;
    const uint32_t p1 = d.cn & 511u, p2 = p1 + (d.cn >> 9 & 511u), p3 = p2 + (d.cn >> 18 & 511u);
    // Entry e (en) of the chunk: its table index (block from the counts) and exponent field.
    auto slot = [&](uint32_t e, uint32_t en, uint32_t &sl, uint16_t &v) {
        const uint32_t b = (e >= p1) + (e >= p2) + (e >= p3);
        sl = b * 256 + (en & 255u), v = (uint16_t)((en >> 1) & 0x7f80u);
    };
    uint32_t sl = 0;
    uint16_t v = 0, rv = 0;
    const bool has = lane < d.tot;
    if (has) slot(lane, d.ent, sl, v);
    __syncwarp();  // the previous chunk's restores are done
    if (has) rv = t16[sl], t16[sl] = v;  // the addend, restored below
    for (uint32_t e = lane + 32; e < d.tot; e += 32) {  // beyond 32 entries (rare)
        uint32_t s2;
        uint16_t v2;
        slot(e, __ldg(s.exc + d.e0 + e), s2, v2);
        t16[s2] = v2;
    }
    __syncwarp();
    uint4 tw[4];
#pragma unroll
    for (int k = 0; k < 4; k++) tw[k] = tab[k * 32 + lane];
    __syncwarp();
    if (has) t16[sl] = rv;
    for (uint32_t e = lane + 32; e < d.tot; e += 32) {  // every entry's addend is its row's
        uint32_t s2;
        uint16_t v2;
        slot(e, __ldg(s.exc + d.e0 + e), s2, v2);
        const uint32_t r = (s2 & 255u) >> 5 | (s2 & 2u) << 2;  // row g + 8 (j & 1)
        t16[s2] = (uint16_t)(sbase[r] << 7);
    }
    const uint4 by[2] = {d.r[0], d.r[1]};
    const uint32_t w0 = d.r[2].x, w1 = d.r[2].y, w2 = d.r[2].z;
#define MVB_BLOCK(B)                                                                               \
    o.a[B][0] = ccb_reg<4 * B + 0>(by, w0, w1, w2, tw[B].x);                                       \
    o.a[B][1] = ccb_reg<4 * B + 1>(by, w0, w1, w2, tw[B].y);                                       \
    o.a[B][2] = ccb_reg<4 * B + 2>(by, w0, w1, w2, tw[B].z);                                       \
    o.a[B][3] = ccb_reg<4 * B + 3>(by, w0, w1, w2, tw[B].w);
    MVB_BLOCK(0) MVB_BLOCK(1) MVB_BLOCK(2) MVB_BLOCK(3)
#undef MVB_BLOCK
}

static __device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One chunk's four MMAs (block order) with fragments f0 (blocks 0, 1) and f1 (blocks 2, 3).
static __device__ __forceinline__ void mvb_mma(float (&d)[4], const mvb_chunk &c, uint4 f0, uint4 f1) {
    mma_bf16(d, c.a[0], f0.x, f0.y);
    mma_bf16(d, c.a[1], f0.z, f0.w);
    mma_bf16(d, c.a[2], f1.x, f1.y);
    mma_bf16(d, c.a[3], f1.z, f1.w);
}

// A warp's rows from its accumulator of one token whose parts sit in D columns 4s .. 4s + 2: the
// value of rows g (va) and g + 8 (vb) at lane q = 2s: (hi + mid) + lo.
static __device__ __forceinline__ void mvb_rows(const float (&d)[4], uint32_t q, uint32_t s2,
                                                float &va, float &vb) {
    va = q == s2 ? __fadd_rn(d[0], d[1]) : q == s2 + 1 ? d[0] : 0.f;
    vb = q == s2 ? __fadd_rn(d[2], d[3]) : q == s2 + 1 ? d[2] : 0.f;
    va = __fadd_rn(va, __shfl_xor_sync(0xffffffffu, va, 1));
    vb = __fadd_rn(vb, __shfl_xor_sync(0xffffffffu, vb, 1));
}

// NP == 0: one token, its fragments made by each warp in shared memory chunk by chunk (x's columns
// of a chunk loaded with its weights, split at its fold: a slot per chunk of a batch). NP > 0:
// n <= 2 NP tokens (the column kernel), fragments from mvb_prep_kernel (frag); token 2p + s of
// pair p in B columns 4s .. 4s + 2. Raw loads a batch of U chunks and then uses it; CC keeps the
// next chunk's loads in flight while it decodes this one (PERF.md 7t: +12.6% tg against loading
// each chunk where it is used; the same for raw, one chunk per batch, lost 1.6%), but for the
// gate/up column kernels of more than 2 tokens, where the second buffer spilled 72-264 bytes and
// loading each chunk where it is used is ~20% faster (PERF.md 7y). Dynamic shared
// memory: CC, MT x MVB_WARPS addend tables of 2 KiB; NP == 0, then the fragments (mvb_smem_bytes).
#define MVB_CC_MINB 2  // blocks per SM asked of ptxas for CC_BF16 (3: gate/up spills; 3 for one
                       // token and one matrix only, without spills: fused tg -7%, PERF.md 7x)
template <int MT, bool CC, int NP>
static __global__ void __launch_bounds__(MVB_WARPS * 32,
                                        ((CC ? MVB_CC_MINB : 3) * 8 + MVB_WARPS - 1) / MVB_WARPS)
    matvec_b16_kernel(const mv_job m, const float *__restrict__ x, const uint4 *__restrict__ frag,
                      uint32_t n) {
    constexpr uint32_t W = MVB_WARPS, U = CC || MT == 2 ? 1 : 2, NT = NP ? 2 * NP : 1;
    // CC: the next chunk's loads in flight while this one is decoded, except in the gate/up
    // column kernels of n > 2 tokens, where they spill (PERF.md 7y)
    constexpr bool PIPE = CC && !(MT == 2 && NP >= 2);
    extern __shared__ uint4 mvb_smem[];
    __shared__ float red[MT][NT][W][16];
    __shared__ uint32_t sbase[MT][16];
    pdl_trigger();
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t i = MT == 2 ? 0 : mv_pick(m, blockIdx.x);
    const uint32_t tile = blockIdx.x - (i ? m.block_end[i - 1] : 0);
    const uint64_t rows = m.w[i].rows, cols = m.w[i].cols;
    const uint32_t nch = (uint32_t)(cols / 64), nj = nch > warp ? (nch - warp + W - 1) / W : 0;
    uint4 *tab = mvb_smem + (size_t)warp * MT * 128;  // CC: this warp's tables
    uint32_t *fx = (uint32_t *)(mvb_smem + (CC ? (size_t)W * MT * 128 : 0));  // NP == 0
    mvb_src src[MT];
#pragma unroll
    for (int t = 0; t < MT; t++)
        src[t] = mvb_src_of<CC>(m.w[MT == 2 ? t : i], m.cc_off[MT == 2 ? t : i], tile, warp, g, lane);
    const bool pre = m.pre && !NP;
    if (!pre) pdl_wait();
    uint32_t bv = 0;  // CC: the tile's bases, in flight with the first loads
    if (CC && threadIdx.x < 16 * MT) {
        const uint32_t t = threadIdx.x / 16, wi = MT == 2 ? t : i;
        bv = __ldg((const uint8_t *)m.w[wi].data + m.cc_off[wi][CLLM_CCB_S_BASE] +
                   (uint64_t)tile * 16 + threadIdx.x % 16);
    }
    auto chunk = [&](uint32_t j) { return warp + W * j; };
    uint2 hn[U][MT];  // CC: headers (first, next first) of the next batch to load; counts
    uint32_t cn[U][MT];
    auto header = [&](uint32_t j0) {
#pragma unroll
        for (uint32_t u = 0; u < U; u++)
#pragma unroll
            for (int t = 0; t < MT; t++)
                if (CC && j0 + u < nj) mvb_header(src[t], hn[u][t], cn[u][t]);
    };
    // The batch being used (ld, xv) and, PIPE, the next one in flight meanwhile (ln, xn).
    mvb_ld ld[U][MT], ln[U][MT];
    float2 xv[U], xn[U];  // one token: this lane's columns 2 lane, 2 lane + 1 of each chunk
    const float2 *xc = (const float2 *)x + (size_t)warp * 32 + lane;  // (a cursor, as the loads)
    auto load = [&](uint32_t j0, mvb_ld (&o)[U][MT]) {
#pragma unroll
        for (uint32_t u = 0; u < U; u++)
#pragma unroll
            for (int t = 0; t < MT; t++)
                if (j0 + u < nj) mvb_load<CC>(src[t], hn[u][t], cn[u][t], lane, o[u][t]);
        header(j0 + U);
    };
    auto loadx = [&](uint32_t j0, float2 (&o)[U]) {
#pragma unroll
        for (uint32_t u = 0; u < U; u++)
            if (!NP && j0 + u < nj) o[u] = __ldg(xc), xc += W * 32;
    };
    header(0);
    if (nj) load(0, ld);  // in flight across the wait when resident
    if (pre) pdl_wait();
    loadx(0, xv);
    if (CC) {  // the bases, then each lane's addends
        if (threadIdx.x < 16 * MT) sbase[threadIdx.x / 16][threadIdx.x % 16] = bv;
        __syncthreads();
#pragma unroll
        for (int t = 0; t < MT; t++) {
            const uint32_t a = sbase[t][g], b = sbase[t][g + 8];
            const uint32_t fa = a << 7 | a << 23, fb = b << 7 | b << 23;
#pragma unroll
            for (int k = 0; k < 4; k++) tab[t * 128 + k * 32 + lane] = make_uint4(fa, fb, fa, fb);
        }
        __syncwarp();
    }
    float acc[MT][NP ? NP : 1][4] = {};
    for (uint32_t j0 = 0; j0 < nj; j0 += U) {
        if (PIPE) {
            if (j0 + U < nj) load(j0 + U, ln), loadx(j0 + U, xn);
        } else if (j0) {
            load(j0, ld), loadx(j0, xv);
        }
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
            const uint32_t c = chunk(j0 + u);
            uint32_t *fc = fx + (size_t)(warp * U + u) * (MVB_FRAG / 4);
            if (!NP) {  // the chunk's fragments into this warp's slot u
                __syncwarp();  // the slot's previous chunk is read
                mvb_frag_put(xv[u], lane, fc);
                __syncwarp();
            }
#pragma unroll
            for (int t = 0; t < MT; t++) {
                mvb_chunk op;
                mvb_operands<CC>(ld[u][t], src[t], tab + t * 128, sbase[t], lane, op);
                if (!NP) {
                    const uint4 *f = (const uint4 *)fc;
                    const uint4 z = make_uint4(0, 0, 0, 0);
                    const uint4 f0 = g < 3 ? f[g * 4 + q] : z, f1 = g < 3 ? f[(3 + g) * 4 + q] : z;
                    mvb_mma(acc[t][0], op, f0, f1);
                } else {
#pragma unroll
                    for (int p = 0; p < (NP ? NP : 1); p++) {
                        if ((uint32_t)(2 * p) >= n) break;
                        const uint32_t tok = 2 * p + (g >> 2), part = g & 3;
                        const uint4 z = make_uint4(0, 0, 0, 0);
                        const uint4 *f = frag + ((uint64_t)tok * nch + c) * (MVB_FRAG / 16);
                        const bool in = part < 3 && tok < n;
                        const uint4 f0 = in ? __ldg(f + part * 4 + q) : z;
                        const uint4 f1 = in ? __ldg(f + (3 + part) * 4 + q) : z;
                        mvb_mma(acc[t][p], op, f0, f1);
                    }
                }
            }
        }
        if (PIPE) {
#pragma unroll
            for (uint32_t u = 0; u < U; u++) {
                xv[u] = xn[u];
#pragma unroll
                for (int t = 0; t < MT; t++) ld[u][t] = ln[u][t];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int p = 0; p < (NP ? NP : 1); p++)
#pragma unroll
            for (uint32_t s2 = 0; s2 < (NP ? 2u : 1u); s2++) {
                if (NP && 2 * p + s2 >= n) break;
                float va, vb;
                mvb_rows(acc[t][p], q, 2 * s2, va, vb);
                if (q == 2 * s2) red[t][2 * p + s2][warp][g] = va, red[t][2 * p + s2][warp][g + 8] = vb;
            }
    __syncthreads();
    mv_tile_out<MT, W>(m, i, tile, rows, red, NP ? n : 1, NP > 0,
                       [](int, uint64_t, float v) { return v; });
}

// CC_BF16 back to bf16 rows (prefill's GEMM reads them): a block per 16-row tile, warp w taking
// chunks w, w + MVB_WARPS, ... as the fused kernel does, with the next chunk's loads in flight
// while this one is decoded (headers one more ahead); each register pair to its two columns.
static __global__ void __launch_bounds__(MVB_WARPS * 32) ccb_unpack_kernel(const cc_unpack_args a) {
    __shared__ uint4 tabs[MVB_WARPS][128];
    __shared__ uint32_t sbase[16];
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t nch = (uint32_t)(a.w.cols / 64), tile = (uint32_t)(a.r0 / 16) + blockIdx.x;
    const uint64_t end = a.r0 + a.n_rows;
    if (threadIdx.x < 16)
        sbase[threadIdx.x] = __ldg((const uint8_t *)a.w.data + a.off[CLLM_CCB_S_BASE] +
                                   (uint64_t)tile * 16 + threadIdx.x);
    __syncthreads();
    const uint32_t ba = sbase[g], bb = sbase[g + 8];
    const uint32_t fa = ba << 7 | ba << 23, fb = bb << 7 | bb << 23;
#pragma unroll
    for (int k = 0; k < 4; k++) tabs[warp][k * 32 + lane] = make_uint4(fa, fb, fa, fb);
    mvb_src s = mvb_src_of<true>(a.w, a.off, tile, warp, g, lane);
    const uint32_t nj = nch > warp ? (nch - warp + MVB_WARPS - 1) / MVB_WARPS : 0;
    uint2 h = make_uint2(0, 0);
    uint32_t cn = 0;
    mvb_ld cur, nxt;
    if (nj) mvb_header(s, h, cn), mvb_load<true>(s, h, cn, lane, cur);
    if (nj > 1) mvb_header(s, h, cn);
    uint16_t *dst = (uint16_t *)a.dst;
    const uint64_t ra = (uint64_t)tile * 16 + g, rb = ra + 8;
    for (uint32_t j = 0; j < nj; j++) {
        const uint32_t c = warp + MVB_WARPS * j;
        if (j + 1 < nj) {
            mvb_load<true>(s, h, cn, lane, nxt);
            if (j + 2 < nj) mvb_header(s, h, cn);
        }
        mvb_chunk op;
        mvb_operands<true>(cur, s, tabs[warp], sbase, lane, op);
        // Row g: blocks 0, 1 -> columns 8q..8q+7, blocks 2, 3 -> 32+8q..; row g + 8 likewise.
        const uint64_t c0 = (uint64_t)c * 64 + 8 * q;
        if (ra < end) {
            uint4 *o = (uint4 *)(dst + (ra - a.r0) * a.w.cols + c0);
            o[0] = make_uint4(op.a[0][0], op.a[0][2], op.a[1][0], op.a[1][2]);
            o[4] = make_uint4(op.a[2][0], op.a[2][2], op.a[3][0], op.a[3][2]);
        }
        if (rb < end) {
            uint4 *o = (uint4 *)(dst + (rb - a.r0) * a.w.cols + c0);
            o[0] = make_uint4(op.a[0][1], op.a[0][3], op.a[1][1], op.a[1][3]);
            o[4] = make_uint4(op.a[2][1], op.a[2][3], op.a[3][1], op.a[3][3]);
        }
        cur = nxt;
    }
}

// ---- matvec launchers ----------------------------------------------------------------------------

static cllm_status check_weight(const cllm_cuda_weight *w, const char *who) {
    RETURN_IF(!w || !w->data || w->rows == 0 || w->cols == 0, CLLM_ERR_ARG, "%s: empty weight",
              who);
    RETURN_IF(w->kind > CLLM_CUDA_W_CC_F16, CLLM_ERR_ARG, "%s: unknown weight kind %u", who,
              w->kind);
    RETURN_IF((w->kind == CLLM_CUDA_W_INT8 || w->kind == CLLM_CUDA_W_CC_INT8) &&
                  (!w->scales || w->group_size == 0 || w->group_size > w->cols),
              CLLM_ERR_ARG, "%s: int8 weight needs scales and 1 <= group_size <= cols", who);
    RETURN_IF(w->rows > 0x7fffffffull * MV_WARPS || w->cols >= (1ull << 32), CLLM_ERR_UNSUPPORTED,
              "%s: weight of %llu x %llu too large", who, (unsigned long long)w->rows,
              (unsigned long long)w->cols);
    return CLLM_OK;
}

static size_t wkind_size(uint32_t kind) {
    return kind == CLLM_CUDA_W_F32 ? 4 : kind == CLLM_CUDA_W_INT8 ? 1 : 2;
}

static bool is_ccode(uint32_t kind) {
    return kind == CLLM_CUDA_W_CC_BF16 || kind == CLLM_CUDA_W_CC_INT8 || kind == CLLM_CUDA_W_CC_F16;
}

// The row-vector compute code (f16: the per-row and column kernels' loader, cc16_rows).
static bool is_cc16(uint32_t kind) { return kind == CLLM_CUDA_W_CC_F16; }

// Whether the tensor-core bf16 kernels take w with x at x (raw BF16 of a multiple of 64 columns:
// always, so that CC_BF16, which only they read, stays bit-identical to it).
static bool mvb_ok(const cllm_cuda_weight *w, const float *x) {
    return (w->kind == CLLM_CUDA_W_BF16 || w->kind == CLLM_CUDA_W_CC_BF16) && w->cols % 64 == 0 &&
           (uintptr_t)w->data % 16 == 0 && (uintptr_t)x % 16 == 0;
}

// Dynamic shared memory of matvec_b16_kernel: CC addend tables, then (one token) x's fragments.
static size_t mvb_smem_bytes(const cllm_cuda_weight *w, int mt, bool one_token) {
    const bool cc = w->kind == CLLM_CUDA_W_CC_BF16;
    const size_t frags = (size_t)MVB_WARPS * (cc || mt == 2 ? 1 : 2) * MVB_FRAG;  // a slot per
                                                                               // chunk of a batch
    return (cc ? (size_t)MVB_WARPS * mt * 2048 : 0) + (one_token ? frags : 0);
}

template <int MT, bool CC, int NP>
static cudaError_t mvb_launch_k(const mv_job &m, const float *x, const uint4 *frag, uint32_t n,
                                unsigned blocks, cudaStream_t s, unsigned flags) {
    const size_t smem = mvb_smem_bytes(&m.w[0], MT, NP == 0);
    auto k = matvec_b16_kernel<MT, CC, NP>;
    if (smem > 32 * 1024) {  // (static: the rows' partial sums, at most 16 KiB)
        const cudaError_t e =
            cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return launch_k(k, dim3(blocks), dim3(MVB_WARPS * 32), smem, s, flags, m, x, frag, n);
}

template <int MT, int NP>
static cudaError_t mvb_launch(const mv_job &m, const float *x, const uint4 *frag, uint32_t n,
                              unsigned blocks, cudaStream_t s, unsigned flags) {
    return m.w[0].kind == CLLM_CUDA_W_CC_BF16
               ? mvb_launch_k<MT, true, NP>(m, x, frag, n, blocks, s, flags)
               : mvb_launch_k<MT, false, NP>(m, x, frag, n, blocks, s, flags);
}

// Section offsets of a compute-code view (its code's layout: shape, kind, group size).
static cllm_status cc_offsets(const cllm_cuda_weight *w, uint64_t *off, cllm_ccode_layout *lay_out,
                              const char *who) {
    const bool b16 = w->kind == CLLM_CUDA_W_CC_BF16 || w->kind == CLLM_CUDA_W_CC_F16;
    const cllm_ccode_info in = {w->kind == CLLM_CUDA_W_CC_BF16  ? (uint32_t)CLLM_CCODE_BF16
                                : w->kind == CLLM_CUDA_W_CC_F16 ? (uint32_t)CLLM_CCODE_F16
                                                                : (uint32_t)CLLM_CCODE_INT8,
                                b16 ? 0u : w->group_size, w->rows, w->cols, 0};
    cllm_ccode_layout lay;
    RETURN_IF(cllm_ccode_layout_of(&in, &lay) != 0, CLLM_ERR_ARG, "%s: bad compute code", who);
    for (int k = 0; off && k < CLLM_CCODE_MAX_SECTIONS; k++) off[k] = lay.off[k];
    if (lay_out) *lay_out = lay;
    return CLLM_OK;
}

// The 16-byte-vector kernels' requirements (see matvec_vec_kernel).
static bool mv_vec_ok(const cllm_cuda_weight *w, const float *x) {
    if (is_cc16(w->kind))
        return w->cols % 8 == 0 && (uintptr_t)w->data % 16 == 0 && (uintptr_t)x % 16 == 0;
    return (size_t)w->cols * wkind_size(w->kind) % 16 == 0 && (uintptr_t)w->data % 16 == 0 &&
           (uintptr_t)x % 16 == 0 && (w->kind != CLLM_CUDA_W_INT8 || w->group_size % 16 == 0);
}

// Warps per block of the int8 matvecs (one-token and column kernels alike, so that a column
// equals its one-token launch) for a job of `blocks` 16-row tiles: MV8_WARPS_MAX when MV8_WARPS
// would leave block slots empty (fewer than two tiles per SM: a 4096-row matrix on a 132-SM GPU
// runs 256 blocks where 3 of 8 warps fit per SM, 0.65 waves; ncu, PERF.md 7j), else MV8_WARPS.
// The engine forms the same jobs for one token and for columns (q/k/v, gate/up, Wo, down), so a
// matrix gets the same W in both.
static unsigned mv8_warps(unsigned blocks) {
    static const int n_sm = [] {
        int dev = 0, n = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return 0;
        return n;
    }();
    return n_sm > 0 && blocks <= 2u * (unsigned)n_sm ? MV8_WARPS_MAX : MV8_WARPS;
}

// Shared memory of matvec_i8_kernel for w, or 0 when it cannot take w (shape, groups, or more
// shared memory than a block of this device may have).
static size_t mv8_smem_bytes(const cllm_cuda_weight *w) {
    const bool cc = w->kind == CLLM_CUDA_W_CC_INT8;
    if ((w->kind != CLLM_CUDA_W_INT8 && !cc) || w->cols % MV8_COLS ||
        (w->group_size != w->cols && w->group_size % MV8_COLS))
        return 0;
    const size_t bytes = (size_t)(w->cols / MV8_COLS) * MV8_CHUNK_SMEM;
    const size_t stat = MV8_WARPS_MAX * 16 * 2 * sizeof(float) + (cc ? CC8_XCAP * 8 : 0);
    if (bytes + stat <= 48 * 1024) return bytes;
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess)
        return 0;
    return bytes + stat <= (size_t)optin ? bytes : 0;
}

template <int MT, bool GROUPED, bool CC>
static cudaError_t mv8_launch(const mv_job &m, const float *x, unsigned blocks, size_t smem,
                              cudaStream_t s, unsigned flags) {
    const bool wide = mv8_warps(blocks) == MV8_WARPS_MAX;
    auto k = wide ? matvec_i8_kernel<MT, GROUPED, CC, MV8_WARPS_MAX>
                  : matvec_i8_kernel<MT, GROUPED, CC, MV8_WARPS>;
    if (smem > 48 * 1024 - (CC ? CC8_XCAP * 8 : 0) - MT * MV8_WARPS_MAX * 64) {
        const cudaError_t e =
            cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return launch_k(k, dim3(blocks), dim3((wide ? MV8_WARPS_MAX : MV8_WARPS) * 32), smem, s, flags,
                    m, x);
}

// A one-matrix compute-code job (per-row scales) of `blocks` tiles that runs 8 warps per tile, as
// blocks of two tiles (matvec_i8_kernel's PAIR: PERF.md 7ad): block_end becomes pairs per matrix
// and *pairs the grid. Returns false, m untouched, for any other job (raw int8 keeps one tile a
// block: the rows' sums are the same either way).
static bool mv8_pair_job(mv_job &m, int n, unsigned blocks, unsigned *pairs) {
    if (mv8_warps(blocks) != MV8_WARPS || m.w[0].kind != CLLM_CUDA_W_CC_INT8 ||
        m.w[0].group_size < m.w[0].cols)
        return false;
    uint32_t b = 0;
    for (int i = 0; i < CLLM_CUDA_MATVEC_MAX; i++) {
        if (i < n) b += (uint32_t)((m.w[i].rows + 31) / 32);
        m.block_end[i] = b;
    }
    *pairs = b;
    return true;
}

template <int MT, bool GROUPED>
static cudaError_t mv8_launch_cc(bool cc, const mv_job &m, const float *x, unsigned blocks,
                                 size_t smem, cudaStream_t s, unsigned flags) {
    return cc ? mv8_launch<MT, GROUPED, true>(m, x, blocks, smem, s, flags)
              : mv8_launch<MT, GROUPED, false>(m, x, blocks, smem, s, flags);
}

template <bool SW>
static cudaError_t mv_vec_launch(uint32_t kind, const mv_job &m, const float *x, unsigned blocks,
                                 cudaStream_t s, unsigned flags) {
    const dim3 grid(blocks), block(MV_WARPS * 32);
    const size_t sm = 0;
    switch (kind) {
    case CLLM_CUDA_W_F32:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_F32, SW>, grid, block, sm, s, flags, m, x);
    case CLLM_CUDA_W_F16:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_F16, SW>, grid, block, sm, s, flags, m, x);
    case CLLM_CUDA_W_BF16:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_BF16, SW>, grid, block, sm, s, flags, m, x);
    case CLLM_CUDA_W_CC_F16:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_CC_F16, SW>, grid, block, sm, s, flags, m,
                        x);
    default:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_INT8, SW>, grid, block, sm, s, flags, m, x);
    }
}

// Launches a job of n checked matrices (same kind, cols and group size; swiglu: n == 2, same
// rows): picks the kernel, fills block_end.
static cllm_status mv_launch(mv_job *m, int n, const float *x, bool swiglu, unsigned flags,
                             void *stream, const char *who) {
    bool vec = true, mvb = true;
    for (int i = 0; i < n; i++) vec = vec && mv_vec_ok(&m->w[i], x), mvb = mvb && mvb_ok(&m->w[i], x);
    const size_t smem = vec ? mv8_smem_bytes(&m->w[0]) : 0;
    const uint32_t kind = m->w[0].kind;
    if (is_ccode(kind)) {  // only the fused kernels read a compute code
        RETURN_IF(kind == CLLM_CUDA_W_CC_BF16 ? !mvb : is_cc16(kind) ? !vec : !smem,
                  CLLM_ERR_UNSUPPORTED,
                  "%s: compute code of %llu columns (group %u) with x at %p: no fused kernel", who,
                  (unsigned long long)m->w[0].cols, m->w[0].group_size, (const void *)x);
        for (int i = 0; i < n; i++) TRY(cc_offsets(&m->w[i], m->cc_off[i], NULL, who));
    }
    const uint64_t rpb = smem || mvb ? 16 : MV_WARPS;
    uint64_t blocks = 0;
    for (int i = 0; i < CLLM_CUDA_MATVEC_MAX; i++) {
        if (i < (swiglu ? 1 : n)) blocks += (m->w[i].rows + rpb - 1) / rpb;
        m->block_end[i] = (uint32_t)blocks;
    }
    RETURN_IF(blocks > 0x7fffffffull, CLLM_ERR_UNSUPPORTED, "%s: %llu blocks", who,
              (unsigned long long)blocks);
    cudaStream_t s = CLLM_STREAM(stream);
    m->pre = (flags & CLLM_CUDA_RESIDENT) != 0;
    const unsigned nb = (unsigned)blocks;
    const dim3 block(MV_WARPS * 32);
    cudaError_t e;
    if (mvb) {
        e = swiglu ? mvb_launch<2, 0>(*m, x, nullptr, 1, nb, s, flags)
                   : mvb_launch<1, 0>(*m, x, nullptr, 1, nb, s, flags);
    } else if (smem) {
        const bool grouped = m->w[0].group_size < m->w[0].cols;
        const bool cc = m->w[0].kind == CLLM_CUDA_W_CC_INT8;
        unsigned pairs = 0;
        if (!swiglu && mv8_pair_job(*m, n, nb, &pairs)) {
            auto k = matvec_i8_kernel<2, false, true, MV8_WARPS, true>;
            e = cudaSuccess;
            if (smem > 48 * 1024 - CC8_XCAP * 8 - 2 * MV8_WARPS_MAX * 64)
                e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
            if (e == cudaSuccess)
                e = launch_k(k, dim3(pairs), dim3(MV8_WARPS * 32), smem, s, flags, *m, x);
        } else {
            e = swiglu ? (grouped ? mv8_launch_cc<2, true>(cc, *m, x, nb, smem, s, flags)
                                  : mv8_launch_cc<2, false>(cc, *m, x, nb, smem, s, flags))
                       : (grouped ? mv8_launch_cc<1, true>(cc, *m, x, nb, smem, s, flags)
                                  : mv8_launch_cc<1, false>(cc, *m, x, nb, smem, s, flags));
        }
    } else if (!vec) {
        e = swiglu ? launch_k(matvec_any_kernel<true>, dim3(nb), block, 0, s, flags, *m, x)
                   : launch_k(matvec_any_kernel<false>, dim3(nb), block, 0, s, flags, *m, x);
    } else if (swiglu) {
        e = mv_vec_launch<true>(m->w[0].kind, *m, x, nb, s, flags);
    } else {
        e = mv_vec_launch<false>(m->w[0].kind, *m, x, nb, s, flags);
    }
    CLLM_CUDA_CHECK_LAUNCH_EX(e, who);
    return CLLM_OK;
}

// Checks w[0..n) as one job: each a valid weight, all of w[0]'s kind, cols and (int8) group size;
// same_rows: rows equal too.
static cllm_status check_job(const cllm_cuda_weight *w, int n, bool same_rows, const char *who) {
    for (int i = 0; i < n; i++) {
        TRY(check_weight(&w[i], who));
        RETURN_IF(w[i].kind != w[0].kind || w[i].cols != w[0].cols ||
                      (w[0].kind == CLLM_CUDA_W_INT8 && w[i].group_size != w[0].group_size) ||
                      (same_rows && w[i].rows != w[0].rows),
                  CLLM_ERR_ARG, "%s: weight %d differs from weight 0 in kind, shape or groups",
                  who, i);
    }
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_matvec_ex(const cllm_cuda_weight *w, const float *x_dev,
                                           float *y_dev, int accumulate, unsigned flags,
                                           void *stream) {
    TRY(check_weight(w, "matvec"));
    RETURN_IF(!x_dev || !y_dev, CLLM_ERR_ARG, "matvec: NULL vector");
    mv_job m = {};
    m.w[0] = *w, m.y[0] = y_dev, m.acc = accumulate != 0;
    return mv_launch(&m, 1, x_dev, false, flags, stream, "matvec");
}

extern "C" cllm_status cllm_cuda_matvec(const cllm_cuda_weight *w, const float *x_dev,
                                        float *y_dev, int accumulate, void *stream) {
    return cllm_cuda_matvec_ex(w, x_dev, y_dev, accumulate, 0, stream);
}

extern "C" cllm_status cllm_cuda_matvec_multi(const cllm_cuda_weight *w, int n_w,
                                              const float *x_dev, float *const *y_dev,
                                              void *stream) {
    return cllm_cuda_matvec_multi_ex(w, n_w, x_dev, y_dev, 0, stream);
}

extern "C" cllm_status cllm_cuda_matvec_multi_ex(const cllm_cuda_weight *w, int n_w,
                                                 const float *x_dev, float *const *y_dev,
                                                 unsigned flags, void *stream) {
    RETURN_IF(!w || !x_dev || !y_dev || n_w < 1 || n_w > CLLM_CUDA_MATVEC_MAX, CLLM_ERR_ARG,
              "matvec_multi: bad argument (n_w %d, at most %d)", n_w, CLLM_CUDA_MATVEC_MAX);
    TRY(check_job(w, n_w, false, "matvec_multi"));
    mv_job m = {};
    for (int i = 0; i < n_w; i++) {
        RETURN_IF(!y_dev[i], CLLM_ERR_ARG, "matvec_multi: NULL output %d", i);
        m.w[i] = w[i], m.y[i] = y_dev[i];
    }
    return mv_launch(&m, n_w, x_dev, false, flags, stream, "matvec_multi");
}

extern "C" cllm_status cllm_cuda_matvec_swiglu(const cllm_cuda_weight *gate,
                                               const cllm_cuda_weight *up, const float *x_dev,
                                               float *out_dev, void *stream) {
    return cllm_cuda_matvec_swiglu_ex(gate, up, x_dev, out_dev, 0, stream);
}

extern "C" cllm_status cllm_cuda_matvec_swiglu_ex(const cllm_cuda_weight *gate,
                                                  const cllm_cuda_weight *up, const float *x_dev,
                                                  float *out_dev, unsigned flags, void *stream) {
    RETURN_IF(!gate || !up || !x_dev || !out_dev, CLLM_ERR_ARG, "matvec_swiglu: NULL pointer");
    const cllm_cuda_weight w[2] = {*gate, *up};
    TRY(check_job(w, 2, true, "matvec_swiglu"));
    mv_job m = {};
    m.w[0] = w[0], m.w[1] = w[1], m.y[0] = out_dev;
    return mv_launch(&m, 2, x_dev, true, flags, stream, "matvec_swiglu");
}

template <int KIND, bool SW>
static cudaError_t mv_cols_launch(uint32_t n, const mv_job &m, const float *x, uint64_t ldx,
                                  unsigned blocks, cudaStream_t s) {
    const dim3 grid(blocks), block(MV_WARPS * 32);
    if (n <= 2) return launch_k(matvec_cols_kernel<KIND, 2, SW>, grid, block, 0, s, 0u, m, x, ldx, n);
    if (n <= 4) return launch_k(matvec_cols_kernel<KIND, 4, SW>, grid, block, 0, s, 0u, m, x, ldx, n);
    return launch_k(matvec_cols_kernel<KIND, 8, SW>, grid, block, 0, s, 0u, m, x, ldx, n);
}

template <bool SW>
static cudaError_t mv_cols_kind(uint32_t n, const mv_job &m, const float *x, uint64_t ldx,
                                unsigned blocks, cudaStream_t s) {
    switch (m.w[0].kind) {
    case CLLM_CUDA_W_BF16: return mv_cols_launch<CLLM_CUDA_W_BF16, SW>(n, m, x, ldx, blocks, s);
    case CLLM_CUDA_W_F16: return mv_cols_launch<CLLM_CUDA_W_F16, SW>(n, m, x, ldx, blocks, s);
    default: return mv_cols_launch<CLLM_CUDA_W_CC_F16, SW>(n, m, x, ldx, blocks, s);
    }
}

template <int MT, bool GROUPED, bool CC, uint32_t W>
static cudaError_t mv8_cols_launch_w(uint32_t n, const mv_job &m, const uint4 *frag,
                                     const float *csc, unsigned blocks, cudaStream_t s) {
    const dim3 grid(blocks), block(W * 32);
    if (n <= 2)
        return launch_k(matvec_i8_cols_kernel<MT, GROUPED, 1, CC, W>, grid, block, 0, s, 0u, m,
                        frag, csc, n);
    if (n <= 4)
        return launch_k(matvec_i8_cols_kernel<MT, GROUPED, 2, CC, W>, grid, block, 0, s, 0u, m,
                        frag, csc, n);
    return launch_k(matvec_i8_cols_kernel<MT, GROUPED, 4, CC, W>, grid, block, 0, s, 0u, m, frag,
                    csc, n);
}

template <int MT, bool GROUPED, bool CC>
static cudaError_t mv8_cols_launch_cc(uint32_t n, const mv_job &m, const uint4 *frag,
                                      const float *csc, unsigned blocks, cudaStream_t s) {
    return mv8_warps(blocks) == MV8_WARPS_MAX
               ? mv8_cols_launch_w<MT, GROUPED, CC, MV8_WARPS_MAX>(n, m, frag, csc, blocks, s)
               : mv8_cols_launch_w<MT, GROUPED, CC, MV8_WARPS>(n, m, frag, csc, blocks, s);
}

template <int MT, bool GROUPED>
static cudaError_t mv8_cols_launch(uint32_t n, const mv_job &m, const uint4 *frag,
                                   const float *csc, unsigned blocks, cudaStream_t s) {
    return m.w[0].kind == CLLM_CUDA_W_CC_INT8
               ? mv8_cols_launch_cc<MT, GROUPED, true>(n, m, frag, csc, blocks, s)
               : mv8_cols_launch_cc<MT, GROUPED, false>(n, m, frag, csc, blocks, s);
}

extern "C" cllm_status cllm_cuda_ccode_unpack_rows(const cllm_cuda_weight *w, uint64_t r0,
                                                   uint64_t n_rows, int bf16, void *dst,
                                                   size_t dst_bytes, cllm_cuda_weight *out,
                                                   void *stream) {
    static const char *who = "cllm_cuda_ccode_unpack_rows";
    TRY(check_weight(w, who));
    RETURN_IF(!is_ccode(w->kind), CLLM_ERR_ARG, "%s: weight kind %u is not compute code", who,
              w->kind);
    const bool ccb = w->kind == CLLM_CUDA_W_CC_BF16;  // bf16 rows out, tiles of 16 rows
    const bool b16 = is_cc16(w->kind) || ccb;         // bf16 or f16 rows out
    const uint64_t esz = b16 || bf16 ? 2 : 1;
    RETURN_IF(n_rows == 0 || r0 >= w->rows || n_rows > w->rows - r0 || ((!b16 || ccb) && r0 % 16),
              CLLM_ERR_ARG, "%s: rows [%llu, +%llu) of %llu", who, (unsigned long long)r0,
              (unsigned long long)n_rows, (unsigned long long)w->rows);
    RETURN_IF(!out || !dst || (uintptr_t)dst % 16 || dst_bytes / esz / w->cols < n_rows,
              CLLM_ERR_ARG, "%s: destination of %zu bytes at %p for %llu x %llu", who, dst_bytes,
              dst, (unsigned long long)n_rows, (unsigned long long)w->cols);
    RETURN_IF(b16 && !ccb ? w->cols % 8 != 0 : w->cols % MV8_COLS != 0, CLLM_ERR_UNSUPPORTED,
              "%s: compute code of %llu columns", who, (unsigned long long)w->cols);
    cc_unpack_args a = {};
    a.w = *w;
    TRY(cc_offsets(w, a.off, NULL, who));
    a.r0 = r0, a.n_rows = n_rows, a.bf16 = !b16 && bf16;
    a.n_units = b16 && !ccb ? n_rows : (n_rows + 15) / 16 * (w->cols / MV8_COLS);
    a.dst = dst;
    const uint64_t blocks = (a.n_units + MV_WARPS - 1) / MV_WARPS;
    RETURN_IF(blocks > 0x7fffffffull, CLLM_ERR_UNSUPPORTED, "%s: %llu blocks", who,
              (unsigned long long)blocks);
    cudaStream_t s = CLLM_STREAM(stream);
    if (w->kind == CLLM_CUDA_W_CC_F16) {
        cc16_unpack_kernel<<<(unsigned)blocks, MV_WARPS * 32, 0, s>>>(a);
    } else if (ccb) {  // a block per tile
        const uint64_t tiles = (n_rows + 15) / 16;
        RETURN_IF(w->rows > 0xffffffffull - 16 || tiles > 0x7fffffffull, CLLM_ERR_UNSUPPORTED,
                  "%s: %llu rows", who, (unsigned long long)w->rows);
        ccb_unpack_kernel<<<(unsigned)tiles, MVB_WARPS * 32, 0, s>>>(a);
    } else {
        RETURN_IF(w->rows > 0xffffffffull - 16 || a.n_units > 0xffffffffull - 65536ull * MV_WARPS,
                  CLLM_ERR_UNSUPPORTED, "%s: %llu rows", who, (unsigned long long)w->rows);
        const unsigned nb = (unsigned)(blocks < 65536 ? blocks : 65536);
        if (a.bf16) cc8_unpack_kernel<true><<<nb, MV_WARPS * 32, 0, s>>>(a);
        else cc8_unpack_kernel<false><<<nb, MV_WARPS * 32, 0, s>>>(a);
    }
    CLLM_CUDA_CHECK_LAUNCH_EX(cudaGetLastError(), who);
    *out = *w;
    out->data = dst;
    out->rows = n_rows;
    out->kind = w->kind == CLLM_CUDA_W_CC_F16 ? CLLM_CUDA_W_F16
                : b16 || bf16                 ? CLLM_CUDA_W_BF16
                                              : CLLM_CUDA_W_INT8;
    if (out->kind != CLLM_CUDA_W_INT8) out->scales = nullptr, out->group_size = 0;
    else out->scales = w->scales + r0 * ((w->cols + w->group_size - 1) / w->group_size);
    return CLLM_OK;
}

extern "C" int cllm_cuda_matvec_cols_ok(const cllm_cuda_weight *w) {
    if (!w) return 0;
    switch (w->kind) {
    case CLLM_CUDA_W_BF16:
    case CLLM_CUDA_W_F16:
    case CLLM_CUDA_W_CC_F16: return w->cols % 8 == 0 && (uintptr_t)w->data % 16 == 0;
    case CLLM_CUDA_W_CC_BF16: return w->cols % 64 == 0 && (uintptr_t)w->data % 16 == 0;
    case CLLM_CUDA_W_INT8:
    case CLLM_CUDA_W_CC_INT8:
        return w->cols % MV8_COLS == 0 && (uintptr_t)w->data % 16 == 0 &&
               (w->group_size == w->cols || (w->group_size && w->group_size % MV8_COLS == 0));
    default: return 0;
    }
}

extern "C" size_t cllm_cuda_matvec_cols_scratch(uint64_t cols) {
    const uint64_t nch = cols / MV8_COLS;  // int8: B fragments of 4 token pairs, then 8 tokens'
    const size_t i8 = (size_t)(nch * (CLLM_CUDA_MATVEC_COLS / 2) * 512 + nch * CLLM_CUDA_MATVEC_COLS * 4);
    const size_t b16 = (size_t)(nch * CLLM_CUDA_MATVEC_COLS * MVB_FRAG);  // 2^-k; bf16: fragments
    return i8 > b16 ? i8 : b16;
}

// The int8 path of cllm_cuda_matvec_cols_job: x to B fragments once, then the column kernel.
static cllm_status mv8_cols(mv_job *m, int swiglu, const float *x, uint64_t ldx, uint32_t n,
                            void *scratch, size_t scratch_bytes, unsigned blocks, cudaStream_t s) {
    const uint32_t nch = (uint32_t)(m->w[0].cols / MV8_COLS), npad = (n + 1) & ~1u;
    RETURN_IF(!scratch || (uintptr_t)scratch % 16 ||
                  scratch_bytes < (size_t)nch * (npad / 2) * 512 + (size_t)nch * npad * 4,
              CLLM_ERR_ARG, "matvec_cols: int8 needs %zu bytes of 16-byte aligned scratch",
              (size_t)nch * (npad / 2) * 512 + (size_t)nch * npad * 4);
    uint4 *frag = (uint4 *)scratch;
    float *csc = (float *)(frag + (size_t)(npad / 2) * nch * 32);
    const uint64_t threads = (uint64_t)npad * nch * 4;
    CLLM_CUDA_CHECK_LAUNCH_EX(launch_k(mv8_prep_kernel, dim3((unsigned)((threads + 255) / 256)),
                                       dim3(256), 0, s, 0u, x, ldx, n, npad, nch, frag, csc),
                              "matvec_cols (x to int8 digits)");
    const bool grouped = m->w[0].group_size < m->w[0].cols;
    const cudaError_t e =
        swiglu ? (grouped ? mv8_cols_launch<2, true>(n, *m, frag, csc, blocks, s)
                          : mv8_cols_launch<2, false>(n, *m, frag, csc, blocks, s))
               : (grouped ? mv8_cols_launch<1, true>(n, *m, frag, csc, blocks, s)
                          : mv8_cols_launch<1, false>(n, *m, frag, csc, blocks, s));
    CLLM_CUDA_CHECK_LAUNCH_EX(e, "matvec_cols (int8)");
    return CLLM_OK;
}

// The tensor-core bf16 path of cllm_cuda_matvec_cols_job: x to fragments once, then the kernel.
static cllm_status mvb_cols(mv_job *m, int swiglu, const float *x, uint64_t ldx, uint32_t n,
                            void *scratch, size_t scratch_bytes, unsigned blocks, cudaStream_t s) {
    const uint32_t nch = (uint32_t)(m->w[0].cols / 64);
    RETURN_IF(!scratch || (uintptr_t)scratch % 16 || scratch_bytes < (size_t)nch * n * MVB_FRAG,
              CLLM_ERR_ARG, "matvec_cols: bf16 needs %zu bytes of 16-byte aligned scratch",
              (size_t)nch * n * MVB_FRAG);
    uint4 *frag = (uint4 *)scratch;
    const uint64_t threads = (uint64_t)n * nch * 32;
    CLLM_CUDA_CHECK_LAUNCH_EX(launch_k(mvb_prep_kernel, dim3((unsigned)((threads + 255) / 256)),
                                       dim3(256), 0, s, 0u, x, ldx, n, nch, frag),
                              "matvec_cols (x to bf16 fragments)");
    cudaError_t e;
    if (n <= 2) e = swiglu ? mvb_launch<2, 1>(*m, x, frag, n, blocks, s, 0u)
                           : mvb_launch<1, 1>(*m, x, frag, n, blocks, s, 0u);
    else if (n <= 4) e = swiglu ? mvb_launch<2, 2>(*m, x, frag, n, blocks, s, 0u)
                                : mvb_launch<1, 2>(*m, x, frag, n, blocks, s, 0u);
    else e = swiglu ? mvb_launch<2, 4>(*m, x, frag, n, blocks, s, 0u)
                    : mvb_launch<1, 4>(*m, x, frag, n, blocks, s, 0u);
    CLLM_CUDA_CHECK_LAUNCH_EX(e, "matvec_cols (bf16)");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_matvec_cols_job(const cllm_cuda_weight *w, int n_w, int mode,
                                                 const float *x_dev, uint64_t ldx, uint32_t n,
                                                 float *const *y_dev, const uint64_t *ldy,
                                                 void *scratch, size_t scratch_bytes,
                                                 void *stream) {
    const char *who = "matvec_cols";
    const bool swiglu = mode == CLLM_CUDA_COLS_SWIGLU;
    RETURN_IF(!w || !x_dev || !y_dev || !ldy || n < 1 || n > CLLM_CUDA_MATVEC_COLS || n_w < 1 ||
                  n_w > CLLM_CUDA_MATVEC_MAX || mode < CLLM_CUDA_COLS_SET ||
                  mode > CLLM_CUDA_COLS_SWIGLU || (swiglu && n_w != 2),
              CLLM_ERR_ARG, "%s: bad argument (n %u of at most %d, %d matrices, mode %d)", who, n,
              CLLM_CUDA_MATVEC_COLS, n_w, mode);
    TRY(check_job(w, n_w, swiglu, who));
    RETURN_IF(!cllm_cuda_matvec_cols_ok(&w[0]), CLLM_ERR_UNSUPPORTED,
              "%s: weight kind %u, %llu columns (group %u): no column kernel", who, w[0].kind,
              (unsigned long long)w[0].cols, w[0].group_size);
    RETURN_IF((uintptr_t)x_dev % 16 || ldx % 4 || ldx < w[0].cols, CLLM_ERR_UNSUPPORTED,
              "%s: needs 16-byte aligned columns and ldx >= cols", who);
    mv_job m = {};
    m.acc = mode == CLLM_CUDA_COLS_ACC;
    for (int i = 0; i < n_w; i++) {  // swiglu: one output (y_dev[0], ldy[0])
        const int out = !swiglu || i == 0;
        RETURN_IF(!cllm_cuda_matvec_cols_ok(&w[i]) || (out && (!y_dev[i] || ldy[i] < w[i].rows)),
                  CLLM_ERR_ARG, "%s: weight %d, or its output (NULL or pitch below rows)", who, i);
        m.w[i] = w[i];
        if (out) m.y[i] = y_dev[i], m.ldy[i] = ldy[i];
    }
    const bool i8 = w[0].kind == CLLM_CUDA_W_INT8 || w[0].kind == CLLM_CUDA_W_CC_INT8;
    bool mvb = true;  // the tensor-core bf16 kernel, as the one-token launches of these weights
    for (int i = 0; i < n_w; i++) mvb = mvb && mvb_ok(&w[i], x_dev);
    if (is_ccode(w[0].kind))
        for (int i = 0; i < n_w; i++) TRY(cc_offsets(&w[i], m.cc_off[i], NULL, who));
    const uint64_t rpb = i8 || mvb ? 16 : MV_WARPS;
    uint64_t blocks = 0;
    for (int i = 0; i < CLLM_CUDA_MATVEC_MAX; i++) {
        if (i < (swiglu ? 1 : n_w)) blocks += (w[i].rows + rpb - 1) / rpb;
        m.block_end[i] = (uint32_t)blocks;
    }
    RETURN_IF(blocks > 0x7fffffffull, CLLM_ERR_UNSUPPORTED, "%s: %llu blocks", who,
              (unsigned long long)blocks);
    cudaStream_t s = CLLM_STREAM(stream);
    if (i8) return mv8_cols(&m, swiglu, x_dev, ldx, n, scratch, scratch_bytes, (unsigned)blocks, s);
    if (mvb) return mvb_cols(&m, swiglu, x_dev, ldx, n, scratch, scratch_bytes, (unsigned)blocks, s);
    const cudaError_t e = swiglu ? mv_cols_kind<true>(n, m, x_dev, ldx, (unsigned)blocks, s)
                                 : mv_cols_kind<false>(n, m, x_dev, ldx, (unsigned)blocks, s);
    CLLM_CUDA_CHECK_LAUNCH_EX(e, who);
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_matvec_cols(const cllm_cuda_weight *w, const float *x_dev,
                                             uint64_t ldx, uint32_t n, float *y_dev, uint64_t ldy,
                                             void *stream) {
    RETURN_IF(w && (w->kind == CLLM_CUDA_W_INT8 || w->kind == CLLM_CUDA_W_CC_INT8 ||
                    mvb_ok(w, x_dev)),
              CLLM_ERR_UNSUPPORTED,
              "matvec_cols: int8 and tensor-core bf16 need scratch (cllm_cuda_matvec_cols_job)");
    return cllm_cuda_matvec_cols_job(w, 1, CLLM_CUDA_COLS_SET, x_dev, ldx, n, &y_dev, &ldy, NULL,
                                     0, stream);
}

// ---- block reductions ----------------------------------------------------------------------------

// Sum over a thread block of blockDim.x (a multiple of 32, <= 1024) threads; every thread gets it.
static __device__ float block_sum(float v, float *red) {
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();  // red may still be read by a previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.f;
    return warp_sum(v);
}

// ---- RMSNorm -------------------------------------------------------------------------------------
//
// One block per row. At batch 1 each norm is one row (4096 wide on the 7B) between two matvecs,
// on the critical path of every layer: the vector path reads the row once, as float4s held in
// registers (RN_VEC per thread, every load issued before any use; resident weights before the
// PDL wait), so the kernel is one round trip, a block reduction and the stores. (It replaced a
// 256-thread loop that read x twice and the weights after the reduction: 11 us per norm on the
// H200, 15% of a raw BF16 token.) Widths not a multiple of 4, or wider than the registers hold,
// take the plain loop. A row's result depends only on the row (the block size only on dim), so a
// token's norm is the same in any batch.
#define RN_THREADS 1024
#define RN_VEC 4  // float4s per thread: rows up to 16384 wide on the vector path

template <bool VEC>
static __global__ void __launch_bounds__(RN_THREADS)
    rmsnorm_kernel(const float *x, const float *w, float *out, uint32_t dim, float eps, int pre) {
    __shared__ float red[32];
    pdl_trigger();
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    float ss = 0.f;
    if (VEC) {
        const uint32_t n4 = dim / 4;
        float4 wv[RN_VEC], xv[RN_VEC];
        if (!pre) pdl_wait();
#pragma unroll
        for (uint32_t k = 0; k < RN_VEC; k++) {
            const uint32_t i = threadIdx.x + k * blockDim.x;
            if (i < n4) wv[k] = __ldg((const float4 *)w + i);
        }
        if (pre) pdl_wait();
#pragma unroll
        for (uint32_t k = 0; k < RN_VEC; k++) {
            const uint32_t i = threadIdx.x + k * blockDim.x;
            if (i < n4) xv[k] = ((const float4 *)xr)[i];
        }
#pragma unroll
        for (uint32_t k = 0; k < RN_VEC; k++) {
            if (threadIdx.x + k * blockDim.x >= n4) continue;
            ss = fmaf(xv[k].x, xv[k].x, ss), ss = fmaf(xv[k].y, xv[k].y, ss);
            ss = fmaf(xv[k].z, xv[k].z, ss), ss = fmaf(xv[k].w, xv[k].w, ss);
        }
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
#pragma unroll
        for (uint32_t k = 0; k < RN_VEC; k++) {
            const uint32_t i = threadIdx.x + k * blockDim.x;
            if (i >= n4) continue;
            const float4 a = xv[k], b = wv[k];
            ((float4 *)orow)[i] = make_float4(a.x * inv * b.x, a.y * inv * b.y, a.z * inv * b.z,
                                              a.w * inv * b.w);
        }
    } else {
        pdl_wait();
        for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = xr[i] * inv * __ldg(w + i);
    }
}

extern "C" cllm_status cllm_cuda_rmsnorm_ex(const float *x_dev, const float *weight_dev,
                                            float *out_dev, uint32_t n_rows, uint32_t dim,
                                            float eps, unsigned flags, void *stream) {
    RETURN_IF(!x_dev || !weight_dev || !out_dev || !dim, CLLM_ERR_ARG, "rmsnorm: bad argument");
    if (n_rows == 0) return CLLM_OK;
    const uint32_t n4 = dim / 4;
    const bool vec = dim % 4 == 0 && n4 <= RN_THREADS * RN_VEC &&
                     ((uintptr_t)x_dev | (uintptr_t)weight_dev | (uintptr_t)out_dev) % 16 == 0;
    const uint32_t threads = vec ? (n4 < RN_THREADS ? (n4 + 31) / 32 * 32 : RN_THREADS) : 256;
    const int pre = (flags & CLLM_CUDA_RESIDENT) != 0;
    CLLM_CUDA_CHECK_LAUNCH_EX(launch_k(vec ? rmsnorm_kernel<true> : rmsnorm_kernel<false>,
                                       dim3(n_rows), dim3(threads), 0, CLLM_STREAM(stream), flags,
                                       x_dev, weight_dev, out_dev, dim, eps, pre),
                              "rmsnorm");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_rmsnorm(const float *x_dev, const float *weight_dev,
                                         float *out_dev, uint32_t n_rows, uint32_t dim, float eps,
                                         void *stream) {
    return cllm_cuda_rmsnorm_ex(x_dev, weight_dev, out_dev, n_rows, dim, eps, 0, stream);
}

// ---- element-wise ------------------------------------------------------------------------------

static __global__ void swiglu_kernel(const float *g, const float *u, float *o, size_t n) {
    pdl_trigger();
    pdl_wait();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float a = g[i];
        o[i] = a / (1.0f + __expf(-a)) * u[i];
    }
}

static __global__ void add_kernel(float *x, const float *y, size_t n) {
    pdl_trigger();
    pdl_wait();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

static unsigned elementwise_grid(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 ? (b ? b : 1) : 65535);
}

extern "C" cllm_status cllm_cuda_swiglu(const float *gate_dev, const float *up_dev, float *out_dev,
                                        size_t n, void *stream) {
    RETURN_IF(!gate_dev || !up_dev || !out_dev, CLLM_ERR_ARG, "swiglu: NULL pointer");
    if (n == 0) return CLLM_OK;
    swiglu_kernel<<<elementwise_grid(n), 256, 0, CLLM_STREAM(stream)>>>(gate_dev, up_dev, out_dev,
                                                                        n);
    CLLM_CUDA_CHECK_LAUNCH("swiglu");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_add(float *x_dev, const float *y_dev, size_t n, void *stream) {
    RETURN_IF(!x_dev || !y_dev, CLLM_ERR_ARG, "add: NULL pointer");
    if (n == 0) return CLLM_OK;
    add_kernel<<<elementwise_grid(n), 256, 0, CLLM_STREAM(stream)>>>(x_dev, y_dev, n);
    CLLM_CUDA_CHECK_LAUNCH("add");
    return CLLM_OK;
}

// ---- embedding -----------------------------------------------------------------------------------

// Row tokens[b] of w into out row b (tokens NULL: row row0 + b; zeros for a row outside the
// table), as weight_at reads it, with the row's pointer and (int8) scale row found once and 32-bit
// columns (check_weight: cols < 2^32): a 64-bit index and division per element made one row cost
// ~8 us. Compute code (lay: its sections) is read one weight at a time by the C accessors of
// cllm_ccode.h (tested there against the decoder), one weight per thread over gridDim.y blocks a
// row: a weight's loads depend on one another, so a row costs about one weight's latency.
static __global__ void embed_kernel(const cllm_cuda_weight w, const int32_t *tokens, int64_t row0,
                                    const cllm_ccode_layout lay, float *out) {
    pdl_trigger();
    pdl_wait();
    const int64_t tok = tokens ? (int64_t)tokens[blockIdx.x] : row0 + blockIdx.x;
    const uint32_t cols = (uint32_t)w.cols, step = gridDim.y * blockDim.x;
    const uint32_t c0 = blockIdx.y * blockDim.x + threadIdx.x;
    float *o = out + (size_t)blockIdx.x * cols;
    if (tok < 0 || (uint64_t)tok >= w.rows) {
        for (uint32_t c = c0; c < cols; c += step) o[c] = 0.f;
        return;
    }
    const uint64_t i0 = (uint64_t)tok * cols;
    const uint8_t *cc = (const uint8_t *)w.data;
    switch (w.kind) {
    case CLLM_CUDA_W_F32:
        for (uint32_t c = c0; c < cols; c += step) o[c] = __ldg((const float *)w.data + i0 + c);
        break;
    case CLLM_CUDA_W_F16:
        for (uint32_t c = c0; c < cols; c += step)
            o[c] = f16_bits(__ldg((const unsigned short *)w.data + i0 + c));
        break;
    case CLLM_CUDA_W_BF16:
        for (uint32_t c = c0; c < cols; c += step)
            o[c] = bf16_lo(__ldg((const unsigned short *)w.data + i0 + c));
        break;
    case CLLM_CUDA_W_CC_BF16:
        for (uint32_t c = c0; c < cols; c += step) o[c] = bf16_lo(cllm_ccb_at(cc, &lay, tok, c));
        break;
    case CLLM_CUDA_W_CC_F16:
        for (uint32_t c = c0; c < cols; c += step) o[c] = f16_bits(cllm_cc16_at(cc, &lay, tok, c));
        break;
    default: {  // INT8, and CC_INT8 (whose scales point into the code)
        const uint32_t gs = w.group_size, gpr = (cols + gs - 1) / gs;
        const float *sc = w.scales + (uint64_t)tok * gpr;
        const int8_t *q = (const int8_t *)w.data + i0;
        const bool is_cc = w.kind == CLLM_CUDA_W_CC_INT8;
        for (uint32_t c = c0; c < cols; c += step)
            o[c] = (float)(is_cc ? cllm_cc8_at(cc, &lay, tok, c) : q[c]) * __ldg(sc + c / gs);
    }
    }
}

static cllm_status embed_launch(const cllm_cuda_weight *w, const int32_t *tokens_dev,
                                int64_t row0, uint32_t n_tok, float *out_dev, void *stream) {
    RETURN_IF(!out_dev, CLLM_ERR_ARG, "embed: NULL pointer");
    if (n_tok == 0) return CLLM_OK;
    cllm_ccode_layout lay = {};
    uint32_t per_row = 1;  // blocks a row
    if (is_ccode(w->kind)) {
        TRY(cc_offsets(w, NULL, &lay, "embed"));
        per_row = (uint32_t)((w->cols + 255) / 256 < 64 ? (w->cols + 255) / 256 : 64);
    }
    embed_kernel<<<dim3(n_tok, per_row), 256, 0, CLLM_STREAM(stream)>>>(*w, tokens_dev, row0, lay,
                                                                        out_dev);
    CLLM_CUDA_CHECK_LAUNCH("embed");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_embed(const cllm_cuda_weight *w, const int32_t *tokens_dev,
                                       uint32_t n_tok, float *out_dev, void *stream) {
    TRY(check_weight(w, "embed"));
    RETURN_IF(!tokens_dev, CLLM_ERR_ARG, "embed: NULL pointer");
    return embed_launch(w, tokens_dev, 0, n_tok, out_dev, stream);
}

extern "C" cllm_status cllm_cuda_embed_row(const cllm_cuda_weight *w, uint64_t row, float *out_dev,
                                           void *stream) {
    TRY(check_weight(w, "embed"));
    RETURN_IF(row >= w->rows, CLLM_ERR_ARG, "embed: row %llu of a %llu-row table",
              (unsigned long long)row, (unsigned long long)w->rows);
    return embed_launch(w, NULL, (int64_t)row, 1, out_dev, stream);
}
