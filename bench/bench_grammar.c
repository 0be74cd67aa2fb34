// Token-mask time with the default model's vocabulary (SmolLM2: 49152 tokens).
//
//     bench_grammar [model]      (default: $CSERVE_MODEL or models/SmolLM2-135M-Instruct.Q4_1.gguf)
//
// Grammars are built by hand for now (a JSON object grammar, a date pattern, a choice); the
// schema and regex compilers will add theirs. For each grammar a sample document is tokenized
// and walked token by token, as generation would take it; every token of the document must be
// allowed by the mask at its position (the benchmark checks its own answers). Printed:
//   - per named state (after '{', inside a string, inside a number): the uncached time (a
//     cache with no room: the full vocabulary walk every call) and the cached time (a hit);
//   - per grammar, over every position of its document: uncached and cached median and p99,
//     and "generation": one cache shared by the whole walk, as a request sees it (misses the
//     first time a state comes up, hits after);
//   - throughput: masks per second, uncached and cached, and vocabulary tokens decided per
//     second uncached.
// Times are wall clock. Uncached calls are timed one by one, hits in batches of HIT_BATCH
// calls in a row (the quantiles are over batch means). A call or batch during which the
// thread was preempted (an involuntary context switch, read with getrusage outside the timed
// region) is timed again, or, in the generation walk where a second call would be a hit, left
// out: on a shared machine a time slice given to another process is not mask time.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "engine/grammar.h"
#include "engine/model_file.h"
#include "engine/token_mask.h"
#include "engine/tokenizer.h"

#define UNCACHED_REPS 5
#define CACHED_REPS 200
#define STATE_REPS 101
#define HIT_BATCH 20
#define MAX_SAMPLES (1 << 20)

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

static long preemptions(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nivcsw;
}

// One mask call, timed; false when the thread was preempted during it.
static bool timed_mask(cs_mask_cache *c, cs_gram_matcher *m, uint32_t *bits, double *us) {
    int32_t single;
    long p0 = preemptions();
    double t0 = now_us();
    cs_token_mask(c, m, bits, &single);
    *us = now_us() - t0;
    return preemptions() == p0;
}

// Times one call, again while preempted (up to 20 tries).
static double time_mask(cs_mask_cache *c, cs_gram_matcher *m, uint32_t *bits) {
    double us;
    for (int i = 0; i < 20 && !timed_mask(c, m, bits, &us); i++) {}
    return us;
}

