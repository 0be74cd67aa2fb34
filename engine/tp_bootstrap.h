// The start-up exchange of multi-node tensor parallelism: node 0 (--node-rank 0) listens on
// --dist-init-addr HOST:PORT and waits for the other nnodes - 1 processes; each says what it
// believes the world is (nodes, ranks per node) and which node it is. Once all have come and
// agree, node 0 sends every one the same opaque id it made (NCCL's ncclUniqueId, 128 bytes),
// with which each joins the communicator (ncclCommInitRank).
//
// Errors are clear and end the start-up on both sides: a peer whose world differs from node
// 0's, a node rank out of range or taken twice (each told why, by node 0); nobody coming
// within the timeout; a node that leaves before it confirms the id. A connection that does
// not speak the protocol (a port scanner, a health check) is answered with an error and
// dropped, and node 0 keeps waiting; so is the earlier connection of a node rank that comes
// again after its first process gave up (the new one takes its place).
//
// Wire format, little-endian: hello = "CSTP", u32 version, u32 nnodes, u32 node_rank,
// u32 ranks_per_node; reply = "CSTP", u32 status (0: ok), then the id (ok) or u32 length and
// that many bytes of message (at most 255); with the id, the peer answers the byte 'K'.
#ifndef CS_TP_BOOTSTRAP_H
#define CS_TP_BOOTSTRAP_H

#include "../common/status.h"

#define CS_TP_ID_BYTES 128

typedef struct cs_tp_world {
    int nnodes, node_rank, ranks_per_node;
} cs_tp_world;

// Node 0: listens on addr ("HOST:PORT", "[V6]:PORT"; port 0 picks one, returned in *port).
// Returns the socket, or -1 with err set.
int cs_tp_bootstrap_listen(const char *addr, int *port, char *err, size_t errlen);
// Node 0: takes the other nodes on fd (closed on return) and hands them id; timeout_ms bounds
// the whole wait. With peers (nnodes - 1), the connections stay open for the steps
// (engine/tp_node.h): peers[k] is node k + 1's, blocking, with TCP_NODELAY and keepalive.
cs_status cs_tp_bootstrap_serve(int fd, const cs_tp_world *w, const unsigned char id[CS_TP_ID_BYTES], int timeout_ms,
                                int *peers, char *err, size_t errlen);
// Nodes 1..nnodes-1: connects to addr (retrying until node 0 listens) and receives the id;
// with conn, the connection stays open for the steps (blocking, with TCP_NODELAY and keepalive).
cs_status cs_tp_bootstrap_join(const char *addr, const cs_tp_world *w, unsigned char id[CS_TP_ID_BYTES], int timeout_ms,
                               int *conn, char *err, size_t errlen);

#endif
