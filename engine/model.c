#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"

void *cs_model_alloc(cs_model *m, size_t bytes) {
    void **grown = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *grown);
    if (!grown) return NULL;
    m->owned = grown;
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

cs_status cs_quant_type(const char *quant, int group, cs_dtype *out, char *err, size_t errlen) {
    *out = CS_DTYPE_COUNT;
    if (!quant) return CS_OK;
    if (group != 32 && group != 64 && group != 128)
        return cs_errf(err, errlen, CS_ERR_INVALID, "--quant-group %d: use 32, 64 or 128", group);
    if (!strcmp(quant, "int4")) *out = cs_dtype_int4(group);
    else if (!strcmp(quant, "int8")) *out = cs_dtype_int8(group);
    else return cs_errf(err, errlen, CS_ERR_INVALID, "--quant '%s': use int8 or int4", quant);
    return CS_OK;
}

// A float matrix quantised row by row straight from the file (one fp32 row at a time, so a
// bf16 checkpoint never exists whole in fp32).
static cs_status quantize_weight(cs_model *m, const cs_model_tensor *t, cs_weight *w, const char *name, char *err,
                                 size_t errlen) {
    int g = cs_dtype_group(m->quant);
    size_t q_row, src_row;
    if (w->cols % g != 0 || !cs_dtype_row_bytes(m->quant, w->cols, &q_row) ||
        !cs_dtype_row_bytes(t->dtype, w->cols, &src_row))
        return cs_errf(err, errlen, CS_ERR_INVALID, "--quant: '%s' has %d columns, not a multiple of the group %d",
                       name, w->cols, g);
    unsigned char *q = cs_model_alloc(m, q_row * (size_t)w->rows);
    float *row = malloc(sizeof(float) * (size_t)w->cols);
    if (!q || !row) {
        free(row);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory quantising '%s'", name);
    }
    for (int r = 0; r < w->rows; r++) {
        cs_cpu_dequant_row(t->dtype, (const unsigned char *)t->data + (size_t)r * src_row, row, w->cols);
        for (int i = 0; i < w->cols; i++)
            if (!(fabsf(row[i]) <= 65504.0f)) { // NaN, inf, or past fp16 scales: the file is broken
                double bad = row[i];
                free(row);
                return cs_errf(err, errlen, CS_ERR_INVALID, "--quant: '%s' row %d holds %g, which cannot be quantised",
                               name, r, bad);
            }
        cs_cpu_quantize_row(m->quant, row, q + (size_t)r * q_row, w->cols);
    }
    free(row);
    w->data = q;
    w->type = m->quant;
    return CS_OK;
}

// Resolves a matrix: every type is used in place (the CPU kernels decode fp16/bf16 and the
// quantised blocks as they read them, so 16-bit checkpoints keep their 2 bytes a weight);
// with --quant, the layers' float matrices (quant: true) are quantised instead.
static cs_status get_weight(cs_model *m, const char *name, cs_weight *w, bool quant, char *err, size_t errlen) {
    const cs_model_tensor *t = cs_model_file_tensor(m->file, name);
    if (!t) return cs_errf(err, errlen, CS_ERR_NOT_FOUND, "missing tensor '%s'", name);
    w->rows = (int)t->ne[1];
    w->cols = (int)t->ne[0];
    w->type = t->dtype;
    w->data = t->data;
    bool is_float = t->dtype == CS_DTYPE_F32 || t->dtype == CS_DTYPE_F16 || t->dtype == CS_DTYPE_BF16;
    if (quant && is_float && m->quant != CS_DTYPE_COUNT) return quantize_weight(m, t, w, name, err, errlen);
    return CS_OK;
}

// Vectors (norms, biases) are always fp32 copies: aligned, and cheap.
static cs_status get_vector(cs_model *m, const char *name, const float **out, char *err, size_t errlen) {
    const cs_model_tensor *t = cs_model_file_tensor(m->file, name);
    if (!t) return cs_errf(err, errlen, CS_ERR_NOT_FOUND, "missing tensor '%s'", name);
    float *f = cs_model_alloc(m, (size_t)t->ne[0] * sizeof *f);
    if (!f) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    cs_cpu_dequant_row(t->dtype, t->data, f, t->ne[0]);
    *out = f;
    return CS_OK;
}

