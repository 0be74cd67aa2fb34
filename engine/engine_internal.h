// The batch engine's private state, shared by engine.c (API, threads, queues) and
// scheduler.c (one step: schedule -> run -> postprocess).
#ifndef CS_ENGINE_INTERNAL_H
#define CS_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../include/cserve/engine.h"
#include "block_manager.h"
#include "constraint.h"
#include "forward.h"
#include "tp_cpu.h"
#include "gpu_forward.h"
#include "tp_gpu.h"
#include "kv_cache.h"
#include "model.h"
#include "model_file.h"
#include "textgen.h"

typedef enum { SEQ_WAITING, SEQ_RUNNING, SEQ_FINISHED } seq_state;

struct eng_req;

// One choice of a request: its tokens (prompt, then generated), KV blocks and output state.
typedef struct eng_seq {
    struct eng_req *req;
    int index;
    seq_state state;
    cs_bm_seq bm;
    int32_t *tokens; // (cap) prompt + generated
    int n_tokens, cap;
    cs_textgen *tg;
    uint64_t admitted; // admission order, for preempting the newest
    int n_sched;       // tokens scheduled in the step being built
    int logit_row;     // row of that step's logits to sample from, or -1
    int pending_row;   // >= 0: the token at position n_tokens is not known yet: the launched
                       // step samples it in this row (async scheduling); -1: none
    bool hold;         // that token will be its last: not scheduled until it is delivered
    bool prefilled;    // the whole prompt has been computed once
    uint64_t gpu_seed; // Philox key of the GPU sampler (the request's seed, or drawn)
    cs_constraint *cons; // constrained decoding: the matcher and mask, or NULL
} eng_seq;

typedef struct eng_req {
    uint64_t id;
    cs_request r;         // copy; pointer fields cleared (strings copied below)
    cs_gen_params gen;
    cs_compiled *grammar; // the constraint's compiled grammar (shared, released at free), or NULL
    char *strings;        // owned copies of stop strings and cache_salt
    uint64_t salt;
    int32_t *prompt;
    int n_prompt;
    int n;                // choices
    eng_seq *seqs;        // (n); choices 1.. start when choice 0 has computed the prompt
    int n_live;           // choices started and not finished
    int n_started;
    int cached_tokens, completion_tokens;
    uint64_t arrival;
    double t_submit, t_first, t_sched;
    bool cancelled;
    int plp_next;         // next prompt position whose logprob is due
    int n_inflight;       // its entries in launched steps not yet delivered: it is not freed before
} eng_req;

// One step's record, from its launch to the delivery of its results. Two alternate, so that
// with async scheduling step N + 1 is launched before step N's tokens are delivered.
typedef struct eng_step {
    int n_seqs;
    eng_seq **seqs;                 // (max_num_seqs)
    int *n_sched;                   // (max_num_seqs) tokens each one computes
    int *row;                       // (max_num_seqs) the logits row each one samples from, or -1
    int n_host_rows;                // rows in e->logits (the host samples them)
    bool device;                    // rows sampled beside the forward pass: results in out
    cs_cuda_sample_params *params;  // (max_num_seqs) each row's sampling on the device
    cs_gpu_sampled out;             // the device's ids and logprobs, valid once waited for
    int32_t *ids, *top_ids;         // the CPU stand-in's results (out points here)
    float *lp, *top_lp;
} eng_step;

typedef struct eng_cmd {
    int kind; // 0 submit, 1 cancel
    eng_req *req;
    uint64_t id;
} eng_cmd;

struct cs_engine {
    cs_engine_params p;
    cs_model_file *file;
    cs_model model;
    cs_model_config cfg;     // what runs: the file's, or the dummy-weights preset's
    cs_kv_cache kv;
    cs_bm *bm;
    cs_constraint_cache *cc; // compiled grammars, shared by requests
    cs_pool *pool;
    cs_forward *fwd;         // CPU backend
    cs_tp_cpu *tp;           // CPU backend, tensor parallel (fwd is NULL then)
    bool on_gpu;             // CUDA backend: gpu instead of kv and fwd
    cs_tp_gpu *gpu;          // its ranks (one, or tensor parallel)
    int follow_fd;           // a node other than 0: its step connection to node 0
    size_t kv_block_bytes;   // K and V of one block, all layers
    int vocab, max_model_len, max_blocks_per_seq;

