// Paged prefill / extend attention on tensor cores, FlashAttention-2 style.
//
// One CTA = BM (128) query rows of one sequence and one query head: 4 warps, each owning 32
// rows as two m16 tiles, so that every K/V fragment read from shared memory feeds two mma
// (with 16 rows per warp, ldmatrix bandwidth was the limit: 222 TFLOP/s at L=4096 on an H200
// against 302 now). The CTA loops over the sequence's K/V in tiles of BN (64) positions:
// S = Q K^T and O += P V are mma.sync m16n8k16 (bf16 in, fp32 accumulate) with operands read
// from shared memory by ldmatrix (.trans for V). The softmax is online in fp32 (running max
// and sum per row; p = 2^(s * scale * log2 e - max), one FFMA and one ex2 per score). P goes
// from the S accumulators to the A operand of P V in registers: the m16n8 accumulator layout
// of two adjacent n-tiles is the m16k16 A layout. O (2 x 16 x head_dim fp32 per warp) and S
// live in registers; Q fragments are re-read from shared memory every tile.
//
// K/V rows are gathered through the block table with 16-byte cp.async, double-buffered: the
// copy of tile j + 1 runs while tile j is computed on. Block ids are read one tile earlier
// still, one row per lane, and handed to the copying lanes by shuffles, so the block-table
// load never stalls the copy issue. Positions a CTA does not need are zero-filled (cp.async
// with src-size 0), never left as whatever the smem held: 0 * NaN would reach O. Scores of
// positions past a row's causal limit are set to -inf before the max.
//
// Shared memory rows are head_dim bf16 padded by one 16-byte chunk (stride 272 or 144 bytes):
// the 8 rows one ldmatrix 8x8 reads then start in 8 different bank groups, and each fragment
// address is one register plus an immediate. 102 KB per CTA at head_dim 128: two CTAs per SM
// on Hopper (registers: at most 255 per thread at 2 x 128 threads).
//
// Grid (n_head, ceil(max_q_len / BM), n_seqs); blockIdx.y counts q tiles from the last, so the
// tiles with the most K/V (the causal bottom) start first and the light ones fill the tail.
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "mma.cuh"

namespace {

constexpr int MT = 2;               // m-tiles (16 query rows each) per warp
constexpr int WARPS = 4;
constexpr int BM = 16 * MT * WARPS; // query rows per CTA (128)
constexpr int BN = 64;              // key positions per K/V tile
constexpr int THREADS = WARPS * 32;
constexpr int STAGES = 2;           // K/V tiles in smem: the one computed on + the one loading

// Row stride of the smem tiles in bf16: head_dim plus one 16-byte chunk of padding.
template <int D> __host__ __device__ constexpr int row_stride() { return D + 8; }
// Dynamic shared memory: Q (BM rows), then K (STAGES x BN rows), then V (STAGES x BN rows).
template <int D> constexpr size_t smem_bytes() { return (size_t)(BM + 2 * STAGES * BN) * row_stride<D>() * 2; }

struct Params {
    uint16_t *out;             // (n_tok, n_head, D)
    const uint16_t *q;         // (n_tok, n_head, D)
    const uint16_t *k, *v;     // (n_slots, kv_dim)
    const int32_t *q_start;    // (n_seqs + 1)
    const int32_t *kv_len;     // (n_seqs)
    const int32_t *bt_start;   // (n_seqs + 1)
    const int32_t *block_table;
    int block_size, n_head, group, kv_dim; // group = n_head / n_kv
    float scale_log2;                      // scale * log2(e)
};

// Element offset of (row, 16-byte chunk) in a padded smem tile.
template <int D> __device__ __forceinline__ int soff(int row, int chunk) {
    return row * row_stride<D>() + chunk * 8;
}

// 2^x; ex2(-inf) = 0.
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}


