// Synthetic models: writes a genuine Hugging Face directory whose weights are drawn to resemble
// trained Llama weights (heavy tails, per-row scale spread, a few outlier input columns, norm
// weights near 1), so that codec measurements on them are meaningful.
//
// Determinism: every row draws from a generator seeded by (seed, tensor index, row) only, so the
// bytes do not depend on the thread count or the chunking. Memory: one chunk of rows (~32 MB) of
// one tensor plus one column-multiplier vector; a 7B model is never in RAM.
#include "cllm_model.h"
#include "../common/cllm_half.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNTH_CHUNK_BYTES ((uint64_t)32 << 20)
#define SYNTH_SHARD_BYTES ((uint64_t)4 << 30)
#define SYNTH_OUTLIER_RATE 0.005
#define SYNTH_OUTLIER_GAIN 6.0f

// ---- presets -----------------------------------------------------------------------------------

typedef struct synth_preset {
    const char *name;
    uint32_t dim, hidden, layers, heads, kv_heads, vocab, ctx, tied;
    float theta;
    int llama3_scaling;
    int32_t bos, eos;
} synth_preset;

static const synth_preset presets[] = {
    {"tiny", 256, 688, 4, 8, 4, 512, 512, 1, 10000.0f, 0, 1, 2},
    {"small", 768, 2048, 12, 12, 12, 32000, 2048, 0, 10000.0f, 0, 1, 2},
    {"llama2-1b", 2048, 5632, 22, 32, 4, 32000, 2048, 0, 10000.0f, 0, 1, 2},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 0, 10000.0f, 0, 1, 2},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 0, 500000.0f, 1, 128000, 128001},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const *cllm_synth_presets(void) {
    static const char *const names[] = {"tiny", "small", "llama2-1b", "llama2-7b", "llama3-8b",
                                        NULL};
    _Static_assert(sizeof names / sizeof names[0] == N_PRESETS + 1, "preset names out of sync");
    return names;
}

cllm_status cllm_synth_preset_config(const char *name, cllm_model_config *c) {
    RETURN_IF(!name || !c, CLLM_ERR_ARG, "synth: preset name is required");
    for (size_t k = 0; k < N_PRESETS; k++) {
        const synth_preset *p = &presets[k];
        if (strcmp(name, p->name) != 0) continue;
        *c = (cllm_model_config){
            .arch = CLLM_ARCH_LLAMA, .dim = p->dim, .hidden_dim = p->hidden,
            .n_layers = p->layers, .n_heads = p->heads, .n_kv_heads = p->kv_heads,
            .head_dim = p->dim / p->heads, .vocab_size = p->vocab, .context_len = p->ctx,
            .tied_embeddings = p->tied, .rope_theta = p->theta, .norm_eps = 1e-5f,
            .bos_id = p->bos, .eos_id = p->eos};
        if (p->llama3_scaling) {
            c->rope_scaling = CLLM_ROPE_SCALING_LLAMA3;
            c->rope_factor = 8.0f;
            c->rope_low_freq_factor = 1.0f;
            c->rope_high_freq_factor = 4.0f;
            c->rope_original_context = 8192;
        }
        return CLLM_OK;
    }
    return CLLM_FAIL(CLLM_ERR_ARG, "synth: unknown preset '%s' (tiny, small, llama2-1b, "
                     "llama2-7b, llama3-8b)", name);
}

// ---- random numbers ----------------------------------------------------------------------------

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// splitmix64 stream, seeded from (seed, tensor, row).
typedef struct synth_rng {
    uint64_t s;
} synth_rng;

static synth_rng rng_for(uint64_t seed, uint64_t tensor, uint64_t row) {
    synth_rng r = {mix64(mix64(seed ^ 0x5eedull) ^ mix64(tensor + 0x1000) ^ (row * 0x9e37ull))};
    return r;
}

static uint64_t rng_next(synth_rng *r) { return mix64(r->s += 0x9e3779b97f4a7c15ull); }

static float rng_uniform(synth_rng *r) {  // [0, 1)
    return (float)(rng_next(r) >> 40) * 0x1.0p-24f;
}

static float rng_normal(synth_rng *r) {
    float u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-30f) u1 = 1e-30f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

// Student-t with 5 degrees of freedom scaled to unit variance (Bailey's polar method).
static float rng_student5(synth_rng *r) {
    float u, w;
    do {
        u = 2.0f * rng_uniform(r) - 1.0f;
        float v = 2.0f * rng_uniform(r) - 1.0f;
        w = u * u + v * v;
    } while (w >= 1.0f || w == 0.0f);
    float t = u * sqrtf(5.0f * (powf(w, -0.4f) - 1.0f) / w);
    return t * 0.77459667f;  // sqrt(3/5): variance 5/3 -> 1
}

