// AWQ / GPTQ checkpoints -> I4_G32 / I4_G64 / I4_G128 (formats in hf_quant.h).
#include "hf_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "../kernels/dtype.h"
#include "hf_config.h"

#define WHERE "config.json: quantization_config"

// ---------------------------------------------------------------------------------------
// quantization_config

// The item for key, or NULL when absent or null.
static const cJSON *item(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

// An integer under key, or else under alt (AutoAWQ's own names: w_bit, q_group_size); *used
// names the key found, for messages.
static cs_status get_int(const cJSON *qc, const char *key, const char *alt, int *out, const char **used,
                         char *err, size_t errlen) {
    *used = key;
    const cJSON *v = item(qc, key);
    if (!v && alt && (v = item(qc, alt))) *used = alt;
    if (!v) return cs_errf(err, errlen, CS_ERR_NOT_FOUND, WHERE ".%s is missing", key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ".%s: expected an integer", *used);
    *out = (int)v->valuedouble;
    return CS_OK;
}

static cs_status get_bool(const cJSON *qc, const char *key, bool def, bool *out, char *err, size_t errlen) {
    const cJSON *v = item(qc, key);
    *out = def;
    if (!v) return CS_OK;
    if (!cJSON_IsBool(v)) return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ".%s: expected a boolean", key);
    *out = cJSON_IsTrue(v);
    return CS_OK;
}

// A string under key, or def when absent; NULL (with an error) when not a string.
static const char *get_str(const cJSON *qc, const char *key, const char *def, cs_status *s, char *err,
                           size_t errlen) {
    const cJSON *v = item(qc, key);
    if (!v) return def;
    if (cJSON_IsString(v) && strlen(v->valuestring) < 32) return v->valuestring;
    *s = cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ".%s: expected a short string", key);
    return NULL;
}

static cs_status parse_object(const cJSON *qc, cs_hf_quant *q, char *err, size_t errlen) {
    if (!cJSON_IsObject(qc)) return cs_errf(err, errlen, CS_ERR_FORMAT, WHERE ": expected an object");
    cs_status s = CS_OK;
    const char *method = get_str(qc, "quant_method", NULL, &s, err, errlen), *key;
    if (s != CS_OK) return s;
    if (!method) return cs_errf(err, errlen, CS_ERR_NOT_FOUND, WHERE ".quant_method is missing");
    if (!strcasecmp(method, "awq")) q->method = CS_HF_QUANT_AWQ;
    else if (!strcasecmp(method, "gptq")) q->method = CS_HF_QUANT_GPTQ;
    else
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, WHERE ".quant_method '%s' is not supported (awq, gptq)",
                       method);
    if ((s = get_int(qc, "bits", "w_bit", &q->bits, &key, err, errlen))) return s;
    if (q->bits != 4)
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, WHERE ".%s = %d is not supported (4)", key, q->bits);
    if ((s = get_int(qc, "group_size", "q_group_size", &q->group, &key, err, errlen))) return s;
    if (cs_dtype_int4_exact(q->group) == CS_DTYPE_COUNT)
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, WHERE ".%s = %d is not supported (32, 64, 128)", key,
                       q->group);
    if (q->method == CS_HF_QUANT_AWQ) {
        bool zero_point;
        const char *version = get_str(qc, "version", "gemm", &s, err, errlen);
        if (s != CS_OK || (s = get_bool(qc, "zero_point", true, &zero_point, err, errlen))) return s;
        if (strcasecmp(version, "gemm") != 0)
            return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, WHERE ".version '%s' is not supported (gemm)",
                           version);
        if (!zero_point)
            return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, WHERE ".zero_point false is not supported");
        return CS_OK;
    }
    const char *format = get_str(qc, "checkpoint_format", "gptq", &s, err, errlen);
    if (s != CS_OK || (s = get_bool(qc, "desc_act", false, &q->desc_act, err, errlen))) return s;
    if (!strcmp(format, "gptq_v2")) q->gptq_v2 = true;
    else if (strcmp(format, "gptq") != 0)
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                       WHERE ".checkpoint_format '%s' is not supported (gptq, gptq_v2)", format);
    return CS_OK;
}

