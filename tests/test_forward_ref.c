// The CPU forward pass against an independent, plain double-precision implementation written
// here from the formulas, on tiny random models: Llama (interleaved RoPE as GGUF stores it)
// and Qwen2 (q/k/v biases, half-split RoPE). The golden test covers Llama against Hugging Face;
// this one also reaches the paths the default model never takes.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model.h"
#include "engine/runner.h"
#include "kernels/kernels.h"
#include "test_util.h"
#include "tiny_model.h"

typedef struct ref {
    const cs_model_file *f;
    const cs_model_config *c;
} ref;

// A tensor as doubles (tiny model tensors are F32). Caller frees.
static double *tensor(const ref *R, const char *fmt, int l) {
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    const cs_model_tensor *t = cs_model_file_tensor(R->f, name);
    if (!t) return NULL;
    size_t n = (size_t)t->ne[0] * (t->n_dims > 1 ? (size_t)t->ne[1] : 1);
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = ((const float *)t->data)[i];
    return d;
}

static void matvec(double *out, const double *w, const double *x, int rows, int cols, const double *bias) {
    for (int r = 0; r < rows; r++) {
        double s = bias ? bias[r] : 0;
        for (int c = 0; c < cols; c++) s += w[(size_t)r * cols + c] * x[c];
        out[r] = s;
    }
}

static void rmsnorm(double *out, const double *x, const double *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

static void rope(double *v, int pos, int hd, double theta, bool neox) {
    for (int i = 0; i < hd / 2; i++) {
        double ang = pos * pow(theta, -2.0 * i / hd);
        int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(ang) - x1 * sin(ang);
        v[b] = x1 * cos(ang) + x0 * sin(ang);
    }
}

// Logits (n, vocab) of tokens[0..n), each position seeing itself and what precedes it.
static void forward_ref(const ref *R, const int32_t *tokens, int n, double *logits) {
    const cs_model_config *c = R->c;
    int D = c->dim, H = c->n_head, KV = c->n_head_kv, hd = c->head_dim, F = c->ffn_dim, V = c->vocab_size;
    bool neox = c->rope_layout == CS_ROPE_NEOX;
    double *x = calloc((size_t)n * D, sizeof *x), *h = malloc(sizeof(double) * D);
    double *K = malloc(sizeof(double) * n * KV * hd), *Vv = malloc(sizeof(double) * n * KV * hd);
    double *q = malloc(sizeof(double) * H * hd), *att = malloc(sizeof(double) * H * hd), *o = malloc(sizeof(double) * D);
    double *g = malloc(sizeof(double) * F), *u = malloc(sizeof(double) * F), *sc = malloc(sizeof(double) * n);
    double *emb = tensor(R, "token_embd.weight", 0);
    for (int t = 0; t < n; t++) memcpy(x + (size_t)t * D, emb + (size_t)tokens[t] * D, sizeof(double) * D);
    for (int l = 0; l < c->n_layer; l++) {
        double *an = tensor(R, "blk.%d.attn_norm.weight", l), *wq = tensor(R, "blk.%d.attn_q.weight", l);
        double *wk = tensor(R, "blk.%d.attn_k.weight", l), *wv = tensor(R, "blk.%d.attn_v.weight", l);
        double *wo = tensor(R, "blk.%d.attn_output.weight", l), *fn = tensor(R, "blk.%d.ffn_norm.weight", l);
        double *wg = tensor(R, "blk.%d.ffn_gate.weight", l), *wu = tensor(R, "blk.%d.ffn_up.weight", l);
        double *wd = tensor(R, "blk.%d.ffn_down.weight", l);
        double *bq = tensor(R, "blk.%d.attn_q.bias", l), *bk = tensor(R, "blk.%d.attn_k.bias", l);
        double *bv = tensor(R, "blk.%d.attn_v.bias", l);
        for (int t = 0; t < n; t++) { // K and V of every position first
            rmsnorm(h, x + (size_t)t * D, an, D, c->rms_eps);
            matvec(K + (size_t)t * KV * hd, wk, h, KV * hd, D, bk);
            matvec(Vv + (size_t)t * KV * hd, wv, h, KV * hd, D, bv);
            for (int k = 0; k < KV; k++) rope(K + ((size_t)t * KV + k) * hd, t, hd, c->rope_theta, neox);
        }
        for (int t = n - 1; t >= 0; t--) { // then each position's output (in place, last first)
            rmsnorm(h, x + (size_t)t * D, an, D, c->rms_eps);
            matvec(q, wq, h, H * hd, D, bq);
            for (int hh = 0; hh < H; hh++) {
                double *qh = q + hh * hd, mx = -1e300, sum = 0;
                int kh = hh / (H / KV);
                rope(qh, t, hd, c->rope_theta, neox);
                for (int p = 0; p <= t; p++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += qh[i] * K[((size_t)p * KV + kh) * hd + i];
                    sc[p] = d / sqrt(hd);
                    if (sc[p] > mx) mx = sc[p];
                }
                for (int p = 0; p <= t; p++) sum += (sc[p] = exp(sc[p] - mx));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int p = 0; p <= t; p++) a += sc[p] / sum * Vv[((size_t)p * KV + kh) * hd + i];
                    att[hh * hd + i] = a;
                }
            }
            matvec(o, wo, att, D, H * hd, NULL);
            for (int i = 0; i < D; i++) x[(size_t)t * D + i] += o[i];
            rmsnorm(h, x + (size_t)t * D, fn, D, c->rms_eps);
            matvec(g, wg, h, F, D, NULL);
            matvec(u, wu, h, F, D, NULL);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            matvec(o, wd, g, D, F, NULL);
            for (int i = 0; i < D; i++) x[(size_t)t * D + i] += o[i];
        }
        free(an); free(wq); free(wk); free(wv); free(wo); free(fn); free(wg); free(wu); free(wd);
        free(bq); free(bk); free(bv);
    }
    double *on = tensor(R, "output_norm.weight", 0), *out = c->tied_embeddings ? emb : tensor(R, "output.weight", 0);
    for (int t = 0; t < n; t++) {
        rmsnorm(h, x + (size_t)t * D, on, D, c->rms_eps);
        matvec(logits + (size_t)t * V, out, h, V, D, NULL);
    }
    if (out != emb) free(out);
    free(on); free(emb); free(x); free(h); free(K); free(Vv); free(q); free(att); free(o); free(g); free(u); free(sc);
}

