// Element types of weights and activations, and the sizes of their storage blocks.
//
// Quantised types are stored in blocks along a row (the innermost, K, dimension), with the
// bit layout GGUF defines, so a GGUF tensor is used in place:
//   Q8_0: 32 weights = fp16 d, int8 q[32];                    w = d * q
//   Q4_0: 32 weights = fp16 d, uint8 qs[16];                  w = d * (nibble - 8)
//   Q4_1: 32 weights = fp16 d, fp16 m, uint8 qs[16];          w = d * nibble + m
// In Q4_0/Q4_1 byte j holds weight j in its low nibble and weight j+16 in its high nibble.
//
// Types made at load time (by quantising float weights with cs_cpu_quantize_row, or by
// repacking an AWQ / GPTQ checkpoint's groups; never read from a file as such), with larger
// groups g = 64 or 128 sharing one scale:
//   I4_Gg: g weights = fp32 d, fp32 m, then g/32 sub-blocks of 16 bytes, each in Q4_1's
//          nibble order (byte j of sub-block s: low nibble = weight 32s+j, high nibble =
//          weight 32s+j+16);                                 w = d * nibble + m
//          block bytes 8 + g/2. d and m are fp32, not fp16 as in Q4_1, because an AWQ /
//          GPTQ group (w = s * (q - z), s fp16, z in 0..16) maps to d = s, m = -z * s, and
//          z * s needs up to 4 more significant bits than fp16 holds; in fp32 it is exact.
//          Q4_1 is this layout with g = 32 and fp16 d, m (Q4_0 is Q4_1 with m = -8d);
//          I4_G32 is it with g = 32 and fp32 d, m: AWQ / GPTQ groups of 32 (24-byte blocks).
//   I8_Gg: g weights = fp16 d, int8 q[g];                    w = d * q
//          block bytes 2 + g. Q8_0 is this layout with g = 32.
// Products and sums are each rounded to fp32 by every decoder (a decoder may fuse the two only
// where the product is exact, which leaves the same value).
#ifndef CS_DTYPE_H
#define CS_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cs_dtype {
    CS_DTYPE_F32,
    CS_DTYPE_F16,
    CS_DTYPE_BF16,
    CS_DTYPE_Q8_0,
    CS_DTYPE_Q4_0,
    CS_DTYPE_Q4_1,
    CS_DTYPE_I4_G64,
    CS_DTYPE_I4_G128,
    CS_DTYPE_I8_G64,
    CS_DTYPE_I8_G128,
    CS_DTYPE_I4_G32,
    CS_DTYPE_COUNT,
} cs_dtype;

#define CS_QK 32 // weights per block of Q8_0 / Q4_0 / Q4_1
// Bytes per block of g weights: I4_Gg (fp32 d, m; Q4_1, fp16 d, m, at g = 32) and I8_Gg
// (Q8_0 at g = 32).
#define CS_I4_BLOCK_BYTES(g) ((g) == CS_QK ? 4 + (g) / 2 : 8 + (g) / 2)
#define CS_I4F_BLOCK_BYTES(g) (8 + (g) / 2) // fp32 d and m at every g (I4_G32, I4_G64, I4_G128)
#define CS_I8_BLOCK_BYTES(g) (2 + (g))

typedef struct cs_block_q8_0 {
    uint16_t d; // fp16
    int8_t qs[CS_QK];
} cs_block_q8_0;

typedef struct cs_block_q4_0 {
    uint16_t d; // fp16
    uint8_t qs[CS_QK / 2];
} cs_block_q4_0;

typedef struct cs_block_q4_1 {
    uint16_t d; // fp16
    uint16_t m; // fp16
    uint8_t qs[CS_QK / 2];
} cs_block_q4_1;

const char *cs_dtype_name(cs_dtype t);
// Weights per storage block (1 for plain floats) and bytes per block.
int cs_dtype_block_elems(cs_dtype t);
int cs_dtype_block_bytes(cs_dtype t);
// Bytes of a row of n elements; false if n is not a multiple of the block or overflows.
bool cs_dtype_row_bytes(cs_dtype t, int64_t n, size_t *out);
// The type an AWQ / GPTQ checkpoint's groups of group weights repack into exactly (fp32 d and
// m): I4_G32, I4_G64, I4_G128; CS_DTYPE_COUNT for any other group.
cs_dtype cs_dtype_int4_exact(int group);
// The type storing int4 / int8 codes in groups of group weights: Q4_1 / Q8_0 for 32,
// I4_G64 / I8_G64 for 64, I4_G128 / I8_G128 for 128, CS_DTYPE_COUNT for any other group.
cs_dtype cs_dtype_int4(int group);
cs_dtype cs_dtype_int8(int group);
// Weights sharing one scale: 32 for Q8_0/Q4_0/Q4_1, g for I4_Gg/I8_Gg, 0 for float types.
int cs_dtype_group(cs_dtype t);

float cs_fp16_to_f32(uint16_t h);
uint16_t cs_f32_to_fp16(float f); // round to nearest even
float cs_bf16_to_f32(uint16_t h);
uint16_t cs_f32_to_bf16(float f); // round to nearest even, NaN kept NaN

#ifdef __cplusplus
}
#endif

#endif
