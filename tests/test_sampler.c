// Sampler tests: greedy, every filter's allowed set over many draws (the allowed set computed
// independently here, by sorting), the empirical distribution, seeds, penalties, logprobs,
// masking, parameter validation, and a timing print for a 49152-token vocabulary.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/sampler.h"
#include "tests/test_util.h"

// ---------------------------------------------------------------------------------------------
// Test-side helpers (independent of the sampler's own code)

static uint64_t test_rng = 0x1234567887654321ull;

static uint64_t rnd_u64(void) { // xorshift64*
    test_rng ^= test_rng >> 12;
    test_rng ^= test_rng << 25;
    test_rng ^= test_rng >> 27;
    return test_rng * 0x2545f4914f6cdd1dull;
}
static double rnd_unit(void) { return (double)(rnd_u64() >> 11) * 0x1.0p-53; }
static double rnd_normal(void) {
    double u = rnd_unit(), v = rnd_unit();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}
// Normal logits with scale `spread`; some values repeated so ties occur.
static void rnd_logits(float *x, int n, double spread) {
    for (int i = 0; i < n; i++) x[i] = (float)(rnd_normal() * spread);
    for (int i = 0; i < n / 10; i++) x[rnd_u64() % n] = x[rnd_u64() % n];
}

static cs_sampler *make(float temperature, int top_k, float top_p, float min_p, uint64_t seed,
                        int vocab) {
    cs_sampling_params p;
    cs_sampling_params_default(&p);
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    p.has_seed = true;
    return cs_sampler_init(&p, vocab);
}

// Ids ordered best first: larger logit, then lower id (the sampler's documented tie rule).
static const float *sort_key;
static int cmp_best_first(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] > sort_key[j] ? -1 : 1;
    return i - j;
}
static void order_best_first(const float *logits, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    sort_key = logits;
    qsort(order, (size_t)n, sizeof *order, cmp_best_first);
}

static int ref_argmax(const float *x, int n) {
    int b = -1;
    for (int i = 0; i < n; i++)
        if (x[i] > -INFINITY && (b < 0 || x[i] > x[b])) b = i;
    return b;
}

// Draws `draws` tokens from the same logits (a fresh copy each time: logits are overwritten)
// and counts them per id.
static void draw_many(cs_sampler *s, const float *logits, int n, int draws, int *counts) {
    float *tmp = malloc(sizeof(float) * (size_t)n);
    memset(counts, 0, sizeof(int) * (size_t)n);
    for (int d = 0; d < draws; d++) {
        memcpy(tmp, logits, sizeof(float) * (size_t)n);
        int id = cs_sampler_sample(s, tmp, NULL);
        if (id >= 0 && id < n) counts[id]++;
        else counts[0] += 1000000; // impossible id: make every check on counts fail loudly
    }
    free(tmp);
}

// The allowed set of min-p -> top-k -> top-p, computed from a full sort in double.
// allowed[i]: may be drawn (with slack `eps` at the top-p and min-p boundaries, so float
// rounding inside the sampler cannot make the test flaky); required[i]: kept even with the
// slack taken the other way and likely enough (renormalised p > 2e-3) that 20000 draws must
// show it (miss chance < e^-40).
static void ref_allowed(const float *logits, int n, double t, int top_k, double top_p,
                        double min_p, bool *allowed, bool *required) {
    const double eps = 1e-5;
    int *order = malloc(sizeof(int) * (size_t)n);
    double *p = malloc(sizeof(double) * (size_t)n);
    order_best_first(logits, n, order);
    const double m = logits[order[0]];
    for (int i = 0; i < n; i++) p[i] = exp((logits[i] - m) / t);
    // min-p: p relative to the max, which is 1 here.
    int n_keep = 0, n_sure = 0;
    for (int r = 0; r < n; r++) {
        double q = p[order[r]];
        if (q >= min_p * (1 - eps)) n_keep = r + 1;
        if (q >= min_p * (1 + eps)) n_sure = r + 1;
    }
    if (top_k > 0 && top_k < n_keep) n_keep = top_k;
    if (top_k > 0 && top_k < n_sure) n_sure = top_k;
    // top-p over the distribution renormalised after min-p and top-k: keep rank r while the
    // mass of better ranks is < top_p. Different n_keep/n_sure give different denominators,
    // so compute each side with its own.
    int lim_keep = n_keep, lim_sure = n_sure;
    if (top_p < 1.0) {
        double zk = 0, zs = 0;
        for (int r = 0; r < n_keep; r++) zk += p[order[r]];
        for (int r = 0; r < n_sure; r++) zs += p[order[r]];
        double before = 0;
        lim_keep = 0;
        for (int r = 0; r < n_keep && before / zk < top_p + eps; r++) before += p[order[r]], lim_keep++;
        before = 0;
        lim_sure = 0;
        for (int r = 0; r < n_sure && before / zs < top_p - eps; r++) before += p[order[r]], lim_sure++;
    }
    double z = 0;
    for (int r = 0; r < lim_sure; r++) z += p[order[r]];
    for (int i = 0; i < n; i++) allowed[i] = required[i] = false;
    for (int r = 0; r < lim_keep; r++) allowed[order[r]] = true;
    for (int r = 0; r < lim_sure; r++) required[order[r]] = p[order[r]] / z > 2e-3;
    free(order);
    free(p);
}

