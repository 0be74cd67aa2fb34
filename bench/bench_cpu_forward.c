// CPU forward pass of a model, one stream: prompt (prefill) and generation (decode) tokens/s,
// next to the bandwidth bound of decoding (every weight byte read once per token, over the
// machine's measured memory read rate). Verifies its own output first: the greedy
// continuation must be the same whether the prompt is run in one step or token by token.
//
//     bench_cpu_forward [MODEL] [PROMPT_TOKENS] [GEN_TOKENS] [THREADS]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/thread_pool.h"
#include "engine/runner.h"

typedef struct sum_job {
    const float *data;
    size_t n_per_task;
    double partial[256];
} sum_job;

static void sum_task(void *ctx, int i, int thread) {
    sum_job *j = ctx;
    const float *p = j->data + (size_t)i * j->n_per_task;
    float acc[16] = {0};
    for (size_t k = 0; k < j->n_per_task; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += p[k + l];
    double s = 0;
    for (int l = 0; l < 16; l++) s += acc[l];
    j->partial[i] = s;
}

// Read bandwidth of main memory: all threads summing a 1 GiB array (best of 5).
static double read_bandwidth(cs_pool *pool) {
    size_t n = (size_t)1 << 28, tasks = 64;
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023);
    sum_job j = {a, n / tasks, {0}};
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = cs_now_s();
        cs_pool_run(pool, sum_task, &j, (int)tasks);
        double t = cs_now_s() - t0;
        if (t < best) best = t;
    }
    free(a);
    return (double)n * sizeof(float) / best;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    int n_prompt = argc > 2 ? atoi(argv[2]) : 256, n_gen = argc > 3 ? atoi(argv[3]) : 128;
    int threads = argc > 4 ? atoi(argv[4]) : 0;
    char err[CS_ERR_LEN];
    cs_runner r;
    int n_ids = n_prompt > 16 ? n_prompt : 16; // the check below runs 16 tokens
    int max_len = (n_prompt + n_gen > n_ids ? n_prompt + n_gen : n_ids) + 1;
    if (cs_runner_init(&r, model, max_len, threads, 256, CS_DTYPE_COUNT, err, sizeof err) != CS_OK) {
        fprintf(stderr, "bench_cpu_forward: %s: %s\n", model, err);
        return 1;
    }
    int vocab = r.model.cfg.vocab_size;
    int32_t *prompt = malloc(sizeof(int32_t) * n_ids);
    for (int i = 0; i < n_ids; i++) prompt[i] = 100 + (i * 7919) % (vocab - 200);
    float *logits = malloc(sizeof(float) * vocab), *check = malloc(sizeof(float) * vocab);
    // verify: the prompt in one step and token by token give bit-identical logits (the CPU
    // kernels compute a token's row the same way whatever the batch)
    cs_runner_seq a = {0}, b = {0};
    cs_runner_extend(&r, &a, prompt, 16, CS_LOGITS_LAST, logits, err, sizeof err);
    for (int i = 0; i < 16; i++) cs_runner_extend(&r, &b, prompt + i, 1, CS_LOGITS_LAST, check, err, sizeof err);
    if (memcmp(logits, check, sizeof(float) * vocab) != 0) {
        fprintf(stderr, "bench_cpu_forward: batched and stepwise prefill disagree\n");
        return 1;
    }
    cs_runner_seq_free(&r, &a);
    cs_runner_seq_free(&r, &b);
    cs_runner_seq s = {0};
    double t0 = cs_now_s();
    cs_runner_extend(&r, &s, prompt, n_prompt, CS_LOGITS_LAST, logits, err, sizeof err);
    double t1 = cs_now_s();
    for (int i = 0; i < n_gen; i++) {
        int32_t next = argmax(logits, vocab);
        cs_runner_extend(&r, &s, &next, 1, CS_LOGITS_LAST, logits, err, sizeof err);
    }
    double t2 = cs_now_s();
    double bw = read_bandwidth(r.pool);
    size_t wbytes = cs_model_file_weight_bytes(r.file);
    double bound = bw / (double)wbytes;
    printf("model %s, %d threads, weights %.1f MiB, memory read %.1f GB/s\n", model,
           cs_pool_threads(r.pool), wbytes / 1048576.0, bw / 1e9);
    printf("| phase | tokens | tok/s | bandwidth bound tok/s | %% of bound |\n|---|---|---|---|---|\n");
    printf("| prompt (prefill, batch 256) | %d | %.1f | - | - |\n", n_prompt, n_prompt / (t1 - t0));
    printf("| generation (decode) | %d | %.1f | %.1f | %.0f%% |\n", n_gen, n_gen / (t2 - t1), bound,
           100.0 * (n_gen / (t2 - t1)) / bound);
    cs_runner_seq_free(&r, &s);
    free(prompt);
    free(logits);
    free(check);
    cs_runner_free(&r);
    return 0;
}
