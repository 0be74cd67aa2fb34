// Prometheus metrics: plain counters and fixed-bucket histograms, written out on each scrape.
#include "metrics.h"

#include "common/assert.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 32 // finite bounds per histogram; one more count holds what lies above them

// Bucket bounds in seconds, after vLLM's so that the same dashboards read well. Inter-token and
// queue times get a finer low end than vLLM's: a small model decodes a token in a few ms, and an
// unloaded server queues a request for well under 10 ms.
static const double TTFT_BOUNDS[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                     1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double ITL_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                    0.4,   0.5,    0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
static const double E2E_BOUNDS[] = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double QUEUE_BOUNDS[] = {0.001, 0.005, 0.01, 0.05, 0.1,  0.3,   0.5,   0.8,   1.0,
                                      1.5,   2.0,   2.5,  5.0,  10.0, 15.0,  20.0,  30.0,  40.0,
                                      50.0,  60.0,  120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct histogram {
    const char *name, *help;
    const double *bounds; // ascending upper bounds (le), seconds
    int n_bounds;
    long counts[MAX_BUCKETS + 1]; // per bucket, not cumulative; [n_bounds] is above every bound
    double sum;
    long count;
} histogram;

// Indexed by cs_finish_reason.
static const char *const FINISH_NAMES[] = {"stop", "length", "cancelled", "error"};
_Static_assert(CS_FINISH_REASON_STOP == 0 && CS_FINISH_REASON_ERROR == 3, "FINISH_NAMES follows the enum");

#define HTTP_MIN 100
#define HTTP_MAX 599

struct cs_metrics {
    long prompt_tokens, generation_tokens, requests;
    long finished[4];                       // choices ended, by cs_finish_reason
    long http[HTTP_MAX - HTTP_MIN + 1];     // responses sent, by status code - HTTP_MIN
    histogram ttft, itl, e2e, queue;
};

static void histogram_init(histogram *h, const char *name, const char *help, const double *bounds, int n) {
    CS_ASSERT(n <= MAX_BUCKETS);
    h->name = name;
    h->help = help;
    h->bounds = bounds;
    h->n_bounds = n;
}

// Non-finite values are dropped (they would poison the sum for good); negative ones, which a
// clock step can make, count as 0.
static void histogram_observe(histogram *h, double v) {
    if (!isfinite(v)) return;
    if (v < 0) v = 0;
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++; // a bucket holds values <= its bound
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

cs_metrics *cs_metrics_new(void) {
    cs_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    histogram_init(&m->ttft, "cserve:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                   TTFT_BOUNDS, N_OF(TTFT_BOUNDS));
    histogram_init(&m->itl, "cserve:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                   ITL_BOUNDS, N_OF(ITL_BOUNDS));
    histogram_init(&m->e2e, "cserve:e2e_request_latency_seconds",
                   "Histogram of end to end request latency in seconds.", E2E_BOUNDS, N_OF(E2E_BOUNDS));
    histogram_init(&m->queue, "cserve:request_queue_time_seconds",
                   "Histogram of time spent waiting to be scheduled, in seconds.", QUEUE_BOUNDS, N_OF(QUEUE_BOUNDS));
    return m;
}

void cs_metrics_free(cs_metrics *m) { free(m); }

void cs_metrics_request_done(cs_metrics *m, const cs_event *done) {
    CS_ASSERT(done->type == CS_EVENT_DONE);
    if (done->prompt_tokens > 0) m->prompt_tokens += done->prompt_tokens;
    if (done->completion_tokens > 0) m->generation_tokens += done->completion_tokens;
    m->requests++;
    // A request that produced no token (max_tokens 0, cancelled in the queue) has no first token.
    if (done->completion_tokens > 0) histogram_observe(&m->ttft, done->ttft_ms / 1000.0);
    histogram_observe(&m->e2e, done->total_ms / 1000.0);
    histogram_observe(&m->queue, done->queue_ms / 1000.0);
}

void cs_metrics_choice_finished(cs_metrics *m, cs_finish_reason why) {
    if ((unsigned)why < (unsigned)N_OF(FINISH_NAMES)) m->finished[why]++;
}

void cs_metrics_inter_token(cs_metrics *m, double seconds) { histogram_observe(&m->itl, seconds); }

void cs_metrics_http_response(cs_metrics *m, int status) {
    if (status >= HTTP_MIN && status <= HTTP_MAX) m->http[status - HTTP_MIN]++;
}

// --- rendering -----------------------------------------------------------------------------

// A growing output string; after a failed allocation it stays failed and ignores writes.
typedef struct text {
    char *p;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    while (!t->failed) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
        } else if (t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        } else {
            size_t cap = 2 * t->cap + (size_t)n + 1;
            char *p = realloc(t->p, cap);
            if (!p) t->failed = true;
            else t->p = p, t->cap = cap;
        }
    }
}

// The shortest %g form that reads back as the same double, so that le="0.005" looks like its
// source and sums lose nothing; infinities as Prometheus spells them.
static void fmt_num(char out[32], double v) {
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

// The label pair model_name="..." with the value escaped as the format asks: \\, \", \n.
// malloc'd; NULL when out of memory.
static char *model_label(const char *name) {
    if (!name) name = "";
    const char prefix[] = "model_name=\"";
    char *out = malloc(sizeof prefix + 2 * strlen(name) + 2);
    if (!out) return NULL;
    char *o = out + (sizeof prefix - 1);
    memcpy(out, prefix, sizeof prefix - 1);
    for (const char *c = name; *c; c++) {
        if (*c == '\\' || *c == '"') *o++ = '\\', *o++ = *c;
        else if (*c == '\n') *o++ = '\\', *o++ = 'n';
        else *o++ = *c;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

// HELP and TYPE of a family. name is what its samples are called (a counter's ends in _total,
// as prometheus_client writes it, so that parsers attach the type to the samples).
static void family(text *t, const char *name, const char *type, const char *help) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(text *t, const char *name, const char *help, const char *lab, long v) {
    family(t, name, "counter", help);
    put(t, "%s{%s} %ld\n", name, lab, v);
}

static void gauge(text *t, const char *name, const char *help, const char *lab, double v) {
    char num[32];
    fmt_num(num, v);
    family(t, name, "gauge", help);
    put(t, "%s{%s} %s\n", name, lab, num);
}

static void render_histogram(text *t, const histogram *h, const char *lab) {
    char num[32];
    family(t, h->name, "histogram", h->help);
    long cumulative = 0;
    for (int i = 0; i <= h->n_bounds; i++) {
        cumulative += h->counts[i];
        if (i < h->n_bounds) fmt_num(num, h->bounds[i]);
        else strcpy(num, "+Inf");
        put(t, "%s_bucket{%s,le=\"%s\"} %ld\n", h->name, lab, num, cumulative);
    }
    fmt_num(num, h->sum);
    put(t, "%s_sum{%s} %s\n", h->name, lab, num);
    put(t, "%s_count{%s} %ld\n", h->name, lab, h->count);
}

static void render_engine(text *t, const cs_engine_stats *st, const char *lab) {
    gauge(t, "cserve:num_requests_running", "Number of requests in model execution batches.", lab, st->running);
    gauge(t, "cserve:num_requests_waiting", "Number of requests waiting to be processed.", lab, st->waiting);
    double usage = st->blocks_total > 0 ? (double)st->blocks_used / (double)st->blocks_total : 0.0;
    gauge(t, "cserve:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", lab, usage);
    counter(t, "cserve:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
            lab, st->prefix_cache_queries);
    counter(t, "cserve:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", lab,
            st->prefix_cache_hits);
}

char *cs_metrics_render(const cs_metrics *m, const cs_engine_stats *st, const char *model_name, size_t *len) {
    char *lab = model_label(model_name);
    text t = {.p = malloc(8192), .cap = 8192};
    if (!lab || !t.p) {
        free(lab);
        free(t.p);
        return NULL;
    }
    if (st) render_engine(&t, st, lab);
    counter(&t, "cserve:prompt_tokens_total", "Number of prefill tokens processed.", lab, m->prompt_tokens);
    counter(&t, "cserve:generation_tokens_total", "Number of generation tokens processed.", lab, m->generation_tokens);
    counter(&t, "cserve:requests_total", "Number of requests that ended.", lab, m->requests);

    family(&t, "cserve:request_success_total", "counter", "Count of finished choices, by finish reason.");
    for (int i = 0; i < N_OF(FINISH_NAMES); i++)
        put(&t, "cserve:request_success_total{%s,finished_reason=\"%s\"} %ld\n", lab, FINISH_NAMES[i], m->finished[i]);

    family(&t, "cserve:http_responses_total", "counter", "Count of HTTP responses sent, by status code.");
    for (int code = HTTP_MIN; code <= HTTP_MAX; code++) {
        long n = m->http[code - HTTP_MIN];
        if (n > 0) put(&t, "cserve:http_responses_total{%s,code=\"%d\"} %ld\n", lab, code, n);
    }

    render_histogram(&t, &m->ttft, lab);
    render_histogram(&t, &m->itl, lab);
    render_histogram(&t, &m->e2e, lab);
    render_histogram(&t, &m->queue, lab);
    free(lab);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    if (len) *len = t.len;
    return t.p;
}
