// Internal API of the .cllm container: the streaming writer, whole-file verification, opening
// from memory, and access to each tensor's coded description (for the engine).
// The public read side is in include/codecllm.h; docs/FORMAT.md specifies the bytes.
#ifndef CLLM_FORMAT_H
#define CLLM_FORMAT_H

#include "../codec/cllm_payload.h"
#include "../common/cllm_common.h"

// ---- writer ------------------------------------------------------------------------------------

typedef struct cllm_writer cllm_writer;

// Starts a container at `path` holding exactly `n_tensors` tensors. Bytes go to a new
// "<path>.tmp-XXXXXX" (created exclusively: never an existing name or symlink) until
// cllm_writer_finish renames the finished file onto `path`, so `path` never names a half-written
// file. An existing `path` that is not a regular file (directory, device, FIFO...) is refused
// (IO), at open and again before the rename. The config is validated (cllm_config_validate) and copied; the
// tokenizer blob (`tok`, `tok_size` bytes; kind NONE with size 0 when absent) is written at once.
// @return CLLM_OK, ARG (bad argument), FORMAT (invalid config), IO, NOMEM.
cllm_status cllm_writer_open(const char *path, const cllm_model_config *cfg, size_t n_tensors,
                             cllm_tokenizer_kind tok_kind, const uint8_t *tok, size_t tok_size,
                             cllm_writer **out);

// cllm_writer_open whose temporary is announced to `temp` (may be NULL) as it is created
// (cllm_temp_create). The caller tells `temp` of its end (created = 0) after finish or abort.
cllm_status cllm_writer_open_ex(const char *path, const cllm_model_config *cfg, size_t n_tensors,
                                cllm_tokenizer_kind tok_kind, const uint8_t *tok, size_t tok_size,
                                cllm_temp_fn temp, void *temp_user, cllm_writer **out);

// Appends the next tensor: `name` (1..127 printable ASCII characters, no space, unique), its
// shape (`ndim` 1..4 dims, each >= 1; the product of all but the last is coded->info.rows, the
// last is coded->info.cols) and the coded payload (borrowed: written to disk before returning).
// The payload's description must be valid and match its size (cllm_payload_layout) and its
// structure must pass cllm_payload_check.
// @return CLLM_OK, ARG (bad name or shape, duplicate name, or more tensors than announced),
//         CORRUPT (the payload does not match its description: cllm_payload_check), IO.
//         After a failure other than "more than announced", only finish (which then fails) or
//         abort remain.
cllm_status cllm_writer_add(cllm_writer *w, const char *name, uint32_t ndim,
                            const uint64_t shape[4], const cllm_coded *coded);

// Writes the header, config and table with their checksums, pads the file, fsyncs and renames it
// onto the final path. Always frees `w`; on failure the temporary file is removed.
// @return CLLM_OK, ARG (fewer tensors added than announced, or an earlier add failed), IO.
cllm_status cllm_writer_finish(cllm_writer *w);

// Removes the temporary file and frees `w`. NULL is fine.
void cllm_writer_abort(cllm_writer *w);

// Temporary path the writer is writing to (for tests and messages).
const char *cllm_writer_temp_path(const cllm_writer *w);

// ---- reader extras ------------------------------------------------------------------------------

enum {
    // Skip the header and meta checksum comparisons on open (everything else is still validated).
    // For fuzzing only: it lets a fuzzer reach the structural checks behind the checksums.
    CLLM_OPEN_NO_CHECKSUMS = 1u << 0,
};

// Opens a container held in memory. The bytes are borrowed: they must outlive the container.
// `label` (may be NULL) names the input in error messages. Same validation as
// cllm_container_open, less what `flags` turns off.
// @return CLLM_OK, FORMAT, CORRUPT, UNSUPPORTED, NOMEM, ARG.
cllm_status cllm_container_open_memory(const uint8_t *data, size_t size, const char *label,
                                       unsigned flags, cllm_container **out);

// Checks every checksum (header, meta, tokenizer, each tensor payload) and that every padding
// byte between and after sections is zero; together with what open checks, no byte of the file
// goes unchecked. `report` (may be NULL) receives one line per problem; *n_bad (may be NULL)
// receives their count. Payload checksums are computed in parallel (OpenMP).
// @return CLLM_OK when no problem was found, CLLM_ERR_CORRUPT otherwise (last error says how
//         many), ARG.
cllm_status cllm_container_verify_bytes(const cllm_container *c, cllm_report_fn report, void *user,
                                        size_t *n_bad);

// Coded description of tensor i (what the codec's layout and block decoders take), or NULL when
// i is out of range. Valid while the container is open; already validated by open
// (cllm_payload_layout and cllm_payload_check passed).
const cllm_coded_desc *cllm_container_desc(const cllm_container *c, size_t i);

// A streaming reader's hint: the mapped pages that hold only tensor i's payload are not needed
// any more, so the kernel may drop them (they are read from the file again if touched). Keeps a
// pass over a large file at about one tensor of resident memory. No-op for memory containers.
void cllm_container_drop_pages(const cllm_container *c, size_t i);

// Name the container was opened with (path or memory label).
const char *cllm_container_label(const cllm_container *c);

// ---- config section -----------------------------------------------------------------------------

// Serialises `cfg` into the 128-byte config section (fields in declaration order, zero padding).
void cllm_config_pack(const cllm_model_config *cfg, uint8_t out[128]);
// Parses and validates a config section (untrusted): padding must be zero, then
// cllm_config_validate. @return CLLM_OK, FORMAT.
cllm_status cllm_config_unpack(const uint8_t in[128], cllm_model_config *cfg);

#endif
