// Quantised weights at model level: the perplexity of a public-domain text with
//   - the default model's native Q4_1 weights (GGUF),
//   - the same weights dequantised to fp32 (the Hugging Face copy tools/gguf_to_hf.py wrote),
//   - that fp32 copy quantised at load with --quant int8 and --quant int4 (groups of 32).
// The first two must agree within 0.1%, int8 within 0.5%, int4 within 5% of fp32. Skipped (77)
// without the model or its Hugging Face copy.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/file_map.h"
#include "engine/perplexity.h"
#include "engine/runner.h"
#include "engine/tokenizer.h"
#include "test_util.h"

#define CTX 512 // as the golden test and llama.cpp's perplexity tool: 5 windows of this text

// The perplexity of the fixture under model (quantised as quant); < 0 on error.
static double perplexity(const char *model, cs_dtype quant) {
    char err[CS_ERR_LEN], *text;
    size_t len;
    cs_runner r;
    if (cs_runner_init(&r, model, CTX, 0, 256, quant, err, sizeof err) != CS_OK) {
        TEST_CONDF(0, "%s (%s): %s", model, quant == CS_DTYPE_COUNT ? "as stored" : cs_dtype_name(quant), err);
        return -1;
    }
    double ppl = -1;
    if (cs_file_read_all("tests/fixtures/ppl_public_domain.txt", 1 << 24, &text, &len, err, sizeof err) == CS_OK) {
        int n = cs_tokenizer_encode(r.file->tok, text, len, CS_TOK_ADD_SPECIAL, NULL, 0);
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
        cs_tokenizer_encode(r.file->tok, text, len, CS_TOK_ADD_SPECIAL, ids, n);
        cs_ppl_result res;
        if (cs_perplexity(&r, ids, n, CTX, NULL, NULL, &res, err, sizeof err) == CS_OK) ppl = res.ppl;
        else TEST_CONDF(0, "perplexity: %s", err);
        free(ids);
        free(text);
    } else {
        TEST_CONDF(0, "%s", err);
    }
    cs_runner_free(&r);
    return ppl;
}

static void expect_close(const char *what, double ppl, double ref, double tol) {
    double rel = (ppl - ref) / ref;
    printf("%-28s perplexity %.4f (%+.3f%% vs fp32)\n", what, ppl, 100 * rel);
    TEST_CONDF(ppl > 0 && fabs(rel) < tol, "%s: perplexity %.4f vs fp32 %.4f (%+.3f%%, allowed %.1f%%)", what, ppl,
               ref, 100 * rel, 100 * tol);
}

int main(void) {
    const char *gguf = test_env("CSERVE_MODEL"), *hf = test_env("CSERVE_HF_DIR");
    if (!gguf || !hf || access(gguf, R_OK) != 0 || access(hf, R_OK) != 0) {
        puts("default model or its Hugging Face copy absent: skipped");
        return 77;
    }
    double f32 = perplexity(hf, CS_DTYPE_COUNT);
    printf("%-28s perplexity %.4f\n", "fp32 (Hugging Face copy)", f32);
    expect_close("native Q4_1 (GGUF)", perplexity(gguf, CS_DTYPE_COUNT), f32, 0.001);
    expect_close("--quant int8 (group 32)", perplexity(hf, cs_dtype_int8(32)), f32, 0.005);
    expect_close("--quant int4 (group 32)", perplexity(hf, cs_dtype_int4(32)), f32, 0.05);
    return TEST_REPORT();
}
