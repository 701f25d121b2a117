// codecllm serve MODEL.cllm [--host H] [--port P] [--api-key KEY] [--parallel N] [--queue N]
//                 [--max-body SIZE] [--chat-template NAME] [-n N] [sampling flags] [engine flags]
//
// An OpenAI-compatible HTTP server (libmicrohttpd, one thread per connection): /v1/chat/completions,
// /v1/completions, /v1/models, /health. One scheduler thread (serve_sched.c) decodes up to
// --parallel requests together (continuous batching over the engine's sequence slots); the others
// wait in a bounded FIFO queue (503 when full). Each slot's KV cache is kept between requests, so
// a prompt that starts like one a slot holds runs only from where they differ.
#include "cli.h"
#include "cli_engine.h"
#include "cli_gen.h"
#include "serve.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char serve_usage[] =
    "codecllm serve MODEL.cllm [--host H] [--port P] [--api-key KEY] [--parallel N] [--queue N]\n"
    "               [--max-body SIZE] [--chat-template NAME] [-n N] [--temp T] [--top-k K]\n"
    "               [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [-t N] [-c CTX]\n"
    "               [--backend B] [--weights MODE] [--verbose]\n"
    "  OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions (both with\n"
    "  \"stream\": true as server-sent events), GET /v1/models, GET /health. Up to --parallel\n"
    "  requests are decoded together; SIGINT/SIGTERM stop the server (exit 0).\n"
    "  --host H             address to listen on (default 127.0.0.1)\n"
    "  --port P             TCP port (default 8080; 0 = any free one, printed at start)\n"
    "  --api-key KEY        requests to /v1/ need 'Authorization: Bearer KEY' (else 401)\n"
    "  --parallel N         requests decoded together, each in its own KV cache slot (default 4;\n"
    "                       the KV cache takes N times the context: -c caps it)\n"
    "  --queue N            requests that may wait for a slot (default 16; more: 503)\n"
    "  --max-body SIZE      largest request body (default 1MiB; larger: 413)\n"
    "  --chat-template NAME as chat (default: recognised from the stored template)\n"
    "  sampling flags: the defaults of requests that do not set them; -n is the default\n"
    "  max_tokens (default 256)\n"
    CLI_SAMPLING_FLAGS_HELP CLI_ENGINE_FLAGS_HELP;

typedef struct serve_args {
    const char *model, *host, *api_key, *format_name;
    long long port, queue, n_predict, parallel;
    uint64_t max_body;
    cllm_sampler_params sp;
    cli_engine_args eng;
} serve_args;


// ---- streaming -----------------------------------------------------------------------------

