// Token sampler for one request: penalties, temperature, min-p / top-k / top-p, a seeded RNG,
// and the logprobs of the chosen token and its top-N alternatives.
//
//     cs_sampling_params p;
//     cs_sampling_params_default(&p);
//     p.temperature = 0.7f; p.top_p = 0.9f; p.seed = 42; p.has_seed = true;
//     char err[CS_ERR_LEN];
//     if (cs_sampling_params_validate(&p, err, sizeof err) != CS_OK) { reject(err); }
//     cs_sampler *s = cs_sampler_init(&p, vocab_size);      // NULL: out of memory
//     cs_sampler_add_prompt(s, prompt_ids, n_prompt);
//     for (;;) {
//         float *logits = forward(...);                       // (vocab), modified in place
//         cs_sample_result r;
//         int32_t id = cs_sampler_sample(s, logits, &r);      // -1: every logit was -inf
//         cs_sampler_accept(s, id);
//     }
//     cs_sampler_free(s);
//
// Order of operations (that of vLLM's v1 sampler):
//   1. logprobs are taken from the logits as passed in (log_softmax of the "raw" logits);
//   2. repetition penalty (prompt + generated tokens), then frequency and presence penalties
//      (generated tokens only);
//   3. temperature < CS_SAMPLER_GREEDY_EPS: argmax of the penalised logits, lowest id on ties;
//   4. otherwise softmax(logits / temperature), then min-p (drop p < min_p * p_max), then top-k
//      (keep the k most likely), then top-p over the distribution renormalised after top-k
//      (keep the smallest most-likely-first set whose mass >= top_p), then one draw from what
//      is left, renormalised. HF and vLLM's older sampler apply min-p last; the two orders
//      differ only when both top_p and min_p are set.
// Ties in top-k / top-p are broken by lower token id, so the kept set is always well defined.
//
// Constrained decoding masks a logit by setting it to -INFINITY before calling: such tokens
// (and NaN logits) are never chosen, and when no token is left the result is -1.
//
// Reproducibility: the RNG is our own (xoshiro256**, seeded through splitmix64) and each
// non-greedy sample uses exactly one 53-bit draw, so the same seed, parameters and logits give
// the same ids, independent of threads or libc rand(). Probabilities go through our own exp
// (kernels/cpu/softmax.c: the same bits with or without AVX2), not libm's, so every machine
// draws the same ids.
#ifndef CS_SAMPLER_H
#define CS_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"

#define CS_SAMPLER_MAX_LOGPROBS 20
#define CS_SAMPLER_GREEDY_EPS 1e-5f // a temperature below this means greedy, as in vLLM

typedef struct cs_sampling_params {
    float temperature;        // 0 (or < CS_SAMPLER_GREEDY_EPS) => greedy
    int32_t top_k;            // <= 0 => off
    float top_p;              // 1 => off
    float min_p;              // 0 => off
    float repetition_penalty; // 1 => off; prompt and generated tokens, positive logits divided,
                              // non-positive multiplied (CTRL, as HF and vLLM do)
    float presence_penalty;   // 0 => off; OpenAI semantics, generated tokens only:
    float frequency_penalty;  //   logit -= frequency * count + presence * (count > 0)
    uint64_t seed;
    bool has_seed;            // false => seeded from a process-wide counter and the clock
    int32_t n_logprobs;       // top-N alternatives to report, 0..CS_SAMPLER_MAX_LOGPROBS
} cs_sampling_params;

// Temperature 1, every filter and penalty off, no seed, no logprobs.
void cs_sampling_params_default(cs_sampling_params *p);
// Whether any penalty changes the logits (then the sampler keeps a history of the tokens).
bool cs_sampling_params_penalties(const cs_sampling_params *p);

// CS_OK, or CS_ERR_INVALID with a one-line message naming the parameter: temperature finite
// and >= 0, top_p in (0, 1], min_p in [0, 1], repetition_penalty finite and > 0,
// presence/frequency_penalty in [-2, 2], n_logprobs in [0, 20]. top_k takes any value.
cs_status cs_sampling_params_validate(const cs_sampling_params *p, char *err, size_t errlen);

typedef struct cs_sampler cs_sampler; // per-request state; not shared between threads

// The arrays one sample works in: about 23 * vocab_size bytes + 40 KiB (1.1 MiB for 49152).
// Samplers that never sample at the same time (one thread's: an engine's requests) can share
// one, so a request's own state is only its penalty history.
typedef struct cs_sampler_scratch cs_sampler_scratch;
cs_sampler_scratch *cs_sampler_scratch_new(int32_t vocab_size); // NULL: out of memory
void cs_sampler_scratch_free(cs_sampler_scratch *x);            // NULL is fine

// Copies p (which must validate) and allocates what the sampler will use, so sampling never
// allocates: its own scratch, or, with cs_sampler_init_shared, scratch (borrowed: it must
// outlive the sampler, and be at least vocab_size wide); plus, when a penalty is on, the
// history: 9 * vocab_size bytes (442 KiB for 49152). Returns NULL when out of memory. The
// caller frees with cs_sampler_free.
cs_sampler *cs_sampler_init(const cs_sampling_params *p, int32_t vocab_size);
cs_sampler *cs_sampler_init_shared(const cs_sampling_params *p, int32_t vocab_size, cs_sampler_scratch *scratch);
void cs_sampler_free(cs_sampler *s); // NULL is fine

// Records prompt tokens for the repetition penalty (nothing when no penalty is on). Ids must
// lie in [0, vocab_size).
void cs_sampler_add_prompt(cs_sampler *s, const int32_t *ids, size_t n);

// Records a generated token for all penalties (nothing when none is on). -1 (nothing
// sampled) is ignored; any other id must lie in [0, vocab_size).
void cs_sampler_accept(cs_sampler *s, int32_t id);

typedef struct cs_logprob {
    int32_t id;
    float logprob;
} cs_logprob;

typedef struct cs_sample_result {
    int32_t id;    // as returned; -1 when nothing could be sampled
    float logprob; // of id under log_softmax(raw logits): the model's distribution, not the
                   // filtered one (vLLM's default); -INFINITY when id is -1
    int n_top;     // min(n_logprobs, number of finite logits)
    cs_logprob top[CS_SAMPLER_MAX_LOGPROBS]; // most likely first, ties by lower id
} cs_sample_result;

// Picks the next token from logits (vocab_size floats, overwritten: they hold the penalised
// logits afterwards). res may be NULL; when given it is filled in full. Does not call
// cs_sampler_accept. Allocation-free and never sorts the vocabulary: top-k with k <= 1024
// keeps a k-entry heap while scanning (an exp only for the survivors); larger k quickselects;
// top-p first sums mass into logit buckets, then quickselects on mass inside the one bucket
// holding the cut; with no filter the draw walks sums of 8 weights. Returns the token id, or
// -1 when every logit is -inf or NaN.
int32_t cs_sampler_sample(cs_sampler *s, float *logits, cs_sample_result *res);

#endif
