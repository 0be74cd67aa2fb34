// CPU kernels against naive double-precision references on random inputs of odd shapes,
// plus the properties the engine relies on (a row's result does not depend on the batch).
#include <math.h>
#include <string.h>

#include "common/thread_pool.h"
#include "kernels/kernels.h"
#include "test_util.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) { // uniform in [-1, 1)
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = frand();
}

// Random weights of type t for an (n, k) matrix, and their exact fp32 values.
static void *make_weights(cs_dtype t, int n, int k, float *exact) {
    size_t row_bytes;
    cs_dtype_row_bytes(t, k, &row_bytes);
    unsigned char *w = malloc(row_bytes * n);
    for (size_t i = 0; i < row_bytes * n; i++) w[i] = (unsigned char)(frand() * 128 + 128);
    int bb = cs_dtype_block_bytes(t);
    if (t == CS_DTYPE_F32)
        fill((float *)w, (size_t)n * k);
    else if (t == CS_DTYPE_F16 || t == CS_DTYPE_BF16)
        for (size_t i = 0; i < (size_t)n * k; i++) {
            uint16_t h = t == CS_DTYPE_F16 ? cs_f32_to_fp16(frand()) : cs_f32_to_bf16(frand());
            memcpy(w + 2 * i, &h, 2);
        }
    else
        for (size_t b = 0; b < row_bytes * n / bb; b++) {
            float df = frand() * 0.1f, mf = frand() * 0.5f;
            uint16_t d = cs_f32_to_fp16(df), m = cs_f32_to_fp16(mf);
            if (t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128) { // fp32 d, m
                memcpy(w + b * bb, &df, 4);
                memcpy(w + b * bb + 4, &mf, 4);
                continue;
            }
            memcpy(w + b * bb, &d, 2);
            if (t == CS_DTYPE_Q4_1) memcpy(w + b * bb + 2, &m, 2);
        }
    for (int r = 0; r < n; r++) cs_cpu_dequant_row(t, w + r * row_bytes, exact + (size_t)r * k, k);
    return w;
}

static void test_matmul(cs_pool *pool) {
    // m = 1, 2..8 and 9.. take the three paths (one-row GEMV, several-row GEMV, tiled)
    const int shapes[][3] = {{1, 1, 32},  {2, 9, 64},   {3, 5, 64},    {7, 19, 96},
                             {8, 33, 128}, {9, 8, 64}, {16, 64, 576}, {33, 17, 160}, {1, 49, 1536},
                             {1, 7, 40},   {2, 5, 72}}; // 16-bit floats with k % 32 != 0: tiled at m = 1
    for (int t = 0; t < CS_DTYPE_COUNT; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            if (k % cs_dtype_block_elems((cs_dtype)t)) continue; // groups of 64 and 128: test_quant.c
            float *x = malloc(sizeof(float) * m * k), *we = malloc(sizeof(float) * n * k);
            float *bias = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * m * n);
            float *row = malloc(sizeof(float) * n);
            fill(x, (size_t)m * k);
            fill(bias, n);
            void *w = make_weights((cs_dtype)t, n, k, we);
            float *scratch = aligned_alloc(64, cs_cpu_matmul_scratch(k, cs_pool_threads(pool)) + 64);
            cs_cpu_matmul(out, x, w, (cs_dtype)t, bias, m, n, k, scratch, pool);
            double max_err = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    // fp32 summation error is bounded relative to sum |x w|, not to |result|
                    double ref = bias[j], mag = fabs(bias[j]);
                    for (int c = 0; c < k; c++) {
                        ref += (double)x[i * k + c] * we[j * k + c];
                        mag += fabs((double)x[i * k + c] * we[j * k + c]);
                    }
                    double e = fabs(out[i * n + j] - ref) / (mag + 1e-30);
                    if (e > max_err) max_err = e;
                }
            TEST_CONDF(max_err < 4e-7, "matmul %s %dx%dx%d: max rel err %g", cs_dtype_name((cs_dtype)t), m, n, k, max_err);
            // batch invariance: the last row alone gives bit-identical results
            cs_cpu_matmul(row, x + (size_t)(m - 1) * k, w, (cs_dtype)t, bias, 1, n, k, scratch, pool);
            TEST_CONDF(!memcmp(row, out + (size_t)(m - 1) * n, sizeof(float) * n),
                       "matmul %s %dx%dx%d: row differs alone vs batched", cs_dtype_name((cs_dtype)t), m, n, k);
            free(x); free(we); free(bias); free(out); free(row); free(w); free(scratch);
        }
}

