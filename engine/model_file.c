// Opening a model whatever its format, and checking its tensors against its config.
#include "model_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "tokenizer.h"

cs_status cs_model_file_open(const char *path, cs_model_file **out, char *err, size_t errlen) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return cs_errf(err, errlen, CS_ERR_IO, "%s: no such file or directory", path);
    cs_model_file *m = calloc(1, sizeof *m);
    if (!m) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    cs_status s = S_ISDIR(st.st_mode) ? cs_model_file_open_hf(path, m, err, errlen)
                                      : cs_model_file_open_gguf(path, m, err, errlen);
    if (s == CS_OK) s = cs_model_config_validate(&m->cfg, err, errlen);
    if (s == CS_OK) s = cs_model_file_check(m, err, errlen);
    if (s != CS_OK) {
        cs_model_file_free(m);
        return s;
    }
    *out = m;
    return CS_OK;
}

void cs_model_file_free(cs_model_file *m) {
    if (!m) return;
    cs_tokenizer_free(m->tok);
    free(m->tensors);
    free(m->name);
    cs_gguf_free(m->gguf);
    cs_hf_model_free(m->hf);
    free(m);
}

const cs_model_tensor *cs_model_file_tensor(const cs_model_file *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

size_t cs_model_file_weight_bytes(const cs_model_file *m) {
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) total += m->tensors[i].nbytes;
    return total;
}

// One expected tensor: name, shape (ne0, ne1; ne1 = 0 for a vector), and whether it must be
// a plain float type (norms and biases are read directly, never quantised).
static cs_status expect(const cs_model_file *m, const char *name, int64_t ne0, int64_t ne1,
                        bool float_only, char *err, size_t errlen) {
    const cs_model_tensor *t = cs_model_file_tensor(m, name);
    if (!t) {
        const cs_gguf_tensor *gt = m->gguf ? cs_gguf_find_tensor(m->gguf, name) : NULL;
        if (gt)
            return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                           "tensor '%s' has type %s, which cserve does not support (supported: "
                           "F32, F16, BF16, Q8_0, Q4_0, Q4_1)",
                           name, cs_ggml_type_name(gt->ggml_type));
        return cs_errf(err, errlen, CS_ERR_NOT_FOUND, "missing tensor '%s'", name);
    }
    int want_dims = ne1 ? 2 : 1;
    bool ok = t->n_dims == want_dims && t->ne[0] == ne0 && (ne1 == 0 || t->ne[1] == ne1);
    if (!ok)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "tensor '%s' has shape [%lld, %lld] (%d dims), expected [%lld, %lld]", name,
                       (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 0), t->n_dims,
                       (long long)ne0, (long long)ne1);
    if (float_only && t->dtype != CS_DTYPE_F32 && t->dtype != CS_DTYPE_F16 &&
        t->dtype != CS_DTYPE_BF16)
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "tensor '%s' must be F32, F16 or BF16, not %s",
                       name, cs_dtype_name(t->dtype));
    return CS_OK;
}

static cs_status check_layer(const cs_model_file *m, int l, char *err, size_t errlen) {
    const cs_model_config *c = &m->cfg;
    int64_t q = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_head_kv * c->head_dim;
    struct { const char *suffix; int64_t ne0, ne1; bool f; } want[] = {
        {"attn_norm.weight", c->dim, 0, true},  {"attn_q.weight", c->dim, q, false},
        {"attn_k.weight", c->dim, kv, false},   {"attn_v.weight", c->dim, kv, false},
        {"attn_output.weight", q, c->dim, false}, {"ffn_norm.weight", c->dim, 0, true},
        {"ffn_gate.weight", c->dim, c->ffn_dim, false}, {"ffn_up.weight", c->dim, c->ffn_dim, false},
        {"ffn_down.weight", c->ffn_dim, c->dim, false},
        {"attn_q.bias", q, 0, true}, {"attn_k.bias", kv, 0, true}, {"attn_v.bias", kv, 0, true},
    };
    int n = c->attn_bias ? 12 : 9;
    for (int i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s", l, want[i].suffix);
        cs_status st = expect(m, name, want[i].ne0, want[i].ne1, want[i].f, err, errlen);
        if (st != CS_OK) return st;
    }
    return CS_OK;
}

cs_status cs_model_file_check(const cs_model_file *m, char *err, size_t errlen) {
    const cs_model_config *c = &m->cfg;
    cs_status st = expect(m, "token_embd.weight", c->dim, c->vocab_size, false, err, errlen);
    if (st == CS_OK) st = expect(m, "output_norm.weight", c->dim, 0, true, err, errlen);
    if (st == CS_OK && !c->tied_embeddings)
        st = expect(m, "output.weight", c->dim, c->vocab_size, false, err, errlen);
    if (st == CS_OK && c->rope_freqs_tensor)
        st = expect(m, "rope_freqs.weight", c->rope_dim / 2, 0, true, err, errlen);
    for (int l = 0; l < c->n_layer && st == CS_OK; l++) st = check_layer(m, l, err, errlen);
    if (st != CS_OK) return st;
    if (!m->tok) return cs_errf(err, errlen, CS_ERR_NOT_FOUND, "model has no tokenizer");
    if (cs_tokenizer_vocab_size(m->tok) > c->vocab_size)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "tokenizer has %d tokens but the model's vocabulary is %d",
                       cs_tokenizer_vocab_size(m->tok), c->vocab_size);
    return CS_OK;
}
