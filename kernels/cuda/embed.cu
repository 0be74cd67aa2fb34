// Token embedding lookup: x (n, dim) fp32 = rows ids of a bf16 table (vocab, dim).
//
// One thread per 8 elements of a row (a 2-D grid: chunks x rows): one 16-byte load of bf16
// and two 16-byte stores of fp32 (dim % 8 == 0 keeps every row 16-byte aligned); one chunk
// per thread keeps many loads in flight. bf16 -> fp32 is exact (a shift), so the result
// equals cs_cpu_embed on the same table bit for bit.
// The ids are trusted: the engine validated them against the vocabulary. A placeholder's
// (ids[i] < 0: the id a sampling step left in prev[-1 - ids[i]]) is clamped instead, since
// nothing on the host has seen it.
#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

// The bf16 in the low / high half of a 32-bit word (the lower address is the low half).
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// grid (chunks / blockDim, min(n, 65535)): chunk c of rows blockIdx.y, + gridDim.y, ...
__global__ void embed_rows(float *__restrict__ x, const uint16_t *__restrict__ table,
                           const int32_t *__restrict__ ids, const int32_t *__restrict__ prev, int vocab, int n,
                           int dim) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x; // chunk of 8 elements within the row
    if (c >= dim / 8) return;
    for (int64_t row = blockIdx.y; row < n; row += gridDim.y) {
        int32_t id = ids[row];
        if (id < 0) {
            id = prev[-1 - id];
            if (id < 0 || id >= vocab) id = 0;
        }
        const uint4 v = reinterpret_cast<const uint4 *>(table + (int64_t)id * dim)[c];
        float4 *dst = reinterpret_cast<float4 *>(x + row * dim) + 2 * c;
        dst[0] = make_float4(bf16_lo(v.x), bf16_hi(v.x), bf16_lo(v.y), bf16_hi(v.y));
        dst[1] = make_float4(bf16_lo(v.z), bf16_hi(v.z), bf16_lo(v.w), bf16_hi(v.w));
    }
}

} // namespace

extern "C" void cs_cuda_embed(float *x, const uint16_t *table, const int32_t *ids, const int32_t *prev, int vocab,
                              int n, int dim, void *stream) {
    CS_ASSERT(n >= 0 && dim > 0 && dim % 8 == 0 && vocab > 0);
    CS_ASSERT(((uintptr_t)x & 15) == 0 && ((uintptr_t)table & 15) == 0 && ((uintptr_t)ids & 3) == 0);
    if (n == 0) return;
    const int n8 = dim / 8;
    int threads = (n8 + 31) / 32 * 32; // whole warps, at most 128
    if (threads > 128) threads = 128;
    const dim3 grid((unsigned)((n8 + threads - 1) / threads), (unsigned)(n < 65535 ? n : 65535));
    embed_rows<<<grid, (unsigned)threads, 0, static_cast<cudaStream_t>(stream)>>>(x, table, ids, prev, vocab, n,
                                                                                    dim);
    CUDA_CHECK(cudaGetLastError());
}