// Draws 20000 times and checks every draw is allowed and every required token shows up.
static void check_filter(const char *what, const float *logits, int n, float t, int top_k,
                         float top_p, float min_p, uint64_t seed) {
    enum { DRAWS = 20000 };
    cs_sampler *s = make(t, top_k, top_p, min_p, seed, n);
    int *counts = malloc(sizeof(int) * (size_t)n);
    bool *allowed = malloc((size_t)n), *required = malloc((size_t)n);
    draw_many(s, logits, n, DRAWS, counts);
    ref_allowed(logits, n, t, top_k, top_p, min_p, allowed, required);
    int outside = 0, missing = 0, n_allowed = 0;
    for (int i = 0; i < n; i++) {
        if (counts[i] && !allowed[i]) outside++;
        if (required[i] && !counts[i]) missing++;
        n_allowed += allowed[i];
    }
    TEST_CONDF(outside == 0, "%s: %d tokens drawn outside the allowed set (T=%g k=%d p=%g "
               "min_p=%g)", what, outside, t, top_k, top_p, min_p);
    TEST_CONDF(missing == 0, "%s: %d likely tokens never drawn", what, missing);
    TEST_CONDF(n_allowed > 0, "%s: empty allowed set", what);
    free(counts);
    free(allowed);
    free(required);
    cs_sampler_free(s);
}

// ---------------------------------------------------------------------------------------------
// Tests

static void test_greedy_argmax(void) {
    cs_sampler *s = make(0.0f, 0, 1.0f, 0.0f, 1, 6);
    float a[6] = {1, 3, -2, 3, 2.5f, 3};
    TEST_COND(cs_sampler_sample(s, a, NULL) == 1); // ties: lowest id
    float b[6] = {-5, -4, -4.5f, -9, -4, -7};
    TEST_COND(cs_sampler_sample(s, b, NULL) == 1);
    float c[6] = {NAN, -INFINITY, -1e30f, NAN, -INFINITY, -1e31f};
    TEST_COND(cs_sampler_sample(s, c, NULL) == 2); // NaN and -inf never win
    cs_sampler_free(s);
}

static void test_temperature_zero_is_greedy(void) {
    enum { V = 1000 };
    float x[V], y[V];
    int bad = 0;
    // Filters set too: greedy ignores them. 1e-6 is below the greedy threshold as well.
    const float temps[2] = {0.0f, 1e-6f};
    for (int ti = 0; ti < 2; ti++) {
        cs_sampler *s = make(temps[ti], 3, 0.3f, 0.5f, 99, V);
        for (int it = 0; it < 300; it++) {
            rnd_logits(x, V, it % 2 ? 0.01 : 5.0);
            memcpy(y, x, sizeof x);
            if (cs_sampler_sample(s, y, NULL) != ref_argmax(x, V)) bad++;
        }
        cs_sampler_free(s);
    }
    TEST_CONDF(bad == 0, "%d of 600 greedy samples were not the argmax", bad);
}

