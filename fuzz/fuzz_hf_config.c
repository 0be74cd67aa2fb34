// libFuzzer target: arbitrary bytes as a Hugging Face config.json.
#include <stddef.h>
#include <stdint.h>

#include "engine/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_model_config cfg;
    char err[CS_ERR_LEN];
    if (cs_hf_config_parse((const char *)data, size, &cfg, err, sizeof err) == CS_OK) {
        // An accepted config satisfies what the rest of the engine relies on.
        if (cfg.dim < 1 || cfg.n_head < 1 || cfg.n_head_kv < 1 || cfg.head_dim < 1 ||
            cfg.n_head % cfg.n_head_kv != 0 || cfg.rope_layout != CS_ROPE_NEOX)
            __builtin_trap();
    }
    return 0;
}