// One m-tile's online-softmax step (16 rows, this thread's rows g and g + 8): sc holds the raw
// scores of the tile (n-tile layout of the m16n8 accumulator) and becomes P = 2^((s - max) * c),
// c = scale * log2(e) > 0; o and l_run are rescaled to the new running max m_run (raw units).
// mask: scores of positions kp0 + 8 n + (e & 1) past the row's own position pos_a / pos_b
// become -inf first.
template <int NT, int DT>
__device__ __forceinline__ void softmax_tile(float (&sc)[NT][4], float (&o)[DT][4], float (&m_run)[2],
                                             float (&l_run)[2], float c, bool mask, int kp0, int pos_a,
                                             int pos_b) {
    if (mask) {
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (kp0 + n * 8 + (e & 1) > (e < 2 ? pos_a : pos_b)) sc[n][e] = -INFINITY;
    }
    // the new max over the 4 threads that share a row
    float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
    for (int n = 0; n < NT; n++) {
        mx[0] = fmaxf(mx[0], fmaxf(sc[n][0], sc[n][1]));
        mx[1] = fmaxf(mx[1], fmaxf(sc[n][2], sc[n][3]));
    }
    float base[2], corr[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        float b = mx[r] == -INFINITY ? 0.0f : mx[r]; // everything masked so far: 0, not NaN
        corr[r] = ex2((m_run[r] - b) * c);
        base[r] = b * c;
        m_run[r] = mx[r];
    }
#pragma unroll
    for (int n = 0; n < NT; n++) {
        sc[n][0] = ex2(fmaf(sc[n][0], c, -base[0]));
        sc[n][1] = ex2(fmaf(sc[n][1], c, -base[0]));
        sc[n][2] = ex2(fmaf(sc[n][2], c, -base[1]));
        sc[n][3] = ex2(fmaf(sc[n][3], c, -base[1]));
        rs[0] += sc[n][0] + sc[n][1];
        rs[1] += sc[n][2] + sc[n][3];
    }
    l_run[0] = l_run[0] * corr[0] + rs[0]; // this thread's share; summed over the 4 at the end
    l_run[1] = l_run[1] * corr[1] + rs[1];
#pragma unroll
    for (int d = 0; d < DT; d++) {
        o[d][0] *= corr[0];
        o[d][1] *= corr[0];
        o[d][2] *= corr[1];
        o[d][3] *= corr[1];
    }
}

