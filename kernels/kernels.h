// The backend interface. Every kernel has a plain C reference in kernels/cpu/ (the oracle and
// the CPU path) and, where it pays, a CUDA version in kernels/cuda/ taking the same data
// arguments (the CPU versions take a thread pool where the CUDA ones take a stream).
// Shapes in comments are row-major, innermost last: x (n, dim) is n rows of dim floats.
#ifndef CS_KERNELS_H
#define CS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/thread_pool.h"
#include "dtype.h"

// Dequantises n elements of one row stored as type t into fp32. n must be a multiple of
// cs_dtype_block_elems(t). Exact: the result is the value the format defines, computed in fp32.
void cs_cpu_dequant_row(cs_dtype t, const void *src, float *dst, int64_t n);

// Quantises n floats of one row into type t, round to nearest per group of g =
// cs_dtype_group(t) weights; t is Q8_0, Q4_1, I4_G64, I4_G128, I8_G64 or I8_G128 and n a
// multiple of g. int4: d = (max - min) / 15 and m = min, each rounded to fp16, then
// q = clamp(round((w - m) / d), 0, 15) with the rounded d and m. int8: d = absmax / 127
// rounded to fp16, q = clamp(round(w / d), -127, 127). A group with d == 0 gets q = 0.
// Every value must be finite and each group's scales must round to finite fp16 (int4: |min|
// and (max - min) / 15 below 65520; int8: absmax / 127 below 65520; |w| <= 65504 always
// suffices): anything else is a broken invariant (CS_ASSERT aborts), so a loader checks its
// input first. Rows that this function's output dequantises to always qualify.
void cs_cpu_quantize_row(cs_dtype t, const float *src, void *dst, int64_t n);

// out (n, dim) = rows ids of the embedding table (vocab, dim) stored as type t.
void cs_cpu_embed(float *out, const void *table, cs_dtype t, const int32_t *ids, int n, int dim);

// out (n, dim) = x / sqrt(mean(x^2) + eps) * w (dim). out may equal x.
void cs_cpu_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps);

// out (m, n) = x (m, k) @ W^T + bias (n, may be NULL), W (n, k) rows stored as wt.
// scratch: cs_cpu_matmul_scratch(k, threads of pool) bytes, 32-byte aligned.
void cs_cpu_matmul(float *out, const float *x, const void *w, cs_dtype wt, const float *bias,
                   int m, int n, int k, float *scratch, cs_pool *pool);
size_t cs_cpu_matmul_scratch(int k, int n_threads);

// Rotates x (n_tok, n_heads, head_dim) in place at positions pos (n_tok), the first rope_dim
// dims of each head, with the table cos_sin (max_pos, rope_dim / 2, 2) = (cos, sin) of
// pos * freq_i. neox: dim i pairs with i + rope_dim/2; else with its neighbour (2i, 2i+1).
void cs_cpu_rope(float *x, const int32_t *pos, int n_tok, int n_heads, int head_dim,
                 int rope_dim, const float *cos_sin, int neox);

// Writes k, v (n_tok, kv_dim) into the caches (slots, kv_dim) at slots[i] = block * block_size
// + offset.
void cs_cpu_kv_write(float *k_cache, float *v_cache, const float *k, const float *v,
                     const int32_t *slots, int n_tok, int kv_dim);

// A ragged batch as attention sees it. Sequence s has q_len(s) = q_start[s+1] - q_start[s]
// new tokens, which are the last q_len(s) of its kv_len[s] cached positions; its KV lives in
// blocks block_table[bt_start[s] .. bt_start[s+1]) of block_size slots each.
typedef struct cs_attn_batch {
    int n_seqs;
    const int32_t *q_start;     // (n_seqs + 1)
    const int32_t *kv_len;      // (n_seqs)
    const int32_t *bt_start;    // (n_seqs + 1)
    const int32_t *block_table; // (bt_start[n_seqs])
    int block_size;
} cs_attn_batch;

// out (n_tok, n_head, head_dim) = causal softmax(q k^T * scale) v over each sequence's paged
// KV; GQA: query head h reads kv head h / (n_head / n_kv). fp32 throughout; an online
// softmax, so any context length. scratch: cs_cpu_attention_scratch(n_head, threads) bytes.
void cs_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                      const cs_attn_batch *b, int n_head, int n_kv, int head_dim, float scale,
                      float *scratch, cs_pool *pool);
size_t cs_cpu_attention_scratch(int n_head, int n_threads);

// out (n) = silu(gate) * up. out may alias gate.
void cs_cpu_swiglu(float *out, const float *gate, const float *up, int n);

// The largest x[i], NaNs skipped; -INFINITY when there is none.
float cs_cpu_max(const float *x, int64_t n);
// sum over i of exp(x[i] - m) in double, for x[i] <= m (m finite): the normaliser of a
// softmax. Terms with x[i] - m below -87.3 (exp under 2^-126) or NaN count 0. exp within 2
// ulp of expf; eight lanes summed in a fixed order, the same bits with or without AVX2.
double cs_cpu_sum_exp(const float *x, int64_t n, float m);
// out[i] = exp((x[i] - m) * s), the same exp: 0 where (x[i] - m) * s is below -87.3 or NaN
// (x[i] <= m, s > 0: the weights of a softmax at temperature 1 / s). The one-element form
// gives the same bits as the array form, with or without AVX2.
void cs_cpu_exp_scaled(const float *x, int64_t n, float m, float s, float *out);
float cs_cpu_exp_scaled1(float x, float m, float s);
// out[i] = the bucket of x[i] at s buckets per unit below m (x[i] <= m, 0 < last < 65536): 0
// when x[i] == m, else (m - x[i]) * s truncated, or last when that is not below last (the far
// tail, -inf, NaN). The same with or without AVX2.
void cs_cpu_bucket16(const float *x, int64_t n, float m, float s, int last, uint16_t *out);
uint16_t cs_cpu_bucket1(float x, float m, float s, int last); // one element, the same bits
// x (n) += y (n).
void cs_cpu_add(float *x, const float *y, int n);

// dst (n) bf16 = the seeded dummy weights of tensor tensor_id, uniform in [-scale, scale)
// (kernels/dummy_init.h); cs_cuda_fill_dummy_bf16 writes the same bits on the GPU.
void cs_cpu_fill_dummy_bf16(uint16_t *dst, int64_t n, uint64_t seed, uint32_t tensor_id, float scale);

#endif
