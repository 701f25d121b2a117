// codecllm chat MODEL.cllm [--system TEXT] [--chat-template NAME] [-n N] [sampling flags]
//                [engine flags]
//
// Multi-turn chat with the model's chat template. Each turn renders the whole conversation,
// tokenizes it and runs only the tokens after the longest prefix already in the KV cache, so the
// cache is reused across turns and the result is the same as running the full prompt at once.
// Reads one user message per line from stdin (a terminal or a pipe); /exit or end of input ends
// the session.
#include "cli.h"
#include "cli_engine.h"
#include "cli_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHAT_MAX_LINE ((size_t)1 << 20) // bytes of one user message

static const char chat_usage[] =
    "codecllm chat MODEL.cllm [--system TEXT] [--chat-template NAME] [-n N] [--temp T]\n"
    "              [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]\n"
    "              [-t N] [-c CTX] [--backend B] [--weights MODE] [--verbose]\n"
    "  Reads one message per line from stdin and streams each answer to stdout; in a terminal\n"
    "  '> ' prompts for the next message. /exit (or Ctrl-D, or the end of piped input) ends the\n"
    "  session, /reset starts a new conversation. Needs a tokenizer in MODEL.\n"
    "  --system TEXT        system prompt (default: the template's own, if it has one)\n"
    "  --no-system          no system prompt, even the template's own\n"
    "  --chat-template NAME chatml, llama2, llama3, mistral, gemma, phi3 or zephyr (default:\n"
    "                       recognised from the template stored with the tokenizer)\n"
    CLI_SAMPLING_FLAGS_HELP
    "                       (-n caps each answer; default 1024)\n"
    CLI_ENGINE_FLAGS_HELP;

typedef struct chat_args {
    const char *model, *system, *format_name;
    int no_system;
    long long n_predict;
    cllm_sampler_params sp;
    cli_engine_args eng;
} chat_args;

// The conversation and what the KV cache holds.
typedef struct chat_state {
    cllm_engine *e;
    const cllm_tokenizer *tok;
    cllm_sampler *smp;
    cllm_chat_format fmt;
    int32_t eot;              // the template's end-of-turn token, or -1
    cllm_chat_message *msgs;  // contents are malloc'd
    size_t n_msgs, cap_msgs;
    cli_gen gen;              // the KV cache's tokens and the logits
    int interactive;
} chat_state;

static int chat_flag(int argc, char **argv, int *i, chat_args *a) {
    const char *f = argv[*i];
    if (!strcmp(f, "--no-system")) {
        a->no_system = 1;
        return 1;
    }
    if (strcmp(f, "--system") && strcmp(f, "-sys") && strcmp(f, "--chat-template")) return 0;
    if (*i + 1 >= argc) return cli_usage_error("chat", chat_usage, "%s needs a value", f), -1;
    const char *v = argv[++*i];
    cllm_chat_format fmt;
    if (strcmp(f, "--chat-template")) a->system = v;
    else if (cllm_chat_format_parse(v, &fmt) == CLLM_OK) a->format_name = v;
    else return cli_usage_error("chat", chat_usage, "unknown chat template '%s'", v), -1;
    return 1;
}

static int parse_chat_args(int argc, char **argv, chat_args *a) {
    memset(a, 0, sizeof *a);
    cli_engine_args_init(&a->eng);
    cli_sampling_init(&a->sp, &a->n_predict);
    a->n_predict = 1024;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_engine_flag("chat", chat_usage, argc, argv, &i, &a->eng);
        if (r == 0) r = cli_sampling_flag("chat", chat_usage, argc, argv, &i, &a->sp, &a->n_predict);
        if (r == 0) r = chat_flag(argc, argv, &i, a);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: %s\n", chat_usage);
            return -1;
        }
        if (f[0] == '-') return cli_usage_error("chat", chat_usage, "unknown option '%s'", f);
        if (a->model) return cli_usage_error("chat", chat_usage, "unexpected argument '%s'", f);
        a->model = f;
    }
    if (!a->model) return cli_usage_error("chat", chat_usage, "no model given");
    if (a->system && a->no_system)
        return cli_usage_error("chat", chat_usage, "--system and --no-system exclude each other");
    return CLI_EXIT_OK;
}

// ---- conversation ------------------------------------------------------------------------

