// Request validation and response pieces of `codecllm serve` (see serve.h). Every field is
// checked for its type and range; anything wrong is a 400 naming the field, never a crash.
#include "serve.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(serve_err *err, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->param = param;
    return -1;
}

// An integer field in [lo, hi]: 1 when present (*out set), 0 when absent or null, -1 when bad.
static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                   serve_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad(err, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return bad(err, key, "'%s' is %lld, must be in [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return 1;
}

// A number field in [lo, hi]: as get_int.
static int get_num(json_t *o, const char *key, double lo, double hi, float *out, serve_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(err, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return bad(err, key, "'%s' is %g, must be in [%g, %g]", key, x, lo, hi);
    *out = (float)x;
    return 1;
}

static int add_stop(serve_req *r, json_t *s, serve_err *err) {
    if (!json_is_string(s)) return bad(err, "stop", "'stop' must be a string or a list of strings");
    size_t n = json_string_length(s);
    if (n == 0) return 0;  // an empty stop sequence stops nothing
    if (n > SERVE_STOP_BYTES) return bad(err, "stop", "a stop sequence is limited to %d bytes",
                                         SERVE_STOP_BYTES);
    if (r->n_stop == SERVE_MAX_STOP)
        return bad(err, "stop", "at most %d stop sequences", SERVE_MAX_STOP);
    if (!(r->stop[r->n_stop] = strndup(json_string_value(s), n)))
        return bad(err, NULL, "out of memory");
    r->n_stop++;
    if (n > r->max_stop) r->max_stop = n;
    return 0;
}

static int get_stop(json_t *o, serve_req *r, serve_err *err) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v)) return add_stop(r, v, err);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) if (add_stop(r, s, err)) return -1;
    return 0;
}

// Sampling fields, n, max_tokens, stream.
static int get_common(json_t *o, const serve_model *m, serve_req *r, serve_err *err) {
    long long x = 1;
    r->sp = m->sp;
    r->max_tokens = m->max_tokens < (long long)m->ctx - 1 ? m->max_tokens : (long long)m->ctx - 1;
    if (get_int(o, "n", 1, 1, &x, err) < 0) return -1;
    if (get_int(o, "max_tokens", 1, (long long)m->ctx - 1, &r->max_tokens, err) < 0) return -1;
    if (get_int(o, "max_completion_tokens", 1, (long long)m->ctx - 1, &r->max_tokens, err) < 0)
        return -1;
    if (get_num(o, "temperature", 0, 100, &r->sp.temperature, err) < 0) return -1;
    if (get_num(o, "top_p", 0, 1, &r->sp.top_p, err) < 0) return -1;
    if (get_num(o, "min_p", 0, 1, &r->sp.min_p, err) < 0) return -1;
    if (get_num(o, "repeat_penalty", 0.01, 100, &r->sp.repeat_penalty, err) < 0) return -1;
    int k = get_int(o, "top_k", 0, 1 << 30, &x, err);
    if (k < 0) return -1;
    if (k > 0) r->sp.top_k = (uint32_t)x;
    k = get_int(o, "seed", 0, INT64_MAX, &x, err);
    if (k < 0) return -1;
    if (k > 0) r->sp.seed = (uint64_t)x;
    json_t *s = json_object_get(o, "stream");
    if (s && !json_is_null(s) && !json_is_boolean(s))
        return bad(err, "stream", "'stream' must be true or false");
    r->stream = s && json_is_true(s);
    return get_stop(o, r, err);
}

static int role_ok(const char *r) {
    return !strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant");
}

