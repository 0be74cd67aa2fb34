// cserve perplexity: the perplexity of a text, computed as llama.cpp's perplexity tool does
// so the numbers compare: the tokens are cut into non-overlapping windows of ctx tokens
// (the first replaced by BOS when the model adds one) and, in each window, the second half's
// tokens are scored given everything before them in the window.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common/file_map.h"
#include "engine/perplexity.h"
#include "engine/runner.h"
#include "engine/tokenizer.h"

typedef struct ppl_opts {
    const char *model, *file;
    int ctx, threads, batch;
    const char *quant;
    int quant_group;
} ppl_opts;

static int parse_opts(int argc, char **argv, ppl_opts *o) {
    *o = (ppl_opts){.ctx = 512, .batch = 256, .quant_group = 32};
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v = NULL;
        if (cs_cli_is_help(argv[i])) {
            printf("usage: cserve perplexity [--model PATH] --file TEXT [--ctx N] [--threads N]\n\n"
                   "  --ctx N      window length in tokens (default 512); the text needs 2 x N\n"
                   "  --batch N    tokens per forward step (default 256)\n"
                   "  --threads N  CPU threads (default: all cores)\n" CS_CLI_QUANT_HELP);
            return -1;
        }
        if (cs_cli_text(argc, argv, &i, "--model", &o->model, &bad) ||
            cs_cli_value(argc, argv, &i, "--file", &o->file, &bad) ||
            cs_cli_quant_opt(argc, argv, &i, &o->quant, &o->quant_group, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--ctx", &v, &bad)) {
            bad = bad || !cs_cli_int("--ctx", v, 4, 1 << 20, &o->ctx);
        } else if (cs_cli_value(argc, argv, &i, "--batch", &v, &bad)) {
            bad = bad || !cs_cli_int("--batch", v, 1, 1 << 16, &o->batch);
        } else if (cs_cli_value(argc, argv, &i, "--threads", &v, &bad)) {
            bad = bad || !cs_cli_int("--threads", v, 1, 1024, &o->threads);
        } else {
            fprintf(stderr, "error: unknown option '%s' (see cserve perplexity --help)\n", argv[i]);
            return CS_EXIT_BAD_INPUT;
        }
        if (bad) return CS_EXIT_BAD_INPUT;
    }
    if (!o->file) {
        fprintf(stderr, "error: --file is required\n");
        return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

static int tokenize_file(const cs_tokenizer *tok, const char *path, int32_t **ids) {
    char err[CS_ERR_LEN], *text;
    size_t len;
    if (cs_file_read_all(path, (size_t)1 << 30, &text, &len, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    int n = cs_tokenizer_encode(tok, text, len, CS_TOK_ADD_SPECIAL, NULL, 0);
    *ids = n > 0 ? malloc((size_t)n * sizeof **ids) : NULL;
    if (n > 0 && *ids) cs_tokenizer_encode(tok, text, len, CS_TOK_ADD_SPECIAL, *ids, n);
    free(text);
    return n;
}

typedef struct progress_state {
    struct timespec t0;
    int ctx;
} progress_state;

static void show_progress(void *user, const cs_ppl_result *r, int total) {
    progress_state *p = user;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - p->t0.tv_sec) + (t1.tv_nsec - p->t0.tv_nsec) * 1e-9;
    fprintf(stderr, "\r[%d/%d] perplexity so far %.4f, %.0f tok/s", r->windows, total, r->ppl,
            (double)r->windows * p->ctx / el);
}

static int score(cs_runner *r, const int32_t *ids, int n, int ctx) {
    progress_state ps = {.ctx = ctx};
    clock_gettime(CLOCK_MONOTONIC, &ps.t0);
    cs_ppl_result res;
    char err[CS_ERR_LEN];
    cs_status st = cs_perplexity(r, ids, n, ctx, show_progress, &ps, &res, err, sizeof err);
    fprintf(stderr, "\n");
    if (st != CS_OK) {
        fprintf(stderr, "error: %s\n", err);
        return CS_EXIT_RUNTIME;
    }
    printf("perplexity: %.4f over %ld scored tokens (%d windows of %d)\n", res.ppl, res.scored,
           res.windows, ctx);
    return CS_EXIT_OK;
}

int cs_cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? CS_EXIT_OK : rc;
    const char *path = cs_cli_model_path(o.model);
    char err[CS_ERR_LEN];
    cs_runner r;
    cs_dtype quant;
    if (cs_quant_type(o.quant, o.quant_group, &quant, err, sizeof err) != CS_OK ||
        cs_runner_init(&r, path, o.ctx, o.threads, o.batch, quant, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s: %s\n", path, err);
        return CS_EXIT_BAD_INPUT;
    }
    int32_t *ids = NULL;
    int n = -1;
    if (r.max_ctx < o.ctx)
        fprintf(stderr, "error: --ctx %d is larger than the model's context %d\n", o.ctx, r.max_ctx);
    else
        n = tokenize_file(r.file->tok, o.file, &ids);
    if (n >= 0 && n < 2 * o.ctx) {
        fprintf(stderr, "error: %s has %d tokens; --ctx %d needs at least %d\n", o.file, n, o.ctx, 2 * o.ctx);
        n = -1;
    }
    rc = n < 0 ? CS_EXIT_BAD_INPUT : score(&r, ids, n, o.ctx);
    free(ids);
    cs_runner_free(&r);
    return rc;
}
