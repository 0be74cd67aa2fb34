// The batch engine's public face: parameters, submit/cancel/poll/stats, the engine thread and
// the two locked queues (commands in, events out). Scheduling lives in scheduler.c.
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "chat_template.h"
#include "engine_internal.h"
#include "stop_strings.h"
#include "tokenizer.h"
#include "tp_bootstrap.h"
#include "tp_nccl.h"
#include "tp_shard.h"

// Writes a one-line reason into err and returns code (a CS_ENGINE_E* value).
static int engine_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int engine_err(char *err, size_t errlen, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cs_verrf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

// The public cs_chat_message and the internal cs_chat_msg are the same two pointers, so
// messages pass through without a copy.
_Static_assert(sizeof(cs_chat_message) == sizeof(cs_chat_msg) &&
                   offsetof(cs_chat_message, role) == offsetof(cs_chat_msg, role) &&
                   offsetof(cs_chat_message, content) == offsetof(cs_chat_msg, content),
               "cs_chat_message must match cs_chat_msg");

double cs_engine_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

void cs_engine_params_default(cs_engine_params *p) {
    memset(p, 0, sizeof *p);
    p->max_num_seqs = 64;
    p->max_num_batched_tokens = 512;
    p->block_size = 16;
    p->kv_cache_memory = (size_t)1 << 30;
    p->enable_prefix_caching = true;
    p->max_queued = 4096;
    p->device = "cpu";
    p->gpu_memory_utilization = 0.90;
    p->quant_group = 32;
    p->tensor_parallel_size = 1;
    p->nnodes = 1;
    p->dist_timeout_s = 600;
    p->async_scheduling = -1;
}

void cs_request_default(cs_request *r) {
    memset(r, 0, sizeof *r);
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->repetition_penalty = 1.0f;
    r->max_tokens = 16;
    r->n = 1;
    r->prompt_logprobs_from = -1;
}

// --- start-up ------------------------------------------------------------------------------

#ifdef CSERVE_HAVE_CUDA
#define CUDA_BUILT 1
#else
#define CUDA_BUILT 0
#endif
#define DUMMY_SEED 1 // --dummy-weights: the seed bench_decode and the tests use too

static int init_buffers(cs_engine *e, char *err, size_t errlen) {
    int T = e->p.max_num_batched_tokens, S = e->p.max_num_seqs;
    e->max_blocks_per_seq = (e->max_model_len + e->p.block_size - 1) / e->p.block_size;
    e->b_tokens = malloc(sizeof(int32_t) * T);
    e->b_pos = malloc(sizeof(int32_t) * T);
    e->b_slots = malloc(sizeof(int32_t) * T);
    e->b_rows = malloc(sizeof(int32_t) * T);
    e->b_qstart = malloc(sizeof(int32_t) * (S + 1));
    e->b_kvlen = malloc(sizeof(int32_t) * S);
    e->b_btstart = malloc(sizeof(int32_t) * (S + 1));
    e->b_table = malloc(sizeof(int32_t) * (size_t)S * e->max_blocks_per_seq);
    e->b_seqs = malloc(sizeof(eng_seq *) * S);
    e->logits = malloc(sizeof(float) * (size_t)T * e->vocab);
    e->row_kind = malloc(sizeof(int) * T);
    e->row_seq = malloc(sizeof(eng_seq *) * T);
    e->row_copy = malloc(sizeof(float) * e->vocab);
    e->row_copy2 = malloc(sizeof(float) * e->vocab);
    e->ev_cap = 1024;
    e->events = malloc(sizeof(cs_event) * e->ev_cap);
    for (int i = 0; i < 2; i++) {
        eng_step *st = &e->steps[i];
        st->seqs = malloc(sizeof(eng_seq *) * S);
        st->n_sched = malloc(sizeof(int) * S);
        st->row = malloc(sizeof(int) * S);
        st->params = calloc((size_t)S, sizeof *st->params);
        st->ids = malloc(sizeof(int32_t) * S);
        st->lp = malloc(sizeof(float) * S);
        st->top_ids = malloc(sizeof(int32_t) * S * CS_CUDA_MAX_LOGPROBS);
        st->top_lp = malloc(sizeof(float) * S * CS_CUDA_MAX_LOGPROBS);
        if (!st->seqs || !st->n_sched || !st->row || !st->params || !st->ids || !st->lp || !st->top_ids || !st->top_lp)
            return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory for the step buffers");
    }
    int32_t tok_vocab = cs_tokenizer_vocab_size(e->file->tok);
    if (!(e->scratch = cs_sampler_scratch_new(e->vocab > tok_vocab ? e->vocab : tok_vocab)))
        return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory for the step buffers");
    if (e->async && !e->on_gpu) { // the CPU stand-in for device steps: greedy rows
        cs_sampling_params g;
        cs_sampling_params_default(&g);
        g.temperature = 0.0f;
        g.n_logprobs = CS_SAMPLER_MAX_LOGPROBS;
        if (!(e->greedy = cs_sampler_init_shared(&g, e->vocab, e->scratch)))
            return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory for the step buffers");
    }
    if (!e->b_tokens || !e->b_pos || !e->b_slots || !e->b_rows || !e->b_qstart || !e->b_kvlen ||
        !e->b_btstart || !e->b_table || !e->b_seqs || !e->logits || !e->row_kind || !e->row_seq || !e->events ||
        !e->row_copy || !e->row_copy2)
        return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory for the step buffers");
    return 0;
}

// e->kv as block bookkeeping without memory, for backends whose KV lives elsewhere.
static void kv_bookkeeping(cs_engine *e, int n_blocks) {
    const cs_model_config *c = &e->cfg;
    e->kv = (cs_kv_cache){.n_layer = c->n_layer, .n_blocks = n_blocks, .block_size = e->p.block_size,
                          .kv_dim = c->n_head_kv * c->head_dim};
}

// Tensor parallel on the CPU: the ranks' threads share the cores; each has its shard, its
// KV heads' slice of the n_blocks blocks and its workers. Prints each rank's weight bytes.
static int init_tp_cpu(cs_engine *e, int n_blocks, char *err, size_t errlen) {
    int tp = e->p.tensor_parallel_size, cores = e->p.threads > 0 ? e->p.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    int per_rank = cores / tp > 1 ? cores / tp : 1;
    cs_status st = cs_tp_cpu_init(&e->model, tp, n_blocks, e->p.block_size, e->p.max_num_batched_tokens,
                                  e->max_model_len, per_rank, &e->tp, err, errlen);
    if (st != CS_OK) return st == CS_ERR_NOMEM ? CS_ENGINE_ENOMEM : CS_ENGINE_EINVAL;
    kv_bookkeeping(e, n_blocks); // each rank holds its slice
    fprintf(stderr, "tensor parallel: %d ranks, layer weights per rank:", tp);
    for (int r = 0; r < tp; r++) fprintf(stderr, " %.1f MB", cs_tp_cpu_weight_bytes(e->tp, r) / 1e6);
    fprintf(stderr, "\n");
    return init_buffers(e, err, errlen) ? CS_ENGINE_ENOMEM : 0;
}

// Multi-node: node 0 makes the NCCL id and waits for the others on --dist-init-addr, which
// keep their connection to it for the steps (engine/tp_node.h); the others join it.
static int join_nodes(cs_engine *e, const cs_tp_world *w, unsigned char id[CS_TP_ID_BYTES], int **peers, char *err,
                      size_t errlen) {
    int timeout_ms = e->p.dist_timeout_s * 1000;
    if (w->node_rank > 0) {
        fprintf(stderr, "tensor parallel: node %d of %d joining node 0 at %s\n", w->node_rank, w->nnodes,
                e->p.dist_init_addr);
        if (cs_tp_bootstrap_join(e->p.dist_init_addr, w, id, timeout_ms, &e->follow_fd, err, errlen) != CS_OK)
            return CS_ENGINE_EINVAL;
        return 0;
    }
    if (cs_tp_nccl_make_id(id, err, errlen) != 0) return CS_ENGINE_EINVAL;
    int port = 0, fd = cs_tp_bootstrap_listen(e->p.dist_init_addr, &port, err, errlen);
    if (fd < 0) return CS_ENGINE_EINVAL;
    fprintf(stderr, "tensor parallel: node 0 waiting for %d more nodes on %s\n", w->nnodes - 1, e->p.dist_init_addr);
    if (!(*peers = malloc(sizeof **peers * (size_t)(w->nnodes - 1)))) {
        close(fd);
        return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    }
    if (cs_tp_bootstrap_serve(fd, w, id, timeout_ms, *peers, err, errlen) != CS_OK) {
        free(*peers);
        *peers = NULL;
        return CS_ENGINE_EINVAL;
    }
    return 0;
}

// The CUDA backend: weights uploaded once (split over the GPUs with --tensor-parallel-size),
// the KV pool sized from the memory left. Prints each rank's weight bytes.
static int init_gpu(cs_engine *e, char *err, size_t errlen) {
    const cs_model_config *c = &e->cfg;
    int tp = e->p.tensor_parallel_size;
    cs_tp_gpu_params tg = {.n_ranks = tp,
                           .fwd = {.max_tokens = e->p.max_num_batched_tokens, .max_seqs = e->p.max_num_seqs,
                                   .max_ctx = e->max_model_len, .block_size = e->p.block_size,
                                   .memory_utilization = e->p.gpu_memory_utilization,
                                   .enforce_eager = e->p.enforce_eager}};
    if (tg.fwd.max_seqs > tg.fwd.max_tokens) tg.fwd.max_seqs = tg.fwd.max_tokens;
    if (e->p.dummy_weights) { // --quant: the dummy projections quantised on the device
        cs_dtype quant;
        if (cs_quant_type(e->p.quant, e->p.quant_group, &quant, err, errlen) != CS_OK) return CS_ENGINE_EINVAL;
        tg.dummy = c;
        tg.dummy_seed = DUMMY_SEED;
        tg.dummy_max_pos = e->max_model_len;
        tg.quant_bits = quant == CS_DTYPE_COUNT ? 0 : cs_qpack_bits(quant);
        tg.quant_group = e->p.quant_group;
    } else {
        tg.model = &e->model;
    }
    cs_tp_world world = {.nnodes = e->p.nnodes, .node_rank = e->p.node_rank, .ranks_per_node = tp};
    unsigned char id[CS_TP_ID_BYTES];
    int *peers = NULL;
    if (world.nnodes > 1) {
        int rc = join_nodes(e, &world, id, &peers, err, errlen);
        if (rc) return rc;
        tg.world = &world;
        tg.nccl_id = id;
        tg.peers = peers;
        tg.peer_timeout_ms = e->p.dist_timeout_s * 1000;
        tg.node0_fd = e->follow_fd;
    }
    cs_status st = cs_tp_gpu_init(&tg, &e->gpu, err, errlen);
    free(peers); // the ranks took the connections over
    if (!e->p.dummy_weights) cs_model_free(&e->model); // the devices hold the weights now
    if (st != CS_OK) return st == CS_ERR_NOMEM ? CS_ENGINE_ENOMEM : CS_ENGINE_EINVAL;
    if (world.node_rank > 0) return 0; // a follower: node 0 keeps the blocks and samples
    if (tp > 1 || world.nnodes > 1) {
        fprintf(stderr, "tensor parallel: %d GPUs%s, weights per GPU:", tp * world.nnodes,
                world.nnodes > 1 ? " over the nodes (this one's shown)" : "");
        for (int r = 0; r < tp; r++) fprintf(stderr, " %.2f GB", cs_tp_gpu_weight_bytes(e->gpu, r) / 1e9);
        fprintf(stderr, " (a decode step reads %.2f GB on each)\n", cs_tp_gpu_step_bytes(e->gpu, tp - 1) / 1e9);
    }
    int n_blocks = cs_tp_gpu_n_blocks(e->gpu);
    kv_bookkeeping(e, n_blocks); // the pool is on the devices
    e->kv_block_bytes = cs_tp_gpu_block_bytes(e->gpu) * (size_t)world.nnodes; // every node holds its slice
    cs_gpu_forward_params gp = tg.fwd;
    e->bm = cs_bm_init(n_blocks, e->p.block_size, e->p.enable_prefix_caching);
    if (!e->bm) return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    e->pen_cap = (size_t)gp.max_seqs * e->max_model_len;
    e->pen_ids = malloc(4 * e->pen_cap);
    e->pen_counts = malloc(4 * e->pen_cap);
    e->pen_in_prompt = malloc(e->pen_cap);
    e->pen_stamp = malloc(4 * (size_t)e->vocab);
    e->pen_slot = malloc(4 * (size_t)e->vocab);
    e->mask_bits = malloc(4 * (size_t)gp.max_seqs * (size_t)((e->vocab + 31) / 32));
    e->mask_row = malloc(4 * (size_t)gp.max_seqs);
    if (!e->pen_ids || !e->pen_counts || !e->pen_in_prompt || !e->pen_stamp || !e->pen_slot ||
        !e->mask_bits || !e->mask_row)
        return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    for (int i = 0; i < e->vocab; i++) e->pen_stamp[i] = -1;
    e->seed_state = (uint64_t)cs_engine_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)e;
    return init_buffers(e, err, errlen) ? CS_ENGINE_ENOMEM : 0;
}

