// CUDA token sampling (kernels/cuda/sample.cu) against the CPU sampler (engine/sampler.c) and
// against a kept set computed here by sorting:
//   - greedy ids, the sampled id's logprob, the top logprobs and the penalised logits left in
//     place equal the CPU sampler's, with penalties, ties, odd vocab sizes, n_logprobs 0/1/5/20;
//   - random sampling never leaves the kept set of top-k / top-p / min-p and their mixes
//     (thousands of draws: many rows of the same logits with distinct Philox steps), and the
//     draw frequencies pass a chi-square test against the renormalised kept distribution;
//   - the same seed and step give the same id, other steps and seeds do not;
//   - rows of -inf / NaN give -1, +inf logits behave as the CPU sampler's.
// Outputs are poisoned before every launch. Exits 77 (skipped) without CUDA or a device.
#include <stdio.h>

#include "test_util.h"

#ifndef CSERVE_HAVE_CUDA
int main(void) {
    puts("built without CUDA: skipped");
    return 77;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "engine/sampler.h"
#include "kernels/cuda/cuda_kernels.h"

#define MAXLP CS_CUDA_MAX_LOGPROBS
#define LP_TOL 1e-4

// ---------------------------------------------------------------------------------------------
// Random inputs (deterministic)

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd_u64(void) { // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static double rnd_unit(void) { return (double)(rnd_u64() >> 11) * 0x1.0p-53; }
static int rnd_int(int n) { return (int)(rnd_u64() % (uint64_t)n); }
static double rnd_normal(void) {
    const double u = rnd_unit(), v = rnd_unit();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

// Normal logits of standard deviation `scale`, about frac_inf of them masked to -inf; with
// quant > 0 they are rounded to multiples of quant, so that many tie.
static void fill_logits(float *x, int V, double scale, double frac_inf, double quant) {
    for (int i = 0; i < V; i++) {
        double v = rnd_normal() * scale;
        if (quant > 0) v = quant * floor(v / quant + 0.5);
        x[i] = rnd_unit() < frac_inf ? -INFINITY : (float)v;
    }
}

// ---------------------------------------------------------------------------------------------
// One launch: copies the inputs, poisons the outputs, samples, copies the results back.

typedef struct pen_list {
    int n;
    int32_t *ids, *counts;
    uint8_t *in_prompt;
} pen_list;

typedef struct gpu_out {
    int32_t *ids;     // (rows)
    float *lp;        // (rows)
    int32_t *top_ids; // (rows, MAXLP)
    float *top_lp;    // (rows, MAXLP)
    float *logits;    // (rows, V) after the call
} gpu_out;

static void gpu_out_alloc(gpu_out *o, int rows, int V) {
    o->ids = malloc(sizeof(int32_t) * (size_t)rows);
    o->lp = malloc(sizeof(float) * (size_t)rows);
    o->top_ids = malloc(sizeof(int32_t) * (size_t)rows * MAXLP);
    o->top_lp = malloc(sizeof(float) * (size_t)rows * MAXLP);
    o->logits = malloc(sizeof(float) * (size_t)rows * (size_t)V);
    CS_ASSERT(o->ids && o->lp && o->top_ids && o->top_lp && o->logits);
}

static void gpu_out_free(gpu_out *o) {
    free(o->ids);
    free(o->lp);
    free(o->top_ids);
    free(o->top_lp);
    free(o->logits);
}

static void *dev_copy(const void *h, size_t n) {
    void *d = NULL;
    CS_ASSERT(cudaMalloc(&d, n ? n : 1) == cudaSuccess);
    if (n) CS_ASSERT(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice) == cudaSuccess);
    return d;
}

static void *dev_poisoned(size_t n, int byte) {
    void *d = NULL;
    CS_ASSERT(cudaMalloc(&d, n) == cudaSuccess);
    CS_ASSERT(cudaMemset(d, byte, n) == cudaSuccess);
    return d;
}

static void gpu_sample(int rows, int V, const float *logits, const cs_cuda_sample_params *params,
                       const pen_list *pen, gpu_out *o) {
    const size_t nl = (size_t)rows * (size_t)V;
    float *d_logits = dev_copy(logits, nl * sizeof(float));
    cs_cuda_sample_params *d_params = dev_copy(params, sizeof *params * (size_t)rows);
    const int np = pen ? pen->n : 0;
    int32_t *d_pid = dev_copy(pen ? pen->ids : NULL, sizeof(int32_t) * (size_t)np);
    int32_t *d_pcnt = dev_copy(pen ? pen->counts : NULL, sizeof(int32_t) * (size_t)np);
    uint8_t *d_pin = dev_copy(pen ? pen->in_prompt : NULL, (size_t)np);
    // poison: 0x7f7f7f7f is no valid id; 0xffffffff is a NaN
    int32_t *d_ids = dev_poisoned(sizeof(int32_t) * (size_t)rows, 0x7f);
    int32_t *d_top_ids = dev_poisoned(sizeof(int32_t) * (size_t)rows * MAXLP, 0x7f);
    float *d_lp = dev_poisoned(sizeof(float) * (size_t)rows, 0xff);
    float *d_top_lp = dev_poisoned(sizeof(float) * (size_t)rows * MAXLP, 0xff);
    const size_t ws_bytes = cs_cuda_sample_workspace(rows, V);
    void *d_ws = ws_bytes ? dev_poisoned(ws_bytes, 0xff) : NULL;

    cs_cuda_sample(d_ids, d_lp, d_top_ids, d_top_lp, d_logits, rows, V, d_params, d_pid, d_pcnt,
                   d_pin, d_ws, ws_bytes, NULL);
    CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess);

    CS_ASSERT(cudaMemcpy(o->ids, d_ids, sizeof(int32_t) * (size_t)rows, cudaMemcpyDeviceToHost) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(o->lp, d_lp, sizeof(float) * (size_t)rows, cudaMemcpyDeviceToHost) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(o->top_ids, d_top_ids, sizeof(int32_t) * (size_t)rows * MAXLP,
                         cudaMemcpyDeviceToHost) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(o->top_lp, d_top_lp, sizeof(float) * (size_t)rows * MAXLP,
                         cudaMemcpyDeviceToHost) == cudaSuccess);
    CS_ASSERT(cudaMemcpy(o->logits, d_logits, nl * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
    cudaFree(d_logits);
    cudaFree(d_params);
    cudaFree(d_pid);
    cudaFree(d_pcnt);
    cudaFree(d_pin);
    cudaFree(d_ids);
    cudaFree(d_top_ids);
    cudaFree(d_lp);
    cudaFree(d_top_lp);
    cudaFree(d_ws);
}

static cs_cuda_sample_params gpu_params(float temperature, int top_k, float top_p, float min_p,
                                        int n_logprobs, uint64_t seed, uint64_t step) {
    cs_cuda_sample_params p;
    memset(&p, 0, sizeof p);
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repetition_penalty = 1.0f;
    p.n_logprobs = n_logprobs;
    p.seed = seed;
    p.step = step;
    return p;
}

// ---------------------------------------------------------------------------------------------
// References

// log_softmax(x)[id] in double.
static double ref_logprob(const float *x, int V, int id) {
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    for (int i = 0; i < V; i++)
        if (x[i] > -INFINITY) s += x[i] == m ? 1.0 : exp((double)x[i] - m);
    return x[id] == m ? -log(s) : ((double)x[id] - m) - log(s);
}

static const float *sort_key;
static int cmp_best_first(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] > sort_key[j] ? -1 : 1;
    return i - j;
}

// The kept set of the sampler's documented semantics, by sorting: ids best first (larger
// logit, then lower id), p = exp((l - max) / T) as the sampler computes it, min-p, top-k, then
// top-p over the renormalised top-k set. Fills ids[0..n) and prob (the renormalised
// distribution) and returns n. At a cut within float rounding (p within 1e-6 of min_p, or
// mass within 1e-6 of the top-p target) the device may decide either way: amb[0] is a token
// outside the set it could add, amb[1] a kept token it could drop; -1 where there is none.
static int ref_kept(const float *l, int V, float T, int top_k, float top_p, float min_p, int *ids,
                    double *prob, int amb[2]) {
    amb[0] = amb[1] = -1;
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (l[i] > m) m = l[i];
    if (m == -INFINITY) return 0;
    int n = 0;
    for (int i = 0; i < V; i++)
        if (l[i] > -INFINITY) ids[n++] = i;
    sort_key = l;
    qsort(ids, (size_t)n, sizeof *ids, cmp_best_first);
    const float inv_t = 1.0f / T;
    float *p = malloc(sizeof(float) * (size_t)n);
    int ne = 0;
    for (int j = 0; j < n; j++) {
        const float x = l[ids[j]];
        const float d = (x - m) * inv_t;
        p[j] = x == m ? 1.0f : d >= -87.3f ? expf(d) : 0.0f; // the sampler's underflow cut
        if (p[j] > 0.0f && p[j] >= min_p) ne = j + 1; // a prefix: p never grows along the order
        else if (amb[0] < 0 && p[j] > 0.0f && fabsf(p[j] - min_p) <= 1e-6f * min_p) amb[0] = ids[j];
    }
    n = ne;
    if (ne > 0 && fabsf(p[ne - 1] - min_p) <= 1e-6f * min_p) amb[1] = ids[ne - 1];
    if (top_k > 0 && top_k < n) n = top_k, amb[0] = amb[1] = -1; // top-k's cut is exact
    if (top_p < 1.0f) {
        double z = 0.0;
        for (int j = 0; j < n; j++) z += p[j];
        const double target = (double)top_p * z;
        double acc = 0.0;
        int c = n;
        for (int j = 0; j < n; j++) {
            acc += p[j];
            if (acc >= target) {
                c = j + 1;
                break;
            }
        }
        if (c < n) {
            amb[0] = acc - target <= 1e-6 * z ? ids[c] : -1;
            amb[1] = acc - p[c - 1] >= target - 1e-6 * z ? ids[c - 1] : -1;
        }
        n = c;
    }
    double z = 0.0;
    for (int j = 0; j < n; j++) z += p[j];
    for (int j = 0; j < n; j++) prob[j] = p[j] / z;
    free(p);
    return n;
}

// Upper 1e-6 tail of chi-square with df degrees of freedom (Wilson-Hilferty).
static double chi2_crit(int df) {
    const double z = 4.753, a = 2.0 / (9.0 * df);
    return df * pow(1.0 - a + z * sqrt(a), 3.0);
}

// ---------------------------------------------------------------------------------------------
// Penalty histories: the same for the CPU sampler (prompt ids, accepted ids) and the GPU
// (distinct ids with their generated count and prompt flag).

typedef struct history {
    int n_prompt, n_gen;
    int32_t prompt[64], gen[32];
} history;

static void random_history(history *h, int V) {
    h->n_prompt = 8 + rnd_int(56);
    h->n_gen = 1 + rnd_int(31);
    for (int i = 0; i < h->n_prompt; i++) h->prompt[i] = rnd_int(V);
    for (int i = 0; i < h->n_gen; i++) // repeats and prompt tokens on purpose
        h->gen[i] = rnd_int(4) == 0 ? h->prompt[rnd_int(h->n_prompt)] : rnd_int(4) == 0 && i ? h->gen[rnd_int(i)] : rnd_int(V);
}

// Appends the history's distinct ids to pen and records where they start in p.
static void add_entries(pen_list *pen, cs_cuda_sample_params *p, const history *h) {
    p->pen_start = pen->n;
    const int all = h->n_prompt + h->n_gen;
    for (int a = 0; a < all; a++) {
        const int32_t id = a < h->n_prompt ? h->prompt[a] : h->gen[a - h->n_prompt];
        int e = p->pen_start;
        while (e < pen->n && pen->ids[e] != id) e++;
        if (e == pen->n) {
            pen->ids[e] = id;
            pen->counts[e] = 0;
            pen->in_prompt[e] = 0;
            pen->n++;
        }
        if (a < h->n_prompt) pen->in_prompt[e] = 1;
        else pen->counts[e]++;
    }
    p->pen_len = pen->n - p->pen_start;
}

static void pen_alloc(pen_list *pen, int max) {
    pen->n = 0;
    pen->ids = malloc(sizeof(int32_t) * (size_t)max);
    pen->counts = malloc(sizeof(int32_t) * (size_t)max);
    pen->in_prompt = malloc((size_t)max);
}

static void pen_free(pen_list *pen) {
    free(pen->ids);
    free(pen->counts);
    free(pen->in_prompt);
}

// ---------------------------------------------------------------------------------------------
// Parity with the CPU sampler: greedy rows must agree on everything; sampled rows on the
// logprobs and the penalised logits, and their id must lie in the kept set.

typedef struct parity_cfg {
    float temperature;
    int top_k;
    float top_p, min_p;
} parity_cfg;

static void test_parity(int V, int rows, parity_cfg cfg, const char *what) {
    const size_t nl = (size_t)rows * (size_t)V;
    float *logits = malloc(nl * sizeof(float)), *cpu_logits = malloc(nl * sizeof(float));
    cs_cuda_sample_params *gp = calloc((size_t)rows, sizeof *gp);
    cs_sample_result *res = calloc((size_t)rows, sizeof *res);
    int32_t *cpu_ids = malloc(sizeof(int32_t) * (size_t)rows);
    pen_list pen;
    pen_alloc(&pen, rows * 96);
    const int nlps[4] = {0, 1, 5, 20};
    for (int r = 0; r < rows; r++) {
        float *x = logits + (size_t)r * V;
        fill_logits(x, V, 3.0, 0.02, r % 4 == 3 ? 0.5 : 0.0); // every 4th row full of ties
        cs_sampling_params sp;
        cs_sampling_params_default(&sp);
        sp.temperature = cfg.temperature;
        sp.top_k = cfg.top_k;
        sp.top_p = cfg.top_p;
        sp.min_p = cfg.min_p;
        sp.n_logprobs = nlps[r % 4];
        sp.seed = 1;
        sp.has_seed = true;
        if (r % 2) {
            sp.repetition_penalty = 1.3f;
            sp.frequency_penalty = 0.5f;
            sp.presence_penalty = 0.25f;
        } else if (r % 8 == 2) {
            sp.repetition_penalty = 0.8f; // < 1 raises the seen tokens
        }
        gp[r] = gpu_params(cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p, sp.n_logprobs,
                           1000 + (uint64_t)r, (uint64_t)r);
        gp[r].repetition_penalty = sp.repetition_penalty;
        gp[r].frequency_penalty = sp.frequency_penalty;
        gp[r].presence_penalty = sp.presence_penalty;
        history h;
        random_history(&h, V);
        add_entries(&pen, &gp[r], &h);
        cs_sampler *s = cs_sampler_init(&sp, V);
        CS_ASSERT(s);
        cs_sampler_add_prompt(s, h.prompt, (size_t)h.n_prompt);
        for (int i = 0; i < h.n_gen; i++) cs_sampler_accept(s, h.gen[i]);
        memcpy(cpu_logits + (size_t)r * V, x, (size_t)V * sizeof(float));
        cpu_ids[r] = cs_sampler_sample(s, cpu_logits + (size_t)r * V, &res[r]);
        cs_sampler_free(s);
    }
    gpu_out o;
    gpu_out_alloc(&o, rows, V);
    gpu_sample(rows, V, logits, gp, &pen, &o);

    const bool greedy = cfg.temperature < CS_SAMPLER_GREEDY_EPS;
    int *kept = malloc(sizeof(int) * (size_t)V);
    double *prob = malloc(sizeof(double) * (size_t)V);
    int bad = 0;
    double max_lp_diff = 0.0;
    for (int r = 0; r < rows && bad < 10; r++) {
        const float *raw = logits + (size_t)r * V, *pen_l = cpu_logits + (size_t)r * V;
        const int32_t id = o.ids[r];
        int ok = 1;
        if (greedy) {
            ok &= id == cpu_ids[r];
        } else {
            int amb[2];
            const int n = ref_kept(pen_l, V, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p, kept, prob, amb);
            int in = id == amb[0];
            for (int j = 0; j < n && !in; j++) in = kept[j] == id;
            ok &= in;
        }
        if (ok && id >= 0) {
            const double want = ref_logprob(raw, V, id), d = fabs(o.lp[r] - want);
            max_lp_diff = d > max_lp_diff ? d : max_lp_diff;
            ok &= d <= LP_TOL;
            if (greedy) ok &= fabsf(o.lp[r] - res[r].logprob) <= LP_TOL;
        } else if (ok) {
            ok &= o.lp[r] == -INFINITY;
        }
        const int nlp = gp[r].n_logprobs;
        for (int j = 0; j < nlp && ok; j++) {
            const size_t t = (size_t)r * MAXLP + j;
            if (j < res[r].n_top) {
                const double d = fabs(o.top_lp[t] - res[r].top[j].logprob);
                max_lp_diff = d > max_lp_diff ? d : max_lp_diff;
                ok &= o.top_ids[t] == res[r].top[j].id && d <= LP_TOL;
            } else {
                ok &= o.top_ids[t] == -1 && o.top_lp[t] == -INFINITY;
            }
        }
        ok &= memcmp(o.logits + (size_t)r * V, pen_l, (size_t)V * sizeof(float)) == 0;
        if (!ok) {
            bad++;
            fprintf(stderr, "%s V=%d row %d: gpu id %d lp %.6f, cpu id %d lp %.6f; top[0] gpu %d %.6f cpu %d %.6f (n_top %d of %d)\n",
                    what, V, r, id, (double)o.lp[r], cpu_ids[r], (double)res[r].logprob,
                    nlp ? o.top_ids[(size_t)r * MAXLP] : -2, nlp ? (double)o.top_lp[(size_t)r * MAXLP] : 0.0,
                    res[r].n_top ? res[r].top[0].id : -2, res[r].n_top ? (double)res[r].top[0].logprob : 0.0,
                    res[r].n_top, nlp);
            for (int j = 0; j < nlp; j++) {
                const size_t t = (size_t)r * MAXLP + j;
                if (j < res[r].n_top && (o.top_ids[t] != res[r].top[j].id || fabs(o.top_lp[t] - res[r].top[j].logprob) > LP_TOL))
                    fprintf(stderr, "  top[%d]: gpu %d %.6f cpu %d %.6f\n", j, o.top_ids[t], (double)o.top_lp[t],
                            res[r].top[j].id, (double)res[r].top[j].logprob);
            }
            for (int i = 0, shown = 0; i < V && shown < 3; i++)
                if (memcmp(&o.logits[(size_t)r * V + i], &pen_l[i], sizeof(float)))
                    fprintf(stderr, "  logit[%d]: gpu %.9g cpu %.9g raw %.9g\n", i, (double)o.logits[(size_t)r * V + i],
                            (double)pen_l[i], (double)raw[i]), shown++;
        }
    }
    printf("parity %-28s V=%-6d rows %3d: max logprob diff %.2e\n", what, V, rows, max_lp_diff);
    TEST_CONDF(bad == 0, "%s V=%d: %d rows disagree with the CPU sampler", what, V, bad);
    gpu_out_free(&o);
    pen_free(&pen);
    free(kept);
    free(prob);
    free(logits);
    free(cpu_logits);
    free(gp);
    free(res);
    free(cpu_ids);
}

// ---------------------------------------------------------------------------------------------
// The kept set over many draws: `rows` copies of one row of logits with steps 0..rows-1, run
// `launches` times with fresh steps. No draw may leave the reference kept set; with chi2 the
// frequencies must match the renormalised distribution.

typedef struct kept_cfg {
    const char *name;
    float temperature;
    int top_k;
    float top_p, min_p;
    int chi2;
} kept_cfg;

static void test_kept(int V, const float *row, int rows, int launches, kept_cfg c) {
    int *kept = malloc(sizeof(int) * (size_t)V);
    double *prob = malloc(sizeof(double) * (size_t)V);
    int amb[2];
    const int n = ref_kept(row, V, c.temperature, c.top_k, c.top_p, c.min_p, kept, prob, amb);
    CS_ASSERT(n > 0);
    int *pos = malloc(sizeof(int) * (size_t)V); // id -> index in kept, -1 outside
    for (int i = 0; i < V; i++) pos[i] = -1;
    for (int j = 0; j < n; j++) pos[kept[j]] = j;
    long *count = calloc((size_t)n, sizeof(long));
    float *logits = malloc(sizeof(float) * (size_t)rows * (size_t)V);
    for (int r = 0; r < rows; r++) memcpy(logits + (size_t)r * V, row, sizeof(float) * (size_t)V);
    cs_cuda_sample_params *gp = malloc(sizeof *gp * (size_t)rows);
    gpu_out o;
    gpu_out_alloc(&o, rows, V);
    long outside = 0, draws = 0;
    for (int L = 0; L < launches; L++) {
        for (int r = 0; r < rows; r++)
            gp[r] = gpu_params(c.temperature, c.top_k, c.top_p, c.min_p, 0, 0x5eedull, (uint64_t)L * rows + r);
        gpu_sample(rows, V, logits, gp, NULL, &o);
        for (int r = 0; r < rows; r++, draws++) {
            const int id = o.ids[r];
            if (id >= 0 && id < V && pos[id] >= 0) count[pos[id]]++;
            else if (!(id == amb[0] && id >= 0)) {
                if (outside++ < 5) fprintf(stderr, "%s V=%d: drew %d outside the kept set of %d\n", c.name, V, id, n);
            }
        }
    }
    TEST_CONDF(outside == 0, "%s V=%d: %ld of %ld draws outside the kept set", c.name, V, outside, draws);
    // and none left out: a kept token expected 20 times or more is drawn (misses: e^-20)
    long missing = 0;
    for (int j = 0; j < n; j++)
        if (prob[j] * (double)draws >= 20.0 && count[j] == 0 && kept[j] != amb[1] && missing++ < 5)
            fprintf(stderr, "%s V=%d: kept token %d (p %.4f) never drawn in %ld\n", c.name, V, kept[j], prob[j], draws);
    TEST_CONDF(missing == 0, "%s V=%d: %ld likely kept tokens never drawn", c.name, V, missing);
    if (c.chi2 && amb[0] < 0 && amb[1] < 0) {
        // bins with expected count >= 5; the rest of the kept set pooled into one bin
        double chi2 = 0.0, pool_e = 0.0, pool_o = 0.0;
        int bins = 0;
        for (int j = 0; j < n; j++) {
            const double e = prob[j] * (double)draws;
            if (e >= 5.0) {
                chi2 += (count[j] - e) * (count[j] - e) / e;
                bins++;
            } else {
                pool_e += e;
                pool_o += (double)count[j];
            }
        }
        if (pool_e >= 5.0) {
            chi2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
            bins++;
        }
        const int df = bins - 1;
        if (df > 0) {
            const double crit = chi2_crit(df);
            printf("kept %-26s V=%-6d kept %5d draws %6ld: chi2 %.1f, df %d, 1e-6 critical %.1f\n", c.name, V, n,
                   draws, chi2, df, crit);
            TEST_CONDF(chi2 < crit, "%s V=%d: chi-square %.1f >= %.1f (df %d)", c.name, V, chi2, crit, df);
        }
    } else {
        printf("kept %-26s V=%-6d kept %5d draws %6ld%s\n", c.name, V, n, draws,
               amb[0] >= 0 || amb[1] >= 0 ? " (a boundary token within rounding)" : "");
    }
    gpu_out_free(&o);
    free(gp);
    free(logits);
    free(count);
    free(pos);
    free(kept);
    free(prob);
}

static void test_kept_sets(void) {
    // Small vocabulary, temperature such that ~20 tokens carry most of the mass: frequencies.
    {
        const int V = 1000;
        float *row = malloc(sizeof(float) * V);
        fill_logits(row, V, 3.0, 0.01, 0.0);
        const kept_cfg cfgs[] = {
            {"temperature 0.9", 0.9f, 0, 1.0f, 0.0f, 1},
            {"top-k 10", 1.0f, 10, 1.0f, 0.0f, 1},
            {"top-p 0.8", 1.0f, 0, 0.8f, 0.0f, 1},
            {"min-p 0.05", 1.0f, 0, 1.0f, 0.05f, 1},
            {"top-k 30 top-p 0.9 min-p 0.01", 1.2f, 30, 0.9f, 0.01f, 1},
            {"top-k 1", 1.0f, 1, 1.0f, 0.0f, 1},
        };
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) test_kept(V, row, 4096, 8, cfgs[i]);
        free(row);
    }
    // Large vocabularies: shared-memory candidate lists and the whole-row fallbacks.
    const int Vs[2] = {49152, 128256};
    for (int v = 0; v < 2; v++) {
        const int V = Vs[v];
        float *row = malloc(sizeof(float) * (size_t)V);
        fill_logits(row, V, 3.0, 0.02, 0.0);
        const kept_cfg cfgs[] = {
            {"T 0.8 top-k 50 top-p 0.9", 0.8f, 50, 0.9f, 0.0f, 0},
            {"T 1 top-p 0.9", 1.0f, 0, 0.9f, 0.0f, 0},
            {"T 3 top-k 6000", 3.0f, 6000, 1.0f, 0.0f, 0},
            {"T 1 min-p 0.1", 1.0f, 0, 1.0f, 0.1f, 0},
            {"T 4 top-p 0.95", 4.0f, 0, 0.95f, 0.0f, 0},
            {"T 1 top-k 1", 1.0f, 1, 1.0f, 0.0f, 0},
            {"T 1 top-p 1e-6", 1.0f, 0, 1e-6f, 0.0f, 0},
        };
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) test_kept(V, row, 256, 2, cfgs[i]);
        // ties everywhere: cuts inside groups of equal logits go to the lower ids
        fill_logits(row, V, 3.0, 0.02, 1.0);
        const kept_cfg ties[] = {
            {"ties: top-k 100", 1.0f, 100, 1.0f, 0.0f, 0},
            {"ties: T 2 top-p 0.5", 2.0f, 0, 0.5f, 0.0f, 0},
            {"ties: T 2 top-k 3000 top-p 0.7", 2.0f, 3000, 0.7f, 0.0f, 0},
        };
        for (size_t i = 0; i < sizeof ties / sizeof ties[0]; i++) test_kept(V, row, 256, 2, ties[i]);
        // all equal: the kept set is ids 0..k-1, or the first half for top-p 0.5
        for (int i = 0; i < V; i++) row[i] = 0.5f;
        const kept_cfg flat[] = {
            {"all equal: top-k 7", 1.0f, 7, 1.0f, 0.0f, 0},
            {"all equal: top-p 0.5", 1.0f, 0, 0.5f, 0.0f, 0},
            {"all equal: top-k 5000 top-p 0.5", 1.0f, 5000, 0.5f, 0.0f, 0},
        };
        for (size_t i = 0; i < sizeof flat / sizeof flat[0]; i++) test_kept(V, row, 256, 2, flat[i]);
        // Cuts inside big groups of equal logits, each kept token likely enough to be seen:
        // one token at 2 and 50 at 0 (ids 100..149): top-p 0.5 keeps it and ids 100..121.
        for (int i = 0; i < V; i++) row[i] = -30.0f;
        row[V / 2] = 2.0f;
        for (int i = 100; i < 150; i++) row[i] = 0.0f;
        test_kept(V, row, 256, 4, (kept_cfg){"tie group: top-p 0.5", 1.0f, 0, 0.5f, 0.0f, 0});
        // 30 tokens at 1, 6000 at 0, the rest far below: at T 100 one bucket holds 6030 tokens,
        // so the cuts are found by sweeping the row. Top-k 40 keeps the 30 and the 10 lowest ids
        // of the others; top-p 0.006 keeps the 30 and the 6 lowest.
        for (int i = 0; i < V; i++) row[i] = -1e4f;
        for (int i = 0; i < 6000; i++) row[3 + 7 * i] = 0.0f;
        for (int i = 0; i < 30; i++) row[5 + 1500 * i] = 1.0f;
        test_kept(V, row, 256, 4, (kept_cfg){"big tie group: T 100 top-k 40", 100.0f, 40, 1.0f, 0.0f, 0});
        test_kept(V, row, 256, 4, (kept_cfg){"big tie group: T 100 top-p 0.006", 100.0f, 0, 0.006f, 0.0f, 0});
        free(row);
    }
}

