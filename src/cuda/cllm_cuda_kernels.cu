// Compute kernels for batch-1 decode and small-batch prefill: matvec over bf16/f16/f32/int8
// weights, RMSNorm, SwiGLU, residual add, embedding lookup (RoPE + KV store and attention:
// cllm_cuda_be_kernels.cu). All fp32 arithmetic with fp32 accumulation; each kernel's C reference (the spec) is named
// in cllm_cuda.h.
#include "cllm_cuda_check.h"

#include <cuda_fp16.h>
#include <math.h>

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
struct mv_job {
    cllm_cuda_weight w[CLLM_CUDA_MATVEC_MAX];
    float *y[CLLM_CUDA_MATVEC_MAX];
    uint32_t block_end[CLLM_CUDA_MATVEC_MAX];  // unused entries repeat the last
    int32_t acc;                                // y += W x instead of y = W x (not swiglu)
    int32_t pre;                                // weights resident: first loads before pdl_wait
    int32_t reserved_;
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

// Dot of 16 bytes of weights with the matching x (a float4 per 4 elements).
// x in global memory (read-only path) or, SH, in shared memory (the fused RMSNorm's staging).
template <bool SH>
static __device__ __forceinline__ float4 ldx(const float4 *p) { return SH ? *p : __ldg(p); }

template <int KIND, bool SH = false>
static __device__ __forceinline__ float dot16(uint4 v, const float4 *x) {
    if (KIND == CLLM_CUDA_W_F32) {
        const float4 a = ldx<SH>(x);
        return __uint_as_float(v.x) * a.x + __uint_as_float(v.y) * a.y +
               __uint_as_float(v.z) * a.z + __uint_as_float(v.w) * a.w;
    } else if (KIND == CLLM_CUDA_W_INT8) {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float4 a = ldx<SH>(x + k);
            s += (float)(int8_t)(u[k]) * a.x + (float)(int8_t)(u[k] >> 8) * a.y +
                 (float)(int8_t)(u[k] >> 16) * a.z + (float)(int8_t)(u[k] >> 24) * a.w;
        }
        return s;
    } else {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const float4 a = ldx<SH>(x + k);
            float w0, w1, w2, w3;
            if (KIND == CLLM_CUDA_W_BF16) {
                w0 = bf16_lo(u[2 * k]); w1 = bf16_hi(u[2 * k]);
                w2 = bf16_lo(u[2 * k + 1]); w3 = bf16_hi(u[2 * k + 1]);
            } else {
                w0 = f16_bits(u[2 * k] & 0xffffu); w1 = f16_bits(u[2 * k] >> 16);
                w2 = f16_bits(u[2 * k + 1] & 0xffffu); w3 = f16_bits(u[2 * k + 1] >> 16);
            }
            s += w0 * a.x + w1 * a.y + w2 * a.z + w3 * a.w;
        }
        return s;
    }
}

// This lane's partial dots of NR rows of equal width: vectors lane, lane + 32, ... of each row,
// 4 per row in flight. int8: sc[k] is row k's scales, vpg vectors per group.
// pre: the first batch of weight loads is issued before pdl_wait (weights no running kernel
// writes); x and the scales are read after it either way. The sums are the same either way.
template <int KIND, int NR, bool SH = false>
static __device__ __forceinline__ void mv_rows(const uint4 *const (&row)[NR],
                                               const float *const (&sc)[NR], uint32_t vpg,
                                               uint32_t nvec, const float *x, uint32_t lane,
                                               bool pre, float (&sum)[NR]) {
    constexpr uint32_t EPV = KIND == CLLM_CUDA_W_F32 ? 4 : KIND == CLLM_CUDA_W_INT8 ? 16 : 8;
#pragma unroll
    for (int k = 0; k < NR; k++) sum[k] = 0.f;
    uint4 a[NR][4];
    auto load = [&](uint32_t v) {
#pragma unroll
        for (int k = 0; k < NR; k++)
#pragma unroll
            for (int u = 0; u < 4; u++) a[k][u] = __ldg(row[k] + v + 32 * u);
    };
    auto fold = [&](uint32_t v) {
#pragma unroll
        for (int k = 0; k < NR; k++)
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const uint32_t vi = v + 32 * u;
                const float d = dot16<KIND, SH>(a[k][u], (const float4 *)(x + (size_t)vi * EPV));
                sum[k] += KIND == CLLM_CUDA_W_INT8 ? d * __ldg(sc[k] + vi / vpg) : d;
            }
    };
    uint32_t v = lane;
    if (pre && v + 96 < nvec) {  // the first batch in flight across the wait
        load(v);
        pdl_wait();
        fold(v);
        v += 128;
    } else {
        pdl_wait();
    }
    for (; v + 96 < nvec; v += 128) {
        load(v);
        fold(v);
    }
    for (; v < nvec; v += 32)