// --dummy-weights: the preset's shape; the file's tokenizer must fit its vocabulary.
static int dummy_config(cs_engine *e, char *err, size_t errlen) {
    if (cs_model_preset(e->p.dummy_weights, &e->cfg, err, errlen) != CS_OK) return CS_ENGINE_EINVAL;
    int32_t tok_vocab = cs_tokenizer_vocab_size(e->file->tok);
    if (tok_vocab > e->cfg.vocab_size)
        return engine_err(err, errlen, CS_ENGINE_EINVAL,
                          "dummy weights: preset '%s' has %d tokens, fewer than the tokenizer's %d",
                          e->p.dummy_weights, e->cfg.vocab_size, tok_vocab);
    return 0;
}

static int init_model(cs_engine *e, char *err, size_t errlen) {
    if (cs_model_file_open(e->p.model_path, &e->file, err, errlen) != CS_OK) return CS_ENGINE_EINVAL;
    e->cfg = e->file->cfg;
    int rc = e->p.dummy_weights ? dummy_config(e, err, errlen) : 0;
    if (rc) return rc;
    const cs_model_config *c = &e->cfg;
    e->vocab = c->vocab_size;
    int ctx = c->context_len < 8192 ? c->context_len : 8192;
    e->max_model_len = e->p.max_model_len > 0 ? e->p.max_model_len : ctx;
    if (e->max_model_len > c->context_len)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "max_model_len %d exceeds the model's context %d",
                          e->max_model_len, c->context_len);
    int kv_dim = c->n_head_kv * c->head_dim;
    if (e->on_gpu && e->p.dummy_weights) return init_gpu(e, err, errlen); // weights made on the device
    cs_dtype quant;
    if (cs_quant_type(e->p.quant, e->p.quant_group, &quant, err, errlen) != CS_OK) return CS_ENGINE_EINVAL;
    if (e->p.dummy_weights && e->p.quant)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "--quant applies to --dummy-weights with --device cuda only");
    cs_status st = e->p.dummy_weights ? cs_model_init_dummy(&e->model, c, DUMMY_SEED, e->max_model_len, err, errlen)
                                      : cs_model_init_quant(&e->model, e->file, e->max_model_len, quant, err, errlen);
    if (st != CS_OK) return st == CS_ERR_NOMEM ? CS_ENGINE_ENOMEM : CS_ENGINE_EINVAL;
    if (e->on_gpu) return init_gpu(e, err, errlen);
    int tp = e->p.tensor_parallel_size;
    if (tp > 1) { // every rank holds its KV heads' slice of each block
        char perr[256];
        kv_dim = 0;
        for (int r = 0; r < tp; r++) {
            cs_tp_part part;
            if (!cs_tp_part_of(c, 1, tp, r, &part, perr, sizeof perr))
                return engine_err(err, errlen, CS_ENGINE_EINVAL, "%s", perr);
            kv_dim += part.n_kv * c->head_dim;
        }
    }
    size_t block_bytes = cs_kv_cache_block_bytes(c->n_layer, e->p.block_size, kv_dim);
    e->kv_block_bytes = block_bytes;
    size_t n_blocks = e->p.kv_cache_memory / block_bytes;
    if (n_blocks < 1 || n_blocks > INT32_MAX / (size_t)e->p.block_size)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "kv_cache_memory %zu bytes holds %zu blocks of %zu bytes",
                       e->p.kv_cache_memory, n_blocks, block_bytes);
    e->bm = cs_bm_init((int)n_blocks, e->p.block_size, e->p.enable_prefix_caching);
    if (!e->bm) return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    if (tp > 1) return init_tp_cpu(e, (int)n_blocks, err, errlen);
    if (cs_kv_cache_init(&e->kv, c->n_layer, (int)n_blocks, e->p.block_size, kv_dim, err, errlen) != CS_OK)
        return CS_ENGINE_ENOMEM;
    e->pool = cs_pool_init(e->p.threads);
    if (!e->pool) return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    e->fwd = cs_forward_init(&e->model, &e->kv, e->p.max_num_batched_tokens, e->max_model_len, e->pool, err, errlen);
    if (!e->fwd) return CS_ENGINE_ENOMEM;
    return init_buffers(e, err, errlen) ? CS_ENGINE_ENOMEM : 0;
}

