// Paged decode attention: one query token per sequence against its paged K/V, split-KV
// (flash-decoding) with a log-sum-exp merge.
//
// attn_decode_chunk: one CTA of 4 warps per (sequence, kv head, head group, KV chunk). The
// CTA's query heads (the whole kv group when it has at most 16, else a divisor of it) share
// every K/V load: each K/V row is read from global memory once per CTA. The heads are the 16
// rows of tensor-core tiles (mma.sync m16n8k16, bf16 in, fp32 accumulate), as in a prefill
// kernel with the query heads in place of query tokens:
//   S (heads x 16 keys) = Q (heads x head_dim) K^T,   O (heads x head_dim) += P V.
// Each warp streams its own 16-key tiles of K and V through a STAGES-deep cp.async ring in
// shared memory (16-byte copies; the 16-byte chunks of a row are XOR-swizzled by row so that
// ldmatrix reads are free of bank conflicts); K tiles are read with ldmatrix, V tiles with
// ldmatrix.trans. Rows past the chunk end are zero-filled by cp.async (src-size 0) and masked
// to -inf, never read from memory. The softmax is online, in fp32 and log2 units; P is rounded
// to bf16 for the P V product (as FlashAttention does) and the row sums add the same rounded
// values. Warps are merged through shared memory at the end.
//
// A sequence whose KV fits one chunk is written straight to out (bf16). Otherwise each chunk
// writes its normalised fp32 output and log-sum-exp to the workspace and attn_decode_merge
// combines them (on sm_90 launched as a programmatic dependent, so it is resident and waiting
// when the chunks finish). The grid is sized from max_kv_len; chunks starting past a sequence's
// kv_len exit at once and the merge reads only the chunks that exist.
#include <cuda_bf16.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include <algorithm>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "mma.cuh"
#include "per_device.cuh"