#pragma unroll
        for (int k = 0; k < NR; k++) {
            const float d = dot16<KIND, SH>(__ldg(row[k] + v), (const float4 *)(x + (size_t)v * EPV));
            sum[k] += KIND == CLLM_CUDA_W_INT8 ? d * __ldg(sc[k] + v / vpg) : d;
        }
}

// One warp per row (MV_WARPS rows per block). Requires (host-checked): rows 16-byte aligned
// (cols * elem_size % 16 == 0, data aligned), x 16-byte aligned; int8: group_size a multiple of
// 16 (a 16-byte vector never straddles two groups).
template <int KIND, bool SWIGLU>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_vec_kernel(const mv_job m, const float *__restrict__ x) {
    constexpr uint32_t EPV = KIND == CLLM_CUDA_W_F32 ? 4 : KIND == CLLM_CUDA_W_INT8 ? 16 : 8;
    constexpr int NR = SWIGLU ? 2 : 1;
    pdl_trigger();
    const uint32_t lane = threadIdx.x & 31, i = SWIGLU ? 0 : mv_pick(m, blockIdx.x);
    const uint64_t r = (uint64_t)(blockIdx.x - (i ? m.block_end[i - 1] : 0)) * MV_WARPS +
                       threadIdx.x / 32;
    const uint64_t rows = m.w[i].rows, cols = m.w[i].cols;
    if (r >= rows) {
        pdl_wait();
        return;
    }
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
    float sum[NR];
    mv_rows<KIND, NR>(row, sc, gs / 16, (uint32_t)(cols / EPV), x, lane, m.pre != 0, sum);
#pragma unroll
    for (int k = 0; k < NR; k++) sum[k] = warp_sum(sum[k]);
    if (lane == 0) mv_store(m, i, r, sum[0], sum[NR - 1], SWIGLU);
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
// A block is MV8_WARPS warps on one 16-row tile (two tiles, gate and up, in swiglu mode); warp w
// takes chunks w, w + 8, ... and first turns its own chunks of x into B fragments in shared memory
// (one pass per 8 chunks, after issuing its first weight loads); partial rows are summed across
// the warps through shared memory at the end.
//
// mma fragments (PTX ISA, m16n8k32 .s8): lane = 4 g + q. A: a0..3 row g, k 4q..4q+3; a4..7 row
// g + 8, same k; a8..15 the same rows at k + 16. B: b0..3 k 4q..4q+3, b4..7 k 16 + 4q.., column g.
// D: d0, d1 row g, columns 2q, 2q + 1; d2, d3 row g + 8. k is only a position inside the dot
// product, so lane q loads 16 contiguous bytes (columns 16q..16q+15 of the chunk) of rows g and
// g + 8 and the MMAs take its words {0, 1} and {2, 3}; B is laid out to match.
#define MV8_WARPS 8
#define MV8_COLS 64                // columns per chunk (two MMAs)
#define MV8_CHUNK_SMEM (256 + 4)   // bytes of shared memory per chunk: B fragments, then 2^-k

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
// B fragment of lane 4p + q: frag[16c + 4p + q] = {columns 0-3, 4-7 (first MMA), 8-11, 12-15
// (second MMA)}. csc[c] = 2^-k, or NaN when the chunk holds a NaN or an infinity (the rows come
// out NaN). All four lanes of the quad must call it (the chunk maximum is a quad shuffle).
static __device__ __forceinline__ void mv8_quantize(const float *x, uint32_t c, uint32_t q,
                                                    bool valid, uint4 *frag, float *csc) {
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
        frag[(size_t)c * 16 + 4 * di + q] = make_uint4(p[0][di], p[1][di], p[2][di], p[3][di]);
    if (q == 0)
        csc[c] = mb >= 0x7f800000u ? __int_as_float(0x7fc00000) : __int_as_float((127 - k) << 23);
}

// MT tiles per block: 1 (tile of w[i], multi mode) or 2 (gate and up, swiglu). GROUPED: scales per
// group of group_size (a multiple of 64) columns, applied per chunk; else one scale per row,
// applied at the end. Requires (host-checked): cols % 64 == 0, data and x 16-byte aligned,
// nch * MV8_CHUNK_SMEM bytes of dynamic shared memory.
template <int MT, bool GROUPED>
static __global__ void __launch_bounds__(MV8_WARPS * 32)
    matvec_i8_kernel(const mv_job m, const float *__restrict__ x) {
    constexpr uint32_t U = 4 / MT;  // chunks per batch of loads: 8 x 16 bytes per lane
    extern __shared__ uint4 mv8_smem[];
    __shared__ float red[MT][MV8_WARPS][16];
    pdl_trigger();
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t i = MT == 2 ? 0 : mv_pick(m, blockIdx.x);
    const uint32_t tile = blockIdx.x - (i ? m.block_end[i - 1] : 0);
    const uint64_t rows = m.w[i].rows, cols = m.w[i].cols;
    const uint32_t gs = m.w[i].group_size, nch = (uint32_t)(cols / MV8_COLS);
    const uint32_t nj = nch > warp ? (nch - warp + MV8_WARPS - 1) / MV8_WARPS : 0;  // my chunks
    const uint64_t gpr = (cols + gs - 1) / gs;
    const uint64_t ra = min((uint64_t)tile * 16 + g, rows - 1), rb = min(ra + 8, rows - 1);
    const uint4 *pa[MT], *pb[MT];  // rows g and g + 8 at this lane's bytes of chunk `warp`
    const float *sa[MT], *sb[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        const cllm_cuda_weight &w = m.w[MT == 2 ? t : i];
        const uint8_t *base = (const uint8_t *)w.data + MV8_COLS * warp + 16 * q;
        pa[t] = (const uint4 *)(base + ra * cols), pb[t] = (const uint4 *)(base + rb * cols);
        sa[t] = w.scales + ra * gpr, sb[t] = w.scales + rb * gpr;
    }
    uint4 a[U][MT][2];
    float ws[U][MT][2];
    auto load = [&](uint32_t j0) {  // local chunks j0 .. j0 + U - 1 (warp-uniform guards)
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
            const uint32_t step = (j0 + u) * (MV8_WARPS * MV8_COLS / 16);
            const uint32_t grp = GROUPED ? (warp + MV8_WARPS * (j0 + u)) * MV8_COLS / gs : 0;
#pragma unroll
            for (int t = 0; t < MT; t++) {
                a[u][t][0] = __ldg(pa[t] + step), a[u][t][1] = __ldg(pb[t] + step);
                if (GROUPED) ws[u][t][0] = __ldg(sa[t] + grp), ws[u][t][1] = __ldg(sb[t] + grp);
            }
        }
    };
    if (!m.pre) pdl_wait();
    load(0);  // in flight while x is quantized (and, resident, while the previous kernel ends)
    if (m.pre) pdl_wait();
    uint4 *frag = mv8_smem;
    float *csc = (float *)(mv8_smem + (size_t)nch * 16);
    for (uint32_t s = 0; s * 8 < nj; s++) {
        const uint32_t j = 8 * s + g;
        mv8_quantize(x, warp + MV8_WARPS * j, q, j < nj, frag, csc);
    }
    __syncwarp();  // a warp reads only the chunks it wrote
    float acc[MT][4];
#pragma unroll
    for (int t = 0; t < MT; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
    for (uint32_t j0 = 0; j0 < nj; j0 += U) {
        if (j0) load(j0);
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
            const uint32_t c = warp + MV8_WARPS * (j0 + u);
            const uint4 b = lane < 16 ? frag[(size_t)c * 16 + lane] : make_uint4(0, 0, 0, 0);
            const float s = csc[c];
#pragma unroll
            for (int t = 0; t < MT; t++) {
                const uint4 wa = a[u][t][0], wb = a[u][t][1];
                int d[4] = {0, 0, 0, 0};
                mma_s8(d, wa.x, wb.x, wa.y, wb.y, b.x, b.y);
                mma_s8(d, wa.z, wb.z, wa.w, wb.w, b.z, b.w);
                const float s0 = GROUPED ? s * ws[u][t][0] : s, s8 = GROUPED ? s * ws[u][t][1] : s;
                acc[t][0] += (float)d[0] * s0, acc[t][1] += (float)d[1] * s0;
                acc[t][2] += (float)d[2] * s8, acc[t][3] += (float)d[3] * s8;
            }
        }
    }
    // Lane q holds digits 2q, 2q + 1 (q >= 2: the zero columns): weights 2^(16q), 2^(16q + 8).
    const float pw = __int_as_float((127 + 16 * (int)q) << 23);
#pragma unroll
    for (int t = 0; t < MT; t++) {
        float va = acc[t][0] * pw + acc[t][1] * (pw * 256.f);
        float vb = acc[t][2] * pw + acc[t][3] * (pw * 256.f);
        va += __shfl_xor_sync(0xffffffffu, va, 1), vb += __shfl_xor_sync(0xffffffffu, vb, 1);
        va += __shfl_xor_sync(0xffffffffu, va, 2), vb += __shfl_xor_sync(0xffffffffu, vb, 2);
        if (q == 0) red[t][warp][g] = va, red[t][warp][g + 8] = vb;
    }
    __syncthreads();
    const uint64_t r = (uint64_t)tile * 16 + threadIdx.x;
    if (threadIdx.x >= 16 || r >= rows) return;
    float sum[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        sum[t] = 0.f;
#pragma unroll
        for (int w = 0; w < MV8_WARPS; w++) sum[t] += red[t][w][threadIdx.x];
        if (!GROUPED) sum[t] *= __ldg(m.w[MT == 2 ? t : i].scales + r);  // one group per row
    }
    mv_store(m, i, r, sum[0], sum[MT - 1], MT == 2);
}

