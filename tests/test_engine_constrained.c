// Constrained decoding through the engine (also run under ASan+UBSan): regex, choices with
// n = 2, a JSON schema, json_object; the outputs checked here in C; forced-run batching on
// and off give the same greedy tokens; a max_tokens cut mid-grammar finishes with "length";
// bad constraints are refused at submit; every block is free at the end.
#include <cjson/cJSON.h>
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "cserve/engine.h"
#include "test_util.h"

#define MAX_OUT 2048

typedef struct out {
    uint64_t id;
    int n;
    char text[2][MAX_OUT];
    size_t len[2];
    int32_t toks[2][256];
    int n_toks[2];
    cs_finish_reason why[2];
    bool done;
} out;

static cs_engine *start(const char *model, bool no_forced_runs) {
    cs_engine_params p;
    cs_engine_params_default(&p);
    p.model_path = model;
    p.max_model_len = 512;
    p.kv_cache_memory = (size_t)64 << 20;
    p.no_forced_runs = no_forced_runs;
    cs_engine *e;
    char err[256];
    TEST_CONDF(cs_engine_init(&p, &e, err, sizeof err) == 0, "%s", err);
    return e;
}

// Submits every request at once and collects their outputs.
static void run(cs_engine *e, cs_request *q, out *o, int n) {
    char err[256];
    for (int i = 0; i < n; i++) {
        memset(&o[i], 0, sizeof o[i]);
        o[i].n = q[i].n;
        TEST_CONDF(cs_engine_submit(e, &q[i], &o[i].id, err, sizeof err) == 0, "request %d: %s", i, err);
    }
    int left = n;
    cs_event ev;
    while (left > 0 && cs_engine_poll(e, &ev, 60000) == 1)
        for (int i = 0; i < n; i++) {
            if (o[i].id != ev.request_id) continue;
            int k = ev.index;
            if (ev.type == CS_EVENT_TOKEN && k >= 0 && k < 2) {
                if (o[i].len[k] + ev.text_len < MAX_OUT) memcpy(o[i].text[k] + o[i].len[k], ev.text, ev.text_len);
                o[i].len[k] += ev.text_len;
                if (o[i].n_toks[k] < 256) o[i].toks[k][o[i].n_toks[k]++] = ev.token;
            }
            if (ev.type == CS_EVENT_FINISH && k >= 0 && k < 2) o[i].why[k] = ev.finish_reason;
            if (ev.type == CS_EVENT_DONE) o[i].done = true, left--;
        }
    TEST_CONDF(left == 0, "%d requests did not finish", left);
}

// \d{3}-\d{4}
static bool phone(const char *s, size_t n) {
    if (n != 8 || s[3] != '-') return false;
    for (int i = 0; i < 8; i++)
        if (i != 3 && !isdigit((unsigned char)s[i])) return false;
    return true;
}

static const char *SCHEMA = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
                            "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},\"tags\":{\"type\":\"array\","
                            "\"items\":{\"enum\":[\"a\",\"b\",\"ü\"]},\"maxItems\":3}},\"required\":[\"name\",\"age\"]}";

static bool person(const char *s, size_t n) {
    cJSON *j = cJSON_ParseWithLength(s, n);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name"), *age = cJSON_GetObjectItemCaseSensitive(j, "age");
    bool ok = cJSON_IsObject(j) && cJSON_IsString(name) && cJSON_IsNumber(age) && age->valuedouble >= 0 &&
              age->valuedouble <= 120 && age->valuedouble == (int)age->valuedouble;
    cJSON_Delete(j);
    return ok;
}

static void test_outputs(cs_engine *e) {
    static const char *choices[] = {"alpha", "beta", "gamma delta"};
    cs_request q[8];
    for (int i = 0; i < 8; i++) {
        cs_request_default(&q[i]);
        q[i].max_tokens = 64;
        q[i].temperature = 1.0f;
        q[i].seed = (uint64_t)i;
        q[i].has_seed = true;
    }
    for (int i = 0; i < 3; i++) q[i].prompt = "Call me at", q[i].regex = "\\d{3}-\\d{4}";
    q[3].prompt = "Pick one:", q[3].choices = choices, q[3].n_choices = 3, q[3].n = 2;
    q[4].prompt = "A person:", q[4].json_schema = SCHEMA;
    q[5].prompt = "A person:", q[5].json_schema = SCHEMA, q[5].temperature = 0;
    q[6].prompt = "An object:", q[6].json_object = true, q[6].max_tokens = 96;
    q[7].prompt = "A list:", q[7].json_schema = "{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":40}",
    q[7].max_tokens = 6; // cut mid-grammar
    out o[8];
    run(e, q, o, 8);
    for (int i = 0; i < 3; i++)
        TEST_CONDF(o[i].why[0] == CS_FINISH_REASON_STOP && phone(o[i].text[0], o[i].len[0]), "regex: '%.*s' (%d)",
                   (int)o[i].len[0], o[i].text[0], o[i].why[0]);
    for (int k = 0; k < 2; k++) {
        bool in = false;
        for (int c = 0; c < 3; c++) in |= o[3].len[k] == strlen(choices[c]) && !memcmp(o[3].text[k], choices[c], o[3].len[k]);
        TEST_CONDF(in && o[3].why[k] == CS_FINISH_REASON_STOP, "choice %d: '%.*s'", k, (int)o[3].len[k], o[3].text[k]);
    }
    for (int i = 4; i < 6; i++)
        TEST_CONDF(o[i].why[0] != CS_FINISH_REASON_STOP || person(o[i].text[0], o[i].len[0]), "schema: '%.*s'",
                   (int)o[i].len[0], o[i].text[0]);
    TEST_CONDF(o[5].why[0] == CS_FINISH_REASON_STOP, "greedy schema output did not end: '%.*s'", (int)o[5].len[0],
               o[5].text[0]);
    if (o[6].why[0] == CS_FINISH_REASON_STOP) {
        cJSON *j = cJSON_ParseWithLength(o[6].text[0], o[6].len[0]);
        TEST_CONDF(cJSON_IsObject(j), "json_object: '%.*s'", (int)o[6].len[0], o[6].text[0]);
        cJSON_Delete(j);
    }
    TEST_CONDF(o[7].why[0] == CS_FINISH_REASON_LENGTH && o[7].text[0][0] == '[', "cut: reason %d, '%.*s'", o[7].why[0],
               (int)o[7].len[0], o[7].text[0]);
}

