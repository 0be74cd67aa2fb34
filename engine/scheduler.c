// One engine step, in four verbs: schedule (which sequences run how many tokens), launch (one
// ragged forward over all of them), commit (their KV enters the prefix cache) and deliver
// (sample, emit events, finish). Continuous batching: requests join and leave at every step.
//
// Async scheduling. When a step's rows are sampled on the device, step N + 1 is scheduled and
// launched before step N's tokens come back: a sequence whose next token is still on the GPU
// computes it from a placeholder naming step N's row, and step N is delivered while step
// N + 1 runs, so the CPU's share of a step hides behind the GPU's. Only where nothing the
// schedule depends on waits for the token: no penalties or grammar on the sequence (their
// state is that token's), no preemption (its blocks may be in use), one GPU (the other ranks'
// embeddings would need it too). Otherwise the step before is delivered first. A sequence
// whose pending token is its last by length is held back; one that stops on a token computes
// one step in vain, and its row is dropped.
//
// Policy. Running sequences go first, in admission order, so decodes (1 token each) are never
// starved by prefills; a prefill takes what is left of the token budget (chunked prefill).
// When a running sequence cannot get a block, the most recently admitted sequence is
// preempted: its blocks are released (full ones stay in the prefix cache) and it is queued
// again at its original place, to be recomputed from its tokens. Waiting sequences are
// admitted by (priority, arrival) while the budget lasts, head of line first.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "../common/rng.h"
#include "engine_internal.h"
#include "tokenizer.h"

static void remove_ptr(void **arr, int *n, void *p) {
    for (int i = 0; i < *n; i++)
        if (arr[i] == p) {
            memmove(&arr[i], &arr[i + 1], sizeof *arr * (size_t)(*n - i - 1));
            (*n)--;
            return;
        }
}

// --- finishing -----------------------------------------------------------------------------

static void emit_finish(cs_engine *e, eng_req *r, int index, cs_finish_reason why) {
    cs_event ev = {.type = CS_EVENT_FINISH, .request_id = r->id, .index = index, .finish_reason = why};
    cs_engine_emit(e, &ev);
}

// Ends one started choice: frees its blocks at once (full ones stay cached for reuse).
static void finish_seq(cs_engine *e, eng_seq *s, cs_finish_reason why) {
    if (s->state == SEQ_FINISHED) return;
    eng_req *r = s->req;
    if (s->state == SEQ_WAITING) remove_ptr((void **)e->waiting, &e->n_waiting, s);
    else remove_ptr((void **)e->running, &e->n_running, s);
    cs_bm_release(e->bm, &s->bm);
    s->state = SEQ_FINISHED;
    r->n_live--;
    emit_finish(e, r, s->index, why);
}

void cs_engine_req_free(cs_engine *e, eng_req *r) {
    for (int i = 0; i < r->n_started; i++) {
        eng_seq *s = &r->seqs[i];
        if (s->state == SEQ_WAITING) remove_ptr((void **)e->waiting, &e->n_waiting, s);
        if (s->state == SEQ_RUNNING) remove_ptr((void **)e->running, &e->n_running, s);
        cs_bm_release(e->bm, &s->bm);
        cs_textgen_free(s->tg);
        cs_constraint_free(s->cons);
        free(s->tokens);
    }
    cs_cc_release(e->cc, r->grammar);
    remove_ptr((void **)e->reqs, &e->n_reqs, r);
    free(r->seqs);
    free(r->prompt);
    free(r->strings);
    free(r);
}

static void update_stats(cs_engine *e);

// Once every choice has ended: frees the request, then emits DONE, so that a caller who sees
// DONE also sees the request's blocks returned in the stats.
static void maybe_done(cs_engine *e, eng_req *r) {
    if (r->n_live > 0 || (r->n_started < r->n && !r->cancelled) || r->n_inflight > 0) return;
    for (int i = r->n_started; i < r->n; i++) emit_finish(e, r, i, CS_FINISH_REASON_CANCELLED);
    double now = cs_engine_now_ms();
    cs_event ev = {.type = CS_EVENT_DONE, .request_id = r->id, .prompt_tokens = r->n_prompt,
                   .cached_tokens = r->cached_tokens, .completion_tokens = r->completion_tokens,
                   .queue_ms = r->t_sched > 0 ? r->t_sched - r->t_submit : now - r->t_submit,
                   .ttft_ms = r->t_first > 0 ? r->t_first - r->t_submit : 0, .total_ms = now - r->t_submit};
    cs_engine_req_free(e, r);
    e->stats.requests_finished++;
    update_stats(e);
    cs_engine_emit(e, &ev);
}

