#include <string.h>

#include "../kernels.h"

void cs_cpu_kv_write(float *k_cache, float *v_cache, const float *k, const float *v,
                     const int32_t *slots, int n_tok, int kv_dim) {
    for (int t = 0; t < n_tok; t++) {
        memcpy(k_cache + (size_t)slots[t] * kv_dim, k + (size_t)t * kv_dim, (size_t)kv_dim * sizeof(float));
        memcpy(v_cache + (size_t)slots[t] * kv_dim, v + (size_t)t * kv_dim, (size_t)kv_dim * sizeof(float));
    }
}