static void *engine_main(void *arg);

// Checks p, makes the engine and loads the model (a follower: its shards, joined to node 0).
static int engine_new(const cs_engine_params *p, cs_engine **out, char *err, size_t errlen) {
    *out = NULL;
    if (!p->model_path || p->max_num_seqs < 1 || p->max_num_batched_tokens < 1 || p->block_size < 1 ||
        p->max_queued < 1 || p->max_num_seqs > 4096 || p->block_size > 1024)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "invalid engine parameters (model path, limits)");
    if (p->tensor_parallel_size < 0 || p->tensor_parallel_size > 256)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "tensor parallel size %d: use 1 to 256", p->tensor_parallel_size);
    const char *dev = p->device ? p->device : "cpu";
    if (strcmp(dev, "cpu") && strcmp(dev, "cuda"))
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "unknown device '%s' (cpu or cuda)", dev);
    bool on_gpu = !strcmp(dev, "cuda");
    int tp = p->tensor_parallel_size ? p->tensor_parallel_size : 1; // 0: a zeroed params struct
    int nnodes = p->nnodes ? p->nnodes : 1;
    if (nnodes > 1) {
        if (!on_gpu) return engine_err(err, errlen, CS_ENGINE_EINVAL, "--nnodes %d: several nodes need --device cuda", nnodes);
        if (!p->dist_init_addr || !*p->dist_init_addr)
            return engine_err(err, errlen, CS_ENGINE_EINVAL, "--nnodes %d: give node 0's --dist-init-addr HOST:PORT", nnodes);
        if (tp % nnodes)
            return engine_err(err, errlen, CS_ENGINE_EINVAL,
                              "tensor parallel size %d over %d nodes: each node must run as many GPUs", tp, nnodes);
        if (p->dist_timeout_s < 1)
            return engine_err(err, errlen, CS_ENGINE_EINVAL, "--dist-timeout %d: use at least 1 second", p->dist_timeout_s);
    }
    if (p->node_rank < 0 || p->node_rank >= nnodes)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "--node-rank %d: use 0 to %d", p->node_rank, nnodes - 1);
    int gpus = on_gpu ? cs_tp_gpu_device_count() : 0, local = tp / nnodes;
    if (on_gpu && gpus == 0)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "--device cuda: %s",
                          CUDA_BUILT ? "no CUDA device here" : "cserve was built without CUDA");
    if (on_gpu && gpus < local && nnodes > 1)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "tensor parallel size %d over %d nodes: %d GPUs a node, this "
                          "machine has %d", tp, nnodes, local, gpus);
    if (on_gpu && gpus < local)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "tensor parallel size %d: this machine has %d GPUs", tp, gpus);
    if (p->async_scheduling > 0 && on_gpu && tp > 1)
        return engine_err(err, errlen, CS_ENGINE_EINVAL,
                          "--async-scheduling: one GPU only (tensor parallel ranks would all need the sampled ids)");
    cs_engine *e = calloc(1, sizeof *e);
    if (!e) return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    e->p = *p;
    e->p.tensor_parallel_size = local; // ranks of this process
    e->p.nnodes = nnodes;
    e->event_fd = -1;
    e->follow_fd = -1;
    e->on_gpu = on_gpu;
    // async scheduling: by default where there is something to overlap (one GPU); the CPU runs
    // it only when asked (it computes each step at launch)
    e->async = p->async_scheduling > 0 || (p->async_scheduling < 0 && on_gpu && tp == 1);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_cond_init(&e->ev_cond, NULL);
    *out = e;
    return init_model(e, err, errlen);
}

