// The server's sockets: accept, read, buffer and flush output, split JSON-RPC lines (HTTP
// framing is http_server.c's), load the model, route engine events to the requests they
// belong to, and shut down gracefully.
#define _GNU_SOURCE // accept4
#include "common/clock.h"
#include "common/status.h"
#include "rpc_server.h"

#include <pthread.h>
#include <sys/eventfd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "rpc_internal.h"

#define MAP_BUCKETS 4096

struct rpc_server {
    rpc_params p;
    cs_engine *engine;       // NULL until the loader is done
    cs_engine_params ep;
    int epfd, tcp_fd, unix_fd, http_fd, sig_fd, ev_fd, load_fd;
    int tag_tcp, tag_unix, tag_http, tag_sig, tag_ev, tag_load; // their addresses mark the special fds
    pthread_t loader;
    bool loading;            // the loader thread runs
    int load_rc;             // written by the loader before it signals load_fd
    cs_engine *loaded;
    char load_err[256];
    char model_name[128];
    cs_metrics *metrics;
    rpc_conn *conns;
    int n_conns, n_http;
    uint64_t next_serial;
    rpc_pending *map[MAP_BUCKETS];
    int n_pending;
    bool shutting_down;
    double t_start, deadline, deadline_drain;
    int spare_fd;            // held open so that a client can be told 503 when fds run out
    double accept_resume;    // when > 0: listeners paused (out of fds) until then
    double t_fd_log;         // the last "out of file descriptors" line (one per 10 s)
    size_t body_reserved;    // request bodies still arriving, all connections (rpc_body_reserve)
};

void rpc_params_default(rpc_params *p) {
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 7777;
    p->max_line = 1 << 20;
    p->max_out = (size_t)64 << 20;
    p->max_connections = 1024;
    p->grace_ms = 30000;
    p->log_level = 2;
    p->http_port = 8000;
    p->max_body = (size_t)32 << 20;
    p->max_header = 64 << 10;
    p->request_timeout_ms = 30000;
    p->idle_timeout_ms = 60000;
}

cs_engine *rpc_engine(rpc_server *s) { return s->engine; }
const char *rpc_api_key(rpc_server *s) { return s->p.api_key; }
const rpc_params *rpc_server_params(rpc_server *s) { return &s->p; }
const char *rpc_model_name(rpc_server *s) { return s->model_name; }
cs_metrics *rpc_metrics(rpc_server *s) { return s->metrics; }
double rpc_uptime_s(rpc_server *s) { return cs_now_s() - s->t_start; }
bool rpc_shutting_down(rpc_server *s) { return s->shutting_down; }

void rpc_logf(rpc_server *s, int level, const char *fmt, ...) {
    if (level > s->p.log_level) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    cs_verrf(line, sizeof line, fmt, ap); // one line: control bytes from clients become '?'
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

void rpc_log_request(rpc_server *s, const rpc_pending *p, const cs_event *d) {
    rpc_logf(s, 2, "request %llu: %d prompt (%d cached) + %d generated tokens, ttft %.1f ms, total %.1f ms%s",
          (unsigned long long)p->engine_id, d->prompt_tokens, d->cached_tokens, d->completion_tokens,
          d->ttft_ms, d->total_ms, p->conn ? "" : " (client gone)");
}

// --- buffers and output --------------------------------------------------------------------

bool rpc_buf_append(rpc_buf *b, const char *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n); // data may be NULL when n is 0
    b->len += n;
    return true;
}

bool rpc_body_reserve(rpc_server *s, rpc_conn *c, size_t n) {
    size_t budget = 8 * s->p.max_body > ((size_t)256 << 20) ? 8 * s->p.max_body : (size_t)256 << 20;
    if (c->body_reserved) return true; // reserved when its head first came
    if (s->body_reserved + n > budget) return false;
    s->body_reserved += n;
    c->body_reserved = n;
    return true;
}

void rpc_body_release(rpc_server *s, rpc_conn *c) {
    s->body_reserved -= c->body_reserved;
    c->body_reserved = 0;
}