// ---- one tensor --------------------------------------------------------------------------------

typedef struct synth_tensor {
    cllm_tensor_spec spec;
    uint64_t index;       // canonical index: part of every row's seed
    uint64_t rows, cols;  // 1-D norms are one row
    uint64_t bytes;
    int is_norm;
    float std;            // base std of matrices
    float norm_mean;      // centre of norm weights
    float *col_gain;      // (cols) outlier multipliers, matrices only
} synth_tensor;

static void store_value(void *out, cllm_dtype dt, uint64_t k, float v) {
    if (dt == CLLM_DTYPE_F32) {
        memcpy((uint8_t *)out + 4 * k, &v, 4);
    } else {
        uint16_t h = dt == CLLM_DTYPE_BF16 ? cllm_f32_to_bf16(v) : cllm_f32_to_f16(v);
        memcpy((uint8_t *)out + 2 * k, &h, 2);
    }
}

static void synth_row(const synth_tensor *t, uint64_t seed, uint64_t row, cllm_dtype dt,
                      void *out) {
    synth_rng r = rng_for(seed, t->index, row);
    if (t->is_norm) {
        for (uint64_t c = 0; c < t->cols; c++)
            store_value(out, dt, c, fabsf(t->norm_mean * (1.0f + 0.2f * rng_normal(&r))));
        return;
    }
    float scale = t->std * expf(0.3f * rng_normal(&r));  // lognormal row spread
    for (uint64_t c = 0; c < t->cols; c++)
        store_value(out, dt, c, scale * t->col_gain[c] * rng_student5(&r));
}

static cllm_status synth_tensor_init(synth_tensor *t, const cllm_model_config *cfg, size_t i,
                                     uint64_t seed, cllm_dtype dt) {
    memset(t, 0, sizeof *t);
    cllm_llama_tensor_spec(cfg, i, &t->spec);
    t->index = i;
    t->is_norm = t->spec.ndim == 1;
    t->rows = t->is_norm ? 1 : t->spec.shape[0];
    t->cols = t->is_norm ? t->spec.shape[0] : t->spec.shape[1];
    t->bytes = t->rows * t->cols * cllm_dtype_size(dt);  // bounded by the config check
    synth_rng r = rng_for(seed, i, UINT64_MAX);  // tensor-level draws
    if (t->is_norm) {
        // Real checkpoints have some layers whose norms sit well below 1.
        t->norm_mean = rng_uniform(&r) < 0.3f ? 0.1f + 0.4f * rng_uniform(&r) : 1.0f;
        return CLLM_OK;
    }
    int residual_out = t->spec.role == CLLM_ROLE_WO || t->spec.role == CLLM_ROLE_DOWN;
    t->std = residual_out ? 0.02f / sqrtf(2.0f * (float)cfg->n_layers) : 0.02f;
    t->col_gain = malloc(t->cols * sizeof *t->col_gain);
    RETURN_IF(!t->col_gain, CLLM_ERR_NOMEM, "synth: out of memory");
    for (uint64_t c = 0; c < t->cols; c++)
        t->col_gain[c] = rng_uniform(&r) < SYNTH_OUTLIER_RATE ? SYNTH_OUTLIER_GAIN : 1.0f;
    return CLLM_OK;
}

// ---- the directory -----------------------------------------------------------------------------

typedef struct synth_file {
    char final[4096];
    char tmp[4200];  // "<final>.tmp-XXXXXX" once created (empty before)
} synth_file;

typedef struct synth_ctx {
    const cllm_model_config *cfg;
    const cllm_synth_options *opt;
    const char *dir;
    size_t n_tensors;
    uint64_t *tensor_bytes;  // (n_tensors)
    size_t *shard_of;        // (n_tensors) shard index of each tensor
    size_t n_shards;
    synth_file *files;       // shards, then index (if sharded), then config.json
    size_t n_files;
    uint64_t bytes_done, bytes_total;
    uint8_t *chunk;          // reused row buffer
    size_t chunk_cap;
} synth_ctx;

static cllm_status synth_name_file(synth_ctx *x, size_t k, const char *name) {
    synth_file *f = &x->files[k];
    int n = snprintf(f->final, sizeof f->final, "%s/%s", x->dir, name);
    RETURN_IF(n < 0 || (size_t)n >= sizeof f->final, CLLM_ERR_ARG, "synth: path %s/%s is too long",
              x->dir, name);
    f->tmp[0] = '\0';
    return CLLM_OK;
}