namespace {

constexpr int NW = 4;          // warps per CTA
constexpr int NT = NW * 32;    // threads per CTA
constexpr int STAGES = 3;      // depth of each warp's cp.async ring
constexpr int KT = 16;         // keys per warp per stage: one k-step of the P V mma
constexpr int MAX_HPC = 16;    // most query heads per CTA: the rows of an mma tile
constexpr int MIN_CHUNK = 128; // fewest positions a split chunk covers
constexpr int MAX_SPLIT = 128; // most chunks per sequence
constexpr int MERGE_NT = 128;  // threads per merge CTA
constexpr float LOG2E = 1.4426950408889634f;
constexpr unsigned FULL = 0xffffffffu;

template <int HD> struct Cfg {
    static_assert(HD == 64 || HD == 128, "head_dim 64 or 128");
    static constexpr int ROWB = HD * 2;                  // bytes per K or V row
    static constexpr int LPR = HD / 8;                   // 16-byte chunks per row
    static constexpr int R = 32 / LPR;                   // rows one warp-wide copy covers
    static constexpr int RPL = KT / R;                   // rows each lane copies per stage (K and V)
    static constexpr int TILE = NW * KT;                 // keys per CTA per stage
    static constexpr int STAGE_BYTES = 2 * KT * ROWB;    // per warp: K tile, then V tile
    static constexpr int SMEM = NW * STAGES * STAGE_BYTES; // 96 KiB (HD 128), 48 KiB (HD 64)
    static constexpr int KSTEPS = HD / 16;               // mma k-steps of Q K^T
    static constexpr int DTILES = HD / 8;                // mma n-tiles of P V
    static_assert(LPR >= 8, "the swizzle flips the low 3 bits of the chunk index");
    static_assert((2 * NW * MAX_HPC + NW * MAX_HPC * HD) * 4 <= SMEM, "the end merge reuses the ring");
};

// Everything both kernels need; passed by value.
struct DecodeArgs {
    uint16_t *out;                  // (n_seqs, n_head, HD) bf16
    const uint16_t *q;              // (n_seqs, n_head, HD) bf16
    const uint16_t *k, *v;          // (n_slots, n_kv * HD) bf16
    const int32_t *kv_len;          // (n_seqs)
    const int32_t *bt_start;        // (n_seqs + 1)
    const int32_t *block_table;     // (bt_start[n_seqs])
    float *part;                    // (n_seqs, n_head, n_split, HD) fp32, normalised
    float *lse;                     // (n_seqs, n_head, n_split) fp32, log2 units
    int block_size, n_head, n_kv;
    int hpc, n_hg;                  // query heads per CTA; CTAs (head groups) per kv head
    int n_split, chunk_len;         // chunks per sequence; positions per chunk (TILE multiple)
    float qscale;                   // scale * log2(e)
};

__device__ __forceinline__ uint16_t f32_to_bf16_bits(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

// The max to subtract: m itself, or 0 while nothing has been seen (m = -inf), so that
// exp2(-inf - 0) = 0 and never exp2(-inf + inf) = NaN.
__device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

// Programmatic dependent launch (sm_90): the merge kernel may start while the chunk kernel
// runs and waits here for its results; both are no-ops in an ordinary launch.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// H2: how many 8-row halves of the mma tile hold heads (1: hpc <= 8; 2: hpc <= 16).
template <int HD, int H2>
__global__ void __launch_bounds__(NT, 2) attn_decode_chunk(const DecodeArgs a) {
    using C = Cfg<HD>;
    extern __shared__ __align__(128) unsigned char smem[];
    pdl_launch_dependents(); // the merge CTAs may be scheduled now; they wait for this grid

    const int chunk = (int)(blockIdx.x % (unsigned)a.n_split);
    int rest = (int)(blockIdx.x / (unsigned)a.n_split);
    const int hg = rest % a.n_hg;
    rest /= a.n_hg;
    const int kvh = rest % a.n_kv;
    const int s = rest / a.n_kv;
    const int hpc = a.hpc;
    const int h0 = kvh * (a.n_head / a.n_kv) + hg * hpc; // first query head of this CTA

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane >> 2, quad = lane & 3; // mma fragment coordinates

    // The independent loads first, so that their latencies overlap. Q as mma A fragments:
    // row r = head h0 + r (zero past hpc), bf16 as stored; the scale is applied to S in fp32.
    const int kv_raw = a.kv_len[s];
    const int32_t *bt = a.block_table + a.bt_start[s];
    uint32_t qa[C::KSTEPS][4];
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = grp + 8 * half;
        const bool ok = half < H2 && r < hpc;
        const uint16_t *qp = a.q + ((size_t)s * a.n_head + h0 + (ok ? r : 0)) * HD + quad * 2;
#pragma unroll
        for (int kk = 0; kk < C::KSTEPS; kk++) {
            qa[kk][half] = ok ? *reinterpret_cast<const uint32_t *>(qp + kk * 16) : 0u;
            qa[kk][half + 2] = ok ? *reinterpret_cast<const uint32_t *>(qp + kk * 16 + 8) : 0u;
        }
    }

    // kv_len is clamped to what the grid covers, so a bad length cannot index the workspace
    // out of range (the launcher's contract is kv_len[s] <= max_kv_len).
    const long long covered = (long long)a.n_split * a.chunk_len;
    const int kv = (int)min((long long)kv_raw, covered);
    const int c0 = chunk * a.chunk_len;
    if (c0 >= kv) {
        if (chunk == 0) // kv_len <= 0: nothing to attend to; write zeros rather than leave junk
            for (int e = threadIdx.x; e < hpc * HD; e += NT)
                a.out[((size_t)s * a.n_head + h0) * HD + e] = 0;
        return; // the whole CTA: no barrier has been reached yet
    }
    const int c1 = min(kv, c0 + a.chunk_len);
    const bool single = a.n_split == 1 || kv <= a.chunk_len; // attn_decode_merge skips it then

    const size_t kv_stride = (size_t)a.n_kv * HD;
    const uint32_t ring = (uint32_t)__cvta_generic_to_shared(smem) + warp * (STAGES * C::STAGE_BYTES);
    const int n_stages = (c1 - c0 + C::TILE - 1) / C::TILE;

    // Stage j: this warp's keys c0 + j*TILE + warp*KT + [0, KT). Lane r < KT looks up key r's
    // slot; each lane copies 16-byte chunk cc of rows r0, r0 + R, ... of K and of V, to chunk
    // position cc ^ (row & 7) of the row. Must be called by the whole warp (shuffles).
    const int cc = lane % C::LPR, r0 = lane / C::LPR;
    const size_t col = (size_t)kvh * HD + cc * 8;
    auto issue = [&](int j) {
        const int base = c0 + j * C::TILE + warp * KT;
        const int p = base + lane;
        int slot = 0;
        if (lane < KT && p < c1) {
            const int blk = p / a.block_size;
            slot = __ldg(bt + blk) * a.block_size + (p - blk * a.block_size);
        }
        const uint32_t kdst = ring + (j % STAGES) * C::STAGE_BYTES;
#pragma unroll
        for (int i = 0; i < C::RPL; i++) {
            const int r = r0 + i * C::R;
            const int su = __shfl_sync(FULL, slot, r);
            const bool ok = base + r < c1;
            const size_t off = ok ? (size_t)su * kv_stride + col : 0;
            const uint32_t dst = kdst + r * C::ROWB + ((cc ^ (r & 7)) << 4);
            cp_async16(dst, a.k + off, ok ? 16 : 0);
            cp_async16(dst + KT * C::ROWB, a.v + off, ok ? 16 : 0);
        }
    };

    // Per lane: rows grp (half 0) and grp + 8 (half 1) of the running max m and sum l (this
    // lane's keys only until the end), and of O (dims dt*8 + 2*quad, +1).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[C::DTILES][4];
#pragma unroll
    for (int dt = 0; dt < C::DTILES; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;

    // ldmatrix row addresses. K (x4): matrix mi = lane / 8 is keys (mi / 2) * 8 + 0..7, dims
    // (2 kk + mi % 2) * 8 + 0..7, i.e. b0, b1 of key tile 0, then b0, b1 of key tile 1.
    // V (x4.trans): matrix mi is keys (mi % 2) * 8 + 0..7, dims (2 jj + mi / 2) * 8 + 0..7, i.e.
    // b0, b1 of dim tile 2 jj, then b0, b1 of dim tile 2 jj + 1.
    const int k_row = ((lane >> 4) << 3) + (lane & 7), k_c = (lane >> 3) & 1;
    const int v_row = (((lane >> 3) & 1) << 3) + (lane & 7), v_c = lane >> 4;

    // One commit group per stage index (empty past the end) so that wait_group<STAGES-1>
    // after committing group j + STAGES - 1 means group j has landed.
#pragma unroll
    for (int j = 0; j < STAGES - 1; j++) {
        if (j < n_stages) issue(j);
        cp_async_commit();
    }
#pragma unroll 1
    for (int j = 0; j < n_stages; j++) {
        // Every lane's reads of the buffer refilled here (read in iteration j-1) are done.
        __syncwarp();
        if (j + STAGES - 1 < n_stages) issue(j + STAGES - 1);
        cp_async_commit();
        cp_async_wait<STAGES - 1>();
        __syncwarp(); // the other lanes' copies of stage j are visible too

        const uint32_t kt = ring + (j % STAGES) * C::STAGE_BYTES, vt = kt + KT * C::ROWB;
        float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}}; // [key tile][c0..c3]
#pragma unroll
        for (int kk = 0; kk < C::KSTEPS; kk++) {
            uint32_t b[4];
            ldmatrix_x4(b, kt + k_row * C::ROWB + (((2 * kk + k_c) ^ (k_row & 7)) << 4));
            mma_bf16(sc[0], qa[kk], b[0], b[1]);
            mma_bf16(sc[1], qa[kk], b[2], b[3]);
        }

        // Online softmax of rows grp, grp + 8; sc[nt][2 half + e] is key nt*8 + 2 quad + e.
        const int kbase = c0 + j * C::TILE + warp * KT + 2 * quad;
#pragma unroll
        for (int half = 0; half < H2; half++) {
            float mx = m[half];
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float &x = sc[nt][2 * half + e];
                    x = kbase + nt * 8 + e < c1 ? x * a.qscale : -INFINITY;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, 2));
            // Rescale only when some row's running max grew (rare after the first keys).
            if (__any_sync(FULL, mx > m[half])) {
                const float alpha = exp2f(m[half] - safe_max(mx));
                m[half] = mx;
                l[half] *= alpha;
#pragma unroll
                for (int dt = 0; dt < C::DTILES; dt++) {
                    o[dt][2 * half] *= alpha;
                    o[dt][2 * half + 1] *= alpha;
                }
            }
            const float mu = safe_max(m[half]);
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) sc[nt][2 * half + e] = exp2f(sc[nt][2 * half + e] - mu);
        }
        // P as the A fragment (rows = heads, k = keys); rows of an unused half are zero.
        uint32_t pa[4];
        pa[0] = pack_bf16x2(sc[0][0], sc[0][1]);
        pa[2] = pack_bf16x2(sc[1][0], sc[1][1]);
        pa[1] = H2 > 1 ? pack_bf16x2(sc[0][2], sc[0][3]) : 0u;
        pa[3] = H2 > 1 ? pack_bf16x2(sc[1][2], sc[1][3]) : 0u;
        l[0] += (bf16_lo(pa[0]) + bf16_hi(pa[0])) + (bf16_lo(pa[2]) + bf16_hi(pa[2]));
        if (H2 > 1) l[1] += (bf16_lo(pa[1]) + bf16_hi(pa[1])) + (bf16_lo(pa[3]) + bf16_hi(pa[3]));
