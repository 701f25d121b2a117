// GPU rANS decoders for the LOSSLESS (bf16/f16/f32) and INT8 codecs. Bit-exact with
// cllm_decode_blocks (the C decoder is the specification; cllm_rans_layout.h the stream format).
//
// Work decomposition. One launch decodes a list of jobs (e.g. the 7 matrices of a layer), passed
// by value as a __grid_constant__ kernel parameter, so a launch needs no upload. A thread block of
// W warps takes W consecutive blocks of one job (a "work item"): it builds the job's slot table
// once in shared memory and each warp decodes one block, 32 lanes in lockstep exactly as the
// layout describes (lane state in a register, ballot + popc for word offsets).
//
// Two shapes of the same kernel, chosen per launch by the largest scale among its jobs:
//   narrow: tables up to 2^12 slots (16 KiB), 4 warps, 27 KiB of shared memory, 8 per SM;
//   wide:   tables up to 2^14 slots (64 KiB, int8 tensors code their long tail there), 12 warps
//           so one table build serves 12 blocks, 97 KiB, 2 per SM (24 warps; see warps_for).
//
// Throughput is bound by the latency of one decode step (blocks in flight x 32 symbols / step
// latency) and, with many blocks in flight, by instruction issue (~29 per step), so the step's
// dependency chain and instruction count are kept short:
//   - the renormalisation words come from a per-warp ring in shared memory, refilled 128 words at
//     a time with coalesced 32-bit loads issued one refill ahead (the load is in flight while the
//     warp decodes the previous 128 words), checked every 4 steps; its first 32 entries are
//     mirrored past its end, so a lane's entry is at (p mod 256) + rank without a second wrap;
//   - each ring entry carries, beside its word w, the slot table entry of (w & (M-1)). A lane that
//     renormalises starts its next step from x = (x' << 16) | w, whose slot is w & (M-1), so it
//     gets its next table entry with the word in one 64-bit load; only lanes that do not
//     renormalise need a table lookup, which is issued before the ballot and overlaps it.
//   Per step the chain is: IMAD, compare, ballot, popc, ring load, select.
// Output: each warp stages 16 steps (512 symbols) in shared memory, then writes them as 16-byte
// vectors (int8), or joins them with 16-byte plane loads issued 16 steps earlier into bf16
// (2 x 16 bytes per lane). Other dtypes, unaligned outputs and a block's last partial group take
// a per-element path (coalesced, any alignment).
//
// Errors: a block whose states or word count fail the final checks (or that the index places
// outside the streams, or with an f16 exponent above 31) sets the status record; its output is
// then unspecified but every access stays inside the payload and the block's output rows.
#include "cllm_cuda_check.h"

#include <atomic>
#include <stdlib.h>
#include <string.h>

#define DEC_NARROW_WARPS 4
#define DEC_NARROW_BITS 12
#define DEC_WIDE_WARPS 16                      // the most a wide thread block may have
#define DEC_WIDE_WARPS_DEFAULT 12              // what it has (see warps_for)
#define DEC_WIDE_BITS CLLM_RANS_MAX_SCALE_BITS
#define DEC_WARPS_PER_SM 32                    // launch bounds: registers for this many warps
#define DEC_GROUP_STEPS 16                     // steps staged before output: 512 symbols
#define DEC_GROUP_SYMS (DEC_GROUP_STEPS * 32)
#define DEC_RING 256                           // ring entries (words) per warp, a power of two
#define DEC_MIRROR 32                          // entries 0..31 repeated after the ring
#define DEC_CHECK_STEPS 4                      // full groups: refill check every 4 steps
#define DEC_CHUNK 128                          // words per refill: 2 x 32-bit loads per lane
#define DEC_MAX_BLOCK_SYMS (1ull << 31)        // u32 step and word counters

