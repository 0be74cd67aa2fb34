// JSON schema compiler: every tests/schemas/*.json file ({"schema", "valid", "invalid"}) is
// compiled, each valid document (printed compact by cJSON, which keeps key order) must be
// accepted byte by byte and be able to end there, and each invalid one must be refused (a
// byte refused, or no end). Then errors (unsupported keywords, bad $ref, wrong keyword
// types, limits), json_object and choices. Prints the compile time median and p99.
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/json_schema.h"
#include "test_util.h"

#define SCHEMA_DIR "tests/schemas"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0, *len = (size_t)n;
    return buf;
}

// 1: accepted and can end; 0: refused (the byte offset of the refusal in *at, or len when it
// cannot end).
static int accepts(const cs_grammar *g, const char *text, size_t *at) {
    cs_gram_matcher *m = cs_gm_init(g);
    if (!m) return -1;
    size_t len = strlen(text), i = 0;
    for (; i < len; i++) {
        if (!cs_gm_advance(m, (uint8_t)text[i])) break;
        if ((i & 63) == 63) cs_gm_commit(m); // as generation does: memory stays bounded
    }
    int ok = i == len && cs_gm_can_end(m);
    *at = i;
    cs_gm_free(m);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Checks one corpus file; returns its compile time (ms), or -1.
static double check_file(const char *name, int *n_valid, int *n_invalid) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", SCHEMA_DIR, name);
    size_t len;
    char *text = read_file(path, &len);
    TEST_CONDF(text != NULL, "%s: cannot read", path);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    TEST_CONDF(doc != NULL, "%s: not JSON", path);
    if (!doc) return -1;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
    const cJSON *valid = cJSON_GetObjectItemCaseSensitive(doc, "valid");
    const cJSON *invalid = cJSON_GetObjectItemCaseSensitive(doc, "invalid");
    TEST_CONDF(schema && cJSON_GetArraySize(valid) >= 2 && cJSON_GetArraySize(invalid) >= 2,
               "%s: needs schema and at least 2 valid and 2 invalid documents", name);
    char *stext = cJSON_PrintUnformatted(schema);
    char err[CS_ERR_LEN] = "";
    cs_grammar *g = NULL;
    double t0 = now_ms();
    cs_status st = cs_json_schema_compile(stext, strlen(stext), &g, err, sizeof err);
    double ms = now_ms() - t0;
    TEST_CONDF(st == CS_OK, "%s: compile failed: %s", name, err);
    for (const cJSON *v = valid ? valid->child : NULL; v && g; v = v->next, (*n_valid)++) {
        char *d = cJSON_PrintUnformatted(v);
        size_t at;
        TEST_CONDF(accepts(g, d, &at) == 1, "%s: valid %s refused at byte %zu", name, d, at);
        cJSON_free(d);
    }
    for (const cJSON *v = invalid ? invalid->child : NULL; v && g; v = v->next, (*n_invalid)++) {
        char *d = cJSON_PrintUnformatted(v);
        size_t at;
        TEST_CONDF(accepts(g, d, &at) == 0, "%s: invalid %s accepted", name, d);
        cJSON_free(d);
    }
    cs_grammar_free(g);
    cJSON_free(stext);
    cJSON_Delete(doc);
    return st == CS_OK ? ms : -1;
}

static void test_corpus(void) {
    DIR *dir = opendir(SCHEMA_DIR);
    TEST_CONDF(dir != NULL, "cannot open %s (run from the source tree)", SCHEMA_DIR);
    if (!dir) return;
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json")) continue;
        if (n == cap) names = realloc(names, sizeof *names * (size_t)(cap = cap ? 2 * cap : 256));
        names[n++] = strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    TEST_CONDF(n >= 110, "only %d schemas in %s", n, SCHEMA_DIR);
    double *ms = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int k = 0, n_valid = 0, n_invalid = 0;
    for (int i = 0; i < n; i++) {
        double t = check_file(names[i], &n_valid, &n_invalid);
        if (t >= 0) ms[k++] = t;
        free(names[i]);
    }
    free(names);
    qsort(ms, (size_t)k, sizeof *ms, cmp_dbl);
    if (k > 0)
        printf("corpus: %d schemas, %d valid and %d invalid documents; compile ms median %.3f p99 %.3f max %.3f\n", k,
               n_valid, n_invalid, ms[k / 2], ms[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1], ms[k - 1]);
    free(ms);
}

