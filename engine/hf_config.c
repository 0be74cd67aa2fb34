// config.json -> cs_model_config. Keys, defaults and meanings follow transformers'
// LlamaConfig / MistralConfig / Qwen2Config.
#include "hf_config.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../common/file_map.h"

#define WHERE "config.json"

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

// The item for key, or NULL when absent or null (transformers treats both as "use default").
static const cJSON *item(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

// An integer key in [lo, hi]. Absent: *out = def when !required, else NOT_FOUND.
static cs_status get_int(const cJSON *o, const char *key, bool required, int32_t def,
                         int32_t lo, int32_t hi, int32_t *out, char *err, size_t errlen) {
    const cJSON *v = item(o, key);
    if (!v) {
        if (required)
            return cs_errf(err, errlen, CS_ERR_NOT_FOUND, WHERE ": %s is missing", key);
        *out = def;
        return CS_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": %s: expected an integer, got %s",
                       key, cJSON_IsNumber(v) ? "a fraction" : json_type_name(v));
    double d = v->valuedouble;
    if (d < lo || d > hi)
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": %s = %.0f is out of range [%d, %d]",
                       key, d, lo, hi);
    *out = (int32_t)d;
    return CS_OK;
}

// A number key with lo < value <= hi (lo exclusive: every float we read must be positive).
static cs_status get_float(const cJSON *o, const char *key, bool required, float def, double lo,
                           double hi, float *out, char *err, size_t errlen) {
    const cJSON *v = item(o, key);
    if (!v) {
        if (required)
            return cs_errf(err, errlen, CS_ERR_NOT_FOUND, WHERE ": %s is missing", key);
        *out = def;
        return CS_OK;
    }
    if (!cJSON_IsNumber(v))
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": %s: expected a number, got %s",
                       key, json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d <= lo || d > hi)
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": %s = %g is out of range (%g, %g]",
                       key, d, lo, hi);
    *out = (float)d; // in range, so the conversion is defined
    return CS_OK;
}

static cs_status get_bool(const cJSON *o, const char *key, bool def, bool *out, char *err,
                          size_t errlen) {
    const cJSON *v = item(o, key);
    if (!v) {
        *out = def;
        return CS_OK;
    }
    if (!cJSON_IsBool(v))
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": %s: expected a boolean, got %s", key,
                       json_type_name(v));
    *out = cJSON_IsTrue(v);
    return CS_OK;
}

static cs_status parse_arch(const cJSON *root, cs_arch *arch, char *err, size_t errlen) {
    static const struct {
        const char *hf, *model_type;
        cs_arch arch;
    } known[] = {
        {"LlamaForCausalLM", "llama", CS_ARCH_LLAMA},
        {"MistralForCausalLM", "mistral", CS_ARCH_MISTRAL},
        {"Qwen2ForCausalLM", "qwen2", CS_ARCH_QWEN2},
    };
    const cJSON *a = item(root, "architectures");
    const char *name = NULL;
    bool by_model_type = false;
    if (a) {
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 ||
            !cJSON_IsString(cJSON_GetArrayItem(a, 0)))
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           WHERE ": architectures: expected a non-empty array of strings");
        name = cJSON_GetArrayItem(a, 0)->valuestring;
    } else {
        // Older configs name only the model_type.
        const cJSON *mt = item(root, "model_type");
        if (!mt)
            return cs_errf(err, errlen, CS_ERR_NOT_FOUND,
                           WHERE ": neither architectures nor model_type is given");
        if (!cJSON_IsString(mt))
            return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": model_type: expected a string, "
                           "got %s", json_type_name(mt));
        name = mt->valuestring;
        by_model_type = true;
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(name, by_model_type ? known[i].model_type : known[i].hf) == 0) {
            *arch = known[i].arch;
            return CS_OK;
        }
    }
    return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, // cs_errf makes the quoted name one printable line
                   WHERE ": architecture '%.79s' is not supported (LlamaForCausalLM, "
                   "MistralForCausalLM, Qwen2ForCausalLM)",
                   name);
}

// rope_scaling: null, {"type"|"rope_type": "linear", "factor"} or the llama3 form.
static cs_status parse_rope_scaling(const cJSON *root, cs_model_config *c, char *err,
                                    size_t errlen) {
    // Fields a scaling type does not use stay 0, as the GGUF loader leaves them.
    c->rope_scaling = CS_ROPE_SCALING_NONE;
    const cJSON *rs = item(root, "rope_scaling");
    if (!rs) return CS_OK;
    if (!cJSON_IsObject(rs))
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       WHERE ": rope_scaling: expected an object or null, got %s",
                       json_type_name(rs));
    const cJSON *ty = item(rs, "rope_type");
    if (!ty) ty = item(rs, "type");
    if (!ty)
        return cs_errf(err, errlen, CS_ERR_NOT_FOUND, WHERE ": rope_scaling has no rope_type");
    if (!cJSON_IsString(ty))
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       WHERE ": rope_scaling.rope_type: expected a string, got %s",
                       json_type_name(ty));
    const char *t = ty->valuestring;
    cs_status s;
    if (strcmp(t, "default") == 0) return CS_OK;
    if (strcmp(t, "linear") == 0) {
        c->rope_scaling = CS_ROPE_SCALING_LINEAR;
        return get_float(rs, "factor", true, 1, 0, 1e6, &c->rope_factor, err, errlen);
    }
    if (strcmp(t, "llama3") == 0) {
        c->rope_scaling = CS_ROPE_SCALING_LLAMA3;
        if ((s = get_float(rs, "factor", true, 1, 0, 1e6, &c->rope_factor, err, errlen)) ||
            (s = get_float(rs, "low_freq_factor", true, 1, 0, 1e6, &c->rope_low_freq_factor,
                           err, errlen)) ||
            (s = get_float(rs, "high_freq_factor", true, 1, 0, 1e6, &c->rope_high_freq_factor,
                           err, errlen)) ||
            (s = get_int(rs, "original_max_position_embeddings", true, 0, 1, 1 << 30,
                         &c->rope_orig_context, err, errlen)))
            return s;
        // The llama3 formula divides by (high - low).
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           WHERE ": rope_scaling: high_freq_factor must exceed low_freq_factor");
        return CS_OK;
    }
    return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                   WHERE ": rope_scaling type '%.47s' is not supported (linear, llama3)", t);
}

