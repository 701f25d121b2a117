// Prefill GEMM through cuBLAS: Y (n_tok, rows) = X (n_tok, cols) . W^T with fp32 output.
// In cuBLAS's column-major terms W (rows, cols) row-major is a (cols x rows) matrix with
// ld = cols, so Y^T = op_T(W) . X^T: m = rows, n = n_tok, k = cols.
#include "cllm_cuda_check.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>

#define CLLM_BLAS_TRY(call)                                                                        \
    do {                                                                                           \
        cublasStatus_t blas_st_ = (call);                                                          \
        if (blas_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return cllm_fail(CLLM_ERR_DEVICE, __FILE__, __LINE__, "%s: cuBLAS status %d", #call,  \
                             (int)blas_st_);                                                       \
    } while (0)

// The handle behind the void *: cuBLAS for the floating-point GEMMs, cuBLASLt for the integer
// one, and the workspace both use.
struct cllm_blas {
    cublasHandle_t h;
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
};

extern "C" cllm_status cllm_cuda_blas_create(void **handle) {
    RETURN_IF(!handle, CLLM_ERR_ARG, "blas: NULL argument");
    cllm_blas *b = (cllm_blas *)calloc(1, sizeof *b);
    RETURN_IF(!b, CLLM_ERR_NOMEM, "blas: out of host memory");
    cublasStatus_t st = cublasCreate(&b->h);
    if (st == CUBLAS_STATUS_SUCCESS) {
        st = cublasLtCreate(&b->lt);
        if (st != CUBLAS_STATUS_SUCCESS) (void)cublasDestroy(b->h);
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return cllm_fail(CLLM_ERR_DEVICE, __FILE__, __LINE__, "blas: cuBLAS status %d", (int)st);
    }
    *handle = b;
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_blas_workspace(void *handle, void *ws, size_t bytes) {
    RETURN_IF(!handle, CLLM_ERR_ARG, "blas: NULL argument");
    cllm_blas *b = (cllm_blas *)handle;
    CLLM_BLAS_TRY(cublasSetWorkspace(b->h, ws, bytes));
    b->ws = ws, b->ws_bytes = bytes;
    return CLLM_OK;
}

extern "C" void cllm_cuda_blas_destroy(void *handle) {
    if (!handle) return;
    cllm_blas *b = (cllm_blas *)handle;
    (void)cublasLtDestroy(b->lt);
    (void)cublasDestroy(b->h);
    free(b);
}

// ---- int8 with one scale per row: integer tensor cores through cuBLASLt ----------------------------
//
// Each token row x_t becomes 15-bit integers v = rint(x / d_t), d_t = max|x_t| / 16256, written as
// two int8 digits v = 128 h + l (h in [-127, 127], l in [-64, 63]); one int8 GEMM (int32 sums,
// exact in any order) takes the h columns and the l columns together, so W is read once per
// IM_NT tokens, and y = s_r * d_t * (128 sum_h + sum_l) in fp32. x keeps ~2^-15 of its row
// maximum (the bf16 path keeps 2^-8 of each value). No bf16 copy of W is made.
#define IM_NT 128  // tokens per integer GEMM

// max(a, b) where a NaN in either wins (fmaxf would drop it).
static __device__ __forceinline__ float nan_max(float a, float b) { return a > b || a != a ? a : b; }

// One block per token row (cols % 16 == 0, rows 16-byte aligned: 4 values per thread and step).
// A NaN in x_t makes d_t NaN (and its digits 0), so that every output of token t is NaN, as on
// the bf16 path; an infinity gives d_t = inf and digits 0: NaN outputs too.
static __global__ void __launch_bounds__(256)
    x_digits_kernel(const float *x, uint32_t cols, uint32_t nt, int8_t *dg, float *dt) {
    __shared__ float red[8];
    const uint32_t t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x / 32, n4 = cols / 4;
    const float4 *xt = (const float4 *)(x + (uint64_t)t * cols);
    float m = 0.f;
    for (uint32_t c = threadIdx.x; c < n4; c += 256) {
        const float4 v = xt[c];
        m = nan_max(m, nan_max(nan_max(fabsf(v.x), fabsf(v.y)), nan_max(fabsf(v.z), fabsf(v.w))));
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) m = nan_max(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = red[0];
#pragma unroll
    for (int k = 1; k < 8; k++) m = nan_max(m, red[k]);
    const float inv = m > 0.f ? __fdiv_rn(16256.0f, m) : 0.f;
    if (threadIdx.x == 0) dt[t] = __fdiv_rn(m, 16256.0f);
    uint32_t *hi = (uint32_t *)(dg + (uint64_t)t * cols), *lo = (uint32_t *)(dg + (uint64_t)(nt + t) * cols);
    for (uint32_t c = threadIdx.x; c < n4; c += 256) {
        const float4 v = xt[c];
        const float f[4] = {v.x, v.y, v.z, v.w};
        uint32_t ph = 0, pl = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int q = __float2int_rn(__fmul_rn(f[k], inv));
            q = max(-16256, min(16256, q));
            const int h = (q + 64) >> 7;
            ph |= (uint32_t)(uint8_t)(int8_t)h << (8 * k);
            pl |= (uint32_t)(uint8_t)(int8_t)(q - 128 * h) << (8 * k);
        }
        hi[c] = ph;
        lo[c] = pl;
    }
}

// y[t * ldy + r] = s[r] * d_t * (128 D[t][r] + D[nt + t][r]) for r < rows, t < nt (D: ldd pitch,
// a multiple of 16). vec: rows, ldy, y and s allow 16-byte accesses (4 rows per thread and step).
static __global__ void im_combine_kernel(const int32_t *d, uint64_t ldd, const float *dt,
                                         const float *s, uint32_t rows, uint32_t nt, float *y,
                                         uint64_t ldy, int vec) {
    const uint32_t t = blockIdx.y;
    const float f = dt[t];
    const int32_t *dh = d + t * ldd, *dl = d + (nt + t) * ldd;
    float *yt = y + t * ldy;
    if (vec) {
        for (uint32_t r = blockIdx.x * blockDim.x + threadIdx.x; r < rows / 4; r += gridDim.x * blockDim.x) {
            const int4 a = ((const int4 *)dh)[r], b = ((const int4 *)dl)[r];
            const float4 sv = ((const float4 *)s)[r];
            float4 o;
            o.x = __fmul_rn(__fmul_rn(__fmaf_rn((float)a.x, 128.0f, (float)b.x), f), sv.x);
            o.y = __fmul_rn(__fmul_rn(__fmaf_rn((float)a.y, 128.0f, (float)b.y), f), sv.y);
            o.z = __fmul_rn(__fmul_rn(__fmaf_rn((float)a.z, 128.0f, (float)b.z), f), sv.z);
            o.w = __fmul_rn(__fmul_rn(__fmaf_rn((float)a.w, 128.0f, (float)b.w), f), sv.w);
            ((float4 *)yt)[r] = o;
        }
        return;
    }
    for (uint32_t r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x) {
        const float v = __fmaf_rn((float)dh[r], 128.0f, (float)dl[r]);
        yt[r] = __fmul_rn(__fmul_rn(v, f), s[r]);
    }
}

static bool im_ok(const cllm_cuda_weight *w) {
    return (w->kind == CLLM_CUDA_W_INT8 || w->kind == CLLM_CUDA_W_CC_INT8) &&
           w->group_size == w->cols && w->cols % 16 == 0 && (uintptr_t)w->data % 16 == 0;
}

static size_t al256(size_t n) { return (n + 255) & ~(size_t)255; }

static uint64_t im_ldd(uint64_t rows) { return (rows + 15) & ~(uint64_t)15; }

// Rows per integer GEMM: raw int8 whole (int32 sums do not depend on the split), compute code in
// the chunks it is unpacked in. (Compute-code chunks of 16 MiB of int8, at least 4096 rows, to
// stay in L2 measured no faster: 7B int8 fused pp128 6,935 against 6,974 tok/s.)
static uint64_t im_rows(const cllm_cuda_weight *w) {
    return w->kind == CLLM_CUDA_W_INT8 ? w->rows : cllm_cuda_gemm_chunk_rows(w->kind, w->rows, w->cols);
}

// Scratch of the integer path for n_tok tokens and chunks of rc rows: digits, d_t, D, then (compute
// code) the int8 chunk.
static size_t im_scratch(const cllm_cuda_weight *w, uint32_t n_tok, uint64_t rc) {
    const size_t nt = n_tok < IM_NT ? n_tok : IM_NT;
    return al256(2 * nt * w->cols) + al256(nt * 4) + al256(2 * nt * im_ldd(rc) * 4) +
           (w->kind == CLLM_CUDA_W_CC_INT8 ? al256(rc * w->cols) : 0);
}

// D (rows x 2 nt, int32, pitch ldd) = W (rows x cols int8, row-major) . [h | l] (cols x 2 nt).
static cllm_status im_matmul(const cllm_blas *b, const int8_t *a, uint64_t rows, uint64_t cols,
                             const int8_t *dg, uint32_t nt, int32_t *d, uint64_t ldd,
                             cudaStream_t s) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    const int32_t one = 1, zero = 0;
    cublasStatus_t st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, cols, rows, cols);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, cols, 2 * nt, cols);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&ld, CUDA_R_32I, rows, 2 * nt, ldd);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &b->ws_bytes, sizeof b->ws_bytes);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(b->lt, op, la, lb, ld, ld, pref, 1, &res, &nres);
    if (st == CUBLAS_STATUS_SUCCESS && nres < 1) st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmul(b->lt, op, &one, a, la, dg, lb, &zero, d, ld, d, ld, &res.algo, b->ws,
                            b->ws_bytes, s);
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
    if (ld) (void)cublasLtMatrixLayoutDestroy(ld);
    if (lb) (void)cublasLtMatrixLayoutDestroy(lb);
    if (la) (void)cublasLtMatrixLayoutDestroy(la);
    if (op) (void)cublasLtMatmulDescDestroy(op);
    RETURN_IF(st != CUBLAS_STATUS_SUCCESS, CLLM_ERR_DEVICE,
              "gemm: int8 cuBLASLt matmul %llu x %llu x %u: status %d", (unsigned long long)rows,
              (unsigned long long)cols, 2 * nt, (int)st);
    return CLLM_OK;
}

