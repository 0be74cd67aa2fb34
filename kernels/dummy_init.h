// Seeded random weights for --dummy-weights, defined so that the CPU and the GPU produce the
// same bits: element i of tensor id under seed is a 24-bit integer from a splitmix64 hash,
// centred and scaled by a power-of-two step (both exact), times scale (one rounding), then
// rounded to bf16 (round to nearest even on both sides). No fused multiply-add can change it.
#ifndef CS_DUMMY_INIT_H
#define CS_DUMMY_INIT_H

#include <stdint.h>

#ifdef __CUDACC__
#define CS_HD __host__ __device__ __forceinline__
#else
#define CS_HD static inline
#endif

// Uniform in [-scale, scale) as fp32, before the bf16 rounding.
CS_HD float cs_dummy_value(uint64_t seed, uint32_t tensor_id, uint64_t i, float scale) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + ((uint64_t)tensor_id << 40) + i;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    int32_t q = (int32_t)(z >> 40) - (1 << 23); // [-2^23, 2^23)
    return (float)q * (scale * 0x1p-23f);
}

// Tensor ids: one per matrix of the model, so that CPU and GPU name them alike.
enum {
    CS_DUMMY_EMBD = 1,
    CS_DUMMY_OUTPUT = 2,
    CS_DUMMY_LAYER0 = 16, // + 16 * layer + one of the kinds below
    CS_DUMMY_Q = 0, CS_DUMMY_K, CS_DUMMY_V, CS_DUMMY_O, CS_DUMMY_GATE, CS_DUMMY_UP, CS_DUMMY_DOWN,
    CS_DUMMY_ATTN_NORM, CS_DUMMY_FFN_NORM, CS_DUMMY_OUT_NORM, CS_DUMMY_BQ, CS_DUMMY_BK, CS_DUMMY_BV,
};

static inline uint32_t cs_dummy_layer_id(int layer, int kind) {
    return CS_DUMMY_LAYER0 + 16u * (uint32_t)layer + (uint32_t)kind;
}

#endif
