// Whole-tensor encoder: symbols (float split or int8 quantisation), optional LEFT predictor,
// histogram, frequency table, blocks coded in parallel, payload assembled per cllm_payload.h.
#include "cllm_codec.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static int resolve_threads(int n_threads) {
    return n_threads > 0 ? n_threads : omp_get_max_threads();
}

// LEFT predictor in place: coded(r, c) = sym(r, c) - sym(r, c - 1) mod 256, sym(r, -1) = 0.
// The left neighbour is carried in a register (reading it back from the row would wait on the
// store just made).
static void predict_left(uint8_t *s, uint64_t rows, uint64_t cols) {
    for (uint64_t r = 0; r < rows; r++) {
        uint8_t *row = s + r * cols, prev = 0;
        for (uint64_t c = 0; c < cols; c++) {
            const uint8_t cur = row[c];
            row[c] = (uint8_t)(cur - prev);
            prev = cur;
        }
    }
}

// Counts of s[0..n) added to counts. Four sub-histograms take consecutive bytes, so a run of
// equal symbols (common: the int8 zero) does not serialise on one counter's store-to-load
// latency. uint32 counters are flushed every 2^30 bytes, before any could overflow.
static void histogram_range(const uint8_t *s, uint64_t n, uint64_t counts[256]) {
    uint32_t sub[4][256];
    for (uint64_t done = 0; done < n;) {
        const uint64_t len = n - done < ((uint64_t)1 << 30) ? n - done : (uint64_t)1 << 30;
        const uint8_t *c = s + done;
        memset(sub, 0, sizeof sub);
        uint64_t i = 0;
        for (; i + 4 <= len; i += 4) {
            sub[0][c[i]]++;
            sub[1][c[i + 1]]++;
            sub[2][c[i + 2]]++;
            sub[3][c[i + 3]]++;
        }
        for (; i < len; i++) sub[0][c[i]]++;
        for (int k = 0; k < 256; k++)
            counts[k] += (uint64_t)sub[0][k] + sub[1][k] + sub[2][k] + sub[3][k];
        done += len;
    }
}

static void histogram(const uint8_t *s, uint64_t n, int nt, uint64_t counts[256]) {
    memset(counts, 0, 256 * sizeof counts[0]);
#pragma omp parallel num_threads(nt)
    {
        uint64_t local[256] = {0};
        const uint64_t t = (uint64_t)omp_get_thread_num(), k = (uint64_t)omp_get_num_threads();
        const uint64_t lo = n / k * t + (t < n % k ? t : n % k);
        const uint64_t len = n / k + (t < n % k);
        histogram_range(s + lo, len, local);
#pragma omp critical(cllm_codec_hist)
        for (int b = 0; b < 256; b++) counts[b] += local[b];
    }
}

// Symbols of the coded codecs plus the side section (plane or scales, zero-initialised).
static cllm_status make_symbols(const void *src, const cllm_coded_desc *d,
                                const cllm_payload_layout_t *lay, uint8_t **syms, uint8_t **side) {
    uint64_t n = d->rows * d->cols;
    *syms = malloc(n ? (size_t)n : 1);
    *side = calloc(lay->side_size ? (size_t)lay->side_size : 1, 1);
    RETURN_IF(!*syms || !*side, CLLM_ERR_NOMEM, "encode: cannot allocate %llu symbols",
              (unsigned long long)n);
    if (d->codec == CLLM_CODEC_LOSSLESS) {
        cllm_float_split(src, d->dtype, n, *syms, *side);
    } else {
        TRY(cllm_quantize_int8(src, (cllm_dtype)d->dtype, d->rows, d->cols, d->group_size,
                               (int8_t *)*syms, (float *)(void *)*side));
    }
    if (d->predictor == CLLM_PRED_LEFT) predict_left(*syms, d->rows, d->cols);
    return CLLM_OK;
}

