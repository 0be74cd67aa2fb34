// The server's private state: connections, requests in flight, and the pieces that
// rpc_server.c (sockets, epoll, loading), rpc_methods.c (JSON-RPC methods), http_server.c
// (HTTP/1.1 framing) and openai_api.c (the OpenAI endpoints) share.
#ifndef CS_RPC_INTERNAL_H
#define CS_RPC_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cserve/engine.h"
#include "rpc_server.h"

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
struct oa_call;

typedef struct rpc_conn {
    int fd;
    uint64_t serial;         // unique per connection, for logs
    rpc_buf in, out;
    size_t out_sent;         // bytes of out already written
    bool authed;
    bool closing;            // close once out is flushed
    bool want_write;         // EPOLLOUT armed
    bool read_paused;        // EPOLLIN disarmed (HTTP: input piles up behind a busy request)
    struct rpc_pending *pending; // requests in flight (linked through conn_next)
    struct rpc_conn *next;   // all connections
    // HTTP only
    bool http;
    bool busy;               // a request is being answered; pipelined ones wait in `in`
    bool keep_alive;         // of the request being answered
    bool continue_sent;      // "100 Continue" sent for the request in `in`
    bool lingering;          // error sent and write side shut: input is discarded until EOF
    bool http10;             // the request being answered is HTTP/1.0: no chunked streams
    bool head_only;          // the request being answered is HEAD: GET's status and headers alone
    size_t body_reserved;    // the body still arriving, counted in the server's budget (rpc_body_reserve)
    bool peer_eof;           // the client shut its side: what it sent is answered, then we close
    size_t need;             // bytes of the request in `in` (head + body) once its head parsed; 0: unknown
    size_t scanned;          // bytes of a partial head already parsed (parsed again only after a '\n')
    double t_progress;       // when output last moved (or was queued on an empty buffer)
    double t_request;        // when the first byte of the request in `in` came (0: none)
    double t_idle;           // when the connection last became idle
    double t_linger;         // when lingering started
    struct oa_call *call;    // the OpenAI call being answered, if any
} rpc_conn;

// One choice's accumulated output, for the final response.
typedef struct rpc_choice {
    rpc_buf text;
    int32_t *ids;
    int n_ids, cap_ids;
    cJSON *logprobs;         // array, when asked
    const char *finish;
    double t_last;           // when its last token came (inter-token latency)
    size_t text_offset;      // OpenAI: bytes of text before the next token (completions logprobs)
    bool started;            // OpenAI stream: the first chunk (with the role) was sent
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
    struct oa_call *oa;      // non-NULL for one leg (one prompt) of an OpenAI call
    int oa_leg;
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
// Queues bytes for the client and writes what the socket takes; false when the connection
// had to be closed (out of memory, or a client that does not read).
bool rpc_write(rpc_server *s, rpc_conn *c, const char *data, size_t n);
bool rpc_append(rpc_server *s, rpc_conn *c, const char *data, size_t n); // queues only
void rpc_send_json(rpc_server *s, rpc_conn *c, cJSON *msg); // takes msg
void rpc_send_error(rpc_server *s, rpc_conn *c, const cJSON *id, int code, const char *param,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void rpc_pending_add(rpc_server *s, rpc_pending *p);
cs_engine *rpc_engine(rpc_server *s); // NULL while the model loads
const char *rpc_api_key(rpc_server *s);
const rpc_params *rpc_server_params(rpc_server *s);
const char *rpc_model_name(rpc_server *s); // the served name ("" while loading)
struct cs_metrics *rpc_metrics(rpc_server *s);
void rpc_logf(rpc_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void rpc_close_conn(rpc_server *s, rpc_conn *c);
void rpc_arm(rpc_server *s, rpc_conn *c);
double rpc_uptime_s(rpc_server *s);
void rpc_log_request(rpc_server *s, const rpc_pending *p, const cs_event *done);

// http_server.c: the HTTP side of a connection
void http_on_input(rpc_server *s, rpc_conn *c);     // new bytes in c->in (or a request ended)
void http_check_timers(rpc_server *s, rpc_conn *c, double now);
// Answers the current request (status, a JSON or text body) and ends it.
void http_respond(rpc_server *s, rpc_conn *c, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers);
// An OpenAI-shaped error: {"error": {message, type, param, code}}; 503s carry Retry-After.
void http_error(rpc_server *s, rpc_conn *c, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void http_stream_begin(rpc_server *s, rpc_conn *c);
void http_stream_data(rpc_server *s, rpc_conn *c, const char *json); // one "data: ...\n\n" event
void http_stream_end(rpc_server *s, rpc_conn *c);                    // "data: [DONE]", ends the request
// The current request ended without a response body of its own (the stream was ended).
void http_request_done(rpc_server *s, rpc_conn *c);

// openai_api.c
// Routes one complete request; answers it at once or starts an engine call (c->busy stays).
void oa_dispatch(rpc_server *s, rpc_conn *c, const char *method, const char *path, const char *body, size_t len);
void oa_on_event(rpc_server *s, rpc_pending *p, const cs_event *ev);
void oa_conn_gone(struct oa_call *call);

// rpc_methods.c
void rpc_dispatch(rpc_server *s, rpc_conn *c, const char *line, size_t len);
// Routes one engine event to its request (and answers the client on DONE). The caller frees p
// after the DONE event.
void rpc_on_event(rpc_server *s, rpc_pending *p, const cs_event *ev);
bool rpc_shutting_down(rpc_server *s);
rpc_pending *rpc_pending_new(rpc_conn *c, const cJSON *id, int n); // id may be NULL
void rpc_pending_free(rpc_pending *p);

// buffers
bool rpc_buf_append(rpc_buf *b, const char *data, size_t n);
// Request bodies still arriving are held in memory, so their total is bounded: 8 bodies of
// --max-body-bytes (at least 256 MiB). A body that does not fit gets 503 (c->body_reserved
// is given back when the body is complete or the connection closes).
bool rpc_body_reserve(rpc_server *s, rpc_conn *c, size_t n);
void rpc_body_release(rpc_server *s, rpc_conn *c);
// Gives back most of a buffer that grew past 4x max(len, keep) (a big body once came).
void rpc_buf_shrink(rpc_buf *b, size_t keep);
void rpc_buf_free(rpc_buf *b);

#endif