static void handle_cancelled(cs_engine *e) {
    for (int i = e->n_reqs - 1; i >= 0; i--) {
        if (i >= e->n_reqs) continue;
        eng_req *r = e->reqs[i];
        if (!r->cancelled) continue;
        for (int k = 0; k < r->n_started; k++) finish_seq(e, &r->seqs[k], CS_FINISH_REASON_CANCELLED);
        maybe_done(e, r);
    }
}

// --- scheduling ----------------------------------------------------------------------------

// The sequence's tokens and its output pipeline, made on first admission.
static bool seq_start(cs_engine *e, eng_seq *s, const int32_t *tokens, int n, int index) {
    eng_req *r = s->req;
    s->index = index;
    s->pending_row = -1;
    s->hold = false;
    s->cap = r->n_prompt + r->gen.max_tokens + 1;
    s->tokens = malloc(sizeof(int32_t) * s->cap);
    cs_gen_params g = r->gen;
    g.scratch = e->scratch; // the engine thread samples one row at a time
    if (g.sampling.has_seed) g.sampling.seed += (uint64_t)index; // distinct, reproducible streams
    char err[CS_ERR_LEN];
    s->tg = cs_textgen_init(e->file->tok, &g, r->prompt, (size_t)r->n_prompt, err, sizeof err);
    if (!s->tokens || !s->tg) return false;
    s->gpu_seed = g.sampling.has_seed ? g.sampling.seed : cs_splitmix64(&e->seed_state);
    if (r->grammar && !(s->cons = cs_constraint_init(r->grammar, e->vocab))) return false;
    memcpy(s->tokens, tokens, sizeof(int32_t) * n);
    s->n_tokens = n;
    return true;
}

static void preempt(cs_engine *e, eng_seq *s) {
    remove_ptr((void **)e->running, &e->n_running, s);
    cs_bm_release(e->bm, &s->bm);
    s->state = SEQ_WAITING;
    s->n_sched = 0;
    if (!cs_engine_push((void ***)&e->waiting, &e->n_waiting, &e->cap_waiting, s)) s->req->cancelled = true;
    e->stats.preemptions++;
}

static int cmp_waiting(const void *a, const void *b) {
    const eng_seq *x = *(eng_seq *const *)a, *y = *(eng_seq *const *)b;
    if (x->req->r.priority != y->req->r.priority) return x->req->r.priority < y->req->r.priority ? -1 : 1;
    if (x->req->arrival != y->req->arrival) return x->req->arrival < y->req->arrival ? -1 : 1;
    return x->index - y->index;
}

static int cmp_admitted(const void *a, const void *b) {
    const eng_seq *x = *(eng_seq *const *)a, *y = *(eng_seq *const *)b;
    return x->admitted < y->admitted ? -1 : x->admitted > y->admitted;
}

// Gives s slots for n more tokens, copying a shared partial block first if needed.
static void append_slots(cs_engine *e, eng_seq *s, int n) {
    cs_bm_copy copy;
    if (cs_bm_append(e->bm, &s->bm, n, &copy) == 0) return;
    if (e->on_gpu) {
        cs_tp_gpu_copy_rows(e->gpu, copy.dst * e->kv.block_size, copy.src * e->kv.block_size, copy.n_rows);
        return;
    }
    if (e->tp) cs_tp_cpu_copy_rows(e->tp, copy.dst, copy.src, copy.n_rows);
    else cs_kv_cache_copy_rows(&e->kv, copy.dst, copy.src, copy.n_rows);
}

// Running sequences first, in admission order. ahead: a step is in flight, whose blocks must
// stay put: a sequence that cannot grow waits instead of preempting anyone, and the next step
// is scheduled only after this one's tokens are delivered (when it may preempt).
static int schedule_running(cs_engine *e, int *budget, bool ahead) {
    int n = 0;
    if (e->n_running > 1) qsort(e->running, (size_t)e->n_running, sizeof *e->running, cmp_admitted);
    for (int i = 0; i < e->n_running && *budget > 0 && n < e->p.max_num_seqs; i++) {
        eng_seq *s = e->running[i];
        if (s->hold) continue;
        int want = s->n_tokens + (s->pending_row >= 0) - s->bm.n_computed;
        int chunk = want < *budget ? want : *budget;
        CS_ASSERT(want > 0);
        if (ahead && !cs_bm_can_append(e->bm, &s->bm, chunk)) {
            e->stalled = true;
            break;
        }
        while (!cs_bm_can_append(e->bm, &s->bm, chunk)) {
            eng_seq *victim = e->running[e->n_running - 1]; // the newest
            preempt(e, victim);
            if (victim == s) break;
        }
        if (s->state != SEQ_RUNNING) break; // preempted itself: everything after it is newer
        append_slots(e, s, chunk);
        s->n_sched = chunk;
        *budget -= chunk;
        e->b_seqs[n++] = s;
    }
    return n;
}

