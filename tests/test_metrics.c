// Prometheus metrics: feed known events, render, read the text back with a small parser of the
// exposition format 0.0.4, and check every number against what was fed.
#include "server/metrics.h"
#include "test_util.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

// --- a parser of the text format, strict about what cs_metrics writes ----------------------

#define MAX_SAMPLES 1024
#define MAX_FAMILIES 64
#define MAX_LABELS 4

typedef struct sample {
    char name[96];
    int n_labels;
    char key[MAX_LABELS][32];
    char val[MAX_LABELS][128];
    double value;
    int family; // index into parsed.fam
} sample;

typedef struct family {
    char name[96];
    char type[16];
} family;

typedef struct parsed {
    sample s[MAX_SAMPLES];
    int n;
    family fam[MAX_FAMILIES];
    int n_fam;
    char err[160];
} parsed;

static bool name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

// Copies a metric or label name at *p into out; false when empty or too long.
static bool read_name(const char **p, char *out, size_t cap) {
    size_t n = 0;
    while (name_char(**p, n == 0)) {
        if (n + 1 >= cap) return false;
        out[n++] = *(*p)++;
    }
    out[n] = '\0';
    return n > 0;
}

// A quoted label value with the escapes \\ \" \n; any other escape or a raw newline is an error.
static bool read_label_value(const char **p, char *out, size_t cap) {
    if (**p != '"') return false;
    (*p)++;
    size_t n = 0;
    for (;;) {
        char c = *(*p)++;
        if (c == '"') break;
        if (c == '\0' || c == '\n') return false;
        if (c == '\\') {
            char e = *(*p)++;
            if (e == 'n') c = '\n';
            else if (e == '\\' || e == '"') c = e;
            else return false;
        }
        if (n + 1 >= cap) return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

// Whether sample name belongs to family f: the same name for counters and gauges (a counter's
// ends in _total), name_bucket / _sum / _count for histograms.
static bool belongs(const family *f, const char *name) {
    if (!strcmp(f->type, "histogram")) {
        size_t n = strlen(f->name);
        return !strncmp(name, f->name, n) &&
               (!strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") || !strcmp(name + n, "_count"));
    }
    if (!strcmp(f->type, "counter")) return !strcmp(f->name, name) && ends_with(name, "_total");
    return !strcmp(f->name, name);
}

static bool parse_fail(parsed *out, int line, const char *why) {
    snprintf(out->err, sizeof out->err, "line %d: %s", line, why);
    return false;
}

// "# HELP name text" or "# TYPE name type"; a TYPE must follow the HELP of the same name, once.
static bool parse_comment(parsed *out, const char *p, int line, char *help_of) {
    bool help = !strncmp(p, "# HELP ", 7), type = !strncmp(p, "# TYPE ", 7);
    if (!help && !type) return parse_fail(out, line, "comment is neither HELP nor TYPE");
    p += 7;
    char name[96];
    if (!read_name(&p, name, sizeof name) || *p != ' ') return parse_fail(out, line, "bad family name");
    p++;
    if (help) {
        snprintf(help_of, 96, "%s", name);
        return true;
    }
    if (strcmp(help_of, name)) return parse_fail(out, line, "TYPE without HELP before it");
    for (int i = 0; i < out->n_fam; i++)
        if (!strcmp(out->fam[i].name, name)) return parse_fail(out, line, "family typed twice");
    if (out->n_fam == MAX_FAMILIES) return parse_fail(out, line, "too many families");
    size_t len = strcspn(p, "\n");
    family *f = &out->fam[out->n_fam++];
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->type, sizeof f->type, "%.*s", (int)len, p);
    if (strcmp(f->type, "counter") && strcmp(f->type, "gauge") && strcmp(f->type, "histogram"))
        return parse_fail(out, line, "unknown type");
    return true;
}

// name{k="v",...} value
static bool parse_sample(parsed *out, const char *p, int line) {
    if (out->n == MAX_SAMPLES) return parse_fail(out, line, "too many samples");
    sample *s = &out->s[out->n];
    memset(s, 0, sizeof *s);
    if (!read_name(&p, s->name, sizeof s->name)) return parse_fail(out, line, "bad sample name");
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (s->n_labels == MAX_LABELS) return parse_fail(out, line, "too many labels");
            if (!read_name(&p, s->key[s->n_labels], sizeof s->key[0]) || *p++ != '=')
                return parse_fail(out, line, "bad label name");
            if (!read_label_value(&p, s->val[s->n_labels], sizeof s->val[0]))
                return parse_fail(out, line, "bad label value");
            s->n_labels++;
            if (*p == ',') p++;
            else if (*p != '}') return parse_fail(out, line, "expected , or }");
        }
        p++;
    }
    if (*p++ != ' ') return parse_fail(out, line, "expected a space before the value");
    char *end;
    if (!strncmp(p, "+Inf", 4)) s->value = INFINITY, end = (char *)p + 4;
    else s->value = strtod(p, &end);
    if (end == p || (*end != '\n' && *end != '\0')) return parse_fail(out, line, "bad value");
    // The sample must belong to the family typed last: families are not interleaved.
    if (out->n_fam == 0 || !belongs(&out->fam[out->n_fam - 1], s->name))
        return parse_fail(out, line, "sample outside its family");
    s->family = out->n_fam - 1;
    out->n++;
    return true;
}