cs_status cs_hf_quant_parse(const char *json, size_t len, cs_hf_quant *q, char *err, size_t errlen) {
    memset(q, 0, sizeof *q);
    if (len > CS_HF_CONFIG_MAX_BYTES)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "config.json: larger than %u bytes", CS_HF_CONFIG_MAX_BYTES);
    // A NUL-terminated copy, as in hf_config.c, so the parser never reads past the caller's bytes.
    char *text = malloc(len + 1);
    if (!text) return cs_errf(err, errlen, CS_ERR_NOMEM, "config.json: out of memory");
    if (len) memcpy(text, json, len);
    text[len] = 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *qc = root && cJSON_IsObject(root) ? item(root, "quantization_config") : NULL;
    cs_status s = !root ? cs_errf(err, errlen, CS_ERR_FORMAT, "config.json: not valid JSON")
                  : qc  ? parse_object(qc, q, err, errlen)
                        : CS_OK;
    cJSON_Delete(root);
    free(text);
    if (s != CS_OK) memset(q, 0, sizeof *q);
    return s;
}

const char *cs_hf_quant_name(const cs_hf_quant *q) {
    switch (q->method) {
    case CS_HF_QUANT_AWQ: return "AWQ (gemm)";
    case CS_HF_QUANT_GPTQ: return q->gptq_v2 ? "GPTQ v2" : "GPTQ";
    case CS_HF_QUANT_NONE: break;
    }
    return "none";
}

// ---------------------------------------------------------------------------------------
// repacking

// Checks one part's dtype and 2-D (or 1-D when cols < 0) shape.
static cs_status check_part(const char *prefix, const char *part, const cs_safetensors_tensor *t,
                            const char *dtype, int64_t rows, int64_t cols, const char *why, char *err,
                            size_t errlen) {
    if (!t) return cs_errf(err, errlen, CS_ERR_NOT_FOUND, "'%.96s.%s' is missing", prefix, part);
    if (strcmp(t->dtype_name, dtype) != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "'%.96s.%s' has dtype %s, expected %s", prefix, part,
                       t->dtype_name, dtype);
    bool ok = cols < 0 ? t->n_dims == 1 && t->shape[0] == rows
                       : t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
    if (!ok)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "'%.96s.%s' has shape [%lld, %lld] (%d dims), expected "
                       "[%lld, %lld] (%s)",
                       prefix, part, (long long)(t->n_dims > 0 ? t->shape[0] : 0),
                       (long long)(t->n_dims > 1 ? t->shape[1] : 0), t->n_dims, (long long)rows,
                       (long long)(cols < 0 ? 0 : cols), why);
    return CS_OK;
}

static uint32_t u32_at(const cs_safetensors_tensor *t, size_t i) {
    uint32_t v;
    memcpy(&v, (const unsigned char *)t->data + 4 * i, 4); // safetensors data is little-endian
    return v;
}

static uint16_t u16_at(const cs_safetensors_tensor *t, size_t i) {
    uint16_t v;
    memcpy(&v, (const unsigned char *)t->data + 2 * i, 2);
    return v;
}

