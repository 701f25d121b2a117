// Frequency tables: normalisation of a histogram to a power-of-two total that minimises the coded
// size, validation of untrusted tables, and the encoder/decoder lookup tables.
#include "cllm_codec.h"

#include <math.h>
#include <string.h>

double cllm_entropy_bits(const uint64_t counts[256]) {
    double total = 0, sum = 0;
    for (int s = 0; s < 256; s++) total += (double)counts[s];
    if (total <= 0) return 0;
    for (int s = 0; s < 256; s++) {
        if (!counts[s]) continue;
        double p = (double)counts[s] / total;
        sum -= p * log2(p);
    }
    return sum;
}

double cllm_freq_cost_bits(const uint64_t counts[256], const uint16_t freq[256],
                           uint32_t scale_bits) {
    double bits = 0;
    for (int s = 0; s < 256; s++) {
        if (!counts[s]) continue;
        if (!freq[s]) return INFINITY;
        bits += (double)counts[s] * ((double)scale_bits - log2((double)freq[s]));
    }
    return bits;
}

// Change of coded size (bits) when freq[s] moves from f to f + d (d = +1 or -1).
static double delta_cost(double count, uint32_t f, int d) {
    return count * (log2((double)f) - log2((double)f + d));
}

// The best symbol to increment (most bits saved, f < CLLM_RANS_MAX_FREQ) and to decrement (fewest
// bits lost, f > 1).
static void best_moves(const uint64_t counts[256], const uint16_t freq[256], int *inc,
                       double *inc_gain, int *dec, double *dec_loss) {
    *inc = -1, *dec = -1;
    *inc_gain = 0, *dec_loss = INFINITY;
    for (int s = 0; s < 256; s++) {
        if (!counts[s]) continue;
        if (freq[s] < CLLM_RANS_MAX_FREQ) {
            double g = -delta_cost((double)counts[s], freq[s], +1);
            if (g > *inc_gain) *inc_gain = g, *inc = s;
        }
        if (freq[s] > 1) {
            double l = delta_cost((double)counts[s], freq[s], -1);
            if (l < *dec_loss) *dec_loss = l, *dec = s;
        }
    }
}

// Minimises sum count[s] * -log2(freq[s] / M) subject to sum freq = M and 1 <= freq[s] <=
// CLLM_RANS_MAX_FREQ where present. The cost is separable and convex in each freq[s], so
// single-unit moves chosen greedily by their marginal cost reach the integer optimum: first fix
// the total, then trade units while an increment saves more than a decrement loses.
cllm_status cllm_freq_build(const uint64_t counts[256], uint32_t scale_bits, uint16_t freq[256]) {
    RETURN_IF(scale_bits < CLLM_RANS_MIN_SCALE_BITS || scale_bits > CLLM_RANS_MAX_SCALE_BITS,
              CLLM_ERR_ARG, "scale_bits %u outside [%d, %d]", scale_bits,
              CLLM_RANS_MIN_SCALE_BITS, CLLM_RANS_MAX_SCALE_BITS);
    const uint32_t m = 1u << scale_bits;
    double total = 0;
    uint32_t present = 0;
    for (int s = 0; s < 256; s++) total += (double)counts[s], present += counts[s] != 0;
    RETURN_IF(total <= 0, CLLM_ERR_ARG, "frequency table of an empty histogram");
    RETURN_IF((uint64_t)present * CLLM_RANS_MAX_FREQ < m, CLLM_ERR_UNSUPPORTED,
              "frequency table: %u symbols cannot fill 2^%u slots at most %u each", present,
              scale_bits, CLLM_RANS_MAX_FREQ);
    int64_t sum = 0;
    for (int s = 0; s < 256; s++) {
        double f = counts[s] ? floor((double)counts[s] * m / total + 0.5) : 0;
        if (counts[s] && f < 1) f = 1;
        if (f > CLLM_RANS_MAX_FREQ) f = CLLM_RANS_MAX_FREQ;
        freq[s] = (uint16_t)f;
        sum += (int64_t)f;
    }
    // At most 256 symbols are present and M >= 256, so a decrement is always available while
    // sum > M; present * MAX_FREQ >= M, so an increment is available while sum < M.
    for (int guard = 0; sum != (int64_t)m && guard < (1 << 20); guard++) {
        int inc, dec;
        double gain, loss;
        best_moves(counts, freq, &inc, &gain, &dec, &loss);
        if (sum > (int64_t)m && dec >= 0) freq[dec]--, sum--;
        else if (sum < (int64_t)m && inc >= 0) freq[inc]++, sum++;
        else break;
    }
    RETURN_IF(sum != (int64_t)m, CLLM_ERR_INTERNAL, "frequency normalisation did not converge");
    for (uint32_t guard = 0; guard < m; guard++) {
        int inc, dec;
        double gain, loss;
        best_moves(counts, freq, &inc, &gain, &dec, &loss);
        if (inc < 0 || dec < 0 || inc == dec || gain <= loss * (1 + 1e-12)) break;
        freq[inc]++;
        freq[dec]--;
    }
    return CLLM_OK;
}

