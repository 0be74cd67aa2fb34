// The Llama-family decoder on the CPU backend, one ragged batch at a time:
//   embed -> [rmsnorm -> q,k,v (+bias) -> rope -> write KV -> paged attention -> o-proj
//   -> residual -> rmsnorm -> gate, up -> swiglu -> down -> residual] x L
//   -> final norm (logit rows only) -> lm_head.
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"

struct cs_forward {
    const cs_model *m;
    cs_kv_cache *kv;
    cs_pool *pool;
    int max_tokens, max_ctx;
    // activations, (max_tokens, width) each; one allocation carved up
    float *x;      // (T, dim) residual stream
    float *xn;     // (T, dim) normed input of a sub-layer
    float *q;      // (T, q_dim)
    float *k, *v;  // (T, kv_dim)
    float *att;    // (T, q_dim)
    float *gate;   // (T, ffn)
    float *up;     // (T, ffn)
    float *out;    // (T, dim) sub-layer output
    float *mm_scratch, *attn_scratch;
    void *arena;
    void (*allreduce)(void *ctx, float *x, size_t n); // tensor parallel: sums over the ranks
    void *allreduce_ctx;
};

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

cs_forward *cs_forward_init(const cs_model *m, cs_kv_cache *kv, int max_tokens, int max_ctx,
                            cs_pool *pool, char *err, size_t errlen) {
    const cs_model_config *c = &m->cfg;
    cs_forward *f = calloc(1, sizeof *f);
    if (!f) {
        cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->m = m;
    f->kv = kv;
    f->pool = pool;
    f->max_tokens = max_tokens;
    f->max_ctx = max_ctx;
    size_t T = (size_t)max_tokens, q_dim = (size_t)c->n_head * c->head_dim;
    size_t kv_dim = (size_t)c->n_head_kv * c->head_dim, fl = sizeof(float);
    int threads = cs_pool_threads(pool), k_max = c->ffn_dim > (int)q_dim ? c->ffn_dim : (int)q_dim;
    if (c->dim > k_max) k_max = c->dim;
    size_t sizes[] = {T * c->dim * fl, T * c->dim * fl, T * q_dim * fl, T * kv_dim * fl,
                      T * kv_dim * fl, T * q_dim * fl, T * c->ffn_dim * fl, T * c->ffn_dim * fl,
                      T * c->dim * fl, cs_cpu_matmul_scratch(k_max, threads),
                      cs_cpu_attention_scratch(c->n_head, threads)};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += round64(sizes[i]);
    f->arena = aligned_alloc(64, total);
    if (!f->arena) {
        free(f);
        cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory for %zu bytes of activations", total);
        return NULL;
    }
    float **slots[] = {&f->x, &f->xn, &f->q, &f->k, &f->v, &f->att, &f->gate, &f->up, &f->out,
                       &f->mm_scratch, &f->attn_scratch};
    char *p = f->arena;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = (float *)p;
        p += round64(sizes[i]);
    }
    return f;
}

void cs_forward_free(cs_forward *f) {
    if (!f) return;
    free(f->arena);
    free(f);
}

int cs_forward_max_tokens(const cs_forward *f) { return f->max_tokens; }

void cs_forward_set_allreduce(cs_forward *f, void (*fn)(void *ctx, float *x, size_t n), void *ctx) {
    f->allreduce = fn;
    f->allreduce_ctx = ctx;
}

// A row-parallel projection's output joins the residual stream once summed over the ranks.
static void add_output(cs_forward *f, int T) {
    size_t n = (size_t)T * f->m->cfg.dim;
    if (f->allreduce) f->allreduce(f->allreduce_ctx, f->out, n);
    cs_cpu_add(f->x, f->out, (int)n);
}

static void matmul(cs_forward *f, float *out, const float *x, const cs_weight *w, const float *bias, int m) {
    cs_cpu_matmul(out, x, w->data, w->type, bias, m, w->rows, w->cols, f->mm_scratch, f->pool);
}

static void attention_block(cs_forward *f, const cs_batch *b, int l) {
    const cs_model_config *c = &f->m->cfg;
    const cs_layer *L = &f->m->layers[l];
    int T = b->n_tokens, kv_dim = c->n_head_kv * c->head_dim;
    cs_cpu_rmsnorm(f->xn, f->x, L->attn_norm, T, c->dim, c->rms_eps);
    matmul(f, f->q, f->xn, &L->wq, L->bq, T);
    matmul(f, f->k, f->xn, &L->wk, L->bk, T);
    matmul(f, f->v, f->xn, &L->wv, L->bv, T);
    int neox = c->rope_layout == CS_ROPE_NEOX;
    cs_cpu_rope(f->q, b->positions, T, c->n_head, c->head_dim, c->rope_dim, f->m->rope_cos_sin, neox);
    cs_cpu_rope(f->k, b->positions, T, c->n_head_kv, c->head_dim, c->rope_dim, f->m->rope_cos_sin, neox);
    float *kc = cs_kv_layer_k(f->kv, l), *vc = cs_kv_layer_v(f->kv, l);
    cs_cpu_kv_write(kc, vc, f->k, f->v, b->slots, T, kv_dim);
    cs_cpu_attention(f->att, f->q, kc, vc, &b->attn, c->n_head, c->n_head_kv, c->head_dim,
                     1.0f / sqrtf((float)c->head_dim), f->attn_scratch, f->pool);
    matmul(f, f->out, f->att, &L->wo, NULL, T);
    add_output(f, T);
}

static void mlp_block(cs_forward *f, int T, int l) {
    const cs_model_config *c = &f->m->cfg;
    const cs_layer *L = &f->m->layers[l];
    cs_cpu_rmsnorm(f->xn, f->x, L->ffn_norm, T, c->dim, c->rms_eps);
    matmul(f, f->gate, f->xn, &L->w_gate, NULL, T);
    matmul(f, f->up, f->xn, &L->w_up, NULL, T);
    cs_cpu_swiglu(f->gate, f->gate, f->up, T * c->ffn_dim);
    matmul(f, f->out, f->gate, &L->w_down, NULL, T);
    add_output(f, T);
}

void cs_forward_run(cs_forward *f, const cs_batch *b, float *logits) {
    const cs_model *m = f->m;
    const cs_model_config *c = &m->cfg;
    int T = b->n_tokens;
    CS_ASSERT(T >= 1 && T <= f->max_tokens && b->n_logits >= 0 && b->n_logits <= T);
    for (int s = 0; s < b->attn.n_seqs; s++) CS_ASSERT(b->attn.kv_len[s] <= f->max_ctx);
    for (int t = 0; t < T; t++)
        CS_ASSERT(b->tokens[t] >= 0 && b->tokens[t] < c->vocab_size && b->positions[t] >= 0 &&
                  b->positions[t] < m->rope_max_pos);
    cs_cpu_embed(f->x, m->tok_embd.data, m->tok_embd.type, b->tokens, T, c->dim);
    for (int l = 0; l < c->n_layer; l++) {
        attention_block(f, b, l);
        mlp_block(f, T, l);
    }
    if (b->n_logits == 0 || !logits) return;
    // gather the rows that need logits, then norm and project only those
    for (int i = 0; i < b->n_logits; i++)
        memcpy(f->out + (size_t)i * c->dim, f->x + (size_t)b->logit_rows[i] * c->dim, (size_t)c->dim * sizeof(float));
    cs_cpu_rmsnorm(f->xn, f->out, m->output_norm, b->n_logits, c->dim, c->rms_eps);
    matmul(f, logits, f->xn, &m->output, NULL, b->n_logits);
}
