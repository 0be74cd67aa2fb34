// The multi-node tensor-parallel start-up exchange (engine/tp_bootstrap.h) on loopback, node
// 0 and its peers as threads: three nodes get node 0's id; a peer with another world size, a
// node rank taken twice or out of range stops both sides with the reason; a stray connection
// sending an HTTP request (or nothing) is turned away while the real peer still gets in, and
// five silent ones at once do not hold it up;
// node 0 gives up when a node never comes, naming it; a peer gives up when nobody listens,
// and when what answers is not node 0.
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "engine/tp_bootstrap.h"
#include "test_util.h"

typedef struct peer {
    char addr[64];
    cs_tp_world w;
    int timeout_ms;
    unsigned char id[CS_TP_ID_BYTES];
    cs_status st;
    char err[256];
    pthread_t th;
} peer;

static void *join_main(void *arg) {
    peer *p = arg;
    p->st = cs_tp_bootstrap_join(p->addr, &p->w, p->id, p->timeout_ms, NULL, p->err, sizeof p->err);
    return NULL;
}

static void start_peer(peer *p, int port, int nnodes, int rank, int rpn, int timeout_ms) {
    memset(p, 0, sizeof *p);
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", port);
    p->w = (cs_tp_world){nnodes, rank, rpn};
    p->timeout_ms = timeout_ms;
    pthread_create(&p->th, NULL, join_main, p);
}

static int listen_any(int *port) {
    char err[256];
    int fd = cs_tp_bootstrap_listen("127.0.0.1:0", port, err, sizeof err);
    TEST_CONDF(fd >= 0 && *port > 0, "listen: %s", err);
    return fd;
}

static void fill_id(unsigned char *id) {
    for (int i = 0; i < CS_TP_ID_BYTES; i++) id[i] = (unsigned char)(i * 37 + 11);
}

// A raw TCP client that sends text (or nothing) and returns the first bytes of the answer.
typedef struct stray {
    int port;
    const char *text;
    char answer[16];
    pthread_t th;
} stray;

static void *stray_main(void *arg) {
    stray *s = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        if (s->text) send(fd, s->text, strlen(s->text), MSG_NOSIGNAL);
        ssize_t n = recv(fd, s->answer, 4, MSG_WAITALL);
        if (n < 0) n = 0;
        s->answer[n] = 0;
    }
    close(fd);
    return NULL;
}

