// `cserve serve`'s socket server: JSON-RPC 2.0, one JSON object per line, over TCP and
// optionally a Unix socket. One I/O thread runs an epoll loop over the listening sockets,
// the connections, a signalfd (SIGINT/SIGTERM) and the engine's event fd; the engine runs on
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
} rpc_params;

void rpc_params_default(rpc_params *p);
// Serves until SIGINT/SIGTERM; returns the exit code (0 after a clean shutdown). The engine
// is borrowed. Errors at start-up (address in use, ...) are printed and give 1.
int rpc_serve(cs_engine *engine, const rpc_params *p);

#endif