// Creates file k's temporary exclusively (never through a planted name or symlink) and
// announces it to opt->temp.
static cllm_status synth_create_temp(synth_ctx *x, size_t k, int *fd) {
    synth_file *f = &x->files[k];
    char *tmp;
    TRY(cllm_temp_create(f->final, x->opt->temp, x->opt->temp_user, &tmp, fd));  // announced
    snprintf(f->tmp, sizeof f->tmp, "%s", tmp);  // fits: final < 4096 bytes
    free(tmp);
    return CLLM_OK;
}

// Greedy sharding in canonical order: a shard closes when the next tensor would push it past
// max_shard_bytes (a tensor larger than that gets a shard of its own).
static cllm_status synth_plan(synth_ctx *x, uint64_t max_shard_bytes) {
    x->n_tensors = cllm_llama_n_tensors(x->cfg);
    x->tensor_bytes = calloc(x->n_tensors, sizeof *x->tensor_bytes);
    x->shard_of = calloc(x->n_tensors, sizeof *x->shard_of);
    RETURN_IF(!x->tensor_bytes || !x->shard_of, CLLM_ERR_NOMEM, "synth: out of memory");
    uint64_t in_shard = 0, esize = cllm_dtype_size(x->opt->dtype);
    size_t shard = 0;
    for (size_t i = 0; i < x->n_tensors; i++) {
        cllm_tensor_spec sp;
        cllm_llama_tensor_spec(x->cfg, i, &sp);
        uint64_t b = sp.shape[0] * (sp.ndim == 2 ? sp.shape[1] : 1) * esize;
        if (in_shard > 0 && in_shard + b > max_shard_bytes) {
            shard++;
            in_shard = 0;
        }
        in_shard += b;
        x->tensor_bytes[i] = b;
        x->shard_of[i] = shard;
        x->bytes_total += b;
    }
    x->n_shards = shard + 1;
    x->n_files = x->n_shards + (x->n_shards > 1 ? 1 : 0) + 1;
    x->files = calloc(x->n_files, sizeof *x->files);
    RETURN_IF(!x->files, CLLM_ERR_NOMEM, "synth: out of memory");
    for (size_t k = 0; k < x->n_shards; k++) {
        char name[64];
        if (x->n_shards == 1) snprintf(name, sizeof name, "model.safetensors");
        else snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, x->n_shards);
        TRY(synth_name_file(x, k, name));
    }
    if (x->n_shards > 1) TRY(synth_name_file(x, x->n_shards, "model.safetensors.index.json"));
    return synth_name_file(x, x->n_files - 1, "config.json");
}

static void synth_progress(synth_ctx *x, size_t done, const char *what) {
    if (x->opt->progress)
        x->opt->progress(x->opt->progress_user, done, x->n_tensors, x->bytes_done,
                         x->bytes_total, what);
}

// Generates tensor i in chunks of rows and appends it to fd.
static cllm_status synth_write_tensor(synth_ctx *x, size_t i, int fd, const char *path) {
    synth_tensor t;
    TRY(synth_tensor_init(&t, x->cfg, i, x->opt->seed, x->opt->dtype));
    uint64_t row_bytes = t.bytes / t.rows;
    uint64_t chunk_rows = SYNTH_CHUNK_BYTES / row_bytes ? SYNTH_CHUNK_BYTES / row_bytes : 1;
    if (chunk_rows > t.rows) chunk_rows = t.rows;
    size_t need = (size_t)(chunk_rows * row_bytes);
    if (need > x->chunk_cap) {
        uint8_t *nb = realloc(x->chunk, need);
        if (!nb) {
            free(t.col_gain);
            return CLLM_FAIL(CLLM_ERR_NOMEM, "synth: out of memory for %zu bytes", need);
        }
        x->chunk = nb;
        x->chunk_cap = need;
    }
    int nt = x->opt->n_threads > 0 ? x->opt->n_threads : 0;
    cllm_status st = CLLM_OK;
    for (uint64_t r0 = 0; r0 < t.rows && st == CLLM_OK; r0 += chunk_rows) {
        uint64_t n = t.rows - r0 < chunk_rows ? t.rows - r0 : chunk_rows;
        uint8_t *chunk = x->chunk;
        cllm_dtype dt = x->opt->dtype;
        uint64_t seed = x->opt->seed;
#pragma omp parallel for schedule(static) num_threads(nt > 0 ? nt : omp_get_max_threads()) \
    if (n > 1)
        for (int64_t r = 0; r < (int64_t)n; r++)
            synth_row(&t, seed, r0 + (uint64_t)r, dt, chunk + (uint64_t)r * row_bytes);
        st = cllm_write_full(fd, chunk, (size_t)(n * row_bytes), path);
        x->bytes_done += n * row_bytes;
        synth_progress(x, i + (r0 + n == t.rows), t.spec.name);
    }
    free(t.col_gain);
    return st;
}

