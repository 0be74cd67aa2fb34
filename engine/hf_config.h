// Hugging Face config.json -> cs_model_config, for LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM.
//
//     cs_model_config cfg;
//     char err[CS_ERR_LEN];
//     if (cs_hf_config_load("dir/config.json", &cfg, err, sizeof err) != CS_OK) { ... }
//
// Every key is type- and range-checked (a string where an integer belongs is an error naming
// the key), optional keys take the defaults transformers uses, and the result is passed
// through cs_model_config_validate. Fields config.json cannot know are left for the loader:
// tied_embeddings is only what tie_word_embeddings says (the loader also sets it when
// lm_head.weight is absent).
#ifndef CS_HF_CONFIG_H
#define CS_HF_CONFIG_H

#include <stddef.h>

#include "../common/status.h"
#include "model_config.h"

// Largest config.json we read; real ones are a few KB.
#define CS_HF_CONFIG_MAX_BYTES (4u * 1024u * 1024u)

// Parses len bytes of JSON text (need not be NUL-terminated) into *cfg, filling every field.
cs_status cs_hf_config_parse(const char *json, size_t len, cs_model_config *cfg, char *err,
                             size_t errlen);
// Reads the file at path and parses it.
cs_status cs_hf_config_load(const char *path, cs_model_config *cfg, char *err, size_t errlen);

#endif
