// Compute kernels for batch-1 decode and small-batch prefill: matvec over bf16/f16/f32/int8
// weights, RMSNorm, RoPE, attention over a fp32 KV cache, SwiGLU, residual add, embedding lookup,
// argmax. All fp32 arithmetic with fp32 accumulation; each kernel's C reference (the spec) is named
// in cllm_cuda.h.
#include "cllm_cuda_check.h"

#include <cuda_fp16.h>
#include <math.h>

#define MV_WARPS 8  // rows per thread block of the matvec (one warp per row)

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

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int d = 16; d; d >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
    return v;
}

// ---- matvec ------------------------------------------------------------------------------------------

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
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const float4 a = __ldg(x + k);
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

// One warp per row, 16-byte weight loads, 4 in flight per lane. Requires (host-checked): rows
// 16-byte aligned (cols * elem_size % 16 == 0, data aligned), x 16-byte aligned; int8: group_size
// a multiple of 16 (a 16-byte vector never straddles two groups).
template <int KIND>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_vec_kernel(const cllm_cuda_weight w, const float *__restrict__ x, float *y, int acc) {
    const uint32_t lane = threadIdx.x & 31;
    const uint64_t r = (uint64_t)blockIdx.x * MV_WARPS + threadIdx.x / 32;
    if (r >= w.rows) return;
    constexpr uint32_t EPV = KIND == CLLM_CUDA_W_F32 ? 4 : KIND == CLLM_CUDA_W_INT8 ? 16 : 8;
    const uint32_t nvec = (uint32_t)(w.cols / EPV);
    const uint4 *row = (const uint4 *)((const uint8_t *)w.data + r * w.cols * (16 / EPV));
    const float *sc = KIND == CLLM_CUDA_W_INT8
                          ? w.scales + r * ((w.cols + w.group_size - 1) / w.group_size)
                          : nullptr;
    const uint32_t vpg = KIND == CLLM_CUDA_W_INT8 ? w.group_size / 16 : 1;  // vectors per group
    float sum = 0.f;
    uint32_t v = lane;
    for (; v + 96 < nvec; v += 128) {
        uint4 a[4];
#pragma unroll
        for (int k = 0; k < 4; k++) a[k] = __ldg(row + v + 32 * k);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t vi = v + 32 * k;
            const float d = dot16<KIND>(a[k], (const float4 *)(x + (size_t)vi * EPV));
            sum += KIND == CLLM_CUDA_W_INT8 ? d * __ldg(sc + vi / vpg) : d;
        }
    }
    for (; v < nvec; v += 32) {
        const float d = dot16<KIND>(__ldg(row + v), (const float4 *)(x + (size_t)v * EPV));
        sum += KIND == CLLM_CUDA_W_INT8 ? d * __ldg(sc + v / vpg) : d;
    }
    sum = warp_sum(sum);
    if (lane == 0) y[r] = acc ? y[r] + sum : sum;
}

// Any shape and alignment: one warp per row, one element per lane per iteration.
static __global__ void __launch_bounds__(MV_WARPS * 32)
    matvec_any_kernel(const cllm_cuda_weight w, const float *__restrict__ x, float *y, int acc) {
    const uint32_t lane = threadIdx.x & 31;
    const uint64_t r = (uint64_t)blockIdx.x * MV_WARPS + threadIdx.x / 32;
    if (r >= w.rows) return;
    float sum = 0.f;
    for (uint64_t c = lane; c < w.cols; c += 32) sum += weight_at(w, r, c) * __ldg(x + c);
    sum = warp_sum(sum);
    if (lane == 0) y[r] = acc ? y[r] + sum : sum;
}

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

