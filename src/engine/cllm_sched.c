#include "cllm_sched.h"

// Consecutive ranges, wrapping to 0 when one does not fit.
static uint64_t ring_place(uint64_t *cursor, uint64_t bytes, uint64_t cap) {
    const uint64_t off = *cursor + bytes <= cap ? *cursor : 0;
    *cursor = off + bytes;
    return off;
}

static int overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
    return a < b + bn && b < a + an;
}

static void place_waits(cllm_sched_group *g, int n, cllm_sched_copy *c, int n_c) {
    for (int i = 0; i < n; i++) {
        cllm_sched_group *x = &g[i];
        if (x->place == CLLM_SCHED_RAW) continue;
        for (int e = i - 1; e >= 0 && x->wait_release < 0; e--)
            if (g[e].place != CLLM_SCHED_RAW &&
                overlaps(x->off, x->dec_bytes, g[e].off, g[e].dec_bytes))
                x->wait_release = e;
    }
    for (int u = 0; u < n_c; u++) {
        c[u].wait_group = -1;
        for (int v = u - 1; v >= 0 && c[u].wait_group < 0; v--)
            if (overlaps(c[u].off, c[u].size, c[v].off, c[v].size))
                c[u].wait_group = c[v].last_group;
    }
}

int cllm_sched_build(cllm_sched_group *g, int n, cllm_sched_copy *c, uint64_t scratch,
                     uint64_t staging, int n_dec_streams) {
    uint64_t cur_g = 0, cur_c = 0;
    int n_dec = 0, n_c = 0;
    for (int i = 0; i < n; i++) {
        cllm_sched_group *x = &g[i];
        x->copy = x->wait_release = -1;
        x->dec = 0;
        x->off = 0;
        if (x->place == CLLM_SCHED_RAW) continue;
        if (x->place == CLLM_SCHED_STREAM && x->opens_unit) {
            cllm_sched_copy *u = &c[n_c++];
            u->size = x->unit_bytes;
            u->off = ring_place(&cur_c, u->size, staging);
        }
        x->off = ring_place(&cur_g, x->dec_bytes, scratch);
        x->copy = x->place == CLLM_SCHED_STREAM ? n_c - 1 : -1;
        x->dec = x->place == CLLM_SCHED_DEVICE ? n_dec % n_dec_streams : 0;
        if (x->copy >= 0) c[x->copy].last_group = i;
        n_dec++;
    }
    place_waits(g, n, c, n_c);
    return n_c;
}