static void test_top_k(void) {
    enum { V = 64 };
    float x[V];
    rnd_logits(x, V, 1.0); // flat-ish: many tokens compete
    check_filter("top_k=5", x, V, 1.0f, 5, 1.0f, 0.0f, 11);
    check_filter("top_k=1", x, V, 1.0f, 1, 1.0f, 0.0f, 12);
    check_filter("top_k=63", x, V, 1.0f, 63, 1.0f, 0.0f, 13);
    check_filter("top_k=V+5", x, V, 1.0f, V + 5, 1.0f, 0.0f, 14);
    // Ties at the k-th place: ids 3, 7, 9 share the best logit, k = 2 keeps ids 3 and 7.
    float t[V];
    for (int i = 0; i < V; i++) t[i] = -1.0f;
    t[3] = t[7] = t[9] = 2.0f;
    check_filter("top_k tie", t, V, 1.0f, 2, 1.0f, 0.0f, 15);
    // Sorted and reverse-sorted logits (the pivot rule's worst case if chosen badly).
    for (int i = 0; i < V; i++) t[i] = (float)i * 0.1f;
    check_filter("top_k ascending", t, V, 1.0f, 10, 1.0f, 0.0f, 16);
    for (int i = 0; i < V; i++) t[i] = (float)-i * 0.1f;
    check_filter("top_k descending", t, V, 1.0f, 10, 1.0f, 0.0f, 17);
}