_Static_assert(DEC_RING == 2 * DEC_CHUNK, "the refill invariant below assumes two chunks");
_Static_assert(DEC_CHECK_STEPS * 32 <= DEC_CHUNK, "a checked refill covers the steps to the next");
_Static_assert(DEC_GROUP_STEPS % DEC_CHECK_STEPS == 0, "every full group ends with a check");

struct decode_batch {
    uint32_t n_jobs;
    uint32_t n_items;
    cllm_cuda_decode_job jobs[CLLM_CUDA_DECODE_MAX_JOBS];
};

struct warp_smem {
    unsigned long long ring[DEC_RING + DEC_MIRROR];  // table entry of (word & mask) | word << 32
    __align__(16) uint8_t stage[DEC_GROUP_SYMS];
};

// Shared memory of a thread block of up to W warps: the frequencies are needed only while the
// table is built (then a barrier), the warps' rings only after it.
template <int W, int TB>
struct block_smem {
    uint32_t tab[1u << TB];  // packed cllm_rans_slot entries
    union {
        struct {
            uint32_t cum[CLLM_RANS_ALPHABET + 1];
            uint16_t freq[CLLM_RANS_ALPHABET];
        } b;
        warp_smem w[W];
    } u;
};

// Dynamic shared memory bytes for nw <= W warps.
template <int W, int TB>
static size_t smem_bytes(uint32_t nw) {
    const size_t build = sizeof(uint32_t) * (CLLM_RANS_ALPHABET + 1) +
                         sizeof(uint16_t) * CLLM_RANS_ALPHABET;
    const size_t warps = nw * sizeof(warp_smem);
    return sizeof(uint32_t) * (1u << TB) + (warps > build ? warps : build);
}

static_assert(sizeof(block_smem<DEC_NARROW_WARPS, DEC_NARROW_BITS>) <= 28 * 1024,
              "eight narrow blocks per SM (228 KiB, 1 KiB reserved per block)");
static_assert(sizeof(warp_smem) % 16 == 0, "16-byte aligned stage and ring of every warp");
static_assert(sizeof(block_smem<DEC_WIDE_WARPS, DEC_WIDE_BITS>) <= 112 * 1024,
              "two wide blocks per SM");

// The kernel's shared memory (dynamic: the wide shape exceeds the 48 KiB static limit).
extern __shared__ __align__(16) unsigned char dec_smem[];

// ---- slot table --------------------------------------------------------------------------------

// tab[k] for k < 2^sb from the payload's 256 uint16 frequencies (validated on the host; a bad
// table yields wrong symbols, never an out-of-range access). Each warp fills the slots of every
// nw-th symbol, 32 slots at a time: independent stores, no search.
template <int W, int TB>
static __device__ void build_table(block_smem<W, TB> &s, const uint8_t *payload, uint32_t sb) {
    const uint32_t tid = threadIdx.x, lane = tid & 31, nw = blockDim.x / 32;
    uint32_t *cum = s.u.b.cum;
    uint16_t *freq = s.u.b.freq;
    for (uint32_t i = tid; i < CLLM_RANS_ALPHABET / 2; i += blockDim.x) {
        uint32_t v = __ldg((const unsigned int *)payload + i);  // little-endian pairs
        freq[2 * i] = (uint16_t)v;
        freq[2 * i + 1] = (uint16_t)(v >> 16);
    }
    __syncthreads();
    if (tid < 32) {  // exclusive prefix sum: lane owns symbols 8*lane .. 8*lane+7
        uint32_t sum = 0;
        for (int j = 0; j < 8; j++) sum += freq[8 * lane + j];
        uint32_t incl = sum;
        for (int d = 1; d < 32; d <<= 1) {
            uint32_t t = __shfl_up_sync(0xffffffffu, incl, d);
            if (lane >= (uint32_t)d) incl += t;
        }
        uint32_t run = incl - sum;
        for (int j = 0; j < 8; j++) {
            cum[8 * lane + j] = run;
            run += freq[8 * lane + j];
        }
        if (lane == 31) cum[CLLM_RANS_ALPHABET] = run;
    }
    __syncthreads();
    const uint32_t m = 1u << sb;
    for (uint32_t sym = tid / 32; sym < CLLM_RANS_ALPHABET; sym += nw) {
        const uint32_t c = cum[sym], f = freq[sym];
        for (uint32_t k = lane; k < f && c + k < m; k += 32)
            s.tab[c + k] = CLLM_RANS_SLOT(sym, f, k);
    }
    __syncthreads();
}