void rpc_buf_shrink(rpc_buf *b, size_t keep) {
    size_t want = b->len > keep ? b->len : keep;
    if (b->cap <= 4 * want) return;
    char *q = realloc(b->p, want);
    if (!q) return; // the larger block is still valid
    b->p = q;
    b->cap = want;
}

void rpc_buf_free(rpc_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void rpc_arm(rpc_server *s, rpc_conn *c) {
    // after the client's EOF only writing is left (its EPOLLRDHUP would fire forever)
    uint32_t read = c->peer_eof ? 0 : c->read_paused ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP;
    struct epoll_event ev = {.events = read | (c->want_write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void arm(rpc_server *s, rpc_conn *c, bool want_write) {
    if (c->want_write == want_write) return;
    c->want_write = want_write;
    rpc_arm(s, c);
}

static void close_conn(rpc_server *s, rpc_conn *c);
void rpc_close_conn(rpc_server *s, rpc_conn *c) { close_conn(s, c); }

// An HTTP connection closed after an error: shutting our side only, then reading until the
// client's EOF, keeps the kernel from answering its unread request bytes with a reset that
// would destroy the error response before the client reads it.
static void linger(rpc_server *s, rpc_conn *c) {
    shutdown(c->fd, SHUT_WR);
    c->lingering = true;
    c->t_linger = cs_now_s();
    c->in.len = 0;
    c->read_paused = false;
    rpc_arm(s, c);
}

// Writes what the socket takes now; the rest waits for EPOLLOUT.
static void flush(rpc_server *s, rpc_conn *c) {
    while (c->out_sent < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_sent, c->out.len - c->out_sent, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_sent += (size_t)w;
            c->t_progress = cs_now_s();
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm(s, c, true);
            return;
        }
        close_conn(s, c); // peer gone
        return;
    }
    c->out.len = c->out_sent = 0;
    arm(s, c, false);
    if (c->closing && c->http && !c->lingering && !c->peer_eof) linger(s, c);
    else if (c->closing) close_conn(s, c);
}

// Queues without writing (rpc_write then sends all at once: one segment, not several).
bool rpc_append(rpc_server *s, rpc_conn *c, const char *data, size_t n) {
    if (!c || c->fd < 0) return false;
    if (c->out_sent == c->out.len) c->t_progress = cs_now_s();
    if (!rpc_buf_append(&c->out, data, n)) {
        rpc_logf(s, 0, "connection %llu: out of memory for a response: closing", (unsigned long long)c->serial);
        close_conn(s, c);
        return false;
    }
    return true;
}

bool rpc_write(rpc_server *s, rpc_conn *c, const char *data, size_t n) {
    if (!c || c->fd < 0) return false;
    if (c->out_sent == c->out.len) c->t_progress = cs_now_s(); // the stall clock starts with new output
    if (!rpc_buf_append(&c->out, data, n)) {
        rpc_logf(s, 0, "connection %llu: out of memory for a response: closing", (unsigned long long)c->serial);
        close_conn(s, c);
        return false;
    }
    if (c->out.len - c->out_sent > s->p.max_out) { // the client does not read: drop it
        rpc_logf(s, 1, "connection %llu: %zu unread bytes: closing", (unsigned long long)c->serial,
                 c->out.len - c->out_sent);
        close_conn(s, c);
        return false;
    }
    if (!c->want_write) flush(s, c);
    return c->fd >= 0;
}

void rpc_send_json(rpc_server *s, rpc_conn *c, cJSON *msg) {
    char *text = msg ? cJSON_PrintUnformatted(msg) : NULL;
    cJSON_Delete(msg);
    if (!c || c->fd < 0) {
        free(text);
        return;
    }
    size_t len = text ? strlen(text) : 0;
    if (text) text[len] = '\n'; // replaces the NUL: the line is written by length
    if (!text) {
        rpc_logf(s, 0, "connection %llu: out of memory for a response: closing", (unsigned long long)c->serial);
        close_conn(s, c);
    } else {
        rpc_write(s, c, text, len + 1);
    }
    free(text);
}

void rpc_send_error(rpc_server *s, rpc_conn *c, const cJSON *id, int code, const char *param,
                    const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *r = cJSON_CreateObject(), *e = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, true) : cJSON_CreateNull());
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    if (param) {
        cJSON *d = cJSON_AddObjectToObject(e, "data");
        cJSON_AddStringToObject(d, "param", param);
    }
    cJSON_AddItemToObject(r, "error", e);
    rpc_send_json(s, c, r);
}

// --- requests in flight --------------------------------------------------------------------

void rpc_pending_add(rpc_server *s, rpc_pending *p) {
    rpc_pending **b = &s->map[p->engine_id % MAP_BUCKETS];
    p->map_next = *b;
    *b = p;
    if (p->conn) {
        p->conn_next = p->conn->pending;
        p->conn->pending = p;
    }
    s->n_pending++;
}

static rpc_pending *pending_find(rpc_server *s, uint64_t id) {
    for (rpc_pending *p = s->map[id % MAP_BUCKETS]; p; p = p->map_next)
        if (p->engine_id == id) return p;
    return NULL;
}

static void pending_remove(rpc_server *s, rpc_pending *p) {
    for (rpc_pending **q = &s->map[p->engine_id % MAP_BUCKETS]; *q; q = &(*q)->map_next)
        if (*q == p) {
            *q = p->map_next;
            break;
        }
    if (p->conn)
        for (rpc_pending **q = &p->conn->pending; *q; q = &(*q)->conn_next)
            if (*q == p) {
                *q = p->conn_next;
                break;
            }
    s->n_pending--;
}

// Metrics see every request, whichever protocol it came by, and whether its client is still there.
static void observe(rpc_server *s, rpc_pending *p, const cs_event *ev) {
    if (ev->type == CS_EVENT_DONE) cs_metrics_request_done(s->metrics, ev);
    if (ev->type == CS_EVENT_FINISH) cs_metrics_choice_finished(s->metrics, ev->finish_reason);
    if (ev->type == CS_EVENT_TOKEN && ev->index >= 0 && ev->index < p->n) {
        double now = cs_now_s();
        rpc_choice *ch = &p->choices[ev->index];
        if (ch->t_last > 0) cs_metrics_inter_token(s->metrics, now - ch->t_last);
        ch->t_last = now;
    }
}

static void route_events(rpc_server *s) {
    cs_event ev;
    for (int i = 0; i < 4096 && cs_engine_poll(s->engine, &ev, 0) == 1; i++) {
        rpc_pending *p = pending_find(s, ev.request_id);
        if (!p) continue;
        observe(s, p, &ev);
        if (ev.type == CS_EVENT_DONE) pending_remove(s, p);
        if (p->oa) oa_on_event(s, p, &ev);
        else rpc_on_event(s, p, &ev);
        if (ev.type == CS_EVENT_DONE) rpc_pending_free(p);
    }
}

// --- connections ---------------------------------------------------------------------------

static void close_conn(rpc_server *s, rpc_conn *c) {
    if (c->fd < 0) return;
    rpc_body_release(s, c);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    // its requests, queued or running, end now: their events are dropped as they come
    for (rpc_pending *p = c->pending; p; p = p->conn_next) {
        p->conn = NULL;
        if (p->select) p->select->conn = NULL;
        if (p->oa) oa_conn_gone(p->oa);
        cs_engine_cancel(s->engine, p->engine_id);
    }
    c->pending = NULL;
    c->call = NULL;
    s->n_conns--;
    if (c->http) s->n_http--;
}

static void free_closed(rpc_server *s) {
    for (rpc_conn **q = &s->conns; *q;) {
        rpc_conn *c = *q;
        if (c->fd >= 0) {
            q = &c->next;
            continue;
        }
        *q = c->next;
        rpc_buf_free(&c->in);
        rpc_buf_free(&c->out);
        free(c);
    }
}

// A connection the server cannot take: one 503 (HTTP) or JSON-RPC error, then closed.
static void refuse(int fd, bool http) {
    static const char msg[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,"
                              "\"message\":\"too many connections\"}}\n";
    static const char body[] = "{\"error\":{\"message\":\"too many connections\","
                               "\"type\":\"service_unavailable_error\",\"param\":null,\"code\":null}}";
    char hmsg[512];
    int hn = snprintf(hmsg, sizeof hmsg, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                      "Connection: close\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                      sizeof body - 1, body);
    ssize_t w = http ? send(fd, hmsg, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT)
                     : send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

static void set_listening(rpc_server *s, bool on) {
    int fds[3] = {s->tcp_fd, s->unix_fd, s->http_fd};
    void *tags[3] = {&s->tag_tcp, &s->tag_unix, &s->tag_http};
    for (int i = 0; i < 3; i++) {
        struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = tags[i]};
        if (fds[i] >= 0) epoll_ctl(s->epfd, EPOLL_CTL_MOD, fds[i], &ev);
    }
}

// Out of file descriptors: the listener stays readable (level-triggered), so returning would
// spin. The spare fd is given up for a moment to accept the client and tell it 503; without
// one, the listeners pause for 100 ms.
static void out_of_fds(rpc_server *s, int lfd, bool http) {
    int fd = -1;
    if (s->spare_fd >= 0) {
        close(s->spare_fd);
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) refuse(fd, http);
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        set_listening(s, false);
        s->accept_resume = cs_now_s() + 0.1;
    }
    if (cs_now_s() - s->t_fd_log > 10) {
        s->t_fd_log = cs_now_s();
        rpc_logf(s, 1, "out of file descriptors (%d connections open): refusing new ones", s->n_conns);
    }
}

static void accept_all(rpc_server *s, int lfd, bool http) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            out_of_fds(s, lfd, http);
            return;
        }
        if (fd < 0) return; // EAGAIN, or a transient error: try at the next wakeup
        if (s->n_conns >= s->p.max_connections) {
            refuse(fd, http);
            continue;
        }
        rpc_conn *c = calloc(1, sizeof *c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (!c || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c);
            close(fd);
            continue;
        }
        // streamed tokens are small writes that must leave at once, not wait for an ACK
        int one = 1;
        if (lfd != s->unix_fd) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->serial = ++s->next_serial;
        c->authed = s->p.api_key == NULL;
        c->http = http;
        c->t_idle = cs_now_s();
        if (http) s->n_http++;
        c->next = s->conns;
        s->conns = c;
        s->n_conns++;
    }
}

