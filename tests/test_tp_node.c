// The steps of multi-node tensor parallelism (engine/tp_node.h) on loopback: three nodes
// bootstrap (engine/tp_bootstrap.h) and keep their connections; the two followers say READY
// with their limits, KV blocks and model fingerprint, then receive node 0's prefill batch, a
// KV copy, a decode batch and STOP (a shutdown, or node 0 having failed to start), each as
// node 0 sent it. Limits that differ are named. Over a socket pair, every malformed message gets
// an error and none reaches a GPU: an unknown kind, a batch where only READY is expected, a
// length past any batch, a batch past the node's token or sequence limits, another block
// size, sequences that do not cover the tokens, a block, slot, token or position out of
// range, a block table of the wrong length, a KV copy out of bounds, READY with no blocks,
// a message cut short, a peer gone and a peer silent past the receive timeout. The watchdog's
// question (is the peer gone?) leaves pending messages alone.
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/clock.h"
#include "engine/tp_bootstrap.h"
#include "engine/tp_node.h"
#include "test_util.h"

static const cs_tp_limits LIM = {.max_tokens = 64, .max_seqs = 8, .max_ctx = 128, .block_size = 16,
                                 .n_blocks = 32, .vocab = 1000, .rope_max_pos = 128};

// A prefill of two sequences (12 and 7 tokens, blocks 3 and 5, 9) with both last rows' logits.
typedef struct step_batch {
    int32_t tok[19], pos[19], slots[19], rows[2], qs[3], kvl[2], bts[3], table[3];
    cs_batch b;
} step_batch;

static void make_prefill(step_batch *s) {
    int32_t qs[3] = {0, 12, 19}, kvl[2] = {12, 7}, bts[3] = {0, 1, 3}, table[3] = {3, 5, 9}, rows[2] = {11, 18};
    memcpy(s->qs, qs, sizeof qs), memcpy(s->kvl, kvl, sizeof kvl), memcpy(s->bts, bts, sizeof bts);
    memcpy(s->table, table, sizeof table), memcpy(s->rows, rows, sizeof rows);
    for (int i = 0; i < 19; i++) {
        int seq = i >= 12, at = seq ? i - 12 : i;
        s->tok[i] = (i * 37 + 5) % 1000;
        s->pos[i] = at;
        s->slots[i] = table[seq ? 1 : 0] * 16 + at;
    }
    s->b = (cs_batch){.n_tokens = 19, .tokens = s->tok, .positions = s->pos, .slots = s->slots, .n_logits = 2,
                      .logit_rows = s->rows,
                      .attn = {.n_seqs = 2, .q_start = s->qs, .kv_len = s->kvl, .bt_start = s->bts,
                               .block_table = s->table, .block_size = 16}};
}

static bool same_ints(const int32_t *a, const int32_t *b, int n) { return n == 0 || !memcmp(a, b, 4 * (size_t)n); }

static bool same_batch(const cs_batch *x, const cs_batch *y) {
    const cs_attn_batch *a = &x->attn, *b = &y->attn;
    int T = x->n_tokens, S = a->n_seqs;
    return T == y->n_tokens && S == b->n_seqs && x->n_logits == y->n_logits && a->block_size == b->block_size &&
           same_ints(x->tokens, y->tokens, T) && same_ints(x->positions, y->positions, T) &&
           same_ints(x->slots, y->slots, T) && same_ints(x->logit_rows, y->logit_rows, x->n_logits) &&
           same_ints(a->q_start, b->q_start, S + 1) && same_ints(a->kv_len, b->kv_len, S) &&
           same_ints(a->bt_start, b->bt_start, S + 1) && same_ints(a->block_table, b->block_table, a->bt_start[S]);
}

typedef struct follower {
    char addr[64];
    int rank, n_steps, copy[3];
    bool batches_ok, stopped, stop_failed;
    cs_status st;
    char err[256];
    pthread_t th;
} follower;

