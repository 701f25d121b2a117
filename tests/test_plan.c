// The weight pipeline's schedule (src/engine/cllm_sched.c), which the CUDA backend builds its
// rings from and its planner simulates: ring placement with wrap-around, decode streams, copy
// units shared by the classifier's chunks, and the waits that keep a range from being reused
// while an earlier user still holds it. No GPU needed.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine/cllm_sched.h"
#include "testutil.h"

enum { RAW = CLLM_SCHED_RAW, DEV = CLLM_SCHED_DEVICE, STR = CLLM_SCHED_STREAM };

static cllm_sched_group grp(int place, int opens, uint64_t dec, uint64_t unit) {
    cllm_sched_group g;
    memset(&g, 0x5a, sizeof g);  // outputs must all be written
    g.place = place, g.opens_unit = opens, g.dec_bytes = dec, g.unit_bytes = unit;
    return g;
}

// Two DEVICE layers of four groups (30, 10, 20, 10 bytes) in a 50-byte scratch ring, 4 streams.
static void test_device_ring(void **state) {
    (void)state;
    const uint64_t sz[4] = {30, 10, 20, 10};
    cllm_sched_group g[8];
    cllm_sched_copy c[8];
    for (int i = 0; i < 8; i++) g[i] = grp(DEV, 0, sz[i % 4], 0);
    assert_int_equal(cllm_sched_build(g, 8, c, 50, 0, 4), 0);
    const uint64_t off[8] = {0, 30, 0, 20, 0, 30, 0, 20};
    const int wait[8] = {-1, -1, 0, 0, 3, 1, 4, 4};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(g[i].off, off[i]);
        assert_int_equal(g[i].dec, i % 4);
        assert_int_equal(g[i].copy, -1);
        assert_int_equal(g[i].wait_release, wait[i]);
    }
    // Two streams: groups alternate.
    assert_int_equal(cllm_sched_build(g, 8, c, 50, 0, 2), 0);
    for (int i = 0; i < 8; i++) assert_int_equal(g[i].dec, i % 2);
}

// RAW groups take no range, no stream and no index shift: waits name the sim's own indices.
static void test_raw_skipped(void **state) {
    (void)state;
    cllm_sched_group g[5] = {grp(DEV, 0, 40, 0), grp(RAW, 0, 99, 0), grp(RAW, 0, 99, 0),
                             grp(DEV, 0, 40, 0), grp(DEV, 0, 10, 0)};
    cllm_sched_copy c[5];
    assert_int_equal(cllm_sched_build(g, 5, c, 64, 0, 4), 0);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(g[i].off, 0);
        assert_int_equal(g[i].dec, 0);
        assert_int_equal(g[i].copy, -1);
        assert_int_equal(g[i].wait_release, -1);
    }
    assert_int_equal(g[3].off, 0);  // 40 + 40 > 64: wraps
    assert_int_equal(g[3].wait_release, 0);
    assert_int_equal(g[3].dec, 1);  // the second non-RAW group
    assert_int_equal(g[4].off, 40);
    assert_int_equal(g[4].wait_release, -1);  // [40, 50) overlaps neither [0, 40) nor RAW
    assert_int_equal(g[4].dec, 2);
}

// A STREAM layer (each group opens a unit) then a STREAM classifier of three chunks sharing one
// unit: all decode on stream 0, units wrap in the staging ring and wait for the last decode of
// the unit whose range they reuse.
static void test_stream_units(void **state) {
    (void)state;
    cllm_sched_group g[5] = {grp(STR, 1, 16, 8), grp(STR, 1, 16, 8), grp(STR, 1, 16, 12),
                             grp(STR, 0, 16, 0), grp(STR, 0, 8, 0)};
    cllm_sched_copy c[5];
    assert_int_equal(cllm_sched_build(g, 5, c, 48, 20, 4), 3);
    const int copy[5] = {0, 1, 2, 2, 2};
    const uint64_t off[5] = {0, 16, 32, 0, 16};
    const int wait[5] = {-1, -1, -1, 0, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g[i].dec, 0);
        assert_int_equal(g[i].copy, copy[i]);
        assert_int_equal(g[i].off, off[i]);
        assert_int_equal(g[i].wait_release, wait[i]);
    }
    assert_int_equal(c[0].off, 0);
    assert_int_equal(c[1].off, 8);
    assert_int_equal(c[2].off, 0);  // 16 + 12 > 20: wraps onto units 0 and 1
    assert_int_equal(c[2].size, 12);
    assert_int_equal(c[0].last_group, 0);
    assert_int_equal(c[2].last_group, 4);  // the classifier's last chunk
    assert_int_equal(c[0].wait_group, -1);
    assert_int_equal(c[1].wait_group, -1);
    assert_int_equal(c[2].wait_group, 1);  // the latest unit it overlaps: unit 1, group 1
}

// Random mixes: every range inside its ring; wait_release is the latest earlier overlapping
// non-RAW group (so no range is reused before its last user released it); same for units.
static void test_random_invariants(void **state) {
    (void)state;
    srand(7);
    for (int trial = 0; trial < 300; trial++) {
        const int n = 1 + rand() % 40, nds = 1 + rand() % 4;
        const uint64_t scratch = 64 + (uint64_t)(rand() % 200);
        const uint64_t staging = 32 + (uint64_t)(rand() % 100);
        cllm_sched_group g[40];
        cllm_sched_copy c[40];
        for (int i = 0; i < n; i++)
            g[i] = grp(rand() % 3, rand() % 4 != 0, 1 + (uint64_t)rand() % scratch,
                       1 + (uint64_t)rand() % staging);
        if (g[0].place == STR) g[0].opens_unit = 1;
        for (int i = 1; i < n; i++)  // a group that opens no unit follows one of its unit
            if (g[i].place == STR && !g[i].opens_unit && g[i - 1].place != STR) g[i].opens_unit = 1;
        const int n_c = cllm_sched_build(g, n, c, scratch, staging, nds);
        for (int i = 0; i < n; i++) {
            if (g[i].place == RAW) continue;
            assert_true(g[i].off + g[i].dec_bytes <= scratch);
            assert_true(g[i].dec >= 0 && g[i].dec < nds);
            int latest = -1;
            for (int e = 0; e < i; e++)
                if (g[e].place != RAW && g[e].off < g[i].off + g[i].dec_bytes &&
                    g[i].off < g[e].off + g[e].dec_bytes)
                    latest = e;
            assert_int_equal(g[i].wait_release, latest);
            if (g[i].place == STR) assert_true(g[i].copy >= 0 && g[i].copy < n_c);
        }
        for (int u = 0; u < n_c; u++) {
            assert_true(c[u].off + c[u].size <= staging);
            int latest = -1;
            for (int v = 0; v < u; v++)
                if (c[v].off < c[u].off + c[u].size && c[u].off < c[v].off + c[v].size)
                    latest = c[v].last_group;
            assert_int_equal(c[u].wait_group, latest);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_ring),
        cmocka_unit_test(test_raw_skipped),
        cmocka_unit_test(test_stream_units),
        cmocka_unit_test(test_random_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
