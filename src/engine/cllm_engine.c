// The engine: bound weights + a backend + the bookkeeping of positions. Every argument of a
// forward call is checked here, so backends can trust theirs.
#ifdef CLLM_HAVE_CUDA
#include "cuda/cllm_cuda.h"
#include "cuda/cllm_cuda_backend.h"
#endif
#include "cllm_engine_internal.h"
#include "cllm_forward.h"
#include "format/cllm_format.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

// The forward pass is the engine's own (cllm_forward.c), over the op table of a backend.
struct cllm_engine {
    cllm_weights *weights;       // owned
    cllm_forward *fwd;
    cllm_engine_options opt;     // resolved: n_threads >= 1, n_seq >= 1
    uint32_t ctx;
    uint32_t n_seq;
    size_t *n_past;              // (n_seq) positions [0, n_past[s]) of sequence s hold valid
                                 // keys and values
    uint64_t *seen, epoch;       // (n_seq) seen[s] == epoch: s is in the call being checked
    int32_t *step_tok;           // (CLLM_ENGINE_BATCH) a batched step's tokens,
    uint32_t *step_pos, *step_slot, *step_out;  // positions, slots and logits rows
};

// Longest KV cache in sequences (options.n_seq): a bound on allocations sized by it.
#define CLLM_ENGINE_MAX_SEQ 65536u

static const char *const mode_names[] = {"stream", "resident", "device",
                                            "raw",    "auto",     "fused"};

const char *cllm_weights_mode_name(cllm_weights_mode m) {
    return (unsigned)m < sizeof mode_names / sizeof mode_names[0] ? mode_names[m] : "?";
}

cllm_status cllm_weights_mode_parse(const char *s, cllm_weights_mode *out) {
    for (unsigned i = 0; s && i < sizeof mode_names / sizeof mode_names[0]; i++)
        if (!strcasecmp(s, mode_names[i])) {
            *out = (cllm_weights_mode)i;
            return CLLM_OK;
        }
    char all[64] = "";
    for (unsigned i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", mode_names[i]);
    return CLLM_FAIL(CLLM_ERR_ARG, "unknown weights mode '%s' (%s)", s ? s : "", all);
}

static cllm_status resolve_options(const cllm_engine_options *opt, cllm_engine_options *out) {
    cllm_engine_options def;
    memset(&def, 0, sizeof def);
    *out = opt ? *opt : def;
    RETURN_IF(out->n_threads < 0, CLLM_ERR_ARG, "n_threads %d", out->n_threads);
    if (out->n_threads == 0) out->n_threads = omp_get_max_threads();
    RETURN_IF(out->kv_dtype != CLLM_DTYPE_F32 && out->kv_dtype != CLLM_DTYPE_F16,
              CLLM_ERR_UNSUPPORTED, "KV cache dtype %s (f32 or f16)",
              cllm_dtype_name(out->kv_dtype));
    RETURN_IF((unsigned)out->weights > CLLM_WEIGHTS_FUSED, CLLM_ERR_ARG, "weights mode %d",
              (int)out->weights);
    RETURN_IF(out->n_seq > CLLM_ENGINE_MAX_SEQ, CLLM_ERR_ARG, "n_seq %u (at most %u)", out->n_seq,
              CLLM_ENGINE_MAX_SEQ);
    if (out->n_seq == 0) out->n_seq = 1;
    return CLLM_OK;
}

// Bytes of the weights once decoded.
static uint64_t decoded_total(const cllm_weights *w) {
    uint64_t d = w->embed.decoded_bytes + w->norm.decoded_bytes;
    if (!w->cfg.tied_embeddings) d += w->lm_head.decoded_bytes;
    for (uint32_t l = 0; l < w->cfg.n_layers; l++)
        for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) d += w->layers[l].all[i].decoded_bytes;
    return d;
}

// Settles CLLM_BACKEND_AUTO and CLLM_WEIGHTS_AUTO (see include/codecllm.h for the rules).
static cllm_status resolve_auto(const cllm_weights *w, cllm_engine_options *o) {
    if (o->backend == CLLM_BACKEND_AUTO)
        o->backend =
            cllm_backend_available(CLLM_BACKEND_CUDA) ? CLLM_BACKEND_CUDA : CLLM_BACKEND_CPU;
    if (o->weights != CLLM_WEIGHTS_AUTO) return CLLM_OK;
    const uint64_t decoded = decoded_total(w);
    if (o->backend != CLLM_BACKEND_CUDA) {
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        uint64_t avail = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
        o->weights = decoded <= avail / 2 ? CLLM_WEIGHTS_RESIDENT : CLLM_WEIGHTS_STREAM;
        return CLLM_OK;
    }
    if (o->vram_budget) {  // a plan decides the placement
        o->weights = CLLM_WEIGHTS_STREAM;
        return CLLM_OK;
    }
#ifdef CLLM_HAVE_CUDA
    size_t free_b = 0, total_b = 0;
    TRY(cllm_cuda_mem_info(o->device, &free_b, &total_b));
    uint64_t room = (uint64_t)free_b / 100 * 85;
    // Raw when it fits; else the planner places each layer (raw, compute code, compressed
    // resident or streamed) under the room as a VRAM budget.
    o->weights = decoded <= room ? CLLM_WEIGHTS_RAW : CLLM_WEIGHTS_STREAM;
    if (o->weights == CLLM_WEIGHTS_STREAM) o->vram_budget = room;
#endif
    return CLLM_OK;
}

