// The batch engine on --device cuda against the same engine on the CPU, on real weights (the
// default model cut to 4 layers by tools/cut_gguf.py, CSERVE_GPU_MODEL, or the default model):
// concurrent greedy requests with a shared prefix (prefix caching), a prompt longer than one
// step's token budget (chunked prefill), n = 2 choices (copy-on-write of a shared partial
// block) must give the same tokens on both backends, and every block must be free at the end.
// Exits 77 (skipped) without CUDA, a device or the model.
#include <stdio.h>

#include "test_util.h"

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("built without CUDA: skipped");
    return 77;
}
#else
#include <string.h>
#include <unistd.h>

#include "cserve/engine.h"
#include "kernels/cuda/cuda_kernels.h"

#define N_REQ 6
#define MAX_GEN 12

typedef struct out {
    uint64_t id;
    int32_t toks[2][MAX_GEN];
    int n_toks[2];
    bool done;
} out;

static void run(const char *model, const char *device, out *o) {
    cs_engine_params p;
    cs_engine_params_default(&p);
    p.model_path = model;
    p.device = device;
    p.max_num_batched_tokens = 128; // the long prompt takes several steps
    p.max_num_seqs = 8;
    p.max_model_len = 1024;
    p.gpu_memory_utilization = 0.5;
    cs_engine *e;
    char err[256];
    int rc = cs_engine_init(&p, &e, err, sizeof err);
    TEST_CONDF(rc == 0, "%s engine: %s", device, err);
    if (rc) return;
    static char prompts[N_REQ][2048];
    const char *shared = "The history of the printing press begins in the fifteenth century, when ";
    snprintf(prompts[0], sizeof prompts[0], "%sJohannes Gutenberg", shared);
    snprintf(prompts[1], sizeof prompts[1], "%sa goldsmith in Mainz", shared);
    snprintf(prompts[2], sizeof prompts[2], "Write a haiku about the sea.");
    snprintf(prompts[3], sizeof prompts[3], "1, 2, 3, 4,");
    char *long_p = prompts[4];
    size_t len = 0;
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(long_p + len, sizeof prompts[4] - len, "Sentence %d of a long prompt. ", i);
    snprintf(prompts[5], sizeof prompts[5], "The capital of France is");
    for (int i = 0; i < N_REQ; i++) {
        cs_request r;
        cs_request_default(&r);
        r.prompt = prompts[i];
        r.temperature = 0;
        r.max_tokens = MAX_GEN;
        r.ignore_eos = true;
        r.n = i == 5 ? 2 : 1;
        memset(&o[i], 0, sizeof o[i]);
        TEST_CONDF(cs_engine_submit(e, &r, &o[i].id, err, sizeof err) == 0, "%s", err);
    }
    int left = N_REQ;
    cs_event ev;
    while (left > 0 && cs_engine_poll(e, &ev, 120000) == 1) {
        for (int i = 0; i < N_REQ; i++) {
            if (o[i].id != ev.request_id) continue;
            if (ev.type == CS_EVENT_TOKEN && ev.index < 2 && o[i].n_toks[ev.index] < MAX_GEN)
                o[i].toks[ev.index][o[i].n_toks[ev.index]++] = ev.token;
            if (ev.type == CS_EVENT_DONE) o[i].done = true, left--;
        }
    }
    TEST_CONDF(left == 0, "%s: %d requests did not finish", device, left);
    cs_engine_stats st;
    for (int i = 0; i < 50; i++) { // stats are published after the step that finished the last one
        cs_engine_stats_get(e, &st);
        if (st.blocks_used == 0) break;
        usleep(10000);
    }
    TEST_CONDF(st.blocks_used == 0 && st.running == 0, "%s: %d blocks still used, %d running", device,
               st.blocks_used, st.running);
    printf("%s: %d KV blocks of %d tokens (%.1f MiB)\n", device, st.blocks_total, st.block_size,
           (double)st.kv_cache_bytes / (1 << 20));
    cs_engine_free(e);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    const char *model = test_env("CSERVE_GPU_MODEL");
    if (!model) model = test_env("CSERVE_MODEL");
    if (!model || access(model, R_OK) != 0) {
        puts("no model: skipped");
        return 77;
    }
    static out cpu[N_REQ], gpu[N_REQ];
    run(model, "cpu", cpu);
    run(model, "cuda", gpu);
    int same = 0, total = 0;
    for (int i = 0; i < N_REQ; i++)
        for (int c = 0; c < (i == 5 ? 2 : 1); c++) {
            total++;
            bool eq = cpu[i].n_toks[c] == MAX_GEN && gpu[i].n_toks[c] == MAX_GEN &&
                      !memcmp(cpu[i].toks[c], gpu[i].toks[c], sizeof cpu[i].toks[c]);
            same += eq;
            TEST_CONDF(eq, "request %d choice %d: GPU tokens differ from the CPU's (%d and %d tokens)", i, c,
                       gpu[i].n_toks[c], cpu[i].n_toks[c]);
        }
    printf("greedy outputs identical on both backends: %d of %d\n", same, total);
    return TEST_REPORT();
}
#endif
