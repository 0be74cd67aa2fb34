// The GPU layout of int4 / int8 weight matrices: what the CUDA dequant-matmul kernels
// (kernels/cuda/qmatmul.cu) read, made once at load time from any int4 / int8 source (GGUF
// Q4_0 / Q4_1 / Q8_0, the load-time I4_Gg / I8_Gg, AWQ / GPTQ through those).
//
// A matrix W has n rows (output features) and k columns (the reduction), quantised along k in
// groups of g (32, 64 or 128): w[r][c] = s[r][c/g] * q[r][c] + m[r][c/g], q an unsigned 4-bit
// code (int4) or a signed 8-bit one with m = 0 (int8). n is padded to n_pad (a multiple of 16)
// and k to k_pad (a multiple of 64) with zero codes and zero scales: padding weighs 0.
//
// Codes: one mma.sync m16n8k16 A fragment per 32-bit word, each lane's 16-byte load four of
// them. The matrix is cut in 16-row tiles (rt) and 64-column chunks (c); a (rt, c) cell is 512
// bytes (int4) or 1024 bytes (int8), read by one warp, lane L = 4 G + T (G 0..7, T 0..3)
// taking 16 or 32 consecutive bytes. Within a chunk the k order is permuted so that lane T's
// operand of k16-step j covers the columns kc = 64 c + 16 T + 4 j .. + 3 (the activations
// are permuted the same way, so the sum over k is unchanged): lane T then reads its
// activations as 16 consecutive ones, x[64 c + 16 T .. + 16), two 16-byte loads per token.
// With r0 = 16 rt + G:
//   int4, word j of lane L (uint32 index ((rt * n_chunks + c) * 32 + L) * 4 + j), nibble i at
//     bits 4i..4i+3:  i = 0: q[r0][kc]    1: q[r0+8][kc]    2: q[r0][kc+2]    3: q[r0+8][kc+2]
//                     i = 4: q[r0][kc+1]  5: q[r0+8][kc+1]  6: q[r0][kc+3]    7: q[r0+8][kc+3]
//     so (word >> 4i) & 0x000F000F, ORed with 0x43004300, is the bf16 pair (128 + q, 128 + q')
//     of fragment register i (a0a1, a2a3, a4a5, a6a7 for i = 0..3): one shift and one LOP3
//     per two weights, no int-to-float instruction.
//   int8, words 2j and 2j+1 of lane L (uint32 index ((rt * n_chunks + c) * 32 + L) * 8 + w),
//     bytes in order: word 2j = q[r0][kc], q[r0][kc+1], q[r0+8][kc], q[r0+8][kc+1];
//     word 2j+1 = the same at kc+2, kc+3 (each byte a two's-complement int8).
// Scales: uint32 (rt * n_groups + group) * 16 + (r % 16), with n_groups = k_pad / g: bf16 s
// in the low half, bf16 m in the high half (0 for int8). The kernels compute each weight as
// bf16(s * q + m) in one rounding (packed bf16 FMA): s and m are rounded to bf16 here, which
// moves a weight by at most 2^-8 of |s q| + |m|, the same order as the bf16 rounding of the
// weight itself that the dense path makes.
#ifndef CS_QPACK_H
#define CS_QPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_qpack_dims {
    int bits, group;     // 4 or 8; 32, 64 or 128
    int64_t n, k;        // the matrix
    int64_t n_pad, k_pad;
    int64_t n_tiles;     // n_pad / 16
    int64_t n_chunks;    // k_pad / 64
    int64_t n_groups;    // k_pad / group
    size_t code_words;   // uint32 words of codes
    size_t scale_words;  // uint32 words of scales
} cs_qpack_dims;

// false when bits, group, n or k are invalid (k must be a multiple of group).
bool cs_qpack_dims_of(int bits, int group, int64_t n, int64_t k, cs_qpack_dims *d);

// The bits and group a source type packs to (0 when it does not: float types).
int cs_qpack_bits(cs_dtype t);

// The plain form of a matrix: codes (n, k) bytes (int4 0..15; int8 the int8's bits), s and m
// (n, k / group) floats (m ignored for int8).
// Rows [row0, row0 + rows) of a source matrix of type t (rows of k elements, packed back to
// back) into the plain arrays, which hold the rows of the whole (fused) matrix of k columns.
void cs_qplain_from(cs_dtype t, const void *src, int64_t rows, int64_t k, int64_t row0, uint8_t *codes,
                    float *s, float *m);

// plain -> packed. codes / scales hold d->code_words / d->scale_words words; padding is
// written as zeros.
void cs_qpack(const cs_qpack_dims *d, const uint8_t *codes, const float *s, const float *m, uint32_t *pcodes,
              uint32_t *pscales);
// packed -> plain (s and m come back as the bf16 values the kernels use).
void cs_qunpack(const cs_qpack_dims *d, const uint32_t *pcodes, const uint32_t *pscales, uint8_t *codes, float *s,
                float *m);

// The weight the kernels compute for row r, column c of a packed matrix: bf16(s q + m),
// rounded once (the CPU reference for the GPU kernels).
float cs_qpack_weight(const cs_qpack_dims *d, const uint32_t *pcodes, const uint32_t *pscales, int64_t r,
                      int64_t c);

#ifdef __cplusplus
}
#endif

#endif
