// The output side of one generation: turns each step's logits into the next token and the
// text it adds, and decides when to stop (end-of-generation token, stop token ids, stop
// strings, max_tokens). Sampler, streaming detokenizer and stop-string matcher, in one place.
//
//     cs_textgen *g = cs_textgen_init(tok, &params, prompt_ids, n_prompt, err, sizeof err);
//     for (;;) {
//         ... run the model, get logits for the last token ...
//         cs_textgen_step st = cs_textgen_next(g, logits, NULL);
//         fwrite(st.text, 1, st.text_len, stdout);
//         if (st.finish != CS_FINISH_NONE) break;
//         ... feed st.token to the model ...
//     }
//     cs_textgen_free(g);
#ifndef CS_TEXTGEN_H
#define CS_TEXTGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "sampler.h"
#include "tokenizer.h"

#define CS_MAX_STOP_IDS 16

typedef struct cs_gen_params {
    cs_sampling_params sampling;
    int max_tokens;          // >= 0
    bool ignore_eos;         // keep going past end-of-generation tokens
    int n_stop_ids;
    int32_t stop_ids[CS_MAX_STOP_IDS];
    int n_stop;
    const char *stop[16];    // stop strings (borrowed until init returns)
    cs_sampler_scratch *scratch; // the sampler's working arrays, shared with samplers that never
                                 // sample at the same time (borrowed: it must outlive the
                                 // textgen); NULL: its own
} cs_gen_params;

void cs_gen_params_default(cs_gen_params *p); // max_tokens 256, sampler defaults
// Checks everything against the vocabulary and the limits; err names the parameter.
cs_status cs_gen_params_validate(const cs_gen_params *p, int32_t vocab_size, char *err, size_t errlen);

typedef enum cs_finish {
    CS_FINISH_NONE,   // keep going
    CS_FINISH_STOP,   // end-of-generation token, stop token id or stop string
    CS_FINISH_LENGTH, // max_tokens reached
} cs_finish;

typedef struct cs_textgen_step {
    int32_t token;       // the sampled token (-1 when nothing could be sampled)
    bool feed;           // true when the model must process token before the next step
    const char *text;    // new text to show (borrowed until the next call)
    size_t text_len;
    cs_finish finish;
} cs_textgen_step;

typedef struct cs_textgen cs_textgen;

// tok is borrowed. The prompt ids feed the repetition penalty. NULL with err on failure.
cs_textgen *cs_textgen_init(const cs_tokenizer *tok, const cs_gen_params *p, const int32_t *prompt,
                            size_t n_prompt, char *err, size_t errlen);
void cs_textgen_free(cs_textgen *g);
// Samples from logits (vocab; modified in place); res gets logprobs when asked for.
cs_textgen_step cs_textgen_next(cs_textgen *g, float *logits, cs_sample_result *res);
int cs_textgen_n_generated(const cs_textgen *g);
// The step after a token sampled elsewhere (the GPU sampler, with this generation's
// parameters): records it for the penalties, detokenizes, checks the stops. -1 means nothing
// could be sampled. cs_textgen_next is cs_textgen_take of the CPU sampler's choice.
cs_textgen_step cs_textgen_take(cs_textgen *g, int32_t id);
// The sampling parameters as given at init (the seed already made distinct per choice).
const cs_sampling_params *cs_textgen_sampling(const cs_textgen *g);

#endif