// Mean time of HIT_BATCH calls in a row (hits: too short to time one by one next to the
// getrusage calls), again while preempted.
static double time_hits(cs_mask_cache *c, cs_gram_matcher *m, uint32_t *bits) {
    double us = 0;
    int32_t single;
    for (int tries = 0; tries < 20; tries++) {
        long p0 = preemptions();
        double t0 = now_us();
        for (int i = 0; i < HIT_BATCH; i++) cs_token_mask(c, m, bits, &single);
        us = (now_us() - t0) / HIT_BATCH;
        if (preemptions() == p0) break;
    }
    return us;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct samples {
    double *v;
    size_t n;
} samples;

static void add(samples *s, double x) {
    if (s->n < MAX_SAMPLES) s->v[s->n++] = x;
}

// Sorts in place; the q-quantile.
static double quantile(samples *s, double q) {
    if (s->n == 0) return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

static double sum(const samples *s) {
    double t = 0;
    for (size_t i = 0; i < s->n; i++) t += s->v[i];
    return t;
}

static void die(const char *what) {
    fprintf(stderr, "bench_grammar: %s\n", what);
    exit(2);
}

// --- grammars ------------------------------------------------------------------------------

static cs_grammar *finish(cs_gram_builder *b, int32_t root) {
    char err[CS_ERR_LEN];
    cs_grammar *g;
    if (cs_gb_finish(b, root, &g, err, sizeof err) != CS_OK) die(err);
    return g;
}

// An optional space, as after ':' and ',' in compact-with-spaces JSON.
static int32_t opt_space(cs_gram_builder *b, int32_t rule, int32_t from) {
    int32_t to = cs_gb_state(b, rule);
    cs_gb_eps(b, from, to);
    cs_gb_bytes(b, from, ' ', ' ', to);
    return to;
}

// '"' (any byte but '"', '\' and controls | '\' ["\\/bfnrt] | '\u' hex{4})* '"'
static int32_t json_string_rule(cs_gram_builder *b) {
    int32_t r = cs_gb_rule(b), in = cs_gb_state(b, r), esc = cs_gb_state(b, r), end = cs_gb_state(b, r);
    cs_gb_bytes(b, cs_gb_start(b, r), '"', '"', in);
    cs_gb_bytes(b, in, 0x20, 0x21, in);
    cs_gb_bytes(b, in, 0x23, 0x5B, in);
    cs_gb_bytes(b, in, 0x5D, 0xFF, in);
    cs_gb_bytes(b, in, '\\', '\\', esc);
    for (const char *p = "\"\\/bfnrt"; *p; p++) cs_gb_bytes(b, esc, (uint8_t)*p, (uint8_t)*p, in);
    int32_t h = cs_gb_state(b, r);
    cs_gb_bytes(b, esc, 'u', 'u', h);
    for (int i = 0; i < 4; i++) {
        int32_t next = i == 3 ? in : cs_gb_state(b, r);
        cs_gb_bytes(b, h, '0', '9', next);
        cs_gb_bytes(b, h, 'a', 'f', next);
        cs_gb_bytes(b, h, 'A', 'F', next);
        h = next;
    }
    cs_gb_bytes(b, in, '"', '"', end);
    cs_gb_accept(b, end);
    return r;
}

// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
static int32_t json_number_rule(cs_gram_builder *b) {
    int32_t r = cs_gb_rule(b), s = cs_gb_start(b, r), sign = cs_gb_state(b, r), in = cs_gb_state(b, r);
    int32_t dot = cs_gb_state(b, r), frac = cs_gb_state(b, r), e = cs_gb_state(b, r);
    int32_t esign = cs_gb_state(b, r), exp = cs_gb_state(b, r), zero = cs_gb_state(b, r);
    cs_gb_eps(b, s, sign);
    cs_gb_bytes(b, s, '-', '-', sign);
    cs_gb_bytes(b, sign, '0', '0', zero);
    cs_gb_bytes(b, sign, '1', '9', in);
    cs_gb_bytes(b, in, '0', '9', in);
    cs_gb_eps(b, zero, in); // "0" continues like an integer part, without more digits
    cs_gb_bytes(b, zero, '.', '.', dot);
    cs_gb_bytes(b, in, '.', '.', dot);
    cs_gb_bytes(b, dot, '0', '9', frac);
    cs_gb_bytes(b, frac, '0', '9', frac);
    cs_gb_bytes(b, in, 'e', 'e', e);
    cs_gb_bytes(b, in, 'E', 'E', e);
    cs_gb_bytes(b, frac, 'e', 'e', e);
    cs_gb_bytes(b, frac, 'E', 'E', e);
    cs_gb_eps(b, e, esign);
    cs_gb_bytes(b, e, '+', '+', esign);
    cs_gb_bytes(b, e, '-', '-', esign);
    cs_gb_bytes(b, esign, '0', '9', exp);
    cs_gb_bytes(b, exp, '0', '9', exp);
    cs_gb_accept(b, in);
    cs_gb_accept(b, frac);
    cs_gb_accept(b, exp);
    return r;
}

// A container: open, then close, or item (',' ' '? item)* close; item = call (rule) or, for
// objects, string ':' ' '? value.
static void container(cs_gram_builder *b, int32_t r, char open, char close, int32_t key_rule, int32_t value_rule) {
    int32_t s1 = cs_gb_state(b, r), item = cs_gb_state(b, r), after = cs_gb_state(b, r), end = cs_gb_state(b, r);
    cs_gb_bytes(b, cs_gb_start(b, r), (uint8_t)open, (uint8_t)open, s1);
    cs_gb_bytes(b, s1, (uint8_t)close, (uint8_t)close, end);
    cs_gb_eps(b, s1, item);
    int32_t v = item;
    if (key_rule >= 0) {
        int32_t k = cs_gb_state(b, r), colon = cs_gb_state(b, r);
        cs_gb_call(b, item, key_rule, k);
        cs_gb_bytes(b, k, ':', ':', colon);
        v = opt_space(b, r, colon);
    }
    cs_gb_call(b, v, value_rule, after);
    int32_t comma = cs_gb_state(b, r);
    cs_gb_bytes(b, after, ',', ',', comma);
    cs_gb_eps(b, opt_space(b, r, comma), item);
    cs_gb_bytes(b, after, (uint8_t)close, (uint8_t)close, end);
    cs_gb_accept(b, end);
}

// A JSON object (any members, values of every type, nesting), compact with an optional space
// after ':' and ','.
static cs_grammar *json_object_grammar(void) {
    cs_gram_builder *b = cs_gb_init();
    if (!b) die("out of memory");
    int32_t str = json_string_rule(b), num = json_number_rule(b);
    int32_t val = cs_gb_rule(b), obj = cs_gb_rule(b), arr = cs_gb_rule(b);
    int32_t vs = cs_gb_start(b, val), vend = cs_gb_state(b, val);
    cs_gb_call(b, vs, str, vend);
    cs_gb_call(b, vs, num, vend);
    cs_gb_call(b, vs, obj, vend);
    cs_gb_call(b, vs, arr, vend);
    cs_gb_eps(b, cs_gb_literal(b, vs, "true", 4), vend);
    cs_gb_eps(b, cs_gb_literal(b, vs, "false", 5), vend);
    cs_gb_eps(b, cs_gb_literal(b, vs, "null", 4), vend);
    cs_gb_accept(b, vend);
    container(b, obj, '{', '}', str, val);
    container(b, arr, '[', ']', -1, val);
    return finish(b, obj);
}

// [0-9]{4}-[0-9]{2}-[0-9]{2}, as a regex compiles to.
static cs_grammar *date_grammar(void) {
    cs_gram_builder *b = cs_gb_init();
    if (!b) die("out of memory");
    int32_t r = cs_gb_rule(b), s = cs_gb_start(b, r);
    const char *shape = "dddd-dd-dd";
    for (const char *p = shape; *p; p++) {
        int32_t next = cs_gb_state(b, r);
        if (*p == 'd') cs_gb_bytes(b, s, '0', '9', next);
        else cs_gb_bytes(b, s, (uint8_t)*p, (uint8_t)*p, next);
        s = next;
    }
    cs_gb_accept(b, s);
    return finish(b, r);
}

static cs_grammar *choice_grammar(void) {
    static const char *choices[] = {"red", "green", "blue", "yellow", "dark green", "light blue"};
    cs_gram_builder *b = cs_gb_init();
    if (!b) die("out of memory");
    int32_t r = cs_gb_rule(b), end = cs_gb_state(b, r);
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++)
        cs_gb_eps(b, cs_gb_literal(b, cs_gb_start(b, r), choices[i], strlen(choices[i])), end);
    cs_gb_accept(b, end);
    return finish(b, r);
}

// --- measuring -----------------------------------------------------------------------------

typedef struct bench {
    const cs_tokenizer *tok;
    const cs_vocab_index *v;
    uint32_t *bits, *want;
    size_t words;
    samples unc, hit;
} bench;

// Times masks of m's current state: reps uncached (a cache with no room) and cached_reps hits,
// and checks that both give the same mask.
static void time_state(bench *B, const cs_grammar *g, cs_gram_matcher *m, int reps, int cached_reps) {
    cs_mask_cache *none = cs_mask_cache_init(g, B->v, 0), *c = cs_mask_cache_init(g, B->v, 64 << 20);
    if (!none || !c) die("out of memory");
    for (int i = 0; i < reps; i++) add(&B->unc, time_mask(none, m, B->bits));
    memcpy(B->want, B->bits, B->words * sizeof *B->bits);
    time_mask(c, m, B->bits); // the miss that fills the cache
    for (int i = 0; i < cached_reps; i += HIT_BATCH) add(&B->hit, time_hits(c, m, B->bits));
    if (memcmp(B->want, B->bits, B->words * sizeof *B->bits)) die("a cached mask differs from the computed one");
    cs_mask_cache_free(none);
    cs_mask_cache_free(c);
}

static void reset_samples(bench *B) { B->unc.n = B->hit.n = 0; }

static void named_state(bench *B, const cs_grammar *g, const char *name, const char *prefix) {
    cs_gram_matcher *m = cs_gm_init(g);
    if (!m || !cs_gm_advance_bytes(m, (const uint8_t *)prefix, strlen(prefix))) die("bad prefix");
    reset_samples(B);
    time_state(B, g, m, STATE_REPS, 10000);
    int32_t single;
    cs_mask_cache *c = cs_mask_cache_init(g, B->v, 0);
    int n = cs_token_mask(c, m, B->bits, &single);
    cs_mask_cache_free(c);
    double um = quantile(&B->unc, 0.5), up = quantile(&B->unc, 0.99);
    double hm = quantile(&B->hit, 0.5), hp = quantile(&B->hit, 0.99);
    printf("| %-22s | %-18s | %6d | %9.1f | %9.1f | %7.2f | %7.2f |\n", name, prefix, n, um, up, hm, hp);
    cs_gm_free(m);
}

// Walks doc token by token; at each position checks the next token is allowed, times the
// state, and times one shared cache as generation would use it. Returns the positions.
static int walk_document(bench *B, const cs_grammar *g, const char *doc, samples *gen, int *gen_hits,
                         int *dropped) {
    int32_t ids[1024];
    int n = cs_tokenizer_encode(B->tok, doc, strlen(doc), 0, ids, 1024);
    if (n < 0 || n > 1024) die("document does not tokenize");
    cs_gram_matcher *m = cs_gm_init(g);
    cs_mask_cache *shared = cs_mask_cache_init(g, B->v, 64 << 20);
    if (!m || !shared) die("out of memory");
    char tb[256];
    *dropped = 0;
    for (int i = 0; i <= n; i++) {
        double us;
        if (timed_mask(shared, m, B->bits, &us)) add(gen, us);
        else ++*dropped;
        time_state(B, g, m, UNCACHED_REPS, CACHED_REPS);
        bool end_ok = cs_gm_can_end(m);
        if (i == n) {
            if (!end_ok) die("document is not complete in its grammar");
            break;
        }
        size_t len = cs_tokenizer_token_bytes(B->tok, ids[i], tb, sizeof tb);
        if (!(B->bits[ids[i] >> 5] >> (ids[i] & 31) & 1)) {
            fprintf(stderr, "token %d ('%.*s') at position %d is not in the mask\n", ids[i], (int)len, tb, i);
            exit(1);
        }
        if (!cs_gm_advance_bytes(m, (const uint8_t *)tb, len)) die("mask allowed a token the matcher refuses");
        cs_gm_commit(m);
    }
    cs_mask_stats s;
    cs_mask_cache_stats(shared, &s);
    *gen_hits = (int)s.hits;
    cs_mask_cache_free(shared);
    cs_gm_free(m);
    return n + 1;
}

static void document_row(bench *B, const char *name, const cs_grammar *g, const char *doc, samples *gen) {
    reset_samples(B);
    gen->n = 0;
    int hits, dropped, pos = walk_document(B, g, doc, gen, &hits, &dropped);
    double um = quantile(&B->unc, 0.5), up = quantile(&B->unc, 0.99);
    double hm = quantile(&B->hit, 0.5), hp = quantile(&B->hit, 0.99);
    double gm = quantile(gen, 0.5), gp = quantile(gen, 0.99);
    printf("| %-12s | %4d | %9.1f | %9.1f | %7.2f | %7.2f | %8.2f | %8.1f | %4.0f%% |%s\n", name, pos, um, up, hm,
           hp, gm, gp, 100.0 * hits / pos, dropped ? " (preempted calls left out)" : "");
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : getenv("CSERVE_MODEL");
    if (!path || !*path) path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    cs_model_file *mf;
    char err[CS_ERR_LEN];
    if (cs_model_file_open(path, &mf, err, sizeof err) != CS_OK) die(err);
    bench B = {.tok = mf->tok};
    double t0 = now_us();
    cs_vocab_index *v = cs_vocab_index_init(mf->tok);
    if (!v) die("out of memory");
    double t_index = now_us() - t0;
    B.v = v;
    int32_t n_vocab = cs_vocab_index_size(v);
    B.words = ((size_t)n_vocab + 31) / 32;
    B.bits = aligned_alloc(64, (B.words * 4 + 63) / 64 * 64); // as the engine's should be
    B.want = malloc(B.words * 4);
    B.unc.v = malloc(MAX_SAMPLES * sizeof(double));
    B.hit.v = malloc(MAX_SAMPLES * sizeof(double));
    samples gen = {malloc(MAX_SAMPLES * sizeof(double)), 0};
    if (!B.bits || !B.want || !B.unc.v || !B.hit.v || !gen.v) die("out of memory");
    printf("model %s: %d tokens; vocabulary index built in %.1f ms\n\n", path, n_vocab, t_index / 1e3);

    cs_grammar *json = json_object_grammar(), *date = date_grammar(), *choice = choice_grammar();
    printf("Named states (JSON object grammar), microseconds per mask: uncached = full vocabulary walk,\n"
           "cached = a hit. %d uncached calls and 10000 hits (in batches of %d) each.\n\n", STATE_REPS, HIT_BATCH);
    printf("| state                  | prefix             | tokens | unc. med. | unc. p99 | hit med | hit p99 |\n");
    printf("|---|---|---|---|---|---|---|\n");
    named_state(&B, json, "start", "");
    named_state(&B, json, "after '{'", "{");
    named_state(&B, json, "inside a string", "{\"name\": \"Al");
    named_state(&B, json, "inside a number", "{\"age\": 4");
    named_state(&B, json, "after a value", "{\"age\": 42");
    named_state(&B, json, "nested, in a string", "{\"a\": [{\"b\": [\"x");
    named_state(&B, date, "date, after '2024-'", "2024-");
    named_state(&B, choice, "choice, after 'gr'", "gr");

    static const char *doc_json =
        "{\"name\": \"Alice Smith\", \"age\": 42, \"email\": \"alice@example.com\", \"scores\": [98.5, 87, "
        "-3.25e2], \"address\": {\"city\": \"Paris\", \"zip\": \"75001\", \"street\": \"12 rue de la Paix\"}, "
        "\"active\": true, \"tags\": [\"admin\", \"editor\"], \"spouse\": null, \"bio\": \"Writes \\\"short\\\" "
        "stories and long emails.\"}";
    printf("\nEvery position of a sample document, microseconds per mask. generation = one cache for the\n"
           "whole walk (what a request sees: a miss the first time a state comes up); hit%% = its hit rate.\n\n");
    printf("| grammar      | pos. | unc. med. | unc. p99 | hit med | hit p99 | gen. med | gen. p99 | hit%% |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    document_row(&B, "json object", json, doc_json, &gen);
    double unc_total = sum(&B.unc), hit_total = sum(&B.hit);
    size_t unc_n = B.unc.n, hit_n = B.hit.n;
    document_row(&B, "date", date, "2024-03-15", &gen);
    document_row(&B, "choice", choice, "dark green", &gen);

    printf("\nThroughput (json object document): uncached %.0f masks/s = %.1f M vocabulary tokens/s; "
           "cached %.0f masks/s\n", unc_n / unc_total * 1e6, unc_n * (double)n_vocab / unc_total,
           hit_n / hit_total * 1e6);
    cs_grammar_free(json);
    cs_grammar_free(date);
    cs_grammar_free(choice);
    free(B.bits);
    free(B.want);
    free(B.unc.v);
    free(B.hit.v);
    free(gen.v);
    cs_vocab_index_free(v);
    cs_model_file_free(mf);
    return 0;
}
