// codecllm: run Llama-family models from entropy-compressed weights.
//
// The one public header. Everything the `codecllm` command does goes through these calls.
// Conventions: functions return a cllm_status (CLLM_OK == 0); on failure cllm_last_error() holds a
// message naming what went wrong ("model.cllm: tensor 'x': ..."). Objects come in open/free pairs;
// free functions accept NULL. The library never prints and never exits.
#ifndef CODECLLM_H
#define CODECLLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLLM_VERSION_STRING "0.1.0"

// ---------------------------------------------------------------------------------------------
// Status. Values are append-only.
typedef enum cllm_status {
    CLLM_OK = 0,
    CLLM_ERR_IO = 1,          // a file could not be opened, read or written
    CLLM_ERR_FORMAT = 2,      // input is not in the expected format (bad magic, bad JSON, ...)
    CLLM_ERR_CORRUPT = 3,     // input claims the format but fails a check (checksum, bounds)
    CLLM_ERR_UNSUPPORTED = 4, // well-formed but not handled (dtype, architecture, codec)
    CLLM_ERR_NOMEM = 5,       // an allocation failed
    CLLM_ERR_ARG = 6,         // the caller passed an invalid argument
    CLLM_ERR_DEVICE = 7,      // the GPU failed or is missing
    CLLM_ERR_MISMATCH = 8,    // a comparison (verify --against) found a difference
    CLLM_ERR_INTERNAL = 9,    // a broken invariant of the library itself
} cllm_status;

// Short name of a status ("corrupt data").
const char *cllm_status_name(cllm_status st);
// Message of the last failure on the calling thread ("" when none). Valid until the next call
// that fails on this thread.
const char *cllm_last_error(void);

// ---------------------------------------------------------------------------------------------
// Element types of source tensors. Values are stored in files: append-only.
typedef enum cllm_dtype {
    CLLM_DTYPE_F32 = 0,
    CLLM_DTYPE_F16 = 1,
    CLLM_DTYPE_BF16 = 2,
    CLLM_DTYPE_U8 = 3,    // plain bytes: raw codec only (tensors of packed safetensors archives
                          // that are not f32/f16/bf16, and the gaps between tensors)
    CLLM_DTYPE_COUNT_ = 4,
} cllm_dtype;

// Bytes per element (0 for an unknown dtype) and a name ("bf16", "u8").
size_t cllm_dtype_size(cllm_dtype dt);
const char *cllm_dtype_name(cllm_dtype dt);
// Parses "f32"/"F32"/"float32", "f16"/"fp16"/"float16", "bf16"/"bfloat16". Returns CLLM_ERR_ARG.
cllm_status cllm_dtype_parse(const char *s, cllm_dtype *out);

// Codecs. Values are stored in files: append-only.
typedef enum cllm_codec {
    CLLM_CODEC_RAW = 0,      // bytes as they are
    CLLM_CODEC_LOSSLESS = 1, // exponent field rANS-coded, sign+mantissa packed: bit-exact
    CLLM_CODEC_INT8 = 2,     // per-row (or per-group) symmetric int8, rANS-coded
    CLLM_CODEC_COUNT_ = 3,
} cllm_codec;

const char *cllm_codec_name(cllm_codec c);
cllm_status cllm_codec_parse(const char *s, cllm_codec *out);

// ---------------------------------------------------------------------------------------------
// Model configuration, as stored in a .cllm file. Architecture values are append-only.
typedef enum cllm_arch {
    CLLM_ARCH_LLAMA = 1, // Llama 1/2/3, Mistral (no sliding window), Qwen2 without biases
    CLLM_ARCH_ARCHIVE = 2, // not a model: a packed safetensors file (`codecllm pack`); every
                           // other config field is 0 (docs/FORMAT.md, "Packed safetensors")
} cllm_arch;

typedef enum cllm_rope_scaling {
    CLLM_ROPE_SCALING_NONE = 0,
    CLLM_ROPE_SCALING_LLAMA3 = 1, // factor, low/high frequency factors, original context
} cllm_rope_scaling;

typedef struct cllm_model_config {
    uint32_t arch;             // cllm_arch
    uint32_t dim;              // model width
    uint32_t hidden_dim;       // MLP width
    uint32_t n_layers;
    uint32_t n_heads;
    uint32_t n_kv_heads;       // divides n_heads
    uint32_t head_dim;         // dim / n_heads for every supported model
    uint32_t vocab_size;
    uint32_t context_len;      // maximum positions the model was trained for
    uint32_t tied_embeddings;  // 1: lm_head shares model.embed_tokens.weight
    float rope_theta;
    float norm_eps;
    uint32_t rope_scaling;     // cllm_rope_scaling
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    uint32_t rope_original_context;
    int32_t bos_id;            // -1 when unknown
    int32_t eos_id;            // -1 when unknown
} cllm_model_config;

// Checks every field for consistency (non-zero dims, heads divide dim, kv heads divide heads,
// finite positive eps and theta, ...). CLLM_ERR_FORMAT with a message naming the field.
cllm_status cllm_config_validate(const cllm_model_config *cfg);

