#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_fail(const char *cmd, cllm_status st, const char *what) {
    const char *msg = cllm_last_error();
    // Library messages usually name the file already; do not say it twice.
    if (what && *what && !strstr(msg, what))
        fprintf(stderr, "codecllm %s: error: %s: %s (%s)\n", cmd, what, msg, cllm_status_name(st));
    else
        fprintf(stderr, "codecllm %s: error: %s (%s)\n", cmd, msg, cllm_status_name(st));
    // Always a failure, never a usage error: the commands check their own arguments (and report
    // those with cli_usage_error) before calling the library, so a library CLLM_ERR_ARG here is
    // about data (a NaN logit, an id outside the vocabulary, text that is not UTF-8).
    (void)st;
    return CLI_EXIT_FAIL;
}

// Edit distance of two short strings (options are < 32 bytes; longer ones never match).
static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb) {
    size_t row[33];
    if (na > 32 || nb > 32) return SIZE_MAX;
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

// The option of `usage` (words starting with '-') closest to `bad`, when it is close enough to be
// a likely typo: writes it to out and returns 1.
static int closest_option(const char *usage, const char *bad, size_t nbad, char *out, size_t cap) {
    size_t best = nbad > 4 ? 3 : 2;
    int found = 0;
    for (const char *p = usage; (p = strchr(p, '-')) != NULL;) {
        if (p > usage && !strchr(" [|\n(", p[-1])) {
            p++;
            continue;
        }
        size_t n = strspn(p, "-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        size_t d = n > 1 && n < cap ? edit_distance(p, n, bad, nbad) : SIZE_MAX;
        if (d != SIZE_MAX && n >= 4 && n < nbad && !strncmp(p, bad, n)) d = 1;  // --temperature
        if (d > 0 && d < best) {
            best = d;
            memcpy(out, p, n);
            out[n] = 0;
            found = 1;
        }
        p += n ? n : 1;
    }
    return found;
}

int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // One line: the problem, a likely meant option for a quoted '-...' word, where to look.
    char hint[64] = "";
    const char *q = strstr(msg, "'-");
    if (q) {
        const char *end = strchr(q + 1, '\'');
        size_t n = end ? (size_t)(end - q - 1) : 0;
        char opt[40];
        if (n > 0 && closest_option(usage, q + 1, n, opt, sizeof opt))
            snprintf(hint, sizeof hint, "did you mean %s? ", opt);
    }
    fprintf(stderr, "codecllm %s: %s (%ssee 'codecllm %s --help')\n", cmd, msg, hint, cmd);
    return CLI_EXIT_USAGE;
}

int cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    if (!strcasecmp(end, "") || !strcasecmp(end, "b")) mul = 1;
    else if (!strcasecmp(end, "k") || !strcasecmp(end, "kib")) mul = 1024.0;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib")) mul = 1024.0 * 1024;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib")) mul = 1024.0 * 1024 * 1024;
    else if (!strcasecmp(end, "kb")) mul = 1e3;
    else if (!strcasecmp(end, "mb")) mul = 1e6;
    else if (!strcasecmp(end, "gb")) mul = 1e9;
    else return -1;
    double bytes = v * mul;
    if (bytes > 1.8e19) return -1;
    *out = (uint64_t)bytes;
    return 0;
}

static int parse_token_text(const char *text, int32_t **out, size_t *n) {
    size_t cap = 64, count = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = text;
    for (;;) {
        while (*p && (isspace((unsigned char)*p) || *p == ',')) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return -1;
        }
        if (count == cap) {
            int32_t *nid = realloc(ids, 2 * cap * sizeof *ids);
            if (!nid) {
                free(ids);
                return -1;
            }
            ids = nid;
            cap *= 2;
        }
        ids[count++] = (int32_t)v;
        p = end;
    }
    *out = ids;
    *n = count;
    return 0;
}

int cli_parse_tokens(const char *s, int32_t **out, size_t *n) {
    if (s[0] != '@') return parse_token_text(s, out, n);
    char *buf;
    size_t len;
    if (cli_read_text(s + 1, CLI_TOKENS_MAX, &buf, &len) != 0) return -2;
    int rc = strlen(buf) == len ? parse_token_text(buf, out, n) : -1;
    free(buf);
    return rc;
}

// Reads up to max_bytes + 1 bytes of f into a growing buffer: one byte more than allowed tells a
// too-large input (a pipe or /dev/zero has no size to check up front).
static int read_bounded(FILE *f, const char *name, size_t max_bytes, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n > max_bytes) break;
        if (n == cap) {
            size_t ncap = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) free(buf);
            buf = nb;
            cap = ncap;
        }
    }
    if (!buf || ferror(f) || n > max_bytes) {
        if (!buf) fprintf(stderr, "codecllm: error: out of memory reading %s\n", name);
        else if (n > max_bytes)
            fprintf(stderr, "codecllm: error: %s is larger than the limit of %zu bytes\n", name,
                    max_bytes);
        else fprintf(stderr, "codecllm: error: cannot read %s: %s\n", name, strerror(errno));
        free(buf);
        return CLI_EXIT_FAIL;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return CLI_EXIT_OK;
}

