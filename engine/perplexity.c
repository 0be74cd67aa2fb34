#include "perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

// -log softmax(logits)[target], in double.
static double nll(const float *logits, int vocab, int target) {
    double mx = logits[0], sum = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    return -((double)logits[target] - mx - log(sum));
}

cs_status cs_perplexity(cs_runner *r, const int32_t *ids, int n, int ctx, cs_ppl_progress progress,
                        void *user, cs_ppl_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (ctx < 4 || ctx > r->max_ctx)
        return cs_errf(err, errlen, CS_ERR_INVALID, "ctx %d must be in [4, %d]", ctx, r->max_ctx);
    if (n < 2 * ctx)
        return cs_errf(err, errlen, CS_ERR_INVALID, "%d tokens; ctx %d needs at least %d", n, ctx, 2 * ctx);
    int vocab = r->model.cfg.vocab_size, first = ctx / 2, windows = n / ctx;
    float *logits = malloc((size_t)ctx * vocab * sizeof *logits);
    int32_t *window = malloc((size_t)ctx * sizeof *window);
    if (!logits || !window) {
        free(logits);
        free(window);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    }
    const cs_tokenizer *tok = r->file->tok;
    bool add_bos = cs_tokenizer_encode(tok, "", 0, CS_TOK_ADD_SPECIAL, NULL, 0) > 0 && cs_tokenizer_bos(tok) >= 0;
    cs_status st = CS_OK;
    for (int w = 0; w < windows && st == CS_OK; w++) {
        const int32_t *src = ids + (size_t)w * ctx;
        memcpy(window, src, (size_t)ctx * sizeof *window);
        if (add_bos) window[0] = cs_tokenizer_bos(tok);
        cs_runner_seq seq = {0};
        st = cs_runner_extend(r, &seq, window, ctx, CS_LOGITS_ALL, logits, err, errlen);
        cs_runner_seq_free(r, &seq);
        for (int i = first; st == CS_OK && i < ctx - 1; i++, out->scored++)
            out->nll += nll(logits + (size_t)i * vocab, vocab, src[i + 1]);
        out->windows = w + 1;
        out->ppl = exp(out->nll / (double)out->scored);
        if (progress && st == CS_OK) progress(user, out, windows);
    }
    free(logits);
    free(window);
    return st;
}
