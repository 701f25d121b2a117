// Fuzz target: an arbitrary frequency table and block bytes into the rANS block decoder.
//
// Input: byte 0: scale_bits (low 3 bits + 8, so 8..15: out-of-range values test the table check);
// bytes 1..2: symbol count n (little-endian, up to 65535); bytes 3..514: freq[256] uint16 LE;
// the rest: the block. When the table is valid, a round trip of the decoded symbols through the
// encoder must reproduce the block exactly (the block format is canonical).
#include "codec/cllm_codec.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 + CLLM_FREQ_BYTES) return 0;
    const uint32_t sb = 8 + (data[0] & 7);
    const uint64_t n = cllm_load_le16(data + 1);
    uint16_t freq[256];
    for (int s = 0; s < 256; s++) freq[s] = cllm_load_le16(data + 3 + 2 * s);
    static cllm_rans_dec_table dec;
    if (cllm_rans_dec_table_init(&dec, freq, sb) != CLLM_OK) return 0;
    const uint8_t *blk = data + 3 + CLLM_FREQ_BYTES;
    const size_t blk_size = size - 3 - CLLM_FREQ_BYTES;
    // Exact-size copy so any read past the block is an ASan error.
    uint8_t *copy = malloc(blk_size ? blk_size : 1);
    uint8_t *syms = malloc(n ? n : 1);
    memcpy(copy, blk, blk_size);
    if (cllm_rans_decode_block(&dec, copy, blk_size, syms, n) == CLLM_OK) {
        static cllm_rans_enc_table enc;
        if (cllm_rans_enc_table_init(&enc, freq, sb) != CLLM_OK) abort();
        size_t cap = (size_t)cllm_rans_block_bound(n), written = 0;
        uint8_t *again = malloc(cap);
        if (cllm_rans_encode_block(&enc, syms, n, again, cap, &written) != CLLM_OK) abort();
        if (written != blk_size || memcmp(again, copy, blk_size) != 0) abort();
        free(again);
    }
    free(syms);
    free(copy);
    return 0;
}
