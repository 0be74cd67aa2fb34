// The model's weights in GPU memory, as the CUDA forward pass reads them: every matrix bf16
// (quantised GGUF tensors dequantised once at upload, exactly), q/k/v fused into one matrix and
// gate/up into another so that each sub-layer input is read by one GEMM; norms, biases and the
// RoPE table fp32. One device allocation holds everything.
//
//     cs_gpu_model g;
//     if (cs_gpu_model_upload(&g, &cpu_model, err, sizeof err) != CS_OK) { ... }   // or _dummy
//     ... cs_gpu_forward_init(&g, ...) ...
//     cs_gpu_model_free(&g);
#ifndef CS_GPU_MODEL_H
#define CS_GPU_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "model.h"
#include "model_config.h"

typedef struct cs_gpu_layer {
    float *attn_norm, *ffn_norm; // (dim)
    uint16_t *wqkv;              // (q_dim + 2 kv_dim, dim): q rows, then k, then v
    float *bqkv;                 // (q_dim + 2 kv_dim) or NULL
    uint16_t *wo;                // (dim, q_dim)
    uint16_t *w_gate_up;         // (2 ffn, dim): gate rows, then up rows
    uint16_t *w_down;            // (dim, ffn)
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
    void *arena;          // the one device allocation
} cs_gpu_model;

// Copies a CPU model's weights to the current device. CS_ERR_NOMEM when they do not fit.
cs_status cs_gpu_model_upload(cs_gpu_model *g, const cs_model *m, char *err, size_t errlen);
// Seeded dummy weights written on the device: the same values cs_model_init_dummy gives.
cs_status cs_gpu_model_dummy(cs_gpu_model *g, const cs_model_config *c, uint64_t seed, int max_pos,
                             char *err, size_t errlen);
void cs_gpu_model_free(cs_gpu_model *g);

#endif
