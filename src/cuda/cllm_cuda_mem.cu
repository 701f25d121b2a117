// Device selection, the tracking device allocator, pinned host memory, streams and timers.
#include "cllm_cuda_check.h"

#include <stdio.h>
#include <stdlib.h>

// ---- device ------------------------------------------------------------------------------------

extern "C" int cllm_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the "no driver/device" error
        return 0;
    }
    return n;
}

extern "C" cllm_status cllm_cuda_device_open(int dev, char *desc, size_t desc_cap) {
    CLLM_CUDA_TRY(cudaSetDevice(dev));
    if (desc && desc_cap) {
        cudaDeviceProp p;
        CLLM_CUDA_TRY(cudaGetDeviceProperties(&p, dev));
        snprintf(desc, desc_cap, "%s, sm_%d%d, %d SMs, %.1f GiB, L2 %d MiB", p.name, p.major,
                 p.minor, p.multiProcessorCount, (double)p.totalGlobalMem / (1 << 30),
                 p.l2CacheSize >> 20);
    }
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_mem_info(int dev, size_t *free_bytes, size_t *total_bytes) {
    CLLM_CUDA_TRY(cudaSetDevice(dev));
    CLLM_CUDA_TRY(cudaMemGetInfo(free_bytes, total_bytes));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_sync(void *stream) {
    CLLM_CUDA_TRY(cudaStreamSynchronize(CLLM_STREAM(stream)));
    CLLM_CUDA_TRY(cudaGetLastError());
    return CLLM_OK;
}

// ---- tracking allocator ------------------------------------------------------------------------

struct cllm_cuda_mem {
    struct rec { void *p; size_t bytes; } *recs;  // live allocations (few hundred at most)
    size_t n, cap;
    size_t current, peak;
};

extern "C" cllm_status cllm_cuda_mem_create(cllm_cuda_mem **out) {
    RETURN_IF(!out, CLLM_ERR_ARG, "cuda mem: NULL argument");
    *out = (cllm_cuda_mem *)calloc(1, sizeof(cllm_cuda_mem));
    RETURN_IF(!*out, CLLM_ERR_NOMEM, "cuda mem: out of host memory");
    return CLLM_OK;
}

extern "C" void cllm_cuda_mem_free_all(cllm_cuda_mem *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) (void)cudaFree(m->recs[i].p);
    free(m->recs);
    free(m);
}

extern "C" cllm_status cllm_cuda_alloc(cllm_cuda_mem *m, size_t bytes, void **dev) {
    RETURN_IF(!m || !dev, CLLM_ERR_ARG, "cuda alloc: NULL argument");
    *dev = NULL;
    if (bytes == 0) return CLLM_OK;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        void *r = realloc(m->recs, cap * sizeof m->recs[0]);
        RETURN_IF(!r, CLLM_ERR_NOMEM, "cuda alloc: out of host memory");
        m->recs = (cllm_cuda_mem::rec *)r;
        m->cap = cap;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return CLLM_FAIL(e == cudaErrorMemoryAllocation ? CLLM_ERR_NOMEM : CLLM_ERR_DEVICE,
                         "cudaMalloc of %zu bytes (%zu held, peak %zu): %s", bytes, m->current,
                         m->peak, cudaGetErrorString(e));
    }
    m->recs[m->n].p = p;
    m->recs[m->n].bytes = bytes;
    m->n++;
    m->current += bytes;
    if (m->current > m->peak) m->peak = m->current;
    *dev = p;
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_release(cllm_cuda_mem *m, void *dev) {
    if (!dev) return CLLM_OK;
    RETURN_IF(!m, CLLM_ERR_ARG, "cuda release: NULL tracker");
    for (size_t i = m->n; i-- > 0;) {
        if (m->recs[i].p != dev) continue;
        m->current -= m->recs[i].bytes;
        m->recs[i] = m->recs[--m->n];
        CLLM_CUDA_TRY(cudaFree(dev));
        return CLLM_OK;
    }
    return CLLM_FAIL(CLLM_ERR_ARG, "cuda release: %p was not allocated by this tracker", dev);
}

extern "C" size_t cllm_cuda_mem_current(const cllm_cuda_mem *m) { return m ? m->current : 0; }
extern "C" size_t cllm_cuda_mem_peak(const cllm_cuda_mem *m) { return m ? m->peak : 0; }

// ---- pinned host memory ------------------------------------------------------------------------

extern "C" cllm_status cllm_cuda_host_alloc(size_t bytes, void **host) {
    RETURN_IF(!host, CLLM_ERR_ARG, "cuda host alloc: NULL argument");
    *host = NULL;
    if (bytes == 0) return CLLM_OK;
    CLLM_CUDA_TRY(cudaMallocHost(host, bytes));
    return CLLM_OK;
}

extern "C" void cllm_cuda_host_free(void *host) {
    if (host) (void)cudaFreeHost(host);
}

extern "C" cllm_status cllm_cuda_host_register(void *host, size_t bytes) {
    RETURN_IF(!host || !bytes, CLLM_ERR_ARG, "cuda host register: empty range");
    int dev = 0, ro = 0;
    CLLM_CUDA_TRY(cudaGetDevice(&dev));
    if (cudaDeviceGetAttribute(&ro, cudaDevAttrHostRegisterReadOnlySupported, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        ro = 0;
    }
    // Read-only registration works on read-only mappings (a mapped .cllm file).
    CLLM_CUDA_TRY(cudaHostRegister(host, bytes, ro ? cudaHostRegisterReadOnly : 0));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_host_unregister(void *host) {
    if (!host) return CLLM_OK;
    CLLM_CUDA_TRY(cudaHostUnregister(host));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_copy(void *dst, const void *src, size_t bytes, void *stream) {
    if (bytes == 0) return CLLM_OK;
    RETURN_IF(!dst || !src, CLLM_ERR_ARG, "cuda copy: NULL pointer");
    CLLM_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, CLLM_STREAM(stream)));
    return CLLM_OK;
}

// ---- streams and timers ------------------------------------------------------------------------

extern "C" cllm_status cllm_cuda_stream_create(void **stream) {
    RETURN_IF(!stream, CLLM_ERR_ARG, "cuda stream: NULL argument");
    cudaStream_t s;
    CLLM_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *stream = (void *)s;
    return CLLM_OK;
}

extern "C" void cllm_cuda_stream_destroy(void *stream) {
    if (stream) (void)cudaStreamDestroy(CLLM_STREAM(stream));
}

struct cllm_cuda_timer {
    cudaEvent_t start, stop;
};

extern "C" cllm_status cllm_cuda_timer_create(cllm_cuda_timer **out) {
    RETURN_IF(!out, CLLM_ERR_ARG, "cuda timer: NULL argument");
    cllm_cuda_timer *t = (cllm_cuda_timer *)calloc(1, sizeof *t);
    RETURN_IF(!t, CLLM_ERR_NOMEM, "cuda timer: out of host memory");
    if (cudaEventCreate(&t->start) != cudaSuccess || cudaEventCreate(&t->stop) != cudaSuccess) {
        cllm_status st = CLLM_FAIL(CLLM_ERR_DEVICE, "cudaEventCreate: %s",
                                   cudaGetErrorString(cudaGetLastError()));
        cllm_cuda_timer_free(t);
        return st;
    }
    *out = t;
    return CLLM_OK;
}

extern "C" void cllm_cuda_timer_free(cllm_cuda_timer *t) {
    if (!t) return;
    if (t->start) (void)cudaEventDestroy(t->start);
    if (t->stop) (void)cudaEventDestroy(t->stop);
    free(t);
}

extern "C" cllm_status cllm_cuda_timer_start(cllm_cuda_timer *t, void *stream) {
    CLLM_CUDA_TRY(cudaEventRecord(t->start, CLLM_STREAM(stream)));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_timer_stop(cllm_cuda_timer *t, void *stream) {
    CLLM_CUDA_TRY(cudaEventRecord(t->stop, CLLM_STREAM(stream)));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_timer_ms(cllm_cuda_timer *t, float *ms) {
    CLLM_CUDA_TRY(cudaEventSynchronize(t->stop));
    CLLM_CUDA_TRY(cudaEventElapsedTime(ms, t->start, t->stop));
    return CLLM_OK;
}
