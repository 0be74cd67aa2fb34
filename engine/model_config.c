#include "model_config.h"

#include <math.h>

const char *cs_arch_name(cs_arch a) {
    switch (a) {
    case CS_ARCH_LLAMA: return "llama";
    case CS_ARCH_MISTRAL: return "mistral";
    case CS_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

cs_status cs_model_config_validate(const cs_model_config *c, char *err, size_t errlen) {
    // Upper bounds well past any released model; they keep later size arithmetic in range.
    if (c->n_layer < 1 || c->n_layer > 1024)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: block count %d out of range", c->n_layer);
    if (c->dim < 1 || c->dim > 1 << 17)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: embedding length %d out of range", c->dim);
    if (c->ffn_dim < 1 || c->ffn_dim > 1 << 20)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: feed-forward length %d out of range",
                       c->ffn_dim);
    if (c->n_head < 1 || c->n_head > 1024)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: head count %d out of range", c->n_head);
    if (c->n_head_kv < 1 || c->n_head % c->n_head_kv != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "config: kv head count %d does not divide head count %d", c->n_head_kv,
                       c->n_head);
    if (c->head_dim < 2 || c->head_dim > 1024 || c->head_dim % 2 != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: head dim %d out of range", c->head_dim);
    if (c->rope_dim < 2 || c->rope_dim > c->head_dim || c->rope_dim % 2 != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: rope dimension %d out of range",
                       c->rope_dim);
    if (c->vocab_size < 1 || c->vocab_size > 1 << 24)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: vocabulary size %d out of range",
                       c->vocab_size);
    if (c->context_len < 1)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: context length %d out of range",
                       c->context_len);
    if (!(c->rms_eps > 0 && c->rms_eps < 1))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: rms norm epsilon %g out of range",
                       (double)c->rms_eps);
    if (!(c->rope_theta > 0 && isfinite(c->rope_theta)))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: rope base %g out of range",
                       (double)c->rope_theta);
    if (c->rope_scaling != CS_ROPE_SCALING_NONE && !(c->rope_factor > 0 && isfinite(c->rope_factor)))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config: rope scaling factor %g out of range",
                       (double)c->rope_factor);
    if (c->rope_scaling == CS_ROPE_SCALING_LLAMA3 &&
        !(c->rope_orig_context > 0 && c->rope_low_freq_factor > 0 &&
          c->rope_high_freq_factor > c->rope_low_freq_factor))
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "config: llama3 rope scaling needs original context > 0 and "
                       "high_freq_factor > low_freq_factor > 0");
    return CS_OK;
}