int cs_engine_follow(const cs_engine_params *p, char *err, size_t errlen) {
    if (p->node_rank < 1) return engine_err(err, errlen, CS_ENGINE_EINVAL, "node 0 runs the engine, not a follower");
    cs_engine *e = NULL;
    int rc = engine_new(p, &e, err, errlen);
    if (rc == 0) {
        fprintf(stderr, "tensor parallel: node %d ready, running node 0's steps\n", p->node_rank);
        if (cs_tp_gpu_follow(e->gpu, e->follow_fd, err, errlen) != CS_OK) rc = CS_ENGINE_EINVAL;
    }
    cs_engine_free(e);
    return rc;
}

int cs_engine_init(const cs_engine_params *p, cs_engine **out, char *err, size_t errlen) {
    *out = NULL;
    if (p->node_rank > 0)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "--node-rank %d follows node 0: it serves nothing itself",
                          p->node_rank);
    cs_engine *e = NULL;
    int rc = engine_new(p, &e, err, errlen);
    if (!e) return rc;
    if (rc == 0 && !(e->cc = cs_cc_init(e->file->tok, 64)))
        rc = engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    if (rc == 0 && (e->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        rc = engine_err(err, errlen, CS_ENGINE_ENOMEM, "eventfd: %s", strerror(errno));
    if (rc == 0) { // the stats callers see before the first step
        cs_bm_stats b;
        cs_bm_stats_get(e->bm, &b);
        e->stats.blocks_total = e->stats.blocks_free = b.total;
        e->stats.block_size = e->p.block_size;
        e->stats.kv_cache_bytes = (size_t)b.total * e->kv_block_bytes;
    }
    if (rc == 0 && pthread_create(&e->thread, NULL, engine_main, e) != 0)
        rc = engine_err(err, errlen, CS_ENGINE_ENOMEM, "cannot start the engine thread");
    if (rc != 0) {
        e->thread = 0;
        cs_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void cs_engine_free(cs_engine *e) {
    if (!e) return;
    if (e->thread) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    for (int i = 0; i < e->n_cmds; i++)
        if (e->cmds[i].req) cs_engine_req_free(e, e->cmds[i].req);
    while (e->n_reqs > 0) cs_engine_req_free(e, e->reqs[0]);
    free(e->cmds);
    free(e->reqs);
    free(e->waiting);
    free(e->running);
    free(e->b_tokens); free(e->b_pos); free(e->b_slots); free(e->b_rows); free(e->b_qstart);
    free(e->b_kvlen); free(e->b_btstart); free(e->b_table); free(e->b_seqs); free(e->logits);
    free(e->row_kind); free(e->row_seq); free(e->events);
    free(e->row_copy); free(e->row_copy2);
    for (int i = 0; i < 2; i++) {
        eng_step *st = &e->steps[i];
        free(st->seqs); free(st->n_sched); free(st->row); free(st->params);
        free(st->ids); free(st->lp); free(st->top_ids); free(st->top_lp);
    }
    cs_sampler_free(e->greedy);
    cs_sampler_scratch_free(e->scratch); // after every sampler that borrows it (the requests': above)
    free(e->pen_ids); free(e->pen_counts); free(e->pen_in_prompt);
    free(e->pen_stamp); free(e->pen_slot); free(e->mask_bits); free(e->mask_row);
    if (e->event_fd >= 0) close(e->event_fd);
    if (e->follow_fd >= 0) close(e->follow_fd);
    cs_cc_free(e->cc);
    cs_forward_free(e->fwd);
    cs_tp_cpu_free(e->tp);
    cs_tp_gpu_free(e->gpu);
    cs_pool_free(e->pool);
    cs_bm_free(e->bm);
    cs_kv_cache_free(&e->kv);
    cs_model_free(&e->model);
    cs_model_file_free(e->file);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->ev_cond);
    free(e);
}

// --- requests ------------------------------------------------------------------------------

static uint64_t hash_salt(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; // FNV-1a: any stable mix will do; 0 means "no salt"
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h ? h : 1;
}

// Tokenizes text in one pass into *ids (malloc'd, the caller frees) when it needs at most
// limit ids. Returns the count (> limit: *ids is NULL), or a negative cs_status. The buffer
// is sized for limit + 1 ids up front, so a prompt is encoded once, not counted first; pages
// it never touches cost nothing.
static int encode_prompt(const cs_tokenizer *tok, const char *text, size_t len, int flags, int limit, int32_t **ids) {
    *ids = malloc(sizeof(int32_t) * ((size_t)limit + 1));
    if (!*ids) return CS_ERR_NOMEM;
    int n = cs_tokenizer_encode(tok, text, len, flags | CS_TOK_STOP_PAST_CAP, *ids, limit + 1); // > limit: too long
    if (n < 0 || n > limit) {
        free(*ids);
        *ids = NULL;
    } else if (n > 0) {
        int32_t *fit = realloc(*ids, sizeof(int32_t) * (size_t)n); // keep only what the request holds
        if (fit) *ids = fit;
    }
    return n;
}

// Tokenizes whichever prompt kind the request carries into r->prompt.
static int request_prompt(cs_engine *e, const cs_request *q, eng_req *r, char *err, size_t errlen) {
    int kinds = (q->prompt != NULL) + (q->tokens != NULL || q->n_tokens > 0) + (q->messages != NULL || q->n_messages > 0);
    if (kinds != 1) return engine_err(err, errlen, CS_ENGINE_EINVAL, "give exactly one of prompt, tokens, messages");
    if (q->tokens || q->n_tokens) {
        if (!q->tokens || q->n_tokens < 1)
            return engine_err(err, errlen, CS_ENGINE_EINVAL, "tokens: empty");
        for (int i = 0; i < q->n_tokens; i++)
            if (q->tokens[i] < 0 || q->tokens[i] >= e->vocab)
                return engine_err(err, errlen, CS_ENGINE_EINVAL, "tokens: id %d is outside the vocabulary [0, %d)",
                               q->tokens[i], e->vocab);
        if (q->n_tokens > e->max_model_len)
            return engine_err(err, errlen, CS_ENGINE_ETOOLARGE, "prompt is %d tokens; the context is %d", q->n_tokens,
                           e->max_model_len);
        r->prompt = malloc(sizeof(int32_t) * q->n_tokens);
        if (!r->prompt) return CS_ENGINE_ENOMEM;
        memcpy(r->prompt, q->tokens, sizeof(int32_t) * q->n_tokens);
        r->n_prompt = q->n_tokens;
        return 0;
    }
    const cs_tokenizer *tok = e->file->tok;
    char *text = NULL;
    const char *src = q->prompt;
    int flags = CS_TOK_ADD_SPECIAL | CS_TOK_PARSE_SPECIAL;
    if (!src) {
        if (!q->messages || q->n_messages < 1 || q->n_messages > 4096)
            return engine_err(err, errlen, CS_ENGINE_EINVAL, "messages: empty");
        bool known;
        const char *tmpl = cs_tokenizer_chat_template(tok);
        text = cs_chat_render(cs_chat_detect(tmpl, &known), tmpl, (const cs_chat_msg *)q->messages,
                              (size_t)q->n_messages, true, err, errlen);
        if (!text) return CS_ENGINE_EINVAL;
        src = text;
        flags = CS_TOK_PARSE_SPECIAL; // the rendered template holds any BOS itself
    }
    int n = encode_prompt(tok, src, strlen(src), flags, e->max_model_len, &r->prompt);
    free(text);
    if (n == CS_ERR_NOMEM) return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    if (n > e->max_model_len)
        return engine_err(err, errlen, CS_ENGINE_ETOOLARGE, "prompt is more than %d tokens, the context", e->max_model_len);
    if (n < 1) return engine_err(err, errlen, CS_ENGINE_EINVAL, "prompt: empty");
    r->n_prompt = n;
    return 0;
}

// Copies stop strings and the salt; fills the generation parameters.
static int request_params(cs_engine *e, const cs_request *q, eng_req *r, char *err, size_t errlen) {
    if (q->n < 1 || q->n > 64 || q->n > e->p.max_num_seqs)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "n must be in [1, %d]", q->n > 64 ? 64 : e->p.max_num_seqs);
    if (q->n_stop < 0 || q->n_stop > CS_MAX_STOP || q->n_stop_token_ids < 0 || q->n_stop_token_ids > CS_MAX_STOP)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "stop: at most %d entries", CS_MAX_STOP);
    if (q->prompt_logprobs_from < -1)
        return engine_err(err, errlen, CS_ENGINE_EINVAL, "prompt_logprobs: must be >= 0");
    size_t total = q->cache_salt ? strlen(q->cache_salt) + 1 : 0;
    for (int i = 0; i < q->n_stop; i++) {
        if (!q->stop[i]) return engine_err(err, errlen, CS_ENGINE_EINVAL, "stop: null string");
        // the matcher's own rules, checked here: once scheduled, its refusal has no client
        char why[64];
        if (!cs_stop_string_ok(q->stop[i], why, sizeof why))
            return engine_err(err, errlen, CS_ENGINE_EINVAL, "stop: entry %d %s", i, why);
        total += strlen(q->stop[i]) + 1;
    }
    r->strings = malloc(total ? total : 1);
    if (!r->strings) return CS_ENGINE_ENOMEM;
    cs_gen_params *g = &r->gen;
    cs_gen_params_default(g);
    char *p = r->strings;
    for (int i = 0; i < q->n_stop; i++) {
        g->stop[g->n_stop++] = strcpy(p, q->stop[i]);
        p += strlen(p) + 1;
    }
    if (q->cache_salt) r->salt = hash_salt(strcpy(p, q->cache_salt));
    if (q->max_tokens < -1) return engine_err(err, errlen, CS_ENGINE_EINVAL, "max_tokens must be >= 0 (or -1: what the context leaves)");
    g->max_tokens = q->max_tokens < 0 ? 0 : q->max_tokens; // -1 is resolved once the prompt's length is known
    g->ignore_eos = q->ignore_eos;
    g->n_stop_ids = q->n_stop_token_ids;
    memcpy(g->stop_ids, q->stop_token_ids, sizeof(int32_t) * (size_t)q->n_stop_token_ids);
    cs_sampling_params *s = &g->sampling;
    s->temperature = q->temperature;
    s->top_p = q->top_p;
    s->top_k = q->top_k;
    s->min_p = q->min_p;
    s->repetition_penalty = q->repetition_penalty;
    s->presence_penalty = q->presence_penalty;
    s->frequency_penalty = q->frequency_penalty;
    s->seed = q->seed;
    s->has_seed = q->has_seed;
    s->n_logprobs = q->logprobs;
    if (cs_gen_params_validate(g, e->vocab, err, errlen) != CS_OK) return CS_ENGINE_EINVAL;
    return 0;
}

