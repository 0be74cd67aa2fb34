// libFuzzer target: arbitrary bytes as a Hugging Face config.json (its model fields and its
// quantization_config).
#include <stddef.h>
#include <stdint.h>

#include "engine/hf_config.h"
#include "engine/hf_quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_model_config cfg;
    char err[CS_ERR_LEN];
    if (cs_hf_config_parse((const char *)data, size, &cfg, err, sizeof err) == CS_OK) {
        // An accepted config satisfies what the rest of the engine relies on.
        if (cfg.dim < 1 || cfg.n_head < 1 || cfg.n_head_kv < 1 || cfg.head_dim < 1 ||
            cfg.n_head % cfg.n_head_kv != 0 || cfg.rope_layout != CS_ROPE_NEOX)
            __builtin_trap();
    }
    // quantization_config: an accepted one is something the repacker maps exactly.
    cs_hf_quant q;
    if (cs_hf_quant_parse((const char *)data, size, &q, err, sizeof err) == CS_OK && q.method != CS_HF_QUANT_NONE &&
        (q.bits != 4 || (q.group != 64 && q.group != 128)))
        __builtin_trap();
    return 0;
}
