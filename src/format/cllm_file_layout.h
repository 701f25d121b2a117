// Byte offsets of the .cllm v1 file (docs/FORMAT.md is the prose specification; this header is
// the one place the numbers live). Shared by the writer and the reader, which do not include each
// other. Little-endian everywhere; every reserved or padding byte is zero.
#ifndef CLLM_FILE_LAYOUT_H
#define CLLM_FILE_LAYOUT_H

#include <stdint.h>

#define CLLM_FILE_MAGIC "CODECLLM"
#define CLLM_FILE_MAGIC_SIZE 8
#define CLLM_FILE_VERSION 1u
#define CLLM_SECTION_ALIGN 4096u   // every section after the table starts on a page boundary

// Fixed sections at the start of the file.
#define CLLM_HEADER_SIZE 128u
#define CLLM_CONFIG_OFFSET 128u
#define CLLM_CONFIG_SIZE 128u
#define CLLM_TABLE_OFFSET 256u
#define CLLM_ENTRY_SIZE 256u
#define CLLM_NAME_CAP 128u         // name field, NUL included: names have 1..127 characters

// Header fields (offset within the 128-byte header).
enum {
    CLLM_HDR_MAGIC = 0,
    CLLM_HDR_VERSION = 8,          // u32
    CLLM_HDR_HEADER_SIZE = 12,     // u32 = 128
    CLLM_HDR_FILE_SIZE = 16,       // u64
    CLLM_HDR_N_TENSORS = 24,       // u32
    CLLM_HDR_ENTRY_SIZE = 28,      // u32 = 256
    CLLM_HDR_CONFIG_OFFSET = 32,   // u64 = 128
    CLLM_HDR_CONFIG_SIZE = 40,     // u64 = 128
    CLLM_HDR_TABLE_OFFSET = 48,    // u64 = 256
    CLLM_HDR_TABLE_SIZE = 56,      // u64 = n_tensors * 256
    CLLM_HDR_TOK_OFFSET = 64,      // u64, 0 when there is no tokenizer
    CLLM_HDR_TOK_SIZE = 72,        // u64
    CLLM_HDR_TOK_KIND = 80,        // u32 cllm_tokenizer_kind
    CLLM_HDR_RESERVED0 = 84,       // u32 = 0
    CLLM_HDR_TOK_XXH3 = 88,        // u64
    CLLM_HDR_META_XXH3 = 96,       // u64 over bytes [128, 256 + table_size)
    CLLM_HDR_RESERVED1 = 104,      // 16 zero bytes
    CLLM_HDR_XXH3 = 120,           // u64 over bytes [0, 120)
};

// Tensor table entry fields (offset within a 256-byte entry).
enum {
    CLLM_ENT_NAME = 0,             // char[128]
    CLLM_ENT_DTYPE = 128,          // u32 cllm_dtype
    CLLM_ENT_CODEC = 132,          // u32 cllm_codec
    CLLM_ENT_NDIM = 136,           // u32 1..4
    CLLM_ENT_SCALE_BITS = 140,     // u32
    CLLM_ENT_SHAPE = 144,          // u64[4]
    CLLM_ENT_DATA_OFFSET = 176,    // u64
    CLLM_ENT_DATA_SIZE = 184,      // u64
    CLLM_ENT_DATA_XXH3 = 192,      // u64
    CLLM_ENT_ROWS_PER_BLOCK = 200, // u32
    CLLM_ENT_GROUP_SIZE = 204,     // u32
    CLLM_ENT_PREDICTOR = 208,      // u32
    CLLM_ENT_RESERVED0 = 212,      // u32 = 0
    CLLM_ENT_N_BLOCKS = 216,       // u64
    CLLM_ENT_STREAM_BYTES = 224,   // u64
    CLLM_ENT_ENTROPY = 232,        // f64
    CLLM_ENT_RESERVED1 = 240,      // 16 zero bytes
};

// The config section: the 19 fields of cllm_model_config in declaration order, 4 bytes each
// (u32, i32 or f32 bit pattern), then zeros up to 128 bytes.
#define CLLM_CONFIG_FIELDS 19u
#define CLLM_CONFIG_USED (4u * CLLM_CONFIG_FIELDS)

// Printable ASCII without space: the characters a tensor name may hold.
static inline int cllm_name_char_ok(uint8_t ch) { return ch >= 0x21 && ch <= 0x7e; }

_Static_assert(CLLM_HDR_XXH3 + 8 == CLLM_HEADER_SIZE, "header layout");
_Static_assert(CLLM_ENT_RESERVED1 + 16 == CLLM_ENTRY_SIZE, "entry layout");
_Static_assert(CLLM_CONFIG_USED <= CLLM_CONFIG_SIZE, "config layout");
_Static_assert(CLLM_CONFIG_OFFSET + CLLM_CONFIG_SIZE == CLLM_TABLE_OFFSET, "fixed sections");

#endif
