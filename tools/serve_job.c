// One request's side of `codecllm serve` (see serve.h): its prompt queued for the scheduler, the
// connection's thread waiting for the text (and noticing a client that went away), and the
// response bodies.
#include "cli.h"
#include "cli_engine.h"
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static int job_fail(serve_fail *f, int status, const char *type, const char *code,
                    const char *msg) {
    f->status = status;
    f->type = type;
    f->code = code;
    snprintf(f->message, sizeof f->message, "%s", msg);
    return -1;
}

// 1 when the peer closed the connection (or it broke): a peek finds the end of the stream.
static int client_gone(int fd) {
    if (fd < 0) return 0;
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return 1;
    return r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// (s->mu held) Waits until ready(j), looking at the connection every 100 ms. -1 when the client
// went away first: the job is then cancelled (the scheduler frees its slot).
static int job_wait(serve_job *j, int (*ready)(const serve_job *)) {
    while (!ready(j)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&j->cv, &j->s->mu, &ts);
        if (!ready(j) && client_gone(j->fd)) {
            j->cancelled = 1;
            pthread_cond_signal(&j->s->cv);
            return -1;
        }
    }
    return 0;
}

static int started(const serve_job *j) { return j->start != 0; }
static int finished(const serve_job *j) { return j->finish != NULL; }
static int has_news(const serve_job *j) { return j->finish || serve_job_safe(j) > j->sent; }

// (s->mu held) A new job may wait when fewer than n_par + queue_max are in slots or waiting.
static int job_enqueue(serve_job *j, serve_fail *f) {
    serve_srv *s = j->s;
    if (atomic_load(&s->stopping))
        return job_fail(f, 503, "server_error", "shutting_down", "the server is stopping");
    if (s->n_used + s->n_waiting >= s->n_par + s->queue_max)
        return job_fail(f, 503, "server_error", "queue_full",
                        "too many requests are waiting: retry later");
    j->refs = 2;  // the connection's and the queue's
    j->state = JOB_WAITING;
    if (s->wait_tail) s->wait_tail->next = j;
    else s->wait_head = j;
    s->wait_tail = j;
    s->n_waiting++;
    pthread_cond_signal(&s->cv);
    return 0;
}

int serve_job_begin(serve_job *j, serve_fail *f) {
    serve_srv *s = j->s;
    size_t n = 0;
    if (cli_tokenize("serve", s->tok, j->r.prompt, strlen(j->r.prompt),
                     cllm_tokenizer_add_bos(s->tok), &j->ids, &n) != CLI_EXIT_OK)
        return job_fail(f, 400, "invalid_request_error", NULL, "the prompt cannot be tokenized");
    j->n_ids = n;
    j->n_prompt = (long long)n;
    if (n == 0 || n + 1 > s->m.ctx)
        return job_fail(f, 400, "invalid_request_error", "context_length_exceeded",
                        n ? "the prompt does not fit the model's context" : "the prompt is empty");
    if (cllm_sampler_create(&j->r.sp, cllm_engine_config(s->e)->vocab_size, &j->smp) != CLLM_OK)
        return job_fail(f, 400, "invalid_request_error", NULL, cllm_last_error());
    for (size_t i = 0; i < n; i++) cllm_sampler_accept(j->smp, j->ids[i]);
    pthread_mutex_lock(&s->mu);
    int rc = job_enqueue(j, f);
    if (rc == 0 && job_wait(j, started))
        rc = job_fail(f, 499, "invalid_request_error", "client_gone", "the client went away");
    if (rc == 0 && j->start < 0) {
        *f = j->fail;
        rc = -1;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int serve_job_wait_done(serve_job *j) {
    pthread_mutex_lock(&j->s->mu);
    int rc = job_wait(j, finished);
    pthread_mutex_unlock(&j->s->mu);
    return rc;
}

int serve_job_next_event(serve_job *j) {
    free(j->out);
    j->out = NULL;
    j->out_len = j->out_off = 0;
    pthread_mutex_lock(&j->s->mu);
    int role = j->r.chat && !j->role_sent;
    if (!role && job_wait(j, has_news)) {
        pthread_mutex_unlock(&j->s->mu);
        return -1;
    }
    const char *finish = role ? NULL : j->finish;
    size_t to = role ? j->sent : serve_job_safe(j);
    j->out = serve_chunk_json(j, j->sent, to, role, finish);  // reads text: under the lock
    pthread_mutex_unlock(&j->s->mu);
    if (!j->out) return -1;
    j->out_len = strlen(j->out);
    j->sent = to;
    j->role_sent = 1;
    if (finish) j->done_sent = 1;
    return 0;
}

int serve_job_append(serve_job *j, const char *p, size_t n) {
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

void serve_job_unref(serve_job *j) {
    if (--j->refs > 0) return;
    cllm_sampler_free(j->smp);
    serve_req_free(&j->r);
    pthread_cond_destroy(&j->cv);
    free(j->ids);
    free(j->text);
    free(j->out);
    free(j);
}

void serve_job_free(serve_job *j) {
    serve_srv *s = j->s;
    atomic_fetch_sub(&s->active, 1);
    pthread_mutex_lock(&s->mu);
    if (j->state != JOB_DONE) j->cancelled = 1;
    pthread_cond_signal(&s->cv);
    if (j->refs == 0) j->refs = 1;  // never queued: the connection's reference only
    serve_job_unref(j);
    pthread_mutex_unlock(&s->mu);
}