// --- errors -------------------------------------------------------------------------------

static void expect_error(const char *schema, size_t len, const char *needle) {
    cs_grammar *g = NULL;
    char err[CS_ERR_LEN] = "";
    cs_status st = cs_json_schema_compile(schema, len, &g, err, sizeof err);
    TEST_CONDF(st != CS_OK && g == NULL, "%.80s: compiled, expected an error with \"%s\"", schema, needle);
    TEST_CONDF(strstr(err, needle) != NULL, "%.80s: error \"%s\" lacks \"%s\"", schema, err, needle);
    TEST_CONDF(!strchr(err, '\n'), "error has a newline: %s", err);
    cs_grammar_free(g);
}
#define EXPECT_ERROR(s, needle) expect_error(s, strlen(s), needle)

static void test_errors_keywords(void) {
    EXPECT_ERROR("{\"type\":\"object\",\"patternProperties\":{\"a\":{}}}", "patternProperties");
    EXPECT_ERROR("{\"type\":\"number\",\"multipleOf\":2}", "multipleOf");
    EXPECT_ERROR("{\"not\":{\"type\":\"string\"}}", "\"not\"");
    EXPECT_ERROR("{\"if\":{},\"then\":{}}", "\"if\"");
    EXPECT_ERROR("{\"type\":\"array\",\"uniqueItems\":true}", "uniqueItems");
    EXPECT_ERROR("{\"properties\":{\"a\":{\"type\":\"object\",\"minProperties\":1}}}", "minProperties");
    EXPECT_ERROR("{\"properties\":{\"a\":{\"type\":\"object\",\"minProperties\":1}}}", "#/properties/a");
    EXPECT_ERROR("{\"type\":\"string\",\"format\":\"hostname\"}", "hostname");
    EXPECT_ERROR("{\"type\":\"string\",\"pattern\":\"(ab\"}", "pattern");
    EXPECT_ERROR("{\"anyOf\":[{\"type\":\"null\"}],\"properties\":{}}", "properties");
    EXPECT_ERROR("{\"allOf\":[{\"type\":\"object\"},{\"type\":\"string\",\"minLength\":2}]}", "allOf");
    EXPECT_ERROR("{\"enum\":[1,2],\"minimum\":1}", "minimum");
    EXPECT_ERROR("{\"properties\":{\"a\":{\"$id\":\"x\",\"type\":\"string\"}}}", "$id");
    EXPECT_ERROR("{\"$ref\":\"#/$defs/a\",\"type\":\"string\",\"$defs\":{\"a\":{}}}", "beside");
}

static void test_errors_types(void) {
    EXPECT_ERROR("{\"type\":5}", "\"type\" must be");
    EXPECT_ERROR("{\"type\":\"strin\"}", "unknown type strin");
    EXPECT_ERROR("{\"type\":[]}", "\"type\" must be");
    EXPECT_ERROR("{\"properties\":[]}", "\"properties\" must be an object of schemas");
    EXPECT_ERROR("{\"properties\":{\"a\":3}}", "\"properties\" must be");
    EXPECT_ERROR("{\"required\":\"a\"}", "\"required\" must be an array of strings");
    EXPECT_ERROR("{\"minLength\":-1}", "\"minLength\" must be a non-negative integer");
    EXPECT_ERROR("{\"maxItems\":1.5}", "\"maxItems\" must be a non-negative integer");
    EXPECT_ERROR("{\"enum\":[]}", "\"enum\" must be a non-empty array");
    EXPECT_ERROR("{\"pattern\":5}", "\"pattern\" must be a string");
    EXPECT_ERROR("{\"anyOf\":[]}", "\"anyOf\" must be a non-empty array");
    EXPECT_ERROR("{\"items\":[{}]}", "\"items\" must be a schema");
    EXPECT_ERROR("{\"minimum\":\"3\"}", "\"minimum\" must be a number");
    EXPECT_ERROR("{\"exclusiveMinimum\":true}", "\"exclusiveMinimum\" must be a number");
    EXPECT_ERROR("{\"additionalProperties\":1}", "\"additionalProperties\" must be a schema");
    EXPECT_ERROR("5", "must be an object or a boolean");
    EXPECT_ERROR("{\"type\":\"string\",\"type\":\"integer\"}", "duplicate keyword");
    EXPECT_ERROR("{\"properties\":{\"a\":{},\"a\":{}}}", "duplicate name");
    EXPECT_ERROR("{\"type\":", "not valid JSON");
    EXPECT_ERROR("{} x", "trailing");
    EXPECT_ERROR("{\"enum\":[\"a\\u0000b\"]}", "\\u0000");
    EXPECT_ERROR("{\"enum\":[\"\xff\"]}", "UTF-8");
    expect_error("{\"pattern\":\"a\0b\"}", 14, "UTF-8 JSON text");
    EXPECT_ERROR("{\"enum\":[12345678901234567890]}", "2^53");
}