static void test_top_p(void) {
    enum { V = 64 };
    float x[V];
    rnd_logits(x, V, 1.5);
    const float ps[5] = {0.05f, 0.3f, 0.5f, 0.9f, 0.99f};
    for (int i = 0; i < 5; i++) check_filter("top_p", x, V, 1.0f, 0, ps[i], 0.0f, 20 + i);
    check_filter("top_p T=0.5", x, V, 0.5f, 0, 0.8f, 0.0f, 30);
    check_filter("top_p T=3", x, V, 3.0f, 0, 0.8f, 0.0f, 31);
    // A hand-made boundary: probabilities 1/2, 1/4, 1/8, 1/8 (ids 2 and 3 tie). p = 0.74
    // keeps {0, 1}; p = 0.76 needs one more, and the tie goes to the lower id, 2.
    float h[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
    int counts[4];
    cs_sampler *s = make(1.0f, 0, 0.74f, 0.0f, 33, 4);
    draw_many(s, h, 4, 20000, counts);
    TEST_CONDF(counts[0] > 0 && counts[1] > 0 && counts[2] == 0 && counts[3] == 0,
               "p=0.74: counts %d %d %d %d", counts[0], counts[1], counts[2], counts[3]);
    cs_sampler_free(s);
    s = make(1.0f, 0, 0.76f, 0.0f, 34, 4);
    draw_many(s, h, 4, 20000, counts);
    TEST_CONDF(counts[0] > 0 && counts[1] > 0 && counts[2] > 0 && counts[3] == 0,
               "p=0.76: counts %d %d %d %d", counts[0], counts[1], counts[2], counts[3]);
    cs_sampler_free(s);
}

static void test_min_p(void) {
    enum { V = 64 };
    float x[V];
    rnd_logits(x, V, 1.5);
    const float mps[4] = {0.01f, 0.1f, 0.5f, 1.0f};
    for (int i = 0; i < 4; i++) check_filter("min_p", x, V, 1.0f, 0, 1.0f, mps[i], 40 + i);
    check_filter("min_p T=2", x, V, 2.0f, 0, 1.0f, 0.2f, 45);
}

// Vocabularies big enough for the other code paths: top-k above the heap limit (1024) goes
// through quickselect, and top-p over >= 512 candidates through the mass buckets.
static void test_large_paths(void) {
    enum { V = 4000 };
    float *x = malloc(sizeof(float) * V);
    rnd_logits(x, V, 1.0);
    check_filter("quickselect top_k=2000", x, V, 1.0f, 2000, 1.0f, 0.0f, 90);
    check_filter("quickselect top_k=1025 + top_p", x, V, 1.0f, 1025, 0.5f, 0.0f, 91);
    check_filter("bucket top_p=0.3", x, V, 1.0f, 0, 0.3f, 0.0f, 92);
    check_filter("bucket top_p=0.9 T=0.3", x, V, 0.3f, 0, 0.9f, 0.0f, 93);
    check_filter("heap top_k=1000 + top_p", x, V, 1.0f, 1000, 0.7f, 0.0f, 94);
    // Many ties (8 distinct values) so whole buckets, and the cut inside one, are equal logits.
    for (int i = 0; i < V; i++) x[i] = (float)(i % 8) * 0.05f;
    check_filter("bucket ties top_p=0.5", x, V, 1.0f, 0, 0.5f, 0.0f, 95);
    // Wide logits: most mass in a few tokens, the rest in the catch-all last bucket.
    rnd_logits(x, V, 20.0);
    check_filter("bucket wide top_p=0.999", x, V, 1.0f, 0, 0.999f, 0.0f, 96);
    free(x);
}

static void test_combined_filters(void) {
    enum { V = 200 };
    float x[V];
    for (int it = 0; it < 6; it++) {
        rnd_logits(x, V, 1.0 + it);
        check_filter("k+p", x, V, 0.9f, 40, 0.8f, 0.0f, 50 + it);
        check_filter("k+p+min_p", x, V, 1.2f, 30, 0.9f, 0.05f, 60 + it);
        check_filter("p+min_p", x, V, 1.0f, 0, 0.7f, 0.1f, 70 + it);
    }
}

// Empirical frequencies against the renormalised distribution: 200000 draws, each frequency
// within 5 standard deviations (sqrt(q(1-q)/N)) of its probability. The seed is fixed, so
// this either always passes or always fails; a correct sampler fails a 5-sigma bound with
// probability ~6e-7 per token for a random seed.
static void test_distribution(void) {
    enum { V = 6, N = 200000 };
    const float x[V] = {1.0f, 2.0f, 0.5f, 1.5f, -1.0f, 2.0f};
    const float t = 0.8f;
    cs_sampler *s = make(t, 4, 1.0f, 0.0f, 7, V); // top-4 keeps ids 1, 5, 3, 0
    int counts[V];
    draw_many(s, x, V, N, counts);
    double q[V] = {0}, z = 0;
    const int kept[4] = {1, 5, 3, 0};
    for (int i = 0; i < 4; i++) z += q[kept[i]] = exp((x[kept[i]] - 2.0) / t);
    double worst = 0, chi2 = 0;
    for (int i = 0; i < V; i++) {
        q[i] /= z;
        double f = (double)counts[i] / N, sd = sqrt(q[i] * (1 - q[i]) / N);
        if (q[i] == 0) {
            TEST_CONDF(counts[i] == 0, "id %d drawn %d times outside top-k", i, counts[i]);
            continue;
        }
        worst = fmax(worst, fabs(f - q[i]) / sd);
        chi2 += (counts[i] - N * q[i]) * (counts[i] - N * q[i]) / (N * q[i]);
    }
    TEST_CONDF(worst < 5.0, "frequency off by %.2f standard deviations", worst);
    // 3 degrees of freedom: P(chi2 > 25) ~ 1.6e-5.
    TEST_CONDF(chi2 < 25.0, "chi-square %.2f with 3 degrees of freedom", chi2);
    printf("distribution: max deviation %.2f sd, chi2 %.2f (df 3)\n", worst, chi2);
    cs_sampler_free(s);
}

// No filter at all: the draw walks groups of 8 weights, then the tokens of one group. 29
// tokens (three full groups and a partial one), one -inf and one NaN that are never drawn,
// 200000 draws: every frequency within 5 standard deviations, chi-square under 70 (26
// degrees of freedom: P ~ 1e-5).
static void test_distribution_plain(void) {
    enum { V = 29, N = 200000 };
    float x[V];
    for (int i = 0; i < V; i++) x[i] = (float)((i * 7) % 11) * 0.3f - 1.0f;
    x[4] = -INFINITY;
    x[17] = NAN;
    const float t = 0.9f;
    cs_sampler *s = make(t, 0, 1.0f, 0.0f, 11, V);
    int counts[V];
    draw_many(s, x, V, N, counts);
    float m = -INFINITY;
    for (int i = 0; i < V; i++) m = x[i] > m ? x[i] : m;
    double q[V], z = 0, worst = 0, chi2 = 0;
    for (int i = 0; i < V; i++) z += q[i] = x[i] > -INFINITY ? exp((x[i] - m) / t) : 0.0; // NaN > -inf is false
    for (int i = 0; i < V; i++) {
        q[i] /= z;
        if (q[i] == 0) {
            TEST_CONDF(counts[i] == 0, "id %d (logit %g) drawn %d times", i, (double)x[i], counts[i]);
            continue;
        }
        double f = (double)counts[i] / N, sd = sqrt(q[i] * (1 - q[i]) / N);
        worst = fmax(worst, fabs(f - q[i]) / sd);
        chi2 += (counts[i] - N * q[i]) * (counts[i] - N * q[i]) / (N * q[i]);
    }
    TEST_CONDF(worst < 5.0 && chi2 < 70.0, "no filters: frequency off by %.2f sd, chi-square %.1f (df 26)", worst,
               chi2);
    printf("distribution, no filters: max deviation %.2f sd, chi2 %.2f (df 26)\n", worst, chi2);
    cs_sampler_free(s);
}

// The reference RNG, written from the published xoshiro256** / splitmix64 descriptions, to
// pin the sampler's stream: with equal logits and no filters the draw is id = floor(u * V).
static uint64_t ref_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t ref_xoshiro(uint64_t s[4]) {
    uint64_t r = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = ref_rotl(s[3], 45);
    return r;
}

static void test_seeds(void) {
    enum { V = 100, STEPS = 500 };
    float x[V], a[V], b[V], c[V];
    cs_sampler *s1 = make(1.0f, 50, 0.95f, 0.0f, 1234, V);
    cs_sampler *s2 = make(1.0f, 50, 0.95f, 0.0f, 1234, V);
    cs_sampler *s3 = make(1.0f, 50, 0.95f, 0.0f, 1235, V);
    int differ_same = 0, differ_other = 0;
    for (int i = 0; i < STEPS; i++) {
        rnd_logits(x, V, 0.5);
        memcpy(a, x, sizeof x), memcpy(b, x, sizeof x), memcpy(c, x, sizeof x);
        int ia = cs_sampler_sample(s1, a, NULL), ib = cs_sampler_sample(s2, b, NULL);
        int ic = cs_sampler_sample(s3, c, NULL);
        differ_same += ia != ib;
        differ_other += ia != ic;
        cs_sampler_accept(s1, ia), cs_sampler_accept(s2, ib), cs_sampler_accept(s3, ic);
    }
    TEST_CONDF(differ_same == 0, "same seed: %d of %d ids differ", differ_same, STEPS);
    TEST_CONDF(differ_other > STEPS / 2, "different seeds: only %d of %d ids differ",
               differ_other, STEPS);
    cs_sampler_free(s1), cs_sampler_free(s2), cs_sampler_free(s3);

    // The stream is exactly xoshiro256** seeded by splitmix64, one 53-bit draw per sample:
    // the same ids on every machine.
    uint64_t seed = 42, st[4];
    for (int i = 0; i < 4; i++) st[i] = ref_splitmix(&seed);
    cs_sampler *s = make(1.0f, 0, 1.0f, 0.0f, 42, 1000);
    float *u = malloc(sizeof(float) * 1000);
    int mismatch = 0;
    for (int i = 0; i < 200; i++) {
        for (int j = 0; j < 1000; j++) u[j] = 0.25f;
        int want = (int)((double)(ref_xoshiro(st) >> 11) * 0x1.0p-53 * 1000.0);
        mismatch += cs_sampler_sample(s, u, NULL) != want;
    }
    TEST_CONDF(mismatch == 0, "%d of 200 draws differ from reference xoshiro256**", mismatch);
    cs_sampler_free(s);

    // Unseeded samplers get different streams.
    cs_sampling_params p;
    cs_sampling_params_default(&p);
    cs_sampler *n1 = cs_sampler_init(&p, 1000), *n2 = cs_sampler_init(&p, 1000);
    int same = 0;
    for (int i = 0; i < 20; i++) {
        for (int j = 0; j < 1000; j++) u[j] = 0.0f;
        int i1 = cs_sampler_sample(n1, u, NULL);
        for (int j = 0; j < 1000; j++) u[j] = 0.0f;
        same += i1 == cs_sampler_sample(n2, u, NULL);
    }
    TEST_CONDF(same < 20, "two unseeded samplers drew the same 20 ids");
    cs_sampler_free(n1), cs_sampler_free(n2);
    free(u);
}

static void test_penalties(void) {
    cs_sampling_params p;
    cs_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = 1.5f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    cs_sampler *s = cs_sampler_init(&p, 8);
    const int32_t prompt[3] = {1, 2, 6};
    cs_sampler_add_prompt(s, prompt, 3);
    cs_sampler_accept(s, 2);
    cs_sampler_accept(s, 3);
    cs_sampler_accept(s, 3);
    cs_sampler_accept(s, 7);
    cs_sampler_accept(s, -1); // nothing sampled: ignored
    float x[8] = {1.0f, 2.0f, -1.0f, 3.0f, -2.0f, 0.5f, 0.0f, -INFINITY};
    cs_sampler_sample(s, x, NULL);
    // id 0: untouched; 1: prompt, positive -> /1.5; 2: prompt + 1 generated, negative ->
    // *1.5 - 0.25 - 0.5; 3: generated twice, positive -> /1.5 - 0.5 - 0.5; 4, 5: untouched;
    // 6: prompt, zero stays zero; 7: -inf stays -inf.
    const float want[8] = {1.0f, 2.0f / 1.5f, -2.25f, 1.0f, -2.0f, 0.5f, 0.0f, -INFINITY};
    for (int i = 0; i < 8; i++)
        TEST_CONDF(x[i] == want[i] || fabsf(x[i] - want[i]) < 1e-6f, "id %d: %.9g, want %.9g", i,
                   x[i], want[i]);
    cs_sampler_free(s);

    // Penalties change the greedy pick; a negative presence penalty favours repeats.
    cs_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = 1.2f;
    s = cs_sampler_init(&p, 2);
    cs_sampler_add_prompt(s, (const int32_t[]){0}, 1);
    float y[2] = {5.0f, 4.9f};
    TEST_COND(cs_sampler_sample(s, y, NULL) == 1); // 5 / 1.2 < 4.9
    cs_sampler_free(s);
    p.repetition_penalty = 1.0f;
    p.presence_penalty = -2.0f;
    s = cs_sampler_init(&p, 2);
    cs_sampler_accept(s, 1);
    float z[2] = {5.0f, 4.0f};
    TEST_COND(cs_sampler_sample(s, z, NULL) == 1 && z[1] == 6.0f);
    cs_sampler_free(s);
}

static void test_logprobs(void) {
    enum { V = 1000 };
    float x[V], y[V];
    cs_sampling_params p;
    cs_sampling_params_default(&p);
    p.n_logprobs = 20;
    p.repetition_penalty = 1.3f; // logprobs must come from the logits before penalties
    p.frequency_penalty = 0.7f;
    p.seed = 5, p.has_seed = true;
    cs_sampler *s = cs_sampler_init(&p, V);
    int order[V];
    for (int it = 0; it < 20; it++) {
        rnd_logits(x, V, 2.0);
        for (int i = 0; i < 30; i++) x[i] = 4.0f; // a block of equal top logits: tie order
        memcpy(y, x, sizeof x);
        cs_sample_result r;
        int id = cs_sampler_sample(s, y, &r);
        double m = x[ref_argmax(x, V)], sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)x[i] - m);
        const double lse = m + log(sum);
        TEST_COND(r.id == id && id >= 0);
        TEST_CONDF(fabs(r.logprob - (x[id] - lse)) < 1e-5, "chosen logprob %g, want %g",
                   r.logprob, x[id] - lse);
        order_best_first(x, V, order);
        TEST_COND(r.n_top == 20);
        int bad = 0;
        for (int j = 0; j < r.n_top; j++) {
            bad += r.top[j].id != order[j];
            bad += fabs(r.top[j].logprob - (x[order[j]] - lse)) > 1e-5;
            if (j) bad += r.top[j].logprob > r.top[j - 1].logprob;
        }
        TEST_CONDF(bad == 0, "iteration %d: %d top-logprob mismatches", it, bad);
        cs_sampler_accept(s, id);
    }
    cs_sampler_free(s);

    // Fewer finite logits than requested; greedy; n_logprobs = 0.
    cs_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.n_logprobs = 20;
    s = cs_sampler_init(&p, 5);
    float w[5] = {-INFINITY, 0.0f, -INFINITY, logf(3.0f), NAN};
    cs_sample_result r;
    TEST_COND(cs_sampler_sample(s, w, &r) == 3);
    TEST_COND(r.n_top == 2 && r.top[0].id == 3 && r.top[1].id == 1);
    TEST_COND(fabsf(r.logprob - logf(0.75f)) < 1e-6f && fabsf(r.top[1].logprob - logf(0.25f)) < 1e-6f);
    cs_sampler_free(s);
    p.n_logprobs = 0;
    s = cs_sampler_init(&p, 5);
    float w2[5] = {0, 1, 2, 3, 4};
    TEST_COND(cs_sampler_sample(s, w2, &r) == 4 && r.n_top == 0);
    cs_sampler_free(s);
}