// Codes every block into `tmp` at its bound-sized slot; sizes[b] gets its coded size.
static cllm_status encode_blocks(const cllm_coded_desc *d, const cllm_rans_enc_table *t,
                                 const uint8_t *syms, int nt, uint8_t *tmp, const uint64_t *slot,
                                 uint64_t *sizes) {
    cllm_par_error err = {CLLM_OK, {0}};
    const uint64_t per = (uint64_t)d->rows_per_block * d->cols;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (uint64_t b = 0; b < d->n_blocks; b++) {
        uint64_t first = b * per;
        uint64_t count = d->rows * d->cols - first < per ? d->rows * d->cols - first : per;
        size_t written = 0;
        cllm_status st = cllm_rans_encode_block(t, syms + first, count, tmp + slot[b],
                                                (size_t)(slot[b + 1] - slot[b]), &written);
        if (st != CLLM_OK) cllm_par_error_set(&err, st);
        sizes[b] = written;
    }
    RETURN_IF(err.st != CLLM_OK, err.st, "%s", err.msg);
    return CLLM_OK;
}

// Chooses the blocking: whole rows, about `block_symbols` symbols per block.
static cllm_status choose_blocks(cllm_coded_desc *d, uint64_t block_symbols) {
    uint64_t target = block_symbols ? block_symbols
                      : d->codec == CLLM_CODEC_LOSSLESS ? CLLM_RANS_LOSSLESS_BLOCK_SYMBOLS
                                                          : CLLM_RANS_DEFAULT_BLOCK_SYMBOLS;
    uint64_t rpb = target / d->cols + (target % d->cols != 0);
    if (rpb < 1) rpb = 1;
    if (rpb > d->rows) rpb = d->rows;
    if (rpb > UINT32_MAX) rpb = UINT32_MAX;
    d->rows_per_block = (uint32_t)rpb;
    d->n_blocks = d->rows / rpb + (d->rows % rpb != 0);
    return CLLM_OK;
}

// Everything the coded encoder allocates, freed in one place whatever the outcome.
typedef struct enc_work {
    uint8_t *syms, *side, *tmp;
    uint64_t *slot, *sizes;
} enc_work;

// Per-block slots in `tmp` sized by cllm_rans_block_bound, so blocks can be coded in parallel.
static cllm_status plan_slots(const cllm_coded_desc *d, enc_work *w) {
    w->slot = malloc((size_t)(d->n_blocks + 1) * sizeof(uint64_t));
    w->sizes = calloc((size_t)d->n_blocks, sizeof(uint64_t));
    RETURN_IF(!w->slot || !w->sizes, CLLM_ERR_NOMEM, "encode: cannot allocate the block plan");
    const uint64_t per = (uint64_t)d->rows_per_block * d->cols, n = d->rows * d->cols;
    w->slot[0] = 0;
    for (uint64_t b = 0; b < d->n_blocks; b++) {
        uint64_t count = n - b * per < per ? n - b * per : per;
        RETURN_IF(cllm_add_overflow_u64(w->slot[b], cllm_rans_block_bound(count), &w->slot[b + 1]),
                  CLLM_ERR_ARG, "encode: tensor too large");
    }
    RETURN_IF(w->slot[d->n_blocks] > SIZE_MAX, CLLM_ERR_NOMEM, "encode: tensor too large");
    w->tmp = malloc((size_t)w->slot[d->n_blocks]);
    RETURN_IF(!w->tmp, CLLM_ERR_NOMEM, "encode: cannot allocate %llu bytes of block buffers",
              (unsigned long long)w->slot[d->n_blocks]);
    return CLLM_OK;
}

// Payload = freq | index | streams | pad | side | pad (cllm_payload.h); calloc makes padding zero.
static cllm_status assemble(const cllm_coded_desc *d, const uint16_t freq[256],
                            const enc_work *w, cllm_coded *out) {
    cllm_payload_layout_t lay;
    TRY(cllm_payload_layout(d, &lay));
    RETURN_IF(lay.total_size > SIZE_MAX, CLLM_ERR_NOMEM, "encode: payload too large");
    uint8_t *p = calloc((size_t)lay.total_size, 1);
    RETURN_IF(!p, CLLM_ERR_NOMEM, "encode: cannot allocate a payload of %llu bytes",
              (unsigned long long)lay.total_size);
    for (int s = 0; s < 256; s++) cllm_store_le16(p + lay.freq_off + 2 * s, freq[s]);
    uint64_t off = 0;
    for (uint64_t b = 0; b <= d->n_blocks; b++) {
        cllm_store_le64(p + lay.index_off + 8 * b, off);
        if (b == d->n_blocks) break;
        memcpy(p + lay.streams_off + off, w->tmp + w->slot[b], (size_t)w->sizes[b]);
        off += w->sizes[b];
    }
    memcpy(p + lay.side_off, w->side, (size_t)lay.side_size);
    out->payload = p;
    out->payload_size = (size_t)lay.total_size;
    return CLLM_OK;
}