static void *follower_main(void *arg) {
    follower *f = arg;
    unsigned char id[CS_TP_ID_BYTES];
    int fd = -1;
    f->st = cs_tp_bootstrap_join(f->addr, &(cs_tp_world){3, f->rank, 2}, id, 5000, &fd, f->err, sizeof f->err);
    if (f->st != CS_OK) return NULL;
    cs_tp_limits lim = LIM;
    lim.n_blocks = 30 + f->rank;
    cs_tp_node_send_ready(fd, &lim, 0x89abcdef01234567ull + (uint64_t)f->rank);
    step_batch want;
    make_prefill(&want);
    cs_tp_msg m = {0};
    f->batches_ok = true;
    while ((f->st = cs_tp_node_recv(fd, &m, &LIM, f->err, sizeof f->err)) == CS_OK) {
        if (m.kind == CS_TP_MSG_STOP) {
            f->stopped = true;
            f->stop_failed = m.failed;
            break;
        }
        f->n_steps++;
        if (m.kind == CS_TP_MSG_COPY) memcpy(f->copy, m.copy, sizeof f->copy);
        if (m.kind == CS_TP_MSG_BATCH && f->n_steps == 1) f->batches_ok &= same_batch(&m.batch, &want.b);
        if (m.kind == CS_TP_MSG_BATCH && f->n_steps == 3) // the decode step: one token of the first sequence
            f->batches_ok &= m.batch.n_tokens == 1 && m.batch.tokens[0] == 42 && m.batch.slots[0] == 3 * 16 + 12 &&
                             m.batch.attn.kv_len[0] == 13 && m.batch.logit_rows[0] == 0;
    }
    cs_tp_msg_free(&m);
    close(fd);
    return NULL;
}

static void steps_over_kept_connections(void) {
    char err[256];
    int port = 0, fd = cs_tp_bootstrap_listen("127.0.0.1:0", &port, err, sizeof err);
    TEST_CONDF(fd >= 0, "listen: %s", err);
    follower f[2];
    for (int i = 0; i < 2; i++) {
        memset(&f[i], 0, sizeof f[i]);
        snprintf(f[i].addr, sizeof f[i].addr, "127.0.0.1:%d", port);
        f[i].rank = i + 1;
        pthread_create(&f[i].th, NULL, follower_main, &f[i]);
    }
    unsigned char id[CS_TP_ID_BYTES] = {1, 2, 3};
    int peers[2] = {-1, -1};
    cs_status st = cs_tp_bootstrap_serve(fd, &(cs_tp_world){3, 0, 2}, id, 5000, peers, err, sizeof err);
    TEST_CONDF(st == CS_OK && peers[0] >= 0 && peers[1] >= 0, "serve with kept connections: %s", err);
    cs_tp_msg m = {0};
    for (int i = 0; i < 2 && st == CS_OK; i++) {
        char why[128] = "";
        TEST_CONDF(cs_tp_node_recv(peers[i], &m, NULL, err, sizeof err) == CS_OK && m.kind == CS_TP_MSG_READY &&
                       m.peer.n_blocks == 31 + i && m.fingerprint == 0x89abcdef01234567ull + 1 + (uint64_t)i &&
                       !cs_tp_limits_differ(&m.peer, &LIM, why, sizeof why),
                   "node %d's READY (%s%s)", i + 1, err, why);
    }
    step_batch pre;
    make_prefill(&pre);
    int32_t dt = 42, dp = 12, ds = 3 * 16 + 12, dr = 0, dq[2] = {0, 1}, dk = 13, dbt[2] = {0, 1}, dtab = 3;
    cs_batch dec = {.n_tokens = 1, .tokens = &dt, .positions = &dp, .slots = &ds, .n_logits = 1, .logit_rows = &dr,
                    .attn = {.n_seqs = 1, .q_start = dq, .kv_len = &dk, .bt_start = dbt, .block_table = &dtab,
                             .block_size = 16}};
    for (int i = 0; i < 2 && st == CS_OK; i++)
        TEST_COND(cs_tp_node_send_batch(peers[i], &pre.b) && cs_tp_node_send_copy(peers[i], 160, 48, 5) &&
                  cs_tp_node_send_batch(peers[i], &dec) && cs_tp_node_send_stop(peers[i], i == 1));
    for (int i = 0; i < 2; i++) {
        pthread_join(f[i].th, NULL);
        TEST_CONDF(f[i].st == CS_OK && f[i].stopped && f[i].n_steps == 3, "node %d: %d steps, %s", i + 1, f[i].n_steps,
                   f[i].err);
        TEST_CONDF(f[i].batches_ok, "node %d: the batches arrived as sent", i + 1);
        TEST_CONDF(f[i].stop_failed == (i == 1), "node %d: STOP says whether node 0 failed", i + 1);
        TEST_CONDF(f[i].copy[0] == 160 && f[i].copy[1] == 48 && f[i].copy[2] == 5, "node %d: the KV copy", i + 1);
        if (peers[i] >= 0) close(peers[i]);
    }
    cs_tp_msg_free(&m);
}

