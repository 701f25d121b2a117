// The engine gate and one request's generation for `codecllm serve` (see serve.h): requests wait
// in FIFO order for the one engine; a job prefills its prompt (reusing the cached prefix), then
// produces tokens one at a time, cutting the text at a stop sequence.
#include "cli.h"
#include "cli_engine.h"
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- the engine gate: one request at a time, the rest in FIFO order ------------------------

// 0: the caller holds the engine; -1: the queue is full; -2: the server is stopping.
static int gate_enter(serve_srv *s) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (atomic_load(&s->stopping)) rc = -2;
    else if ((s->busy || s->waiting) && s->waiting >= s->queue_max) rc = -1;
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    unsigned long long ticket = s->next_ticket++;
    s->waiting++;
    while (!atomic_load(&s->stopping) && (s->busy || ticket != s->serving))
        pthread_cond_wait(&s->cv, &s->mu);
    s->waiting--;
    if (atomic_load(&s->stopping)) rc = -2;
    else s->busy = 1, s->serving++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void gate_leave(serve_srv *s) {
    pthread_mutex_lock(&s->mu);
    s->busy = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}




static int job_fail(serve_fail *f, int status, const char *type, const char *code,
                    const char *msg) {
    f->status = status;
    f->type = type;
    f->code = code;
    snprintf(f->message, sizeof f->message, "%s", msg);
    return -1;
}

// Tokenizes the prompt, waits for the engine and runs the prompt. 0, or -1 with *f filled.
int serve_job_begin(serve_job *j, serve_fail *f) {
    serve_srv *s = j->s;
    int32_t *ids = NULL;
    size_t n = 0;
    cllm_status st = CLLM_OK;
    if (cli_tokenize("serve", s->gen.tok, j->r.prompt, strlen(j->r.prompt),
                     cllm_tokenizer_add_bos(s->gen.tok), &ids, &n) != CLI_EXIT_OK)
        return job_fail(f, 400, "invalid_request_error", NULL, "the prompt cannot be tokenized");
    j->n_prompt = (long long)n;
    if (n == 0 || n + 1 > s->m.ctx) {
        free(ids);
        return job_fail(f, 400, "invalid_request_error", "context_length_exceeded",
                        n ? "the prompt does not fit the model's context" : "the prompt is empty");
    }
    int g = gate_enter(s);
    if (g) {
        free(ids);
        return job_fail(f, 503, "server_error", g == -1 ? "queue_full" : "shutting_down",
                        g == -1 ? "too many requests are waiting: retry later"
                                : "the server is stopping");
    }
    j->holding = 1;
    size_t from = 0;
    st = cllm_sampler_create(&j->r.sp, cllm_engine_config(s->e)->vocab_size, &j->smp);
    s->gen.smp = j->smp;
    if (st == CLLM_OK) st = cli_gen_prefill(&s->gen, ids, n, &from);
    for (size_t i = 0; st == CLLM_OK && i < n; i++) cllm_sampler_accept(j->smp, ids[i]);
    free(ids);
    if (st != CLLM_OK)
        return job_fail(f, 500, "server_error", NULL, "the engine failed on the prompt");
    return 0;
}

// Gives the engine back (idempotent).
void serve_job_end(serve_job *j) {
    if (!j->holding) return;
    cllm_sampler_free(j->smp);
    j->smp = NULL;
    j->s->gen.smp = NULL;
    j->holding = 0;
    gate_leave(j->s);
}

static int job_append(serve_job *j, const char *p, size_t n) {
    if (j->len + n + 1 > j->cap) {
        size_t want = j->cap ? 2 * j->cap : 256;
        while (want < j->len + n + 1) want *= 2;
        char *t = realloc(j->text, want);
        if (!t) return -1;
        j->text = t;
        j->cap = want;
    }
    memcpy(j->text + j->len, p, n);
    j->len += n;
    j->text[j->len] = 0;
    return 0;
}