static void test_errors_refs(void) {
    EXPECT_ERROR("{\"$ref\":\"#/$defs/missing\"}", "does not resolve");
    EXPECT_ERROR("{\"$ref\":\"other.json#/a\"}", "only local references");
    EXPECT_ERROR("{\"$ref\":\"#node\"}", "anchors");
    EXPECT_ERROR("{\"$ref\":\"#/$defs/a~2\",\"$defs\":{}}", "malformed");
    EXPECT_ERROR("{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}}}",
                 "cycle");
    EXPECT_ERROR("{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}", "left recursion");
    EXPECT_ERROR("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/required/0\"}},\"required\":[\"a\"]}",
                 "not a schema");
    EXPECT_ERROR("{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required property \"b\"");
    EXPECT_ERROR("{\"$defs\":{\"bad\":{\"type\":\"object\",\"minProperties\":1}},"
                 "\"properties\":{\"x\":{\"$ref\":\"#/$defs/bad\"}}}",
                 "(at #/$defs/bad)");
    EXPECT_ERROR("{\"properties\":{\"a\\nb\":{\"not\":{}}}}", "(at #/properties/a?b)");
    EXPECT_ERROR("false", "matches no document");
    EXPECT_ERROR("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "matches no document");
    EXPECT_ERROR("{\"type\":\"integer\",\"minimum\":1e300}", "1e40");
}

// A schema text built by printf-style pieces repeated n times.
static char *repeat(const char *head, const char *piece, const char *sep, int n, const char *tail) {
    size_t cap = strlen(head) + strlen(tail) + (size_t)n * (strlen(piece) + strlen(sep) + 16) + 1;
    char *s = malloc(cap), *p = s;
    p += sprintf(p, "%s", head);
    for (int i = 0; i < n; i++) {
        p += sprintf(p, piece, i);
        if (i + 1 < n) p += sprintf(p, "%s", sep);
    }
    sprintf(p, "%s", tail);
    return s;
}

static void test_errors_limits(void) {
    char *s = repeat("", "{\"type\":\"array\",\"items\":", "", 70, "{}");
    size_t n = strlen(s);
    s = realloc(s, n + 71);
    memset(s + n, '}', 70);
    s[n + 70] = 0;
    EXPECT_ERROR(s, "nesting");
    free(s);
    s = repeat("{\"enum\":[", "%d", ",", 70000, "]}");
    EXPECT_ERROR(s, "enum of 70000 values");
    free(s);
    s = repeat("{\"type\":\"object\",\"properties\":{", "\"p%d\":{}", ",", 5000, "}}");
    EXPECT_ERROR(s, "more than 4096 properties");
    free(s);
    // many distinct long strings: past the grammar's state budget before the text limit
    s = repeat("{\"enum\":[", "\"%07d-abcdefghijklmnopqrstu\"", ",", 30000, "]}");
    EXPECT_ERROR(s, "grammar over");
    free(s);
    EXPECT_ERROR("{\"type\":\"array\",\"maxItems\":20000}", "maxItems 20000 is past the limit");
    EXPECT_ERROR("{\"type\":\"string\",\"maxLength\":20000}", "maxLength 20000 is past the limit");
    EXPECT_ERROR("{\"type\":\"string\",\"pattern\":\"^[a-z]{1,1000}[0-9]{1,1000}$\",\"maxLength\":5000}",
                 "too complex");
    char *big = malloc(CS_JSON_SCHEMA_MAX_BYTES + 2);
    memset(big, ' ', CS_JSON_SCHEMA_MAX_BYTES + 1);
    big[0] = '{', big[CS_JSON_SCHEMA_MAX_BYTES] = '}', big[CS_JSON_SCHEMA_MAX_BYTES + 1] = 0;
    expect_error(big, CS_JSON_SCHEMA_MAX_BYTES + 1, "bytes");
    free(big);
}

// --- behaviour beyond the corpus ------------------------------------------------------------

static cs_grammar *compile_ok(const char *schema) {
    cs_grammar *g = NULL;
    char err[CS_ERR_LEN] = "";
    cs_status st = cs_json_schema_compile(schema, strlen(schema), &g, err, sizeof err);
    TEST_CONDF(st == CS_OK, "%.80s: %s", schema, err);
    return g;
}

static void expect_docs(const cs_grammar *g, const char *const *yes, const char *const *no) {
    size_t at;
    for (; yes && *yes; yes++) TEST_CONDF(accepts(g, *yes, &at) == 1, "refused %s at %zu", *yes, at);
    for (; no && *no; no++) TEST_CONDF(accepts(g, *no, &at) == 0, "accepted %s", *no);
}

// 300 optional properties sharing a long prefix: the key trie keeps one alternative alive,
// where a naive union would need one per property (past the matcher's cap of 256).
static void test_many_optional_properties(void) {
    char *s = repeat("{\"type\":\"object\",\"properties\":{", "\"field_number_%03d\":{\"type\":\"integer\"}", ",", 300,
                     "}}");
    cs_grammar *g = compile_ok(s);
    free(s);
    if (!g) return;
    const char *yes[] = {"{}", "{\"field_number_299\":1}", "{\"field_number_000\":1,\"field_number_150\":2}", NULL};
    const char *no[] = {"{\"field_number_150\":1,\"field_number_100\":2}", "{\"field_number_300\":1}",
                        "{\"field_number_001\":1,\"field_number_001\":1}", NULL};
    expect_docs(g, yes, no);
    cs_grammar_free(g);
}

static void test_json_object_and_choices(void) {
    cs_grammar *g = NULL;
    char err[CS_ERR_LEN];
    TEST_COND(cs_json_object_grammar(&g, err, sizeof err) == CS_OK);
    const char *yes[] = {"{}", "{\"a\":[1,{\"b\":null}],\"\\u00e9\":\"x\\n\"}", "{\"k\":-0.5e+3}", NULL};
    const char *no[] = {"[1]", "\"x\"", "{\"a\" :1}", "{\"a\":01}", "{\"a\":\"\\ud800\"}", NULL};
    expect_docs(g, yes, no);
    cs_grammar_free(g);
    const char *ch[] = {"yes", "no", "maybe", "", "n\xc3\xa9"};
    const size_t lens[] = {3, 2, 5, 0, 3};
    TEST_COND(cs_choice_grammar(ch, lens, 5, &g, err, sizeof err) == CS_OK);
    const char *cyes[] = {"yes", "no", "maybe", "", "n\xc3\xa9", NULL};
    const char *cno[] = {"ye", "yess", "\"yes\"", "nx", NULL};
    expect_docs(g, cyes, cno);
    cs_grammar_free(g);
    TEST_COND(cs_choice_grammar(ch, lens, 0, &g, err, sizeof err) == CS_ERR_INVALID && g == NULL);
}

// Integer ranges against plain comparison: every integer near the bounds and digit-length
// changes, for ranges that are negative, cross zero, or span several lengths.
static void test_integer_ranges(void) {
    static const long long R[][2] = {{0, 0},       {-5, 5},     {7, 1234},       {-1234, -7}, {10, 19},  {99, 101},
                                     {-100, 100},  {0, 9},      {1, 1000000},    {-999, 0},   {55, 55},  {-1, 1},
                                     {100, 999},   {123, 4567}, {-4567, -123},   {9, 10},     {-10, -9}, {1000, 1000}};
    for (size_t k = 0; k < sizeof R / sizeof *R; k++) {
        char schema[128];
        snprintf(schema, sizeof schema, "{\"type\":\"integer\",\"minimum\":%lld,\"maximum\":%lld}", R[k][0], R[k][1]);
        cs_grammar *g = compile_ok(schema);
        if (!g) continue;
        long long probes[] = {R[k][0], R[k][1], 0,     1,     -1,    9,       10,     99,     100,
                              999,     1000,    1234,  1235,  -1234, -1235,   1000000, 1000001};
        for (long long base = -1300; base <= 1300; base++) { // dense near zero
            char doc[32];
            snprintf(doc, sizeof doc, "%lld", base);
            size_t at;
            bool in = base >= R[k][0] && base <= R[k][1];
            TEST_CONDF(accepts(g, doc, &at) == in, "%s: %s", schema, doc);
        }
        for (size_t p = 0; p < sizeof probes / sizeof *probes; p++)
            for (long long d = -2; d <= 2; d++) {
                char doc[32];
                long long v = probes[p] + d;
                snprintf(doc, sizeof doc, "%lld", v);
                size_t at;
                TEST_CONDF(accepts(g, doc, &at) == (v >= R[k][0] && v <= R[k][1]), "%s: %s", schema, doc);
            }
        const char *never[] = {"01", "-0.5", "1e2", "+1", "--1", "", NULL};
        for (const char **d = never; *d; d++) {
            size_t at;
            TEST_CONDF(accepts(g, *d, &at) == 0, "%s: %s accepted", schema, *d);
        }
        cs_grammar_free(g);
    }
}

// Decimal bounds: exact comparison of the digits, no exponent when bounded.
static void test_number_ranges(void) {
    struct {
        const char *schema, *yes[12], *no[12];
    } T[] = {
        {"{\"type\":\"number\",\"minimum\":0.5,\"maximum\":2.25}",
         {"0.5", "0.50", "0.5000001", "1", "1.0", "2", "2.25", "2.250", "2.2499", "0.75", NULL},
         {"0.4999", "0.49", "0", "2.2501", "2.26", "3", "-1", "5e-1", "0.", ".5", NULL}},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":1}",
         {"0.5", "0.0001", "0.99999", "0.1", NULL},
         {"0", "0.0", "0.000", "1", "1.0", "-0.5", "1.5", "-0", NULL}},
        {"{\"type\":\"number\",\"minimum\":-10.75,\"maximum\":-2}",
         {"-10.75", "-10.7", "-10", "-2", "-2.0", "-5.125", "-3", NULL},
         {"-10.76", "-11", "-1.99", "0", "2", "-1", NULL}},
        {"{\"type\":\"number\",\"minimum\":-1,\"maximum\":1}",
         {"-1", "-0.5", "0", "-0", "0.25", "1", "1.000", "-1.0", NULL},
         {"-1.01", "1.01", "2", "-2", "1e0", NULL}},
        {"{\"type\":\"number\",\"minimum\":100}",
         {"100", "100.0", "100.5", "101", "99999999999999999999999999.5", NULL},
         {"99.999", "99", "0", "-100", "1e3", NULL}},
    };
    for (size_t k = 0; k < sizeof T / sizeof *T; k++) {
        cs_grammar *g = compile_ok(T[k].schema);
        if (!g) continue;
        expect_docs(g, T[k].yes, T[k].no);
        cs_grammar_free(g);
    }
}