static bool parse(const char *text, parsed *out) {
    memset(out, 0, sizeof *out);
    char help_of[96] = "";
    int line = 1;
    for (const char *p = text; *p; line++) {
        if (*p == '#' ? !parse_comment(out, p, line, help_of) : !parse_sample(out, p, line)) return false;
        const char *nl = strchr(p, '\n');
        if (!nl) return parse_fail(out, line, "text does not end in a newline");
        p = nl + 1;
    }
    return true;
}

static const char *label(const sample *s, const char *key) {
    for (int i = 0; i < s->n_labels; i++)
        if (!strcmp(s->key[i], key)) return s->val[i];
    return NULL;
}

// The sample called name (with label key="val" when key is given), or NULL.
static const sample *find(const parsed *p, const char *name, const char *key, const char *val) {
    for (int i = 0; i < p->n; i++) {
        const sample *s = &p->s[i];
        const char *v = key ? label(s, key) : NULL;
        if (!strcmp(s->name, name) && (!key || (v && !strcmp(v, val)))) return s;
    }
    return NULL;
}

static double value(const parsed *p, const char *name, const char *key, const char *val) {
    const sample *s = find(p, name, key, val);
    return s ? s->value : NAN;
}

static int count_named(const parsed *p, const char *name) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += !strcmp(p->s[i].name, name);
    return n;
}

static bool has_family(const parsed *p, const char *name) {
    for (int i = 0; i < p->n_fam; i++)
        if (!strcmp(p->fam[i].name, name)) return true;
    return false;
}

// Renders and parses; checks what holds for every rendering: the length, that it parses, and
// that every sample carries model_name with this value.
static char *render_parse(const cs_metrics *m, const cs_engine_stats *st, const char *model, parsed *p) {
    size_t len = 0;
    char *text = cs_metrics_render(m, st, model, &len);
    TEST_COND(text != NULL);
    if (!text) return NULL;
    TEST_COND(len == strlen(text));
    bool ok = parse(text, p);
    TEST_CONDF(ok, "%s", p->err);
    if (!ok) fprintf(stderr, "%s", text);
    for (int i = 0; i < p->n; i++) {
        const char *v = label(&p->s[i], "model_name");
        TEST_CONDF(v && !strcmp(v, model), "%s without model_name=%s", p->s[i].name, model);
    }
    return text;
}