static void test_masking(void) {
    enum { V = 100 };
    float x[V], m[V];
    rnd_logits(x, V, 1.0);
    // Mask every even id (constrained decoding), plus NaN at id 1.
    for (int i = 0; i < V; i++) m[i] = i % 2 ? x[i] : -INFINITY;
    m[1] = NAN;
    const float temps[2] = {1.0f, 0.0f};
    for (int ti = 0; ti < 2; ti++) {
        cs_sampler *s = make(temps[ti], 0, 1.0f, 0.0f, 80, V);
        int counts[V];
        draw_many(s, m, V, 5000, counts);
        int masked = 0;
        for (int i = 0; i < V; i += 2) masked += counts[i];
        TEST_CONDF(masked == 0 && counts[1] == 0, "T=%g: %d masked draws", temps[ti], masked);
        cs_sampler_free(s);
    }
    // Everything masked: -1 from both paths, with an empty result.
    for (int ti = 0; ti < 2; ti++) {
        cs_sampling_params p;
        cs_sampling_params_default(&p);
        p.temperature = temps[ti];
        p.n_logprobs = 5;
        p.top_k = 3;
        p.repetition_penalty = 1.1f;
        cs_sampler *s = cs_sampler_init(&p, V);
        cs_sampler_add_prompt(s, (const int32_t[]){4, 5}, 2);
        for (int i = 0; i < V; i++) m[i] = i == 7 ? NAN : -INFINITY;
        cs_sample_result r;
        TEST_COND(cs_sampler_sample(s, m, &r) == -1);
        TEST_COND(r.id == -1 && r.n_top == 0 && r.logprob == -INFINITY);
        TEST_COND(cs_sampler_sample(s, m, NULL) == -1);
        cs_sampler_free(s);
    }
}

