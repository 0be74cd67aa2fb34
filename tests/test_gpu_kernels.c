// The CUDA row kernels (embed, residual add + RMSNorm, bias + RoPE + KV append, SwiGLU) and
// the bf16 GEMV (against a float64 sum, within its own tolerance: see test_gemv) against their
// CPU references, run on the bf16 inputs converted to float: fresh random
// inputs, odd row counts (1, 3, 17, 257), dims 64 / 576 / 4096 / 8192, outputs poisoned with
// NaN before each launch. fp32 outputs must match exactly; bf16 outputs within one bf16 ulp
// of the bf16-rounded reference (plus 1e-6 absolute). Exits 77 (skipped) when cserve was
// built without CUDA or there is no device.
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
#include <stdbool.h>
#include <string.h>

#include "common/assert.h"
#include "common/rng.h"
#include "engine/model.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t next_u32(void) { return cs_xorshift32(&rng); }
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() >> 8) / 16777216.0f; }

// bf16 raw bits of a random value in [lo, hi); also its float value in f (may be NULL).
static void fill_bf16(uint16_t *h, float *f, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        h[i] = cs_f32_to_bf16(frand(lo, hi));
        if (f) f[i] = cs_bf16_to_f32(h[i]);
    }
}

// First n entries of a random permutation of 0..range-1 (distinct values).
static void random_distinct(int32_t *out, int n, int range) {
    int32_t *perm = malloc((size_t)range * sizeof *perm);
    for (int i = 0; i < range; i++) perm[i] = i;
    for (int i = range - 1; i > 0; i--) {
        int j = (int)(next_u32() % (uint32_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(out, perm, (size_t)n * sizeof *out);
    free(perm);
}

static void *dev_alloc(size_t n) {
    void *p = NULL;
    CS_ASSERT(cudaMalloc(&p, n ? n : 1) == cudaSuccess);
    return p;
}
static void *dev_copy(const void *h, size_t n) {
    void *p = dev_alloc(n);
    CS_ASSERT(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice) == cudaSuccess);
    return p;
}
static void to_host(void *h, const void *d, size_t n) {
    CS_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    CS_ASSERT(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost) == cudaSuccess);
}
static void poison(void *d, size_t n) { CS_ASSERT(cudaMemset(d, 0xff, n) == cudaSuccess); } // NaN

// One unit in the last place of the bf16 value b (8 significant bits).
static float bf16_ulp(uint16_t b) {
    int e = (b >> 7) & 0xff;
    return ldexpf(1.0f, (e ? e : 1) - 127 - 7);
}

// got (n) bf16 against ref (n) fp32: |got - bf16(ref)| <= ulp(bf16(ref)) + 1e-6, and finite.
// Prints the largest difference (in ulps) and the first mismatches; returns the mismatches.
static size_t check_bf16(const char *what, const uint16_t *got, const float *ref, size_t n) {
    size_t bad = 0;
    double max_ulps = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t rb = cs_f32_to_bf16(ref[i]);
        float g = cs_bf16_to_f32(got[i]), r = cs_bf16_to_f32(rb), ulp = bf16_ulp(rb);
        float diff = fabsf(g - r);
        if (isfinite(g) && diff / ulp > max_ulps) max_ulps = diff / ulp;
        if (isfinite(g) && diff <= ulp + 1e-6f) continue;
        if (bad++ < 5)
            fprintf(stderr, "  %s [%zu]: got %g (0x%04x), want %g (0x%04x, fp32 %.9g)\n", what, i, (double)g,
                    got[i], (double)r, rb, (double)ref[i]);
    }
    printf("  %s: max diff %.2f bf16 ulp, %zu of %zu outside 1 ulp\n", what, max_ulps, bad, n);
    return bad;
}

// got (n) fp32 must equal ref bit for bit.
static size_t check_f32(const char *what, const float *got, const float *ref, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &ref[i], sizeof(float)) == 0) continue;
        if (bad++ < 5)
            fprintf(stderr, "  %s [%zu]: got %.9g, want %.9g\n", what, i, (double)got[i], (double)ref[i]);
    }
    return bad;
}

