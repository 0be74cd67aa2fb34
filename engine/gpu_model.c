#include "gpu_model.h"

#include <stdlib.h>
#include <string.h>

#ifndef CSERVE_HAVE_CUDA
cs_status cs_gpu_model_upload(cs_gpu_model *g, const cs_model *m, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    return cs_errf(err, errlen, CS_ERR_INVALID, "cserve was built without CUDA");
}
cs_status cs_gpu_model_dummy(cs_gpu_model *g, const cs_model_config *c, uint64_t seed, int max_pos,
                             char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    return cs_errf(err, errlen, CS_ERR_INVALID, "cserve was built without CUDA");
}
void cs_gpu_model_free(cs_gpu_model *g) { (void)g; }
#else
#include <cuda_runtime.h>

#include "../common/assert.h"
#include "../kernels/cuda/cuda_kernels.h"
#include "../kernels/dummy_init.h"

#define CK(call) CS_ASSERT((call) == cudaSuccess)

static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// Carves the arena: the same walk sizes it (base NULL) and then assigns the pointers.
static size_t carve(cs_gpu_model *g, char *base) {
    const cs_model_config *c = &g->cfg;
    size_t q_dim = (size_t)c->n_head * c->head_dim, kv_dim = (size_t)c->n_head_kv * c->head_dim;
    size_t dim = (size_t)c->dim, ffn = (size_t)c->ffn_dim, off = 0;
#define TAKE(ptr, bytes)                                 \
    do {                                                 \
        if (base) *(void **)&(ptr) = base + off;         \
        off += align256(bytes);                          \
    } while (0)
    TAKE(g->tok_embd, (size_t)c->vocab_size * dim * 2);
    if (c->tied_embeddings) g->output = g->tok_embd;
    else TAKE(g->output, (size_t)c->vocab_size * dim * 2);
    TAKE(g->output_norm, dim * 4);
    for (int l = 0; l < c->n_layer; l++) {
        cs_gpu_layer *L = &g->layers[l];
        TAKE(L->attn_norm, dim * 4);
        TAKE(L->ffn_norm, dim * 4);
        TAKE(L->wqkv, (q_dim + 2 * kv_dim) * dim * 2);
        if (c->attn_bias) TAKE(L->bqkv, (q_dim + 2 * kv_dim) * 4);
        TAKE(L->wo, dim * q_dim * 2);
        TAKE(L->w_gate_up, 2 * ffn * dim * 2);
        TAKE(L->w_down, dim * ffn * 2);
    }
    TAKE(g->rope_cos_sin, (size_t)g->rope_max_pos * c->rope_dim * 4);
#undef TAKE
    return off;
}

static cs_status alloc(cs_gpu_model *g, const cs_model_config *c, int max_pos, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    g->cfg = *c;
    g->rope_max_pos = max_pos;
    g->layers = calloc((size_t)c->n_layer, sizeof *g->layers);
    if (!g->layers) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    size_t bytes = carve(g, NULL);
    if (cudaMalloc(&g->arena, bytes) != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        free(g->layers);
        g->layers = NULL;
        g->arena = NULL;
        return cs_errf(err, errlen, CS_ERR_NOMEM, "the weights need %.2f GiB of GPU memory, %.2f GiB are free",
                       (double)bytes / (1 << 30), (double)free_b / (1 << 30));
    }
    carve(g, g->arena);
    g->weight_bytes = bytes;
    return CS_OK;
}

void cs_gpu_model_free(cs_gpu_model *g) {
    if (!g) return;
    if (g->arena) cudaFree(g->arena);
    free(g->layers);
    memset(g, 0, sizeof *g);
}

static void upload_f32(float *dst, const float *src, size_t n) { CK(cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice)); }

// A matrix of any GGUF type -> bf16 rows at dst, through a staging buffer and the dequant kernel.
static void upload_matrix(uint16_t *dst, const cs_weight *w, void *staging) {
    size_t row_bytes;
    CS_ASSERT(cs_dtype_row_bytes(w->type, w->cols, &row_bytes));
    CK(cudaMemcpy(staging, w->data, row_bytes * (size_t)w->rows, cudaMemcpyHostToDevice));
    cs_cuda_dequant_bf16(w->type, staging, dst, w->rows, w->cols, NULL);
    CK(cudaDeviceSynchronize());
}

static size_t matrix_bytes(const cs_weight *w) {
    size_t row_bytes;
    CS_ASSERT(cs_dtype_row_bytes(w->type, w->cols, &row_bytes));
    return row_bytes * (size_t)w->rows;
}

