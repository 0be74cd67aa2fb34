/* cserve engine: the batch engine embedded in a C program.
 *
 *     cs_engine_params p;
 *     cs_engine_params_default(&p);
 *     p.model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
 *     cs_engine *e;
 *     char err[256];
 *     if (cs_engine_init(&p, &e, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(2); }
 *
 *     cs_request r;
 *     cs_request_default(&r);
 *     r.prompt = "The capital of France is";
 *     r.max_tokens = 16;
 *     uint64_t id;
 *     if (cs_engine_submit(e, &r, &id, err, sizeof err) != 0) { ... }
 *
 *     cs_event ev;
 *     while (cs_engine_poll(e, &ev, -1) == 1) {
 *         if (ev.type == CS_EVENT_TOKEN) fwrite(ev.text, 1, ev.text_len, stdout);
 *         if (ev.type == CS_EVENT_DONE) break;   // every choice of request ev.request_id ended
 *     }
 *     cs_engine_free(e);
 *
 * Threads. cs_engine_init starts one engine thread. It alone owns the model, the KV cache and
 * the scheduler, and runs steps while there is work. Every function below is thread-safe:
 * submit and cancel put commands on a locked queue and wake the engine thread; events come
 * back on another locked queue, which cs_engine_poll drains. cs_engine_event_fd gives a file
 * descriptor that is readable while events are pending, for epoll-based callers (the RPC
 * server). Nothing here blocks on the engine's step except poll with a timeout.
 *
 * Errors are returned as a negative number with a one-line reason in the caller's buffer.
 */
#ifndef CSERVE_ENGINE_H
#define CSERVE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_engine cs_engine;

typedef struct cs_engine_params {
    const char *model_path;      /* GGUF file or Hugging Face directory */
    int max_model_len;           /* tokens per sequence; 0 = the model's context (capped 8192) */
    int max_num_seqs;            /* sequences in one step (default 64) */
    int max_num_batched_tokens;  /* tokens in one step (default 512) */
    int block_size;              /* tokens per KV block (default 16) */
    size_t kv_cache_memory;      /* bytes for the KV cache (default 1 GiB) */
    bool enable_prefix_caching;  /* default true */
    int threads;                 /* CPU threads; 0 = one per core */
    int max_queued;              /* waiting requests before submit says overloaded (default 4096) */
    const char *device;          /* "cpu" (default) or "cuda" */
    double gpu_memory_utilization; /* cuda: share of GPU memory for weights + KV (default 0.90);
                                      the KV pool takes what the weights and workspace leave */
    bool enforce_eager;          /* cuda: no CUDA graphs */
    const char *dummy_weights;   /* a preset (llama3-8b, qwen2-7b, ...; see README): seeded random
                                    weights of that shape, for benchmarks; model_path then only
                                    gives the tokenizer */
    const char *quant;           /* "int8" or "int4": quantise the layers' F32/F16/BF16 matrices
                                    at load (round to nearest per group); NULL = as stored */
    int quant_group;             /* weights per (scale, offset) group: 32, 64 or 128 (default 32:
                                    it divides every model dimension, and is GGUF Q4_1 / Q8_0) */
    bool no_forced_runs;         /* constrained decoding: one forced token per step instead of
                                    appending runs of forced tokens at once (same output) */
    int tensor_parallel_size;    /* ranks the model is split over (default 1); on the CPU each is
                                    a thread with its shard and threads / N workers; on CUDA each
                                    is a GPU, over all nodes together */
    int nnodes;                  /* cuda: nodes the ranks are spread over (default 1), each with
                                    tensor_parallel_size / nnodes GPUs */
    int node_rank;               /* this node: 0 runs the engine, the others cs_engine_follow */
    const char *dist_init_addr;  /* HOST:PORT where node 0 waits for the others */
    int dist_timeout_s;          /* how long node 0 waits for them and they for it (default 600) */
    int async_scheduling;        /* schedule step N + 1 while step N runs on the device: 1 on, 0 off,
                                    -1 (default) on with one GPU, off on the CPU (which has nothing
                                    to overlap: there it only exercises the pipeline, greedy rows) */
} cs_engine_params;

