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

} // namespace

extern "C" void cs_cuda_fill_dummy_bf16(uint16_t *dst, int64_t n, uint64_t seed, uint32_t tensor_id,
                                        float scale, void *stream) {
    CS_ASSERT(n >= 0);
    if (n == 0) return;
    int64_t blocks = (n + 255) / 256;
    fill_dummy<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, (cudaStream_t)stream>>>(dst, n, seed, tensor_id, scale);
    CUDA_CHECK(cudaGetLastError());
}
