// --dummy-weights: model shapes by name, and a CPU model of seeded random weights that the GPU
// backend reproduces bit for bit on the device (kernels/dummy_init.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/dummy_init.h"
#include "../kernels/kernels.h"
#include "hf_config.h"
#include "model.h"

typedef struct preset {
    const char *name;
    cs_arch arch;
    int n_layer, dim, ffn, n_head, n_kv, vocab, ctx;
    float eps, theta;
    bool tied;
} preset;

// From the models' config.json files (Llama-3-8B/70B, Qwen2-7B, Mistral-7B-v0.3, SmolLM2-135M).
static const preset presets[] = {
    {"llama3-8b", CS_ARCH_LLAMA, 32, 4096, 14336, 32, 8, 128256, 8192, 1e-5f, 500000.0f, false},
    {"llama3-70b", CS_ARCH_LLAMA, 80, 8192, 28672, 64, 8, 128256, 8192, 1e-5f, 500000.0f, false},
    {"qwen2-7b", CS_ARCH_QWEN2, 28, 3584, 18944, 28, 4, 152064, 32768, 1e-6f, 1000000.0f, false},
    {"mistral-7b", CS_ARCH_MISTRAL, 32, 4096, 14336, 32, 8, 32768, 32768, 1e-5f, 1000000.0f, false},
    {"smollm2-135m", CS_ARCH_LLAMA, 30, 576, 1536, 9, 3, 49152, 8192, 1e-5f, 100000.0f, true},
};

cs_status cs_model_preset(const char *name, cs_model_config *c, char *err, size_t errlen) {
    char base[512];
    int layers = 0;
    const char *colon = strrchr(name, ':');
    size_t len = colon ? (size_t)(colon - name) : strlen(name);
    if (len >= sizeof base) return cs_errf(err, errlen, CS_ERR_INVALID, "dummy weights: name too long");
    memcpy(base, name, len);
    base[len] = 0;
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || v < 1 || v > 1024)
            return cs_errf(err, errlen, CS_ERR_INVALID, "dummy weights: bad layer count in '%s'", name);
        layers = (int)v;
    }
    memset(c, 0, sizeof *c);
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, base)) p = &presets[i];
    if (p) {
        c->arch = p->arch;
        c->n_layer = p->n_layer;
        c->dim = p->dim;
        c->ffn_dim = p->ffn;
        c->n_head = p->n_head;
        c->n_head_kv = p->n_kv;
        c->head_dim = p->dim / p->n_head;
        c->vocab_size = p->vocab;
        c->context_len = p->ctx;
        c->rms_eps = p->eps;
        c->rope_theta = p->theta;
        c->rope_dim = c->head_dim;
        c->rope_layout = CS_ROPE_NEOX;
        c->tied_embeddings = p->tied;
        c->attn_bias = p->arch == CS_ARCH_QWEN2;
    } else if (strstr(base, ".json")) {
        cs_status st = cs_hf_config_load(base, c, err, errlen);
        if (st != CS_OK) return st;
    } else {
        return cs_errf(err, errlen, CS_ERR_INVALID,
                       "unknown dummy-weights preset '%s' (llama3-8b, llama3-70b, qwen2-7b, mistral-7b, "
                       "smollm2-135m, or a config.json path)", base);
    }
    if (layers) c->n_layer = layers < c->n_layer ? layers : c->n_layer;
    return cs_model_config_validate(c, err, errlen);
}

float cs_dummy_scale(const cs_model_config *c, int kind) {
    int q_dim = c->n_head * c->head_dim;
    switch (kind) {
    case CS_DUMMY_O: return sqrtf(3.0f / (float)q_dim);
    case CS_DUMMY_DOWN: return sqrtf(3.0f / (float)c->ffn_dim);
    case CS_DUMMY_ATTN_NORM: case CS_DUMMY_FFN_NORM: case CS_DUMMY_OUT_NORM:
    case CS_DUMMY_BQ: case CS_DUMMY_BK: case CS_DUMMY_BV: return 0.1f;
    default: return sqrtf(3.0f / (float)c->dim); // q, k, v, gate, up, output, embeddings: logits ~ N(0, 1)
    }
}