// Raw words (header included) into one end of a socket pair; what the other end's receive
// says, with lim. close_after: the writer hangs up after them.
static cs_status recv_raw(const uint32_t *w, size_t n, const cs_tp_limits *lim, char *err, size_t errlen) {
    int sv[2];
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (n) CS_ASSERT(send(sv[0], w, n * 4, MSG_NOSIGNAL) == (ssize_t)(n * 4));
    close(sv[0]);
    cs_tp_msg m = {0};
    cs_status st = cs_tp_node_recv(sv[1], &m, lim, err, errlen);
    cs_tp_msg_free(&m);
    close(sv[1]);
    return st;
}

// The prefill's wire words, with word `at` (0: the kind) changed to v unless at < 0.
static size_t prefill_words(uint32_t *w, int at, uint32_t v) {
    step_batch s;
    make_prefill(&s);
    int sv[2];
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CS_ASSERT(cs_tp_node_send_batch(sv[0], &s.b));
    close(sv[0]);
    ssize_t k = recv(sv[1], w, 4096, MSG_WAITALL);
    close(sv[1]);
    CS_ASSERT(k > 0 && k % 4 == 0);
    if (at >= 0) w[at] = v;
    return (size_t)k / 4;
}

static void expect(const char *name, const uint32_t *w, size_t n, const cs_tp_limits *lim, cs_status want,
                   const char *says) {
    char err[256] = "";
    cs_status st = recv_raw(w, n, lim, err, sizeof err);
    TEST_CONDF(st == want && strstr(err, says), "%s: status %d, '%s' (want %d, '%s')", name, st, err, want, says);
}

