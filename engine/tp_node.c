#include "tp_node.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_WORDS (64u << 20) // 256 MB: far past any batch, short of a garbage length

// Every part, in one system call when the socket takes it all (with TCP_NODELAY, one segment
// per step rather than one per array).
static bool send_iov(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        while (n > 0 && (size_t)k >= iov->iov_len) k -= (ssize_t)iov->iov_len, iov++, n--;
        if (n > 0) iov->iov_base = (char *)iov->iov_base + k, iov->iov_len -= (size_t)k;
    }
    return true;
}

// 0: all of it; 1: closed before the first byte; -1: failed or closed midway; -2: timed out.
static int recv_all(int fd, void *buf, size_t n) {
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(fd, p + got, n - got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0 && got == 0) return 1;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

// The words travel little-endian, which is how every host we run on stores them.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the step wire format is little-endian");

static bool send_words(int fd, int kind, const int32_t *w, size_t n) {
    uint32_t h[2] = {(uint32_t)kind, (uint32_t)n};
    struct iovec iov[2] = {{h, sizeof h}, {(void *)w, n * 4}};
    return send_iov(fd, iov, n ? 2 : 1);
}

bool cs_tp_node_send_batch(int fd, const cs_batch *b) {
    const cs_attn_batch *a = &b->attn;
    int T = b->n_tokens, S = a->n_seqs, L = b->n_logits, nt = a->bt_start[S];
    size_t n = 4 + 3 * (size_t)T + (size_t)L + 3 * (size_t)S + 2 + (size_t)nt;
    uint32_t h[6] = {CS_TP_MSG_BATCH, (uint32_t)n, (uint32_t)T, (uint32_t)S, (uint32_t)L, (uint32_t)a->block_size};
    struct iovec iov[] = {{h, sizeof h},
                          {(void *)b->tokens, 4 * (size_t)T},
                          {(void *)b->positions, 4 * (size_t)T},
                          {(void *)b->slots, 4 * (size_t)T},
                          {(void *)b->logit_rows, 4 * (size_t)L},
                          {(void *)a->q_start, 4 * (size_t)(S + 1)},
                          {(void *)a->kv_len, 4 * (size_t)S},
                          {(void *)a->bt_start, 4 * (size_t)(S + 1)},
                          {(void *)a->block_table, 4 * (size_t)nt}};
    return send_iov(fd, iov, (int)(sizeof iov / sizeof iov[0]));
}

bool cs_tp_node_send_copy(int fd, int dst, int src, int n) {
    int32_t w[3] = {dst, src, n};
    return send_words(fd, CS_TP_MSG_COPY, w, 3);
}
bool cs_tp_node_send_stop(int fd, bool failed) {
    int32_t w = failed;
    return send_words(fd, CS_TP_MSG_STOP, &w, 1);
}
bool cs_tp_node_send_ready(int fd, const cs_tp_limits *lim, uint64_t fingerprint) {
    int32_t w[9] = {lim->n_blocks, lim->max_tokens, lim->max_seqs, lim->max_ctx, lim->block_size, lim->vocab,
                    lim->rope_max_pos, (int32_t)(uint32_t)fingerprint, (int32_t)(uint32_t)(fingerprint >> 32)};
    return send_words(fd, CS_TP_MSG_READY, w, 9);
}

bool cs_tp_limits_differ(const cs_tp_limits *peer, const cs_tp_limits *ours, char *why, size_t len) {
    const char *names[] = {"max_tokens (--max-num-batched-tokens)", "max_seqs (--max-num-seqs)",
                           "max_ctx (--max-model-len)", "block_size (--block-size)", "vocabulary",
                           "RoPE positions"};
    int a[] = {peer->max_tokens, peer->max_seqs, peer->max_ctx, peer->block_size, peer->vocab, peer->rope_max_pos};
    int b[] = {ours->max_tokens, ours->max_seqs, ours->max_ctx, ours->block_size, ours->vocab, ours->rope_max_pos};
    for (int i = 0; i < 6; i++)
        if (a[i] != b[i]) {
            snprintf(why, len, "%s %d, here %d", names[i], a[i], b[i]);
            return true;
        }
    return false;
}

bool cs_tp_node_peer_gone(int fd) {
    char b;
    ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

struct cs_tp_watch {
    const int *fds;
    int n, first_node;
    bool starting;
    void (*gone)(void *ctx, int node, const char *why);
    void *ctx;
    atomic_bool stop;
    pthread_t thread;
};

static void *watch_main(void *arg) {
    cs_tp_watch *w = arg;
    struct pollfd pf[64];
    int n = w->n < 64 ? w->n : 64;
    while (!atomic_load(&w->stop)) {
        for (int i = 0; i < n; i++) pf[i] = (struct pollfd){.fd = w->fds[i], .events = POLLIN};
        int pr = poll(pf, (nfds_t)n, 200);
        bool busy = false;
        for (int i = 0; pr > 0 && i < n && !atomic_load(&w->stop); i++) {
            if (!pf[i].revents) continue;
            if (w->starting) {
                w->gone(w->ctx, w->first_node + i, "it stopped before this node was ready: see its log");
                return NULL;
            }
            if (!cs_tp_node_peer_gone(pf[i].fd)) {
                busy = true; // a message for the reader
                continue;
            }
            usleep(500 * 1000); // a STOP just read and the connection then closed: not a death
            if (!atomic_load(&w->stop)) {
                w->gone(w->ctx, w->first_node + i, "its connection closed or failed");
                return NULL;
            }
        }
        if (busy) usleep(50 * 1000);
    }
    return NULL;
}

cs_tp_watch *cs_tp_watch_start(const int *fds, int n, int first_node, bool starting,
                               void (*gone)(void *ctx, int node, const char *why), void *ctx) {
    cs_tp_watch *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    *w = (cs_tp_watch){.fds = fds, .n = n, .first_node = first_node, .starting = starting, .gone = gone, .ctx = ctx};
    atomic_init(&w->stop, false);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void cs_tp_watch_stop(cs_tp_watch *w) {
    if (!w) return;
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    free(w);
}

void cs_tp_msg_free(cs_tp_msg *m) {
    free(m->buf);
    memset(m, 0, sizeof *m);
}

// Every bound cs_gpu_forward_run asserts, so that a bad batch is an error here and not an
// abort there.
static cs_status check_batch(const cs_batch *b, const cs_tp_limits *lim, char *err, size_t errlen) {
    const cs_attn_batch *a = &b->attn;
    int T = b->n_tokens, S = a->n_seqs;
    if (a->block_size != lim->block_size)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "step: block size %d, this node's is %d", a->block_size, lim->block_size);
    if (a->q_start[0] != 0 || a->q_start[S] != T || a->bt_start[0] != 0)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "step: the sequences do not cover the tokens");
    int max_blocks = (lim->max_ctx + lim->block_size - 1) / lim->block_size;
    for (int s = 0; s < S; s++) {
        int q = a->q_start[s + 1] - a->q_start[s], nb = a->bt_start[s + 1] - a->bt_start[s];
        if (q < 1 || a->kv_len[s] < q || a->kv_len[s] > lim->max_ctx || nb < 0 || nb > max_blocks ||
            (int64_t)nb * lim->block_size < a->kv_len[s])
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: sequence %d is out of bounds", s);
    }
    for (int i = 0; i < a->bt_start[S]; i++)
        if (a->block_table[i] < 0 || a->block_table[i] >= lim->n_blocks)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: block %d is not one of the %d", a->block_table[i],
                           lim->n_blocks);
    for (int t = 0; t < T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= lim->vocab || b->positions[t] < 0 ||
            b->positions[t] >= lim->rope_max_pos || b->slots[t] < 0 ||
            (int64_t)b->slots[t] >= (int64_t)lim->n_blocks * lim->block_size)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: token %d is out of bounds", t);
    for (int i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= T)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: logits row %d is out of bounds", i);
    return CS_OK;
}