static cllm_status synth_write_shard(synth_ctx *x, size_t k) {
    cllm_st_spec *specs = calloc(x->n_tensors, sizeof *specs);
    cllm_tensor_spec *sp = calloc(x->n_tensors, sizeof *sp);
    size_t n = 0, first = x->n_tensors;
    cllm_status st = (specs && sp) ? CLLM_OK : CLLM_FAIL(CLLM_ERR_NOMEM, "synth: out of memory");
    for (size_t i = 0; i < x->n_tensors && st == CLLM_OK; i++) {
        if (x->shard_of[i] != k) continue;
        if (first == x->n_tensors) first = i;
        cllm_llama_tensor_spec(x->cfg, i, &sp[n]);
        specs[n] = (cllm_st_spec){.name = sp[n].name, .dtype = x->opt->dtype,
                                  .ndim = sp[n].ndim, .shape = {sp[n].shape[0], sp[n].shape[1]}};
        n++;
    }
    uint8_t *hdr = NULL;
    size_t hdr_size = 0;
    uint64_t data_size = 0;
    if (st == CLLM_OK) st = cllm_st_build_header(specs, n, &hdr, &hdr_size, &data_size);
    free(specs);
    free(sp);
    TRY(st);
    const char *path = x->files[k].tmp;
    int fd;
    st = synth_create_temp(x, k, &fd);
    if (st != CLLM_OK) {
        free(hdr);
        return st;
    }
    st = cllm_write_full(fd, hdr, hdr_size, path);
    free(hdr);
    // Tensors of a shard are consecutive in canonical order.
    for (size_t i = first; i < first + n && st == CLLM_OK; i++)
        st = synth_write_tensor(x, i, fd, path);
    if (close(fd) != 0 && st == CLLM_OK)
        st = CLLM_FAIL(CLLM_ERR_IO, "synth: closing %s failed: %s", path, strerror(errno));
    return st;
}

static cllm_status synth_write_json(synth_ctx *x, size_t k, json_t *root) {
    RETURN_IF(!root, CLLM_ERR_NOMEM, "synth: out of memory building %s", x->files[k].final);
    size_t flags = JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(9);
    char *text = json_dumps(root, flags);
    json_decref(root);
    RETURN_IF(!text, CLLM_ERR_NOMEM, "synth: out of memory writing %s", x->files[k].final);
    int fd;
    cllm_status st = synth_create_temp(x, k, &fd);
    if (st == CLLM_OK) {
        st = cllm_write_full(fd, text, strlen(text), x->files[k].tmp);
        if (close(fd) != 0 && st == CLLM_OK)
            st = CLLM_FAIL(CLLM_ERR_IO, "synth: closing %s failed: %s", x->files[k].tmp,
                           strerror(errno));
    }
    free(text);
    return st;
}

static cllm_status synth_write_index(synth_ctx *x) {
    json_t *map = json_object();
    for (size_t i = 0; map && i < x->n_tensors; i++) {
        cllm_tensor_spec sp;
        cllm_llama_tensor_spec(x->cfg, i, &sp);
        const char *shard = strrchr(x->files[x->shard_of[i]].final, '/') + 1;
        json_object_set_new(map, sp.name, json_string(shard));
    }
    json_t *root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size",
                             (json_int_t)x->bytes_total, "weight_map", map);
    return synth_write_json(x, x->n_shards, root);
}

// A float as the short decimal that reads back to it (1e-05, not 9.99999974737875e-06).
static json_t *tidy_real(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return json_real(strtod(buf, NULL));
}

