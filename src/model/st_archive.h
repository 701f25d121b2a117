// Internal API of packed safetensors archives (docs/FORMAT.md, "Packed safetensors"): how a
// safetensors data area is cut into the container's tensors, shared by the packer, the unpacker
// and the archive view (cllm_archive_*), so that writer and reader agree by construction.
#ifndef CLLM_ST_ARCHIVE_H
#define CLLM_ST_ARCHIVE_H

#include "cllm_model.h"

#include <sys/stat.h>

// A run of the data area stored as one container tensor: a tensor of at least one byte, or a gap
// (bytes no tensor covers). Segments of a header cover [0, data_size) in order, without overlap.
typedef struct cllm_st_segment {
    const cllm_st_tensor *tensor; // NULL for a gap; borrowed from the header
    uint64_t begin, end;          // data area range, end > begin
} cllm_st_segment;

// The segments of a parsed header (its tensors are sorted and disjoint: cllm_st_parse).
// *out is malloc'd (NULL when there are none); the header must outlive it.
// @return CLLM_OK, NOMEM.
cllm_status cllm_st_segments(const cllm_st_header *h, cllm_st_segment **out, size_t *n);

// The container entry that holds segment k.
typedef struct cllm_st_entry_plan {
    char name[32];       // "seg.<k>"
    cllm_dtype dtype;    // the tensor's f32/f16/bf16, or u8 for everything else
    int coded_ok;        // 1: lossless or raw; 0: raw only
    uint32_t ndim;       // 1..4
    uint64_t shape[4];
    uint64_t rows, cols; // 2-D view of shape
} cllm_st_entry_plan;

// Shape rules: an f32/f16/bf16 tensor keeps its shape when it has 1..4 dimensions, a scalar
// becomes [1], more than 4 dimensions [product of all but the last, last]; any other segment is
// [bytes] of u8.
void cllm_st_segment_plan(const cllm_st_segment *s, size_t k, cllm_st_entry_plan *out);

// Refuses to write `out_path` when it names the input (`in_st`, from fstat of the input) or,
// unless `force`, when it exists; an existing non-regular file is refused even with force.
// @return CLLM_OK, ARG, IO.
cllm_status cllm_st_check_output(const struct stat *in_st, const char *out_path, int force);

#endif
