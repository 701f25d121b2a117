// Engine tests: the reference kernels against float64 computations, and the whole forward pass on
// stories260K (a real llama2.c model) built in memory with every codec, against the float64
// reference data in ../shared/models.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ref/cllm_ref.h"
#include "codec/cllm_codec.h"
#include "common/cllm_half.h"
#include "engine/cllm_engine_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- kernels ---------------------------------------------------------------------------------

static void fill_normal(float *x, size_t n, uint64_t *rng, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * cllm_test_normal(rng));
}

// W (rows, cols) of `kind` built from fp32 values; `wf` receives the values the kernel sees.
typedef struct test_mat {
    cllm_wview v;
    void *data;
    float *scales;
    double *wf;
} test_mat;

static void make_mat(test_mat *m, cllm_wkind kind, uint64_t rows, uint64_t cols, uint32_t group,
                     uint64_t *rng) {
    size_t n = (size_t)(rows * cols);
    float *w = malloc(n * sizeof *w);
    fill_normal(w, n, rng, 0.05);
    m->wf = malloc(n * sizeof *m->wf);
    memset(&m->v, 0, sizeof m->v);
    m->v.kind = kind;
    m->v.rows = rows;
    m->v.cols = cols;
    m->scales = NULL;
    if (kind == CLLM_W_F32) {
        m->data = w;
        for (size_t i = 0; i < n; i++) m->wf[i] = w[i];
    } else if (kind == CLLM_W_F16 || kind == CLLM_W_BF16) {
        uint16_t *h = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            h[i] = kind == CLLM_W_F16 ? cllm_f32_to_f16(w[i]) : cllm_f32_to_bf16(w[i]);
            m->wf[i] = kind == CLLM_W_F16 ? cllm_f16_to_f32(h[i]) : cllm_bf16_to_f32(h[i]);
        }
        m->data = h;
        free(w);
    } else {
        uint64_t gpr = (cols + group - 1) / group;
        int8_t *q = malloc(n);
        m->scales = malloc((size_t)(rows * gpr) * sizeof(float));
        assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, rows, cols, group, q, m->scales),
                         CLLM_OK);
        for (size_t i = 0; i < n; i++)
            m->wf[i] = (double)q[i] * m->scales[(i / cols) * gpr + (i % cols) / group];
        m->data = q;
        m->v.scales = m->scales;
        m->v.group_size = group;
        m->v.groups_per_row = gpr;
        free(w);
    }
    m->v.data = m->data;
}

static void free_mat(test_mat *m) {
    free(m->data);
    free(m->scales);
    free(m->wf);
}

static void check_matmul(cllm_wkind kind, uint32_t group) {
    uint64_t rng = 1234 + (uint64_t)kind * 7 + group;
    const uint64_t rows = 83, cols = 133;
    const size_t nt = 7;  // one pass of four tokens, then three one at a time
    test_mat m;
    make_mat(&m, kind, rows, cols, group ? group : (uint32_t)cols, &rng);
    float x[7 * 133], out[7 * 83], out1[7 * 83];
    fill_normal(x, nt * cols, &rng, 1.0);
    cllm_k_matmul(out, rows, &m.v, x, cols, nt, 2);
    cllm_k_matmul(out1, rows, &m.v, x, cols, nt, 1);
    assert_memory_equal(out, out1, sizeof out);  // thread count does not change a bit
    for (size_t t = 0; t < nt; t++)
        for (uint64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (uint64_t c = 0; c < cols; c++) {
                ref += m.wf[r * cols + c] * x[t * cols + c];
                mag += fabs(m.wf[r * cols + c] * x[t * cols + c]);
            }
            double got = out[t * rows + r];
            if (fabs(got - ref) > 1e-6 * mag + 1e-7)
                fail_msg("kind %d group %u: out[%zu][%llu] = %.9g, float64 %.9g", kind, group, t,
                         (unsigned long long)r, got, ref);
            // Each token bit for bit its own dot product, four at a time or one (where no
            // multiply-add may be fused: elsewhere the compiler's contraction choices decide).
#if !defined(__FMA__)
            const float one = cllm_k_dot_row(&m.v, r, x + t * cols), gotf = out[t * rows + r];
            if (memcmp(&gotf, &one, sizeof one) != 0)
                fail_msg("kind %d group %u: out[%zu][%llu] = %.9g, its dot product %.9g", kind,
                         group, t, (unsigned long long)r, got, (double)one);
#endif
        }
    // A row range view computes the same rows.
    cllm_wview part = cllm_wview_rows(&m.v, 10, 5);
    for (uint64_t r = 0; r < 5; r++)
        assert_true(cllm_k_dot_row(&part, r, x) == out[10 + r]);
    free_mat(&m);
}