int main(void) {
    unsigned char id[CS_TP_ID_BYTES];
    fill_id(id);
    char err[256];
    int port;

    // three nodes, peers starting before and after node 0 serves
    int fd = listen_any(&port);
    peer a, b;
    start_peer(&a, port, 3, 1, 8, 5000);
    start_peer(&b, port, 3, 2, 8, 5000);
    cs_status st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){3, 0, 8}, id, 5000, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    TEST_CONDF(st == CS_OK, "3 nodes: node 0: %s", err);
    TEST_CONDF(a.st == CS_OK && !memcmp(a.id, id, sizeof id), "3 nodes: node 1: %s", a.err);
    TEST_CONDF(b.st == CS_OK && !memcmp(b.id, id, sizeof id), "3 nodes: node 2: %s", b.err);

    // a peer believing in another world: both stop, saying so
    fd = listen_any(&port);
    start_peer(&a, port, 4, 1, 8, 5000);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){3, 0, 8}, id, 5000, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    TEST_CONDF(st != CS_OK && strstr(err, "says 4 nodes of 8 ranks") && strstr(err, "3 nodes"), "world mismatch: node 0: %s", err);
    TEST_CONDF(a.st != CS_OK && strstr(a.err, "node 0 refused") && strstr(a.err, "says 4 nodes"), "world mismatch: peer: %s", a.err);

    // another number of ranks per node
    fd = listen_any(&port);
    start_peer(&a, port, 2, 1, 4, 5000);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){2, 0, 8}, id, 5000, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    TEST_CONDF(st != CS_OK && strstr(err, "of 4 ranks"), "ranks per node: node 0: %s", err);
    TEST_COND(a.st != CS_OK);

    // a node rank twice: the first waits, the second is refused, and node 0 tells the first too
    fd = listen_any(&port);
    start_peer(&a, port, 3, 1, 8, 5000);
    usleep(500 * 1000);
    start_peer(&b, port, 3, 1, 8, 5000);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){3, 0, 8}, id, 5000, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    TEST_CONDF(st != CS_OK && strstr(err, "came twice"), "duplicate rank: node 0: %s", err);
    TEST_CONDF(a.st != CS_OK && b.st != CS_OK && strstr(a.err, "gave up") && strstr(b.err, "came twice"),
               "duplicate rank: peers: %s / %s", a.err, b.err);

    // strays are turned away; the real peer still gets the id
    fd = listen_any(&port);
    stray http = {.port = port, .text = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"}, silent = {.port = port};
    pthread_create(&http.th, NULL, stray_main, &http);
    pthread_create(&silent.th, NULL, stray_main, &silent);
    usleep(300 * 1000);
    start_peer(&a, port, 2, 1, 8, 8000);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){2, 0, 8}, id, 8000, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    pthread_join(http.th, NULL);
    pthread_join(silent.th, NULL);
    TEST_CONDF(st == CS_OK && a.st == CS_OK && !memcmp(a.id, id, sizeof id), "strays: node 0: %s; peer: %s", err, a.err);
    TEST_CONDF(!strcmp(http.answer, "CSTP"), "strays: the HTTP client got an error reply ('%s')", http.answer);

    // five silent connections at once hold nobody up: hellos are read side by side
    fd = listen_any(&port);
    stray quiet[5];
    for (int i = 0; i < 5; i++) {
        quiet[i] = (stray){.port = port};
        pthread_create(&quiet[i].th, NULL, stray_main, &quiet[i]);
    }
    usleep(200 * 1000);
    start_peer(&a, port, 2, 1, 8, 8000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){2, 0, 8}, id, 8000, NULL, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    pthread_join(a.th, NULL);
    for (int i = 0; i < 5; i++) pthread_join(quiet[i].th, NULL);
    TEST_CONDF(st == CS_OK && a.st == CS_OK, "silent strays: node 0: %s; peer: %s", err, a.err);
    TEST_CONDF(took < 1.5, "silent strays held the peer up for %.2f s (read one at a time: 10 s)", took);

    // a node whose first process gave up comes again: the new connection takes the old one's place
    fd = listen_any(&port);
    start_peer(&a, port, 3, 1, 8, 400); // gives up while node 0 waits for node 2
    pthread_join(a.th, NULL);
    TEST_CONDF(a.st != CS_OK && strstr(a.err, "no answer"), "restart: the first process: %s", a.err);
    start_peer(&a, port, 3, 1, 8, 5000);
    usleep(300 * 1000);
    start_peer(&b, port, 3, 2, 8, 5000);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){3, 0, 8}, id, 5000, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    TEST_CONDF(st == CS_OK && a.st == CS_OK && b.st == CS_OK && !memcmp(a.id, id, sizeof id),
               "restart: node 0: %s; node 1: %s; node 2: %s", err, a.err, b.err);

    // node 0 gives up on a node that never comes, naming it
    fd = listen_any(&port);
    start_peer(&a, port, 3, 2, 8, 4000);
    st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){3, 0, 8}, id, 1500, NULL, err, sizeof err);
    pthread_join(a.th, NULL);
    TEST_CONDF(st != CS_OK && strstr(err, "2 of 3 nodes") && strstr(err, "missing node ranks 1"), "timeout: node 0: %s", err);
    TEST_CONDF(a.st != CS_OK && strstr(a.err, "gave up"), "timeout: the peer that came: %s", a.err);

    // a peer with nobody listening, and with something that is not node 0
    fd = listen_any(&port);
    close(fd);
    peer lone;
    start_peer(&lone, port, 2, 1, 8, 400);
    pthread_join(lone.th, NULL);
    TEST_CONDF(lone.st != CS_OK && strstr(lone.err, "cannot reach node 0"), "nobody listening: %s", lone.err);
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof sa;
    TEST_COND(bind(srv, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(srv, 4) == 0 &&
              getsockname(srv, (struct sockaddr *)&sa, &sl) == 0);
    start_peer(&lone, ntohs(sa.sin_port), 2, 1, 8, 3000);
    int c = accept(srv, NULL, NULL);
    const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    if (c >= 0) {
        char hello[20];
        recv(c, hello, sizeof hello, MSG_WAITALL);
        send(c, junk, sizeof junk - 1, MSG_NOSIGNAL);
        close(c);
    }
    pthread_join(lone.th, NULL);
    close(srv);
    TEST_CONDF(lone.st != CS_OK && strstr(lone.err, "not a cserve node 0"), "garbage answer: %s", lone.err);

    // bad arguments
    TEST_COND(cs_tp_bootstrap_listen("no-port", &port, err, sizeof err) < 0 && strstr(err, "HOST:PORT"));
    TEST_COND(cs_tp_bootstrap_listen("::1:80", &port, err, sizeof err) < 0 && strstr(err, "IPv6"));
    TEST_COND(cs_tp_bootstrap_join("127.0.0.1:1", &(cs_tp_world){2, 0, 8}, id, 100, NULL, err, sizeof err) != CS_OK);
    TEST_COND(cs_tp_bootstrap_join("127.0.0.1:1", &(cs_tp_world){2, 2, 8}, id, 100, NULL, err, sizeof err) != CS_OK);
    return TEST_REPORT();
}
