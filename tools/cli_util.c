#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int cli_fail(const char *cmd, cllm_status st, const char *what) {
    const char *msg = cllm_last_error();
    // Library messages usually name the file already; do not say it twice.
    if (what && *what && !strstr(msg, what))
        fprintf(stderr, "codecllm %s: error: %s: %s (%s)\n", cmd, what, msg, cllm_status_name(st));
    else
        fprintf(stderr, "codecllm %s: error: %s (%s)\n", cmd, msg, cllm_status_name(st));
    return st == CLLM_ERR_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
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
    FILE *f = fopen(s + 1, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return -1;
    buf[len] = 0;
    int rc = strlen(buf) == len ? parse_token_text(buf, out, n) : -1;
    free(buf);
    return rc;
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
