// End-to-end decode steps on the GPU with dummy weights at a real model's shapes (default
// llama3-8b; bf16, or int4 / int8 projections with --quant): each step is the whole forward
// pass for B sequences at context T (KV pool pre-filled), lm_head and argmax on the GPU, the
// batch description uploaded and the ids copied back: what the engine pays per decode step,
// through the engine's ranks (engine/tp_gpu.h): one GPU, or --tp N GPUs with NCCL all-reduces
// (--nccl: one GPU through NCCL too, to see what the path costs). Reports tokens/s and the
// share of the roofline: (rank 0's weight bytes + KV bytes read per step) / the copy rate.
//
//     bench_decode [--preset llama3-8b] [--shapes 1:512,1:4096,64:1024,256:512] [--eager]
//                  [--quant int4|int8] [--group 32|64|128] [--tp N] [--nccl] [--cublas]
// (--cublas: bf16 projections through cuBLAS at every batch size, without the small-M GEMV)
#include <stdio.h>

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("bench_decode: built without CUDA, nothing to measure");
    return 0;
}
#else
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_cuda_util.h"
#include "common/assert.h"
#include "common/clock.h"
#include "engine/tp_gpu.h"
#include "kernels/cuda/cuda_kernels.h"

#define BS 16
#define STEPS 30

static char weights_label[32] = "bf16"; // the projections' format, in every row

typedef struct bench_opts {
    const cs_model_config *c;
    int bits, group, tp;
    bool eager, nccl, cublas;
    double copy_rate;
} bench_opts;

static void one_shape(const bench_opts *o, int B, int T, bool *said) {
    int per_seq = (T + 1 + BS - 1) / BS;
    cs_tp_gpu_params p = {.n_ranks = o->tp, .nccl = o->nccl,
                          .fwd = {.max_tokens = B, .max_seqs = B, .max_ctx = T + 1, .block_size = BS,
                                  .n_blocks = B * per_seq, .enforce_eager = o->eager, .cublas_only = o->cublas},
                          .dummy = o->c, .dummy_seed = 1, .dummy_max_pos = T + 1, .quant_bits = o->bits,
                          .quant_group = o->group};
    char err[256];
    cs_tp_gpu *t = NULL;
    if (cs_tp_gpu_init(&p, &t, err, sizeof err) != CS_OK) {
        printf("| B=%d T=%d | %s |\n", B, T, err);
        return;
    }
    const cs_model_config *r0 = cs_tp_gpu_config(t, 0);
    if (!*said) {
        printf("dummy %s projections; weights on GPU 0 %.2f GB, read per step %.2f GB\n\n", weights_label,
               (double)cs_tp_gpu_weight_bytes(t, 0) / 1e9, (double)cs_tp_gpu_step_bytes(t, 0) / 1e9);
        printf("| engine | shape | ms/step | tok/s | roofline tok/s | %% of roofline | graphs |\n"
               "|---|---|---|---|---|---|---|\n");
        *said = true;
    }
    cs_tp_gpu_fill_kv(t, 7);
    int32_t *tok = malloc(4 * (size_t)B), *pos = malloc(4 * (size_t)B), *slots = malloc(4 * (size_t)B);
    int32_t *rows = malloc(4 * (size_t)B), *qs = malloc(4 * (size_t)(B + 1)), *kvl = malloc(4 * (size_t)B);
    int32_t *bts = malloc(4 * (size_t)(B + 1)), *table = malloc(4 * (size_t)B * per_seq), *ids = malloc(4 * (size_t)B);
    // blocks handed out in a scrambled order, as a long-running server's pool would be
    for (int i = 0; i < B * per_seq; i++) table[i] = (int32_t)(((int64_t)i * 7919) % (B * per_seq));
    bool coprime = (B * per_seq) % 7919 != 0;
    if (!coprime)
        for (int i = 0; i < B * per_seq; i++) table[i] = i;
    qs[0] = bts[0] = 0;
    for (int s = 0; s < B; s++) {
        tok[s] = (int32_t)((s * 2654435761u) % (unsigned)o->c->vocab_size);
        pos[s] = T;
        slots[s] = table[s * per_seq + T / BS] * BS + T % BS;
        rows[s] = s;
        qs[s + 1] = s + 1;
        kvl[s] = T + 1;
        bts[s + 1] = (s + 1) * per_seq;
    }
    cs_batch b = {.n_tokens = B, .tokens = tok, .positions = pos, .slots = slots,
                  .attn = {.n_seqs = B, .q_start = qs, .kv_len = kvl, .bt_start = bts, .block_table = table,
                           .block_size = BS},
                  .n_logits = B, .logit_rows = rows};
    for (int i = 0; i < 3; i++) cs_tp_gpu_run_greedy(t, &b, ids); // eager, capture, replay
    double t0 = cs_now_s();
    for (int i = 0; i < STEPS; i++) cs_tp_gpu_run_greedy(t, &b, ids);
    double step = (cs_now_s() - t0) / STEPS;
    size_t kv_dim = (size_t)r0->n_head_kv * r0->head_dim;
    double wbytes = (double)cs_tp_gpu_step_bytes(t, 0); // rank 0's projections as stored, and lm_head
    double kvbytes = 2.0 * 2.0 * r0->n_layer * (double)B * kv_dim * (T + 1);
    double roof = (wbytes + kvbytes) / o->copy_rate;
    char label[80];
    snprintf(label, sizeof label, "%s%s%s%s", weights_label, o->eager ? " eager" : "", o->cublas ? " cuBLAS only" : "",
             o->tp > 1 ? "" : o->nccl ? " TP=1 via NCCL" : "");
    if (o->tp > 1) snprintf(label + strlen(label), sizeof label - strlen(label), " TP=%d", o->tp);
    printf("| cserve %s | B=%d T=%d | %.3f | %.0f | %.0f | %.1f%% | %d |\n", label, B, T, step * 1e3, B / step,
           B / roof, 100.0 * roof / step, cs_tp_gpu_graphs(t));
    cs_tp_gpu_free(t);
    free(tok), free(pos), free(slots), free(rows), free(qs), free(kvl), free(bts), free(table), free(ids);
}