static cllm_status synth_write_config(synth_ctx *x) {
    const cllm_model_config *c = x->cfg;
    static const char *torch[] = {"float32", "float16", "bfloat16"};
    json_t *rs = json_null();
    if (c->rope_scaling == CLLM_ROPE_SCALING_LLAMA3)
        rs = json_pack("{s:s, s:o, s:o, s:o, s:i}", "rope_type", "llama3", "factor",
                       tidy_real(c->rope_factor), "low_freq_factor",
                       tidy_real(c->rope_low_freq_factor), "high_freq_factor",
                       tidy_real(c->rope_high_freq_factor), "original_max_position_embeddings",
                       (int)c->rope_original_context);
    json_t *root = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:b, s:i, s:i, "
        "s:s, s:s, s:o}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", (int)c->dim,
        "intermediate_size", (int)c->hidden_dim, "num_hidden_layers", (int)c->n_layers,
        "num_attention_heads", (int)c->n_heads, "num_key_value_heads", (int)c->n_kv_heads,
        "head_dim", (int)c->head_dim, "vocab_size", (int)c->vocab_size,
        "max_position_embeddings", (int)c->context_len, "rms_norm_eps", tidy_real(c->norm_eps),
        "rope_theta", tidy_real(c->rope_theta), "rope_scaling", rs, "tie_word_embeddings",
        (int)c->tied_embeddings, "bos_token_id", (int)c->bos_id, "eos_token_id", (int)c->eos_id,
        "hidden_act", "silu", "torch_dtype", torch[x->opt->dtype], "codecllm_synth_seed",
        json_integer((json_int_t)(x->opt->seed & INT64_MAX)));  // informative only
    return synth_write_json(x, x->n_files - 1, root);
}

static cllm_status synth_make_dir(const char *dir) {
    if (mkdir(dir, 0755) == 0) return CLLM_OK;
    struct stat sb;
    RETURN_IF(errno != EEXIST || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode), CLLM_ERR_IO,
              "synth: cannot create directory %s: %s", dir, strerror(errno));
    return CLLM_OK;
}

static cllm_status synth_run(synth_ctx *x, uint64_t max_shard_bytes) {
    TRY(cllm_config_validate(x->cfg));
    RETURN_IF(cllm_dtype_size(x->opt->dtype) == 0, CLLM_ERR_ARG, "synth: unknown dtype %d",
              (int)x->opt->dtype);
    RETURN_IF(max_shard_bytes == 0, CLLM_ERR_ARG, "synth: shard size must be positive");
    TRY(synth_make_dir(x->dir));
    TRY(synth_plan(x, max_shard_bytes));
    for (size_t k = 0; k < x->n_shards; k++) TRY(synth_write_shard(x, k));
    if (x->n_shards > 1) TRY(synth_write_index(x));
    TRY(synth_write_config(x));
    // config.json is renamed last: a directory that has it is complete.
    for (size_t k = 0; k < x->n_files; k++) {
        TRY(cllm_output_check(x->files[k].final));
        RETURN_IF(rename(x->files[k].tmp, x->files[k].final) != 0, CLLM_ERR_IO,
                  "synth: cannot rename %s: %s", x->files[k].tmp, strerror(errno));
        if (x->opt->temp) x->opt->temp(x->opt->temp_user, x->files[k].tmp, 0);
        x->files[k].tmp[0] = '\0';
    }
    // A directory reused from a run with the other layout must not keep a stale entry point
    // (the importer prefers model.safetensors over the index).
    char stale[4200];
    snprintf(stale, sizeof stale, "%s/%s", x->dir,
             x->n_shards > 1 ? "model.safetensors" : "model.safetensors.index.json");
    RETURN_IF(unlink(stale) != 0 && errno != ENOENT, CLLM_ERR_IO, "synth: cannot remove %s: %s",
              stale, strerror(errno));
    return CLLM_OK;
}

cllm_status cllm_synth_write(const char *out_dir, const cllm_model_config *cfg,
                             const cllm_synth_options *opt, uint64_t max_shard_bytes) {
    RETURN_IF(!out_dir || !cfg || !opt, CLLM_ERR_ARG, "synth: NULL argument");
    synth_ctx x = {.cfg = cfg, .opt = opt, .dir = out_dir};
    cllm_status st = synth_run(&x, max_shard_bytes);
    if (st != CLLM_OK && x.files)
        for (size_t k = 0; k < x.n_files; k++) {  // leave no partial files
            if (!x.files[k].tmp[0]) continue;
            unlink(x.files[k].tmp);
            if (opt->temp) opt->temp(opt->temp_user, x.files[k].tmp, 0);
        }
    free(x.tensor_bytes);
    free(x.shard_of);
    free(x.files);
    free(x.chunk);
    return st;
}

cllm_status cllm_synth(const char *out_dir, const cllm_synth_options *opt) {
    RETURN_IF(!out_dir || !opt, CLLM_ERR_ARG, "synth: output directory and options are required");
    cllm_model_config cfg;
    TRY(cllm_synth_preset_config(opt->preset, &cfg));
    if (opt->n_layers_override > 0) cfg.n_layers = (uint32_t)opt->n_layers_override;
    return cllm_synth_write(out_dir, &cfg, opt, SYNTH_SHARD_BYTES);
}
