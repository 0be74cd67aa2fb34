// One model, one KV cache, one stream: what `cserve generate`, `cserve perplexity` and the
// golden tests need. It opens the model, sizes the KV cache for max_ctx tokens, and extends
// a sequence with tokens in chunks of at most max_batch (chunked prefill), returning logits.
//
//     cs_runner r;
//     cs_runner_init(&r, "model.gguf", 4096, 0, 256, err, sizeof err);
//     cs_runner_seq s = {0};
//     cs_runner_extend(&r, &s, prompt, n, CS_LOGITS_LAST, logits);  // prefill
//     cs_runner_extend(&r, &s, &next, 1, CS_LOGITS_LAST, logits);   // decode
//     cs_runner_seq_free(&r, &s);
//     cs_runner_free(&r);
#ifndef CS_RUNNER_H
#define CS_RUNNER_H

#include "../common/thread_pool.h"
#include "block_alloc.h"
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "model_file.h"

typedef struct cs_runner {
    cs_model_file *file;
    cs_model model;
    cs_kv_cache kv;
    cs_block_alloc blocks;
    cs_pool *pool;
    cs_forward *fwd;
    int max_ctx, max_batch;
    int32_t *positions, *slots, *rows; // (max_batch) step scratch
} cs_runner;

typedef struct cs_runner_seq {
    cs_seq_blocks blocks;
    int len; // tokens whose KV is cached
} cs_runner_seq;

typedef enum { CS_LOGITS_NONE, CS_LOGITS_LAST, CS_LOGITS_ALL } cs_logits_mode;

// threads 0 = one per core. Errors (bad model file, out of memory) are reported in err.
// quant: the layers' float matrices quantised at load into this type (CS_DTYPE_COUNT: none).
cs_status cs_runner_init(cs_runner *r, const char *model_path, int max_ctx, int threads,
                         int max_batch, cs_dtype quant, char *err, size_t errlen);
void cs_runner_free(cs_runner *r);

// Runs n tokens after what s holds. logits: CS_LOGITS_LAST writes (1, vocab) for the last
// token; CS_LOGITS_ALL writes (n, vocab), one row per token. Fails (CS_ERR_INVALID) when the
// sequence would pass max_ctx or a token is outside the vocabulary; nothing is run then.
cs_status cs_runner_extend(cs_runner *r, cs_runner_seq *s, const int32_t *tokens, int n,
                           cs_logits_mode mode, float *logits, char *err, size_t errlen);
void cs_runner_seq_free(cs_runner *r, cs_runner_seq *s);

#endif
