// Prefill GEMM through cuBLAS: Y (n_tok, rows) = X (n_tok, cols) . W^T with fp32 output.
// In cuBLAS's column-major terms W (rows, cols) row-major is a (cols x rows) matrix with
// ld = cols, so Y^T = op_T(W) . X^T: m = rows, n = n_tok, k = cols.
#include "cllm_cuda_check.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define CLLM_BLAS_TRY(call)                                                                        \
    do {                                                                                           \
        cublasStatus_t blas_st_ = (call);                                                          \
        if (blas_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return cllm_fail(CLLM_ERR_DEVICE, __FILE__, __LINE__, "%s: cuBLAS status %d", #call,  \
                             (int)blas_st_);                                                       \
    } while (0)

extern "C" cllm_status cllm_cuda_blas_create(void **handle) {
    RETURN_IF(!handle, CLLM_ERR_ARG, "blas: NULL argument");
    cublasHandle_t h;
    CLLM_BLAS_TRY(cublasCreate(&h));
    *handle = (void *)h;
    return CLLM_OK;
}

extern "C" void cllm_cuda_blas_destroy(void *handle) {
    if (handle) (void)cublasDestroy((cublasHandle_t)handle);
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

static unsigned grid_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 ? (b ? b : 1) : 65535);
}

extern "C" size_t cllm_cuda_gemm_scratch_bytes(const cllm_cuda_weight *w, uint32_t n_tok) {
    if (!w || w->kind == CLLM_CUDA_W_F32) return 0;
    size_t bytes = ((size_t)n_tok * w->cols * 2 + 255) & ~(size_t)255;  // X, then W (int8)
    if (w->kind == CLLM_CUDA_W_INT8) bytes += (size_t)w->rows * w->cols * 2;
    return (bytes + 255) & ~(size_t)255;
}

extern "C" cllm_status cllm_cuda_gemm(void *blas, const cllm_cuda_weight *w, const float *x_dev,
                                      uint32_t n_tok, float *y_dev, void *scratch_dev,
                                      size_t scratch_cap, void *stream) {
    RETURN_IF(!blas || !w || !w->data || !x_dev || !y_dev, CLLM_ERR_ARG, "gemm: NULL argument");
    RETURN_IF(w->rows == 0 || w->cols == 0 || w->rows > 0x7fffffff || w->cols > 0x7fffffff ||
                  n_tok > 0x7fffffff,
              CLLM_ERR_UNSUPPORTED, "gemm: shape %llu x %llu x %u outside cuBLAS int range",
              (unsigned long long)w->rows, (unsigned long long)w->cols, n_tok);
    RETURN_IF(w->kind == CLLM_CUDA_W_INT8 && (!w->scales || !w->group_size), CLLM_ERR_ARG,
              "gemm: int8 weight without scales");
    RETURN_IF(w->kind > CLLM_CUDA_W_INT8, CLLM_ERR_UNSUPPORTED,
              "gemm: weight kind %u (compute code) has no GEMM", w->kind);
    if (n_tok == 0) return CLLM_OK;
    const size_t need = cllm_cuda_gemm_scratch_bytes(w, n_tok);
    RETURN_IF(need && (!scratch_dev || scratch_cap < need), CLLM_ERR_ARG,
              "gemm: scratch of %zu bytes, needs %zu", scratch_cap, need);
    cudaStream_t s = CLLM_STREAM(stream);
    cublasHandle_t h = (cublasHandle_t)blas;
    CLLM_BLAS_TRY(cublasSetStream(h, s));
    const int m = (int)w->rows, n = (int)n_tok, k = (int)w->cols;
    const float one = 1.0f, zero = 0.0f;
    if (w->kind == CLLM_CUDA_W_F32) {
        CLLM_BLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w->data, CUDA_R_32F,
                                   k, x_dev, CUDA_R_32F, k, &zero, y_dev, CUDA_R_32F, m,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return CLLM_OK;
    }
    const int bf16 = w->kind != CLLM_CUDA_W_F16;
    uint16_t *xs = (uint16_t *)scratch_dev;
    const size_t nx = (size_t)n_tok * w->cols;
    convert_kernel<<<grid_for(nx), 256, 0, s>>>(x_dev, xs, nx, bf16);
    CLLM_CUDA_CHECK_LAUNCH("convert_kernel");
    const void *a = w->data;
    if (w->kind == CLLM_CUDA_W_INT8) {
        uint16_t *ws = (uint16_t *)((uint8_t *)scratch_dev + ((nx * 2 + 255) & ~(size_t)255));
        const int vec = w->cols % 8 == 0 && (uintptr_t)w->data % 8 == 0 && (uintptr_t)ws % 16 == 0;
        const dim3 grid((unsigned)((w->cols + 8 * 256 - 1) / (8 * 256)),
                        (unsigned)(w->rows < 65535 ? w->rows : 65535));
        dequant_kernel<<<grid, 256, 0, s>>>((const int8_t *)w->data, w->scales, w->rows,
                                             (uint32_t)w->cols, w->group_size, ws, vec);
        CLLM_CUDA_CHECK_LAUNCH("dequant_kernel");
        a = ws;
    }
    const cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    CLLM_BLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, t, k, xs, t, k, &zero,
                               y_dev, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return CLLM_OK;
}
