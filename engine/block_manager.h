// KV block manager for the batch engine: one pool of fixed-size blocks (ids only: the memory
// is engine/kv_cache.h), a block table per sequence, reference counts, copy-on-write forks,
// and a prefix cache of full, computed blocks with LRU eviction.
//
//     cs_bm *bm = cs_bm_init(n_blocks, 16, true);          // NULL: out of memory / bad size
//     cs_bm_seq s = {0};
//     int cached = cs_bm_admit(bm, &s, prompt, n, salt);    // s now holds the cached prefix
//     while (s.n_computed < n) {                            // (chunked) prefill, then decode
//         int chunk = ...;
//         if (!cs_bm_can_append(bm, &s, chunk)) preempt_someone();
//         cs_bm_copy cp[1];
//         int n_cp = cs_bm_append(bm, &s, chunk, cp);       // copy KV rows cp[0] before forward
//         ... slots: cs_bm_slot(bm, &s, pos), block table: s.blocks[0 .. s.n_blocks) ...
//         forward(...);
//         cs_bm_commit(bm, &s, tokens, chunk, salt);        // KV written: cache full blocks
//     }
//     cs_bm_release(bm, &s);                                // cached blocks stay reusable
//     cs_bm_free(bm);
//
// Blocks are in exactly one of three states: free (on the free list), used (refcount > 0,
// held by one or more block tables) or cached (refcount 0, still in the prefix cache and on
// the LRU list, reusable until evicted). free + used + cached = total at all times.
//
// Not thread-safe: the scheduler thread owns the manager.
#ifndef CS_BLOCK_MANAGER_H
#define CS_BLOCK_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cs_bm cs_bm;

// One sequence's blocks. The caller zero-initialises it; the manager grows and frees
// `blocks`. Fields below the line are the manager's bookkeeping: read them, never write them.
typedef struct cs_bm_seq {
    int32_t *blocks;  // (n_blocks) block table, blocks[i] holds positions [i*bs, (i+1)*bs)
    int n_blocks, cap;
    int n_tokens;     // tokens with a slot
    int n_computed;   // tokens whose KV is written (committed); <= n_tokens
    // ---
    uint64_t salt;    // cache salt given at admission (0 = none)
    int n_hashed;     // leading full blocks already passed through the prefix-cache chain
    uint64_t chain_key;   // chain hash of block n_hashed-1 (valid when n_hashed > 0)
    int32_t chain_block;  // the cached block holding that content: ours or an identical one
    uint64_t chain_gen;   // its generation when we chained onto it
} cs_bm_seq;

// A copy the engine must do before the next forward step: the first n_rows token rows of
// block src (every layer, K and V) into block dst.
typedef struct cs_bm_copy {
    int32_t src, dst;
    int n_rows;
} cs_bm_copy;

typedef struct cs_bm_stats {
    int total, free, used, cached; // cached = refcount 0 but reusable
    long lookups_tokens, hit_tokens; // over admissions: prompt tokens looked up, tokens hit
    long evictions;
} cs_bm_stats;

// A manager of n_blocks blocks of block_size tokens. Everything is sized here; later calls
// allocate only to grow block tables. Returns NULL on a bad size or out of memory.
cs_bm *cs_bm_init(int n_blocks, int block_size, bool prefix_caching);
void cs_bm_free(cs_bm *bm); // NULL: nothing. Sequences must have been released (not checked).

int cs_bm_block_size(const cs_bm *bm);
// Blocks a sequence could get right now: free plus evictable (cached).
int cs_bm_available(const cs_bm *bm);

// How many leading tokens of tokens[0..n) are cached (a multiple of block_size, at most
// floor((n-1)/block_size) blocks: the last prompt token is always recomputed, because its
// logits are needed). salt 0 = none; any other value only matches blocks cached with that
// same salt. No side effects.
int cs_bm_lookup(const cs_bm *bm, const int32_t *tokens, int n, uint64_t salt);

// Would cs_bm_admit(tokens, n, salt) followed by appends up to n_slots tokens in all fit in
// the free and evictable blocks? Counts the cached prefix blocks it would take off the LRU
// list as unavailable for the new ones.
bool cs_bm_can_admit(const cs_bm *bm, const int32_t *tokens, int n, uint64_t salt, int n_slots);

// Starts an empty sequence s (zeroed, or released) on the prompt tokens[0..n): takes a
// reference on the longest cached prefix (as cs_bm_lookup), and sets s->n_tokens =
// s->n_computed = cached tokens. Records salt for the sequence's later commits. Returns the
// number of cached tokens. Allocates no new block: cs_bm_append does.
int cs_bm_admit(cs_bm *bm, cs_bm_seq *s, const int32_t *tokens, int n, uint64_t salt);

// Are there enough free or evictable blocks to append n_new tokens (including the copy of a
// shared, partial last block)?
bool cs_bm_can_append(const cs_bm *bm, const cs_bm_seq *s, int n_new);

// Gives s slots for n_new more tokens, taking free blocks first and then evicting the least
// recently used cached blocks. If s's last block is partial and shared (after a fork), it is
// first replaced by a fresh block; the copy the engine must make is written to copies[0].
// Returns the number of copies (0 or 1). The caller checked cs_bm_can_append (asserted).
int cs_bm_append(cs_bm *bm, cs_bm_seq *s, int n_new, cs_bm_copy *copies);

// The forward step wrote the KV of the next n tokens of s: marks them computed and enters
// every block that became full into the prefix cache. tokens is the sequence's whole token
// list, at least s->n_computed + n long; salt must be the one given to cs_bm_admit. Blocks
// are cached only once computed, so nobody can hit KV that is not written yet.
void cs_bm_commit(cs_bm *bm, cs_bm_seq *s, const int32_t *tokens, int n, uint64_t salt);

// dst (empty) shares every block of src (refcount + 1 each), for n > 1 samples or a branch.
// Call between steps: src must have no uncommitted slots (asserted), so the two never write
// the same slot; the first of them to append into a shared partial block gets a copy.
void cs_bm_fork(cs_bm *bm, const cs_bm_seq *src, cs_bm_seq *dst);

// Drops s's references and frees its table (s is zeroed). Blocks whose count reaches 0 that
// are in the prefix cache go on the LRU list, tail block first so that a sequence's tail is
// evicted before its head; the others go back to the free list.
void cs_bm_release(cs_bm *bm, cs_bm_seq *s);

// Evicts up to n of the least recently used cached blocks to the free list (e.g. to reset
// the prefix cache: n = total). Returns how many it evicted.
int cs_bm_evict(cs_bm *bm, int n);

// The KV slot of position pos (< s->n_tokens): block * block_size + offset.
int32_t cs_bm_slot(const cs_bm *bm, const cs_bm_seq *s, int pos);

void cs_bm_stats_get(const cs_bm *bm, cs_bm_stats *st);

// For tests and debug builds: checks every invariant of the manager against the given live
// sequences (all of them): free + used + cached = total; each block's refcount equals the
// number of tables holding it; no table holds a free block; every hash-map entry is a cached
// or used block whose stored tokens hash to its key and can be found from it; the LRU list
// holds exactly the cached blocks. Returns false with a message in err. O(blocks + tables).
bool cs_bm_check(const cs_bm *bm, cs_bm_seq *const *seqs, int n_seqs, char *err, size_t errlen);

// Test hook: every chain hash becomes the same constant, so every cached block collides with
// every other; results must stay exact. Call right after cs_bm_init (asserted: nothing cached).
void cs_bm_debug_constant_hash(cs_bm *bm, bool on);

#endif