// A histogram read back: buckets in ascending le ending with +Inf, cumulative, each holding
// exactly the fed values <= its bound; +Inf == _count == n; _sum the sum of the values.
static void check_histogram(const parsed *p, const char *name, const double *vals, int n) {
    char bucket[128], sum_name[128], count_name[128];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum_name, sizeof sum_name, "%s_sum", name);
    snprintf(count_name, sizeof count_name, "%s_count", name);
    TEST_CONDF(has_family(p, name), "%s", name);
    double prev_le = -INFINITY, prev_count = 0, inf_count = NAN;
    int n_buckets = 0;
    for (int i = 0; i < p->n; i++) {
        const sample *s = &p->s[i];
        if (strcmp(s->name, bucket)) continue;
        n_buckets++;
        const char *le_text = label(s, "le");
        TEST_CONDF(le_text != NULL, "%s bucket without le", name);
        if (!le_text) continue;
        double le = !strcmp(le_text, "+Inf") ? INFINITY : strtod(le_text, NULL);
        TEST_CONDF(le > prev_le, "%s: le=%s after %g", name, le_text, prev_le);
        TEST_CONDF(s->value >= prev_count, "%s: le=%s count %g < %g", name, le_text, s->value, prev_count);
        int expect = 0;
        for (int k = 0; k < n; k++) expect += vals[k] <= le;
        TEST_CONDF(s->value == expect, "%s: le=%s count %g, want %d", name, le_text, s->value, expect);
        prev_le = le;
        prev_count = s->value;
        if (isinf(le)) inf_count = s->value;
    }
    TEST_CONDF(n_buckets >= 2 && isinf(prev_le), "%s: %d buckets, last le %g", name, n_buckets, prev_le);
    double sum = 0;
    for (int k = 0; k < n; k++) sum += vals[k];
    double got_sum = value(p, sum_name, NULL, NULL), got_count = value(p, count_name, NULL, NULL);
    TEST_CONDF(inf_count == got_count, "%s: +Inf %g, _count %g", name, inf_count, got_count);
    TEST_CONDF(got_count == n, "%s: _count %g, want %d", name, got_count, n);
    TEST_CONDF(fabs(got_sum - sum) <= 1e-9 * fabs(sum), "%s: _sum %.17g, want %.17g", name, got_sum, sum);
}

static cs_event done_event(int prompt, int completion, double ttft_ms, double total_ms, double queue_ms) {
    cs_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CS_EVENT_DONE;
    ev.prompt_tokens = prompt;
    ev.completion_tokens = completion;
    ev.ttft_ms = ttft_ms;
    ev.total_ms = total_ms;
    ev.queue_ms = queue_ms;
    return ev;
}

// --- tests -------------------------------------------------------------------------------

