// The Llama-family decoder on the CUDA backend, one ragged batch at a time:
//   embed -> [rmsnorm (+ residual add) -> fused qkv GEMM -> bias + RoPE + KV append ->
//   paged attention (decode or prefill kernel) -> o GEMM -> rmsnorm (+ residual add) ->
//   fused gate/up GEMM -> SwiGLU -> down GEMM] x L -> residual add + final norm of the logit
//   rows only -> lm_head (fp32 logits) [-> argmax].
// The residual stream stays fp32; every sub-layer output is bf16 and is added into it by the
// next norm, so one kernel reads it once.
#include "gpu_forward.h"

#include <stdlib.h>
#include <string.h>

#ifndef CSERVE_HAVE_CUDA
cs_gpu_forward *cs_gpu_forward_init(const cs_gpu_model *g, const cs_gpu_forward_params *p, char *err,
                                    size_t errlen) {
    cs_errf(err, errlen, CS_ERR_INVALID, "cserve was built without CUDA");
    return NULL;
}
void cs_gpu_forward_free(cs_gpu_forward *f) { (void)f; }
int cs_gpu_forward_n_blocks(const cs_gpu_forward *f) { return 0; }
void cs_gpu_forward_set_allreduce(cs_gpu_forward *f, void (*fn)(void *ctx, uint16_t *x, size_t n, void *stream),
                                  void *ctx) {}
size_t cs_gpu_forward_kv_bytes(const cs_gpu_forward *f) { return 0; }
int cs_gpu_forward_graphs(const cs_gpu_forward *f) { return 0; }
void cs_gpu_forward_run(cs_gpu_forward *f, const cs_batch *b, float *logits) { abort(); }
void cs_gpu_forward_copy_rows(cs_gpu_forward *f, int dst, int src, int n) { abort(); }
void cs_gpu_forward_fill_kv(cs_gpu_forward *f, uint64_t seed) { abort(); }
void cs_gpu_forward_run_greedy(cs_gpu_forward *f, const cs_batch *b, int32_t *ids) { abort(); }
void cs_gpu_forward_run_layers(cs_gpu_forward *f, const cs_batch *b) { abort(); }
void cs_gpu_forward_run_sample(cs_gpu_forward *f, const cs_batch *b, const cs_cuda_sample_params *params,
                               const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                               int n_pen, const cs_gpu_masks *masks, cs_gpu_sampled *out) { abort(); }
void cs_gpu_forward_launch_sample(cs_gpu_forward *f, const cs_batch *b, const cs_cuda_sample_params *params,
                                  const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                                  int n_pen, const cs_gpu_masks *masks) { abort(); }
void cs_gpu_forward_wait_sample(cs_gpu_forward *f, cs_gpu_sampled *out) { abort(); }
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

#include "../common/assert.h"
#include "../kernels/cuda/cuda_kernels.h"

#define CK(call)                                                                             \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s:%d: CUDA error %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define MAX_GRAPHS 64
enum { MODE_LOGITS, MODE_GREEDY, MODE_SAMPLE, MODE_LAYERS }; // what a step ends with
#define HEADROOM ((size_t)256 << 20) // for cuBLAS internals and captured graphs

typedef struct graph_entry {
    int n_seqs, kv_bound, mode, seen;
    cudaGraphExec_t exec; // NULL until captured
} graph_entry;