// Tokenizer blob kinds stored in a container. Append-only.
typedef enum cllm_tokenizer_kind {
    CLLM_TOKENIZER_NONE = 0,
    CLLM_TOKENIZER_LLAMA2C = 1, // llama2.c tokenizer.bin bytes
    CLLM_TOKENIZER_HF_JSON = 2, // Hugging Face tokenizer.json bytes
    CLLM_TOKENIZER_BUNDLE = 3,  // codecllm tokenizer bundle: JSON with a tokenizer.json object,
                                // the chat template, add_bos and the source description
                                // (docs/FORMAT.md, "Tokenizer bundle")
    CLLM_TOKENIZER_SAFETENSORS_HEADER = 4, // not a tokenizer: the header of a packed safetensors
                                           // file (8-byte length + JSON), in archives only
} cllm_tokenizer_kind;

// ---------------------------------------------------------------------------------------------
// The .cllm container (read side). docs/FORMAT.md specifies the bytes.
typedef struct cllm_container cllm_container;

// One tensor as described by the container's table. Pointers stay valid while the container is
// open.
typedef struct cllm_tensor_info {
    const char *name;
    cllm_dtype dtype;       // dtype of the source tensor
    cllm_codec codec;
    uint32_t ndim;
    uint64_t shape[4];
    uint64_t n_elements;
    uint64_t rows, cols;    // 2-D view: cols = last dimension, rows = the rest
    uint64_t data_offset;   // file offset of the compressed payload (4096-aligned)
    uint64_t data_size;     // payload bytes
    uint64_t checksum;      // XXH3-64 of the payload
    uint32_t scale_bits;    // rANS table scale (coded codecs)
    uint32_t group_size;    // int8: weights per scale (cols when per-channel)
    uint32_t predictor;     // 0 none, 1 left neighbour
    uint32_t rows_per_block;
    uint64_t n_blocks;
    double symbol_entropy;  // order-0 entropy of the coded symbols, bits/symbol (as recorded)
} cllm_tensor_info;

// Opens and validates a .cllm file: header and table checksums, every count, offset, size, shape
// and enum. Payload checksums are not read here (see cllm_container_verify). The file is mapped;
// `*out` owns the mapping.
cllm_status cllm_container_open(const char *path, cllm_container **out);
void cllm_container_free(cllm_container *c);

const cllm_model_config *cllm_container_config(const cllm_container *c);
size_t cllm_container_n_tensors(const cllm_container *c);
// Fills *info for tensor i (0 <= i < n_tensors).
cllm_status cllm_container_tensor(const cllm_container *c, size_t i, cllm_tensor_info *info);
// Index of the tensor named `name`, or -1.
int64_t cllm_container_find(const cllm_container *c, const char *name);
// Compressed payload bytes of tensor i (inside the mapping).
const uint8_t *cllm_container_payload(const cllm_container *c, size_t i);
// Tokenizer blob (kind CLLM_TOKENIZER_NONE and size 0 when absent).
cllm_tokenizer_kind cllm_container_tokenizer(const cllm_container *c, const uint8_t **data,
                                              size_t *size);
uint64_t cllm_container_file_size(const cllm_container *c);
// One line describing where the weights came from, from the stored tokenizer bundle's "source"
// member (docs/FORMAT.md), e.g. for a GGUF source the tensor types and that quantized tensors are
// stored dequantized to f32 (so lossless is lossless with respect to those values). Writes a
// NUL-terminated line to buf (truncated to cap - 1 bytes); an empty line when the container says
// nothing about its source. @return CLLM_OK, ARG (NULL or cap 0), FORMAT (the bundle is not valid
// JSON or its "source" is malformed).
cllm_status cllm_container_source_note(const cllm_container *c, char *buf, size_t cap);

// Decodes tensor i completely. Lossless and raw: `out` receives the source tensor bytes
// (n_elements * dtype size). Int8: `out` receives n_elements int8 values and `scales` (may be NULL
// when not wanted) receives rows * ceil(cols / group_size) floats. Capacities are in bytes.
// Checks the payload checksum first when `check_sum` is non-zero.
cllm_status cllm_container_decode(const cllm_container *c, size_t i, void *out, size_t out_cap,
                                  float *scales, size_t scales_cap, int check_sum);

// What the GPU's fused mode (CLLM_WEIGHTS_FUSED) holds in device memory for tensor i: the bytes of
// its in-VRAM compute code (docs/FORMAT.md) and the weights its main planes do not hold alone
// (bf16: exception entries; int8: the values of flagged vectors), made by the compute code's
// C encoder (n_threads OpenMP threads; <= 1: one) from the tensor decoded here (checksum checked).
// @return CLLM_OK; UNSUPPORTED for a tensor with no compute code (source dtype other than bf16
//         unless int8-coded, or columns the fused kernels do not take: bf16 needs a multiple of
//         8, int8 of 64 with per-row scales or groups of a multiple of 64); CORRUPT/FORMAT when
//         the payload does not decode; NOMEM; ARG.
cllm_status cllm_container_ccode_size(const cllm_container *c, size_t i, int n_threads,
                                      uint64_t *bytes, uint64_t *n_exc);

// ---------------------------------------------------------------------------------------------
// Tensor codecs on memory buffers (what convert and the benchmarks use).

// Range of cllm_encode_params.scale_bits (the rANS probability scale, docs/FORMAT.md).
#define CLLM_SCALE_BITS_MIN 8
#define CLLM_SCALE_BITS_MAX 14