// y[i] = x . W_i^T for n weights (im_ok, one width) that share x: x is split into digits once per
// IM_NT tokens for all of them (q/k/v, gate/up). The scratch is laid out for the largest row chunk
// rc (im_scratch of the weight with the most rows per chunk: every region grows with rc).
static cllm_status im_gemm(const cllm_blas *b, const cllm_cuda_weight *w, int n, const float *x,
                           uint32_t n_tok, float *const *y, const uint64_t *ldy, uint8_t *scratch,
                           size_t scratch_cap, cudaStream_t s, void *stream) {
    const uint32_t T = n_tok < IM_NT ? n_tok : IM_NT;
    const uint64_t cols = w[0].cols;
    uint64_t rc = 0;
    for (int i = 0; i < n; i++) rc = im_rows(&w[i]) > rc ? im_rows(&w[i]) : rc;
    int8_t *dg = (int8_t *)scratch;
    float *dt = (float *)(scratch + al256(2 * (size_t)T * cols));
    int32_t *d = (int32_t *)((uint8_t *)dt + al256((size_t)T * 4));
    int8_t *chunk = (int8_t *)((uint8_t *)d + al256(2 * (size_t)T * im_ldd(rc) * 4));
    const size_t chunk_cap = scratch_cap - (size_t)((uint8_t *)chunk - scratch);
    for (uint32_t t0 = 0; t0 < n_tok; t0 += T) {
        const uint32_t nt = n_tok - t0 < T ? n_tok - t0 : T;
        x_digits_kernel<<<nt, 256, 0, s>>>(x + (size_t)t0 * cols, (uint32_t)cols, nt, dg, dt);
        CLLM_CUDA_CHECK_LAUNCH("x_digits_kernel");
        for (int i = 0; i < n; i++) {
            const uint64_t rci = im_rows(&w[i]);
            for (uint64_t r0 = 0; r0 < w[i].rows; r0 += rci) {
                const uint64_t nr = w[i].rows - r0 < rci ? w[i].rows - r0 : rci;
                const int8_t *a = (const int8_t *)w[i].data + r0 * cols;
                if (w[i].kind == CLLM_CUDA_W_CC_INT8) {
                    cllm_cuda_weight un;
                    TRY(cllm_cuda_ccode_unpack_rows(&w[i], r0, nr, 0, chunk, chunk_cap, &un,
                                                    stream));
                    a = chunk;
                }
                TRY(im_matmul(b, a, nr, cols, dg, nt, d, im_ldd(nr), s));
                float *yc = y[i] + (size_t)t0 * ldy[i] + r0;
                const float *sc = w[i].scales + r0;
                const int vec = nr % 4 == 0 && ldy[i] % 4 == 0 && (uintptr_t)yc % 16 == 0 &&
                                (uintptr_t)sc % 16 == 0;
                const uint64_t per = vec ? nr / 4 : nr;
                const dim3 grid((unsigned)((per + 255) / 256 < 1024 ? (per + 255) / 256 : 1024), nt);
                im_combine_kernel<<<grid, 256, 0, s>>>(d, im_ldd(nr), dt, sc, (uint32_t)nr, nt, yc,
                                                       ldy[i], vec);
                CLLM_CUDA_CHECK_LAUNCH("im_combine_kernel");
            }
        }
    }
    return CLLM_OK;
}

