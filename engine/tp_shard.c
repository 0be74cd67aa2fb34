#include "tp_shard.h"

#include <stdlib.h>
#include <string.h>

// Part i of total split in n as evenly as whole items allow.
static void split(int total, int n, int i, int *start, int *count) {
    *start = (int)((long)total * i / n);
    *count = (int)((long)total * (i + 1) / n) - *start;
}

bool cs_tp_part_of(const cs_model_config *c, int ffn_unit, int n, int r, cs_tp_part *p, char *err, size_t errlen) {
    if (n < 1 || r < 0 || r >= n || c->n_head_kv < 1 || c->n_head % c->n_head_kv || ffn_unit < 1 ||
        c->ffn_dim % ffn_unit) {
        cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel: rank %d of %d, or the model's shape, is invalid", r, n);
        return false;
    }
    if (n > c->n_head) {
        cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel size %d: the model has %d query heads", n, c->n_head);
        return false;
    }
    int group = c->n_head / c->n_head_kv;
    if (n <= c->n_head_kv) { // whole GQA groups
        split(c->n_head_kv, n, r, &p->kv0, &p->n_kv);
        p->head0 = p->kv0 * group;
        p->n_head = p->n_kv * group;
    } else { // the ranks of each group share its query heads; its KV head is replicated
        int g = 0, r0 = 0, nr = 0;
        for (; g < c->n_head_kv; g++) {
            split(n, c->n_head_kv, g, &r0, &nr);
            if (r < r0 + nr) break;
        }
        // n <= n_head, so a group gets at most ceil(n / n_kv) <= its heads ranks
        int h, nh;
        split(group, nr, r - r0, &h, &nh);
        p->head0 = g * group + h;
        p->n_head = nh;
        p->kv0 = g;
        p->n_kv = 1;
    }
    int units = c->ffn_dim / ffn_unit, u0, nu;
    if (units < n) {
        cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel size %d: the MLP's %d features are %d blocks of %d", n,
                c->ffn_dim, units, ffn_unit);
        return false;
    }
    split(units, n, r, &u0, &nu);
    p->ffn0 = u0 * ffn_unit;
    p->n_ffn = nu * ffn_unit;
    return true;
}

static size_t row_bytes(const cs_weight *w) {
    size_t b = 0;
    cs_dtype_row_bytes(w->type, w->cols, &b);
    return b;
}

// Rows [r0, r0 + n) of w, in place.
static cs_weight rows_of(const cs_weight *w, int r0, int n) {
    cs_weight v = *w;
    v.data = (const unsigned char *)w->data + (size_t)r0 * row_bytes(w);
    v.rows = n;
    return v;
}

// Columns [c0, c0 + n) of w, copied into the shard (c0 and n whole blocks of w's type).
static cs_status cols_of(cs_model *shard, const cs_weight *w, int c0, int n, cs_weight *out, char *err,
                         size_t errlen) {
    int be = cs_dtype_block_elems(w->type), bb = cs_dtype_block_bytes(w->type);
    size_t src_row = row_bytes(w), dst_row = (size_t)n / be * bb, off = (size_t)c0 / be * bb;
    unsigned char *d = cs_model_alloc(shard, dst_row * (size_t)w->rows);
    if (!d) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory for a tensor-parallel shard");
    for (int r = 0; r < w->rows; r++)
        memcpy(d + (size_t)r * dst_row, (const unsigned char *)w->data + (size_t)r * src_row + off, dst_row);
    *out = *w;
    out->data = d;
    out->cols = n;
    return CS_OK;
}

cs_status cs_tp_shard(const cs_model *m, int n, int r, int min_ffn_unit, cs_model *shard, char *err, size_t errlen) {
    const cs_model_config *c = &m->cfg;
    int hd = c->head_dim, ffn_unit = min_ffn_unit > 1 ? min_ffn_unit : 1; // block sizes are powers of two
    memset(shard, 0, sizeof *shard);
    for (int l = 0; l < c->n_layer; l++) {
        int be = cs_dtype_block_elems(m->layers[l].w_down.type);
        if (be > ffn_unit) ffn_unit = be;
        if (hd % cs_dtype_block_elems(m->layers[l].wo.type))
            return cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel: head_dim %d is not whole %s blocks", hd,
                           cs_dtype_name(m->layers[l].wo.type));
    }
    cs_tp_part p;
    if (!cs_tp_part_of(c, ffn_unit, n, r, &p, err, errlen)) return CS_ERR_INVALID;
    shard->cfg = *c;
    shard->cfg.n_head = p.n_head;
    shard->cfg.n_head_kv = p.n_kv;
    shard->cfg.ffn_dim = p.n_ffn;
    shard->file = m->file;
    shard->tok_embd = m->tok_embd;
    shard->output = m->output;
    shard->output_norm = m->output_norm;
    shard->rope_max_pos = m->rope_max_pos;
    shard->rope_cos_sin = m->rope_cos_sin;
    shard->quant = m->quant;
    shard->layers = calloc((size_t)c->n_layer, sizeof *shard->layers);
    if (!shard->layers) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    cs_status st = CS_OK;
    for (int l = 0; l < c->n_layer && st == CS_OK; l++) {
        const cs_layer *L = &m->layers[l];
        cs_layer *S = &shard->layers[l];
        S->attn_norm = L->attn_norm;
        S->ffn_norm = L->ffn_norm;
        S->wq = rows_of(&L->wq, p.head0 * hd, p.n_head * hd);
        S->wk = rows_of(&L->wk, p.kv0 * hd, p.n_kv * hd);
        S->wv = rows_of(&L->wv, p.kv0 * hd, p.n_kv * hd);
        S->bq = L->bq ? L->bq + (size_t)p.head0 * hd : NULL;
        S->bk = L->bk ? L->bk + (size_t)p.kv0 * hd : NULL;
        S->bv = L->bv ? L->bv + (size_t)p.kv0 * hd : NULL;
        S->w_gate = rows_of(&L->w_gate, p.ffn0, p.n_ffn);
        S->w_up = rows_of(&L->w_up, p.ffn0, p.n_ffn);
        st = cols_of(shard, &L->wo, p.head0 * hd, p.n_head * hd, &S->wo, err, errlen);
        if (st == CS_OK) st = cols_of(shard, &L->w_down, p.ffn0, p.n_ffn, &S->w_down, err, errlen);
    }
    if (st != CS_OK) cs_model_free(shard);
    return st;
}

size_t cs_tp_shard_layer_bytes(const cs_model *shard) {
    size_t bytes = 0;
    for (int l = 0; l < shard->cfg.n_layer; l++) {
        const cs_layer *L = &shard->layers[l];
        const cs_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) bytes += row_bytes(ws[i]) * (size_t)ws[i]->rows;
    }
    return bytes;
}
