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

// ---- the server, its scheduler and one request's generation -------------------------------
// One scheduler thread (tools/serve_sched.c) owns the engine and its n_par sequence slots; each
// request is a job that waits in a FIFO queue for a slot, has its prompt run there in chunks
// (interleaved with the other slots' decoding), then gets one token per engine step until it
// finishes; the connection's thread waits for the job's text (tools/serve_job.c).

struct serve_job;

// A sequence slot of the engine. The KV cache of slot i holds cached[0..n_cached): what a new
// prompt starting with them need not run again.
typedef struct serve_slot {
    int32_t *cached;         // (ctx)
    size_t n_cached;
    float *logits;           // (vocab) after the last cached token, while its job decodes
    struct serve_job *job;   // NULL: free
} serve_slot;

typedef struct serve_srv {
    serve_model m;
    cllm_engine *e;
    const cllm_tokenizer *tok;
    int32_t eos, eot;        // end of sequence, the template's end of turn (or -1)
    long long queue_max;     // --queue: jobs that may wait for a slot
    long long n_par;         // --parallel: slots
    const char *api_key;     // --api-key, or NULL
    uint64_t max_body;       // --max-body
    pthread_mutex_t mu;      // guards the slots, the queue and every job's shared fields
    pthread_cond_t cv;       // wakes the scheduler
    serve_slot *slots;       // (n_par)
    struct serve_job *wait_head, *wait_tail;  // FIFO of jobs without a slot
    long long n_waiting, n_used;  // jobs queued; slots holding a job
    unsigned long long admitted;  // admissions so far (prompts run in admission order)
    int quit;                // the scheduler thread ends (after the HTTP daemon stopped)
    pthread_t sched;
    cllm_batch_item *items;  // (n_par) one engine call
    int *item_slot;          // (n_par) the slot of each item
    int32_t *next_tok;       // (n_par) the token each decoding slot runs next
    int32_t *sampled;        // (n_par) each decoding slot's sampled token (before emit_token)
    cllm_status *sampled_st; // (n_par) and the sampler's status
    float *batch_logits;     // (n_par, vocab)
    atomic_int stopping;
    atomic_int active;       // requests between parsing and their last byte (jobs alive)
    atomic_ullong ids;
} serve_srv;

enum { JOB_WAITING, JOB_PREFILL, JOB_DECODE, JOB_DONE };

// Why a request could not start: HTTP status, message, type and code.
typedef struct serve_fail {
    int status;
    const char *type, *code;
    char message[200];
} serve_fail;

typedef struct serve_job {
    serve_srv *s;
    serve_req r;
    cllm_sampler *smp;       // used by the scheduler only, once admitted
    // Shared with the scheduler (under s->mu):
    int state;               // JOB_*
    int start;               // 0 until the prompt ran: 1, or -1 refused (fail says why)
    serve_fail fail;
    int cancelled;           // the client is gone or the connection is done with the job
    int refs;                // the connection's and the scheduler's (queue or slot)
    int slot;                // while PREFILL or DECODE
    int32_t *ids;            // (n_ids) the prompt
    size_t n_ids, fed;       // fed: prompt tokens in the slot's cache
    unsigned long long order;  // admission number
    struct serve_job *next;  // in the wait queue
    pthread_cond_t cv;       // wakes the connection: text, finish or start changed
    char *text;              // the answer so far (cut at a stop sequence)
    size_t len, cap;
    long long n_prompt, n_gen;
    const char *finish;      // NULL while generating, then "stop" or "length"
    int failed;
    // The connection's own:
    int fd;                  // its socket (disconnect checks), -1 unknown
    size_t sent;             // bytes of text already streamed
    int role_sent, done_sent;
    char id[48];
    long long created;
    char *out;               // a streamed event not yet handed to the connection
    size_t out_len, out_off;
    char method[16], path[96];
    double t0;
} serve_job;

// Starts the scheduler thread (slots and buffers allocated). 0, or -1 after printing why.
int serve_sched_start(serve_srv *s);
// Ends it once no connection is left (the HTTP daemon stopped) and frees what it allocated.
void serve_sched_stop(serve_srv *s);
// (s->mu held) Appends text to j (NULL-safe growth). -1 when out of memory.
int serve_job_append(serve_job *j, const char *p, size_t n);

// Tokenizes the prompt, queues the job for a slot (at most queue_max waiting) and waits until
// its prompt ran. 0, or -1 with *f filled (400 prompt too long, 503 queue full or stopping, 500
// engine failure, 499 the client went away).
int serve_job_begin(serve_job *j, serve_fail *f);
// Waits until the answer is complete. -1 when the client went away first.
int serve_job_wait_done(serve_job *j);
// Waits for text to send (or the end) and makes the next server-sent event in j->out (from
// serve_chunk_json; the chat's first event carries the role). -1 when the client went away or
// out of memory.
int serve_job_next_event(serve_job *j);
// (s->mu held) Bytes of text that can be sent now: all when finished, else all but what could
// still start a stop sequence, never ending inside a UTF-8 character.
size_t serve_job_safe(const serve_job *j);
// The connection is done with the job: cancels it if unfinished and drops the reference.
void serve_job_free(serve_job *j);
// (s->mu held) Drops one reference; frees the job at the last.
void serve_job_unref(serve_job *j);

// A compact dump of o (consumed); NULL when o is NULL or out of memory.
char *serve_dump(json_t *o);
// The whole answer (non-streaming).
char *serve_answer_json(const serve_job *j);
// One server-sent event "data: {...}\n\n" with text[from..to); role: the chat's first event;
// finish: the last one (with usage, followed by "data: [DONE]").
char *serve_chunk_json(const serve_job *j, size_t from, size_t to, int role, const char *finish);

#endif
