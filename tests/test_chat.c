// Chat formats: detection from real templates' markers, the default system prompt, and rendering
// against the prompts the models' own Jinja templates produce.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "codecllm.h"

#include <stdlib.h>
#include <string.h>

// SmolLM2-135M-Instruct's template, as stored in its GGUF file (real newlines inside).
static const char smollm2_template[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

static char *render(cllm_chat_format f, const cllm_chat_message *m, size_t n, int gen) {
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(cllm_chat_render(f, m, n, gen, &out, &len), CLLM_OK);
    assert_int_equal(len, strlen(out));
    return out;
}

static void test_detect(void **state) {
    (void)state;
    assert_int_equal(cllm_chat_detect(smollm2_template), CLLM_CHAT_CHATML);
    assert_int_equal(cllm_chat_detect("{{ '<|start_header_id|>' + role }}"), CLLM_CHAT_LLAMA3);
    assert_int_equal(cllm_chat_detect("{{ '[INST] <<SYS>>\\n' }}"), CLLM_CHAT_LLAMA2);
    assert_int_equal(cllm_chat_detect("{{ '[INST] ' + m }}"), CLLM_CHAT_MISTRAL);
    assert_int_equal(cllm_chat_detect("<start_of_turn>"), CLLM_CHAT_GEMMA);
    assert_int_equal(cllm_chat_detect("<|user|>{{c}}<|end|>"), CLLM_CHAT_PHI3);
    assert_int_equal(cllm_chat_detect("<|user|>{{c}}</s>"), CLLM_CHAT_ZEPHYR);
    assert_int_equal(cllm_chat_detect("{{ messages }}"), CLLM_CHAT_UNKNOWN);
    assert_int_equal(cllm_chat_detect(NULL), CLLM_CHAT_UNKNOWN);
    cllm_chat_format f;
    assert_int_equal(cllm_chat_format_parse("llama3", &f), CLLM_OK);
    assert_int_equal(f, CLLM_CHAT_LLAMA3);
    assert_string_equal(cllm_chat_format_name(f), "llama3");
    assert_int_equal(cllm_chat_format_parse("jinja", &f), CLLM_ERR_ARG);
    assert_null(cllm_chat_format_name((cllm_chat_format)99));
}

static void test_default_system(void **state) {
    (void)state;
    char *s = cllm_chat_default_system(smollm2_template, CLLM_CHAT_CHATML);
    assert_non_null(s);
    assert_string_equal(s, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    free(s);
    // Jinja's "\n" escape written out, as in tokenizer_config.json templates (Qwen2).
    s = cllm_chat_default_system("{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>"
                                 "\\n' }}",
                                 CLLM_CHAT_CHATML);
    assert_non_null(s);
    assert_string_equal(s, "You are a helpful assistant.");
    free(s);
    // Built from a variable: no default.
    assert_null(cllm_chat_default_system(
        "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}", CLLM_CHAT_CHATML));
    assert_null(cllm_chat_default_system(smollm2_template, CLLM_CHAT_LLAMA3));
}

static void test_chatml(void **state) {
    (void)state;
    // The prompt of ../shared/models/smollm2/reference.json's first chat case.
    cllm_chat_message m[] = {
        {"system", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
        {"user", "What is the capital of France?"}};
    char *out = render(CLLM_CHAT_CHATML, m, 2, 1);
    assert_string_equal(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                             "trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the "
                             "capital of France?<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    cllm_chat_message two[] = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    out = render(CLLM_CHAT_CHATML, two, 3, 0);
    assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
                             "<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n");
    free(out);
    assert_string_equal(cllm_chat_end_of_turn(CLLM_CHAT_CHATML), "<|im_end|>");
}

static void test_llama(void **state) {
    (void)state;
    cllm_chat_message m[] = {{"system", "Be brief."},
                             {"user", "Hi"},
                             {"assistant", "Hello!"},
                             {"user", "Bye"}};
    char *out = render(CLLM_CHAT_LLAMA2, m, 4, 1);
    assert_string_equal(out, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>"
                             "[INST] Bye [/INST]");
    free(out);
    out = render(CLLM_CHAT_MISTRAL, m, 4, 1);
    assert_string_equal(out, "[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]");
    free(out);
    out = render(CLLM_CHAT_LLAMA3, m + 1, 1, 1);
    assert_string_equal(out, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                             "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(out);
    out = render(CLLM_CHAT_GEMMA, m, 3, 1);
    assert_string_equal(out, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                             "<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    out = render(CLLM_CHAT_PHI3, m + 1, 1, 1);
    assert_string_equal(out, "<|user|>\nHi<|end|>\n<|assistant|>\n");
    free(out);
}

static void test_bad(void **state) {
    (void)state;
    char *out = NULL;
    size_t len;
    cllm_chat_message late[] = {{"user", "Hi"}, {"system", "x"}};
    assert_int_equal(cllm_chat_render(CLLM_CHAT_CHATML, late, 2, 1, &out, &len), CLLM_ERR_ARG);
    cllm_chat_message role[] = {{"tool", "x"}};
    assert_int_equal(cllm_chat_render(CLLM_CHAT_CHATML, role, 1, 1, &out, &len), CLLM_ERR_ARG);
    cllm_chat_message null[] = {{"user", NULL}};
    assert_int_equal(cllm_chat_render(CLLM_CHAT_CHATML, null, 1, 1, &out, &len), CLLM_ERR_ARG);
    assert_int_equal(cllm_chat_render(CLLM_CHAT_UNKNOWN, role, 0, 1, &out, &len), CLLM_ERR_ARG);
    assert_null(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect), cmocka_unit_test(test_default_system),
        cmocka_unit_test(test_chatml), cmocka_unit_test(test_llama),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