// One token (or the end). Sets j->finish when the answer is complete.
void serve_job_step(serve_job *j) {
    if (j->finish) return;
    if (j->n_gen >= j->r.max_tokens || atomic_load(&j->s->stopping)) {
        j->finish = "length";
        return;
    }
    char piece[512];
    size_t n = 0, at = 0;
    cli_gen_event ev;
    cllm_status st = cli_gen_next(&j->s->gen, &ev, piece, sizeof piece, &n);
    if (st != CLLM_OK || (ev != CLI_GEN_END && job_append(j, piece, n))) {
        j->failed = 1;
        j->finish = "length";
        return;
    }
    if (ev == CLI_GEN_END) {
        j->finish = "stop";
        return;
    }
    j->n_gen++;
    if (j->r.n_stop && serve_find_stop(&j->r, j->text, j->len, j->len - n, &at) >= 0) {
        j->len = at;
        j->text[at] = 0;
        j->finish = "stop";
    } else if (ev == CLI_GEN_FULL) {
        j->finish = "length";
    }
}

// Bytes of text that can be sent now: all of it when finished, else all but what could still
// turn out to start a stop sequence, never ending inside a UTF-8 character.
size_t serve_job_safe(const serve_job *j) {
    if (j->finish) return j->len;
    size_t hold = j->r.max_stop ? j->r.max_stop - 1 : 0;
    size_t safe = j->len > hold ? j->len - hold : 0;
    safe = serve_utf8_cut(j->text, safe);
    return safe > j->sent ? safe : j->sent;
}

// ---- response bodies -------------------------------------------------------------------------

static json_t *usage_json(const serve_job *j) {
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)j->n_prompt,
                     "completion_tokens", (json_int_t)j->n_gen, "total_tokens",
                     (json_int_t)(j->n_prompt + j->n_gen));
}

// The object around the choices: id, object, created, model.
static json_t *envelope(const serve_job *j, const char *object, json_t *choice) {
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", j->id, "object", object, "created",
                     (json_int_t)j->created, "model", j->s->m.name, "choices", choice);
}

char *serve_dump(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

// The whole answer (non-streaming).
char *serve_answer_json(const serve_job *j) {
    json_t *choice = j->r.chat
        ? json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", 0, "message", "role", "assistant",
                    "content", serve_json_text(j->text, j->len), "logprobs", "finish_reason",
                    j->finish)
        : json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "text", serve_json_text(j->text, j->len),
                    "logprobs", "finish_reason", j->finish);
    json_t *o = envelope(j, j->r.chat ? "chat.completion" : "text_completion", choice);
    if (o) json_object_set_new(o, "usage", usage_json(j));
    return serve_dump(o);
}

// One server-sent event with text[from..to) (role: the chat's first event; finish: the last).
char *serve_chunk_json(const serve_job *j, size_t from, size_t to, int role, const char *finish) {
    json_t *text = serve_json_text(j->text ? j->text + from : "", to - from);
    json_t *fin = finish ? json_string(finish) : json_null();
    json_t *choice = j->r.chat
        ? json_pack("{s:i, s:{s:o}, s:n, s:o}", "index", 0, "delta", "content", text, "logprobs",
                    "finish_reason", fin)
        : json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "text", text, "logprobs", "finish_reason",
                    fin);
    if (choice && role) json_object_set_new(json_object_get(choice, "delta"), "role",
                                            json_string("assistant"));
    json_t *o = envelope(j, j->r.chat ? "chat.completion.chunk" : "text_completion", choice);
    if (o && finish) json_object_set_new(o, "usage", usage_json(j));
    char *body = serve_dump(o);
    if (!body) return NULL;
    size_t n = strlen(body);
    const char *tail = finish ? "\n\ndata: [DONE]\n\n" : "\n\n";
    char *ev = malloc(n + 6 + strlen(tail) + 1);
    if (ev) sprintf(ev, "data: %s%s", body, tail);
    free(body);
    return ev;
}

void serve_job_free(serve_job *j) {
    serve_job_end(j);
    atomic_fetch_sub(&j->s->active, 1);
    serve_req_free(&j->r);
    free(j->text);
    free(j->out);
    free(j);
}
