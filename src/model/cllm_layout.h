// The Llama layout, in one table: the tensors of a model by canonical name, their role, shape (in
// config dimensions) and, for a layer's matrices, the decode group (matrices used together and
// decoded together by a just-in-time provider). Importers, the weight binder and every backend
// read it; nothing else lists tensor names or indexes a layer by magic numbers. A plain C11
// header (also compiled by nvcc).
#ifndef CLLM_LAYOUT_H
#define CLLM_LAYOUT_H

#include "codecllm.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cllm_role {
    CLLM_ROLE_EMBED,     // model.embed_tokens.weight            (vocab, dim)
    CLLM_ROLE_ATTN_NORM, // model.layers.L.input_layernorm.weight (dim)
    CLLM_ROLE_WQ,        // self_attn.q_proj.weight              (n_heads*head_dim, dim)
    CLLM_ROLE_WK,        // self_attn.k_proj.weight              (n_kv_heads*head_dim, dim)
    CLLM_ROLE_WV,        // self_attn.v_proj.weight              (n_kv_heads*head_dim, dim)
    CLLM_ROLE_WO,        // self_attn.o_proj.weight              (dim, n_heads*head_dim)
    CLLM_ROLE_FFN_NORM,  // post_attention_layernorm.weight      (dim)
    CLLM_ROLE_GATE,      // mlp.gate_proj.weight                 (hidden, dim)
    CLLM_ROLE_UP,        // mlp.up_proj.weight                   (hidden, dim)
    CLLM_ROLE_DOWN,      // mlp.down_proj.weight                 (dim, hidden)
    CLLM_ROLE_NORM,      // model.norm.weight                    (dim)
    CLLM_ROLE_LM_HEAD,   // lm_head.weight (vocab, dim), only when embeddings are not tied
} cllm_role;

// The tensors of a layer in canonical order (the index into cllm_layer_weights.all and
// cllm_llama_layer_layout): role - CLLM_ROLE_ATTN_NORM.
typedef enum cllm_layer_tensor {
    CLLM_LT_ATTN_NORM = 0,
    CLLM_LT_WQ,
    CLLM_LT_WK,
    CLLM_LT_WV,
    CLLM_LT_WO,
    CLLM_LT_FFN_NORM,
    CLLM_LT_GATE,
    CLLM_LT_UP,
    CLLM_LT_DOWN,
} cllm_layer_tensor;

#define CLLM_LAYER_N_TENSORS 9
#define CLLM_LAYER_N_MATRICES 7 // the tensors with a decode group
#define CLLM_LAYER_N_GROUPS 4   // q/k/v, o, gate/up, down

// A dimension of the config.
typedef enum cllm_dim {
    CLLM_DIM_NONE = 0, // rows of a 1-D vector
    CLLM_DIM_MODEL,    // dim
    CLLM_DIM_Q,        // n_heads * head_dim
    CLLM_DIM_KV,       // n_kv_heads * head_dim
    CLLM_DIM_HIDDEN,   // hidden_dim
    CLLM_DIM_VOCAB,    // vocab_size
} cllm_dim;

typedef struct cllm_layer_tensor_desc {
    const char *suffix; // the name after "model.layers.L." (global tensors: the whole name)
    cllm_role role;
    cllm_dim rows, cols; // rows CLLM_DIM_NONE: a vector of cols values
    int matrix;          // index among the layer's matrices in order, -1 for the norms
    int group;           // decode group 0..CLLM_LAYER_N_GROUPS-1; -1: the norms (decoded at load)
    const char *gguf;    // the name in a GGUF file (llama.cpp), after "blk.L." for a layer's
} cllm_layer_tensor_desc;

extern const cllm_layer_tensor_desc cllm_llama_layer_layout[CLLM_LAYER_N_TENSORS];

// The tensors outside the layers, indexed by cllm_global_index (matrix and group -1).
typedef enum cllm_global_index {
    CLLM_GI_EMBED = 0,
    CLLM_GI_NORM = 1,
    CLLM_GI_LM_HEAD = 2, // only when the embeddings are not tied
} cllm_global_index;
extern const cllm_layer_tensor_desc cllm_llama_global_layout[3];

// The value of dimension d in cfg (0 for CLLM_DIM_NONE).
uint64_t cllm_llama_dim(const cllm_model_config *cfg, cllm_dim d);

// 1 for the seven matrices of a layer, 0 for its two RMSNorm vectors.
static inline int cllm_layer_tensor_is_matrix(int i) {
    return cllm_llama_layer_layout[i].matrix >= 0;
}

// The layer tensor (cllm_layer_tensor) of matrix m < CLLM_LAYER_N_MATRICES.
int cllm_layout_matrix_tensor(int m);

// The first matrix index of decode group g; g == CLLM_LAYER_N_GROUPS gives CLLM_LAYER_N_MATRICES
// (groups are contiguous runs of matrices: group g is [first(g), first(g + 1))).
int cllm_layout_group_first(int g);

#ifdef __cplusplus
}
#endif
#endif
