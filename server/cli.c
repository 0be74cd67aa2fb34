#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cserve/engine.h"

#ifndef CSERVE_DEFAULT_MODEL
#define CSERVE_DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif

const char *cs_cli_model_path(const char *flag_value) {
    if (flag_value) return flag_value;
    const char *env = getenv("CSERVE_MODEL");
    return env && *env ? env : CSERVE_DEFAULT_MODEL;
}

bool cs_cli_value(int argc, char **argv, int *i, const char *name, const char **value, bool *bad) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) return false;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return true;
    }
    if (arg[n] != 0) return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value\n", name);
        *bad = true;
        return true;
    }
    *value = argv[++*i];
    return true;
}

bool cs_cli_int(const char *name, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "error: %s: '%s' is not an integer in [%ld, %ld]\n", name, s, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

bool cs_cli_text(int argc, char **argv, int *i, const char *name, const char **value, bool *bad) {
    if (!cs_cli_value(argc, argv, i, name, value, bad)) return false;
    if (!*bad && !**value) {
        fprintf(stderr, "error: %s: the value is empty\n", name);
        *bad = true;
    }
    return true;
}

bool cs_cli_float(const char *name, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "error: %s: '%s' is not a number in [%g, %g]\n", name, s, lo, hi);
        return false;
    }
    *out = (float)v;
    return true;
}

bool cs_cli_u64(const char *name, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || !isdigit((unsigned char)s[0])) { // strtoull takes " -1" as 2^64 - 1
        fprintf(stderr, "error: %s: '%s' is not an unsigned 64-bit integer\n", name, s);
        return false;
    }
    *out = v;
    return true;
}

bool cs_cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

bool cs_cli_quant_opt(int argc, char **argv, int *i, const char **quant, int *group, bool *bad) {
    const char *v = NULL;
    if (cs_cli_value(argc, argv, i, "--quant", &v, bad)) {
        if (!*bad && strcmp(v, "int8") && strcmp(v, "int4")) {
            fprintf(stderr, "error: --quant: '%s' is not one of int8, int4\n", v);
            *bad = true;
        }
        if (!*bad) *quant = v;
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--quant-group", &v, bad)) {
        *bad = *bad || !cs_cli_int("--quant-group", v, 32, 128, group);
        if (!*bad && *group != 32 && *group != 64 && *group != 128) {
            fprintf(stderr, "error: --quant-group: %d is not one of 32, 64, 128\n", *group);
            *bad = true;
        }
        return true;
    }
    return false;
}

bool cs_cli_device_opt(int argc, char **argv, int *i, struct cs_engine_params *ep, bool *bad) {
    if (cs_cli_quant_opt(argc, argv, i, &ep->quant, &ep->quant_group, bad)) return true;
    const char *v = NULL;
    if (!strcmp(argv[*i], "--enforce-eager")) {
        ep->enforce_eager = true;
        return true;
    }
    if (!strcmp(argv[*i], "--async-scheduling") || !strcmp(argv[*i], "--no-async-scheduling")) {
        ep->async_scheduling = argv[*i][2] != 'n';
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--device", &v, bad)) {
        if (!*bad && strcmp(v, "cpu") && strcmp(v, "cuda")) {
            fprintf(stderr, "error: --device: '%s' is not one of cpu, cuda\n", v);
            *bad = true;
        }
        if (!*bad) ep->device = v;
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--dummy-weights", &v, bad)) {
        if (!*bad) ep->dummy_weights = v; // checked by the engine, which names the presets
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--tensor-parallel-size", &v, bad) || cs_cli_value(argc, argv, i, "--tp", &v, bad)) {
        *bad = *bad || !cs_cli_int("--tensor-parallel-size", v, 1, 256, &ep->tensor_parallel_size);
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--nnodes", &v, bad)) {
        *bad = *bad || !cs_cli_int("--nnodes", v, 1, 4096, &ep->nnodes);
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--node-rank", &v, bad)) {
        *bad = *bad || !cs_cli_int("--node-rank", v, 0, 4095, &ep->node_rank);
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--dist-timeout", &v, bad)) {
        *bad = *bad || !cs_cli_int("--dist-timeout", v, 1, 86400, &ep->dist_timeout_s);
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--dist-init-addr", &v, bad)) {
        if (!*bad) ep->dist_init_addr = v; // checked when node 0 listens or a node joins
        return true;
    }
    if (cs_cli_value(argc, argv, i, "--gpu-memory-utilization", &v, bad)) {
        float f = 0;
        *bad = *bad || !cs_cli_float("--gpu-memory-utilization", v, 0.05, 1.0, &f);
        ep->gpu_memory_utilization = f;
        return true;
    }
    return false;
}

int cs_cli_follow(const struct cs_engine_params *ep) {
    char err[512];
    if (cs_engine_follow(ep, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return CS_EXIT_BAD_INPUT;
    }
    fprintf(stderr, "tensor parallel: node 0 stopped; node %d done\n", ep->node_rank);
    return CS_EXIT_OK;
}
