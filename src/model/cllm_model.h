// Internal API of the model stage: the safetensors reader/writer, the canonical Llama tensor
// layout, the source object the importers fill, and the synthesizer's internal entry.
//
// Depends on common only. A cllm_source owns its file descriptors; tensors are read with pread,
// never mapped or loaded whole, so importing a 70 GB checkpoint costs one tensor of memory.
//
// RoPE convention (the engine's, and what cllm_source_read returns)
// -----------------------------------------------------------------
// The engine follows llama2.c / the original Meta code: within each head, the adjacent pair of
// rows (2i, 2i+1) of q_proj / k_proj is rotated by the angle pos * theta^(-2i/head_dim).
// Hugging Face checkpoints were converted from Meta's with a row permutation of q_proj and k_proj
// so that HF's "rotate half" code pairs row i with row i + head_dim/2 instead:
//
//     HF row  h*hd + c*(hd/2) + i   ==   engine row  h*hd + 2*i + c      (c in {0,1}, i < hd/2)
//
// for every head h (n_heads heads for q, n_kv_heads for k). cllm_source_read undoes that
// permutation for HF models (a pure row permutation, bit-exact). llama2.c checkpoints are already
// in the engine's convention and are read as stored.
#ifndef CLLM_MODEL_H
#define CLLM_MODEL_H

#include "../common/cllm_common.h"
#include "cllm_layout.h"

#include <stdint.h>

// ---- safetensors -------------------------------------------------------------------------------
// File layout: u64 little-endian N, then N bytes of JSON (an object: "__metadata__" -> object of
// strings, optional; every other key is a tensor {"dtype": "BF16", "shape": [..], "data_offsets":
// [begin, end]}), then the data area. Offsets are relative to the data area (file offset 8 + N).

#define CLLM_ST_MAX_HEADER ((uint64_t)100 << 20) // JSON header bytes we accept
#define CLLM_ST_MAX_DIMS 8

typedef struct cllm_st_tensor {
    char *name;
    char dtype_name[8];   // as written in the file ("BF16", "I64", ...)
    int supported;        // 1: dtype is F32, F16 or BF16 and `dtype` is valid
    cllm_dtype dtype;
    uint32_t elem_size;   // bytes per element of dtype_name
    uint32_t ndim;
    uint64_t shape[CLLM_ST_MAX_DIMS];
    uint64_t n_elements;
    uint64_t begin, end;  // byte range in the data area; end - begin == n_elements * elem_size
} cllm_st_tensor;

typedef struct cllm_st_header {
    cllm_st_tensor *tensors; // sorted by begin; ranges do not overlap and lie in the data area
    size_t n_tensors;
    uint64_t data_offset;    // file offset of the data area (8 + N)
    uint64_t data_size;      // file_size - data_offset
} cllm_st_header;

// Parses and validates a safetensors header. `buf` holds the first `buf_size` bytes of a file of
// `file_size` bytes (buf_size <= file_size; the whole file, or at least 8 + N bytes). Tensors of
// a known but unsupported dtype (I64, F64, ...) are kept with supported = 0 so that a checkpoint
// carrying such extras still opens; an unknown dtype string is CLLM_ERR_UNSUPPORTED.
// @return CLLM_OK, FORMAT (bad length, bad JSON, bad field), CORRUPT (offsets/sizes inconsistent),
//         UNSUPPORTED, NOMEM. On failure *out is empty.
cllm_status cllm_st_parse(const uint8_t *buf, size_t buf_size, uint64_t file_size,
                          cllm_st_header *out);
// Reads and parses the header of the open file `fd` (`path` names it in errors).
cllm_status cllm_st_read_header(int fd, const char *path, cllm_st_header *out);
void cllm_st_header_free(cllm_st_header *h);
// Tensor named `name`, or NULL.
const cllm_st_tensor *cllm_st_find(const cllm_st_header *h, const char *name);

// A tensor to write: tensors are laid out back to back in the given order.
typedef struct cllm_st_spec {
    const char *name;
    cllm_dtype dtype;
    uint32_t ndim;        // 1..4
    uint64_t shape[4];
} cllm_st_spec;

// Builds a complete header: 8-byte length + JSON ({"__metadata__": {"format": "pt"}, tensors in
// order}) padded with spaces to a multiple of 8 bytes, as the reference writer does. *out is
// malloc'd (caller frees); *data_size receives the bytes of the data area that must follow.
cllm_status cllm_st_build_header(const cllm_st_spec *specs, size_t n, uint8_t **out,
                                 size_t *out_size, uint64_t *data_size);
// Writes a whole safetensors file from memory: data[i] holds tensor i's bytes. For tests and small
// files; the synthesizer streams instead.
cllm_status cllm_st_write_file(const char *path, const cllm_st_spec *specs, size_t n,
                               const void *const *data);

