// The schedule of a just-in-time weight pipeline (the CUDA weight provider's copy/decode rings),
// as plain C11 on plain arrays: the backend builds its pipeline from it and its planner simulates
// the very same schedule; tests/test_plan.c checks it without a GPU.
//
// A pass uses weights in groups, in order (a layer's decode groups, then the classifier's row
// chunks). A non-RAW group decodes into a range of the scratch ring; a STREAM group decodes from a
// copy unit, a range of the staging ring its compressed bytes were copied into (a unit is opened
// by a group, or shared by the groups after it that do not open one: the classifier's chunks).
// Ranges are placed consecutively, wrapping to 0 when one does not fit, so a range is free once
// the latest earlier range it overlaps is: a group waits for the release of that group
// (wait_release), a copy for the decode of the last group of that unit (wait_group). DEVICE groups
// alternate over the decode streams; STREAM groups all decode on stream 0, in order.
#ifndef CLLM_SCHED_H
#define CLLM_SCHED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Where a group's weights live between passes (the CUDA backend's be_place values).
enum { CLLM_SCHED_RAW = 0, CLLM_SCHED_DEVICE = 1, CLLM_SCHED_STREAM = 2 };

typedef struct cllm_sched_group {
    // Input.
    int place;           // CLLM_SCHED_*; RAW groups are skipped (they only compute)
    int opens_unit;      // STREAM: opens a copy unit of unit_bytes; else decodes from the last one
    uint64_t dec_bytes;  // non-RAW: its scratch ring range
    uint64_t unit_bytes; // opens_unit: the unit's staging ring range
    // Output (non-RAW groups; RAW: dec 0, copy -1, wait_release -1, off 0).
    int dec;             // decode stream
    int copy;            // STREAM: the copy unit it decodes from; else -1
    int wait_release;    // latest earlier group whose scratch range overlaps this one's; -1: none
    uint64_t off;        // scratch ring offset
} cllm_sched_group;

typedef struct cllm_sched_copy {
    uint64_t off, size;  // staging ring range
    int last_group;      // the range is free once this group's decode is done
    int wait_group;      // decode whose end frees the range before this copy; -1: none
} cllm_sched_copy;

// Places groups g[0..n) in a scratch ring of `scratch` bytes and their copy units in a staging
// ring of `staging` bytes (every range must fit its ring), DEVICE decodes over n_dec_streams >= 1
// streams. c receives the units (capacity: n). Returns the number of units.
int cllm_sched_build(cllm_sched_group *g, int n, cllm_sched_copy *c, uint64_t scratch,
                     uint64_t staging, int n_dec_streams);

#ifdef __cplusplus
}
#endif
#endif