// Events as the job's text grows: waits in the connection's thread (serve_job_next_event).
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    serve_job *j = cls;
    while (j->out_off == j->out_len) {
        if (j->done_sent) return MHD_CONTENT_READER_END_OF_STREAM;
        if (serve_job_next_event(j)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = j->out_len - j->out_off < max ? j->out_len - j->out_off : max;
    memcpy(buf, j->out + j->out_off, n);
    j->out_off += n;
    return (ssize_t)n;
}

static void log_line(const char *method, const char *path, int status, long long n_prompt,
                     long long n_gen, double t0, const char *note) {
    fprintf(stderr, "serve: %s %s %d prompt=%lld completion=%lld %.3fs%s\n", method, path, status,
            n_prompt, n_gen, cllm_now_seconds_cli() - t0, note);
}


// The stream is over: finished, or the client went away (MHD frees the response).
static void stream_free(void *cls) {
    serve_job *j = cls;
    pthread_mutex_lock(&j->s->mu);  // the scheduler may still be writing a cut job's count
    long long n_gen = j->n_gen;
    pthread_mutex_unlock(&j->s->mu);
    log_line(j->method, j->path, 200, j->n_prompt, n_gen, j->t0,
             j->done_sent ? " stream" : " stream cut: client gone or server stopping");
    serve_job_free(j);
}

// ---- HTTP --------------------------------------------------------------------------------

enum { ROUTE_NONE, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_CHAT, ROUTE_COMPLETIONS };

// One connection's request: its body as it arrives, and what goes into the log line.
typedef struct serve_conn {
    int route, responded, streaming, too_large;
    char *body;
    size_t len;
    int status;
    long long n_prompt, n_gen;
    char method[16], path[96];
    double t0;
} serve_conn;

static enum MHD_Result respond(struct MHD_Connection *c, serve_conn *k, int status, char *body,
                               const char *hdr, const char *val) {
    const char *b = body ? body : "{}";
    struct MHD_Response *r = body
        ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
        : MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (hdr) MHD_add_response_header(r, hdr, val);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    k->status = status;
    k->responded = 1;
    return ok;
}

static enum MHD_Result respond_error(struct MHD_Connection *c, serve_conn *k, int status,
                                     const char *msg, const char *type, const char *param,
                                     const char *code, const char *hdr, const char *val) {
    return respond(c, k, status, serve_error_json(msg, type, param, code), hdr, val);
}

static int route_of(const char *url) {
    if (!strcmp(url, "/health")) return ROUTE_HEALTH;
    if (!strcmp(url, "/v1/models")) return ROUTE_MODELS;
    if (!strcmp(url, "/v1/chat/completions")) return ROUTE_CHAT;
    if (!strcmp(url, "/v1/completions")) return ROUTE_COMPLETIONS;
    return ROUTE_NONE;
}

static enum MHD_Result get_route(serve_srv *s, struct MHD_Connection *c, serve_conn *k) {
    if (k->route == ROUTE_HEALTH)
        return respond(c, k, 200, strdup("{\"status\":\"ok\"}"), NULL, NULL);
    json_t *o = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id",
                          s->m.name, "object", "model", "created", (json_int_t)time(NULL),
                          "owned_by", "codecllm");
    return respond(c, k, 200, serve_dump(o), NULL, NULL);
}

// The first call for a request: route, method, key and declared size, before any body is read.
static enum MHD_Result first_call(serve_srv *s, struct MHD_Connection *c, serve_conn *k,
                                  const char *method) {
    if (k->route == ROUTE_NONE)
        return respond_error(c, k, 404, "no such route", "invalid_request_error", NULL,
                             "not_found", NULL, NULL);
    int post = k->route == ROUTE_CHAT || k->route == ROUTE_COMPLETIONS;
    if (strcmp(method, post ? "POST" : "GET"))
        return respond_error(c, k, 405, "method not allowed", "invalid_request_error", NULL,
                             "method_not_allowed", "Allow", post ? "POST" : "GET");
    if (s->api_key && k->route != ROUTE_HEALTH) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, s->api_key))
            return respond_error(c, k, 401, "a valid API key is needed", "invalid_request_error",
                                 NULL, "invalid_api_key", "WWW-Authenticate", "Bearer");
    }
    if (!post) return get_route(s, c, k);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->max_body)
        return respond_error(c, k, 413, "the request body is too large", "invalid_request_error",
                             NULL, "body_too_large", "Connection", "close");
    return MHD_YES;
}

static void job_log_fields(serve_job *j, const serve_conn *k) {
    memcpy(j->method, k->method, sizeof j->method);
    memcpy(j->path, k->path, sizeof j->path);
    j->t0 = k->t0;
}

// A validated completion request: generate and answer (or start the stream).
static enum MHD_Result run_job(serve_srv *s, struct MHD_Connection *c, serve_conn *k,
                               serve_job *j) {
    serve_fail f;
    snprintf(j->id, sizeof j->id, "%s-%llx%llx", j->r.chat ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)atomic_fetch_add(&s->ids, 1));
    j->created = (long long)time(NULL);
    if (serve_job_begin(j, &f)) {
        k->n_prompt = j->n_prompt;
        serve_job_free(j);
        return respond_error(c, k, f.status, f.message, f.type, NULL, f.code,
                             f.status == 503 ? "Retry-After" : NULL, "1");
    }
    k->n_prompt = j->n_prompt;
    if (!j->r.stream) {
        if (serve_job_wait_done(j)) {  // the client went away: nobody to answer
            serve_job_free(j);
            return MHD_NO;
        }
        k->n_gen = j->n_gen;
        int failed = j->failed;
        char *body = failed ? NULL : serve_answer_json(j);
        serve_job_free(j);
        if (!body) return respond_error(c, k, 500, "generation failed", "server_error", NULL, NULL,
                                        NULL, NULL);
        return respond(c, k, 200, body, NULL, NULL);
    }
    job_log_fields(j, k);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
    if (!r) {
        serve_job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);  // stream_free runs when the connection is done with it
    k->streaming = k->responded = 1;
    return ok;
}

