#define _GNU_SOURCE // accept4
#include "tp_bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "CSTP"
#define VERSION 1u
#define HELLO_BYTES 20
#define MAX_MSG 255
#define HELLO_MS 2000 // a connection must say hello within this, or it is dropped
#define MAX_PENDING 32 // connections whose hello is being read at once

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i);
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// "HOST:PORT" or "[V6]:PORT" -> host and port strings.
static bool split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap) {
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= pcap) return false;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') h++, hl -= 2;
    else if (memchr(h, ':', hl)) return false; // an IPv6 address needs its brackets
    if (hl == 0 || hl >= hcap) return false;
    memcpy(host, h, hl);
    host[hl] = 0;
    strcpy(port, colon + 1);
    for (const char *c = port; *c; c++)
        if (*c < '0' || *c > '9') return false;
    return true;
}

static struct addrinfo *resolve(const char *addr, bool passive, char *err, size_t errlen) {
    char host[256], port[16];
    if (!split_addr(addr, host, sizeof host, port, sizeof port)) {
        cs_errf(err, errlen, CS_ERR_INVALID, "--dist-init-addr '%s': expected HOST:PORT ([ADDR]:PORT for IPv6)", addr);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        cs_errf(err, errlen, CS_ERR_INVALID, "--dist-init-addr '%s': %s", addr, gai_strerror(rc));
        return NULL;
    }
    return res;
}

