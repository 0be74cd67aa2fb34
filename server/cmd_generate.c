// cserve generate: one prompt, one stream, text to stdout as it comes; speed to stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "cli.h"
#include "engine/chat_template.h"
#include "engine/runner.h"
#include "engine/textgen.h"
#include "engine/tokenizer.h"

typedef struct gen_opts {
    const char *model, *prompt, *system;
    bool chat;
    int ctx, threads;
    const char *quant;
    int quant_group;
    cs_gen_params gen;
} gen_opts;

static void usage(void) {
    printf("usage: cserve generate [--model PATH] --prompt TEXT [options]\n\n"
           "  --chat                apply the model's chat template (prompt = user message)\n"
           "  --system TEXT         system message (with --chat)\n"
           "  --max-tokens N        tokens to generate (default 256)\n"
           "  --temperature T       0 = greedy (default 0.8)\n"
           "  --top-k K             keep the K most likely tokens (default 40; 0 = off)\n"
           "  --top-p P             nucleus sampling (default 0.95; 1 = off)\n"
           "  --min-p P             drop tokens below P x the top probability (default 0.05)\n"
           "  --repetition-penalty R, --presence-penalty P, --frequency-penalty F\n"
           "  --seed S              sampling seed (default: random)\n"
           "  --stop STR            stop before this text (repeatable, up to 16)\n"
           "  --ignore-eos          keep going past end-of-generation tokens\n"
           "  --ctx-size N          context to reserve (default: min(4096, the model's))\n"
           "  --threads N           CPU threads (default: all cores)\n"
           CS_CLI_QUANT_HELP);
}

// Parses one sampling or generation flag at argv[*i]; false when argv[*i] is not one.
static bool parse_sampling(int argc, char **argv, int *i, gen_opts *o, bool *bad) {
    const char *v = NULL;
    cs_sampling_params *sp = &o->gen.sampling;
#define FLOAT_FLAG(flag, field, lo, hi)                                          \
    if (cs_cli_value(argc, argv, i, flag, &v, bad)) {                            \
        *bad = *bad || !cs_cli_float(flag, v, lo, hi, &field);                   \
        return true;                                                             \
    }
    FLOAT_FLAG("--temperature", sp->temperature, 0, 100)
    FLOAT_FLAG("--top-p", sp->top_p, 0, 1)
    FLOAT_FLAG("--min-p", sp->min_p, 0, 1)
    FLOAT_FLAG("--repetition-penalty", sp->repetition_penalty, 0, 100)
    FLOAT_FLAG("--presence-penalty", sp->presence_penalty, -2, 2)
    FLOAT_FLAG("--frequency-penalty", sp->frequency_penalty, -2, 2)
#undef FLOAT_FLAG
    if (cs_cli_value(argc, argv, i, "--top-k", &v, bad)) {
        *bad = *bad || !cs_cli_int("--top-k", v, 0, 1 << 30, &sp->top_k);
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--max-tokens", &v, bad)) {
        *bad = *bad || !cs_cli_int("--max-tokens", v, 0, 1 << 30, &o->gen.max_tokens);
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--seed", &v, bad)) {
        *bad = *bad || !cs_cli_u64("--seed", v, &sp->seed);
        sp->has_seed = true;
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--stop", &v, bad)) {
        if (!*bad && o->gen.n_stop == 16) {
            fprintf(stderr, "error: --stop: at most 16 stop strings\n");
            *bad = true;
        } else if (!*bad) {
            o->gen.stop[o->gen.n_stop++] = v;
        }
        return true;
    }
    return false;
}

