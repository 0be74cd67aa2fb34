#include "../dummy_init.h"
#include "../kernels.h"

void cs_cpu_fill_dummy_bf16(uint16_t *dst, int64_t n, uint64_t seed, uint32_t tensor_id, float scale) {
    for (int64_t i = 0; i < n; i++) dst[i] = cs_f32_to_bf16(cs_dummy_value(seed, tensor_id, (uint64_t)i, scale));
}