struct cs_gpu_forward {
    const cs_gpu_model *g;
    cs_gpu_forward_params p;
    cudaStream_t stream;
    cs_cuda_blas *blas;
    int q_dim, kv_dim, qkv_dim, max_blocks_per_seq;
    // activations (max_tokens rows each)
    float *x;          // (T, dim) residual stream
    uint16_t *xn;      // (T, dim) normed sub-layer input
    uint16_t *qkv;     // (T, qkv_dim)
    uint16_t *q;       // (T, q_dim) rotated queries
    uint16_t *att;     // (T, q_dim)
    uint16_t *o;       // (T, dim) sub-layer output, added to x by the next norm
    uint16_t *gu;      // (T, 2 ffn)
    uint16_t *h;       // (T, ffn)
    float *logits;     // (T, vocab)
    void *attn_ws, *sample_ws, *q_ws; // q_ws: the int4 / int8 matmul's (zeroed once)
    size_t attn_ws_bytes, sample_ws_bytes, q_ws_bytes;
    cs_cuda_sample_params *greedy; // (T) temperature 0, no logprobs
    cs_cuda_sample_params *params; // (S) uploaded per step by cs_gpu_forward_run_sample
    int32_t *pen_ids, *pen_counts; // (S * max_ctx) penalty entries, uploaded with params
    uint8_t *pen_in_prompt;
    size_t pen_cap;
    uint32_t *mask_bits;           // (S, (vocab + 31) / 32) grammar masks of a step
    int32_t *mask_row;             // (S) each logits row's mask, or -1
    // sampler outputs, contiguous so that one copy brings them back: ids (T), logprob (T),
    // top_ids (T, CS_CUDA_MAX_LOGPROBS), top_lp (T, CS_CUDA_MAX_LOGPROBS)
    int32_t *ids;
    float *lp, *top_lp;
    int32_t *top_ids;
    int ids_rows;                  // rows of ids the last sampling step wrote (placeholders' range)
    // Pinned staging, two of each: a step may be launched while the one before still runs (or
    // its results wait to be read), so each step takes the pair the step before did not.
    void *h_out[2];                // the sampler's outputs, copied back
    cs_cuda_sample_params *h_params[2];
    int32_t *h_batch[2];           // the batch description, in d_batch's layout
    cudaEvent_t done[2];           // a launched step's outputs are in h_out
    bool launched[2];              // ... and not yet waited for
    int next;                      // the pair the next step takes
    int order[2], n_launched;      // launched pairs, oldest first
    int32_t *d_batch;
    size_t off_pos, off_slots, off_rows, off_qstart, off_kvlen, off_btstart, off_table;
    // KV pool: layer l's K at k_pool + l * layer_elems, V likewise
    uint16_t *k_pool, *v_pool;
    size_t layer_elems;
    int n_blocks;
    void (*allreduce)(void *ctx, uint16_t *x, size_t n, void *stream); // tensor parallel
    void *allreduce_ctx;
    graph_entry graphs[MAX_GRAPHS];
    int n_graphs, n_captured;
    void *arena;
};

static size_t a256(size_t n) { return (n + 255) / 256 * 256; }
static size_t out_bytes(size_t rows) { return rows * (8 + 8 * CS_CUDA_MAX_LOGPROBS); }

int cs_gpu_forward_n_blocks(const cs_gpu_forward *f) { return f->n_blocks; }

void cs_gpu_forward_set_allreduce(cs_gpu_forward *f, void (*fn)(void *ctx, uint16_t *x, size_t n, void *stream),
                                  void *ctx) {
    f->allreduce = fn;
    f->allreduce_ctx = ctx;
}
int cs_gpu_forward_graphs(const cs_gpu_forward *f) { return f->n_captured; }
size_t cs_gpu_forward_kv_bytes(const cs_gpu_forward *f) {
    return 2 * f->layer_elems * 2 * (size_t)f->g->cfg.n_layer;
}

// Carves activations and workspaces from one allocation (base NULL: sizes it).
static size_t carve(cs_gpu_forward *f, char *base) {
    const cs_model_config *c = &f->g->cfg;
    size_t T = (size_t)f->p.max_tokens, S = (size_t)f->p.max_seqs, off = 0;
#define TAKE(ptr, bytes)                                 \
    do {                                                 \
        if (base) *(void **)&(ptr) = base + off;         \
        off += a256(bytes);                              \
    } while (0)
    TAKE(f->x, T * c->dim * 4);
    TAKE(f->xn, T * c->dim * 2);
    TAKE(f->qkv, T * f->qkv_dim * 2);
    TAKE(f->q, T * f->q_dim * 2);
    TAKE(f->att, T * f->q_dim * 2);
    TAKE(f->o, T * c->dim * 2);
    TAKE(f->gu, T * 2 * c->ffn_dim * 2);
    TAKE(f->h, T * c->ffn_dim * 2);
    TAKE(f->logits, f->p.layers_only ? 0 : T * c->vocab_size * 4);
    TAKE(f->attn_ws, f->attn_ws_bytes);
    TAKE(f->sample_ws, f->sample_ws_bytes);
    TAKE(f->q_ws, f->q_ws_bytes);
    TAKE(f->greedy, T * sizeof(cs_cuda_sample_params));
    TAKE(f->params, S * sizeof(cs_cuda_sample_params));
    TAKE(f->pen_ids, f->pen_cap * 4);
    TAKE(f->pen_counts, f->pen_cap * 4);
    TAKE(f->pen_in_prompt, f->pen_cap);
    TAKE(f->mask_bits, S * (size_t)((c->vocab_size + 31) / 32) * 4);
    TAKE(f->mask_row, S * 4);
    if (base) { // the four outputs back to back, at the offsets of the host copy (h_out)
        f->ids = (int32_t *)(base + off);
        f->lp = (float *)(f->ids + T);
        f->top_ids = (int32_t *)(f->lp + T);
        f->top_lp = (float *)(f->top_ids + T * CS_CUDA_MAX_LOGPROBS);
    }
    off += a256(out_bytes(T));
    TAKE(f->d_batch, 4 * (4 * T + 3 * S + 2 + S * (size_t)f->max_blocks_per_seq));
#undef TAKE
    return off;
}

