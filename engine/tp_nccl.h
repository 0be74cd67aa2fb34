// Tensor parallelism on GPUs: NCCL communicators over this process's devices (ncclCommInitAll),
// and the in-place bf16 sum the forward pass calls after its row-parallel projections
// (cs_gpu_forward_set_allreduce). Built when NCCL is found (CSERVE_HAVE_NCCL); otherwise init
// says so.
//
//     cs_tp_nccl *t = cs_tp_nccl_init(2, err, sizeof err);           // devices 0 and 1
//     cs_gpu_forward_set_allreduce(fwd_r, cs_tp_nccl_allreduce, cs_tp_nccl_rank(t, r));
#ifndef CS_TP_NCCL_H
#define CS_TP_NCCL_H

#include <stddef.h>
#include <stdint.h>

typedef struct cs_tp_nccl cs_tp_nccl;

// One communicator per device 0 .. n_devices - 1. NULL with err set on failure.
cs_tp_nccl *cs_tp_nccl_init(int n_devices, char *err, size_t errlen);
// Several processes (nodes): this one's devices 0 .. n_devices - 1 are ranks first_rank ..
// of n_world, joined by the id node 0 made (ncclCommInitRank). Blocks until every rank comes.
cs_tp_nccl *cs_tp_nccl_init_world(int n_devices, int n_world, int first_rank, const unsigned char id[128], char *err,
                                  size_t errlen);
// A fresh id (ncclGetUniqueId): node 0 makes it and hands it out (engine/tp_bootstrap.h).
int cs_tp_nccl_make_id(unsigned char id[128], char *err, size_t errlen);
void cs_tp_nccl_free(cs_tp_nccl *t);
// The context cs_tp_nccl_allreduce takes for rank r.
void *cs_tp_nccl_rank(cs_tp_nccl *t, int r);
// x (n bf16, device memory of rank ctx's device) = its sum over the ranks, on stream.
void cs_tp_nccl_allreduce(void *ctx, uint16_t *x, size_t n, void *stream);

#endif
