// Model configuration: validation (public) and the 128-byte config section of a .cllm file.
#include "cllm_file_layout.h"
#include "cllm_format.h"

#include <math.h>
#include <string.h>

// Upper bounds well above every Llama-family model, low enough that products of them (dim *
// vocab, layers * context * kv_dim) stay far from 64-bit overflow and absurd values are refused
// before anyone sizes an allocation from them.
#define CFG_MAX_DIM 65536u
#define CFG_MAX_HIDDEN (1u << 20)
#define CFG_MAX_LAYERS 1024u
#define CFG_MAX_VOCAB (1u << 22)
#define CFG_MAX_CONTEXT (1u << 22)

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define CFG_CHECK(cond, ...) RETURN_IF(!(cond), CLLM_ERR_FORMAT, "model config: " __VA_ARGS__)

// An archive (packed safetensors) has no model: every field but arch is the bit pattern 0, so
// that no config byte carries a value nobody reads.
static cllm_status check_archive(const cllm_model_config *c) {
    cllm_model_config zero;
    memset(&zero, 0, sizeof zero);
    zero.arch = CLLM_ARCH_ARCHIVE;
    CFG_CHECK(memcmp(c, &zero, sizeof zero) == 0,
              "architecture %u (archive, not a model) but the other fields are not all 0",
              c->arch);
    return CLLM_OK;
}

static cllm_status check_dims(const cllm_model_config *c) {
    CFG_CHECK(c->arch == CLLM_ARCH_LLAMA, "arch = %u is unknown", c->arch);
    CFG_CHECK(c->dim >= 1 && c->dim <= CFG_MAX_DIM, "dim = %u outside 1..%u", c->dim, CFG_MAX_DIM);
    CFG_CHECK(c->hidden_dim >= 1 && c->hidden_dim <= CFG_MAX_HIDDEN,
              "hidden_dim = %u outside 1..%u", c->hidden_dim, CFG_MAX_HIDDEN);
    CFG_CHECK(c->n_layers >= 1 && c->n_layers <= CFG_MAX_LAYERS, "n_layers = %u outside 1..%u",
              c->n_layers, CFG_MAX_LAYERS);
    CFG_CHECK(c->n_heads >= 1 && c->n_heads <= c->dim, "n_heads = %u outside 1..dim (%u)",
              c->n_heads, c->dim);
    CFG_CHECK(c->n_kv_heads >= 1 && c->n_kv_heads <= c->n_heads,
              "n_kv_heads = %u outside 1..n_heads", c->n_kv_heads);
    CFG_CHECK(c->n_heads % c->n_kv_heads == 0, "n_kv_heads = %u does not divide n_heads = %u",
              c->n_kv_heads, c->n_heads);
    CFG_CHECK(c->head_dim >= 2 && c->head_dim % 2 == 0, "head_dim = %u is not even and >= 2",
              c->head_dim);
    // 64-bit product: head_dim and n_heads are each < 2^32.
    CFG_CHECK((uint64_t)c->head_dim * c->n_heads == c->dim,
              "head_dim = %u times n_heads = %u differs from dim = %u", c->head_dim, c->n_heads,
              c->dim);
    CFG_CHECK(c->vocab_size >= 1 && c->vocab_size <= CFG_MAX_VOCAB, "vocab_size = %u outside 1..%u",
              c->vocab_size, CFG_MAX_VOCAB);
    CFG_CHECK(c->context_len >= 1 && c->context_len <= CFG_MAX_CONTEXT,
              "context_len = %u outside 1..%u", c->context_len, CFG_MAX_CONTEXT);
    CFG_CHECK(c->tied_embeddings <= 1, "tied_embeddings = %u is not 0 or 1", c->tied_embeddings);
    return CLLM_OK;
}

