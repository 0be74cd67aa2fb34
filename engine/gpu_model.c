#include "gpu_model.h"

#include <stdlib.h>
#include <string.h>

#ifndef CSERVE_HAVE_CUDA
cs_status cs_gpu_model_upload(cs_gpu_model *g, const cs_model *m, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    return cs_errf(err, errlen, CS_ERR_INVALID, "cserve was built without CUDA");
}
cs_status cs_gpu_model_dummy(cs_gpu_model *g, const cs_model_config *c, uint64_t seed, int max_pos,
                             int quant_bits, int quant_group, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    return cs_errf(err, errlen, CS_ERR_INVALID, "cserve was built without CUDA");
}
cs_status cs_gpu_model_dummy_shard(cs_gpu_model *g, const cs_model_config *full, uint64_t seed, int max_pos,
                                   int quant_bits, int quant_group, int n_ranks, int rank, bool lm_head, char *err,
                                   size_t errlen) {
    return cs_gpu_model_dummy(g, full, seed, max_pos, quant_bits, quant_group, err, errlen);
}
cs_status cs_gpu_model_upload_rank(cs_gpu_model *g, const cs_model *m, bool lm_head, char *err, size_t errlen) {
    return cs_gpu_model_upload(g, m, err, errlen);
}
void cs_gpu_model_free(cs_gpu_model *g) { (void)g; }
size_t cs_gpu_model_step_bytes(const cs_gpu_model *g) { return 0; }
#else
#include <cuda_runtime.h>

#include "../common/assert.h"
#include "../kernels/cuda/cuda_kernels.h"
#include "../kernels/dummy_init.h"
#include "tp_shard.h"

#define CK(call) CS_ASSERT((call) == cudaSuccess)

static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// What a projection will be: packed (bits 4 / 8, in groups of group) or bf16 (bits 0).
static void plan_mat(cs_gpu_mat *m, int bits, int group, int64_t n, int64_t k) {
    memset(m, 0, sizeof *m);
    m->n = n;
    m->k = k;
    m->bits = bits && cs_qpack_dims_of(bits, group, n, k, &m->q.d) ? bits : 0;
}

static size_t mat_bytes(const cs_gpu_mat *m) {
    return m->bits ? align256(m->q.d.code_words * 4) + align256(m->q.d.scale_words * 4)
                   : align256((size_t)(m->n * m->k) * 2);
}

// Carves the arena: the same walk sizes it (base NULL) and then assigns the pointers. The
// projections' formats are planned before.
static size_t carve(cs_gpu_model *g, char *base) {
    const cs_model_config *c = &g->cfg;
    size_t q_dim = (size_t)c->n_head * c->head_dim, kv_dim = (size_t)c->n_head_kv * c->head_dim;
    size_t dim = (size_t)c->dim, off = 0;
#define TAKE(ptr, bytes)                                 \
    do {                                                 \
        if (base) *(void **)&(ptr) = base + off;         \
        off += align256(bytes);                          \
    } while (0)
#define TAKE_MAT(m)                                                  \
    do {                                                             \
        if ((m).bits) {                                              \
            TAKE((m).q.codes, (m).q.d.code_words * 4);               \
            TAKE((m).q.scales, (m).q.d.scale_words * 4);             \
        } else {                                                     \
            TAKE((m).bf16, (size_t)((m).n * (m).k) * 2);             \
        }                                                            \
    } while (0)
    TAKE(g->tok_embd, (size_t)c->vocab_size * dim * 2);
    if (c->tied_embeddings) g->output = g->tok_embd;
    else if (!g->no_lm_head) TAKE(g->output, (size_t)c->vocab_size * dim * 2);
    TAKE(g->output_norm, dim * 4);
    for (int l = 0; l < c->n_layer; l++) {
        cs_gpu_layer *L = &g->layers[l];
        TAKE(L->attn_norm, dim * 4);
        TAKE(L->ffn_norm, dim * 4);
        TAKE_MAT(L->wqkv);
        if (c->attn_bias) TAKE(L->bqkv, (q_dim + 2 * kv_dim) * 4);
        TAKE_MAT(L->wo);
        TAKE_MAT(L->w_gate_up);
        TAKE_MAT(L->w_down);
    }
    TAKE(g->rope_cos_sin, (size_t)g->rope_max_pos * c->rope_dim * 4);
#undef TAKE_MAT
#undef TAKE
    return off;
}

static cs_status alloc_layers(cs_gpu_model *g, const cs_model_config *c, int max_pos, bool lm_head, char *err,
                              size_t errlen) {
    memset(g, 0, sizeof *g);
    g->no_lm_head = !lm_head;
    g->cfg = *c;
    g->rope_max_pos = max_pos;
    g->layers = calloc((size_t)c->n_layer, sizeof *g->layers);
    if (!g->layers) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    return CS_OK;
}

