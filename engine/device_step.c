// Steps whose rows are sampled beside the forward pass, so that only ids and logprobs come
// back to the host: on the CUDA backend the grammar masks and the sampler kernel run after
// lm_head. Steps that need whole rows on the host (prompt logprobs, the first token of n > 1
// choices, which all sample the same row) keep the host path.
//
// Async scheduling needs such steps: step N + 1 is launched before step N's ids reach the
// host, its tokens naming step N's rows instead (placeholders, resolved on the device). On
// the CPU there is nothing to overlap, but the engine can run the same pipeline (asked for
// with async_scheduling = 1) so that tests exercise it: greedy rows are sampled right after
// the forward pass by the CPU sampler, which gives exactly the host path's choices.
#include <math.h>
#include <string.h>

#include "../common/assert.h"
#include "engine_internal.h"

// Appends row's penalty entries: every distinct token of the sequence, whether the prompt has
// it (repetition penalty) and how often it was generated (presence/frequency).
static void penalty_entries(cs_engine *e, const eng_seq *s, int *n_pen, cs_cuda_sample_params *p) {
    int n_prompt = s->req->n_prompt;
    p->pen_start = *n_pen;
    e->pen_row++;
    for (int i = 0; i < s->n_tokens; i++) {
        int32_t id = s->tokens[i];
        if (e->pen_stamp[id] != e->pen_row) {
            e->pen_stamp[id] = e->pen_row;
            e->pen_slot[id] = *n_pen;
            CS_ASSERT((size_t)*n_pen < e->pen_cap);
            e->pen_ids[*n_pen] = id;
            e->pen_counts[*n_pen] = 0;
            e->pen_in_prompt[*n_pen] = 0;
            (*n_pen)++;
        }
        int k = e->pen_slot[id];
        if (i < n_prompt) e->pen_in_prompt[k] = 1;
        else e->pen_counts[k]++;
    }
    p->pen_len = *n_pen - p->pen_start;
}

bool cs_engine_device_ahead_ok(const eng_seq *s) {
    return !s->cons && !cs_sampling_params_penalties(cs_textgen_sampling(s->tg));
}

bool cs_engine_device_step_ok(cs_engine *e, eng_step *st, const cs_batch *b) {
    if (!e->on_gpu && !e->async) return false;
    for (int row = 0; row < b->n_logits; row++)
        if (e->row_kind[row] >= 0) return false; // a prompt logprob: the host needs the row
    for (int i = 0; i < st->n_seqs; i++) {
        const eng_seq *s = st->seqs[i];
        const eng_req *r = s->req;
        if (st->row[i] >= 0 && !s->prefilled && s->index == 0 && r->n > 1 && r->n_started < r->n)
            return false; // choices fork from this row
    }
    for (int row = 0; row < b->n_logits; row++) {
        const eng_seq *s = e->row_seq[row];
        const cs_sampling_params *sp = cs_textgen_sampling(s->tg);
        if (!e->on_gpu && (sp->temperature >= CS_SAMPLER_GREEDY_EPS || cs_sampling_params_penalties(sp) || s->cons))
            return false; // the CPU stand-in takes greedy rows only
        // a token still pending is the one before this row's: the step counts it
        uint64_t step = (uint64_t)cs_textgen_n_generated(s->tg) + (s->pending_row >= 0);
        st->params[row] = (cs_cuda_sample_params){.temperature = sp->temperature, .top_k = sp->top_k,
                                                  .top_p = sp->top_p, .min_p = sp->min_p,
                                                  .repetition_penalty = sp->repetition_penalty,
                                                  .presence_penalty = sp->presence_penalty,
                                                  .frequency_penalty = sp->frequency_penalty,
                                                  .n_logprobs = sp->n_logprobs, .seed = s->gpu_seed, .step = step};
    }
    return true;
}

