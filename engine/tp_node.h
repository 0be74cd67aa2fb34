// The steps of multi-node tensor parallelism: node 0 runs the scheduler and describes every
// step to the other nodes over the connections the bootstrap left open (engine/tp_bootstrap.h);
// each of them runs its ranks' layers of that step, whose NCCL all-reduces meet node 0's.
// What a node receives is checked against its limits before any of it reaches a GPU, so a
// broken or mismatched peer ends with an error, never an out-of-bounds step.
//
// Wire format, little-endian u32 words: kind, n (payload words), then the payload.
//   BATCH  n_tokens T, n_seqs S, n_logits L, block_size, tokens (T), positions (T), slots (T),
//          logit_rows (L), q_start (S + 1), kv_len (S), bt_start (S + 1), block_table
//          (bt_start[S])
//   COPY   dst, src, n: copy n KV slots (copy-on-write of a shared block)
//   STOP   failed: node 0 is shutting down (0), or gave up starting (1)
//   READY  a node other than 0, started: its limits (n_blocks, max_tokens, max_seqs, max_ctx,
//          block_size, vocab, rope_max_pos) and the fingerprint of its model and settings
//          (low word, high word), which node 0 compares with its own before the first step
#ifndef CS_TP_NODE_H
#define CS_TP_NODE_H

#include <stdbool.h>

#include "../common/status.h"
#include "forward.h"

enum { CS_TP_MSG_BATCH = 1, CS_TP_MSG_COPY, CS_TP_MSG_STOP, CS_TP_MSG_READY };

// What a receiving node's ranks can take.
typedef struct cs_tp_limits {
    int max_tokens, max_seqs, max_ctx, block_size, n_blocks, vocab, rope_max_pos;
} cs_tp_limits;

typedef struct cs_tp_msg {
    int kind;
    cs_batch batch;       // BATCH: its arrays point into buf
    int copy[3];          // COPY: dst, src, n
    bool failed;          // STOP
    cs_tp_limits peer;    // READY
    uint64_t fingerprint; // READY
    int32_t *buf;         // owned, reused by the next receive
    size_t cap;
} cs_tp_msg;

// false when the peer is gone (errno says why).
bool cs_tp_node_send_batch(int fd, const cs_batch *b);
bool cs_tp_node_send_copy(int fd, int dst, int src, int n);
bool cs_tp_node_send_stop(int fd, bool failed);
bool cs_tp_node_send_ready(int fd, const cs_tp_limits *lim, uint64_t fingerprint);

// One message into m. CS_ERR_IO when the connection closed, failed or timed out (SO_RCVTIMEO),
// CS_ERR_FORMAT when the message is malformed or exceeds lim (NULL: READY and STOP only are
// expected).
cs_status cs_tp_node_recv(int fd, cs_tp_msg *m, const cs_tp_limits *lim, char *err, size_t errlen);
// The first of a peer's limits that differs from ours, named ("max_seqs 64, here 32"), or
// false when they agree (n_blocks aside: each node has its own).
bool cs_tp_limits_differ(const cs_tp_limits *peer, const cs_tp_limits *ours, char *why, size_t len);
void cs_tp_msg_free(cs_tp_msg *m);
// Whether the other end of fd has closed or failed (keepalive timeout, reset), without taking
// any pending message: for a watchdog beside the thread that reads.
bool cs_tp_node_peer_gone(int fd);

// A watchdog thread over a node's step connections (fds[i] is node first_node + i's, borrowed
// until stop). A node gone leaves every rank waiting in an all-reduce, or NCCL's init waiting
// for it, forever: so when a peer closes (its process ended) or fails (keepalive: its machine
// died), the watchdog calls gone(ctx, node, why) within about a second, even mid-step. A peer
// with a message waiting (a follower's next step, its READY) is alive; a close right after a
// message (a STOP just read) gets half a second's grace, so that stop can come first.
// starting: a follower before READY, which hears from node 0 only when node 0 gave up: any
// input counts as gone. NULL when no thread could be made (then a dead peer shows as a hang).
typedef struct cs_tp_watch cs_tp_watch;
cs_tp_watch *cs_tp_watch_start(const int *fds, int n, int first_node, bool starting,
                               void (*gone)(void *ctx, int node, const char *why), void *ctx);
void cs_tp_watch_stop(cs_tp_watch *w); // NULL is fine; after it returns, gone is never called

#endif
