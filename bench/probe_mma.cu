// Probe (built with the CUDA backend as probe_mma, run by hand on a GPU): could a tensor-core
// matvec that decodes a compute code in its operand loads reach issue 9's lossless target (fused
// >= 1.15x raw at batch 1)? It times, on the Llama-2-7B shapes, two m16n8k16 bf16 matvecs with the
// same structure:
//   raw  the bf16 weights stored in MMA operand order (16 bytes per lane per 16x16 block)
//   c12  per weight a byte (sign, 7 mantissa bits) and a 4-bit exponent code from a per-row base
//        (8 + 4 bytes per lane per block: 12 bits/weight, no exceptions; the real code would need
//        11.5 with its exceptions), decoded per pair of weights by one byte permute, a shift, an
//        AND, a multiply-add and one LOP3 (2.5 operations per weight)
// Both split x exactly into three bf16 parts (hi + mid + lo) held in B columns 0..2 (fragments
// made once per x, as the preceding kernel would write them), 8 warps per 16-row tile, warp w
// taking 16-column chunks w, w + 8, ...; fp32 accumulation inside the MMAs. Each result is checked
// against a float64 CPU dot of the same weights (max relative error over rows), and each time is
// the median of 15 bursts of 50 launches over rotating copies (beyond L2).
//
// Measured on an H200 (2026-12-01, docs/PERF.md 7l): c12 / raw 0.97x (4096x4096), 1.105x
// (11008x4096), 0.966x (4096x11008), 1.195x (32000x4096); over one 7B layer 1.02x. Even with no
// exceptions, 12 bits in MMA order do not reach 1.15x: the small matrices are bound by the time
// a launch takes to fill and drain the GPU, not by bytes.
//
//   build-cuda/bench/probe_mma   (or: nvcc -arch=sm_90 -O3 -o probe_mma bench/probe_mma.cu)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define WARPS 8
#define U 4  // chunks per batch of loads

static __device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint2 b) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
}

// Register j (0..3) of a lane's A fragment from its 8 bytes (j < 2: word x) and its code word:
// bytes 2j, 2j + 1 (of the 8) with their sign replicated over the byte above, the exponent
// fields (base + code) OR'd in: bits 0-6 mantissa, 7-14 exponent, 15 sign, per half.
template <int J>
static __device__ __forceinline__ uint32_t c12_reg(uint2 by, uint32_t cw, uint32_t basepair) {
    constexpr uint32_t i0 = (2 * J) & 3, i1 = i0 + 1;
    constexpr uint32_t sel = i0 | (8 | i0) << 4 | i1 << 8 | (8 | i1) << 12;
    uint32_t r;
    asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r) : "r"(J < 2 ? by.x : by.y), "n"(sel));
    const uint32_t e = ((cw >> (4 * J)) & 0x000f000fu) * 128u + basepair;
    return (r & 0x807f807fu) | e;
}

template <bool C12>
static __global__ void __launch_bounds__(WARPS * 32)
    probe_kernel(const uint4 *__restrict__ wraw, const uint2 *__restrict__ bytes,
                 const uint32_t *__restrict__ codes, const uint8_t *__restrict__ base,
                 const uint2 *__restrict__ xfrag, uint32_t rows, uint32_t nch, float *y) {
    __shared__ float red[WARPS][16];
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane & 3;
    const uint32_t tile = blockIdx.x;
    const uint32_t ra = min(tile * 16 + g, rows - 1), rb = min(tile * 16 + g + 8, rows - 1);
    uint32_t bpa = 0, bpb = 0;
    if (C12) {
        const uint32_t a = __ldg(base + ra), b = __ldg(base + rb);
        bpa = a << 7 | a << 23, bpb = b << 7 | b << 23;
    }
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    const uint32_t nj = nch > warp ? (nch - warp + WARPS - 1) / WARPS : 0;
    for (uint32_t j0 = 0; j0 < nj; j0 += U) {
        uint4 wr[U];
        uint2 by[U], xb[U];
        uint32_t cw[U];
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
            const uint32_t c = warp + WARPS * (j0 + u);
            const uint64_t at = ((uint64_t)tile * nch + c) * 32 + lane;
            if (C12) by[u] = __ldg(bytes + at), cw[u] = __ldg(codes + at);
            else wr[u] = __ldg(wraw + at);
            xb[u] = __ldg(xfrag + (uint64_t)c * 32 + lane);
        }
#pragma unroll
        for (uint32_t u = 0; u < U; u++) {
            if (j0 + u >= nj) break;
            uint32_t a[4];
            if (C12) {
                a[0] = c12_reg<0>(by[u], cw[u], bpa), a[1] = c12_reg<1>(by[u], cw[u], bpb);
                a[2] = c12_reg<2>(by[u], cw[u], bpa), a[3] = c12_reg<3>(by[u], cw[u], bpb);
            } else {
                a[0] = wr[u].x, a[1] = wr[u].y, a[2] = wr[u].z, a[3] = wr[u].w;
            }
            mma_bf16(d, a, xb[u]);
        }
    }
    // D: lane (g, q) holds rows g (d0, d1) and g + 8 (d2, d3) at columns 2q, 2q + 1: column 0 hi,
    // 1 mid, 2 lo; lanes q = 0, 1 hold them, in a fixed order.
    float va = q == 0 ? __fadd_rn(d[0], d[1]) : q == 1 ? d[0] : 0.f;
    float vb = q == 0 ? __fadd_rn(d[2], d[3]) : q == 1 ? d[2] : 0.f;
    va = __fadd_rn(va, __shfl_xor_sync(0xffffffffu, va, 1));
    vb = __fadd_rn(vb, __shfl_xor_sync(0xffffffffu, vb, 1));
    if (q == 0) red[warp][g] = va, red[warp][g + 8] = vb;
    __syncthreads();
    const uint32_t r = tile * 16 + threadIdx.x;
    if (threadIdx.x >= 16 || r >= rows) return;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) s = __fadd_rn(s, red[w][threadIdx.x]);
    y[r] = s;
}

