/* cserve client: a small blocking C client for `cserve serve` (JSON-RPC 2.0, one JSON object
 * per line, over TCP or a Unix socket).
 *
 *     cs_client *c;
 *     char err[256];
 *     if (cs_client_connect(&c, "127.0.0.1", 7777, NULL, err, sizeof err) != 0) { ...; }
 *     cs_client_gen_params p;
 *     cs_client_gen_params_default(&p);
 *     p.prompt = "The capital of France is";
 *     cs_client_result r;
 *     if (cs_client_generate(c, &p, print_piece, NULL, &r, err, sizeof err) == 0) {
 *         printf("\n%d tokens, finish %s\n", r.completion_tokens, r.finish_reason);
 *         cs_client_result_free(&r);
 *     }
 *     cs_client_close(c);
 *
 * One call at a time per cs_client; use one client per thread for concurrency. Every
 * function returns 0 on success, or < 0 with a one-line reason in err: CS_CLIENT_EIO for a
 * broken connection, or the server's JSON-RPC error code (e.g. -32602) when it refused.
 */
#ifndef CSERVE_CLIENT_H
#define CSERVE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_client cs_client;

enum { CS_CLIENT_EIO = -1, CS_CLIENT_EPROTO = -2 };

/* socket_path != NULL connects to a Unix socket, else host:port. */
int cs_client_connect(cs_client **out, const char *host, int port, const char *socket_path, char *err,
                      size_t errlen);
void cs_client_close(cs_client *c);
int cs_client_auth(cs_client *c, const char *key, char *err, size_t errlen);

typedef struct cs_client_message {
    const char *role, *content;
} cs_client_message;

typedef struct cs_client_gen_params {
    const char *prompt;                /* or messages, or tokens */
    const int32_t *tokens;
    int n_tokens;
    const cs_client_message *messages;
    int n_messages;
    int max_tokens;                    /* default 256 */
    float temperature;                 /* default 0.8 */
    float top_p;                       /* default 0.95 */
    int top_k;                         /* default 40 */
    float min_p;                       /* default 0.05 */
    uint64_t seed;
    bool has_seed;
    const char *const *stop;
    int n_stop;
    bool ignore_eos;
} cs_client_gen_params;

void cs_client_gen_params_default(cs_client_gen_params *p);

/* Called for each streamed piece; return nonzero to cancel the request. */
typedef int (*cs_client_token_cb)(void *user, const char *text, size_t len, int32_t token);

typedef struct cs_client_result {
    char *text;                        /* the whole output, NUL-terminated */
    int32_t *token_ids;
    int n_tokens;
    char finish_reason[16];            /* "stop", "length", "cancelled" */
    int prompt_tokens, completion_tokens, cached_tokens;
    double queue_ms, ttft_ms, total_ms;
} cs_client_result;

/* Streams the answer through cb (may be NULL) and fills res (free with
 * cs_client_result_free). */
int cs_client_generate(cs_client *c, const cs_client_gen_params *p, cs_client_token_cb cb, void *user,
                       cs_client_result *res, char *err, size_t errlen);
void cs_client_result_free(cs_client_result *res);

/* The most likely of n choices as a continuation of prompt: *best, and each choice's summed
 * log-probability in logprobs (n entries, may be NULL). */
int cs_client_select(cs_client *c, const char *prompt, const char *const *choices, int n, int *best,
                     double *logprobs, char *err, size_t errlen);

/* Token ids of text: *ids is malloc'd (caller frees). */
int cs_client_tokenize(cs_client *c, const char *text, bool add_special, int32_t **ids, int *n, char *err,
                       size_t errlen);

/* The server's stats as a JSON object text (malloc'd, caller frees). */
int cs_client_stats(cs_client *c, char **json, char *err, size_t errlen);

/* Any method: params_json is a JSON object text (or NULL); *result_json the result's text
 * (malloc'd, caller frees). */
int cs_client_call(cs_client *c, const char *method, const char *params_json, char **result_json, char *err,
                   size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
