// Sampling on the GPU for the engine's CUDA backend: a step whose logits rows are all "next
// token of a sequence" runs the grammar masks (constrained rows) and the sampler kernel after
// lm_head, so only ids and logprobs cross to the host. Steps that need whole rows on the host
// (prompt logprobs, the first token of n > 1 choices, which all sample the same row) keep the
// host path.
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

bool cs_engine_gpu_sample_step(cs_engine *e, int n_seqs, const cs_batch *b) {
    if (!e->on_gpu) return false;
    for (int row = 0; row < b->n_logits; row++)
        if (e->row_kind[row] >= 0) return false; // a prompt logprob: the host needs the row
    for (int i = 0; i < n_seqs; i++) {
        const eng_seq *s = e->b_seqs[i];
        const eng_req *r = s->req;
        if (s->logit_row >= 0 && !s->prefilled && s->index == 0 && r->n > 1 && r->n_started < r->n)
            return false; // choices fork from this row
    }
    int n_pen = 0, n_masks = 0;
    size_t words = (size_t)(e->vocab + 31) / 32;
    for (int row = 0; row < b->n_logits; row++) {
        const eng_seq *s = e->row_seq[row];
        const cs_sampling_params *sp = cs_textgen_sampling(s->tg);
        cs_cuda_sample_params *p = &e->s_params[row];
        *p = (cs_cuda_sample_params){.temperature = sp->temperature, .top_k = sp->top_k, .top_p = sp->top_p,
                                     .min_p = sp->min_p, .repetition_penalty = sp->repetition_penalty,
                                     .presence_penalty = sp->presence_penalty,
                                     .frequency_penalty = sp->frequency_penalty, .n_logprobs = sp->n_logprobs,
                                     .seed = s->gpu_seed, .step = (uint64_t)cs_textgen_n_generated(s->tg)};
        if (sp->repetition_penalty != 1.0f || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f)
            penalty_entries(e, s, &n_pen, p);
        e->mask_row[row] = -1;
        if (s->cons) { // the grammar's mask goes with the row; the GPU applies it before sampling
            memcpy(e->mask_bits + (size_t)n_masks * words, cs_constraint_bits(s->cons), words * 4);
            e->mask_row[row] = n_masks++;
        }
    }
    cs_gpu_masks masks = {e->mask_bits, e->mask_row, n_masks};
    cs_tp_gpu_run_sample(e->gpu, b, e->s_params, e->pen_ids, e->pen_counts, e->pen_in_prompt, n_pen, &masks,
                              &e->sampled);
    return true;
}

void cs_engine_gpu_sample_result(const cs_engine *e, int row, int32_t *id, cs_sample_result *res) {
    const cs_gpu_sampled *o = &e->sampled;
    *id = o->ids[row];
    res->id = *id;
    res->logprob = *id >= 0 ? o->logprob[row] : -INFINITY;
    int want = e->s_params[row].n_logprobs;
    res->n_top = 0;
    for (int k = 0; k < want; k++) {
        int32_t t = o->top_ids[(size_t)row * CS_CUDA_MAX_LOGPROBS + k];
        float lp = o->top_lp[(size_t)row * CS_CUDA_MAX_LOGPROBS + k];
        if (t < 0 || !isfinite(lp)) break; // fewer finite logits than asked for
        res->top[res->n_top++] = (cs_logprob){t, lp};
    }
}