    // engine-thread-only state
    eng_req **reqs;       // live requests
    int n_reqs, cap_reqs;
    eng_seq **waiting;    // sorted by (priority, arrival) when scheduling
    int n_waiting, cap_waiting;
    eng_seq **running;
    int n_running, cap_running;
    uint64_t admit_counter, arrival_counter;
    // step buffers, sized at init
    int32_t *b_tokens, *b_pos, *b_slots, *b_rows, *b_qstart, *b_kvlen, *b_btstart, *b_table;
    eng_seq **b_seqs;
    float *logits;        // (max_num_batched_tokens, vocab)
    int *row_kind;        // per logits row: -1 sample, >= 0 prompt position for logprobs
    eng_seq **row_seq;
    eng_step steps[2];    // the step being built and, with async scheduling, the one before it
    eng_step *inflight;   // launched, results not delivered yet (async scheduling), or NULL
    bool async;           // schedule step N + 1 before step N's tokens are back, where it can
    bool stalled;         // a sequence could not grow while a step was in flight: deliver it first
    double device_ms;     // of this step: in the forward pass or waiting for the device
    float *row_copy, *row_copy2; // (vocab) scratch for forking choices
    // GPU sampling (on_gpu): penalty entries and grammar masks of a step
    int32_t *pen_ids, *pen_counts;   // (pen_cap)
    uint8_t *pen_in_prompt;
    size_t pen_cap;
    int32_t *pen_stamp, *pen_slot;   // (vocab) dedup of a row's token ids
    int32_t pen_row;
    uint32_t *mask_bits;             // (max_num_seqs, (vocab + 31) / 32) grammar masks of a step
    int32_t *mask_row;               // (max_num_seqs) each logits row's mask or -1
    uint64_t seed_state;             // draws Philox keys for requests without a seed
    cs_sampler *greedy;              // the CPU backend's device-step stand-in (async scheduling)
    cs_sampler_scratch *scratch;     // every request's sampler works in it (one thread samples)

    // shared with other threads, under mu
    pthread_mutex_t mu;
    pthread_cond_t wake;  // commands for the engine thread
    pthread_cond_t ev_cond;
    eng_cmd *cmds;
    int n_cmds, cap_cmds;
    cs_event *events;     // ring
    int ev_head, ev_count, ev_cap;
    int event_fd;
    uint64_t next_id;
    int n_queued;         // requests submitted and not yet done, for the overload limit
    cs_engine_stats stats;
    bool stop;
    pthread_t thread;
};

// device_step.c: steps whose rows are sampled beside the forward pass, so that only ids and
// logprobs come back: on the GPU, and on the CPU (greedy rows only) when async scheduling is
// asked for there. Token ids < 0 in b are placeholders: -1 - row names the sampled id of row
// `row` of the step launched before.
// Can st (built, b) run so? Fills st->params.
bool cs_engine_device_step_ok(cs_engine *e, eng_step *st, const cs_batch *b);
// Launches st (the GPU returns at once when it can; the CPU stand-in runs it all).
void cs_engine_device_launch(cs_engine *e, eng_step *st, const cs_batch *b);
// Waits for st's results (st->out).
void cs_engine_device_wait(cs_engine *e, eng_step *st);
// Can a sequence whose next token is sampled on the device be scheduled again before that
// token is back? (No penalty counts or grammar state depend on it.)
bool cs_engine_device_ahead_ok(const eng_seq *s);
// The device's choice for logits row `row` of st, shaped as the CPU sampler reports it.
void cs_engine_device_result(const eng_step *st, int row, int32_t *id, cs_sample_result *res);
// The CPU backend's forward pass of st into e->logits, b's placeholders first replaced by the
// ids of the step before st.
void cs_engine_cpu_forward(cs_engine *e, const eng_step *st, const cs_batch *b);

// scheduler.c: runs one step if there is work; returns false when idle.
bool cs_engine_step(cs_engine *e);
// Waits for a step still in flight and drops its results (the engine is stopping).
void cs_engine_step_drain(cs_engine *e);
// Frees a request and its sequences (blocks released).
void cs_engine_req_free(cs_engine *e, eng_req *r);
// Queues an event for pollers (takes mu).
void cs_engine_emit(cs_engine *e, const cs_event *ev);
double cs_engine_now_ms(void);
// Appends p to a growable pointer array; false when out of memory.
bool cs_engine_push(void ***arr, int *n, int *cap, void *p);

#endif