// ---------------------------------------------------------------------------------------------
// Reproducibility: (seed, step) decides the draw, whatever the row or the batch.

static void test_seeds_and_steps(void) {
    const int V = 1000, rows = 2048;
    float *row = malloc(sizeof(float) * V), *logits = malloc(sizeof(float) * (size_t)rows * V);
    fill_logits(row, V, 1.0, 0.0, 0.0); // flat: two independent draws rarely agree
    for (int r = 0; r < rows; r++) memcpy(logits + (size_t)r * V, row, sizeof(float) * V);
    cs_cuda_sample_params *gp = malloc(sizeof *gp * (size_t)rows);
    gpu_out a, b;
    gpu_out_alloc(&a, rows, V);
    gpu_out_alloc(&b, rows, V);
    for (int r = 0; r < rows; r++) gp[r] = gpu_params(1.0f, 0, 1.0f, 0.0f, 0, 77, (uint64_t)r);
    gpu_sample(rows, V, logits, gp, NULL, &a);
    // the same (seed, step) pairs in reverse row order
    for (int r = 0; r < rows; r++) gp[r] = gpu_params(1.0f, 0, 1.0f, 0.0f, 0, 77, (uint64_t)(rows - 1 - r));
    gpu_sample(rows, V, logits, gp, NULL, &b);
    int same = 0;
    for (int r = 0; r < rows; r++) same += a.ids[r] == b.ids[rows - 1 - r];
    TEST_CONDF(same == rows, "same seed and step: %d of %d rows agree", same, rows);
    // other steps, then another seed: agreement at the rate of independent draws (~sum p^2)
    double collide = 0.0;
    {
        int kept[1000], amb[2];
        double prob[1000];
        const int n = ref_kept(row, V, 1.0f, 0, 1.0f, 0.0f, kept, prob, amb);
        for (int j = 0; j < n; j++) collide += prob[j] * prob[j];
    }
    for (int r = 0; r < rows; r++) gp[r] = gpu_params(1.0f, 0, 1.0f, 0.0f, 0, 77, (uint64_t)(r + rows));
    gpu_sample(rows, V, logits, gp, NULL, &b);
    same = 0;
    for (int r = 0; r < rows; r++) same += a.ids[r] == b.ids[r];
    TEST_CONDF(same < rows * (collide * 3 + 0.01), "other steps: %d of %d rows agree (expected ~%.0f)", same, rows,
               collide * rows);
    for (int r = 0; r < rows; r++) gp[r] = gpu_params(1.0f, 0, 1.0f, 0.0f, 0, 78, (uint64_t)r);
    gpu_sample(rows, V, logits, gp, NULL, &b);
    int same_seed = 0;
    for (int r = 0; r < rows; r++) same_seed += a.ids[r] == b.ids[r];
    TEST_CONDF(same_seed < rows * (collide * 3 + 0.01), "other seed: %d of %d rows agree (expected ~%.0f)",
               same_seed, rows, collide * rows);
    // the same (seed, step) on every row: one id
    for (int r = 0; r < rows; r++) gp[r] = gpu_params(1.0f, 0, 1.0f, 0.0f, 0, 5, 9);
    gpu_sample(rows, V, logits, gp, NULL, &b);
    int uniform = 1;
    for (int r = 1; r < rows; r++) uniform &= b.ids[r] == b.ids[0];
    TEST_CONDF(uniform && b.ids[0] >= 0, "one (seed, step) on every row gave different ids");
    printf("seeds: reversed rows agree %d/%d; other steps %d, other seed %d agree (independent ~%.0f)\n", rows, rows,
           same, same_seed, collide * rows);
    gpu_out_free(&a);
    gpu_out_free(&b);
    free(gp);
    free(row);
    free(logits);
}