static enum MHD_Result post_route(serve_srv *s, struct MHD_Connection *c, serve_conn *k) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return MHD_NO;
    j->s = s;
    j->slot = -1;
    pthread_cond_init(&j->cv, NULL);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? (int)ci->connect_fd : -1;
    atomic_fetch_add(&s->active, 1);
    serve_err err = {0};
    if (serve_req_parse(k->body ? k->body : "", k->len, k->route == ROUTE_CHAT, &s->m, &j->r,
                        &err)) {
        atomic_fetch_sub(&s->active, 1);
        pthread_cond_destroy(&j->cv);
        free(j);
        return respond_error(c, k, 400, err.message, "invalid_request_error", err.param, NULL,
                             NULL, NULL);
    }
    return run_job(s, c, k, j);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version;
    serve_srv *s = cls;
    serve_conn *k = *con_cls;
    if (!k) {
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        *con_cls = k;
        k->t0 = cllm_now_seconds_cli();
        snprintf(k->method, sizeof k->method, "%s", method);
        snprintf(k->path, sizeof k->path, "%s", url);
        k->route = route_of(url);
        return first_call(s, c, k, method);
    }
    if (k->responded) {  // answered before the body (413, 401...): drop what still comes
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (k->len + *upload_size > s->max_body) {
            respond_error(c, k, 413, "the request body is too large", "invalid_request_error",
                          NULL, "body_too_large", "Connection", "close");
            return MHD_NO;  // a chunked body over the limit: stop reading it
        }
        char *b = realloc(k->body, k->len + *upload_size + 1);
        if (!b) return MHD_NO;
        memcpy(b + k->len, upload, *upload_size);
        k->body = b;
        k->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    return post_route(s, c, k);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode why) {
    (void)cls;
    (void)c;
    serve_conn *k = *con_cls;
    if (!k) return;
    if (!k->streaming)
        log_line(k->method, k->path, k->status ? k->status : 499, k->n_prompt, k->n_gen, k->t0,
                 why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
    free(k->body);
    free(k);
    *con_cls = NULL;
}

// ---- setup -------------------------------------------------------------------------------

static int serve_flag(int argc, char **argv, int *i, serve_args *a) {
    const char *f = argv[*i];
    static const char *const takes[] = {"--host",     "--port",          "--api-key", "--queue",
                                        "--max-body", "--chat-template", "--parallel"};
    size_t w = 0;
    while (w < sizeof takes / sizeof *takes && strcmp(f, takes[w])) w++;
    if (w == sizeof takes / sizeof *takes) return 0;
    if (*i + 1 >= argc) return cli_usage_error("serve", serve_usage, "%s needs a value", f), -1;
    const char *v = argv[++*i];
    cllm_chat_format fmt;
    int ok = 1;
    if (w == 0) a->host = v;
    else if (w == 1) ok = cli_parse_int(v, 0, 65535, &a->port) == 0;
    else if (w == 2) a->api_key = v;
    else if (w == 3) ok = cli_parse_int(v, 0, 1 << 20, &a->queue) == 0;
    else if (w == 4) ok = cli_parse_size(v, &a->max_body) == 0 && a->max_body > 0;
    else if (w == 6) ok = cli_parse_int(v, 1, 256, &a->parallel) == 0;
    else if ((ok = cllm_chat_format_parse(v, &fmt) == CLLM_OK)) a->format_name = v;
    if (!ok) return cli_usage_error("serve", serve_usage, "bad value '%s' for %s", v, f), -1;
    return 1;
}

static int parse_serve_args(int argc, char **argv, serve_args *a) {
    memset(a, 0, sizeof *a);
    cli_engine_args_init(&a->eng);
    cli_sampling_init(&a->sp, &a->n_predict);
    a->host = "127.0.0.1";
    a->port = 8080;
    a->queue = 16;
    a->parallel = 4;
    a->max_body = (uint64_t)1 << 20;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_engine_flag("serve", serve_usage, argc, argv, &i, &a->eng);
        if (r == 0) r = cli_sampling_flag("serve", serve_usage, argc, argv, &i, &a->sp, &a->n_predict);
        if (r == 0) r = serve_flag(argc, argv, &i, a);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: %s\n", serve_usage);
            return -1;
        }
        if (f[0] == '-') return cli_usage_error("serve", serve_usage, "unknown option '%s'", f);
        if (a->model) return cli_usage_error("serve", serve_usage, "unexpected argument '%s'", f);
        a->model = f;
    }
    if (!a->model) return cli_usage_error("serve", serve_usage, "no model given");
    if (a->n_predict < 1) return cli_usage_error("serve", serve_usage, "-n must be at least 1");
    a->eng.opt.n_seq = (uint32_t)a->parallel;
    return CLI_EXIT_OK;
}

