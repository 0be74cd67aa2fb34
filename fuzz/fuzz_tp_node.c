// libFuzzer target: bytes as what node 0 sends a follower (engine/tp_node.h). Every message
// the receiver accepts must be one a GPU step can take: the batch's arrays cover its tokens
// and stay inside the node's limits, a KV copy inside the pool.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/assert.h"
#include "engine/tp_node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const cs_tp_limits LIM = {.max_tokens = 64, .max_seqs = 8, .max_ctx = 128, .block_size = 16,
                                 .n_blocks = 32, .vocab = 1000, .rope_max_pos = 128};

static void check_batch(const cs_batch *b) {
    const cs_attn_batch *a = &b->attn;
    int T = b->n_tokens, S = a->n_seqs;
    CS_ASSERT(T >= 1 && T <= LIM.max_tokens && S >= 1 && S <= LIM.max_seqs && b->n_logits >= 0 && b->n_logits <= T);
    CS_ASSERT(a->q_start[0] == 0 && a->q_start[S] == T && a->bt_start[0] == 0 && a->block_size == LIM.block_size);
    for (int s = 0; s < S; s++) {
        int q = a->q_start[s + 1] - a->q_start[s];
        CS_ASSERT(q >= 1 && a->kv_len[s] >= q && a->kv_len[s] <= LIM.max_ctx);
        CS_ASSERT((a->bt_start[s + 1] - a->bt_start[s]) * LIM.block_size >= a->kv_len[s]);
    }
    for (int i = 0; i < a->bt_start[S]; i++) CS_ASSERT(a->block_table[i] >= 0 && a->block_table[i] < LIM.n_blocks);
    for (int t = 0; t < T; t++)
        CS_ASSERT(b->tokens[t] >= 0 && b->tokens[t] < LIM.vocab && b->positions[t] >= 0 &&
                  b->positions[t] < LIM.rope_max_pos && b->slots[t] >= 0 &&
                  b->slots[t] < LIM.n_blocks * LIM.block_size);
    for (int i = 0; i < b->n_logits; i++) CS_ASSERT(b->logit_rows[i] >= 0 && b->logit_rows[i] < T);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 32768) size = 32768; // fits the socket pair's buffer: one thread writes, then reads
    int sv[2];
    CS_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (size) CS_ASSERT(send(sv[0], data, size, MSG_NOSIGNAL) == (ssize_t)size);
    close(sv[0]);
    cs_tp_msg m = {0};
    char err[256];
    for (;;) {
        if (cs_tp_node_recv(sv[1], &m, &LIM, err, sizeof err) != CS_OK) break;
        if (m.kind == CS_TP_MSG_BATCH) check_batch(&m.batch);
        if (m.kind == CS_TP_MSG_COPY)
            CS_ASSERT(m.copy[0] >= 0 && m.copy[1] >= 0 && m.copy[2] >= 0 &&
                      m.copy[0] + m.copy[2] <= LIM.n_blocks * LIM.block_size &&
                      m.copy[1] + m.copy[2] <= LIM.n_blocks * LIM.block_size);
        if (m.kind == CS_TP_MSG_READY) CS_ASSERT(m.peer.n_blocks >= 1);
    }
    cs_tp_msg_free(&m);
    close(sv[1]);
    return 0;
}
