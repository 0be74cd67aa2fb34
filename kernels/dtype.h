// Element types of weights and activations, and the sizes of their storage blocks.
//
// Quantised types are stored in blocks along a row (the innermost, K, dimension), with the
// bit layout GGUF defines, so a GGUF tensor is used in place:
//   Q8_0: 32 weights = fp16 d, int8 q[32];                    w = d * q
//   Q4_0: 32 weights = fp16 d, uint8 qs[16];                  w = d * (nibble - 8)
//   Q4_1: 32 weights = fp16 d, fp16 m, uint8 qs[16];          w = d * nibble + m
// In Q4_0/Q4_1 byte j holds weight j in its low nibble and weight j+16 in its high nibble.
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
    CS_DTYPE_COUNT,
} cs_dtype;

#define CS_QK 32 // weights per block of Q8_0 / Q4_0 / Q4_1

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

float cs_fp16_to_f32(uint16_t h);
uint16_t cs_f32_to_fp16(float f); // round to nearest even
float cs_bf16_to_f32(uint16_t h);
uint16_t cs_f32_to_bf16(float f); // round to nearest even, NaN kept NaN

#ifdef __cplusplus
}
#endif

#endif
