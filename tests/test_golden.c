// The CPU forward pass against Hugging Face transformers on the default model
// (tests/fixtures/golden_smollm2.json, written by tools/make_golden.py): logits of the top-20
// tokens at several positions of 5 prompts, the 32-token greedy continuations, and the
// perplexity of a public-domain text. Skipped (77) when the default model is absent.
//
// Tolerance: both sides compute in fp32 from the same dequantised weights, so they differ
// only in summation order (and libm's exp). Measured: at most 6e-5 absolute (5e-6 relative)
// on logits of magnitude ~20 after 30 layers. We allow 5e-4 + 1e-4 relative, about ten times
// that, and print the largest difference on every run.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file_map.h"
#include "engine/perplexity.h"
#include "engine/runner.h"
#include "engine/tokenizer.h"
#include "test_util.h"

#define ATOL 5e-4
#define RTOL 1e-4

static double max_diff, max_rel;

static int32_t *json_ids(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void check_logits(const char *name, const float *logits, int vocab, const cJSON *c) {
    const cJSON *positions = cJSON_GetObjectItem(c, "positions"), *tops = cJSON_GetObjectItem(c, "top");
    for (int i = 0; i < cJSON_GetArraySize(positions); i++) {
        int pos = cJSON_GetArrayItem(positions, i)->valueint;
        const cJSON *top = cJSON_GetArrayItem(tops, i);
        const cJSON *ids = cJSON_GetObjectItem(top, "ids"), *vals = cJSON_GetObjectItem(top, "values");
        const float *row = logits + (size_t)pos * vocab;
        for (int k = 0; k < cJSON_GetArraySize(ids); k++) {
            int id = cJSON_GetArrayItem(ids, k)->valueint;
            double ref = cJSON_GetArrayItem(vals, k)->valuedouble, d = fabs(row[id] - ref);
            if (d > max_diff) max_diff = d;
            if (d / fabs(ref) > max_rel) max_rel = d / fabs(ref);
            TEST_CONDF(d <= ATOL + RTOL * fabs(ref), "%s pos %d token %d: %g vs %g", name, pos, id, row[id], ref);
        }
        int ref_top = cJSON_GetArrayItem(ids, 0)->valueint;
        TEST_CONDF(argmax(row, vocab) == ref_top, "%s pos %d: top-1 %d, reference %d", name, pos,
                   argmax(row, vocab), ref_top);
    }
}

static void check_greedy(cs_runner *r, const char *name, const int32_t *prompt, int n, const cJSON *c) {
    int n_ref;
    int32_t *ref = json_ids(cJSON_GetObjectItem(c, "greedy"), &n_ref);
    int vocab = r->model.cfg.vocab_size;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    cs_runner_seq seq = {0};
    char err[CS_ERR_LEN];
    TEST_CONDF(cs_runner_extend(r, &seq, prompt, n, CS_LOGITS_LAST, logits, err, sizeof err) == CS_OK, "%s", err);
    int same = 0;
    for (int i = 0; i < n_ref; i++) {
        int32_t next = argmax(logits, vocab);
        if (next != ref[i]) break;
        same++;
        if (i + 1 < n_ref && cs_runner_extend(r, &seq, &next, 1, CS_LOGITS_LAST, logits, err, sizeof err) != CS_OK)
            break;
    }
    TEST_CONDF(same == n_ref, "%s: greedy continuation diverges at token %d of %d", name, same, n_ref);
    cs_runner_seq_free(r, &seq);
    free(logits);
    free(ref);
}

static void check_case(cs_runner *r, const cJSON *c) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
    int n;
    int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
    // the prompt tokenizes to the reference ids (longer texts were cut at 512 tokens)
    int32_t *ours = malloc(sizeof(int32_t) * 4096);
    int n_ours = cs_tokenizer_encode(r->file->tok, prompt, strlen(prompt), CS_TOK_PARSE_SPECIAL, ours, 4096);
    TEST_CONDF(n_ours >= n && !memcmp(ours, ids, sizeof(int32_t) * n), "%s: tokenization differs", name);
    free(ours);
    int vocab = r->model.cfg.vocab_size;
    float *logits = malloc((size_t)n * vocab * sizeof *logits);
    cs_runner_seq seq = {0};
    char err[CS_ERR_LEN];
    TEST_CONDF(cs_runner_extend(r, &seq, ids, n, CS_LOGITS_ALL, logits, err, sizeof err) == CS_OK, "%s", err);
    cs_runner_seq_free(r, &seq);
    check_logits(name, logits, vocab, c);
    free(logits);
    check_greedy(r, name, ids, n, c);
    free(ids);
}

static void check_perplexity(cs_runner *r, const cJSON *p) {
    char err[CS_ERR_LEN], *text;
    size_t len;
    const char *file = cJSON_GetObjectItem(p, "file")->valuestring;
    int ctx = cJSON_GetObjectItem(p, "ctx")->valueint;
    double ref = cJSON_GetObjectItem(p, "ppl")->valuedouble;
    if (cs_file_read_all(file, 1 << 24, &text, &len, err, sizeof err) != CS_OK) {
        TEST_CONDF(0, "%s", err);
        return;
    }
    int n = cs_tokenizer_encode(r->file->tok, text, len, CS_TOK_ADD_SPECIAL, NULL, 0);
    int32_t *ids = malloc(sizeof(int32_t) * n);
    cs_tokenizer_encode(r->file->tok, text, len, CS_TOK_ADD_SPECIAL, ids, n);
    TEST_COND(n == cJSON_GetObjectItem(p, "n_tokens")->valueint);
    cs_ppl_result res;
    TEST_CONDF(cs_perplexity(r, ids, n, ctx, NULL, NULL, &res, err, sizeof err) == CS_OK, "%s", err);
    TEST_COND(res.scored == cJSON_GetObjectItem(p, "scored")->valueint);
    TEST_CONDF(fabs(res.ppl - ref) / ref < 0.005, "perplexity %.4f, reference %.4f", res.ppl, ref);
    printf("perplexity %.4f, reference %.4f (%.4f%%)\n", res.ppl, ref, 100 * fabs(res.ppl - ref) / ref);
    free(ids);
    free(text);
}

int main(void) {
    const char *model = test_env("CSERVE_MODEL");
    if (!model || access(model, R_OK) != 0) {
        puts("default model absent: skipped");
        return 77;
    }
    char err[CS_ERR_LEN], *json;
    size_t len;
    if (cs_file_read_all("tests/fixtures/golden_smollm2.json", 1 << 24, &json, &len, err, sizeof err) != CS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    free(json);
    cs_runner r;
    if (!root || cs_runner_init(&r, model, 1024, 0, 256, CS_DTYPE_COUNT, err, sizeof err) != CS_OK) {
        fprintf(stderr, "cannot start: %s\n", root ? err : "bad fixture");
        return 1;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) check_case(&r, c);
    printf("largest logit difference %.3g (relative %.3g)\n", max_diff, max_rel);
    // the perplexity pass is 2,900 tokens of prefill: too slow under the sanitizers
#if defined(__SANITIZE_ADDRESS__)
    const bool sanitized = true;
#else
    const bool sanitized = false;
#endif
    if (!sanitized) check_perplexity(&r, cJSON_GetObjectItem(root, "perplexity"));
    cs_runner_free(&r);
    cJSON_Delete(root);
    return TEST_REPORT();
}