// ---- matvec launchers ----------------------------------------------------------------------------

static cllm_status check_weight(const cllm_cuda_weight *w, const char *who) {
    RETURN_IF(!w || !w->data || w->rows == 0 || w->cols == 0, CLLM_ERR_ARG, "%s: empty weight",
              who);
    RETURN_IF(w->kind > CLLM_CUDA_W_INT8, CLLM_ERR_ARG, "%s: unknown weight kind %u", who, w->kind);
    RETURN_IF(w->kind == CLLM_CUDA_W_INT8 &&
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

// The 16-byte-vector kernels' requirements (see matvec_vec_kernel).
static bool mv_vec_ok(const cllm_cuda_weight *w, const float *x) {
    return (size_t)w->cols * wkind_size(w->kind) % 16 == 0 && (uintptr_t)w->data % 16 == 0 &&
           (uintptr_t)x % 16 == 0 && (w->kind != CLLM_CUDA_W_INT8 || w->group_size % 16 == 0);
}

// Shared memory of matvec_i8_kernel for w, or 0 when it cannot take w (shape, groups, or more
// shared memory than a block of this device may have).
static size_t mv8_smem_bytes(const cllm_cuda_weight *w) {
    if (w->kind != CLLM_CUDA_W_INT8 || w->cols % MV8_COLS ||
        (w->group_size != w->cols && w->group_size % MV8_COLS))
        return 0;
    const size_t bytes = (size_t)(w->cols / MV8_COLS) * MV8_CHUNK_SMEM;
    if (bytes <= 48 * 1024) return bytes;
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess)
        return 0;
    return bytes + MV8_WARPS * 16 * 2 * sizeof(float) <= (size_t)optin ? bytes : 0;
}

template <int MT, bool GROUPED>
static cudaError_t mv8_launch(const mv_job &m, const float *x, unsigned blocks, size_t smem,
                              cudaStream_t s, unsigned flags) {
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(
            matvec_i8_kernel<MT, GROUPED>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return launch_k(matvec_i8_kernel<MT, GROUPED>, dim3(blocks), dim3(MV8_WARPS * 32), smem, s,
                    flags, m, x);
}

template <bool SW>
static cudaError_t mv_vec_launch(uint32_t kind, const mv_job &m, const float *x, unsigned blocks,
                                 cudaStream_t s, unsigned flags) {
    const dim3 grid(blocks), block(MV_WARPS * 32);
    const size_t sm = 0;
    switch (kind) {
    case CLLM_CUDA_W_F32:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_F32, SW>, grid, block, sm, s, flags,
                        m, x);
    case CLLM_CUDA_W_F16:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_F16, SW>, grid, block, sm, s, flags,
                        m, x);
    case CLLM_CUDA_W_BF16:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_BF16, SW>, grid, block, sm, s, flags,
                        m, x);
    default:
        return launch_k(matvec_vec_kernel<CLLM_CUDA_W_INT8, SW>, grid, block, sm, s, flags,
                        m, x);
    }
}