void cs_engine_params_default(cs_engine_params *p);
/* Loads the model and starts the engine thread. Returns 0, or < 0 with err set. */
int cs_engine_init(const cs_engine_params *p, cs_engine **out, char *err, size_t errlen);
/* Nodes 1.. of multi-node tensor parallelism (p->node_rank > 0): loads this node's shards,
   joins node 0 and runs the steps it sends until it stops. Returns 0 when node 0 stopped, or
   < 0 with err set. */
int cs_engine_follow(const cs_engine_params *p, char *err, size_t errlen);
/* Cancels everything, stops the thread, frees all. NULL is fine. */
void cs_engine_free(cs_engine *e);

typedef struct cs_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} cs_chat_message;

#define CS_MAX_STOP 16
#define CS_MAX_LOGPROBS 20

typedef struct cs_request {
    /* exactly one of prompt, tokens, messages */
    const char *prompt;
    const int32_t *tokens;
    int n_tokens;
    const cs_chat_message *messages;
    int n_messages;
    /* sampling */
    float temperature;          /* default 1; 0 = greedy */
    float top_p;                /* default 1 */
    int top_k;                  /* default 0 = off */
    float min_p;                /* default 0 */
    float repetition_penalty;   /* default 1 */
    float presence_penalty;     /* default 0 */
    float frequency_penalty;    /* default 0 */
    uint64_t seed;
    bool has_seed;
    /* ending */
    int max_tokens;             /* default 16; 0 = prefill only (scoring); -1 = what the context leaves */
    const char *stop[CS_MAX_STOP];
    int n_stop;
    int32_t stop_token_ids[CS_MAX_STOP];
    int n_stop_token_ids;
    bool ignore_eos;
    /* output */
    int n;                      /* choices (default 1), sharing the prompt's KV blocks */
    int logprobs;               /* top-N alternatives per generated token, 0..20 */
    int prompt_logprobs_from;   /* -1 = none; else log p(token i | tokens < i) for i >= this */
    /* constrained decoding, at most one (README "Constrained decoding"): the output is a JSON
     * text valid for the schema / any JSON object / a full match of the regex / one of the
     * choices, and ends only where that allows */
    const char *json_schema;    /* JSON Schema text */
    bool json_object;
    const char *regex;
    const char *const *choices;
    int n_choices;
    /* scheduling */
    const char *cache_salt;     /* requests share cached prefixes only with the same salt */
    int priority;               /* lower runs first (as in vLLM); default 0; FCFS within */
} cs_request;

void cs_request_default(cs_request *r);
/* Validates and queues a request; *id identifies its events. Returns 0, or < 0 with err set
 * (invalid parameters, prompt longer than the context, a request that can never fit the KV
 * cache, queue full: CS_ENGINE_EOVERLOADED). Everything r points at is copied. */
int cs_engine_submit(cs_engine *e, const cs_request *r, uint64_t *id, char *err, size_t errlen);
/* Ends a request: its choices finish with CS_FINISH_REASON_CANCELLED and its blocks are freed. A
 * finished or unknown id is ignored. */
void cs_engine_cancel(cs_engine *e, uint64_t id);

enum { CS_ENGINE_EINVAL = -1, CS_ENGINE_EOVERLOADED = -2, CS_ENGINE_ETOOLARGE = -3, CS_ENGINE_ENOMEM = -4 };

typedef enum cs_event_type {
    CS_EVENT_TOKEN,          /* one generated token of one choice, with its text delta */
    CS_EVENT_FINISH,         /* one choice ended (finish_reason) */
    CS_EVENT_PROMPT_LOGPROB, /* one prompt position's log-probability */
    CS_EVENT_DONE,           /* every choice of the request ended; carries the usage */
} cs_event_type;

