// Token sampler: see sampler.h for the order of operations and the contracts.
#include "sampler.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/assert.h"
#include "../kernels/kernels.h"

// A token still in the running: its penalised logit (the selection key), its unnormalised
// probability exp((logit - max) / T), and its id (the tie-breaker).
typedef struct cs_cand {
    float logit;
    float p;
    int32_t id;
} cs_cand;

// Top-p over many candidates first sums probability mass into buckets of 1/32 nat of scaled
// logit below the max (the last bucket takes everything from 32 nats down), which locates the
// cut to one bucket; only that bucket then needs an exact selection.
#define CS_TOPP_BUCKETS 1024
#define CS_TOPP_PER_NAT 32.0f
#define CS_TOPP_MIN_N 512 // below this many candidates, select directly
// Top-k up to this k keeps a k-entry heap while scanning the logits, so only the survivors
// ever need an exp; larger k selects among all candidates instead.
#define CS_HEAP_MAX_K 1024

struct cs_sampler_scratch {
    int32_t vocab;
    cs_cand *cand;      // (vocab) the candidates of one sample
    float *raw;         // (vocab) logits before penalties, kept for logprobs
    float *prob;        // (vocab) exp((logit - max) / T) of every logit
    uint16_t *bucket;   // (vocab) each logit's top-p bucket
    double *group;      // (vocab / 8 + 1) sums of 8 weights (cs_draw_all)
    double bucket_mass[CS_TOPP_BUCKETS];     // top-p over many candidates
    double bucket_part[4][CS_TOPP_BUCKETS];  // its partial sums (cs_collect_top_p)
};

struct cs_sampler {
    cs_sampling_params p;
    int32_t vocab;
    bool penalties_on; // any penalty that changes logits
    uint64_t rng[4];   // xoshiro256** state
    // the history, allocated only when a penalty is on
    int32_t n_seen;
    int32_t *seen;      // (vocab) distinct ids of the prompt and output, first-seen order
    int32_t *gen_count; // (vocab) times each id was generated
    uint8_t *in_prompt; // (vocab) 1 when the id occurs in the prompt
    cs_sampler_scratch *x; // the working arrays: its own (own_x) or borrowed
    bool own_x;
};

// ---------------------------------------------------------------------------------------------
// Parameters

void cs_sampling_params_default(cs_sampling_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
}

