// The two loaders on one real model: the GGUF file (CSERVE_MODEL) and the same model written
// as a Hugging Face directory by tools/gguf_to_hf.py (CSERVE_HF_DIR) must give the same
// config, the same tensor set, bit-identical values (each GGUF row dequantised with
// cs_cpu_dequant_row against the F32 row of the safetensors file, q/k rows un-permuted), and
// the same tokenizer ids. Exits 77 (skipped) when either is absent.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/model_file.h"
#include "engine/tokenizer.h"
#include "kernels/kernels.h"
#include "test_util.h"

static void test_config(const cs_model_config *g, const cs_model_config *h) {
    TEST_COND(g->arch == h->arch);
    TEST_COND(g->n_layer == h->n_layer && g->dim == h->dim && g->ffn_dim == h->ffn_dim);
    TEST_COND(g->n_head == h->n_head && g->n_head_kv == h->n_head_kv);
    TEST_COND(g->head_dim == h->head_dim && g->vocab_size == h->vocab_size);
    TEST_COND(g->context_len == h->context_len);
    TEST_CONDF(g->rms_eps == h->rms_eps, "%g vs %g", (double)g->rms_eps, (double)h->rms_eps);
    TEST_COND(g->rope_theta == h->rope_theta && g->rope_dim == h->rope_dim);
    TEST_COND(g->rope_scaling == h->rope_scaling && g->rope_factor == h->rope_factor);
    TEST_COND(g->rope_low_freq_factor == h->rope_low_freq_factor);
    TEST_COND(g->rope_high_freq_factor == h->rope_high_freq_factor);
    TEST_COND(g->rope_orig_context == h->rope_orig_context);
    TEST_COND(g->rope_freqs_tensor == h->rope_freqs_tensor);
    TEST_COND(g->tied_embeddings == h->tied_embeddings && g->attn_bias == h->attn_bias);
    // The one intended difference: llama.cpp permuted q/k rows, Hugging Face did not.
    TEST_COND(g->rope_layout == CS_ROPE_NORM && h->rope_layout == CS_ROPE_NEOX);
}

// The Hugging Face row holding GGUF row r of a q/k projection. llama.cpp's converter moved HF
// row h*hd + j*hd/2 + i (head h, half j, pair i) to h*hd + 2*i + j, so that rotary pairs sit
// side by side.
static int64_t hf_row(int64_t r, int64_t hd) {
    int64_t h = r / hd, k = r % hd, i = k / 2, j = k % 2;
    return h * hd + j * (hd / 2) + i;
}

static bool is_qk(const char *name) {
    size_t n = strlen(name);
    return (n > 13 && strcmp(name + n - 13, "attn_q.weight") == 0) ||
           (n > 13 && strcmp(name + n - 13, "attn_k.weight") == 0);
}

static void test_tensors(const cs_model_file *g, const cs_model_file *h) {
    TEST_CONDF(g->n_tensors == h->n_tensors, "%d vs %d", g->n_tensors, h->n_tensors);
    int64_t hd = g->cfg.head_dim;
    bool permuted = g->cfg.rope_layout == CS_ROPE_NORM;
    int mismatched_tensors = 0;
    float *row = NULL;
    size_t row_cap = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const cs_model_tensor *gt = &g->tensors[i];
        const cs_model_tensor *ht = cs_model_file_tensor(h, gt->name);
        TEST_CONDF(ht != NULL, "HF directory lacks %s", gt->name);
        if (!ht) continue;
        bool same_shape = gt->n_dims == ht->n_dims;
        for (int d = 0; d < gt->n_dims && same_shape; d++) same_shape = gt->ne[d] == ht->ne[d];
        TEST_CONDF(same_shape && ht->dtype == CS_DTYPE_F32, "%s: shape or dtype differs",
                   gt->name);
        if (!same_shape || ht->dtype != CS_DTYPE_F32) continue;
        int64_t ne0 = gt->ne[0], rows = gt->n_dims > 1 ? gt->ne[1] : 1;
        size_t gbytes;
        TEST_COND(cs_dtype_row_bytes(gt->dtype, ne0, &gbytes));
        if ((size_t)ne0 > row_cap) {
            row_cap = (size_t)ne0;
            row = realloc(row, row_cap * sizeof *row);
            if (!row) abort();
        }
        bool qk = permuted && is_qk(gt->name);
        int64_t bad = 0, first_bad = -1;
        for (int64_t r = 0; r < rows; r++) {
            cs_cpu_dequant_row(gt->dtype, (const char *)gt->data + r * gbytes, row, ne0);
            int64_t hr = qk ? hf_row(r, hd) : r;
            const float *want = (const float *)ht->data + hr * ne0;
            if (memcmp(row, want, (size_t)ne0 * sizeof *row) != 0) {
                if (first_bad < 0) first_bad = r;
                bad++;
            }
        }
        if (bad) {
            mismatched_tensors++;
            fprintf(stderr, "%s (%s): %lld of %lld rows differ, first GGUF row %lld\n",
                    gt->name, cs_dtype_name(gt->dtype), (long long)bad, (long long)rows,
                    (long long)first_bad);
        }
    }
    free(row);
    TEST_CONDF(mismatched_tensors == 0, "%d tensors differ", mismatched_tensors);
}