// HTTP: the client shut its side (or is gone: a read of 0 cannot tell the two apart). What the
// loop answers at once (health, models, tokenize, errors) is still answered, so a
// half-closing client like `nc -N` gets those; a generation, running or just started, is
// cancelled as for any disconnect (as uvicorn does for vLLM), since a client that is gone
// would otherwise hold it to max_tokens. The socket closes once what is owed is written.
static void peer_gone(rpc_server *s, rpc_conn *c) {
    c->peer_eof = true;
    if (!c->busy) http_on_input(s, c);
    if (c->fd < 0) return;
    if (c->busy || c->out_sent == c->out.len) {
        close_conn(s, c);
        return;
    }
    c->closing = true; // nothing more to read: close when the output is out
    rpc_arm(s, c);
}

// HTTP: reads what came, then lets http_server.c frame it. Input behind a busy request is
// buffered up to one request's limits, then reading pauses until the request ends.
static void read_http(rpc_server *s, rpc_conn *c) {
    char buf[65536];
    // behind a running request, pipelined heads only: its body, and the memory for it, waits
    size_t cap = c->busy ? s->p.max_header : s->p.max_header + s->p.max_body;
    // at most 4 MiB per wakeup: a fast sender cannot hold the loop (epoll calls again)
    for (int reads = 0; reads < 64; reads++) {
        if (!c->lingering && c->in.len >= cap) {
            c->read_paused = true;
            rpc_arm(s, c);
            break;
        }
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0 && !c->lingering && !c->closing) { // the client shut its side: see peer_gone
            peer_gone(s, c);
            return;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_conn(s, c);
            return;
        }
        if (n < 0) break;
        if (c->lingering || c->closing) continue; // an error was sent: the rest is discarded
        if (!rpc_buf_append(&c->in, buf, (size_t)n)) {
            close_conn(s, c);
            return;
        }
    }
    if (!c->lingering && !c->closing) http_on_input(s, c);
}