// ---- one block -----------------------------------------------------------------------------------

// Warp-uniform state of a block's word stream and its ring.
struct word_stream {
    const unsigned int *src;  // the block's words as 32-bit pairs (4-byte aligned)
    uint32_t n32;             // 32-bit units in the block after the states
    uint32_t fetched;         // words stored in the ring so far (multiple of DEC_CHUNK)
    uint32_t pend0, pend1;    // this lane's part of the next chunk, in flight
};

static __device__ __forceinline__ void ring_load(word_stream &ws, uint32_t chunk, uint32_t lane) {
    const uint32_t i0 = chunk * (DEC_CHUNK / 2) + lane, i1 = i0 + 32;
    ws.pend0 = i0 < ws.n32 ? __ldg(ws.src + i0) : 0u;  // past the block: zeros (then an error)
    ws.pend1 = i1 < ws.n32 ? __ldg(ws.src + i1) : 0u;
}

static __device__ __forceinline__ unsigned long long ring_entry(const uint32_t *tab, uint32_t w,
                                                                uint32_t mask) {
    return (unsigned long long)tab[w & mask] | ((unsigned long long)w << 32);
}

// Stores the pending chunk (words fetched .. fetched+127) and starts loading the one after.
// Precondition: every word below fetched - DEC_CHUNK has been consumed (its ring slot is free).
static __device__ __forceinline__ void ring_refill(word_stream &ws, unsigned long long *ring,
                                                   const uint32_t *tab, uint32_t mask,
                                                   uint32_t lane) {
    const uint32_t w0 = (ws.fetched + 2 * lane) & (DEC_RING - 1);
    const uint32_t w1 = (ws.fetched + 64 + 2 * lane) & (DEC_RING - 1);
    ulonglong2 a, b;
    a.x = ring_entry(tab, ws.pend0 & 0xffffu, mask);
    a.y = ring_entry(tab, ws.pend0 >> 16, mask);
    b.x = ring_entry(tab, ws.pend1 & 0xffffu, mask);
    b.y = ring_entry(tab, ws.pend1 >> 16, mask);
    *(ulonglong2 *)(ring + w0) = a;
    *(ulonglong2 *)(ring + w1) = b;
    if (w0 < DEC_MIRROR) *(ulonglong2 *)(ring + DEC_RING + w0) = a;  // the chunk at slot 0
    ws.fetched += DEC_CHUNK;
    ring_load(ws, ws.fetched / DEC_CHUNK, lane);
    __syncwarp();
}

// One decode step of the 32 lanes. x: lane state, e: table entry of x's slot. Returns the symbol.
// Ring invariant on entry: words p .. p+31 are in the ring (fetched - p >= 32).
template <bool ALL>
static __device__ __forceinline__ uint32_t dec_step(uint32_t &x, uint32_t &e, uint32_t &p,
                                                    bool active, const uint32_t *tab,
                                                    const unsigned long long *ring, uint32_t mask,
                                                    uint32_t sb, uint32_t lt) {
    const uint32_t sym = e & 0xffu;
    const uint32_t q = x >> sb;
    const uint32_t xn = ((e >> 8) & 0xfffu) * q + q + (e >> 20);  // freq*(x>>sb) + slot - cum
    const uint32_t e_stay = tab[xn & mask];
    const bool need = (ALL || active) && xn < CLLM_RANS_L;
    const uint32_t bal = __ballot_sync(0xffffffffu, need);
    const unsigned long long r = ring[(p & (DEC_RING - 1)) + __popc(bal & lt)];  // mirrored
    if (ALL || active) {
        x = need ? (xn << 16) | (uint32_t)(r >> 32) : xn;
        e = need ? (uint32_t)r : e_stay;
    }
    p += __popc(bal);
    return sym;
}

