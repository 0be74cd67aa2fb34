#include "tp_nccl.h"

#include <stdio.h>
#include <stdlib.h>

#include "../common/assert.h"
#include "../common/status.h"

#ifndef CSERVE_HAVE_NCCL
cs_tp_nccl *cs_tp_nccl_init(int n_devices, char *err, size_t errlen) {
    cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "cserve was built without NCCL: no tensor parallelism on GPUs");
    return NULL;
}
void cs_tp_nccl_free(cs_tp_nccl *t) { (void)t; }
void *cs_tp_nccl_rank(cs_tp_nccl *t, int r) { return NULL; }
void cs_tp_nccl_allreduce(void *ctx, uint16_t *x, size_t n, void *stream) { abort(); }
#else
#include <cuda_runtime.h>
#include <nccl.h>

typedef struct rank_comm {
    ncclComm_t comm;
    int device;
} rank_comm;

struct cs_tp_nccl {
    int n;
    rank_comm *ranks;
};

cs_tp_nccl *cs_tp_nccl_init(int n_devices, char *err, size_t errlen) {
    int have = 0;
    if (cudaGetDeviceCount(&have) != cudaSuccess) have = 0;
    if (n_devices < 1 || n_devices > have) {
        cudaGetLastError();
        cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel size %d: this machine has %d GPUs", n_devices, have);
        return NULL;
    }
    cs_tp_nccl *t = calloc(1, sizeof *t);
    ncclComm_t *comms = calloc((size_t)n_devices, sizeof *comms);
    int *devs = calloc((size_t)n_devices, sizeof *devs);
    if (t) t->ranks = calloc((size_t)n_devices, sizeof *t->ranks);
    if (!t || !t->ranks || !comms || !devs) {
        if (t) free(t->ranks);
        free(t), free(comms), free(devs);
        cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n_devices; i++) devs[i] = i;
    ncclResult_t rc = ncclCommInitAll(comms, n_devices, devs);
    if (rc != ncclSuccess) {
        cs_errf(err, errlen, CS_ERR_IO, "NCCL: %s", ncclGetErrorString(rc));
        free(t->ranks), free(t), free(comms), free(devs);
        return NULL;
    }
    t->n = n_devices;
    for (int i = 0; i < n_devices; i++) t->ranks[i] = (rank_comm){comms[i], i};
    free(comms), free(devs);
    return t;
}

void cs_tp_nccl_free(cs_tp_nccl *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) ncclCommDestroy(t->ranks[i].comm);
    free(t->ranks);
    free(t);
}

void *cs_tp_nccl_rank(cs_tp_nccl *t, int r) {
    CS_ASSERT(r >= 0 && r < t->n);
    return &t->ranks[r];
}

void cs_tp_nccl_allreduce(void *ctx, uint16_t *x, size_t n, void *stream) {
    rank_comm *rc = ctx;
    ncclResult_t r = ncclAllReduce(x, x, n, ncclBfloat16, ncclSum, rc->comm, (cudaStream_t)stream);
    if (r != ncclSuccess) {
        fprintf(stderr, "NCCL all-reduce: %s\n", ncclGetErrorString(r));
        abort();
    }
}
#endif