template <int D>
__global__ void __launch_bounds__(THREADS, 2) attn_prefill_kernel(const Params p) {
    constexpr int CH = D / 8;            // 16-byte chunks per row
    constexpr int RPP = THREADS / CH;    // rows one copy pass of all threads covers (8 or 16)
    constexpr int LPR = 32 / CH;         // of which one warp covers (2 or 4)
    constexpr int KV_PASSES = BN / RPP;  // copy passes per K (and V) tile
    constexpr int Q_PASSES = BM / RPP;
    constexpr int KT = D / 16;           // k-steps of S = Q K^T
    constexpr int NT = BN / 8;           // n-tiles of S
    constexpr int DT = D / 8;            // n-tiles of O
    static_assert(BN % RPP == 0 && BM % RPP == 0, "copy layout");
    constexpr int WROWS = LPR * KV_PASSES; // K/V rows a warp copies per tile (16)
    static_assert(WROWS <= 32, "one lane reads the block id of each of its warp's rows");

    extern __shared__ __align__(128) unsigned char smem_raw[];
    uint16_t *sQ = reinterpret_cast<uint16_t *>(smem_raw);
    constexpr int LD = row_stride<D>();
    uint16_t *sK = sQ + BM * LD;
    uint16_t *sV = sK + STAGES * BN * LD;

    const int h = blockIdx.x, s = blockIdx.z;
    const int m0 = (gridDim.y - 1 - blockIdx.y) * BM; // first query row (within s) of this CTA
    const int q0 = p.q_start[s], q_len = p.q_start[s + 1] - q0;
    if (m0 >= q_len) return;
    const int kv_len = p.kv_len[s];
    const int off = kv_len - q_len;              // position of query row 0
    const int rows = min(BM, q_len - m0);        // valid query rows of this CTA
    const int n_end = off + m0 + rows;           // positions [0, n_end) are seen by some row
    const int n_tiles = (n_end + BN - 1) / BN;
    const int32_t *bt = p.block_table + p.bt_start[s];
    const int bs = p.block_size;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int ld_row = tid / CH, ld_ch = tid % CH; // copies rows ld_row + i * RPP, chunk ld_ch
    const int ld_soff = soff<D>(ld_row, ld_ch);

    // ---- Q tile (rows past q_len zero-filled) ----
#pragma unroll
    for (int i = 0; i < Q_PASSES; i++) {
        int r = ld_row + i * RPP;
        bool ok = r < rows;
        const uint16_t *src = ok ? p.q + ((size_t)(q0 + m0 + r) * p.n_head + h) * D + ld_ch * 8 : p.q;
        cp_async16(smem_u32(sQ + ld_soff + i * RPP * LD), src, ok ? 16 : 0);
    }
    cp_async_commit();

    // ---- K/V gather. Pass i of lane l copies row ld_row + i * RPP, the row whose block id lane
    // k = l / CH + LPR * i of the same warp read into pf_* one tile ahead (lane k reads it for
    // row pf_row, lanes past WROWS repeat), so no lane waits on the block table at the copy.
    const size_t head_off = (size_t)(h / p.group) * D + ld_ch * 8;
    const int pf_row = warp * LPR + (lane % WROWS) % LPR + RPP * ((lane % WROWS) / LPR);
    int pf_blk = -1, pf_rem = 0; // pf_blk -1: position not needed, zero-fill
    auto prefetch = [&](int tile) {
        int pos = tile * BN + pf_row;
        pf_blk = -1;
        pf_rem = 0;
        if (pos < n_end) {
            int b = pos / bs;
            pf_rem = pos - b * bs;
            pf_blk = bt[b];
        }
    };
    auto issue = [&](int stage) { // whole warps only (shuffles)
        int slot = pf_blk >= 0 ? pf_blk * bs + pf_rem : -1; // slot ids fit int32 (n_slots < 2^31)
#pragma unroll
        for (int i = 0; i < KV_PASSES; i++) {
            int sl = __shfl_sync(0xffffffffu, slot, lane / CH + LPR * i);
            size_t row_off = sl >= 0 ? (size_t)sl * p.kv_dim + head_off : 0;
            int so = stage * BN * LD + ld_soff + i * RPP * LD;
            cp_async16(smem_u32(sK + so), p.k + row_off, sl >= 0 ? 16 : 0);
            cp_async16(smem_u32(sV + so), p.v + row_off, sl >= 0 ? 16 : 0);
        }
    };
    // Tiles 0 .. STAGES-2 now, one group each (empty past the last tile).
#pragma unroll
    for (int t = 0; t < STAGES - 1; t++) {
        prefetch(t);
        if (t < n_tiles) issue(t);
        cp_async_commit();
    }
    prefetch(STAGES - 1);

    // ---- per warp: MT m-tiles of 16 rows, rows wrow0 .. wrow0 + 16 MT - 1 ----
    const int wrow0 = m0 + warp * 16 * MT;
    const bool warp_active = wrow0 < q_len;
    const int wpos_min = off + wrow0, wpos_max = wpos_min + 16 * MT - 1; // its rows' positions
    const int q_row = (lane & 7) + ((lane >> 3) & 1) * 8, q_hi = lane >> 4;  // ldmatrix Q
    const int k_row = (lane & 7) + (lane >> 4) * 8, k_hi = (lane >> 3) & 1;  // ldmatrix K
    const int v_row = q_row, v_hi = q_hi;                                     // ldmatrix.trans V

    float o[MT][DT][4];
    float m_run[MT][2], l_run[MT][2]; // running row max (unscaled), this thread's share of the sum
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int d = 0; d < DT; d++) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.0f;
        m_run[mt][0] = m_run[mt][1] = -INFINITY;
        l_run[mt][0] = l_run[mt][1] = 0.0f;
    }

    int st_rd = 0, st_wr = STAGES - 1;
    for (int j = 0; j < n_tiles; j++) {
        cp_async_wait<STAGES - 2>(); // Q and tile j have landed (this thread's copies)
        __syncthreads();             // ... everyone's; and stage st_wr is no longer read
        if (j + STAGES - 1 < n_tiles) issue(st_wr);
        cp_async_commit();
        prefetch(j + STAGES);
        st_wr = st_wr + 1 == STAGES ? 0 : st_wr + 1;

        const int n0 = j * BN;
        if (warp_active && n0 <= wpos_max) { // else the whole tile is above this warp's diagonal
            const uint32_t kb = smem_u32(sK + st_rd * BN * LD), vb = smem_u32(sV + st_rd * BN * LD);

            // S = Q K^T; Q fragments come from smem each tile (registers go to O and S)
            float sc[MT][NT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < NT; n++) sc[mt][n][0] = sc[mt][n][1] = sc[mt][n][2] = sc[mt][n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                uint32_t qa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldmatrix_x4(qa[mt], smem_u32(sQ + soff<D>(warp * 16 * MT + mt * 16 + q_row, 2 * kk + q_hi)));
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    uint32_t b[4];
                    ldmatrix_x4(b, kb + 2 * soff<D>(np * 16 + k_row, 2 * kk + k_hi));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(sc[mt][2 * np], qa[mt], b[0], b[1]);
                        mma_bf16(sc[mt][2 * np + 1], qa[mt], b[2], b[3]);
                    }
                }
            }

            const bool mask = n0 + BN - 1 > wpos_min; // the tile crosses some row's diagonal
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                int pos_a = wpos_min + mt * 16 + (lane >> 2);
                softmax_tile<NT, DT>(sc[mt], o[mt], m_run[mt], l_run[mt], p.scale_log2, mask,
                                     n0 + 2 * (lane & 3), pos_a, pos_a + 8);
            }

            // O += P V: P's k-step kk is S n-tiles 2kk (k 0-7) and 2kk+1 (k 8-15)
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    a[mt][0] = pack_bf16x2(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
                    a[mt][1] = pack_bf16x2(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
                    a[mt][2] = pack_bf16x2(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
                    a[mt][3] = pack_bf16x2(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < DT / 2; dp++) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, vb + 2 * soff<D>(kk * 16 + v_row, 2 * dp + v_hi));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
                        mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
                    }
                }
            }
        }
        st_rd = st_rd + 1 == STAGES ? 0 : st_rd + 1;
    }
    cp_async_wait<0>(); // only empty groups can remain; leave nothing in flight

    // ---- epilogue: O / l as bf16, staged in this warp's own rows of sQ (no other warp reads
    // them) so that the global stores are 16 bytes wide ----
    if (!warp_active) return; // no barrier follows
    __syncwarp();             // every lane's ldmatrix reads of these rows precede the writes
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float l = l_run[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            inv[r] = l > 0.0f ? 1.0f / l : 0.0f;
        }
        const int ra = warp * 16 * MT + mt * 16 + (lane >> 2), t2 = 2 * (lane & 3);
