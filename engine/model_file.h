// A model on disk, opened: its config, its tensors (in place, mmapped) and its tokenizer.
// One struct whatever the format: a GGUF file, or a Hugging Face directory
// (config.json + *.safetensors + tokenizer.json).
//
//     cs_model_file *m;
//     if (cs_model_file_open(path, &m, err, sizeof err) != CS_OK) { ...; return 2; }
//     const cs_model_tensor *q = cs_model_file_tensor(m, "blk.0.attn_q.weight");
//     cs_model_file_free(m);
//
// Tensor names are GGUF's (token_embd.weight, blk.N.attn_q.weight, output.weight, ...);
// the safetensors loader maps Hugging Face names onto them. Shapes are ne[0] = row length
// (the input dimension of a projection), as in both formats.
#ifndef CS_MODEL_FILE_H
#define CS_MODEL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "../kernels/dtype.h"
#include "model_config.h"

struct cs_tokenizer;
struct cs_gguf;
struct cs_hf_model;

typedef struct cs_model_tensor {
    const char *name;
    cs_dtype dtype;
    int n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} cs_model_tensor;

typedef enum cs_model_format {
    CS_FORMAT_GGUF,
    CS_FORMAT_SAFETENSORS,
} cs_model_format;

typedef struct cs_model_file {
    cs_model_format format;
    char *name;                 // general.name or the directory name
    cs_model_config cfg;
    char quant_desc[64];        // a quantised checkpoint's method and group, "" otherwise
    int n_tensors;
    cs_model_tensor *tensors;   // owned
    struct cs_tokenizer *tok;   // owned
    // backing storage, exactly one set
    struct cs_gguf *gguf;
    struct cs_hf_model *hf;
} cs_model_file;

// Opens a GGUF file or a Hugging Face directory, reads the config, checks that every tensor
// the architecture needs is present with the right shape and a supported type, and loads the
// tokenizer. On failure returns the error, with a one-line reason in err.
cs_status cs_model_file_open(const char *path, cs_model_file **out, char *err, size_t errlen);
void cs_model_file_free(cs_model_file *m);

const cs_model_tensor *cs_model_file_tensor(const cs_model_file *m, const char *name);
// Total bytes of all tensors as stored.
size_t cs_model_file_weight_bytes(const cs_model_file *m);
// Checks names, shapes and types against the config (called by cs_model_file_open).
cs_status cs_model_file_check(const cs_model_file *m, char *err, size_t errlen);

// GGUF half, in model_gguf.c.
cs_status cs_model_file_open_gguf(const char *path, cs_model_file *m, char *err, size_t errlen);
// Hugging Face half, in model_hf.c.
cs_status cs_model_file_open_hf(const char *dir, cs_model_file *m, char *err, size_t errlen);
void cs_hf_model_free(struct cs_hf_model *hf);

#endif
