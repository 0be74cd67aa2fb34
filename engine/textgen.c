#include "textgen.h"

#include <stdlib.h>
#include <string.h>

#include "stop_strings.h"

struct cs_textgen {
    const cs_tokenizer *tok;
    cs_gen_params p;
    cs_sampler *sampler;
    cs_stop_matcher *stop;
    cs_detok detok;
    int n_generated;
    bool finished;
    size_t piece_cap, out_cap;
    char *piece; // detokenizer output of one token
    char *out;   // what the stop matcher lets through
};

void cs_gen_params_default(cs_gen_params *p) {
    memset(p, 0, sizeof *p);
    cs_sampling_params_default(&p->sampling);
    p->max_tokens = 256;
}

cs_status cs_gen_params_validate(const cs_gen_params *p, int32_t vocab_size, char *err, size_t errlen) {
    if (p->max_tokens < 0) return cs_errf(err, errlen, CS_ERR_INVALID, "max_tokens must be >= 0");
    if (p->n_stop_ids < 0 || p->n_stop_ids > CS_MAX_STOP_IDS)
        return cs_errf(err, errlen, CS_ERR_INVALID, "stop_token_ids: at most %d", CS_MAX_STOP_IDS);
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] < 0 || p->stop_ids[i] >= vocab_size)
            return cs_errf(err, errlen, CS_ERR_INVALID, "stop_token_ids: %d is outside the vocabulary",
                           p->stop_ids[i]);
    if (p->n_stop < 0 || p->n_stop > 16) return cs_errf(err, errlen, CS_ERR_INVALID, "stop: at most 16 strings");
    return cs_sampling_params_validate(&p->sampling, err, errlen);
}

cs_textgen *cs_textgen_init(const cs_tokenizer *tok, const cs_gen_params *p, const int32_t *prompt,
                            size_t n_prompt, char *err, size_t errlen) {
    if (cs_gen_params_validate(p, cs_tokenizer_vocab_size(tok), err, errlen) != CS_OK) return NULL;
    cs_textgen *g = calloc(1, sizeof *g);
    if (!g) goto nomem;
    g->tok = tok;
    g->p = *p;
    g->piece_cap = 3 * cs_tokenizer_max_token_bytes(tok) + 3;
    // one token's text plus everything the matcher may hold, twice over for the final flush
    g->out_cap = 2 * (g->piece_cap + CS_STOP_MAX_HELD) + 32;
    g->piece = malloc(g->piece_cap);
    g->out = malloc(g->out_cap);
    g->sampler = cs_sampler_init_shared(&p->sampling, cs_tokenizer_vocab_size(tok), p->scratch);
    if (!g->piece || !g->out || !g->sampler) goto nomem;
    if (p->n_stop > 0 && !(g->stop = cs_stop_init(p->stop, (size_t)p->n_stop, err, errlen))) {
        cs_textgen_free(g);
        return NULL;
    }
    if (!g->stop && !(g->stop = cs_stop_init(NULL, 0, err, errlen))) goto nomem;
    cs_sampler_add_prompt(g->sampler, prompt, n_prompt);
    return g;
nomem:
    cs_textgen_free(g);
    cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    return NULL;
}

void cs_textgen_free(cs_textgen *g) {
    if (!g) return;
    cs_sampler_free(g->sampler);
    cs_stop_free(g->stop);
    free(g->piece);
    free(g->out);
    free(g);
}

int cs_textgen_n_generated(const cs_textgen *g) { return g->n_generated; }

static bool is_stop_id(const cs_textgen *g, int32_t id) {
    for (int i = 0; i < g->p.n_stop_ids; i++)
        if (g->p.stop_ids[i] == id) return true;
    return !g->p.ignore_eos && cs_tokenizer_is_eog(g->tok, id);
}

// Appends to out at offset `at` whatever the detokenizer and the stop matcher still hold
// (the generation ends here); returns the new length.
static size_t flush(cs_textgen *g, size_t at) {
    char tail[16];
    size_t n = cs_detok_flush(&g->detok, tail, sizeof tail);
    bool stopped = false;
    at += cs_stop_push(g->stop, tail, n, g->out + at, g->out_cap - at, &stopped);
    if (!stopped && !cs_stop_matched(g->stop)) at += cs_stop_flush(g->stop, g->out + at, g->out_cap - at);
    return at;
}

cs_textgen_step cs_textgen_next(cs_textgen *g, float *logits, cs_sample_result *res) {
    if (g->finished || g->n_generated >= g->p.max_tokens) return cs_textgen_take(g, -1);
    return cs_textgen_take(g, cs_sampler_sample(g->sampler, logits, res));
}

const cs_sampling_params *cs_textgen_sampling(const cs_textgen *g) { return &g->p.sampling; }

cs_textgen_step cs_textgen_take(cs_textgen *g, int32_t id) {
    cs_textgen_step st = {.token = -1, .text = g->out};
    if (g->finished || g->n_generated >= g->p.max_tokens) {
        g->finished = true;
        st.finish = CS_FINISH_LENGTH;
        return st;
    }
    st.token = id;
    if (id < 0) { // everything masked: nothing can follow
        g->finished = true;
        st.finish = CS_FINISH_STOP;
        st.text_len = flush(g, 0);
        return st;
    }
    cs_sampler_accept(g->sampler, id);
    g->n_generated++;
    if (is_stop_id(g, id)) { // the stop token's own text is not shown
        g->finished = true;
        st.finish = CS_FINISH_STOP;
        st.text_len = flush(g, 0);
        return st;
    }
    size_t n = cs_detok_push(&g->detok, g->tok, id, g->piece, g->piece_cap);
    bool stopped = false;
    st.text_len = cs_stop_push(g->stop, g->piece, n, g->out, g->out_cap, &stopped);
    if (stopped) {
        g->finished = true;
        st.finish = CS_FINISH_STOP;
    } else if (g->n_generated >= g->p.max_tokens) {
        g->finished = true;
        st.finish = CS_FINISH_LENGTH;
        st.text_len = flush(g, st.text_len);
    } else {
        st.feed = true;
    }
    return st;
}