// ---- embed -----------------------------------------------------------------------------

static void test_embed(int n, int dim) {
    const int vocab = 300;
    size_t tn = (size_t)vocab * dim, xn = (size_t)n * dim;
    uint16_t *table = malloc(tn * 2);
    float *table_f = malloc(tn * sizeof(float)), *ref = malloc(xn * sizeof(float)), *got = malloc(xn * sizeof(float));
    int32_t *ids = malloc((size_t)n * sizeof *ids), *resolved = malloc((size_t)n * sizeof *ids);
    // placeholders (async scheduling): -1 - r names what a sampling step left in its row r,
    // which may be -1 (nothing allowed) or, defensively, past the vocabulary: row 0 then
    enum { N_PREV = 7 };
    int32_t prev[N_PREV] = {5, vocab - 1, -1, 17, vocab + 3, 0, 123};
    fill_bf16(table, table_f, tn, -2.0f, 2.0f);
    for (int i = 0; i < n; i++) {
        ids[i] = next_u32() % 3 == 0 ? -1 - (int32_t)(next_u32() % N_PREV) : (int32_t)(next_u32() % vocab);
        int32_t id = ids[i] >= 0 ? ids[i] : prev[-1 - ids[i]];
        resolved[i] = id >= 0 && id < vocab ? id : 0;
    }
    ids[0] = resolved[0] = vocab - 1;
    if (n > 1) ids[n - 1] = resolved[n - 1] = 0;
    cs_cpu_embed(ref, table_f, CS_DTYPE_F32, resolved, n, dim);

    uint16_t *d_table = dev_copy(table, tn * 2);
    int32_t *d_ids = dev_copy(ids, (size_t)n * sizeof *ids), *d_prev = dev_copy(prev, sizeof prev);
    float *d_x = dev_alloc(xn * sizeof(float));
    poison(d_x, xn * sizeof(float));
    cs_cuda_embed(d_x, d_table, d_ids, d_prev, vocab, n, dim, NULL);
    to_host(got, d_x, xn * sizeof(float));
    size_t bad = check_f32("embed", got, ref, xn);
    TEST_CONDF(bad == 0, "embed n=%d dim=%d: %zu of %zu differ", n, dim, bad, xn);

    cudaFree(d_table); cudaFree(d_ids); cudaFree(d_prev); cudaFree(d_x);
    free(table); free(table_f); free(ref); free(got); free(ids); free(resolved);
}

// ---- residual add + rmsnorm ----------------------------------------------------------------