static void test_matmul_f32(void **state) {
    (void)state;
    check_matmul(CLLM_W_F32, 0);
    // Large enough to run on several threads: same bits as one thread.
    uint64_t rng = 77;
    test_mat m;
    make_mat(&m, CLLM_W_F32, 4000, 300, 0, &rng);
    float x[300], a[4000], b[4000];
    fill_normal(x, 300, &rng, 1.0);
    cllm_k_matmul(a, 4000, &m.v, x, 300, 1, 2);
    cllm_k_matmul(b, 4000, &m.v, x, 300, 1, 1);
    assert_memory_equal(a, b, sizeof a);
    free_mat(&m);
}
static void test_matmul_f16(void **state) {
    (void)state;
    check_matmul(CLLM_W_F16, 0);
}
static void test_matmul_bf16(void **state) {
    (void)state;
    check_matmul(CLLM_W_BF16, 0);
}
#if defined(__x86_64__) && !defined(__FMA__)
// An int8 row as the reference kernel spells it: per group, 8 lane sums of the products (element
// i in lane i mod 8, the tail from lane 0), the lanes added pairwise, the group scaled; groups added
// in order. The library computes it with whichever of its compiled versions suits the CPU (the
// baseline, or AVX2 on x86-64): the bits must be these.
static float spec_dot_i8_row(const cllm_wview *w, uint64_t r, const float *x) {
    const int8_t *row = (const int8_t *)w->data + r * w->cols;
    float sum = 0.0f;
    for (uint64_t g = 0; g < w->groups_per_row; g++) {
        const uint64_t c0 = g * w->group_size;
        const uint64_t n = w->cols - c0 < w->group_size ? w->cols - c0 : w->group_size;
        float acc[8] = {0};
        uint64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (float)row[c0 + i + j] * x[c0 + i + j];
        for (int j = 0; i < n; i++, j++) acc[j] += (float)row[c0 + i] * x[c0 + i];
        const float d = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        sum += w->scales[r * w->groups_per_row + g] * d;
    }
    return sum;
}
#endif

static void test_matmul_i8(void **state) {
    (void)state;
    check_matmul(CLLM_W_I8, 0);   // per row
    check_matmul(CLLM_W_I8, 16);  // groups of 16, last group short (133 = 8 * 16 + 5)
    check_matmul(CLLM_W_I8, 1);
    // Bit for bit the spelled-out reference, on rows long enough for every vector width. Only
    // where neither side may fuse a multiply-add (x86-64 without -march=native; elsewhere the
    // compiler's contraction choices decide the bits of both).
#if defined(__x86_64__) && !defined(__FMA__)
    uint64_t rng = 99;
    for (uint32_t group = 64; group <= 1000; group += 936) {
        test_mat m;
        make_mat(&m, CLLM_W_I8, 7, 1000, group, &rng);
        float x[1000];
        fill_normal(x, 1000, &rng, 1.0);
        for (uint64_t r = 0; r < 7; r++) {
            const float got = cllm_k_dot_row(&m.v, r, x), want = spec_dot_i8_row(&m.v, r, x);
            if (memcmp(&got, &want, sizeof got) != 0)
                fail_msg("int8 row %llu (group %u): %.9g, the spelled-out reference %.9g",
                         (unsigned long long)r, group, got, want);
        }
        free_mat(&m);
    }
#endif
}

static void test_row_to_f32(void **state) {
    (void)state;
    uint64_t rng = 5;
    for (int kind = 0; kind < 4; kind++) {
        test_mat m;
        make_mat(&m, (cllm_wkind)kind, 4, 40, 16, &rng);
        float row[40];
        cllm_k_row_to_f32(&m.v, 2, row);
        for (int c = 0; c < 40; c++) assert_true((double)row[c] == (double)(float)m.wf[80 + c]);
        free_mat(&m);
    }
    // f16 rows are widened without branches (so that the kernels vectorise): every one of the
    // 65536 patterns (NaN payloads, signalling ones too, +-0, +-inf, subnormals) gives
    // cllm_f16_to_f32's bits.
    uint16_t *all = malloc(65536 * sizeof *all);
    float *got = malloc(65536 * sizeof *got);
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    cllm_wview v = {.kind = CLLM_W_F16, .rows = 1, .cols = 65536, .data = all};
    cllm_k_row_to_f32(&v, 0, got);
    for (uint32_t i = 0; i < 65536; i++) {
        const float want = cllm_f16_to_f32((uint16_t)i);
        if (memcmp(&got[i], &want, sizeof want) != 0)
            fail_msg("f16 0x%04x: widened to 0x%08x, cllm_f16_to_f32 0x%08x", i,
                     cllm_f32_to_bits(got[i]), cllm_f32_to_bits(want));
    }
    free(all), free(got);
}

static void test_rmsnorm(void **state) {
    (void)state;
    uint64_t rng = 9;
    float x[67], w[67], out[67];
    fill_normal(x, 67, &rng, 3.0);
    fill_normal(w, 67, &rng, 1.0);
    double ss = 0;
    for (int i = 0; i < 67; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / 67 + 1e-5);
    cllm_k_rmsnorm(out, x, w, 67, 1e-5f);
    for (int i = 0; i < 67; i++) assert_true(fabs(out[i] - w[i] * x[i] * inv) < 1e-5);
    cllm_k_rmsnorm(x, x, w, 67, 1e-5f);  // in place
    assert_memory_equal(x, out, sizeof out);
}

static void test_rope(void **state) {
    (void)state;
    cllm_model_config cfg = {0};
    cfg.head_dim = 16;
    cfg.rope_theta = 10000.0f;
    double freqs[8];
    cllm_k_rope_freqs(&cfg, freqs);
    uint64_t rng = 11;
    float v[3 * 16], orig[3 * 16], c[8], s[8];
    fill_normal(v, 48, &rng, 1.0);
    memcpy(orig, v, sizeof v);
    const size_t pos = 37;
    cllm_k_rope_angles(freqs, 8, pos, c, s);
    cllm_k_rope(v, 3, 16, c, s);
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < 8; i++) {
            double f = pow(10000.0, -2.0 * i / 16.0), a = pos * f;
            double x0 = orig[h * 16 + 2 * i], x1 = orig[h * 16 + 2 * i + 1];
            assert_true(fabs(v[h * 16 + 2 * i] - (x0 * cos(a) - x1 * sin(a))) < 1e-5);
            assert_true(fabs(v[h * 16 + 2 * i + 1] - (x0 * sin(a) + x1 * cos(a))) < 1e-5);
        }
}