static int schedule_waiting(cs_engine *e, int n, int *budget) {
    if (e->n_waiting > 1) qsort(e->waiting, (size_t)e->n_waiting, sizeof *e->waiting, cmp_waiting);
    while (e->n_waiting > 0 && *budget > 0 && n < e->p.max_num_seqs) {
        eng_seq *s = e->waiting[0];
        eng_req *r = s->req;
        const int32_t *tokens = s->tokens ? s->tokens : r->prompt;
        int n_tok = s->tokens ? s->n_tokens : r->n_prompt;
        // prompt logprobs need the logits of every position from plp_next - 1 on: no cache hits there
        int lookup = r->r.prompt_logprobs_from >= 0 && r->plp_next < r->n_prompt ? r->plp_next : n_tok;
        int hit = cs_bm_lookup(e->bm, tokens, lookup, r->salt);
        int chunk = n_tok - hit < *budget ? n_tok - hit : *budget;
        if (!cs_bm_can_admit(e->bm, tokens, lookup, r->salt, hit + chunk)) break; // head of line waits
        if (!s->tokens && !seq_start(e, s, r->prompt, r->n_prompt, 0)) {
            r->cancelled = true; // out of memory
            remove_ptr((void **)e->waiting, &e->n_waiting, s);
            s->state = SEQ_RUNNING; // so that finishing removes it from the right list
            cs_engine_push((void ***)&e->running, &e->n_running, &e->cap_running, s);
            continue;
        }
        hit = cs_bm_admit(e->bm, &s->bm, s->tokens, lookup, r->salt);
        if (!s->prefilled && s->index == 0 && r->t_sched == 0) {
            r->cached_tokens = hit;
            r->t_sched = cs_engine_now_ms();
        }
        remove_ptr((void **)e->waiting, &e->n_waiting, s);
        s->state = SEQ_RUNNING;
        s->admitted = e->admit_counter++;
        if (!cs_engine_push((void ***)&e->running, &e->n_running, &e->cap_running, s)) r->cancelled = true;
        append_slots(e, s, chunk);
        s->n_sched = chunk;
        *budget -= chunk;
        e->b_seqs[n++] = s;
    }
    return n;
}

// --- run -----------------------------------------------------------------------------------

// Lays the scheduled sequences out as one ragged batch, recorded in st; picks the logits rows
// to compute: the last token of every sequence that samples next, and prompt positions whose
// logprobs were asked for. A token still on the device is a placeholder: -1 - its row.
static void build_batch(cs_engine *e, int n_seqs, cs_batch *b, eng_step *st) {
    int t = 0, rows = 0, bt = 0;
    for (int i = 0; i < n_seqs; i++) {
        eng_seq *s = e->b_seqs[i];
        eng_req *r = s->req;
        int start = s->bm.n_computed;
        e->b_qstart[i] = t;
        e->b_btstart[i] = bt;
        for (int k = 0; k < s->n_sched; k++, t++) {
            int pos = start + k;
            CS_ASSERT(pos < s->n_tokens || (pos == s->n_tokens && s->pending_row >= 0));
            e->b_tokens[t] = pos < s->n_tokens ? s->tokens[pos] : -1 - s->pending_row;
            e->b_pos[t] = pos;
            e->b_slots[t] = cs_bm_slot(e->bm, &s->bm, pos);
            // logits at pos predict token pos + 1
            if (s->index == 0 && r->r.prompt_logprobs_from >= 0 && pos + 1 >= r->plp_next && pos + 1 < r->n_prompt) {
                e->row_kind[rows] = pos + 1;
                e->row_seq[rows] = s;
                e->b_rows[rows++] = t;
            }
        }
        s->logit_row = -1;
        bool complete = start + s->n_sched == s->n_tokens + (s->pending_row >= 0);
        if (complete && !(r->gen.max_tokens == 0)) {
            s->logit_row = rows;
            e->row_kind[rows] = -1;
            e->row_seq[rows] = s;
            e->b_rows[rows++] = t - 1;
        }
        e->b_kvlen[i] = start + s->n_sched;
        memcpy(e->b_table + bt, s->bm.blocks, sizeof(int32_t) * s->bm.n_blocks);
        bt += s->bm.n_blocks;
        st->seqs[i] = s;
        st->n_sched[i] = s->n_sched;
        st->row[i] = s->logit_row;
        r->n_inflight++;
    }
    st->n_seqs = n_seqs;
    e->b_qstart[n_seqs] = t;
    e->b_btstart[n_seqs] = bt;
    *b = (cs_batch){.n_tokens = t, .tokens = e->b_tokens, .positions = e->b_pos, .slots = e->b_slots,
                    .attn = {n_seqs, e->b_qstart, e->b_kvlen, e->b_btstart, e->b_table, e->kv.block_size},
                    .n_logits = rows, .logit_rows = e->b_rows};
}

