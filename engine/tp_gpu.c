#include "tp_gpu.h"

#include <stdlib.h>

#ifndef CSERVE_HAVE_CUDA
cs_status cs_tp_gpu_init(const cs_tp_gpu_params *p, cs_tp_gpu **out, char *err, size_t errlen) {
    *out = NULL;
    return cs_errf(err, errlen, CS_ERR_INVALID, "cserve was built without CUDA");
}
int cs_tp_gpu_device_count(void) { return 0; }
void cs_tp_gpu_free(cs_tp_gpu *t) { (void)t; }
int cs_tp_gpu_n_blocks(const cs_tp_gpu *t) { return 0; }
size_t cs_tp_gpu_block_bytes(const cs_tp_gpu *t) { return 0; }
size_t cs_tp_gpu_weight_bytes(const cs_tp_gpu *t, int r) { return 0; }
size_t cs_tp_gpu_step_bytes(const cs_tp_gpu *t, int r) { return 0; }
int cs_tp_gpu_graphs(const cs_tp_gpu *t) { return 0; }
const cs_model_config *cs_tp_gpu_config(const cs_tp_gpu *t, int r) { abort(); }
void cs_tp_gpu_fill_kv(cs_tp_gpu *t, uint64_t seed) { abort(); }
void cs_tp_gpu_run(cs_tp_gpu *t, const cs_batch *b, float *logits) { abort(); }
void cs_tp_gpu_run_greedy(cs_tp_gpu *t, const cs_batch *b, int32_t *ids) { abort(); }
void cs_tp_gpu_run_sample(cs_tp_gpu *t, const cs_batch *b, const cs_cuda_sample_params *params,
                          const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt, int n_pen,
                          const cs_gpu_masks *masks, cs_gpu_sampled *out) { abort(); }
void cs_tp_gpu_launch_sample(cs_tp_gpu *t, const cs_batch *b, const cs_cuda_sample_params *params,
                             const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                             int n_pen, const cs_gpu_masks *masks) { abort(); }
void cs_tp_gpu_wait_sample(cs_tp_gpu *t, cs_gpu_sampled *out) { abort(); }
void cs_tp_gpu_copy_rows(cs_tp_gpu *t, int dst, int src, int n) { abort(); }
cs_status cs_tp_gpu_follow(cs_tp_gpu *t, int fd, char *err, size_t errlen) { abort(); }
#else
#include <cuda_runtime.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../common/assert.h"
#include "tp_nccl.h"
#include "tp_node.h"
#include "tp_shard.h"

enum { JOB_LAYERS, JOB_COPY, JOB_STOP };

typedef struct rank {
    struct cs_tp_gpu *t;
    int r;
    cs_gpu_model g;
    cs_gpu_forward *f;
    pthread_t thread;
    bool started;
} rank;

struct cs_tp_gpu {
    int n;            // this process's ranks
    bool head;        // rank 0 is the world's first: it computes logits
    rank *ranks;
    cs_tp_nccl *nccl; // NULL: one rank, the plain path
    int n_blocks;
    cs_gpu_forward_params fwd;
    int *peers, n_peers;    // node 0 of several: the other nodes' step connections
    int node0_fd;           // another node: its step connection to node 0 (watched at start)
    bool failed;            // node 0 gave up starting: its STOP says so
    uint64_t fingerprint;   // the model and settings every node must share
    cs_tp_watch *watch;     // several nodes: notices a peer gone while a step waits on it
    pthread_barrier_t step; // the caller and ranks 1..: a job starts, a job ends
    int job;
    const cs_batch *batch;
    int copy_dst, copy_src, copy_n;
};

int cs_tp_gpu_device_count(void) { return cs_cuda_device_count(); }

static void set_device(int r) {
    cudaError_t e = cudaSetDevice(r);
    if (e != cudaSuccess) {
        fprintf(stderr, "tensor parallel: cannot select GPU %d: %s\n", r, cudaGetErrorString(e));
        abort();
    }
}

static void do_job(rank *k) {
    cs_tp_gpu *t = k->t;
    if (t->job == JOB_LAYERS) cs_gpu_forward_run_layers(k->f, t->batch);
    else cs_gpu_forward_copy_rows(k->f, t->copy_dst, t->copy_src, t->copy_n);
}

static void *rank_main(void *arg) {
    rank *k = arg;
    set_device(k->r);
    for (;;) {
        pthread_barrier_wait(&k->t->step);
        if (k->t->job == JOB_STOP) break;
        do_job(k);
        pthread_barrier_wait(&k->t->step);
    }
    return NULL;
}

