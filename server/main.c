// cserve: one binary, one subcommand per job.
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"serve", cs_cmd_serve, "serve the model over JSON-RPC (TCP / Unix socket)"},
    {"client", cs_cmd_client, "talk to a running server: stream an answer, or --stats"},
    {"info", cs_cmd_info, "describe a model file: architecture, shapes, tensor types, tokenizer"},
    {"generate", cs_cmd_generate, "generate text from a prompt, streamed to stdout"},
    {"perplexity", cs_cmd_perplexity, "perplexity of a text file (llama.cpp's method)"},
    {"tokenize", cs_cmd_tokenize, "print the token ids (and pieces) of a text"},
    {"bench", cs_cmd_bench, "offline throughput and latency benchmark on synthetic or given prompts"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: cserve <command> [options]   (cserve <command> --help for its options)\n\n"
               "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  --version  print the version\n  --help     this text\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CS_EXIT_BAD_INPUT;
    }
    if (cs_cli_is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CS_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cserve %s\n", CSERVE_VERSION);
        return CS_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s' (see cserve --help)\n", argv[1]);
    return CS_EXIT_BAD_INPUT;
}