static int push_message(chat_state *s, const char *role, const char *content, size_t len) {
    if (s->n_msgs == s->cap_msgs) {
        size_t cap = s->cap_msgs ? 2 * s->cap_msgs : 8;
        cllm_chat_message *m = realloc(s->msgs, cap * sizeof *m);
        if (!m) return cli_fail("chat", CLLM_ERR_NOMEM, "conversation");
        s->msgs = m;
        s->cap_msgs = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return cli_fail("chat", CLLM_ERR_NOMEM, "conversation");
    memcpy(c, content, len);
    c[len] = 0;
    s->msgs[s->n_msgs++] = (cllm_chat_message){.role = role, .content = c};
    return CLI_EXIT_OK;
}

static void pop_messages(chat_state *s, size_t keep) {
    while (s->n_msgs > keep) free((char *)s->msgs[--s->n_msgs].content);
}

// Runs the rendered conversation through the model, reusing the cached prefix. Returns
// CLI_EXIT_OK, or CLI_EXIT_FAIL after printing why (the caller keeps the session when the
// conversation merely outgrew the context: *too_long is set).
static int prefill(chat_state *s, int *too_long) {
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    *too_long = 0;
    cllm_status st = cllm_chat_render(s->fmt, s->msgs, s->n_msgs, 1, &text, &len);
    if (st != CLLM_OK) return cli_fail("chat", st, "rendering the conversation");
    int rc = cli_tokenize("chat", s->tok, text, len, cllm_tokenizer_add_bos(s->tok), &ids, &n);
    free(text);
    if (rc != CLI_EXIT_OK) return rc;
    const size_t ctx = cllm_engine_context(s->e);
    if (n + 1 > ctx) {
        fprintf(stderr,
                "codecllm chat: the conversation (%zu tokens) no longer fits the context of %zu "
                "positions: /reset to start over, or raise -c\n",
                n, ctx);
        free(ids);
        *too_long = 1;
        return CLI_EXIT_FAIL;
    }
    size_t p = 0;
    cllm_status fst = cli_gen_prefill(&s->gen, ids, n, &p);
    if (fst != CLLM_OK) {
        free(ids);
        return cli_fail("chat", fst, "prompt");
    }
    for (size_t i = p; i < n; i++) cllm_sampler_accept(s->smp, ids[i]);
    free(ids);
    return CLI_EXIT_OK;
}

// Appends `len` bytes to the growing answer text.
static int append_text(char **text, size_t *len, size_t *cap, const char *piece, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? 2 * *cap : 256;
        while (want < *len + n + 1) want *= 2;
        char *t = realloc(*text, want);
        if (!t) return cli_fail("chat", CLLM_ERR_NOMEM, "answer");
        *text = t;
        *cap = want;
    }
    memcpy(*text + *len, piece, n);
    *len += n;
    (*text)[*len] = 0;
    return CLI_EXIT_OK;
}

// Samples, streams and feeds the answer until the end of the turn, -n tokens or a full context;
// the answer's text is appended to *reply.
static int answer(chat_state *s, long long n_predict, char **reply, size_t *reply_len) {
    size_t reply_cap = 0;
    for (long long k = 0; k < n_predict; k++) {
        char piece[512];
        size_t len = 0;
        cli_gen_event ev;
        cllm_status st = cli_gen_next(&s->gen, &ev, piece, sizeof piece, &len);
        if (st != CLLM_OK) return cli_fail("chat", st, k ? "generation" : "sampling");
        if (ev == CLI_GEN_END) break;
        if (len) {
            fwrite(piece, 1, len, stdout);
            fflush(stdout);
            if (append_text(reply, reply_len, &reply_cap, piece, len) != CLI_EXIT_OK)
                return CLI_EXIT_FAIL;
        }
        if (ev == CLI_GEN_FULL) {
            fprintf(stderr, "\ncodecllm chat: the context of %zu positions is full\n",
                    (size_t)cllm_engine_context(s->e));
            break;
        }
    }
    return CLI_EXIT_OK;
}

// One user message in, one answer out. A conversation that no longer fits is dropped back to
// before the message; in a terminal the session goes on.
static int turn(chat_state *s, const char *line, size_t len, long long n_predict) {
    size_t before = s->n_msgs;
    int rc = push_message(s, "user", line, len), too_long = 0;
    if (rc == CLI_EXIT_OK) rc = prefill(s, &too_long);
    if (rc != CLI_EXIT_OK) {
        pop_messages(s, before);
        return too_long && s->interactive ? CLI_EXIT_OK : rc;
    }
    char *reply = NULL;
    size_t reply_len = 0;
    rc = answer(s, n_predict, &reply, &reply_len);
    printf("\n");
    fflush(stdout);
    if (rc == CLI_EXIT_OK) rc = push_message(s, "assistant", reply ? reply : "", reply_len);
    free(reply);
    return rc;
}

// ---- input -------------------------------------------------------------------------------

// Reads one line (without its newline) into buf (cap bytes). Returns its length, -1 at the end of
// input, -2 for a line longer than cap (the rest of it is skipped).
static long read_line(char *buf, size_t cap) {
    size_t n = 0;
    int c, too_long = 0;
    while ((c = getchar()) != EOF && c != '\n') {
        if (n + 1 < cap) buf[n++] = (char)c;
        else too_long = 1;
    }
    if (c == EOF && n == 0 && !too_long) return -1;
    if (n > 0 && buf[n - 1] == '\r') n--;
    buf[n] = 0;
    return too_long ? -2 : (long)n;
}