#pragma unroll
        for (int jj = 0; jj < C::DTILES / 2; jj++) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, vt + v_row * C::ROWB + (((2 * jj + v_c) ^ (v_row & 7)) << 4));
            mma_bf16(o[2 * jj], pa, b[0], b[1]);
            mma_bf16(o[2 * jj + 1], pa, b[2], b[3]);
        }
    }
    cp_async_wait<0>(); // only empty groups can be pending; the ring is reused below

    // The four lanes of a row hold different keys' sums.
#pragma unroll
    for (int half = 0; half < 2; half++) {
        l[half] += __shfl_xor_sync(FULL, l[half], 1);
        l[half] += __shfl_xor_sync(FULL, l[half], 2);
    }

    // Merge the warps through shared memory (the ring is free once every warp is here).
    __syncthreads();
    float *sm_m = reinterpret_cast<float *>(smem); // [NW][MAX_HPC]
    float *sm_l = sm_m + NW * MAX_HPC;             // [NW][MAX_HPC]
    float *sm_o = sm_l + NW * MAX_HPC;             // [NW][MAX_HPC][HD]
#pragma unroll
    for (int half = 0; half < H2; half++) {
        const int r = grp + 8 * half;
        if (r < hpc) {
#pragma unroll
            for (int dt = 0; dt < C::DTILES; dt++) {
                sm_o[(warp * MAX_HPC + r) * HD + dt * 8 + 2 * quad] = o[dt][2 * half];
                sm_o[(warp * MAX_HPC + r) * HD + dt * 8 + 2 * quad + 1] = o[dt][2 * half + 1];
            }
            if (quad == 0) {
                sm_m[warp * MAX_HPC + r] = m[half];
                sm_l[warp * MAX_HPC + r] = l[half];
            }
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < hpc * HD; e += NT) {
        const int g = e / HD, d = e % HD;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < NW; w++) mx = fmaxf(mx, sm_m[w * MAX_HPC + g]);
        const float mu = safe_max(mx);
        float sum = 0.0f, acc = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float c = exp2f(sm_m[w * MAX_HPC + g] - mu);
            sum += sm_l[w * MAX_HPC + g] * c;
            acc += sm_o[(w * MAX_HPC + g) * HD + d] * c;
        }
        // sum >= 1 up to rounding: the chunk holds at least one position, and the one with
        // the largest score contributes exp2(0) = 1.
        const size_t row = (size_t)s * a.n_head + h0 + g;
        if (single) {
            a.out[row * HD + d] = f32_to_bf16_bits(acc / sum);
        } else {
            a.part[(row * a.n_split + chunk) * HD + d] = acc / sum;
            if (d == 0) a.lse[row * a.n_split + chunk] = mu + log2f(sum);
        }
    }
}

