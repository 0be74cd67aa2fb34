// The KV cache memory: for every layer, K and V for n_blocks blocks of block_size token
// slots, each slot kv_dim floats. This file owns the memory only; which sequence holds which
// block is the block manager's business (engine/block_alloc.h).
#ifndef CS_KV_CACHE_H
#define CS_KV_CACHE_H

#include <stddef.h>

#include "../common/status.h"

typedef struct cs_kv_cache {
    int n_layer, n_blocks, block_size, kv_dim;
    float *k, *v; // (n_layer, n_blocks * block_size, kv_dim) each
} cs_kv_cache;

// Allocates n_blocks blocks. The caller frees with cs_kv_cache_free.
cs_status cs_kv_cache_init(cs_kv_cache *kv, int n_layer, int n_blocks, int block_size, int kv_dim,
                           char *err, size_t errlen);
void cs_kv_cache_free(cs_kv_cache *kv);
// Copies the first n_rows positions of block src into block dst, K and V of every layer
// (copy-on-write of a shared partial block).
void cs_kv_cache_copy_rows(cs_kv_cache *kv, int dst, int src, int n_rows);
size_t cs_kv_cache_block_bytes(int n_layer, int block_size, int kv_dim); // K and V, all layers
float *cs_kv_layer_k(const cs_kv_cache *kv, int layer);
float *cs_kv_layer_v(const cs_kv_cache *kv, int layer);

#endif