static void test_rejects(cs_engine *e) {
    char err[256];
    uint64_t id;
    cs_request q;
    cs_request_default(&q);
    q.prompt = "x";
    const char *bad_schemas[] = {"{\"type\":\"object\",\"patternProperties\":{}}", "{\"type\":", "{\"$ref\":\"#/x\"}"};
    for (int i = 0; i < 3; i++) {
        q.json_schema = bad_schemas[i];
        err[0] = 0;
        TEST_CONDF(cs_engine_submit(e, &q, &id, err, sizeof err) == CS_ENGINE_EINVAL && !strncmp(err, "json_schema:", 12),
                   "schema %d accepted or unnamed: %s", i, err);
    }
    q.json_schema = NULL;
    q.regex = "(?=x)";
    TEST_CONDF(cs_engine_submit(e, &q, &id, err, sizeof err) == CS_ENGINE_EINVAL && !strncmp(err, "regex:", 6), "%s", err);
    q.choices = (const char *const[]){"a"};
    q.n_choices = 1;
    TEST_CONDF(cs_engine_submit(e, &q, &id, err, sizeof err) == CS_ENGINE_EINVAL && strstr(err, "at most one"), "%s", err);
}

// The same greedy constrained requests on an engine without forced-run batching: the same tokens.
static void test_forced_runs(cs_engine *a, cs_engine *b) {
    cs_request q[3];
    for (int i = 0; i < 3; i++) {
        cs_request_default(&q[i]);
        q[i].temperature = 0;
        q[i].max_tokens = 80;
    }
    q[0].prompt = "A person:", q[0].json_schema = SCHEMA;
    q[1].prompt = "Details:", q[1].json_schema = "{\"type\":\"object\",\"properties\":{\"a_rather_long_property_name\":"
                                                  "{\"type\":\"boolean\"},\"another_long_name_here\":{\"enum\":"
                                                  "[\"first option\",\"second option\"]}},\"required\":"
                                                  "[\"a_rather_long_property_name\",\"another_long_name_here\"]}";
    q[2].prompt = "Date:", q[2].regex = "20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]T12:00:00Z";
    out x[3], y[3];
    run(a, q, x, 3);
    run(b, q, y, 3);
    for (int i = 0; i < 3; i++)
        TEST_CONDF(x[i].n_toks[0] == y[i].n_toks[0] && !memcmp(x[i].toks[0], y[i].toks[0], sizeof(int32_t) * (size_t)x[i].n_toks[0]),
                   "request %d: forced runs '%.*s', step by step '%.*s'", i, (int)x[i].len[0], x[i].text[0],
                   (int)y[i].len[0], y[i].text[0]);
}

static void check_idle(cs_engine *e) {
    cs_engine_stats st;
    for (int i = 0; i < 100; i++) {
        cs_engine_stats_get(e, &st);
        if (st.blocks_used == 0 && st.running == 0) break;
        usleep(10000);
    }
    TEST_CONDF(st.blocks_used == 0 && st.running == 0 && st.waiting == 0, "%d blocks used, %d running",
               st.blocks_used, st.running);
}

int main(void) {
    const char *model = test_env("CSERVE_MODEL");
    if (!model || access(model, R_OK) != 0) {
        puts("default model absent: skipped");
        return 77;
    }
    cs_engine *a = start(model, false), *b = start(model, true);
    if (!a || !b) return TEST_REPORT();
    test_rejects(a);
    test_outputs(a);
    test_forced_runs(a, b);
    check_idle(a);
    check_idle(b);
    cs_engine_free(a);
    cs_engine_free(b);
    return TEST_REPORT();
}