// One CTA of MERGE_NT threads per (sequence, query head) whose KV spans more than one chunk:
// the chunk weights 2^(lse_c - max) go to shared memory, then each thread sums 4 dims (one
// 16-byte load per chunk) over every CG-th chunk, and the CG partial sums are added at the end.
template <int HD> __global__ void __launch_bounds__(MERGE_NT) attn_decode_merge(const DecodeArgs a) {
    constexpr int DG = HD / 4;        // float4 groups per row
    constexpr int CG = MERGE_NT / DG; // chunk groups: 4 (HD 128) or 8 (HD 64)
    constexpr int NWM = MERGE_NT / 32;
    static_assert(MAX_SPLIT <= MERGE_NT, "one thread per chunk weight");
    __shared__ float w_sh[MERGE_NT];
    __shared__ float red[NWM];
    __shared__ float4 sum_sh[CG][DG];

    const size_t row = blockIdx.x; // s * n_head + h
    const int s = (int)(row / (size_t)a.n_head);
    const long long covered = (long long)a.n_split * a.chunk_len;
    const int kv = (int)min((long long)a.kv_len[s], covered);
    const int nc = kv <= 0 ? 0 : (kv + a.chunk_len - 1) / a.chunk_len;
    // the chunk grid has finished and its writes are visible; waited for also by a CTA with
    // nothing to merge, so that this grid ending implies the chunk grid ended (what the next
    // kernel in the stream, launched normally, reads)
    pdl_wait();
    if (nc <= 1) return; // written by attn_decode_chunk directly (the whole CTA returns)

    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const float x = t < nc ? a.lse[row * a.n_split + t] : -INFINITY;
    float mx = x;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, o));
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = red[0];
#pragma unroll
    for (int w = 1; w < NWM; w++) mx = fmaxf(mx, red[w]);
    const float wt = t < nc ? exp2f(x - safe_max(mx)) : 0.0f;
    w_sh[t] = wt;
    float sum = wt;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(FULL, sum, o);
    __syncthreads(); // every thread has read red (the max) before it is reused for the sum
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NWM; w++) sum += red[w];

    const int dg = t % DG, cg = t / DG;
    const float4 *part = reinterpret_cast<const float4 *>(a.part + row * a.n_split * HD) + dg;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
    for (int c = cg; c < nc; c += CG) {
        const float4 p = part[(size_t)c * DG];
        const float w = w_sh[c];
        o.x = fmaf(w, p.x, o.x);
        o.y = fmaf(w, p.y, o.y);
        o.z = fmaf(w, p.z, o.z);
        o.w = fmaf(w, p.w, o.w);
    }
    sum_sh[cg][dg] = o;
    __syncthreads();
    if (t < DG) {
        float4 r = sum_sh[0][t];
#pragma unroll
        for (int g = 1; g < CG; g++) {
            const float4 y = sum_sh[g][t];
            r.x += y.x;
            r.y += y.y;
            r.z += y.z;
            r.w += y.w;
        }
        uint16_t *dst = a.out + row * HD + 4 * t;
        dst[0] = f32_to_bf16_bits(r.x / sum);
        dst[1] = f32_to_bf16_bits(r.y / sum);
        dst[2] = f32_to_bf16_bits(r.z / sum);
        dst[3] = f32_to_bf16_bits(r.w / sum);
    }
}