// Bits [i*rb, i*rb + rb) of the plane, read as aligned 32-bit words (the plane starts 64-byte
// aligned and is padded to 64 bytes, so both words lie inside the payload).
static __device__ __forceinline__ uint32_t plane_bits(const unsigned int *plane, uint64_t i,
                                                      uint32_t rb) {
    const uint64_t bit = i * rb;
    const uint64_t w = bit >> 5;
    const uint32_t sh = (uint32_t)bit & 31u;
    const uint32_t lo = __ldg(plane + w);
    const uint32_t hi = sh + rb > 32 ? __ldg(plane + w + 1) : 0u;
    return __funnelshift_r(lo, hi, sh) & ((1u << rb) - 1u);
}

struct block_out {
    uint32_t codec, dtype;
    uint8_t *out;                // the tensor's first element
    const unsigned int *plane;   // lossless
    uint64_t e0;                 // the block's first element in the tensor
    uint32_t n;                  // symbols in the block
    bool fast;                   // 16-byte aligned vector path possible for whole groups
};

// Per-element output of staged symbols [base, base + DEC_GROUP_SYMS) of the block (those < n).
// Returns non-zero when an f16 exponent symbol exceeds 31 (corrupt, as in the C decoder).
static __device__ uint32_t out_generic(const block_out &o, const uint8_t *stage, uint32_t base,
                                       uint32_t lane) {
    uint32_t bad = 0;
    for (uint32_t j = 0; j < DEC_GROUP_STEPS; j++) {
        const uint32_t li = j * 32 + lane;
        if (base + li >= o.n) break;
        const uint64_t i = o.e0 + base + li;
        const uint32_t s = stage[li];
        if (o.codec == CLLM_CODEC_INT8) {
            o.out[i] = (uint8_t)s;
        } else if (o.dtype == CLLM_DTYPE_BF16) {
            const uint32_t v = plane_bits(o.plane, i, 8);
            ((uint16_t *)o.out)[i] = (uint16_t)(((v & 0x80u) << 8) | (s << 7) | (v & 0x7fu));
        } else if (o.dtype == CLLM_DTYPE_F16) {
            const uint32_t v = plane_bits(o.plane, i, 11);
            bad |= s & 0xe0u;
            ((uint16_t *)o.out)[i] =
                (uint16_t)(((v & 0x400u) << 5) | ((s & 0x1fu) << 10) | (v & 0x3ffu));
        } else {
            const uint32_t v = plane_bits(o.plane, i, 24);
            ((uint32_t *)o.out)[i] = ((v & 0x800000u) << 8) | (s << 23) | (v & 0x7fffffu);
        }
    }
    return bad;
}

// bf16 from 4 exponents E and 4 sign|mantissa bytes P: two u32 of two bf16 each.
static __device__ __forceinline__ uint32_t join2_bf16(uint32_t t) {  // t = P0 E0 P1 E1 (bytes)
    return ((t >> 1) & 0x7f807f80u) | (t & 0x007f007fu) | ((t & 0x00800080u) << 8);
}

// Whole aligned group as 16-byte vectors: lane owns symbols 16*lane .. 16*lane+15.
static __device__ __forceinline__ void out_fast(const block_out &o, const uint8_t *stage,
                                                uint32_t base, uint32_t lane, uint4 pv) {
    const uint4 ev = *(const uint4 *)(stage + 16 * lane);
    const uint64_t i = o.e0 + base + 16 * lane;
    if (o.codec == CLLM_CODEC_INT8) {
        *(uint4 *)(o.out + i) = ev;
        return;
    }
    const uint32_t E[4] = {ev.x, ev.y, ev.z, ev.w}, P[4] = {pv.x, pv.y, pv.z, pv.w};
    uint32_t r[8];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        r[2 * k] = join2_bf16(__byte_perm(P[k], E[k], 0x5140));
        r[2 * k + 1] = join2_bf16(__byte_perm(P[k], E[k], 0x7362));
    }
    uint4 *dst = (uint4 *)(o.out + 2 * i);
    dst[0] = make_uint4(r[0], r[1], r[2], r[3]);
    dst[1] = make_uint4(r[4], r[5], r[6], r[7]);
}