// messages[] into cllm_chat_message (pointing into the JSON), the template's system prompt first
// when the conversation has none (as `codecllm chat` does).
static int get_messages(json_t *o, const serve_model *m, cllm_chat_message **out, size_t *n,
                        serve_err *err) {
    json_t *v = json_object_get(o, "messages");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bad(err, "messages", "'messages' must be a non-empty list");
    size_t cnt = json_array_size(v);
    cllm_chat_message *msgs = calloc(cnt + 1, sizeof *msgs);
    if (!msgs) return bad(err, NULL, "out of memory");
    size_t k = 0, i;
    json_t *e;
    json_array_foreach(v, i, e) {
        json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
        if (!json_is_object(e) || !json_is_string(role) || !role_ok(json_string_value(role))) {
            free(msgs);
            return bad(err, "messages", "messages[%zu]: 'role' must be system, user or assistant",
                       i);
        }
        if (!json_is_string(content) || strlen(json_string_value(content)) != json_string_length(content)) {
            free(msgs);
            return bad(err, "messages", "messages[%zu]: 'content' must be a string (without NUL)", i);
        }
        if (k == 0 && strcmp(json_string_value(role), "system") && m->default_system)
            msgs[k++] = (cllm_chat_message){.role = "system", .content = m->default_system};
        msgs[k++] = (cllm_chat_message){.role = json_string_value(role),
                                        .content = json_string_value(content)};
    }
    *out = msgs;
    *n = k;
    return 0;
}

static int get_prompt(json_t *o, const serve_model *m, serve_req *r, serve_err *err) {
    if (!r->chat) {
        json_t *p = json_object_get(o, "prompt");
        if (!json_is_string(p) || strlen(json_string_value(p)) != json_string_length(p))
            return bad(err, "prompt", "'prompt' must be a string (without NUL)");
        r->prompt = strndup(json_string_value(p), json_string_length(p));
        return r->prompt ? 0 : bad(err, NULL, "out of memory");
    }
    if (m->fmt == CLLM_CHAT_UNKNOWN)
        return bad(err, NULL, "the model has no chat template: use /v1/completions");
    cllm_chat_message *msgs = NULL;
    size_t n = 0, len = 0;
    if (get_messages(o, m, &msgs, &n, err)) return -1;
    cllm_status st = cllm_chat_render(m->fmt, msgs, n, 1, &r->prompt, &len);
    free(msgs);
    return st == CLLM_OK ? 0 : bad(err, "messages", "the conversation cannot be rendered: %s",
                                   cllm_last_error());
}

int serve_req_parse(const char *body, size_t len, int chat, const serve_model *m, serve_req *r,
                    serve_err *err) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) return bad(err, NULL, "malformed JSON: %s (line %d, column %d)", je.text, je.line,
                       je.column);
    int rc = json_is_object(o) ? 0 : bad(err, NULL, "the body must be a JSON object");
    if (!rc) rc = get_common(o, m, r, err);
    if (!rc) rc = get_prompt(o, m, r, err);
    json_decref(o);
    if (rc) serve_req_free(r);
    return rc;
}

void serve_req_free(serve_req *r) {
    free(r->prompt);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

char *serve_error_json(const char *message, const char *type, const char *param, const char *code) {
    // The message may quote the request's bytes (a JSON parse error): invalid UTF-8 is replaced,
    // else json_pack refuses it and the client would get an empty error.
    json_t *m = serve_json_text(message, strlen(message));
    json_t *e = m ? json_pack("{s:{s:o, s:s, s:s?, s:s?}}", "error", "message", m, "type", type,
                              "param", param, "code", code)
                  : NULL;
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

// Length of the valid UTF-8 sequence at s[0..n), 0 when it is not one.
static size_t utf8_seq(const unsigned char *s, size_t n) {
    size_t k = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
             : s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : 0;
    if (k == 0 || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (k == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (k == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return k;
}

size_t serve_utf8_cut(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = u[n - back];
        if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
        size_t want = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return want > back ? n - back : n;
    }
    return n;
}

json_t *serve_json_text(const char *s, size_t n) {
    char *buf = malloc(3 * n + 1);  // each invalid byte becomes 3 bytes
    if (!buf) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0 || s[i] == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(buf + o, s + i, k);
        o += k;
        i += k;
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

int serve_find_stop(const serve_req *r, const char *text, size_t len, size_t from, size_t *at) {
    int best = -1;
    if (from >= len) return -1;  // no new text
    for (size_t i = 0; i < r->n_stop; i++) {
        // A match that ends after `from` starts at or after from + 1 - its length.
        const size_t n = strlen(r->stop[i]), start = from + 1 > n ? from + 1 - n : 0;
        const char *p = memmem(text + start, len - start, r->stop[i], n);
        if (p && (best < 0 || (size_t)(p - text) < *at)) {
            best = (int)i;
            *at = (size_t)(p - text);
        }
    }
    return best;
}