// ---- host side -----------------------------------------------------------------------------

// Whether the current device runs programmatic dependent launches (sm_90 and newer), asked
// once per device.
bool pdl_supported() {
    static std::atomic<int> cc_major[CS_CUDA_MAX_DEVICES];
    return once_per_device(cc_major, [](int dev) {
        int major = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        return major;
    }) >= 9;
}

// Sets the kernel's shared-memory limit and returns how many CTAs fit on an SM, once per
// device: the limit is an attribute of the kernel on the current device only, so each
// tensor-parallel rank must set it on its own GPU.
template <int HD, int H2> int chunk_occupancy() {
    static std::atomic<int> occ[CS_CUDA_MAX_DEVICES];
    return once_per_device(occ, [](int) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_decode_chunk<HD, H2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        Cfg<HD>::SMEM));
        int n = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_decode_chunk<HD, H2>, NT, Cfg<HD>::SMEM));
        return n > 0 ? n : 1;
    });
}

template <int HD, int H2> void launch_chunk(const DecodeArgs &a, unsigned grid, cudaStream_t st) {
    chunk_occupancy<HD, H2>(); // the shared-memory attribute must be set before the launch
    attn_decode_chunk<HD, H2><<<grid, NT, Cfg<HD>::SMEM, st>>>(a);
}