// A node gone leaves every rank waiting in an all-reduce that cannot complete: the model is
// split over it, so nothing can be served without it. The process ends rather than hang.
static void node_gone(int node, const char *why) {
    fprintf(stderr, "tensor parallel: node %d is gone (%s); the model cannot run without it: exiting\n", node, why);
    _exit(1);
}

static void watch_gone(void *ctx, int node, const char *why) {
    (void)ctx;
    node_gone(node, why);
}

static void watch_start(cs_tp_gpu *t, const int *fds, int n, int first_node, bool starting) {
    t->watch = cs_tp_watch_start(fds, n, first_node, starting, watch_gone, NULL);
}

static void watch_stop(cs_tp_gpu *t) {
    cs_tp_watch_stop(t->watch);
    t->watch = NULL;
}

// A node that cannot be told the step would leave every rank waiting in an all-reduce.
static void tell_peers(cs_tp_gpu *t, int job) {
    for (int i = 0; i < t->n_peers; i++) {
        bool ok = job == JOB_LAYERS ? cs_tp_node_send_batch(t->peers[i], t->batch)
                  : job == JOB_COPY ? cs_tp_node_send_copy(t->peers[i], t->copy_dst, t->copy_src, t->copy_n)
                                    : cs_tp_node_send_stop(t->peers[i], t->failed);
        if (!ok && job != JOB_STOP) node_gone(i + 1, strerror(errno));
    }
}

// Ranks 1.. (and the other nodes) start job; the caller does rank 0's part between begin and end.
static void begin(cs_tp_gpu *t, int job) {
    t->job = job;
    tell_peers(t, job);
    if (t->n > 1) pthread_barrier_wait(&t->step);
    set_device(0);
}
static void end(cs_tp_gpu *t) {
    if (t->n > 1) pthread_barrier_wait(&t->step);
}

void cs_tp_gpu_free(cs_tp_gpu *t) {
    if (!t) return;
    watch_stop(t); // before STOP: the peers close their ends once they have it
    if (t->n_peers) tell_peers(t, JOB_STOP);
    for (int i = 0; i < t->n_peers; i++)
        if (t->peers[i] >= 0) close(t->peers[i]);
    free(t->peers);
    if (t->n > 1 && t->ranks[t->n - 1].started) { // the threads exist only when all started
        t->job = JOB_STOP;
        pthread_barrier_wait(&t->step);
        for (int r = 1; r < t->n; r++) pthread_join(t->ranks[r].thread, NULL);
    }
    for (int r = 0; r < t->n; r++) {
        set_device(r);
        cs_gpu_forward_free(t->ranks[r].f);
        cs_gpu_model_free(&t->ranks[r].g);
    }
    set_device(0);
    cs_tp_nccl_free(t->nccl);
    if (t->n > 1) pthread_barrier_destroy(&t->step);
    free(t->ranks);
    free(t);
}