void cs_engine_cpu_forward(cs_engine *e, const eng_step *st, const cs_batch *b) {
    const eng_step *prev = st == &e->steps[0] ? &e->steps[1] : &e->steps[0];
    for (int t = 0; t < b->n_tokens; t++)
        if (b->tokens[t] < 0) { // the CPU stand-in ran the step before to the end at its launch
            int32_t id = prev->ids[-1 - b->tokens[t]];
            e->b_tokens[t] = id >= 0 ? id : 0; // -1 ends that sequence: any token does
        }
    if (e->tp) cs_tp_cpu_run(e->tp, b, e->logits);
    else cs_forward_run(e->fwd, b, e->logits);
}

// The CPU stand-in: runs the forward pass and takes each row's greedy choice and its logprobs
// as the host path would.
static void cpu_launch(cs_engine *e, eng_step *st, const cs_batch *b) {
    cs_engine_cpu_forward(e, st, b);
    for (int row = 0; row < b->n_logits; row++) {
        cs_sample_result res;
        int32_t id = cs_sampler_sample(e->greedy, e->logits + (size_t)row * e->vocab, &res);
        st->ids[row] = id;
        st->lp[row] = res.logprob;
        for (int k = 0; k < CS_CUDA_MAX_LOGPROBS; k++) {
            bool has = k < res.n_top && k < CS_SAMPLER_MAX_LOGPROBS;
            st->top_ids[(size_t)row * CS_CUDA_MAX_LOGPROBS + k] = has ? res.top[k].id : -1;
            st->top_lp[(size_t)row * CS_CUDA_MAX_LOGPROBS + k] = has ? res.top[k].logprob : -INFINITY;
        }
    }
    st->out = (cs_gpu_sampled){st->ids, st->lp, st->top_ids, st->top_lp};
}

void cs_engine_device_launch(cs_engine *e, eng_step *st, const cs_batch *b) {
    if (!e->on_gpu) {
        cpu_launch(e, st, b);
        return;
    }
    int n_pen = 0, n_masks = 0;
    size_t words = (size_t)(e->vocab + 31) / 32;
    for (int row = 0; row < b->n_logits; row++) {
        const eng_seq *s = e->row_seq[row];
        cs_cuda_sample_params *p = &st->params[row];
        if (cs_sampling_params_penalties(cs_textgen_sampling(s->tg))) penalty_entries(e, s, &n_pen, p);
        e->mask_row[row] = -1;
        if (s->cons) { // the grammar's mask goes with the row; the GPU applies it before sampling
            memcpy(e->mask_bits + (size_t)n_masks * words, cs_constraint_bits(s->cons), words * 4);
            e->mask_row[row] = n_masks++;
        }
    }
    cs_gpu_masks masks = {e->mask_bits, e->mask_row, n_masks};
    cs_tp_gpu_launch_sample(e->gpu, b, st->params, e->pen_ids, e->pen_counts, e->pen_in_prompt, n_pen, &masks);
}

void cs_engine_device_wait(cs_engine *e, eng_step *st) {
    if (e->on_gpu) cs_tp_gpu_wait_sample(e->gpu, &st->out);
}

void cs_engine_device_result(const eng_step *st, int row, int32_t *id, cs_sample_result *res) {
    const cs_gpu_sampled *o = &st->out;
    *id = o->ids[row];
    res->id = *id;
    res->logprob = *id >= 0 ? o->logprob[row] : -INFINITY;
    int want = st->params[row].n_logprobs;
    res->n_top = 0;
    for (int k = 0; k < want; k++) {
        int32_t t = o->top_ids[(size_t)row * CS_CUDA_MAX_LOGPROBS + k];
        float lp = o->top_lp[(size_t)row * CS_CUDA_MAX_LOGPROBS + k];
        if (t < 0 || !isfinite(lp)) break; // fewer finite logits than asked for
        res->top[res->n_top++] = (cs_logprob){t, lp};
    }
}
