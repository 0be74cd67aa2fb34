#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