static void malformed(void) {
    uint32_t w[1024];
    // the prefill's words: 0 kind, 1 n, 2 T, 3 S, 4 L, 5 block_size, 6.. tokens (19), 25.. positions,
    // 44.. slots, 63.. rows (2), 65.. q_start (3), 68.. kv_len (2), 70.. bt_start (3), 73.. table (3)
    size_t n = prefill_words(w, -1, 0);
    TEST_COND(n == 76);
    char err[256];
    TEST_CONDF(recv_raw(w, n, &LIM, err, sizeof err) == CS_OK, "the prefill itself: %s", err);
    expect("unknown kind", (uint32_t[]){9, 0}, 2, &LIM, CS_ERR_FORMAT, "unexpected message kind 9");
    expect("a batch where READY is due", w, n, NULL, CS_ERR_FORMAT, "unexpected message kind 1");
    expect("a huge length", (uint32_t[]){CS_TP_MSG_BATCH, 0x7fffffffu}, 2, &LIM, CS_ERR_FORMAT, "words");
    n = prefill_words(w, 2, 65); // 65 tokens: past max_tokens
    expect("too many tokens", w, n, &LIM, CS_ERR_FORMAT, "exceed");
    n = prefill_words(w, 3, 9);
    expect("too many sequences", w, n, &LIM, CS_ERR_FORMAT, "exceed");
    n = prefill_words(w, 5, 32);
    expect("another block size", w, n, &LIM, CS_ERR_FORMAT, "block size 32");
    n = prefill_words(w, 66, 11); // q_start[1] = 11: the first sequence ends early, the second runs on
    TEST_CONDF(recv_raw(w, n, &LIM, err, sizeof err) == CS_ERR_FORMAT, "q_start moved: %s", err);
    n = prefill_words(w, 67, 18);
    expect("sequences short of the tokens", w, n, &LIM, CS_ERR_FORMAT, "do not cover");
    n = prefill_words(w, 74, 32);
    expect("a block out of range", w, n, &LIM, CS_ERR_FORMAT, "block 32 is not one of the 32");
    n = prefill_words(w, 44, 32 * 16);
    expect("a slot out of range", w, n, &LIM, CS_ERR_FORMAT, "token 0 is out of bounds");
    n = prefill_words(w, 7, 1000);
    expect("a token id past the vocabulary", w, n, &LIM, CS_ERR_FORMAT, "token 1 is out of bounds");
    n = prefill_words(w, 26, 128);
    expect("a position past the RoPE table", w, n, &LIM, CS_ERR_FORMAT, "token 1 is out of bounds");
    n = prefill_words(w, 68, 200);
    expect("a context past max_ctx", w, n, &LIM, CS_ERR_FORMAT, "sequence 0");
    n = prefill_words(w, 72, 2);
    expect("a block table shorter than sent", w, n, &LIM, CS_ERR_FORMAT, "block table");
    n = prefill_words(w, 63, 19);
    expect("a logits row past the tokens", w, n, &LIM, CS_ERR_FORMAT, "logits row 0");
    expect("a KV copy out of bounds", (uint32_t[]){CS_TP_MSG_COPY, 3, 500, 0, 20}, 5, &LIM, CS_ERR_FORMAT,
           "out of bounds");
    expect("a KV copy of 2 words", (uint32_t[]){CS_TP_MSG_COPY, 2, 5, 0}, 4, &LIM, CS_ERR_FORMAT, "of 2 words");
    expect("READY with no blocks", (uint32_t[]){CS_TP_MSG_READY, 9, 0, 64, 8, 128, 16, 1000, 128, 1, 2}, 11, NULL,
           CS_ERR_FORMAT, "0 KV blocks");
    expect("READY of 1 word", (uint32_t[]){CS_TP_MSG_READY, 1, 5}, 3, NULL, CS_ERR_FORMAT, "of 1 words");
    expect("STOP of no words", (uint32_t[]){CS_TP_MSG_STOP, 0}, 2, NULL, CS_ERR_FORMAT, "of 0 words");
    cs_tp_limits other = LIM;
    other.max_seqs = 4;
    char why[128] = "";
    TEST_CONDF(cs_tp_limits_differ(&other, &LIM, why, sizeof why) && strstr(why, "max_seqs (--max-num-seqs) 4, here 8"),
               "limits that differ are named: '%s'", why);
    other = LIM;
    other.n_blocks = 7; // each node its own
    TEST_COND(!cs_tp_limits_differ(&other, &LIM, why, sizeof why));
    n = prefill_words(w, -1, 0);
    expect("cut short", w, n - 5, &LIM, CS_ERR_IO, "mid-message");
    expect("closed", w, 0, &LIM, CS_ERR_IO, "closed the connection");
    expect("a header cut short", w, 1, &LIM, CS_ERR_IO, "gone");
    int sv[2]; // a peer that says nothing within the receive timeout
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct timeval tv = {.tv_usec = 200 * 1000};
    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cs_tp_msg m = {0};
    TEST_CONDF(cs_tp_node_recv(sv[1], &m, NULL, err, sizeof err) == CS_ERR_IO && strstr(err, "nothing in time"),
               "silent peer: %s", err);
    cs_tp_msg_free(&m);
    close(sv[0]), close(sv[1]);
}

// What the watchdog asks: a quiet live peer, a peer with a message waiting and a peer that
// closed after its last message are alive until that message is read; then it is gone.
static void peer_gone(void) {
    int sv[2];
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    TEST_COND(!cs_tp_node_peer_gone(sv[1]));
    CS_ASSERT(cs_tp_node_send_stop(sv[0], false));
    TEST_COND(!cs_tp_node_peer_gone(sv[1]));
    close(sv[0]);
    TEST_COND(!cs_tp_node_peer_gone(sv[1])); // STOP still to read
    cs_tp_msg m = {0};
    char err[128];
    TEST_COND(cs_tp_node_recv(sv[1], &m, NULL, err, sizeof err) == CS_OK && m.kind == CS_TP_MSG_STOP);
    TEST_COND(cs_tp_node_peer_gone(sv[1]));
    cs_tp_msg_free(&m);
    close(sv[1]);
}

