// cserve bench --connect: the online benchmark, like vLLM's serving benchmark. Requests go
// to a running server with Poisson arrivals at --request-rate; each runs on its own thread
// and connection, streaming, so time to first token (TTFT), time per output token (TPOT)
// and inter-token latency (ITL) are measured where the client sees them.
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/rng.h"
#include "bench_online.h"
#include "cli.h"
#include "common/file_map.h"
#include "cserve/client.h"

typedef struct online_opts {
    const char *host, *socket, *api_key, *prompts_file;
    int port, num_prompts, input_len, output_len;
    double rate; // requests per second; inf = all at once
    uint64_t seed;
    bool json;
} online_opts;

typedef struct req_run {
    const online_opts *o;
    double start;            // seconds after the benchmark's start
    char *prompt;            // from --prompts
    int32_t *tokens;         // synthetic
    int n_tokens;
    // results
    bool ok;
    char err[256];
    double ttft, e2e, last, first;
    double *itl;
    int n_itl, cap_itl, n_out;
} req_run;

static double t0;

static double now_s(void) { return cs_now_s() - t0; }

static int on_piece(void *user, const char *text, size_t len, int32_t token) {
    req_run *r = user;
    double t = now_s();
    if (r->n_out == 0) r->first = t;
    else if (r->n_itl < r->cap_itl) r->itl[r->n_itl++] = t - r->last;
    r->last = t;
    r->n_out++;
    return 0;
}

