// Reference kernels of the forward pass, in plain C. They are the specification every other
// backend is tested against (the CUDA kernels must match them: bit for bit where the arithmetic is
// the same, within a named tolerance otherwise), so they favour a fixed, documented order of
// operations over speed tricks that would make results depend on the thread count.
//
// Conventions: activations and accumulators are fp32; a matrix is (rows, cols) row-major and a
// matrix-vector product computes out[r] = sum_c W[r][c] * x[c]. Every dot product accumulates in
// 8 interleaved fp32 partial sums (element c goes to sum c % 8) that are added pairwise at the end:
// the same order for f32, f16 and bf16 weights, so a lossless and a raw copy of a model give
// bit-identical results.
#ifndef CLLM_REF_H
#define CLLM_REF_H

#include "codecllm.h"

#include <stddef.h>
#include <stdint.h>

// Element type of a weight matrix as the kernels read it.
typedef enum cllm_wkind {
    CLLM_W_F32 = 0,
    CLLM_W_F16 = 1,
    CLLM_W_BF16 = 2,
    CLLM_W_I8 = 3, // int8 values with one fp32 scale per `group_size` consecutive values of a row
    // In-VRAM compute code (src/codec/cllm_ccode.h) of BF16 / I8 / F16 weights: only GPU providers hand
    // these out and only GPU matvec kernels read them (the reference kernels do not).
    CLLM_W_CC_BF16 = 4,
    CLLM_W_CC_I8 = 5,
    CLLM_W_CC_F16 = 6,
} cllm_wkind;

// A borrowed view of a decoded weight matrix.
typedef struct cllm_wview {
    cllm_wkind kind;
    uint64_t rows, cols;
    const void *data;          // (rows, cols) elements of `kind`
    const float *scales;       // I8: (rows, groups_per_row); NULL otherwise
    uint64_t group_size;       // I8: values per scale, 1..cols (cols: per output channel)
    uint64_t groups_per_row;   // I8: ceil(cols / group_size)
} cllm_wview;

// View of rows [r0, r0 + n) of `w` (the caller keeps r0 + n <= w->rows).
cllm_wview cllm_wview_rows(const cllm_wview *w, uint64_t r0, uint64_t n);

// Dot product of row r of W with x (cols values), in the order described at the top.
float cllm_k_dot_row(const cllm_wview *w, uint64_t r, const float *x);

// Work (multiply-adds, decoded symbols) below which a kernel stays on the calling thread: waking
// a team costs microseconds, and far more on a loaded machine where idle workers spin.
#define CLLM_K_PARALLEL_MIN_WORK (1u << 20)

// out[t * ldo + r] = W[r] . x[t * ldx + :] for t < n_tok, r < rows. Rows are split over
// `n_threads` OpenMP threads when the work is large enough; each output is one cllm_k_dot_row, so
// the result does not depend on n_tok, the thread count or how a caller chunks the rows.
void cllm_k_matmul(float *out, size_t ldo, const cllm_wview *w, const float *x, size_t ldx,
                   size_t n_tok, int n_threads);

// Row r of W widened to fp32 (int8: value * scale of its group). out: cols floats.
void cllm_k_row_to_f32(const cllm_wview *w, uint64_t r, float *out);

// out = x / sqrt(mean(x^2) + eps) * weight, n values (out may alias x).
void cllm_k_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps);

// Rotation frequencies of the head_dim / 2 pairs: theta^(-2i / head_dim), remapped by the Llama 3
// rule when cfg->rope_scaling is CLLM_ROPE_SCALING_LLAMA3. freqs: head_dim / 2 values.
void cllm_k_rope_freqs(const cllm_model_config *cfg, double *freqs);

// cos and sin of pos * freqs[i] for the head_dim / 2 pairs (computed in double, stored as fp32).
void cllm_k_rope_angles(const double *freqs, size_t n_pairs, size_t pos, float *cos_out,
                        float *sin_out);

// Rotates the adjacent pairs (2i, 2i+1) of each of the n_heads heads of `vec`
// ((n_heads, head_dim) values) by the angles given as cos/sin (head_dim / 2 each).
void cllm_k_rope(float *vec, size_t n_heads, size_t head_dim, const float *cos_v,
                 const float *sin_v);

// Numerically stable in-place softmax of n values.
void cllm_k_softmax(float *x, size_t n);

// One attention head of one query over the cached positions 0..n_pos-1:
//   out = sum_j softmax_j(q . k_j / sqrt(head_dim)) v_j
// k and v point at the head's first value of position 0 in the cache; position j's values start
// `stride` elements later per position. kv_dtype is CLLM_DTYPE_F32 (float) or CLLM_DTYPE_F16
// (uint16 binary16). scores: n_pos floats of scratch. out: head_dim floats.
void cllm_k_attention_head(float *out, const float *q, const void *k, const void *v,
                           cllm_dtype kv_dtype, size_t n_pos, size_t head_dim, size_t stride,
                           float *scores);

// gate[i] = silu(gate[i]) * up[i] (silu(x) = x / (1 + e^-x)), n values.
void cllm_k_swiglu(float *gate, const float *up, size_t n);

// Stores n fp32 values into a KV cache row of kv_dtype (F32 copy, F16 rounded to nearest even).
void cllm_k_store_kv(void *dst, const float *src, size_t n, cllm_dtype kv_dtype);

#endif