// The model's name, chat format, default system prompt and end tokens.
static void model_setup(serve_srv *s, const serve_args *a, const cllm_tokenizer *tok,
                        char **def_system) {
    const char *jinja = cllm_tokenizer_chat_template(tok);
    const char *slash = strrchr(a->model, '/');
    s->m.name = slash ? slash + 1 : a->model;
    if (a->format_name) cllm_chat_format_parse(a->format_name, &s->m.fmt);
    else s->m.fmt = cllm_chat_detect(jinja);
    *def_system = s->m.fmt == CLLM_CHAT_UNKNOWN ? NULL : cllm_chat_default_system(jinja, s->m.fmt);
    s->m.default_system = *def_system;
    s->tok = tok;
    s->eos = cllm_engine_config(s->e)->eos_id;
    s->eot = s->m.fmt == CLLM_CHAT_UNKNOWN ? -1
                                           : cli_gen_single_token(tok, cllm_chat_end_of_turn(s->m.fmt));
    s->m.ctx = cllm_engine_context(s->e);
    s->m.sp = a->sp;
    s->m.max_tokens = a->n_predict;
    if (s->m.fmt == CLLM_CHAT_UNKNOWN)
        fprintf(stderr, "codecllm serve: %s has no known chat template: /v1/chat/completions is "
                        "refused (use --chat-template)\n", a->model);
}

static struct MHD_Daemon *start_daemon(serve_srv *s, const serve_args *a) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%lld", a->port);
    int gai = getaddrinfo(a->host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "codecllm serve: error: --host %s: %s\n", a->host, gai_strerror(gai));
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)a->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_TIMEOUT, 600u,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(a->queue + a->parallel + 64), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) fprintf(stderr, "codecllm serve: error: cannot listen on %s port %lld\n", a->host,
                    a->port);
    return d;
}