// Paged attention against dense attention in double over the same K/V gathered through the
// tables: three sequences (q_len new tokens after kv_len - q_len cached), random physical
// blocks, NaN in every slot no sequence owns. Contexts past one online-softmax chunk (128),
// head sizes with and without a 64-wide part and a scalar tail. Then batch invariance: the
// last sequence alone gives bit-identical rows, and so does a pool of one thread (which
// splits the heads of a KV group differently among tasks).
static void attention_case(cs_pool *pool, cs_pool *pool1, int n_head, int n_kv, int hd, int bs, const int32_t q_len[3],
                           const int32_t kv_len_in[3]) {
    const int kv_dim = n_kv * hd;
    int32_t q_start[4] = {0}, kv_len[3], bt_start[4] = {0};
    int n_blocks = 0;
    for (int s = 0; s < 3; s++) {
        q_start[s + 1] = q_start[s] + q_len[s];
        kv_len[s] = kv_len_in[s];
        n_blocks += (kv_len[s] + bs - 1) / bs + 1;
    }
    int32_t *table = malloc(sizeof(int32_t) * n_blocks), *perm = malloc(sizeof(int32_t) * n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) { // random distinct physical blocks
        int j = (int)((frand() + 1) * 0.5f * (i + 1)) % (i + 1), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    int used = 0;
    for (int s = 0; s < 3; s++) {
        int nb = (kv_len[s] + bs - 1) / bs;
        for (int b = 0; b < nb; b++) table[used + b] = perm[used + b];
        used += nb;
        bt_start[s + 1] = used;
    }
    cs_attn_batch ab = {3, q_start, kv_len, bt_start, table, bs};
    size_t cache_n = (size_t)n_blocks * bs * kv_dim;
    float *kc = malloc(cache_n * 4), *vc = malloc(cache_n * 4);
    for (size_t i = 0; i < cache_n; i++) kc[i] = vc[i] = NAN; // unused slots must never be read
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < kv_len[s]; p++) {
            int slot = table[bt_start[s] + p / bs] * bs + p % bs;
            fill(kc + (size_t)slot * kv_dim, kv_dim);
            fill(vc + (size_t)slot * kv_dim, kv_dim);
        }
    int T = q_start[3];
    size_t out_n = (size_t)T * n_head * hd;
    float *q = malloc(sizeof(float) * out_n), *out = malloc(sizeof(float) * out_n);
    float *out1 = malloc(sizeof(float) * out_n), *alone = malloc(sizeof(float) * out_n);
    for (size_t i = 0; i < out_n; i++) q[i] = frand() * 2; // scores of a few units: a real softmax
    float *scratch = malloc(cs_cpu_attention_scratch(n_head, cs_pool_threads(pool)));
    float scale = 1.0f / sqrtf(hd);
    cs_cpu_attention(out, q, kc, vc, &ab, n_head, n_kv, hd, scale, scratch, pool);
    double max_err = 0, *w = malloc(sizeof(double) * 4096); // the longest context is 2100
    for (int s = 0; s < 3; s++)
        for (int t = q_start[s]; t < q_start[s + 1]; t++)
            for (int h = 0; h < n_head; h++) {
                int visible = kv_len[s] - (q_start[s + 1] - q_start[s]) + (t - q_start[s]) + 1;
                double mx = -1e30, sum = 0;
                const float *qv = q + ((size_t)t * n_head + h) * hd;
                for (int p = 0; p < visible; p++) {
                    int slot = table[bt_start[s] + p / bs] * bs + p % bs;
                    const float *kv = kc + (size_t)slot * kv_dim + (h / (n_head / n_kv)) * hd;
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += (double)qv[i] * kv[i];
                    w[p] = d * scale;
                    if (w[p] > mx) mx = w[p];
                }
                for (int p = 0; p < visible; p++) sum += (w[p] = exp(w[p] - mx));
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int p = 0; p < visible; p++) {
                        int slot = table[bt_start[s] + p / bs] * bs + p % bs;
                        o += w[p] / sum * vc[(size_t)slot * kv_dim + (h / (n_head / n_kv)) * hd + i];
                    }
                    double e = fabs(out[((size_t)t * n_head + h) * hd + i] - o);
                    if (!(e <= max_err)) max_err = e; // NaN propagates into max_err
                }
            }
    TEST_CONDF(max_err < 1e-5, "attention %d/%d heads, d=%d, block %d, contexts %d/%d/%d: max abs err %g", n_head, n_kv,
               hd, bs, kv_len[0], kv_len[1], kv_len[2], max_err);

    float *scratch1 = malloc(cs_cpu_attention_scratch(n_head, 1));
    cs_cpu_attention(out1, q, kc, vc, &ab, n_head, n_kv, hd, scale, scratch1, pool1);
    TEST_CONDF(!memcmp(out, out1, sizeof(float) * out_n), "attention d=%d: one thread differs from %d", hd,
               cs_pool_threads(pool));
    int32_t q_one[2] = {0, q_len[2]}, bt_one[2] = {0, bt_start[3] - bt_start[2]};
    cs_attn_batch one = {1, q_one, kv_len + 2, bt_one, table + bt_start[2], bs};
    cs_cpu_attention(alone, q + (size_t)q_start[2] * n_head * hd, kc, vc, &one, n_head, n_kv, hd, scale, scratch, pool);
    TEST_CONDF(!memcmp(alone, out + (size_t)q_start[2] * n_head * hd, sizeof(float) * (size_t)q_len[2] * n_head * hd),
               "attention d=%d: a sequence alone differs from batched", hd);
    free(kc); free(vc); free(q); free(out); free(out1); free(alone); free(scratch); free(scratch1); free(w);
    free(table); free(perm);
}

