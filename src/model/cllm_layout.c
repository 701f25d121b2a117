#include "cllm_layout.h"

const cllm_layer_tensor_desc cllm_llama_layer_layout[CLLM_LAYER_N_TENSORS] = {
    {"input_layernorm.weight", CLLM_ROLE_ATTN_NORM, CLLM_DIM_NONE, CLLM_DIM_MODEL, -1, -1,
     "attn_norm.weight"},
    {"self_attn.q_proj.weight", CLLM_ROLE_WQ, CLLM_DIM_Q, CLLM_DIM_MODEL, 0, 0, "attn_q.weight"},
    {"self_attn.k_proj.weight", CLLM_ROLE_WK, CLLM_DIM_KV, CLLM_DIM_MODEL, 1, 0, "attn_k.weight"},
    {"self_attn.v_proj.weight", CLLM_ROLE_WV, CLLM_DIM_KV, CLLM_DIM_MODEL, 2, 0, "attn_v.weight"},
    {"self_attn.o_proj.weight", CLLM_ROLE_WO, CLLM_DIM_MODEL, CLLM_DIM_Q, 3, 1,
     "attn_output.weight"},
    {"post_attention_layernorm.weight", CLLM_ROLE_FFN_NORM, CLLM_DIM_NONE, CLLM_DIM_MODEL, -1, -1,
     "ffn_norm.weight"},
    {"mlp.gate_proj.weight", CLLM_ROLE_GATE, CLLM_DIM_HIDDEN, CLLM_DIM_MODEL, 4, 2,
     "ffn_gate.weight"},
    {"mlp.up_proj.weight", CLLM_ROLE_UP, CLLM_DIM_HIDDEN, CLLM_DIM_MODEL, 5, 2, "ffn_up.weight"},
    {"mlp.down_proj.weight", CLLM_ROLE_DOWN, CLLM_DIM_MODEL, CLLM_DIM_HIDDEN, 6, 3,
     "ffn_down.weight"},
};

const cllm_layer_tensor_desc cllm_llama_global_layout[3] = {
    {"model.embed_tokens.weight", CLLM_ROLE_EMBED, CLLM_DIM_VOCAB, CLLM_DIM_MODEL, -1, -1,
     "token_embd.weight"},
    {"model.norm.weight", CLLM_ROLE_NORM, CLLM_DIM_NONE, CLLM_DIM_MODEL, -1, -1,
     "output_norm.weight"},
    {"lm_head.weight", CLLM_ROLE_LM_HEAD, CLLM_DIM_VOCAB, CLLM_DIM_MODEL, -1, -1, "output.weight"},
};

uint64_t cllm_llama_dim(const cllm_model_config *c, cllm_dim d) {
    switch (d) {
    case CLLM_DIM_NONE: return 0;
    case CLLM_DIM_MODEL: return c->dim;
    case CLLM_DIM_Q: return (uint64_t)c->n_heads * c->head_dim;
    case CLLM_DIM_KV: return (uint64_t)c->n_kv_heads * c->head_dim;
    case CLLM_DIM_HIDDEN: return c->hidden_dim;
    case CLLM_DIM_VOCAB: return c->vocab_size;
    }
    return 0;
}

int cllm_layout_matrix_tensor(int m) {
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++)
        if (cllm_llama_layer_layout[i].matrix == m) return i;
    return -1;
}

int cllm_layout_group_first(int g) {
    if (g >= CLLM_LAYER_N_GROUPS) return CLLM_LAYER_N_MATRICES;
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++)
        if (cllm_llama_layer_layout[i].group == g) return cllm_llama_layer_layout[i].matrix;
    return -1;
}
