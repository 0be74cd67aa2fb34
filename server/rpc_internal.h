// The JSON-RPC server's private state: connections, requests in flight, and the pieces that
// rpc_server.c (sockets, epoll, framing) and rpc_methods.c (methods, responses) share.
#ifndef CS_RPC_INTERNAL_H
#define CS_RPC_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cserve/engine.h"

enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_OVERLOADED = -32001,
    RPC_TOO_LARGE = -32002,
    RPC_UNAUTHORIZED = -32003,
};

typedef struct rpc_buf {
    char *p;
    size_t len, cap;
} rpc_buf;

struct rpc_pending;

typedef struct rpc_conn {
    int fd;
    uint64_t serial;         // unique per connection, for logs
    rpc_buf in, out;
    size_t out_sent;         // bytes of out already written
    bool authed;
    bool closing;            // close once out is flushed
    bool want_write;         // EPOLLOUT armed
    struct rpc_pending *pending; // requests in flight (linked through conn_next)
    struct rpc_conn *next;   // all connections
} rpc_conn;

// One choice's accumulated output, for the final response.
typedef struct rpc_choice {
    rpc_buf text;
    int32_t *ids;
    int n_ids, cap_ids;
    cJSON *logprobs;         // array, when asked
    const char *finish;
} rpc_choice;

// A generate request in flight, or one leg of a select.
typedef struct rpc_pending {
    uint64_t engine_id;
    rpc_conn *conn;          // NULL once the client has gone: events are dropped
    cJSON *json_id;          // the client's id (a copy)
    bool stream, want_logprobs;
    int n;
    rpc_choice *choices;
    cJSON *prompt_logprobs;  // array, when asked
    struct rpc_select *select; // non-NULL for a select leg
    int select_index;
    int select_from;         // first prompt position that belongs to the choice
    double logprob_sum;
    int logprob_count;
    struct rpc_pending *conn_next, *map_next;
} rpc_pending;

// A select call: one engine request per choice, answered when all are done.
typedef struct rpc_select {
    rpc_conn *conn;
    cJSON *json_id;
    int n, remaining;
    cJSON *choices;          // the choice strings (a copy)
    double *sum;
    int *count;
    int32_t **leg_tokens;    // legs 1.. wait for leg 0, so the prompt is computed once
    int *leg_len;
    int n_prompt;
    const char *prompt_param; // "prompt" or "messages", for errors
    bool failed;
} rpc_select;

typedef struct rpc_server rpc_server;

// rpc_server.c
void rpc_send_json(rpc_server *s, rpc_conn *c, cJSON *msg); // takes msg
void rpc_send_error(rpc_server *s, rpc_conn *c, const cJSON *id, int code, const char *param,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void rpc_pending_add(rpc_server *s, rpc_pending *p);
cs_engine *rpc_engine(rpc_server *s);
const char *rpc_api_key(rpc_server *s);
double rpc_uptime_s(rpc_server *s);
void rpc_log_request(rpc_server *s, const rpc_pending *p, const cs_event *done);

// rpc_methods.c
void rpc_dispatch(rpc_server *s, rpc_conn *c, const char *line, size_t len);
// Routes one engine event to its request (and answers the client on DONE). The caller frees p
// after the DONE event.
void rpc_on_event(rpc_server *s, rpc_pending *p, const cs_event *ev);
bool rpc_shutting_down(rpc_server *s);
void rpc_pending_free(rpc_pending *p);

// buffers
bool rpc_buf_append(rpc_buf *b, const char *data, size_t n);
void rpc_buf_free(rpc_buf *b);

#endif
