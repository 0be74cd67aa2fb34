// Tensor parallelism's GPU path:
// - every rank's dummy shard made on the device (cs_gpu_model_dummy_shard) is, byte for byte,
//   the host model's shard (engine/tp_shard.h) uploaded: for 2, 3 and 4 ranks of SmolLM2's 9
//   heads in 3 KV groups, and 2 and 8 ranks of a Qwen2 shape with biases and 4 KV groups;
// - the engine's ranks (engine/tp_gpu.h) with one rank whose all-reduces go through NCCL (a
//   communicator of one, engine/tp_nccl.h) against the plain path, on dummy smollm2-135m
//   weights: a prefill of two sequences, decode steps (eager, captured, replayed graphs) and a
//   sampled step must give the same logits bits (a sum over one rank is the value itself),
//   greedy ids and sampled ids;
// - int4 shards quantised on each device unpack to the whole int4 model's slice exactly;
// - with two GPUs or more, TP=2 (and 4) against TP=1: the same greedy ids, logits close.
// Exits 77 (skipped) without CUDA, a device or NCCL.
#include <stdio.h>

#include "test_util.h"

#if !defined(CSERVE_HAVE_CUDA) || !defined(CSERVE_HAVE_NCCL)
int main(void) {
    puts("built without CUDA or NCCL: skipped");
    return 77;
}
#else
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "engine/gpu_forward.h"
#include "engine/gpu_model.h"
#include "engine/tp_gpu.h"
#include "engine/tp_nccl.h"
#include "engine/tp_shard.h"
#include "kernels/cuda/cuda_kernels.h"

#define BS 16
#define CTX 64

#include <cuda_runtime.h>