// A request that could never run: longer than the context, or more blocks than the pool.
static int request_fits(cs_engine *e, eng_req *r, bool to_context, char *err, size_t errlen) {
    if (to_context) { // as many tokens as the context and the whole KV pool leave room for
        long room = (long)e->kv.n_blocks * e->p.block_size;
        if (room > e->max_model_len) room = e->max_model_len;
        r->gen.max_tokens = room > r->n_prompt ? (int)(room - r->n_prompt) : 0;
        if (r->gen.max_tokens == 0)
            return engine_err(err, errlen, CS_ENGINE_ETOOLARGE, "prompt is %d tokens; the context is %d", r->n_prompt, (int)room);
    }
    long need = (long)r->n_prompt + r->gen.max_tokens;
    if (need > e->max_model_len)
        return engine_err(err, errlen, CS_ENGINE_ETOOLARGE, "prompt (%d tokens) + max_tokens (%d) exceed the context (%d)", r->n_prompt,
                       r->gen.max_tokens, e->max_model_len);
    long blocks = (need + e->p.block_size - 1) / e->p.block_size;
    if (blocks > e->kv.n_blocks)
        return engine_err(err, errlen, CS_ENGINE_ETOOLARGE, "request needs %ld KV blocks; the cache holds %d", blocks,
                       e->kv.n_blocks);
    return 0;
}

