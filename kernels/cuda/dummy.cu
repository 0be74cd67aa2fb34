// Seeded dummy weights written on the device (--dummy-weights): benchmarks at real shapes
// need no checkpoint and no host-to-device copy of 16 GB.
#include <cuda_bf16.h>

#include "../../common/assert.h"
#include "../dummy_init.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

__global__ void fill_dummy(uint16_t *__restrict__ dst, int64_t n, uint64_t seed, uint32_t id, float scale) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(cs_dummy_value(seed, id, (uint64_t)i, scale)));
}

// The block (rows, cols) at (row0, col0) of a (., ld) tensor: a tensor-parallel rank's slice
// holds exactly the values of those places in the whole tensor.
__global__ void fill_dummy_block(uint16_t *__restrict__ dst, int64_t rows, int64_t cols, int64_t ld, int64_t row0,
                                 int64_t col0, uint64_t seed, uint32_t id, float scale) {
    int64_t n = rows * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i - r * cols;
        uint64_t at = (uint64_t)((row0 + r) * ld + col0 + c);
        dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(cs_dummy_value(seed, id, at, scale)));
    }
}

} // namespace

extern "C" void cs_cuda_fill_dummy_bf16(uint16_t *dst, int64_t n, uint64_t seed, uint32_t tensor_id,
                                        float scale, void *stream) {
    CS_ASSERT(n >= 0);
    if (n == 0) return;
    int64_t blocks = (n + 255) / 256;
    fill_dummy<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, (cudaStream_t)stream>>>(dst, n, seed, tensor_id, scale);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void cs_cuda_fill_dummy_bf16_block(uint16_t *dst, int64_t rows, int64_t cols, int64_t ld, int64_t row0,
                                              int64_t col0, uint64_t seed, uint32_t tensor_id, float scale,
                                              void *stream) {
    CS_ASSERT(rows >= 0 && cols >= 0 && row0 >= 0 && col0 >= 0 && col0 + cols <= ld);
    int64_t n = rows * cols;
    if (n == 0) return;
    int64_t blocks = (n + 255) / 256;
    fill_dummy_block<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, (cudaStream_t)stream>>>(
        dst, rows, cols, ld, row0, col0, seed, tensor_id, scale);
    CUDA_CHECK(cudaGetLastError());
}