typedef struct cllm_encode_params {
    cllm_codec codec;
    uint32_t group_size;      // int8: 0 = one scale per row (per-channel)
    uint32_t predictor;       // 0 none, 1 left-neighbour differential coding
    uint32_t scale_bits;      // rANS scale 8..14; 0 = chosen per tensor (12, int8 up to 14)
    uint64_t block_symbols;   // 0 = default target symbols per block (rounded to whole rows)
    int n_threads;            // 0 = all cores
} cllm_encode_params;

// A coded tensor in memory: description + payload. Free with cllm_coded_free.
typedef struct cllm_coded {
    cllm_tensor_info info;    // name/data_offset/checksum unset; everything else filled
    uint8_t *payload;
    size_t payload_size;
} cllm_coded;

// Encodes a (rows, cols) tensor of `dtype` held in `src` (rows*cols elements).
cllm_status cllm_encode_tensor(const void *src, cllm_dtype dtype, uint64_t rows, uint64_t cols,
                               const cllm_encode_params *params, cllm_coded *out);
void cllm_coded_free(cllm_coded *c);
// Decodes a coded tensor (semantics of `out`/`scales` as in cllm_container_decode).
cllm_status cllm_decode_tensor(const cllm_tensor_info *info, const uint8_t *payload,
                               size_t payload_size, void *out, size_t out_cap, float *scales,
                               size_t scales_cap, int n_threads);

// Order-0 entropy in bits per symbol of a byte histogram of 256 counts.
double cllm_entropy_bits(const uint64_t counts[256]);

// Per-output-channel (or per-group) symmetric int8 quantisation of a (rows, cols) tensor:
// scale = max|w| / 127 over each group, q = round-half-away-from-zero(w / scale) clamped to
// [-127, 127]; an all-zero group has scale 0 and q = 0. Non-finite weights: CLLM_ERR_UNSUPPORTED.
cllm_status cllm_quantize_int8(const void *src, cllm_dtype dtype, uint64_t rows, uint64_t cols,
                               uint32_t group_size, int8_t *q, float *scales);

// ---------------------------------------------------------------------------------------------
// Model sources (importers): a llama2.c checkpoint or a Hugging Face directory.
typedef struct cllm_source cllm_source;

typedef struct cllm_source_tensor {
    const char *name;       // canonical name (Hugging Face style, e.g. model.layers.0.mlp.up_proj.weight)
    cllm_dtype dtype;
    uint32_t ndim;
    uint64_t shape[4];
} cllm_source_tensor;

// Opens IN: a llama2.c .bin file, a GGUF file (recognised by its "GGUF" magic; quantized tensors
// are read dequantized to f32, the tokenizer is rebuilt from its metadata as a tokenizer bundle),
// or a directory with config.json and model.safetensors (or model.safetensors.index.json).
// `tokenizer_path` (may be NULL) overrides the tokenizer: a tokenizer.bin or tokenizer.json; an
// HF directory's tokenizer.json is picked up by itself (as a bundle with tokenizer_config.json).
cllm_status cllm_source_open(const char *path, const char *tokenizer_path, cllm_source **out);
void cllm_source_free(cllm_source *s);
const cllm_model_config *cllm_source_config(const cllm_source *s);
size_t cllm_source_n_tensors(const cllm_source *s);
cllm_status cllm_source_tensor_info(const cllm_source *s, size_t i, cllm_source_tensor *out);
// Reads tensor i in its source dtype, in the engine's layout (q/k rows of HF models permuted to
// the interleaved RoPE convention, see docs/FORMAT.md). `cap` in bytes.
cllm_status cllm_source_read(cllm_source *s, size_t i, void *buf, size_t cap);
// Tokenizer bytes found with the model (kind NONE when none).
cllm_tokenizer_kind cllm_source_tokenizer(const cllm_source *s, const uint8_t **data, size_t *size);

// ---------------------------------------------------------------------------------------------
// Long-running commands report progress through this callback (may be NULL).
typedef void (*cllm_progress_fn)(void *user, size_t done, size_t total, uint64_t bytes_done,
                                 uint64_t bytes_total, const char *what);

// Writers announce each temporary file: `created` 1 as they create `path` (called by the creating
// thread with SIGINT, SIGTERM and SIGHUP blocked from before the file exists until the call
// returns: a handler of those signals in that thread sees every temporary), 0 once it is gone
// (renamed into place or removed), so that a program can remove it when a signal ends it.
typedef void (*cllm_temp_fn)(void *user, const char *path, int created);

// Output-file safety for programs that write their own outputs (the library's writers use the
// same two calls).
//
// Creates a new empty file "<path>.tmp-XXXXXX" beside `path` (same directory, so renaming it onto
// `path` is atomic), exclusively: an existing name, symlinks included, is never opened or
// followed. Mode 0644. The caller frees *tmp_path and closes *fd. `announce` (may be NULL) is told
// of the new file (created = 1) before this returns, with SIGINT, SIGTERM and SIGHUP blocked in
// the calling thread from before the file exists until it has been told: a handler that removes
// announced temporaries never misses this one.
// @return CLLM_OK, IO, NOMEM, ARG.
cllm_status cllm_temp_create(const char *path, cllm_temp_fn announce, void *user, char **tmp_path,
                             int *fd);

