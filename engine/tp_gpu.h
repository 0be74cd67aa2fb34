// The CUDA backend's ranks: the model split over this process's GPUs (engine/tp_shard.h),
// each GPU with its shard, its forward pass (stream, cuBLAS handle, its KV heads' slice of
// every block) and, past the first, a worker thread; every rank runs the same step from the
// same batch, and the row-parallel projections' partial sums meet in an NCCL all-reduce.
// Rank 0 runs in the caller's thread and alone computes logits and samples, so only the
// sampled ids (or the asked-for logits) leave the GPUs. With one rank and no NCCL this is
// the plain single-GPU path.
//
// Across nodes (world set), node 0 runs the scheduler and this process's ranks; the others
// run only layers: engine/tp_node.h carries each step's batch to them.
//
//     cs_tp_gpu_params p = {.n_ranks = 2, .fwd = fwd_params, .model = &host_model};
//     cs_tp_gpu *t;
//     if (cs_tp_gpu_init(&p, &t, err, sizeof err) != CS_OK) { ... }
//     cs_tp_gpu_run_sample(t, &batch, ...);   // the contract of cs_gpu_forward_run_sample
//     cs_tp_gpu_free(t);
#ifndef CS_TP_GPU_H
#define CS_TP_GPU_H

#include <stdbool.h>

#include "gpu_forward.h"
#include "tp_bootstrap.h"

typedef struct cs_tp_gpu_params {
    int n_ranks;                  // GPUs of this process: devices 0 .. n_ranks - 1
    bool nccl;                    // all-reduce through NCCL even with one rank (the path's test)
    cs_gpu_forward_params fwd;    // each rank's; n_blocks 0: each sizes its pool, all use the least
    const cs_model *model;        // host weights, sharded and uploaded (borrowed during init), or
    const cs_model_config *dummy; // dummy weights made on each device (cs_gpu_model_dummy_shard)
    uint64_t dummy_seed;
    int dummy_max_pos, quant_bits, quant_group;
    const cs_tp_world *world;     // several nodes (NULL: one), each with n_ranks GPUs ...
    const unsigned char *nccl_id; // ... joined by node 0's id (cs_tp_nccl_make_id)
    const int *peers;             // node 0: the other nodes' step connections (taken over: closed
                                  // by free); init waits for each to be READY ...
    int peer_timeout_ms;          // ... this long at most, with its model and limits the same
    int node0_fd;                 // another node (world set, node_rank > 0): its step connection
                                  // to node 0, which it must give, watched while init runs (node
                                  // 0 gone or giving up ends the process); ignored on node 0
} cs_tp_gpu_params;

typedef struct cs_tp_gpu cs_tp_gpu;

// CUDA devices this process sees; 0 without a driver, a device, or CUDA in the build.
int cs_tp_gpu_device_count(void);

// CS_ERR_INVALID when the model cannot be split so or the machine lacks the GPUs,
// CS_ERR_NOMEM when the weights or one sequence's KV do not fit, CS_ERR_IO when NCCL fails.
cs_status cs_tp_gpu_init(const cs_tp_gpu_params *p, cs_tp_gpu **out, char *err, size_t errlen);
void cs_tp_gpu_free(cs_tp_gpu *t);

int cs_tp_gpu_n_blocks(const cs_tp_gpu *t);           // the same on every rank
size_t cs_tp_gpu_block_bytes(const cs_tp_gpu *t);     // one block's K and V, all ranks of this node
size_t cs_tp_gpu_weight_bytes(const cs_tp_gpu *t, int r); // rank r's device weights
size_t cs_tp_gpu_step_bytes(const cs_tp_gpu *t, int r);   // what rank r's decode step reads
int cs_tp_gpu_graphs(const cs_tp_gpu *t);                 // rank 0's captured graphs
const cs_model_config *cs_tp_gpu_config(const cs_tp_gpu *t, int r); // rank r's shard's shape
// Fills every rank's KV pool with seeded values (benchmarks: decode at a context without
// computing its prefill).
void cs_tp_gpu_fill_kv(cs_tp_gpu *t, uint64_t seed);

// The contracts of cs_gpu_forward_run, _run_greedy and _run_sample (rank 0's results); the
// other ranks run the layers of the same batch.
void cs_tp_gpu_run(cs_tp_gpu *t, const cs_batch *b, float *logits);
void cs_tp_gpu_run_greedy(cs_tp_gpu *t, const cs_batch *b, int32_t *ids);
void cs_tp_gpu_run_sample(cs_tp_gpu *t, const cs_batch *b, const cs_cuda_sample_params *params,
                          const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt, int n_pen,
                          const cs_gpu_masks *masks, cs_gpu_sampled *out);
// The two halves of cs_tp_gpu_run_sample (cs_gpu_forward_launch_sample's contract). With
// several ranks launch returns once the other ranks are done, and placeholders are refused:
// only rank 0 holds the sampled ids.
void cs_tp_gpu_launch_sample(cs_tp_gpu *t, const cs_batch *b, const cs_cuda_sample_params *params,
                             const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                             int n_pen, const cs_gpu_masks *masks);
void cs_tp_gpu_wait_sample(cs_tp_gpu *t, cs_gpu_sampled *out);
// cs_gpu_forward_copy_rows on every rank (their KV slices).
void cs_tp_gpu_copy_rows(cs_tp_gpu *t, int dst, int src, int n);

// A node other than 0: says READY on fd (its step connection), then runs every step node 0
// sends until it says STOP (CS_OK) or the connection or a message fails (err says why).
cs_status cs_tp_gpu_follow(cs_tp_gpu *t, int fd, char *err, size_t errlen);

#endif