extern "C" cllm_status cllm_cuda_matvec(const cllm_cuda_weight *w, const float *x_dev,
                                        float *y_dev, int accumulate, void *stream) {
    TRY(check_weight(w, "matvec"));
    RETURN_IF(!x_dev || !y_dev, CLLM_ERR_ARG, "matvec: NULL vector");
    const size_t row_bytes = (size_t)w->cols * wkind_size(w->kind);
    const bool vec = row_bytes % 16 == 0 && (uintptr_t)w->data % 16 == 0 &&
                     (uintptr_t)x_dev % 16 == 0 &&
                     (w->kind != CLLM_CUDA_W_INT8 || w->group_size % 16 == 0);
    const dim3 grid((unsigned)((w->rows + MV_WARPS - 1) / MV_WARPS)), block(MV_WARPS * 32);
    cudaStream_t s = CLLM_STREAM(stream);
    if (!vec) {
        matvec_any_kernel<<<grid, block, 0, s>>>(*w, x_dev, y_dev, accumulate);
    } else {
        switch (w->kind) {
        case CLLM_CUDA_W_F32:
            matvec_vec_kernel<CLLM_CUDA_W_F32><<<grid, block, 0, s>>>(*w, x_dev, y_dev, accumulate);
            break;
        case CLLM_CUDA_W_F16:
            matvec_vec_kernel<CLLM_CUDA_W_F16><<<grid, block, 0, s>>>(*w, x_dev, y_dev, accumulate);
            break;
        case CLLM_CUDA_W_BF16:
            matvec_vec_kernel<CLLM_CUDA_W_BF16><<<grid, block, 0, s>>>(*w, x_dev, y_dev, accumulate);
            break;
        default:
            matvec_vec_kernel<CLLM_CUDA_W_INT8><<<grid, block, 0, s>>>(*w, x_dev, y_dev, accumulate);
            break;
        }
    }
    CLLM_CUDA_CHECK_LAUNCH("matvec");
    return CLLM_OK;
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

static __device__ float block_max(float v, float *red) {
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

// ---- RMSNorm -------------------------------------------------------------------------------------

static __global__ void __launch_bounds__(256)
    rmsnorm_kernel(const float *x, const float *w, float *out, uint32_t dim, float eps) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    float ss = 0.f;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = xr[i] * inv * __ldg(w + i);
}

extern "C" cllm_status cllm_cuda_rmsnorm(const float *x_dev, const float *weight_dev,
                                         float *out_dev, uint32_t n_rows, uint32_t dim, float eps,
                                         void *stream) {
    RETURN_IF(!x_dev || !weight_dev || !out_dev || !dim, CLLM_ERR_ARG, "rmsnorm: bad argument");
    if (n_rows == 0) return CLLM_OK;
    rmsnorm_kernel<<<n_rows, 256, 0, CLLM_STREAM(stream)>>>(x_dev, weight_dev, out_dev, dim, eps);
    CLLM_CUDA_CHECK_LAUNCH("rmsnorm");
    return CLLM_OK;
}

// ---- RoPE ----------------------------------------------------------------------------------------

// One thread per pair (2i, 2i+1) of one head of q or k. The angle is the fp32 product
// pos * inv_freq (as in the C reference); its cosine and sine are taken in double so that large
// angles keep full fp32 accuracy (--use_fast_math would otherwise use the fast approximations).
static __global__ void rope_kernel(float *q, float *k, uint32_t n_tok, uint32_t n_heads,
                                   uint32_t n_kv_heads, uint32_t head_dim, uint32_t pos0,
                                   float theta, const float *inv_freq) {
    const uint32_t half = head_dim / 2;
    const uint32_t per_tok = (n_heads + (k ? n_kv_heads : 0)) * half;
    const uint64_t gid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (uint64_t)per_tok * n_tok) return;
    const uint32_t t = (uint32_t)(gid / per_tok), r = (uint32_t)(gid % per_tok);
    const uint32_t i = r % half;
    uint32_t head = r / half;
    float *v;
    if (head < n_heads) {
        v = q + ((size_t)t * n_heads + head) * head_dim;
    } else {
        head -= n_heads;
        v = k + ((size_t)t * n_kv_heads + head) * head_dim;
    }
    const float f = inv_freq ? inv_freq[i]
                             : (float)pow((double)theta, -2.0 * (double)i / (double)head_dim);
    const float ang = (float)(pos0 + t) * f;
    double sd, cd;
    sincos((double)ang, &sd, &cd);
    const float c = (float)cd, s = (float)sd;
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = a * s + b * c;
}

