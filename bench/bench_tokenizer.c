// Encode throughput of the default model's tokenizer on a large text (one thread).
//
//     bench_tokenizer [text-file]      (default: the parity corpus repeated to ~10 MB)
//
// The model comes from $CSERVE_MODEL or models/SmolLM2-135M-Instruct.Q4_1.gguf. The token
// count is printed so it can be checked against bench/bench_tokenizer_hf.py on the same text;
// the first run's ids are also decoded and compared with the input.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file_map.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#define TARGET_BYTES (10u << 20)
#define RUNS 5

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The inputs of tests/fixtures/tokenizer_smollm2.tsv joined by "\n", repeated to ~10 MB.
// bench_tokenizer_hf.py builds the same text.
static char *corpus_text(size_t *len) {
    char *data, err[CS_ERR_LEN];
    size_t n;
    if (cs_file_read_all("tests/fixtures/tokenizer_smollm2.tsv", 64u << 20, &data, &n, err, sizeof err)) {
        fprintf(stderr, "%s (run from the source tree)\n", err);
        exit(2);
    }
    char *one = malloc(n), *out = malloc(TARGET_BYTES + n);
    size_t m = 0;
    for (char *p = data; *p;) {
        char *nl = strchr(p, '\n');
        if (*p != '#') {
            for (char *q = p; q[0] && q[1] && q[0] != '\t' && q[0] != '\n'; q += 2) {
                unsigned v;
                sscanf(q, "%2x", &v);
                one[m++] = (char)v;
            }
            one[m++] = '\n';
        }
        if (!nl) break;
        p = nl + 1;
    }
    size_t total = 0;
    while (total < TARGET_BYTES) {
        memcpy(out + total, one, m);
        total += m;
    }
    free(one);
    free(data);
    *len = total;
    return out;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *model = getenv("CSERVE_MODEL");
    if (!model || !*model) model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    char err[CS_ERR_LEN];
    cs_gguf *g;
    cs_tokenizer *tok;
    if (cs_gguf_open(model, &g, err, sizeof err) || cs_tokenizer_from_gguf(g, &tok, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    cs_gguf_free(g);
    size_t len;
    char *text;
    if (argc > 1) {
        if (cs_file_read_all(argv[1], (size_t)1 << 31, &text, &len, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
    } else {
        text = corpus_text(&len);
    }
    int cap = (int)len + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    double secs[RUNS];
    int n = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        n = cs_tokenizer_encode(tok, text, len, CS_TOK_PARSE_SPECIAL, ids, cap);
        secs[r] = now() - t0;
        if (n < 0 || n > cap) {
            fprintf(stderr, "encode failed: %d\n", n);
            return 1;
        }
    }
    // The same text line by line (each line keeps its "\n"), as bench_tokenizer_hf.py does.
    double lsecs[RUNS];
    long ln = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        ln = 0;
        for (size_t p = 0; p < len;) {
            const char *nl = memchr(text + p, '\n', len - p);
            size_t e = nl ? (size_t)(nl - text) + 1 : len;
            ln += cs_tokenizer_encode(tok, text + p, e - p, CS_TOK_PARSE_SPECIAL, ids, cap);
            p = e;
        }
        lsecs[r] = now() - t0;
    }
    char *back = malloc(len + 16);
    size_t bl = cs_tokenizer_decode(tok, ids, (size_t)n, false, back, len + 16);
    int roundtrip = bl == len && memcmp(back, text, len) == 0;
    qsort(secs, RUNS, sizeof secs[0], cmp_double);
    qsort(lsecs, RUNS, sizeof lsecs[0], cmp_double);
    double med = secs[RUNS / 2], lmed = lsecs[RUNS / 2];
    printf("| impl | bytes | tokens | median s (%d runs) | tokens/s | MB/s |\n", RUNS);
    printf("|---|---|---|---|---|---|\n");
    printf("| cserve C, one string | %zu | %d | %.3f | %.0f | %.1f |\n", len, n, med, n / med,
           len / med / 1e6);
    printf("| cserve C, lines | %zu | %ld | %.3f | %.0f | %.1f |\n", len, ln, lmed, ln / lmed,
           len / lmed / 1e6);
    printf("decode round trip: %s\n", roundtrip ? "identical" : "differs (text has bytes the vocabulary drops)");
    free(back);
    free(ids);
    free(text);
    cs_tokenizer_free(tok);
    return 0;
}