// The merge kernel, on sm_90 as a programmatic dependent of the chunk kernel just launched.
template <int HD> void launch_merge(const DecodeArgs &a, unsigned grid, cudaStream_t st) {
    if (!pdl_supported()) {
        attn_decode_merge<HD><<<grid, MERGE_NT, 0, st>>>(a);
        return;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(MERGE_NT);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, attn_decode_merge<HD>, a));
}

struct Variant {
    int (*occupancy)();
    void (*launch)(const DecodeArgs &, unsigned, cudaStream_t);
    int tile;
};

template <int HD, int H2> constexpr Variant variant() {
    return Variant{chunk_occupancy<HD, H2>, launch_chunk<HD, H2>, Cfg<HD>::TILE};
}

const Variant VARIANTS[2][2] = {{variant<64, 1>(), variant<64, 2>()}, {variant<128, 1>(), variant<128, 2>()}};

// The largest divisor of the kv group size that is at most MAX_HPC: groups of up to 16 heads
// share one CTA; larger ones are cut into equal head groups that each read the K/V.
int heads_per_cta(int group) {
    for (int h = MAX_HPC; h > 1; h--)
        if (group % h == 0) return h;
    return 1;
}

struct Plan {
    int hpc, n_hg, n_split, chunk_len;
    const Variant *v;
};

// The KV split: as many chunks per sequence as still fit in one wave of resident CTAs (so one
// long sequence fills the GPU), an even number of waves for 1-3 waves of work, none for a
// batch of 3 or more full waves; at most MAX_SPLIT chunks of at least MIN_CHUNK positions;
// chunk_len is a multiple of the CTA's tile.
Plan make_plan(int n_seqs, int n_head, int n_kv, int head_dim, int max_kv_len) {
    Plan p;
    const int group = n_head / n_kv;
    p.hpc = heads_per_cta(group);
    p.n_hg = group / p.hpc;
    p.v = &VARIANTS[head_dim == 128][p.hpc > 8];
    const long long work = std::max((long long)n_seqs * n_kv * p.n_hg, 1LL);
    const long long slots = (long long)cs_cuda_sm_count() * p.v->occupancy();
    long long n = 1;
    if (work < slots) {
        n = slots / work; // fill one wave
    } else if (work < 3 * slots) {
        // 1 to 3 waves: a part-empty last wave would run at a fraction of the bandwidth, so
        // take the split (1..3) whose last wave is fullest (by a clear margin).
        double best = 0.0;
        for (long long t = 1; t <= 3; t++) {
            const long long ctas = work * t, waves = (ctas + slots - 1) / slots;
            const double eff = (double)ctas / (double)(waves * slots);
            if (eff > best + 0.05) {
                best = eff;
                n = t;
            }
        }
    } // else at least 3 full waves: no split
    n = std::min(n, ((long long)max_kv_len + MIN_CHUNK - 1) / MIN_CHUNK);
    n = std::min(n, (long long)MAX_SPLIT);
    if (n < 1) n = 1;
    const long long per = ((long long)max_kv_len + n - 1) / n;
    const long long chunk = (per + p.v->tile - 1) / p.v->tile * p.v->tile;
    CS_ASSERT(chunk <= INT_MAX / 2);
    p.chunk_len = (int)chunk;
    p.n_split = (int)(((long long)max_kv_len + chunk - 1) / chunk); // <= n
    return p;
}

size_t plan_workspace(const Plan &p, int n_seqs, int n_head, int head_dim) {
    if (p.n_split <= 1) return 0;
    return (size_t)n_seqs * n_head * p.n_split * (head_dim + 1) * sizeof(float);
}