void cs_gpu_forward_free(cs_gpu_forward *f) {
    if (!f) return;
    for (int i = 0; i < f->n_graphs; i++)
        if (f->graphs[i].exec) cudaGraphExecDestroy(f->graphs[i].exec);
    cs_cuda_blas_free(f->blas);
    if (f->arena) cudaFree(f->arena);
    if (f->k_pool) cudaFree(f->k_pool);
    if (f->v_pool) cudaFree(f->v_pool);
    for (int i = 0; i < 2; i++) {
        if (f->h_batch[i]) cudaFreeHost(f->h_batch[i]);
        if (f->h_out[i]) cudaFreeHost(f->h_out[i]);
        if (f->h_params[i]) cudaFreeHost(f->h_params[i]);
        if (f->done[i]) cudaEventDestroy(f->done[i]);
    }
    if (f->stream) cudaStreamDestroy(f->stream);
    free(f);
}

static cs_gpu_forward *fail(cs_gpu_forward *f, char *err, size_t errlen, cs_status st, const char *msg) {
    cudaGetLastError(); // clear a failed allocation
    cs_gpu_forward_free(f);
    cs_errf(err, errlen, st, "%s", msg);
    return NULL;
}

// Blocks the KV pool can take: what memory_utilization leaves after everything else.
static int size_pool(cs_gpu_forward *f, size_t block_bytes) {
    if (f->p.n_blocks > 0) return f->p.n_blocks;
    size_t free_b = 0, total = 0;
    CK(cudaMemGetInfo(&free_b, &total));
    double budget = f->p.memory_utilization * (double)total - (double)(total - free_b) - (double)HEADROOM;
    if (budget < (double)block_bytes) return 0;
    double n = budget / (double)block_bytes;
    return n > (double)(INT32_MAX / f->p.block_size) ? INT32_MAX / f->p.block_size : (int)n;
}