extern "C" cllm_status cllm_cuda_rope(float *q_dev, float *k_dev, uint32_t n_tok, uint32_t n_heads,
                                      uint32_t n_kv_heads, uint32_t head_dim, uint32_t pos0,
                                      float theta, const float *inv_freq_dev, void *stream) {
    RETURN_IF(!q_dev || !n_heads || !head_dim || head_dim % 2 || (k_dev && !n_kv_heads),
              CLLM_ERR_ARG, "rope: bad argument");
    const uint64_t total = (uint64_t)(n_heads + (k_dev ? n_kv_heads : 0)) * (head_dim / 2) * n_tok;
    if (total == 0) return CLLM_OK;
    RETURN_IF(total > 0x7fffffffull * 256, CLLM_ERR_UNSUPPORTED, "rope: too many elements");
    rope_kernel<<<(unsigned)((total + 255) / 256), 256, 0, CLLM_STREAM(stream)>>>(
        q_dev, k_dev, n_tok, n_heads, n_kv_heads, head_dim, pos0, theta, inv_freq_dev);
    CLLM_CUDA_CHECK_LAUNCH("rope");
    return CLLM_OK;
}

// ---- attention -----------------------------------------------------------------------------------

#define ATT_WARPS 4
#define ATT_MAX_HD 256
#define ATT_MAX_POS 49152  // scores in dynamic shared memory: 192 KiB

// One thread block per (head, query): scores for positions 0..n_ctx-1 in shared memory, softmax,
// then the weighted sum of V with each warp taking every ATT_WARPS-th position and lanes over
// head_dim; the warps' partial sums are added through shared memory.
static __global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_kernel(const float *q, const float *kc, const float *vc, float *out, uint32_t pos0,
                     uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd) {
    extern __shared__ float scores[];
    __shared__ float qs[ATT_MAX_HD];
    __shared__ float part[ATT_WARPS][ATT_MAX_HD];
    __shared__ float red[32];
    const uint32_t h = blockIdx.x, t = blockIdx.y;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const uint32_t n_ctx = pos0 + t + 1;
    const uint32_t kvh = h / (n_heads / n_kv_heads);
    const size_t kv_stride = (size_t)n_kv_heads * hd;
    const float *qh = q + ((size_t)t * n_heads + h) * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qh[d];
    __syncthreads();
    for (uint32_t p = warp; p < n_ctx; p += ATT_WARPS) {
        const float *kr = kc + p * kv_stride + (size_t)kvh * hd;
        float s = 0.f;
        for (uint32_t d = lane; d < hd; d += 32) s += qs[d] * __ldg(kr + d);
        s = warp_sum(s);
        if (lane == 0) scores[p] = s * scale;
    }
    __syncthreads();
    float m = -INFINITY;
    for (uint32_t p = threadIdx.x; p < n_ctx; p += blockDim.x) m = fmaxf(m, scores[p]);
    m = block_max(m, red);
    float sum = 0.f;
    for (uint32_t p = threadIdx.x; p < n_ctx; p += blockDim.x) {
        const float e = __expf(scores[p] - m);
        scores[p] = e;
        sum += e;
    }
    sum = block_sum(sum, red);  // its barriers also publish scores[]
    float acc[ATT_MAX_HD / 32];
#pragma unroll
    for (int j = 0; j < ATT_MAX_HD / 32; j++) acc[j] = 0.f;
    for (uint32_t p = warp; p < n_ctx; p += ATT_WARPS) {
        const float *vr = vc + p * kv_stride + (size_t)kvh * hd;
        const float a = scores[p];
#pragma unroll
        for (int j = 0; j < ATT_MAX_HD / 32; j++)
            if (lane + 32 * j < hd) acc[j] += a * __ldg(vr + lane + 32 * j);
    }
#pragma unroll
    for (int j = 0; j < ATT_MAX_HD / 32; j++)
        if (lane + 32 * j < hd) part[warp][lane + 32 * j] = acc[j];
    __syncthreads();
    float *oh = out + ((size_t)t * n_heads + h) * hd;
    const float inv = 1.0f / sum;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int w = 0; w < ATT_WARPS; w++) o += part[w][d];
        oh[d] = o * inv;
    }
}