static void test_tokenizer(const cs_tokenizer *g, const cs_tokenizer *h) {
    int32_t n = cs_tokenizer_vocab_size(g);
    TEST_CONDF(n == cs_tokenizer_vocab_size(h), "%d vs %d", n, cs_tokenizer_vocab_size(h));
    TEST_COND(cs_tokenizer_kind(g) == cs_tokenizer_kind(h));
    TEST_COND(cs_tokenizer_pretok(g) == cs_tokenizer_pretok(h));
    TEST_COND(cs_tokenizer_bos(g) == cs_tokenizer_bos(h) &&
              cs_tokenizer_eos(g) == cs_tokenizer_eos(h));
    const char *tg = cs_tokenizer_chat_template(g), *th = cs_tokenizer_chat_template(h);
    TEST_COND(tg && th && strcmp(tg, th) == 0);
    int bad_pieces = 0, bad_special = 0;
    for (int32_t id = 0; id < n && id < cs_tokenizer_vocab_size(h); id++) {
        size_t lg = 0, lh = 0;
        const char *pg = cs_tokenizer_piece(g, id, &lg), *ph = cs_tokenizer_piece(h, id, &lh);
        if (!pg || !ph || lg != lh || memcmp(pg, ph, lg) != 0) {
            if (bad_pieces++ < 5) fprintf(stderr, "piece %d differs\n", id);
        }
        bad_special += cs_tokenizer_is_special(g, id) != cs_tokenizer_is_special(h, id) ||
                       cs_tokenizer_is_eog(g, id) != cs_tokenizer_is_eog(h, id);
    }
    TEST_CONDF(bad_pieces == 0, "%d pieces differ", bad_pieces);
    TEST_CONDF(bad_special == 0, "%d special/eog flags differ", bad_special);

    static const char *const texts[] = {
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog. 1234567890",
        "  leading spaces\tand\ttabs\n\nnew lines   ",
        ("Unicode: caf\xc3\xa9, na\xc3\xafve, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, "
         "\xf0\x9f\x98\x80 emoji"),
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "def f(x):\n    return x ** 2  # squares\n",
        "",
    };
    static const int flags[] = {0, CS_TOK_ADD_SPECIAL | CS_TOK_PARSE_SPECIAL};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        for (int f = 0; f < 2; f++) {
            int32_t ig[256], ih[256];
            size_t len = strlen(texts[t]);
            int ng = cs_tokenizer_encode(g, texts[t], len, flags[f], ig, 256);
            int nh = cs_tokenizer_encode(h, texts[t], len, flags[f], ih, 256);
            bool same = ng == nh && ng >= 0 && ng <= 256 &&
                        memcmp(ig, ih, (size_t)ng * sizeof *ig) == 0;
            TEST_CONDF(same, "text %zu flags %d: %d vs %d ids", t, flags[f], ng, nh);
        }
    }
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int main(void) {
    const char *gguf = test_env("CSERVE_MODEL"), *hf = test_env("CSERVE_HF_DIR");
    if (!gguf || !hf || !exists(gguf) || !exists(hf)) {
        printf("skipped: needs CSERVE_MODEL (GGUF) and CSERVE_HF_DIR (written by "
               "tools/gguf_to_hf.py)\n");
        return 77;
    }
    cs_model_file *g = NULL, *h = NULL;
    char err[CS_ERR_LEN];
    cs_status s = cs_model_file_open(gguf, &g, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s", err);
    s = cs_model_file_open(hf, &h, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s", err);
    if (g && h) {
        TEST_COND(g->format == CS_FORMAT_GGUF && h->format == CS_FORMAT_SAFETENSORS);
        test_config(&g->cfg, &h->cfg);
        test_tensors(g, h);
        test_tokenizer(g->tok, h->tok);
    }
    cs_model_file_free(g);
    cs_model_file_free(h);
    return TEST_REPORT();
}
