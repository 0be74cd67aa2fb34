// NCCL all-reduce (bf16, in place) over this machine's GPUs at the message sizes a decode
// step of Llama-3-8B sends: B tokens x 4096 x 2 bytes, twice per layer (after o and after
// down), 64 times a step. Prints µs per all-reduce (median of CUDA-event timings over 200)
// and per step. On one GPU this is NCCL's floor for a communicator of one rank (a launch and
// a local copy), which is what TP = 1 through the NCCL path pays.
#include <stdio.h>

#if !defined(CSERVE_HAVE_CUDA) || !defined(CSERVE_HAVE_NCCL)
int main(void) {
    puts("bench_nccl: built without CUDA or NCCL, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

#include "bench_cuda_util.h"
#include "common/assert.h"
#include "engine/tp_nccl.h"
#include "kernels/cuda/cuda_kernels.h"

#define RUNS 200
#define DIM 4096
#define ALLREDUCES_PER_STEP 64 // 2 per layer x 32 layers

int main(void) {
    int n = cs_cuda_device_count();
    if (n < 1) {
        puts("bench_nccl: no CUDA device");
        return 0;
    }
    char err[256];
    cs_tp_nccl *t = cs_tp_nccl_init(n, err, sizeof err);
    if (!t) {
        printf("bench_nccl: %s\n", err);
        return 1;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("devices: %d x %s; NCCL %d.%d.%d\n\n", n, prop.name, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
    printf("| tokens | bytes | µs per all-reduce | µs per decode step (x%d) |\n|---|---|---|---|\n", ALLREDUCES_PER_STEP);
    const int tokens[] = {1, 8, 64, 256};
    uint16_t **buf = calloc((size_t)n, sizeof *buf);
    cudaStream_t *st = calloc((size_t)n, sizeof *st);
    for (int r = 0; r < n; r++) {
        cudaSetDevice(r);
        CS_ASSERT(cudaMalloc((void **)&buf[r], (size_t)256 * DIM * 2) == cudaSuccess);
        cudaMemset(buf[r], 0, (size_t)256 * DIM * 2); // zeros: sums stay finite
        cudaStreamCreate(&st[r]);
    }
    cudaSetDevice(0);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (size_t i = 0; i < sizeof tokens / sizeof *tokens; i++) {
        size_t count = (size_t)tokens[i] * DIM;
        float ts[RUNS];
        for (int run = -10; run < RUNS; run++) {
            cudaSetDevice(0);
            cudaEventRecord(e0, st[0]);
            ncclGroupStart(); // one thread drives every rank
            for (int r = 0; r < n; r++) cs_tp_nccl_allreduce(cs_tp_nccl_rank(t, r), buf[r], count, st[r]);
            ncclGroupEnd();
            cudaSetDevice(0);
            cudaEventRecord(e1, st[0]);
            for (int r = 0; r < n; r++) {
                cudaSetDevice(r);
                cudaStreamSynchronize(st[r]);
            }
            if (run >= 0) cudaEventElapsedTime(&ts[run], e0, e1);
        }
        float us = bench_median_ms(ts, RUNS) * 1e3f;
        printf("| %d | %zu | %.1f | %.0f |\n", tokens[i], count * 2, us, us * ALLREDUCES_PER_STEP);
    }
    for (int r = 0; r < n; r++) {
        cudaSetDevice(r);
        cudaFree(buf[r]);
        cudaStreamDestroy(st[r]);
    }
    free(buf), free(st);
    cs_tp_nccl_free(t);
    return 0;
}
#endif
