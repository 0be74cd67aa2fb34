#include "kv_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t cs_kv_cache_block_bytes(int n_layer, int block_size, int kv_dim) {
    return 2 * (size_t)n_layer * block_size * kv_dim * sizeof(float);
}

cs_status cs_kv_cache_init(cs_kv_cache *kv, int n_layer, int n_blocks, int block_size, int kv_dim,
                           char *err, size_t errlen) {
    memset(kv, 0, sizeof *kv);
    if (n_blocks < 1 || block_size < 1 || (size_t)n_blocks > SIZE_MAX / cs_kv_cache_block_bytes(n_layer, block_size, kv_dim))
        return cs_errf(err, errlen, CS_ERR_INVALID, "kv cache: bad size (%d blocks of %d)", n_blocks, block_size);
    size_t per = (size_t)n_layer * n_blocks * block_size * kv_dim * sizeof(float);
    kv->k = aligned_alloc(64, (per + 63) / 64 * 64);
    kv->v = aligned_alloc(64, (per + 63) / 64 * 64);
    if (!kv->k || !kv->v) {
        free(kv->k);
        free(kv->v);
        kv->k = kv->v = NULL;
        return cs_errf(err, errlen, CS_ERR_NOMEM, "kv cache: cannot allocate %zu bytes", 2 * per);
    }
    kv->n_layer = n_layer;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->kv_dim = kv_dim;
    return CS_OK;
}

void cs_kv_cache_free(cs_kv_cache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

float *cs_kv_layer_k(const cs_kv_cache *kv, int layer) {
    return kv->k + (size_t)layer * kv->n_blocks * kv->block_size * kv->kv_dim;
}

float *cs_kv_layer_v(const cs_kv_cache *kv, int layer) {
    return kv->v + (size_t)layer * kv->n_blocks * kv->block_size * kv->kv_dim;
}

void cs_kv_cache_copy_rows(cs_kv_cache *kv, int dst, int src, int n_rows) {
    size_t row = (size_t)kv->kv_dim, bs = (size_t)kv->block_size;
    for (int l = 0; l < kv->n_layer; l++) {
        float *k = cs_kv_layer_k(kv, l), *v = cs_kv_layer_v(kv, l);
        memcpy(k + (size_t)dst * bs * row, k + (size_t)src * bs * row, sizeof(float) * row * (size_t)n_rows);
        memcpy(v + (size_t)dst * bs * row, v + (size_t)src * bs * row, sizeof(float) * row * (size_t)n_rows);
    }
}
