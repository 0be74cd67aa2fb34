// Device discovery, in its own object so that linking it pulls in no kernel.
#include <atomic>

#include <cuda_runtime.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "per_device.cuh"

extern "C" int cs_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the non-sticky "no device" error
        return 0;
    }
    return n;
}

extern "C" int cs_cuda_current_device(void) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CS_ASSERT(dev >= 0 && dev < CS_CUDA_MAX_DEVICES);
    return dev;
}

extern "C" int cs_cuda_sm_count(void) {
    static std::atomic<int> cached[CS_CUDA_MAX_DEVICES];
    return once_per_device(cached, [](int dev) {
        int n = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
        return n < 1 ? 1 : n;
    });
}