// Formats refuse what is not one (the corpus only holds type errors for them: formats are
// annotations to a default 2020-12 validator).
static void test_formats(void) {
    struct {
        const char *format, *yes[8], *no[10];
    } T[] = {
        {"date", {"\"2024-02-29\"", "\"2000-02-29\"", "\"1900-02-28\"", "\"0001-01-01\"", "\"2023-04-30\"", NULL},
         {"\"2023-02-29\"", "\"1900-02-29\"", "\"2023-04-31\"", "\"0000-01-01\"", "\"2023-13-01\"", "\"2023-1-01\"",
          "\"2023-01-01T\"", NULL}},
        {"time", {"\"00:00:00Z\"", "\"23:59:59.999+14:00\"", "\"12:00:00-01:30\"", NULL},
         {"\"24:00:00Z\"", "\"12:60:00Z\"", "\"12:00:00\"", "\"12:00Z\"", "\"12:00:00+2:00\"", NULL}},
        {"date-time", {"\"2024-01-15T10:30:00Z\"", "\"2024-02-29T00:00:00.5+01:00\"", NULL},
         {"\"2024-01-15 10:30:00Z\"", "\"2023-02-29T00:00:00Z\"", "\"2024-01-15T10:30:00\"", NULL}},
        {"uuid", {"\"123e4567-e89b-12d3-a456-426614174000\"", "\"ABCDEF01-2345-6789-ABCD-EF0123456789\"", NULL},
         {"\"123e4567e89b12d3a456426614174000\"", "\"123e4567-e89b-12d3-a456-42661417400\"",
          "\"g23e4567-e89b-12d3-a456-426614174000\"", NULL}},
        {"email", {"\"a@b.co\"", "\"first.last+x@sub.example.org\"", NULL},
         {"\"a@b\"", "\"@b.co\"", "\"a b@c.de\"", "\"a@b..co\"", "\"a@-b.co\"", NULL}},
        {"ipv4", {"\"0.0.0.0\"", "\"255.255.255.255\"", "\"192.168.1.10\"", NULL},
         {"\"256.0.0.1\"", "\"01.2.3.4\"", "\"1.2.3\"", "\"1.2.3.4.5\"", NULL}},
    };
    for (size_t k = 0; k < sizeof T / sizeof *T; k++) {
        char schema[96];
        snprintf(schema, sizeof schema, "{\"type\":\"string\",\"format\":\"%s\"}", T[k].format);
        cs_grammar *g = compile_ok(schema);
        if (g) expect_docs(g, T[k].yes, T[k].no);
        cs_grammar_free(g);
    }
}