static void reset(chat_state *s, size_t n_system) {
    pop_messages(s, n_system);
    cli_gen_reset(&s->gen);
    cllm_sampler_reset(s->smp);
}

static int session(chat_state *s, const chat_args *a, size_t n_system) {
    char *line = malloc(CHAT_MAX_LINE);
    if (!line) return cli_fail("chat", CLLM_ERR_NOMEM, "input line");
    int rc = CLI_EXIT_OK;
    for (;;) {
        if (s->interactive) {
            printf("> ");
            fflush(stdout);
        }
        long n = read_line(line, CHAT_MAX_LINE);
        if (n == -1 || !strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (n == -2) {
            fprintf(stderr, "codecllm chat: a message is limited to %zu bytes\n", CHAT_MAX_LINE);
            if (s->interactive) continue;
            rc = CLI_EXIT_FAIL;
            break;
        }
        if (!strcmp(line, "/reset")) {
            reset(s, n_system);
            continue;
        }
        if (n == 0) continue;
        rc = turn(s, line, (size_t)n, a->n_predict);
        if (rc != CLI_EXIT_OK) break;
    }
    if (s->interactive && rc == CLI_EXIT_OK) printf("\n");
    free(line);
    return rc;
}

// ---- setup -------------------------------------------------------------------------------

// The chat format (--chat-template, else the stored template's) and the system prompt.
static int chat_setup(chat_state *s, const chat_args *a, size_t *n_system) {
    const char *jinja = cllm_tokenizer_chat_template(s->tok);
    if (a->format_name) cllm_chat_format_parse(a->format_name, &s->fmt);
    else s->fmt = cllm_chat_detect(jinja);
    if (s->fmt == CLLM_CHAT_UNKNOWN) {
        fprintf(stderr,
                "codecllm chat: error: %s %s: pick one with --chat-template (chatml, llama2, "
                "llama3, mistral, gemma, phi3, zephyr)\n",
                a->model,
                jinja ? "has a chat template of an unknown family" : "stores no chat template");
        return CLI_EXIT_FAIL;
    }
    s->eot = cli_gen_single_token(s->tok, cllm_chat_end_of_turn(s->fmt));
    char *def = a->system || a->no_system ? NULL : cllm_chat_default_system(jinja, s->fmt);
    const char *sys = a->system ? a->system : def;
    int rc = sys ? push_message(s, "system", sys, strlen(sys)) : CLI_EXIT_OK;
    free(def);
    *n_system = s->n_msgs;
    if (a->eng.verbose)
        fprintf(stderr, "chat: format %s, system prompt %s, end of turn token %d\n",
                cllm_chat_format_name(s->fmt), *n_system ? "set" : "none", s->eot);
    return rc;
}

static void chat_state_free(chat_state *s) {
    pop_messages(s, 0);
    free(s->msgs);
    cli_gen_free(&s->gen);
    cllm_sampler_free(s->smp);
}

int cmd_chat(int argc, char **argv) {
    chat_args a;
    int rc = parse_chat_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK) return rc < 0 ? CLI_EXIT_OK : rc;
    cllm_container *c;
    chat_state s = {.eot = -1, .interactive = isatty(STDIN_FILENO)};
    rc = cli_engine_open("chat", a.model, &a.eng, &c, &s.e);
    if (rc != CLI_EXIT_OK) return rc;
    cllm_tokenizer *tok = NULL;
    rc = cli_container_tokenizer("chat", a.model, c, "chat needs one", &tok);
    s.tok = tok;
    size_t n_system = 0;
    if (rc == CLI_EXIT_OK) rc = chat_setup(&s, &a, &n_system);
    const size_t vocab = cllm_engine_config(s.e)->vocab_size;
    if (rc == CLI_EXIT_OK && cli_gen_init(&s.gen, s.e, s.tok, s.eot) != CLLM_OK)
        rc = cli_fail("chat", CLLM_ERR_NOMEM, "logits and tokens");
    cllm_status st = rc == CLI_EXIT_OK ? cllm_sampler_create(&a.sp, vocab, &s.smp) : CLLM_OK;
    if (st != CLLM_OK) rc = cli_fail("chat", st, "sampler");
    s.gen.smp = s.smp;
    if (rc == CLI_EXIT_OK && s.interactive)
        fprintf(stderr, "codecllm chat: %s (%s format). /exit or Ctrl-D quits, /reset starts over.\n",
                a.model, cllm_chat_format_name(s.fmt));
    if (rc == CLI_EXIT_OK) rc = session(&s, &a, n_system);
    if (rc == CLI_EXIT_OK && a.eng.verbose) cli_engine_report(s.e, 1);
    chat_state_free(&s);
    cllm_tokenizer_free(tok);
    cllm_engine_free(s.e);
    cllm_container_free(c);
    return rc;
}
