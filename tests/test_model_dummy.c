// --dummy-weights: the presets' shapes, bad names refused with a reason, and the seeded values:
// deterministic, different per tensor and seed, inside [-scale, scale), bf16-rounded, and a
// dummy model that runs through the CPU forward pass to finite logits.
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "cserve/engine.h"
#include "engine/forward.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "kernels/dummy_init.h"
#include "kernels/kernels.h"
#include "test_util.h"

static void test_presets(void) {
    cs_model_config c;
    char err[256];
    TEST_COND(cs_model_preset("llama3-8b", &c, err, sizeof err) == CS_OK);
    TEST_COND(c.n_layer == 32 && c.dim == 4096 && c.ffn_dim == 14336 && c.n_head == 32 && c.n_head_kv == 8 &&
              c.head_dim == 128 && c.vocab_size == 128256 && !c.tied_embeddings && !c.attn_bias);
    TEST_COND(cs_model_preset("llama3-8b:2", &c, err, sizeof err) == CS_OK && c.n_layer == 2 && c.dim == 4096);
    TEST_COND(cs_model_preset("llama3-70b", &c, err, sizeof err) == CS_OK && c.n_layer == 80 && c.n_head == 64);
    TEST_COND(cs_model_preset("qwen2-7b", &c, err, sizeof err) == CS_OK && c.attn_bias && c.n_head_kv == 4 &&
              c.head_dim == 128);
    TEST_COND(cs_model_preset("mistral-7b", &c, err, sizeof err) == CS_OK && c.vocab_size == 32768);
    TEST_COND(cs_model_preset("smollm2-135m", &c, err, sizeof err) == CS_OK && c.tied_embeddings &&
              c.head_dim == 64 && c.n_head == 9 && c.n_head_kv == 3);
    const char *bad[] = {"llama3-9b", "", "llama3-8b:0", "llama3-8b:x", "llama3-8b:", "nonexistent/config.json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        TEST_CONDF(cs_model_preset(bad[i], &c, err, sizeof err) != CS_OK && err[0], "'%s' accepted", bad[i]);
    }
    TEST_COND(cs_model_preset("tests/fixtures/no-such-dir/config.json", &c, err, sizeof err) != CS_OK);
}

static void test_values(void) {
    enum { N = 100000 };
    static uint16_t a[N], b[N], c[N];
    cs_cpu_fill_dummy_bf16(a, N, 5, 17, 0.25f);
    cs_cpu_fill_dummy_bf16(b, N, 5, 17, 0.25f);
    TEST_COND(!memcmp(a, b, sizeof a));
    cs_cpu_fill_dummy_bf16(c, N, 6, 17, 0.25f);
    int same_seed = 0;
    for (int i = 0; i < N; i++) same_seed += a[i] == c[i];
    cs_cpu_fill_dummy_bf16(c, N, 5, 18, 0.25f);
    int same_id = 0;
    double sum = 0, sq = 0, lo = 1, hi = -1;
    for (int i = 0; i < N; i++) {
        same_id += a[i] == c[i];
        double v = cs_bf16_to_f32(a[i]);
        sum += v, sq += v * v;
        lo = v < lo ? v : lo, hi = v > hi ? v : hi;
        TEST_CONDF(a[i] == cs_f32_to_bf16(cs_dummy_value(5, 17, (uint64_t)i, 0.25f)), "element %d", i);
    }
    // uniform on [-0.25, 0.25): mean 0, std 0.25/sqrt(3) = 0.1443; bf16 equality by chance ~1%
    TEST_CONDF(same_seed < N / 20 && same_id < N / 20, "seed or tensor id changes too little: %d, %d", same_seed,
               same_id);
    TEST_CONDF(fabs(sum / N) < 0.003 && fabs(sqrt(sq / N) - 0.1443) < 0.003, "mean %g std %g", sum / N,
               sqrt(sq / N));
    TEST_CONDF(lo >= -0.25 && hi <= 0.25 && lo < -0.249 && hi > 0.249, "range [%g, %g]", lo, hi);
}

