// The shape and hyper-parameters of a Llama-family decoder, from whichever file held them.
#ifndef CS_MODEL_CONFIG_H
#define CS_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum cs_arch {
    CS_ARCH_LLAMA,   // Llama 2/3, SmolLM2
    CS_ARCH_MISTRAL, // same graph as llama
    CS_ARCH_QWEN2,   // llama graph plus q/k/v bias
} cs_arch;

typedef enum cs_rope_scaling {
    CS_ROPE_SCALING_NONE,
    CS_ROPE_SCALING_LINEAR,
    CS_ROPE_SCALING_LLAMA3,
} cs_rope_scaling;

// How the q/k rows pair up for rotation. Hugging Face checkpoints rotate element i with
// i + d/2 (NEOX); llama.cpp's GGUF converter permutes q/k rows of llama models so that
// adjacent elements pair (NORM). The forward pass follows the file, weights stay as stored.
typedef enum cs_rope_layout {
    CS_ROPE_NORM,
    CS_ROPE_NEOX,
} cs_rope_layout;

typedef struct cs_model_config {
    cs_arch arch;
    int32_t n_layer;
    int32_t dim;          // hidden size
    int32_t ffn_dim;      // intermediate size
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;     // dim / n_head unless the file says otherwise
    int32_t vocab_size;
    int32_t context_len;  // max positions the model was trained for
    float rms_eps;
    float rope_theta;
    int32_t rope_dim;     // rotated dims per head (== head_dim for llama)
    cs_rope_layout rope_layout;
    cs_rope_scaling rope_scaling;
    float rope_factor;            // linear and llama3
    float rope_low_freq_factor;   // llama3
    float rope_high_freq_factor;  // llama3
    int32_t rope_orig_context;    // llama3: original_max_position_embeddings
    // GGUF files of Llama-3.1+ carry the llama3 scaling as a tensor of per-frequency divisors,
    // rope_freqs.weight (head_dim/2 floats), instead of the four numbers above.
    bool rope_freqs_tensor;
    bool tied_embeddings; // lm_head is token_embd
    bool attn_bias;       // q/k/v projections have a bias (Qwen2)
} cs_model_config;

const char *cs_arch_name(cs_arch a);

// Checks that the numbers are positive and consistent (heads divide dim, kv heads divide
// heads, ...). Loaders call it after filling the struct.
#include "../common/status.h"
#include <stddef.h>
cs_status cs_model_config_validate(const cs_model_config *c, char *err, size_t errlen);

#endif
