// Kernels of the CUDA backend that read the chunk's first position from device memory, so that the
// batch-1 step can be captured once in a CUDA graph and replayed at every position (the launchers
// in cllm_cuda_kernels.cu take the position by value). Same arithmetic as their C references:
//   be_rope_store: cllm_k_rope with the CPU's cos/sin tables (no FMA contraction: bit-exact),
//                  then cllm_k_store_kv (F32);
//   be_attention:  cllm_k_attention_head (softmax with __expf under --use_fast_math: tolerance).
#include "cllm_cuda_be.h"

#include <math.h>

#define BE_ATT_WARPS 4

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
                                            const int32_t *pos_dev, uint32_t n_tok,
                                            uint32_t n_heads, uint32_t n_kv, uint32_t hd) {
    be_pdl_enter();
    const uint32_t half = hd / 2, per_tok = (n_heads + n_kv) * half;
    const uint64_t gid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (uint64_t)per_tok * n_tok) return;
    const uint32_t t = (uint32_t)(gid / per_tok), r = (uint32_t)(gid % per_tok);
    const uint32_t i = r % half, head = r / half;
    const size_t pos = (size_t)pos_dev[0] + t, kv_dim = (size_t)n_kv * hd;
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
    float *kd = kc + pos * kv_dim + off, *vd = vc + pos * kv_dim + off;
    kd[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    kd[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
    vd[0] = vp[0];
    vd[1] = vp[1];
}

cllm_status be_rope_store(float *q, const float *k, const float *v, float *kc, float *vc,
                          const float *cos_t, const float *sin_t, const int32_t *pos_dev,
                          uint32_t n_tok, uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd,
                          unsigned flags, void *stream) {
    const uint64_t total = (uint64_t)(n_heads + n_kv_heads) * (hd / 2) * n_tok;
    if (total == 0) return CLLM_OK;
    RETURN_IF(total > 0x7fffffffull * 256, CLLM_ERR_UNSUPPORTED, "rope: too many elements");
    CLLM_CUDA_TRY(be_launch(be_rope_store_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256),
                            0, stream, flags, q, k, v, kc, vc, cos_t, sin_t, pos_dev, n_tok,
                            n_heads, n_kv_heads, hd));
    CLLM_CUDA_CHECK_LAUNCH("be_rope_store");
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
                        const int32_t *pos_dev, uint32_t n_heads, uint32_t n_kv, uint32_t hd) {
    extern __shared__ float scores[];
    __shared__ float qs[BE_ATT_MAX_HD];
    __shared__ float part[BE_ATT_WARPS][BE_ATT_MAX_HD];
    __shared__ float red[32];
    be_pdl_enter();
    const uint32_t h = blockIdx.x, t = blockIdx.y;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const uint32_t n_ctx = (uint32_t)pos_dev[0] + t + 1;
    const uint32_t kvh = h / (n_heads / n_kv);
    const size_t stride = (size_t)n_kv * hd;
    const float *qh = q + ((size_t)t * n_heads + h) * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qh[d];
    __syncthreads();
    for (uint32_t p = warp; p < n_ctx; p += BE_ATT_WARPS) {
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
    for (uint32_t p = warp; p < n_ctx; p += BE_ATT_WARPS) {
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

cllm_status be_attention_init(uint32_t max_pos) {
    RETURN_IF(max_pos > BE_ATT_MAX_POS, CLLM_ERR_UNSUPPORTED,
              "CUDA attention: context %u above the limit of %d positions", max_pos,
              BE_ATT_MAX_POS);
    const int smem = (int)(max_pos * sizeof(float));
    if (smem > 48 * 1024)
        CLLM_CUDA_TRY(cudaFuncSetAttribute(be_attention_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return CLLM_OK;
}

cllm_status be_attention(const float *q, const float *kc, const float *vc, float *out,
                         const int32_t *pos_dev, uint32_t n_q, uint32_t smem_pos,
                         uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd, unsigned flags,
                         void *stream) {
    RETURN_IF(!n_heads || !n_kv_heads || n_heads % n_kv_heads || !hd || hd > BE_ATT_MAX_HD,
              CLLM_ERR_UNSUPPORTED, "CUDA attention: heads %u/%u, head_dim %u (at most %d)",
              n_heads, n_kv_heads, hd, BE_ATT_MAX_HD);
    if (n_q == 0) return CLLM_OK;
    RETURN_IF(smem_pos > BE_ATT_MAX_POS || n_q > 65535, CLLM_ERR_UNSUPPORTED,
              "CUDA attention: %u positions (at most %d)", smem_pos, BE_ATT_MAX_POS);
    const size_t smem = (size_t)smem_pos * sizeof(float);
    CLLM_CUDA_TRY(be_launch(be_attention_kernel, dim3(n_heads, n_q), dim3(BE_ATT_WARPS * 32), smem,
                            stream, flags, q, kc, vc, out, pos_dev, n_heads, n_kv_heads, hd));
    CLLM_CUDA_CHECK_LAUNCH("be_attention");
    return CLLM_OK;
}
