// The grammar-mask kernel against the CPU rule (cs_constraint_apply's loop): random logits,
// random bitsets (some all-ones words, some all-zero), rows without a mask left bit-identical,
// vocabularies that are and are not multiples of 32. Exits 77 without CUDA or a device.
#include <stdio.h>

#include "test_util.h"

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("built without CUDA: skipped");
    return 77;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "kernels/cuda/cuda_kernels.h"

static uint64_t rng = 0x51ed2701a3c4b5d6ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }

static void check(int n_rows, int vocab) {
    int words = (vocab + 31) / 32, n_masks = 0;
    float *logits = malloc(sizeof(float) * (size_t)n_rows * vocab), *want = malloc(sizeof(float) * (size_t)n_rows * vocab);
    float *got = malloc(sizeof(float) * (size_t)n_rows * vocab);
    uint32_t *bits = malloc(4 * (size_t)n_rows * words);
    int32_t *mask_row = malloc(4 * (size_t)n_rows);
    for (size_t i = 0; i < (size_t)n_rows * vocab; i++) logits[i] = (float)(int)(next_u32() % 20001 - 10000) / 1000.0f;
    for (int r = 0; r < n_rows; r++) {
        mask_row[r] = r % 3 == 2 ? -1 : n_masks++;
        if (mask_row[r] < 0) continue;
        for (int w = 0; w < words; w++) {
            uint32_t k = next_u32() % 4;
            bits[(size_t)mask_row[r] * words + w] = k == 0 ? 0 : k == 1 ? 0xFFFFFFFFu : next_u32();
        }
    }
    memcpy(want, logits, sizeof(float) * (size_t)n_rows * vocab);
    for (int r = 0; r < n_rows; r++)
        for (int t = 0; t < vocab && mask_row[r] >= 0; t++)
            if (!(bits[(size_t)mask_row[r] * words + t / 32] >> (t % 32) & 1)) want[(size_t)r * vocab + t] = -INFINITY;
    float *d_logits;
    uint32_t *d_bits;
    int32_t *d_rows;
    CS_ASSERT(cudaMalloc((void **)&d_logits, sizeof(float) * (size_t)n_rows * vocab) == cudaSuccess &&
              cudaMalloc((void **)&d_bits, 4 * (size_t)(n_masks ? n_masks : 1) * words) == cudaSuccess &&
              cudaMalloc((void **)&d_rows, 4 * (size_t)n_rows) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(d_logits, logits, sizeof(float) * (size_t)n_rows * vocab, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(d_bits, bits, 4 * (size_t)n_masks * words, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(d_rows, mask_row, 4 * (size_t)n_rows, cudaMemcpyHostToDevice) == cudaSuccess);
    cs_cuda_apply_token_mask(d_logits, d_bits, d_rows, n_rows, vocab, NULL);
    CS_ASSERT(cudaMemcpy(got, d_logits, sizeof(float) * (size_t)n_rows * vocab, cudaMemcpyDeviceToHost) == cudaSuccess);
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)n_rows * vocab; i++) bad += memcmp(&got[i], &want[i], 4) != 0;
    TEST_CONDF(bad == 0, "rows %d vocab %d: %zu logits differ", n_rows, vocab, bad);
    cudaFree(d_logits);
    cudaFree(d_bits);
    cudaFree(d_rows);
    free(logits), free(want), free(got), free(bits), free(mask_row);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    int vocabs[] = {1, 31, 32, 1000, 49152, 128256, 152064};
    for (int i = 0; i < 7; i++) {
        check(1, vocabs[i]);
        check(7, vocabs[i]);
    }
    check(64, 49152);
    return TEST_REPORT();
}
#endif
