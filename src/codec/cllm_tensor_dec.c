// Whole-tensor decoder: validate the description and payload, build the decode table, decode
// blocks in parallel (one scratch buffer per thread), undo the predictor, join or copy.
#include "cllm_codec.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// Inverse of the LEFT predictor: a running sum mod 256 along each row. SSE2 sums 16 bytes in 4
// shift-and-add rounds and adds the carry from the previous 16; the scalar loop carries the sum
// in a register (reading row[c - 1] back would wait on the store just made).
static void unpredict_row(uint8_t *row, uint64_t cols) {
    uint64_t c = 0;
    uint8_t sum = 0;
#if defined(__SSE2__)
    __m128i carry = _mm_setzero_si128();
    for (; c + 16 <= cols; c += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(row + c));
        v = _mm_add_epi8(v, _mm_slli_si128(v, 1));
        v = _mm_add_epi8(v, _mm_slli_si128(v, 2));
        v = _mm_add_epi8(v, _mm_slli_si128(v, 4));
        v = _mm_add_epi8(v, _mm_slli_si128(v, 8));
        v = _mm_add_epi8(v, carry);
        _mm_storeu_si128((__m128i *)(void *)(row + c), v);
        const __m128i last = _mm_srli_si128(v, 15);  // byte 15 broadcast to all 16
        carry = _mm_unpacklo_epi64(_mm_shufflelo_epi16(_mm_unpacklo_epi8(last, last), 0),
                                   _mm_shufflelo_epi16(_mm_unpacklo_epi8(last, last), 0));
    }
    if (c) sum = row[c - 1];
#endif
    for (; c < cols; c++) row[c] = sum = (uint8_t)(sum + row[c]);
}

static void unpredict_left(uint8_t *s, uint64_t rows, uint64_t cols) {
    for (uint64_t r = 0; r < rows; r++) unpredict_row(s + r * cols, cols);
}

// f16 exponents are 5 bits; a corrupt stream (or predictor sum) could produce more.
static cllm_status check_f16_exps(const uint8_t *e, uint64_t n, uint64_t block) {
    uint8_t acc = 0;
    for (uint64_t i = 0; i < n; i++) acc |= e[i];
    RETURN_IF(acc & 0xe0u, CLLM_ERR_CORRUPT, "block %llu: f16 exponent symbol above 31",
              (unsigned long long)block);
    return CLLM_OK;
}

// Decodes block b of a checked payload. Int8 symbols land directly in `out`; lossless exponents
// go through `scratch` and are joined with the plane.
static cllm_status decode_one(const cllm_coded_desc *d, const cllm_payload_layout_t *lay,
                              const cllm_rans_dec_table *t, const uint8_t *payload, uint64_t b,
                              uint8_t *out, uint8_t *scratch) {
    const uint8_t *index = payload + lay->index_off;
    uint64_t off0 = cllm_load_le64(index + 8 * b), off1 = cllm_load_le64(index + 8 * b + 8);
    RETURN_IF(off0 > off1 || off1 > d->stream_bytes, CLLM_ERR_CORRUPT,
              "block %llu: index entries %llu..%llu outside the streams",
              (unsigned long long)b, (unsigned long long)off0, (unsigned long long)off1);
    const uint64_t r0 = b * d->rows_per_block;
    const uint64_t nr = d->rows - r0 < d->rows_per_block ? d->rows - r0 : d->rows_per_block;
    const uint64_t first = r0 * d->cols, n = nr * d->cols;
    uint8_t *syms = d->codec == CLLM_CODEC_INT8 ? out + first : scratch;
    cllm_status st = cllm_rans_decode_block(t, payload + lay->streams_off + off0,
                                            (size_t)(off1 - off0), syms, n);
    if (st != CLLM_OK) return cllm_error_context(st, "block %llu", (unsigned long long)b);
    if (d->predictor == CLLM_PRED_LEFT) unpredict_left(syms, nr, d->cols);
    if (d->codec == CLLM_CODEC_LOSSLESS) {
        if (d->dtype == CLLM_DTYPE_F16) TRY(check_f16_exps(syms, n, b));
        size_t esize = cllm_dtype_size((cllm_dtype)d->dtype);
        cllm_float_join(syms, payload + lay->side_off, d->dtype, first, n, out + first * esize);
    }
    return CLLM_OK;
}

