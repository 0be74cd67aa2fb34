// The forward pass on the GPU: the same ragged batches as engine/forward.h, over a bf16
// paged KV pool in device memory.
//
//     cs_gpu_forward_params p = {.max_tokens = 512, .max_seqs = 64, .max_ctx = 8192,
//                                .block_size = 16, .memory_utilization = 0.90};
//     cs_gpu_forward *f = cs_gpu_forward_init(&gpu_model, &p, err, sizeof err);
//     int n_blocks = cs_gpu_forward_n_blocks(f);      // for the block manager
//     cs_gpu_forward_run(f, &batch, logits);         // logits (n_logits, vocab) on the host
//     cs_gpu_forward_run_greedy(f, &batch, ids);     // or argmax on the GPU: ids (n_logits)
//     cs_gpu_forward_launch_sample(f, &next, ...);   // or launch a step, build the next one
//     cs_gpu_forward_wait_sample(f, &out);           // meanwhile, then take the results
//     cs_gpu_forward_free(f);
//
// Every buffer (activations, batch description, attention and sampling workspaces, the KV
// pool) is allocated at init; a step allocates nothing. Decode steps (one token per sequence)
// run as CUDA graphs, captured per (batch size, power-of-two bound on the context) the second
// time that shape is seen, unless enforce_eager.
#ifndef CS_GPU_FORWARD_H
#define CS_GPU_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "gpu_model.h"
#include "../kernels/cuda/cuda_kernels.h"

typedef struct cs_gpu_forward_params {
    int max_tokens;            // tokens in one step
    int max_seqs;              // sequences in one step
    int max_ctx;               // positions per sequence (<= the model's RoPE table)
    int block_size;            // KV slots per block
    int n_blocks;              // > 0: exactly this many KV blocks; 0: from memory_utilization
    double memory_utilization; // share of the device memory the process may hold, all told
    bool enforce_eager;        // never use CUDA graphs
    bool layers_only;          // a tensor-parallel rank other than 0: no logits or sampler buffers
    bool cublas_only;          // bf16 projections through cuBLAS at every size, not the GEMV at
                               // small ones (benchmarks: what the GEMV gains)
} cs_gpu_forward_params;

typedef struct cs_gpu_forward cs_gpu_forward;

// The model is borrowed and must outlive f. Fails (CS_ERR_NOMEM) when not even one sequence of
// max_ctx positions fits in the KV pool.
cs_gpu_forward *cs_gpu_forward_init(const cs_gpu_model *g, const cs_gpu_forward_params *p, char *err,
                                    size_t errlen);
void cs_gpu_forward_free(cs_gpu_forward *f);
int cs_gpu_forward_n_blocks(const cs_gpu_forward *f);
// Tensor parallelism (engine/tp_nccl.h): the model is one rank's shard (engine/tp_shard.h),
// and fn(ctx, x, n, stream) sums x (n bf16, device) over the ranks in place on stream; it is
// called on the o and down projections' outputs, inside captured graphs too.
void cs_gpu_forward_set_allreduce(cs_gpu_forward *f, void (*fn)(void *ctx, uint16_t *x, size_t n, void *stream),
                                  void *ctx);
size_t cs_gpu_forward_kv_bytes(const cs_gpu_forward *f); // the KV pool, K and V, all layers
int cs_gpu_forward_graphs(const cs_gpu_forward *f);      // CUDA graphs captured so far

// Copies n KV slots (every layer, K and V) from slot src to slot dst: copy-on-write of a
// shared partial block.
void cs_gpu_forward_copy_rows(cs_gpu_forward *f, int dst, int src, int n);

// Fills the whole KV pool with seeded values (benchmarks that time decode at a given context
// without computing the prefill first).
void cs_gpu_forward_fill_kv(cs_gpu_forward *f, uint64_t seed);

// Runs the batch; writes (n_logits, vocab) fp32 logits to host memory.
void cs_gpu_forward_run(cs_gpu_forward *f, const cs_batch *b, float *logits);
// Runs the batch and takes the argmax of each logits row on the GPU; ids (n_logits) to host.
void cs_gpu_forward_run_greedy(cs_gpu_forward *f, const cs_batch *b, int32_t *ids);

// Tensor parallelism, ranks other than 0: the layers only (and so their all-reduces), no
// logits; the same graphs as the other ranks' steps for decode batches.
void cs_gpu_forward_run_layers(cs_gpu_forward *f, const cs_batch *b);

// What the GPU sampler returned for a step's n_logits rows, in f's pinned memory: ids (n), logprob (n), top_ids and top_lp (n, CS_CUDA_MAX_LOGPROBS).
typedef struct cs_gpu_sampled {
    const int32_t *ids;
    const float *logprob;
    const int32_t *top_ids;
    const float *top_lp;
} cs_gpu_sampled;

// Grammar masks of a step (host): mask_row (n_logits) names each row's bitset in bits
// ((vocab + 31) / 32 words each, n_masks of them), or -1 for an unconstrained row.
typedef struct cs_gpu_masks {
    const uint32_t *bits;
    const int32_t *mask_row;
    int n_masks;
} cs_gpu_masks;

// Runs the batch and samples every logits row on the GPU with params (n_logits, host; at most
// max_seqs rows), the penalty entries they index (n_pen, host) and the grammar masks (NULL:
// none): only the sampled ids and logprobs come back (kernels/cuda/cuda_kernels.h).
void cs_gpu_forward_run_sample(cs_gpu_forward *f, const cs_batch *b, const cs_cuda_sample_params *params,
                               const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                               int n_pen, const cs_gpu_masks *masks, cs_gpu_sampled *out);
// The same in two halves: launch enqueues the step and returns (params NULL: greedy, no
// logprobs); wait returns the oldest launched step's results (valid until the step after
// next is launched). At most two steps are launched and not waited for. A step's token ids
// may be placeholders, -1 - row: the id the last sampling step sampled in that row, resolved
// on the device (async scheduling: the next step is launched before those ids are back). Its
// arguments are read by the time launch returns.
void cs_gpu_forward_launch_sample(cs_gpu_forward *f, const cs_batch *b, const cs_cuda_sample_params *params,
                                  const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                                  int n_pen, const cs_gpu_masks *masks);
void cs_gpu_forward_wait_sample(cs_gpu_forward *f, cs_gpu_sampled *out);

#endif
