#include "tp_node.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_WORDS (64u << 20) // 256 MB: far past any batch, short of a garbage length

static bool send_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

// 0: all of it; 1: closed before the first byte; -1: failed or closed midway.
static int recv_all(int fd, void *buf, size_t n) {
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(fd, p + got, n - got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0 && got == 0) return 1;
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

// The words travel little-endian, which is how every host we run on stores them.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the step wire format is little-endian");

static bool send_words(int fd, int kind, const int32_t *w, size_t n) {
    uint32_t h[2] = {(uint32_t)kind, (uint32_t)n};
    return send_all(fd, h, sizeof h) && (n == 0 || send_all(fd, w, n * 4));
}

bool cs_tp_node_send_batch(int fd, const cs_batch *b) {
    const cs_attn_batch *a = &b->attn;
    int T = b->n_tokens, S = a->n_seqs, L = b->n_logits, nt = a->bt_start[S];
    size_t n = 4 + 3 * (size_t)T + (size_t)L + 3 * (size_t)S + 2 + (size_t)nt;
    uint32_t h[6] = {CS_TP_MSG_BATCH, (uint32_t)n, (uint32_t)T, (uint32_t)S, (uint32_t)L, (uint32_t)a->block_size};
    return send_all(fd, h, sizeof h) && send_all(fd, b->tokens, 4 * (size_t)T) &&
           send_all(fd, b->positions, 4 * (size_t)T) && send_all(fd, b->slots, 4 * (size_t)T) &&
           (L == 0 || send_all(fd, b->logit_rows, 4 * (size_t)L)) && send_all(fd, a->q_start, 4 * (size_t)(S + 1)) &&
           send_all(fd, a->kv_len, 4 * (size_t)S) && send_all(fd, a->bt_start, 4 * (size_t)(S + 1)) &&
           (nt == 0 || send_all(fd, a->block_table, 4 * (size_t)nt));
}

bool cs_tp_node_send_copy(int fd, int dst, int src, int n) {
    int32_t w[3] = {dst, src, n};
    return send_words(fd, CS_TP_MSG_COPY, w, 3);
}
bool cs_tp_node_send_stop(int fd) { return send_words(fd, CS_TP_MSG_STOP, NULL, 0); }
bool cs_tp_node_send_ready(int fd, int n_blocks) {
    int32_t w = n_blocks;
    return send_words(fd, CS_TP_MSG_READY, &w, 1);
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
    if (rc) return cs_errf(err, errlen, CS_ERR_IO, "the peer %s", rc > 0 ? "closed the connection" : "is gone");
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
    size_t want = kind == CS_TP_MSG_COPY ? 3 : kind == CS_TP_MSG_READY ? 1 : kind == CS_TP_MSG_STOP ? 0 : n;
    if (n != want) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: message kind %u of %u words", kind, n);
    if (kind == CS_TP_MSG_READY) {
        m->n_blocks = m->buf[0];
        if (m->n_blocks < 1) return cs_errf(err, errlen, CS_ERR_FORMAT, "step: a node with %d KV blocks", m->n_blocks);
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