// All of buf over fd (non-blocking) before deadline; false on timeout, error or close.
static bool io_all(int fd, void *buf, size_t n, bool out, long long deadline) {
    unsigned char *p = buf;
    while (n > 0) {
        long long left = deadline - now_ms();
        if (left <= 0) return false;
        struct pollfd pf = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        int pr = poll(&pf, 1, (int)(left > 1000000 ? 1000000 : left));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return false;
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

// Best effort: tells a peer why it is turned away.
static void send_error(int fd, const char *msg) {
    unsigned char b[8 + 4 + MAX_MSG];
    size_t len = strlen(msg) > MAX_MSG ? MAX_MSG : strlen(msg);
    memcpy(b, MAGIC, 4);
    put_u32(b + 4, 1);
    put_u32(b + 8, (uint32_t)len);
    memcpy(b + 12, msg, len);
    io_all(fd, b, 12 + len, true, now_ms() + 1000);
}

int cs_tp_bootstrap_listen(const char *addr, int *port, char *err, size_t errlen) {
    struct addrinfo *res = resolve(addr, true, err, errlen);
    if (!res) return -1;
    int fd = -1;
    bool said = false;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) { // try the next address
            cs_errf(err, errlen, CS_ERR_IO, "--dist-init-addr %s: cannot listen: %s", addr, strerror(errno));
            said = true;
            close(fd);
            fd = -1;
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    }
    if (fd < 0 && !said) cs_errf(err, errlen, CS_ERR_IO, "--dist-init-addr %s: no address to listen on", addr);
    freeaddrinfo(res);
    return fd;
}

// A node that timed out and was started again: if the earlier connection of rank is closed,
// the new one c takes its place. False when the earlier one is alive (a real duplicate).
static bool replace_dead(int *peer_fd, const int *peer_rank, int joined, int rank, int c) {
    for (int i = 0; i < joined; i++) {
        if (peer_rank[i] != rank) continue;
        char b;
        ssize_t k = recv(peer_fd[i], &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k != 0 && !(k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return false;
        close(peer_fd[i]);
        peer_fd[i] = c;
        return true;
    }
    return false;
}

// A connection accepted whose hello has not all come yet: hellos are read side by side, so
// that a silent connection (a port scanner, a health check) holds nobody else up.
typedef struct pending {
    int fd, got;
    long long by; // it must have said hello by then
    unsigned char h[HELLO_BYTES];
} pending;

static void drop_pending(pending *p, int *n, int i) {
    close(p[i].fd);
    p[i] = p[--*n];
}

// What node 0 makes of a whole hello on connection c: the node rank that joins (> 0), 0 when c
// took the place of that rank's dead earlier connection, or -1 with msg saying why not.
static int judge_hello(const unsigned char *h, const cs_tp_world *w, const bool *seen, int *peer_fd,
                       const int *peer_rank, int joined, int c, char *msg) {
    uint32_t version = get_u32(h + 4), nn = get_u32(h + 8), rank = get_u32(h + 12), rpn = get_u32(h + 16);
    if (version != VERSION)
        snprintf(msg, MAX_MSG + 1, "protocol version %u, node 0 speaks %u", version, VERSION);
    else if (nn != (uint32_t)w->nnodes || rpn != (uint32_t)w->ranks_per_node)
        snprintf(msg, MAX_MSG + 1, "node rank %u says %u nodes of %u ranks; node 0 has %d nodes of %d ranks", rank,
                 nn, rpn, w->nnodes, w->ranks_per_node);
    else if (rank < 1 || rank >= (uint32_t)w->nnodes)
        snprintf(msg, MAX_MSG + 1, "node rank %u is out of range 1..%d", rank, w->nnodes - 1);
    else if (seen[rank] && !replace_dead(peer_fd, peer_rank, joined, (int)rank, c))
        snprintf(msg, MAX_MSG + 1, "node rank %u came twice", rank);
    else
        return seen[rank] ? 0 : (int)rank;
    return -1;
}

static bool world_ok(const cs_tp_world *w) {
    return w->nnodes >= 1 && w->nnodes <= 4096 && w->node_rank >= 0 && w->node_rank < w->nnodes &&
           w->ranks_per_node >= 1 && w->ranks_per_node <= 1024;
}

// A kept connection carries the steps: blocking from now on, each message sent at once, and
// keepalive probes after 10 s of silence (3, 5 s apart), so that a peer whose machine died
// shows as an error within about 25 s even while no step is sent.
static int keep(int fd) {
    int one = 1, idle = 10, intvl = 5, cnt = 3, fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    return fd;
}

cs_status cs_tp_bootstrap_serve(int fd, const cs_tp_world *w, const unsigned char id[CS_TP_ID_BYTES], int timeout_ms,
                                int *peers, char *err, size_t errlen) {
    if (!world_ok(w) || w->node_rank != 0) {
        close(fd);
        return cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel bootstrap: node 0 serves, with a valid world");
    }
    int want = w->nnodes - 1, joined = 0;
    int *peer_fd = calloc((size_t)(want > 0 ? want : 1), sizeof *peer_fd);
    int *peer_rank = calloc((size_t)(want > 0 ? want : 1), sizeof *peer_rank);
    bool *seen = calloc((size_t)w->nnodes, sizeof *seen);
    if (!peer_fd || !peer_rank || !seen) {
        free(peer_fd), free(peer_rank), free(seen);
        close(fd);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    }
    long long deadline = now_ms() + timeout_ms;
    cs_status st = CS_OK;
    char why[2 * MAX_MSG] = "";
    pending pend[MAX_PENDING];
    int n_pend = 0;
    while (joined < want && st == CS_OK) {
        long long now = now_ms(), wake = deadline;
        for (int i = 0; i < n_pend; i++) {
            if (pend[i].by <= now) { // silent: turned away, the others waited for meanwhile
                send_error(pend[i].fd, "not a cserve tensor-parallel hello");
                drop_pending(pend, &n_pend, i--);
                continue;
            }
            if (pend[i].by < wake) wake = pend[i].by;
        }
        struct pollfd pf[1 + MAX_PENDING];
        pf[0] = (struct pollfd){.fd = fd, .events = POLLIN};
        for (int i = 0; i < n_pend; i++) pf[1 + i] = (struct pollfd){.fd = pend[i].fd, .events = POLLIN};
        long long left = wake - now;
        int pr = left > 0 ? poll(pf, (nfds_t)(1 + n_pend), (int)(left > 1000000 ? 1000000 : left)) : 0;
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0 && now_ms() >= deadline) {
            char missing[128] = "";
            size_t len = 0;
            for (int r = 1; r < w->nnodes && len < sizeof missing - 12; r++)
                if (!seen[r]) len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d", len ? ", " : "", r);
            st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel bootstrap: %d of %d nodes came within %d ms (missing node ranks %s)",
                         joined + 1, w->nnodes, timeout_ms, missing);
            snprintf(why, sizeof why, "node 0 gave up: not every node came within %d ms", timeout_ms);
            break;
        }
        if (pr <= 0) continue; // a silent connection's time is up
        // hellos that came in; a pending slot is freed before the listener takes another
        for (int i = n_pend - 1; i >= 0 && st == CS_OK; i--) {
            if (!(pf[1 + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t k = recv(pend[i].fd, pend[i].h + pend[i].got, HELLO_BYTES - (size_t)pend[i].got, 0);
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (k <= 0) { // gone before it said hello
                drop_pending(pend, &n_pend, i);
                continue;
            }
            pend[i].got += (int)k;
            if (pend[i].got >= 4 && memcmp(pend[i].h, MAGIC, 4) != 0) { // not ours: say so at once
                send_error(pend[i].fd, "not a cserve tensor-parallel hello");
                drop_pending(pend, &n_pend, i);
                continue;
            }
            if (pend[i].got < HELLO_BYTES) continue;
            int c = pend[i].fd;
            unsigned char h[HELLO_BYTES];
            memcpy(h, pend[i].h, sizeof h);
            pend[i] = pend[--n_pend]; // c is no longer pending: the hello decides where it goes
            char msg[MAX_MSG + 1] = "";
            int rank = judge_hello(h, w, seen, peer_fd, peer_rank, joined, c, msg);
            if (*msg) { // the launch is misconfigured: both sides stop, each saying why
                send_error(c, msg);
                close(c);
                st = cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel bootstrap: %s", msg);
                snprintf(why, sizeof why, "node 0 gave up: %s", msg);
            } else if (rank > 0) {
                seen[rank] = true;
                peer_rank[joined] = rank;
                peer_fd[joined++] = c;
            } // else: its earlier connection had died, and c took its place
        }
        if (st != CS_OK || !(pf[0].revents & POLLIN)) continue;
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) { // out of descriptors, or a connection reset before it was taken: not a spin
            usleep(10 * 1000);
            continue;
        }
        if (n_pend == MAX_PENDING) { // a flood of silent connections: the oldest makes room
            send_error(pend[0].fd, "not a cserve tensor-parallel hello");
            drop_pending(pend, &n_pend, 0);
        }
        long long by = now_ms() + HELLO_MS;
        pend[n_pend++] = (pending){.fd = c, .by = by < deadline ? by : deadline};
    }
    while (n_pend > 0) drop_pending(pend, &n_pend, n_pend - 1);
    unsigned char ok[8 + CS_TP_ID_BYTES];
    memcpy(ok, MAGIC, 4);
    put_u32(ok + 4, 0);
    memcpy(ok + 8, id, CS_TP_ID_BYTES);
    for (int i = 0; i < joined && st == CS_OK; i++)
        if (!io_all(peer_fd[i], ok, sizeof ok, true, deadline))
            st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel bootstrap: node rank %d left before it had the id",
                         peer_rank[i]);
    for (int i = 0; i < joined && st == CS_OK; i++) { // each says it has it: nobody is left behind
        unsigned char ack = 0;
        if (!io_all(peer_fd[i], &ack, 1, false, deadline) || ack != 'K')
            st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel bootstrap: node rank %d did not confirm the id",
                         peer_rank[i]);
    }
    for (int i = 0; i < joined; i++) {
        if (st != CS_OK) send_error(peer_fd[i], *why ? why : "node 0 gave up: another node left");
        if (st == CS_OK && peers) peers[peer_rank[i] - 1] = keep(peer_fd[i]);
        else close(peer_fd[i]);
    }
    free(peer_fd), free(peer_rank), free(seen);
    close(fd);
    return st;
}

// A connected socket to addr before deadline, retrying while node 0 is not listening yet.
static int connect_until(const char *addr, long long deadline, char *err, size_t errlen) {
    struct addrinfo *res = resolve(addr, false, err, errlen);
    if (!res) return -1;
    int fd = -1;
    int last = 0;
    while (fd < 0 && now_ms() < deadline) {
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            int s = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
            if (s < 0) continue;
            int rc = connect(s, a->ai_addr, a->ai_addrlen);
            if (rc != 0 && errno == EINPROGRESS) {
                long long left = deadline - now_ms();
                struct pollfd pf = {.fd = s, .events = POLLOUT};
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                if (left > 0 && poll(&pf, 1, (int)(left > 1000 ? 1000 : left)) == 1 && // then the next address
                    getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                    rc = 0;
                else
                    errno = soerr ? soerr : ETIMEDOUT;
            }
            if (rc == 0) {
                fd = s;
            } else {
                last = errno;
                close(s);
            }
        }
        if (fd < 0) usleep(100 * 1000); // node 0 may not be up yet
    }
    freeaddrinfo(res);
    if (fd < 0)
        cs_errf(err, errlen, CS_ERR_IO, "tensor parallel bootstrap: cannot reach node 0 at %s in time (%s)", addr,
                last ? strerror(last) : "timed out");
    return fd;
}

cs_status cs_tp_bootstrap_join(const char *addr, const cs_tp_world *w, unsigned char id[CS_TP_ID_BYTES], int timeout_ms,
                               int *conn, char *err, size_t errlen) {
    if (!world_ok(w) || w->node_rank == 0)
        return cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel bootstrap: node ranks 1.. join, with a valid world");
    long long deadline = now_ms() + timeout_ms;
    int fd = connect_until(addr, deadline, err, errlen);
    if (fd < 0) return CS_ERR_IO;
    unsigned char h[HELLO_BYTES], r[8];
    memcpy(h, MAGIC, 4);
    put_u32(h + 4, VERSION);
    put_u32(h + 8, (uint32_t)w->nnodes);
    put_u32(h + 12, (uint32_t)w->node_rank);
    put_u32(h + 16, (uint32_t)w->ranks_per_node);
    cs_status st = CS_OK;
    if (!io_all(fd, h, sizeof h, true, deadline) || !io_all(fd, r, sizeof r, false, deadline)) {
        st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel bootstrap: no answer from node 0 at %s within %d ms", addr,
                     timeout_ms);
    } else if (memcmp(r, MAGIC, 4) != 0) {
        st = cs_errf(err, errlen, CS_ERR_FORMAT, "tensor parallel bootstrap: %s is not a cserve node 0 (it answered garbage)",
                     addr);
    } else if (get_u32(r + 4) == 0) {
        unsigned char ack = 'K';
        if (!io_all(fd, id, CS_TP_ID_BYTES, false, deadline) || !io_all(fd, &ack, 1, true, deadline))
            st = cs_errf(err, errlen, CS_ERR_IO, "tensor parallel bootstrap: node 0 at %s hung up", addr);
    } else {
        unsigned char lb[4];
        char msg[MAX_MSG + 1] = "(no reason given)";
        if (io_all(fd, lb, 4, false, deadline)) {
            uint32_t len = get_u32(lb);
            if (len <= MAX_MSG && io_all(fd, msg, len, false, deadline)) msg[len] = 0;
        }
        st = cs_errf(err, errlen, CS_ERR_INVALID, "tensor parallel bootstrap: node 0 refused: %s", msg);
    }
    if (st == CS_OK && conn) *conn = keep(fd);
    else close(fd);
    return st;
}