// Features of the three configs that would change the graph and that we do not implement.
static cs_status check_unsupported(const cJSON *root, char *err, size_t errlen) {
    const cJSON *act = item(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                       WHERE ": hidden_act '%.31s' is not supported (silu)",
                       cJSON_IsString(act) ? act->valuestring : json_type_name(act));
    }
    bool mlp_bias = false, sliding = false;
    cs_status s;
    if ((s = get_bool(root, "mlp_bias", false, &mlp_bias, err, errlen)) ||
        (s = get_bool(root, "use_sliding_window", false, &sliding, err, errlen)))
        return s;
    if (mlp_bias) return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, WHERE ": mlp_bias is not "
                                 "supported");
    if (sliding)
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                       WHERE ": use_sliding_window is not supported");
    return CS_OK;
}

// Fills c from the parsed object. Owns nothing of root.
static cs_status fill_config(const cJSON *root, cs_model_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    cs_status s;
    if ((s = parse_arch(root, &c->arch, err, errlen)) ||
        (s = check_unsupported(root, err, errlen)) ||
        (s = get_int(root, "hidden_size", true, 0, 1, 1 << 20, &c->dim, err, errlen)) ||
        (s = get_int(root, "intermediate_size", true, 0, 1, 1 << 22, &c->ffn_dim, err,
                     errlen)) ||
        (s = get_int(root, "num_hidden_layers", true, 0, 1, 4096, &c->n_layer, err, errlen)) ||
        (s = get_int(root, "num_attention_heads", true, 0, 1, 4096, &c->n_head, err,
                     errlen)) ||
        (s = get_int(root, "num_key_value_heads", false, c->n_head, 1, 4096, &c->n_head_kv,
                     err, errlen)) ||
        (s = get_int(root, "vocab_size", true, 0, 1, 1 << 24, &c->vocab_size, err, errlen)) ||
        (s = get_int(root, "max_position_embeddings", false, 2048, 1, 1 << 30,
                     &c->context_len, err, errlen)) ||
        (s = get_float(root, "rms_norm_eps", false, 1e-6f, 0, 1, &c->rms_eps, err, errlen)) ||
        (s = get_float(root, "rope_theta", false, 10000.0f, 0, 1e12, &c->rope_theta, err,
                       errlen)) ||
        (s = get_bool(root, "tie_word_embeddings", false, &c->tied_embeddings, err, errlen)) ||
        (s = get_bool(root, "attention_bias", false, &c->attn_bias, err, errlen)))
        return s;
    if (!item(root, "head_dim") && c->dim % c->n_head != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       WHERE ": hidden_size %d is not a multiple of num_attention_heads %d",
                       c->dim, c->n_head);
    if ((s = get_int(root, "head_dim", false, c->dim / c->n_head, 1, 4096, &c->head_dim, err,
                     errlen)))
        return s;
    // Attention over a window as long as the context is plain causal attention, so a Mistral
    // sliding window is honoured by not serving contexts longer than it.
    int32_t window = 0;
    if ((s = get_int(root, "sliding_window", false, 0, 1, 1 << 30, &window, err, errlen)))
        return s;
    if (c->arch == CS_ARCH_MISTRAL && window > 0 && window < c->context_len)
        c->context_len = window;
    if (c->arch == CS_ARCH_QWEN2) c->attn_bias = true; // Qwen2 always has q/k/v biases
    c->rope_dim = c->head_dim;
    c->rope_layout = CS_ROPE_NEOX; // transformers rotates element i with i + head_dim/2
    return parse_rope_scaling(root, c, err, errlen);
}

cs_status cs_hf_config_parse(const char *json, size_t len, cs_model_config *cfg, char *err,
                             size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    if (len > CS_HF_CONFIG_MAX_BYTES)
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": larger than %u bytes",
                       CS_HF_CONFIG_MAX_BYTES);
    // A NUL-terminated copy, so the JSON parser can never read past the caller's bytes.
    char *text = malloc(len + 1);
    if (!text) return cs_errf(err, errlen, CS_ERR_NOMEM, WHERE ": out of memory");
    if (len) memcpy(text, json, len);
    text[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    cs_status s = CS_OK;
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        s = cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": not valid JSON (near byte %zu)", at);
    }
    for (const char *p = end; root && p < text + len && s == CS_OK; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            s = cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": bytes after the JSON value");
    if (s == CS_OK && !cJSON_IsObject(root))
        s = cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": not a JSON object");
    if (s == CS_OK) s = fill_config(root, cfg, err, errlen);
    cJSON_Delete(root);
    free(text);
    if (s == CS_OK) s = cs_model_config_validate(cfg, err, errlen);
    return s;
}

cs_status cs_hf_config_load(const char *path, cs_model_config *cfg, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    cs_status s = cs_file_read_all(path, CS_HF_CONFIG_MAX_BYTES, &text, &len, err, errlen);
    if (s != CS_OK) return s;
    s = cs_hf_config_parse(text, len, cfg, err, errlen);
    free(text);
    return s;
}
