// CUDA_CHECK: CUDA errors are sticky, so a failed call aborts with file:line and the reason.
#ifndef CS_CUDA_CHECK_H
#define CS_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CUDA_CHECK(call)                                                                   \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "%s:%d: CUDA error %s: %s\n", __FILE__, __LINE__,              \
                    cudaGetErrorName(e_), cudaGetErrorString(e_));                         \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
