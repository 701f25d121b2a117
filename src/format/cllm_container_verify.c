// Whole-file verification of an open container: every checksum and every padding byte.
// Open has already validated the header, config and table field by field (reserved bytes
// included) and each payload's structure; this pass covers the rest, so that no byte of the file
// goes unchecked: payload and tokenizer contents by checksum, the gaps between sections by value.
#include "cllm_container_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

typedef unsigned long long ull;

typedef struct reporter {
    cllm_report_fn fn;
    void *user;
    size_t n_bad;
    char first[512];  // the first problem, repeated in the returned error message
} reporter;

static void report(reporter *r, const char *fmt, ...) CLLM_PRINTF(2, 3);
static void report(reporter *r, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (r->n_bad == 0) snprintf(r->first, sizeof r->first, "%s", line);
    r->n_bad++;
    if (r->fn) r->fn(r->user, line);
}

static void check_sum(reporter *r, const char *what, uint64_t stored, uint64_t computed) {
    if (stored != computed)
        report(r, "%s checksum mismatch (stored 0x%016llx, computed 0x%016llx)", what, (ull)stored,
               (ull)computed);
}

// Padding [begin, end) must be all zero.
static void check_padding(reporter *r, const uint8_t *base, uint64_t begin, uint64_t end) {
    for (uint64_t i = begin; i < end; i++) {
        if (base[i] != 0) {
            report(r, "padding at offset %llu..%llu is not zero (first non-zero byte at %llu)",
                   (ull)begin, (ull)end, (ull)i);
            return;
        }
    }
}

static void check_fixed_sections(const cllm_container *c, reporter *r) {
    check_sum(r, "header", c->header_xxh3, XXH3_64bits(c->base, CLLM_HDR_XXH3));
    check_sum(r, "config/table", c->meta_xxh3,
              XXH3_64bits(c->base + CLLM_CONFIG_OFFSET,
                          (size_t)(c->table_end - CLLM_CONFIG_OFFSET)));
    if (c->tok_kind != CLLM_TOKENIZER_NONE)
        check_sum(r, "tokenizer", c->tok_xxh3,
                  XXH3_64bits(c->base + c->tok_offset, (size_t)c->tok_size));
}

// Payload checksums, computed in parallel (the bulk of the work: the whole file is read), then
// reported in table order from this thread.
static cllm_status check_payloads(const cllm_container *c, reporter *r) {
    if (c->n_tensors == 0) return CLLM_OK;
    uint64_t *computed = malloc((size_t)c->n_tensors * sizeof *computed);
    RETURN_IF(!computed, CLLM_ERR_NOMEM, "cannot allocate %u checksums", c->n_tensors);
    const int64_t n = c->n_tensors;
    // Threads only pay off once there is real hashing to share (XXH3 runs at ~10+ GB/s/core).
    const int parallel = c->size > ((uint64_t)64 << 20);
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (int64_t i = 0; i < n; i++) {
        const cllm_tensor_info *info = &c->entries[i].info;
        computed[i] = XXH3_64bits(c->base + info->data_offset, (size_t)info->data_size);
    }
    char what[CLLM_NAME_CAP + 32];
    for (uint32_t i = 0; i < c->n_tensors; i++) {
        snprintf(what, sizeof what, "tensor '%s': payload", c->entries[i].name);
        check_sum(r, what, c->entries[i].info.checksum, computed[i]);
    }
    free(computed);
    return CLLM_OK;
}

// The gaps: after the table, after the tokenizer, after each payload, up to the next section
// (or the end of the file). Open established that the sections are in this order.
static void check_gaps(const cllm_container *c, reporter *r) {
    uint64_t end = c->table_end;
    if (c->tok_kind != CLLM_TOKENIZER_NONE) {
        check_padding(r, c->base, end, c->tok_offset);
        end = c->tok_offset + c->tok_size;
    }
    for (uint32_t i = 0; i < c->n_tensors; i++) {
        const cllm_tensor_info *info = &c->entries[i].info;
        check_padding(r, c->base, end, info->data_offset);
        end = info->data_offset + info->data_size;
    }
    check_padding(r, c->base, end, c->size);
}

cllm_status cllm_container_verify_bytes(const cllm_container *c, cllm_report_fn report_fn,
                                        void *user, size_t *n_bad) {
    if (n_bad) *n_bad = 0;
    RETURN_IF(!c, CLLM_ERR_ARG, "verify: NULL container");
    reporter r = {.fn = report_fn, .user = user};
    check_fixed_sections(c, &r);
    TRY(check_payloads(c, &r));
    check_gaps(c, &r);
    if (n_bad) *n_bad = r.n_bad;
    RETURN_IF(r.n_bad > 0, CLLM_ERR_CORRUPT, "%s: %zu problem%s found (first: %s)", c->label,
              r.n_bad, r.n_bad == 1 ? "" : "s", r.first);
    return CLLM_OK;
}