static cs_status init_layer(cs_model *m, int l, char *err, size_t errlen) {
    cs_layer *L = &m->layers[l];
    char name[96];
#define W(field, suffix)                                                        \
    (snprintf(name, sizeof name, "blk.%d." suffix, l), get_weight(m, name, &L->field, true, err, errlen))
#define V(field, suffix)                                                        \
    (snprintf(name, sizeof name, "blk.%d." suffix, l), get_vector(m, name, &L->field, err, errlen))
    cs_status st;
    if ((st = V(attn_norm, "attn_norm.weight")) || (st = V(ffn_norm, "ffn_norm.weight")) ||
        (st = W(wq, "attn_q.weight")) || (st = W(wk, "attn_k.weight")) ||
        (st = W(wv, "attn_v.weight")) || (st = W(wo, "attn_output.weight")) ||
        (st = W(w_gate, "ffn_gate.weight")) || (st = W(w_up, "ffn_up.weight")) ||
        (st = W(w_down, "ffn_down.weight")))
        return st;
    if (m->cfg.attn_bias &&
        ((st = V(bq, "attn_q.bias")) || (st = V(bk, "attn_k.bias")) || (st = V(bv, "attn_v.bias"))))
        return st;
#undef W
#undef V
    return CS_OK;
}

// HF computes inv_freq and the angles in fp32; so do we, so that the table is theirs. The
// llama3 rule scales low frequencies by 1/factor, keeps high ones, and blends in between.
static float llama3_scale(const cs_model_config *c, float inv_freq) {
    float lo_wl = (float)c->rope_orig_context / c->rope_low_freq_factor;
    float hi_wl = (float)c->rope_orig_context / c->rope_high_freq_factor;
    float wavelen = 2.0f * (float)M_PI / inv_freq;
    if (wavelen < hi_wl) return inv_freq;
    if (wavelen > lo_wl) return inv_freq / c->rope_factor;
    float smooth = ((float)c->rope_orig_context / wavelen - c->rope_low_freq_factor) /
                   (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1.0f - smooth) * inv_freq / c->rope_factor + smooth * inv_freq;
}

void cs_rope_table(const cs_model_config *c, const float *freq_factors, int max_pos, float *cos_sin) {
    int half = c->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->rope_dim);
        if (c->rope_scaling == CS_ROPE_SCALING_LLAMA3) inv_freq = llama3_scale(c, inv_freq);
        if (c->rope_scaling == CS_ROPE_SCALING_LINEAR) inv_freq /= c->rope_factor;
        if (freq_factors) inv_freq /= freq_factors[i];
        for (int p = 0; p < max_pos; p++) {
            double angle = (double)((float)p * inv_freq);
            cos_sin[((size_t)p * half + i) * 2] = (float)cos(angle);
            cos_sin[((size_t)p * half + i) * 2 + 1] = (float)sin(angle);
        }
    }
}

cs_status cs_model_init(cs_model *m, const cs_model_file *f, int max_pos, char *err, size_t errlen) {
    return cs_model_init_quant(m, f, max_pos, CS_DTYPE_COUNT, err, errlen);
}

cs_status cs_model_init_quant(cs_model *m, const cs_model_file *f, int max_pos, cs_dtype quant, char *err,
                              size_t errlen) {
    memset(m, 0, sizeof *m);
    m->cfg = f->cfg;
    m->file = f;
    m->quant = quant;
    cs_status st;
    m->layers = calloc((size_t)m->cfg.n_layer, sizeof *m->layers);
    if (!m->layers) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    // embeddings and lm_head keep the file's format: a gather reads one row per token, and
    // the logits are where rounding errors show most (llama.cpp and vLLM keep them too)
    if ((st = get_weight(m, "token_embd.weight", &m->tok_embd, false, err, errlen)) ||
        (st = get_vector(m, "output_norm.weight", &m->output_norm, err, errlen)))
        goto fail;
    m->output = m->tok_embd;
    if (!m->cfg.tied_embeddings && (st = get_weight(m, "output.weight", &m->output, false, err, errlen)))
        goto fail;
    for (int l = 0; l < m->cfg.n_layer; l++)
        if ((st = init_layer(m, l, err, errlen))) goto fail;
    const float *freq_factors = NULL;
    if (m->cfg.rope_freqs_tensor && (st = get_vector(m, "rope_freqs.weight", &freq_factors, err, errlen)))
        goto fail;
    m->rope_max_pos = max_pos;
    m->rope_cos_sin = cs_model_alloc(m, (size_t)max_pos * m->cfg.rope_dim * sizeof(float));
    if (!m->rope_cos_sin) {
        st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    cs_rope_table(&m->cfg, freq_factors, max_pos, m->rope_cos_sin);
    return CS_OK;
fail:
    cs_model_free(m);
    return st;
}

void cs_model_free(cs_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
