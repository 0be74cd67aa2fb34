// One forward pass over a ragged batch: the tokens of several sequences, each continuing
// from what its KV blocks already hold, with logits computed only for the rows asked for.
//
//     cs_forward *f = cs_forward_init(&model, &kv, 512, 4096, pool, err, sizeof err);
//     cs_batch b = {...};                     // tokens, positions, per-sequence KV
//     cs_forward_run(f, &b, logits);          // logits (b.n_logits, vocab)
//     cs_forward_free(f);
#ifndef CS_FORWARD_H
#define CS_FORWARD_H

#include "../common/thread_pool.h"
#include "../kernels/kernels.h"
#include "kv_cache.h"
#include "model.h"

typedef struct cs_batch {
    int n_tokens;
    const int32_t *tokens;    // (n_tokens), grouped by sequence
    const int32_t *positions; // (n_tokens)
    const int32_t *slots;     // (n_tokens) KV slot each token's K/V is written to
    cs_attn_batch attn;       // the sequences: token ranges, KV lengths, block tables
    int n_logits;
    const int32_t *logit_rows; // (n_logits) token indices whose logits are returned
} cs_batch;

typedef struct cs_forward cs_forward;

// Sizes every buffer for batches of at most max_tokens tokens and max_ctx positions: nothing
// is allocated per step. The model, kv and pool are borrowed.
cs_forward *cs_forward_init(const cs_model *m, cs_kv_cache *kv, int max_tokens, int max_ctx,
                            cs_pool *pool, char *err, size_t errlen);
void cs_forward_free(cs_forward *f);
int cs_forward_max_tokens(const cs_forward *f);

// Runs the batch; writes (n_logits, vocab) fp32 logits (none when logits is NULL). The batch
// must respect the limits given at init (asserted: the scheduler guarantees them).
void cs_forward_run(cs_forward *f, const cs_batch *b, float *logits);

// Tensor parallelism (engine/tp_cpu.h): the model is one rank's shard, and fn(ctx, x, n) sums
// x (n floats) over the ranks in place; it is called on the o and down projections' partial
// outputs, before they join the residual stream.
void cs_forward_set_allreduce(cs_forward *f, void (*fn)(void *ctx, float *x, size_t n), void *ctx);

#endif