// --- the watchdog ---------------------------------------------------------------------------

typedef struct gone_rec {
    pthread_mutex_t mu;
    int calls, node;
    char why[128];
} gone_rec;

static void record_gone(void *ctx, int node, const char *why) {
    gone_rec *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->calls++;
    g->node = node;
    snprintf(g->why, sizeof g->why, "%s", why);
    pthread_mutex_unlock(&g->mu);
}

static int gone_calls(gone_rec *g) {
    pthread_mutex_lock(&g->mu);
    int n = g->calls;
    pthread_mutex_unlock(&g->mu);
    return n;
}

// Waits up to ms for a call; returns the calls seen.
static int wait_gone(gone_rec *g, int ms) {
    for (int t = 0; t < ms && gone_calls(g) == 0; t += 10) usleep(10000);
    return gone_calls(g);
}

static void watchdog(void) {
    int a[2], b[2];
    char byte = 'x';
    // node 0 watching two followers (nodes 1 and 2): a message waiting is life, not death; the
    // second one's connection closing is noticed within a second or so, and named
    gone_rec g = {.mu = PTHREAD_MUTEX_INITIALIZER};
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
    int fds[2] = {a[0], b[0]};
    cs_tp_watch *w = cs_tp_watch_start(fds, 2, 1, false, record_gone, &g);
    TEST_COND(w != NULL);
    CS_ASSERT(write(a[1], &byte, 1) == 1);
    TEST_CONDF(wait_gone(&g, 800) == 0, "a pending message counted as a death: %s", g.why);
    CS_ASSERT(read(a[0], &byte, 1) == 1);
    close(b[1]);
    double t0 = cs_now_s();
    TEST_CONDF(wait_gone(&g, 3000) == 1 && g.node == 2 && strstr(g.why, "closed"),
               "a closed connection: %d calls, node %d, '%s'", g.calls, g.node, g.why);
    printf("watchdog: node %d gone noticed after %.2f s\n", g.node, cs_now_s() - t0);
    cs_tp_watch_stop(w);
    TEST_COND(gone_calls(&g) == 1); // once, and never after stop
    close(a[0]), close(a[1]), close(b[0]);

    // a STOP read, then the close: stopping within the half second's grace calls nothing
    gone_rec h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
    w = cs_tp_watch_start(&a[0], 1, 1, false, record_gone, &h);
    CS_ASSERT(write(a[1], &byte, 1) == 1);
    close(a[1]);
    usleep(100 * 1000);
    CS_ASSERT(read(a[0], &byte, 1) == 1); // the reader takes the STOP
    usleep(150 * 1000);
    cs_tp_watch_stop(w);
    TEST_CONDF(gone_calls(&h) == 0, "a close after the last message, then stop: '%s'", h.why);
    close(a[0]);

    // a follower before READY: anything from node 0 means it gave up
    gone_rec f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
    w = cs_tp_watch_start(&a[0], 1, 0, true, record_gone, &f);
    TEST_CONDF(wait_gone(&f, 500) == 0, "a silent node 0 counted as gone: %s", f.why);
    CS_ASSERT(cs_tp_node_send_stop(a[1], true));
    TEST_CONDF(wait_gone(&f, 2000) == 1 && f.node == 0 && strstr(f.why, "before this node was ready"),
               "a STOP before READY: %d calls, node %d, '%s'", f.calls, f.node, f.why);
    cs_tp_watch_stop(w);
    close(a[0]), close(a[1]);

    cs_tp_watch_stop(NULL);
}

int main(void) {
    peer_gone();
    watchdog();
    steps_over_kept_connections();
    malformed();
    return TEST_REPORT();
}
