// cserve tokenize: the token ids of a text, one per line with the piece they decode to,
// or on one line with --ids (the format llama-tokenize --ids prints).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/file_map.h"
#include "engine/model_file.h"
#include "engine/tokenizer.h"

typedef struct tok_opts {
    const char *model, *text, *file;
    bool ids_only, add_special, parse_special;
} tok_opts;

static int parse_opts(int argc, char **argv, tok_opts *o) {
    *o = (tok_opts){.add_special = true, .parse_special = true};
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        if (cs_cli_is_help(argv[i])) {
            printf("usage: cserve tokenize [--model PATH] (--text TEXT | --file PATH) [--ids]\n"
                   "                       [--no-add-special] [--no-parse-special]\n\n"
                   "  --ids               print the ids only, as one list\n"
                   "  --no-add-special    do not add BOS/EOS even if the model wants them\n"
                   "  --no-parse-special  treat text like <|im_start|> as plain text\n");
            return -1;
        }
        if (!strcmp(argv[i], "--ids")) o->ids_only = true;
        else if (!strcmp(argv[i], "--no-add-special")) o->add_special = false;
        else if (!strcmp(argv[i], "--no-parse-special")) o->parse_special = false;
        else if (cs_cli_text(argc, argv, &i, "--model", &o->model, &bad) ||
                 cs_cli_value(argc, argv, &i, "--text", &o->text, &bad) ||
                 cs_cli_value(argc, argv, &i, "--file", &o->file, &bad)) {
            if (bad) return CS_EXIT_BAD_INPUT;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see cserve tokenize --help)\n", argv[i]);
            return CS_EXIT_BAD_INPUT;
        }
    }
    if (!o->text == !o->file) {
        fprintf(stderr, "error: give exactly one of --text and --file\n");
        return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

static void print_ids(const cs_tokenizer *tok, const int32_t *ids, int n, bool ids_only) {
    if (ids_only) {
        putchar('[');
        for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("]\n");
        return;
    }
    char piece[256];
    for (int i = 0; i < n; i++) {
        size_t len = cs_tokenizer_decode(tok, &ids[i], 1, false, piece, sizeof piece);
        printf("%6d -> '%.*s'\n", ids[i], (int)(len < sizeof piece ? len : sizeof piece), piece);
    }
}

int cs_cmd_tokenize(int argc, char **argv) {
    tok_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? CS_EXIT_OK : rc;
    char err[CS_ERR_LEN];
    char *buf = NULL;
    size_t len = o.text ? strlen(o.text) : 0;
    if (o.file && cs_file_read_all(o.file, (size_t)1 << 30, &buf, &len, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s\n", err);
        return CS_EXIT_BAD_INPUT;
    }
    const char *path = cs_cli_model_path(o.model);
    cs_model_file *m;
    if (cs_model_file_open(path, &m, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s: %s\n", path, err);
        free(buf);
        return CS_EXIT_BAD_INPUT;
    }
    int flags = (o.add_special ? CS_TOK_ADD_SPECIAL : 0) | (o.parse_special ? CS_TOK_PARSE_SPECIAL : 0);
    const char *text = buf ? buf : o.text;
    int n = cs_tokenizer_encode(m->tok, text, len, flags, NULL, 0);
    int32_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    rc = CS_EXIT_OK;
    if (n < 0 || (n > 0 && !ids)) {
        fprintf(stderr, "error: cannot tokenize: %s\n", n < 0 ? cs_status_str((cs_status)n) : "out of memory");
        rc = CS_EXIT_RUNTIME;
    } else {
        cs_tokenizer_encode(m->tok, text, len, flags, ids, n);
        print_ids(m->tok, ids, n, o.ids_only);
    }
    free(ids);
    free(buf);
    cs_model_file_free(m);
    return rc;
}