static void *run_one(void *arg) {
    req_run *r = arg;
    const online_opts *o = r->o;
    double wait = r->start - now_s();
    if (wait > 0) usleep((useconds_t)(wait * 1e6));
    double begin = now_s();
    cs_client *c;
    if (cs_client_connect(&c, o->host, o->port, o->socket, r->err, sizeof r->err) != 0) return NULL;
    if (o->api_key && cs_client_auth(c, o->api_key, r->err, sizeof r->err) != 0) {
        cs_client_close(c);
        return NULL;
    }
    cs_client_gen_params p;
    cs_client_gen_params_default(&p);
    p.prompt = r->prompt;
    p.tokens = r->tokens;
    p.n_tokens = r->n_tokens;
    p.max_tokens = o->output_len;
    p.ignore_eos = true; // every request produces exactly output_len tokens
    p.temperature = 0;
    cs_client_result res;
    if (cs_client_generate(c, &p, on_piece, r, &res, r->err, sizeof r->err) == 0) {
        r->ok = true;
        r->ttft = r->first - begin;
        r->e2e = now_s() - begin;
        cs_client_result_free(&res);
    }
    cs_client_close(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double q) {
    if (n == 0) return 0;
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void stat_line(const char *name, double *v, int n, bool json, bool last) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    double mean = n ? sum / n : 0;
    if (json)
        printf("\"%s_ms\":{\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f}%s", name, mean * 1e3,
               pct(v, n, 0.5) * 1e3, pct(v, n, 0.9) * 1e3, pct(v, n, 0.99) * 1e3, last ? "" : ",");
    else
        printf("| %-4s (ms) | %9.1f | %9.1f | %9.1f | %9.1f |\n", name, mean * 1e3, pct(v, n, 0.5) * 1e3,
               pct(v, n, 0.9) * 1e3, pct(v, n, 0.99) * 1e3);
}

static void report(const online_opts *o, req_run *runs, double duration) {
    int n = o->num_prompts, ok = 0, n_itl = 0;
    long out_tokens = 0, in_tokens = 0;
    for (int i = 0; i < n; i++) n_itl += runs[i].n_itl;
    double *ttft = calloc((size_t)n + 1, sizeof *ttft), *tpot = calloc((size_t)n + 1, sizeof *tpot);
    double *e2e = calloc((size_t)n + 1, sizeof *e2e), *itl = calloc((size_t)n_itl + 1, sizeof *itl);
    int n_tpot = 0, k = 0;
    for (int i = 0; i < n; i++) {
        req_run *r = &runs[i];
        if (!r->ok) continue;
        ttft[ok] = r->ttft;
        e2e[ok++] = r->e2e;
        out_tokens += r->n_out;
        in_tokens += r->n_tokens;
        if (r->n_out > 1) tpot[n_tpot++] = (r->last - r->first) / (r->n_out - 1);
        for (int j = 0; j < r->n_itl; j++) itl[k++] = r->itl[j];
    }
    if (o->json) {
        printf("{\"completed\":%d,\"failed\":%d,\"duration_s\":%.3f,\"request_throughput\":%.3f,"
               "\"output_throughput\":%.3f,\"total_input_tokens\":%ld,\"total_output_tokens\":%ld,",
               ok, n - ok, duration, ok / duration, out_tokens / duration, in_tokens, out_tokens);
        stat_line("ttft", ttft, ok, true, false);
        stat_line("tpot", tpot, n_tpot, true, false);
        stat_line("itl", itl, k, true, false);
        stat_line("e2e", e2e, ok, true, true);
        printf("}\n");
    } else {
        printf("completed %d of %d requests in %.2f s (request rate %g/s)\n", ok, n, duration, o->rate);
        printf("request throughput %.2f req/s, output %.1f tok/s\n\n", ok / duration, out_tokens / duration);
        printf("| metric    |      mean |       p50 |       p90 |       p99 |\n|---|---|---|---|---|\n");
        stat_line("ttft", ttft, ok, false, false);
        stat_line("tpot", tpot, n_tpot, false, false);
        stat_line("itl", itl, k, false, false);
        stat_line("e2e", e2e, ok, false, true);
    }
    for (int i = 0; i < n; i++)
        if (!runs[i].ok) {
            fprintf(stderr, "request %d failed: %s\n", i, runs[i].err);
            break;
        }
    free(ttft);
    free(tpot);
    free(e2e);
    free(itl);
}

// Prompts: lines of --prompts, else input_len synthetic token ids; arrival times Poisson.
static char *make_runs(online_opts *o, req_run *runs, int vocab) {
    char *text = NULL, err[256];
    size_t len = 0;
    if (o->prompts_file && cs_file_read_all(o->prompts_file, (size_t)1 << 30, &text, &len, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s\n", err);
        return NULL;
    }
    char *line = text;
    uint64_t rng = o->seed;
    double t = 0;
    for (int i = 0; i < o->num_prompts; i++) {
        runs[i].o = o;
        if (isfinite(o->rate)) t += -log(1.0 - (double)(cs_splitmix64(&rng) >> 11) / 9007199254740992.0) / o->rate;
        runs[i].start = t;
        runs[i].cap_itl = o->output_len;
        runs[i].itl = calloc((size_t)o->output_len + 1, sizeof(double));
        if (text) { // cycle through the file's non-empty lines
            while (line && *line == '\n') line++;
            if (!line || !*line) line = text;
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            runs[i].prompt = line;
            line = nl ? nl + 1 : NULL;
        } else {
            runs[i].n_tokens = o->input_len;
            runs[i].tokens = malloc(sizeof(int32_t) * (size_t)o->input_len);
            for (int k = 0; k < o->input_len; k++) runs[i].tokens[k] = 100 + (int32_t)(cs_splitmix64(&rng) % (uint64_t)(vocab - 200));
        }
    }
    return text ? text : strdup("");
}

// The model's vocabulary size, for synthetic prompts.
static int server_vocab(const online_opts *o) {
    cs_client *c = NULL;
    char err[256], *json = NULL;
    int vocab = -1;
    if (cs_client_connect(&c, o->host, o->port, o->socket, err, sizeof err) != 0 ||
        (o->api_key && cs_client_auth(c, o->api_key, err, sizeof err) != 0) ||
        cs_client_call(c, "model", NULL, &json, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
    } else {
        const char *v = strstr(json, "\"vocab_size\":");
        vocab = v ? atoi(v + 13) : -1;
        if (vocab < 1000) fprintf(stderr, "error: the server did not say its vocabulary size\n");
    }
    free(json);
    if (c) cs_client_close(c);
    return vocab >= 1000 ? vocab : -1;
}

static int parse_online(int argc, char **argv, online_opts *o) {
    *o = (online_opts){.host = "127.0.0.1", .port = 7777, .num_prompts = 32, .input_len = 128,
                       .output_len = 64, .rate = INFINITY, .seed = 0};
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v = NULL;
        if (!strcmp(argv[i], "--json")) o->json = true;
        else if (cs_cli_value(argc, argv, &i, "--socket", &o->socket, &bad) ||
                 cs_cli_value(argc, argv, &i, "--api-key", &o->api_key, &bad) ||
                 cs_cli_value(argc, argv, &i, "--prompts", &o->prompts_file, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--connect", &v, &bad)) {
            const char *colon = bad ? NULL : strrchr(v, ':');
            static char host[256];
            if (!bad && (!colon || colon == v || (size_t)(colon - v) >= sizeof host ||
                         !cs_cli_int("--connect port", colon + 1, 1, 65535, &o->port))) {
                if (!colon || colon == v) fprintf(stderr, "error: --connect: expected HOST:PORT, got '%s'\n", v);
                bad = true;
            } else if (!bad) {
                snprintf(host, sizeof host, "%.*s", (int)(colon - v), v);
                o->host = host;
            }
        } else if (cs_cli_value(argc, argv, &i, "--request-rate", &v, &bad)) {
            float r = 0;
            if (!bad && strcmp(v, "inf") != 0) {
                bad = !cs_cli_float("--request-rate", v, 1e-6, 1e9, &r);
                o->rate = r;
            }
        } else if (cs_cli_value(argc, argv, &i, "--num-prompts", &v, &bad)) {
            bad = bad || !cs_cli_int("--num-prompts", v, 1, 100000, &o->num_prompts);
        } else if (cs_cli_value(argc, argv, &i, "--input-len", &v, &bad)) {
            bad = bad || !cs_cli_int("--input-len", v, 1, 1 << 20, &o->input_len);
        } else if (cs_cli_value(argc, argv, &i, "--output-len", &v, &bad)) {
            bad = bad || !cs_cli_int("--output-len", v, 1, 1 << 20, &o->output_len);
        } else if (cs_cli_value(argc, argv, &i, "--seed", &v, &bad)) {
            bad = bad || !cs_cli_u64("--seed", v, &o->seed);
        } else {
            fprintf(stderr, "error: unknown option '%s' for the online benchmark (see cserve bench --help)\n", argv[i]);
            return CS_EXIT_BAD_INPUT;
        }
        if (bad) return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

int cs_bench_online(int argc, char **argv) {
    online_opts o;
    int rc = parse_online(argc, argv, &o);
    if (rc) return rc;
    int vocab = o.prompts_file ? 0 : server_vocab(&o);
    if (vocab < 0) return CS_EXIT_RUNTIME;
    req_run *runs = calloc((size_t)o.num_prompts, sizeof *runs);
    pthread_t *th = calloc((size_t)o.num_prompts, sizeof *th);
    char *text = runs && th ? make_runs(&o, runs, vocab) : NULL;
    if (!text) {
        free(runs);
        free(th);
        return CS_EXIT_BAD_INPUT;
    }
    t0 = 0;
    t0 = now_s();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    int started = 0;
    for (int i = 0; i < o.num_prompts; i++) {
        if (pthread_create(&th[i], &attr, run_one, &runs[i]) != 0) {
            snprintf(runs[i].err, sizeof runs[i].err, "cannot start a thread");
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        if (!o.json) fprintf(stderr, "\r[%d/%d] requests done", i + 1, o.num_prompts);
    }
    if (!o.json) fprintf(stderr, "\n");
    double duration = now_s();
    report(&o, runs, duration);
    for (int i = 0; i < o.num_prompts; i++) {
        free(runs[i].tokens);
        free(runs[i].itl);
    }
    pthread_attr_destroy(&attr);
    free(text);
    free(runs);
    free(th);
    return CS_EXIT_OK;
}
