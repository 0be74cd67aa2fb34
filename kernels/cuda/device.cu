// Device discovery, in its own object so that linking it pulls in no kernel.
#include <cuda_runtime.h>

#include "cuda_kernels.h"

extern "C" int cs_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the non-sticky "no device" error
        return 0;
    }
    return n;
}
