// Pieces of `codecllm serve` (tools/cmd_serve.c): a request's fields validated from its JSON
// body (tools/serve_req.c), the response bodies, and UTF-8 helpers for generated text.
#ifndef CLLM_SERVE_H
#define CLLM_SERVE_H

#include "cli_gen.h"
#include "codecllm.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
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

// ---- the server and one request's generation (tools/serve_job.c) -------------------------

typedef struct serve_srv {
    serve_model m;
    cllm_engine *e;
    cli_gen gen;             // the engine's KV cache; used only by the request holding the gate
    long long queue_max;     // --queue
    const char *api_key;     // --api-key, or NULL
    uint64_t max_body;       // --max-body
    pthread_mutex_t mu;      // guards the gate below
    pthread_cond_t cv;
    int busy, waiting;
    unsigned long long next_ticket, serving;  // FIFO order of the waiting requests
    atomic_int stopping;
    atomic_int active;       // requests between parsing and their last byte (jobs alive)
    atomic_ullong ids;
} serve_srv;

typedef struct serve_job {
    serve_srv *s;
    serve_req r;
    cllm_sampler *smp;
    char *text;              // the answer so far (cut at a stop sequence)
    size_t len, cap, sent;   // sent: bytes of text already streamed
    long long n_prompt, n_gen;
    const char *finish;      // NULL while generating, then "stop" or "length"
    int holding, failed, role_sent, done_sent;
    char id[48];
    long long created;
    char *out;               // a streamed event not yet handed to the connection
    size_t out_len, out_off;
    char method[16], path[96];
    double t0;
} serve_job;

// Why a request could not start: HTTP status, message, type and code.
typedef struct serve_fail {
    int status;
    const char *type, *code;
    char message[200];
} serve_fail;

// Tokenizes the prompt, waits for the engine (FIFO, at most queue_max waiting) and runs the
// prompt. 0, or -1 with *f filled (400 prompt too long, 503 queue full or stopping, 500).
int serve_job_begin(serve_job *j, serve_fail *f);
// Gives the engine back (idempotent).
void serve_job_end(serve_job *j);
// One token (or the end): sets j->finish when the answer is complete.
void serve_job_step(serve_job *j);
// Bytes of text that can be sent now: all when finished, else all but what could still start a
// stop sequence, never ending inside a UTF-8 character.
size_t serve_job_safe(const serve_job *j);
// Ends the job (engine given back) and frees it.
void serve_job_free(serve_job *j);

// A compact dump of o (consumed); NULL when o is NULL or out of memory.
char *serve_dump(json_t *o);
// The whole answer (non-streaming).
char *serve_answer_json(const serve_job *j);
// One server-sent event "data: {...}\n\n" with text[from..to); role: the chat's first event;
// finish: the last one (with usage, followed by "data: [DONE]").
char *serve_chunk_json(const serve_job *j, size_t from, size_t to, int role, const char *finish);

#endif