extern "C" cllm_status cllm_cuda_attention(const float *q_dev, const float *k_cache_dev,
                                           const float *v_cache_dev, float *out_dev, uint32_t n_q,
                                           uint32_t pos0, uint32_t n_heads, uint32_t n_kv_heads,
                                           uint32_t head_dim, void *stream) {
    RETURN_IF(!q_dev || !k_cache_dev || !v_cache_dev || !out_dev, CLLM_ERR_ARG,
              "attention: NULL pointer");
    RETURN_IF(!n_heads || !n_kv_heads || n_heads % n_kv_heads || !head_dim ||
                  head_dim > ATT_MAX_HD,
              CLLM_ERR_ARG, "attention: heads %u/%u, head_dim %u (at most %d)", n_heads,
              n_kv_heads, head_dim, ATT_MAX_HD);
    if (n_q == 0) return CLLM_OK;
    RETURN_IF((uint64_t)pos0 + n_q > ATT_MAX_POS || n_q > 65535, CLLM_ERR_UNSUPPORTED,
              "attention: %u positions (at most %d)", pos0 + n_q, ATT_MAX_POS);
    const size_t smem = (size_t)(pos0 + n_q) * sizeof(float);
    if (smem > 48 * 1024)
        CLLM_CUDA_TRY(cudaFuncSetAttribute(attention_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           ATT_MAX_POS * (int)sizeof(float)));
    attention_kernel<<<dim3(n_heads, n_q), ATT_WARPS * 32, smem, CLLM_STREAM(stream)>>>(
        q_dev, k_cache_dev, v_cache_dev, out_dev, pos0, n_heads, n_kv_heads, head_dim);
    CLLM_CUDA_CHECK_LAUNCH("attention");
    return CLLM_OK;
}

// ---- element-wise ------------------------------------------------------------------------------

static __global__ void swiglu_kernel(const float *g, const float *u, float *o, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float a = g[i];
        o[i] = a / (1.0f + __expf(-a)) * u[i];
    }
}

static __global__ void add_kernel(float *x, const float *y, size_t n) {
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

// ---- argmax --------------------------------------------------------------------------------------

// (value, index) order: larger value first, then lower index; NaN and "none" (index -1) lose.
static __device__ __forceinline__ bool better(float v, int64_t i, float bv, int64_t bi) {
    if (i < 0 || isnan(v)) return false;
    if (bi < 0) return true;
    return v > bv || (v == bv && i < bi);
}

static __global__ void __launch_bounds__(1024) argmax_kernel(const float *x, size_t n, int32_t *out) {
    __shared__ float sv[32];
    __shared__ long long si[32];
    float bv = 0.f;
    int64_t bi = -1;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        if (better(v, (int64_t)i, bv, bi)) { bv = v; bi = (int64_t)i; }
    }
    for (int d = 16; d; d >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, d);
        const long long oi = __shfl_xor_sync(0xffffffffu, (long long)bi, d);
        if (better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
    __syncthreads();
    if (warp == 0) {
        bv = lane < blockDim.x / 32 ? sv[lane] : 0.f;
        bi = lane < blockDim.x / 32 ? si[lane] : -1;
        for (int d = 16; d; d >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, d);
            const long long oi = __shfl_xor_sync(0xffffffffu, (long long)bi, d);
            if (better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
        }
        if (lane == 0) *out = bi < 0 ? 0 : (int32_t)bi;
    }
}

extern "C" cllm_status cllm_cuda_argmax(const float *x_dev, size_t n, int32_t *out_dev,
                                        void *stream) {
    RETURN_IF(!x_dev || !out_dev || n == 0 || n > 0x7fffffff, CLLM_ERR_ARG, "argmax: bad argument");
    argmax_kernel<<<1, 1024, 0, CLLM_STREAM(stream)>>>(x_dev, n, out_dev);
    CLLM_CUDA_CHECK_LAUNCH("argmax");
    return CLLM_OK;
}
