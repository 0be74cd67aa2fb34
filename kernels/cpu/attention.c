// Paged causal attention, the reference: one task per (up to Q_TILE tokens of a sequence, some
// query heads of one KV group), so those heads and tokens read each K and V row once between
// them. Positions go in chunks of CHUNK with an online softmax (flash attention's running max
// and sum): scores for a chunk, their exp, then the weighted V rows added into the output row,
// rescaled when the max grows. fp32 throughout.
//
// The arithmetic of a (token, head) depends only on its query, its visible positions and the
// chunk boundaries (multiples of CHUNK from position 0), never on which heads or tokens share
// its task, so a token's output is the same whatever the batch (batch invariance) and whatever
// the tensor-parallel split of the heads.
#include <math.h>
#include <string.h>

#include "../kernels.h"
#include "cpu_simd.h"

#define CHUNK 128 // positions per online-softmax step
#define Q_TILE 4  // tokens of a sequence that share a task (and each K/V row) in prefill

// Per thread, for a task of up to n_head heads: one chunk's scores, then Q_TILE x n_head
// running maxima and sums.
static size_t thread_scratch_floats(int n_head) { return CHUNK + 2 * (size_t)Q_TILE * n_head; }

typedef struct attn_job {
    float *out;
    const float *q, *k_cache, *v_cache;
    const cs_attn_batch *b;
    int n_head, n_kv, head_dim;
    float scale;
    float *scratch;
    int heads_per_task, tasks_per_group;
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

// score[j] = dot(q, k[j]) * scale for 8 rows k[j] of length hd: each lane accumulates its own
// row over hd in steps of 8 (FMA), then the eight accumulators are summed lane-wise in one
// transpose (cs_v8_sum8), so a row's score does not depend on the rows beside it.
static void scores8(const float *q, const float *const k[8], int hd, float scale, float *score) {
    cs_v8 a[8];
    for (int j = 0; j < 8; j++) a[j] = cs_v8_zero();
    int hd8 = hd & ~7;
    for (int c = 0; c < hd8; c += 8) {
        cs_v8 qc = cs_v8_load(q + c);
        for (int j = 0; j < 8; j++) a[j] = cs_v8_fma(qc, cs_v8_load(k[j] + c), a[j]);
    }
    float s[8];
    cs_v8_store(s, cs_v8_sum8(a));
    for (int j = 0; j < 8; j++) {
        for (int c = hd8; c < hd; c++) s[j] = fmaf(q[c], k[j][c], s[j]);
        score[j] = s[j] * scale;
    }
}

// o[0, hd) += sum over j < n of p[j] * v[j][0, hd), positions in order, 64 dims at a time in
// registers.
static void accumulate_v(float *o, const float *p, const float *const *v, int n, int hd) {
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
        cs_v8 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = cs_v8_load(o + d + 8 * i);
        for (int j = 0; j < n; j++) {
            cs_v8 pj = cs_v8_set1(p[j]);
            for (int i = 0; i < 8; i++) acc[i] = cs_v8_fma(pj, cs_v8_load(v[j] + d + 8 * i), acc[i]);
        }
        for (int i = 0; i < 8; i++) cs_v8_store(o + d + 8 * i, acc[i]);
    }
    for (; d + 8 <= hd; d += 8) {
        cs_v8 acc = cs_v8_load(o + d);
        for (int j = 0; j < n; j++) acc = cs_v8_fma(cs_v8_set1(p[j]), cs_v8_load(v[j] + d), acc);
        cs_v8_store(o + d, acc);
    }
    for (; d < hd; d++)
        for (int j = 0; j < n; j++) o[d] = fmaf(p[j], v[j][d], o[d]);
}

// One head of one token over one chunk of its positions (n of them, rows krow/vrow; krow
// padded to a multiple of 8): scores, the online-softmax update of its running max, sum and
// output row o.
static void chunk_update(const attn_job *j, const float *q, const float *const *krow, const float *const *vrow, int n,
                         float *sc, float *run_max, float *run_sum, float *o) {
    int hd = j->head_dim;
    for (int i = 0; i < n; i += 8) {
        float s8[8];
        scores8(q, krow + i, hd, j->scale, s8);
        memcpy(sc + i, s8, sizeof(float) * (size_t)(n - i < 8 ? n - i : 8));
    }
    float m = cs_cpu_max(sc, n);
    if (m > *run_max) { // the sum and output so far were weighted by exp(-old max)
        float alpha = *run_max == -INFINITY ? 0.0f : cs_cpu_exp_scaled1(*run_max, m, 1.0f);
        *run_sum *= alpha;
        for (int d = 0; d < hd; d++) o[d] *= alpha;
        *run_max = m;
    }
    cs_cpu_exp_scaled(sc, n, *run_max, 1.0f, sc); // in place, 8 at a time, within 2 ulp of expf
    for (int i = 0; i < n; i++) *run_sum += sc[i];
    accumulate_v(o, sc, vrow, n, hd);
}