// ---------------------------------------------------------------------------------------------
// Rows without a finite logit, with NaN, with +inf.

static void test_special_rows(void) {
    const int V = 4099; // odd: rows are not 16-byte aligned
    const int rows = 12;
    float *logits = malloc(sizeof(float) * (size_t)rows * V);
    cs_cuda_sample_params gp[12];
    for (int r = 0; r < rows; r++) {
        float *x = logits + (size_t)r * V;
        const int kind = r / 2; // even rows greedy, odd rows sampled
        for (int i = 0; i < V; i++) x[i] = -INFINITY;
        if (kind == 1)
            for (int i = 0; i < V; i++) x[i] = NAN;
        if (kind == 2) x[1234] = 2.0f;                   // a single finite logit
        if (kind == 3) fill_logits(x, V, 3.0, 0.0, 0.0), x[17] = x[3000] = x[4098] = INFINITY;
        if (kind == 4) {                                 // NaN everywhere but two ids
            for (int i = 0; i < V; i++) x[i] = NAN;
            x[40] = -3.0f, x[41] = -2.5f;
        }
        if (kind == 5) fill_logits(x, V, 3.0, 0.9, 0.0); // mostly masked
        gp[r] = gpu_params(r % 2 ? 0.7f : 0.0f, r % 4 == 1 ? 40 : 0, r % 4 == 3 ? 0.9f : 1.0f, 0.0f, 3, 9, (uint64_t)r);
    }
    gpu_out o;
    gpu_out_alloc(&o, rows, V);
    gpu_sample(rows, V, logits, gp, NULL, &o);
    for (int r = 0; r < rows; r++) {
        const int kind = r / 2;
        const float *x = logits + (size_t)r * V;
        const int32_t id = o.ids[r];
        const int32_t *tid = o.top_ids + (size_t)r * MAXLP;
        const float *tlp = o.top_lp + (size_t)r * MAXLP;
        // the CPU sampler on the same row
        cs_sampling_params sp;
        cs_sampling_params_default(&sp);
        sp.temperature = gp[r].temperature;
        sp.top_k = gp[r].top_k;
        sp.top_p = gp[r].top_p;
        sp.n_logprobs = 3;
        sp.has_seed = true;
        cs_sampler *s = cs_sampler_init(&sp, V);
        float *cx = malloc(sizeof(float) * V);
        memcpy(cx, x, sizeof(float) * V);
        cs_sample_result res;
        const int32_t cid = cs_sampler_sample(s, cx, &res);
        cs_sampler_free(s);
        free(cx);
        if (kind <= 1) {
            TEST_CONDF(id == -1 && o.lp[r] == -INFINITY, "row %d (no finite logit): id %d lp %g", r, id, (double)o.lp[r]);
        } else if (kind == 2) {
            TEST_CONDF(id == 1234 && fabsf(o.lp[r]) <= LP_TOL, "row %d (one finite): id %d lp %g", r, id, (double)o.lp[r]);
        } else if (kind == 3) { // only the +inf ids can be drawn; each has logprob -log(3)
            TEST_CONDF((id == 17 || id == 3000 || id == 4098) && fabs(o.lp[r] + log(3.0)) <= LP_TOL,
                       "row %d (+inf): id %d lp %g", r, id, (double)o.lp[r]);
            if (r % 2 == 0) TEST_CONDF(id == 17, "row %d: greedy with +inf picked %d, want 17", r, id);
        } else if (kind == 4) {
            TEST_CONDF(id == 41 || (r % 2 && id == 40), "row %d (NaN): id %d", r, id);
        } else {
            TEST_CONDF(id >= 0 && x[id] > -INFINITY, "row %d (masked): id %d", r, id);
        }
        if (r % 2 == 0) TEST_CONDF(id == cid, "row %d: greedy id %d, CPU %d", r, id, cid);
        for (int j = 0; j < 3; j++) {
            if (j < res.n_top)
                TEST_CONDF(tid[j] == res.top[j].id && fabsf(tlp[j] - res.top[j].logprob) <= LP_TOL,
                           "row %d top[%d]: gpu %d %g, cpu %d %g", r, j, tid[j], (double)tlp[j], res.top[j].id,
                           (double)res.top[j].logprob);
            else
                TEST_CONDF(tid[j] == -1 && tlp[j] == -INFINITY, "row %d top[%d] beyond %d finite: %d %g", r, j,
                           res.n_top, tid[j], (double)tlp[j]);
        }
    }
    gpu_out_free(&o);
    free(logits);
}