// Splits what arrived into lines and runs each; enforces the line limit.
static void read_conn(rpc_server *s, rpc_conn *c) {
    char buf[65536];
    if (c->http) {
        read_http(s, c);
        return;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_conn(s, c);
            return;
        }
        if (n < 0) return;
        if (c->closing) continue; // draining a connection we are closing
        if (!rpc_buf_append(&c->in, buf, (size_t)n)) {
            close_conn(s, c);
            return;
        }
        size_t start = 0;
        for (size_t i = c->in.len - (size_t)n; i < c->in.len && c->fd >= 0 && !c->closing; i++) {
            if (c->in.p[i] != '\n') continue;
            size_t len = i - start;
            if (len > 0 && c->in.p[start + len - 1] == '\r') len--;
            if (len > s->p.max_line) {
                c->closing = true;
                rpc_send_error(s, c, NULL, RPC_TOO_LARGE, NULL, "request line exceeds %zu bytes", s->p.max_line);
                break;
            }
            if (len > 0) rpc_dispatch(s, c, c->in.p + start, len);
            start = i + 1;
        }
        if (c->fd < 0) return;
        memmove(c->in.p, c->in.p + start, c->in.len - start);
        c->in.len -= start;
        if (c->closing) {
            c->in.len = 0;
            return;
        }
        if (c->in.len > s->p.max_line) {
            c->closing = true;
            rpc_send_error(s, c, NULL, RPC_TOO_LARGE, NULL, "request line exceeds %zu bytes", s->p.max_line);
            c->in.len = 0;
            if (c->fd >= 0 && !c->want_write) flush(s, c);
            return;
        }
    }
}