typedef enum cs_finish_reason {
    CS_FINISH_REASON_STOP,      /* end-of-generation token, stop string or stop token id */
    CS_FINISH_REASON_LENGTH,    /* max_tokens or the context length */
    CS_FINISH_REASON_CANCELLED,
    CS_FINISH_REASON_ERROR,
} cs_finish_reason;

typedef struct cs_event {
    cs_event_type type;
    uint64_t request_id;
    int index;                  /* choice index, 0..n-1 (TOKEN, FINISH); position (PROMPT_LOGPROB) */
    int32_t token;              /* TOKEN: the token; PROMPT_LOGPROB: the prompt token */
    float logprob;              /* of token */
    int n_top;
    int32_t top_ids[CS_MAX_LOGPROBS];
    float top_logprobs[CS_MAX_LOGPROBS];
    char text[1024];            /* TOKEN: new text of the choice, whole UTF-8 characters only */
    size_t text_len;
    cs_finish_reason finish_reason; /* FINISH */
    /* DONE: usage */
    int prompt_tokens, cached_tokens, completion_tokens;
    double queue_ms, ttft_ms, total_ms;
} cs_event;

/* Takes the next event. timeout_ms: 0 = do not wait, < 0 = wait until one comes.
 * Returns 1 with *ev filled, 0 on timeout. */
int cs_engine_poll(cs_engine *e, cs_event *ev, int timeout_ms);
/* Readable while events are pending (level-triggered; do not read from it). */
int cs_engine_event_fd(const cs_engine *e);

typedef struct cs_engine_stats {
    int running, waiting;
    int blocks_total, blocks_free, blocks_used, blocks_cached;
    int block_size;
    size_t kv_cache_bytes;           /* the whole KV pool: K and V, every layer */
    double prefix_hit_rate;          /* cached prompt tokens / prompt tokens looked up */
    long prefix_cache_queries, prefix_cache_hits; /* prompt tokens looked up in the prefix cache, and found */
    long prompt_tokens_computed, generated_tokens, steps, preemptions;
    long steps_ahead;                /* steps launched before the previous step's tokens were back */
    double host_ms;                  /* the engine thread's time in steps outside the forward pass and
                                        device waits: scheduling, batches, host sampling, events */
    long requests_finished;
} cs_engine_stats;

void cs_engine_stats_get(cs_engine *e, cs_engine_stats *st);

/* The tokenizer and template, for callers that need them (RPC tokenize/detokenize).
 * cs_engine_tokenize returns the ids text needs, writing at most cap; with cap > 0 it stops
 * once the text needs more than cap (the return is then only known to be > cap), so a huge
 * text is refused without tokenizing all of it. Count with cap 0, then fill. */
int cs_engine_tokenize(cs_engine *e, const char *text, size_t len, bool add_special, int32_t *ids,
                       int cap);
int cs_engine_vocab_size(const cs_engine *e);
int cs_engine_max_model_len(const cs_engine *e);
/* Text of ids (special tokens included) into out; returns the bytes needed (may exceed cap),
 * or < 0 when an id is outside the vocabulary. */
long cs_engine_detokenize(cs_engine *e, const int32_t *ids, int n, char *out, size_t cap);
/* The model's chat template applied to messages, with the generation prompt. Returns a
 * malloc'd string the caller frees, or NULL with err set (unknown role, bad order). */
char *cs_engine_apply_chat_template(cs_engine *e, const cs_chat_message *msgs, int n, char *err,
                                    size_t errlen);

typedef struct cs_engine_info {
    char name[128];
    char architecture[32];
    char weight_formats[96];  /* e.g. "Q4_1, Q8_0, F32" */
    char device[16];          /* "cpu" */
    int context_length;       /* max_model_len the engine serves */
    int vocab_size;
    int tensor_parallel_size;
} cs_engine_info;

void cs_engine_info_get(const cs_engine *e, cs_engine_info *info);

#ifdef __cplusplus
}
#endif

#endif