// A 2-layer dummy smollm2 through the CPU forward pass: finite logits of a sensible spread.
static void test_forward(void) {
    cs_model_config c;
    char err[256];
    CS_ASSERT(cs_model_preset("smollm2-135m:2", &c, err, sizeof err) == CS_OK);
    cs_model m;
    TEST_COND(cs_model_init_dummy(&m, &c, 9, 64, err, sizeof err) == CS_OK);
    TEST_COND(m.tok_embd.type == CS_DTYPE_BF16 && m.output.data == m.tok_embd.data && m.layers[1].ffn_norm);
    cs_kv_cache kv;
    CS_ASSERT(cs_kv_cache_init(&kv, c.n_layer, 4, 16, c.n_head_kv * c.head_dim, err, sizeof err) == CS_OK);
    cs_forward *f = cs_forward_init(&m, &kv, 8, 64, NULL, err, sizeof err);
    CS_ASSERT(f);
    int32_t tok[3] = {1, 500, 40000}, pos[3] = {0, 1, 2}, slots[3] = {16, 17, 18}, rows[1] = {2};
    int32_t qs[2] = {0, 3}, kvl[1] = {3}, bts[2] = {0, 1}, table[1] = {1};
    cs_batch b = {.n_tokens = 3, .tokens = tok, .positions = pos, .slots = slots,
                  .attn = {1, qs, kvl, bts, table, 16}, .n_logits = 1, .logit_rows = rows};
    float *logits = malloc(sizeof(float) * c.vocab_size);
    cs_forward_run(f, &b, logits);
    double sq = 0;
    int finite = 1;
    for (int i = 0; i < c.vocab_size; i++) finite &= isfinite(logits[i]), sq += (double)logits[i] * logits[i];
    double rms = sqrt(sq / c.vocab_size);
    TEST_CONDF(finite && rms > 0.1 && rms < 10, "logits finite %d, rms %g", finite, rms);
    free(logits);
    cs_forward_free(f);
    cs_kv_cache_free(&kv);
    cs_model_free(&m);
}

// The engine on --dummy-weights: the preset's shapes behind the model file's tokenizer; a
// preset whose vocabulary cannot hold the tokenizer's, or an unknown one, is refused.
static void test_engine(void) {
    const char *model = test_env("CSERVE_MODEL");
    if (!model) {
        puts("default model absent: engine part skipped");
        return;
    }
    cs_engine_params p;
    cs_engine_params_default(&p);
    p.model_path = model;
    p.max_model_len = 256;
    p.kv_cache_memory = (size_t)16 << 20;
    char err[256] = "";
    cs_engine *e = NULL;
    const char *bad[] = {"mistral-7b", "no-such-preset"};
    for (int i = 0; i < 2; i++) {
        p.dummy_weights = bad[i];
        TEST_CONDF(cs_engine_init(&p, &e, err, sizeof err) == CS_ENGINE_EINVAL && strstr(err, "dummy"), "%s: %s",
                   bad[i], err);
    }
    p.dummy_weights = "smollm2-135m:2";
    TEST_CONDF(cs_engine_init(&p, &e, err, sizeof err) == 0, "%s", err);
    if (!e) return;
    cs_engine_info info;
    cs_engine_info_get(e, &info);
    TEST_CONDF(strstr(info.weight_formats, "dummy") && info.vocab_size == 49152, "%s, vocab %d", info.weight_formats,
               info.vocab_size);
    cs_request r;
    cs_request_default(&r);
    r.prompt = "Hello";
    r.max_tokens = 6;
    r.temperature = 0;
    r.ignore_eos = true;
    uint64_t id;
    TEST_CONDF(cs_engine_submit(e, &r, &id, err, sizeof err) == 0, "%s", err);
    int tokens = 0;
    cs_event ev;
    while (cs_engine_poll(e, &ev, 60000) == 1 && ev.type != CS_EVENT_DONE) tokens += ev.type == CS_EVENT_TOKEN;
    TEST_CONDF(ev.type == CS_EVENT_DONE && tokens == 6, "%d tokens", tokens);
    cs_engine_free(e);
}

int main(void) {
    test_presets();
    test_engine();
    test_values();
    test_forward();
    return TEST_REPORT();
}
