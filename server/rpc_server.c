// The JSON-RPC server's sockets: accept, read and split lines, buffer and flush output,
// route engine events to the requests they belong to, and shut down gracefully.
#define _GNU_SOURCE // accept4
#include "common/clock.h"
#include "rpc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rpc_internal.h"

#define MAP_BUCKETS 4096

struct rpc_server {
    rpc_params p;
    cs_engine *engine;
    int epfd, tcp_fd, unix_fd, sig_fd, ev_fd;
    int tag_tcp, tag_unix, tag_sig, tag_ev; // their addresses mark the special fds in epoll
    rpc_conn *conns;
    int n_conns;
    uint64_t next_serial;
    rpc_pending *map[MAP_BUCKETS];
    int n_pending;
    bool shutting_down;
    double t_start, deadline;
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
}

cs_engine *rpc_engine(rpc_server *s) { return s->engine; }
const char *rpc_api_key(rpc_server *s) { return s->p.api_key; }
double rpc_uptime_s(rpc_server *s) { return cs_now_s() - s->t_start; }
bool rpc_shutting_down(rpc_server *s) { return s->shutting_down; }

static void logf_(rpc_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(rpc_server *s, int level, const char *fmt, ...) {
    if (level > s->p.log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void rpc_log_request(rpc_server *s, const rpc_pending *p, const cs_event *d) {
    logf_(s, 2, "request %llu: %d prompt (%d cached) + %d generated tokens, ttft %.1f ms, total %.1f ms%s",
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
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return true;
}

void rpc_buf_free(rpc_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void arm(rpc_server *s, rpc_conn *c, bool want_write) {
    if (c->want_write == want_write) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_write = want_write;
}

static void close_conn(rpc_server *s, rpc_conn *c);

// Writes what the socket takes now; the rest waits for EPOLLOUT.
static void flush(rpc_server *s, rpc_conn *c) {
    while (c->out_sent < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_sent, c->out.len - c->out_sent, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_sent += (size_t)w;
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
    if (c->closing) close_conn(s, c);
}

void rpc_send_json(rpc_server *s, rpc_conn *c, cJSON *msg) {
    char *text = msg ? cJSON_PrintUnformatted(msg) : NULL;
    cJSON_Delete(msg);
    if (!c || c->fd < 0) {
        free(text);
        return;
    }
    if (!text || !rpc_buf_append(&c->out, text, strlen(text)) || !rpc_buf_append(&c->out, "\n", 1)) {
        free(text);
        logf_(s, 0, "connection %llu: out of memory for a response: closing", (unsigned long long)c->serial);
        close_conn(s, c);
        return;
    }
    free(text);
    if (c->out.len - c->out_sent > s->p.max_out) { // the client does not read: drop it
        logf_(s, 1, "connection %llu: %zu unread bytes: closing", (unsigned long long)c->serial,
              c->out.len - c->out_sent);
        close_conn(s, c);
        return;
    }
    if (!c->want_write) flush(s, c);
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

static void route_events(rpc_server *s) {
    cs_event ev;
    for (int i = 0; i < 4096 && cs_engine_poll(s->engine, &ev, 0) == 1; i++) {
        rpc_pending *p = pending_find(s, ev.request_id);
        if (!p) continue;
        if (ev.type == CS_EVENT_DONE) pending_remove(s, p);
        rpc_on_event(s, p, &ev);
        if (ev.type == CS_EVENT_DONE) rpc_pending_free(p);
    }
}

// --- connections ---------------------------------------------------------------------------

static void close_conn(rpc_server *s, rpc_conn *c) {
    if (c->fd < 0) return;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    // its requests, queued or running, end now: their events are dropped as they come
    for (rpc_pending *p = c->pending; p; p = p->conn_next) {
        p->conn = NULL;
        if (p->select) p->select->conn = NULL;
        cs_engine_cancel(s->engine, p->engine_id);
    }
    c->pending = NULL;
    s->n_conns--;
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

static void accept_all(rpc_server *s, int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; // EAGAIN, or a transient error: try at the next wakeup
        if (s->n_conns >= s->p.max_connections) {
            static const char msg[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,"
                                      "\"message\":\"too many connections\"}}\n";
            ssize_t w = send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            close(fd);
            continue;
        }
        rpc_conn *c = calloc(1, sizeof *c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (!c || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->serial = ++s->next_serial;
        c->authed = s->p.api_key == NULL;
        c->next = s->conns;
        s->conns = c;
        s->n_conns++;
    }
}

// Splits what arrived into lines and runs each; enforces the line limit.
static void read_conn(rpc_server *s, rpc_conn *c) {
    char buf[65536];
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

static int setup(rpc_server *s) {
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
    s->ev_fd = cs_engine_event_fd(s->engine);
    if (s->epfd < 0 || s->sig_fd < 0 || (s->p.port > 0 && s->tcp_fd < 0) || (s->p.socket_path && s->unix_fd < 0))
        return -1;
    if (!watch(s, s->sig_fd, &s->tag_sig) || !watch(s, s->ev_fd, &s->tag_ev) ||
        (s->tcp_fd >= 0 && !watch(s, s->tcp_fd, &s->tag_tcp)) || (s->unix_fd >= 0 && !watch(s, s->unix_fd, &s->tag_unix)))
        return -1;
    if (s->tcp_fd >= 0) fprintf(stderr, "listening on %s:%d\n", s->p.host, s->p.port);
    if (s->unix_fd >= 0) fprintf(stderr, "listening on unix:%s\n", s->p.socket_path);
    return 0;
}

// SIGINT/SIGTERM: stop accepting; in-flight requests get grace_ms to finish.
static void begin_shutdown(rpc_server *s) {
    struct signalfd_siginfo si;
    while (read(s->sig_fd, &si, sizeof si) == sizeof si) {}
    if (s->shutting_down) return;
    s->shutting_down = true;
    s->deadline = cs_now_s() + s->p.grace_ms / 1000.0;
    if (s->tcp_fd >= 0) close(s->tcp_fd);
    if (s->unix_fd >= 0) close(s->unix_fd);
    s->tcp_fd = s->unix_fd = -1;
    logf_(s, 2, "shutting down: %d requests in flight", s->n_pending);
}

static void cancel_all(rpc_server *s) {
    for (int b = 0; b < MAP_BUCKETS; b++)
        for (rpc_pending *p = s->map[b]; p; p = p->map_next) cs_engine_cancel(s->engine, p->engine_id);
}

static void handle(rpc_server *s, struct epoll_event *ev) {
    void *tag = ev->data.ptr;
    if (tag == &s->tag_tcp) accept_all(s, s->tcp_fd);
    else if (tag == &s->tag_unix) accept_all(s, s->unix_fd);
    else if (tag == &s->tag_sig) begin_shutdown(s);
    else if (tag == &s->tag_ev) route_events(s);
    else {
        rpc_conn *c = tag;
        if (c->fd < 0) return;
        if (ev->events & EPOLLOUT) flush(s, c);
        if (c->fd >= 0 && (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) read_conn(s, c);
    }
}

int rpc_serve(cs_engine *engine, const rpc_params *p) {
    rpc_server *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->p = *p;
    s->engine = engine;
    s->t_start = cs_now_s();
    s->epfd = s->tcp_fd = s->unix_fd = s->sig_fd = -1;
    int rc = setup(s) == 0 ? 0 : 1;
    bool cancelled = false;
    struct epoll_event evs[64];
    while (rc == 0) {
        if (s->shutting_down) {
            if (s->n_pending == 0) break;
            if (!cancelled && cs_now_s() > s->deadline) {
                logf_(s, 1, "grace period over: cancelling %d requests", s->n_pending);
                cancel_all(s);
                cancelled = true;
            }
        }
        int n = epoll_wait(s->epfd, evs, 64, s->shutting_down ? 100 : -1);
        for (int i = 0; i < n; i++) handle(s, &evs[i]);
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
    if (s->p.socket_path && rc == 0) unlink(s->p.socket_path);
    if (s->sig_fd >= 0) close(s->sig_fd);
    if (s->epfd >= 0) close(s->epfd);
    free(s);
    return rc;
}