// n output rows; with_rows: they are n distinct rows (shuffled) of an x of n + 5 rows,
// and the other rows of x must stay as they were.
static void test_rmsnorm(int n, int dim, bool with_y, bool with_rows) {
    const float eps = 1e-5f;
    int nx = with_rows ? n + 5 : n;
    size_t xn = (size_t)nx * dim, on = (size_t)n * dim;
    float *x = malloc(xn * sizeof(float)), *x_ref = malloc(xn * sizeof(float)), *x_got = malloc(xn * sizeof(float));
    float *y_f = malloc(xn * sizeof(float)), *w = malloc((size_t)dim * sizeof(float));
    float *sel = malloc(on * sizeof(float)), *ref = malloc(on * sizeof(float));
    uint16_t *y = malloc(xn * 2), *got = malloc(on * 2);
    int32_t *rows = malloc((size_t)n * sizeof *rows);
    for (int r = 0; r < nx; r++) { // a different scale per row, so the norm matters
        float s = frand(0.05f, 4.0f);
        for (int i = 0; i < dim; i++) x[(size_t)r * dim + i] = frand(-s, s);
    }
    fill_bf16(y, y_f, xn, -1.0f, 1.0f);
    for (int i = 0; i < dim; i++) w[i] = frand(-1.5f, 1.5f);
    if (with_rows) random_distinct(rows, n, nx);
    else for (int i = 0; i < n; i++) rows[i] = i;

    memcpy(x_ref, x, xn * sizeof(float));
    for (int i = 0; i < n; i++) {
        size_t r = (size_t)rows[i];
        if (with_y) cs_cpu_add(x_ref + r * dim, y_f + r * dim, dim);
        memcpy(sel + (size_t)i * dim, x_ref + r * dim, (size_t)dim * sizeof(float));
    }
    cs_cpu_rmsnorm(ref, sel, w, n, dim, eps);

    float *d_x = dev_copy(x, xn * sizeof(float)), *d_w = dev_copy(w, (size_t)dim * sizeof(float));
    uint16_t *d_y = dev_copy(y, xn * 2), *d_out = dev_alloc(on * 2);
    int32_t *d_rows = dev_copy(rows, (size_t)n * sizeof *rows);
    poison(d_out, on * 2);
    cs_cuda_rmsnorm(d_out, d_x, with_y ? d_y : NULL, d_w, with_rows ? d_rows : NULL, n, dim, eps, NULL);
    to_host(got, d_out, on * 2);
    to_host(x_got, d_x, xn * sizeof(float));
    char what[96];
    snprintf(what, sizeof what, "rmsnorm n=%d dim=%d y=%d rows=%d", n, dim, with_y, with_rows);
    size_t bad = check_bf16(what, got, ref, on);
    TEST_CONDF(bad == 0, "%s: %zu of %zu outputs outside 1 ulp", what, bad, on);
    bad = check_f32(what, x_got, x_ref, xn); // the residual: x + y in fp32, other rows untouched
    TEST_CONDF(bad == 0, "%s: residual x: %zu of %zu differ", what, bad, xn);

    cudaFree(d_x); cudaFree(d_w); cudaFree(d_y); cudaFree(d_out); cudaFree(d_rows);
    free(x); free(x_ref); free(x_got); free(y_f); free(w); free(sel); free(ref); free(y); free(got); free(rows);
}

// ---- bias + rope + kv write ----------------------------------------------------------------

typedef struct rope_case {
    int n_head, n_kv, head_dim, rope_dim;
} rope_case;

