// SwiGLU on the fused gate/up projection: out (n, ffn) = silu(g) * u, g = gate_up[:, :ffn],
// u = gate_up[:, ffn:], in fp32 and rounded to bf16 once.
//
// One thread per 8 outputs (grid-stride over n * ffn / 8 chunks): two 16-byte loads (gate and
// up), one 16-byte store. silu is g / (1 + expf(-g)) with the accurate expf (not __expf) and
// an IEEE divide, the expression of cs_cpu_swiglu; large negative g gives expf = inf and a
// result of -0, as on the CPU.
#include <cuda_bf16.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__device__ __forceinline__ uint32_t swiglu2(uint32_t g, uint32_t u) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(silu_mul(bf16_lo(g), bf16_lo(u)),
                                                   silu_mul(bf16_hi(g), bf16_hi(u)));
    return *reinterpret_cast<const uint32_t *>(&v);
}

// n_chunks = n * ffn8; chunk c is row c / ffn8, columns 8 * (c % ffn8) .. + 8.
__global__ void swiglu_chunks(uint16_t *__restrict__ out, const uint16_t *__restrict__ gate_up,
                              int64_t n_chunks, int ffn8) {
    const uint4 *gu = reinterpret_cast<const uint4 *>(gate_up); // row stride 2 * ffn8 chunks
    uint4 *o = reinterpret_cast<uint4 *>(out);                  // row stride ffn8 chunks
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < n_chunks;
         c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = c / ffn8;
        const int64_t col = c - row * ffn8;
        const uint4 g = gu[row * 2 * ffn8 + col], u = gu[row * 2 * ffn8 + ffn8 + col];
        o[c] = make_uint4(swiglu2(g.x, u.x), swiglu2(g.y, u.y), swiglu2(g.z, u.z), swiglu2(g.w, u.w));
    }
}

} // namespace

extern "C" void cs_cuda_swiglu(uint16_t *out, const uint16_t *gate_up, int n, int ffn, void *stream) {
    CS_ASSERT(n >= 0 && ffn > 0 && ffn % 8 == 0);
    CS_ASSERT(((uintptr_t)out & 15) == 0 && ((uintptr_t)gate_up & 15) == 0);
    const int64_t n_chunks = (int64_t)n * (ffn / 8);
    if (n_chunks == 0) return;
    const int threads = 256;
    int64_t blocks = (n_chunks + threads - 1) / threads;
    if (blocks > (1 << 20)) blocks = 1 << 20; // grid-stride covers the rest
    swiglu_chunks<<<(unsigned)blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(
        out, gate_up, n_chunks, ffn / 8);
    CUDA_CHECK(cudaGetLastError());
}
