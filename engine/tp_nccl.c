#include "tp_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "../common/status.h"

#ifndef CSERVE_HAVE_NCCL
cs_tp_nccl *cs_tp_nccl_init(int n_devices, char *err, size_t errlen) {
    cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "cserve was built without NCCL: no tensor parallelism on GPUs");
    return NULL;
}
cs_tp_nccl *cs_tp_nccl_init_world(int n_devices, int n_world, int first_rank, const unsigned char id[128], char *err,
                                  size_t errlen) {
    return cs_tp_nccl_init(n_devices, err, errlen);
}
int cs_tp_nccl_make_id(unsigned char id[128], char *err, size_t errlen) {
    cs_tp_nccl_init(1, err, errlen);
    return -1;
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

_Static_assert(sizeof(ncclUniqueId) == 128, "the bootstrap hands out 128-byte ids");

// The communicators of devices 0 .. n - 1: all in one process (id NULL), or ranks first ..
// first + n - 1 of n_world.
static cs_tp_nccl *init_comms(int n, int n_world, int first, const unsigned char *id, char *err, size_t errlen) {
    int have = 0;
    if (cudaGetDeviceCount(&have) != cudaSuccess) have = 0;
    if (n < 1 || n > have) {
        cudaGetLastError();
        cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel: %d GPUs asked for, this machine has %d", n, have);
        return NULL;
    }
    cs_tp_nccl *t = calloc(1, sizeof *t);
    ncclComm_t *comms = calloc((size_t)n, sizeof *comms);
    if (t) t->ranks = calloc((size_t)n, sizeof *t->ranks);
    if (!t || !t->ranks || !comms) {
        if (t) free(t->ranks);
        free(t), free(comms);
        cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ncclResult_t rc;
    if (!id) {
        int *devs = malloc((size_t)n * sizeof *devs);
        if (!devs) {
            rc = ncclSystemError;
        } else {
            for (int i = 0; i < n; i++) devs[i] = i;
            rc = ncclCommInitAll(comms, n, devs);
            free(devs);
        }
    } else { // one thread joins for all its devices: a group, or the first would wait forever
        ncclUniqueId uid;
        memcpy(&uid, id, sizeof uid);
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) dev = 0;
        rc = ncclGroupStart();
        for (int i = 0; i < n && rc == ncclSuccess; i++)
            rc = cudaSetDevice(i) != cudaSuccess ? ncclUnhandledCudaError
                                                 : ncclCommInitRank(&comms[i], n_world, uid, first + i);
        ncclResult_t end = ncclGroupEnd();
        if (rc == ncclSuccess) rc = end;
        if (cudaSetDevice(dev) != cudaSuccess && rc == ncclSuccess) rc = ncclUnhandledCudaError;
    }
    if (rc != ncclSuccess) {
        cs_errf(err, errlen, CS_ERR_IO, "NCCL: %s", ncclGetErrorString(rc));
        for (int i = 0; i < n; i++) // the ones made before the failure
            if (comms[i]) ncclCommAbort(comms[i]);
        free(t->ranks), free(t), free(comms);
        return NULL;
    }
    t->n = n;
    for (int i = 0; i < n; i++) t->ranks[i] = (rank_comm){comms[i], i};
    free(comms);
    return t;
}

cs_tp_nccl *cs_tp_nccl_init(int n_devices, char *err, size_t errlen) {
    return init_comms(n_devices, n_devices, 0, NULL, err, errlen);
}

cs_tp_nccl *cs_tp_nccl_init_world(int n_devices, int n_world, int first_rank, const unsigned char id[128], char *err,
                                  size_t errlen) {
    if (n_world < n_devices || first_rank < 0 || first_rank + n_devices > n_world) {
        cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel: ranks %d..%d of %d", first_rank,
                first_rank + n_devices - 1, n_world);
        return NULL;
    }
    return init_comms(n_devices, n_world, first_rank, id, err, errlen);
}

int cs_tp_nccl_make_id(unsigned char id[128], char *err, size_t errlen) {
    ncclUniqueId uid;
    ncclResult_t rc = ncclGetUniqueId(&uid);
    if (rc != ncclSuccess) {
        cs_errf(err, errlen, CS_ERR_IO, "NCCL: %s", ncclGetErrorString(rc));
        return -1;
    }
    memcpy(id, &uid, sizeof uid);
    return 0;
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
