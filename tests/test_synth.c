// Synthesizer: writes HF directories that the importer opens; deterministic and independent of
// the thread count; sharding; dtype rounding; weight statistics resemble trained weights.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cllm_half.h"
#include "model/cllm_model.h"
#include "testutil.h"

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", cllm_test_tmpdir(), name);
    return buf[k];
}

static uint8_t *read_all(const char *path, size_t *size) {
    uint8_t *data = NULL;
    if (cllm_read_file(path, (size_t)1 << 30, &data, size) != CLLM_OK)
        fail_msg("%s", cllm_last_error());
    return data;
}

static uint8_t *read_tensor(cllm_source *s, size_t i, size_t *bytes) {
    cllm_source_tensor t;
    assert_int_equal(cllm_source_tensor_info(s, i, &t), CLLM_OK);
    *bytes = t.shape[0] * (t.ndim == 2 ? t.shape[1] : 1) * cllm_dtype_size(t.dtype);
    uint8_t *buf = malloc(*bytes);
    assert_int_equal(cllm_source_read(s, i, buf, *bytes), CLLM_OK);
    return buf;
}

static float value_at(const uint8_t *buf, cllm_dtype dt, size_t k) {
    if (dt == CLLM_DTYPE_F32) {
        float f;
        memcpy(&f, buf + 4 * k, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, buf + 2 * k, 2);
    return dt == CLLM_DTYPE_BF16 ? cllm_bf16_to_f32(h) : cllm_f16_to_f32(h);
}

typedef struct progress_log {
    size_t calls, last_done, total;
    uint64_t last_bytes, bytes_total;
} progress_log;

static void on_progress(void *user, size_t done, size_t total, uint64_t bytes_done,
                        uint64_t bytes_total, const char *what) {
    progress_log *p = user;
    assert_non_null(what);
    assert_true(done >= p->last_done && bytes_done >= p->last_bytes);
    p->calls++;
    p->last_done = done;
    p->total = total;
    p->last_bytes = bytes_done;
    p->bytes_total = bytes_total;
}

static void test_presets(void **state) {
    (void)state;
    const char *const *names = cllm_synth_presets();
    size_t n = 0;
    for (; names[n]; n++) {
        cllm_model_config c;
        assert_int_equal(cllm_synth_preset_config(names[n], &c), CLLM_OK);
        assert_int_equal(cllm_config_validate(&c), CLLM_OK);
    }
    assert_int_equal(n, 5);
    cllm_model_config c;
    assert_int_equal(cllm_synth_preset_config("llama3-8b", &c), CLLM_OK);
    assert_int_equal(c.vocab_size, 128256);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.rope_scaling, CLLM_ROPE_SCALING_LLAMA3);
    assert_true(c.rope_theta == 500000.0f && c.rope_factor == 8.0f);
    assert_int_equal(cllm_synth_preset_config("llama2-1b", &c), CLLM_OK);
    assert_int_equal(c.hidden_dim, 5632);
    assert_int_equal(c.n_layers, 22);
    assert_int_equal(cllm_synth_preset_config("gpt5", &c), CLLM_ERR_ARG);
    cllm_synth_options opt = {.preset = "nope", .dtype = CLLM_DTYPE_BF16};
    assert_int_equal(cllm_synth(tmp_path("nope"), &opt), CLLM_ERR_ARG);
}

