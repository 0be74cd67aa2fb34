// Tensor parallelism on the CPU backend: n ranks, each a thread with its shard of the model
// (engine/tp_shard.h), its own KV cache (its KV heads' slice of every block) and its own
// thread pool, all running the same step from the same batch. The o and down projections'
// partial outputs are summed through shared memory: each rank adds up a slice of the
// elements over the ranks, in rank order (so the result never depends on timing), and
// copies the whole sum back. What the GPU ranks do over NCCL, provable on any machine.
//
//     cs_tp_cpu *tp = cs_tp_cpu_init(&model, 2, n_blocks, 16, 512, 4096, 1, err, sizeof err);
//     cs_tp_cpu_run(tp, &batch, logits);   // the same contract as cs_forward_run
//     cs_tp_cpu_free(tp);
#ifndef CS_TP_CPU_H
#define CS_TP_CPU_H

#include "forward.h"

typedef struct cs_tp_cpu cs_tp_cpu;

// Shards m (borrowed: it must outlive the runner) over n_ranks, with KV caches of n_blocks
// blocks of block_size and batches of up to max_tokens tokens and max_ctx positions.
// CS_ERR_INVALID when the model cannot be split so, CS_ERR_NOMEM when memory runs out.
cs_status cs_tp_cpu_init(const cs_model *m, int n_ranks, int n_blocks, int block_size, int max_tokens, int max_ctx,
                         int threads_per_rank, cs_tp_cpu **out, char *err, size_t errlen);
// One step on every rank; rank 0 writes the logits.
void cs_tp_cpu_run(cs_tp_cpu *tp, const cs_batch *b, float *logits);
// cs_kv_cache_copy_rows on every rank's slice.
void cs_tp_cpu_copy_rows(cs_tp_cpu *tp, int dst, int src, int n_rows);
// Rank r's share of the layers' weights, in bytes.
size_t cs_tp_cpu_weight_bytes(const cs_tp_cpu *tp, int r);
void cs_tp_cpu_free(cs_tp_cpu *tp);

#endif