// Rank r (of the world's n_world, this process's local) gets its weights on its device.
// Only the world's first rank computes logits: the others go without an untied lm_head.
static cs_status load_rank(const cs_tp_gpu_params *p, rank *k, int world_rank, int n_world, char *err, size_t errlen) {
    bool lm_head = world_rank == 0;
    if (p->dummy)
        return cs_gpu_model_dummy_shard(&k->g, p->dummy, p->dummy_seed, p->dummy_max_pos, p->quant_bits,
                                        p->quant_group, n_world, world_rank, lm_head, err, errlen);
    if (n_world == 1) return cs_gpu_model_upload(&k->g, p->model, err, errlen);
    cs_model shard;
    cs_status st = cs_tp_shard(p->model, n_world, world_rank, CS_TP_GPU_FFN_UNIT, &shard, err, errlen);
    if (st != CS_OK) return st;
    st = cs_gpu_model_upload_rank(&k->g, &shard, lm_head, err, errlen);
    cs_model_free(&shard); // its own copies of o's and down's columns
    return st;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

// What every node's model must agree on: the shape, the weights' formats, the dummy seed or
// the first bytes of the embedding and of the last down projection (the same shape from
// another checkpoint), the quantisation. A different model would run without an error and
// give wrong tokens.
static uint64_t fingerprint(const cs_tp_gpu_params *p) {
    const cs_model_config *c = p->model ? &p->model->cfg : p->dummy;
    int32_t shape[] = {c->arch, c->n_layer, c->dim, c->ffn_dim, c->n_head, c->n_head_kv, c->head_dim, c->vocab_size,
                       c->rope_dim, c->rope_layout, c->rope_scaling, c->tied_embeddings, c->attn_bias,
                       p->quant_bits, p->quant_group, p->dummy != NULL};
    float f[] = {c->rms_eps, c->rope_theta, c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor};
    uint64_t h = fnv(0xcbf29ce484222325ull, shape, sizeof shape);
    h = fnv(h, f, sizeof f);
    if (p->dummy) return fnv(h, &p->dummy_seed, sizeof p->dummy_seed);
    const cs_weight *ws[] = {&p->model->tok_embd, &p->model->layers[c->n_layer - 1].w_down};
    for (int i = 0; i < 2; i++) {
        size_t row;
        cs_dtype_row_bytes(ws[i]->type, ws[i]->cols, &row);
        int32_t type = ws[i]->type;
        h = fnv(h, &type, sizeof type);
        h = fnv(h, ws[i]->data, row < 256 ? row : 256);
    }
    for (int l = 0; l < c->n_layer; l++) {
        const cs_layer *L = &p->model->layers[l];
        int32_t types[] = {L->wq.type, L->wk.type, L->wv.type, L->wo.type, L->w_gate.type, L->w_up.type, L->w_down.type};
        h = fnv(h, types, sizeof types);
    }
    return h;
}

// This node's limits, as a follower checks node 0's steps against them.
static cs_tp_limits limits_of(const cs_tp_gpu *t) {
    return (cs_tp_limits){.max_tokens = t->fwd.max_tokens, .max_seqs = t->fwd.max_seqs, .max_ctx = t->fwd.max_ctx,
                          .block_size = t->fwd.block_size, .n_blocks = t->n_blocks,
                          .vocab = t->ranks[0].g.cfg.vocab_size, .rope_max_pos = t->ranks[0].g.rope_max_pos};
}

// An init that fails before the ranks took the peers' connections closes them.
static cs_status fail_early(const cs_tp_gpu_params *p, cs_status st) {
    for (int i = 0; p->peers && p->world && i < p->world->nnodes - 1; i++) close(p->peers[i]);
    return st;
}

cs_status cs_tp_gpu_init(const cs_tp_gpu_params *p, cs_tp_gpu **out, char *err, size_t errlen) {
    *out = NULL;
    if (p->n_ranks < 1 || p->n_ranks > 64 || (!p->model == !p->dummy) || (!p->world != !p->nccl_id))
        return fail_early(p, cs_errf(err, errlen, CS_ERR_INVALID, "invalid tensor-parallel parameters"));
    int n_world = p->world ? p->world->nnodes * p->n_ranks : p->n_ranks;
    int first = p->world ? p->world->node_rank * p->n_ranks : 0;
    int have = cs_cuda_device_count();
    if (p->n_ranks > have)
        return fail_early(p, cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel size %d: this machine has %d GPUs",
                                     p->n_ranks, have));
    cs_tp_gpu *t = calloc(1, sizeof *t);
    if (t) t->ranks = calloc((size_t)p->n_ranks, sizeof *t->ranks);
    if (!t || !t->ranks) {
        free(t);
        return fail_early(p, cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory"));
    }
    t->n = p->n_ranks;
    t->head = first == 0;
    t->fwd = p->fwd;
    t->fingerprint = fingerprint(p);
    if (p->peers && t->head) {
        t->n_peers = p->world->nnodes - 1;
        if (!(t->peers = malloc(sizeof *t->peers * (size_t)(t->n_peers ? t->n_peers : 1)))) {
            free(t->ranks);
            free(t);
            return fail_early(p, cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory"));
        }
        memcpy(t->peers, p->peers, sizeof *t->peers * (size_t)t->n_peers);
    }
    if (t->n > 1 && pthread_barrier_init(&t->step, NULL, (unsigned)t->n) != 0) {
        free(t->peers);
        free(t->ranks);
        free(t);
        return fail_early(p, cs_errf(err, errlen, CS_ERR_NOMEM, "cannot make a barrier"));
    }
    // from here on a node gone ends this process: NCCL's init would wait for it forever
    t->node0_fd = p->node0_fd;
    if (t->n_peers) watch_start(t, t->peers, t->n_peers, 1, false);
    else if (p->world && !t->head && p->node0_fd >= 0) watch_start(t, &t->node0_fd, 1, 0, true);
    cs_status st = CS_OK;
    // NCCL first, so that what its init allocates is not counted as free for the KV pools
    // (newer NCCL connects lazily at the first all-reduce: the pools' headroom covers that)
    if (n_world > 1 || p->nccl) {
        t->nccl = p->world ? cs_tp_nccl_init_world(t->n, n_world, first, p->nccl_id, err, errlen)
                           : cs_tp_nccl_init(t->n, err, errlen);
        if (!t->nccl) st = CS_ERR_IO;
    }
    for (int r = 0; r < t->n && st == CS_OK; r++) {
        rank *k = &t->ranks[r];
        k->t = t;
        k->r = r;
        set_device(r);
        st = load_rank(p, k, first + r, n_world, err, errlen);
        cs_gpu_forward_params fp = p->fwd;
        fp.layers_only = !(t->head && r == 0);
        if (st == CS_OK && !(k->f = cs_gpu_forward_init(&k->g, &fp, err, errlen))) st = CS_ERR_NOMEM;
        if (st == CS_OK && t->nccl) cs_gpu_forward_set_allreduce(k->f, cs_tp_nccl_allreduce, cs_tp_nccl_rank(t->nccl, r));
        if (st == CS_OK && (r == 0 || cs_gpu_forward_n_blocks(k->f) < t->n_blocks)) t->n_blocks = cs_gpu_forward_n_blocks(k->f);
    }
    set_device(0);
    cs_tp_msg m = {0};
    cs_tp_limits ours = st == CS_OK ? limits_of(t) : (cs_tp_limits){0};
    for (int i = 0; i < t->n_peers && st == CS_OK; i++) { // each node has the same KV blocks as the least
        char why[200] = "";
        struct timeval tv = {.tv_sec = p->peer_timeout_ms / 1000, .tv_usec = p->peer_timeout_ms % 1000 * 1000};
        setsockopt(t->peers[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        cs_status rs = cs_tp_node_recv(t->peers[i], &m, NULL, why, sizeof why);
        setsockopt(t->peers[i], SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){0}, sizeof(struct timeval));
        if (rs != CS_OK || m.kind != CS_TP_MSG_READY)
            st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel: node %d did not start (see its log): %s", i + 1,
                         rs != CS_OK ? why : "it did not say READY");
        else if (cs_tp_limits_differ(&m.peer, &ours, why, sizeof why))
            st = cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel: node %d was started with other settings: %s",
                         i + 1, why);
        else if (m.fingerprint != t->fingerprint)
            st = cs_errf(err, errlen, CS_ERR_INVALID,
                         "tensor parallel: node %d has another model (shape, weights, quantisation or dummy seed)",
                         i + 1);
        else if (m.peer.n_blocks < t->n_blocks)
            t->n_blocks = m.peer.n_blocks;
    }
    cs_tp_msg_free(&m);
    if (st != CS_OK) { // no thread started yet: free takes every rank's partial state
        t->failed = true;
        cs_tp_gpu_free(t);
        return st;
    }
    for (int r = 1; r < t->n; r++) {
        if (pthread_create(&t->ranks[r].thread, NULL, rank_main, &t->ranks[r]) != 0) {
            // the started ones wait at the step barrier, which can never fill: end the process
            // rather than leave them
            CS_ASSERT(0 && "cannot start a tensor-parallel rank thread");
        }
        t->ranks[r].started = true;
    }
    *out = t;
    return CS_OK;
}

int cs_tp_gpu_n_blocks(const cs_tp_gpu *t) { return t->n_blocks; }

size_t cs_tp_gpu_block_bytes(const cs_tp_gpu *t) {
    size_t bytes = 0;
    for (int r = 0; r < t->n; r++)
        bytes += cs_gpu_forward_kv_bytes(t->ranks[r].f) / (size_t)cs_gpu_forward_n_blocks(t->ranks[r].f);
    return bytes;
}

size_t cs_tp_gpu_weight_bytes(const cs_tp_gpu *t, int r) { return t->ranks[r].g.weight_bytes; }
size_t cs_tp_gpu_step_bytes(const cs_tp_gpu *t, int r) { return cs_gpu_model_step_bytes(&t->ranks[r].g); }
int cs_tp_gpu_graphs(const cs_tp_gpu *t) { return cs_gpu_forward_graphs(t->ranks[0].f); }
const cs_model_config *cs_tp_gpu_config(const cs_tp_gpu *t, int r) { return &t->ranks[r].g.cfg; }

void cs_tp_gpu_fill_kv(cs_tp_gpu *t, uint64_t seed) {
    for (int r = 0; r < t->n; r++) {
        set_device(r);
        cs_gpu_forward_fill_kv(t->ranks[r].f, seed + (uint64_t)r);
    }
    set_device(0);
}

// Node 0's step: the other ranks (and nodes) start on b's layers while rank 0 runs its part.
// Each rank's forward pass checks b against its own pool, which holds n_blocks at least.
static void head_begin(cs_tp_gpu *t, const cs_batch *b) {
    CS_ASSERT(t->head);
    t->batch = b;
    begin(t, JOB_LAYERS);
}

// Other ranks embed the batch's tokens too: they cannot resolve rank 0's placeholders.
static void no_placeholders(const cs_tp_gpu *t, const cs_batch *b) {
    if (t->n == 1 && t->n_peers == 0) return;
    for (int i = 0; i < b->n_tokens; i++) CS_ASSERT(b->tokens[i] >= 0);
}

void cs_tp_gpu_run(cs_tp_gpu *t, const cs_batch *b, float *logits) {
    no_placeholders(t, b);
    head_begin(t, b);
    cs_gpu_forward_run(t->ranks[0].f, b, logits);
    end(t);
}

void cs_tp_gpu_run_greedy(cs_tp_gpu *t, const cs_batch *b, int32_t *ids) {
    no_placeholders(t, b);
    head_begin(t, b);
    cs_gpu_forward_run_greedy(t->ranks[0].f, b, ids);
    end(t);
}

void cs_tp_gpu_run_sample(cs_tp_gpu *t, const cs_batch *b, const cs_cuda_sample_params *params,
                          const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt, int n_pen,
                          const cs_gpu_masks *masks, cs_gpu_sampled *out) {
    cs_tp_gpu_launch_sample(t, b, params, pen_ids, pen_counts, pen_in_prompt, n_pen, masks);
    cs_tp_gpu_wait_sample(t, out);
}

void cs_tp_gpu_launch_sample(cs_tp_gpu *t, const cs_batch *b, const cs_cuda_sample_params *params,
                             const int32_t *pen_ids, const int32_t *pen_counts, const uint8_t *pen_in_prompt,
                             int n_pen, const cs_gpu_masks *masks) {
    no_placeholders(t, b);
    head_begin(t, b);
    cs_gpu_forward_launch_sample(t->ranks[0].f, b, params, pen_ids, pen_counts, pen_in_prompt, n_pen, masks);
    end(t);
}

void cs_tp_gpu_wait_sample(cs_tp_gpu *t, cs_gpu_sampled *out) {
    set_device(0);
    cs_gpu_forward_wait_sample(t->ranks[0].f, out);
}

// A node other than 0: every rank runs the layers of b (checked against the node's limits on
// arrival).
static void run_layers(cs_tp_gpu *t, const cs_batch *b) {
    CS_ASSERT(!t->head);
    t->batch = b;
    begin(t, JOB_LAYERS);
    do_job(&t->ranks[0]);
    end(t);
}

void cs_tp_gpu_copy_rows(cs_tp_gpu *t, int dst, int src, int n) {
    CS_ASSERT(n >= 0 && dst >= 0 && src >= 0);
    t->copy_dst = dst, t->copy_src = src, t->copy_n = n;
    begin(t, JOB_COPY);
    do_job(&t->ranks[0]);
    end(t);
}

cs_status cs_tp_gpu_follow(cs_tp_gpu *t, int fd, char *err, size_t errlen) {
    CS_ASSERT(!t->head);
    cs_tp_limits lim = limits_of(t);
    watch_stop(t); // the start-up watch: node 0's steps come once it has READY
    if (!cs_tp_node_send_ready(fd, &lim, t->fingerprint))
        return cs_errf(err, errlen, CS_ERR_IO, "tensor parallel: node 0 is gone: %s", strerror(errno));
    cs_tp_msg m = {0};
    cs_status st;
    char why[256];
    watch_start(t, &fd, 1, 0, false);
    for (;;) {
        st = cs_tp_node_recv(fd, &m, &lim, why, sizeof why);
        if (st != CS_OK) {
            cs_errf(err, errlen, st, "tensor parallel: from node 0: %s", why);
            break;
        }
        if (m.kind == CS_TP_MSG_STOP) {
            if (m.failed) st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel: node 0 could not start (see its log)");
            break;
        }
        if (m.kind == CS_TP_MSG_BATCH) {
            run_layers(t, &m.batch);
        } else if (m.kind == CS_TP_MSG_COPY) {
            cs_tp_gpu_copy_rows(t, m.copy[0], m.copy[1], m.copy[2]);
        } else {
            st = cs_errf(err, errlen, CS_ERR_FORMAT, "tensor parallel: node 0 sent a READY");
            break;
        }
    }
    watch_stop(t);
    cs_tp_msg_free(&m);
    return st;
}
#endif
