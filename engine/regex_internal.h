// The stages behind engine/regex.h, one file each:
//   regex_parse.c  pattern bytes -> AST (classes as code point ranges)
//   regex_nfa.c    AST -> Thompson NFA over bytes (classes become UTF-8 byte sequences)
//   regex_dfa.c    NFA -> DFA by subset construction over byte classes
//   regex_min.c    dead states pruned, equivalent states merged
//   regex.c        the public API: runs the stages and emits the DFA into a grammar builder
// Every stage enforces its own limit and reports it as a one-line error.
#ifndef CS_REGEX_INTERNAL_H
#define CS_REGEX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"

#define CS_RX_MAX_DEPTH 64           // nesting of groups
#define CS_RX_MAX_REPEAT 1000        // bounds of {n,m}
#define CS_RX_MAX_NFA_SIZE (1 << 18) // NFA states + edges, bounded repetition expanded
// Steps of determinising (NFA states visited, edges scanned, a row per DFA state): about
// 25 ms, and (each DFA state's set was visited once) at most 8 MiB of sets
#define CS_RX_MAX_WORK (1 << 21)
#define CS_RX_MAX_MIN_TRANSITIONS (1 << 19) // DFA transitions minimised (bigger: left as is)

// --- AST ------------------------------------------------------------------------------------
typedef enum cs_rx_kind {
    CS_RX_EMPTY,  // matches ""
    CS_RX_CLASS,  // one code point from ranges [a, a + b) of cs_rx_ast.ranges
    CS_RX_CAT,    // children in order: a = first child, linked by next
    CS_RX_ALT,    // any one child: a = first child, linked by next
    CS_RX_REPEAT, // child a, min..max times (max -1: unbounded)
    CS_RX_BOL,    // '^' (only where nothing can precede it: then it matches "")
    CS_RX_EOL,    // '$' (only where nothing can follow it)
} cs_rx_kind;

typedef struct cs_rx_node {
    int32_t kind;
    int32_t a, b;
    int32_t next;     // next sibling in a CAT or ALT, -1 at the end
    int32_t min, max; // REPEAT
    int32_t pos;      // byte offset in the pattern, for messages
} cs_rx_node;

typedef struct cs_rx_range {
    uint32_t lo, hi; // code points, inclusive; never surrogates
} cs_rx_range;

typedef struct cs_rx_ast {
    cs_rx_node *nodes;
    int32_t n_nodes, cap_nodes;
    cs_rx_range *ranges;
    int32_t n_ranges, cap_ranges;
    int32_t root;
} cs_rx_ast;

// Parses len bytes of pattern. On success *ast owns arrays freed by cs_rx_ast_free.
cs_status cs_rx_parse(const char *pattern, size_t len, cs_rx_ast *ast, char *err, size_t errlen);
void cs_rx_ast_free(cs_rx_ast *ast);

// --- NFA ------------------------------------------------------------------------------------
// Edges sorted by source, epsilon edges first: state s owns epsilon edges [off[2s], off[2s+1])
// and byte edges [off[2s+1], off[2s+2]). An epsilon edge (eps set) consumes nothing; a byte
// edge consumes one byte in [lo, hi]. One accepting state.
typedef struct cs_rx_edge {
    int32_t from, to;
    uint8_t lo, hi, eps;
} cs_rx_edge;

typedef struct cs_rx_nfa {
    int32_t n_states, start, accept;
    cs_rx_edge *edges;
    int32_t n_edges, cap_edges;
    int32_t *off; // (2 n_states + 1)
} cs_rx_nfa;

cs_status cs_rx_nfa_build(const cs_rx_ast *ast, cs_rx_nfa *nfa, char *err, size_t errlen);
void cs_rx_nfa_free(cs_rx_nfa *nfa);

// Calls emit(ctx, lo, hi, n) for each sequence of n byte ranges whose concatenations are
// exactly the UTF-8 encodings of the code points in [lo, hi] (no surrogates inside).
typedef void (*cs_rx_seq_fn)(void *ctx, const uint8_t *lo, const uint8_t *hi, int n);
void cs_rx_utf8_sequences(uint32_t lo, uint32_t hi, cs_rx_seq_fn emit, void *ctx);

// --- DFA ------------------------------------------------------------------------------------
// Bytes fall into n_classes classes (class_of); next[s * n_classes + c] is the state after a
// byte of class c from s, or -1 (rejected). State 0 is the start. Every state can reach an
// accepting one (dead states are pruned).
typedef struct cs_rx_dfa {
    int32_t n_states, n_classes;
    uint8_t class_of[256];
    int32_t *next;   // (n_states, n_classes)
    uint8_t *accept; // (n_states)
} cs_rx_dfa;

// Determinises nfa into at most max_states states, then prunes and minimises.
cs_status cs_rx_dfa_build(const cs_rx_nfa *nfa, int32_t max_states, cs_rx_dfa *dfa, char *err, size_t errlen);
// The pruned, minimised form of the n-state DFA next/acc (start 0, classes as in class_of):
// an error when no accepting state is reachable (the pattern matches nothing).
cs_status cs_rx_minimise(const int32_t *next, const uint8_t *acc, int32_t n, const uint8_t *class_of, int32_t nc,
                         cs_rx_dfa *out, char *err, size_t errlen);
void cs_rx_dfa_free(cs_rx_dfa *dfa);

#endif
