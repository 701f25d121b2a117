// Kernels of the CUDA backend that read the chunk's first position from device memory, so that the
// batch-1 step can be captured once in a CUDA graph and replayed at every position (the launchers
// in cllm_cuda_kernels.cu take the position by value). Same arithmetic as their C references:
//   cllm_cuda_rope_store: cllm_k_rope with the CPU's cos/sin tables (no FMA contraction:
//                         bit-exact), then cllm_k_store_kv (F32);
//   cllm_cuda_attention:  cllm_k_attention_head (softmax with __expf under --use_fast_math: tolerance);
//   cllm_cuda_rope_attention_split: the two above in one launch for steps of up to 4 tokens (the
//                         same bits as rope_store then attention_split).
#include "cllm_cuda_be.h"

#include <math.h>

#define BE_ATT_WARPS 4
#ifndef BE_ATT_ILP
#define BE_ATT_ILP 4  // positions per warp whose K (V) rows are loaded together
#endif

// Programmatic dependent launch (flags CLLM_CUDA_PDL; see cllm_cuda.h and the same helpers in
// cllm_cuda_kernels.cu): trigger at entry, wait for the previous grid before the first access to
// memory an earlier kernel writes (here: everything). No-ops without the launch attribute.
static __device__ __forceinline__ void be_pdl_enter() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

template <typename... P, typename... A>
static cudaError_t be_launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, void *stream,
                             unsigned flags, A &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem;
    cfg.stream = CLLM_STREAM(stream);
    cudaLaunchAttribute attr[1];
    if (flags & CLLM_CUDA_PDL) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr, cfg.numAttrs = 1;
    }
    const cudaError_t e = cudaLaunchKernelEx(&cfg, k, static_cast<A &&>(args)...);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e;
}

