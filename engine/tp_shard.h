// Megatron-style tensor-parallel sharding of a model over n ranks, the same for every backend.
//
// Attention is split by heads, so that each rank's heads attend to its own KV heads: with n
// at most the number of KV heads, each rank takes whole GQA groups (a KV head and the query
// heads that read it); with more ranks than KV heads, each group's query heads are split over
// the ranks given to it, and its KV head is replicated on them. Ranges are as even as those
// rules allow (SmolLM2's 9 heads in 3 groups: 3 + 6 over 2 ranks, 3 + 3 + 1 + 2 over 4).
// q/k/v and gate/up are column-parallel (a rank's output features are a contiguous range of
// rows, used in place), o and down row-parallel (a rank's input features: their columns are
// copied out, cut on the quantisation blocks); each rank's o and down outputs are partial
// sums that an all-reduce adds up. The MLP's hidden features are split in whole blocks of
// the down projection's type. Norms, the token embedding, lm_head and the RoPE table are
// shared by every rank: the CPU ranks share memory, and splitting the vocabulary would add a
// gather of logits to every step for the one matrix that only rank 0 multiplies.
#ifndef CS_TP_SHARD_H
#define CS_TP_SHARD_H

#include "../common/status.h"
#include "model.h"

typedef struct cs_tp_part {
    int head0, n_head;   // query heads [head0, head0 + n_head)
    int kv0, n_kv;       // KV heads [kv0, kv0 + n_kv)
    int ffn0, n_ffn;     // hidden features of the MLP
} cs_tp_part;

// Rank r's part of a model of config c over n ranks; false (with a reason) when the model
// cannot be split so (more ranks than query heads, or than MLP blocks).
bool cs_tp_part_of(const cs_model_config *c, int ffn_unit, int n, int r, cs_tp_part *p, char *err, size_t errlen);

// Rank r's model: its config (heads, KV heads, hidden features of its part), its rows of
// q/k/v/gate/up and biases in place in m, its own copies of o's and down's columns, and m's
// norms, embedding, lm_head and RoPE table. m must outlive it; cs_model_free frees only what
// is the shard's own. The MLP is cut on whole blocks of down's type and on multiples of
// min_ffn_unit (the GPU ranks': CS_TP_GPU_FFN_UNIT).
cs_status cs_tp_shard(const cs_model *m, int n, int r, int min_ffn_unit, cs_model *shard, char *err, size_t errlen);

// GPU ranks cut the MLP on 64 features: whole 64-column chunks of the packed int4 / int8
// layout, 16-byte rows for the GEMV and SwiGLU kernels.
#define CS_TP_GPU_FFN_UNIT 64

// Bytes of the layers' matrices a shard reads (its slices of every projection).
size_t cs_tp_shard_layer_bytes(const cs_model *shard);

#endif
