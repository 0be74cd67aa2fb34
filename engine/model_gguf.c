// Opening a model from a GGUF file: config from the llama-family metadata keys, tensors in
// place, tokenizer from tokenizer.ggml.*.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model_file.h"
#include "tokenizer.h"

typedef struct meta_reader {
    const cs_gguf *g;
    const char *arch;
    char *err;
    size_t errlen;
    cs_status st;
} meta_reader;

// Reads "<arch>.<suffix>" as an int32 in [1, INT32_MAX]. A missing key takes def when
// def > 0, and is an error otherwise.
static int32_t meta_i32(meta_reader *r, const char *suffix, int32_t def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", r->arch, suffix);
    int64_t v;
    if (cs_gguf_find_key(r->g, key) < 0) {
        if (def > 0) return def;
        if (r->st == CS_OK)
            r->st = cs_errf(r->err, r->errlen, CS_ERR_FORMAT, "gguf: missing metadata key '%s'", key);
        return 0;
    }
    if (!cs_gguf_get_i64(r->g, key, &v) || v < 1 || v > INT32_MAX) {
        if (r->st == CS_OK)
            r->st = cs_errf(r->err, r->errlen, CS_ERR_FORMAT,
                            "gguf: metadata '%s' is not a positive integer in range", key);
        return 0;
    }
    return (int32_t)v;
}

static float meta_f32(meta_reader *r, const char *suffix, float def, bool required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", r->arch, suffix);
    float v;
    if (cs_gguf_find_key(r->g, key) < 0) {
        if (required && r->st == CS_OK)
            r->st = cs_errf(r->err, r->errlen, CS_ERR_FORMAT, "gguf: missing metadata key '%s'", key);
        return def;
    }
    if (!cs_gguf_get_f32(r->g, key, &v)) {
        if (r->st == CS_OK)
            r->st = cs_errf(r->err, r->errlen, CS_ERR_FORMAT, "gguf: metadata '%s' is not a number",
                            key);
        return def;
    }
    return v;
}

static cs_status read_arch(const cs_gguf *g, cs_model_config *c, char *arch, size_t n, char *err,
                           size_t errlen) {
    const char *s;
    size_t len;
    if (!cs_gguf_get_str(g, "general.architecture", &s, &len))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "gguf: missing general.architecture");
    snprintf(arch, n, "%.*s", (int)(len < n ? len : n - 1), s);
    if (strcmp(arch, "llama") == 0) {
        c->arch = CS_ARCH_LLAMA;
        c->rope_layout = CS_ROPE_NORM; // llama.cpp's converter permuted q/k
    } else if (strcmp(arch, "mistral") == 0) {
        c->arch = CS_ARCH_MISTRAL;
        c->rope_layout = CS_ROPE_NORM;
    } else if (strcmp(arch, "qwen2") == 0) {
        c->arch = CS_ARCH_QWEN2;
        c->rope_layout = CS_ROPE_NEOX; // converted without the permutation
        c->attn_bias = true;
    } else {
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                       "gguf: unsupported architecture '%s' (supported: llama, mistral, qwen2)", arch);
    }
    return CS_OK;
}

static cs_status read_rope_scaling(meta_reader *r, cs_model_config *c) {
    char key[128];
    const char *s;
    size_t len;
    snprintf(key, sizeof key, "%s.rope.scaling.type", r->arch);
    c->rope_scaling = CS_ROPE_SCALING_NONE;
    c->rope_freqs_tensor = cs_gguf_find_tensor(r->g, "rope_freqs.weight") != NULL;
    if (!cs_gguf_get_str(r->g, key, &s, &len) || (len == 4 && memcmp(s, "none", 4) == 0))
        return r->st;
    if (len == 6 && memcmp(s, "linear", 6) == 0) {
        c->rope_scaling = CS_ROPE_SCALING_LINEAR;
        c->rope_factor = meta_f32(r, "rope.scaling.factor", 1.0f, true);
        return r->st;
    }
    return cs_errf(r->err, r->errlen, CS_ERR_UNSUPPORTED, "gguf: unsupported rope scaling '%.*s'",
                   (int)(len > 32 ? 32 : len), s);
}

static cs_status read_config(const cs_gguf *g, cs_model_config *c, char *err, size_t errlen) {
    char arch[64];
    memset(c, 0, sizeof *c);
    cs_status st = read_arch(g, c, arch, sizeof arch, err, errlen);
    if (st != CS_OK) return st;
    meta_reader r = {g, arch, err, errlen, CS_OK};
    c->n_layer = meta_i32(&r, "block_count", 0);
    c->dim = meta_i32(&r, "embedding_length", 0);
    c->ffn_dim = meta_i32(&r, "feed_forward_length", 0);
    c->n_head = meta_i32(&r, "attention.head_count", 0);
    c->n_head_kv = meta_i32(&r, "attention.head_count_kv", c->n_head > 0 ? c->n_head : 1);
    c->context_len = meta_i32(&r, "context_length", 0);
    c->rms_eps = meta_f32(&r, "attention.layer_norm_rms_epsilon", 0, true);
    c->rope_theta = meta_f32(&r, "rope.freq_base", 10000.0f, false);
    if (r.st != CS_OK) return r.st;
    c->head_dim = meta_i32(&r, "attention.key_length", c->dim / c->n_head > 0 ? c->dim / c->n_head : 1);
    c->rope_dim = meta_i32(&r, "rope.dimension_count", c->head_dim);
    // vocab_size is optional in GGUF: the embedding's row count is the truth
    const cs_gguf_tensor *emb = cs_gguf_find_tensor(g, "token_embd.weight");
    int32_t emb_rows = emb && emb->n_dims == 2 && emb->ne[1] <= INT32_MAX ? (int32_t)emb->ne[1] : 1;
    c->vocab_size = meta_i32(&r, "vocab_size", emb_rows);
    c->tied_embeddings = cs_gguf_find_tensor(g, "output.weight") == NULL;
    if ((st = read_rope_scaling(&r, c)) != CS_OK) return st;
    return r.st;
}

cs_status cs_model_file_open_gguf(const char *path, cs_model_file *m, char *err, size_t errlen) {
    cs_status st = cs_gguf_open(path, &m->gguf, err, errlen);
    if (st != CS_OK) return st;
    const cs_gguf *g = m->gguf;
    m->format = CS_FORMAT_GGUF;
    if ((st = read_config(g, &m->cfg, err, errlen)) != CS_OK) return st;
    const char *name;
    size_t len;
    if (cs_gguf_get_str(g, "general.name", &name, &len)) {
        m->name = malloc(len + 1);
        if (m->name) snprintf(m->name, len + 1, "%.*s", (int)len, name);
    } else {
        const char *base = strrchr(path, '/');
        m->name = strdup(base ? base + 1 : path);
    }
    if (!m->name) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    int n = cs_gguf_n_tensors(g);
    m->tensors = calloc(n ? (size_t)n : 1, sizeof *m->tensors);
    if (!m->tensors) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const cs_gguf_tensor *t = cs_gguf_tensor_at(g, i);
        if (!t->supported) continue; // named in an error only if the model needs it
        cs_model_tensor *mt = &m->tensors[m->n_tensors++];
        mt->name = t->name;
        mt->dtype = t->dtype;
        mt->n_dims = t->n_dims;
        memcpy(mt->ne, t->ne, sizeof mt->ne);
        mt->data = t->data;
        mt->nbytes = t->nbytes;
    }
    return cs_tokenizer_from_gguf(g, &m->tok, err, errlen);
}
