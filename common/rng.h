// A tiny, well-mixed generator for reproducible synthetic data and seeding.
#ifndef CS_RNG_H
#define CS_RNG_H

// splitmix64: each call advances *s and returns the next 64 random bits.
#include <stdint.h>
static inline uint64_t cs_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// xorshift64, returning 32 of its bits: the test data generator of the GPU tests and
// benchmarks (each file keeps its own seed).
static inline uint32_t cs_xorshift32(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

#endif