// Checks that `path` may be replaced by renaming a finished file onto it: it is absent or an
// existing regular file (symlinks followed: a link to a device is refused, as is a directory,
// FIFO or device node). @return CLLM_OK, IO (naming what `path` is).
cllm_status cllm_output_check(const char *path);

typedef struct cllm_convert_options {
    cllm_encode_params encode;
    const char *tokenizer_path;   // optional tokenizer override
    cllm_progress_fn progress;
    void *progress_user;
    cllm_temp_fn temp;            // may be NULL
    void *temp_user;
    int allow_nonfinite;          // 1: keep NaN/Inf weights (lossless and raw only); 0: error
} cllm_convert_options;

// Converts IN (see cllm_source_open) into OUT (.cllm). Streams tensor by tensor; writes a new
// OUT.tmp-XXXXXX (created exclusively) and renames it onto OUT, so an interrupted run never leaves
// a valid-looking OUT. An existing OUT is replaced when it is a regular file; refused when it is
// anything else (directory, device, FIFO) or the same file as an input (IO). A NaN or infinite
// weight is an error naming the tensor (FORMAT) unless allow_nonfinite, and always with int8.
cllm_status cllm_convert(const char *in_path, const char *out_path, const cllm_convert_options *opt);

// ---------------------------------------------------------------------------------------------
// Packed safetensors: lossless compression of any safetensors file (any tensor names, dtypes,
// metadata), restored byte for byte. The archive is a .cllm container with arch
// CLLM_ARCH_ARCHIVE; docs/FORMAT.md ("Packed safetensors") specifies it.

typedef struct cllm_pack_options {
    int n_threads;               // encoder / decoder threads; 0 = all cores
    int force;                   // replace an existing output file (never the input itself)
    cllm_progress_fn progress;   // may be NULL; called after each tensor
    void *progress_user;
    cllm_temp_fn temp;           // may be NULL: told of the output's temporary file
    void *temp_user;
} cllm_pack_options;

// Packs the safetensors file `in_path` into the archive `out_path`, streaming tensor by tensor
// (memory: about one tensor). F32/F16/BF16 tensors are coded lossless (raw when that does not
// pay), every other dtype and any bytes between tensors are stored raw. `opt` may be NULL.
// Refuses an existing `out_path` unless opt->force, and an output that is the input.
// @return CLLM_OK, IO, FORMAT / CORRUPT / UNSUPPORTED (the input is not a safetensors file this
//         build parses: the message says why), NOMEM, ARG (existing output, same file).
cllm_status cllm_pack_safetensors(const char *in_path, const char *out_path,
                                  const cllm_pack_options *opt);

// Restores the safetensors file packed in the archive `in_path` to `out_path`, byte for byte.
// Validates the archive first (header blob against the tensors), checks every payload checksum,
// decodes one tensor at a time. The output is written to a fresh temporary file in the target
// directory (created exclusively, never through a symlink), fsynced and renamed, so `out_path`
// never names a partial file; the temporary file is removed on failure. Refuses an existing
// `out_path` unless opt->force, and an output that is the input. `opt` may be NULL.
// @return CLLM_OK, IO, FORMAT (not an archive), CORRUPT, UNSUPPORTED, NOMEM, ARG.
cllm_status cllm_unpack(const char *in_path, const char *out_path, const cllm_pack_options *opt);

// 1 when the container is a packed safetensors archive (arch CLLM_ARCH_ARCHIVE), else 0.
int cllm_container_is_archive(const cllm_container *c);

// The safetensors view of an archive: the real tensor names from the stored header.
typedef struct cllm_archive cllm_archive;

#define CLLM_ARCHIVE_MAX_DIMS 8

typedef struct cllm_archive_summary {
    uint64_t file_size;     // bytes of the original safetensors file
    uint64_t header_size;   // 8 + JSON length (the stored header blob)
    size_t n_st_tensors;    // tensors in the safetensors header (empty ones included)
    size_t n_empty;         // tensors of 0 bytes (no container tensor)
    size_t n_gaps;          // runs of data-area bytes outside every tensor (stored raw)
} cllm_archive_summary;

// Container tensor i of an archive: the safetensors tensor it holds, or a gap.
typedef struct cllm_archive_segment {
    const char *name;       // tensor name as in the header (UTF-8), NULL for a gap
    const char *dtype;      // safetensors dtype ("BF16", "I64", ...), "" for a gap
    uint32_t ndim;          // safetensors shape (0 for a scalar)
    uint64_t shape[CLLM_ARCHIVE_MAX_DIMS];
    uint64_t begin, end;    // byte range in the original file's data area
} cllm_archive_segment;

// Parses the header blob of an archive and checks it against the container's tensors (count,
// order, names, dtypes, codecs, shapes, sizes). The container must outlive the archive.
// @return CLLM_OK, FORMAT (not an archive), CORRUPT (header and tensors disagree), NOMEM, ARG.
cllm_status cllm_archive_open(const cllm_container *c, cllm_archive **out);
void cllm_archive_free(cllm_archive *a);
void cllm_archive_summary_get(const cllm_archive *a, cllm_archive_summary *out);
// Segment of container tensor i (i < cllm_container_n_tensors). Pointers live as long as `a`.
cllm_status cllm_archive_segment_get(const cllm_archive *a, size_t i, cllm_archive_segment *out);

