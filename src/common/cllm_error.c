#include "cllm_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CLLM_ERROR_CAP 1024

// The only mutable state of the library that is not owned by an object: the last error of the
// calling thread, read back by cllm_last_error() (like errno / dlerror).
static _Thread_local char tls_error[CLLM_ERROR_CAP];

cllm_status cllm_fail(cllm_status st, const char *file, int line, const char *fmt, ...) {
    // "message [file.c:line]": the message first for users, the origin last for developers.
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof tls_error)
        snprintf(tls_error + n, sizeof tls_error - (size_t)n, " [%s:%d]", base, line);
    return st;
}

cllm_status cllm_error_context(cllm_status st, const char *fmt, ...) {
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[CLLM_ERROR_CAP];
    memcpy(old, tls_error, sizeof old);
    size_t np = strlen(prefix);
    if (np > CLLM_ERROR_CAP - 3) np = CLLM_ERROR_CAP - 3;
    memcpy(tls_error, prefix, np);
    memcpy(tls_error + np, ": ", 2);
    size_t room = CLLM_ERROR_CAP - np - 3, nold = strlen(old);
    if (nold > room) nold = room;
    memcpy(tls_error + np + 2, old, nold);
    tls_error[np + 2 + nold] = '\0';
    return st;
}

void cllm_clear_error(void) { tls_error[0] = '\0'; }

// The message is written before the status is published (release): a thread that sees
// st != OK (acquire, or after the region's barrier) sees the message too. Inside the region
// other threads only poll st through cllm_par_error_failed.
void cllm_par_error_set(cllm_par_error *e, cllm_status st) {
#pragma omp critical(cllm_par_error)
    if (__atomic_load_n(&e->st, __ATOMIC_ACQUIRE) == CLLM_OK) {
        snprintf(e->msg, sizeof e->msg, "%s", tls_error);
        __atomic_store_n(&e->st, st, __ATOMIC_RELEASE);
    }
}

int cllm_par_error_failed(const cllm_par_error *e) {
    return __atomic_load_n(&e->st, __ATOMIC_ACQUIRE) != CLLM_OK;
}

const char *cllm_last_error(void) { return tls_error; }

const char *cllm_status_name(cllm_status st) {
    switch (st) {
    case CLLM_OK: return "ok";
    case CLLM_ERR_IO: return "I/O error";
    case CLLM_ERR_FORMAT: return "bad format";
    case CLLM_ERR_CORRUPT: return "corrupt data";
    case CLLM_ERR_UNSUPPORTED: return "unsupported";
    case CLLM_ERR_NOMEM: return "out of memory";
    case CLLM_ERR_ARG: return "bad argument";
    case CLLM_ERR_DEVICE: return "device error";
    case CLLM_ERR_MISMATCH: return "mismatch";
    case CLLM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

cllm_status cllm_read_file(const char *path, size_t max_size, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    RETURN_IF(!f, CLLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    cllm_status st = CLLM_OK;
    uint8_t *buf = NULL;
    long len = -1;
    struct stat sb;
    // fopen succeeds on a directory (and fseek to its "end" reports LONG_MAX): check the kind.
    if (fstat(fileno(f), &sb) != 0) {
        st = CLLM_FAIL(CLLM_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = CLLM_FAIL(CLLM_ERR_IO, "%s is %s, not a regular file", path,
                       S_ISDIR(sb.st_mode) ? "a directory" : "a device, FIFO or socket");
    } else if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = CLLM_FAIL(CLLM_ERR_IO, "cannot size %s: %s", path, strerror(errno));
    } else if ((unsigned long)len > max_size) {
        st = CLLM_FAIL(CLLM_ERR_FORMAT, "%s is %ld bytes, more than the %zu allowed", path, len,
                       max_size);
    } else if (!(buf = malloc((size_t)len + 1))) {
        st = CLLM_FAIL(CLLM_ERR_NOMEM, "cannot allocate %ld bytes for %s", len, path);
    } else if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        st = CLLM_FAIL(CLLM_ERR_IO, "short read on %s", path);
    }
    fclose(f);
    if (st != CLLM_OK) {
        free(buf);
        return st;
    }
    buf[len] = 0;
    *data = buf;
    *size = (size_t)len;
    return CLLM_OK;
}

double cllm_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cllm_vlogf(cllm_log_fn fn, void *user, const char *fmt, va_list ap) {
    if (!fn) return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fn(user, line);
}

void cllm_logf(cllm_log_fn fn, void *user, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cllm_vlogf(fn, user, fmt, ap);
    va_end(ap);
}