int cli_read_text(const char *path_or_dash, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    const int is_stdin = !strcmp(path_or_dash, "-");
    const char *name = is_stdin ? "standard input" : path_or_dash;
    FILE *f = is_stdin ? stdin : fopen(path_or_dash, "rb");
    if (!f) {
        fprintf(stderr, "codecllm: error: cannot open %s: %s\n", name, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    struct stat sb;
    int rc = CLI_EXIT_OK;
    if (fstat(fileno(f), &sb) != 0) {
        fprintf(stderr, "codecllm: error: cannot read %s: %s\n", name, strerror(errno));
        rc = CLI_EXIT_FAIL;
    } else if (S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "codecllm: error: %s is a directory, not a file\n", name);
        rc = CLI_EXIT_FAIL;
    } else if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > max_bytes) {
        fprintf(stderr, "codecllm: error: %s is %llu bytes, larger than the limit of %zu\n", name,
                (unsigned long long)sb.st_size, max_bytes);
        rc = CLI_EXIT_FAIL;
    } else {
        rc = read_bounded(f, name, max_bytes, out, len);
    }
    if (!is_stdin) fclose(f);
    return rc;
}

// ---- temporary files and signals ----------------------------------------------------------------
// Paths of the temporary files that exist now, for the signal handler to remove. A slot is filled
// before its flag is set and its flag cleared before it is reused, so the handler never reads a
// half-written path.
#define CLI_TEMP_SLOTS 64
#define CLI_TEMP_PATH_CAP 4352
static char temp_paths[CLI_TEMP_SLOTS][CLI_TEMP_PATH_CAP];
static volatile sig_atomic_t temp_used[CLI_TEMP_SLOTS];

void cli_temp_hook(void *user, const char *path, int created) {
    (void)user;
    if (!path || !*path) return;
    for (int i = 0; i < CLI_TEMP_SLOTS; i++) {
        if (created && !temp_used[i]) {
            if (strlen(path) >= CLI_TEMP_PATH_CAP) return;  // too long to track: not removed
            memcpy(temp_paths[i], path, strlen(path) + 1);
            temp_used[i] = 1;
            return;
        }
        if (!created && temp_used[i] && !strcmp(temp_paths[i], path)) {
            temp_used[i] = 0;
            return;
        }
    }
}

// The thread that installed the handlers: the one that creates and announces temporaries.
static pthread_t main_thread;

// Async-signal-safe: pthread_kill, unlink, signal and raise only. A signal taken by another
// thread (a worker) goes on to the main thread, which holds it while it announces a temporary it
// has just created (cllm_temp_create), so the file is removed with the others.
static void on_fatal_signal(int sig) {
    if (!pthread_equal(pthread_self(), main_thread)) {
        pthread_kill(main_thread, sig);
        return;
    }
    for (int i = 0; i < CLI_TEMP_SLOTS; i++)
        if (temp_used[i]) unlink(temp_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_signals_init(void) {
    main_thread = pthread_self();
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

int cli_out_open(const char *cmd, const char *path, cli_out *o) {
    memset(o, 0, sizeof *o);
    o->path = path;
    // Refused unless absent or a regular file; the temporary is created and announced with the
    // fatal signals held, so the signal handler always knows it.
    int fd = -1;
    cllm_status st = cllm_output_check(path);
    if (st == CLLM_OK) st = cllm_temp_create(path, cli_temp_hook, NULL, &o->tmp, &fd);
    if (st != CLLM_OK) return cli_fail(cmd, st, path);
    if (!(o->f = fdopen(fd, "wb"))) {
        fprintf(stderr, "codecllm %s: error: %s: %s\n", cmd, o->tmp, strerror(errno));
        close(fd);
        cli_out_abort(o);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

void cli_out_abort(cli_out *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) {
        unlink(o->tmp);
        cli_temp_hook(NULL, o->tmp, 0);
    }
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

int cli_out_commit(const char *cmd, cli_out *o) {
    int ok = fflush(o->f) == 0 && fsync(fileno(o->f)) == 0;
    int err = errno;
    ok = (fclose(o->f) == 0) && ok;
    o->f = NULL;
    if (ok && cllm_output_check(o->path) != CLLM_OK) {  // became something else meanwhile
        fprintf(stderr, "codecllm %s: error: %s\n", cmd, cllm_last_error());
        cli_out_abort(o);
        return CLI_EXIT_FAIL;
    }
    if (ok && rename(o->tmp, o->path) != 0) ok = 0, err = errno;
    if (!ok) {
        fprintf(stderr, "codecllm %s: error: writing %s failed: %s\n", cmd, o->path,
                strerror(err ? err : EIO));
        cli_out_abort(o);
        return CLI_EXIT_FAIL;
    }
    cli_temp_hook(NULL, o->tmp, 0);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    return CLI_EXIT_OK;
}

void cli_progress_init(cli_progress *p, const char *label) {
    p->enabled = isatty(STDERR_FILENO);
    p->t_start = 0;
    p->label = label;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->t_start = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_cb(void *user, size_t done, size_t total, uint64_t bytes_done,
                     uint64_t bytes_total, const char *what) {
    cli_progress *p = user;
    if (!p || !p->enabled) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double el = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - p->t_start;
    double mbs = el > 0 ? (double)bytes_done / 1e6 / el : 0;
    double eta = (bytes_done > 0 && bytes_total > bytes_done)
                     ? el * (double)(bytes_total - bytes_done) / (double)bytes_done
                     : 0;
    fprintf(stderr, "\r\033[K%s %zu/%zu %.40s  %.0f MB/s  ETA %.0fs", p->label, done, total,
            what ? what : "", mbs, eta);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (p->enabled) fprintf(stderr, "\r\033[K");
}

double cllm_now_seconds_cli(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