cs_gpu_forward *cs_gpu_forward_init(const cs_gpu_model *g, const cs_gpu_forward_params *p, char *err,
                                    size_t errlen) {
    const cs_model_config *c = &g->cfg;
    if (p->max_tokens < 1 || p->max_seqs < 1 || p->max_seqs > p->max_tokens || p->block_size < 1 ||
        p->max_ctx < 1 || p->max_ctx > g->rope_max_pos || p->n_blocks < 0 ||
        (p->n_blocks == 0 && !(p->memory_utilization > 0 && p->memory_utilization <= 1))) {
        cs_errf(err, errlen, CS_ERR_INVALID, "invalid GPU forward parameters");
        return NULL;
    }
    if (!p->layers_only && !g->output) {
        cs_errf(err, errlen, CS_ERR_INVALID, "a rank without lm_head runs layers only");
        return NULL;
    }
    if (c->dim % 8 || c->ffn_dim % 8) { // 16-byte rows: the GEMV, SwiGLU and embedding kernels
        cs_errf(err, errlen, CS_ERR_INVALID, "the CUDA kernels take widths in multiples of 8 (dim %d, ffn %d)", c->dim,
                c->ffn_dim);
        return NULL;
    }
    if (c->head_dim != 64 && c->head_dim != 128) {
        cs_errf(err, errlen, CS_ERR_INVALID, "the CUDA attention kernels take head_dim 64 or 128, not %d", c->head_dim);
        return NULL;
    }
    cs_gpu_forward *f = calloc(1, sizeof *f);
    if (!f) {
        cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->g = g;
    f->p = *p;
    f->q_dim = c->n_head * c->head_dim;
    f->kv_dim = c->n_head_kv * c->head_dim;
    f->qkv_dim = f->q_dim + 2 * f->kv_dim;
    f->max_blocks_per_seq = (p->max_ctx + p->block_size - 1) / p->block_size;
    if (cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking) != cudaSuccess)
        return fail(f, err, errlen, CS_ERR_INVALID, "cannot create a CUDA stream");
    if (!(f->blas = cs_cuda_blas_init(f->stream)))
        return fail(f, err, errlen, CS_ERR_NOMEM, "cannot create the cuBLAS handle");
    for (int s = 1; s <= p->max_seqs; s++) { // the split (and so the workspace) depends on the batch
        size_t ws = cs_cuda_attn_decode_workspace(s, c->n_head, c->head_dim, p->max_ctx);
        if (ws > f->attn_ws_bytes) f->attn_ws_bytes = ws;
    }
    f->sample_ws_bytes = p->layers_only ? 0 : cs_cuda_sample_workspace(p->max_tokens, c->vocab_size);
    for (int l = 0; l < c->n_layer; l++) {
        const cs_gpu_layer *L = &g->layers[l];
        const cs_gpu_mat *ms[] = {&L->wqkv, &L->wo, &L->w_gate_up, &L->w_down};
        for (int i = 0; i < 4; i++) {
            size_t ws = ms[i]->bits ? cs_cuda_qmatmul_workspace(&ms[i]->q.d, p->max_tokens, CS_CUDA_QPATH_AUTO) : 0;
            if (ws > f->q_ws_bytes) f->q_ws_bytes = ws;
        }
    }
    size_t T = (size_t)p->max_tokens, S = (size_t)p->max_seqs;
    f->off_pos = T;
    f->off_slots = 2 * T;
    f->off_rows = 3 * T;
    f->off_qstart = 4 * T;
    f->off_kvlen = 4 * T + S + 1;
    f->off_btstart = 4 * T + 2 * S + 1;
    f->off_table = 4 * T + 3 * S + 2;
    f->pen_cap = S * (size_t)p->max_ctx;
    size_t bytes = carve(f, NULL);
    if (cudaMalloc(&f->arena, bytes) != cudaSuccess)
        return fail(f, err, errlen, CS_ERR_NOMEM, "no GPU memory for the activations");
    carve(f, f->arena);
    if (f->q_ws_bytes) CK(cudaMemsetAsync(f->q_ws, 0, f->q_ws_bytes, f->stream));
    size_t batch_bytes = 4 * (f->off_table + S * (size_t)f->max_blocks_per_seq);
    for (int i = 0; i < 2; i++) {
        if (cudaMallocHost((void **)&f->h_batch[i], batch_bytes) != cudaSuccess ||
            cudaMallocHost(&f->h_out[i], out_bytes(T)) != cudaSuccess ||
            cudaMallocHost((void **)&f->h_params[i], S * sizeof(cs_cuda_sample_params)) != cudaSuccess)
            return fail(f, err, errlen, CS_ERR_NOMEM, "no pinned host memory for the batch");
        if (cudaEventCreateWithFlags(&f->done[i], cudaEventDisableTiming) != cudaSuccess)
            return fail(f, err, errlen, CS_ERR_NOMEM, "cannot create a CUDA event");
    }
    cs_cuda_sample_params *gp = calloc(T, sizeof *gp);
    if (!gp) return fail(f, err, errlen, CS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < T; i++) gp[i].repetition_penalty = 1.0f, gp[i].top_p = 1.0f;
    CK(cudaMemcpy(f->greedy, gp, T * sizeof *gp, cudaMemcpyHostToDevice));
    free(gp);
    size_t block_bytes = 2 * (size_t)p->block_size * f->kv_dim * 2 * (size_t)c->n_layer;
    int n = size_pool(f, block_bytes);
    if (n < f->max_blocks_per_seq)
        return fail(f, err, errlen, CS_ERR_NOMEM,
                    "not enough GPU memory for the KV cache of one sequence of max_ctx positions "
                    "(raise --gpu-memory-utilization or lower --max-model-len)");
    // two allocations, K and V, so that neither exceeds what one cudaMalloc may hand out
    for (;;) {
        f->layer_elems = (size_t)n * p->block_size * f->kv_dim;
        size_t pool = f->layer_elems * 2 * (size_t)c->n_layer;
        if (cudaMalloc((void **)&f->k_pool, pool) == cudaSuccess &&
            cudaMalloc((void **)&f->v_pool, pool) == cudaSuccess)
            break;
        cudaGetLastError();
        if (f->k_pool) cudaFree(f->k_pool);
        f->k_pool = NULL;
        n = n / 10 * 9; // fragmentation: try a little smaller
        if (n < f->max_blocks_per_seq) return fail(f, err, errlen, CS_ERR_NOMEM, "cannot allocate the KV pool");
    }
    f->n_blocks = n;
    return f;
}

// The staging pair a step takes; the step two before must have been waited for.
static int take_pair(cs_gpu_forward *f) {
    int k = f->next;
    CS_ASSERT(!f->launched[k]); // at most two steps launched and not waited for
    f->next ^= 1;
    return k;
}