static void test_fed_values(void) {
    cs_metrics *m = cs_metrics_new();
    TEST_COND(m != NULL);
    // {prompt, completion, ttft, total, queue}: 100 ms sits on a TTFT bound (le is inclusive);
    // the second request produced nothing, so it has no TTFT; the last exceeds every bound.
    const double reqs[][5] = {{10, 5, 100, 500, 2},           {7, 0, 0, 30, 30},
                              {100, 64, 2345.5, 12000, 0.4}, {1, 1, 1e7, 1e7, 1e7}};
    double ttft[4], e2e[4], queue[4];
    int n_ttft = 0;
    for (int i = 0; i < 4; i++) {
        cs_event ev = done_event((int)reqs[i][0], (int)reqs[i][1], reqs[i][2], reqs[i][3], reqs[i][4]);
        cs_metrics_request_done(m, &ev);
        if (reqs[i][1] > 0) ttft[n_ttft++] = reqs[i][2] / 1000.0;
        e2e[i] = reqs[i][3] / 1000.0;
        queue[i] = reqs[i][4] / 1000.0;
    }
    const cs_finish_reason why[] = {CS_FINISH_REASON_STOP,   CS_FINISH_REASON_LENGTH,    CS_FINISH_REASON_STOP,
                                    CS_FINISH_REASON_LENGTH, CS_FINISH_REASON_CANCELLED, CS_FINISH_REASON_STOP};
    for (int i = 0; i < 6; i++) cs_metrics_choice_finished(m, why[i]);
    cs_metrics_choice_finished(m, (cs_finish_reason)7); // not a reason: ignored
    const double itl[] = {0.003, 0.01, 0.2, 100.0, 0.0004, 0.0625};
    for (int i = 0; i < 6; i++) cs_metrics_inter_token(m, itl[i]);
    cs_metrics_inter_token(m, NAN); // dropped: it would spoil the sum for good
    const int codes[] = {200, 200, 400, 503, 200, 99, 600, 0, -1};
    for (int i = 0; i < 9; i++) cs_metrics_http_response(m, codes[i]);

    cs_engine_stats st = {.running = 3, .waiting = 2, .blocks_total = 200, .blocks_used = 50,
                          .prefix_cache_queries = 1000, .prefix_cache_hits = 250};
    parsed *p = malloc(sizeof *p);
    char *text = render_parse(m, &st, "tiny-model", p);

    TEST_COND(value(p, "cserve:prompt_tokens_total", NULL, NULL) == 118);
    TEST_COND(value(p, "cserve:generation_tokens_total", NULL, NULL) == 70);
    TEST_COND(value(p, "cserve:requests_total", NULL, NULL) == 4);
    TEST_COND(value(p, "cserve:request_success_total", "finished_reason", "stop") == 3);
    TEST_COND(value(p, "cserve:request_success_total", "finished_reason", "length") == 2);
    TEST_COND(value(p, "cserve:request_success_total", "finished_reason", "cancelled") == 1);
    TEST_COND(value(p, "cserve:request_success_total", "finished_reason", "error") == 0);
    TEST_COND(count_named(p, "cserve:request_success_total") == 4);
    TEST_COND(value(p, "cserve:http_responses_total", "code", "200") == 3);
    TEST_COND(value(p, "cserve:http_responses_total", "code", "400") == 1);
    TEST_COND(value(p, "cserve:http_responses_total", "code", "503") == 1);
    TEST_COND(count_named(p, "cserve:http_responses_total") == 3);
    TEST_COND(value(p, "cserve:num_requests_running", NULL, NULL) == 3);
    TEST_COND(value(p, "cserve:num_requests_waiting", NULL, NULL) == 2);
    TEST_COND(value(p, "cserve:kv_cache_usage_perc", NULL, NULL) == 0.25);
    TEST_COND(value(p, "cserve:prefix_cache_queries_total", NULL, NULL) == 1000);
    TEST_COND(value(p, "cserve:prefix_cache_hits_total", NULL, NULL) == 250);

    check_histogram(p, "cserve:time_to_first_token_seconds", ttft, n_ttft);
    check_histogram(p, "cserve:e2e_request_latency_seconds", e2e, 4);
    check_histogram(p, "cserve:request_queue_time_seconds", queue, 4);
    check_histogram(p, "cserve:inter_token_latency_seconds", itl, 6);
    // Bounds are written as their decimal source, not as 0.0050000000000000001.
    TEST_COND(text && strstr(text, "le=\"0.005\"") && strstr(text, "le=\"+Inf\""));
    // Counters are integers in the text, as written by prometheus_client minus the ".0".
    TEST_COND(text && strstr(text, "cserve:prompt_tokens_total{model_name=\"tiny-model\"} 118\n"));
    TEST_COND(text && strstr(text, "# TYPE cserve:prompt_tokens_total counter\n"));
    free(text);
    free(p);
    cs_metrics_free(m);
}

// Many small values, none dominating the sum, so that _sum shows any precision lost on the way.
static void test_small_values(void) {
    cs_metrics *m = cs_metrics_new();
    double itl[40], ttft[10], e2e[10], queue[10];
    for (int k = 0; k < 40; k++) {
        itl[k] = 0.0003 * (k * 7 % 13 + 1);
        cs_metrics_inter_token(m, itl[k]);
    }
    for (int k = 0; k < 10; k++) {
        cs_event ev = done_event(3, 2, 3.3 * (k + 1), 17.1 * (k + 1), 0.7 * (k + 1));
        cs_metrics_request_done(m, &ev);
        ttft[k] = ev.ttft_ms / 1000.0;
        e2e[k] = ev.total_ms / 1000.0;
        queue[k] = ev.queue_ms / 1000.0;
    }
    parsed *p = malloc(sizeof *p);
    char *text = render_parse(m, NULL, "m", p);
    check_histogram(p, "cserve:inter_token_latency_seconds", itl, 40);
    check_histogram(p, "cserve:time_to_first_token_seconds", ttft, 10);
    check_histogram(p, "cserve:e2e_request_latency_seconds", e2e, 10);
    check_histogram(p, "cserve:request_queue_time_seconds", queue, 10);
    free(text);
    free(p);
    cs_metrics_free(m);
}