static __device__ void report(cllm_cuda_decode_status *st, uint32_t job, uint64_t block) {
    if (atomicCAS(&st->failed, 0u, 1u) == 0u) {
        st->job = job;
        st->block = block;
    }
}

// Decodes block b of job J with one warp. tab: the job's slot table (shared).
static __device__ void decode_block(const cllm_cuda_decode_job &J, uint32_t job, uint64_t b,
                                    const uint32_t *tab, warp_smem &ws_mem,
                                    cllm_cuda_decode_status *status) {
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t lt = (1u << lane) - 1u;
    const uint64_t *index = (const uint64_t *)(J.payload + J.index_off);
    const uint64_t off0 = __ldg((const unsigned long long *)index + b);
    const uint64_t off1 = __ldg((const unsigned long long *)index + b + 1);
    if (off0 > off1 || off1 > J.stream_bytes || off1 - off0 < CLLM_RANS_STATE_BYTES ||
        ((off0 | off1) & 3u)) {
        if (lane == 0) report(status, job, b);
        return;
    }
    const uint8_t *blk = J.payload + J.streams_off + off0;
    const uint64_t r0 = b * J.rows_per_block;
    const uint64_t nr = J.rows - r0 < J.rows_per_block ? J.rows - r0 : J.rows_per_block;
    block_out o;
    o.codec = J.codec;
    o.dtype = J.dtype;
    o.out = (uint8_t *)J.out;
    o.plane = (const unsigned int *)(J.payload + J.side_off);
    o.e0 = r0 * J.cols;
    o.n = (uint32_t)(nr * J.cols);
    const bool int8 = J.codec == CLLM_CODEC_INT8;
    const bool bf16 = !int8 && J.dtype == CLLM_DTYPE_BF16;
    o.fast = int8 ? ((uintptr_t)(o.out + o.e0) & 15u) == 0
                  : bf16 && (((uintptr_t)(o.out + 2 * o.e0) | (uintptr_t)((const uint8_t *)o.plane +
                                                                          o.e0)) & 15u) == 0;
    const uint32_t sb = J.scale_bits, mask = (1u << sb) - 1u;

    uint32_t x = __ldg((const unsigned int *)blk + lane);
    bool ok = x >= CLLM_RANS_L;
    uint32_t e = tab[x & mask];
    word_stream ws;
    ws.src = (const unsigned int *)(blk + CLLM_RANS_STATE_BYTES);
    ws.n32 = (uint32_t)((off1 - off0 - CLLM_RANS_STATE_BYTES) / 4);
    ws.fetched = 0;
    unsigned long long *ring = ws_mem.ring;
    ring_load(ws, 0, lane);
    ring_refill(ws, ring, tab, mask, lane);
    ring_refill(ws, ring, tab, mask, lane);
    uint32_t p = 0, bad = 0;

    const uint32_t steps = (o.n + 31) / 32;
    for (uint32_t g0 = 0; g0 < steps; g0 += DEC_GROUP_STEPS) {
        const uint32_t base = g0 * 32;
        const bool full = base + DEC_GROUP_SYMS <= o.n;
        uint4 pv = make_uint4(0, 0, 0, 0);
        if (full && o.fast && bf16)  // plane bytes of this group, consumed 16 steps later
            pv = __ldg((const uint4 *)((const uint8_t *)o.plane + o.e0 + base) + lane);
        if (full) {
#pragma unroll
            for (uint32_t t = 0; t < DEC_GROUP_STEPS; t++) {
                ws_mem.stage[t * 32 + lane] =
                    (uint8_t)dec_step<true>(x, e, p, true, tab, ring, mask, sb, lt);
                // Every 4 steps: after a check fetched - p > DEC_CHUNK = 128 >= 4 steps of words.
                if (t % DEC_CHECK_STEPS == DEC_CHECK_STEPS - 1 && ws.fetched - p <= DEC_CHUNK)
                    ring_refill(ws, ring, tab, mask, lane);
            }
        } else {
            const uint32_t gs = steps - g0;
            for (uint32_t t = 0; t < gs; t++) {
                const bool active = base + t * 32 + lane < o.n;
                const uint32_t s = dec_step<false>(x, e, p, active, tab, ring, mask, sb, lt);
                if (active) ws_mem.stage[t * 32 + lane] = (uint8_t)s;
                if (ws.fetched - p <= DEC_CHUNK) ring_refill(ws, ring, tab, mask, lane);
            }
        }
        __syncwarp();
        if (full && o.fast)
            out_fast(o, ws_mem.stage, base, lane, pv);
        else
            bad |= out_generic(o, ws_mem.stage, base, lane);
        __syncwarp();
    }

    // Every lane back at L; all words read, or all but a final zero padding word.
    const uint32_t nw = 2 * ws.n32;
    const uint32_t last = ws.n32 ? __ldg(ws.src + ws.n32 - 1) >> 16 : 1u;
    const bool words_ok = p == nw || (nw > 0 && p == nw - 1 && last == 0);
    ok = ok && x == CLLM_RANS_L && bad == 0;
    if (!__all_sync(0xffffffffu, ok) || !words_ok) {
        if (lane == 0) report(status, job, b);
    }
}