// Runs the step shapes a server meets most before the first request: a prompt in every slot, then
// three decode steps of all slots and three of one (a backend that keeps state per step shape,
// such as the CUDA graphs made at a shape's third step, has it ready), then forgets them all.
// Without it the first requests pay for kernel loading and graph capture.
static int warm_up(serve_srv *s) {
    const double t0 = cllm_now_seconds_cli();
    const uint32_t n = (uint32_t)s->n_par, vocab = cllm_engine_config(s->e)->vocab_size;
    enum { PROMPT = 8, STEPS = 3 };
    if (s->m.ctx < PROMPT + 2 * STEPS) return CLI_EXIT_OK;
    float *logits = malloc((size_t)n * vocab * sizeof *logits);
    cllm_batch_item *it = calloc(n, sizeof *it);
    int32_t *ids = malloc((size_t)n * PROMPT * sizeof *ids);
    cllm_status st = logits && it && ids ? CLLM_OK : CLLM_ERR_NOMEM;
    for (uint32_t i = 0; i < n && st == CLLM_OK; i++) {
        for (int k = 0; k < PROMPT; k++) ids[(size_t)i * PROMPT + k] = (int32_t)((i + 7u * k) % vocab);
        it[i] = (cllm_batch_item){.seq = i, .tokens = ids + (size_t)i * PROMPT, .n = PROMPT,
                                  .pos = 0, .want_logits = 1};
    }
    if (st == CLLM_OK) st = cllm_engine_forward_batch(s->e, it, n, logits, (size_t)n * vocab);
    for (int k = 0; k < 2 * STEPS && st == CLLM_OK; k++) {
        const uint32_t m = k < STEPS ? n : 1;
        for (uint32_t i = 0; i < m; i++) {
            it[i].n = 1;
            it[i].pos = cllm_engine_seq_n_past(s->e, i);
        }
        st = cllm_engine_forward_batch(s->e, it, m, logits, (size_t)n * vocab);
    }
    for (uint32_t i = 0; i < n; i++) cllm_engine_seq_reset(s->e, i);
    free(logits);
    free(it);
    free(ids);
    if (st != CLLM_OK) {
        fprintf(stderr, "codecllm serve: error: warm-up: %s\n", cllm_last_error());
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "codecllm serve: warm-up in %.2f s\n", cllm_now_seconds_cli() - t0);
    return CLI_EXIT_OK;
}

// Serves until SIGINT or SIGTERM (blocked in every thread, taken here by sigwait).
static int serve_loop(serve_srv *s, const serve_args *a) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);  // before the daemon's threads inherit the mask
    signal(SIGPIPE, SIG_IGN);
    if (serve_sched_start(s)) return CLI_EXIT_FAIL;
    struct MHD_Daemon *d = start_daemon(s, a);
    if (!d) {
        serve_sched_stop(s);
        return CLI_EXIT_FAIL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "codecllm serve: listening on http://%s:%u (model %s, context %zu, %lld "
            "parallel)\n", a->host, info ? info->port : (unsigned)a->port, s->m.name, s->m.ctx,
            s->n_par);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "codecllm serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&s->stopping, 1);  // waiting requests get 503, running ones end at their next step
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    MHD_socket ls = MHD_quiesce_daemon(d);  // no new connections
    // Running requests end at their next token and send their last event; give them 10 s.
    for (int i = 0; i < 1000 && atomic_load(&s->active) > 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    MHD_stop_daemon(d);  // joins every connection thread
    if (ls != MHD_INVALID_SOCKET) close(ls);
    serve_sched_stop(s);
    return CLI_EXIT_OK;
}

int cmd_serve(int argc, char **argv) {
    serve_args a;
    int rc = parse_serve_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK) return rc < 0 ? CLI_EXIT_OK : rc;
    serve_srv s = {.queue_max = a.queue, .n_par = a.parallel, .api_key = a.api_key,
                   .max_body = a.max_body, .mu = PTHREAD_MUTEX_INITIALIZER,
                   .cv = PTHREAD_COND_INITIALIZER};
    cllm_container *c;
    rc = cli_engine_open("serve", a.model, &a.eng, &c, &s.e);
    if (rc != CLI_EXIT_OK) return rc;
    cllm_tokenizer *tok = NULL;
    rc = cli_container_tokenizer("serve", a.model, c, "serve needs one", &tok);
    char *def_system = NULL;
    if (rc == CLI_EXIT_OK) model_setup(&s, &a, tok, &def_system);
    if (rc == CLI_EXIT_OK) rc = warm_up(&s);
    if (rc == CLI_EXIT_OK) rc = serve_loop(&s, &a);
    if (rc == CLI_EXIT_OK && a.eng.verbose) cli_engine_report(s.e, 1);
    free(def_system);
    cllm_tokenizer_free(tok);
    cllm_engine_free(s.e);
    cllm_container_free(c);
    return rc;
}