// --- commit and deliver --------------------------------------------------------------------

static float log_softmax_at(const float *logits, int vocab, int id) {
    double mx = logits[0], sum = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    return (float)((double)logits[id] - mx - log(sum));
}

static void emit_prompt_logprob(cs_engine *e, eng_req *r, int pos, const float *row) {
    cs_event ev = {.type = CS_EVENT_PROMPT_LOGPROB, .request_id = r->id, .index = pos, .token = r->prompt[pos]};
    ev.logprob = log_softmax_at(row, e->vocab, r->prompt[pos]);
    cs_engine_emit(e, &ev);
    r->plp_next = pos + 1;
}

// Emits the step's token (when there is one), records it, and either feeds it to the model
// (true) or ends the choice (false).
static bool deliver(cs_engine *e, eng_seq *s, const cs_textgen_step *st, const cs_sample_result *res) {
    eng_req *r = s->req;
    if (st->token >= 0) {
        if (s->cons && !cs_constraint_accept(s->cons, st->token)) { // the mask allowed it: a bug
            finish_seq(e, s, CS_FINISH_REASON_ERROR);
            return false;
        }
        cs_event ev = {.type = CS_EVENT_TOKEN, .request_id = r->id, .index = s->index, .token = st->token,
                       .logprob = res->logprob, .n_top = res->n_top};
        for (int i = 0; i < res->n_top; i++) {
            ev.top_ids[i] = res->top[i].id;
            ev.top_logprobs[i] = res->top[i].logprob;
        }
        ev.text_len = st->text_len < sizeof ev.text ? st->text_len : sizeof ev.text;
        memcpy(ev.text, st->text, ev.text_len);
        cs_engine_emit(e, &ev);
        r->completion_tokens++;
        e->stats.generated_tokens++;
        if (r->t_first == 0) r->t_first = cs_engine_now_ms();
    }
    if (st->feed) {
        CS_ASSERT(s->n_tokens < s->cap);
        s->tokens[s->n_tokens++] = st->token;
        return true;
    }
    finish_seq(e, s, st->finish == CS_FINISH_LENGTH ? CS_FINISH_REASON_LENGTH : CS_FINISH_REASON_STOP);
    return false;
}

// A constrained sequence's next token when the grammar leaves no choice: the only allowed
// token (-1: none is allowed, which ends the choice), else -2: sample.
static int32_t forced_token(eng_seq *s) {
    int32_t single;
    int n = cs_constraint_mask(s->cons, &single);
    return n == 0 ? -1 : single >= 0 ? single : -2;
}

// Jump-forward at the token level: while the grammar allows exactly one token, take it and
// append it, so the next step computes the whole run in one extend. The tokens are the ones
// step-by-step masking would pick (each is the only one allowed); their logprobs are not
// computed (reported as 0: probability 1 under the constraint).
static void append_forced(cs_engine *e, eng_seq *s) {
    static const cs_sample_result none = {.id = -1, .logprob = 0.0f};
    for (;;) {
        int32_t id = forced_token(s);
        if (id < -1) return;
        cs_textgen_step st = cs_textgen_take(s->tg, id);
        cs_sample_result res = none;
        res.id = st.token;
        if (!deliver(e, s, &st, &res)) return;
    }
}

