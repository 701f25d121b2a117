// int8 quantisation: rounding of halves away from zero, zero groups, clamping, groups that do not
// divide the row, non-finite rejection, and the exact float arithmetic documented in cllm_quant.c.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cllm_half.h"
#include "codec/cllm_codec.h"
#include "testutil.h"

// max|w| = 127 makes scale exactly 1, so q = roundf(w): halves go away from zero.
static void test_rounding_halves(void **state) {
    (void)state;
    const float w[8] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.49f, -126.5f, 0.0f};
    const int8_t expect[8] = {127, 3, -3, 1, -1, 1, -127, 0};
    int8_t q[8];
    float scale;
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 1, 8, 0, q, &scale), CLLM_OK);
    assert_true(scale == 1.0f);
    assert_memory_equal(q, expect, 8);
}

static void test_zero_rows_and_groups(void **state) {
    (void)state;
    float w[2 * 6] = {0, 0, 0, 0, 0, 0, /* row 1: */ 0, 0, 0, 1.0f, -0.0f, 0.25f};
    int8_t q[12];
    float scales[2 * 2];
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 2, 6, 3, q, scales), CLLM_OK);
    assert_true(scales[0] == 0.0f && scales[1] == 0.0f && scales[2] == 0.0f);
    assert_true(scales[3] == 1.0f / 127.0f);
    for (int i = 0; i < 9; i++) assert_int_equal(q[i], 0);
    assert_int_equal(q[9], 127);
    assert_int_equal(q[10], 0);
    assert_int_equal(q[11], 32);  // 0.25 / (1/127) = 31.75 -> 32
}

// A subnormal maximum whose scale rounds down makes w / scale exceed 127: clamped. A maximum so
// small that amax / 127 underflows to 0 is a zero group.
static void test_clamping_and_underflow(void **state) {
    (void)state;
    float w[3] = {190 * 0x1p-149f, -190 * 0x1p-149f, 1 * 0x1p-149f};
    int8_t q[3];
    float scale;
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 1, 3, 0, q, &scale), CLLM_OK);
    assert_true(scale == 0x1p-149f);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -127);
    assert_int_equal(q[2], 1);
    float tiny[2] = {3 * 0x1p-149f, 0};
    assert_int_equal(cllm_quantize_int8(tiny, CLLM_DTYPE_F32, 1, 2, 0, q, &scale), CLLM_OK);
    assert_true(scale == 0.0f);
    assert_int_equal(q[0], 0);
}

static void test_non_finite_rejected(void **state) {
    (void)state;
    float w[4] = {1, 2, NAN, 3};
    int8_t q[4];
    float s[4];
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 1, 4, 0, q, s), CLLM_ERR_UNSUPPORTED);
    w[2] = INFINITY;
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 2, 2, 0, q, s), CLLM_ERR_UNSUPPORTED);
    w[2] = -INFINITY;
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 4, 1, 1, q, s), CLLM_ERR_UNSUPPORTED);
    uint16_t h[2] = {0x3c00, 0x7e00};  // f16 1.0, NaN
    assert_int_equal(cllm_quantize_int8(h, CLLM_DTYPE_F16, 1, 2, 0, q, s), CLLM_ERR_UNSUPPORTED);
    h[1] = 0x7f80;  // bf16 +inf
    assert_int_equal(cllm_quantize_int8(h, CLLM_DTYPE_BF16, 1, 2, 0, q, s), CLLM_ERR_UNSUPPORTED);
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 1, 4, 5, q, s), CLLM_ERR_ARG);
    assert_int_equal(cllm_quantize_int8(w, CLLM_DTYPE_F32, 0, 4, 0, q, s), CLLM_ERR_ARG);
}

// Random tensors in every dtype and group size agree with the documented arithmetic, and the
// dequantised error stays within half a step.
static void test_matches_reference(void **state) {
    (void)state;
    const uint64_t rows = 7, cols = 45;
    uint64_t seed = 3;
    float w[7 * 45];
    uint16_t hb[7 * 45], hh[7 * 45];
    for (int i = 0; i < 7 * 45; i++) {
        w[i] = (float)(cllm_test_normal(&seed) * 0.02 * (1 + i % 5));
        hb[i] = cllm_f32_to_bf16(w[i]);
        hh[i] = cllm_f32_to_f16(w[i]);
    }
    static const uint32_t groups[] = {0, 1, 8, 32, 45};
    for (size_t gi = 0; gi < 5; gi++) {
        for (int dt = 0; dt <= CLLM_DTYPE_BF16; dt++) {
            const void *src = dt == CLLM_DTYPE_F32 ? (const void *)w
                              : dt == CLLM_DTYPE_BF16 ? (const void *)hb : (const void *)hh;
            uint32_t g = groups[gi] ? groups[gi] : (uint32_t)cols;
            uint64_t gpr = (cols + g - 1) / g;
            int8_t q[7 * 45];
            float scales[7 * 45];
            assert_int_equal(cllm_quantize_int8(src, (cllm_dtype)dt, rows, cols, groups[gi], q,
                                                scales), CLLM_OK);
            for (uint64_t r = 0; r < rows; r++) {
                for (uint64_t c = 0; c < cols; c++) {
                    uint64_t i = r * cols + c;
                    float x = dt == CLLM_DTYPE_F32 ? w[i]
                              : dt == CLLM_DTYPE_BF16 ? cllm_bf16_to_f32(hb[i])
                                                      : cllm_f16_to_f32(hh[i]);
                    float amax = 0;
                    uint64_t c0 = c / g * g;
                    for (uint64_t k = c0; k < c0 + g && k < cols; k++) {
                        uint64_t j = r * cols + k;
                        float y = dt == CLLM_DTYPE_F32 ? w[j]
                                  : dt == CLLM_DTYPE_BF16 ? cllm_bf16_to_f32(hb[j])
                                                          : cllm_f16_to_f32(hh[j]);
                        if (fabsf(y) > amax) amax = fabsf(y);
                    }
                    float s = amax / 127.0f;
                    assert_true(scales[r * gpr + c / g] == s);
                    float ref = s == 0 ? 0 : fminf(127, fmaxf(-127, roundf(x / s)));
                    assert_int_equal(q[i], (int)ref);
                    assert_true(fabsf(q[i] * s - x) <= 0.5f * s * 1.0001f);
                }
            }
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding_halves),       cmocka_unit_test(test_zero_rows_and_groups),
        cmocka_unit_test(test_clamping_and_underflow), cmocka_unit_test(test_non_finite_rejected),
        cmocka_unit_test(test_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