#pragma unroll
        for (int d = 0; d < DT; d++) {
            *reinterpret_cast<uint32_t *>(sQ + soff<D>(ra, d) + t2) =
                pack_bf16x2(o[mt][d][0] * inv[0], o[mt][d][1] * inv[0]);
            *reinterpret_cast<uint32_t *>(sQ + soff<D>(ra + 8, d) + t2) =
                pack_bf16x2(o[mt][d][2] * inv[1], o[mt][d][3] * inv[1]);
        }
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 16 * MT * CH / 32; i++) {
        int idx = lane + 32 * i, r = idx / CH, c = idx % CH;
        if (wrow0 + r < q_len)
            *reinterpret_cast<uint4 *>(p.out + ((size_t)(q0 + wrow0 + r) * p.n_head + h) * D + c * 8) =
                *reinterpret_cast<const uint4 *>(sQ + soff<D>(warp * 16 * MT + r, c));
    }
}

template <int D> void launch(const Params &p, int n_qtiles, int n_seqs, cudaStream_t stream) {
    const size_t smem = smem_bytes<D>();
    CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)p.n_head, (unsigned)n_qtiles, (unsigned)n_seqs);
    attn_prefill_kernel<D><<<grid, THREADS, smem, stream>>>(p);
    CUDA_CHECK(cudaGetLastError());
}

} // namespace

extern "C" void cs_cuda_attn_prefill(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
                                     const uint16_t *v_cache, const cs_attn_batch *b, int max_q_len,
                                     int n_head, int n_kv, int head_dim, float scale, void *stream) {
    CS_ASSERT(b && b->n_seqs >= 0 && b->block_size >= 1 && max_q_len >= 0);
    CS_ASSERT(n_head > 0 && n_kv > 0 && n_head % n_kv == 0);
    CS_ASSERT(head_dim == 64 || head_dim == 128);
    CS_ASSERT(scale > 0 && isfinite(scale)); // the max is taken on unscaled scores
    if (b->n_seqs == 0 || max_q_len == 0) return;
    CS_ASSERT(out && q && k_cache && v_cache && b->q_start && b->kv_len && b->bt_start && b->block_table);
    // 16-byte vector loads and stores of head_dim rows
    CS_ASSERT(((uintptr_t)out & 15) == 0 && ((uintptr_t)q & 15) == 0);
    CS_ASSERT(((uintptr_t)k_cache & 15) == 0 && ((uintptr_t)v_cache & 15) == 0);
    int n_qtiles = (max_q_len + BM - 1) / BM;
    CS_ASSERT(n_qtiles <= 65535 && b->n_seqs <= 65535);
    Params p;
    p.out = out;
    p.q = q;
    p.k = k_cache;
    p.v = v_cache;
    p.q_start = b->q_start;
    p.kv_len = b->kv_len;
    p.bt_start = b->bt_start;
    p.block_table = b->block_table;
    p.block_size = b->block_size;
    p.n_head = n_head;
    p.group = n_head / n_kv;
    p.kv_dim = n_kv * head_dim;
    p.scale_log2 = scale * 1.4426950408889634f;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (head_dim == 64) launch<64>(p, n_qtiles, b->n_seqs, st);
    else launch<128>(p, n_qtiles, b->n_seqs, st);
}