cllm_status cllm_decode_blocks(const cllm_coded_desc *d, const cllm_rans_dec_table *t,
                               const uint8_t *payload, uint64_t payload_size, uint64_t block_begin,
                               uint64_t block_end, void *out, uint8_t *scratch) {
    RETURN_IF(!d || !payload || !out, CLLM_ERR_ARG, "decode blocks: NULL argument");
    cllm_payload_layout_t lay;
    TRY(cllm_payload_layout(d, &lay));
    RETURN_IF(payload_size != lay.total_size, CLLM_ERR_CORRUPT,
              "decode blocks: payload is %llu bytes, layout says %llu",
              (unsigned long long)payload_size, (unsigned long long)lay.total_size);
    if (d->codec == CLLM_CODEC_RAW) {  // a raw tensor is one block: [0, 1) copies it all
        RETURN_IF(block_begin > block_end || block_end > 1, CLLM_ERR_ARG,
                  "decode blocks: range [%llu, %llu) outside the 1 block of a raw tensor",
                  (unsigned long long)block_begin, (unsigned long long)block_end);
        if (block_end > block_begin) memcpy(out, payload, (size_t)lay.total_size);
        return CLLM_OK;
    }
    RETURN_IF(!t || t->scale_bits != d->scale_bits, CLLM_ERR_ARG,
              "decode blocks: missing table or scale_bits mismatch");
    RETURN_IF(block_begin > block_end || block_end > d->n_blocks, CLLM_ERR_ARG,
              "decode blocks: range [%llu, %llu) outside %llu blocks",
              (unsigned long long)block_begin, (unsigned long long)block_end,
              (unsigned long long)d->n_blocks);
    RETURN_IF(d->codec == CLLM_CODEC_LOSSLESS && !scratch, CLLM_ERR_ARG,
              "decode blocks: lossless needs scratch");
    for (uint64_t b = block_begin; b < block_end; b++)
        TRY(decode_one(d, &lay, t, payload, b, out, scratch));
    return CLLM_OK;
}

// Output capacities: decoded tensor bytes and int8 scales (all in bytes).
static cllm_status check_caps(const cllm_coded_desc *d, const cllm_payload_layout_t *lay,
                              size_t out_cap, const float *scales, size_t scales_cap) {
    uint64_t n = d->rows * d->cols;  // no overflow: the layout checked it
    uint64_t need = d->codec == CLLM_CODEC_INT8 ? n : n * cllm_dtype_size((cllm_dtype)d->dtype);
    RETURN_IF(out_cap < need, CLLM_ERR_ARG, "decode: output holds %zu bytes, tensor needs %llu",
              out_cap, (unsigned long long)need);
    if (d->codec == CLLM_CODEC_INT8 && scales)
        RETURN_IF(scales_cap < lay->side_size, CLLM_ERR_ARG,
                  "decode: scales buffer holds %zu bytes, tensor has %llu", scales_cap,
                  (unsigned long long)lay->side_size);
    return CLLM_OK;
}

// Decodes all blocks on nt threads, each with its own scratch of rows_per_block * cols bytes.
static cllm_status decode_parallel(const cllm_coded_desc *d, const cllm_rans_dec_table *t,
                                   const uint8_t *payload, uint64_t size, void *out, int nt) {
    cllm_par_error err = {CLLM_OK, {0}};
    const size_t scratch_size = d->codec == CLLM_CODEC_LOSSLESS
                                    ? (size_t)((uint64_t)d->rows_per_block * d->cols)
                                    : 1;
    if ((uint64_t)nt > d->n_blocks) nt = (int)d->n_blocks;
#pragma omp parallel num_threads(nt)
    {
        uint8_t *scratch = malloc(scratch_size);
        if (!scratch)
            cllm_par_error_set(&err, CLLM_FAIL(CLLM_ERR_NOMEM,
                                               "decode: cannot allocate %zu bytes", scratch_size));
#pragma omp for schedule(dynamic, 1)
        for (uint64_t b = 0; b < d->n_blocks; b++) {
            if (!scratch || cllm_par_error_failed(&err)) continue;
            cllm_status st = cllm_decode_blocks(d, t, payload, size, b, b + 1, out, scratch);
            if (st != CLLM_OK) cllm_par_error_set(&err, st);
        }
        free(scratch);
    }
    RETURN_IF(err.st != CLLM_OK, err.st, "%s", err.msg);
    return CLLM_OK;
}

cllm_status cllm_decode_tensor(const cllm_tensor_info *info, const uint8_t *payload,
                               size_t payload_size, void *out, size_t out_cap, float *scales,
                               size_t scales_cap, int n_threads) {
    RETURN_IF(!info || !out || (!payload && payload_size), CLLM_ERR_ARG,
              "decode: NULL argument");
    cllm_coded_desc d;
    TRY(cllm_desc_from_payload(info, payload, payload_size, &d));
    TRY(cllm_payload_check(&d, payload, payload_size));
    cllm_payload_layout_t lay;
    TRY(cllm_payload_layout(&d, &lay));
    TRY(check_caps(&d, &lay, out_cap, scales, scales_cap));
    if (d.codec == CLLM_CODEC_RAW) {
        memcpy(out, payload, payload_size);
        return CLLM_OK;
    }
    uint16_t freq[256];
    for (int s = 0; s < 256; s++) freq[s] = cllm_load_le16(payload + lay.freq_off + 2 * s);
    cllm_rans_dec_table *t = malloc(sizeof *t);
    RETURN_IF(!t, CLLM_ERR_NOMEM, "decode: cannot allocate the decode table");
    cllm_status st = cllm_rans_dec_table_init(t, freq, d.scale_bits);
    if (st == CLLM_OK)
        st = decode_parallel(&d, t, payload, payload_size, out,
                             n_threads > 0 ? n_threads : omp_get_max_threads());
    free(t);
    TRY(st);
    if (d.codec == CLLM_CODEC_INT8 && scales)
        memcpy(scales, payload + lay.side_off, (size_t)lay.side_size);
    return CLLM_OK;
}