// fp32 -> bf16 (to_bf16) or fp16, round to nearest even.
static __global__ void convert_kernel(const float *x, uint16_t *o, size_t n, int to_bf16) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        o[i] = to_bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x[i]))
                       : __half_as_ushort(__float2half_rn(x[i]));
}

// int8 (rows, cols) with group scales -> bf16 (q * scale rounded to nearest even). Block
// (x, y) converts 8 consecutive values per thread of rows y, y + gridDim.y, ...: 32-bit column
// arithmetic, one scale per 8 values when groups are multiples of 8, 8-byte loads and 16-byte
// stores when the rows allow them (`vec`: cols % 8 == 0, q 8-byte and o 16-byte aligned). An
// element-wise loop with a 64-bit division per value ran at a fraction of the memory bandwidth.
static __global__ void dequant_kernel(const int8_t *q, const float *scales, uint64_t rows,
                                      uint32_t cols, uint32_t group_size, uint16_t *o, int vec) {
    const uint32_t gpr = (cols + group_size - 1) / group_size;
    const bool one_scale = group_size % 8 == 0;
    for (uint64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const int8_t *qr = q + r * cols;
        uint16_t *orow = o + r * cols;
        const float *sr = scales + r * gpr;
        for (uint32_t c = (blockIdx.x * blockDim.x + threadIdx.x) * 8; c < cols;
             c += gridDim.x * blockDim.x * 8) {
            if (vec) {
                const uint2 v = *(const uint2 *)(qr + c);
                const int8_t *b = (const int8_t *)&v;
                uint32_t h[4];
                const float s0 = one_scale ? sr[c / group_size] : 0.f;
#pragma unroll
                for (int i = 0; i < 8; i += 2) {
                    const float sa = one_scale ? s0 : sr[(c + i) / group_size];
                    const float sb = one_scale ? s0 : sr[(c + i + 1) / group_size];
                    h[i / 2] = (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn((float)b[i] * sa)) |
                               (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn((float)b[i + 1] * sb))
                                   << 16;
                }
                *(uint4 *)(orow + c) = make_uint4(h[0], h[1], h[2], h[3]);
            } else {
                for (uint32_t i = c; i < c + 8 && i < cols; i++)
                    orow[i] = __bfloat16_as_ushort(
                        __float2bfloat16_rn((float)qr[i] * sr[i / group_size]));
            }
        }
    }
}

