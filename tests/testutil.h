// Helpers shared by the unit tests.
#ifndef CLLM_TESTUTIL_H
#define CLLM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

// Path of a file under ../shared (from $CLLM_SHARED). When the data is missing: in CI ($CI set)
// the test fails loudly; elsewhere it prints why and exits 77 (ctest reports "skipped").
const char *cllm_test_shared_path(const char *rel);

// Deterministic pseudo-random numbers for tests (splitmix64).
uint64_t cllm_test_rand(uint64_t *state);
double cllm_test_uniform(uint64_t *state);   // [0, 1)
double cllm_test_normal(uint64_t *state);

// A fresh temporary directory for this test process (removed by the OS / CI workspace).
const char *cllm_test_tmpdir(void);

#endif