static cs_status dummy_matrix(cs_model *m, cs_weight *w, int rows, int cols, uint64_t seed, uint32_t id,
                              float scale, char *err, size_t errlen) {
    uint16_t *p = cs_model_alloc(m, (size_t)rows * cols * 2);
    if (!p) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory for dummy weights");
    cs_cpu_fill_dummy_bf16(p, (int64_t)rows * cols, seed, id, scale);
    *w = (cs_weight){.data = p, .type = CS_DTYPE_BF16, .rows = rows, .cols = cols};
    return CS_OK;
}

// Norm weights are 1 + u and biases u, u uniform in [-0.1, 0.1), kept in fp32.
void cs_dummy_vector(float *dst, int n, uint64_t seed, uint32_t id, float offset) {
    for (int i = 0; i < n; i++) dst[i] = offset + cs_dummy_value(seed, id, (uint64_t)i, 0.1f);
}

static cs_status dummy_vector(cs_model *m, const float **out, int n, uint64_t seed, uint32_t id, float offset,
                              char *err, size_t errlen) {
    float *p = cs_model_alloc(m, (size_t)n * sizeof *p);
    if (!p) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory for dummy weights");
    cs_dummy_vector(p, n, seed, id, offset);
    *out = p;
    return CS_OK;
}

cs_status cs_model_init_dummy(cs_model *m, const cs_model_config *c, uint64_t seed, int max_pos,
                              char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    int q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    cs_status st = CS_OK;
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
#define MAT(w, r, k, id, kind) \
    if (!st) st = dummy_matrix(m, w, r, k, seed, id, cs_dummy_scale(c, kind), err, errlen)
#define VEC(v, n, id, off) \
    if (!st) st = dummy_vector(m, v, n, seed, id, off, err, errlen)
    MAT(&m->tok_embd, c->vocab_size, c->dim, CS_DUMMY_EMBD, CS_DUMMY_EMBD);
    m->output = m->tok_embd;
    if (!c->tied_embeddings) MAT(&m->output, c->vocab_size, c->dim, CS_DUMMY_OUTPUT, CS_DUMMY_OUTPUT);
    VEC(&m->output_norm, c->dim, CS_DUMMY_OUT_NORM, 1.0f);
    for (int l = 0; l < c->n_layer; l++) {
        cs_layer *L = &m->layers[l];
        MAT(&L->wq, q_dim, c->dim, cs_dummy_layer_id(l, CS_DUMMY_Q), CS_DUMMY_Q);
        MAT(&L->wk, kv_dim, c->dim, cs_dummy_layer_id(l, CS_DUMMY_K), CS_DUMMY_K);
        MAT(&L->wv, kv_dim, c->dim, cs_dummy_layer_id(l, CS_DUMMY_V), CS_DUMMY_V);
        MAT(&L->wo, c->dim, q_dim, cs_dummy_layer_id(l, CS_DUMMY_O), CS_DUMMY_O);
        MAT(&L->w_gate, c->ffn_dim, c->dim, cs_dummy_layer_id(l, CS_DUMMY_GATE), CS_DUMMY_GATE);
        MAT(&L->w_up, c->ffn_dim, c->dim, cs_dummy_layer_id(l, CS_DUMMY_UP), CS_DUMMY_UP);
        MAT(&L->w_down, c->dim, c->ffn_dim, cs_dummy_layer_id(l, CS_DUMMY_DOWN), CS_DUMMY_DOWN);
        VEC(&L->attn_norm, c->dim, cs_dummy_layer_id(l, CS_DUMMY_ATTN_NORM), 1.0f);
        VEC(&L->ffn_norm, c->dim, cs_dummy_layer_id(l, CS_DUMMY_FFN_NORM), 1.0f);
        if (c->attn_bias) {
            VEC(&L->bq, q_dim, cs_dummy_layer_id(l, CS_DUMMY_BQ), 0.0f);
            VEC(&L->bk, kv_dim, cs_dummy_layer_id(l, CS_DUMMY_BK), 0.0f);
            VEC(&L->bv, kv_dim, cs_dummy_layer_id(l, CS_DUMMY_BV), 0.0f);
        }
    }
#undef MAT
#undef VEC
    m->rope_max_pos = max_pos;
    if (!st && !(m->rope_cos_sin = cs_model_alloc(m, (size_t)max_pos * c->rope_dim * sizeof(float))))
        st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    if (st) {
        cs_model_free(m);
        return st;
    }
    cs_rope_table(c, NULL, max_pos, m->rope_cos_sin);
    return CS_OK;
}
