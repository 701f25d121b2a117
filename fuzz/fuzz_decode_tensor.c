// Fuzz target: an arbitrary tensor description + payload into cllm_decode_tensor.
//
// Input: a 32-byte description, then the payload.
//   byte 0 codec, 1 dtype, 2 predictor, 3 scale_bits, 4..5 rows (LE16), 6..7 cols (LE16),
//   8..11 rows_per_block, 12..15 group_size, 16..23 n_blocks, 24..31 unused.
// Shapes are capped at 65535 x 65535 and at 4M elements, so output buffers stay small.
#include "codec/cllm_codec.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 32) return 0;
    cllm_tensor_info info;
    memset(&info, 0, sizeof info);
    info.codec = (cllm_codec)data[0];
    info.dtype = (cllm_dtype)data[1];
    info.predictor = data[2];
    info.scale_bits = data[3];
    info.rows = cllm_load_le16(data + 4);
    info.cols = cllm_load_le16(data + 6);
    info.rows_per_block = cllm_load_le32(data + 8);
    info.group_size = cllm_load_le32(data + 12);
    info.n_blocks = cllm_load_le64(data + 16);
    info.n_elements = info.rows * info.cols;
    if (info.n_elements > (1u << 22)) return 0;
    const size_t psize = size - 32;
    uint8_t *payload = malloc(psize ? psize : 1);
    memcpy(payload, data + 32, psize);
    size_t out_cap = (size_t)info.n_elements * 4;
    uint8_t *out = malloc(out_cap ? out_cap : 1);
    size_t scales_cap = (size_t)info.n_elements * 4;
    float *scales = malloc(scales_cap ? scales_cap : 1);
    cllm_decode_tensor(&info, payload, psize, out, out_cap, scales, scales_cap, 1);
    free(scales);
    free(out);
    free(payload);
    return 0;
}