static void check_model(const char *dir, tiny_opts o, const char *label) {
    char path[256], err[CS_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, label);
    TEST_COND(tiny_model_write(path, &o) == 0);
    cs_runner r;
    if (cs_runner_init(&r, path, 64, 2, 16, CS_DTYPE_COUNT, err, sizeof err) != CS_OK) {
        TEST_CONDF(0, "%s: %s", label, err);
        return;
    }
    ref R = {r.file, &r.file->cfg};
    enum { N = 21 }; // two chunks of 16: the second reads the first's KV through the block table
    int32_t tokens[N];
    for (int i = 0; i < N; i++) tokens[i] = (int32_t)(3 + (i * 37) % 250);
    int V = r.model.cfg.vocab_size;
    float *got = malloc(sizeof(float) * N * V);
    double *want = malloc(sizeof(double) * N * V);
    cs_runner_seq s = {0};
    TEST_CONDF(cs_runner_extend(&r, &s, tokens, N, CS_LOGITS_ALL, got, err, sizeof err) == CS_OK, "%s", err);
    forward_ref(&R, tokens, N, want);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)N * V; i++) {
        double d = fabs(got[i] - want[i]);
        if (!(d <= worst)) worst = d; // NaN sticks
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    printf("%s: largest logit difference %.3g (logits up to %.3g)\n", label, worst, scale);
    // measured: ~2e-8 on logits up to ~0.16; a 0.1% RoPE angle error shows as 3e-7
    TEST_CONDF(worst <= 1e-6 * scale + 1e-7, "%s: logits differ by %g (scale %g)", label, worst, scale);
    TEST_COND(s.len == N);
    cs_runner_seq_free(&r, &s);
    cs_runner_free(&r);
    free(got);
    free(want);
    unlink(path);
}

// RoPE tables with the llama3 rule (Llama-3.1: factor 8, low 1, high 4, 8192 original
// positions) and the linear rule, against the published formula evaluated here in double:
// wavelengths shorter than orig/high keep their frequency, longer than orig/low are divided
// by the factor, and those between blend linearly in orig/wavelength.
static void test_rope_scaling(void) {
    cs_model_config c = {.rope_theta = 500000.0f, .rope_dim = 128, .rope_scaling = CS_ROPE_SCALING_LLAMA3,
                         .rope_factor = 8, .rope_low_freq_factor = 1, .rope_high_freq_factor = 4,
                         .rope_orig_context = 8192};
    enum { POS = 3 };
    const int pos[POS] = {0, 1, 4095};
    float *table = malloc(sizeof(float) * 4096 * 128);
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 1) c.rope_scaling = CS_ROPE_SCALING_LINEAR, c.rope_factor = 4;
        cs_rope_table(&c, NULL, 4096, table);
        int classes[3] = {0};
        double worst = 0;
        for (int i = 0; i < 64; i++) {
            double f = 1.0 / pow(500000.0, 2.0 * i / 128), wl = 2 * M_PI / f;
            if (mode == 1) {
                f /= 4;
            } else if (wl > 8192.0 / 1) {
                f /= 8, classes[0]++;
            } else if (wl >= 8192.0 / 4) {
                double smooth = (8192.0 / wl - 1) / (4 - 1);
                f = (1 - smooth) * f / 8 + smooth * f, classes[1]++;
            } else {
                classes[2]++;
            }
            for (int k = 0; k < POS; k++) {
                // fp32 angles as Hugging Face computes them: error grows with the position
                double tol = 1e-6 + 3e-7 * pos[k] * f;
                double dc = fabs(table[((size_t)pos[k] * 64 + i) * 2] - cos(pos[k] * f));
                double ds = fabs(table[((size_t)pos[k] * 64 + i) * 2 + 1] - sin(pos[k] * f));
                if (dc / tol > worst) worst = dc / tol;
                if (ds / tol > worst) worst = ds / tol;
            }
        }
        TEST_CONDF(worst <= 1, "rope scaling mode %d: error %.2f x tolerance", mode, worst);
        if (mode == 0) TEST_CONDF(classes[0] && classes[1] && classes[2], "llama3: %d scaled, %d blended, %d kept",
                                  classes[0], classes[1], classes[2]);
    }
    free(table);
}

int main(void) {
    test_rope_scaling();
    char dir[] = "/tmp/cs_test_fwd_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    check_model(dir, (tiny_opts){0}, "llama");
    check_model(dir, (tiny_opts){.untied = 1}, "llama_untied");
    check_model(dir, (tiny_opts){.arch = "qwen2", .attn_bias = 1}, "qwen2");
    rmdir(dir);
    return TEST_REPORT();
}
