// `cserve serve`'s socket server: JSON-RPC 2.0, one JSON object per line, over TCP and
// optionally a Unix socket, and the OpenAI-compatible HTTP API on its own port. One I/O
// thread runs an epoll loop over the listening sockets, the connections, a signalfd
// (SIGINT/SIGTERM), the model loader's eventfd and the engine's event fd; the engine runs on
// its own thread (include/cserve/engine.h). Sockets are non-blocking and every connection
// has its own buffers, so a slow reader never blocks the engine or anyone else.
#ifndef CS_RPC_SERVER_H
#define CS_RPC_SERVER_H

#include <stddef.h>

#include "cserve/engine.h"

typedef struct rpc_params {
    const char *host;        // default 127.0.0.1
    int port;                // default 7777; 0 = no TCP
    const char *socket_path; // NULL = no Unix socket
    const char *api_key;     // NULL = open
    size_t max_line;         // bytes per request line (default 1 MiB)
    size_t max_out;          // unsent bytes per connection before it is dropped (default 64 MiB)
    int max_connections;     // default 1024
    int grace_ms;            // on SIGINT/SIGTERM: how long in-flight requests may finish
    int log_level;           // 0 error, 1 warn, 2 info, 3 debug
    // HTTP
    int http_port;           // default 8000; 0 = no HTTP
    const char *served_model_name; // NULL = the model's name
    size_t max_body;         // request body bytes (default 32 MiB)
    size_t max_header;       // request line + headers (default 64 KiB)
    int request_timeout_ms;  // a request's head and body must arrive in this time (default 30 s)
    int idle_timeout_ms;     // idle keep-alive connections close after this (default 60 s)
} rpc_params;

void rpc_params_default(rpc_params *p);
// Listens, loads the model on a background thread (health checks answer "loading" meanwhile),
// then serves until SIGINT/SIGTERM; returns the exit code (0 after a clean shutdown). Errors at
// start-up (address in use, ...) give 1; a model that fails to load gives 2.
int rpc_serve(const cs_engine_params *ep, const rpc_params *p);

#endif
