// Payload layout (cllm_payload.h) computed from a description, and validation of the untrusted
// parts a description cannot vouch for: the frequency table, the block index and the padding.
// Also the names of dtypes and codecs.
#include "cllm_codec.h"

#include <string.h>
#include <strings.h>

// ---- names --------------------------------------------------------------------------------------

size_t cllm_dtype_size(cllm_dtype dt) {
    switch (dt) {
    case CLLM_DTYPE_F32: return 4;
    case CLLM_DTYPE_F16: return 2;
    case CLLM_DTYPE_BF16: return 2;
    case CLLM_DTYPE_U8: return 1;
    default: return 0;
    }
}

const char *cllm_dtype_name(cllm_dtype dt) {
    switch (dt) {
    case CLLM_DTYPE_F32: return "f32";
    case CLLM_DTYPE_F16: return "f16";
    case CLLM_DTYPE_BF16: return "bf16";
    case CLLM_DTYPE_U8: return "u8";
    default: return "unknown-dtype";
    }
}

cllm_status cllm_dtype_parse(const char *s, cllm_dtype *out) {
    static const struct { const char *name; cllm_dtype dt; } names[] = {
        {"f32", CLLM_DTYPE_F32},  {"fp32", CLLM_DTYPE_F32},     {"float32", CLLM_DTYPE_F32},
        {"f16", CLLM_DTYPE_F16},  {"fp16", CLLM_DTYPE_F16},     {"float16", CLLM_DTYPE_F16},
        {"bf16", CLLM_DTYPE_BF16}, {"bfloat16", CLLM_DTYPE_BF16},
    };
    RETURN_IF(!s || !out, CLLM_ERR_ARG, "dtype parse: NULL argument");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].dt;
            return CLLM_OK;
        }
    }
    return CLLM_FAIL(CLLM_ERR_ARG, "unknown dtype '%s' (expected f32, f16 or bf16)", s);
}

const char *cllm_codec_name(cllm_codec c) {
    switch (c) {
    case CLLM_CODEC_RAW: return "raw";
    case CLLM_CODEC_LOSSLESS: return "lossless";
    case CLLM_CODEC_INT8: return "int8";
    default: return "unknown-codec";
    }
}

cllm_status cllm_codec_parse(const char *s, cllm_codec *out) {
    RETURN_IF(!s || !out, CLLM_ERR_ARG, "codec parse: NULL argument");
    for (int c = 0; c < CLLM_CODEC_COUNT_; c++) {
        if (strcasecmp(s, cllm_codec_name((cllm_codec)c)) == 0) {
            *out = (cllm_codec)c;
            return CLLM_OK;
        }
    }
    return CLLM_FAIL(CLLM_ERR_ARG, "unknown codec '%s' (expected raw, lossless or int8)", s);
}

uint32_t cllm_float_raw_bits(uint32_t dtype) {
    switch (dtype) {
    case CLLM_DTYPE_BF16: return 8;
    case CLLM_DTYPE_F16: return 11;
    case CLLM_DTYPE_F32: return 24;
    default: return 0;
    }
}

// ---- layout
// ---------------------------------------------------------------------------------------

// RAW carries no coder fields: they must all be zero so that a description has one spelling.
static cllm_status raw_layout(const cllm_coded_desc *d, uint64_t n, cllm_payload_layout_t *lay) {
    RETURN_IF(d->scale_bits || d->rows_per_block || d->group_size || d->predictor ||
                  d->n_blocks || d->stream_bytes,
              CLLM_ERR_CORRUPT,
              "raw payload: scale_bits/rows_per_block/group_size/predictor/n_blocks/stream_bytes "
              "must be 0");
    uint64_t bytes;
    RETURN_IF(cllm_mul_overflow_u64(n, cllm_dtype_size((cllm_dtype)d->dtype), &bytes),
              CLLM_ERR_CORRUPT, "raw payload: rows*cols*dtype size overflows");
    lay->side_off = 0;
    lay->side_size = bytes;
    lay->total_size = bytes;
    return CLLM_OK;
}