// Generation restrictions the subset documents: pattern strings and additional keys hold no
// escapes; an additional key never repeats a listed name; keys come in schema order.
static void test_restrictions(void) {
    cs_grammar *g = compile_ok("{\"type\":\"string\",\"pattern\":\"^.*$\",\"maxLength\":4}");
    const char *yes1[] = {"\"\"", "\"ab c\"", "\"\xc3\xa9t\xc3\xa9!\"", NULL};
    const char *no1[] = {"\"a\\\"b\"", "\"a\\nb\"", "\"abcde\"", "\"\\u0041\"", NULL};
    if (g) expect_docs(g, yes1, no1);
    cs_grammar_free(g);
    g = compile_ok("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},"
                   "\"additionalProperties\":{\"type\":\"string\"}}");
    const char *yes2[] = {"{\"a\":1,\"b\":2,\"c\":\"x\"}", "{\"ab\":\"x\"}", "{\"\":\"x\"}",
                          "{\"\xc3\xa9\":\"x\"}", NULL};
    const char *no2[] = {"{\"a\":\"x\"}", "{\"b\":1,\"a\":2}", "{\"c\":\"x\",\"a\":1}", "{\"a\":1,\"a\":2}",
                         "{\"c\\n\":\"x\"}", "{\"a\":1,\"b\":\"x\"}", NULL};
    if (g) expect_docs(g, yes2, no2);
    cs_grammar_free(g);
}