// --- start-up ------------------------------------------------------------------------------

static int listen_tcp(const char *host, int port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "error: --host %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            fprintf(stderr, "error: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
            close(fd);
            fd = -1;
            break;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int listen_unix(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "error: --socket %s: path too long\n", path);
        return -1;
    }
    strcpy(a.sun_path, path);
    unlink(path); // a stale socket file from an earlier run
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
        fprintf(stderr, "error: cannot listen on %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static bool watch(rpc_server *s, int fd, void *tag) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

// Raises the soft limit on open files to the hard one, and lowers --max-connections to what
// the limit allows beside the server's own files (model, listeners, engine), so that the
// connection limit answers 503 before accept runs out of descriptors.
static void fit_fd_limit(rpc_server *s) {
    enum { OWN_FDS = 64 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t cur = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = cur;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)s->p.max_connections + OWN_FDS) return;
    int fit = rl.rlim_cur > OWN_FDS + 1 ? (int)rl.rlim_cur - OWN_FDS : 1;
    fprintf(stderr, "open files limited to %llu: --max-connections lowered from %d to %d\n",
            (unsigned long long)rl.rlim_cur, s->p.max_connections, fit);
    s->p.max_connections = fit;
}

static int setup(rpc_server *s) {
    fit_fd_limit(s);
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->tcp_fd = s->p.port > 0 ? listen_tcp(s->p.host, s->p.port) : -1;
    s->unix_fd = s->p.socket_path ? listen_unix(s->p.socket_path) : -1;
    s->http_fd = s->p.http_port > 0 ? listen_tcp(s->p.host, s->p.http_port) : -1;
    s->load_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->metrics = cs_metrics_new();
    if (s->epfd < 0 || s->sig_fd < 0 || s->load_fd < 0 || !s->metrics || (s->p.port > 0 && s->tcp_fd < 0) ||
        (s->p.socket_path && s->unix_fd < 0) || (s->p.http_port > 0 && s->http_fd < 0))
        return -1;
    if (!watch(s, s->sig_fd, &s->tag_sig) || !watch(s, s->load_fd, &s->tag_load) ||
        (s->tcp_fd >= 0 && !watch(s, s->tcp_fd, &s->tag_tcp)) || (s->unix_fd >= 0 && !watch(s, s->unix_fd, &s->tag_unix)) ||
        (s->http_fd >= 0 && !watch(s, s->http_fd, &s->tag_http)))
        return -1;
    if (s->tcp_fd >= 0) fprintf(stderr, "listening on %s:%d\n", s->p.host, s->p.port);
    if (s->unix_fd >= 0) fprintf(stderr, "listening on unix:%s\n", s->p.socket_path);
    if (s->http_fd >= 0) fprintf(stderr, "listening on http://%s:%d\n", s->p.host, s->p.http_port);
    return 0;
}