// ---- int8 weights on the bf16 tensor cores, without a bf16 copy of W -----------------------------
//
// Y[t * ldy + r] = scale(r, .) * sum_c q[r][c] * bf16(x_t[c]): the int8 values are exact in bf16,
// so each MMA product is exact and only x is rounded (as in the cuBLAS path); the scale is applied
// in fp32 per 64-column chunk (groups) or per row at the end (the cuBLAS path rounds q * scale to
// bf16 first). W is read once at int8 width per 32-token block (the dequantising path reads it,
// writes a bf16 copy twice its size and reads that again).
//
// Block: 8 warps on I8G_R 16-row tiles x I8G_NT 8-token tiles; warp w takes 64-column chunks
// w, w + 8, ... (the next chunk's weights in flight while this one computes) and the warps' partial
// sums are added in warp order through shared memory, so the result does not depend on timing.
// mma.m16n8k16 bf16 fragments (PTX ISA), lane = 4 g + q: A regs {row g, k 2q..+1}, {row g + 8,
// k 2q..}, {row g, k 2q + 8..}, {row g + 8, k 2q + 8..}; B regs {k 2q..+1}, {k 2q + 8..} of column
// g; D {row g, columns 2q, 2q + 1}, {row g + 8, same}. k is only a position in the dot product:
// in k16 step s of a chunk, lane q takes columns 16q + 4s .. + 3 (two int8 pairs of its 16-byte
// load per row) as k {2q, 2q + 1, 2q + 8, 2q + 9}, and x's bf16 copy gives the matching B regs as
// one 8-byte load.
#define I8G_WARPS 8
#define I8G_R 2   // 16-row tiles per block
#define I8G_NT 4  // 8-token tiles per block

static __device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1,
                                                uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Bytes i and i + 1 of u (int8, biased by 128 in t = u ^ 0x80808080) as a bf16 pair, exactly:
// 2^23 + byte as a float, minus 2^23 + 128.
template <int I>
static __device__ __forceinline__ uint32_t i8_pair_bf16(uint32_t t) {
    const float a = __uint_as_float(__byte_perm(t, 0x4b000000u, 0x7540 | I)) - 8388736.0f;
    const float b = __uint_as_float(__byte_perm(t, 0x4b000000u, 0x7540 | (I + 1))) - 8388736.0f;
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *(const uint32_t *)&h;
}