// Lays the batch's arrays over the payload w (n words) and checks that their sizes add up.
static cs_status parse_batch(cs_tp_msg *m, size_t n, const cs_tp_limits *lim, char *err, size_t errlen) {
    const int32_t *w = m->buf;
    if (n < 4) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: a batch of %zu words", n);
    int T = w[0], S = w[1], L = w[2];
    if (T < 1 || T > lim->max_tokens || S < 1 || S > lim->max_seqs || S > T || L < 0 || L > T)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "step: %d tokens, %d sequences, %d logits rows exceed %d, %d", T, S,
                       L, lim->max_tokens, lim->max_seqs);
    size_t fixed = 4 + 3 * (size_t)T + (size_t)L + 3 * (size_t)S + 2;
    if (n < fixed) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: the batch is cut short");
    cs_batch *b = &m->batch;
    memset(b, 0, sizeof *b);
    b->n_tokens = T;
    b->n_logits = L;
    b->attn.n_seqs = S;
    b->attn.block_size = w[3];
    const int32_t *p = w + 4;
    b->tokens = p, p += T;
    b->positions = p, p += T;
    b->slots = p, p += T;
    b->logit_rows = p, p += L;
    b->attn.q_start = p, p += S + 1;
    b->attn.kv_len = p, p += S;
    b->attn.bt_start = p, p += S + 1;
    b->attn.block_table = p;
    for (int s = 0; s < S; s++)
        if (b->attn.q_start[s + 1] < b->attn.q_start[s] || b->attn.bt_start[s + 1] < b->attn.bt_start[s])
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: sequence %d runs backwards", s);
    if (b->attn.bt_start[0] < 0 || (size_t)b->attn.bt_start[S] != n - fixed)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "step: the block table is not the batch's remaining %zu words",
                       n - fixed);
    return check_batch(b, lim, err, errlen);
}