static void test_attention(cs_pool *pool, cs_pool *pool1) {
    attention_case(pool, pool1, 8, 2, 32, 5, (const int32_t[]){1, 3, 7}, (const int32_t[]){13, 3, 40});
    attention_case(pool, pool1, 8, 2, 64, 16, (const int32_t[]){1, 2, 130}, (const int32_t[]){300, 129, 400});
    attention_case(pool, pool1, 9, 3, 72, 7, (const int32_t[]){1, 1, 9}, (const int32_t[]){257, 128, 140});
    attention_case(pool, pool1, 4, 4, 36, 3, (const int32_t[]){2, 1, 5}, (const int32_t[]){130, 1, 260});
    attention_case(pool, pool1, 8, 1, 128, 16, (const int32_t[]){1, 4, 1}, (const int32_t[]){1000, 4, 2100});
}

static void test_rope_and_norm(void) {
    // rope at position p rotates pair (a, b) by angle p * freq: check against cos/sin directly
    const int hd = 8, rd = 8, max_pos = 4;
    float table[4 * 4 * 2];
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < rd / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / rd);
            table[(p * 4 + i) * 2] = (float)cos(ang);
            table[(p * 4 + i) * 2 + 1] = (float)sin(ang);
        }
    for (int neox = 0; neox < 2; neox++) {
        float x[hd], y[hd];
        fill(x, hd);
        memcpy(y, x, sizeof x);
        int32_t pos = 3;
        cs_cpu_rope(y, &pos, 1, 1, hd, rd, table, neox);
        for (int i = 0; i < rd / 2; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + rd / 2 : 2 * i + 1;
            double ang = 3 * pow(10000.0, -2.0 * i / rd);
            TEST_COND(fabs(y[a] - (x[a] * cos(ang) - x[b] * sin(ang))) < 1e-6);
            TEST_COND(fabs(y[b] - (x[b] * cos(ang) + x[a] * sin(ang))) < 1e-6);
        }
    }
    float x[5] = {1, -2, 3, -4, 5}, w[5] = {1, 2, 3, 4, 5}, o[5];
    cs_cpu_rmsnorm(o, x, w, 1, 5, 1e-5f);
    double inv = 1.0 / sqrt((1 + 4 + 9 + 16 + 25) / 5.0 + 1e-5);
    for (int i = 0; i < 5; i++) TEST_COND(fabs(o[i] - x[i] * inv * w[i]) < 1e-6);
    float g[3] = {0, 1, -20}, u[3] = {3, 2, 1}, s[3];
    cs_cpu_swiglu(s, g, u, 3);
    TEST_COND(s[0] == 0 && fabs(s[1] - 2 / (1 + exp(-1.0))) < 1e-6 && fabs(s[2]) < 1e-7);
}