// Creates the forward pass of backend `kind` (resolved: not AUTO).
static cllm_status open_backend(cllm_engine *e, const cllm_backend_ops *ops) {
    if (ops) return cllm_forward_create(ops, e->weights, &e->opt, e->ctx, &e->fwd);
    switch (e->opt.backend) {
    case CLLM_BACKEND_AUTO: break;  // resolved before
    case CLLM_BACKEND_CPU:
        return cllm_forward_create(cllm_backend_cpu(), e->weights, &e->opt, e->ctx, &e->fwd);
    case CLLM_BACKEND_CUDA:
#ifdef CLLM_HAVE_CUDA
        return cllm_forward_create(cllm_backend_cuda(), e->weights, &e->opt, e->ctx, &e->fwd);
#else
        return CLLM_FAIL(CLLM_ERR_UNSUPPORTED, "the CUDA backend is not built into this library "
                                               "(rebuild with -DCODECLLM_CUDA=ON and nvcc)");
#endif
    }
    return CLLM_FAIL(CLLM_ERR_ARG, "unknown backend %d", (int)e->opt.backend);
}

// Per-sequence positions and the host arrays of a batched step.
static cllm_status alloc_seq_state(cllm_engine *e) {
    const size_t B = CLLM_ENGINE_BATCH;
    e->n_seq = e->opt.n_seq;
    e->n_past = calloc(e->n_seq, sizeof *e->n_past);
    e->seen = calloc(e->n_seq, sizeof *e->seen);
    e->step_tok = calloc(B, sizeof *e->step_tok);
    e->step_pos = calloc(B, sizeof *e->step_pos);
    e->step_slot = calloc(B, sizeof *e->step_slot);
    e->step_out = calloc(B, sizeof *e->step_out);
    RETURN_IF(!e->n_past || !e->seen || !e->step_tok || !e->step_pos || !e->step_slot ||
                  !e->step_out,
              CLLM_ERR_NOMEM, "engine: state of %u sequences", e->n_seq);
    return CLLM_OK;
}

cllm_status cllm_engine_open_ops(cllm_weights *w, const cllm_engine_options *opt,
                                 const cllm_backend_ops *ops, cllm_engine **out) {
    RETURN_IF(!w || !out, CLLM_ERR_ARG, "engine: NULL argument");
    *out = NULL;
    cllm_engine *e = calloc(1, sizeof *e);
    if (!e) {
        cllm_weights_free(w);
        return CLLM_FAIL(CLLM_ERR_NOMEM, "engine");
    }
    e->weights = w;
    cllm_status st = resolve_options(opt, &e->opt);
    if (st == CLLM_OK) st = resolve_auto(w, &e->opt);
    if (st == CLLM_OK) {
        e->ctx = w->cfg.context_len;
        if (e->opt.context_len && e->opt.context_len < e->ctx) e->ctx = e->opt.context_len;
        st = open_backend(e, ops);
    }
    if (st == CLLM_OK) st = alloc_seq_state(e);
    if (st != CLLM_OK) {
        cllm_engine_free(e);
        return st;
    }
    cllm_engine_stats sts;
    cllm_engine_stats_get(e, &sts);
    char how[96];
    if (e->opt.vram_budget && e->opt.backend == CLLM_BACKEND_CUDA)
        snprintf(how, sizeof how, "weights placed by the planner under %.2f GiB of VRAM%s",
                 (double)e->opt.vram_budget / 1073741824.0,
                 opt && opt->weights == CLLM_WEIGHTS_AUTO && !opt->vram_budget
                     ? " (auto: raw does not fit)" : "");
    else
        snprintf(how, sizeof how, "%s weights", cllm_weights_mode_name(sts.weights));
    cllm_logf(e->opt.log, e->opt.log_user,
              "engine: %s backend, %s, %d threads, context %u, KV %s, %u sequence%s", sts.backend,
              how, e->opt.n_threads, e->ctx, cllm_dtype_name(e->opt.kv_dtype), e->n_seq,
              e->n_seq == 1 ? "" : "s");
    *out = e;
    return CLLM_OK;
}

