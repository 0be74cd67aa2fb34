#include "dtype.h"

#include <string.h>

_Static_assert(sizeof(cs_block_q4_1) == CS_I4_BLOCK_BYTES(CS_QK), "Q4_1 is the g = 32 case of CS_I4_BLOCK_BYTES");
_Static_assert(sizeof(cs_block_q8_0) == CS_I8_BLOCK_BYTES(CS_QK), "Q8_0 is I8 at g = 32");

const char *cs_dtype_name(cs_dtype t) {
    switch (t) {
    case CS_DTYPE_F32: return "F32";
    case CS_DTYPE_F16: return "F16";
    case CS_DTYPE_BF16: return "BF16";
    case CS_DTYPE_Q8_0: return "Q8_0";
    case CS_DTYPE_Q4_0: return "Q4_0";
    case CS_DTYPE_Q4_1: return "Q4_1";
    case CS_DTYPE_I4_G64: return "I4_G64";
    case CS_DTYPE_I4_G128: return "I4_G128";
    case CS_DTYPE_I8_G64: return "I8_G64";
    case CS_DTYPE_I8_G128: return "I8_G128";
    case CS_DTYPE_I4_G32: return "I4_G32";
    case CS_DTYPE_COUNT: break;
    }
    return "?";
}

int cs_dtype_group(cs_dtype t) {
    switch (t) {
    case CS_DTYPE_Q8_0:
    case CS_DTYPE_Q4_0:
    case CS_DTYPE_Q4_1:
    case CS_DTYPE_I4_G32: return CS_QK;
    case CS_DTYPE_I4_G64:
    case CS_DTYPE_I8_G64: return 64;
    case CS_DTYPE_I4_G128:
    case CS_DTYPE_I8_G128: return 128;
    case CS_DTYPE_F32:
    case CS_DTYPE_F16:
    case CS_DTYPE_BF16:
    case CS_DTYPE_COUNT: break;
    }
    return 0;
}

cs_dtype cs_dtype_int4(int group) {
    return group == 32 ? CS_DTYPE_Q4_1 : group == 64 ? CS_DTYPE_I4_G64 : group == 128 ? CS_DTYPE_I4_G128 : CS_DTYPE_COUNT;
}

cs_dtype cs_dtype_int4_exact(int group) {
    return group == 32 ? CS_DTYPE_I4_G32 : group == 64 ? CS_DTYPE_I4_G64 : group == 128 ? CS_DTYPE_I4_G128 : CS_DTYPE_COUNT;
}

cs_dtype cs_dtype_int8(int group) {
    return group == 32 ? CS_DTYPE_Q8_0 : group == 64 ? CS_DTYPE_I8_G64 : group == 128 ? CS_DTYPE_I8_G128 : CS_DTYPE_COUNT;
}

int cs_dtype_block_elems(cs_dtype t) {
    int g = cs_dtype_group(t);
    return g ? g : 1;
}

int cs_dtype_block_bytes(cs_dtype t) {
    switch (t) {
    case CS_DTYPE_F32: return 4;
    case CS_DTYPE_F16:
    case CS_DTYPE_BF16: return 2;
    case CS_DTYPE_Q8_0: return (int)sizeof(cs_block_q8_0);
    case CS_DTYPE_Q4_0: return (int)sizeof(cs_block_q4_0);
    case CS_DTYPE_Q4_1: return (int)sizeof(cs_block_q4_1);
    case CS_DTYPE_I4_G64: return CS_I4_BLOCK_BYTES(64);
    case CS_DTYPE_I4_G128: return CS_I4_BLOCK_BYTES(128);
    case CS_DTYPE_I8_G64: return CS_I8_BLOCK_BYTES(64);
    case CS_DTYPE_I8_G128: return CS_I8_BLOCK_BYTES(128);
    case CS_DTYPE_I4_G32: return CS_I4F_BLOCK_BYTES(32);
    case CS_DTYPE_COUNT: break;
    }
    return 0;
}

bool cs_dtype_row_bytes(cs_dtype t, int64_t n, size_t *out) {
    int be = cs_dtype_block_elems(t), bb = cs_dtype_block_bytes(t);
    if (n < 0 || bb == 0 || n % be != 0) return false;
    uint64_t blocks = (uint64_t)n / (uint64_t)be;
    if (blocks > SIZE_MAX / (uint64_t)bb) return false;
    *out = (size_t)(blocks * (uint64_t)bb);
    return true;
}

float cs_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { // subnormal: renormalise
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t cs_f32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { // subnormal or zero in fp16
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; // may carry into inf: correct
    return (uint16_t)(sign | half);
}

float cs_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t cs_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