int cs_engine_submit(cs_engine *e, const cs_request *q, uint64_t *id, char *err, size_t errlen) {
    eng_req *r = calloc(1, sizeof *r);
    if (!r) return engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    int rc = request_params(e, q, r, err, errlen);
    if (rc == 0) rc = request_prompt(e, q, r, err, errlen);
    if (rc == 0) rc = request_fits(e, r, q->max_tokens < 0, err, errlen);
    if (rc == 0 && cs_cc_get(e->cc, q, &r->grammar, err, errlen) != CS_OK) rc = CS_ENGINE_EINVAL;
    if (rc == 0 && q->prompt_logprobs_from >= r->n_prompt)
        rc = engine_err(err, errlen, CS_ENGINE_EINVAL, "prompt_logprobs: start %d is past the prompt (%d tokens)",
                     q->prompt_logprobs_from, r->n_prompt);
    r->r = *q;
    r->r.prompt = NULL; // borrowed pointers do not outlive submit
    r->r.tokens = NULL;
    r->r.messages = NULL;
    r->r.cache_salt = NULL;
    r->r.json_schema = r->r.regex = NULL;
    r->r.choices = NULL;
    memset(r->r.stop, 0, sizeof r->r.stop);
    r->n = q->n;
    r->plp_next = q->prompt_logprobs_from < 1 ? 1 : q->prompt_logprobs_from;
    if (rc == 0 && !(r->seqs = calloc((size_t)r->n, sizeof *r->seqs)))
        rc = engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    pthread_mutex_lock(&e->mu);
    if (rc == 0 && e->n_queued >= e->p.max_queued)
        rc = engine_err(err, errlen, CS_ENGINE_EOVERLOADED, "overloaded: %d requests queued", e->n_queued);
    if (rc == 0 && e->n_cmds == e->cap_cmds) {
        int cap = e->cap_cmds ? 2 * e->cap_cmds : 64;
        eng_cmd *c = realloc(e->cmds, sizeof *c * cap);
        if (c) e->cmds = c, e->cap_cmds = cap;
        else rc = engine_err(err, errlen, CS_ENGINE_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        r->id = *id = ++e->next_id;
        r->t_submit = cs_engine_now_ms();
        e->cmds[e->n_cmds++] = (eng_cmd){0, r, r->id};
        e->n_queued++;
        pthread_cond_signal(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc != 0) {
        cs_cc_release(e->cc, r->grammar);
        free(r->prompt);
        free(r->strings);
        free(r->seqs);
        free(r);
    }
    return rc;
}

void cs_engine_cancel(cs_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    if (e->n_cmds == e->cap_cmds) {
        int cap = e->cap_cmds ? 2 * e->cap_cmds : 64;
        eng_cmd *c = realloc(e->cmds, sizeof *c * cap);
        if (!c) { // cannot queue it: the request simply runs to its end
            pthread_mutex_unlock(&e->mu);
            return;
        }
        e->cmds = c;
        e->cap_cmds = cap;
    }
    e->cmds[e->n_cmds++] = (eng_cmd){1, NULL, id};
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

// --- events --------------------------------------------------------------------------------

void cs_engine_emit(cs_engine *e, const cs_event *ev) {
    pthread_mutex_lock(&e->mu);
    if (e->ev_count == e->ev_cap) { // grow the ring, unwrapping it
        int cap = e->ev_cap * 2;
        cs_event *n = malloc(sizeof *n * cap);
        if (!n) { // events are never dropped silently: wait for pollers to make room
            while (e->ev_count == e->ev_cap && !e->stop) pthread_cond_wait(&e->ev_cond, &e->mu);
        } else {
            for (int i = 0; i < e->ev_count; i++) n[i] = e->events[(e->ev_head + i) % e->ev_cap];
            free(e->events);
            e->events = n;
            e->ev_head = 0;
            e->ev_cap = cap;
        }
    }
    if (e->ev_count < e->ev_cap) {
        e->events[(e->ev_head + e->ev_count) % e->ev_cap] = *ev;
        if (e->ev_count++ == 0) {
            uint64_t one = 1;
            ssize_t w = write(e->event_fd, &one, sizeof one);
            (void)w; // the counter cannot overflow: it is reset whenever the queue empties
        }
        pthread_cond_broadcast(&e->ev_cond);
    }
    pthread_mutex_unlock(&e->mu);
}

int cs_engine_poll(cs_engine *e, cs_event *ev, int timeout_ms) {
    pthread_mutex_lock(&e->mu);
    if (e->ev_count == 0 && timeout_ms != 0) {
        if (timeout_ms < 0) {
            while (e->ev_count == 0) pthread_cond_wait(&e->ev_cond, &e->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += timeout_ms / 1000;
            ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            while (e->ev_count == 0)
                if (pthread_cond_timedwait(&e->ev_cond, &e->mu, &ts) == ETIMEDOUT) break;
        }
    }
    int got = 0;
    if (e->ev_count > 0) {
        *ev = e->events[e->ev_head];
        e->ev_head = (e->ev_head + 1) % e->ev_cap;
        if (--e->ev_count == 0) {
            uint64_t v;
            ssize_t r = read(e->event_fd, &v, sizeof v);
            (void)r;
        }
        if (ev->type == CS_EVENT_DONE) e->n_queued--;
        pthread_cond_broadcast(&e->ev_cond);
        got = 1;
    }
    pthread_mutex_unlock(&e->mu);
    return got;
}

int cs_engine_event_fd(const cs_engine *e) { return e->event_fd; }

void cs_engine_stats_get(cs_engine *e, cs_engine_stats *st) {
    pthread_mutex_lock(&e->mu);
    *st = e->stats;
    pthread_mutex_unlock(&e->mu);
}

int cs_engine_tokenize(cs_engine *e, const char *text, size_t len, bool add_special, int32_t *ids, int cap) {
    int flags = CS_TOK_PARSE_SPECIAL | (add_special ? CS_TOK_ADD_SPECIAL : 0) | (cap > 0 ? CS_TOK_STOP_PAST_CAP : 0);
    return cs_tokenizer_encode(e->file->tok, text, len, flags, ids, cap);
}

int cs_engine_vocab_size(const cs_engine *e) { return e->vocab; }
int cs_engine_max_model_len(const cs_engine *e) { return e->max_model_len; }

// --- the engine thread -----------------------------------------------------------------------

bool cs_engine_push(void ***arr, int *n, int *cap, void *p) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        void **a = realloc(*arr, sizeof *a * c);
        if (!a) return false;
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
    return true;
}

// Admits submitted requests (choice 0 waits to be scheduled) and marks cancellations.
static void take_commands(cs_engine *e, eng_cmd *cmds, int n) {
    for (int i = 0; i < n; i++) {
        if (cmds[i].kind == 0) {
            eng_req *r = cmds[i].req;
            r->arrival = e->arrival_counter++;
            eng_seq *s = &r->seqs[0];
            s->req = r;
            s->state = SEQ_WAITING;
            s->pending_row = -1;
            r->n_started = r->n_live = 1;
            if (!cs_engine_push((void ***)&e->reqs, &e->n_reqs, &e->cap_reqs, r) ||
                !cs_engine_push((void ***)&e->waiting, &e->n_waiting, &e->cap_waiting, s)) {
                r->cancelled = true; // out of memory: ends as cancelled rather than vanishing
            }
            continue;
        }
        for (int k = 0; k < e->n_reqs; k++)
            if (e->reqs[k]->id == cmds[i].id) e->reqs[k]->cancelled = true;
    }
}

static void *engine_main(void *arg) {
    cs_engine *e = arg;
    eng_cmd *local = NULL;
    int local_cap = 0;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && e->n_cmds == 0 && e->n_reqs == 0) pthread_cond_wait(&e->wake, &e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        int n = e->n_cmds;
        if (n > local_cap) {
            eng_cmd *l = realloc(local, sizeof *l * n);
            if (l) local = l, local_cap = n;
            else n = local_cap;
        }
        memcpy(local, e->cmds, sizeof *local * n);
        memmove(e->cmds, e->cmds + n, sizeof *local * (e->n_cmds - n));
        e->n_cmds -= n;
        pthread_mutex_unlock(&e->mu);
        take_commands(e, local, n);
        if (!cs_engine_step(e)) { // requests exist but none could run: do not spin
            pthread_mutex_lock(&e->mu);
            if (e->n_cmds == 0 && !e->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 1000000L;
                if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
                pthread_cond_timedwait(&e->wake, &e->mu, &ts);
            }
            pthread_mutex_unlock(&e->mu);
        }
    }
    cs_engine_step_drain(e);
    free(local);
    return NULL;
}

long cs_engine_detokenize(cs_engine *e, const int32_t *ids, int n, char *out, size_t cap) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cs_tokenizer_vocab_size(e->file->tok)) return -1;
    return (long)cs_tokenizer_decode(e->file->tok, ids, (size_t)n, false, out, cap);
}

