// Grammar masks on the GPU (constrained decoding): logits of tokens the grammar forbids become
// -inf before the sampler runs, so constrained rows sample on the device like the others.
#include <math.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

// One CTA per row; a thread per token, so a warp's stores are 32 consecutive floats and its
// 32 tokens share one word of the bitset (one broadcast load).
__global__ void apply_mask(float *__restrict__ logits, const uint32_t *__restrict__ bits,
                           const int32_t *__restrict__ mask_row, int vocab) {
    int r = blockIdx.x, m = mask_row[r];
    if (m < 0) return; // an unconstrained row
    float *row = logits + (size_t)r * vocab;
    const uint32_t *b = bits + (size_t)m * ((vocab + 31) / 32);
    for (int t = threadIdx.x; t < vocab; t += blockDim.x)
        if (!(b[t >> 5] >> (t & 31) & 1u)) row[t] = -INFINITY;
}

} // namespace

extern "C" void cs_cuda_apply_token_mask(float *logits, const uint32_t *bits, const int32_t *mask_row, int n_rows,
                                         int vocab, void *stream) {
    CS_ASSERT(n_rows >= 0 && vocab >= 1);
    if (n_rows == 0) return;
    apply_mask<<<n_rows, 256, 0, (cudaStream_t)stream>>>(logits, bits, mask_row, vocab);
    CUDA_CHECK(cudaGetLastError());
}
