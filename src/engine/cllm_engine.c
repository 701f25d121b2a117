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
    cllm_engine_options opt;     // resolved: n_threads >= 1
    uint32_t ctx;
    size_t n_past;               // positions [0, n_past) hold valid keys and values
};

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
    return CLLM_FAIL(CLLM_ERR_ARG,
                     "unknown weights mode '%s' (stream, resident, device, raw, fused, auto)",
                     s ? s : "");
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
    return CLLM_OK;
}

// Bytes of the weights once decoded, and as stored.
static void weight_totals(const cllm_weights *w, uint64_t *decoded, uint64_t *compressed) {
    uint64_t d = w->embed.decoded_bytes + w->norm.decoded_bytes;
    if (!w->cfg.tied_embeddings) d += w->lm_head.decoded_bytes;
    for (uint32_t l = 0; l < w->cfg.n_layers; l++)
        for (int i = 0; i < CLLM_LAYER_N_TENSORS; i++) d += w->layers[l].all[i].decoded_bytes;
    *decoded = d;
    *compressed = w->compressed_bytes;
}

// Settles CLLM_BACKEND_AUTO and CLLM_WEIGHTS_AUTO (see include/codecllm.h for the rules).
static cllm_status resolve_auto(const cllm_weights *w, cllm_engine_options *o) {
    if (o->backend == CLLM_BACKEND_AUTO)
        o->backend =
            cllm_backend_available(CLLM_BACKEND_CUDA) ? CLLM_BACKEND_CUDA : CLLM_BACKEND_CPU;
    if (o->weights != CLLM_WEIGHTS_AUTO) return CLLM_OK;
    uint64_t decoded, compressed;
    weight_totals(w, &decoded, &compressed);
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
    o->weights = decoded <= room      ? CLLM_WEIGHTS_RAW
                 : compressed <= room ? CLLM_WEIGHTS_DEVICE
                                      : CLLM_WEIGHTS_STREAM;
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
    if (st != CLLM_OK) {
        cllm_engine_free(e);
        return st;
    }
    cllm_engine_stats sts;
    cllm_engine_stats_get(e, &sts);
    cllm_logf(e->opt.log, e->opt.log_user,
              "engine: %s backend, %s weights, %d threads, context %u, KV %s", sts.backend,
              cllm_weights_mode_name(sts.weights), e->opt.n_threads, e->ctx,
              cllm_dtype_name(e->opt.kv_dtype));
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
    free(e);
}

const cllm_model_config *cllm_engine_config(const cllm_engine *e) { return &e->weights->cfg; }
uint32_t cllm_engine_context(const cllm_engine *e) { return e->ctx; }
size_t cllm_engine_n_past(const cllm_engine *e) { return e->n_past; }
void cllm_engine_reset(cllm_engine *e) { e->n_past = 0; }

static cllm_status check_forward(const cllm_engine *e, const int32_t *tokens, size_t n, size_t pos,
                                 const float *logits, size_t logits_cap, int all_logits) {
    const uint32_t vocab = e->weights->cfg.vocab_size;
    RETURN_IF(!tokens || n == 0, CLLM_ERR_ARG, "forward: no tokens");
    RETURN_IF(pos > e->n_past, CLLM_ERR_ARG,
              "forward: position %zu leaves a hole after the %zu cached positions", pos, e->n_past);
    RETURN_IF(pos > e->ctx || n > e->ctx - pos, CLLM_ERR_ARG,
              "forward: positions %zu..%zu exceed the context of %u", pos, pos + n - 1, e->ctx);
    for (size_t i = 0; i < n; i++)
        RETURN_IF(tokens[i] < 0 || (uint32_t)tokens[i] >= vocab, CLLM_ERR_ARG,
                  "forward: token id %d at index %zu is outside the vocabulary of %u", tokens[i],
                  i, vocab);
    size_t need = vocab;
    RETURN_IF(all_logits && cllm_mul_overflow(n, vocab, &need), CLLM_ERR_ARG, "forward: size");
    RETURN_IF(!logits || logits_cap < need, CLLM_ERR_ARG,
              "forward: logits buffer holds %zu floats, %zu needed", logits_cap, need);
    return CLLM_OK;
}

cllm_status cllm_engine_forward(cllm_engine *e, const int32_t *tokens, size_t n, size_t pos,
                                float *logits, size_t logits_cap, int all_logits) {
    RETURN_IF(!e, CLLM_ERR_ARG, "forward: NULL engine");
    TRY(check_forward(e, tokens, n, pos, logits, logits_cap, all_logits));
    cllm_status st = cllm_forward_run(e->fwd, 0, tokens, n, pos, logits, all_logits);
    e->n_past = st == CLLM_OK ? pos + n : pos;
    return st;
}

void cllm_engine_stats_get(const cllm_engine *e, cllm_engine_stats *out) {
    memset(out, 0, sizeof *out);
    if (e->fwd) cllm_forward_stats(e->fwd, out);
    out->context_len = e->ctx;
    out->compressed_bytes = e->weights->compressed_bytes;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) out->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024u;
}