// Launches a job of n checked matrices (same kind, cols and group size; swiglu: n == 2, same
// rows): picks the kernel, fills block_end.
static cllm_status mv_launch(mv_job *m, int n, const float *x, bool swiglu, unsigned flags,
                             void *stream, const char *who) {
    bool vec = true;
    for (int i = 0; i < n; i++) vec = vec && mv_vec_ok(&m->w[i], x);
    const size_t smem = vec ? mv8_smem_bytes(&m->w[0]) : 0;
    const uint64_t rpb = smem ? 16 : MV_WARPS;
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
    if (smem) {
        const bool grouped = m->w[0].group_size < m->w[0].cols;
        e = swiglu ? (grouped ? mv8_launch<2, true>(*m, x, nb, smem, s, flags)
                              : mv8_launch<2, false>(*m, x, nb, smem, s, flags))
                   : (grouped ? mv8_launch<1, true>(*m, x, nb, smem, s, flags)
                              : mv8_launch<1, false>(*m, x, nb, smem, s, flags));
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

static __global__ void __launch_bounds__(256)
    rmsnorm_kernel(const float *x, const float *w, float *out, uint32_t dim, float eps) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    float ss = 0.f;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = xr[i] * inv * __ldg(w + i);
}

extern "C" cllm_status cllm_cuda_rmsnorm_ex(const float *x_dev, const float *weight_dev,
                                            float *out_dev, uint32_t n_rows, uint32_t dim,
                                            float eps, unsigned flags, void *stream) {
    RETURN_IF(!x_dev || !weight_dev || !out_dev || !dim, CLLM_ERR_ARG, "rmsnorm: bad argument");
    if (n_rows == 0) return CLLM_OK;
    CLLM_CUDA_CHECK_LAUNCH_EX(launch_k(rmsnorm_kernel, dim3(n_rows), dim3(256), 0,
                                       CLLM_STREAM(stream), flags, x_dev, weight_dev, out_dev,
                                       dim, eps),
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

static __global__ void embed_kernel(const cllm_cuda_weight w, const int32_t *tokens, float *out) {
    pdl_trigger();
    pdl_wait();
    const int32_t tok = tokens[blockIdx.x];
    float *o = out + (size_t)blockIdx.x * w.cols;
    const bool ok = tok >= 0 && (uint64_t)tok < w.rows;
    for (uint64_t c = threadIdx.x; c < w.cols; c += blockDim.x)
        o[c] = ok ? weight_at(w, (uint64_t)tok, c) : 0.f;
}

extern "C" cllm_status cllm_cuda_embed(const cllm_cuda_weight *w, const int32_t *tokens_dev,
                                       uint32_t n_tok, float *out_dev, void *stream) {
    TRY(check_weight(w, "embed"));
    RETURN_IF(!tokens_dev || !out_dev, CLLM_ERR_ARG, "embed: NULL pointer");
    if (n_tok == 0) return CLLM_OK;
    embed_kernel<<<n_tok, 256, 0, CLLM_STREAM(stream)>>>(*w, tokens_dev, out_dev);
    CLLM_CUDA_CHECK_LAUNCH("embed");
    return CLLM_OK;
}