cllm_status cllm_freq_validate(const uint16_t freq[256], uint32_t scale_bits) {
    RETURN_IF(scale_bits < CLLM_RANS_MIN_SCALE_BITS || scale_bits > CLLM_RANS_MAX_SCALE_BITS,
              CLLM_ERR_CORRUPT, "frequency table: scale_bits %u outside [%d, %d]", scale_bits,
              CLLM_RANS_MIN_SCALE_BITS, CLLM_RANS_MAX_SCALE_BITS);
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        RETURN_IF(freq[s] > CLLM_RANS_MAX_FREQ, CLLM_ERR_CORRUPT,
                  "frequency table: symbol %d has frequency %u > %u", s, freq[s],
                  CLLM_RANS_MAX_FREQ);
        sum += freq[s];  // <= 256 * 4096: no overflow
    }
    RETURN_IF(sum != (1u << scale_bits), CLLM_ERR_CORRUPT,
              "frequency table sums to %u, not 2^%u = %u", sum, scale_bits, 1u << scale_bits);
    return CLLM_OK;
}

cllm_status cllm_rans_enc_table_init(cllm_rans_enc_table *t, const uint16_t freq[256],
                                     uint32_t scale_bits) {
    RETURN_IF(!t || !freq, CLLM_ERR_ARG, "encoder table: NULL argument");
    cllm_status st = cllm_freq_validate(freq, scale_bits);
    RETURN_IF(st != CLLM_OK, CLLM_ERR_ARG, "encoder table: %s", cllm_last_error());
    t->scale_bits = scale_bits;
    uint32_t cum = 0;
    for (int s = 0; s < 256; s++) {
        t->freq[s] = freq[s];
        t->cum[s] = cum;
        // x_max = ((L >> scale_bits) << 16) * freq: the largest state that, after encoding,
        // stays below 2^32; 0 for absent symbols (never encoded).
        t->x_max[s] = (uint64_t)freq[s] << (32 - scale_bits);
        cum += freq[s];
    }
    return CLLM_OK;
}

cllm_status cllm_rans_dec_table_init(cllm_rans_dec_table *t, const uint16_t freq[256],
                                     uint32_t scale_bits) {
    RETURN_IF(!t || !freq, CLLM_ERR_ARG, "decoder table: NULL argument");
    TRY(cllm_freq_validate(freq, scale_bits));
    t->scale_bits = scale_bits;
    uint32_t cum = 0;
    for (uint32_t s = 0; s < 256; s++) {
        for (uint32_t k = 0; k < freq[s]; k++) t->slot[cum + k] = CLLM_RANS_SLOT(s, freq[s], k);
        cum += freq[s];
    }
    return CLLM_OK;
}