static void upload_batch(cs_gpu_forward *f, const cs_batch *b, int k) {
    const cs_attn_batch *a = &b->attn;
    int T = b->n_tokens, S = a->n_seqs;
    int32_t *h = f->h_batch[k];
    memcpy(h, b->tokens, (size_t)T * 4);
    memcpy(h + f->off_pos, b->positions, (size_t)T * 4);
    memcpy(h + f->off_slots, b->slots, (size_t)T * 4);
    memcpy(h + f->off_rows, b->logit_rows, (size_t)b->n_logits * 4);
    memcpy(h + f->off_qstart, a->q_start, (size_t)(S + 1) * 4);
    memcpy(h + f->off_kvlen, a->kv_len, (size_t)S * 4);
    memcpy(h + f->off_btstart, a->bt_start, (size_t)(S + 1) * 4);
    memcpy(h + f->off_table, a->block_table, (size_t)a->bt_start[S] * 4);
    size_t bytes = 4 * (f->off_table + (size_t)a->bt_start[S]);
    CK(cudaMemcpyAsync(f->d_batch, h, bytes, cudaMemcpyHostToDevice, f->stream));
}

// Decode-sized batches read bf16 weights through our GEMV, which streams them once at the
// copy rate (cuBLAS reaches about half of it at M = 1); larger ones through cuBLAS.
static bool use_gemv(const cs_gpu_forward *f, int m) { return m <= CS_CUDA_GEMV_MAX_M && !f->p.cublas_only; }

// out (T, w.n) bf16 = x (T, w.k) @ w^T, by the GEMV, cuBLAS or the int4 / int8 kernels.
static void linear(cs_gpu_forward *f, uint16_t *out, const uint16_t *x, const cs_gpu_mat *w, int T) {
    if (w->bits)
        cs_cuda_qmatmul(f->blas, out, 0, x, &w->q, T, f->q_ws, f->q_ws_bytes, CS_CUDA_QPATH_AUTO);
    else if (use_gemv(f, T))
        cs_cuda_gemv(out, 0, x, w->bf16, T, (int)w->n, (int)w->k, f->stream);
    else
        cs_cuda_gemm(f->blas, out, 0, x, w->bf16, T, (int)w->n, (int)w->k);
}

// Everything from the embedding to the logits (and the argmax when greedy), on f->stream,
// from the batch description already on the device: a graph can replay it.
static void enqueue(cs_gpu_forward *f, int T, int S, int n_logits, int max_q, int kv_bound, int mode) {
    const cs_gpu_model *g = f->g;
    const cs_model_config *c = &g->cfg;
    void *st = f->stream;
    const int32_t *d = f->d_batch;
    cs_attn_batch ab = {.n_seqs = S, .q_start = d + f->off_qstart, .kv_len = d + f->off_kvlen,
                        .bt_start = d + f->off_btstart, .block_table = d + f->off_table,
                        .block_size = f->p.block_size};
    float scale = 1.0f / sqrtf((float)c->head_dim);
    bool decode = T == S;
    cs_cuda_embed(f->x, g->tok_embd, d, f->ids, c->vocab_size, T, c->dim, st);
    for (int l = 0; l < c->n_layer; l++) {
        const cs_gpu_layer *L = &g->layers[l];
        uint16_t *kc = f->k_pool + (size_t)l * f->layer_elems, *vc = f->v_pool + (size_t)l * f->layer_elems;
        cs_cuda_rmsnorm(f->xn, f->x, l ? f->o : NULL, L->attn_norm, NULL, T, c->dim, c->rms_eps, st);
        linear(f, f->qkv, f->xn, &L->wqkv, T);
        cs_cuda_rope_kv_write(f->q, kc, vc, f->qkv, L->bqkv, d + f->off_pos, d + f->off_slots, g->rope_cos_sin,
                              T, c->n_head, c->n_head_kv, c->head_dim, c->rope_dim,
                              c->rope_layout == CS_ROPE_NEOX, st);
        if (decode)
            cs_cuda_attn_decode(f->att, f->q, kc, vc, &ab, kv_bound, c->n_head, c->n_head_kv, c->head_dim, scale,
                                f->attn_ws, f->attn_ws_bytes, st);
        else
            cs_cuda_attn_prefill(f->att, f->q, kc, vc, &ab, max_q, c->n_head, c->n_head_kv, c->head_dim, scale, st);
        linear(f, f->o, f->att, &L->wo, T);
        if (f->allreduce) f->allreduce(f->allreduce_ctx, f->o, (size_t)T * c->dim, st);
        cs_cuda_rmsnorm(f->xn, f->x, f->o, L->ffn_norm, NULL, T, c->dim, c->rms_eps, st);
        linear(f, f->gu, f->xn, &L->w_gate_up, T);
        cs_cuda_swiglu(f->h, f->gu, T, c->ffn_dim, st);
        linear(f, f->o, f->h, &L->w_down, T);
        if (f->allreduce) f->allreduce(f->allreduce_ctx, f->o, (size_t)T * c->dim, st);
    }
    if (n_logits == 0 || mode == MODE_LAYERS) return;
    cs_cuda_rmsnorm(f->xn, f->x, f->o, g->output_norm, d + f->off_rows, n_logits, c->dim, c->rms_eps, st);
    if (use_gemv(f, n_logits)) cs_cuda_gemv(f->logits, 1, f->xn, g->output, n_logits, c->vocab_size, c->dim, st);
    else cs_cuda_gemm(f->blas, f->logits, 1, f->xn, g->output, n_logits, c->vocab_size, c->dim);
    if (mode == MODE_GREEDY)
        cs_cuda_sample(f->ids, f->lp, f->top_ids, f->top_lp, f->logits, n_logits, c->vocab_size, f->greedy,
                       NULL, NULL, NULL, f->sample_ws, f->sample_ws_bytes, st);
    else if (mode == MODE_SAMPLE) {
        cs_cuda_apply_token_mask(f->logits, f->mask_bits, f->mask_row, n_logits, c->vocab_size, st);
        cs_cuda_sample(f->ids, f->lp, f->top_ids, f->top_lp, f->logits, n_logits, c->vocab_size, f->params,
                       f->pen_ids, f->pen_counts, f->pen_in_prompt, f->sample_ws, f->sample_ws_bytes, st);
    }
}