// AWQ's field order: field i of a word holds output 8c + awq_order[i]; awq_field[j] is the
// field of output 8c + j.
static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
static const int awq_field[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// Writes code q of input k into a row of I4_Gg blocks (bb bytes each): sub-block j / 32 of
// block k / g, Q4_1 nibble order inside (dtype.h).
static void put_code(unsigned char *row, int g, size_t bb, int64_t k, unsigned q) {
    int j = (int)(k % g);
    unsigned char *b = row + (size_t)(k / g) * bb + 8 + 16 * (j / 32) + j % 16;
    *b |= (unsigned char)(j % 32 < 16 ? q : q << 4);
}

cs_status cs_hf_quant_repack(const cs_hf_quant *q, const char *prefix, const cs_hf_quant_parts *p,
                             int64_t in, int64_t out, void **data, size_t *nbytes, char *err,
                             size_t errlen) {
    *data = NULL;
    *nbytes = 0;
    const int g = q->group;
    const bool gptq = q->method == CS_HF_QUANT_GPTQ;
    if (in % g != 0 || out % 8 != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "'%.96s': %lld inputs, %lld outputs: need inputs a multiple of group_size %d and "
                       "outputs of 8",
                       prefix, (long long)in, (long long)out, g);
    const char *wdtype = p->qweight && !strcmp(p->qweight->dtype_name, "U32") ? "U32" : "I32";
    cs_status s;
    if ((s = check_part(prefix, "qweight", p->qweight, wdtype, gptq ? in / 8 : in, gptq ? out : out / 8,
                        gptq ? "GPTQ: inputs / 8, outputs" : "AWQ: inputs, outputs / 8", err, errlen)) ||
        (s = check_part(prefix, "qzeros", p->qzeros, wdtype, in / g, out / 8, "inputs / group_size, outputs / 8",
                        err, errlen)) ||
        (s = check_part(prefix, "scales", p->scales, "F16", in / g, out, "inputs / group_size, outputs", err,
                        errlen)))
        return s;
    if (gptq && p->g_idx && (s = check_part(prefix, "g_idx", p->g_idx, "I32", in, -1, "inputs", err, errlen)))
        return s;
    if (gptq) {
        bool in_order = p->g_idx || !q->desc_act;
        for (int64_t k = 0; p->g_idx && k < in && in_order; k++) in_order = u32_at(p->g_idx, (size_t)k) == k / g;
        if (!in_order)
            return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                           "'%.96s': act-order (desc_act) GPTQ checkpoints are not supported", prefix);
    }

    size_t bb = (size_t)CS_I4F_BLOCK_BYTES(g), row_bytes = (size_t)(in / g) * bb;
    unsigned char *buf = calloc((size_t)out, row_bytes);
    if (!buf) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory repacking '%.96s'", prefix);
    // Block headers: d = s, m = -z * s, both exact in fp32 (hf_quant.h).
    for (int64_t G = 0; G < in / g; G++)
        for (int64_t n = 0; n < out; n++) {
            uint16_t sh = u16_at(p->scales, (size_t)(G * out + n));
            uint32_t zw = u32_at(p->qzeros, (size_t)(G * (out / 8) + n / 8));
            unsigned z = zw >> 4 * (gptq ? (int)(n % 8) : awq_field[n % 8]) & 15;
            if (gptq && !q->gptq_v2) z += 1;
            float d = cs_fp16_to_f32(sh), m = -((float)z * d);
            if (!isfinite(d)) {
                free(buf);
                return cs_errf(err, errlen, CS_ERR_FORMAT, "'%.96s.scales' [%lld, %lld] is not finite", prefix,
                               (long long)G, (long long)n);
            }
            unsigned char *b = buf + (size_t)n * row_bytes + (size_t)G * bb;
            memcpy(b, &d, 4);
            memcpy(b + 4, &m, 4);
        }
    // Codes.
    if (gptq) {
        for (int64_t i = 0; i < in / 8; i++)
            for (int64_t n = 0; n < out; n++) {
                uint32_t w = u32_at(p->qweight, (size_t)(i * out + n));
                for (int j = 0; j < 8; j++) put_code(buf + (size_t)n * row_bytes, g, bb, 8 * i + j, w >> 4 * j & 15);
            }
    } else {
        for (int64_t k = 0; k < in; k++)
            for (int64_t c = 0; c < out / 8; c++) {
                uint32_t w = u32_at(p->qweight, (size_t)(k * (out / 8) + c));
                for (int i = 0; i < 8; i++)
                    put_code(buf + (size_t)(8 * c + awq_order[i]) * row_bytes, g, bb, k, w >> 4 * i & 15);
            }
    }
    *data = buf;
    *nbytes = (size_t)out * row_bytes;
    return CS_OK;
}