cs_status cs_tp_node_recv(int fd, cs_tp_msg *m, const cs_tp_limits *lim, char *err, size_t errlen) {
    uint32_t h[2];
    int rc = recv_all(fd, h, sizeof h);
    if (rc) return cs_errf(err, errlen, CS_ERR_IO, "the peer %s",
                           rc > 0 ? "closed the connection" : rc == -2 ? "said nothing in time" : "is gone");
    uint32_t kind = h[0], n = h[1];
    bool known = kind == CS_TP_MSG_STOP || kind == CS_TP_MSG_READY || (lim && (kind == CS_TP_MSG_BATCH ||
                                                                              kind == CS_TP_MSG_COPY));
    if (!known) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: unexpected message kind %u", kind);
    if (n > MAX_WORDS) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: a message of %u words", n);
    if (n > m->cap) {
        int32_t *nb = realloc(m->buf, (size_t)n * 4);
        if (!nb) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory for a step of %u words", n);
        m->buf = nb;
        m->cap = n;
    }
    if (n && recv_all(fd, m->buf, (size_t)n * 4)) return cs_errf(err, errlen, CS_ERR_IO, "the peer is gone mid-message");
    m->kind = (int)kind;
    size_t want = kind == CS_TP_MSG_COPY ? 3 : kind == CS_TP_MSG_READY ? 9 : kind == CS_TP_MSG_STOP ? 1 : n;
    if (n != want) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: message kind %u of %u words", kind, n);
    if (kind == CS_TP_MSG_READY) {
        const int32_t *w = m->buf;
        m->peer = (cs_tp_limits){.n_blocks = w[0], .max_tokens = w[1], .max_seqs = w[2], .max_ctx = w[3],
                                 .block_size = w[4], .vocab = w[5], .rope_max_pos = w[6]};
        m->fingerprint = (uint64_t)(uint32_t)w[7] | (uint64_t)(uint32_t)w[8] << 32;
        if (m->peer.n_blocks < 1)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: a node with %d KV blocks", m->peer.n_blocks);
    } else if (kind == CS_TP_MSG_STOP) {
        m->failed = m->buf[0] != 0;
    } else if (kind == CS_TP_MSG_COPY) {
        memcpy(m->copy, m->buf, sizeof m->copy);
        int64_t slots = (int64_t)lim->n_blocks * lim->block_size;
        if (m->copy[0] < 0 || m->copy[1] < 0 || m->copy[2] < 0 || m->copy[0] + (int64_t)m->copy[2] > slots ||
            m->copy[1] + (int64_t)m->copy[2] > slots)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "step: a KV copy out of bounds");
    } else if (kind == CS_TP_MSG_BATCH) {
        return parse_batch(m, n, lim, err, errlen);
    }
    return CS_OK;
}