static __device__ __forceinline__ float be_warp_sum(float v) {
#pragma unroll
    for (int d = 16; d; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
    return v;
}

static __device__ __forceinline__ float be_warp_max(float v) {
#pragma unroll
    for (int d = 16; d; d >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
    return v;
}

// ---- RoPE + KV store -------------------------------------------------------------------------

// One thread per pair (2i, 2i+1) of one head of q or of k; k threads also store v's pair.
static __global__ void be_rope_store_kernel(float *q, const float *k, const float *v, float *kc,
                                            float *vc, const float *cos_t, const float *sin_t,
                                            cllm_cuda_tokpos tp, uint32_t n_tok,
                                            uint32_t n_heads, uint32_t n_kv, uint32_t hd) {
    be_pdl_enter();
    const uint32_t half = hd / 2, per_tok = (n_heads + n_kv) * half;
    const uint64_t gid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (uint64_t)per_tok * n_tok) return;
    const uint32_t t = (uint32_t)(gid / per_tok), r = (uint32_t)(gid % per_tok);
    const uint32_t i = r % half, head = r / half;
    const size_t pos = tp.pos[t], kv_dim = (size_t)n_kv * hd;
    const size_t row = (size_t)(tp.slot ? tp.slot[t] : 0) * tp.slot_stride + pos;  // cache row
    const float c = cos_t[pos * half + i], s = sin_t[pos * half + i];
    float a, b;
    if (head < n_heads) {
        float *p = q + ((size_t)t * n_heads + head) * hd + 2 * i;
        a = p[0], b = p[1];
        p[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        p[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
        return;
    }
    const size_t off = (size_t)(head - n_heads) * hd + 2 * i;
    const float *kp = k + (size_t)t * kv_dim + off, *vp = v + (size_t)t * kv_dim + off;
    a = kp[0], b = kp[1];
    float *kd = kc + row * kv_dim + off, *vd = vc + row * kv_dim + off;
    kd[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    kd[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
    vd[0] = vp[0];
    vd[1] = vp[1];
}

extern "C" cllm_status cllm_cuda_rope_store(float *q, const float *k, const float *v, float *kc,
                                            float *vc, const float *cos_t, const float *sin_t,
                                            cllm_cuda_tokpos tp, uint32_t n_tok,
                                            uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd,
                                            unsigned flags, void *stream) {
    RETURN_IF(!tp.pos, CLLM_ERR_ARG, "rope_store: no positions");
    const uint64_t total = (uint64_t)(n_heads + n_kv_heads) * (hd / 2) * n_tok;
    if (total == 0) return CLLM_OK;
    RETURN_IF(total > 0x7fffffffull * 256, CLLM_ERR_UNSUPPORTED, "rope: too many elements");
    CLLM_CUDA_TRY(be_launch(be_rope_store_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256),
                            0, stream, flags, q, k, v, kc, vc, cos_t, sin_t, tp, n_tok,
                            n_heads, n_kv_heads, hd));
    CLLM_CUDA_CHECK_LAUNCH("rope_store");
    return CLLM_OK;
}

// ---- attention -------------------------------------------------------------------------------

static __device__ float be_block_reduce(float v, float *red, bool is_max) {
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = is_max ? be_warp_max(v) : be_warp_sum(v);
    __syncthreads();  // red may still be read by the previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.f);
    return is_max ? be_warp_max(v) : be_warp_sum(v);
}

// One thread block per (head, query): scores of positions 0..pos in shared memory, softmax, then
// the weighted sum of V (warps over positions, lanes over head_dim, partials added in shared).
static __global__ void __launch_bounds__(BE_ATT_WARPS * 32)
    be_attention_kernel(const float *q, const float *kc, const float *vc, float *out,
                        cllm_cuda_tokpos tp, uint32_t n_heads, uint32_t n_kv, uint32_t hd) {
    extern __shared__ float scores[];
    __shared__ float qs[BE_ATT_MAX_HD];
    __shared__ float part[BE_ATT_WARPS][BE_ATT_MAX_HD];
    __shared__ float red[32];
    be_pdl_enter();
    const uint32_t h = blockIdx.x, t = blockIdx.y;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const uint32_t n_ctx = tp.pos[t] + 1;
    const uint32_t kvh = h / (n_heads / n_kv);
    const size_t stride = (size_t)n_kv * hd;
    const size_t slot_off = (size_t)(tp.slot ? tp.slot[t] : 0) * tp.slot_stride * stride;
    kc += slot_off;
    vc += slot_off;
    const float *qh = q + ((size_t)t * n_heads + h) * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qh[d];
    __syncthreads();
    // Each warp takes positions warp, warp + BE_ATT_WARPS, ... in groups of BE_ATT_ILP whose K
    // rows are loaded together (the same sums, position by position, as one at a time).
    const uint32_t kstep = BE_ATT_WARPS * BE_ATT_ILP;
    uint32_t p0 = warp;
    for (; p0 + (BE_ATT_ILP - 1) * BE_ATT_WARPS < n_ctx; p0 += kstep) {
        float kv[BE_ATT_ILP][BE_ATT_MAX_HD / 32];
#pragma unroll
        for (int u = 0; u < BE_ATT_ILP; u++) {
            const float *kr = kc + (p0 + u * BE_ATT_WARPS) * stride + (size_t)kvh * hd;
#pragma unroll
            for (int j = 0; j < BE_ATT_MAX_HD / 32; j++)
                kv[u][j] = lane + 32 * j < hd ? __ldg(kr + lane + 32 * j) : 0.f;
        }
#pragma unroll
        for (int u = 0; u < BE_ATT_ILP; u++) {
            float sc = 0.f;
#pragma unroll
            for (int j = 0; j < BE_ATT_MAX_HD / 32; j++)
                if (lane + 32 * j < hd) sc += qs[lane + 32 * j] * kv[u][j];
            sc = be_warp_sum(sc);
            if (lane == 0) scores[p0 + u * BE_ATT_WARPS] = sc * scale;
        }
    }
    for (uint32_t p = p0; p < n_ctx; p += BE_ATT_WARPS) {
        const float *kr = kc + p * stride + (size_t)kvh * hd;
        float sc = 0.f;
        for (uint32_t d = lane; d < hd; d += 32) sc += qs[d] * __ldg(kr + d);
        sc = be_warp_sum(sc);
        if (lane == 0) scores[p] = sc * scale;
    }
    __syncthreads();
    float m = -INFINITY;
    for (uint32_t p = threadIdx.x; p < n_ctx; p += blockDim.x) m = fmaxf(m, scores[p]);
    m = be_block_reduce(m, red, true);
    float sum = 0.f;
    for (uint32_t p = threadIdx.x; p < n_ctx; p += blockDim.x) {
        const float e = __expf(scores[p] - m);
        scores[p] = e;
        sum += e;
    }
    sum = be_block_reduce(sum, red, false);  // its barriers also publish scores[]
    float acc[BE_ATT_MAX_HD / 32];
#pragma unroll
    for (int j = 0; j < BE_ATT_MAX_HD / 32; j++) acc[j] = 0.f;
    p0 = warp;
    for (; p0 + (BE_ATT_ILP - 1) * BE_ATT_WARPS < n_ctx; p0 += kstep) {  // V rows loaded together
        float vv[BE_ATT_ILP][BE_ATT_MAX_HD / 32];
#pragma unroll
        for (int u = 0; u < BE_ATT_ILP; u++) {
            const float *vr = vc + (p0 + u * BE_ATT_WARPS) * stride + (size_t)kvh * hd;
#pragma unroll
            for (int j = 0; j < BE_ATT_MAX_HD / 32; j++)
                vv[u][j] = lane + 32 * j < hd ? __ldg(vr + lane + 32 * j) : 0.f;
        }
#pragma unroll
        for (int u = 0; u < BE_ATT_ILP; u++) {
            const float a = scores[p0 + u * BE_ATT_WARPS];
#pragma unroll
            for (int j = 0; j < BE_ATT_MAX_HD / 32; j++)
                if (lane + 32 * j < hd) acc[j] += a * vv[u][j];
        }
    }
    for (uint32_t p = p0; p < n_ctx; p += BE_ATT_WARPS) {
        const float *vr = vc + p * stride + (size_t)kvh * hd;
        const float a = scores[p];
#pragma unroll
        for (int j = 0; j < BE_ATT_MAX_HD / 32; j++)
            if (lane + 32 * j < hd) acc[j] += a * __ldg(vr + lane + 32 * j);
    }
#pragma unroll
    for (int j = 0; j < BE_ATT_MAX_HD / 32; j++)
        if (lane + 32 * j < hd) part[warp][lane + 32 * j] = acc[j];
    __syncthreads();
    float *oh = out + ((size_t)t * n_heads + h) * hd;
    const float inv = 1.0f / sum;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int w = 0; w < BE_ATT_WARPS; w++) o += part[w][d];
        oh[d] = o * inv;
    }
}

extern "C" cllm_status cllm_cuda_attention_init(uint32_t max_pos) {
    RETURN_IF(max_pos > BE_ATT_MAX_POS, CLLM_ERR_UNSUPPORTED,
              "CUDA attention: context %u above the limit of %d positions", max_pos,
              BE_ATT_MAX_POS);
    const int smem = (int)(max_pos * sizeof(float));
    if (smem > 48 * 1024)
        CLLM_CUDA_TRY(cudaFuncSetAttribute(be_attention_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_attention(const float *q, const float *kc, const float *vc,
                                           float *out, cllm_cuda_tokpos tp, uint32_t n_q,
                                           uint32_t smem_pos, uint32_t n_heads,
                                           uint32_t n_kv_heads, uint32_t hd, unsigned flags,
                                           void *stream) {
    RETURN_IF(!n_heads || !n_kv_heads || n_heads % n_kv_heads || !hd || hd > BE_ATT_MAX_HD,
              CLLM_ERR_UNSUPPORTED, "CUDA attention: heads %u/%u, head_dim %u (at most %d)",
              n_heads, n_kv_heads, hd, BE_ATT_MAX_HD);
    if (n_q == 0) return CLLM_OK;
    RETURN_IF(smem_pos > BE_ATT_MAX_POS || n_q > 65535, CLLM_ERR_UNSUPPORTED,
              "CUDA attention: %u positions (at most %d)", smem_pos, BE_ATT_MAX_POS);
    const size_t smem = (size_t)smem_pos * sizeof(float);
    CLLM_CUDA_TRY(be_launch(be_attention_kernel, dim3(n_heads, n_q), dim3(BE_ATT_WARPS * 32), smem,
                            stream, flags, q, kc, vc, out, tp, n_heads, n_kv_heads, hd));
    CLLM_CUDA_CHECK_LAUNCH("attention");
    return CLLM_OK;
}

// ---- split attention (batch-1 decode) --------------------------------------------------------
//
// Flash-decoding: grid (n_kv_heads, n_splits, n_q). Warp w of split s takes positions
// s * ATS_WARPS + w + k * (n_splits * ATS_WARPS), B at a time (B rows of K and of V in flight per
// lane), with an online softmax per query head of its kv head's group (the G heads share every K/V
// load). The block folds its warps into one partial (max, sum, weighted V) per head in `scratch`;
// the last block of a (kv head, query) to finish (an atomic counter, reset by that block, so the
// launch replays in a graph) combines the splits in split order: the result does not depend on
// which block came last. Scratch layout: counters (n_q * n_kv uint32, zero between launches,
// padded to 256 bytes), then (max, sum) pairs and weighted-V rows, each indexed
// ((t * n_heads + h) * n_splits + s).
#define ATS_WARPS 4
#define ATS_TARGET_BLOCKS 512  // splits fill about this many blocks (132 SMs, 4+ blocks each)
#define ATS_MAX_SPLITS 64
#define ATS_MAX_Q 4

static uint32_t ats_splits(uint32_t n_q, uint32_t max_pos, uint32_t n_kv) {
    const uint32_t need = (max_pos + ATS_WARPS * 4 - 1) / (ATS_WARPS * 4);
    uint32_t fill = ATS_TARGET_BLOCKS / (n_kv * (n_q ? n_q : 1));
    fill = fill ? fill : 1;
    uint32_t s = need < fill ? need : fill;
    s = s < ATS_MAX_SPLITS ? s : ATS_MAX_SPLITS;
    return s ? s : 1;
}

static size_t ats_counter_bytes(uint32_t n_q, uint32_t n_kv) {
    return ((size_t)n_q * n_kv * sizeof(uint32_t) + 255) / 256 * 256;
}

// The step's RoPE and KV store done inside the split attention (cllm_cuda_rope_attention_split):
// k and v the step's unrotated keys and values (n_q, n_kv, hd), kc and vc the caches the block
// owning a token's position writes them to; cos_t NULL: plain split attention.
struct ats_rope {
    const float *k, *v;
    float *kc, *vc;
    const float *cos_t, *sin_t;
};

// Pairs (d, d + 1) and (d + 2, d + 3) of x rotated by position pos's angles i = d / 2, d / 2 + 1:
// cllm_k_rope's arithmetic (no FMA contraction), as be_rope_store_kernel does it.
static __device__ __forceinline__ float4 ats_rotate(float4 x, const ats_rope &r, size_t pos,
                                                    uint32_t half, uint32_t d) {
    const size_t i = pos * half + d / 2;
    const float c0 = r.cos_t[i], s0 = r.sin_t[i], c1 = r.cos_t[i + 1], s1 = r.sin_t[i + 1];
    float4 y;
    y.x = __fsub_rn(__fmul_rn(x.x, c0), __fmul_rn(x.y, s0));
    y.y = __fadd_rn(__fmul_rn(x.x, s0), __fmul_rn(x.y, c0));
    y.z = __fsub_rn(__fmul_rn(x.z, c1), __fmul_rn(x.w, s1));
    y.w = __fadd_rn(__fmul_rn(x.z, s1), __fmul_rn(x.w, c1));
    return y;
}

template <int G, int NV>
static __global__ void __launch_bounds__(ATS_WARPS * 32)
    be_attn_split_kernel(const float *q, const float *kc, const float *vc, float *out,
                         cllm_cuda_tokpos tp, uint32_t n_heads, uint32_t n_kv, uint32_t hd,
                         uint32_t n_splits, uint32_t *count, float *ml, float *po,
                         const ats_rope rope) {
    constexpr int B = G * NV >= 8 ? 2 : 4;  // positions per warp step (register budget)
    __shared__ float s_o[ATS_WARPS][G][NV * 128];
    __shared__ float s_m[ATS_WARPS][G], s_l[ATS_WARPS][G];
    __shared__ float s_w[G][ATS_MAX_SPLITS];
    __shared__ float s_sum[G];
    __shared__ uint32_t s_last;
    be_pdl_enter();
    const uint32_t kvh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const uint32_t n_ctx = tp.pos[t] + 1;
    const size_t stride = (size_t)n_kv * hd;
    const size_t slot_off = (size_t)(tp.slot ? tp.slot[t] : 0) * tp.slot_stride * stride;
    const float scale = 1.0f / sqrtf((float)hd);
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    float4 qv[G][NV], acc[G][NV];
    float m[G], l[G];
    // With the RoPE inside: the step's tokens of this slot (the positions this launch stores,
    // read here from k and v, not from the caches) start at new_lo.
    const bool fused = rope.cos_t != nullptr;
    const uint32_t half = hd / 2, n_q = gridDim.z, my_slot = tp.slot ? tp.slot[t] : 0;
    uint32_t new_lo = UINT32_MAX;
    for (uint32_t u = 0; fused && u < n_q; u++)
        if ((tp.slot ? tp.slot[u] : 0) == my_slot) new_lo = min(new_lo, tp.pos[u]);
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY, l[g] = 0.f;
        const float *qh = q + ((size_t)t * n_heads + kvh * G + g) * hd;
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const uint32_t d = 4 * (lane + 32 * j);
            qv[g][j] = d < hd ? *(const float4 *)(qh + d) : zero;
            if (fused && d < hd) qv[g][j] = ats_rotate(qv[g][j], rope, n_ctx - 1, half, d);
            acc[g][j] = zero;
        }
    }
    const float *kb = kc + slot_off + (size_t)kvh * hd, *vb = vc + slot_off + (size_t)kvh * hd;
    const uint32_t tw = n_splits * ATS_WARPS;
    for (uint32_t p0 = split * ATS_WARPS + warp; p0 < n_ctx; p0 += B * tw) {
        float4 kr[B][NV], vr[B][NV];
#pragma unroll
        for (int b = 0; b < B; b++) {
            const size_t p = p0 + (size_t)b * tw;
            int src = -1;  // the step's token at position p of this slot (fused), else the cache
            if (fused && p < n_ctx && p >= new_lo)
                for (uint32_t u = 0; u < n_q; u++)
                    if (tp.pos[u] == p && (tp.slot ? tp.slot[u] : 0) == my_slot) src = (int)u;
#pragma unroll
            for (int j = 0; j < NV; j++) {
                const uint32_t d = 4 * (lane + 32 * j);
                const bool ok = p < n_ctx && d < hd;
                if (src < 0) {
                    kr[b][j] = ok ? __ldg((const float4 *)(kb + p * stride + d)) : zero;
                    vr[b][j] = ok ? __ldg((const float4 *)(vb + p * stride + d)) : zero;
                    continue;
                }
                const size_t at = (size_t)src * stride + (size_t)kvh * hd + d;
                kr[b][j] = d < hd ? ats_rotate(*(const float4 *)(rope.k + at), rope, p, half, d) : zero;
                vr[b][j] = d < hd ? *(const float4 *)(rope.v + at) : zero;
                if (src == (int)t && d < hd) {  // this token's own position: into the caches
                    const size_t c = slot_off + (size_t)kvh * hd + p * stride + d;
                    *(float4 *)(rope.kc + c) = kr[b][j];
                    *(float4 *)(rope.vc + c) = vr[b][j];
                }
            }
        }
        float sc[B][G];
#pragma unroll
        for (int b = 0; b < B; b++)
#pragma unroll
            for (int g = 0; g < G; g++) {
                float s = 0.f;
#pragma unroll
                for (int j = 0; j < NV; j++)
                    s += qv[g][j].x * kr[b][j].x + qv[g][j].y * kr[b][j].y +
                         qv[g][j].z * kr[b][j].z + qv[g][j].w * kr[b][j].w;
                sc[b][g] = s;
            }
#pragma unroll
        for (int dd = 16; dd; dd >>= 1)
#pragma unroll
            for (int b = 0; b < B; b++)
#pragma unroll
                for (int g = 0; g < G; g++) sc[b][g] += __shfl_xor_sync(0xffffffffu, sc[b][g], dd);
#pragma unroll
        for (int g = 0; g < G; g++) {
            float mx = m[g];
#pragma unroll
            for (int b = 0; b < B; b++) {
                sc[b][g] = p0 + (size_t)b * tw < n_ctx ? sc[b][g] * scale : -INFINITY;
                mx = fmaxf(mx, sc[b][g]);
            }
            const float corr = __expf(m[g] - mx);  // 0 at the first step (m = -inf)
            l[g] *= corr;
#pragma unroll
            for (int j = 0; j < NV; j++)
                acc[g][j].x *= corr, acc[g][j].y *= corr, acc[g][j].z *= corr, acc[g][j].w *= corr;
#pragma unroll
            for (int b = 0; b < B; b++) {
                const float e = __expf(sc[b][g] - mx);  // 0 past n_ctx
                l[g] += e;
#pragma unroll
                for (int j = 0; j < NV; j++) {
                    acc[g][j].x += e * vr[b][j].x, acc[g][j].y += e * vr[b][j].y;
                    acc[g][j].z += e * vr[b][j].z, acc[g][j].w += e * vr[b][j].w;
                }
            }
            m[g] = mx;
        }
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const uint32_t d = 4 * (lane + 32 * j);
            if (d < hd) *(float4 *)&s_o[warp][g][d] = acc[g][j];
        }
        if (lane == 0) s_m[warp][g] = m[g], s_l[warp][g] = l[g];
    }
    __syncthreads();
    // The block's partial per head (a warp without positions has m = -inf and weighs 0).
    for (uint32_t e = threadIdx.x; e < G * hd; e += blockDim.x) {
        const uint32_t g = e / hd, d = e % hd;
        float mx = -INFINITY;
        for (int w = 0; w < ATS_WARPS; w++) mx = fmaxf(mx, s_m[w][g]);
        float o = 0.f, sum = 0.f;
        if (mx != -INFINITY)
            for (int w = 0; w < ATS_WARPS; w++) {
                const float ew = __expf(s_m[w][g] - mx);
                o += ew * s_o[w][g][d];
                sum += ew * s_l[w][g];
            }
        const size_t hi = ((size_t)t * n_heads + kvh * G + g) * n_splits + split;
        po[hi * hd + d] = o;
        if (d == 0) ml[2 * hi] = mx, ml[2 * hi + 1] = sum;
    }
    __threadfence();  // partials visible device-wide before the count
    __syncthreads();
    if (threadIdx.x == 0)
        s_last = atomicAdd(count + (size_t)t * n_kv + kvh, 1u) == n_splits - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    // Last block: weights of the splits per head (split 0 always holds position 0: max finite).
    for (uint32_t g = warp; g < G; g += ATS_WARPS) {
        const size_t h0 = ((size_t)t * n_heads + kvh * G + g) * n_splits;
        float mx = -INFINITY;
        for (uint32_t sp = lane; sp < n_splits; sp += 32) mx = fmaxf(mx, __ldcg(ml + 2 * (h0 + sp)));
        mx = be_warp_max(mx);
        float sum = 0.f;
        for (uint32_t sp = lane; sp < n_splits; sp += 32) {
            const float w = __expf(__ldcg(ml + 2 * (h0 + sp)) - mx);
            s_w[g][sp] = w;
            sum += w * __ldcg(ml + 2 * (h0 + sp) + 1);
        }
        sum = be_warp_sum(sum);
        if (lane == 0) s_sum[g] = sum;
    }
    __syncthreads();
    for (uint32_t e = threadIdx.x; e < G * hd; e += blockDim.x) {
        const uint32_t g = e / hd, d = e % hd;
        const size_t h = (size_t)t * n_heads + kvh * G + g;
        const float *pr = po + h * n_splits * hd + d;
        float o = 0.f;
#pragma unroll 8
        for (uint32_t sp = 0; sp < n_splits; sp++) o += s_w[g][sp] * __ldcg(pr + (size_t)sp * hd);
        out[h * hd + d] = o / s_sum[g];
    }
    if (threadIdx.x == 0) count[(size_t)t * n_kv + kvh] = 0;  // ready for the next launch
}

extern "C" int cllm_cuda_attention_split_ok(uint32_t n_q, uint32_t n_heads, uint32_t n_kv_heads,
                                            uint32_t hd) {
    if (!n_q || n_q > ATS_MAX_Q || !n_kv_heads || !n_heads || n_heads % n_kv_heads) return 0;
    const uint32_t g = n_heads / n_kv_heads;
    return (g == 1 || g == 2 || g == 4 || g == 8) && hd && hd % 4 == 0 && hd <= 256;
}

extern "C" size_t cllm_cuda_attention_split_scratch(uint32_t n_q, uint32_t max_pos,
                                                    uint32_t n_heads, uint32_t n_kv_heads,
                                                    uint32_t hd) {
    if (!cllm_cuda_attention_split_ok(n_q, n_heads, n_kv_heads, hd)) return 0;
    const size_t rows = (size_t)n_q * n_heads * ats_splits(n_q, max_pos, n_kv_heads);
    return ats_counter_bytes(n_q, n_kv_heads) + rows * (2 + hd) * sizeof(float);
}

template <int G>
static cudaError_t ats_launch(uint32_t nv, dim3 grid, void *stream, unsigned flags,
                              const float *q, const float *kc, const float *vc, float *out,
                              cllm_cuda_tokpos tp, uint32_t nh, uint32_t nkv, uint32_t hd,
                              uint32_t ns, uint32_t *count, float *ml, float *po,
                              const ats_rope &rope) {
    const dim3 block(ATS_WARPS * 32);
    return nv == 1 ? be_launch(be_attn_split_kernel<G, 1>, grid, block, 0, stream, flags, q, kc,
                               vc, out, tp, nh, nkv, hd, ns, count, ml, po, rope)
                   : be_launch(be_attn_split_kernel<G, 2>, grid, block, 0, stream, flags, q, kc,
                               vc, out, tp, nh, nkv, hd, ns, count, ml, po, rope);
}

static cllm_status attention_split(const float *q_dev, const float *k_cache_dev,
                                   const float *v_cache_dev, float *out_dev, cllm_cuda_tokpos tp,
                                   uint32_t n_q, uint32_t max_pos, uint32_t n_heads,
                                   uint32_t n_kv_heads, uint32_t hd, void *scratch_dev,
                                   size_t scratch_bytes, unsigned flags, void *stream,
                                   const ats_rope &rope) {
    RETURN_IF(!cllm_cuda_attention_split_ok(n_q, n_heads, n_kv_heads, hd), CLLM_ERR_UNSUPPORTED,
              "split attention: %u queries, heads %u/%u, head_dim %u", n_q, n_heads, n_kv_heads,
              hd);
    RETURN_IF(!q_dev || !k_cache_dev || !v_cache_dev || !out_dev || !tp.pos || !scratch_dev ||
                  ((uintptr_t)q_dev | (uintptr_t)k_cache_dev | (uintptr_t)v_cache_dev) % 16,
              CLLM_ERR_ARG, "split attention: NULL or unaligned pointer");
    const size_t need = cllm_cuda_attention_split_scratch(n_q, max_pos, n_heads, n_kv_heads, hd);
    RETURN_IF(scratch_bytes < need, CLLM_ERR_ARG, "split attention: scratch %zu bytes < %zu",
              scratch_bytes, need);
    const uint32_t ns = ats_splits(n_q, max_pos, n_kv_heads), nv = hd > 128 ? 2 : 1;
    uint32_t *count = (uint32_t *)scratch_dev;
    float *ml = (float *)((uint8_t *)scratch_dev + ats_counter_bytes(n_q, n_kv_heads));
    float *po = ml + (size_t)2 * n_q * n_heads * ns;
    const dim3 grid(n_kv_heads, ns, n_q);
    cudaError_t e;
    switch (n_heads / n_kv_heads) {
    case 1: e = ats_launch<1>(nv, grid, stream, flags, q_dev, k_cache_dev, v_cache_dev, out_dev,
                              tp, n_heads, n_kv_heads, hd, ns, count, ml, po, rope); break;
    case 2: e = ats_launch<2>(nv, grid, stream, flags, q_dev, k_cache_dev, v_cache_dev, out_dev,
                              tp, n_heads, n_kv_heads, hd, ns, count, ml, po, rope); break;
    case 4: e = ats_launch<4>(nv, grid, stream, flags, q_dev, k_cache_dev, v_cache_dev, out_dev,
                              tp, n_heads, n_kv_heads, hd, ns, count, ml, po, rope); break;
    default: e = ats_launch<8>(nv, grid, stream, flags, q_dev, k_cache_dev, v_cache_dev, out_dev,
                               tp, n_heads, n_kv_heads, hd, ns, count, ml, po, rope); break;
    }
    CLLM_CUDA_TRY(e);
    CLLM_CUDA_CHECK_LAUNCH("attention_split");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_attention_split(const float *q_dev, const float *k_cache_dev,
                                                 const float *v_cache_dev, float *out_dev,
                                                 cllm_cuda_tokpos tp, uint32_t n_q,
                                                 uint32_t max_pos, uint32_t n_heads,
                                                 uint32_t n_kv_heads, uint32_t hd,
                                                 void *scratch_dev, size_t scratch_bytes,
                                                 unsigned flags, void *stream) {
    const ats_rope none = {};
    return attention_split(q_dev, k_cache_dev, v_cache_dev, out_dev, tp, n_q, max_pos, n_heads,
                           n_kv_heads, hd, scratch_dev, scratch_bytes, flags, stream, none);
}

extern "C" cllm_status cllm_cuda_rope_attention_split(
    const float *q_dev, const float *k_dev, const float *v_dev, float *k_cache_dev,
    float *v_cache_dev, const float *cos_t, const float *sin_t, float *out_dev,
    cllm_cuda_tokpos tp, uint32_t n_q, uint32_t max_pos, uint32_t n_heads, uint32_t n_kv_heads,
    uint32_t hd, void *scratch_dev, size_t scratch_bytes, unsigned flags, void *stream) {
    RETURN_IF(!k_dev || !v_dev || !cos_t || !sin_t ||
                  ((uintptr_t)k_dev | (uintptr_t)v_dev) % 16,
              CLLM_ERR_ARG, "rope + split attention: NULL or unaligned pointer");
    const ats_rope rope = {k_dev, v_dev, k_cache_dev, v_cache_dev, cos_t, sin_t};
    return attention_split(q_dev, k_cache_dev, v_cache_dev, out_dev, tp, n_q, max_pos, n_heads,
                           n_kv_heads, hd, scratch_dev, scratch_bytes, flags, stream, rope);
}