void check_shape(int n_seqs, int n_head, int n_kv, int head_dim, int max_kv_len) {
    CS_ASSERT(n_seqs >= 0 && max_kv_len >= 1);
    CS_ASSERT(head_dim == 64 || head_dim == 128);
    CS_ASSERT(n_kv >= 1 && n_head >= n_kv && n_head % n_kv == 0);
}

} // namespace

// The workspace is the largest any kv head count (a divisor of n_head) can need, so it holds
// whatever split the launcher picks for these arguments.
extern "C" size_t cs_cuda_attn_decode_workspace(int n_seqs, int n_head, int head_dim, int max_kv_len) {
    CS_ASSERT(n_head >= 1);
    size_t best = 0;
    for (int n_kv = 1; n_kv <= n_head; n_kv++) {
        if (n_head % n_kv) continue;
        check_shape(n_seqs, n_head, n_kv, head_dim, max_kv_len);
        const size_t w = plan_workspace(make_plan(n_seqs, n_head, n_kv, head_dim, max_kv_len), n_seqs, n_head,
                                        head_dim);
        if (w > best) best = w;
    }
    return best;
}

// Not in cuda_kernels.h: the number of KV chunks per sequence the launcher uses for this
// shape (for the test and the benchmark).
extern "C" int cs_cuda_attn_decode_splits(int n_seqs, int n_head, int n_kv, int head_dim, int max_kv_len) {
    check_shape(n_seqs, n_head, n_kv, head_dim, max_kv_len);
    return make_plan(n_seqs, n_head, n_kv, head_dim, max_kv_len).n_split;
}

extern "C" void cs_cuda_attn_decode(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
                                    const uint16_t *v_cache, const cs_attn_batch *b, int max_kv_len,
                                    int n_head, int n_kv, int head_dim, float scale, void *workspace,
                                    size_t workspace_bytes, void *stream) {
    CS_ASSERT(b != NULL && b->block_size >= 1);
    check_shape(b->n_seqs, n_head, n_kv, head_dim, max_kv_len);
    if (b->n_seqs == 0) return;
    CS_ASSERT(b->kv_len && b->bt_start && b->block_table && out && q && k_cache && v_cache);
    // 16-byte loads of q, K and V rows (every row offset is a multiple of 8 elements).
    CS_ASSERT(((uintptr_t)q & 15) == 0 && ((uintptr_t)k_cache & 15) == 0 && ((uintptr_t)v_cache & 15) == 0);
    CS_ASSERT(((uintptr_t)out & 1) == 0);

    const Plan p = make_plan(b->n_seqs, n_head, n_kv, head_dim, max_kv_len);
    const size_t need = plan_workspace(p, b->n_seqs, n_head, head_dim);
    CS_ASSERT(workspace_bytes >= need);
    CS_ASSERT(need == 0 || (workspace != NULL && ((uintptr_t)workspace & 15) == 0)); // float4 reads
    const long long grid = (long long)b->n_seqs * n_kv * p.n_hg * p.n_split;
    CS_ASSERT(grid <= INT_MAX);

    DecodeArgs a;
    a.out = out;
    a.q = q;
    a.k = k_cache;
    a.v = v_cache;
    a.kv_len = b->kv_len;
    a.bt_start = b->bt_start;
    a.block_table = b->block_table;
    a.part = need ? static_cast<float *>(workspace) : nullptr;
    a.lse = need ? a.part + (size_t)b->n_seqs * n_head * p.n_split * head_dim : nullptr;
    a.block_size = b->block_size;
    a.n_head = n_head;
    a.n_kv = n_kv;
    a.hpc = p.hpc;
    a.n_hg = p.n_hg;
    a.n_split = p.n_split;
    a.chunk_len = p.chunk_len;
    a.qscale = scale * LOG2E;

    cudaStream_t st = static_cast<cudaStream_t>(stream);
    p.v->launch(a, (unsigned)grid, st);
    CUDA_CHECK(cudaGetLastError());
    if (p.n_split > 1) {
        const unsigned rows = (unsigned)((size_t)b->n_seqs * n_head);
        if (head_dim == 128) launch_merge<128>(a, rows, st);
        else launch_merge<64>(a, rows, st);
        CUDA_CHECK(cudaGetLastError());
    }
}