static int parse_opts(int argc, char **argv, gen_opts *o) {
    memset(o, 0, sizeof *o);
    cs_gen_params_default(&o->gen);
    o->quant_group = 32;
    cs_sampling_params *sp = &o->gen.sampling;
    sp->temperature = 0.8f; // llama.cpp's defaults for interactive use
    sp->top_k = 40;
    sp->top_p = 0.95f;
    sp->min_p = 0.05f;
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v = NULL;
        if (cs_cli_is_help(argv[i])) {
            usage();
            return -1;
        }
        if (!strcmp(argv[i], "--chat")) o->chat = true;
        else if (!strcmp(argv[i], "--ignore-eos")) o->gen.ignore_eos = true;
        else if (cs_cli_text(argc, argv, &i, "--model", &o->model, &bad) ||
                 cs_cli_value(argc, argv, &i, "--prompt", &o->prompt, &bad) ||
                 cs_cli_value(argc, argv, &i, "--system", &o->system, &bad) ||
                 parse_sampling(argc, argv, &i, o, &bad) ||
                 cs_cli_quant_opt(argc, argv, &i, &o->quant, &o->quant_group, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--ctx-size", &v, &bad)) {
            bad = bad || !cs_cli_int("--ctx-size", v, 1, 1 << 24, &o->ctx);
        } else if (cs_cli_value(argc, argv, &i, "--threads", &v, &bad)) {
            bad = bad || !cs_cli_int("--threads", v, 1, 1024, &o->threads);
        } else {
            fprintf(stderr, "error: unknown option '%s' (see cserve generate --help)\n", argv[i]);
            return CS_EXIT_BAD_INPUT;
        }
        if (bad) return CS_EXIT_BAD_INPUT;
    }
    if (!o->prompt) {
        fprintf(stderr, "error: --prompt is required (see cserve generate --help)\n");
        return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

// The prompt's token ids (chat template applied when asked). Caller frees *ids.
static int tokenize_prompt(const cs_tokenizer *tok, const gen_opts *o, int32_t **ids) {
    char err[CS_ERR_LEN];
    char *text = NULL;
    const char *src = o->prompt;
    int flags = CS_TOK_ADD_SPECIAL | CS_TOK_PARSE_SPECIAL;
    if (o->chat) {
        cs_chat_msg msgs[2] = {{"system", o->system}, {"user", o->prompt}};
        bool known;
        const char *tmpl = cs_tokenizer_chat_template(tok);
        cs_chat_kind kind = cs_chat_detect(tmpl, &known);
        if (tmpl && !known) fprintf(stderr, "warning: unrecognised chat template, using ChatML\n");
        text = cs_chat_render(kind, tmpl, o->system ? msgs : msgs + 1, o->system ? 2 : 1, true, err, sizeof err);
        if (!text) {
            fprintf(stderr, "error: chat template: %s\n", err);
            return -1;
        }
        src = text;
        flags = CS_TOK_PARSE_SPECIAL; // the rendered template already holds any BOS
    }
    int n = cs_tokenizer_encode(tok, src, strlen(src), flags, NULL, 0);
    *ids = n > 0 ? malloc((size_t)n * sizeof **ids) : NULL;
    if (n > 0 && *ids) cs_tokenizer_encode(tok, src, strlen(src), flags, *ids, n);
    free(text);
    return n > 0 && !*ids ? -1 : n;
}

// Prefill, then sample and feed one token at a time until textgen says stop.
static int run(cs_runner *r, const gen_opts *o, const int32_t *ids, int n) {
    char err[CS_ERR_LEN];
    const cs_tokenizer *tok = r->file->tok;
    float *logits = malloc((size_t)r->model.cfg.vocab_size * sizeof *logits);
    cs_textgen *g = logits ? cs_textgen_init(tok, &o->gen, ids, (size_t)n, err, sizeof err) : NULL;
    if (!g) {
        fprintf(stderr, "error: %s\n", logits ? err : "out of memory");
        free(logits);
        return CS_EXIT_BAD_INPUT;
    }
    cs_runner_seq seq = {0};
    double t0 = cs_now_s();
    cs_status st = cs_runner_extend(r, &seq, ids, n, CS_LOGITS_LAST, logits, err, sizeof err);
    double t1 = cs_now_s();
    int rc = CS_EXIT_OK;
    for (; st == CS_OK;) {
        cs_textgen_step step = cs_textgen_next(g, logits, NULL);
        fwrite(step.text, 1, step.text_len, stdout);
        fflush(stdout);
        if (!step.feed) break;
        st = cs_runner_extend(r, &seq, &step.token, 1, CS_LOGITS_LAST, logits, err, sizeof err);
    }
    double t2 = cs_now_s();
    if (st != CS_OK) {
        fprintf(stderr, "\nerror: %s\n", err);
        rc = CS_EXIT_RUNTIME;
    }
    int n_gen = cs_textgen_n_generated(g);
    // the last sampled token is never fed, so decode steps = generated - 1
    fprintf(stderr, "\n[prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s]\n", n,
            n / (t1 - t0), n_gen, n_gen > 1 ? (n_gen - 1) / (t2 - t1) : 0.0);
    cs_runner_seq_free(r, &seq);
    cs_textgen_free(g);
    free(logits);
    return rc;
}

int cs_cmd_generate(int argc, char **argv) {
    gen_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? CS_EXIT_OK : rc;
    const char *path = cs_cli_model_path(o.model);
    char err[CS_ERR_LEN];
    cs_runner r;
    int ctx = o.ctx ? o.ctx : 4096;
    cs_dtype quant;
    if (cs_quant_type(o.quant, o.quant_group, &quant, err, sizeof err) != CS_OK ||
        cs_runner_init(&r, path, ctx, o.threads, 256, quant, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s: %s\n", path, err);
        return CS_EXIT_BAD_INPUT;
    }
    if (o.ctx > r.max_ctx) fprintf(stderr, "warning: --ctx-size %d capped at the model's %d\n", o.ctx, r.max_ctx);
    int32_t *ids = NULL;
    int n = tokenize_prompt(r.file->tok, &o, &ids);
    if (n <= 0) {
        if (n == 0) fprintf(stderr, "error: the prompt is empty\n");
        rc = CS_EXIT_BAD_INPUT;
    } else if ((long)n + o.gen.max_tokens > r.max_ctx) {
        fprintf(stderr, "error: prompt (%d tokens) + max tokens (%d) exceed the context (%d)\n", n,
                o.gen.max_tokens, r.max_ctx);
        rc = CS_EXIT_BAD_INPUT;
    } else {
        rc = run(&r, &o, ids, n);
    }
    free(ids);
    cs_runner_free(&r);
    return rc;
}