// Verification. Checks every checksum and every padding byte of the file; with `against` (a
// source path, may be NULL) decodes every tensor and compares: bit-exact for lossless and raw,
// exact re-quantisation for int8. `report` (may be NULL) receives one line per finding.
typedef void (*cllm_report_fn)(void *user, const char *line);
typedef struct cllm_verify_result {
    size_t n_tensors;
    size_t n_failed;
    size_t n_int8;          // int8 tensors compared against the source
    double max_abs_err;     // int8 against the float source: max |dequantised - source|
} cllm_verify_result;
cllm_status cllm_verify(const char *path, const char *against, int n_threads, cllm_report_fn report,
                        void *report_user, cllm_verify_result *result);

// ---------------------------------------------------------------------------------------------
// Synthetic models: writes a genuine Hugging Face directory (config.json, safetensors, sharded
// when large) with weights drawn to resemble trained weights. Streaming: memory stays at about
// one tensor.
typedef struct cllm_synth_options {
    const char *preset;     // "tiny", "small", "llama2-1b", "llama2-7b", "llama3-8b", ...
    cllm_dtype dtype;
    uint64_t seed;
    int n_layers_override;  // > 0: use this many layers instead of the preset's
    int n_threads;
    cllm_progress_fn progress;
    void *progress_user;
    cllm_temp_fn temp;      // may be NULL
    void *temp_user;
} cllm_synth_options;
cllm_status cllm_synth(const char *out_dir, const cllm_synth_options *opt);
// Preset names, NULL-terminated.
const char *const *cllm_synth_presets(void);

// ---------------------------------------------------------------------------------------------
// Tokenizers: llama2.c tokenizer.bin (SentencePiece-style scored BPE with byte fallback) and
// Hugging Face tokenizer.json (SentencePiece-style BPE as in Llama 2 / Mistral, and byte-level BPE
// with merges and a pre-tokenizer regex as in GPT-2 / Llama 3).
typedef struct cllm_tokenizer cllm_tokenizer;

// Builds a tokenizer from the bytes of a tokenizer.bin (CLLM_TOKENIZER_LLAMA2C), a tokenizer.json
// (CLLM_TOKENIZER_HF_JSON) or a tokenizer bundle (CLLM_TOKENIZER_BUNDLE; an unknown bundle version
// is CLLM_ERR_UNSUPPORTED). The bytes are copied; `vocab_hint` (0 = none) is the model's vocabulary
// size, used by tokenizer.bin which does not store its own count.
cllm_status cllm_tokenizer_load(cllm_tokenizer_kind kind, const uint8_t *data, size_t size,
                                size_t vocab_hint, cllm_tokenizer **out);
// Opens a tokenizer file: *.json (Hugging Face), *.cllm (the tokenizer stored in the container),
// anything else a llama2.c tokenizer.bin.
cllm_status cllm_tokenizer_open(const char *path, cllm_tokenizer **out);
void cllm_tokenizer_free(cllm_tokenizer *t);
size_t cllm_tokenizer_vocab_size(const cllm_tokenizer *t);
int32_t cllm_tokenizer_bos(const cllm_tokenizer *t);  // -1 when the vocabulary has none
int32_t cllm_tokenizer_eos(const cllm_tokenizer *t);  // -1 when the vocabulary has none
// 1 when a prompt should start with BOS (llama2.c and SentencePiece vocabularies; a bundle says so
// itself), else 0.
int cllm_tokenizer_add_bos(const cllm_tokenizer *t);
// The chat template stored with the tokenizer (a Jinja text as found in the source: GGUF metadata
// or tokenizer_config.json), or NULL when none. Owned by the tokenizer.
const char *cllm_tokenizer_chat_template(const cllm_tokenizer *t);

// Encodes `len` bytes of text (need not be NUL-terminated). With add_bos, BOS comes first.
// *n_tokens receives the count; when it exceeds `cap`, returns CLLM_ERR_ARG (nothing else is
// guaranteed about `tokens`) and the caller may retry with a buffer of *n_tokens.
cllm_status cllm_tokenizer_encode(const cllm_tokenizer *t, const char *text, size_t len,
                                  int add_bos, int32_t *tokens, size_t cap, size_t *n_tokens);
// Bytes of token `token` as it appears after `prev` (-1 at the start: SentencePiece vocabularies
// drop the leading space of the first piece after BOS). Writes up to `cap` bytes to buf, sets *len;
// CLLM_ERR_ARG for an id outside the vocabulary or a too-small buffer.
cllm_status cllm_tokenizer_decode_token(const cllm_tokenizer *t, int32_t prev, int32_t token,
                                        char *buf, size_t cap, size_t *len);

// ---------------------------------------------------------------------------------------------
// Chat templates. A model's template is a Jinja program; codecllm does not run Jinja: it
// recognises the template's family by its markers and renders that family's format itself.

typedef enum cllm_chat_format {
    CLLM_CHAT_UNKNOWN = 0,
    CLLM_CHAT_CHATML = 1,  // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen2, ...)
    CLLM_CHAT_LLAMA2 = 2,  // [INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s><s>
    CLLM_CHAT_LLAMA3 = 3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
    CLLM_CHAT_MISTRAL = 4, // [INST] user [/INST]answer</s>  (system text before the first user's)
    CLLM_CHAT_GEMMA = 5,   // <start_of_turn>user\ncontent<end_of_turn>\n  (assistant = "model")
    CLLM_CHAT_PHI3 = 6,    // <|user|>\ncontent<|end|>\n
    CLLM_CHAT_ZEPHYR = 7,  // <|user|>\ncontent</s>\n
} cllm_chat_format;