// Top logprobs among more ties than the raw candidate list holds (512): a flat row, and 600
// ids tied at the max over a far lower random rest. The top 20 are the 20 lowest tied ids (ties
// go to the lower id), each with its exact logprob; greedy takes the lowest.
static void test_tied_top_logprobs(void) {
    const int V = 4099, rows = 4;
    float *logits = malloc(sizeof(float) * (size_t)rows * V);
    cs_cuda_sample_params gp[4];
    for (int r = 0; r < rows; r++) {
        float *x = logits + (size_t)r * V;
        if (r < 2) {
            for (int i = 0; i < V; i++) x[i] = 0.0f;
        } else {
            fill_logits(x, V, 1.0, 0.0, 0.0);
            for (int i = 0; i < V; i++) x[i] = fminf(x[i], -20.0f); // a draw outside the ties: e^-30
            for (int i = 0; i < 600; i++) x[3 + 6 * i] = 4.0f;
        }
        gp[r] = gpu_params(r % 2 ? 0.8f : 0.0f, 0, 1.0f, 0.0f, MAXLP, 11, (uint64_t)r);
    }
    gpu_out o;
    gpu_out_alloc(&o, rows, V);
    gpu_sample(rows, V, logits, gp, NULL, &o);
    for (int r = 0; r < rows; r++) {
        const float *x = logits + (size_t)r * V;
        const int32_t *tid = o.top_ids + (size_t)r * MAXLP;
        const float *tlp = o.top_lp + (size_t)r * MAXLP;
        for (int j = 0; j < MAXLP; j++) {
            const int want = r < 2 ? j : 3 + 6 * j;
            const double lp = ref_logprob(x, V, want);
            TEST_CONDF(tid[j] == want && fabs(tlp[j] - lp) <= LP_TOL, "tied row %d top[%d]: %d %g, want %d %g", r, j,
                       tid[j], (double)tlp[j], want, lp);
        }
        if (r % 2 == 0) TEST_CONDF(o.ids[r] == (r < 2 ? 0 : 3), "tied row %d: greedy picked %d", r, o.ids[r]);
        else TEST_CONDF(o.ids[r] >= 0 && x[o.ids[r]] == (r < 2 ? 0.0f : 4.0f), "tied row %d: drew %d", r, o.ids[r]);
    }
    gpu_out_free(&o);
    free(logits);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    const parity_cfg greedy = {0.0f, 0, 1.0f, 0.0f};
    const int Vs[] = {1000, 1001, 49152, 128256};
    for (size_t v = 0; v < sizeof Vs / sizeof Vs[0]; v++) test_parity(Vs[v], 64, greedy, "greedy");
    test_parity(262144, 8, greedy, "greedy");
    const parity_cfg sampled[] = {
        {0.8f, 50, 0.9f, 0.0f}, {1.0f, 0, 0.9f, 0.0f}, {0.7f, 0, 1.0f, 0.05f}, {1.5f, 200, 0.95f, 0.01f}, {1.0f, 0, 1.0f, 0.0f}};
    const char *names[] = {"T 0.8 top-k 50 top-p 0.9", "T 1 top-p 0.9", "T 0.7 min-p 0.05", "T 1.5 k 200 p 0.95 min-p",
                           "T 1"};
    for (size_t c = 0; c < sizeof sampled / sizeof sampled[0]; c++) {
        test_parity(49152, 32, sampled[c], names[c]);
        test_parity(1001, 32, sampled[c], names[c]);
    }
    test_parity(128256, 16, sampled[0], names[0]);
    test_kept_sets();
    test_seeds_and_steps();
    test_special_rows();
    test_tied_top_logprobs();
    return TEST_REPORT();
}
#endif