template <bool GROUPED>
static __global__ void __launch_bounds__(I8G_WARPS * 32)
    i8_gemm_kernel(const int8_t *__restrict__ w, const float *__restrict__ scales, uint32_t rows,
                   uint32_t cols, uint32_t gs, const uint16_t *__restrict__ xb, uint32_t n,
                   float *__restrict__ y, uint64_t ldy) {
    __shared__ float red[I8G_WARPS][I8G_R * 16][I8G_NT * 8 + 1];
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t r0 = blockIdx.x * (16 * I8G_R), t0 = blockIdx.y * (8 * I8G_NT);
    const uint32_t nch = cols / 64, gpr = (cols + gs - 1) / gs;
    const uint4 *pa[I8G_R][2];
    const float *ps[I8G_R][2];
#pragma unroll
    for (int t = 0; t < I8G_R; t++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint32_t r = min(r0 + 16 * t + g + 8 * h, rows - 1);
            pa[t][h] = (const uint4 *)(w + (uint64_t)r * cols + 16 * q);
            ps[t][h] = scales + (uint64_t)r * gpr;
        }
    const uint2 *px[I8G_NT];
#pragma unroll
    for (int j = 0; j < I8G_NT; j++)
        px[j] = (const uint2 *)(xb + (uint64_t)min(t0 + 8 * j + g, n - 1) * cols + 16 * q);
    float acc[I8G_R][I8G_NT][4];
#pragma unroll
    for (int t = 0; t < I8G_R; t++)
#pragma unroll
        for (int j = 0; j < I8G_NT; j++) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0.f;
    uint4 a[I8G_R][2], an[I8G_R][2];
    auto load = [&](uint32_t c, uint4 (&dst)[I8G_R][2]) {
#pragma unroll
        for (int t = 0; t < I8G_R; t++)
#pragma unroll
            for (int h = 0; h < 2; h++) dst[t][h] = __ldg(pa[t][h] + 4 * (uint64_t)c);
    };
    if (warp < nch) load(warp, a);
    for (uint32_t c = warp; c < nch; c += I8G_WARPS) {
        if (c + I8G_WARPS < nch) load(c + I8G_WARPS, an);
        float part[I8G_R][I8G_NT][4];
#pragma unroll
        for (int t = 0; t < I8G_R; t++)
#pragma unroll
            for (int j = 0; j < I8G_NT; j++) part[t][j][0] = part[t][j][1] = part[t][j][2] = part[t][j][3] = 0.f;
#pragma unroll
        for (int s = 0; s < 4; s++) {
            uint2 b[I8G_NT];
#pragma unroll
            for (int j = 0; j < I8G_NT; j++) b[j] = __ldg(px[j] + 16 * (uint64_t)c + s);
#pragma unroll
            for (int t = 0; t < I8G_R; t++) {
                const uint32_t ug = (s == 0 ? a[t][0].x : s == 1 ? a[t][0].y : s == 2 ? a[t][0].z : a[t][0].w) ^ 0x80808080u;
                const uint32_t uh = (s == 0 ? a[t][1].x : s == 1 ? a[t][1].y : s == 2 ? a[t][1].z : a[t][1].w) ^ 0x80808080u;
                const uint32_t a0 = i8_pair_bf16<0>(ug), a2 = i8_pair_bf16<2>(ug);
                const uint32_t a1 = i8_pair_bf16<0>(uh), a3 = i8_pair_bf16<2>(uh);
#pragma unroll
                for (int j = 0; j < I8G_NT; j++) mma_bf16(part[t][j], a0, a1, a2, a3, b[j].x, b[j].y);
            }
        }
        const uint32_t grp = GROUPED ? c * 64 / gs : 0;
#pragma unroll
        for (int t = 0; t < I8G_R; t++) {
            const float sg = GROUPED ? __ldg(ps[t][0] + grp) : 1.f, sh = GROUPED ? __ldg(ps[t][1] + grp) : 1.f;
#pragma unroll
            for (int j = 0; j < I8G_NT; j++) {
                acc[t][j][0] = __fmaf_rn(part[t][j][0], sg, acc[t][j][0]);
                acc[t][j][1] = __fmaf_rn(part[t][j][1], sg, acc[t][j][1]);
                acc[t][j][2] = __fmaf_rn(part[t][j][2], sh, acc[t][j][2]);
                acc[t][j][3] = __fmaf_rn(part[t][j][3], sh, acc[t][j][3]);
            }
        }
#pragma unroll
        for (int t = 0; t < I8G_R; t++) a[t][0] = an[t][0], a[t][1] = an[t][1];
    }
#pragma unroll
    for (int t = 0; t < I8G_R; t++)
#pragma unroll
        for (int j = 0; j < I8G_NT; j++) {
            red[warp][16 * t + g][8 * j + 2 * q] = acc[t][j][0];
            red[warp][16 * t + g][8 * j + 2 * q + 1] = acc[t][j][1];
            red[warp][16 * t + g + 8][8 * j + 2 * q] = acc[t][j][2];
            red[warp][16 * t + g + 8][8 * j + 2 * q + 1] = acc[t][j][3];
        }
    __syncthreads();
    for (uint32_t e = threadIdx.x; e < 16 * I8G_R * 8 * I8G_NT; e += I8G_WARPS * 32) {
        const uint32_t rl = e % (16 * I8G_R), tl = e / (16 * I8G_R);
        const uint32_t r = r0 + rl, tok = t0 + tl;
        if (r >= rows || tok >= n) continue;
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < I8G_WARPS; k++) sum = __fadd_rn(sum, red[k][rl][tl]);
        if (!GROUPED) sum = __fmul_rn(sum, __ldg(scales + r));
        y[(uint64_t)tok * ldy + r] = sum;
    }
}