// Nothing fed: every counter 0, every finish reason present, no HTTP sample, empty histograms;
// a KV pool of 0 blocks reads as 0 usage, not NaN.
static void test_empty(void) {
    cs_metrics *m = cs_metrics_new();
    cs_engine_stats st = {0};
    parsed *p = malloc(sizeof *p);
    char *text = render_parse(m, &st, "m", p);
    TEST_COND(value(p, "cserve:kv_cache_usage_perc", NULL, NULL) == 0);
    TEST_COND(value(p, "cserve:requests_total", NULL, NULL) == 0);
    TEST_COND(value(p, "cserve:prompt_tokens_total", NULL, NULL) == 0);
    TEST_COND(count_named(p, "cserve:request_success_total") == 4);
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->s[i].name, "cserve:request_success_total")) TEST_COND(p->s[i].value == 0);
    TEST_COND(count_named(p, "cserve:http_responses_total") == 0);
    TEST_COND(has_family(p, "cserve:http_responses_total"));
    check_histogram(p, "cserve:time_to_first_token_seconds", NULL, 0);
    check_histogram(p, "cserve:inter_token_latency_seconds", NULL, 0);
    check_histogram(p, "cserve:e2e_request_latency_seconds", NULL, 0);
    check_histogram(p, "cserve:request_queue_time_seconds", NULL, 0);
    free(text);
    free(p);
    cs_metrics_free(m);
}

// While the model loads there are no engine stats: the engine's families are left out, the
// server's own are still there.
static void test_no_stats(void) {
    cs_metrics *m = cs_metrics_new();
    cs_metrics_http_response(m, 503);
    parsed *p = malloc(sizeof *p);
    char *text = render_parse(m, NULL, "loading", p);
    const char *engine_families[] = {"cserve:num_requests_running", "cserve:num_requests_waiting",
                                     "cserve:kv_cache_usage_perc", "cserve:prefix_cache_queries_total",
                                     "cserve:prefix_cache_hits_total"};
    for (int i = 0; i < 5; i++) {
        TEST_CONDF(count_named(p, engine_families[i]) == 0, "%s", engine_families[i]);
        TEST_CONDF(!has_family(p, engine_families[i]), "%s", engine_families[i]);
    }
    TEST_COND(value(p, "cserve:requests_total", NULL, NULL) == 0);
    TEST_COND(value(p, "cserve:http_responses_total", "code", "503") == 1);
    check_histogram(p, "cserve:e2e_request_latency_seconds", NULL, 0);
    free(text);
    free(p);
    cs_metrics_free(m);
}

// A model name with a quote, a backslash and a newline is escaped in the text and reads back whole.
static void test_escaping(void) {
    cs_metrics *m = cs_metrics_new();
    const char *name = "we\"ird\\na\nme";
    cs_engine_stats st = {.blocks_total = 4, .blocks_used = 1};
    parsed *p = malloc(sizeof *p);
    char *text = render_parse(m, &st, name, p); // checks every sample's model_name == name
    TEST_COND(p->n > 20);
    TEST_COND(text && strstr(text, "{model_name=\"we\\\"ird\\\\na\\nme\"}"));
    free(text);
    free(p);
    cs_metrics_free(m);
}

int main(void) {
    test_fed_values();
    test_small_values();
    test_empty();
    test_no_stats();
    test_escaping();
    cs_metrics_free(NULL); // must be a no-op; a crash fails the test
    return TEST_REPORT();
}
