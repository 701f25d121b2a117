// Fuzz target: bytes -> container open from memory (checksums not compared, so that mutations of
// the stored safetensors header and the table reach the archive checks) -> cllm_archive_open ->
// decode every segment as unpack does. Invariants (a violation aborts): an accepted archive's
// segments are in order, without overlap, cover the data area exactly, and each decodes to
// exactly its own byte count.
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/cllm_format.h"

#define FUZZ_MAX_DECODE (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_segments(const cllm_container *c, const cllm_archive *a) {
    cllm_archive_summary sum;
    cllm_archive_summary_get(a, &sum);
    uint64_t pos = 0;
    for (size_t i = 0; i < cllm_container_n_tensors(c); i++) {
        cllm_archive_segment s;
        cllm_tensor_info t;
        if (cllm_archive_segment_get(a, i, &s) != CLLM_OK) abort();
        if (cllm_container_tensor(c, i, &t) != CLLM_OK) abort();
        if (s.end <= s.begin || s.begin < pos) abort();
        if (!s.name && s.begin != pos) abort();  // a gap starts where the previous segment ends
        uint64_t bytes = s.end - s.begin;
        if (t.n_elements * cllm_dtype_size(t.dtype) != bytes) abort();
        pos = s.end;
        if (bytes > FUZZ_MAX_DECODE) continue;
        void *out = malloc(bytes);
        if (out) (void)cllm_container_decode(c, i, out, bytes, NULL, 0, 0);
        free(out);
    }
    if (sum.header_size + pos != sum.file_size) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        omp_set_num_threads(1);
        once = 1;
    }
    cllm_container *c = NULL;
    if (cllm_container_open_memory(data, size, "fuzz", CLLM_OPEN_NO_CHECKSUMS, &c) != CLLM_OK)
        return 0;
    cllm_archive *a = NULL;
    if (cllm_archive_open(c, &a) == CLLM_OK) {
        check_segments(c, a);
    } else if (cllm_container_is_archive(c) == 0 && a != NULL) {
        abort();
    }
    cllm_archive_free(a);
    cllm_container_free(c);
    return 0;
}