extern "C" int cllm_cuda_gemm_i8_ok(const cllm_cuda_weight *w) {
    return w && (w->kind == CLLM_CUDA_W_INT8 || w->kind == CLLM_CUDA_W_CC_INT8) && w->data &&
           w->scales && w->cols % 64 == 0 && w->cols <= 0x7fffffffu && w->rows <= 0x7fffffffu &&
           (uintptr_t)w->data % 16 == 0 &&
           (w->group_size == w->cols || (w->group_size && w->group_size % 64 == 0));
}

extern "C" uint64_t cllm_cuda_gemm_chunk_rows(uint32_t kind, uint64_t rows, uint64_t cols) {
    if (kind != CLLM_CUDA_W_INT8 && kind != CLLM_CUDA_W_CC_INT8) return rows;
    uint64_t rc = cols ? CLLM_CUDA_GEMM_CHUNK / (cols * 2) / 32 * 32 : rows;
    rc = rc ? rc : 32;
    return rc < rows ? rc : rows;
}

// Rows of the bf16 (or int8) copy of W a GEMM of w (or of any row range of it) writes to its
// scratch: int8 chunks, a whole compute-code bf16 matrix; raw bf16/f16 none.
static uint64_t copy_rows(const cllm_cuda_weight *w) {
    if (w->kind == CLLM_CUDA_W_BF16 || w->kind == CLLM_CUDA_W_F16 || w->kind == CLLM_CUDA_W_F32)
        return 0;
    return cllm_cuda_gemm_chunk_rows(w->kind, w->rows, w->cols);
}

extern "C" size_t cllm_cuda_gemm_i8_scratch(const cllm_cuda_weight *w, uint32_t n_tok) {
    if (!w) return 0;
    const size_t x = al256((size_t)n_tok * w->cols * 2);
    return w->kind == CLLM_CUDA_W_CC_INT8 ? x + al256(copy_rows(w) * w->cols) : x;
}

static unsigned grid_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 ? (b ? b : 1) : 65535);
}

extern "C" size_t cllm_cuda_gemm_scratch_bytes(const cllm_cuda_weight *w, uint32_t n_tok) {
    if (!w || w->kind == CLLM_CUDA_W_F32) return 0;
    if (im_ok(w)) return im_scratch(w, n_tok, im_rows(w));
    size_t bytes = al256((size_t)n_tok * w->cols * 2);  // X, then a chunk of W as bf16
    bytes += al256(copy_rows(w) * w->cols * 2);
    return bytes;
}

