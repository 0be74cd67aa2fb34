// Hugging Face AWQ / GPTQ int4 checkpoints: config.json's quantization_config, and each
// linear layer's qweight / qzeros / scales repacked into one I4_G32 / I4_G64 / I4_G128 tensor.
//
//     cs_hf_quant q;
//     if (cs_hf_quant_parse(config_json, len, &q, err, sizeof err) != CS_OK) { ... }
//     if (q.method != CS_HF_QUANT_NONE)
//         s = cs_hf_quant_repack(&q, "model.layers.0.self_attn.q_proj", &parts, 576, 576,
//                                &data, &nbytes, err, sizeof err); // data: caller frees
//
// Both formats store, per group of group_size input weights of one output column, an fp16
// scale s and a 4-bit zero z, and w = s * (q - z) for each 4-bit code q. Our I4_Gg block
// (kernels/dtype.h) holds fp32 d and m with w = d * q + m: d = s and m = -z * s are exact in
// fp32 (s has 11 significant bits, z at most 5), and so is d * q + m = s * (q - z) (an
// integer of at most 5 bits times s, so at most 16 bits), so the repack changes no weight
// (a zero weight of a negative scale comes out +0 rather than -0).
//
// Packing, int32 words of eight 4-bit fields, field j at bits 4j..4j+3 (as AutoGPTQ /
// GPTQModel and AutoAWQ write them):
//   GPTQ: qweight (in/8, out): field j of [i][n] is the code of input 8i+j, output n.
//         qzeros (in/g, out/8): field j of [G][c] is the zero of output 8c+j. The default
//         checkpoint_format "gptq" stores z - 1 (w = s * (q - (field + 1))); "gptq_v2" z.
//         g_idx (in), if present, must be k / g for every k: act-order (desc_act)
//         checkpoints, whose groups are permuted, are refused.
//   AWQ (version "gemm"): qweight (in, out/8): field i of [k][c] is the code of input k,
//         output 8c + order[i], order = {0, 2, 4, 6, 1, 3, 5, 7}; qzeros (in/g, out/8)
//         packed the same way; w = s * (q - field).
//   scales (in/g, out) fp16 in both.
#ifndef CS_HF_QUANT_H
#define CS_HF_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "safetensors.h"

typedef enum cs_hf_quant_method {
    CS_HF_QUANT_NONE, // no quantization_config: float weights
    CS_HF_QUANT_AWQ,
    CS_HF_QUANT_GPTQ,
} cs_hf_quant_method;

typedef struct cs_hf_quant {
    cs_hf_quant_method method;
    int bits;      // 4
    int group;     // 32, 64 or 128
    bool desc_act; // GPTQ act-order flag as the config states it
    bool gptq_v2;  // GPTQ zeros stored as z, not z - 1
} cs_hf_quant;

// One linear layer's tensors; g_idx may be NULL.
typedef struct cs_hf_quant_parts {
    const cs_safetensors_tensor *qweight, *qzeros, *scales, *g_idx;
} cs_hf_quant_parts;

// Reads quantization_config from the config.json text (len bytes, need not be NUL-terminated).
// Absent or null: q->method = CS_HF_QUANT_NONE. A method, bit width, group size, format or
// flag we cannot map exactly onto I4_Gg is an error naming the field.
cs_status cs_hf_quant_parse(const char *json, size_t len, cs_hf_quant *q, char *err, size_t errlen);

// "AWQ (gemm)" or "GPTQ" / "GPTQ v2": the method and format, for messages and cserve info.
const char *cs_hf_quant_name(const cs_hf_quant *q);

// Checks the parts' dtypes and shapes against in (input features, the row length) and out
// (output features, the rows), which the caller takes from config.json, and repacks them as
// out rows of in / group I4_G{group} blocks in a malloc'd buffer (*data, *nbytes) the caller
// frees. prefix (e.g. "model.layers.0.mlp.up_proj") names the layer in messages.
cs_status cs_hf_quant_repack(const cs_hf_quant *q, const char *prefix, const cs_hf_quant_parts *p,
                             int64_t in, int64_t out, void **data, size_t *nbytes, char *err,
                             size_t errlen);

#endif
