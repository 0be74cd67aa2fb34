// Perplexity the way llama.cpp's perplexity tool computes it, so the numbers compare: the
// tokens are cut into non-overlapping windows of ctx tokens (the first token of a window
// replaced by BOS when the model adds one); in each window the second half's tokens are
// scored given everything before them in the window.
#ifndef CS_PERPLEXITY_H
#define CS_PERPLEXITY_H

#include "runner.h"

typedef struct cs_ppl_result {
    double ppl;   // exp(mean negative log-likelihood)
    double nll;   // summed negative log-likelihood
    long scored;  // tokens scored
    int windows;
} cs_ppl_result;

// Called after each window with the running result.
typedef void (*cs_ppl_progress)(void *user, const cs_ppl_result *so_far, int total_windows);

// Needs n >= 2 * ctx tokens and ctx <= the runner's context. progress may be NULL.
cs_status cs_perplexity(cs_runner *r, const int32_t *ids, int n, int ctx, cs_ppl_progress progress,
                        void *user, cs_ppl_result *out, char *err, size_t errlen);

#endif