int main(int argc, char **argv) {
    const char *preset = "llama3-8b", *shapes = "1:512,1:4096,64:1024,256:512";
    bool eager = false, nccl = false, cublas = false;
    int bits = 0, group = 128, tp = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) shapes = argv[++i];
        else if (!strcmp(argv[i], "--eager")) eager = true;
        else if (!strcmp(argv[i], "--quant") && i + 1 < argc && (!strcmp(argv[i + 1], "int4") || !strcmp(argv[i + 1], "int8")))
            bits = argv[++i][3] - '0';
        else if (!strcmp(argv[i], "--group") && i + 1 < argc) group = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tp") && i + 1 < argc) tp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--nccl")) nccl = true;
        else if (!strcmp(argv[i], "--cublas")) cublas = true;
        else {
            fprintf(stderr, "usage: bench_decode [--preset NAME] [--shapes B:T,...] [--eager] [--quant int4|int8] "
                            "[--group 32|64|128] [--tp N] [--nccl] [--cublas]\n");
            return 2;
        }
    }
    if (cs_cuda_device_count() == 0) {
        puts("bench_decode: no CUDA device");
        return 0;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double copy_rate = bench_copy_rate();
    cs_model_config c;
    char err[256];
    if (cs_model_preset(preset, &c, err, sizeof err) != CS_OK) {
        fprintf(stderr, "bench_decode: %s\n", err);
        return 2;
    }
    if (tp < 1) {
        fprintf(stderr, "bench_decode: --tp %d: use 1 or more\n", tp);
        return 2;
    }
    if (tp > cs_cuda_device_count()) { // like no device: nothing to measure here
        printf("bench_decode: --tp %d: this machine has %d GPUs, nothing to measure\n", tp, cs_cuda_device_count());
        return 0;
    }
    if (bits) snprintf(weights_label, sizeof weights_label, "int%d g%d", bits, group);
    printf("device: %s x%d; copy %.2f TB/s; %s; ", prop.name, tp, copy_rate / 1e12, preset);
    bench_opts o = {.c = &c, .bits = bits, .group = group, .tp = tp, .eager = eager, .nccl = nccl || tp > 1,
                    .cublas = cublas, .copy_rate = copy_rate};
    bool said = false;
    char *list = strdup(shapes);
    for (char *tokp = strtok(list, ","); tokp; tokp = strtok(NULL, ",")) {
        int B = 0, T = 0;
        if (sscanf(tokp, "%d:%d", &B, &T) != 2 || B < 1 || T < 1 || T + 1 > 8192) {
            fprintf(stderr, "bench_decode: bad shape '%s'\n", tokp);
            return 2;
        }
        one_shape(&o, B, T, &said);
    }
    free(list);
    return 0;
}
#endif