static int pow2_at_least(int n, int lo) {
    int p = lo;
    while (p < n) p *= 2;
    return p;
}

// Decode steps replay a graph captured for (batch size, context bound), the second time the
// shape comes: the first run is eager, which also warms every lazy initialisation up.
static graph_entry *graph_for(cs_gpu_forward *f, int S, int kv_bound, int mode) {
    for (int i = 0; i < f->n_graphs; i++)
        if (f->graphs[i].n_seqs == S && f->graphs[i].kv_bound == kv_bound && f->graphs[i].mode == mode)
            return &f->graphs[i];
    if (f->n_graphs == MAX_GRAPHS) return NULL;
    graph_entry *e = &f->graphs[f->n_graphs++];
    *e = (graph_entry){.n_seqs = S, .kv_bound = kv_bound, .mode = mode};
    return e;
}

// Enqueues the step on staging pair k. Token ids < 0 are placeholders for the sampled ids of
// the last sampling step (-1 - row), resolved by the embedding kernel.
static void run(cs_gpu_forward *f, const cs_batch *b, int mode, int k) {
    const cs_model_config *c = &f->g->cfg;
    const cs_attn_batch *a = &b->attn;
    int T = b->n_tokens, S = a->n_seqs, max_q = 0, max_kv = 0;
    CS_ASSERT(mode == MODE_LAYERS || !f->p.layers_only);
    CS_ASSERT(T >= 1 && T <= f->p.max_tokens && S >= 1 && S <= f->p.max_seqs && b->n_logits >= 0 &&
              b->n_logits <= T && a->block_size == f->p.block_size);
    for (int s = 0; s < S; s++) {
        int q = a->q_start[s + 1] - a->q_start[s];
        int nb = a->bt_start[s + 1] - a->bt_start[s];
        CS_ASSERT(q >= 1 && a->kv_len[s] >= q && a->kv_len[s] <= f->p.max_ctx && nb <= f->max_blocks_per_seq &&
                  (int64_t)nb * f->p.block_size >= a->kv_len[s]);
        if (q > max_q) max_q = q;
        if (a->kv_len[s] > max_kv) max_kv = a->kv_len[s];
    }
    for (int t = 0; t < T; t++)
        CS_ASSERT((b->tokens[t] >= 0 ? b->tokens[t] < c->vocab_size : -1 - b->tokens[t] < f->ids_rows) &&
                  b->positions[t] >= 0 &&
                  b->positions[t] < f->g->rope_max_pos && b->slots[t] >= 0 &&
                  (int64_t)b->slots[t] < (int64_t)f->n_blocks * f->p.block_size);
    for (int i = 0; i < a->bt_start[S]; i++) CS_ASSERT(a->block_table[i] >= 0 && a->block_table[i] < f->n_blocks);
    upload_batch(f, b, k);
    if (mode == MODE_GREEDY || mode == MODE_SAMPLE) f->ids_rows = b->n_logits;
    int kv_bound = max_kv;
    graph_entry *ge = NULL;
    if (!f->p.enforce_eager && T == S && b->n_logits == T) {
        kv_bound = pow2_at_least(max_kv, 256);
        if (kv_bound > f->p.max_ctx) kv_bound = f->p.max_ctx;
        ge = graph_for(f, S, kv_bound, mode);
    }
    if (ge && ge->exec) {
        CK(cudaGraphLaunch(ge->exec, f->stream));
    } else if (ge && ge->seen) {
        cudaGraph_t graph;
        CK(cudaStreamBeginCapture(f->stream, cudaStreamCaptureModeThreadLocal));
        enqueue(f, T, S, b->n_logits, max_q, kv_bound, mode);
        CK(cudaStreamEndCapture(f->stream, &graph));
        CK(cudaGraphInstantiate(&ge->exec, graph, 0));
        CK(cudaGraphDestroy(graph));
        f->n_captured++;
        CK(cudaGraphLaunch(ge->exec, f->stream));
    } else {
        enqueue(f, T, S, b->n_logits, max_q, kv_bound, mode);
        if (ge) ge->seen = 1;
    }
}

