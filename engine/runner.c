#include "runner.h"

#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE 16

cs_status cs_runner_init(cs_runner *r, const char *model_path, int max_ctx, int threads,
                         int max_batch, cs_dtype quant, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    cs_status st = cs_model_file_open(model_path, &r->file, err, errlen);
    if (st != CS_OK) return st;
    const cs_model_config *c = &r->file->cfg;
    if (max_ctx <= 0 || max_ctx > c->context_len) max_ctx = c->context_len;
    if (max_batch <= 0) max_batch = 256;
    if (max_batch > max_ctx) max_batch = max_ctx;
    r->max_ctx = max_ctx;
    r->max_batch = max_batch;
    if ((st = cs_model_init_quant(&r->model, r->file, max_ctx, quant, err, errlen)) != CS_OK) goto fail;
    int n_blocks = (max_ctx + BLOCK_SIZE - 1) / BLOCK_SIZE;
    if ((st = cs_kv_cache_init(&r->kv, c->n_layer, n_blocks, BLOCK_SIZE, c->n_head_kv * c->head_dim, err, errlen)))
        goto fail;
    if ((st = cs_block_alloc_init(&r->blocks, n_blocks, BLOCK_SIZE))) goto nomem;
    r->pool = cs_pool_init(threads);
    r->positions = malloc((size_t)max_batch * sizeof(int32_t));
    r->slots = malloc((size_t)max_batch * sizeof(int32_t));
    r->rows = malloc((size_t)max_batch * sizeof(int32_t));
    if (!r->pool || !r->positions || !r->slots || !r->rows) goto nomem;
    r->fwd = cs_forward_init(&r->model, &r->kv, max_batch, max_ctx, r->pool, err, errlen);
    if (!r->fwd) {
        st = CS_ERR_NOMEM;
        goto fail;
    }
    return CS_OK;
nomem:
    st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
fail:
    cs_runner_free(r);
    return st;
}

void cs_runner_free(cs_runner *r) {
    cs_forward_free(r->fwd);
    free(r->positions);
    free(r->slots);
    free(r->rows);
    cs_pool_free(r->pool);
    cs_block_alloc_free(&r->blocks);
    cs_kv_cache_free(&r->kv);
    cs_model_free(&r->model);
    cs_model_file_free(r->file);
    memset(r, 0, sizeof *r);
}

void cs_runner_seq_free(cs_runner *r, cs_runner_seq *s) {
    cs_seq_release(&r->blocks, &s->blocks);
    s->len = 0;
}

// One chunk of at most max_batch tokens, as a one-sequence batch.
static void run_chunk(cs_runner *r, cs_runner_seq *s, const int32_t *tokens, int n,
                      cs_logits_mode mode, float *logits) {
    for (int i = 0; i < n; i++) {
        r->positions[i] = s->len + i;
        r->slots[i] = cs_seq_slot(&r->blocks, &s->blocks, s->len + i);
        r->rows[i] = i;
    }
    int32_t q_start[2] = {0, n}, kv_len[1] = {s->len + n}, bt_start[2] = {0, s->blocks.n};
    cs_batch b = {
        .n_tokens = n, .tokens = tokens, .positions = r->positions, .slots = r->slots,
        .attn = {1, q_start, kv_len, bt_start, s->blocks.ids, r->blocks.block_size},
        .n_logits = mode == CS_LOGITS_ALL ? n : mode == CS_LOGITS_LAST ? 1 : 0,
        .logit_rows = mode == CS_LOGITS_LAST ? &r->rows[n - 1] : r->rows,
    };
    cs_forward_run(r->fwd, &b, logits);
    s->len += n;
}

cs_status cs_runner_extend(cs_runner *r, cs_runner_seq *s, const int32_t *tokens, int n,
                           cs_logits_mode mode, float *logits, char *err, size_t errlen) {
    int vocab = r->model.cfg.vocab_size;
    if (n <= 0) return cs_errf(err, errlen, CS_ERR_INVALID, "no tokens to run");
    if (s->len + n > r->max_ctx)
        return cs_errf(err, errlen, CS_ERR_INVALID, "%d tokens exceed the context of %d", s->len + n, r->max_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return cs_errf(err, errlen, CS_ERR_INVALID, "token id %d outside the vocabulary (%d)", tokens[i], vocab);
    if (cs_seq_grow(&r->blocks, &s->blocks, s->len + n) != CS_OK)
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of KV cache blocks");
    for (int done = 0; done < n;) {
        int chunk = n - done < r->max_batch ? n - done : r->max_batch;
        bool last = done + chunk == n;
        cs_logits_mode m = mode == CS_LOGITS_ALL ? CS_LOGITS_ALL : (last ? mode : CS_LOGITS_NONE);
        float *out = mode == CS_LOGITS_ALL ? logits + (size_t)done * vocab : logits;
        run_chunk(r, s, tokens + done, chunk, m, out);
        done += chunk;
    }
    return CS_OK;
}