// A pattern with a long maxLength: the length product is built over arrays, not per byte.
static void test_long_pattern_lengths(void) {
    cs_grammar *g = compile_ok("{\"type\":\"string\",\"pattern\":\"^[a-z\\u00e9]+$\",\"minLength\":4000,"
                               "\"maxLength\":5000}");
    if (!g) return;
    char *doc = malloc(2 * 5002 + 3);
    for (int n = 3998; n <= 5002; n += n == 4001 ? 998 : 1) { // 3998..4001 and 4999..5002 characters
        size_t k = 0;
        doc[k++] = '"';
        for (int i = 0; i < n; i++) {
            if (i % 3 == 0) doc[k++] = (char)0xc3, doc[k++] = (char)0xa9; // one character, two bytes
            else doc[k++] = 'a';
        }
        doc[k++] = '"', doc[k] = 0;
        size_t at;
        TEST_CONDF(accepts(g, doc, &at) == (n >= 4000 && n <= 5000), "%d characters", n);
    }
    free(doc);
    cs_grammar_free(g);
}

// --- random walks: no dead ends, and every finished document is JSON ----------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

// One walk of at most max bytes; returns the document when it ended, else NULL. A state that
// can neither end nor continue is a dead end: a failure.
static char *random_walk(const cs_grammar *g, size_t max, const char *name) {
    static const char PREFER[] = "\"}]";
    cs_gram_matcher *m = cs_gm_init(g);
    char *out = malloc(max + 1);
    size_t n = 0;
    bool ended = false;
    while (n < max) {
        bool can_end = cs_gm_can_end(m), can_go = cs_gm_can_continue(m);
        TEST_CONDF(can_end || can_go, "%s: dead end after %.*s", name, (int)n, out);
        if (!can_go || (can_end && rnd() % 4 == 0)) {
            ended = can_end;
            break;
        }
        int b = -1;
        if (rnd() % 2) // lean towards closing, so that walks finish
            for (const char *p = PREFER; *p && b < 0; p++)
                if (cs_gm_advance(m, (uint8_t)*p)) b = (uint8_t)*p;
        for (int tries = 0; tries < 64 && b < 0; tries++) {
            int cand = rnd() % 8 ? 0x20 + (int)(rnd() % 95) : (int)(rnd() % 256);
            if (cs_gm_advance(m, (uint8_t)cand)) b = cand;
        }
        for (int cand = 0; cand < 256 && b < 0; cand++)
            if (cs_gm_advance(m, (uint8_t)cand)) b = cand;
        TEST_CONDF(b >= 0, "%s: can_continue but no byte is accepted", name);
        if (b < 0) break;
        out[n++] = (char)b;
        cs_gm_commit(m);
    }
    cs_gm_free(m);
    out[n] = 0;
    if (!ended) {
        free(out);
        return NULL;
    }
    return out;
}

