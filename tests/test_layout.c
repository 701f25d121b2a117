// The Llama layout table: the canonical names and shapes importers write and the binder reads,
// the layer's matrices in order, and the decode groups (contiguous runs of matrices).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "model/cllm_model.h"
#include "testutil.h"

static void test_matrices_and_groups(void **state) {
    (void)state;
    const int mats[CLLM_LAYER_N_MATRICES] = {CLLM_LT_WQ,   CLLM_LT_WK, CLLM_LT_WV,  CLLM_LT_WO,
                                             CLLM_LT_GATE, CLLM_LT_UP, CLLM_LT_DOWN};
    for (int m = 0; m < CLLM_LAYER_N_MATRICES; m++) {
        assert_int_equal(cllm_layout_matrix_tensor(m), mats[m]);
        assert_true(cllm_layer_tensor_is_matrix(mats[m]));
    }
    assert_int_equal(cllm_layout_matrix_tensor(CLLM_LAYER_N_MATRICES), -1);
    assert_false(cllm_layer_tensor_is_matrix(CLLM_LT_ATTN_NORM));
    assert_false(cllm_layer_tensor_is_matrix(CLLM_LT_FFN_NORM));
    // q/k/v, o, gate/up, down; each group a contiguous run of matrices, in order.
    const int first[CLLM_LAYER_N_GROUPS + 1] = {0, 3, 4, 6, 7};
    for (int g = 0; g <= CLLM_LAYER_N_GROUPS; g++)
        assert_int_equal(cllm_layout_group_first(g), first[g]);
    for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) {
        const cllm_layer_tensor_desc *d = &cllm_llama_layer_layout[i];
        assert_int_equal(d->role, CLLM_ROLE_ATTN_NORM + i);
        if (d->matrix < 0) {
            assert_int_equal(d->group, -1);
            assert_int_equal(d->rows, CLLM_DIM_NONE);
            continue;
        }
        assert_true(d->matrix >= first[d->group] && d->matrix < first[d->group + 1]);
    }
}

static void test_specs(void **state) {
    (void)state;
    cllm_model_config c = {.arch = CLLM_ARCH_LLAMA, .dim = 64, .hidden_dim = 96, .n_layers = 2,
                           .n_heads = 4, .n_kv_heads = 2, .head_dim = 16, .vocab_size = 100,
                           .context_len = 32, .tied_embeddings = 0};
    assert_int_equal(cllm_llama_n_tensors(&c), 2 + 9 * 2 + 1);
    cllm_tensor_spec t;
    cllm_llama_tensor_spec(&c, 0, &t);
    assert_string_equal(t.name, "model.embed_tokens.weight");
    assert_true(t.ndim == 2 && t.shape[0] == 100 && t.shape[1] == 64 && t.layer == -1);
    cllm_llama_tensor_spec(&c, 1 + 9 + CLLM_LT_WK, &t);
    assert_string_equal(t.name, "model.layers.1.self_attn.k_proj.weight");
    assert_true(t.ndim == 2 && t.shape[0] == 32 && t.shape[1] == 64 && t.layer == 1);
    assert_int_equal(t.role, CLLM_ROLE_WK);
    cllm_llama_tensor_spec(&c, 1 + CLLM_LT_DOWN, &t);
    assert_true(t.shape[0] == 64 && t.shape[1] == 96);
    cllm_llama_tensor_spec(&c, 1 + CLLM_LT_FFN_NORM, &t);
    assert_string_equal(t.name, "model.layers.0.post_attention_layernorm.weight");
    assert_true(t.ndim == 1 && t.shape[0] == 64);
    cllm_llama_tensor_spec(&c, 19, &t);
    assert_string_equal(t.name, "model.norm.weight");
    assert_true(t.ndim == 1 && t.shape[0] == 64 && t.role == CLLM_ROLE_NORM);
    cllm_llama_tensor_spec(&c, 20, &t);
    assert_string_equal(t.name, "lm_head.weight");
    assert_true(t.ndim == 2 && t.shape[0] == 100 && t.role == CLLM_ROLE_LM_HEAD);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrices_and_groups),
        cmocka_unit_test(test_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