typedef struct cllm_chat_message {
    const char *role;      // "system", "user" or "assistant"
    const char *content;   // NUL-terminated UTF-8
} cllm_chat_message;

// The family of a Jinja chat template, CLLM_CHAT_UNKNOWN when none is recognised (or NULL).
cllm_chat_format cllm_chat_detect(const char *jinja);
// "chatml", "llama2", "llama3", "mistral", "gemma", "phi3", "zephyr"; NULL for UNKNOWN.
const char *cllm_chat_format_name(cllm_chat_format f);
// Parses a name above. @return CLLM_OK or ARG.
cllm_status cllm_chat_format_parse(const char *name, cllm_chat_format *out);
// The system prompt the template inserts when a conversation has none (SmolLM2's "You are a
// helpful AI assistant named SmolLM, ..."), as a malloc'd string, or NULL when it has none.
char *cllm_chat_default_system(const char *jinja, cllm_chat_format f);
// Renders messages[0..n) in format f, then the assistant's header when add_generation_prompt.
// A BOS token is not written: the caller adds it when the tokenizer asks for one. *out is
// malloc'd (NUL-terminated), *len its length. @return CLLM_OK, ARG (unknown format or role, a
// system message that is not first), NOMEM.
cllm_status cllm_chat_render(cllm_chat_format f, const cllm_chat_message *messages, size_t n,
                             int add_generation_prompt, char **out, size_t *len);
// The text that ends an assistant's turn in format f ("<|im_end|>", "<|eot_id|>", "</s>", ...).
const char *cllm_chat_end_of_turn(cllm_chat_format f);

// ---------------------------------------------------------------------------------------------
// ENGINE API: inference (declared by the engine module).

typedef enum cllm_backend_kind {
    CLLM_BACKEND_CPU = 0,
    CLLM_BACKEND_CUDA = 1,
    CLLM_BACKEND_AUTO = 2,     // CUDA when this build has it and a GPU is present, else CPU
} cllm_backend_kind;

// Where decoded weights live. Values are append-only.
typedef enum cllm_weights_mode {
    CLLM_WEIGHTS_STREAM = 0,   // compressed in host memory; each decode group of a layer (q/k/v,
                               // o, gate/up, down) decoded just before use into one reused
                               // scratch buffer (the default). GPU: only the compressed bytes
                               // cross PCIe, decoded on the GPU per use
    CLLM_WEIGHTS_RESIDENT = 1, // every tensor decoded once at load (GPU: into device memory)
    CLLM_WEIGHTS_DEVICE = 2,   // (GPU backends) compressed payloads resident in device memory,
                               // each matrix decoded on the GPU just before every use into a
                               // reused scratch ring: least VRAM for the weights, decode per token
    CLLM_WEIGHTS_RAW = 3,      // (GPU backends) every matrix decoded once at load and kept
                               // decoded in device memory (the fastest; the same as RESIDENT)
    CLLM_WEIGHTS_AUTO = 4,     // CPU: resident when the decoded weights take at most half of the
                               // available RAM, else stream. GPU: raw when the decoded weights
                               // take at most 85% of the free device memory, else the planner
                               // places each layer (raw, fused, device or stream: the fastest
                               // mix its time model finds) under 85% of the free memory
    CLLM_WEIGHTS_FUSED = 5,    // (GPU backends) every layer matrix, the lm_head and the
                               // embedding kept in VRAM in a compute code that the matvec
                               // kernels (and the embedding lookup) decode as they read it
                               // (lossless BF16 ~11.4 bits/weight, int8 ~6.5), made from the
                               // decoded weights at load; results bit-identical to raw mode.
                               // Shapes the fused kernels do not take stay decoded. With a VRAM
                               // budget: the planner's placements without raw (fused, device,
                               // stream)
} cllm_weights_mode;

const char *cllm_weights_mode_name(cllm_weights_mode m);
// "stream", "resident", "device", "raw", "auto", "fused". Returns CLLM_ERR_ARG for anything else.
cllm_status cllm_weights_mode_parse(const char *s, cllm_weights_mode *out);

// How this library was built, one line: version, CUDA on/off with the CUDA version and the GPU
// architectures compiled for ("codecllm 0.1.0, CUDA 13.0 (sm 90-real 80-virtual)").
const char *cllm_build_info(void);

// 1 when this build has backend `k` and (for GPU backends) a device is present, else 0.
int cllm_backend_available(cllm_backend_kind k);

// One line of diagnostic text (no trailing newline).
typedef void (*cllm_log_fn)(void *user, const char *line);

// Engine options. A zeroed struct is the default: CPU, stream, all cores, the model's context,
// fp32 KV cache, no log.
typedef struct cllm_engine_options {
    cllm_backend_kind backend;
    cllm_weights_mode weights;
    int n_threads;             // 0 = all cores
    uint32_t context_len;      // 0 = the model's; otherwise min(this, the model's)
    cllm_dtype kv_dtype;       // CLLM_DTYPE_F32 or CLLM_DTYPE_F16
    cllm_log_fn log;           // may be NULL
    void *log_user;
    // GPU backends only.
    uint64_t vram_budget;      // > 0: plan each layer's placement (raw resident, compute code
                               // resident, compressed resident or streamed) to fit this many
                               // bytes of device memory
    int device;                // CUDA device index
    int no_verify;             // 1: skip the checksum pass of cllm_engine_open (default 0: every
                               // byte of the file is checked, as cllm_container_verify does)
    uint32_t n_seq;            // sequences the KV cache holds (slots for batched decoding,
                               // cllm_engine_forward_batch); 0 = 1. The KV cache takes n_seq
                               // times the context. At most 65536.
} cllm_engine_options;