// Rank r of n: the device-made shard against the host shard uploaded, byte for byte.
static void check_shards(const char *name, const cs_model_config *c, const cs_model *host, int n) {
    char err[256];
    for (int r = 0; r < n; r++) {
        cs_gpu_model dev = {0}, up = {0};
        cs_model shard = {0};
        bool ok = cs_gpu_model_dummy_shard(&dev, c, 5, CTX, 0, 32, n, r, r == 0, err, sizeof err) == CS_OK;
        TEST_CONDF(ok, "%s", err);
        ok = ok && cs_tp_shard(host, n, r, CS_TP_GPU_FFN_UNIT, &shard, err, sizeof err) == CS_OK;
        ok = ok && cs_gpu_model_upload_rank(&up, &shard, r == 0, err, sizeof err) == CS_OK;
        TEST_CONDF(ok, "%s rank %d of %d: %s", name, r, n, err);
        if (!ok) {
            cs_gpu_model_free(&dev);
            cs_gpu_model_free(&up);
            cs_model_free(&shard);
            continue;
        }
        TEST_CONDF(c->tied_embeddings || (r == 0) == (dev.output != NULL), "%s rank %d of %d: lm_head on rank 0 only",
                   name, r, n);
        TEST_CONDF(dev.weight_bytes == up.weight_bytes, "%s rank %d of %d: %zu and %zu bytes", name, r, n,
                   dev.weight_bytes, up.weight_bytes);
        if (dev.weight_bytes == up.weight_bytes) {
            char *a = malloc(dev.weight_bytes), *b = malloc(up.weight_bytes);
            CS_ASSERT(a && b);
            CS_ASSERT(cudaMemcpy(a, dev.arena, dev.weight_bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
            CS_ASSERT(cudaMemcpy(b, up.arena, up.weight_bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
            size_t at = 0;
            while (at < dev.weight_bytes && a[at] == b[at]) at++;
            TEST_CONDF(at == dev.weight_bytes, "%s rank %d of %d: the device shard differs at byte %zu of %zu", name,
                       r, n, at, dev.weight_bytes);
            free(a), free(b);
        }
        cs_gpu_model_free(&dev);
        cs_gpu_model_free(&up);
        cs_model_free(&shard);
    }
}

static void shards(void) {
    char err[256];
    cs_model_config c[2];
    CS_ASSERT(cs_model_preset("smollm2-135m:3", &c[0], err, sizeof err) == CS_OK);
    CS_ASSERT(cs_model_preset("qwen2-7b:2", &c[1], err, sizeof err) == CS_OK);
    c[1].vocab_size = 4096; // a small vocabulary: the host model is made on the CPU
    static const int ns[2][3] = {{2, 3, 4}, {2, 8, 0}};
    for (int i = 0; i < 2; i++) {
        cs_model host;
        TEST_CONDF(cs_model_init_dummy(&host, &c[i], 5, CTX, err, sizeof err) == CS_OK, "%s", err);
        for (int k = 0; k < 3 && ns[i][k]; k++) check_shards(i ? "qwen2" : "smollm2", &c[i], &host, ns[i][k]);
        cs_model_free(&host);
    }
}

// A packed matrix unpacked to host bf16 (n, k).
static uint16_t *unpack(const cs_gpu_mat *m) {
    size_t bytes = (size_t)(m->n * m->k) * 2;
    uint16_t *d = NULL, *h = malloc(bytes);
    CS_ASSERT(h && cudaMalloc((void **)&d, bytes) == cudaSuccess);
    cs_cuda_qunpack_bf16(d, &m->q, NULL);
    CS_ASSERT(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    cudaFree(d);
    return h;
}

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of full (., k) against part (rows, cols).
static bool same_block(const uint16_t *full, int64_t k, int64_t r0, int64_t c0, const uint16_t *part, int64_t rows,
                       int64_t cols) {
    for (int64_t i = 0; i < rows; i++)
        if (memcmp(full + (r0 + i) * k + c0, part + i * cols, (size_t)cols * 2)) return false;
    return true;
}

// int4 dummy shards quantised on each rank's device hold the whole model's codes and scales:
// its groups are cut on whole groups (o by heads, down by groups of features), so each rank's
// weights, unpacked, are the whole model's slice exactly; and a head_dim that is not whole
// groups is refused.
static void quant_shards(void) {
    char err[256];
    cs_model_config c;
    CS_ASSERT(cs_model_preset("smollm2-135m:2", &c, err, sizeof err) == CS_OK);
    cs_gpu_model full = {0};
    TEST_CONDF(cs_gpu_model_dummy(&full, &c, 5, CTX, 4, 64, err, sizeof err) == CS_OK, "%s", err);
    int64_t hd = c.head_dim, fq = (int64_t)c.n_head * hd, fkv = (int64_t)c.n_head_kv * hd, ff = c.ffn_dim;
    const cs_gpu_layer *F = &full.layers[1];
    uint16_t *fqkv = unpack(&F->wqkv), *fo = unpack(&F->wo), *fgu = unpack(&F->w_gate_up), *fd = unpack(&F->w_down);
    int good = 0;
    for (int r = 0; r < 3; r++) {
        cs_gpu_model g = {0};
        cs_tp_part p;
        CS_ASSERT(cs_tp_part_of(&c, CS_TP_GPU_FFN_UNIT, 3, r, &p, err, sizeof err));
        if (cs_gpu_model_dummy_shard(&g, &c, 5, CTX, 4, 64, 3, r, r == 0, err, sizeof err) != CS_OK) {
            TEST_CONDF(0, "int4 shard %d of 3: %s", r, err);
            continue;
        }
        const cs_gpu_layer *G = &g.layers[1];
        int64_t q = (int64_t)p.n_head * hd, kv = (int64_t)p.n_kv * hd, dim = c.dim;
        uint16_t *qkv = unpack(&G->wqkv), *o = unpack(&G->wo), *gu = unpack(&G->w_gate_up), *d = unpack(&G->w_down);
        bool ok = same_block(fqkv, dim, p.head0 * hd, 0, qkv, q, dim) &&
                  same_block(fqkv, dim, fq + p.kv0 * hd, 0, qkv + q * dim, kv, dim) &&
                  same_block(fqkv, dim, fq + fkv + p.kv0 * hd, 0, qkv + (q + kv) * dim, kv, dim) &&
                  same_block(fo, fq, 0, p.head0 * hd, o, dim, q) &&
                  same_block(fgu, dim, p.ffn0, 0, gu, p.n_ffn, dim) &&
                  same_block(fgu, dim, ff + p.ffn0, 0, gu + (int64_t)p.n_ffn * dim, p.n_ffn, dim) &&
                  same_block(fd, ff, 0, p.ffn0, d, dim, p.n_ffn);
        TEST_CONDF(ok, "int4 shard %d of 3: its unpacked weights are not the whole model's slice", r);
        good += ok;
        free(qkv), free(o), free(gu), free(d);
        cs_gpu_model_free(&g);
    }
    printf("int4 g64 dummy shards, 3 ranks: %d of 3 the whole model's weights exactly\n", good);
    cs_gpu_model g = {0};
    TEST_CONDF(cs_gpu_model_dummy_shard(&g, &c, 5, CTX, 4, 128, 3, 1, false, err, sizeof err) == CS_ERR_INVALID &&
                   strstr(err, "not whole quantisation groups of 128"),
               "head_dim 64 in groups of 128 over 3 ranks: '%s'", err);
    cs_gpu_model_free(&g);
    free(fqkv), free(fo), free(fgu), free(fd);
    cs_gpu_model_free(&full);
}

// The argmax of each of the two logits rows.
static void argmax2(const float *logits, int V, int32_t *ids) {
    for (int s = 0; s < 2; s++) {
        const float *l = logits + (size_t)s * V;
        int am = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[am]) am = i;
        ids[s] = am;
    }
}

// The two sequences' blocks: the first has blocks 0 and 1 (up to 32 positions), the second
// block 2 (16).
static const int32_t TABLE[3] = {0, 1, 2}, BT_START[3] = {0, 2, 3};

static int32_t slot_of(int seq, int pos) { return TABLE[BT_START[seq] + pos / BS] * BS + pos % BS; }

// Two sequences of 12 and 7 prompt tokens, then `steps` greedy decode steps: ids (steps, 2).
// The prefill's logits go to logits0 (2, vocab) and the last step's to logits1.
static void greedy_run(cs_tp_gpu *t, int V, int steps, int32_t *ids, float *logits0, float *logits1) {
    int32_t tok[19], pos[19], slots[19], rows[2] = {11, 18}, qs[3] = {0, 12, 19}, kvl[2] = {12, 7};
    const int32_t *bts = BT_START, *table = TABLE;
    for (int i = 0; i < 19; i++) {
        int s = i >= 12, at = s ? i - 12 : i;
        tok[i] = (int32_t)((i * 7919 + 13) % V);
        pos[i] = at;
        slots[i] = slot_of(s, at);
    }
    cs_batch pre = {.n_tokens = 19, .tokens = tok, .positions = pos, .slots = slots,
                    .attn = {.n_seqs = 2, .q_start = qs, .kv_len = kvl, .bt_start = bts, .block_table = table, .block_size = BS},
                    .n_logits = 2, .logit_rows = rows};
    cs_tp_gpu_run(t, &pre, logits0);
    int32_t dt[2];
    argmax2(logits0, V, dt);
    for (int step = 0; step < steps; step++) {
        int32_t dp[2] = {12 + step, 7 + step}, ds[2], dr[2] = {0, 1}, dq[3] = {0, 1, 2}, dk[2] = {13 + step, 8 + step};
        for (int s = 0; s < 2; s++) ds[s] = slot_of(s, dp[s]);
        cs_batch dec = {.n_tokens = 2, .tokens = dt, .positions = dp, .slots = ds,
                        .attn = {.n_seqs = 2, .q_start = dq, .kv_len = dk, .bt_start = bts, .block_table = table, .block_size = BS},
                        .n_logits = 2, .logit_rows = dr};
        if (step < steps - 1) {
            cs_tp_gpu_run_greedy(t, &dec, dt);
        } else { // the last step's logits, for the comparison
            cs_tp_gpu_run(t, &dec, logits1);
            argmax2(logits1, V, dt);
        }
        ids[2 * step] = dt[0], ids[2 * step + 1] = dt[1];
    }
}

// One sampled step (temperature 0.8, top-p 0.9, seeded) after greedy_run's prefill.
static void sampled_step(cs_tp_gpu *t, int32_t *ids) {
    int32_t dt[2] = {17, 4242}, dp[2] = {12, 7}, ds[2] = {slot_of(0, 12), slot_of(1, 7)}, dr[2] = {0, 1};
    int32_t dq[3] = {0, 1, 2}, dk[2] = {13, 8};
    const int32_t *bts = BT_START, *table = TABLE;
    cs_batch dec = {.n_tokens = 2, .tokens = dt, .positions = dp, .slots = ds,
                    .attn = {.n_seqs = 2, .q_start = dq, .kv_len = dk, .bt_start = bts, .block_table = table, .block_size = BS},
                    .n_logits = 2, .logit_rows = dr};
    cs_cuda_sample_params sp[2];
    for (int s = 0; s < 2; s++)
        sp[s] = (cs_cuda_sample_params){.temperature = 0.8f, .top_p = 0.9f, .repetition_penalty = 1.0f,
                                        .n_logprobs = 2, .seed = 77 + (uint64_t)s};
    cs_gpu_sampled out;
    cs_tp_gpu_run_sample(t, &dec, sp, NULL, NULL, NULL, 0, NULL, &out);
    ids[0] = out.ids[0], ids[1] = out.ids[1];
}

static cs_tp_gpu *ranks(const cs_model_config *c, int n, bool nccl) {
    char err[256];
    cs_tp_gpu_params p = {.n_ranks = n, .nccl = nccl,
                          .fwd = {.max_tokens = 64, .max_seqs = 2, .max_ctx = CTX, .block_size = BS, .n_blocks = 8},
                          .dummy = c, .dummy_seed = 9, .dummy_max_pos = CTX};
    cs_tp_gpu *t = NULL;
    TEST_CONDF(cs_tp_gpu_init(&p, &t, err, sizeof err) == CS_OK, "TP=%d%s: %s", n, nccl ? " (NCCL)" : "", err);
    return t;
}

#define STEPS 6

// The engine's ranks: TP=1 through NCCL against the plain path, then TP=2 and 4 when there
// are the GPUs.
static void engine_ranks(const cs_model_config *c) {
    int V = c->vocab_size, gpus = cs_cuda_device_count();
    float *l0 = malloc(sizeof(float) * 2 * (size_t)V), *l1 = malloc(sizeof(float) * 2 * (size_t)V);
    float *m0 = malloc(sizeof(float) * 2 * (size_t)V), *m1 = malloc(sizeof(float) * 2 * (size_t)V);
    int32_t ref[2 * STEPS], got[2 * STEPS], s_ref[2], s_got[2];
    cs_tp_gpu *plain = ranks(c, 1, false);
    if (!plain) return;
    greedy_run(plain, V, STEPS, ref, l0, l1);
    sampled_step(plain, s_ref);
    cs_tp_gpu *one = ranks(c, 1, true);
    if (one) {
        greedy_run(one, V, STEPS, got, m0, m1);
        sampled_step(one, s_got);
        TEST_CONDF(!memcmp(l0, m0, sizeof(float) * 2 * (size_t)V) && !memcmp(l1, m1, sizeof(float) * 2 * (size_t)V),
                   "TP=1 through NCCL: logits differ from the plain path");
        TEST_CONDF(!memcmp(ref, got, sizeof ref), "TP=1 through NCCL: greedy ids differ");
        TEST_CONDF(s_ref[0] == s_got[0] && s_ref[1] == s_got[1], "TP=1 through NCCL: sampled ids differ");
        printf("engine ranks, TP=1 through NCCL: the same logits, greedy and sampled ids as the plain path\n");
        cs_tp_gpu_free(one);
    }
    for (int n = 2; n <= 4 && n <= gpus; n *= 2) {
        cs_tp_gpu *t = ranks(c, n, true);
        if (!t) continue;
        greedy_run(t, V, STEPS, got, m0, m1);
        double worst = 0;
        for (size_t i = 0; i < 2 * (size_t)V; i++) {
            double d = fabs((double)m1[i] - l1[i]);
            if (d > worst) worst = d;
        }
        TEST_CONDF(!memcmp(ref, got, sizeof ref), "TP=%d: greedy ids differ from TP=1", n);
        TEST_CONDF(worst < 0.1, "TP=%d: logits differ from TP=1 by %.4f", n, worst);
        printf("TP=%d over %d GPUs: the same %d greedy ids as TP=1, logits within %.4f\n", n, n, 2 * STEPS, worst);
        cs_tp_gpu_free(t);
    }
    if (gpus < 2) printf("one GPU: TP=2 and 4 against TP=1 not run\n");
    cs_tp_gpu_free(plain);
    free(l0), free(l1), free(m0), free(m1);
}

int main(void) {
    if (cs_cuda_device_count() < 1) {
        puts("no CUDA device: skipped");
        return 77;
    }
    char err[256];
    cs_model_config c;
    CS_ASSERT(cs_model_preset("smollm2-135m", &c, err, sizeof err) == CS_OK);
    shards();
    quant_shards();
    engine_ranks(&c);
    return TEST_REPORT();
}
#endif
