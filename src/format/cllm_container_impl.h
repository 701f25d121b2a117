// The container object, shared by the reader (cllm_container_read.c) and the whole-file
// verifier (cllm_container_verify.c). Private to src/format.
#ifndef CLLM_CONTAINER_IMPL_H
#define CLLM_CONTAINER_IMPL_H

#include "cllm_file_layout.h"
#include "cllm_format.h"

// One validated table entry. info.name points at name; info and desc describe the same tensor.
typedef struct cllm_entry {
    char name[CLLM_NAME_CAP];
    cllm_tensor_info info;
    cllm_coded_desc desc;
} cllm_entry;

struct cllm_container {
    const uint8_t *base;      // the whole file: size bytes (mapping or borrowed memory)
    uint64_t size;            // == header file_size once open succeeded
    void *map;                // non-NULL when base is our own mapping of map_size bytes
    size_t map_size;
    char *label;              // path or memory label, for messages
    cllm_model_config cfg;
    uint32_t n_tensors;
    cllm_entry *entries;      // n_tensors, in table (= file) order
    uint32_t *by_name;        // entry indices sorted by name (for find)
    uint64_t table_end;       // 256 + n_tensors * 256
    uint32_t tok_kind;
    uint64_t tok_offset, tok_size, tok_xxh3;
    uint64_t meta_xxh3, header_xxh3;
};

#endif
