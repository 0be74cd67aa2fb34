// Paged causal attention, the reference: one task per (token, query head), two passes over
// the token's visible positions (scores, then the softmax-weighted sum of V), fp32.
#include <math.h>
#include <string.h>

#include "../kernels.h"
#include "cpu_simd.h"

typedef struct attn_job {
    float *out;
    const float *q, *k_cache, *v_cache;
    const cs_attn_batch *b;
    int n_head, n_kv, head_dim;
    float scale;
    float *scratch;
    int scratch_stride;
    int n_tok;
} attn_job;


// The sequence a token belongs to: binary search over q_start.
static int seq_of(const cs_attn_batch *b, int t) {
    int lo = 0, hi = b->n_seqs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b->q_start[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static void attn_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    const cs_attn_batch *b = j->b;
    int t = task / j->n_head, h = task % j->n_head;
    int s = seq_of(b, t);
    int q_len = b->q_start[s + 1] - b->q_start[s];
    int visible = b->kv_len[s] - q_len + (t - b->q_start[s]) + 1; // causal, bottom-right
    int kvh = h / (j->n_head / j->n_kv), hd = j->head_dim, kv_dim = j->n_kv * hd;
    const float *q = j->q + ((size_t)t * j->n_head + h) * hd;
    const int32_t *blocks = b->block_table + b->bt_start[s];
    float *score = j->scratch + (size_t)thread * j->scratch_stride;
    float mx = -INFINITY;
    for (int p = 0; p < visible; p++) {
        size_t slot = (size_t)blocks[p / b->block_size] * b->block_size + p % b->block_size;
        score[p] = cs_dot_f32(q, j->k_cache + slot * kv_dim + (size_t)kvh * hd, hd) * j->scale;
        if (score[p] > mx) mx = score[p];
    }
    float sum = 0;
    for (int p = 0; p < visible; p++) {
        score[p] = expf(score[p] - mx);
        sum += score[p];
    }
    float *o = j->out + ((size_t)t * j->n_head + h) * hd;
    memset(o, 0, (size_t)hd * sizeof *o);
    for (int p = 0; p < visible; p++) {
        size_t slot = (size_t)blocks[p / b->block_size] * b->block_size + p % b->block_size;
        const float *v = j->v_cache + slot * kv_dim + (size_t)kvh * hd;
        float w = score[p];
        for (int i = 0; i < hd; i++) o[i] = fmaf(w, v[i], o[i]);
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) o[i] *= inv;
}

size_t cs_cpu_attention_scratch(int max_kv_len, int n_threads) {
    return (size_t)n_threads * (size_t)max_kv_len * sizeof(float);
}

void cs_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                      const cs_attn_batch *b, int n_head, int n_kv, int head_dim, float scale,
                      float *scratch, cs_pool *pool) {
    int n_tok = b->q_start[b->n_seqs];
    int max_kv = 0;
    for (int s = 0; s < b->n_seqs; s++)
        if (b->kv_len[s] > max_kv) max_kv = b->kv_len[s];
    attn_job j = {out, q, k_cache, v_cache, b, n_head, n_kv, head_dim, scale, scratch, max_kv, n_tok};
    cs_pool_run(pool, attn_task, &j, n_tok * n_head);
}