bool cs_sampling_params_penalties(const cs_sampling_params *p) {
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

cs_status cs_sampling_params_validate(const cs_sampling_params *p, char *err, size_t errlen) {
    // Written as !(in range) so that NaN fails every check.
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return cs_errf(err, errlen, CS_ERR_INVALID,
                       "temperature must be a finite number >= 0, got %g", p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return cs_errf(err, errlen, CS_ERR_INVALID, "top_p must be in (0, 1], got %g", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return cs_errf(err, errlen, CS_ERR_INVALID, "min_p must be in [0, 1], got %g", p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return cs_errf(err, errlen, CS_ERR_INVALID,
                       "repetition_penalty must be a finite number > 0, got %g",
                       p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return cs_errf(err, errlen, CS_ERR_INVALID, "presence_penalty must be in [-2, 2], got %g",
                       p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return cs_errf(err, errlen, CS_ERR_INVALID,
                       "frequency_penalty must be in [-2, 2], got %g", p->frequency_penalty);
    if (p->n_logprobs < 0 || p->n_logprobs > CS_SAMPLER_MAX_LOGPROBS)
        return cs_errf(err, errlen, CS_ERR_INVALID, "n_logprobs must be in [0, %d], got %d",
                       CS_SAMPLER_MAX_LOGPROBS, (int)p->n_logprobs);
    return CS_OK;
}

// ---------------------------------------------------------------------------------------------
// RNG: splitmix64 expands the 64-bit seed into xoshiro256** state (the seeding its authors
// recommend: it never yields the all-zero state in practice and decorrelates nearby seeds).

static uint64_t cs_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t cs_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t cs_xoshiro_next(uint64_t s[4]) {
    const uint64_t out = cs_rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = cs_rotl64(s[3], 45);
    return out;
}

// Uniform in [0, 1) with 53 random bits: every value is exact in a double.
static double cs_rng_uniform(uint64_t s[4]) {
    return (double)(cs_xoshiro_next(s) >> 11) * 0x1.0p-53;
}

// Unseeded requests still need distinct streams even when started in the same nanosecond.
static _Atomic uint64_t cs_seed_counter;

static uint64_t cs_fresh_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = atomic_fetch_add(&cs_seed_counter, 1);
    x ^= (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return cs_splitmix64(&x);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and history

cs_sampler_scratch *cs_sampler_scratch_new(int32_t vocab_size) {
    CS_ASSERT(vocab_size > 0);
    const size_t V = (size_t)vocab_size;
    // One block: the struct, then the arrays (8-byte aligned, as the struct's size is).
    const size_t groups = V / 8 + 1;
    cs_sampler_scratch *x =
        malloc(sizeof *x + groups * sizeof(double) + V * (sizeof(cs_cand) + 2 * sizeof(float) + sizeof(uint16_t)));
    if (!x) return NULL;
    char *at = (char *)(x + 1); // the 8-byte-aligned array first
    x->vocab = vocab_size;
    x->group = (double *)at, at += groups * sizeof(double);
    x->cand = (cs_cand *)at, at += V * sizeof(cs_cand);
    x->raw = (float *)at, at += V * sizeof(float);
    x->prob = (float *)at, at += V * sizeof(float);
    x->bucket = (uint16_t *)at;
    return x;
}

void cs_sampler_scratch_free(cs_sampler_scratch *x) { free(x); }

cs_sampler *cs_sampler_init_shared(const cs_sampling_params *p, int32_t vocab_size, cs_sampler_scratch *scratch) {
    CS_ASSERT(vocab_size > 0);
    CS_ASSERT(cs_sampling_params_validate(p, NULL, 0) == CS_OK);
    CS_ASSERT(!scratch || scratch->vocab >= vocab_size);
    const size_t V = (size_t)vocab_size;
    const bool penalties = cs_sampling_params_penalties(p);
    // One zeroed block: the struct, then the history, the 4-byte-aligned arrays first.
    const size_t bytes = sizeof(cs_sampler) + (penalties ? V * (2 * sizeof(int32_t) + sizeof(uint8_t)) : 0);
    cs_sampler *s = calloc(1, bytes);
    if (!s) return NULL;
    if (penalties) {
        char *at = (char *)(s + 1);
        s->seen = (int32_t *)at, at += V * sizeof(int32_t);
        s->gen_count = (int32_t *)at, at += V * sizeof(int32_t);
        s->in_prompt = (uint8_t *)at;
    }
    s->own_x = !scratch;
    s->x = scratch ? scratch : cs_sampler_scratch_new(vocab_size);
    if (!s->x) {
        free(s);
        return NULL;
    }
    s->p = *p;
    s->vocab = vocab_size;
    s->penalties_on = penalties;
    uint64_t seed = p->has_seed ? p->seed : cs_fresh_seed();
    for (int i = 0; i < 4; i++) s->rng[i] = cs_splitmix64(&seed);
    return s;
}

cs_sampler *cs_sampler_init(const cs_sampling_params *p, int32_t vocab_size) {
    return cs_sampler_init_shared(p, vocab_size, NULL);
}

void cs_sampler_free(cs_sampler *s) {
    if (!s) return;
    if (s->own_x) cs_sampler_scratch_free(s->x);
    free(s);
}

void cs_sampler_add_prompt(cs_sampler *s, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const int32_t id = ids[i];
        CS_ASSERT(id >= 0 && id < s->vocab);
        if (!s->penalties_on) continue;
        if (!s->in_prompt[id] && s->gen_count[id] == 0) s->seen[s->n_seen++] = id;
        s->in_prompt[id] = 1;
    }
}

void cs_sampler_accept(cs_sampler *s, int32_t id) {
    if (id == -1) return;
    CS_ASSERT(id >= 0 && id < s->vocab);
    if (!s->penalties_on) return;
    if (!s->in_prompt[id] && s->gen_count[id] == 0) s->seen[s->n_seen++] = id;
    s->gen_count[id]++;
}

// ---------------------------------------------------------------------------------------------
// Sampling

// Only tokens of the prompt or output are touched, so this costs O(distinct tokens seen).
// The arithmetic follows vLLM step by step (two separate subtractions) so results match it.
static void cs_apply_penalties(const cs_sampler *s, float *logits) {
    const float rep = s->p.repetition_penalty;
    const float freq = s->p.frequency_penalty, pres = s->p.presence_penalty;
    for (int32_t j = 0; j < s->n_seen; j++) {
        const int32_t id = s->seen[j];
        const int32_t count = s->gen_count[id];
        float l = logits[id];
        if (rep != 1.0f) l = l > 0.0f ? l / rep : l * rep; // every seen id qualifies
        if (count > 0) {
            l -= freq * (float)count;
            l -= pres;
        }
        logits[id] = l;
    }
}

// Lowest id among the largest; -1 when nothing is above -inf (NaN never compares greater).
static int32_t cs_argmax(const float *x, int32_t n) {
    const float m = cs_cpu_max(x, n); // 8 lanes, then the first index that holds it
    if (m == -INFINITY) return -1;
    int32_t i = 0;
    while (x[i] != m) i++;
    return i;
}

// The total order used for every selection: larger logit first, then lower id. Ids are
// unique, so no two candidates compare equal and the kept sets are always well defined.
static inline bool cs_cand_better(const cs_cand *a, const cs_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void cs_cand_swap(cs_cand *c, size_t i, size_t j) {
    cs_cand t = c[i];
    c[i] = c[j];
    c[j] = t;
}

// Partitions c[lo, hi) (non-empty) around a median-of-three pivot and returns its index m:
// afterwards c[lo, m) are better than c[m] and c[m+1, hi) worse.
static size_t cs_partition(cs_cand *c, size_t lo, size_t hi) {
    const size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    // Order lo, mid, last best-first; the median then sits at mid. Sorted or reversed logits
    // (common in tests) therefore still split in half.
    if (cs_cand_better(&c[mid], &c[lo])) cs_cand_swap(c, mid, lo);
    if (cs_cand_better(&c[last], &c[lo])) cs_cand_swap(c, last, lo);
    if (cs_cand_better(&c[last], &c[mid])) cs_cand_swap(c, last, mid);
    cs_cand_swap(c, mid, last);
    const cs_cand pivot = c[last];
    size_t store = lo;
    for (size_t i = lo; i < last; i++)
        if (cs_cand_better(&c[i], &pivot)) cs_cand_swap(c, i, store++);
    cs_cand_swap(c, store, last);
    return store;
}

// Rearranges c[0, n) so that c[0, k) holds the k best (in no particular order); 0 < k < n.
// Quickselect: expected O(n).
static void cs_select_top_k(cs_cand *c, size_t n, size_t k) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t m = cs_partition(c, lo, hi);
        if (m == k || m + 1 == k) return;
        if (m < k) lo = m + 1;
        else hi = m;
    }
}

// Rearranges c[0, n) so that its shortest best-first prefix with mass (sum of p) >= target
// comes first, and returns that prefix's length (n when rounding leaves the total short).
// Quickselect on mass instead of position: expected O(n), no sort.
static size_t cs_select_top_p(cs_cand *c, size_t n, double target) {
    // Invariant: c[0, lo) are kept and weigh `before` < target; the answer lies in (lo, hi].
    size_t lo = 0, hi = n;
    double before = 0.0;
    while (hi - lo > 1) {
        const size_t m = cs_partition(c, lo, hi);
        double upto = before;
        for (size_t i = lo; i < m; i++) upto += c[i].p;
        if (upto >= target) { // already enough without the pivot; m > lo since before < target
            hi = m;
            continue;
        }
        upto += c[m].p;
        if (upto >= target) return m + 1;
        before = upto;
        lo = m + 1;
    }
    return hi;
}

// c[0, n) as a binary heap whose root is the worst entry (every parent worse than its
// children), so the root is the one to evict when a better candidate turns up.
static void cs_heap_sift_down(cs_cand *h, size_t n, size_t i) {
    for (;;) {
        size_t w = i;
        const size_t l = 2 * i + 1, r = l + 1;
        if (l < n && cs_cand_better(&h[w], &h[l])) w = l;
        if (r < n && cs_cand_better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cs_cand_swap(h, i, w);
        i = w;
    }
}

static void cs_heap_sift_up(cs_cand *h, size_t i) {
    while (i > 0 && cs_cand_better(&h[(i - 1) / 2], &h[i])) {
        cs_cand_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

// Writes the k best finite logits (fewer if there are fewer) into c, unordered; returns how
// many. One pass; after the first few hundred tokens nearly every logit costs one compare.
static size_t cs_collect_top_k(const float *logits, int32_t V, size_t k, cs_cand *c) {
    size_t n = 0;
    for (int32_t i = 0; i < V; i++) {
        const float l = logits[i];
        if (n == k) {
            // Ids arrive ascending, so an equal logit is never better than the root.
            if (!(l > c[0].logit)) continue;
            c[0] = (cs_cand){l, 0.0f, i};
            cs_heap_sift_down(c, n, 0);
        } else if (l > -INFINITY) {
            c[n] = (cs_cand){l, 0.0f, i};
            cs_heap_sift_up(c, n++);
        }
    }
    return n;
}

// p = exp((logit - m) / T) relative to the max (p_max = 1), so min-p is a plain threshold.
// Keeps c[i] when p > 0 (an underflowed token could never be drawn) and p >= min_p.
// Returns the new count; *z_out = the kept mass, summed in array order.
static size_t cs_weigh(cs_cand *c, size_t n, float m, float inv_t, float min_p, double *z_out) {
    size_t kept = 0;
    double z = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float l = c[i].logit;
        const float p = l == m ? 1.0f : cs_cpu_exp_scaled1(l, m, inv_t); // l == m also covers m == +inf
        if (!(p > 0.0f) || p < min_p) continue;
        c[kept] = c[i];
        c[kept++].p = p;
        z += p;
    }
    *z_out = z;
    return kept;
}

// Like cs_weigh over the whole vocabulary, reading the logits directly; every exp at once
// into prob (vocab), 8 lanes at a time.
static size_t cs_collect_all(const float *logits, int32_t V, float m, float inv_t, float min_p,
                             cs_cand *c, float *prob, double *z_out) {
    size_t n = 0;
    double z = 0.0;
    if (isfinite(m)) cs_cpu_exp_scaled(logits, V, m, inv_t, prob);
    for (int32_t i = 0; i < V; i++) {
        const float l = logits[i];
        if (!(l > -INFINITY)) continue;
        const float p = l == m ? 1.0f : isfinite(m) ? prob[i] : 0.0f; // m == +inf: only it counts
        if (!(p > 0.0f) || p < min_p) continue;
        c[n++] = (cs_cand){l, p, i};
        z += p;
    }
    *z_out = z;
    return n;
}

// Bucket of a candidate for top-p: non-decreasing along the best-first order, because
// float subtraction, multiplication by a positive scale and truncation are all monotone.
static inline size_t cs_bucket(float logit, float m, float scale) {
    return cs_cpu_bucket1(logit, m, scale, CS_TOPP_BUCKETS - 1); // cs_cpu_bucket16's, one at a time
}

// Three-way partition of c[0, n) by bucket against b (one bucket computation per element):
// afterwards c[0, *lo) lie in buckets before b, c[*lo, *hi) in bucket b, the rest after it.
static void cs_bucket_partition(cs_cand *c, size_t n, float m, float scale, size_t b,
                                size_t *lo, size_t *hi) {
    size_t a = 0, i = 0, z = n;
    while (i < z) {
        const size_t bi = cs_bucket(c[i].logit, m, scale);
        if (bi < b) cs_cand_swap(c, i++, a++);
        else if (bi > b) cs_cand_swap(c, i, --z);
        else i++;
    }
    *lo = a;
    *hi = z;
}

// Top-p: rearranges c[0, n) (total mass z) so that the kept set comes first; returns its size.
static size_t cs_top_p(cs_sampler *s, cs_cand *c, size_t n, double z, float m, float inv_t) {
    const double target = (double)s->p.top_p * z;
    if (n < CS_TOPP_MIN_N) return cs_select_top_p(c, n, target);
    const float scale = inv_t * CS_TOPP_PER_NAT;
    double *mass = s->x->bucket_mass;
    memset(mass, 0, sizeof(double) * CS_TOPP_BUCKETS);
    for (size_t i = 0; i < n; i++) mass[cs_bucket(c[i].logit, m, scale)] += c[i].p;
    // The first bucket where the running mass reaches the target holds the cut.
    size_t b = 0;
    double before = 0.0;
    while (b < CS_TOPP_BUCKETS - 1 && before + mass[b] < target) before += mass[b++];
    size_t lo, hi;
    cs_bucket_partition(c, n, m, scale, b, &lo, &hi);
    if (hi == lo) return lo; // rounding: the target fell past the last non-empty bucket
    return lo + cs_select_top_p(c + lo, hi - lo, target - before);
}

// Top-p (and min-p) with no top-k, over the whole vocabulary, m finite: the mass per bucket
// comes from the weights alone, and only the tokens of the buckets up to the one holding the
// cut become candidates (a model's peaked row: a handful). The kept set is cs_top_p's: the
// same buckets, masses summed in index order, and the same exact selection within the cut's
// bucket. Returns its size; c[0, n) is the kept set.
static size_t cs_collect_top_p(cs_sampler *s, const float *logits, float m, float inv_t, float min_p, cs_cand *c) {
    const int32_t V = s->vocab;
    const float scale = inv_t * CS_TOPP_PER_NAT;
    float *prob = s->x->prob;
    uint16_t *bk = s->x->bucket;
    double (*part)[CS_TOPP_BUCKETS] = s->x->bucket_part;
    cs_cpu_exp_scaled(logits, V, m, inv_t, prob); // 0 for -inf, NaN and underflow; 1 at the max
    // Four partial histograms, token i in part i % 4: four independent chains of additions
    // where the far tail lands in the last bucket again and again.
    memset(part, 0, sizeof(double) * 4 * CS_TOPP_BUCKETS);
    cs_cpu_bucket16(logits, V, m, scale, CS_TOPP_BUCKETS - 1, bk); // cs_bucket, 8 lanes at a time
    for (int32_t i = 0; i < V; i++) {
        const float p = prob[i] >= min_p ? prob[i] : 0.0f; // a zero weighs nothing anywhere
        prob[i] = p;
        part[i & 3][bk[i]] += p;
    }
    double *mass = s->x->bucket_mass, z = 0.0;
    for (size_t b = 0; b < CS_TOPP_BUCKETS; b++) {
        mass[b] = ((part[0][b] + part[1][b]) + part[2][b]) + part[3][b];
        z += mass[b];
    }
    const double target = (double)s->p.top_p * z;
    size_t b = 0;
    double before = 0.0;
    while (b < CS_TOPP_BUCKETS - 1 && before + mass[b] < target) before += mass[b++];
    size_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (bk[i] <= b && prob[i] > 0.0f) c[n++] = (cs_cand){logits[i], prob[i], i};
    size_t lo, hi;
    cs_bucket_partition(c, n, m, scale, b, &lo, &hi);
    if (hi == lo) return lo; // rounding: the target fell past the last non-empty bucket
    return lo + cs_select_top_p(c + lo, hi - lo, target - before);
}

// One draw from the kept candidates c[0, n), n > 0: the CDF inverted in the array's order,
// which depends only on the inputs. Every kept p is > 0, so a zero-width step can never be
// chosen.
static int32_t cs_draw(cs_sampler *s, const cs_cand *c, size_t n) {
    CS_ASSERT(n > 0);
    double z = 0.0;
    for (size_t i = 0; i < n; i++) z += c[i].p;
    const double r = cs_rng_uniform(s->rng) * z;
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id; // r rounded up to z
}

// No filter at all: one draw from the whole softmax, without a candidate list. The weights
// are summed in groups of 8 (each in index order), the groups in index order: the draw finds
// its group, then its token within the group, so the walk costs V / 8 dependent additions.
static int32_t cs_draw_all(cs_sampler *s, const float *logits, float m, float inv_t) {
    const int32_t V = s->vocab;
    float *p = s->x->prob;
    double *g = s->x->group;
    cs_cpu_exp_scaled(logits, V, m, inv_t, p);
    const int32_t n_g = (V + 7) / 8;
    double z = 0.0;
    for (int32_t j = 0; j < n_g; j++) {
        double sum = 0.0;
        for (int32_t i = 8 * j; i < 8 * j + 8 && i < V; i++) sum += p[i];
        g[j] = sum;
        z += sum;
    }
    const double r = cs_rng_uniform(s->rng) * z;
    double acc = 0.0;
    int32_t j = 0;
    while (j < n_g - 1 && !(r < acc + g[j])) acc += g[j++];
    int32_t last = -1;
    for (int32_t i = 8 * j; i < 8 * j + 8 && i < V; i++) {
        if (!(p[i] > 0.0f)) continue;
        acc += p[i];
        last = i;
        if (r < acc) return i;
    }
    if (last >= 0) return last; // r rounded past the group's end
    for (int32_t i = V - 1; i >= 0; i--) // r rounded past the end of the last groups
        if (p[i] > 0.0f) return i;
    return cs_argmax(logits, V); // every weight underflowed but the max's: exp(0) = 1 > 0
}

// Temperature, min-p, top-k, top-p and the draw, over the penalised logits. -1 when no
// logit is above -inf.
static int32_t cs_sample_random(cs_sampler *s, const float *logits) {
    const int32_t V = s->vocab;
    const float inv_t = 1.0f / s->p.temperature, min_p = s->p.min_p;
    const size_t k = s->p.top_k > 0 ? (size_t)s->p.top_k : 0;
    cs_cand *c = s->x->cand;
    size_t n;
    float m = -INFINITY;
    double z = 0.0;
    if (k > 0 && k < (size_t)V && k <= CS_HEAP_MAX_K) {
        // min-p and top-k commute (both keep a best-first prefix), so top-k goes first here.
        n = cs_collect_top_k(logits, V, k, c);
        for (size_t i = 0; i < n; i++) m = c[i].logit > m ? c[i].logit : m;
        if (n == 0) return -1;
        n = cs_weigh(c, n, m, inv_t, min_p, &z);
    } else {
        m = cs_cpu_max(logits, V);
        if (m == -INFINITY) return -1;
        const bool no_k = k == 0 || k >= (size_t)V;
        if (isfinite(m) && min_p == 0.0f && no_k && s->p.top_p >= 1.0f) return cs_draw_all(s, logits, m, inv_t);
        if (isfinite(m) && no_k && s->p.top_p < 1.0f) {
            n = cs_collect_top_p(s, logits, m, inv_t, min_p, c);
            return cs_draw(s, c, n);
        }
        n = cs_collect_all(logits, V, m, inv_t, min_p, c, s->x->prob, &z);
        if (k > 0 && k < n) {
            cs_select_top_k(c, n, k);
            n = k;
            z = 0.0;
            for (size_t i = 0; i < n; i++) z += c[i].p;
        }
    }
    CS_ASSERT(n > 0); // the max itself has p = 1 >= min_p
    if (s->p.top_p < 1.0f) n = cs_top_p(s, c, n, z, m, inv_t);

    return cs_draw(s, c, n);
}

// Fills res from the logits as the caller passed them: log_softmax, the chosen token's
// logprob and the top-N (best first, lower id first on ties).
static void cs_fill_result(const float *raw, int32_t V, int32_t id, int n_want,
                           cs_sample_result *res) {
    res->id = id;
    res->logprob = -INFINITY;
    res->n_top = 0;
    const float m = cs_cpu_max(raw, V);
    if (m == -INFINITY) return;

    double sum = 0.0;
    if (isinf(m)) { // +inf: those logits share all the mass (x - m would be NaN for them)
        for (int32_t i = 0; i < V; i++)
            if (raw[i] == m) sum += 1.0;
    } else {
        sum = cs_cpu_sum_exp(raw, V, m);
    }
    int n_top = 0;
    cs_logprob *top = res->top; // holds raw logits until the end
    for (int32_t i = 0; n_want > 0 && i < V; i++) {
        const float x = raw[i];
        if (!(x > -INFINITY)) continue;
        if (n_top == n_want && !(x > top[n_top - 1].logprob)) continue;
        // Insert after every entry >= x: ids arrive ascending, so equal logits keep id order.
        int j = n_top < n_want ? n_top++ : n_want - 1;
        while (j > 0 && top[j - 1].logprob < x) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = (cs_logprob){i, x};
    }
    // logprob(x) = x - m - log(sum), written so that x == m == +inf gives -log(sum), not NaN.
    const double log_sum = log(sum);
    for (int j = 0; j < n_top; j++) {
        const float x = top[j].logprob;
        top[j].logprob = (float)(x == m ? -log_sum : ((double)x - m) - log_sum);
    }
    res->n_top = n_top;
    if (id >= 0) {
        const float x = raw[id];
        res->logprob = (float)(x == m ? -log_sum : ((double)x - m) - log_sum);
    }
}

int32_t cs_sampler_sample(cs_sampler *s, float *logits, cs_sample_result *res) {
    const float *raw = logits;
    if (s->penalties_on) {
        if (res) {
            memcpy(s->x->raw, logits, (size_t)s->vocab * sizeof(float));
            raw = s->x->raw;
        }
        cs_apply_penalties(s, logits);
    }
    const int32_t id = s->p.temperature < CS_SAMPLER_GREEDY_EPS ? cs_argmax(logits, s->vocab)
                                                                : cs_sample_random(s, logits);
    if (res) cs_fill_result(raw, s->vocab, id, s->p.n_logprobs, res);
    return id;
}
