// The model's weights in GPU memory, as the CUDA forward pass reads them. Each projection is
// either bf16 rows or int4 / int8 codes in the layout of kernels/qpack.h: a matrix whose GGUF
// (or --quant, AWQ, GPTQ) source is int4 / int8 stays so, repacked exactly (its scales rounded
// to bf16), and is multiplied by the dequantising kernels (kernels/cuda/qmatmul.cu); float
// sources are bf16. q/k/v are fused into one matrix and gate/up into another so that each
// sub-layer input is read by one matmul (fused parts of different formats: bf16). The token
// embedding and lm_head stay bf16: the embedding is read a row at a time, and the logits are
// what sampling sees, where 16-bit weights cost 1/4 more bytes on one matrix of 2 + 7 L.
// Norms, biases and the RoPE table are fp32. One device allocation holds everything.
//
//     cs_gpu_model g;
//     if (cs_gpu_model_upload(&g, &cpu_model, err, sizeof err) != CS_OK) { ... }   // or _dummy
//     ... cs_gpu_forward_init(&g, ...) ...
//     cs_gpu_model_free(&g);
#ifndef CS_GPU_MODEL_H
#define CS_GPU_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "../kernels/cuda/cuda_kernels.h"
#include "model.h"
#include "model_config.h"

// A projection (n, k): bf16 rows (bits 0), or int4 / int8 codes and scales (bits 4 / 8, q).
typedef struct cs_gpu_mat {
    int bits;
    int64_t n, k;
    uint16_t *bf16;
    cs_cuda_qmat q;
} cs_gpu_mat;

typedef struct cs_gpu_layer {
    float *attn_norm, *ffn_norm; // (dim)
    cs_gpu_mat wqkv;             // (q_dim + 2 kv_dim, dim): q rows, then k, then v
    float *bqkv;                 // (q_dim + 2 kv_dim) or NULL
    cs_gpu_mat wo;               // (dim, q_dim)
    cs_gpu_mat w_gate_up;        // (2 ffn, dim): gate rows, then up rows
    cs_gpu_mat w_down;           // (dim, ffn)
} cs_gpu_layer;

typedef struct cs_gpu_model {
    cs_model_config cfg;
    uint16_t *tok_embd;   // (vocab, dim)
    uint16_t *output;     // (vocab, dim); == tok_embd when tied
    float *output_norm;   // (dim)
    cs_gpu_layer *layers; // host array (n_layer) of device pointers
    float *rope_cos_sin;  // (rope_max_pos, rope_dim / 2, 2)
    int rope_max_pos;
    size_t weight_bytes;  // device bytes of all weights
    bool no_lm_head;      // a tensor-parallel rank past the first: it never computes logits, so
                          // an untied lm_head is not uploaded (output NULL)
    void *arena;          // the one device allocation
} cs_gpu_model;

// Copies a CPU model's weights to the current device. CS_ERR_NOMEM when they do not fit.
cs_status cs_gpu_model_upload(cs_gpu_model *g, const cs_model *m, char *err, size_t errlen);
// The same for a tensor-parallel rank: without lm_head for those that never compute logits.
cs_status cs_gpu_model_upload_rank(cs_gpu_model *g, const cs_model *m, bool lm_head, char *err, size_t errlen);
// Seeded dummy weights written on the device: the same values cs_model_init_dummy gives. With
// quant_bits 4 or 8 the projections are then quantised on the device (cs_cuda_qquantize, in
// groups of quant_group) and kept packed; 0 keeps them bf16.
cs_status cs_gpu_model_dummy(cs_gpu_model *g, const cs_model_config *c, uint64_t seed, int max_pos,
                             int quant_bits, int quant_group, char *err, size_t errlen);
// Rank `rank` of n_ranks's shard of those dummy weights (engine/tp_shard.h): its heads, KV heads
// and MLP features of the whole model's values (quantised: the MLP cut on whole groups);
// lm_head false: without an untied lm_head.
cs_status cs_gpu_model_dummy_shard(cs_gpu_model *g, const cs_model_config *full, uint64_t seed, int max_pos,
                                   int quant_bits, int quant_group, int n_ranks, int rank, bool lm_head, char *err,
                                   size_t errlen);
// Bytes of the projections (codes and scales, or bf16) and of lm_head: what a decode step reads.
size_t cs_gpu_model_step_bytes(const cs_gpu_model *g);
void cs_gpu_model_free(cs_gpu_model *g);

#endif