// ---- the canonical Llama layout ----------------------------------------------------------------

#define CLLM_TENSOR_NAME_CAP 96

typedef struct cllm_tensor_spec {
    char name[CLLM_TENSOR_NAME_CAP];
    cllm_role role;
    int layer;           // -1 for embed, norm, lm_head
    uint32_t ndim;       // 1 or 2
    uint64_t shape[2];
} cllm_tensor_spec;

// Number of tensors of a model with this config: 1 + 9 * n_layers + 1 (+1 untied).
size_t cllm_llama_n_tensors(const cllm_model_config *cfg);
// Name, role and shape of tensor i in canonical order: embed; per layer input_layernorm, q, k, v,
// o, post_attention_layernorm, gate, up, down; norm; lm_head. i < cllm_llama_n_tensors(cfg).
void cllm_llama_tensor_spec(const cllm_model_config *cfg, size_t i, cllm_tensor_spec *out);

// Undoes HF's rotate-half row permutation in place on a (n_heads*head_dim, cols) tensor of
// `elem_size`-byte elements (see the top of this header). `scratch` holds head_dim*cols*elem_size
// bytes.
void cllm_rope_unpermute_rows(uint8_t *rows, uint32_t n_heads, uint32_t head_dim, uint64_t cols,
                              uint32_t elem_size, uint8_t *scratch);

// ---- the source object -------------------------------------------------------------------------

typedef struct cllm_src_entry {
    char name[CLLM_TENSOR_NAME_CAP];
    cllm_dtype dtype;
    uint32_t ndim;
    uint64_t shape[4];
    uint32_t file;           // index into cllm_source.files
    uint64_t offset;         // absolute file offset of the first byte
    uint64_t size;           // bytes (n_elements * dtype size) that cllm_source_read returns
    uint32_t permute_heads;  // > 0: HF rotate-half rows, that many heads, to undo when read
    uint32_t ggml_type;      // > 0: a quantized GGUF tensor (CLLM_GGML_*, never F32/F16/BF16)
                             // of `stored_size` bytes at `offset`, dequantized to F32 when read
    uint64_t stored_size;
} cllm_src_entry;

typedef struct cllm_src_file {
    char *path;
    int fd;
    uint64_t size;
} cllm_src_file;

struct cllm_source {
    cllm_model_config cfg;
    cllm_src_entry *tensors;  // canonical order, cllm_llama_n_tensors(&cfg) entries
    size_t n_tensors;
    cllm_src_file *files;
    size_t n_files;
    cllm_tokenizer_kind tok_kind;
    uint8_t *tok;
    size_t tok_size;
};

// Opens `path` read-only, records it in s->files and returns its index and size.
cllm_status cllm_source_add_file(cllm_source *s, const char *path, uint32_t *index,
                                 uint64_t *size);
// Allocates s->tensors for s->cfg (the config must have passed cllm_config_validate) and
// fills names, roles' shapes; the importer then sets dtype, file, offset, size, permute_heads.
cllm_status cllm_source_alloc_tensors(cllm_source *s);
// Loads a tokenizer file: *.json -> HF_JSON, anything else -> LLAMA2C bytes.
cllm_status cllm_source_load_tokenizer(cllm_source *s, const char *path);

// Importers: fill `s` (zeroed by the caller; cllm_source_free cleans up on failure).
cllm_status cllm_import_llama2c(cllm_source *s, const char *path);
cllm_status cllm_import_hf(cllm_source *s, const char *dir);
// A GGUF file (architecture llama, mistral, or qwen2 without biases); its tokenizer becomes a
// tokenizer bundle (docs/FORMAT.md).
cllm_status cllm_import_gguf(cllm_source *s, const char *path);

// Reads `size` bytes at `offset` of `fd` completely (EINTR and short reads retried).
cllm_status cllm_pread_full(int fd, void *buf, size_t size, uint64_t offset, const char *path);
// Writes `size` bytes completely.
cllm_status cllm_write_full(int fd, const void *buf, size_t size, const char *path);

// ---- synthesizer -------------------------------------------------------------------------------

// Config of a preset name (before n_layers_override). CLLM_ERR_ARG for an unknown name.
cllm_status cllm_synth_preset_config(const char *name, cllm_model_config *cfg);
// Writes an HF directory for `cfg` with weights as cllm_synth does; a model whose tensors exceed
// `max_shard_bytes` in total is split into model-0000i-of-0000N.safetensors shards plus
// model.safetensors.index.json. opt->preset and opt->n_layers_override are ignored.
cllm_status cllm_synth_write(const char *out_dir, const cllm_model_config *cfg,
                             const cllm_synth_options *opt, uint64_t max_shard_bytes);

#endif
