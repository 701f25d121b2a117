// Internal helpers every module uses: status reporting, overflow-checked arithmetic, small
// utilities. Nothing here allocates behind the caller's back or keeps global state beyond the
// per-thread "last error" message (the library's errno).
#ifndef CLLM_COMMON_H
#define CLLM_COMMON_H

#include "codecllm.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CLLM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLLM_PRINTF(f, a)
#endif

// Records "file:line: message" as this thread's last error and returns `st`.
cllm_status cllm_fail(cllm_status st, const char *file, int line, const char *fmt, ...)
    CLLM_PRINTF(4, 5);

// Prepends "context: " to this thread's last error message (as an error travels up a stack of
// callers, each one adds what it was doing: file name, tensor name...). Returns `st`.
cllm_status cllm_error_context(cllm_status st, const char *fmt, ...) CLLM_PRINTF(2, 3);

// Clears the last error message of this thread.
void cllm_clear_error(void);

// The first failure inside an OpenMP parallel region. A worker thread records it with
// cllm_par_error_set (which copies the worker's thread-local message) and polls for one with
// cllm_par_error_failed (an atomic read: never read e->st directly inside the region); after the
// region the calling thread reports it, e.g. RETURN_IF(e.st != CLLM_OK, e.st, "%s", e.msg).
typedef struct cllm_par_error {
    cllm_status st;
    char msg[1024];  // the size of a thread's last-error message
} cllm_par_error;
void cllm_par_error_set(cllm_par_error *e, cllm_status st);
int cllm_par_error_failed(const cllm_par_error *e);

// Fail with `st` and a message when `cond` holds.
#define RETURN_IF(cond, st, ...)                                                                   \
    do {                                                                                           \
        if (cond) return cllm_fail((st), __FILE__, __LINE__, __VA_ARGS__);                         \
    } while (0)

// Propagate a non-OK status.
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        cllm_status try_st_ = (expr);                                                              \
        if (try_st_ != CLLM_OK) return try_st_;                                                    \
    } while (0)

#define CLLM_FAIL(st, ...) cllm_fail((st), __FILE__, __LINE__, __VA_ARGS__)

// Overflow-checked size arithmetic: return 1 on overflow (out left unspecified), 0 otherwise.
static inline int cllm_mul_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int cllm_add_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out);
}
static inline int cllm_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int cllm_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

// Round `x` up to a multiple of `align` (a power of two); the caller guarantees no overflow.
static inline uint64_t cllm_align_up(uint64_t x, uint64_t align) {
    return (x + align - 1) & ~(align - 1);
}

// Little-endian loads and stores of unaligned bytes (the file format is little-endian).
static inline uint16_t cllm_load_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t cllm_load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t cllm_load_le64(const uint8_t *p) {
    return (uint64_t)cllm_load_le32(p) | ((uint64_t)cllm_load_le32(p + 4) << 32);
}
static inline void cllm_store_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void cllm_store_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cllm_store_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// Reads a whole file into a malloc'd buffer (NUL-terminated for convenience; *size excludes the
// NUL). Refuses files larger than max_size. The caller frees *data.
cllm_status cllm_read_file(const char *path, size_t max_size, uint8_t **data, size_t *size);

// The one log helper: formats a line (cut at 1023 bytes) and hands it to fn(user, line); nothing
// when fn is NULL. The library reports through such callbacks and never prints.
void cllm_logf(cllm_log_fn fn, void *user, const char *fmt, ...) CLLM_PRINTF(3, 4);
void cllm_vlogf(cllm_log_fn fn, void *user, const char *fmt, va_list ap);

// Monotonic wall clock in seconds.
double cllm_now_seconds(void);

// 1 when both paths exist and name the same file (device and inode), 0 otherwise.
int cllm_same_file(const char *a, const char *b);

#endif