_Static_assert(CLLM_SCALE_BITS_MIN == CLLM_RANS_MIN_SCALE_BITS &&
                   CLLM_SCALE_BITS_MAX == CLLM_RANS_MAX_SCALE_BITS,
               "public scale range matches the layout");

// The table for a histogram. With a requested scale (`fixed`), that one. Otherwise the codec's
// range is searched from 12 bits up: lossless stays at 12 (its exponent modes exceed the
// CLLM_RANS_MAX_FREQ bound of larger scales), int8 goes up to CLLM_RANS_INT8_SCALE_BITS. A larger
// scale is taken only when it saves more than 0.05% of the coded bits, since its decode table is
// larger (2^scale_bits entries in a GPU's shared memory).
static cllm_status choose_table(const uint64_t counts[256], cllm_coded_desc *d, int fixed,
                                uint16_t freq[256]) {
    if (fixed) return cllm_freq_build(counts, d->scale_bits, freq);
    const uint32_t top = d->codec == CLLM_CODEC_INT8 ? CLLM_RANS_INT8_SCALE_BITS
                                                     : CLLM_RANS_DEFAULT_SCALE_BITS;
    uint32_t sb = CLLM_RANS_DEFAULT_SCALE_BITS;
    TRY(cllm_freq_build(counts, sb, freq));
    double best = cllm_freq_cost_bits(counts, freq, sb);
    for (uint32_t k = sb + 1; k <= top; k++) {
        uint16_t f[256];
        if (cllm_freq_build(counts, k, f) != CLLM_OK) continue;  // too few symbols for 2^k
        const double c = cllm_freq_cost_bits(counts, f, k);
        if (c >= best * (1 - 5e-4)) continue;
        best = c, sb = k;
        memcpy(freq, f, sizeof f);
    }
    d->scale_bits = sb;
    return CLLM_OK;
}

static cllm_status encode_coded_work(const void *src, cllm_coded_desc *d, int fixed_scale,
                                     int nt, enc_work *w, cllm_coded *out) {
    cllm_payload_layout_t lay;
    d->stream_bytes = d->n_blocks * CLLM_RANS_STATE_BYTES;  // placeholder: side size only
    TRY(cllm_payload_layout(d, &lay));
    TRY(make_symbols(src, d, &lay, &w->syms, &w->side));
    const uint64_t n = d->rows * d->cols;
    uint64_t counts[256];
    histogram(w->syms, n, nt, counts);
    out->info.symbol_entropy = cllm_entropy_bits(counts);
    uint16_t freq[256];
    TRY(choose_table(counts, d, fixed_scale, freq));
    cllm_rans_enc_table table;
    TRY(cllm_rans_enc_table_init(&table, freq, d->scale_bits));
    TRY(plan_slots(d, w));
    TRY(encode_blocks(d, &table, w->syms, nt, w->tmp, w->slot, w->sizes));
    d->stream_bytes = 0;
    for (uint64_t b = 0; b < d->n_blocks; b++) d->stream_bytes += w->sizes[b];
    return assemble(d, freq, w, out);
}