// The arguments of a GEMM of w (see cllm_cuda_gemm).
static cllm_status gemm_args(const void *blas, const cllm_cuda_weight *w, const float *x_dev,
                             uint32_t n_tok, const float *y_dev, uint64_t ldy,
                             const void *scratch_dev, size_t scratch_cap) {
    RETURN_IF(!blas || !w || !w->data || !x_dev || !y_dev, CLLM_ERR_ARG, "gemm: NULL argument");
    RETURN_IF(w->rows == 0 || w->cols == 0 || w->rows > 0x7fffffff || w->cols > 0x7fffffff ||
                  n_tok > 0x7fffffff || ldy > 0x7fffffff,
              CLLM_ERR_UNSUPPORTED, "gemm: shape %llu x %llu x %u (pitch %llu) outside cuBLAS int range",
              (unsigned long long)w->rows, (unsigned long long)w->cols, n_tok,
              (unsigned long long)ldy);
    RETURN_IF(ldy < w->rows, CLLM_ERR_ARG, "gemm: output pitch %llu for %llu rows",
              (unsigned long long)ldy, (unsigned long long)w->rows);
    RETURN_IF((w->kind == CLLM_CUDA_W_INT8 || w->kind == CLLM_CUDA_W_CC_INT8) &&
                  (!w->scales || !w->group_size),
              CLLM_ERR_ARG, "gemm: int8 weight without scales");
    RETURN_IF(w->kind > CLLM_CUDA_W_CC_F16, CLLM_ERR_ARG, "gemm: unknown weight kind %u", w->kind);
    const size_t need = n_tok ? cllm_cuda_gemm_scratch_bytes(w, n_tok) : 0;
    RETURN_IF(need && (!scratch_dev || scratch_cap < need || (uintptr_t)scratch_dev % 16),
              CLLM_ERR_ARG, "gemm: scratch of %zu bytes, needs %zu (16-byte aligned)", scratch_cap,
              need);
    RETURN_IF(n_tok && im_ok(w) && (uintptr_t)x_dev % 16, CLLM_ERR_ARG,
              "gemm: int8 input at %p, not 16-byte aligned", (const void *)x_dev);
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_gemm_shared(void *blas, const cllm_cuda_weight *w, int n_w,
                                             const float *x_dev, uint32_t n_tok,
                                             float *const *y_dev, const uint64_t *ldy,
                                             void *scratch_dev, size_t scratch_cap, void *stream) {
    RETURN_IF(!w || !y_dev || !ldy || n_w < 1 || n_w > CLLM_CUDA_GEMM_SHARED_MAX, CLLM_ERR_ARG,
              "gemm_shared: %d weights", n_w);
    bool im = true;
    for (int i = 0; i < n_w; i++) {
        TRY(gemm_args(blas, &w[i], x_dev, n_tok, y_dev[i], ldy[i], scratch_dev, scratch_cap));
        RETURN_IF(w[i].cols != w[0].cols, CLLM_ERR_ARG,
                  "gemm_shared: weight %d has %llu columns, weight 0 %llu", i,
                  (unsigned long long)w[i].cols, (unsigned long long)w[0].cols);
        im = im && im_ok(&w[i]);
    }
    if (n_tok == 0) return CLLM_OK;
    if (im)
        return im_gemm((const cllm_blas *)blas, w, n_w, x_dev, n_tok, y_dev, ldy,
                       (uint8_t *)scratch_dev, scratch_cap, CLLM_STREAM(stream), stream);
    for (int i = 0; i < n_w; i++)
        TRY(cllm_cuda_gemm(blas, &w[i], x_dev, n_tok, y_dev[i], ldy[i], scratch_dev, scratch_cap,
                           stream));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_gemm(void *blas, const cllm_cuda_weight *w, const float *x_dev,
                                      uint32_t n_tok, float *y_dev, uint64_t ldy,
                                      void *scratch_dev, size_t scratch_cap, void *stream) {
    TRY(gemm_args(blas, w, x_dev, n_tok, y_dev, ldy, scratch_dev, scratch_cap));
    if (n_tok == 0) return CLLM_OK;
    cudaStream_t s = CLLM_STREAM(stream);
    if (im_ok(w)) {
        return im_gemm((const cllm_blas *)blas, w, 1, x_dev, n_tok, &y_dev, &ldy,
                       (uint8_t *)scratch_dev, scratch_cap, s, stream);
    }
    cublasHandle_t h = ((const cllm_blas *)blas)->h;
    CLLM_BLAS_TRY(cublasSetStream(h, s));
    const int n = (int)n_tok, k = (int)w->cols, ldc = (int)ldy;
    const float one = 1.0f, zero = 0.0f;
    if (w->kind == CLLM_CUDA_W_F32) {
        CLLM_BLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, k, &one, w->data,
                                   CUDA_R_32F, k, x_dev, CUDA_R_32F, k, &zero, y_dev, CUDA_R_32F,
                                   ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return CLLM_OK;
    }
    const int bf16 = w->kind != CLLM_CUDA_W_F16 && w->kind != CLLM_CUDA_W_CC_F16;  // else f16
    uint16_t *xs = (uint16_t *)scratch_dev;
    const size_t nx = (size_t)n_tok * w->cols;
    convert_kernel<<<grid_for(nx), 256, 0, s>>>(x_dev, xs, nx, bf16);
    CLLM_CUDA_CHECK_LAUNCH("convert_kernel");
    uint16_t *ws = (uint16_t *)((uint8_t *)scratch_dev + al256(nx * 2));
    const uint64_t rc = cllm_cuda_gemm_chunk_rows(w->kind, w->rows, w->cols);
    const uint64_t gpr = w->group_size ? (w->cols + w->group_size - 1) / w->group_size : 0;
    const cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    for (uint64_t r0 = 0; r0 < w->rows; r0 += rc) {
        const uint64_t nr = w->rows - r0 < rc ? w->rows - r0 : rc;
        const void *a;
        if (w->kind == CLLM_CUDA_W_BF16 || w->kind == CLLM_CUDA_W_F16) {
            a = (const uint8_t *)w->data + r0 * w->cols * 2;
        } else if (w->kind == CLLM_CUDA_W_INT8) {
            const int8_t *q = (const int8_t *)w->data + r0 * w->cols;
            const int vec = w->cols % 8 == 0 && (uintptr_t)q % 8 == 0;
            const dim3 grid((unsigned)((w->cols + 8 * 256 - 1) / (8 * 256)),
                            (unsigned)(nr < 65535 ? nr : 65535));
            dequant_kernel<<<grid, 256, 0, s>>>(q, w->scales + r0 * gpr, nr, (uint32_t)w->cols,
                                                 w->group_size, ws, vec);
            CLLM_CUDA_CHECK_LAUNCH("dequant_kernel");
            a = ws;
        } else {
            cllm_cuda_weight un;
            TRY(cllm_cuda_ccode_unpack_rows(w, r0, nr, 1, ws, scratch_cap - al256(nx * 2), &un,
                                            stream));
            a = ws;
        }
        CLLM_BLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, k, &one, a, t, k, xs, t,
                                   k, &zero, y_dev + r0, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
    }
    return CLLM_OK;
}

static void i8_gemm_launch(const cllm_cuda_weight *w, const uint16_t *xs, uint32_t n_tok,
                           float *y, uint64_t ldy, cudaStream_t s) {
    const dim3 grid((unsigned)((w->rows + 16 * I8G_R - 1) / (16 * I8G_R)),
                    (n_tok + 8 * I8G_NT - 1) / (8 * I8G_NT));
    if (w->group_size < w->cols)
        i8_gemm_kernel<true><<<grid, I8G_WARPS * 32, 0, s>>>(
            (const int8_t *)w->data, w->scales, (uint32_t)w->rows, (uint32_t)w->cols,
            w->group_size, xs, n_tok, y, ldy);
    else
        i8_gemm_kernel<false><<<grid, I8G_WARPS * 32, 0, s>>>(
            (const int8_t *)w->data, w->scales, (uint32_t)w->rows, (uint32_t)w->cols,
            w->group_size, xs, n_tok, y, ldy);
}

extern "C" cllm_status cllm_cuda_gemm_i8(const cllm_cuda_weight *w, const float *x_dev,
                                         uint32_t n_tok, float *y_dev, uint64_t ldy,
                                         void *scratch_dev, size_t scratch_cap, void *stream) {
    RETURN_IF(!x_dev || !y_dev, CLLM_ERR_ARG, "gemm_i8: NULL argument");
    RETURN_IF(!cllm_cuda_gemm_i8_ok(w), CLLM_ERR_UNSUPPORTED,
              "gemm_i8: needs int8 weights, cols %% 64 == 0, one group per row or groups of a "
              "multiple of 64, 16-byte aligned data");
    RETURN_IF(ldy < w->rows || n_tok > 0xffffu * 8 * I8G_NT, CLLM_ERR_ARG,
              "gemm_i8: output pitch %llu for %llu rows, or %u tokens", (unsigned long long)ldy,
              (unsigned long long)w->rows, n_tok);
    if (n_tok == 0) return CLLM_OK;
    const size_t need = cllm_cuda_gemm_i8_scratch(w, n_tok);
    RETURN_IF(!scratch_dev || scratch_cap < need || (uintptr_t)scratch_dev % 16, CLLM_ERR_ARG,
              "gemm_i8: scratch of %zu bytes, needs %zu (16-byte aligned)", scratch_cap, need);
    cudaStream_t s = CLLM_STREAM(stream);
    uint16_t *xs = (uint16_t *)scratch_dev;
    const size_t nx = (size_t)n_tok * w->cols;
    convert_kernel<<<grid_for(nx), 256, 0, s>>>(x_dev, xs, nx, 1);
    CLLM_CUDA_CHECK_LAUNCH("convert_kernel");
    if (w->kind == CLLM_CUDA_W_INT8) {
        i8_gemm_launch(w, xs, n_tok, y_dev, ldy, s);
        CLLM_CUDA_CHECK_LAUNCH("i8_gemm_kernel");
        return CLLM_OK;
    }
    // Compute code: row chunks unpacked to int8 after x, each through the same kernel.
    uint8_t *ws = (uint8_t *)scratch_dev + al256(nx * 2);
    const uint64_t rc = cllm_cuda_gemm_chunk_rows(w->kind, w->rows, w->cols);
    for (uint64_t r0 = 0; r0 < w->rows; r0 += rc) {
        const uint64_t nr = w->rows - r0 < rc ? w->rows - r0 : rc;
        cllm_cuda_weight un;
        TRY(cllm_cuda_ccode_unpack_rows(w, r0, nr, 0, ws, scratch_cap - al256(nx * 2), &un, stream));
        i8_gemm_launch(&un, xs, n_tok, y_dev + r0, ldy, s);
        CLLM_CUDA_CHECK_LAUNCH("i8_gemm_kernel");
    }
    return CLLM_OK;
}