// --- loading the model ---------------------------------------------------------------------

static void *load_main(void *arg) {
    rpc_server *s = arg;
    s->load_rc = cs_engine_init(&s->ep, &s->loaded, s->load_err, sizeof s->load_err);
    uint64_t one = 1;
    ssize_t w = write(s->load_fd, &one, sizeof one); // the loop joins this thread when it sees it
    (void)w;
    return NULL;
}

static int start_loading(rpc_server *s) {
    if (pthread_create(&s->loader, NULL, load_main, s) != 0) {
        fprintf(stderr, "error: cannot start the model loader thread\n");
        return -1;
    }
    s->loading = true;
    return 0;
}

// The served name: --served-model-name, else what the user named (the preset of dummy weights,
// or the model file or directory without its path and .gguf), as vLLM names a model by its path.
static void set_model_name(rpc_server *s) {
    const char *name = s->p.served_model_name ? s->p.served_model_name : s->ep.dummy_weights;
    if (!name) {
        const char *path = s->ep.model_path;
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/') len--;
        const char *base = path + len;
        while (base > path && base[-1] != '/') base--;
        len -= (size_t)(base - path);
        if (len > 5 && !strncmp(base + len - 5, ".gguf", 5)) len -= 5;
        snprintf(s->model_name, sizeof s->model_name, "%.*s", (int)len, base);
        return;
    }
    snprintf(s->model_name, sizeof s->model_name, "%s", name);
}

// The loader is done: serve its engine, or stop with its error (exit code 2).
static int finish_loading(rpc_server *s) {
    uint64_t v;
    ssize_t r = read(s->load_fd, &v, sizeof v);
    (void)r;
    pthread_join(s->loader, NULL);
    s->loading = false;
    if (s->load_rc != 0) {
        const char *path = s->ep.model_path;
        bool named = !strncmp(s->load_err, path, strlen(path)); // file errors name the path already
        fprintf(stderr, "error: %s%s%s\n", named ? "" : path, named ? "" : ": ", s->load_err);
        return 2;
    }
    s->engine = s->loaded;
    s->ev_fd = cs_engine_event_fd(s->engine);
    if (!watch(s, s->ev_fd, &s->tag_ev)) return 1;
    cs_engine_info info;
    cs_engine_stats st;
    cs_engine_info_get(s->engine, &info);
    cs_engine_stats_get(s->engine, &st);
    set_model_name(s);
    fprintf(stderr, "model %s (%s, %s), device %s, context %d\n", info.name, info.architecture, info.weight_formats,
            info.device, info.context_length);
    fprintf(stderr, "KV cache: %d blocks of %d tokens = %d tokens, %.1f MiB\n", st.blocks_total, st.block_size,
            st.blocks_total * st.block_size, (double)st.kv_cache_bytes / (1 << 20));
    fprintf(stderr, "ready: model %s\n", s->model_name);
    return 0;
}

// SIGINT/SIGTERM: stop accepting; in-flight requests get grace_ms to finish.
static void begin_shutdown(rpc_server *s) {
    struct signalfd_siginfo si;
    while (read(s->sig_fd, &si, sizeof si) == sizeof si) {}
    if (s->shutting_down) return;
    s->shutting_down = true;
    s->deadline = cs_now_s() + s->p.grace_ms / 1000.0;
    s->deadline_drain = cs_now_s() + 2.0;
    if (s->tcp_fd >= 0) close(s->tcp_fd);
    if (s->unix_fd >= 0) close(s->unix_fd);
    if (s->http_fd >= 0) close(s->http_fd);
    s->tcp_fd = s->unix_fd = s->http_fd = -1;
    rpc_logf(s, 2, "shutting down: %d requests in flight", s->n_pending);
}

static void cancel_all(rpc_server *s) {
    for (int b = 0; b < MAP_BUCKETS; b++)
        for (rpc_pending *p = s->map[b]; p; p = p->map_next) cs_engine_cancel(s->engine, p->engine_id);
}