// The softmax normaliser against float64 sums of exp: every exp within 2 ulp of expf, on
// lengths off the 8-lane width, with -inf and NaN terms counting 0 and terms far below m too.
// The softmax pieces (kernels/cpu/softmax.c) against float64.
static void test_sum_exp(void) {
    uint64_t st = 0x9e3779b97f4a7c15ull;
    const int64_t ns[] = {1, 7, 8, 9, 1000, 49152, 128257};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        float *x = malloc(sizeof(float) * (size_t)n), m = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 120.0 - 100.0); // [-100, 20)
            if (i % 97 == 5) x[i] = -INFINITY;
            if (i % 131 == 7) x[i] = NAN;
            if (x[i] > m) m = x[i];
        }
        double ref = 0, worst = 0;
        for (int64_t i = 0; i < n; i++)
            if (x[i] - m >= -87.3f) ref += exp((double)(x[i] - m)); // d rounded to float, as the kernel has it
        TEST_CONDF(cs_cpu_max(x, n) == m, "max n=%lld: %g, want %g", (long long)n, (double)cs_cpu_max(x, n),
                   (double)m);
        // the weights at temperature 1 / s: each within 2 ulp of float64, the array form equal
        // to the one-element form bit for bit, 0 below 2^-126 and for -inf and NaN
        const float scales[] = {1.0f, 1.25f, 0.5f};
        float *w = malloc(sizeof(float) * (size_t)n);
        for (size_t k = 0; k < 3; k++) {
            cs_cpu_exp_scaled(x, n, m, scales[k], w);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) {
                float d = (x[i] - m) * scales[k];
                double e = d >= -87.3f ? exp((double)d) : 0.0;
                float one = cs_cpu_exp_scaled1(x[i], m, scales[k]);
                if (memcmp(&one, &w[i], 4) || fabs(w[i] - e) > 2.5 * e * 0x1p-23 || (isnan(d) && w[i] != 0.0f)) bad++;
            }
            TEST_CONDF(bad == 0, "exp_scaled n=%lld s=%g: %lld of the weights wrong", (long long)n, (double)scales[k],
                       (long long)bad);
        }
        free(w);
        // top-p buckets (32 per unit, 1024 of them, as the sampler has them): the vector form
        // against the scalar definition, element by element
        uint16_t *bk = malloc(sizeof(uint16_t) * (size_t)n);
        for (size_t k = 0; k < 3; k++) {
            const float s32 = scales[k] * 32.0f;
            cs_cpu_bucket16(x, n, m, s32, 1023, bk);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) {
                float d = (m - x[i]) * s32;
                int want = x[i] == m ? 0 : d < 1023.0f ? (int)d : 1023;
                bad += bk[i] != want;
            }
            TEST_CONDF(bad == 0, "bucket16 n=%lld s=%g: %lld buckets wrong", (long long)n, (double)s32, (long long)bad);
        }
        free(bk);
        double got = cs_cpu_sum_exp(x, n, m);
        worst = fabs(got - ref) / ref;
        TEST_CONDF(worst < 3e-7, "sum_exp n=%lld: %.9g, float64 %.9g (rel %.2g)", (long long)n, got, ref, worst);
        for (int64_t i = 0; i < n && i < 64; i++) { // one term at a time: each exp within 2 ulp
            if (!(x[i] - m >= -87.3f)) continue;
            double e = exp((double)(x[i] - m)), g = cs_cpu_sum_exp(&x[i], 1, m);
            TEST_CONDF(fabs(g - e) <= 2.5 * e * 0x1p-23 + 1e-45, "exp(%g): %.9g, want %.9g", (double)x[i] - m, g, e);
        }
        free(x);
    }
    float one[] = {3.0f, -INFINITY, NAN};
    TEST_COND(cs_cpu_sum_exp(one, 3, 3.0f) == 1.0); // exp(0) is exactly 1; the rest count 0
    float none[9] = {-INFINITY, NAN, -INFINITY, -INFINITY, NAN, -INFINITY, -INFINITY, -INFINITY, NAN};
    TEST_COND(cs_cpu_max(none, 9) == -INFINITY && cs_cpu_max(none, 0) == -INFINITY);
    none[8] = -1.0f; // past the vector part
    TEST_COND(cs_cpu_max(none, 9) == -1.0f);
}

int main(void) {
    test_sum_exp();
    cs_pool *pool = cs_pool_init(3);
    test_matmul(NULL);
    test_matmul(pool);
    cs_pool *pool1 = cs_pool_init(1);
    test_attention(pool, pool1);
    cs_pool_free(pool1);
    test_rope_and_norm();
    cs_pool_free(pool);
    return TEST_REPORT();
}