// For every corpus schema: walks; each finished one must parse as JSON. With CS_JS_SAMPLES
// set, the documents are written there ("file<TAB>document" lines) for an outside validator
// (e.g. Python's jsonschema); CS_JS_WALKS and CS_JS_SEED change the walks per schema and seed.
static void test_random_walks(void) {
    DIR *dir = opendir(SCHEMA_DIR);
    if (!dir) return;
    const char *dump = getenv("CS_JS_SAMPLES"), *nw = getenv("CS_JS_WALKS"), *seed = getenv("CS_JS_SEED");
    FILE *out = dump ? fopen(dump, "w") : NULL;
    int walks = 0, finished = 0, per_schema = nw ? atoi(nw) : 8;
    if (seed) rng_state = strtoull(seed, NULL, 10) * 2 + 1;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SCHEMA_DIR, e->d_name);
        size_t len;
        char *text = read_file(path, &len);
        cJSON *doc = text ? cJSON_Parse(text) : NULL;
        free(text);
        char *stext = doc ? cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, "schema")) : NULL;
        cs_grammar *g = NULL;
        char err[CS_ERR_LEN];
        if (stext && cs_json_schema_compile(stext, strlen(stext), &g, err, sizeof err) == CS_OK) {
            for (int w = 0; w < per_schema; w++, walks++) {
                char *d = random_walk(g, 600, e->d_name);
                if (!d) continue;
                finished++;
                cJSON *parsed = cJSON_Parse(d);
                TEST_CONDF(parsed != NULL, "%s: generated non-JSON %s", e->d_name, d);
                cJSON_Delete(parsed);
                if (out) fprintf(out, "%s\t%s\n", e->d_name, d);
                free(d);
            }
        }
        cs_grammar_free(g);
        cJSON_free(stext);
        cJSON_Delete(doc);
    }
    closedir(dir);
    if (out) fclose(out);
    printf("random walks: %d, %d finished documents\n", walks, finished);
    TEST_COND(finished > walks / 3);
}

int main(void) {
    test_corpus();
    test_errors_keywords();
    test_errors_types();
    test_errors_refs();
    test_errors_limits();
    test_many_optional_properties();
    test_json_object_and_choices();
    test_integer_ranges();
    test_number_ranges();
    test_formats();
    test_restrictions();
    test_long_pattern_lengths();
    test_random_walks();
    return TEST_REPORT();
}