// Fields shared by the coded codecs: scale, blocking, predictor, stream size.
static cllm_status check_coder_fields(const cllm_coded_desc *d) {
    RETURN_IF(d->scale_bits < CLLM_RANS_MIN_SCALE_BITS || d->scale_bits > CLLM_RANS_MAX_SCALE_BITS,
              CLLM_ERR_CORRUPT, "scale_bits %u outside [%d, %d]", d->scale_bits,
              CLLM_RANS_MIN_SCALE_BITS, CLLM_RANS_MAX_SCALE_BITS);
    RETURN_IF(d->rows_per_block < 1 || d->rows_per_block > d->rows, CLLM_ERR_CORRUPT,
              "rows_per_block %u outside [1, rows=%llu]", d->rows_per_block,
              (unsigned long long)d->rows);
    uint64_t expect = d->rows / d->rows_per_block + (d->rows % d->rows_per_block != 0);
    RETURN_IF(d->n_blocks != expect, CLLM_ERR_CORRUPT,
              "n_blocks %llu but ceil(rows / rows_per_block) = %llu",
              (unsigned long long)d->n_blocks, (unsigned long long)expect);
    RETURN_IF(d->predictor >= CLLM_PRED_COUNT_, CLLM_ERR_CORRUPT, "unknown predictor %u",
              d->predictor);
    uint64_t min_stream;
    RETURN_IF(cllm_mul_overflow_u64(d->n_blocks, CLLM_RANS_STATE_BYTES, &min_stream),
              CLLM_ERR_CORRUPT, "n_blocks %llu too large", (unsigned long long)d->n_blocks);
    RETURN_IF(d->stream_bytes < min_stream || d->stream_bytes % 4 != 0, CLLM_ERR_CORRUPT,
              "stream_bytes %llu: not a multiple of 4 or less than %llu for %llu blocks",
              (unsigned long long)d->stream_bytes, (unsigned long long)min_stream,
              (unsigned long long)d->n_blocks);
    return CLLM_OK;
}

// Side section size: the lossless plane or the int8 scales.
static cllm_status side_size(const cllm_coded_desc *d, uint64_t n, cllm_payload_layout_t *lay) {
    uint64_t bits, count;
    if (d->codec == CLLM_CODEC_LOSSLESS) {
        RETURN_IF(d->group_size != 0, CLLM_ERR_CORRUPT, "lossless payload: group_size %u, not 0",
                  d->group_size);
        lay->raw_bits = cllm_float_raw_bits(d->dtype);
        RETURN_IF(cllm_mul_overflow_u64(n, lay->raw_bits, &bits), CLLM_ERR_CORRUPT,
                  "lossless payload: plane size overflows");
        lay->side_size = bits / 8 + (bits % 8 != 0);
        return CLLM_OK;
    }
    RETURN_IF(d->group_size < 1 || d->group_size > d->cols, CLLM_ERR_CORRUPT,
              "int8 payload: group_size %u outside [1, cols=%llu]", d->group_size,
              (unsigned long long)d->cols);
    lay->groups_per_row = d->cols / d->group_size + (d->cols % d->group_size != 0);
    RETURN_IF(cllm_mul_overflow_u64(d->rows, lay->groups_per_row, &count) ||
                  cllm_mul_overflow_u64(count, sizeof(float), &lay->side_size),
              CLLM_ERR_CORRUPT, "int8 payload: scales size overflows");
    return CLLM_OK;
}

// Adds `b` to `*a` and rounds up to the payload alignment, reporting overflow.
static int add_align(uint64_t *a, uint64_t b) {
    uint64_t s;
    if (cllm_add_overflow_u64(*a, b, &s) || s > UINT64_MAX - CLLM_PAYLOAD_ALIGN) return 1;
    *a = cllm_align_up(s, CLLM_PAYLOAD_ALIGN);
    return 0;
}