typedef struct cllm_engine cllm_engine;

// Counters and memory figures of an engine (bytes unless said otherwise).
typedef struct cllm_engine_stats {
    const char *backend;          // "cpu", ...
    cllm_weights_mode weights;
    uint32_t context_len;         // positions the KV cache holds
    uint64_t compressed_bytes;    // payload bytes of the bound tensors (in the file mapping)
    uint64_t decoded_bytes;       // decoded weights held: all tensors (resident) or 0 (stream)
    uint64_t scratch_bytes;       // decode scratch: the largest decode group (CPU; GPU: rings) +
                                  // per-thread block buffers (stream)
    uint64_t kv_bytes;            // KV cache
    uint64_t activation_bytes;    // activations, attention scores, norms, RoPE tables
    uint64_t peak_rss_bytes;      // getrusage ru_maxrss of the process, at the time of the call
    uint64_t n_tokens;            // tokens forwarded since open
    uint64_t n_forward;           // forward calls since open
    double decode_seconds;        // time spent decoding weights (stream: per layer, per call)
    double compute_seconds;       // time spent in the forward pass excluding decoding
    double load_seconds;          // open: binding, decode tables, resident decoding
    // GPU backends (zero on the CPU).
    uint64_t device_peak_bytes;   // peak of every device allocation made through the allocator
    uint64_t device_weight_bytes; // device bytes holding weights: raw, compute code, compressed,
                                  // staging, decode scratch
    double copy_seconds;          // host-to-device copies of streamed weights (copy-engine time)
    double predicted_token_seconds; // the planner's prediction for one decode token (0: none)
    const char *plan;             // one line per placement decision (NULL: none); owned by the engine
} cllm_engine_stats;

// Checks every byte of the file (each payload's XXH3 checksum, in parallel, and the padding;
// unless opt->no_verify), binds the container's tensors to the Llama layout (checking every shape
// against the config), then creates the backend. The container must outlive the engine. `opt`
// may be NULL (defaults).
// @return CLLM_OK, FORMAT (missing tensor or a shape the config disagrees with: the message
//         names the tensor), CORRUPT (a checksum mismatch: the message names the first tensor),
//         UNSUPPORTED (backend, mode or KV dtype not available), NOMEM, ARG.
cllm_status cllm_engine_open(const cllm_container *c, const cllm_engine_options *opt,
                             cllm_engine **out);
void cllm_engine_free(cllm_engine *e);

const cllm_model_config *cllm_engine_config(const cllm_engine *e);
// Positions the KV cache holds (the model's context capped by options.context_len).
uint32_t cllm_engine_context(const cllm_engine *e);
// Positions of sequence 0 currently filled in the KV cache (where the next token goes by
// default).
size_t cllm_engine_n_past(const cllm_engine *e);

// Runs tokens[0..n) at positions pos..pos+n-1 and stores their keys/values in the cache; the
// cache is kept for positions < pos (pos <= n_past: rewinding is allowed, holes are not).
// logits receives vocab floats for the last token, or n * vocab ((n, vocab), row i for
// tokens[i]) when all_logits; logits_cap is in floats. On failure the cache is valid for
// positions < pos only.
// Determinism, per backend:
//   CPU: fp32 throughout in a fixed order (src/ref): results do not depend on how a sequence is
//        split into calls, on the thread count or on the weights mode, and a lossless container
//        gives the same bits as the raw one.
//   CUDA: a call's tokens run in passes of up to 256; passes of at most 4 tokens use fp32
//        matvecs and split attention, int8 passes of up to 8 tokens the same matvecs (one
//        token's result the same as alone) with the other attention kernel; longer ones (bf16/f16
//        from 5 tokens) GEMMs in the weights' precision, with activations rounded to bf16/f16
//        and fp32 sums: cuBLAS, and for int8 a tensor-core GEMM on the exact int8 values up to
//        64 tokens, cuBLAS on a bf16 copy of W above; and another attention kernel. So logits
//        depend on how a
//        sequence is split into calls (prefill in one call vs token by token differ within
//        bf16 rounding); a lossless container gives the raw one's bits in raw mode, other modes
//        agree within rounding. Results differ from the CPU's within a tolerance (fast exp,
//        other summation orders). The KV cache is f32 only.
// @return CLLM_OK, ARG (token id outside the vocabulary, pos > n_past, pos + n beyond the
//         context, small buffer: the message says which), CORRUPT (a block failed to decode),
//         DEVICE.
cllm_status cllm_engine_forward(cllm_engine *e, const int32_t *tokens, size_t n, size_t pos,
                                float *logits, size_t logits_cap, int all_logits);
// Forgets every cached position of sequence 0 (n_past = 0).
void cllm_engine_reset(cllm_engine *e);