static void test_rope_llama3(void **state) {
    (void)state;
    cllm_model_config cfg = {0};
    cfg.head_dim = 128;
    cfg.rope_theta = 500000.0f;
    cfg.rope_scaling = CLLM_ROPE_SCALING_LLAMA3;
    cfg.rope_factor = 8.0f;
    cfg.rope_low_freq_factor = 1.0f;
    cfg.rope_high_freq_factor = 4.0f;
    cfg.rope_original_context = 8192;
    double freqs[64];
    cllm_k_rope_freqs(&cfg, freqs);
    for (int i = 0; i < 64; i++) {
        double f = pow(500000.0, -2.0 * i / 128.0), wl = 2 * M_PI / f, want;
        if (wl < 8192.0 / 4.0) want = f;                 // high frequencies: kept
        else if (wl > 8192.0 / 1.0) want = f / 8.0;      // low frequencies: slowed 8x
        else {
            double sm = (8192.0 / wl - 1.0) / (4.0 - 1.0);
            want = (1 - sm) * f / 8.0 + sm * f;
        }
        assert_true(fabs(freqs[i] - want) <= 1e-12 * want);
    }
    assert_true(freqs[0] == 1.0);
    assert_true(fabs(freqs[63] - pow(500000.0, -126.0 / 128.0) / 8.0) < 1e-15);
}

static void check_attention(cllm_dtype kv) {
    uint64_t rng = 21 + kv;
    enum { HD = 24, NPOS = 19, STRIDE = 48 };
    float q[HD], kf[NPOS * STRIDE], vf[NPOS * STRIDE], out[HD], scores[NPOS];
    uint16_t kh[NPOS * STRIDE], vh[NPOS * STRIDE];
    fill_normal(q, HD, &rng, 1.0);
    fill_normal(kf, NPOS * STRIDE, &rng, 1.0);
    fill_normal(vf, NPOS * STRIDE, &rng, 1.0);
    cllm_k_store_kv(kh, kf, NPOS * STRIDE, CLLM_DTYPE_F16);
    cllm_k_store_kv(vh, vf, NPOS * STRIDE, CLLM_DTYPE_F16);
    if (kv == CLLM_DTYPE_F16)
        for (int i = 0; i < NPOS * STRIDE; i++) {
            kf[i] = cllm_f16_to_f32(kh[i]);
            vf[i] = cllm_f16_to_f32(vh[i]);
        }
    const size_t off = 24;  // the second head of each position
    const void *k = kv == CLLM_DTYPE_F16 ? (const void *)(kh + off) : (const void *)(kf + off);
    const void *v = kv == CLLM_DTYPE_F16 ? (const void *)(vh + off) : (const void *)(vf + off);
    cllm_k_attention_head(out, q, k, v, kv, NPOS, HD, STRIDE, scores);
    double s[NPOS], mx = -1e300, sum = 0;
    for (int j = 0; j < NPOS; j++) {
        s[j] = 0;
        for (int i = 0; i < HD; i++) s[j] += (double)q[i] * kf[j * STRIDE + off + i];
        s[j] /= sqrt((double)HD);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = 0; j < NPOS; j++) sum += (s[j] = exp(s[j] - mx));
    for (int i = 0; i < HD; i++) {
        double ref = 0;
        for (int j = 0; j < NPOS; j++) ref += s[j] / sum * vf[j * STRIDE + off + i];
        assert_true(fabs(out[i] - ref) < 2e-6);
    }
}

static void test_attention(void **state) {
    (void)state;
    check_attention(CLLM_DTYPE_F32);
    check_attention(CLLM_DTYPE_F16);
}

static void test_swiglu_softmax(void **state) {
    (void)state;
    float g[5] = {-3, -0.5f, 0, 0.5f, 3}, u[5] = {1, 2, 3, 4, 5};
    float g0[5];
    memcpy(g0, g, sizeof g);
    cllm_k_swiglu(g, u, 5);
    for (int i = 0; i < 5; i++)
        assert_true(fabs(g[i] - g0[i] / (1 + exp(-(double)g0[i])) * u[i]) < 1e-6);
    float x[4] = {1000, 1001, 999, -1e30f};
    cllm_k_softmax(x, 4);
    double e = exp(1.0), tot = 1 + e + 1 / e;
    assert_true(fabs(x[1] - e / tot) < 1e-6 && fabs(x[0] - 1 / tot) < 1e-6 && x[3] == 0);
}

// ---- stories260K built in memory -------------------------------------------------------------

typedef struct mem_tensor {
    char name[96];
    uint32_t ndim;
    uint64_t shape[2];
    cllm_coded coded;
} mem_tensor;

typedef struct mem_model {
    cllm_model_config cfg;
    mem_tensor *t;
    size_t n;
} mem_model;

