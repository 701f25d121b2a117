// Chat formats: recognising a Jinja chat template's family by its markers, and rendering a
// conversation in that family's format. No Jinja is evaluated: the templates shipped with
// Llama-family models are a handful of fixed formats, and rendering them directly keeps
// untrusted template text from ever being executed.
#include "common/cllm_common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const format_names[] = {NULL,      "chatml", "llama2", "llama3",
                                           "mistral", "gemma",  "phi3",   "zephyr"};
#define N_FORMATS (sizeof format_names / sizeof format_names[0])

const char *cllm_chat_format_name(cllm_chat_format f) {
    return (size_t)f < N_FORMATS ? format_names[f] : NULL;
}

cllm_status cllm_chat_format_parse(const char *name, cllm_chat_format *out) {
    RETURN_IF(!name || !out, CLLM_ERR_ARG, "chat format: NULL argument");
    for (size_t i = 1; i < N_FORMATS; i++)
        if (!strcmp(name, format_names[i])) {
            *out = (cllm_chat_format)i;
            return CLLM_OK;
        }
    return CLLM_FAIL(CLLM_ERR_ARG,
                     "unknown chat format '%s' (chatml, llama2, llama3, mistral, gemma, phi3, "
                     "zephyr)",
                     name);
}

cllm_chat_format cllm_chat_detect(const char *t) {
    if (!t) return CLLM_CHAT_UNKNOWN;
    if (strstr(t, "<|im_start|>")) return CLLM_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return CLLM_CHAT_LLAMA3;
    if (strstr(t, "<start_of_turn>")) return CLLM_CHAT_GEMMA;
    if (strstr(t, "[INST]")) return strstr(t, "<<SYS>>") ? CLLM_CHAT_LLAMA2 : CLLM_CHAT_MISTRAL;
    if (strstr(t, "<|user|>")) return strstr(t, "<|end|>") ? CLLM_CHAT_PHI3 : CLLM_CHAT_ZEPHYR;
    return CLLM_CHAT_UNKNOWN;
}

const char *cllm_chat_end_of_turn(cllm_chat_format f) {
    switch (f) {
    case CLLM_CHAT_CHATML: return "<|im_end|>";
    case CLLM_CHAT_LLAMA3: return "<|eot_id|>";
    case CLLM_CHAT_GEMMA: return "<end_of_turn>";
    case CLLM_CHAT_PHI3: return "<|end|>";
    case CLLM_CHAT_LLAMA2:
    case CLLM_CHAT_MISTRAL:
    case CLLM_CHAT_ZEPHYR: return "</s>";
    default: return NULL;
    }
}

// ---- default system prompt -----------------------------------------------------------------

// The literal after `<|im_start|>system` + a newline (written as a newline or as Jinja's "\n"
// escape) up to `<|im_end|>`, when it is plain text: a template that builds the system turn from
// a variable has '{', '\'' or '+' there.
char *cllm_chat_default_system(const char *t, cllm_chat_format f) {
    if (!t || f != CLLM_CHAT_CHATML) return NULL;
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(t, head); p; p = strstr(p + 1, head)) {
        const char *q = p + sizeof head - 1;
        if (q[0] == '\n') q += 1;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q) continue;
        size_t n = (size_t)(end - q);
        if (memchr(q, '{', n) || memchr(q, '\'', n) || memchr(q, '+', n) || memchr(q, '"', n))
            continue;
        char *s = malloc(n + 1);
        if (!s) return NULL;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (q[i] == '\\' && i + 1 < n && q[i + 1] == 'n') {
                s[k++] = '\n';
                i++;
            } else {
                s[k++] = q[i];
            }
        }
        s[k] = 0;
        return s;
    }
    return NULL;
}

// ---- rendering ----------------------------------------------------------------------------

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void putv(sbuf *b, int n, ...) {
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) put(b, va_arg(ap, const char *));
    va_end(ap);
}

// Formats where each turn is header(role) + content + footer.
static void render_turn(sbuf *b, cllm_chat_format f, const char *role, const char *content) {
    switch (f) {
    case CLLM_CHAT_CHATML: putv(b, 5, "<|im_start|>", role, "\n", content, "<|im_end|>\n"); break;
    case CLLM_CHAT_LLAMA3:
        putv(b, 5, "<|start_header_id|>", role, "<|end_header_id|>\n\n", content, "<|eot_id|>");
        break;
    case CLLM_CHAT_GEMMA:
        putv(b, 5, "<start_of_turn>", strcmp(role, "assistant") ? role : "model", "\n", content,
             "<end_of_turn>\n");
        break;
    case CLLM_CHAT_PHI3: putv(b, 5, "<|", role, "|>\n", content, "<|end|>\n"); break;
    default: putv(b, 5, "<|", role, "|>\n", content, "</s>\n"); break;  // zephyr
    }
}