// W warps per thread block, tables of up to 2^TB slots (the host never sends a larger scale).
template <int W, int TB>
static __global__ void __launch_bounds__(W * 32, DEC_WARPS_PER_SM / W)
    decode_kernel(const __grid_constant__ decode_batch batch, cllm_cuda_decode_status *status) {
    block_smem<W, TB> &s = *reinterpret_cast<block_smem<W, TB> *>(dec_smem);
    const uint32_t item = blockIdx.x, nw = blockDim.x / 32;
    uint32_t j = 0;
    while (j + 1 < batch.n_jobs && batch.jobs[j + 1].item_begin <= item) j++;
    const cllm_cuda_decode_job &J = batch.jobs[j];
    build_table(s, J.payload, J.scale_bits);
    const uint32_t warp = threadIdx.x / 32;
    const uint64_t b = (uint64_t)(item - J.item_begin) * nw + warp;
    if (b < J.n_blocks) decode_block(J, j, J.first_block + b, s.tab, s.u.w[warp], status);
}

// ---- host side -----------------------------------------------------------------------------------

extern "C" cllm_status cllm_cuda_decode_job_init(const cllm_coded_desc *d,
                                                 const uint8_t *payload_dev, void *out_dev,
                                                 uint64_t first_block, uint64_t n_blocks,
                                                 cllm_cuda_decode_job *job) {
    RETURN_IF(!d || !payload_dev || !out_dev || !job, CLLM_ERR_ARG, "decode job: NULL argument");
    cllm_payload_layout_t lay;
    TRY(cllm_payload_layout(d, &lay));
    RETURN_IF(d->predictor != CLLM_PRED_NONE, CLLM_ERR_UNSUPPORTED,
              "GPU decoder: predictor LEFT is not supported (re-encode without --predictor)");
    RETURN_IF((uintptr_t)payload_dev % 16 != 0, CLLM_ERR_ARG,
              "decode job: payload not 16-byte aligned on the device");
    const uint64_t total = d->codec == CLLM_CODEC_RAW ? d->rows : d->n_blocks;
    RETURN_IF(first_block > total || n_blocks > total - first_block, CLLM_ERR_ARG,
              "decode job: blocks [%llu, +%llu) outside %llu", (unsigned long long)first_block,
              (unsigned long long)n_blocks, (unsigned long long)total);
    if (d->codec != CLLM_CODEC_RAW) {
        uint64_t bs = (uint64_t)d->rows_per_block * d->cols;  // fits: checked by the layout
        RETURN_IF(bs >= DEC_MAX_BLOCK_SYMS, CLLM_ERR_UNSUPPORTED,
                  "GPU decoder: blocks of %llu symbols (at most 2^31)", (unsigned long long)bs);
    }
    memset(job, 0, sizeof *job);
    job->payload = payload_dev;
    job->out = out_dev;
    job->rows = d->rows;
    job->cols = d->cols;
    job->first_block = first_block;
    job->n_blocks = n_blocks;
    job->stream_bytes = d->stream_bytes;
    job->index_off = lay.index_off;
    job->streams_off = lay.streams_off;
    job->side_off = lay.side_off;
    job->codec = d->codec;
    job->dtype = d->dtype;
    job->scale_bits = d->scale_bits;
    job->rows_per_block = d->rows_per_block;
    return CLLM_OK;
}