cllm_status cllm_payload_layout(const cllm_coded_desc *d, cllm_payload_layout_t *lay) {
    RETURN_IF(!d || !lay, CLLM_ERR_ARG, "payload layout: NULL argument");
    memset(lay, 0, sizeof *lay);
    RETURN_IF(d->codec >= CLLM_CODEC_COUNT_, CLLM_ERR_CORRUPT, "unknown codec %u", d->codec);
    RETURN_IF(d->dtype >= CLLM_DTYPE_COUNT_, CLLM_ERR_CORRUPT, "unknown dtype %u", d->dtype);
    RETURN_IF(d->rows < 1 || d->cols < 1, CLLM_ERR_CORRUPT, "empty shape: rows %llu, cols %llu",
              (unsigned long long)d->rows, (unsigned long long)d->cols);
    uint64_t n;
    RETURN_IF(cllm_mul_overflow_u64(d->rows, d->cols, &n) || n > (UINT64_MAX >> 8),
              CLLM_ERR_CORRUPT, "rows*cols overflows (rows %llu, cols %llu)",
              (unsigned long long)d->rows, (unsigned long long)d->cols);
    if (d->codec == CLLM_CODEC_RAW) return raw_layout(d, n, lay);

    // The coded codecs split or quantise floats; bytes (u8) are stored raw only.
    RETURN_IF(cllm_float_raw_bits(d->dtype) == 0, CLLM_ERR_CORRUPT,
              "codec %s needs an f32/f16/bf16 tensor, not %s",
              cllm_codec_name((cllm_codec)d->codec), cllm_dtype_name((cllm_dtype)d->dtype));
    TRY(check_coder_fields(d));
    uint64_t block_syms;
    RETURN_IF(cllm_mul_overflow_u64(d->rows_per_block, d->cols, &block_syms) ||
                  block_syms > (uint64_t)SIZE_MAX / 4,
              CLLM_ERR_CORRUPT, "rows_per_block*cols overflows");
    TRY(side_size(d, n, lay));
    uint64_t index_bytes, off = CLLM_FREQ_BYTES;
    RETURN_IF(d->n_blocks > (UINT64_MAX >> 4), CLLM_ERR_CORRUPT, "n_blocks too large");
    index_bytes = 8 * (d->n_blocks + 1);
    lay->freq_off = 0;
    lay->index_off = off;
    lay->streams_off = off + index_bytes;
    off = lay->streams_off;
    RETURN_IF(add_align(&off, d->stream_bytes), CLLM_ERR_CORRUPT, "stream_bytes too large");
    lay->side_off = off;
    RETURN_IF(add_align(&off, lay->side_size), CLLM_ERR_CORRUPT, "side section too large");
    lay->total_size = off;
    return CLLM_OK;
}

// ---- payload check -----------------------------------------------------------------------------

static cllm_status check_zero(const uint8_t *p, uint64_t begin, uint64_t end, const char *what) {
    for (uint64_t i = begin; i < end; i++)
        RETURN_IF(p[i] != 0, CLLM_ERR_CORRUPT, "non-zero padding byte after %s at offset %llu",
                  what, (unsigned long long)i);
    return CLLM_OK;
}

static cllm_status check_index(const cllm_coded_desc *d, const cllm_payload_layout_t *lay,
                               const uint8_t *payload) {
    const uint8_t *index = payload + lay->index_off;
    uint64_t prev = cllm_load_le64(index);
    RETURN_IF(prev != 0, CLLM_ERR_CORRUPT, "block index[0] = %llu, not 0",
              (unsigned long long)prev);
    for (uint64_t b = 1; b <= d->n_blocks; b++) {
        uint64_t off = cllm_load_le64(index + 8 * b);
        RETURN_IF(off % 4 != 0 || off > d->stream_bytes || off < prev ||
                      off - prev < CLLM_RANS_STATE_BYTES,
                  CLLM_ERR_CORRUPT,
                  "block index[%llu] = %llu: not a multiple of 4, beyond stream_bytes %llu, or "
                  "block %llu shorter than %d bytes",
                  (unsigned long long)b, (unsigned long long)off,
                  (unsigned long long)d->stream_bytes, (unsigned long long)(b - 1),
                  CLLM_RANS_STATE_BYTES);
        prev = off;
    }
    RETURN_IF(prev != d->stream_bytes, CLLM_ERR_CORRUPT,
              "block index ends at %llu, but stream_bytes is %llu", (unsigned long long)prev,
              (unsigned long long)d->stream_bytes);
    return CLLM_OK;
}