static void test_validation(void) {
    cs_sampling_params p;
    char err[256];
    cs_sampling_params_default(&p);
    TEST_COND(cs_sampling_params_validate(&p, err, sizeof err) == CS_OK);
    p.top_k = -7; // any value: <= 0 is off
    TEST_COND(cs_sampling_params_validate(&p, err, sizeof err) == CS_OK);
#define BAD(field, value, name)                                                                \
    do {                                                                                       \
        cs_sampling_params_default(&p);                                                        \
        p.field = value;                                                                       \
        err[0] = 0;                                                                            \
        cs_status st = cs_sampling_params_validate(&p, err, sizeof err);                       \
        TEST_CONDF(st == CS_ERR_INVALID && strstr(err, name), #field "=" #value ": '%s'", err); \
    } while (0)
    BAD(temperature, -0.1f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(temperature, INFINITY, "temperature");
    BAD(top_p, 0.0f, "top_p");
    BAD(top_p, 1.01f, "top_p");
    BAD(top_p, NAN, "top_p");
    BAD(min_p, -0.01f, "min_p");
    BAD(min_p, 1.5f, "min_p");
    BAD(repetition_penalty, 0.0f, "repetition_penalty");
    BAD(repetition_penalty, -1.0f, "repetition_penalty");
    BAD(repetition_penalty, INFINITY, "repetition_penalty");
    BAD(presence_penalty, 2.5f, "presence_penalty");
    BAD(presence_penalty, -2.01f, "presence_penalty");
    BAD(frequency_penalty, -3.0f, "frequency_penalty");
    BAD(frequency_penalty, NAN, "frequency_penalty");
    BAD(n_logprobs, 21, "n_logprobs");
    BAD(n_logprobs, -1, "n_logprobs");
#undef BAD
    // Edges that are allowed.
    cs_sampling_params_default(&p);
    p.temperature = 0.0f, p.top_p = 1.0f, p.min_p = 1.0f, p.presence_penalty = -2.0f;
    p.frequency_penalty = 2.0f, p.n_logprobs = 20, p.repetition_penalty = 0.01f;
    TEST_COND(cs_sampling_params_validate(&p, err, sizeof err) == CS_OK);
    TEST_COND(cs_sampling_params_validate(&p, NULL, 0) == CS_OK);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// A 49152-token vocabulary (SmolLM2): results stay in the allowed set, and the cost per
// sample is printed (not asserted: machines differ).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define LARGE_VOCAB_REPS 200 // the sanitizers' pass looks for memory errors, not speed
#else
#define LARGE_VOCAB_REPS 1000
#endif

static void test_large_vocab(void) {
    enum { V = 49152, REPS = LARGE_VOCAB_REPS };
    float *x = malloc(sizeof(float) * V), *y = malloc(sizeof(float) * V);
    bool *allowed = malloc(V), *required = malloc(V);
    rnd_logits(x, V, 3.0);
    struct {
        const char *name;
        float t;
        int k;
        float p, min_p;
        int n_logprobs;
        float rep;
    } cfg[] = {
        {"greedy", 0.0f, 0, 1.0f, 0.0f, 0, 1.0f},
        {"T=1 no filters", 1.0f, 0, 1.0f, 0.0f, 0, 1.0f},
        {"T=0.8 top_k=50 top_p=0.95", 0.8f, 50, 0.95f, 0.0f, 0, 1.0f},
        {"T=1 top_p=0.9", 1.0f, 0, 0.9f, 0.0f, 0, 1.0f},
        {"T=0.7 min_p=0.05", 0.7f, 0, 1.0f, 0.05f, 0, 1.0f},
        {"T=1 top_p=0.9 +rep 1.1 +5 logprobs", 1.0f, 0, 0.9f, 0.0f, 5, 1.1f},
    };
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        cs_sampling_params p;
        cs_sampling_params_default(&p);
        p.temperature = cfg[c].t, p.top_k = cfg[c].k, p.top_p = cfg[c].p;
        p.min_p = cfg[c].min_p, p.n_logprobs = cfg[c].n_logprobs;
        p.repetition_penalty = cfg[c].rep, p.seed = 3, p.has_seed = true;
        cs_sampler *s = cs_sampler_init(&p, V);
        TEST_COND(s != NULL);
        if (cfg[c].rep != 1.0f) // a 500-token history
            for (int i = 0; i < 500; i++) cs_sampler_accept(s, (int32_t)(rnd_u64() % V));
        if (cfg[c].t > 0 && cfg[c].rep == 1.0f)
            ref_allowed(x, V, cfg[c].t, cfg[c].k, cfg[c].p, cfg[c].min_p, allowed, required);
        int outside = 0;
        double spent = 0;
        cs_sample_result r;
        for (int i = 0; i < REPS; i++) {
            memcpy(y, x, sizeof(float) * V);
            double t0 = now_us();
            int id = cs_sampler_sample(s, y, cfg[c].n_logprobs ? &r : NULL);
            spent += now_us() - t0;
            if (cfg[c].t == 0) outside += id != ref_argmax(x, V);
            else if (cfg[c].rep == 1.0f) outside += !(id >= 0 && allowed[id]);
            else outside += id < 0;
        }
        TEST_CONDF(outside == 0, "%s: %d bad draws", cfg[c].name, outside);
        printf("V=%d %-36s %8.1f us/sample\n", V, cfg[c].name, spent / REPS);
        cs_sampler_free(s);
    }
    free(x), free(y), free(allowed), free(required);
}

int main(void) {
    test_greedy_argmax();
    test_temperature_zero_is_greedy();
    test_top_k();
    test_top_p();
    test_min_p();
    test_combined_filters();
    test_large_paths();
    test_distribution();
    test_distribution_plain();
    test_seeds();
    test_penalties();
    test_logprobs();
    test_masking();
    test_validation();
    test_large_vocab();
    return TEST_REPORT();
}