extern "C" const float *cllm_cuda_int8_scales(const cllm_cuda_decode_job *job) {
    if (!job || job->codec != CLLM_CODEC_INT8) return NULL;
    return (const float *)(job->payload + job->side_off);
}

extern "C" cllm_status cllm_cuda_decode_status_reset(cllm_cuda_decode_status *status_dev,
                                                     void *stream) {
    RETURN_IF(!status_dev, CLLM_ERR_ARG, "decode status: NULL");
    CLLM_CUDA_TRY(cudaMemsetAsync(status_dev, 0, sizeof *status_dev, CLLM_STREAM(stream)));
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_decode_status_check(const cllm_cuda_decode_status *status_dev,
                                                     void *stream) {
    RETURN_IF(!status_dev, CLLM_ERR_ARG, "decode status: NULL");
    cllm_cuda_decode_status st;
    CLLM_CUDA_TRY(cudaMemcpyAsync(&st, status_dev, sizeof st, cudaMemcpyDeviceToHost,
                                  CLLM_STREAM(stream)));
    CLLM_CUDA_TRY(cudaStreamSynchronize(CLLM_STREAM(stream)));
    RETURN_IF(st.failed, CLLM_ERR_CORRUPT,
              "GPU rANS decode: job %u, block %llu fails its checks (final states or word count)",
              st.job, (unsigned long long)st.block);
    return CLLM_OK;
}

// A raw "job" copies rows [first_block, first_block + n_blocks).
static cllm_status copy_raw(const cllm_cuda_decode_job *j, cudaStream_t stream) {
    const size_t row = (size_t)j->cols * cllm_dtype_size((cllm_dtype)j->dtype);
    const size_t off = (size_t)j->first_block * row;
    CLLM_CUDA_TRY(cudaMemcpyAsync((uint8_t *)j->out + off, j->payload + off,
                                  (size_t)j->n_blocks * row, cudaMemcpyDeviceToDevice, stream));
    return CLLM_OK;
}

// Raises the kernel's dynamic shared memory limit to its largest launch, once per process.
template <int W, int TB>
static cllm_status allow_smem() {
    static std::atomic<int> done(0);
    if (done.load(std::memory_order_acquire)) return CLLM_OK;
    CLLM_CUDA_TRY(cudaFuncSetAttribute(decode_kernel<W, TB>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem_bytes<W, TB>(W)));
    done.store(1, std::memory_order_release);
    return CLLM_OK;
}

// Warps per thread block: narrow, DEC_NARROW_WARPS; wide, DEC_WIDE_WARPS_DEFAULT (12). The 64 KiB
// table allows 2 wide thread blocks per SM, so 12 warps per block puts at most 24 warps on an SM
// and a 7B int8 layer's 3,083 blocks on the GPU at once, evenly (2 x 132 x 12 = 3,168 slots);
// 16-warp blocks left some SMs with 32 warps and others with 16. Measured on the H100, 7B int8:
// device mode (4 launches per layer on 4 streams) 87.8 tok/s with 12, 78.0 with 8, 76.1 with 16;
// the layer in one launch 0.28 ms with 12 (docs/PERF.md keeps the A/B log).
static uint32_t warps_for(bool wide) { return wide ? DEC_WIDE_WARPS_DEFAULT : DEC_NARROW_WARPS; }

template <int W, int TB>
static cllm_status launch_shape(decode_batch *batch, uint32_t nw, cllm_cuda_decode_status *status,
                                cudaStream_t stream) {
    TRY((allow_smem<W, TB>()));
    decode_kernel<W, TB><<<batch->n_items, nw * 32, smem_bytes<W, TB>(nw), stream>>>(*batch,
                                                                                    status);
    CLLM_CUDA_CHECK_LAUNCH("decode_kernel");
    return CLLM_OK;
}

static cllm_status launch_batch(decode_batch *batch, bool wide, uint32_t nw,
                                cllm_cuda_decode_status *status, cudaStream_t stream) {
    if (batch->n_items == 0) return CLLM_OK;
    if (wide) TRY((launch_shape<DEC_WIDE_WARPS, DEC_WIDE_BITS>(batch, nw, status, stream)));
    else TRY((launch_shape<DEC_NARROW_WARPS, DEC_NARROW_BITS>(batch, nw, status, stream)));
    batch->n_jobs = 0;
    batch->n_items = 0;
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_decode(const cllm_cuda_decode_job *jobs, size_t n_jobs,
                                        cllm_cuda_decode_status *status_dev, void *stream) {
    RETURN_IF((!jobs && n_jobs) || !status_dev, CLLM_ERR_ARG, "GPU decode: NULL argument");
    cudaStream_t s = CLLM_STREAM(stream);
    // One shape for the whole call: wide when any coded job has a table above 2^12 slots.
    bool wide = false;
    for (size_t i = 0; i < n_jobs; i++) {
        const cllm_cuda_decode_job *j = &jobs[i];
        if (j->n_blocks == 0 || j->codec == CLLM_CODEC_RAW) continue;
        RETURN_IF(j->codec != CLLM_CODEC_LOSSLESS && j->codec != CLLM_CODEC_INT8,
                  CLLM_ERR_UNSUPPORTED, "GPU decode: job %zu has codec %u", i, j->codec);
        RETURN_IF(j->scale_bits < CLLM_RANS_MIN_SCALE_BITS ||
                      j->scale_bits > CLLM_RANS_MAX_SCALE_BITS || !j->rows_per_block,
                  CLLM_ERR_ARG, "GPU decode: job %zu not made by cllm_cuda_decode_job_init", i);
        wide = wide || j->scale_bits > DEC_NARROW_BITS;
    }
    const uint32_t warps = warps_for(wide);
    decode_batch batch;
    memset(&batch, 0, sizeof batch);
    for (size_t i = 0; i < n_jobs; i++) {
        const cllm_cuda_decode_job *j = &jobs[i];
        if (j->n_blocks == 0) continue;
        if (j->codec == CLLM_CODEC_RAW) {
            TRY(copy_raw(j, s));
            continue;
        }
        const uint64_t items = (j->n_blocks + warps - 1) / warps;
        if (batch.n_jobs == CLLM_CUDA_DECODE_MAX_JOBS || batch.n_items + items > 0x7fffffffu)
            TRY(launch_batch(&batch, wide, warps, status_dev, s));
        RETURN_IF(items > 0x7fffffffu, CLLM_ERR_UNSUPPORTED, "GPU decode: job %zu too large", i);
        batch.jobs[batch.n_jobs] = *j;
        batch.jobs[batch.n_jobs].item_begin = batch.n_items;
        batch.n_jobs++;
        batch.n_items += (uint32_t)items;
    }
    return launch_batch(&batch, wide, warps, status_dev, s);
}