// Samples the next token of s from its logits row: the host's copy (row), or what the device
// sampled for it in step (a constrained choice masks the host row first, or takes its forced
// token); emits it, and ends the choice when textgen says so.
static void sample(cs_engine *e, const eng_step *step, eng_seq *s, int logit_row, float *row) {
    cs_sample_result res = {.id = -1, .logprob = -INFINITY};
    cs_textgen_step st;
    int32_t forced = s->cons && !step->device ? forced_token(s) : -2;
    if (step->device) {
        int32_t id;
        cs_engine_device_result(step, logit_row, &id, &res);
        st = cs_textgen_take(s->tg, id);
    } else if (forced >= -1) {
        st = cs_textgen_take(s->tg, forced);
        if (forced >= 0) res = (cs_sample_result){.id = forced, .logprob = log_softmax_at(row, e->vocab, forced)};
    } else {
        if (s->cons) cs_constraint_apply(s->cons, row);
        st = cs_textgen_next(s->tg, row, &res);
    }
    if (deliver(e, s, &st, &res) && s->cons && !e->p.no_forced_runs) append_forced(e, s);
}

// Choice 0 has computed the prompt: the other choices start from its blocks (shared, copied
// on write) and sample their first token from the same logits (a host step's).
static void fork_choices(cs_engine *e, const eng_step *step, eng_seq *s0, const float *row, float *scratch) {
    eng_req *r = s0->req;
    for (int i = 1; i < r->n; i++) {
        eng_seq *c = &r->seqs[i];
        c->req = r;
        r->n_started++;
        r->n_live++;
        if (!seq_start(e, c, s0->tokens, s0->n_tokens, i)) {
            c->state = SEQ_FINISHED;
            r->n_live--;
            emit_finish(e, r, i, CS_FINISH_REASON_ERROR);
            continue;
        }
        cs_bm_fork(e->bm, &s0->bm, &c->bm);
        c->state = SEQ_RUNNING;
        c->prefilled = true;
        c->admitted = e->admit_counter++;
        if (!cs_engine_push((void ***)&e->running, &e->n_running, &e->cap_running, c)) {
            r->cancelled = true;
            continue;
        }
        memcpy(scratch, row, sizeof(float) * e->vocab);
        sample(e, step, c, -1, scratch);
    }
}

// The step's KV is written (or will be before anything reads it: one stream): its full blocks
// enter the prefix cache. Its input tokens are all known by now.
static void commit_step(cs_engine *e, const eng_step *st) {
    for (int i = 0; i < st->n_seqs; i++) {
        eng_seq *s = st->seqs[i];
        eng_req *r = s->req;
        if (s->state != SEQ_RUNNING) continue; // ended since its launch: its blocks are released
        for (int k = 0; k < st->n_sched[i]; k++)
            if (s->bm.n_computed + k < r->n_prompt) e->stats.prompt_tokens_computed++;
        cs_bm_commit(e->bm, &s->bm, s->tokens, st->n_sched[i], r->salt);
    }
}

// Takes the step's results (waiting for the device's) and hands every sampled token on.
static void deliver_step(cs_engine *e, eng_step *st) {
    if (st->device) {
        double t0 = cs_engine_now_ms();
        cs_engine_device_wait(e, st);
        e->device_ms += cs_engine_now_ms() - t0;
    }
    if (st == e->inflight) e->inflight = NULL;
    // prompt logprobs first: their rows are read before any sampling modifies logits in place
    for (int row = 0; row < st->n_host_rows; row++)
        if (e->row_kind[row] >= 0) emit_prompt_logprob(e, e->row_seq[row]->req, e->row_kind[row], e->logits + (size_t)row * e->vocab);
    for (int i = 0; i < st->n_seqs; i++) {
        eng_seq *s = st->seqs[i];
        eng_req *r = s->req;
        r->n_inflight--;
        s->pending_row = -1;
        s->hold = false;
        if (s->state != SEQ_RUNNING) { // ended since its launch: the row is dropped
            maybe_done(e, r);
            continue;
        }
        if (s->bm.n_computed != s->n_tokens) continue; // mid-prefill
        bool first = !s->prefilled;
        s->prefilled = true;
        if (r->gen.max_tokens == 0) { // scoring only: the prompt is computed, nothing to sample
            if (r->t_first == 0) r->t_first = cs_engine_now_ms();
            finish_seq(e, s, CS_FINISH_REASON_LENGTH);
            for (int k = 1; k < r->n; k++) emit_finish(e, r, k, CS_FINISH_REASON_LENGTH);
            r->n_started = r->n;
            maybe_done(e, r);
            continue;
        }
        int row = st->row[i];
        float *host_row = st->device ? NULL : e->logits + (size_t)row * e->vocab;
        if (first && s->index == 0 && r->n > 1 && r->n_started < r->n) {
            // the others start from choice 0's prompt, before it appends its own first token
            memcpy(e->row_copy, host_row, sizeof(float) * e->vocab);
            fork_choices(e, st, s, e->row_copy, e->row_copy2);
        }
        sample(e, st, s, row, host_row);
        maybe_done(e, r);
    }
}