void cs_gpu_forward_copy_rows(cs_gpu_forward *f, int dst, int src, int n) {
    CS_ASSERT(n >= 0 && dst >= 0 && src >= 0 && (int64_t)dst + n <= (int64_t)f->n_blocks * f->p.block_size &&
              (int64_t)src + n <= (int64_t)f->n_blocks * f->p.block_size);
    size_t row = (size_t)f->kv_dim * 2;
    for (int l = 0; l < f->g->cfg.n_layer; l++) {
        char *k = (char *)(f->k_pool + (size_t)l * f->layer_elems), *v = (char *)(f->v_pool + (size_t)l * f->layer_elems);
        CK(cudaMemcpyAsync(k + dst * row, k + src * row, n * row, cudaMemcpyDeviceToDevice, f->stream));
        CK(cudaMemcpyAsync(v + dst * row, v + src * row, n * row, cudaMemcpyDeviceToDevice, f->stream));
    }
}

void cs_gpu_forward_fill_kv(cs_gpu_forward *f, uint64_t seed) {
    size_t n = f->layer_elems * (size_t)f->g->cfg.n_layer;
    cs_cuda_fill_dummy_bf16(f->k_pool, (int64_t)n, seed, 0xFFFF0001u, 1.0f, f->stream);
    cs_cuda_fill_dummy_bf16(f->v_pool, (int64_t)n, seed, 0xFFFF0002u, 1.0f, f->stream);
    CK(cudaStreamSynchronize(f->stream));
}

void cs_gpu_forward_run(cs_gpu_forward *f, const cs_batch *b, float *logits) {
    run(f, b, MODE_LOGITS, take_pair(f));
    size_t bytes = (size_t)b->n_logits * f->g->cfg.vocab_size * sizeof(float);
    if (bytes) CK(cudaMemcpyAsync(logits, f->logits, bytes, cudaMemcpyDeviceToHost, f->stream));
    CK(cudaStreamSynchronize(f->stream));
}

void cs_gpu_forward_run_layers(cs_gpu_forward *f, const cs_batch *b) {
    run(f, b, MODE_LAYERS, take_pair(f));
    CK(cudaStreamSynchronize(f->stream));
}