static int handle(rpc_server *s, struct epoll_event *ev) {
    void *tag = ev->data.ptr;
    if (tag == &s->tag_tcp) accept_all(s, s->tcp_fd, false);
    else if (tag == &s->tag_unix) accept_all(s, s->unix_fd, false);
    else if (tag == &s->tag_http) accept_all(s, s->http_fd, true);
    else if (tag == &s->tag_sig) begin_shutdown(s);
    else if (tag == &s->tag_ev) route_events(s);
    else if (tag == &s->tag_load) return finish_loading(s);
    else {
        rpc_conn *c = tag;
        if (c->fd < 0) return 0;
        if (ev->events & EPOLLOUT) flush(s, c);
        if (c->fd >= 0 && (c->read_paused || c->peer_eof) && (ev->events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
            close_conn(s, c);
        else if (c->fd >= 0 && (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) read_conn(s, c);
    }
    return 0;
}

static bool output_pending(rpc_server *s) {
    for (rpc_conn *c = s->conns; c; c = c->next)
        if (c->fd >= 0 && c->out_sent < c->out.len) return true;
    return false;
}

static void check_timers(rpc_server *s) {
    double now = cs_now_s();
    for (rpc_conn *c = s->conns; c; c = c->next)
        if (c->fd >= 0 && c->http) http_check_timers(s, c, now);
}

int rpc_serve(const cs_engine_params *ep, const rpc_params *p) {
    rpc_server *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->p = *p;
    s->ep = *ep;
    s->t_start = cs_now_s();
    s->epfd = s->tcp_fd = s->unix_fd = s->http_fd = s->sig_fd = s->ev_fd = s->load_fd = s->spare_fd = -1;
    int rc = setup(s) == 0 && start_loading(s) == 0 ? 0 : 1;
    bool cancelled = false;
    struct epoll_event evs[64];
    while (rc == 0) {
        if (s->shutting_down) {
            // done when nothing runs and what is owed to clients is written (or 2 s more passed)
            if (s->n_pending == 0 && (!output_pending(s) || cs_now_s() > s->deadline_drain)) break;
            if (s->n_pending > 0) s->deadline_drain = cs_now_s() + 2.0;
            if (!cancelled && cs_now_s() > s->deadline) {
                rpc_logf(s, 1, "grace period over: cancelling %d requests", s->n_pending);
                cancel_all(s);
                cancelled = true;
            }
        }
        // HTTP deadlines (slow or idle clients) are checked a few times a second
        int wait_ms = s->shutting_down || s->accept_resume > 0 ? 100 : s->n_http > 0 ? 250 : -1;
        int n = epoll_wait(s->epfd, evs, 64, wait_ms);
        for (int i = 0; i < n && rc == 0; i++) rc = handle(s, &evs[i]);
        if (s->accept_resume > 0 && cs_now_s() >= s->accept_resume && !s->shutting_down) {
            s->accept_resume = 0;
            set_listening(s, true);
        }
        if (s->n_http > 0) check_timers(s);
        free_closed(s);
    }
    for (rpc_conn *c = s->conns; c; c = c->next) {
        if (c->fd >= 0) flush(s, c);
        if (c->fd >= 0) close_conn(s, c);
    }
    free_closed(s);
    for (int b = 0; b < MAP_BUCKETS; b++)
        while (s->map[b]) {
            rpc_pending *q = s->map[b];
            pending_remove(s, q);
            rpc_pending_free(q);
        }
    if (s->tcp_fd >= 0) close(s->tcp_fd);
    if (s->unix_fd >= 0) close(s->unix_fd);
    if (s->http_fd >= 0) close(s->http_fd);
    if (s->p.socket_path && rc == 0) unlink(s->p.socket_path);
    if (s->sig_fd >= 0) close(s->sig_fd);
    if (s->spare_fd >= 0) close(s->spare_fd);
    if (s->epfd >= 0) close(s->epfd);
    cs_engine_free(s->engine);
    cs_metrics_free(s->metrics);
    if (s->loading) {
        // stopped while the model loads: the loader may be blocked in I/O; the process exits
        // around it (it owns nothing of ours but s, which is left to it)
        pthread_detach(s->loader);
        return rc;
    }
    if (s->load_fd >= 0) close(s->load_fd);
    free(s);
    return rc;
}