static uint16_t bf16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_f(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double unif() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

struct shape { uint32_t rows, cols; };

int main() {
    int dev = 0;
    CK(cudaGetDevice(&dev));
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, dev));
    printf("device: %s, %d SMs; m16n8k16 bf16 matvec probe, batch 1\n", p.name,
           p.multiProcessorCount);
    const shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
    for (const shape &s : shapes) {
        const uint32_t rows = s.rows, cols = s.cols, nt = (rows + 15) / 16, nch = cols / 16;
        const uint64_t nblk = (uint64_t)nt * nch;
        // Weights: per row a base; exponents base + [0, 15], random sign and mantissa.
        std::vector<uint8_t> bas(rows);
        std::vector<uint16_t> w((uint64_t)nt * 16 * cols, 0);
        for (uint32_t r = 0; r < rows; r++) {
            bas[r] = (uint8_t)(112 + (int)(unif() * 6));
            for (uint32_t c = 0; c < cols; c++) {
                const uint32_t e = bas[r] + (uint32_t)(unif() * 16), m = (uint32_t)(unif() * 128);
                w[(uint64_t)r * cols + c] = (uint16_t)((unif() < 0.5 ? 0x8000u : 0u) | e << 7 | m);
            }
        }
        // MMA operand order: lane (g, q), register j, half h -> row g + 8 (j & 1), column
        // 2q + 8 (j >> 1) + h of the block.
        std::vector<uint32_t> raw(nblk * 32 * 4), codes(nblk * 32);
        std::vector<uint8_t> byt(nblk * 32 * 8);
        for (uint32_t t = 0; t < nt; t++)
            for (uint32_t c = 0; c < nch; c++)
                for (uint32_t l = 0; l < 32; l++) {
                    const uint64_t at = ((uint64_t)t * nch + c) * 32 + l;
                    uint32_t cw = 0;
                    for (uint32_t j = 0; j < 4; j++) {
                        uint32_t reg = 0;
                        for (uint32_t h = 0; h < 2; h++) {
                            const uint32_t r = t * 16 + l / 4 + 8 * (j & 1);
                            const uint32_t col = c * 16 + 2 * (l % 4) + 8 * (j >> 1) + h;
                            const uint16_t v = w[(uint64_t)r * cols + col];
                            reg |= (uint32_t)v << (16 * h);
                            const uint32_t b = r < rows ? bas[r] : 0, e = (v >> 7) & 0xff;
                            byt[at * 8 + 2 * j + h] = (uint8_t)((v >> 8 & 0x80) | (v & 0x7f));
                            cw |= (r < rows ? e - b : 0) << (4 * j + 16 * h);
                        }
                        raw[at * 4 + j] = reg;
                    }
                    codes[at] = cw;
                }
        // x and its fragments: column g < 3 of B = part g (hi, mid, lo) of x.
        std::vector<float> x(cols);
        for (uint32_t c = 0; c < cols; c++) x[c] = (float)(unif() * 2 - 1);
        std::vector<uint16_t> part[3];
        for (int k = 0; k < 3; k++) part[k].resize(cols);
        for (uint32_t c = 0; c < cols; c++) {
            const uint16_t hi = bf16_rn(x[c]);
            const uint16_t mid = bf16_rn(x[c] - bf16_f(hi));
            const uint16_t lo = bf16_rn(x[c] - bf16_f(hi) - bf16_f(mid));
            part[0][c] = hi, part[1][c] = mid, part[2][c] = lo;
        }
        std::vector<uint32_t> xf((uint64_t)nch * 32 * 2, 0);
        for (uint32_t c = 0; c < nch; c++)
            for (uint32_t l = 0; l < 32; l++) {
                const uint32_t g = l / 4, q = l % 4;
                if (g >= 3) continue;
                for (uint32_t i = 0; i < 2; i++) {
                    const uint32_t k = c * 16 + 2 * q + 8 * i;
                    xf[((uint64_t)c * 32 + l) * 2 + i] = part[g][k] | (uint32_t)part[g][k + 1] << 16;
                }
            }
        // float64 reference
        std::vector<double> ref(rows);
        for (uint32_t r = 0; r < rows; r++) {
            double a = 0;
            for (uint32_t c = 0; c < cols; c++) a += (double)bf16_f(w[(uint64_t)r * cols + c]) * x[c];
            ref[r] = a;
        }
        // Device copies, rotated so that no launch finds its weights in L2.
        const size_t braw = raw.size() * 4, bbyt = byt.size(), bcod = codes.size() * 4;
        const int nrot = (int)std::min<size_t>(8, std::max<size_t>(2, (192ull << 20) / braw + 1));
        std::vector<void *> draw(nrot), dbyt(nrot), dcod(nrot);
        for (int i = 0; i < nrot; i++) {
            CK(cudaMalloc(&draw[i], braw));
            CK(cudaMalloc(&dbyt[i], bbyt));
            CK(cudaMalloc(&dcod[i], bcod));
            CK(cudaMemcpy(draw[i], raw.data(), braw, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dbyt[i], byt.data(), bbyt, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dcod[i], codes.data(), bcod, cudaMemcpyHostToDevice));
        }
        void *dbase, *dxf, *dy;
        CK(cudaMalloc(&dbase, rows));
        CK(cudaMalloc(&dxf, xf.size() * 4));
        CK(cudaMalloc(&dy, rows * 4));
        CK(cudaMemcpy(dbase, bas.data(), rows, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dxf, xf.data(), xf.size() * 4, cudaMemcpyHostToDevice));
        double t_us[2];
        for (int v = 0; v < 2; v++) {
            auto launch = [&](int i) {
                if (v) probe_kernel<true><<<nt, WARPS * 32>>>(nullptr, (const uint2 *)dbyt[i],
                                                              (const uint32_t *)dcod[i],
                                                              (const uint8_t *)dbase,
                                                              (const uint2 *)dxf, rows, nch, (float *)dy);
                else probe_kernel<false><<<nt, WARPS * 32>>>((const uint4 *)draw[i], nullptr, nullptr,
                                                             nullptr, (const uint2 *)dxf, rows, nch,
                                                             (float *)dy);
            };
            launch(0);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            std::vector<float> yv(rows);
            CK(cudaMemcpy(yv.data(), dy, rows * 4, cudaMemcpyDeviceToHost));
            double err = 0, scale = 0;
            for (uint32_t r = 0; r < rows; r++) scale = std::max(scale, std::fabs(ref[r]));
            for (uint32_t r = 0; r < rows; r++) err = std::max(err, std::fabs(yv[r] - ref[r]) / scale);
            cudaEvent_t e0, e1;
            CK(cudaEventCreate(&e0));
            CK(cudaEventCreate(&e1));
            std::vector<float> bursts;
            for (int b = 0; b < 15; b++) {
                CK(cudaEventRecord(e0));
                for (int i = 0; i < 50; i++) launch((b * 50 + i) % nrot);
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                float ms = 0;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                bursts.push_back(ms * 1000.f / 50.f);
            }
            std::sort(bursts.begin(), bursts.end());
            t_us[v] = bursts[7];
            const double bytes = v ? (double)(bbyt + bcod) : (double)braw;
            printf("%5ux%-5u %-4s %5.2f bits/w %8.2f us %7.1f GB/s read  max |err| / max |y| %.2e\n",
                   rows, cols, v ? "c12" : "raw", 8.0 * bytes / ((double)rows * cols), t_us[v],
                   bytes / t_us[v] / 1e3, err);
            CK(cudaEventDestroy(e0));
            CK(cudaEventDestroy(e1));
        }
        printf("%5ux%-5u c12 / raw speed %.3fx\n", rows, cols, t_us[0] / t_us[1]);
        for (int i = 0; i < nrot; i++) {
            CK(cudaFree(draw[i]));
            CK(cudaFree(dbyt[i]));
            CK(cudaFree(dcod[i]));
        }
        CK(cudaFree(dbase));
        CK(cudaFree(dxf));
        CK(cudaFree(dy));
    }
    return 0;
}