static cllm_status mem_lookup(void *user, const char *name, cllm_weight_src *out) {
    mem_model *m = user;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->t[i].name, name)) continue;
        memset(out, 0, sizeof *out);
        out->ndim = m->t[i].ndim;
        out->shape[0] = m->t[i].shape[0];
        out->shape[1] = m->t[i].shape[1];
        out->payload = m->t[i].coded.payload;
        out->payload_size = m->t[i].coded.payload_size;
        return cllm_desc_from_payload(&m->t[i].coded.info, out->payload, out->payload_size,
                                      &out->desc);
    }
    return CLLM_ERR_FORMAT;
}

// Adds one f32 tensor: 2-D tensors with `codec` (int8 with group `group`), 1-D ones raw (as
// convert does).
static void mem_add(mem_model *m, const char *name, uint64_t rows, uint64_t cols, const float *src,
                    cllm_codec codec, uint32_t group) {
    mem_tensor *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = rows ? 2 : 1;
    t->shape[0] = rows ? rows : cols;
    t->shape[1] = rows ? cols : 0;
    cllm_encode_params p = {0};
    p.codec = rows ? codec : CLLM_CODEC_RAW;
    p.group_size = group;
    p.n_threads = 1;
    p.block_symbols = 2048;  // several blocks per tensor, so block-parallel decoding is exercised
    assert_int_equal(cllm_encode_tensor(src, CLLM_DTYPE_F32, rows ? rows : 1, cols, &p, &t->coded),
                     CLLM_OK);
}

// Reads stories260K.bin (llama2.c layout, see ../shared/models/README.md) into a mem_model.
static void load_stories(mem_model *m, cllm_codec codec, uint32_t group) {
    uint8_t *data;
    size_t size;
    assert_int_equal(cllm_read_file(cllm_test_shared_path("models/stories260K.bin"), 1 << 24, &data,
                                    &size),
                     CLLM_OK);
    int32_t h[7];
    memcpy(h, data, sizeof h);
    const uint64_t D = (uint64_t)h[0], H = (uint64_t)h[1], L = (uint64_t)h[2], NH = (uint64_t)h[3];
    const uint64_t KV = (uint64_t)h[4] * (D / NH), V = (uint64_t)abs(h[5]), S = (uint64_t)h[6];
    memset(m, 0, sizeof *m);
    m->cfg = (cllm_model_config){.arch = CLLM_ARCH_LLAMA, .dim = (uint32_t)D,
                                 .hidden_dim = (uint32_t)H, .n_layers = (uint32_t)L,
                                 .n_heads = (uint32_t)NH, .n_kv_heads = (uint32_t)h[4],
                                 .head_dim = (uint32_t)(D / NH), .vocab_size = (uint32_t)V,
                                 .context_len = (uint32_t)S, .tied_embeddings = h[5] > 0,
                                 .rope_theta = 10000.0f, .norm_eps = 1e-5f, .bos_id = 1,
                                 .eos_id = 2};
    m->t = calloc(3 + 9 * L, sizeof *m->t);
    const float *f = (const float *)(data + sizeof h);
    const float *emb = f, *rms_att = emb + V * D, *wq = rms_att + L * D, *wk = wq + L * D * D;
    const float *wv = wk + L * KV * D, *wo = wv + L * KV * D, *rms_ffn = wo + L * D * D;
    const float *w1 = rms_ffn + L * D, *w2 = w1 + L * H * D, *w3 = w2 + L * D * H;
    const float *rms_final = w3 + L * H * D;
    mem_add(m, "model.embed_tokens.weight", V, D, emb, codec, group);
    for (uint64_t l = 0; l < L; l++) {
        char n[96];
#define ADD(suffix, rows, cols, base)                                                              \
    snprintf(n, sizeof n, "model.layers.%llu.%s", (unsigned long long)l, suffix);                  \
    mem_add(m, n, rows, cols, base + l * ((rows) ? (rows) : 1) * (cols), codec, group)
        ADD("input_layernorm.weight", 0, D, rms_att);
        ADD("self_attn.q_proj.weight", D, D, wq);
        ADD("self_attn.k_proj.weight", KV, D, wk);
        ADD("self_attn.v_proj.weight", KV, D, wv);
        ADD("self_attn.o_proj.weight", D, D, wo);
        ADD("post_attention_layernorm.weight", 0, D, rms_ffn);
        ADD("mlp.gate_proj.weight", H, D, w1);
        ADD("mlp.down_proj.weight", D, H, w2);
        ADD("mlp.up_proj.weight", H, D, w3);
#undef ADD
    }
    mem_add(m, "model.norm.weight", 0, D, rms_final, codec, group);
    free(data);
}

static void free_mem_model(mem_model *m) {
    for (size_t i = 0; i < m->n; i++) cllm_coded_free(&m->t[i].coded);
    free(m->t);
}

static cllm_engine *open_mem(mem_model *m, cllm_weights_mode mode, cllm_dtype kv) {
    cllm_weights *w;
    cllm_status st = cllm_weights_bind_lookup(&m->cfg, mem_lookup, m, &w);
    if (st != CLLM_OK) fail_msg("bind: %s", cllm_last_error());
    cllm_engine_options opt = {0};
    opt.weights = mode;
    opt.kv_dtype = kv;
    opt.n_threads = 2;
    cllm_engine *e;
    st = cllm_engine_open_weights(w, &opt, &e);
    if (st != CLLM_OK) fail_msg("open: %s", cllm_last_error());
    return e;
}