cllm_status cllm_engine_open_weights(cllm_weights *w, const cllm_engine_options *opt,
                                     cllm_engine **out) {
    return cllm_engine_open_ops(w, opt, NULL, out);
}

// Every byte checked before any is used: a flipped payload bit would otherwise decode into wrong
// weights (or a clean-looking rANS stream) and silently change the model's output.
static cllm_status verify_at_open(const cllm_container *c, const cllm_engine_options *opt) {
    double t0 = cllm_now_seconds();
    cllm_status st = cllm_container_verify_bytes(c, NULL, NULL, NULL);
    if (st != CLLM_OK) return cllm_error_context(st, "checksum check at open");
    double dt = cllm_now_seconds() - t0;
    uint64_t bytes = cllm_container_file_size(c);
    if (opt)
        cllm_logf(opt->log, opt->log_user,
                  "engine: verified %.1f MiB of checksums in %.3f s (%.1f GB/s)",
                  (double)bytes / (1024.0 * 1024.0), dt, dt > 0 ? (double)bytes / 1e9 / dt : 0.0);
    return CLLM_OK;
}

cllm_status cllm_engine_open(const cllm_container *c, const cllm_engine_options *opt,
                             cllm_engine **out) {
    RETURN_IF(!c || !out, CLLM_ERR_ARG, "engine: NULL argument");
    *out = NULL;
    if (!opt || !opt->no_verify) TRY(verify_at_open(c, opt));
    cllm_weights *w;
    TRY(cllm_weights_bind(c, &w));
    return cllm_engine_open_weights(w, opt, out);
}

void cllm_engine_free(cllm_engine *e) {
    if (!e) return;
    cllm_forward_free(e->fwd);
    cllm_weights_free(e->weights);
    free(e->n_past);
    free(e->seen);
    free(e->step_tok);
    free(e->step_pos);
    free(e->step_slot);
    free(e->step_out);
    free(e);
}

const cllm_model_config *cllm_engine_config(const cllm_engine *e) { return &e->weights->cfg; }
uint32_t cllm_engine_context(const cllm_engine *e) { return e->ctx; }
size_t cllm_engine_n_past(const cllm_engine *e) { return e->n_past[0]; }
void cllm_engine_reset(cllm_engine *e) { e->n_past[0] = 0; }
uint32_t cllm_engine_n_seq(const cllm_engine *e) { return e->n_seq; }
size_t cllm_engine_step_tokens(const cllm_engine *e) {
    (void)e;
    return CLLM_ENGINE_BATCH;
}
size_t cllm_engine_seq_n_past(const cllm_engine *e, uint32_t seq) {
    return seq < e->n_seq ? e->n_past[seq] : 0;
}
void cllm_engine_seq_reset(cllm_engine *e, uint32_t seq) {
    if (seq < e->n_seq) e->n_past[seq] = 0;
}

// tokens[0..n) at pos.. of a sequence with n_past cached positions: ids, hole, context. `what`
// names the call (and the item) in the message.
static cllm_status check_span(const cllm_engine *e, const char *what, const int32_t *tokens,
                              size_t n, size_t pos, size_t n_past) {
    const uint32_t vocab = e->weights->cfg.vocab_size;
    RETURN_IF(!tokens || n == 0, CLLM_ERR_ARG, "%s: no tokens", what);
    RETURN_IF(pos > n_past, CLLM_ERR_ARG,
              "%s: position %zu leaves a hole after the %zu cached positions", what, pos, n_past);
    RETURN_IF(pos > e->ctx || n > e->ctx - pos, CLLM_ERR_ARG,
              "%s: positions %zu..%zu exceed the context of %u", what, pos, pos + n - 1, e->ctx);
    for (size_t i = 0; i < n; i++)
        RETURN_IF(tokens[i] < 0 || (uint32_t)tokens[i] >= vocab, CLLM_ERR_ARG,
                  "%s: token id %d at index %zu is outside the vocabulary of %u", what, tokens[i],
                  i, vocab);
    return CLLM_OK;
}

static cllm_status check_logits(const cllm_engine *e, const char *what, const float *logits,
                                size_t logits_cap, size_t rows) {
    size_t need;
    RETURN_IF(cllm_mul_overflow(rows, e->weights->cfg.vocab_size, &need), CLLM_ERR_ARG,
              "%s: size", what);
    RETURN_IF(need && (!logits || logits_cap < need), CLLM_ERR_ARG,
              "%s: logits buffer holds %zu floats, %zu needed", what, logits ? logits_cap : 0,
              need);
    return CLLM_OK;
}

