// AWQ / GPTQ checkpoints through the safetensors loader, on the directories that
// tools/write_quantized_checkpoint.py writes (run by tests/test_quant_checkpoint.sh):
//
//     check_quant_checkpoint DIR
//
// DIR/fp32 holds the dequantised int4 weights as F32; DIR/awq, DIR/gptq, DIR/gptq_v2 and
// DIR/gptq_desc_act hold the same codes, zeros and fp16 scales packed in each format. Every
// repacked matrix must dequantise bit for bit to the fp32 copy, every other tensor must be the
// same bytes, and the logits of a prompt (prefill: the tiled matmul over dequantised rows;
// one decode step: the in-register GEMV) must be bitwise equal across the directories: the
// same weights through the same kernels. DIR/bad/* must be refused with the right message.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_file.h"
#include "engine/runner.h"
#include "engine/tokenizer.h"
#include "kernels/kernels.h"
#include "test_util.h"

static const char *const QUANT_DIRS[] = {"awq", "gptq", "gptq_v2", "gptq_desc_act"};
static cs_dtype want_type = CS_DTYPE_I4_G64; // what the checkpoint's groups repack into
#define N_QUANT (int)(sizeof QUANT_DIRS / sizeof QUANT_DIRS[0])

static cs_model_file *open_dir(const char *dir, const char *sub) {
    char path[1024], err[CS_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    cs_model_file *m = NULL;
    cs_status s = cs_model_file_open(path, &m, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s: %s", path, err);
    return s == CS_OK ? m : NULL;
}

// Every tensor of q against f: repacked matrices (want_type in q, F32 in f) dequantised row by
// row and compared as bits, everything else byte for byte.
static void check_tensors(const cs_model_file *f, const cs_model_file *q, const char *label) {
    TEST_CONDF(f->n_tensors == q->n_tensors, "%s: %d tensors vs %d", label, q->n_tensors, f->n_tensors);
    TEST_CONDF(q->quant_desc[0] && !f->quant_desc[0], "%s: quant_desc '%s'", label, q->quant_desc);
    int repacked = 0;
    long long differ = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const cs_model_tensor *ft = &f->tensors[i], *qt = cs_model_file_tensor(q, ft->name);
        TEST_CONDF(qt != NULL, "%s: no %s", label, ft->name);
        if (!qt) continue;
        TEST_CONDF(qt->n_dims == ft->n_dims && !memcmp(qt->ne, ft->ne, sizeof ft->ne), "%s: %s shape", label,
                   ft->name);
        if (ft->dtype != CS_DTYPE_F32) {
            TEST_CONDF(qt->dtype == ft->dtype && qt->nbytes == ft->nbytes && !memcmp(qt->data, ft->data, ft->nbytes),
                       "%s: %s differs", label, ft->name);
            continue;
        }
        TEST_CONDF(qt->dtype == want_type, "%s: %s is %s", label, ft->name, cs_dtype_name(qt->dtype));
        if (qt->dtype != want_type || ft->n_dims != 2) continue;
        repacked++;
        int64_t cols = ft->ne[0], rows = ft->ne[1];
        size_t rb;
        TEST_COND(cs_dtype_row_bytes(qt->dtype, cols, &rb) && rb * (size_t)rows == qt->nbytes);
        float *row = malloc(sizeof(float) * (size_t)cols);
        for (int64_t r = 0; r < rows; r++) {
            cs_cpu_dequant_row(qt->dtype, (const unsigned char *)qt->data + (size_t)r * rb, row, cols);
            const float *want = (const float *)ft->data + r * cols;
            for (int64_t c = 0; c < cols; c++) {
                if (!memcmp(&row[c], &want[c], 4)) continue;
                if (differ++ < 5)
                    fprintf(stderr, "%s: %s [%lld, %lld]: %.9g, fp32 copy %.9g\n", label, ft->name, (long long)r,
                            (long long)c, (double)row[c], (double)want[c]);
            }
        }
        free(row);
    }
    TEST_CONDF(differ == 0, "%s: %lld weights differ from the fp32 copy", label, differ);
    TEST_CONDF(repacked == 14, "%s: %d repacked matrices, expected 14 (2 layers x 7)", label, repacked);
    printf("%-14s %s: %d matrices repacked, every weight equal to the fp32 copy\n", label, q->quant_desc, repacked);
}

// Logits of a prompt (all rows) and of one decode step after it; false on error.
static bool run_logits(const char *dir, const char *sub, float *prefill, float *decode, int n_prompt,
                       const int32_t *prompt, int32_t next) {
    char path[1024], err[CS_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    cs_runner r;
    if (cs_runner_init(&r, path, 64, 2, 16, CS_DTYPE_COUNT, err, sizeof err) != CS_OK) {
        TEST_CONDF(0, "%s: %s", path, err);
        return false;
    }
    cs_runner_seq s = {0};
    cs_status st = cs_runner_extend(&r, &s, prompt, n_prompt, CS_LOGITS_ALL, prefill, err, sizeof err);
    if (st == CS_OK) st = cs_runner_extend(&r, &s, &next, 1, CS_LOGITS_LAST, decode, err, sizeof err);
    TEST_CONDF(st == CS_OK, "%s: %s", path, err);
    cs_runner_seq_free(&r, &s);
    cs_runner_free(&r);
    return st == CS_OK;
}

static void check_logits(const char *dir, const cs_model_file *f) {
    static const char text[] = "The capital of France is";
    int32_t prompt[32];
    int n = cs_tokenizer_encode(f->tok, text, sizeof text - 1, 0, prompt, 32);
    TEST_CONDF(n >= 5 && n <= 32, "prompt: %d tokens", n); // > 4 rows: the tiled path
    if (n < 5 || n > 32) return;
    size_t V = (size_t)f->cfg.vocab_size;
    float *want = malloc(sizeof(float) * V * (n + 1)), *got = malloc(sizeof(float) * V * (n + 1));
    if (!run_logits(dir, "fp32", want, want + V * n, n, prompt, 1234)) {
        free(want);
        free(got);
        return;
    }
    double mag = 0;
    for (size_t i = 0; i < V * (n + 1); i++) mag = fabsf(want[i]) > mag ? fabsf(want[i]) : mag;
    TEST_CONDF(mag > 1 && mag < 1e4, "fp32 logits up to %g", mag); // a live model, not zeros or NaN
    for (int d = 0; d < N_QUANT; d++) {
        memset(got, 0xff, sizeof(float) * V * (n + 1));
        if (!run_logits(dir, QUANT_DIRS[d], got, got + V * n, n, prompt, 1234)) continue;
        size_t bad = 0;
        for (size_t i = 0; i < V * (n + 1); i++) bad += memcmp(&got[i], &want[i], 4) != 0;
        TEST_CONDF(bad == 0, "%s: %zu of %zu logits differ from fp32's", QUANT_DIRS[d], bad, V * (n + 1));
        printf("%-14s logits of %d prompt tokens and 1 decode step bitwise equal to fp32's\n", QUANT_DIRS[d], n);
    }
    free(want);
    free(got);
}

static void expect_refused(const char *dir, const char *sub, const char *message) {
    char path[1024], err[CS_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/bad/%s", dir, sub);
    cs_model_file *m = NULL;
    cs_status s = cs_model_file_open(path, &m, err, sizeof err);
    TEST_CONDF(s != CS_OK && strstr(err, message), "%s: status %d, '%s', expected '%s'", sub, (int)s, err, message);
    printf("%-14s refused: %s\n", sub, err);
    cs_model_file_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: check_quant_checkpoint DIR [GROUP] (from tools/write_quantized_checkpoint.py)\n");
        return 2;
    }
    const char *dir = argv[1];
    if (argc == 3 && (want_type = cs_dtype_int4_exact(atoi(argv[2]))) == CS_DTYPE_COUNT) {
        fprintf(stderr, "check_quant_checkpoint: group %s: use 32, 64 or 128\n", argv[2]);
        return 2;
    }
    cs_model_file *f = open_dir(dir, "fp32");
    if (!f) return TEST_REPORT();
    for (int d = 0; d < N_QUANT; d++) {
        cs_model_file *q = open_dir(dir, QUANT_DIRS[d]);
        if (q) check_tensors(f, q, QUANT_DIRS[d]);
        cs_model_file_free(q);
    }
    check_logits(dir, f);
    cs_model_file_free(f);
    expect_refused(dir, "bits8", "quantization_config.bits = 8 is not supported");
    expect_refused(dir, "group16", "quantization_config.group_size = 16 is not supported");
    expect_refused(dir, "act_order", "act-order (desc_act) GPTQ checkpoints are not supported");
    expect_refused(dir, "desc_act_no_g_idx", "act-order (desc_act) GPTQ checkpoints are not supported");
    expect_refused(dir, "qweight_shape", "q_proj.qweight' has shape [576, 71] (2 dims), expected [576, 72]");
    return TEST_REPORT();
}
