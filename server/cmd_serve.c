// cserve serve: the engine behind the JSON-RPC socket server and the OpenAI HTTP API.
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cserve/engine.h"
#include "rpc_server.h"

static void usage(void) {
    printf("usage: cserve serve [--model PATH] [options]\n\n"
           "  --host H                   address to listen on (default 127.0.0.1)\n"
           "  --port P                   JSON-RPC TCP port (default 7777; 0 = none)\n"
           "  --socket PATH              also serve JSON-RPC on a Unix socket\n"
           "  --http-port P              OpenAI-compatible HTTP API port (default 8000; 0 = none)\n"
           "  --served-model-name NAME   the model's name in the HTTP API (default: the model's own)\n"
           "  --api-key KEY              RPC clients must call auth {key} first; HTTP clients send\n"
           "                             Authorization: Bearer KEY (/health stays open)\n"
           CS_CLI_DEVICE_HELP
           CS_CLI_QUANT_HELP
           "  --max-model-len N          tokens per sequence (default: the model's, at most 8192)\n"
           "  --max-num-seqs N           sequences per step (default 64)\n"
           "  --max-num-batched-tokens N tokens per step (default 512)\n"
           "  --block-size N             tokens per KV block (default 16)\n"
           "  --kv-cache-memory BYTES    KV cache size (default 1073741824)\n"
           "  --no-prefix-caching        do not reuse KV across requests\n"
           "  --no-forced-runs           constrained decoding: one forced token per step (same output)\n"
           "  --threads N                CPU threads (default: all cores)\n"
           "  --max-connections N        (default 1024)\n"
           "  --max-line-bytes N         longest request line (default 1048576)\n"
           "  --max-body-bytes N         longest HTTP request body (default 33554432)\n"
           "  --max-header-bytes N       longest HTTP request head (default 65536)\n"
           "  --http-request-timeout S   an HTTP request must arrive within S seconds (default 30)\n"
           "  --http-idle-timeout S      idle HTTP keep-alive connections close after S (default 60)\n"
           "  --max-queued N             requests waiting before new ones get -32001 (default 4096)\n"
           "  --shutdown-timeout S       seconds in-flight requests get after SIGTERM (default 30)\n"
           "  --log-level L              error, warn, info (default) or debug\n");
}

static bool parse_level(const char *v, int *out) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return true;
        }
    fprintf(stderr, "error: --log-level: '%s' is not one of error, warn, info, debug\n", v);
    return false;
}

static int parse_opts(int argc, char **argv, cs_engine_params *ep, rpc_params *rp) {
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v = NULL;
        int n = 0;
        if (cs_cli_is_help(argv[i])) {
            usage();
            return -1;
        }
        if (!strcmp(argv[i], "--no-prefix-caching")) ep->enable_prefix_caching = false;
        else if (!strcmp(argv[i], "--no-forced-runs")) ep->no_forced_runs = true;
        else if (cs_cli_text(argc, argv, &i, "--model", &ep->model_path, &bad) ||
                 cs_cli_text(argc, argv, &i, "--host", &rp->host, &bad) ||
                 cs_cli_text(argc, argv, &i, "--socket", &rp->socket_path, &bad) ||
                 cs_cli_text(argc, argv, &i, "--api-key", &rp->api_key, &bad) ||
                 cs_cli_text(argc, argv, &i, "--served-model-name", &rp->served_model_name, &bad)) {
        } else if (cs_cli_device_opt(argc, argv, &i, ep, &bad)) {
        } else if (cs_cli_value(argc, argv, &i, "--log-level", &v, &bad)) {
            bad = bad || !parse_level(v, &rp->log_level);
        } else if (cs_cli_value(argc, argv, &i, "--kv-cache-memory", &v, &bad)) {
            uint64_t bytes = 0;
            bad = bad || !cs_cli_u64("--kv-cache-memory", v, &bytes);
            ep->kv_cache_memory = (size_t)bytes;
        } else {
            static const struct { const char *flag; long lo, hi; } ints[] = {
                {"--port", 0, 65535}, {"--max-model-len", 1, 1 << 24}, {"--max-num-seqs", 1, 4096},
                {"--max-num-batched-tokens", 1, 1 << 20}, {"--block-size", 1, 1024}, {"--threads", 1, 1024},
                {"--max-connections", 1, 1 << 20}, {"--max-line-bytes", 1024, 1 << 30}, {"--max-queued", 1, 1 << 24},
                {"--shutdown-timeout", 0, 86400}, {"--http-port", 0, 65535}, {"--max-body-bytes", 1024, 1 << 30},
                {"--max-header-bytes", 1024, 1 << 24}, {"--http-request-timeout", 1, 86400},
                {"--http-idle-timeout", 1, 86400}};
            int which = -1;
            for (int k = 0; k < (int)(sizeof ints / sizeof ints[0]) && which < 0; k++)
                if (cs_cli_value(argc, argv, &i, ints[k].flag, &v, &bad)) which = k;
            if (which < 0) {
                fprintf(stderr, "error: unknown option '%s' (see cserve serve --help)\n", argv[i]);
                return CS_EXIT_BAD_INPUT;
            }
            bad = bad || !cs_cli_int(ints[which].flag, v, ints[which].lo, ints[which].hi, &n);
            int *dst[] = {&rp->port, &ep->max_model_len, &ep->max_num_seqs, &ep->max_num_batched_tokens,
                          &ep->block_size, &ep->threads, &rp->max_connections, NULL, &ep->max_queued, NULL,
                          &rp->http_port, NULL, NULL, NULL, NULL};
            if (!bad && dst[which]) *dst[which] = n;
            if (!bad && which == 7) rp->max_line = (size_t)n;
            if (!bad && which == 9) rp->grace_ms = n * 1000;
            if (!bad && which == 11) rp->max_body = (size_t)n;
            if (!bad && which == 12) rp->max_header = (size_t)n;
            if (!bad && which == 13) rp->request_timeout_ms = n * 1000;
            if (!bad && which == 14) rp->idle_timeout_ms = n * 1000;
        }
        if (bad) return CS_EXIT_BAD_INPUT;
    }
    return 0;
}

int cs_cmd_serve(int argc, char **argv) {
    cs_engine_params ep;
    rpc_params rp;
    cs_engine_params_default(&ep);
    rpc_params_default(&rp);
    int rc = parse_opts(argc, argv, &ep, &rp);
    if (rc) return rc < 0 ? CS_EXIT_OK : rc;
    ep.model_path = cs_cli_model_path(ep.model_path);
    if (ep.node_rank > 0) return cs_cli_follow(&ep); // node 0 serves
    // Block SIGINT/SIGTERM before any thread starts, so they reach the server's signalfd
    // instead of killing the process on whichever thread the kernel picks.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    return rpc_serve(&ep, &rp); // the model loads while the sockets already answer health checks
}