// tiny in each dtype: opens, config matches; f16/bf16 are the f32 weights rounded to nearest.
static void test_tiny_each_dtype(void **state) {
    (void)state;
    static const cllm_dtype dts[3] = {CLLM_DTYPE_F32, CLLM_DTYPE_BF16, CLLM_DTYPE_F16};
    cllm_source *src[3];
    for (int d = 0; d < 3; d++) {
        char name[32];
        snprintf(name, sizeof name, "tiny_%d", d);
        progress_log log = {0};
        cllm_synth_options opt = {.preset = "tiny", .dtype = dts[d], .seed = 7,
                                  .n_layers_override = 2, .n_threads = 2,
                                  .progress = on_progress, .progress_user = &log};
        assert_int_equal(cllm_synth(tmp_path(name), &opt), CLLM_OK);
        assert_int_equal(log.last_done, 2 + 9 * 2);
        assert_int_equal(log.total, 2 + 9 * 2);
        assert_int_equal(log.last_bytes, log.bytes_total);
        assert_int_equal(cllm_source_open(tmp_path(name), NULL, &src[d]), CLLM_OK);
        const cllm_model_config *c = cllm_source_config(src[d]);
        assert_int_equal(c->dim, 256);
        assert_int_equal(c->hidden_dim, 688);
        assert_int_equal(c->n_layers, 2);
        assert_int_equal(c->n_kv_heads, 4);
        assert_int_equal(c->tied_embeddings, 1);
        assert_true(c->norm_eps == 1e-5f);
        cllm_source_tensor t;
        assert_int_equal(cllm_source_tensor_info(src[d], 3, &t), CLLM_OK);
        assert_string_equal(t.name, "model.layers.0.self_attn.k_proj.weight");
        assert_int_equal(t.dtype, dts[d]);
        assert_int_equal(t.shape[0], 128);
    }
    for (size_t i = 0; i < cllm_source_n_tensors(src[0]); i++) {
        size_t b32, b16, bh;
        uint8_t *w32 = read_tensor(src[0], i, &b32);
        uint8_t *wbf = read_tensor(src[1], i, &b16);
        uint8_t *wf16 = read_tensor(src[2], i, &bh);
        for (size_t k = 0; k < b32 / 4; k++) {
            float f = value_at(w32, CLLM_DTYPE_F32, k);
            uint16_t hb, hh;
            memcpy(&hb, wbf + 2 * k, 2);
            memcpy(&hh, wf16 + 2 * k, 2);
            assert_int_equal(hb, cllm_f32_to_bf16(f));
            assert_int_equal(hh, cllm_f32_to_f16(f));
        }
        free(w32);
        free(wbf);
        free(wf16);
    }
    for (int d = 0; d < 3; d++) cllm_source_free(src[d]);
}

// Weight statistics: matrices centred with std near the base, heavy tails (kurtosis of a
// Student-t(5) mixture > 3), norms positive around 1 (or a lower mean).
static void test_statistics(void **state) {
    (void)state;
    cllm_source *s;
    assert_int_equal(cllm_source_open(tmp_path("tiny_0"), NULL, &s), CLLM_OK);
    for (size_t i = 0; i < cllm_source_n_tensors(s); i++) {
        cllm_tensor_spec sp;
        cllm_llama_tensor_spec(cllm_source_config(s), i, &sp);
        size_t bytes;
        uint8_t *w = read_tensor(s, i, &bytes);
        size_t n = bytes / 4;
        double sum = 0, sq = 0, q4 = 0;
        for (size_t k = 0; k < n; k++) {
            double v = value_at(w, CLLM_DTYPE_F32, k);
            assert_true(isfinite(v));
            sum += v;
            sq += v * v;
        }
        double mean = sum / (double)n, var = sq / (double)n - mean * mean;
        for (size_t k = 0; k < n; k++) {
            double v = value_at(w, CLLM_DTYPE_F32, k) - mean;
            q4 += v * v * v * v;
        }
        double kurt = q4 / (double)n / (var * var);
        if (sp.ndim == 1) {
            for (size_t k = 0; k < n; k++) assert_true(value_at(w, CLLM_DTYPE_F32, k) >= 0);
            assert_true(mean > 0.05 && mean < 1.6);
        } else {
            double base = (sp.role == CLLM_ROLE_WO || sp.role == CLLM_ROLE_DOWN) ? 0.01 : 0.02;
            assert_true(fabs(mean) < 0.1 * sqrt(var));
            assert_true(sqrt(var) > 0.7 * base && sqrt(var) < 1.8 * base);
            assert_true(kurt > 4.0);
        }
        free(w);
    }
    cllm_source_free(s);
}