// cs_offset: floats by which the table is shifted on the device (2: 8-byte aligned only,
// which the launcher must handle by leaving its 16-byte table loads).
static void test_rope_kv(int n_tok, rope_case rc, int neox, bool with_bias, int cs_offset) {
    const int max_pos = 4096;
    const int n_head = rc.n_head, n_kv = rc.n_kv, hd = rc.head_dim;
    const int width = (n_head + 2 * n_kv) * hd, q_dim = n_head * hd, kv_dim = n_kv * hd;
    const int n_slots = 2 * n_tok + 7;
    size_t qkv_n = (size_t)n_tok * width, q_n = (size_t)n_tok * q_dim, kv_n = (size_t)n_tok * kv_dim;
    size_t cache_n = (size_t)n_slots * kv_dim;

    cs_model_config cfg = {0};
    cfg.rope_theta = 10000.0f;
    cfg.rope_dim = rc.rope_dim;
    cfg.rope_scaling = CS_ROPE_SCALING_NONE;
    float *cos_sin = malloc((size_t)max_pos * rc.rope_dim * sizeof(float));
    cs_rope_table(&cfg, NULL, max_pos, cos_sin);

    uint16_t *qkv = malloc(qkv_n * 2);
    float *qkv_f = malloc(qkv_n * sizeof(float)), *bias = malloc((size_t)width * sizeof(float));
    int32_t *pos = malloc((size_t)n_tok * sizeof *pos), *slots = malloc((size_t)n_tok * sizeof *slots);
    fill_bf16(qkv, qkv_f, qkv_n, -3.0f, 3.0f);
    for (int i = 0; i < width; i++) bias[i] = frand(-0.5f, 0.5f);
    for (int t = 0; t < n_tok; t++) pos[t] = (int32_t)(next_u32() % max_pos);
    pos[n_tok - 1] = max_pos - 1;
    random_distinct(slots, n_tok, n_slots);

    // reference: split q / k / v (+ bias) in fp32, rotate q and k
    float *q = malloc(q_n * sizeof(float)), *k = malloc(kv_n * sizeof(float)), *v = malloc(kv_n * sizeof(float));
    for (int t = 0; t < n_tok; t++)
        for (int c = 0; c < width; c++) {
            float val = qkv_f[(size_t)t * width + c];
            if (with_bias) val += bias[c];
            if (c < q_dim) q[(size_t)t * q_dim + c] = val;
            else if (c < q_dim + kv_dim) k[(size_t)t * kv_dim + c - q_dim] = val;
            else v[(size_t)t * kv_dim + c - q_dim - kv_dim] = val;
        }
    cs_cpu_rope(q, pos, n_tok, n_head, hd, rc.rope_dim, cos_sin, neox);
    cs_cpu_rope(k, pos, n_tok, n_kv, hd, rc.rope_dim, cos_sin, neox);

    // caches start as a known pattern (finite, distinct per element)
    uint16_t *kc0 = malloc(cache_n * 2), *vc0 = malloc(cache_n * 2);
    for (size_t i = 0; i < cache_n; i++) {
        kc0[i] = (uint16_t)(0x3c00 + (i * 7) % 509);
        vc0[i] = (uint16_t)(0xbc00 + (i * 13) % 499);
    }
    uint16_t *d_qkv = dev_copy(qkv, qkv_n * 2), *d_q = dev_alloc(q_n * 2);
    uint16_t *d_kc = dev_copy(kc0, cache_n * 2), *d_vc = dev_copy(vc0, cache_n * 2);
    float *d_bias = dev_copy(bias, (size_t)width * sizeof(float));
    size_t cs_n = (size_t)max_pos * rc.rope_dim;
    float *d_cs_buf = dev_alloc((cs_n + (size_t)cs_offset) * sizeof(float)), *d_cs = d_cs_buf + cs_offset;
    CS_ASSERT(cudaMemcpy(d_cs, cos_sin, cs_n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    int32_t *d_pos = dev_copy(pos, (size_t)n_tok * sizeof *pos), *d_slots = dev_copy(slots, (size_t)n_tok * sizeof *slots);
    poison(d_q, q_n * 2);
    cs_cuda_rope_kv_write(d_q, d_kc, d_vc, d_qkv, with_bias ? d_bias : NULL, d_pos, d_slots, d_cs, n_tok,
                          n_head, n_kv, hd, rc.rope_dim, neox, NULL);
    uint16_t *q_got = malloc(q_n * 2), *kc = malloc(cache_n * 2), *vc = malloc(cache_n * 2);
    to_host(q_got, d_q, q_n * 2);
    to_host(kc, d_kc, cache_n * 2);
    to_host(vc, d_vc, cache_n * 2);

    char what[128];
    snprintf(what, sizeof what, "rope_kv n_tok=%d heads=%d/%d hd=%d rope_dim=%d neox=%d bias=%d cs+%d", n_tok,
             n_head, n_kv, hd, rc.rope_dim, neox, with_bias, cs_offset);
    size_t bad = check_bf16(what, q_got, q, q_n);
    TEST_CONDF(bad == 0, "%s: q: %zu of %zu outside 1 ulp", what, bad, q_n);
    // written rows: gather them in token order; every other row keeps its pattern
    uint16_t *k_rows = malloc(kv_n * 2), *v_rows = malloc(kv_n * 2);
    for (int t = 0; t < n_tok; t++) {
        memcpy(k_rows + (size_t)t * kv_dim, kc + (size_t)slots[t] * kv_dim, (size_t)kv_dim * 2);
        memcpy(v_rows + (size_t)t * kv_dim, vc + (size_t)slots[t] * kv_dim, (size_t)kv_dim * 2);
        memcpy(kc + (size_t)slots[t] * kv_dim, kc0 + (size_t)slots[t] * kv_dim, (size_t)kv_dim * 2);
        memcpy(vc + (size_t)slots[t] * kv_dim, vc0 + (size_t)slots[t] * kv_dim, (size_t)kv_dim * 2);
    }
    bad = check_bf16(what, k_rows, k, kv_n);
    TEST_CONDF(bad == 0, "%s: k rows: %zu of %zu outside 1 ulp", what, bad, kv_n);
    bad = check_bf16(what, v_rows, v, kv_n);
    TEST_CONDF(bad == 0, "%s: v rows: %zu of %zu outside 1 ulp", what, bad, kv_n);
    TEST_CONDF(memcmp(kc, kc0, cache_n * 2) == 0 && memcmp(vc, vc0, cache_n * 2) == 0,
               "%s: cache rows outside slots were modified", what);

    cudaFree(d_qkv); cudaFree(d_q); cudaFree(d_kc); cudaFree(d_vc); cudaFree(d_bias); cudaFree(d_cs_buf);
    cudaFree(d_pos); cudaFree(d_slots);
    free(cos_sin); free(qkv); free(qkv_f); free(bias); free(pos); free(slots); free(q); free(k); free(v);
    free(kc0); free(vc0); free(q_got); free(kc); free(vc); free(k_rows); free(v_rows);
}

// ---- swiglu ----------------------------------------------------------------------------

static void test_swiglu(int n, int ffn) {
    size_t in_n = (size_t)n * 2 * ffn, on = (size_t)n * ffn;
    uint16_t *gu = malloc(in_n * 2), *got = malloc(on * 2);
    float *gu_f = malloc(in_n * sizeof(float)), *g = malloc(on * sizeof(float)), *u = malloc(on * sizeof(float));
    float *ref = malloc(on * sizeof(float));
    fill_bf16(gu, gu_f, in_n, -4.0f, 4.0f);
    // a few extremes: expf(-g) overflows to inf (result -0) or underflows (silu(g) = g)
    gu[0] = cs_f32_to_bf16(-100.0f);
    gu[(size_t)(n - 1) * 2 * ffn + ffn - 1] = cs_f32_to_bf16(100.0f);
    gu_f[0] = -100.0f;
    gu_f[(size_t)(n - 1) * 2 * ffn + ffn - 1] = 100.0f;
    for (int r = 0; r < n; r++) {
        memcpy(g + (size_t)r * ffn, gu_f + (size_t)r * 2 * ffn, (size_t)ffn * sizeof(float));
        memcpy(u + (size_t)r * ffn, gu_f + (size_t)r * 2 * ffn + ffn, (size_t)ffn * sizeof(float));
    }
    cs_cpu_swiglu(ref, g, u, (int)on);

    uint16_t *d_gu = dev_copy(gu, in_n * 2), *d_out = dev_alloc(on * 2);
    poison(d_out, on * 2);
    cs_cuda_swiglu(d_out, d_gu, n, ffn, NULL);
    to_host(got, d_out, on * 2);
    char what[64];
    snprintf(what, sizeof what, "swiglu n=%d ffn=%d", n, ffn);
    size_t bad = check_bf16(what, got, ref, on);
    TEST_CONDF(bad == 0, "%s: %zu of %zu outside 1 ulp", what, bad, on);

    cudaFree(d_gu); cudaFree(d_out);
    free(gu); free(got); free(gu_f); free(g); free(u); free(ref);
}

// ---- bf16 GEMV --------------------------------------------------------------------------

// out (m, n) = x w^T against a float64 sum of the same bf16 values: within one bf16 ulp (bf16
// out) plus 1e-5 of the sum of |terms| (fp32 sums in another order); the row past m untouched.
static void test_gemv(int m, int n, int k, int out_f32) {
    size_t wn = (size_t)n * k, xn = (size_t)m * k, on = (size_t)(m + 1) * n, es = out_f32 ? 4 : 2;
    uint16_t *w = malloc(wn * 2), *x = malloc(xn * 2);
    float *wf = malloc(wn * 4), *xf = malloc(xn * 4);
    fill_bf16(w, wf, wn, -1.0f, 1.0f);
    fill_bf16(x, xf, xn, -1.0f, 1.0f);
    void *d_w = dev_copy(w, wn * 2), *d_x = dev_copy(x, xn * 2), *d_out = dev_alloc(on * es);
    poison(d_out, on * es);
    cs_cuda_gemv(d_out, out_f32, d_x, d_w, m, n, k, NULL);
    unsigned char *got = malloc(on * es);
    to_host(got, d_out, on * es);
    size_t bad = 0;
    double worst = 0;
    for (int t = 0; t < m; t++)
        for (int r = 0; r < n; r++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < k; i++) {
                double p = (double)wf[(size_t)r * k + i] * xf[(size_t)t * k + i];
                ref += p;
                mag += fabs(p);
            }
            size_t at = (size_t)t * n + r;
            float g = out_f32 ? ((float *)got)[at] : cs_bf16_to_f32(((uint16_t *)got)[at]);
            double tol = 1e-5 * mag + (out_f32 ? 1e-30 : bf16_ulp(cs_f32_to_bf16((float)ref)));
            double d = fabs((double)g - ref);
            if (isfinite(g) && d / tol > worst) worst = d / tol;
            if (isfinite(g) && d <= tol) continue;
            if (bad++ < 5) fprintf(stderr, "  gemv m=%d n=%d k=%d [%d, %d]: got %.9g, want %.9g\n", m, n, k, t, r, (double)g, ref);
        }
    size_t touched = 0; // the row past m keeps its NaN poison
    for (size_t i = (size_t)m * n * es; i < on * es; i++) touched += got[i] != 0xff;
    TEST_CONDF(bad == 0 && touched == 0, "gemv m=%d n=%d k=%d %s: %zu of %d wrong, %zu bytes past m written", m, n, k,
               out_f32 ? "f32" : "bf16", bad, m * n, touched);
    printf("  gemv m=%d n=%d k=%d %s: worst %.2f of the tolerance\n", m, n, k, out_f32 ? "f32" : "bf16", worst);
    cudaFree(d_w), cudaFree(d_x), cudaFree(d_out);
    free(w), free(x), free(wf), free(xf), free(got);
}

int main(void) {
    if (cs_cuda_device_count() == 0) {
        puts("no CUDA device: skipped");
        return 77;
    }
    const int ns[] = {1, 3, 17, 257}, dims[] = {64, 576, 4096, 8192};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            test_embed(ns[a], dims[b]);
            for (int v = 0; v < 4; v++) test_rmsnorm(ns[a], dims[b], v & 1, v >> 1);
            test_swiglu(ns[a], dims[b]);
        }
    test_swiglu(3, 14336);
    test_rmsnorm(5, 16384, true, true); // the largest dim the launcher takes

    // every token count a GEMV kernel is built for and between; k not a multiple of 256 (576)
    // or of a warp's share (24, 1000); n not a multiple of 4 rows; Llama-3-8B shapes; lm_head
    const int gm[] = {1, 2, 3, 4, 5, 8};
    for (int a = 0; a < 6; a++) {
        test_gemv(gm[a], 13, 24, a & 1);
        test_gemv(gm[a], 577, 576, 0);
        test_gemv(gm[a], 1027, 1000, 1);
        test_gemv(gm[a], 1024, 4096, 0);
    }
    test_gemv(1, 14336, 4096, 0);
    test_gemv(8, 4096, 14336, 0);
    test_gemv(1, 49152, 576, 1);

    // Llama-3-8B (32/8, 128), GQA 9/3 at 64, partial rotation (rope_dim 64 of 128), NeoX
    // halves that are not multiples of 8 (rope_dim 40: 20), chunks straddling rope_dim (20),
    // and the smallest head (8).
    const rope_case cases[] = {{32, 8, 128, 128}, {9, 3, 64, 64}, {8, 2, 128, 64},
                               {4, 2, 64, 40},    {4, 2, 64, 20}, {2, 1, 8, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int a = 0; a < 4; a++)
            for (int neox = 0; neox < 2; neox++)
                for (int bias = 0; bias < 2; bias++) test_rope_kv(ns[a], cases[c], neox, bias, 0);
    for (int neox = 0; neox < 2; neox++) { // a table only 8-byte aligned
        test_rope_kv(17, cases[0], neox, true, 2);
        test_rope_kv(3, cases[1], neox, false, 2);
    }
    return TEST_REPORT();
}
#endif