cllm_status cllm_engine_forward(cllm_engine *e, const int32_t *tokens, size_t n, size_t pos,
                                float *logits, size_t logits_cap, int all_logits) {
    RETURN_IF(!e, CLLM_ERR_ARG, "forward: NULL engine");
    TRY(check_span(e, "forward", tokens, n, pos, e->n_past[0]));
    TRY(check_logits(e, "forward", logits, logits_cap, all_logits ? n : 1));
    cllm_status st = cllm_forward_run(e->fwd, 0, tokens, n, pos, logits, all_logits);
    e->n_past[0] = st == CLLM_OK ? pos + n : pos;
    return st;
}

// Every item: its sequence exists and is not in the call twice, its span, and the logits rows.
static cllm_status check_items(cllm_engine *e, const cllm_batch_item *items, size_t n_items,
                               const float *logits, size_t logits_cap) {
    RETURN_IF(!items || n_items == 0, CLLM_ERR_ARG, "forward_batch: no items");
    RETURN_IF(n_items > e->n_seq, CLLM_ERR_ARG,
              "forward_batch: %zu items, the engine holds %u sequences", n_items, e->n_seq);
    e->epoch++;
    size_t rows = 0;
    for (size_t i = 0; i < n_items; i++) {
        const cllm_batch_item *it = &items[i];
        char what[48];
        snprintf(what, sizeof what, "forward_batch: item %zu", i);
        RETURN_IF(it->seq >= e->n_seq, CLLM_ERR_ARG, "%s: sequence %u, the engine holds %u", what,
                  it->seq, e->n_seq);
        RETURN_IF(e->seen[it->seq] == e->epoch, CLLM_ERR_ARG,
                  "%s: sequence %u appears twice in one call", what, it->seq);
        e->seen[it->seq] = e->epoch;
        TRY(check_span(e, what, it->tokens, it->n, it->pos, e->n_past[it->seq]));
        rows += it->want_logits != 0;
    }
    return check_logits(e, "forward_batch", logits, logits_cap, rows);
}

// The items' tokens, in order, in steps of up to CLLM_ENGINE_BATCH; each step's logits rows are
// the next rows of `logits` (items complete in order, so their rows are consecutive).
static cllm_status run_batch(cllm_engine *e, const cllm_batch_item *items, size_t n_items,
                             float *logits) {
    const size_t B = CLLM_ENGINE_BATCH, V = e->weights->cfg.vocab_size;
    size_t it = 0, off = 0, row = 0;  // off: tokens of items[it] already placed
    while (it < n_items) {
        size_t nt = 0, n_out = 0;
        uint32_t max_pos = 0;
        while (it < n_items && nt < B) {
            const cllm_batch_item *x = &items[it];
            const size_t take = x->n - off < B - nt ? x->n - off : B - nt;
            for (size_t k = 0; k < take; k++, nt++) {
                e->step_tok[nt] = x->tokens[off + k];
                e->step_pos[nt] = (uint32_t)(x->pos + off + k);
                e->step_slot[nt] = x->seq;
            }
            off += take;
            if (e->step_pos[nt - 1] + 1 > max_pos) max_pos = e->step_pos[nt - 1] + 1;
            if (off < x->n) break;  // the step is full
            if (x->want_logits) e->step_out[n_out++] = (uint32_t)(nt - 1);
            it++;
            off = 0;
        }
        const cllm_step sp = {nt, e->step_pos, e->step_slot, max_pos, n_out, e->step_out};
        TRY(cllm_forward_step(e->fwd, e->step_tok, &sp, n_out ? logits + row * V : NULL));
        row += n_out;
    }
    return CLLM_OK;
}

cllm_status cllm_engine_forward_batch(cllm_engine *e, const cllm_batch_item *items, size_t n_items,
                                      float *logits, size_t logits_cap) {
    RETURN_IF(!e, CLLM_ERR_ARG, "forward_batch: NULL engine");
    TRY(check_items(e, items, n_items, logits, logits_cap));
    for (size_t i = 0; i < n_items; i++) e->n_past[items[i].seq] = items[i].pos;
    cllm_status st = run_batch(e, items, n_items, logits);
    if (st != CLLM_OK) return st;
    for (size_t i = 0; i < n_items; i++) e->n_past[items[i].seq] = items[i].pos + items[i].n;
    return CLLM_OK;
}

void cllm_engine_stats_get(const cllm_engine *e, cllm_engine_stats *out) {
    memset(out, 0, sizeof *out);
    cllm_forward_stats(e->fwd, out);
    out->context_len = e->ctx;
    out->compressed_bytes = e->weights->compressed_bytes;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) out->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024u;
}
