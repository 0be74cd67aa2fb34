// cserve client: talk to a running `cserve serve`: stream one answer to stdout, or print the
// server's stats.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cserve/client.h"

typedef struct client_opts {
    const char *host, *socket, *api_key, *prompt, *system;
    int port;
    bool chat, stats;
    cs_client_gen_params gen;
    const char *stop[16];
} client_opts;

static void usage(void) {
    printf("usage: cserve client [--host H] [--port P | --socket PATH] [--api-key KEY]\n"
           "                     (--prompt TEXT [--chat] [--system TEXT] [options] | --stats)\n\n"
           "  --chat           send the prompt as a user message (the model's chat template)\n"
           "  --max-tokens N, --temperature T, --top-p P, --top-k K, --min-p P, --seed S,\n"
           "  --stop STR (repeatable), --ignore-eos   as for cserve generate\n"
           "  --stats          print the server's statistics as JSON\n");
}

static int parse_opts(int argc, char **argv, client_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 7777;
    cs_client_gen_params_default(&o->gen);
    o->gen.stop = o->stop;
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v = NULL;
        if (cs_cli_is_help(argv[i])) {
            usage();
            return -1;
        }
        if (!strcmp(argv[i], "--chat")) o->chat = true;
        else if (!strcmp(argv[i], "--stats")) o->stats = true;
        else if (!strcmp(argv[i], "--ignore-eos")) o->gen.ignore_eos = true;
        else if (cs_cli_value(argc, argv, &i, "--host", &o->host, &bad) ||
                 cs_cli_value(argc, argv, &i, "--socket", &o->socket, &bad) ||
                 cs_cli_value(argc, argv, &i, "--api-key", &o->api_key, &bad) ||
                 cs_cli_value(argc, argv, &i, "--prompt", &o->prompt, &bad) ||
                 cs_cli_value(argc, argv, &i, "--system", &o->system, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--port", &v, &bad)) {
            bad = bad || !cs_cli_int("--port", v, 1, 65535, &o->port);
        } else if (cs_cli_value(argc, argv, &i, "--max-tokens", &v, &bad)) {
            bad = bad || !cs_cli_int("--max-tokens", v, 0, 1 << 24, &o->gen.max_tokens);
        } else if (cs_cli_value(argc, argv, &i, "--top-k", &v, &bad)) {
            bad = bad || !cs_cli_int("--top-k", v, 0, 1 << 24, &o->gen.top_k);
        } else if (cs_cli_value(argc, argv, &i, "--temperature", &v, &bad)) {
            bad = bad || !cs_cli_float("--temperature", v, 0, 100, &o->gen.temperature);
        } else if (cs_cli_value(argc, argv, &i, "--top-p", &v, &bad)) {
            bad = bad || !cs_cli_float("--top-p", v, 0, 1, &o->gen.top_p);
        } else if (cs_cli_value(argc, argv, &i, "--min-p", &v, &bad)) {
            bad = bad || !cs_cli_float("--min-p", v, 0, 1, &o->gen.min_p);
        } else if (cs_cli_value(argc, argv, &i, "--seed", &v, &bad)) {
            bad = bad || !cs_cli_u64("--seed", v, &o->gen.seed);
            o->gen.has_seed = true;
        } else if (cs_cli_value(argc, argv, &i, "--stop", &v, &bad)) {
            if (!bad && o->gen.n_stop < 16) o->stop[o->gen.n_stop++] = v;
        } else {
            fprintf(stderr, "error: unknown option '%s' (see cserve client --help)\n", argv[i]);
            return CS_EXIT_BAD_INPUT;
        }
        if (bad) return CS_EXIT_BAD_INPUT;
    }
    if (!o->stats && !o->prompt) {
        fprintf(stderr, "error: give --prompt TEXT or --stats (see cserve client --help)\n");
        return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

static int print_piece(void *user, const char *text, size_t len, int32_t token) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cs_cmd_client(int argc, char **argv) {
    client_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? CS_EXIT_OK : rc;
    cs_client *c;
    char err[512];
    if (cs_client_connect(&c, o.host, o.port, o.socket, err, sizeof err) != 0 ||
        (o.api_key && cs_client_auth(c, o.api_key, err, sizeof err) != 0)) {
        fprintf(stderr, "error: %s\n", err);
        return CS_EXIT_RUNTIME;
    }
    if (o.stats) {
        char *json = NULL;
        rc = cs_client_stats(c, &json, err, sizeof err);
        if (rc == 0) printf("%s\n", json);
        free(json);
    } else {
        cs_client_message msgs[2] = {{"system", o.system}, {"user", o.prompt}};
        if (o.chat) {
            o.gen.messages = o.system ? msgs : msgs + 1;
            o.gen.n_messages = o.system ? 2 : 1;
        } else {
            o.gen.prompt = o.prompt;
        }
        cs_client_result res;
        rc = cs_client_generate(c, &o.gen, print_piece, NULL, &res, err, sizeof err);
        if (rc == 0) {
            fprintf(stderr, "\n[%d prompt tokens (%d cached), %d generated, finish %s, ttft %.0f ms, total %.0f ms]\n",
                    res.prompt_tokens, res.cached_tokens, res.completion_tokens, res.finish_reason, res.ttft_ms,
                    res.total_ms);
            cs_client_result_free(&res);
        }
    }
    if (rc != 0) fprintf(stderr, "error: %s\n", err);
    cs_client_close(c);
    return rc == 0 ? CS_EXIT_OK : rc == CS_CLIENT_EIO ? CS_EXIT_RUNTIME : CS_EXIT_BAD_INPUT;
}
