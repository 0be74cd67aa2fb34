// Byte-level grammars for constrained decoding: a set of rules, each a small automaton over
// bytes whose edges either consume a byte range or call another rule (a recursive transition
// network, i.e. a pushdown automaton). Regexes compile to one deterministic rule; JSON schemas
// to many rules that call each other (objects, arrays, strings, numbers; $ref recursion).
//
//     cs_gram_builder *b = cs_gb_init();
//     int32_t r = cs_gb_rule(b);                         // a rule and its start state
//     int32_t s = cs_gb_literal(b, cs_gb_start(b, r), "yes", 3);
//     cs_gb_accept(b, s);
//     cs_grammar *g;
//     if (cs_gb_finish(b, r, &g, err, sizeof err) != CS_OK) ...;   // frees b either way
//     cs_gram_matcher *m = cs_gm_init(g);
//     cs_gm_advance(m, 'y');  ...  cs_gm_can_end(m);
//     cs_gm_free(m); cs_grammar_free(g);
//
// Semantics. A state has byte edges [lo, hi] -> to, call edges (rule R, then continue at to)
// and may accept (the rule may end there). A string is in the grammar when some path from the
// root rule's start consumes it and ends in an accepting state with every call returned.
// Edges may overlap (several byte edges on one byte, a call beside a byte edge): the matcher
// tracks every alternative at once (a set of stacks), so builders need not determinise.
// Epsilon edges exist only in the builder; cs_gb_finish removes them.
//
// Limits (hostile schemas and regexes): at most CS_GRAM_MAX_STATES states and
// CS_GRAM_MAX_EDGES edges per grammar (the builder fails, cs_gb_finish reports it); the
// matcher holds at most CS_GRAM_MAX_STACKS alternatives of depth CS_GRAM_MAX_DEPTH (a byte
// that would exceed either is rejected, so nesting deeper than that is not generated).
#ifndef CS_GRAMMAR_H
#define CS_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"

#define CS_GRAM_MAX_STATES (1 << 20)
#define CS_GRAM_MAX_EDGES (1 << 22)
#define CS_GRAM_MAX_STACKS 256
#define CS_GRAM_MAX_DEPTH 128

typedef struct cs_grammar cs_grammar;
typedef struct cs_gram_builder cs_gram_builder;

// --- building -----------------------------------------------------------------------------
cs_gram_builder *cs_gb_init(void); // NULL when out of memory
void cs_gb_free(cs_gram_builder *b);
// A new rule with its start state; returns the rule id (-1 once the builder has failed).
int32_t cs_gb_rule(cs_gram_builder *b);
int32_t cs_gb_start(const cs_gram_builder *b, int32_t rule);
// A new state of rule; returns its id (-1 once failed).
int32_t cs_gb_state(cs_gram_builder *b, int32_t rule);
// Edges. Arguments of -1 (from a failed call) are ignored, so build code need not check each.
void cs_gb_bytes(cs_gram_builder *b, int32_t from, uint8_t lo, uint8_t hi, int32_t to);
void cs_gb_call(cs_gram_builder *b, int32_t from, int32_t rule, int32_t to);
void cs_gb_eps(cs_gram_builder *b, int32_t from, int32_t to);
void cs_gb_accept(cs_gram_builder *b, int32_t state);
// Consumes the n bytes of s from state from (in from's rule); returns the state after them.
int32_t cs_gb_literal(cs_gram_builder *b, int32_t from, const char *s, size_t n);
// True once an allocation failed or a limit was hit.
bool cs_gb_failed(const cs_gram_builder *b);
// States created so far (compilers use it to bound their own expansions).
int32_t cs_gb_n_states(const cs_gram_builder *b);
// Finishes: removes epsilon edges, checks that every called rule exists, and hands the grammar
// (root rule = the whole language) to *out. Frees b in every case.
cs_status cs_gb_finish(cs_gram_builder *b, int32_t root_rule, cs_grammar **out, char *err, size_t errlen);

void cs_grammar_free(cs_grammar *g);
int32_t cs_grammar_n_states(const cs_grammar *g);

// --- matching -----------------------------------------------------------------------------
typedef struct cs_gram_matcher cs_gram_matcher;

// A matcher at the start of g (borrowed: g must outlive it). NULL when out of memory.
cs_gram_matcher *cs_gm_init(const cs_grammar *g);
void cs_gm_free(cs_gram_matcher *m);
void cs_gm_reset(cs_gram_matcher *m); // back to the start, history dropped
// Consumes one byte: true and the state moves on, or false and nothing changes.
bool cs_gm_advance(cs_gram_matcher *m, uint8_t byte);
// Consumes n bytes, all or nothing.
bool cs_gm_advance_bytes(cs_gram_matcher *m, const uint8_t *bytes, size_t n);
// True when what was consumed so far is a complete string of the grammar.
bool cs_gm_can_end(const cs_gram_matcher *m);
// True when some byte can still be consumed (false: the only continuation is the end).
bool cs_gm_can_continue(const cs_gram_matcher *m);
// Rollback: a checkpoint names the current state; rolling back to it undoes every advance
// made since. Checkpoints stay valid until cs_gm_commit or reset.
int cs_gm_checkpoint(const cs_gram_matcher *m);
void cs_gm_rollback(cs_gram_matcher *m, int checkpoint);
// Forgets the history (no rollback before this point) and frees what only it used: call
// after each accepted token so memory stays bounded over long generations.
void cs_gm_commit(cs_gram_matcher *m);
// A hash of the current state (the set of stacks), equal for equal states: the key of the
// token-mask cache. Two different states may collide; callers compare with cs_gm_same_state.
uint64_t cs_gm_state_hash(const cs_gram_matcher *m);
// Serialises the current state into buf (for exact cache keys); returns the int32 words
// needed (> cap: nothing written beyond cap).
size_t cs_gm_state_key(const cs_gram_matcher *m, int32_t *buf, size_t cap);

#endif
