// A value asked of the CUDA runtime once per device: an attribute, an occupancy, or a setting
// that applies to a kernel on one device only (the shared-memory opt-in), so that each
// tensor-parallel rank asks on its own GPU.
#ifndef CS_PER_DEVICE_CUH
#define CS_PER_DEVICE_CUH

#include <atomic>

#include "cuda_kernels.h"

// cache[dev], asked with ask(dev) the first time the calling thread's current device needs it.
// 0 marks "not asked yet", so ask returns a nonzero value.
template <class Ask> int once_per_device(std::atomic<int> (&cache)[CS_CUDA_MAX_DEVICES], Ask ask) {
    const int dev = cs_cuda_current_device();
    int v = cache[dev].load(std::memory_order_relaxed);
    if (v == 0) {
        v = ask(dev);
        cache[dev].store(v, std::memory_order_relaxed);
    }
    return v;
}

#endif