// The plane's last byte may hold unused high bits: they are padding too.
static cllm_status check_plane_tail(const cllm_coded_desc *d, const cllm_payload_layout_t *lay,
                                    const uint8_t *payload) {
    uint64_t used = (d->rows * d->cols * lay->raw_bits) % 8;
    if (used == 0 || lay->side_size == 0) return CLLM_OK;
    uint8_t last = payload[lay->side_off + lay->side_size - 1];
    RETURN_IF(last >> used, CLLM_ERR_CORRUPT, "non-zero unused bits in the plane's last byte");
    return CLLM_OK;
}

cllm_status cllm_payload_check(const cllm_coded_desc *d, const uint8_t *payload, uint64_t size) {
    cllm_payload_layout_t lay;
    TRY(cllm_payload_layout(d, &lay));
    RETURN_IF(size != lay.total_size, CLLM_ERR_CORRUPT,
              "payload is %llu bytes, its description implies %llu", (unsigned long long)size,
              (unsigned long long)lay.total_size);
    RETURN_IF(!payload && size, CLLM_ERR_ARG, "payload check: NULL payload");
    if (d->codec == CLLM_CODEC_RAW) return CLLM_OK;
    uint16_t freq[256];
    for (int s = 0; s < 256; s++) freq[s] = cllm_load_le16(payload + lay.freq_off + 2 * s);
    TRY(cllm_freq_validate(freq, d->scale_bits));
    TRY(check_index(d, &lay, payload));
    TRY(check_zero(payload, lay.streams_off + d->stream_bytes, lay.side_off, "streams"));
    TRY(check_zero(payload, lay.side_off + lay.side_size, lay.total_size, "side section"));
    if (d->codec == CLLM_CODEC_LOSSLESS) TRY(check_plane_tail(d, &lay, payload));
    return CLLM_OK;
}

// ---- description <-> tensor info ----------------------------------------------------------------

void cllm_desc_to_info(const cllm_coded_desc *d, cllm_tensor_info *info) {
    info->dtype = (cllm_dtype)d->dtype;
    info->codec = (cllm_codec)d->codec;
    info->rows = d->rows;
    info->cols = d->cols;
    info->n_elements = d->rows * d->cols;
    info->scale_bits = d->scale_bits;
    info->rows_per_block = d->rows_per_block;
    info->group_size = d->group_size;
    info->predictor = d->predictor;
    info->n_blocks = d->n_blocks;
}

void cllm_info_to_desc(const cllm_tensor_info *info, cllm_coded_desc *d) {
    memset(d, 0, sizeof *d);
    d->codec = (uint32_t)info->codec;
    d->dtype = (uint32_t)info->dtype;
    d->rows = info->rows;
    d->cols = info->cols;
    d->scale_bits = info->scale_bits;
    d->rows_per_block = info->rows_per_block;
    d->group_size = info->group_size;
    d->predictor = info->predictor;
    d->n_blocks = info->n_blocks;
    d->stream_bytes = 0;  // not in the info: cllm_desc_from_payload reads it from the index
}

cllm_status cllm_desc_from_payload(const cllm_tensor_info *info, const uint8_t *payload,
                                   uint64_t size, cllm_coded_desc *d) {
    RETURN_IF(!info || !d || (!payload && size), CLLM_ERR_ARG, "desc from payload: NULL argument");
    cllm_info_to_desc(info, d);
    if (d->codec != CLLM_CODEC_LOSSLESS && d->codec != CLLM_CODEC_INT8) return CLLM_OK;
    // index[n_blocks] sits at CLLM_FREQ_BYTES + 8 * n_blocks: check it lies inside the payload.
    RETURN_IF(d->n_blocks > (size / 8), CLLM_ERR_CORRUPT,
              "n_blocks %llu cannot fit a payload of %llu bytes", (unsigned long long)d->n_blocks,
              (unsigned long long)size);
    uint64_t at = CLLM_FREQ_BYTES + 8 * d->n_blocks;
    RETURN_IF(size < 8 || at > size - 8, CLLM_ERR_CORRUPT,
              "payload of %llu bytes too short for a block index of %llu blocks",
              (unsigned long long)size, (unsigned long long)d->n_blocks);
    d->stream_bytes = cllm_load_le64(payload + at);
    return CLLM_OK;
}