// ---- many sequences at once ------------------------------------------------------------------
// An engine opened with options.n_seq = N holds N independent sequences (KV slots 0..N-1), each
// with its own positions; the single-sequence calls above work on sequence 0.

// One sequence's part of a batched call: tokens[0..n) of sequence `seq` at positions
// pos..pos+n-1 (pos <= that sequence's n_past: rewinding is allowed, holes are not).
typedef struct cllm_batch_item {
    uint32_t seq;            // < options.n_seq
    const int32_t *tokens;   // (n) ids < vocab
    size_t n;                // >= 1
    size_t pos;
    int want_logits;         // 1: this item's last token gets a row of logits
} cllm_batch_item;

// Sequences the engine holds (options.n_seq, at least 1).
uint32_t cllm_engine_n_seq(const cllm_engine *e);
// Most tokens one step of the forward pass runs together (the weights are read once per step).
size_t cllm_engine_step_tokens(const cllm_engine *e);
// Positions of sequence `seq` filled in the KV cache (0 for seq >= n_seq).
size_t cllm_engine_seq_n_past(const cllm_engine *e, uint32_t seq);
// Forgets every cached position of sequence `seq` (no effect for seq >= n_seq).
void cllm_engine_seq_reset(cllm_engine *e, uint32_t seq);

// Runs items[0..n_items), each of a different sequence, together: the items' tokens, in order,
// go through the layers in steps of at most cllm_engine_step_tokens tokens (a long item spans
// several steps; the steps' tokens come from as many items as fit), so every step reads each
// weight once for all the sequences in it. The caller bounds what one call costs: a server
// decoding many sequences adds a bounded chunk of a new prompt per call, so that a long prompt
// does not stall the others. logits receives one row of vocab floats per item with want_logits,
// in item order ((rows, vocab)); logits_cap is in floats (logits may be NULL when no item wants
// any). Every argument is checked before anything runs. On failure, each item's sequence is valid
// for positions < its pos only.
// Determinism, per backend:
//   CPU: every result is one dot product in a fixed order, whatever else is in the step: a
//        sequence's logits do not depend on the batch (which sequences, how many, how they are
//        split into steps and calls), so greedy decoding in a batch gives the tokens of a lone
//        cllm_engine_forward.
//   CUDA: a step of at most 4 tokens (8 for int8 weights; any size for compute-code weights)
//        uses fp32 matvecs (each token's matrix products the same as alone), a longer one GEMMs
//        in the weights' precision (see cllm_engine_forward), so a sequence's
//        logits may depend on the batch composition (how many tokens share its step) within
//        bf16 rounding; greedy tokens may then differ from a lone run's where two logits nearly
//        tie. (Weights in compute code, the fused mode, take the paths of their raw kind:
//        the fused matvecs where raw weights take matvecs, the GEMM on the matrix unpacked from
//        its compute code for longer steps; fused and raw modes give the same bits.)
// @return CLLM_OK, ARG (seq >= n_seq, a sequence twice in one call, no tokens, token id outside
//         the vocabulary, pos > that sequence's n_past, positions beyond the context, small
//         logits buffer: the message names the item), CORRUPT, DEVICE.
cllm_status cllm_engine_forward_batch(cllm_engine *e, const cllm_batch_item *items, size_t n_items,
                                      float *logits, size_t logits_cap);
void cllm_engine_stats_get(const cllm_engine *e, cllm_engine_stats *out);

// ---- sampling --------------------------------------------------------------------------------

// Order: repeat penalty on the logits, then greedy (temperature <= 0) or softmax(logits / T)
// truncated by top-k, then top-p, then min-p, and one draw.
typedef struct cllm_sampler_params {
    float temperature;   // <= 0: greedy (argmax, lowest id on ties)
    uint32_t top_k;      // 0 = no limit
    float top_p;         // >= 1 = no limit: keep the smallest set of most likely tokens whose
                         // probabilities sum to at least top_p
    uint64_t seed;
    float min_p;         // 0 = off: drop tokens less likely than min_p times the most likely one
    float repeat_penalty; // 0 or 1 = off: logits of the tokens among the last repeat_last_n
                         // accepted ones are divided by it (positive) or multiplied (negative)
    uint32_t repeat_last_n; // history length for the penalty (0 with a penalty: 64)
} cllm_sampler_params;

typedef struct cllm_sampler cllm_sampler;

// A sampler over `vocab` logits. Owns its random state (splitmix64 seeding xorshift64*) and a
// work buffer, so sampling allocates nothing. @return CLLM_OK, ARG (bad parameter), NOMEM.
cllm_status cllm_sampler_create(const cllm_sampler_params *p, size_t vocab, cllm_sampler **out);
void cllm_sampler_free(cllm_sampler *s);
// Draws a token id from logits[0..n) (n <= vocab). @return CLLM_OK, ARG (n, non-finite logits).
cllm_status cllm_sampler_sample(cllm_sampler *s, const float *logits, size_t n, int32_t *token);
// A uniform double in [0, 1) from the sampler's stream (for callers that need the same RNG).
double cllm_sampler_uniform(cllm_sampler *s);
// Records `token` as generated (or as part of the prompt) for the repeat penalty. No effect
// without a penalty.
void cllm_sampler_accept(cllm_sampler *s, int32_t token);
// Forgets the penalty history.
void cllm_sampler_reset(cllm_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