static void test_deterministic_across_threads(void **state) {
    (void)state;
    cllm_synth_options opt = {.preset = "tiny", .dtype = CLLM_DTYPE_BF16, .seed = 42,
                              .n_layers_override = 1, .n_threads = 1};
    assert_int_equal(cllm_synth(tmp_path("det1"), &opt), CLLM_OK);
    opt.n_threads = 3;
    assert_int_equal(cllm_synth(tmp_path("det3"), &opt), CLLM_OK);
    opt.seed = 43;
    assert_int_equal(cllm_synth(tmp_path("det_other"), &opt), CLLM_OK);
    size_t n1, n3, n4;
    uint8_t *a = read_all(tmp_path("det1/model.safetensors"), &n1);
    uint8_t *b = read_all(tmp_path("det3/model.safetensors"), &n3);
    uint8_t *c = read_all(tmp_path("det_other/model.safetensors"), &n4);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, b, n1);
    assert_int_equal(n1, n4);
    assert_true(memcmp(a, c, n1) != 0);
    free(a);
    free(b);
    free(c);
    // No temporary files are left behind.
    assert_int_equal(access(tmp_path("det1/config.json"), F_OK), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", tmp_path("det1/config.json"), (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static cllm_model_config small_untied(void) {
    cllm_model_config c;
    assert_int_equal(cllm_synth_preset_config("llama3-8b", &c), CLLM_OK);
    c.dim = 64;
    c.hidden_dim = 96;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.vocab_size = 300;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

// A sharded directory holds the same tensors as an unsharded one; llama3 scaling round-trips.
static void test_sharded_untied(void **state) {
    (void)state;
    cllm_model_config c = small_untied();
    cllm_synth_options opt = {.dtype = CLLM_DTYPE_BF16, .seed = 5, .n_threads = 2};
    assert_int_equal(cllm_synth_write(tmp_path("one"), &c, &opt, (uint64_t)1 << 30), CLLM_OK);
    assert_int_equal(cllm_synth_write(tmp_path("shards"), &c, &opt, 40000), CLLM_OK);
    assert_int_equal(access(tmp_path("shards/model.safetensors.index.json"), F_OK), 0);
    // Rewriting a directory in the other layout removes the stale entry point.
    assert_int_equal(cllm_synth_write(tmp_path("relayout"), &c, &opt, 40000), CLLM_OK);
    assert_int_equal(cllm_synth_write(tmp_path("relayout"), &c, &opt, (uint64_t)1 << 30), CLLM_OK);
    assert_int_not_equal(access(tmp_path("relayout/model.safetensors.index.json"), F_OK), 0);
    assert_int_not_equal(access(tmp_path("shards/model.safetensors"), F_OK), 0);
    cllm_source *a, *b;
    assert_int_equal(cllm_source_open(tmp_path("one"), NULL, &a), CLLM_OK);
    assert_int_equal(cllm_source_open(tmp_path("shards"), NULL, &b), CLLM_OK);
    assert_true(b->n_files > 3);
    const cllm_model_config *cb = cllm_source_config(b);
    assert_int_equal(cb->tied_embeddings, 0);
    assert_int_equal(cb->rope_scaling, CLLM_ROPE_SCALING_LLAMA3);
    assert_true(cb->rope_factor == 8.0f && cb->rope_high_freq_factor == 4.0f);
    assert_int_equal(cb->rope_original_context, 8192);
    assert_true(cb->rope_theta == 500000.0f);
    assert_int_equal(cllm_source_n_tensors(b), 2 + 9 * 3 + 1);
    for (size_t i = 0; i < cllm_source_n_tensors(a); i++) {
        size_t na, nb;
        uint8_t *wa = read_tensor(a, i, &na);
        uint8_t *wb = read_tensor(b, i, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(wa, wb, na);
        free(wa);
        free(wb);
    }
    cllm_source_free(a);
    cllm_source_free(b);
}

// The source applies the inverse rotate-half permutation to q and k of HF models.
static void test_qk_permuted_on_read(void **state) {
    (void)state;
    cllm_source *s;
    assert_int_equal(cllm_source_open(tmp_path("one"), NULL, &s), CLLM_OK);
    const cllm_model_config *c = cllm_source_config(s);
    int fd = s->files[0].fd;
    cllm_st_header h;
    assert_int_equal(cllm_st_read_header(fd, "one", &h), CLLM_OK);
    for (size_t i = 2; i <= 4; i++) {  // q, k, v of layer 0
        size_t bytes;
        uint8_t *eng = read_tensor(s, i, &bytes);
        const cllm_st_tensor *t = cllm_st_find(&h, s->tensors[i].name);
        uint8_t *raw = malloc(bytes);
        assert_int_equal(cllm_pread_full(fd, raw, bytes, h.data_offset + t->begin, "one"), CLLM_OK);
        size_t row = (size_t)t->shape[1] * 2, hd = c->head_dim;
        for (size_t r = 0; r < t->shape[0]; r++) {
            size_t head = r / hd, within = r % hd;
            size_t hf = i == 4 ? r : head * hd + (within % 2) * (hd / 2) + within / 2;
            assert_memory_equal(eng + r * row, raw + hf * row, row);
        }
        free(eng);
        free(raw);
    }
    cllm_st_header_free(&h);
    cllm_source_free(s);
}

// Rewrites `path` with the first occurrence of `from` replaced by `to` (same length).
static void replace_in_file(const char *path, const char *from, const char *to) {
    size_t n = 0;
    uint8_t *buf = NULL;
    assert_int_equal(cllm_read_file(path, (size_t)1 << 24, &buf, &n), CLLM_OK);
    char *text = (char *)buf;
    size_t len = strlen(from), at = (size_t)(strstr(text, from) - text);
    assert_true(at + len <= n && strlen(to) == len);
    memcpy(text + at, to, len);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
    free(text);
}

static void test_broken_directories(void **state) {
    (void)state;
    cllm_source *s = NULL;
    // Drop one tensor from the index: the importer names it.
    const char *index = tmp_path("shards/model.safetensors.index.json");
    replace_in_file(index, "\"model.norm.weight\"", "\"model.norm.weigh_\"");
    assert_int_equal(cllm_source_open(tmp_path("shards"), NULL, &s), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "'model.norm.weight' is missing from weight_map"));
    replace_in_file(index, "\"model.norm.weigh_\"", "\"model.norm.weight\"");
    assert_int_equal(cllm_source_open(tmp_path("shards"), NULL, &s), CLLM_OK);
    cllm_source_free(s);
    s = NULL;
    // A missing shard.
    char shard[600] = "";
    for (int total = 2; total < 100; total++) {
        snprintf(shard, sizeof shard, "%s/model-00002-of-%05d.safetensors", tmp_path("shards"),
                 total);
        if (access(shard, F_OK) == 0) break;
    }
    assert_int_equal(unlink(shard), 0);
    assert_int_equal(cllm_source_open(tmp_path("shards"), NULL, &s), CLLM_ERR_IO);
    assert_non_null(strstr(cllm_last_error(), "model-00002-of-"));
    // A truncated single file: the header no longer fits the data.
    assert_int_equal(truncate(tmp_path("one/model.safetensors"), 4096), 0);
    assert_int_equal(cllm_source_open(tmp_path("one"), NULL, &s), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), "model.safetensors"));
    assert_null(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_tiny_each_dtype),
        cmocka_unit_test(test_statistics),
        cmocka_unit_test(test_deterministic_across_threads),
        cmocka_unit_test(test_sharded_untied),
        cmocka_unit_test(test_qk_permuted_on_read),
        cmocka_unit_test(test_broken_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