static void update_stats(cs_engine *e) {
    cs_bm_stats b;
    cs_bm_stats_get(e->bm, &b);
    pthread_mutex_lock(&e->mu);
    cs_engine_stats *st = &e->stats;
    st->running = e->n_running;
    st->waiting = e->n_waiting;
    st->blocks_total = b.total;
    st->blocks_free = b.free;
    st->blocks_used = b.used;
    st->blocks_cached = b.cached;
    st->block_size = e->kv.block_size;
    st->kv_cache_bytes = (size_t)b.total * e->kv_block_bytes;
    st->prefix_hit_rate = b.lookups_tokens ? (double)b.hit_tokens / (double)b.lookups_tokens : 0.0;
    st->prefix_cache_queries = b.lookups_tokens;
    st->prefix_cache_hits = b.hit_tokens;
    pthread_mutex_unlock(&e->mu);
}

// Can the step after prev be scheduled before prev's tokens are back? Then marks each
// sequence whose token is pending, or holds it back when prev's delivery ends it: that token
// will be its last, or it only scored its prompt.
static bool run_ahead(cs_engine *e, const eng_step *prev) {
    for (int i = 0; i < prev->n_seqs; i++)
        if (prev->row[i] >= 0 && prev->seqs[i]->state == SEQ_RUNNING && !cs_engine_device_ahead_ok(prev->seqs[i]))
            return false;
    for (int i = 0; i < prev->n_seqs; i++) {
        eng_seq *s = prev->seqs[i];
        if (s->state != SEQ_RUNNING) continue;
        if (prev->row[i] < 0) {
            // a prompt scored (max_tokens 0) ends when prev is delivered; a chunk goes on
            if (s->bm.n_computed == s->n_tokens) s->hold = true;
        } else if (cs_textgen_n_generated(s->tg) + 1 >= s->req->gen.max_tokens) {
            s->hold = true;
        } else {
            s->pending_row = prev->row[i];
        }
    }
    return true;
}

static bool step(cs_engine *e) {
    handle_cancelled(e);
    eng_step *prev = e->inflight;
    if (prev) {
        commit_step(e, prev);
        if (e->stalled || !run_ahead(e, prev)) {
            deliver_step(e, prev);
            prev = NULL;
        }
    }
    int budget = e->p.max_num_batched_tokens;
    e->stalled = false;
    int n = schedule_running(e, &budget, prev != NULL);
    if (!e->stalled) n = schedule_waiting(e, n, &budget); // else preempting may come first
    update_stats(e); // what was admitted shows at once, not after a long prefill step
    if (n == 0) {
        if (!prev) return false;
        deliver_step(e, prev);
        update_stats(e);
        return true;
    }
    eng_step *st = e->inflight == &e->steps[0] ? &e->steps[1] : &e->steps[0];
    cs_batch b;
    build_batch(e, n, &b, st);
    st->device = cs_engine_device_step_ok(e, st, &b);
    st->n_host_rows = st->device ? 0 : b.n_logits;
    double t_run = cs_engine_now_ms();
    if (st->device) {
        cs_engine_device_launch(e, st, &b);
    } else if (e->on_gpu) {
        cs_tp_gpu_run(e->gpu, &b, e->logits); // placeholders resolve on the device
    } else {
        cs_engine_cpu_forward(e, st, &b);
    }
    if (!(st->device && e->on_gpu)) e->device_ms += cs_engine_now_ms() - t_run; // a launch on the GPU is host work
    if (prev) {
        e->stats.steps_ahead++;
        deliver_step(e, prev); // while st runs
    }
    if (st->device && e->async) {
        e->inflight = st;
    } else {
        commit_step(e, st);
        deliver_step(e, st);
    }
    e->stats.steps++;
    update_stats(e);
    return true;
}

bool cs_engine_step(cs_engine *e) {
    double t0 = cs_engine_now_ms();
    e->device_ms = 0;
    bool ran = step(e);
    if (ran) e->stats.host_ms += cs_engine_now_ms() - t0 - e->device_ms;
    return ran;
}

void cs_engine_step_drain(cs_engine *e) {
    if (!e->inflight) return;
    cs_engine_device_wait(e, e->inflight);
    e->inflight = NULL;
}
