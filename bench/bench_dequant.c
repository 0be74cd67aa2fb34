// Dequantise-to-bf16 on the GPU at Llama-3-8B projection shapes: validates against the CPU
// reference first, then times with CUDA events (median of 50, inputs rotated past L2) and
// prints GB/s (bytes read + written) as a share of the measured device-to-device copy rate.
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_dequant: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"
#include "bench_cuda_util.h"

#define N_RUNS 50
#define N_COPIES 4 // rotate through 4 inputs so the 60 MB L2 cannot hold them

static void bench_one(cs_dtype t, int64_t rows, int64_t cols, double ceiling) {
    size_t row_bytes;
    CS_ASSERT(cs_dtype_row_bytes(t, cols, &row_bytes));
    size_t in = row_bytes * (size_t)rows, out = (size_t)(rows * cols) * 2;
    unsigned char *h = malloc(in);
    for (size_t i = 0; i < in; i++) h[i] = (unsigned char)(i * 2654435761u >> 24);
    if (t == CS_DTYPE_F16) // finite values only: NaN payloads need not survive conversion
        for (size_t i = 0; i < in / 2; i++) {
            uint16_t v = cs_f32_to_fp16((float)((int)(i % 2001) - 1000) / 512.0f);
            memcpy(h + 2 * i, &v, 2);
        }
    for (size_t b = 0; t >= CS_DTYPE_Q8_0 && b < in / (size_t)cs_dtype_block_bytes(t); b++) {
        uint16_t s = cs_f32_to_fp16(0.01f), m = cs_f32_to_fp16(-0.05f); // finite scales
        memcpy(h + b * (size_t)cs_dtype_block_bytes(t), &s, 2);
        if (t == CS_DTYPE_Q4_1) memcpy(h + b * (size_t)cs_dtype_block_bytes(t) + 2, &m, 2);
    }
    void *d_in[N_COPIES];
    uint16_t *d_out;
    for (int c = 0; c < N_COPIES; c++) {
        CS_ASSERT(cudaMalloc(&d_in[c], in) == cudaSuccess);
        cudaMemcpy(d_in[c], h, in, cudaMemcpyHostToDevice);
    }
    CS_ASSERT(cudaMalloc((void **)&d_out, out) == cudaSuccess);
    // validate the first row against the CPU reference before timing anything
    float *ref = malloc((size_t)cols * sizeof *ref);
    uint16_t *got = malloc((size_t)cols * 2);
    cs_cpu_dequant_row(t, h, ref, cols);
    cs_cuda_dequant_bf16(t, d_in[0], d_out, rows, cols, NULL);
    cudaMemcpy(got, d_out, (size_t)cols * 2, cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < cols; i++)
        if (got[i] != cs_f32_to_bf16(ref[i])) {
            fprintf(stderr, "bench_dequant: %s [%lld] got 0x%04x, reference 0x%04x (%g): not timing it\n",
                    cs_dtype_name(t), (long long)i, got[i], cs_f32_to_bf16(ref[i]), (double)ref[i]);
            exit(1);
        }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float ms[N_RUNS];
    for (int r = 0; r < N_RUNS + 5; r++) {
        cudaEventRecord(e0, 0);
        cs_cuda_dequant_bf16(t, d_in[r % N_COPIES], d_out, rows, cols, NULL);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (r >= 5) cudaEventElapsedTime(&ms[r - 5], e0, e1);
    }
    float m = bench_median_ms(ms, N_RUNS);
    double gbs = (double)(in + out) / (m * 1e-3) / 1e9;
    printf("| dequant %-4s -> bf16 | %5lld x %-6lld | %8.1f | %7.0f | %5.1f%% |\n", cs_dtype_name(t),
           (long long)rows, (long long)cols, m * 1e3, gbs, 100.0 * gbs * 1e9 / ceiling);
    for (int c = 0; c < N_COPIES; c++) cudaFree(d_in[c]);
    cudaFree(d_out);
    free(h);
    free(ref);
    free(got);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("bench_dequant: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    double ceiling = bench_copy_rate();
    printf("device: %s; device-to-device copy %.2f TB/s (read + write)\n\n", p.name, ceiling / 1e12);
    printf("| kernel | rows x cols | us | GB/s | %% of copy |\n|---|---|---|---|---|\n");
    const cs_dtype types[] = {CS_DTYPE_Q4_0, CS_DTYPE_Q4_1, CS_DTYPE_Q8_0, CS_DTYPE_F16};
    for (int i = 0; i < 4; i++) {
        bench_one(types[i], 14336, 4096, ceiling);
        bench_one(types[i], 4096, 4096, ceiling);
    }
    return 0;
}
#endif
