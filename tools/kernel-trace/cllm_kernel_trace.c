// Kernel timeline of a CUDA program through CUPTI's activity API, loaded by the CUDA driver as an
// injection library (CUDA_INJECTION64_PATH=.../libcllm_kernel_trace.so): every kernel's start and
// end on the GPU, graph replays and PDL overlap included, without changing the program. A
// developer tool for the engine's decode step (Nsight Systems does not run on the H200 machine);
// scripts/gpu-trace.sh builds it and scripts/kernel-trace.py summarises its output.
//
// Output, in the current directory, created exclusively (an existing file is never overwritten:
// tracing is then off, with a message on stderr):
//   kernel-trace.csv, one line per kernel:
//     start_ns,end_ns,stream,graph_id,graph_node_id,grid_x,block_x,registers,"name"
//   api-trace.csv, one line per CUDA runtime call (host time) and per memory copy (GPU time):
//     type,start_ns,end_ns,correlation,"what"   (type api: what = the call's name; memcpy: what =
//     copy kind and bytes). Tracing the runtime calls costs each call some host time.
#define _GNU_SOURCE
#include <cupti.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRACE_FILE "kernel-trace.csv"
#define API_FILE "api-trace.csv"
#define BUF_BYTES (8u << 20)

static FILE *g_out, *g_api;

static void CUPTIAPI buf_requested(uint8_t **buf, size_t *size, size_t *max_records) {
    *buf = aligned_alloc(ACTIVITY_RECORD_ALIGNMENT, BUF_BYTES);
    *size = *buf ? BUF_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI buf_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
                                   size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (g_out && cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind == CUPTI_ACTIVITY_KIND_RUNTIME && g_api) {
            const CUpti_ActivityAPI *a = (const CUpti_ActivityAPI *)rec;
            const char *name = NULL;
            if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name) != CUPTI_SUCCESS)
                name = NULL;
            fprintf(g_api, "api,%llu,%llu,%u,\"%s\"\n", (unsigned long long)a->start,
                    (unsigned long long)a->end, a->correlationId, name ? name : "?");
            continue;
        }
        if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY && g_api) {
            const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
            fprintf(g_api, "memcpy,%llu,%llu,%u,\"kind %u, %llu bytes\"\n",
                    (unsigned long long)m->start, (unsigned long long)m->end, m->correlationId,
                    (unsigned)m->copyKind, (unsigned long long)m->bytes);
            continue;
        }
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
            continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        fprintf(g_out, "%llu,%llu,%u,%u,%llu,%d,%d,%u,\"%s\"\n", (unsigned long long)k->start,
                (unsigned long long)k->end, k->streamId, k->graphId,
                (unsigned long long)k->graphNodeId, k->gridX, k->blockX,
                (unsigned)k->registersPerThread, k->name ? k->name : "?");
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped)
        fprintf(stderr, "kernel-trace: %zu records dropped\n", dropped);
    free(buf);
}

static void finish(void) {
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    if (g_out && fclose(g_out) != 0) perror("kernel-trace: " TRACE_FILE);
    if (g_api && fclose(g_api) != 0) perror("kernel-trace: " API_FILE);
    g_out = g_api = NULL;
}

static int fail(const char *what, CUptiResult r) {
    const char *s = NULL;
    cuptiGetResultString(r, &s);
    fprintf(stderr, "kernel-trace: %s: %s (tracing off)\n", what, s ? s : "?");
    return 1;
}

// Called once by the CUDA driver when the library is named by CUDA_INJECTION64_PATH.
__attribute__((visibility("default"))) int InitializeInjection(void) {
    const int fd = open(TRACE_FILE, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        fprintf(stderr, "kernel-trace: %s: %s (not overwritten; tracing off)\n", TRACE_FILE,
                strerror(errno));
        return 1;
    }
    g_out = fdopen(fd, "w");
    if (!g_out) return close(fd), 1;
    fputs("start_ns,end_ns,stream,graph_id,graph_node_id,grid_x,block_x,registers,name\n", g_out);
    const int fa = open(API_FILE, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fa < 0)
        fprintf(stderr, "kernel-trace: %s: %s (not overwritten; kernels only)\n", API_FILE,
                strerror(errno));
    else if (!(g_api = fdopen(fa, "w")))
        close(fa);
    if (g_api) fputs("type,start_ns,end_ns,correlation,what\n", g_api);
    CUptiResult r = cuptiActivityRegisterCallbacks(buf_requested, buf_completed);
    if (r != CUPTI_SUCCESS) return fail("cuptiActivityRegisterCallbacks", r);
    r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    if (r != CUPTI_SUCCESS) return fail("cuptiActivityEnable(CONCURRENT_KERNEL)", r);
    if (g_api && ((r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME)) != CUPTI_SUCCESS ||
                  (r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY)) != CUPTI_SUCCESS)) {
        const char *e = NULL;
        cuptiGetResultString(r, &e);
        fprintf(stderr, "kernel-trace: runtime calls and copies not traced: %s\n", e ? e : "?");
    }
    atexit(finish);
    return 1;
}
