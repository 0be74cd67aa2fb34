// CUDA dequantise-to-bf16 against the CPU reference (fp32, then rounded to bf16 the same
// way): fresh random blocks of every type (the load-time I4_Gg / I8_Gg included), several
// shapes, the output poisoned beforehand.
// Exits 77 (skipped) when cserve was built without CUDA or there is no device.
#include <stdio.h>

#include "test_util.h"

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("built without CUDA: skipped");
    return 77;
}
#else
#include <cuda_runtime.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }

// Random bytes for the codes, and finite scales in [-2, 2] (the format's meaningful range).
static void fill_random(cs_dtype t, unsigned char *p, size_t nbytes, int64_t n_elems) {
    for (size_t i = 0; i < nbytes; i++) p[i] = (unsigned char)next_u32();
    bool has_m = t == CS_DTYPE_Q4_1 || t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128;
    int bb = cs_dtype_block_bytes(t), nscales = has_m ? 2 : 1;
    if (t == CS_DTYPE_F32)
        for (int64_t i = 0; i < n_elems; i++) ((float *)p)[i] = (float)(int)(next_u32() % 2001 - 1000) / 300.0f;
    else if (t == CS_DTYPE_F16 || t == CS_DTYPE_BF16)
        for (int64_t i = 0; i < n_elems; i++) {
            float v = (float)(int)(next_u32() % 2001 - 1000) / 300.0f;
            uint16_t h = t == CS_DTYPE_F16 ? cs_f32_to_fp16(v) : cs_f32_to_bf16(v);
            memcpy(p + 2 * i, &h, 2);
        }
    else
        for (size_t b = 0; b < nbytes / (size_t)bb; b++)
            for (int s = 0; s < nscales; s++) {
                float v = (float)(int)(next_u32() % 4001 - 2000) / 1000.0f;
                if (t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128) { // fp32 d, m (dtype.h)
                    v *= 1.0f + (float)(next_u32() % 1024) * 0x1p-20f; // bits fp16 lacks
                    memcpy(p + b * (size_t)bb + 4 * s, &v, 4);
                    continue;
                }
                uint16_t h = cs_f32_to_fp16(v);
                memcpy(p + b * (size_t)bb + 2 * s, &h, 2);
            }
}

static void check_shape(cs_dtype t, int64_t rows, int64_t cols) {
    size_t row_bytes;
    CS_ASSERT(cs_dtype_row_bytes(t, cols, &row_bytes));
    size_t nbytes = row_bytes * (size_t)rows, n = (size_t)(rows * cols);
    unsigned char *src = malloc(nbytes);
    float *ref = malloc(n * sizeof *ref);
    uint16_t *got = malloc(n * 2);
    fill_random(t, src, nbytes, rows * cols);
    for (int64_t r = 0; r < rows; r++) cs_cpu_dequant_row(t, src + (size_t)r * row_bytes, ref + r * cols, cols);
    void *d_src;
    uint16_t *d_dst;
    CS_ASSERT(cudaMalloc(&d_src, nbytes) == cudaSuccess && cudaMalloc((void **)&d_dst, n * 2) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(d_src, src, nbytes, cudaMemcpyHostToDevice) == cudaSuccess);
    CS_ASSERT(cudaMemset(d_dst, 0xff, n * 2) == cudaSuccess); // poison: bf16 0xffff is a NaN
    cs_cuda_dequant_bf16(t, d_src, d_dst, rows, cols, NULL);
    CS_ASSERT(cudaMemcpy(got, d_dst, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
    // Q formats compute d*q(+m) in fp32 like the reference, then round once: bit-exact.
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == cs_f32_to_bf16(ref[i])) continue;
        if (bad++ < 5)
            fprintf(stderr, "%s %lldx%lld [%zu]: got 0x%04x want 0x%04x (%g)\n", cs_dtype_name(t),
                    (long long)rows, (long long)cols, i, got[i], cs_f32_to_bf16(ref[i]), (double)ref[i]);
    }
    TEST_CONDF(bad == 0, "%s %lldx%lld: %zu of %zu differ", cs_dtype_name(t), (long long)rows,
               (long long)cols, bad, n);
    cudaFree(d_src);
    cudaFree(d_dst);
    free(src);
    free(ref);
    free(got);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    const int64_t shapes[][2] = {{1, 32}, {3, 96}, {5, 384}, {17, 576}, {576, 1536}, {1, 4096 * 32}};
    for (int t = 0; t < CS_DTYPE_COUNT; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            if (shapes[s][1] % cs_dtype_block_elems((cs_dtype)t) == 0) // rows hold whole groups
                check_shape((cs_dtype)t, shapes[s][0], shapes[s][1]);
    return TEST_REPORT();
}
#endif
