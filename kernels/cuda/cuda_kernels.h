// The CUDA backend's C-callable launchers. No CUDA types appear here, so C code (engine,
// tests, benchmarks) includes it without nvcc; streams pass as void * (a cudaStream_t).
// Every launcher checks its preconditions (CS_ASSERT) and the launch (cudaGetLastError).
//
// Conventions: pointers are device memory unless a comment says host. bf16 values travel as
// uint16_t (their raw bits). Activations and the KV cache are bf16; every reduction and
// accumulation is fp32; the residual stream is fp32 (cheap: (tokens, dim) floats) so that
// the sum of 2 x n_layer sub-layer outputs does not lose bits to bf16 rounding.
// The KV cache of one layer is two arrays (n_slots, n_kv * head_dim) bf16, slot = block *
// block_size + offset, the same layout as the CPU backend's fp32 cache.
#ifndef CS_CUDA_KERNELS_H
#define CS_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../dtype.h"
#include "../kernels.h"
#include "../qpack.h"

#ifdef __cplusplus
extern "C" {
#endif

// Number of usable CUDA devices; 0 when there is no driver or no device (never aborts).
int cs_cuda_device_count(void);

// Per-device caches (a kernel's shared-memory opt-in, the SM count) hold this many devices.
#define CS_CUDA_MAX_DEVICES 64
// The calling thread's current device, in [0, CS_CUDA_MAX_DEVICES).
int cs_cuda_current_device(void);
// SMs of the current device, asked once per device.
int cs_cuda_sm_count(void);

// Dequantises n_rows rows of row_len elements stored as type t (device memory, rows packed
// back to back) into bf16 (device memory, n_rows x row_len). row_len must be a multiple of
// cs_dtype_block_elems(t). Used to upload quantised weights for the dense bf16 path.
void cs_cuda_dequant_bf16(cs_dtype t, const void *src, uint16_t *dst, int64_t n_rows,
                          int64_t row_len, void *stream);

// dst (n) bf16 = the dummy weights of tensor_id under seed, bit-identical to
// cs_cpu_fill_dummy_bf16 (kernels/dummy_init.h).
void cs_cuda_fill_dummy_bf16(uint16_t *dst, int64_t n, uint64_t seed, uint32_t tensor_id, float scale,
                             void *stream);
// dst (rows, cols) bf16 = the block at (row0, col0) of the dummy tensor_id seen as (., ld):
// a tensor-parallel rank's slice of it.
void cs_cuda_fill_dummy_bf16_block(uint16_t *dst, int64_t rows, int64_t cols, int64_t ld, int64_t row0, int64_t col0,
                                   uint64_t seed, uint32_t tensor_id, float scale, void *stream);

// ---- elementwise and row kernels (kernels/cuda/embed.cu, rmsnorm.cu, rope_kv.cu, activation.cu)

// x (n, dim) fp32 = rows ids (n) of the bf16 table (vocab, dim). dim % 8 == 0.
// ids < 0 are placeholders: ids[i] = -1 - r takes prev[r], the id a sampling step chose for
// its row r (async scheduling). prev's ids outside [0, vocab) (-1: nothing was allowed; that
// sequence ends and its row is dropped) read row 0. prev may be NULL when no id is negative.
void cs_cuda_embed(float *x, const uint16_t *table, const int32_t *ids, const int32_t *prev, int vocab, int n, int dim,
                   void *stream);

// Residual add fused with RMSNorm. For output row i < n, with r = rows ? rows[i] : i:
//   if y: x[r] += y[r]            (x (., dim) fp32 residual stream, y (., dim) bf16)
//   out[i] = bf16(x[r] / sqrt(mean(x[r]^2) + eps) * w)      (w (dim) fp32, out (n, dim) bf16)
// rows gathers the rows that need logits before the final norm. dim % 8 == 0.
// CPU reference: cs_cpu_add then cs_cpu_rmsnorm.
void cs_cuda_rmsnorm(uint16_t *out, float *x, const uint16_t *y, const float *w, const int32_t *rows,
                     int n, int dim, float eps, void *stream);

// Bias, RoPE and KV append fused, after the fused QKV projection.
// qkv (n_tok, (n_head + 2 n_kv) * head_dim) bf16: q heads, then k heads, then v heads.
// bias (same width) fp32 or NULL (Qwen2). Each q and k head is rotated at pos[i] on its first
// rope_dim dims with cos_sin (max_pos, rope_dim / 2, 2) fp32, as cs_cpu_rope (neox pairing or
// adjacent pairs); q goes to q_out (n_tok, n_head, head_dim) bf16, k and v to the caches
// (n_slots, n_kv * head_dim) bf16 at row slots[i]. head_dim % 8 == 0.
void cs_cuda_rope_kv_write(uint16_t *q_out, uint16_t *k_cache, uint16_t *v_cache, const uint16_t *qkv,
                           const float *bias, const int32_t *pos, const int32_t *slots,
                           const float *cos_sin, int n_tok, int n_head, int n_kv, int head_dim,
                           int rope_dim, int neox, void *stream);

// out (n, ffn) bf16 = silu(g) * u with g = gate_up[:, :ffn], u = gate_up[:, ffn:] (the fused
// gate/up projection, (n, 2 ffn) bf16), computed in fp32. ffn % 8 == 0.
void cs_cuda_swiglu(uint16_t *out, const uint16_t *gate_up, int n, int ffn, void *stream);

// ---- attention (kernels/cuda/attention_decode.cu, attention_prefill.cu)
// b holds device pointers (q_start, kv_len, bt_start, block_table) and host ints (n_seqs,
// block_size >= 1). q, out (n_tok, n_head, head_dim) bf16; head_dim 64 or 128; n_kv divides
// n_head (any ratio). Softmax in fp32 (online), scale usually 1/sqrt(head_dim).

// Decode: exactly one query token per sequence (q_start[s] = s). max_kv_len (host) bounds
// every kv_len[s]; the launcher picks the KV split (flash-decoding) from n_seqs, n_kv and
// max_kv_len so that one long sequence still fills the GPU. workspace: at least
// cs_cuda_attn_decode_workspace(...) bytes of device memory (fp32 partials and log-sum-exps).
size_t cs_cuda_attn_decode_workspace(int n_seqs, int n_head, int head_dim, int max_kv_len);
// The number of KV chunks the launcher will use for these arguments (tests and benchmarks).
int cs_cuda_attn_decode_splits(int n_seqs, int n_head, int n_kv, int head_dim, int max_kv_len);
void cs_cuda_attn_decode(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
                         const uint16_t *v_cache, const cs_attn_batch *b, int max_kv_len,
                         int n_head, int n_kv, int head_dim, float scale, void *workspace,
                         size_t workspace_bytes, void *stream);

// Prefill / extend: sequence s has q_len = q_start[s+1] - q_start[s] >= 1 new tokens, the last
// q_len of its kv_len cached positions (causal mask aligned bottom-right). max_q_len (host)
// bounds every q_len. Tensor cores (mma.sync m16n8k16).
void cs_cuda_attn_prefill(uint16_t *out, const uint16_t *q, const uint16_t *k_cache,
                          const uint16_t *v_cache, const cs_attn_batch *b, int max_q_len,
                          int n_head, int n_kv, int head_dim, float scale, void *stream);

// ---- sampling (kernels/cuda/sample.cu)
#define CS_CUDA_MAX_LOGPROBS 20

// One row's sampling parameters, semantics and order of operations those of engine/sampler.h.
typedef struct cs_cuda_sample_params {
    float temperature;        // < 1e-5: greedy (argmax, lowest id on ties)
    int32_t top_k;            // <= 0: off
    float top_p;              // 1: off
    float min_p;              // 0: off
    float repetition_penalty; // 1: off (prompt + generated tokens)
    float presence_penalty;   // 0: off (generated tokens)
    float frequency_penalty;  // 0: off (generated tokens)
    int32_t n_logprobs;       // 0..CS_CUDA_MAX_LOGPROBS top alternatives to return
    uint64_t seed;            // Philox key of the request
    uint64_t step;            // Philox counter: the number of tokens this request sampled so far
    int32_t pen_start, pen_len; // this row's entries in the penalty arrays
} cs_cuda_sample_params;

// Samples one token per row of logits (n_rows, vocab) fp32, modified in place. params
// (n_rows) device. Penalty entries pen_ids/pen_counts/pen_in_prompt (device, indexed by
// params[r].pen_start ..+pen_len): a token id, how often it was generated, and whether it is in
// the prompt (for the repetition penalty). Outputs (device): ids (n_rows), -1 when every logit
// is -inf/NaN; logprob (n_rows) of the id under log_softmax of the raw logits; top_ids/top_lp
// (n_rows, CS_CUDA_MAX_LOGPROBS), first n_logprobs entries valid, most likely first. Never
// sorts the vocabulary. workspace: cs_cuda_sample_workspace(n_rows, vocab) bytes.
size_t cs_cuda_sample_workspace(int n_rows, int vocab);
void cs_cuda_sample(int32_t *ids, float *logprob, int32_t *top_ids, float *top_lp, float *logits,
                    int n_rows, int vocab, const cs_cuda_sample_params *params,
                    const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                    void *workspace, size_t workspace_bytes, void *stream);

// Constrained decoding: for each row r < n_rows of logits (n_rows, vocab) fp32 with
// mask_row[r] >= 0, token t keeps its logit when bit t of bits row mask_row[r] (each row
// (vocab + 31) / 32 words, bit t in word t / 32) is set, and becomes -inf otherwise; rows with
// mask_row[r] < 0 are left alone. CPU reference: cs_constraint_apply (engine/constraint.h).
void cs_cuda_apply_token_mask(float *logits, const uint32_t *bits, const int32_t *mask_row, int n_rows,
                              int vocab, void *stream);

// ---- dense projections through cuBLAS (kernels/cuda/gemm.cu)
typedef struct cs_cuda_blas cs_cuda_blas; // a cuBLAS(Lt) handle and its workspace, per stream
cs_cuda_blas *cs_cuda_blas_init(void *stream);
void cs_cuda_blas_free(cs_cuda_blas *h);
void *cs_cuda_blas_stream(const cs_cuda_blas *h);
// out (m, n) = x (m, k) @ w^T, x and w (n, k) bf16, fp32 accumulation; out bf16 (out_f32 0)
// or fp32 (out_f32 1, for logits).
void cs_cuda_gemm(cs_cuda_blas *h, void *out, int out_f32, const uint16_t *x, const uint16_t *w,
                  int m, int n, int k);
// The same with out's rows ldo elements apart (ldo >= n): a slice of a wider output.
void cs_cuda_gemm_ldo(cs_cuda_blas *h, void *out, int out_f32, int ldo, const uint16_t *x, const uint16_t *w,
                      int m, int n, int k);

// ---- bf16 GEMV for decode-sized batches (kernels/cuda/gemv.cu)
#define CS_CUDA_GEMV_MAX_M 8
// out (m, n) = x (m, k) @ w^T as cs_cuda_gemm computes it (bf16 in, fp32 sums, out bf16 or
// fp32), for m <= CS_CUDA_GEMV_MAX_M: every weight read once with 16-byte loads. k % 8 == 0,
// x and w 16-byte aligned. Deterministic (a fixed order of sums).
void cs_cuda_gemv(void *out, int out_f32, const uint16_t *x, const uint16_t *w, int m, int n, int k, void *stream);

// ---- int4 / int8 weight matmul (kernels/cuda/qmatmul.cu); the layout is kernels/qpack.h's
typedef struct cs_cuda_qmat {
    cs_qpack_dims d;
    const uint32_t *codes;  // (d.code_words) device
    const uint32_t *scales; // (d.scale_words) device
} cs_cuda_qmat;

// How cs_cuda_qmatmul computes: AUTO picks by m and shape; MMA is the dequantising tensor-core
// kernel, x staged chunk by chunk in shared memory; GEMV (m <= 8 only) the same tensor-core
// math (the same bits) streaming the weights several chunks deep, x staged once: every weight
// byte read once, 16 bytes per load; CUBLAS dequantises to bf16 (in slices, in the workspace) and calls cs_cuda_gemm.
enum { CS_CUDA_QPATH_AUTO, CS_CUDA_QPATH_MMA, CS_CUDA_QPATH_CUBLAS, CS_CUDA_QPATH_GEMV };
// Workspace bytes for out = x w^T by path (AUTO, MMA, GEMV or CUBLAS) with x of up to max_m rows,
// for w's shape only (a narrower matrix may split its columns into more parts: take the
// largest over the matrices that share it). It must be zeroed once (cudaMemsetAsync on the
// stream that uses it) before its first use; the kernels leave it so.
size_t cs_cuda_qmatmul_workspace(const cs_qpack_dims *w, int max_m, int path);
// out (m, n) = x (m, k) @ w^T: x bf16 (16-byte aligned rows), fp32 accumulation, each weight
// bf16(s q + m) (qpack.h); out bf16 (out_f32 0) or fp32. On h's stream. Deterministic: the
// result does not depend on timing, only on m's path (MMA and GEMV: m <= 8 or not; CUBLAS).
void cs_cuda_qmatmul(cs_cuda_blas *h, void *out, int out_f32, const uint16_t *x, const cs_cuda_qmat *w, int m,
                     void *workspace, size_t workspace_bytes, int path);
// The path AUTO takes for m tokens.
int cs_cuda_qmatmul_path_for(int m);
// w (n, k) bf16 row-major = the packed matrix's weights, as the kernels compute them.
void cs_cuda_qunpack_bf16(uint16_t *w, const cs_cuda_qmat *q, void *stream);
// Quantises w (n, k) bf16 (device) into q's codes and scales, round to nearest per group:
// int4 s = (max - min) / 15, m = min; int8 s = max|w| / 127; s and m rounded to bf16 before
// the codes are chosen. For dummy weights of a benchmark model (real ones come packed).
void cs_cuda_qquantize(uint32_t *codes, uint32_t *scales, const cs_qpack_dims *d, const uint16_t *w,
                       void *stream);

#ifdef __cplusplus
}
#endif

#endif