// Task = (token, some heads of one KV group). The task of a sequence's token i with i % Q_TILE
// == 0 takes tokens i .. i + Q_TILE - 1 (those of its sequence), so that they share each chunk
// of K and V rows from L1; the other tokens' tasks have nothing to do.
static void attn_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    const cs_attn_batch *b = j->b;
    int group = j->n_head / j->n_kv, hd = j->head_dim, kv_dim = j->n_kv * hd;
    int t0 = task / (j->n_kv * j->tasks_per_group), rest = task % (j->n_kv * j->tasks_per_group);
    int kvh = rest / j->tasks_per_group, h0 = kvh * group + rest % j->tasks_per_group * j->heads_per_task;
    int nh = kvh * group + group - h0 < j->heads_per_task ? kvh * group + group - h0 : j->heads_per_task;
    int s = seq_of(b, t0);
    int q_len = b->q_start[s + 1] - b->q_start[s], i0 = t0 - b->q_start[s];
    if (i0 % Q_TILE) return;
    int nt = q_len - i0 < Q_TILE ? q_len - i0 : Q_TILE;
    int visible0 = b->kv_len[s] - q_len + i0 + 1; // causal, bottom-right: token t0 + i sees visible0 + i
    const int32_t *blocks = b->block_table + b->bt_start[s];

    // per thread: one chunk's scores, then the running max and sum of each (token, head)
    float *score = j->scratch + (size_t)thread * thread_scratch_floats(j->heads_per_task);
    float *run_max = score + CHUNK, *run_sum = run_max + Q_TILE * j->heads_per_task;
    const float *krow[CHUNK], *vrow[CHUNK];
    for (int i = 0; i < nt; i++)
        for (int h = 0; h < nh; h++) {
            run_max[i * nh + h] = -INFINITY;
            run_sum[i * nh + h] = 0;
            memset(j->out + ((size_t)(t0 + i) * j->n_head + h0 + h) * hd, 0, (size_t)hd * sizeof(float));
        }
    int last = visible0 + nt - 1; // positions the tile's last token sees
    for (int p0 = 0; p0 < last; p0 += CHUNK) {
        int n = last - p0 < CHUNK ? last - p0 : CHUNK;
        for (int i = 0; i < n; i++) {
            int p = p0 + i;
            size_t slot = (size_t)blocks[p / b->block_size] * b->block_size + p % b->block_size;
            krow[i] = j->k_cache + slot * kv_dim + (size_t)kvh * hd;
            vrow[i] = j->v_cache + slot * kv_dim + (size_t)kvh * hd;
        }
        for (int i = n; i < ((n + 7) & ~7); i++) krow[i] = krow[n - 1]; // a short last eight: its spare lanes unused
        for (int i = 0; i < nt; i++) {
            int ni = visible0 + i - p0 < n ? visible0 + i - p0 : n; // this token's part of the chunk
            if (ni <= 0) continue;
            for (int h = 0; h < nh; h++) {
                const float *q = j->q + ((size_t)(t0 + i) * j->n_head + h0 + h) * hd;
                float *o = j->out + ((size_t)(t0 + i) * j->n_head + h0 + h) * hd;
                chunk_update(j, q, krow, vrow, ni, score, &run_max[i * nh + h], &run_sum[i * nh + h], o);
            }
        }
    }
    for (int i = 0; i < nt; i++)
        for (int h = 0; h < nh; h++) {
            float *o = j->out + ((size_t)(t0 + i) * j->n_head + h0 + h) * hd, inv = 1.0f / run_sum[i * nh + h];
            for (int d = 0; d < hd; d++) o[d] *= inv;
        }
}

size_t cs_cpu_attention_scratch(int n_head, int n_threads) {
    return (size_t)n_threads * thread_scratch_floats(n_head) * sizeof(float);
}

void cs_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                      const cs_attn_batch *b, int n_head, int n_kv, int head_dim, float scale,
                      float *scratch, cs_pool *pool) {
    int n_tok = b->q_start[b->n_seqs];
    if (n_tok == 0) return;
    // A task takes a whole KV group unless that leaves fewer than four tasks per thread (one
    // sequence decoding); splitting a group changes which loads are shared, not the arithmetic.
    int group = n_head / n_kv, want = 4 * cs_pool_threads(pool), split = 1;
    while (split < group && n_tok * n_kv * split < want) split++;
    int per_task = (group + split - 1) / split;
    attn_job j = {out, q, k_cache, v_cache, b, n_head, n_kv, head_dim, scale, scratch, per_task,
                  (group + per_task - 1) / per_task};
    cs_pool_run(pool, attn_task, &j, n_tok * n_kv * j.tasks_per_group);
}