char *cs_engine_apply_chat_template(cs_engine *e, const cs_chat_message *msgs, int n, char *err,
                                    size_t errlen) {
    bool known;
    const char *tmpl = cs_tokenizer_chat_template(e->file->tok);
    return cs_chat_render(cs_chat_detect(tmpl, &known), tmpl, (const cs_chat_msg *)msgs, (size_t)n, true,
                          err, errlen);
}

void cs_engine_info_get(const cs_engine *e, cs_engine_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", e->file->name);
    snprintf(info->architecture, sizeof info->architecture, "%s", cs_arch_name(e->cfg.arch));
    bool seen[CS_DTYPE_COUNT] = {0};
    size_t len = 0;
    if (e->p.dummy_weights) snprintf(info->weight_formats, sizeof info->weight_formats, "BF16 (dummy weights, %s)",
                                     e->p.dummy_weights);
    cs_dtype quant = CS_DTYPE_COUNT;
    char qerr[128];
    if (!e->p.dummy_weights && cs_quant_type(e->p.quant, e->p.quant_group, &quant, qerr, sizeof qerr) == CS_OK &&
        quant != CS_DTYPE_COUNT)
        len = (size_t)snprintf(info->weight_formats, sizeof info->weight_formats, "%s (--quant) from ",
                               cs_dtype_name(quant));
    size_t start = len;
    for (int i = 0; !e->p.dummy_weights && i < e->file->n_tensors; i++) {
        cs_dtype t = e->file->tensors[i].dtype;
        if (seen[t]) continue;
        seen[t] = true;
        len += (size_t)snprintf(info->weight_formats + len, len < sizeof info->weight_formats ? sizeof info->weight_formats - len : 0,
                                "%s%s", len > start ? ", " : "", cs_dtype_name(t));
        if (len >= sizeof info->weight_formats) break;
    }
    snprintf(info->device, sizeof info->device, "%s", e->on_gpu ? "cuda" : "cpu");
    info->context_length = e->max_model_len;
    info->vocab_size = e->vocab;
    info->tensor_parallel_size = e->p.tensor_parallel_size * e->p.nnodes;
}