void cs_gpu_forward_launch_sample(cs_gpu_forward *f, const cs_batch *b, const cs_cuda_sample_params *params,
                                  const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                                  int n_pen, const cs_gpu_masks *masks) {
    int n = b->n_logits, T = f->p.max_tokens, k = take_pair(f), most_lp = 0;
    CS_ASSERT(!params || (n <= f->p.max_seqs && n_pen >= 0 && (size_t)n_pen <= f->pen_cap));
    CS_ASSERT(!params || !masks || (masks->n_masks >= 0 && masks->n_masks <= f->p.max_seqs));
    for (int i = 0; params && i < n; i++) {
        CS_ASSERT(params[i].pen_start >= 0 && params[i].pen_len >= 0 && params[i].pen_start + params[i].pen_len <= n_pen &&
                  params[i].n_logprobs >= 0 && params[i].n_logprobs <= CS_CUDA_MAX_LOGPROBS);
        CS_ASSERT(!masks || (masks->mask_row[i] >= -1 && masks->mask_row[i] < masks->n_masks));
        if (params[i].n_logprobs > most_lp) most_lp = params[i].n_logprobs;
    }
    if (params && n) { // every row says whether it has a mask; the kernel always runs (graphs replay it)
        size_t words = (size_t)(f->g->cfg.vocab_size + 31) / 32;
        // pageable sources: the copy has taken them when it returns (it may wait for the stream,
        // which costs nothing here: rows with masks or penalties are never scheduled ahead)
        if (masks && masks->n_masks)
            CK(cudaMemcpyAsync(f->mask_bits, masks->bits, (size_t)masks->n_masks * words * 4, cudaMemcpyHostToDevice,
                               f->stream));
        if (masks && masks->n_masks)
            CK(cudaMemcpyAsync(f->mask_row, masks->mask_row, (size_t)n * 4, cudaMemcpyHostToDevice, f->stream));
        else // no masks: every row -1 (all bytes 0xff)
            CK(cudaMemsetAsync(f->mask_row, 0xff, (size_t)n * 4, f->stream));
    }
    if (params && n) { // staged in pinned memory, which this pair's last step no longer reads
        memcpy(f->h_params[k], params, (size_t)n * sizeof *params);
        CK(cudaMemcpyAsync(f->params, f->h_params[k], (size_t)n * sizeof *params, cudaMemcpyHostToDevice, f->stream));
    }
    if (params && n_pen) {
        CK(cudaMemcpyAsync(f->pen_ids, pen_ids, (size_t)n_pen * 4, cudaMemcpyHostToDevice, f->stream));
        CK(cudaMemcpyAsync(f->pen_counts, pen_counts, (size_t)n_pen * 4, cudaMemcpyHostToDevice, f->stream));
        CK(cudaMemcpyAsync(f->pen_in_prompt, pen_in_prompt, (size_t)n_pen, cudaMemcpyHostToDevice, f->stream));
    }
    run(f, b, params ? MODE_SAMPLE : MODE_GREEDY, k);
    // the n rows of each output (greedy: the ids alone; the top logprobs only when asked for),
    // at the offsets cs_gpu_forward_wait_sample reads them from
    char *h = f->h_out[k];
    if (n) CK(cudaMemcpyAsync(h, f->ids, (size_t)n * 4, cudaMemcpyDeviceToHost, f->stream));
    if (n && params) CK(cudaMemcpyAsync(h + (size_t)T * 4, f->lp, (size_t)n * 4, cudaMemcpyDeviceToHost, f->stream));
    if (n && most_lp) {
        size_t top = (size_t)n * CS_CUDA_MAX_LOGPROBS * 4;
        CK(cudaMemcpyAsync(h + (size_t)T * 8, f->top_ids, top, cudaMemcpyDeviceToHost, f->stream));
        CK(cudaMemcpyAsync(h + (size_t)T * (8 + 4 * CS_CUDA_MAX_LOGPROBS), f->top_lp, top, cudaMemcpyDeviceToHost,
                           f->stream));
    }
    CK(cudaEventRecord(f->done[k], f->stream));
    f->launched[k] = true;
    f->order[f->n_launched++] = k;
}

void cs_gpu_forward_wait_sample(cs_gpu_forward *f, cs_gpu_sampled *out) {
    CS_ASSERT(f->n_launched > 0);
    int k = f->order[0], T = f->p.max_tokens;
    f->order[0] = f->order[1];
    f->n_launched--;
    CK(cudaEventSynchronize(f->done[k]));
    f->launched[k] = false;
    const char *h = f->h_out[k];
    out->ids = (const int32_t *)h;
    out->logprob = (const float *)(h + (size_t)T * 4);
    out->top_ids = (const int32_t *)(h + (size_t)T * 8);
    out->top_lp = (const float *)(h + (size_t)T * (8 + 4 * CS_CUDA_MAX_LOGPROBS));
}

void cs_gpu_forward_run_greedy(cs_gpu_forward *f, const cs_batch *b, int32_t *ids) {
    cs_gpu_sampled out;
    CS_ASSERT(f->n_launched == 0); // else the wait below would return an earlier step's ids
    cs_gpu_forward_launch_sample(f, b, NULL, NULL, NULL, NULL, 0, NULL);
    cs_gpu_forward_wait_sample(f, &out);
    memcpy(ids, out.ids, (size_t)b->n_logits * 4);
}

void cs_gpu_forward_run_sample(cs_gpu_forward *f, const cs_batch *b, const cs_cuda_sample_params *params,
                               const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                               int n_pen, const cs_gpu_masks *masks, cs_gpu_sampled *out) {
    CS_ASSERT(f->n_launched == 0); // else the wait below would return an earlier step's results
    cs_gpu_forward_launch_sample(f, b, params, pen_ids, pen_counts, pen_in_prompt, n_pen, masks);
    cs_gpu_forward_wait_sample(f, out);
}
#endif
