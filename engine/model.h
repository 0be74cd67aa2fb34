// A model ready to run: weight matrices resolved from a cs_model_file (in place, in their
// file's type, or quantised at load with --quant; vectors copied to fp32) and the RoPE table.
#ifndef CS_MODEL_H
#define CS_MODEL_H

#include "../common/status.h"
#include "../kernels/dtype.h"
#include "model_config.h"
#include "model_file.h"

typedef struct cs_weight {
    const void *data; // (rows, cols) rows stored as type
    cs_dtype type;
    int rows, cols;
} cs_weight;

typedef struct cs_layer {
    const float *attn_norm, *ffn_norm; // (dim)
    cs_weight wq, wk, wv, wo;          // (q_dim, dim), (kv_dim, dim) x2, (dim, q_dim)
    const float *bq, *bk, *bv;         // (q_dim), (kv_dim) x2 or NULL
    cs_weight w_gate, w_up, w_down;    // (ffn, dim) x2, (dim, ffn)
} cs_layer;

typedef struct cs_model {
    cs_model_config cfg;
    const cs_model_file *file; // borrowed: must outlive the model
    cs_weight tok_embd;        // (vocab, dim)
    cs_weight output;          // (vocab, dim); == tok_embd when tied
    const float *output_norm;  // (dim)
    cs_layer *layers;          // (n_layer)
    int rope_max_pos;
    float *rope_cos_sin;       // (rope_max_pos, rope_dim / 2, 2)
    cs_dtype quant;            // --quant: the layers' float matrices in this type; COUNT = none
    // storage for the fp32 conversions, freed with the model
    void **owned;
    int n_owned;
} cs_model;

// Builds the runtime model over an open file. max_pos bounds the RoPE table (the context
// the engine will serve; at most the model's context length... or more with rope scaling).
cs_status cs_model_init(cs_model *m, const cs_model_file *f, int max_pos, char *err, size_t errlen);
// The same, with the layers' F32/F16/BF16 matrices quantised at load into quant (round to
// nearest per group; CS_DTYPE_COUNT: none). Matrices stored quantised in the file stay as
// they are, and so do the embeddings and lm_head.
cs_status cs_model_init_quant(cs_model *m, const cs_model_file *f, int max_pos, cs_dtype quant, char *err,
                              size_t errlen);
// --quant int8|int4 with --quant-group 32|64|128 as a type (CS_DTYPE_COUNT when quant is NULL).
cs_status cs_quant_type(const char *quant, int group, cs_dtype *out, char *err, size_t errlen);
void cs_model_free(cs_model *m);

// bytes of 64-byte-aligned memory owned by the model (freed with it); NULL when out of memory.
void *cs_model_alloc(cs_model *m, size_t bytes);

// The shapes of a known model for --dummy-weights: llama3-8b, llama3-70b, qwen2-7b,
// mistral-7b, smollm2-135m, or the path of a Hugging Face config.json. A ":N" suffix keeps the
// first N layers ("llama3-8b:2"), for tests at real widths.
cs_status cs_model_preset(const char *name, cs_model_config *c, char *err, size_t errlen);

// A model of seeded random weights (kernels/dummy_init.h) with config c: bf16 matrices, fp32
// norms and biases. The GPU backend builds the same weights on the device from the same seed.
// Scales: matrices and embeddings uniform with std 1/sqrt(fan_in) (so logits have std ~1), norms 1 +- 0.1,
// biases +- 0.1, so activations stay in a realistic range through any number of layers.
cs_status cs_model_init_dummy(cs_model *m, const cs_model_config *c, uint64_t seed, int max_pos,
                              char *err, size_t errlen);
float cs_dummy_scale(const cs_model_config *c, int kind); // the [-s, s) bound of a tensor kind
// dst (n) = offset + u, u the dummy values of tensor id with bound 0.1 (norms: offset 1).
void cs_dummy_vector(float *dst, int n, uint64_t seed, uint32_t id, float offset);

// Fills cos_sin (max_pos, rope_dim / 2, 2) for the config's base and scaling. freq_factors
// (rope_dim / 2) divides each frequency when not NULL (GGUF's rope_freqs.weight).
void cs_rope_table(const cs_model_config *c, const float *freq_factors, int max_pos, float *cos_sin);

#endif
