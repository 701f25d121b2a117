#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cllm_test_shared_path(const char *rel) {
    static char path[4096];
    const char *dir = getenv("CLLM_SHARED");
    if (!dir) dir = "../shared";
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (access(path, R_OK) == 0) return path;
    if (getenv("CI")) {
        fprintf(stderr, "FATAL: test data %s is missing (CI must have ../shared)\n", path);
        exit(1);
    }
    fprintf(stderr, "SKIP: test data %s is missing (outside CI: skipping)\n", path);
    exit(77);
}

uint64_t cllm_test_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cllm_test_uniform(uint64_t *s) { return (double)(cllm_test_rand(s) >> 11) * 0x1.0p-53; }

double cllm_test_normal(uint64_t *s) {
    double u1 = cllm_test_uniform(s), u2 = cllm_test_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

const char *cllm_test_tmpdir(void) {
    static char dir[256];
    if (dir[0]) return dir;
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cllm-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}
