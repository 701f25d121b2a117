// Pieces of `codecllm serve` (tools/cmd_serve.c): a request's fields validated from its JSON
// body (tools/serve_req.c), the response bodies, and UTF-8 helpers for generated text.
#ifndef CLLM_SERVE_H
#define CLLM_SERVE_H

#include "codecllm.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_MAX_STOP 4        // stop sequences per request (as OpenAI)
#define SERVE_STOP_BYTES 256    // bytes of one stop sequence

// What the server knows when it validates a request.
typedef struct serve_model {
    const char *name;           // the model id (MODEL's file name)
    cllm_chat_format fmt;       // CLLM_CHAT_UNKNOWN: chat completions are refused
    const char *default_system; // the template's own system prompt, or NULL
    size_t ctx;                 // the engine's context
    cllm_sampler_params sp;     // defaults (the command line's sampling flags)
    long long max_tokens;       // default max_tokens
} serve_model;

// A validated request. Owned strings: prompt, stop[].
typedef struct serve_req {
    int chat, stream;
    char *prompt;               // the text to tokenize (a chat is rendered with its template)
    long long max_tokens;
    cllm_sampler_params sp;
    char *stop[SERVE_MAX_STOP];
    size_t n_stop, max_stop;    // count, longest length
} serve_req;

// Why a request is refused (400): message and the offending field (or NULL).
typedef struct serve_err {
    char message[256];
    const char *param;
} serve_err;

// Parses and validates a body of len bytes. Returns 0, or -1 with *err filled (nothing owned).
int serve_req_parse(const char *body, size_t len, int chat, const serve_model *m, serve_req *r,
                    serve_err *err);
void serve_req_free(serve_req *r);

// {"error": {"message", "type", "param", "code"}} as a malloc'd string.
char *serve_error_json(const char *message, const char *type, const char *param, const char *code);

// Length of the longest prefix of s[0..n) that does not end inside an incomplete UTF-8 sequence.
size_t serve_utf8_cut(const char *s, size_t n);
// A JSON string of s[0..n), invalid UTF-8 replaced by U+FFFD (NULL when out of memory).
json_t *serve_json_text(const char *s, size_t n);

// Index of the first stop sequence found in text[from..len) (a match may start before `from`
// but must end after it), or -1; *at receives where it starts.
int serve_find_stop(const serve_req *r, const char *text, size_t len, size_t from, size_t *at);

#endif