// RoPE: theta always; the Llama 3 scaling parameters only with that scaling (zero otherwise, so
// that no config byte carries a value nobody reads).
static cllm_status check_rope(const cllm_model_config *c) {
    CFG_CHECK(isfinite(c->rope_theta) && c->rope_theta > 0.0f,
              "rope_theta = %g is not finite and > 0", (double)c->rope_theta);
    CFG_CHECK(isfinite(c->norm_eps) && c->norm_eps > 0.0f && c->norm_eps < 1.0f,
              "norm_eps = %g outside (0, 1)", (double)c->norm_eps);
    if (c->rope_scaling == CLLM_ROPE_SCALING_NONE) {
        // Bit patterns, so that -0.0 is refused too.
        CFG_CHECK(f32_bits(c->rope_factor) == 0 && f32_bits(c->rope_low_freq_factor) == 0 &&
                      f32_bits(c->rope_high_freq_factor) == 0 && c->rope_original_context == 0,
                  "rope_scaling none but rope_factor/low/high/original_context are not all 0");
        return CLLM_OK;
    }
    CFG_CHECK(c->rope_scaling == CLLM_ROPE_SCALING_LLAMA3, "unknown rope_scaling %u",
              c->rope_scaling);
    CFG_CHECK(isfinite(c->rope_factor) && c->rope_factor >= 1.0f && c->rope_factor <= 1024.0f,
              "rope_factor %g outside [1, 1024]", (double)c->rope_factor);
    CFG_CHECK(isfinite(c->rope_low_freq_factor) && c->rope_low_freq_factor > 0.0f,
              "rope_low_freq_factor %g is not finite and > 0", (double)c->rope_low_freq_factor);
    // The smooth interpolation divides by (high - low).
    CFG_CHECK(isfinite(c->rope_high_freq_factor) &&
                  c->rope_high_freq_factor > c->rope_low_freq_factor,
              "rope_high_freq_factor %g is not finite and > rope_low_freq_factor %g",
              (double)c->rope_high_freq_factor, (double)c->rope_low_freq_factor);
    CFG_CHECK(c->rope_original_context >= 1 && c->rope_original_context <= CFG_MAX_CONTEXT,
              "rope_original_context %u outside 1..%u", c->rope_original_context,
              CFG_MAX_CONTEXT);
    return CLLM_OK;
}

cllm_status cllm_config_validate(const cllm_model_config *cfg) {
    RETURN_IF(!cfg, CLLM_ERR_ARG, "model config: NULL");
    if (cfg->arch == CLLM_ARCH_ARCHIVE) return check_archive(cfg);
    TRY(check_dims(cfg));
    TRY(check_rope(cfg));
    CFG_CHECK(cfg->bos_id >= -1 && cfg->bos_id < (int64_t)cfg->vocab_size,
              "bos_id = %d outside [-1, vocab_size %u)", cfg->bos_id, cfg->vocab_size);
    CFG_CHECK(cfg->eos_id >= -1 && cfg->eos_id < (int64_t)cfg->vocab_size,
              "eos_id = %d outside [-1, vocab_size %u)", cfg->eos_id, cfg->vocab_size);
    return CLLM_OK;
}

// One list of the fields in declaration order keeps pack and unpack in step.
#define CFG_FIELDS(U, I, F)                                                                        \
    U(arch) U(dim) U(hidden_dim) U(n_layers) U(n_heads) U(n_kv_heads) U(head_dim) U(vocab_size)    \
    U(context_len) U(tied_embeddings) F(rope_theta) F(norm_eps) U(rope_scaling) F(rope_factor)     \
    F(rope_low_freq_factor) F(rope_high_freq_factor) U(rope_original_context) I(bos_id) I(eos_id)

void cllm_config_pack(const cllm_model_config *cfg, uint8_t out[128]) {
    memset(out, 0, CLLM_CONFIG_SIZE);
    uint8_t *p = out;
#define PACK_U(f) cllm_store_le32(p, cfg->f), p += 4;
#define PACK_I(f) cllm_store_le32(p, (uint32_t)cfg->f), p += 4;
#define PACK_F(f) cllm_store_le32(p, f32_bits(cfg->f)), p += 4;
    CFG_FIELDS(PACK_U, PACK_I, PACK_F)
#undef PACK_U
#undef PACK_I
#undef PACK_F
}

cllm_status cllm_config_unpack(const uint8_t in[128], cllm_model_config *cfg) {
    for (uint32_t i = CLLM_CONFIG_USED; i < CLLM_CONFIG_SIZE; i++)
        RETURN_IF(in[i] != 0, CLLM_ERR_FORMAT,
                  "model config: padding byte at offset %u of the config section is 0x%02x, not 0",
                  i, in[i]);
    memset(cfg, 0, sizeof *cfg);
    const uint8_t *p = in;
#define UNPACK_U(f) cfg->f = cllm_load_le32(p), p += 4;
#define UNPACK_I(f) cfg->f = (int32_t)cllm_load_le32(p), p += 4;
#define UNPACK_F(f) cfg->f = bits_f32(cllm_load_le32(p)), p += 4;
    CFG_FIELDS(UNPACK_U, UNPACK_I, UNPACK_F)
#undef UNPACK_U
#undef UNPACK_I
#undef UNPACK_F
    return cllm_config_validate(cfg);
}

_Static_assert(sizeof(cllm_model_config) == CLLM_CONFIG_USED,
               "cllm_model_config has 19 four-byte fields");