static void render_generation_prompt(sbuf *b, cllm_chat_format f) {
    switch (f) {
    case CLLM_CHAT_CHATML: put(b, "<|im_start|>assistant\n"); break;
    case CLLM_CHAT_LLAMA3: put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n"); break;
    case CLLM_CHAT_GEMMA: put(b, "<start_of_turn>model\n"); break;
    case CLLM_CHAT_PHI3:
    case CLLM_CHAT_ZEPHYR: put(b, "<|assistant|>\n"); break;
    default: break;  // [INST] formats: the open [/INST] is the prompt
    }
}

// Llama 2 and Mistral: user turns in [INST] ... [/INST], the system text folded into the first.
static void render_inst(sbuf *b, cllm_chat_format f, const cllm_chat_message *m, size_t n) {
    const char *sys = n > 0 && !strcmp(m[0].role, "system") ? m[0].content : NULL;
    int first_user = 1;
    for (size_t i = sys ? 1 : 0; i < n; i++) {
        if (!strcmp(m[i].role, "user")) {
            if (!first_user) put(b, f == CLLM_CHAT_LLAMA2 ? "<s>" : "");
            put(b, "[INST] ");
            if (first_user && sys) {
                if (f == CLLM_CHAT_LLAMA2) putv(b, 3, "<<SYS>>\n", sys, "\n<</SYS>>\n\n");
                else putv(b, 2, sys, "\n\n");
            }
            putv(b, 2, m[i].content, " [/INST]");
            first_user = 0;
        } else {  // assistant
            putv(b, 3, f == CLLM_CHAT_LLAMA2 ? " " : "", m[i].content,
                 f == CLLM_CHAT_LLAMA2 ? " </s>" : "</s>");
        }
    }
}

static cllm_status check_roles(const cllm_chat_message *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        RETURN_IF(!m[i].role || !m[i].content, CLLM_ERR_ARG, "chat: message %zu is incomplete", i);
        int sys = !strcmp(m[i].role, "system");
        RETURN_IF(!sys && strcmp(m[i].role, "user") && strcmp(m[i].role, "assistant"),
                  CLLM_ERR_ARG, "chat: message %zu has role '%s' (system, user or assistant)", i,
                  m[i].role);
        RETURN_IF(sys && i > 0, CLLM_ERR_ARG, "chat: a system message must come first");
    }
    return CLLM_OK;
}

cllm_status cllm_chat_render(cllm_chat_format f, const cllm_chat_message *m, size_t n,
                             int add_generation_prompt, char **out, size_t *len) {
    RETURN_IF(!out || !len || (n && !m), CLLM_ERR_ARG, "chat render: NULL argument");
    *out = NULL;
    *len = 0;
    RETURN_IF(!cllm_chat_format_name(f), CLLM_ERR_ARG, "chat render: unknown format %d", (int)f);
    TRY(check_roles(m, n));
    sbuf b = {0};
    put(&b, "");
    if (f == CLLM_CHAT_LLAMA2 || f == CLLM_CHAT_MISTRAL) {
        render_inst(&b, f, m, n);
    } else {
        // Gemma has no system role: its text leads the first user turn.
        const char *gemma_sys = NULL;
        for (size_t i = 0; i < n; i++) {
            if (f == CLLM_CHAT_GEMMA && !strcmp(m[i].role, "system")) {
                gemma_sys = m[i].content;
                continue;
            }
            if (gemma_sys && !strcmp(m[i].role, "user")) {
                putv(&b, 4, "<start_of_turn>user\n", gemma_sys, "\n\n", m[i].content);
                put(&b, "<end_of_turn>\n");
                gemma_sys = NULL;
                continue;
            }
            render_turn(&b, f, m[i].role, m[i].content);
        }
        if (add_generation_prompt) render_generation_prompt(&b, f);
    }
    if (b.oom) {
        free(b.p);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "chat render: out of memory");
    }
    *out = b.p;
    *len = b.len;
    return CLLM_OK;
}