static cs_status alloc_arena(cs_gpu_model *g, char *err, size_t errlen) {
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
    CK(cudaMemset(g->arena, 0, bytes)); // the padding between tensors too: two models compare bytewise
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

size_t cs_gpu_model_step_bytes(const cs_gpu_model *g) {
    const cs_model_config *c = &g->cfg;
    size_t bytes = g->no_lm_head ? 0 : (size_t)c->vocab_size * c->dim * 2;
    for (int l = 0; l < c->n_layer; l++) {
        const cs_gpu_layer *L = &g->layers[l];
        bytes += mat_bytes(&L->wqkv) + mat_bytes(&L->wo) + mat_bytes(&L->w_gate_up) + mat_bytes(&L->w_down);
    }
    return bytes;
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

// The packed width a fused projection keeps: its parts all int4 (or all int8) in groups of
// one size; else 0 (bf16).
static int fused_bits(const cs_weight *const *parts, int n, int *group) {
    int bits = cs_qpack_bits(parts[0]->type), g = cs_dtype_group(parts[0]->type);
    for (int i = 1; i < n; i++)
        if (cs_qpack_bits(parts[i]->type) != bits || cs_dtype_group(parts[i]->type) != g) return 0;
    *group = g;
    return bits;
}

static void plan_fused(cs_gpu_mat *m, const cs_weight *const *parts, int n) {
    int group = 0, bits = fused_bits(parts, n, &group);
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += parts[i]->rows;
    plan_mat(m, bits, group, rows, parts[0]->cols);
}

// The parts' rows, one after the other, into m: repacked on the host, or dequantised to bf16
// on the device.
static cs_status upload_fused(cs_gpu_mat *m, const cs_weight *const *parts, int n, void *staging, char *err,
                              size_t errlen) {
    if (!m->bits) {
        int64_t row0 = 0;
        for (int i = 0; i < n; i++) {
            upload_matrix(m->bf16 + row0 * m->k, parts[i], staging);
            row0 += parts[i]->rows;
        }
        return CS_OK;
    }
    const cs_qpack_dims *d = &m->q.d;
    int64_t ng = d->k / d->group;
    uint8_t *codes = malloc((size_t)(d->n * d->k));
    float *s = malloc(sizeof(float) * (size_t)(d->n * ng)), *mm = malloc(sizeof(float) * (size_t)(d->n * ng));
    uint32_t *pc = malloc(d->code_words * 4), *ps = malloc(d->scale_words * 4);
    cs_status st = CS_OK;
    if (!codes || !s || !mm || !pc || !ps) {
        st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory repacking the weights");
    } else {
        int64_t row0 = 0;
        for (int i = 0; i < n; i++) {
            cs_qplain_from(parts[i]->type, parts[i]->data, parts[i]->rows, d->k, row0, codes, s, mm);
            row0 += parts[i]->rows;
        }
        cs_qpack(d, codes, s, mm, pc, ps);
        CK(cudaMemcpy((void *)m->q.codes, pc, d->code_words * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy((void *)m->q.scales, ps, d->scale_words * 4, cudaMemcpyHostToDevice));
    }
    free(codes), free(s), free(mm), free(pc), free(ps);
    return st;
}

cs_status cs_gpu_model_upload(cs_gpu_model *g, const cs_model *m, char *err, size_t errlen) {
    return cs_gpu_model_upload_rank(g, m, true, err, errlen);
}

cs_status cs_gpu_model_upload_rank(cs_gpu_model *g, const cs_model *m, bool lm_head, char *err, size_t errlen) {
    const cs_model_config *c = &m->cfg;
    cs_status st = alloc_layers(g, c, m->rope_max_pos, lm_head, err, errlen);
    if (st != CS_OK) return st;
    for (int l = 0; l < c->n_layer; l++) {
        const cs_layer *L = &m->layers[l];
        cs_gpu_layer *G = &g->layers[l];
        const cs_weight *qkv[] = {&L->wq, &L->wk, &L->wv}, *o[] = {&L->wo}, *gu[] = {&L->w_gate, &L->w_up},
                        *down[] = {&L->w_down};
        plan_fused(&G->wqkv, qkv, 3);
        plan_fused(&G->wo, o, 1);
        plan_fused(&G->w_gate_up, gu, 2);
        plan_fused(&G->w_down, down, 1);
    }
    if ((st = alloc_arena(g, err, errlen)) != CS_OK) return st;
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
    size_t kv_dim = (size_t)c->n_head_kv * c->head_dim;
    upload_matrix(g->tok_embd, &m->tok_embd, staging);
    if (g->output != g->tok_embd && g->output) upload_matrix(g->output, &m->output, staging);
    upload_f32(g->output_norm, m->output_norm, dim);
    for (int l = 0; l < c->n_layer && st == CS_OK; l++) {
        const cs_layer *L = &m->layers[l];
        cs_gpu_layer *G = &g->layers[l];
        upload_f32(G->attn_norm, L->attn_norm, dim);
        upload_f32(G->ffn_norm, L->ffn_norm, dim);
        if (c->attn_bias) {
            upload_f32(G->bqkv, L->bq, q_dim);
            upload_f32(G->bqkv + q_dim, L->bk, kv_dim);
            upload_f32(G->bqkv + q_dim + kv_dim, L->bv, kv_dim);
        }
        const cs_weight *qkv[] = {&L->wq, &L->wk, &L->wv}, *o[] = {&L->wo}, *gu[] = {&L->w_gate, &L->w_up},
                        *down[] = {&L->w_down};
        st = upload_fused(&G->wqkv, qkv, 3, staging, err, errlen);
        if (st == CS_OK) st = upload_fused(&G->wo, o, 1, staging, err, errlen);
        if (st == CS_OK) st = upload_fused(&G->w_gate_up, gu, 2, staging, err, errlen);
        if (st == CS_OK) st = upload_fused(&G->w_down, down, 1, staging, err, errlen);
    }
    upload_f32(g->rope_cos_sin, m->rope_cos_sin, (size_t)m->rope_max_pos * c->rope_dim);
    cudaFree(staging);
    if (st != CS_OK) cs_gpu_model_free(g);
    return st;
}

// dst (n) = elements [i0, i0 + n) of the dummy vector id.
static void dummy_vec(float *dst, int i0, int n, uint64_t seed, uint32_t id, float offset) {
    float *h = malloc((size_t)(i0 + n) * sizeof *h);
    CS_ASSERT(h);
    cs_dummy_vector(h, i0 + n, seed, id, offset);
    upload_f32(dst, h + i0, (size_t)n);
    free(h);
}

cs_status cs_gpu_model_dummy(cs_gpu_model *g, const cs_model_config *c, uint64_t seed, int max_pos,
                             int quant_bits, int quant_group, char *err, size_t errlen) {
    return cs_gpu_model_dummy_shard(g, c, seed, max_pos, quant_bits, quant_group, 1, 0, true, err, errlen);
}

cs_status cs_gpu_model_dummy_shard(cs_gpu_model *g, const cs_model_config *full, uint64_t seed, int max_pos,
                                   int quant_bits, int quant_group, int n_ranks, int rank, bool lm_head, char *err,
                                   size_t errlen) {
    memset(g, 0, sizeof *g);
    if (quant_bits != 0 && quant_bits != 4 && quant_bits != 8)
        return cs_errf(err, errlen, CS_ERR_INVALID, "quantised weights are int4 or int8, not int%d", quant_bits);
    cs_tp_part p; // quantised: the MLP split on whole groups, so each rank's groups are the whole model's
    int unit = quant_bits && quant_group > CS_TP_GPU_FFN_UNIT ? quant_group : CS_TP_GPU_FFN_UNIT;
    if (!cs_tp_part_of(full, n_ranks > 1 ? unit : 1, n_ranks, rank, &p, err, errlen)) return CS_ERR_INVALID;
    if (quant_bits && n_ranks > 1 && full->head_dim % quant_group) // o's columns are cut between heads
        return cs_errf(err, errlen, CS_ERR_INVALID,
                       "tensor parallel: head_dim %d is not whole quantisation groups of %d (use --quant-group %d)",
                       full->head_dim, quant_group, full->head_dim % 64 ? 32 : 64);
    cs_model_config shard = *full;
    shard.n_head = p.n_head;
    shard.n_head_kv = p.n_kv;
    shard.ffn_dim = p.n_ffn;
    const cs_model_config *c = &shard;
    cs_status st = alloc_layers(g, c, max_pos, lm_head, err, errlen);
    if (st != CS_OK) return st;
    int64_t hd = c->head_dim, dim = c->dim, q_dim = (int64_t)c->n_head * hd, kv_dim = (int64_t)c->n_head_kv * hd;
    int64_t ffn = c->ffn_dim, vocab = c->vocab_size;
    int64_t full_q = (int64_t)full->n_head * hd, q0 = p.head0 * hd, kv0 = p.kv0 * hd;
    for (int l = 0; l < c->n_layer; l++) {
        cs_gpu_layer *G = &g->layers[l];
        plan_mat(&G->wqkv, quant_bits, quant_group, q_dim + 2 * kv_dim, dim);
        plan_mat(&G->wo, quant_bits, quant_group, dim, q_dim);
        plan_mat(&G->w_gate_up, quant_bits, quant_group, 2 * ffn, dim);
        plan_mat(&G->w_down, quant_bits, quant_group, dim, ffn);
        if (quant_bits && (!G->wqkv.bits || !G->wo.bits || !G->w_gate_up.bits || !G->w_down.bits)) {
            free(g->layers);
            g->layers = NULL;
            return cs_errf(err, errlen, CS_ERR_INVALID, "the model's widths are not whole groups of %d", quant_group);
        }
    }
    if ((st = alloc_arena(g, err, errlen)) != CS_OK) return st;
    // quantised: each projection is made bf16 in a scratch matrix, then packed
    uint16_t *scratch = NULL;
    if (quant_bits) {
        size_t most = (size_t)(2 * ffn * dim);
        if ((size_t)((q_dim + 2 * kv_dim) * dim) > most) most = (size_t)((q_dim + 2 * kv_dim) * dim);
        if (cudaMalloc((void **)&scratch, most * 2) != cudaSuccess) {
            cudaGetLastError();
            cs_gpu_model_free(g);
            return cs_errf(err, errlen, CS_ERR_NOMEM, "no GPU memory left to quantise the dummy weights");
        }
    }
    // FILL: a whole tensor; BLOCK: this rank's (rows, cols) at (row0, col0) of a (., ld) tensor
#define FILL(dst, n, id, kind) cs_cuda_fill_dummy_bf16(dst, n, seed, id, cs_dummy_scale(c, kind), NULL)
#define BLOCK(dst, rows, cols, ld, row0, col0, l, kind)                                                        \
    cs_cuda_fill_dummy_bf16_block(dst, rows, cols, ld, row0, col0, seed, cs_dummy_layer_id(l, kind),            \
                                  cs_dummy_scale(full, kind), NULL)
#define MAT(m) ((m).bits ? scratch : (m).bf16)
#define PACK(m)                                                                               \
    do {                                                                                      \
        if ((m).bits) cs_cuda_qquantize((uint32_t *)(m).q.codes, (uint32_t *)(m).q.scales, &(m).q.d, scratch, NULL); \
    } while (0)
    FILL(g->tok_embd, vocab * dim, CS_DUMMY_EMBD, CS_DUMMY_EMBD);
    if (g->output != g->tok_embd && g->output) FILL(g->output, vocab * dim, CS_DUMMY_OUTPUT, CS_DUMMY_OUTPUT);
    dummy_vec(g->output_norm, 0, c->dim, seed, CS_DUMMY_OUT_NORM, 1.0f);
    for (int l = 0; l < c->n_layer; l++) {
        cs_gpu_layer *G = &g->layers[l];
        BLOCK(MAT(G->wqkv), q_dim, dim, dim, q0, 0, l, CS_DUMMY_Q);
        BLOCK(MAT(G->wqkv) + q_dim * dim, kv_dim, dim, dim, kv0, 0, l, CS_DUMMY_K);
        BLOCK(MAT(G->wqkv) + (q_dim + kv_dim) * dim, kv_dim, dim, dim, kv0, 0, l, CS_DUMMY_V);
        PACK(G->wqkv);
        BLOCK(MAT(G->wo), dim, q_dim, full_q, 0, q0, l, CS_DUMMY_O);
        PACK(G->wo);
        BLOCK(MAT(G->w_gate_up), ffn, dim, dim, p.ffn0, 0, l, CS_DUMMY_GATE);
        BLOCK(MAT(G->w_gate_up) + ffn * dim, ffn, dim, dim, p.ffn0, 0, l, CS_DUMMY_UP);
        PACK(G->w_gate_up);
        BLOCK(MAT(G->w_down), dim, ffn, full->ffn_dim, 0, p.ffn0, l, CS_DUMMY_DOWN);
        PACK(G->w_down);
        dummy_vec(G->attn_norm, 0, c->dim, seed, cs_dummy_layer_id(l, CS_DUMMY_ATTN_NORM), 1.0f);
        dummy_vec(G->ffn_norm, 0, c->dim, seed, cs_dummy_layer_id(l, CS_DUMMY_FFN_NORM), 1.0f);
        if (c->attn_bias) {
            dummy_vec(G->bqkv, (int)q0, (int)q_dim, seed, cs_dummy_layer_id(l, CS_DUMMY_BQ), 0.0f);
            dummy_vec(G->bqkv + q_dim, (int)kv0, (int)kv_dim, seed, cs_dummy_layer_id(l, CS_DUMMY_BK), 0.0f);
            dummy_vec(G->bqkv + q_dim + kv_dim, (int)kv0, (int)kv_dim, seed, cs_dummy_layer_id(l, CS_DUMMY_BV), 0.0f);
        }
    }
#undef BLOCK
#undef PACK
#undef MAT
#undef FILL
    CK(cudaDeviceSynchronize()); // the scratch is reused by every projection on the one stream
    if (scratch) cudaFree(scratch);
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