// The 256 reference ids and their (256, 512) float64-computed logits.
static int32_t ref_ids[256];
static float *ref_logits;

static void load_reference(void) {
    if (ref_logits) return;
    FILE *f = fopen(cllm_test_shared_path("models/stories260K.greedy_bos.txt"), "r");
    assert_non_null(f);
    for (int i = 0; i < 256; i++) assert_int_equal(fscanf(f, "%d", &ref_ids[i]), 1);
    fclose(f);
    uint8_t *d;
    size_t n;
    const char *path = cllm_test_shared_path("models/stories260K.greedy_bos.logits.f32");
    assert_int_equal(cllm_read_file(path, 1 << 20, &d, &n), CLLM_OK);
    assert_int_equal(n, 256 * 512 * 4);
    ref_logits = (float *)d;
}

// Greedy generation from BOS, one token per call; returns the ids in out[256].
static void greedy(cllm_engine *e, int32_t out[256]) {
    float logits[512];
    out[0] = 1;
    cllm_engine_reset(e);
    for (size_t i = 0; i + 1 < 256; i++) {
        assert_int_equal(cllm_engine_forward(e, &out[i], 1, i, logits, 512, 0), CLLM_OK);
        int32_t best = 0;
        for (int v = 1; v < 512; v++)
            if (logits[v] > logits[best]) best = v;
        out[i + 1] = best;
    }
}