cs_status cs_gpu_model_upload(cs_gpu_model *g, const cs_model *m, char *err, size_t errlen) {
    const cs_model_config *c = &m->cfg;
    cs_status st = alloc(g, c, m->rope_max_pos, err, errlen);
    if (st != CS_OK) return st;
    size_t stage = matrix_bytes(&m->tok_embd);
    for (int l = 0; l < c->n_layer; l++) {
        const cs_layer *L = &m->layers[l];
        const cs_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++)
            if (matrix_bytes(ws[i]) > stage) stage = matrix_bytes(ws[i]);
    }
    if (matrix_bytes(&m->output) > stage) stage = matrix_bytes(&m->output);
    void *staging;
    if (cudaMalloc(&staging, stage) != cudaSuccess) {
        cudaGetLastError();
        cs_gpu_model_free(g);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "no GPU memory left to stage the weights");
    }
    size_t dim = (size_t)c->dim, q_dim = (size_t)c->n_head * c->head_dim;
    size_t kv_dim = (size_t)c->n_head_kv * c->head_dim, ffn = (size_t)c->ffn_dim;
    upload_matrix(g->tok_embd, &m->tok_embd, staging);
    if (!c->tied_embeddings) upload_matrix(g->output, &m->output, staging);
    upload_f32(g->output_norm, m->output_norm, dim);
    for (int l = 0; l < c->n_layer; l++) {
        const cs_layer *L = &m->layers[l];
        cs_gpu_layer *G = &g->layers[l];
        upload_f32(G->attn_norm, L->attn_norm, dim);
        upload_f32(G->ffn_norm, L->ffn_norm, dim);
        upload_matrix(G->wqkv, &L->wq, staging);
        upload_matrix(G->wqkv + q_dim * dim, &L->wk, staging);
        upload_matrix(G->wqkv + (q_dim + kv_dim) * dim, &L->wv, staging);
        if (c->attn_bias) {
            upload_f32(G->bqkv, L->bq, q_dim);
            upload_f32(G->bqkv + q_dim, L->bk, kv_dim);
            upload_f32(G->bqkv + q_dim + kv_dim, L->bv, kv_dim);
        }
        upload_matrix(G->wo, &L->wo, staging);
        upload_matrix(G->w_gate_up, &L->w_gate, staging);
        upload_matrix(G->w_gate_up + ffn * dim, &L->w_up, staging);
        upload_matrix(G->w_down, &L->w_down, staging);
    }
    upload_f32(g->rope_cos_sin, m->rope_cos_sin, (size_t)m->rope_max_pos * c->rope_dim);
    cudaFree(staging);
    return CS_OK;
}

static void dummy_vec(float *dst, int n, uint64_t seed, uint32_t id, float offset) {
    float *h = malloc((size_t)n * sizeof *h);
    CS_ASSERT(h);
    cs_dummy_vector(h, n, seed, id, offset);
    upload_f32(dst, h, (size_t)n);
    free(h);
}

cs_status cs_gpu_model_dummy(cs_gpu_model *g, const cs_model_config *c, uint64_t seed, int max_pos,
                             char *err, size_t errlen) {
    cs_status st = alloc(g, c, max_pos, err, errlen);
    if (st != CS_OK) return st;
    int64_t dim = c->dim, q_dim = (int64_t)c->n_head * c->head_dim, kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    int64_t ffn = c->ffn_dim, vocab = c->vocab_size;
#define FILL(dst, n, id, kind) cs_cuda_fill_dummy_bf16(dst, n, seed, id, cs_dummy_scale(c, kind), NULL)
    FILL(g->tok_embd, vocab * dim, CS_DUMMY_EMBD, CS_DUMMY_EMBD);
    if (!c->tied_embeddings) FILL(g->output, vocab * dim, CS_DUMMY_OUTPUT, CS_DUMMY_OUTPUT);
    dummy_vec(g->output_norm, c->dim, seed, CS_DUMMY_OUT_NORM, 1.0f);
    for (int l = 0; l < c->n_layer; l++) {
        cs_gpu_layer *G = &g->layers[l];
        FILL(G->wqkv, q_dim * dim, cs_dummy_layer_id(l, CS_DUMMY_Q), CS_DUMMY_Q);
        FILL(G->wqkv + q_dim * dim, kv_dim * dim, cs_dummy_layer_id(l, CS_DUMMY_K), CS_DUMMY_K);
        FILL(G->wqkv + (q_dim + kv_dim) * dim, kv_dim * dim, cs_dummy_layer_id(l, CS_DUMMY_V), CS_DUMMY_V);
        FILL(G->wo, dim * q_dim, cs_dummy_layer_id(l, CS_DUMMY_O), CS_DUMMY_O);
        FILL(G->w_gate_up, ffn * dim, cs_dummy_layer_id(l, CS_DUMMY_GATE), CS_DUMMY_GATE);
        FILL(G->w_gate_up + ffn * dim, ffn * dim, cs_dummy_layer_id(l, CS_DUMMY_UP), CS_DUMMY_UP);
        FILL(G->w_down, dim * ffn, cs_dummy_layer_id(l, CS_DUMMY_DOWN), CS_DUMMY_DOWN);
        dummy_vec(G->attn_norm, c->dim, seed, cs_dummy_layer_id(l, CS_DUMMY_ATTN_NORM), 1.0f);
        dummy_vec(G->ffn_norm, c->dim, seed, cs_dummy_layer_id(l, CS_DUMMY_FFN_NORM), 1.0f);
        if (c->attn_bias) {
            dummy_vec(G->bqkv, (int)q_dim, seed, cs_dummy_layer_id(l, CS_DUMMY_BQ), 0.0f);
            dummy_vec(G->bqkv + q_dim, (int)kv_dim, seed, cs_dummy_layer_id(l, CS_DUMMY_BK), 0.0f);
            dummy_vec(G->bqkv + q_dim + kv_dim, (int)kv_dim, seed, cs_dummy_layer_id(l, CS_DUMMY_BV), 0.0f);
        }
    }
#undef FILL
    float *table = malloc((size_t)max_pos * c->rope_dim * sizeof *table);
    if (!table) {
        cs_gpu_model_free(g);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    }
    cs_rope_table(c, NULL, max_pos, table);
    upload_f32(g->rope_cos_sin, table, (size_t)max_pos * c->rope_dim);
    free(table);
    CK(cudaDeviceSynchronize());
    return CS_OK;
}
#endif
