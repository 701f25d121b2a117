// Weights bound to the Llama layout, still compressed.
//
// Binding looks every tensor up by its canonical name, checks its shape against the config and
// its coded description against its payload, and builds the rANS decode table of each coded
// tensor once. Nothing is decoded here: a backend decides when (stream: each layer just before
// use; resident: everything at load).
//
// Lifetime: the weights borrow the payload bytes (and tensor names) of their source. A container
// passed to cllm_weights_bind must outlive the weights.
#ifndef CLLM_WEIGHTS_H
#define CLLM_WEIGHTS_H

#include "codec/cllm_codec.h"
#include "model/cllm_layout.h"

// One bound tensor, viewed as (rows, cols) like the codec sees it.
typedef struct cllm_weight {
    char name[96];
    cllm_coded_desc desc;          // validated: cllm_payload_layout and cllm_payload_check passed
    cllm_payload_layout_t layout;
    const uint8_t *payload;        // borrowed, layout.total_size bytes
    uint64_t payload_size;
    cllm_rans_dec_table *table;    // coded codecs: built once at bind; NULL for raw
    const float *scales;           // int8: (rows, groups_per_row) inside the payload; else NULL
    uint32_t elem_size;            // bytes per decoded element: dtype size, or 1 for int8
    uint64_t decoded_bytes;        // rows * cols * elem_size
    uint64_t block_scratch_bytes;  // what cllm_decode_blocks needs as per-thread scratch
} cllm_weight;

// The nine tensors of one transformer block, by name or as an array (canonical order).
typedef union cllm_layer_weights {
    struct {
        cllm_weight attn_norm; // (dim)
        cllm_weight wq;        // (n_heads * head_dim, dim)
        cllm_weight wk;        // (n_kv_heads * head_dim, dim)
        cllm_weight wv;        // (n_kv_heads * head_dim, dim)
        cllm_weight wo;        // (dim, n_heads * head_dim)
        cllm_weight ffn_norm;  // (dim)
        cllm_weight gate;      // (hidden_dim, dim)
        cllm_weight up;        // (hidden_dim, dim)
        cllm_weight down;      // (dim, hidden_dim)
    };
    cllm_weight all[CLLM_LAYER_N_TENSORS];
} cllm_layer_weights;
_Static_assert(sizeof(cllm_layer_weights) == CLLM_LAYER_N_TENSORS * sizeof(cllm_weight),
               "the named tensors and the array overlay exactly");

typedef struct cllm_weights {
    cllm_model_config cfg;
    cllm_weight embed;             // (vocab, dim)
    cllm_weight norm;              // (dim)
    cllm_weight lm_head;           // (vocab, dim); unused when tied
    const cllm_weight *classifier; // &lm_head, or &embed when cfg.tied_embeddings
    cllm_layer_weights *layers;    // n_layers
    uint64_t compressed_bytes;     // payload bytes of every bound tensor
    uint64_t max_block_scratch;    // max block_scratch_bytes over all tensors
} cllm_weights;

// What a tensor source hands the binder for one name.
typedef struct cllm_weight_src {
    uint32_t ndim;
    uint64_t shape[4];
    cllm_coded_desc desc;
    const uint8_t *payload;
    uint64_t payload_size;
} cllm_weight_src;

// Looks `name` up: CLLM_OK with *out filled, CLLM_ERR_FORMAT when absent (or another status).
typedef cllm_status (*cllm_weight_lookup_fn)(void *user, const char *name, cllm_weight_src *out);

// Binds the tensors of a container (see the lifetime note above). The config is the container's.
// @return CLLM_OK, FORMAT (missing tensor, shape disagreeing with the config: the message names
//         the tensor), CORRUPT (payload fails its checks), UNSUPPORTED, NOMEM.
cllm_status cllm_weights_bind(const cllm_container *c, cllm_weights **out);

// Same from any source of tensors (tests build models in memory this way). `cfg` is copied and
// validated; the payloads must outlive the weights.
cllm_status cllm_weights_bind_lookup(const cllm_model_config *cfg, cllm_weight_lookup_fn lookup,
                                     void *user, cllm_weights **out);

void cllm_weights_free(cllm_weights *w);

// Source dtype of a decoded tensor's elements as the kernels read them: 0 f32, 1 f16, 2 bf16
// (the cllm_dtype values) or 3 for int8.
uint32_t cllm_weight_decoded_kind(const cllm_weight *w);

// Decodes rows [row_begin, row_end) of `w` into dst, which receives exactly those rows
// ((row_end - row_begin) * cols * elem_size bytes; dst_cap is checked). row_begin must be a
// multiple of rows_per_block for coded tensors (row_end: a multiple or rows). The blocks are
// split over n_threads OpenMP threads; `block_scratch` holds n_threads * block_scratch_stride
// bytes with block_scratch_stride >= w->block_scratch_bytes.
// @return CLLM_OK, ARG (bad range or capacity), CORRUPT (a block fails its decoder's checks).
cllm_status cllm_weight_decode_rows(const cllm_weight *w, uint64_t row_begin, uint64_t row_end,
                                    void *dst, size_t dst_cap, uint8_t *block_scratch,
                                    size_t block_scratch_stride, int n_threads);

// Decodes the whole of a small tensor `w` to fp32 (int8: dequantised) into dst (n values,
// n == rows * cols). Allocates temporary buffers: for load time, not the hot path.
// @return as cllm_weight_decode_rows, NOMEM.
cllm_status cllm_weight_decode_f32(const cllm_weight *w, float *dst, size_t n);

#endif