// Teacher-forced logits (256, 512) of the reference sequence in one call.
static float *teacher_logits(cllm_engine *e) {
    float *l = malloc(256 * 512 * sizeof *l);
    cllm_engine_reset(e);
    assert_int_equal(cllm_engine_forward(e, ref_ids, 256, 0, l, 256 * 512, 1), CLLM_OK);
    return l;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_stories_raw_lossless(void **state) {
    (void)state;
    load_reference();
    mem_model raw, lossless;
    load_stories(&raw, CLLM_CODEC_RAW, 0);
    load_stories(&lossless, CLLM_CODEC_LOSSLESS, 0);
    cllm_engine *er = open_mem(&raw, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
    cllm_engine *el = open_mem(&lossless, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
    cllm_engine *elr = open_mem(&lossless, CLLM_WEIGHTS_RESIDENT, CLLM_DTYPE_F32);
    int32_t ids[256];
    greedy(er, ids);
    assert_memory_equal(ids, ref_ids, sizeof ids);
    greedy(el, ids);
    assert_memory_equal(ids, ref_ids, sizeof ids);
    float *lr = teacher_logits(er), *ll = teacher_logits(el), *llr = teacher_logits(elr);
    double d = max_abs_diff(lr, ref_logits, 256 * 512);
    printf("stories260K raw: max |logit - float64 reference| = %.3g\n", d);
    assert_true(d < 5e-4);
    assert_memory_equal(lr, ll, 256 * 512 * sizeof *lr);   // lossless == raw, bit for bit
    assert_memory_equal(ll, llr, 256 * 512 * sizeof *lr);  // stream == resident
    // One token at a time gives the same bits as one call (chunking does not change arithmetic).
    float one[512];
    cllm_engine_reset(el);
    for (size_t i = 0; i < 256; i++) {
        assert_int_equal(cllm_engine_forward(el, &ref_ids[i], 1, i, one, 512, 0), CLLM_OK);
        assert_memory_equal(one, ll + i * 512, sizeof one);
    }
    free(lr);
    free(ll);
    free(llr);
    cllm_engine_free(er);
    cllm_engine_free(el);
    cllm_engine_free(elr);
    free_mem_model(&raw);
    free_mem_model(&lossless);
}

static void report_agreement(const char *what, const float *a, const float *b) {
    size_t agree = 0;
    double kl = 0;
    for (size_t t = 0; t < 256; t++) {
        const float *x = a + t * 512, *y = b + t * 512;
        size_t ax = 0, ay = 0;
        double mx = -1e300, my = -1e300, sx = 0, sy = 0;
        for (size_t v = 0; v < 512; v++) {
            if (x[v] > x[ax]) ax = v;
            if (y[v] > y[ay]) ay = v;
            mx = fmax(mx, x[v]);
            my = fmax(my, y[v]);
        }
        for (size_t v = 0; v < 512; v++) {
            sx += exp(x[v] - mx);
            sy += exp(y[v] - my);
        }
        for (size_t v = 0; v < 512; v++) {
            double lp = x[v] - mx - log(sx), lq = y[v] - my - log(sy);
            kl += exp(lp) * (lp - lq);
        }
        agree += ax == ay;
    }
    printf("%s vs raw on the greedy sequence: top-1 agreement %.1f%%, mean KL %.4f\n", what,
           100.0 * agree / 256, kl / 256);
    assert_true(agree > 128);
}

static void test_stories_int8_and_f16_kv(void **state) {
    (void)state;
    load_reference();
    mem_model raw, q8, q8g;
    load_stories(&raw, CLLM_CODEC_RAW, 0);
    load_stories(&q8, CLLM_CODEC_INT8, 0);
    load_stories(&q8g, CLLM_CODEC_INT8, 16);
    cllm_engine *er = open_mem(&raw, CLLM_WEIGHTS_RESIDENT, CLLM_DTYPE_F32);
    cllm_engine *ekv = open_mem(&raw, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F16);
    cllm_engine *eq = open_mem(&q8, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
    cllm_engine *eqr = open_mem(&q8, CLLM_WEIGHTS_RESIDENT, CLLM_DTYPE_F32);
    cllm_engine *eg = open_mem(&q8g, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
    float *lr = teacher_logits(er), *lkv = teacher_logits(ekv), *lq = teacher_logits(eq);
    float *lqr = teacher_logits(eqr), *lg = teacher_logits(eg);
    double dkv = max_abs_diff(lkv, lr, 256 * 512);
    printf("f16 KV cache: max |logit diff| vs f32 KV = %.3g\n", dkv);
    assert_true(dkv < 0.2);
    assert_memory_equal(lq, lqr, 256 * 512 * sizeof *lq);  // int8: stream == resident
    report_agreement("int8 per-channel", lr, lq);
    report_agreement("int8 group 16", lr, lg);
    free(lr);
    free(lkv);
    free(lq);
    free(lqr);
    free(lg);
    cllm_engine_free(er);
    cllm_engine_free(ekv);
    cllm_engine_free(eq);
    cllm_engine_free(eqr);
    cllm_engine_free(eg);
    free_mem_model(&raw);
    free_mem_model(&q8);
    free_mem_model(&q8g);
}

// ---- the op table and the provider contract ---------------------------------------------------

// A stream provider wrapped to check the engine's side of the contract: one decode group held at
// a time, a layer's groups in order, layers in order within a chunk, every acquire released, no
// rows acquired while a group is held.
typedef struct checked_prov {
    const cllm_provider_ops *inner;
    void *st;
    int64_t layer;     // held layer, -1 none
    int group;         // held group
    int64_t last;      // layer * CLLM_LAYER_N_GROUPS + group of the last acquire (-1: none yet)
    int rows;          // a global range is acquired
    uint64_t acquires, releases;
    uint32_t ann[256]; // embedding rows announced by prepare_rows, then acquired in this order
    size_t n_ann, next_ann;
    uint64_t prepares, embed_rows;  // prepare_rows calls; single embedding rows acquired
} checked_prov;

static const cllm_provider_ops *inner_stream(void) {
    return cllm_backend_cpu()->provider(CLLM_WEIGHTS_STREAM);
}
static cllm_status cp_create(void *be, const cllm_weights *w, void **prov) {
    checked_prov *p = calloc(1, sizeof *p);
    p->inner = inner_stream();
    p->layer = p->last = -1;
    *prov = p;
    return p->inner->create(be, w, &p->st);
}
static void cp_free(void *prov) {
    checked_prov *p = prov;
    assert_int_equal(p->acquires, p->releases);
    // Rows fetched one at a time were announced first (all of them, in order).
    if (p->embed_rows) assert_true(p->prepares > 0);
    assert_int_equal(p->next_ann, p->n_ann);
    p->inner->free(p->st);
    free(p);
}
static cllm_status cp_group(void *prov, uint32_t l, int g, cllm_layer_view *out) {
    checked_prov *p = prov;
    assert_int_equal(p->layer, -1);
    assert_false(p->rows);
    assert_true(g >= 0 && g < CLLM_LAYER_N_GROUPS);
    const int64_t at = (int64_t)l * CLLM_LAYER_N_GROUPS + g;
    assert_true(at == p->last + 1 || (l == 0 && g == 0));  // in order; a new chunk restarts
    p->last = at;
    p->layer = l;
    p->group = g;
    p->acquires++;
    memset(out, 0xa5, sizeof *out);  // the engine may read only what the provider sets
    return p->inner->acquire_group(p->st, l, g, out);
}
static void cp_release_group(void *prov, uint32_t l, int g) {
    checked_prov *p = prov;
    assert_int_equal(p->layer, (int64_t)l);
    assert_int_equal(p->group, g);
    p->layer = -1;
    p->releases++;
    p->inner->release_group(p->st, l, g);
}
static uint64_t cp_max_rows(const void *prov, cllm_global_tensor g) {
    const checked_prov *p = prov;
    return p->inner->max_rows(p->st, g);
}
static cllm_status cp_rows(void *prov, cllm_global_tensor g, uint64_t r0, uint64_t r1,
                           cllm_wview *out) {
    checked_prov *p = prov;
    assert_int_equal(p->layer, -1);
    assert_false(p->rows);
    const uint64_t max = p->inner->max_rows(p->st, g);
    assert_true(r1 > r0 && (r1 - r0 == 1 || (r0 % max == 0 && r1 - r0 <= max)));
    p->rows = 1;
    p->acquires++;
    if (g == CLLM_GLOBAL_EMBED && r1 - r0 == 1) {  // one row at a time: announced first
        p->embed_rows++;
        assert_true(p->next_ann < p->n_ann);
        assert_int_equal(r0, p->ann[p->next_ann++]);
    }
    return p->inner->acquire_rows(p->st, g, r0, r1, out);
}
static void cp_release_rows(void *prov, cllm_global_tensor g) {
    checked_prov *p = prov;
    assert_true(p->rows);
    p->rows = 0;
    p->releases++;
    p->inner->release_rows(p->st, g);
}
static void cp_stats(const void *prov, cllm_engine_stats *out) {
    const checked_prov *p = prov;
    p->inner->stats(p->st, out);
}
// The rows of a step's tokens, announced before they are acquired one at a time; the previous
// step's announcement is used up.
static cllm_status cp_prepare_rows(void *prov, cllm_global_tensor g, const uint32_t *rows,
                                   size_t n) {
    checked_prov *p = prov;
    assert_int_equal(g, CLLM_GLOBAL_EMBED);
    assert_int_equal(p->next_ann, p->n_ann);
    assert_true(n >= 1 && n <= sizeof p->ann / sizeof p->ann[0]);
    memcpy(p->ann, rows, n * sizeof *rows);
    p->n_ann = n, p->next_ann = 0;
    p->prepares++;
    return CLLM_OK;  // the inner provider has nothing to ready
}
static const cllm_provider_ops checked_ops = {
    "checked", cp_create, cp_free, cp_group, cp_release_group, cp_max_rows, cp_rows,
    cp_release_rows, cp_stats, cp_prepare_rows,
};
static const cllm_provider_ops *checked_provider(cllm_weights_mode mode) {
    return mode == CLLM_WEIGHTS_STREAM ? &checked_ops : NULL;
}

static cllm_engine *open_mem_ops(mem_model *m, const cllm_backend_ops *ops) {
    cllm_weights *w;
    assert_int_equal(cllm_weights_bind_lookup(&m->cfg, mem_lookup, m, &w), CLLM_OK);
    cllm_engine_options opt = {0};
    opt.weights = CLLM_WEIGHTS_STREAM;
    opt.n_threads = 2;
    cllm_engine *e;
    cllm_status st = cllm_engine_open_ops(w, &opt, ops, &e);
    if (st != CLLM_OK) fail_msg("open: %s", cllm_last_error());
    return e;
}

// The engine's forward pass over (a) the CPU table without its fused gate/up/SwiGLU (the plain
// fallback) and (b) a provider checking acquire/release gives the same bits as the plain CPU
// engine; a weights mode the backend has no provider for is refused.
static void test_ops_fallback_and_provider_contract(void **state) {
    (void)state;
    load_reference();
    const cllm_codec codecs[2] = {CLLM_CODEC_LOSSLESS, CLLM_CODEC_INT8};
    for (int c = 0; c < 2; c++) {
        mem_model m;
        load_stories(&m, codecs[c], 0);
        cllm_backend_ops plain = *cllm_backend_cpu(), checked = *cllm_backend_cpu();
        assert_non_null(plain.gate_up_swiglu);
        plain.gate_up_swiglu = NULL;
        checked.provider = checked_provider;
        cllm_engine *e = open_mem(&m, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
        cllm_engine *ep = open_mem_ops(&m, &plain), *ec = open_mem_ops(&m, &checked);
        float *l = teacher_logits(e), *lp = teacher_logits(ep), *lc = teacher_logits(ec);
        assert_memory_equal(l, lp, 256 * 512 * sizeof *l);
        assert_memory_equal(l, lc, 256 * 512 * sizeof *l);
        int32_t ids[256];
        greedy(ec, ids);  // one token per call through the checked provider
        if (codecs[c] == CLLM_CODEC_LOSSLESS) assert_memory_equal(ids, ref_ids, sizeof ids);
        free(l);
        free(lp);
        free(lc);
        cllm_engine_free(e);
        cllm_engine_free(ep);
        cllm_engine_free(ec);
        if (c == 1) {
            cllm_weights *w;
            assert_int_equal(cllm_weights_bind_lookup(&m.cfg, mem_lookup, &m, &w), CLLM_OK);
            cllm_engine_options opt = {0};
            opt.weights = CLLM_WEIGHTS_RESIDENT;
            opt.n_threads = 1;
            assert_int_equal(cllm_engine_open_ops(w, &opt, &checked, &e), CLLM_ERR_UNSUPPORTED);
            assert_non_null(strstr(cllm_last_error(), "no weights mode 'resident' (it has: stream)"));
        }
        free_mem_model(&m);
    }
}

// Fused q/k/v and residual ops as a backend adds them, written with the reference matmul (each
// output the same dot product as the CPU's matmul, each residual the same float addition as its
// add): the engine must call them and give the plain CPU engine's bits.
static int n_multi_calls, n_madd_calls;

static cllm_status fused_multi(void *state, float *const *out, const cllm_wview *const *w, int n,
                               const float *x, size_t n_tok) {
    (void)state;
    n_multi_calls++;
    for (int i = 0; i < n; i++) cllm_k_matmul(out[i], w[i]->rows, w[i], x, w[i]->cols, n_tok, 1);
    return CLLM_OK;
}

static cllm_status fused_madd(void *state, float *out, const cllm_wview *w, const float *x,
                              size_t n_tok) {
    (void)state;
    n_madd_calls++;
    float *y = malloc(n_tok * w->rows * sizeof *y);
    if (!y) return CLLM_ERR_NOMEM;
    cllm_k_matmul(y, w->rows, w, x, w->cols, n_tok, 1);
    for (size_t i = 0; i < n_tok * w->rows; i++) out[i] += y[i];
    free(y);
    return CLLM_OK;
}

static void test_fused_matmul_ops(void **state) {
    (void)state;
    load_reference();
    mem_model m;
    load_stories(&m, CLLM_CODEC_INT8, 0);
    cllm_backend_ops fused = *cllm_backend_cpu();
    assert_null(fused.matmul_multi);
    assert_null(fused.matmul_add);
    fused.matmul_multi = fused_multi;
    fused.matmul_add = fused_madd;
    cllm_engine *e = open_mem(&m, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
    cllm_engine *ef = open_mem_ops(&m, &fused);
    n_multi_calls = n_madd_calls = 0;
    float *l = teacher_logits(e), *lf = teacher_logits(ef);
    assert_memory_equal(l, lf, 256 * 512 * sizeof *l);
    // 256 tokens in steps of CLLM_ENGINE_BATCH, every layer: q/k/v once, Wo and Wdown.
    const int steps = (256 + CLLM_ENGINE_BATCH - 1) / CLLM_ENGINE_BATCH;
    assert_int_equal(n_multi_calls, steps * (int)m.cfg.n_layers);
    assert_int_equal(n_madd_calls, 2 * steps * (int)m.cfg.n_layers);
    free(l);
    free(lf);
    cllm_engine_free(e);
    cllm_engine_free(ef);
    free_mem_model(&m);
}

static void test_bad_input(void **state) {
    (void)state;
    mem_model m;
    load_stories(&m, CLLM_CODEC_LOSSLESS, 0);
    cllm_engine *e = open_mem(&m, CLLM_WEIGHTS_STREAM, CLLM_DTYPE_F32);
    float logits[2 * 512];
    int32_t bad[2] = {1, 512};
    assert_int_equal(cllm_engine_forward(e, bad, 2, 0, logits, 1024, 1), CLLM_ERR_ARG);
    assert_non_null(strstr(cllm_last_error(), "outside the vocabulary"));
    int32_t neg = -3;
    assert_int_equal(cllm_engine_forward(e, &neg, 1, 0, logits, 512, 0), CLLM_ERR_ARG);
    int32_t ok[2] = {1, 5};
    assert_int_equal(cllm_engine_forward(e, ok, 2, 1, logits, 1024, 1), CLLM_ERR_ARG);  // hole
    assert_int_equal(cllm_engine_forward(e, ok, 2, 0, logits, 1023, 1), CLLM_ERR_ARG);  // cap
    assert_int_equal(cllm_engine_forward(e, ok, 2, 0, logits, 1024, 1), CLLM_OK);
    assert_int_equal(cllm_engine_n_past(e), 2);
    assert_int_equal(cllm_engine_forward(e, ok, 1, 512, logits, 512, 0), CLLM_ERR_ARG);
    cllm_engine_free(e);

    // Context capped by the options; generation beyond it is refused.
    cllm_weights *w;
    assert_int_equal(cllm_weights_bind_lookup(&m.cfg, mem_lookup, &m, &w), CLLM_OK);
    cllm_engine_options opt = {0};
    opt.context_len = 4;
    opt.n_threads = 1;
    assert_int_equal(cllm_engine_open_weights(w, &opt, &e), CLLM_OK);
    assert_int_equal(cllm_engine_context(e), 4);
    int32_t five[5] = {1, 2, 3, 4, 5};
    assert_int_equal(cllm_engine_forward(e, five, 5, 0, logits, 512, 0), CLLM_ERR_ARG);
    assert_non_null(strstr(cllm_last_error(), "context"));
    assert_int_equal(cllm_engine_forward(e, five, 4, 0, logits, 512, 0), CLLM_OK);
    cllm_engine_free(e);

    // Config and tensors disagree: the error names the tensor.
    mem_model bad_cfg = m;
    bad_cfg.cfg.hidden_dim = 128;
    assert_int_equal(cllm_weights_bind_lookup(&bad_cfg.cfg, mem_lookup, &bad_cfg, &w),
                     CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "model.layers.0.mlp.gate_proj.weight"));
    bad_cfg.cfg = m.cfg;
    bad_cfg.cfg.tied_embeddings = 0;  // lm_head.weight is then required
    assert_int_equal(cllm_weights_bind_lookup(&bad_cfg.cfg, mem_lookup, &bad_cfg, &w),
                     CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "lm_head.weight"));
    // A corrupted coded block is reported, not crashed on.
    mem_tensor *wq = &m.t[2];
    assert_string_equal(wq->name, "model.layers.0.self_attn.q_proj.weight");
    wq->coded.payload[CLLM_FREQ_BYTES + 8 * (wq->coded.info.n_blocks + 1) + 130] ^= 0x5a;
    if (cllm_weights_bind_lookup(&m.cfg, mem_lookup, &m, &w) == CLLM_OK) {
        assert_int_equal(cllm_engine_open_weights(w, &opt, &e), CLLM_OK);
        cllm_status st = cllm_engine_forward(e, five, 1, 0, logits, 512, 0);
        printf("corrupted block: %s (%s)\n", cllm_status_name(st), cllm_last_error());
        cllm_engine_free(e);
    }
    free_mem_model(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_f32),
        cmocka_unit_test(test_matmul_f16),
        cmocka_unit_test(test_matmul_bf16),
        cmocka_unit_test(test_matmul_i8),
        cmocka_unit_test(test_row_to_f32),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_llama3),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_swiglu_softmax),
        cmocka_unit_test(test_stories_raw_lossless),
        cmocka_unit_test(test_stories_int8_and_f16_kv),
        cmocka_unit_test(test_ops_fallback_and_provider_contract),
        cmocka_unit_test(test_fused_matmul_ops),
        cmocka_unit_test(test_bad_input),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(ref_logits);
    return rc;
}