static cllm_status check_params(const void *src, cllm_dtype dtype, uint64_t rows, uint64_t cols,
                                const cllm_encode_params *p) {
    RETURN_IF(!src || !p, CLLM_ERR_ARG, "encode: NULL argument");
    RETURN_IF(cllm_dtype_size(dtype) == 0, CLLM_ERR_ARG, "encode: unknown dtype %d", (int)dtype);
    RETURN_IF((unsigned)p->codec >= CLLM_CODEC_COUNT_, CLLM_ERR_ARG, "encode: unknown codec %d",
              (int)p->codec);
    RETURN_IF(p->codec != CLLM_CODEC_RAW && cllm_float_raw_bits(dtype) == 0, CLLM_ERR_ARG,
              "encode: codec %s needs an f32/f16/bf16 tensor, not %s", cllm_codec_name(p->codec),
              cllm_dtype_name(dtype));
    RETURN_IF(rows < 1 || cols < 1, CLLM_ERR_ARG, "encode: empty shape %llux%llu",
              (unsigned long long)rows, (unsigned long long)cols);
    uint64_t n, bytes;
    RETURN_IF(cllm_mul_overflow_u64(rows, cols, &n) ||
                  cllm_mul_overflow_u64(n, cllm_dtype_size(dtype), &bytes) || bytes > SIZE_MAX / 4,
              CLLM_ERR_ARG, "encode: shape %llux%llu too large", (unsigned long long)rows,
              (unsigned long long)cols);
    RETURN_IF(p->predictor >= CLLM_PRED_COUNT_, CLLM_ERR_ARG, "encode: unknown predictor %u",
              p->predictor);
    RETURN_IF(p->scale_bits != 0 && (p->scale_bits < CLLM_RANS_MIN_SCALE_BITS ||
                                     p->scale_bits > CLLM_RANS_MAX_SCALE_BITS),
              CLLM_ERR_ARG, "encode: scale_bits %u outside [%d, %d]", p->scale_bits,
              CLLM_RANS_MIN_SCALE_BITS, CLLM_RANS_MAX_SCALE_BITS);
    RETURN_IF(p->codec == CLLM_CODEC_INT8 && p->group_size > cols, CLLM_ERR_ARG,
              "encode: group_size %u larger than cols %llu", p->group_size,
              (unsigned long long)cols);
    return CLLM_OK;
}

cllm_status cllm_encode_tensor(const void *src, cllm_dtype dtype, uint64_t rows, uint64_t cols,
                               const cllm_encode_params *params, cllm_coded *out) {
    RETURN_IF(!out, CLLM_ERR_ARG, "encode: NULL output");
    memset(out, 0, sizeof *out);
    TRY(check_params(src, dtype, rows, cols, params));
    cllm_coded_desc d = {.codec = (uint32_t)params->codec, .dtype = (uint32_t)dtype, .rows = rows,
                         .cols = cols};
    if (params->codec == CLLM_CODEC_RAW) {
        size_t bytes = (size_t)(rows * cols) * cllm_dtype_size(dtype);
        out->payload = malloc(bytes);
        RETURN_IF(!out->payload, CLLM_ERR_NOMEM, "encode: cannot allocate %zu bytes", bytes);
        memcpy(out->payload, src, bytes);
        out->payload_size = bytes;
    } else {
        // 0: chosen from the histogram (choose_table); the default until then, for the layout
        d.scale_bits = params->scale_bits ? params->scale_bits : CLLM_RANS_DEFAULT_SCALE_BITS;
        d.predictor = params->predictor;
        if (params->codec == CLLM_CODEC_INT8)
            d.group_size = params->group_size ? params->group_size : (uint32_t)cols;
        RETURN_IF(params->codec == CLLM_CODEC_INT8 && cols > UINT32_MAX && !params->group_size,
                  CLLM_ERR_UNSUPPORTED, "encode: per-channel int8 needs cols < 2^32");
        TRY(choose_blocks(&d, params->block_symbols));
        enc_work w = {0};
        cllm_status st = encode_coded_work(src, &d, params->scale_bits != 0,
                                           resolve_threads(params->n_threads), &w, out);
        free(w.syms), free(w.side), free(w.tmp), free(w.slot), free(w.sizes);
        if (st != CLLM_OK) {
            cllm_coded_free(out);
            return st;
        }
    }
    cllm_desc_to_info(&d, &out->info);
    out->info.ndim = 2;
    out->info.shape[0] = rows;
    out->info.shape[1] = cols;
    out->info.data_size = out->payload_size;
    return CLLM_OK;
}

void cllm_coded_free(cllm_coded *c) {
    if (!c) return;
    free(c->payload);
    c->payload = NULL;
    c->payload_size = 0;
}
