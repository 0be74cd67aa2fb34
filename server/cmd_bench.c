// cserve bench: offline serving benchmark on the embedded engine. N requests (synthetic token
// ids of given or random lengths, or lines of a prompt file), optionally sharing a prefix, at
// most C in flight; prints request and token throughput, time to first token, time per output
// token and the prefix-cache hit rate, as a table or (--json) one JSON object.
//
// Times are taken in this thread with CLOCK_MONOTONIC when we submit and when events arrive,
// so they include the queues between us and the engine thread, as a client would see them.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/rng.h"
#include "bench_online.h"
#include "cli.h"
#include "cserve/engine.h"

typedef struct bench_opts {
    const char *model, *prompts_file;
    int num_prompts, input_len, output_len, prefix_len, max_concurrency;
    float range_ratio;
    uint64_t seed;
    bool json, num_prompts_set;
    cs_engine_params ep;
} bench_opts;

// One request's prompt and what happened to it. Times in seconds since the run began.
typedef struct bench_req {
    int32_t *ids;
    int n_ids, max_tokens;
    uint64_t id;
    double t_submit, t_first, t_last;
    int n_out, prompt_tokens, cached_tokens;
    bool done, failed;
} bench_req;

static void usage(void) {
    printf("usage: cserve bench [--model PATH] [options]\n\n"
           "  --num-prompts N             requests to run (default 32; with --prompts: its lines)\n"
           "  --input-len I               prompt tokens of synthetic requests (default 128)\n"
           "  --output-len O              tokens to generate per request, EOS ignored (default 64)\n"
           "  --random-range-ratio R      0 = fixed lengths; else uniform in [len*(1-R), len*(1+R)]\n"
           "  --prompts FILE              one prompt per line instead of synthetic token ids\n"
           "  --prefix-len P              every prompt starts with the same P tokens (part of I)\n"
           "  --max-concurrency C         at most C requests in flight (default: all)\n"
           "  --seed S                    seed for lengths and synthetic tokens (default 0)\n"
           "  --json                      print one JSON object instead of the table\n"
           "engine:\n"
           "  --threads N, --max-num-seqs N, --max-num-batched-tokens N, --max-model-len N,\n"
           "  --kv-cache-memory BYTES, --no-prefix-caching\n"
           CS_CLI_DEVICE_HELP CS_CLI_QUANT_HELP "\n"
           "online, against a running server (Poisson arrivals, streaming):\n"
           "  cserve bench --connect HOST:PORT [--socket PATH] [--api-key KEY] --request-rate R|inf\n"
           "               --num-prompts N [--input-len I --output-len O | --prompts FILE] [--seed S] [--json]\n");
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    memset(o, 0, sizeof *o);
    cs_engine_params_default(&o->ep);
    o->num_prompts = 32;
    o->input_len = 128;
    o->output_len = 64;
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v = NULL;
        if (cs_cli_is_help(argv[i])) {
            usage();
            return -1;
        }
        if (!strcmp(argv[i], "--json")) o->json = true;
        else if (!strcmp(argv[i], "--no-prefix-caching")) o->ep.enable_prefix_caching = false;
        else if (cs_cli_text(argc, argv, &i, "--model", &o->model, &bad) ||
                 cs_cli_value(argc, argv, &i, "--prompts", &o->prompts_file, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--num-prompts", &v, &bad)) {
            bad = bad || !cs_cli_int("--num-prompts", v, 1, 1 << 20, &o->num_prompts);
            o->num_prompts_set = true;
        } else if (cs_cli_value(argc, argv, &i, "--input-len", &v, &bad)) {
            bad = bad || !cs_cli_int("--input-len", v, 1, 1 << 20, &o->input_len);
        } else if (cs_cli_value(argc, argv, &i, "--output-len", &v, &bad)) {
            bad = bad || !cs_cli_int("--output-len", v, 1, 1 << 20, &o->output_len);
        } else if (cs_cli_value(argc, argv, &i, "--random-range-ratio", &v, &bad)) {
            bad = bad || !cs_cli_float("--random-range-ratio", v, 0, 0.999, &o->range_ratio);
        } else if (cs_cli_value(argc, argv, &i, "--prefix-len", &v, &bad)) {
            bad = bad || !cs_cli_int("--prefix-len", v, 0, 1 << 20, &o->prefix_len);
        } else if (cs_cli_value(argc, argv, &i, "--max-concurrency", &v, &bad)) {
            bad = bad || !cs_cli_int("--max-concurrency", v, 1, 1 << 20, &o->max_concurrency);
        } else if (cs_cli_value(argc, argv, &i, "--seed", &v, &bad)) {
            bad = bad || !cs_cli_u64("--seed", v, &o->seed);
        } else if (cs_cli_device_opt(argc, argv, &i, &o->ep, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--threads", &v, &bad)) {
            bad = bad || !cs_cli_int("--threads", v, 1, 1024, &o->ep.threads);
        } else if (cs_cli_value(argc, argv, &i, "--max-num-seqs", &v, &bad)) {
            bad = bad || !cs_cli_int("--max-num-seqs", v, 1, 4096, &o->ep.max_num_seqs);
        } else if (cs_cli_value(argc, argv, &i, "--max-num-batched-tokens", &v, &bad)) {
            bad = bad || !cs_cli_int("--max-num-batched-tokens", v, 1, 1 << 20, &o->ep.max_num_batched_tokens);
        } else if (cs_cli_value(argc, argv, &i, "--max-model-len", &v, &bad)) {
            bad = bad || !cs_cli_int("--max-model-len", v, 1, 1 << 20, &o->ep.max_model_len);
        } else if (cs_cli_value(argc, argv, &i, "--kv-cache-memory", &v, &bad)) {
            uint64_t bytes = 0;
            bad = bad || !cs_cli_u64("--kv-cache-memory", v, &bytes);
            if (!bad && bytes == 0) {
                fprintf(stderr, "error: --kv-cache-memory: must be more than 0 bytes\n");
                bad = true;
            }
            o->ep.kv_cache_memory = (size_t)bytes;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see cserve bench --help)\n", argv[i]);
            return CS_EXIT_BAD_INPUT;
        }
        if (bad) return CS_EXIT_BAD_INPUT;
    }
    int shortest = (int)(o->input_len * (1 - o->range_ratio));
    if (!o->prompts_file && o->prefix_len >= (shortest > 1 ? shortest : 1)) {
        fprintf(stderr, "error: --prefix-len %d must be below the shortest input length (%d)\n", o->prefix_len,
                shortest);
        return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

// A length uniform in [len*(1-R), len*(1+R)], at least 1 (vLLM's random dataset).
static int random_len(uint64_t *s, int len, float r) {
    int lo = (int)(len * (1 - r)), hi = (int)(len * (1 + r));
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    return lo + (int)(cs_splitmix64(s) % (uint64_t)(hi - lo + 1));
}

// The lines of path that hold something, in *lines (caller frees each and the array).
static int read_lines(const char *path, char ***lines) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, n_cap = 0;
    *lines = NULL;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (n == n_cap) {
            n_cap = n_cap ? 2 * n_cap : 64;
            char **grown = realloc(*lines, sizeof *grown * n_cap);
            if (!grown) break;
            *lines = grown;
        }
        (*lines)[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    return n;
}

// Builds every request's prompt ids: a shared prefix of P random ordinary tokens (ids
// 100..vocab-1, no special tokens), then the request's own tokens, random or tokenized from
// line i % n_lines of the prompt file when lines is given. Returns 0, or an exit code after
// printing the error.
static int build_prompts(cs_engine *e, const bench_opts *o, char **lines, int n_lines, bench_req *reqs, int n) {
    int vocab = cs_engine_vocab_size(e);
    // random ids skip the first 100 (where vocabularies keep their special tokens) when the
    // vocabulary is large enough to leave some
    int32_t lo = vocab > 200 ? 100 : 0;
    uint64_t span = (uint64_t)(vocab - lo);
    uint64_t s = o->seed;
    int32_t *prefix = malloc(sizeof(int32_t) * (o->prefix_len + 1));
    if (!prefix) {
        fprintf(stderr, "error: out of memory for prompts\n");
        return CS_EXIT_RUNTIME;
    }
    for (int k = 0; k < o->prefix_len; k++) prefix[k] = (int32_t)(lo + cs_splitmix64(&s) % span);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        bench_req *q = &reqs[i];
        int own;
        const char *text = lines ? lines[i % n_lines] : NULL;
        if (text) own = cs_engine_tokenize(e, text, strlen(text), o->prefix_len == 0, NULL, 0);
        else own = random_len(&s, o->input_len, o->range_ratio) - o->prefix_len;
        q->max_tokens = random_len(&s, o->output_len, o->range_ratio);
        q->n_ids = o->prefix_len + (own > 0 ? own : 0);
        q->ids = malloc(sizeof(int32_t) * (q->n_ids + 1));
        if (!q->ids) {
            fprintf(stderr, "error: out of memory for prompts\n");
            rc = CS_EXIT_RUNTIME;
            break;
        }
        memcpy(q->ids, prefix, sizeof(int32_t) * o->prefix_len);
        if (text && own > 0)
            cs_engine_tokenize(e, text, strlen(text), o->prefix_len == 0, q->ids + o->prefix_len, own);
        else
            for (int k = o->prefix_len; k < q->n_ids; k++)
                q->ids[k] = (int32_t)(lo + cs_splitmix64(&s) % span);
    }
    free(prefix);
    return rc;
}

// --- running ------------------------------------------------------------------------------

// Redraws the progress bar on stderr (only on a terminal: piped output stays clean).
static void progress(int done, int n, long tokens, double elapsed, bool final) {
    static double last;
    if (!isatty(2) || (!final && elapsed - last < 0.1)) return;
    last = elapsed;
    enum { W = 30 };
    int fill = n ? (int)((long)W * done / n) : W;
    char bar[W + 1];
    for (int k = 0; k < W; k++) bar[k] = k < fill ? '=' : k == fill ? '>' : ' ';
    bar[W] = 0;
    fprintf(stderr, "\r[%s] %d/%d requests, %ld tokens, %.1f s%s", bar, done, n, tokens, elapsed, final ? "\n" : "");
    fflush(stderr);
}

static bench_req *find_req(bench_req *reqs, int n_submitted, uint64_t id) {
    for (int i = 0; i < n_submitted; i++)
        if (reqs[i].id == id && !reqs[i].done) return &reqs[i];
    return NULL;
}

// Submits request i; a refusal marks it failed (and done) after printing why.
static void submit_one(cs_engine *e, bench_req *q, int i, double t0) {
    cs_request r;
    cs_request_default(&r);
    r.tokens = q->ids;
    r.n_tokens = q->n_ids;
    r.max_tokens = q->max_tokens;
    r.temperature = 0;
    r.ignore_eos = true; // every request generates exactly its output length
    char err[256];
    q->t_submit = cs_now_s() - t0;
    if (cs_engine_submit(e, &r, &q->id, err, sizeof err) != 0) {
        fprintf(stderr, "\nerror: request %d refused: %s\n", i, err);
        q->failed = q->done = true;
    }
}

// Runs every request with at most max_conc in flight. Returns the wall time in seconds.
static double run_all(cs_engine *e, bench_req *reqs, int n, int max_conc) {
    double t0 = cs_now_s();
    int next = 0, in_flight = 0, n_done = 0;
    long tokens = 0;
    while (n_done < n) {
        while (next < n && in_flight < max_conc) {
            submit_one(e, &reqs[next], next, t0);
            if (reqs[next].done) n_done++;
            else in_flight++;
            next++;
        }
        cs_event ev;
        int got = cs_engine_poll(e, &ev, 100);
        double t = cs_now_s() - t0;
        progress(n_done, n, tokens, t, false);
        if (got != 1) continue;
        bench_req *q = find_req(reqs, next, ev.request_id);
        if (!q) continue;
        if (ev.type == CS_EVENT_TOKEN) {
            if (q->n_out++ == 0) q->t_first = t;
            q->t_last = t;
            tokens++;
        } else if (ev.type == CS_EVENT_FINISH) {
            q->failed = q->failed || ev.finish_reason == CS_FINISH_REASON_ERROR ||
                        ev.finish_reason == CS_FINISH_REASON_CANCELLED;
        } else if (ev.type == CS_EVENT_DONE) {
            q->prompt_tokens = ev.prompt_tokens;
            q->cached_tokens = ev.cached_tokens;
            q->done = true;
            n_done++;
            in_flight--;
        }
    }
    double wall = cs_now_s() - t0;
    progress(n_done, n, tokens, wall, true);
    return wall;
}

// --- reporting ----------------------------------------------------------------------------

typedef struct dist {
    double mean, p50, p99;
    int n;
} dist;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Mean and percentiles (linear between the nearest ranks, as numpy does) of x[0..n); sorts x.
static dist summarize(double *x, int n) {
    dist d = {NAN, NAN, NAN, n};
    if (n == 0) return d;
    qsort(x, n, sizeof *x, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    d.mean = sum / n;
    double pct[2] = {0.50, 0.99}, *out[2] = {&d.p50, &d.p99};
    for (int k = 0; k < 2; k++) {
        double pos = pct[k] * (n - 1);
        int lo = (int)pos;
        int hi = lo + 1 < n ? lo + 1 : lo;
        *out[k] = x[lo] + (x[hi] - x[lo]) * (pos - lo);
    }
    return d;
}

typedef struct bench_result {
    int n, completed, failed;
    long input_tokens, output_tokens, cached_tokens;
    double wall, hit_rate;
    dist ttft, tpot; // milliseconds
    cs_engine_stats st;
} bench_result;

static void measure(const bench_req *reqs, int n, double wall, cs_engine *e, bench_result *b) {
    memset(b, 0, sizeof *b);
    b->n = n;
    b->wall = wall;
    double *ttft = malloc(sizeof(double) * n), *tpot = malloc(sizeof(double) * n);
    int n_ttft = 0, n_tpot = 0;
    for (int i = 0; i < n; i++) {
        const bench_req *q = &reqs[i];
        if (q->failed) {
            b->failed++;
            continue;
        }
        b->completed++;
        b->input_tokens += q->prompt_tokens;
        b->cached_tokens += q->cached_tokens;
        b->output_tokens += q->n_out;
        if (q->n_out > 0) ttft[n_ttft++] = 1e3 * (q->t_first - q->t_submit);
        // the first token's wait is TTFT; TPOT is the pace of the rest
        if (q->n_out > 1) tpot[n_tpot++] = 1e3 * (q->t_last - q->t_first) / (q->n_out - 1);
    }
    b->hit_rate = b->input_tokens ? (double)b->cached_tokens / b->input_tokens : 0;
    b->ttft = summarize(ttft, n_ttft);
    b->tpot = summarize(tpot, n_tpot);
    cs_engine_stats_get(e, &b->st);
    free(ttft);
    free(tpot);
}

static void print_table(const bench_result *b) {
    double w = b->wall > 0 ? b->wall : 1e-9;
    printf("============ Offline Benchmark Result ============\n");
    printf("%-40s %d\n", "Successful requests:", b->completed);
    if (b->failed) printf("%-40s %d\n", "Failed requests:", b->failed);
    printf("%-40s %.2f\n", "Benchmark duration (s):", b->wall);
    printf("%-40s %ld\n", "Total input tokens:", b->input_tokens);
    printf("%-40s %ld\n", "Total generated tokens:", b->output_tokens);
    printf("%-40s %.2f\n", "Request throughput (req/s):", b->completed / w);
    printf("%-40s %.2f\n", "Output token throughput (tok/s):", b->output_tokens / w);
    printf("%-40s %.2f\n", "Total token throughput (tok/s):", (b->input_tokens + b->output_tokens) / w);
    printf("%-40s %.2f\n", "Prefix cache hit rate (%):", 100 * b->hit_rate);
    printf("%-40s %ld\n", "Preemptions:", b->st.preemptions);
    printf("%-40s %ld of %ld\n", "Steps launched ahead (async):", b->st.steps_ahead, b->st.steps);
    printf("%-40s %.3f\n", "Engine host time per step (ms):", b->st.steps ? b->st.host_ms / (double)b->st.steps : 0.0);
    printf("---------------Time to First Token----------------\n");
    printf("%-40s %.2f\n", "Mean TTFT (ms):", b->ttft.mean);
    printf("%-40s %.2f\n", "Median TTFT (ms):", b->ttft.p50);
    printf("%-40s %.2f\n", "P99 TTFT (ms):", b->ttft.p99);
    printf("-----Time per Output Token (excl. 1st token)------\n");
    printf("%-40s %.2f\n", "Mean TPOT (ms):", b->tpot.mean);
    printf("%-40s %.2f\n", "Median TPOT (ms):", b->tpot.p50);
    printf("%-40s %.2f\n", "P99 TPOT (ms):", b->tpot.p99);
    printf("==================================================\n");
}

// JSON has no NaN: a statistic without samples is null.
static void json_num(const char *key, double v, bool last) {
    if (isfinite(v)) printf("\"%s\": %.4f%s", key, v, last ? "" : ", ");
    else printf("\"%s\": null%s", key, last ? "" : ", ");
}

static void print_json(const bench_result *b, const bench_opts *o) {
    double w = b->wall > 0 ? b->wall : 1e-9;
    printf("{\"num_prompts\": %d, \"completed\": %d, \"failed\": %d, \"max_concurrency\": %d, "
           "\"total_input_tokens\": %ld, \"total_output_tokens\": %ld, \"cached_tokens\": %ld, "
           "\"preemptions\": %ld, \"steps\": %ld, \"steps_ahead\": %ld, ",
           b->n, b->completed, b->failed, o->max_concurrency ? o->max_concurrency : b->n, b->input_tokens,
           b->output_tokens, b->cached_tokens, b->st.preemptions, b->st.steps, b->st.steps_ahead);
    json_num("host_ms_per_step", b->st.steps ? b->st.host_ms / (double)b->st.steps : NAN, false);
    json_num("duration_s", b->wall, false);
    json_num("request_throughput", b->completed / w, false);
    json_num("output_throughput", b->output_tokens / w, false);
    json_num("total_token_throughput", (b->input_tokens + b->output_tokens) / w, false);
    json_num("prefix_cache_hit_rate", b->hit_rate, false);
    json_num("mean_ttft_ms", b->ttft.mean, false);
    json_num("median_ttft_ms", b->ttft.p50, false);
    json_num("p99_ttft_ms", b->ttft.p99, false);
    json_num("mean_tpot_ms", b->tpot.mean, false);
    json_num("median_tpot_ms", b->tpot.p50, false);
    json_num("p99_tpot_ms", b->tpot.p99, true);
    printf("}\n");
}

int cs_cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--connect", 9) || !strncmp(argv[i], "--socket", 8)) return cs_bench_online(argc, argv);
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? CS_EXIT_OK : rc;
    char **lines = NULL;
    int n_lines = 0;
    if (o.prompts_file) {
        n_lines = read_lines(o.prompts_file, &lines);
        if (n_lines <= 0) {
            fprintf(stderr, "error: --prompts %s: %s\n", o.prompts_file, n_lines < 0 ? "cannot read" : "no prompts");
            free(lines);
            return CS_EXIT_BAD_INPUT;
        }
        if (!o.num_prompts_set) o.num_prompts = n_lines;
    }
    o.ep.model_path = cs_cli_model_path(o.model);
    if (o.ep.node_rank > 0) {
        for (int i = 0; i < n_lines; i++) free(lines[i]);
        free(lines);
        return cs_cli_follow(&o.ep); // node 0 runs the benchmark
    }
    char err[256];
    cs_engine *e = NULL;
    if (o.ep.max_queued < o.num_prompts) o.ep.max_queued = o.num_prompts; // all may wait at once
    if (cs_engine_init(&o.ep, &e, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s: %s\n", o.ep.model_path, err);
        rc = CS_EXIT_BAD_INPUT;
    }
    bench_req *reqs = e ? calloc((size_t)o.num_prompts, sizeof *reqs) : NULL;
    if (e && !reqs) rc = CS_EXIT_RUNTIME;
    if (reqs) rc = build_prompts(e, &o, lines, n_lines, reqs, o.num_prompts);
    if (rc == 0) {
        int conc = o.max_concurrency ? o.max_concurrency : o.num_prompts;
        double wall = run_all(e, reqs, o.num_prompts, conc);
        bench_result b;
        measure(reqs, o.num_prompts, wall, e, &b);
        if (o.json) print_json(&b, &o);
        else print_table(&b);
        rc = b.failed ? CS_EXIT_RUNTIME : CS_EXIT_OK;
    }
    for (int i = 0; reqs && i < o.num_prompts; i++) free(reqs[i].ids);
    free(reqs);
    for (int i = 0; i < n_lines; i++) free(lines[i]);
    free(lines);
    cs_engine_free(e);
    return rc;
}
