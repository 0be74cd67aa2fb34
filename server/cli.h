// Command-line plumbing shared by the subcommands: flag matching and the default model path.
#ifndef CS_CLI_H
#define CS_CLI_H

#include <stdbool.h>
#include <stdint.h>

// Exit codes of every subcommand.
enum { CS_EXIT_OK = 0, CS_EXIT_RUNTIME = 1, CS_EXIT_BAD_INPUT = 2 };

// --model if given, else $CSERVE_MODEL, else the default model fetched by scripts/setup.sh.
const char *cs_cli_model_path(const char *flag_value);

// Matches argv[*i] against "--name VALUE" or "--name=VALUE". On a match stores the value,
// advances *i past what it used and returns true; a missing value prints an error and sets
// *bad.
bool cs_cli_value(int argc, char **argv, int *i, const char *name, const char **value, bool *bad);
// cs_cli_value for a name, path or key, which must not be empty (an unset shell variable
// would otherwise pass as one: --api-key "$KEY" turning auth on with an empty key).
bool cs_cli_text(int argc, char **argv, int *i, const char *name, const char **value, bool *bad);

// True for "--help" and "-h".
bool cs_cli_is_help(const char *arg);

// Strict number parsing for flag values: the whole string must be a number in [lo, hi].
// On failure prints "error: NAME: ..." and returns false.
bool cs_cli_int(const char *name, const char *s, long lo, long hi, int *out);
bool cs_cli_float(const char *name, const char *s, double lo, double hi, float *out);
bool cs_cli_u64(const char *name, const char *s, uint64_t *out);

// The backend flags of the engine commands: --device cpu|cuda, --gpu-memory-utilization F,
// --enforce-eager, --dummy-weights PRESET. True when argv[*i] was one of them (then *bad tells whether it was valid).
struct cs_engine_params;
// --quant int8|int4 and --quant-group 32|64|128: true when argv[*i] was one of them.
bool cs_cli_quant_opt(int argc, char **argv, int *i, const char **quant, int *group, bool *bad);
#define CS_CLI_QUANT_HELP                                                                             \
    "  --quant int8|int4          quantise the layers' F32/F16/BF16 matrices at load (round to\n"    \
    "                             nearest per group; embeddings and lm_head stay as stored)\n"     \
    "  --quant-group N            weights per scale: 32, 64 or 128 (default 32)\n"
bool cs_cli_device_opt(int argc, char **argv, int *i, struct cs_engine_params *ep, bool *bad);
// A node other than 0 (--node-rank R > 0): runs node 0's steps until it stops; the exit code.
int cs_cli_follow(const struct cs_engine_params *ep);
#define CS_CLI_DEVICE_HELP                                                                            \
    "  --device cpu|cuda          where the model runs (default cpu)\n"                               \
    "  --gpu-memory-utilization F cuda: share of GPU memory for weights, workspace and KV (0.90)\n" \
    "  --enforce-eager            cuda: do not capture decode steps in CUDA graphs\n"           \
    "  --no-async-scheduling      cuda: schedule each step after the last one's tokens are back\n" \
    "                             (default: the next step is launched while one runs, on one GPU)\n" \
    "  --async-scheduling         cpu: run that pipeline too (greedy rows; nothing to overlap)\n" \
    "  --tensor-parallel-size N   (--tp N) split the model over N ranks (cpu: threads; cuda: GPUs,\n" \
    "                             of all nodes together; default 1)\n" \
    "  --nnodes N                 cuda: spread the ranks over N nodes, TP / N GPUs each (default 1)\n" \
    "  --node-rank R              this node; 0 serves, the others only run its steps (default 0)\n" \
    "  --dist-init-addr HOST:PORT where node 0 waits for the other nodes\n" \
    "  --dist-timeout S           how long the nodes wait for each other at start (default 600)\n" \
    "  --dummy-weights PRESET     seeded random weights of a known shape (llama3-8b, llama3-70b,\n" \
    "                             qwen2-7b, mistral-7b, smollm2-135m, NAME:LAYERS, config.json);\n" \
    "                             --model then gives only the tokenizer\n"

int cs_cmd_info(int argc, char **argv);
int cs_cmd_generate(int argc, char **argv);
int cs_cmd_perplexity(int argc, char **argv);
int cs_cmd_serve(int argc, char **argv);
int cs_cmd_client(int argc, char **argv);
int cs_cmd_tokenize(int argc, char **argv);
int cs_cmd_bench(int argc, char **argv);

#endif
