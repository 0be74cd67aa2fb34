// KV block manager: free list, reference counts, block tables, copy-on-write, prefix cache.
//
// Prefix cache: a hash map from a chained 64-bit key to full blocks, rather than a radix
// tree. Why: a block-sized run of tokens is the unit of reuse anyway, so a map keyed by
// hash(parent key, the block's tokens, salt) finds each block of a prompt in O(1) with a
// fixed-size open-addressing table allocated at init (no per-request nodes, no pointer
// chasing, nothing to rebalance on eviction). The tree's exactness is kept by storing, for
// every cached block, its tokens, its salt and its parent's identity (block id, generation);
// a block's generation is bumped whenever it is evicted, so an identity is never reused.
// A hit needs key, tokens, salt and parent identity all equal, so each cached block is an
// exact edge of the prefix tree and a 64-bit collision can cost a probe, never a wrong hit.
#include "block_manager.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "../common/status.h"

#define BM_NONE (-1)
#define BM_ROOT_KEY 0x6a09e667f3bcc908ull // parent key of a sequence's first block
#define BM_CONST_KEY 0x5eedull            // every key, under cs_bm_debug_constant_hash

struct cs_bm {
    int n_blocks, bs;
    bool caching, const_hash;
    int n_used, n_free, n_cached;
    long lookups_tokens, hit_tokens, evictions;

    int32_t *ref;  // (n_blocks) number of block tables holding the block
    uint8_t *hashed; // (n_blocks) 1 while the block is in the prefix cache (used or cached)
    uint64_t *gen; // (n_blocks) bumped on every eviction: (id, gen) names one cached content
    int32_t *free_ids; // (n_blocks) stack of free blocks

    // What a hashed block holds; valid while hashed[b].
    uint64_t *key, *parent_key, *salt, *parent_gen; // (n_blocks) each
    int32_t *parent; // (n_blocks) parent block id, BM_NONE for a first block
    int32_t *tokens; // (n_blocks, bs)

    // LRU list of cached (refcount 0, hashed) blocks: head is evicted first.
    int32_t *prev, *next; // (n_blocks)
    int32_t lru_head, lru_tail;

    // Open addressing, linear probing, backward-shift deletion: block ids or BM_NONE.
    int32_t *map; // (map_mask + 1), at most half full since each block has one entry
    uint32_t map_mask;
};

// --- hashing ------------------------------------------------------------------------------

// A bijective 64-bit mixer (xor-shift / multiply rounds, splitmix-style constants).
static uint64_t bm_mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

// Chain key of a block: its parent's key, the salt and its bs tokens, two tokens per word.
static uint64_t bm_key(const cs_bm *bm, uint64_t parent_key, const int32_t *toks, uint64_t salt) {
    if (bm->const_hash) return BM_CONST_KEY;
    uint64_t h = bm_mix(parent_key ^ 0xbb67ae8584caa73bull);
    h = bm_mix(h ^ salt);
    for (int i = 0; i < bm->bs; i += 2) {
        uint64_t w = (uint32_t)toks[i];
        if (i + 1 < bm->bs) w |= (uint64_t)(uint32_t)toks[i + 1] << 32;
        h = bm_mix(h ^ w) + (uint64_t)i;
    }
    return h;
}

// --- hash map -----------------------------------------------------------------------------

static uint32_t bm_home(const cs_bm *bm, uint64_t key) {
    return (uint32_t)(key ^ (key >> 32)) & bm->map_mask;
}

static void bm_map_insert(cs_bm *bm, int32_t b) {
    uint32_t i = bm_home(bm, bm->key[b]);
    while (bm->map[i] != BM_NONE) i = (i + 1) & bm->map_mask;
    bm->map[i] = b;
}

// The hashed block with exactly this content and parent identity, or BM_NONE.
static int32_t bm_map_find(const cs_bm *bm, uint64_t key, const int32_t *toks, uint64_t salt,
                           int32_t parent, uint64_t parent_gen) {
    for (uint32_t i = bm_home(bm, key); bm->map[i] != BM_NONE; i = (i + 1) & bm->map_mask) {
        int32_t b = bm->map[i];
        if (bm->key[b] != key || bm->salt[b] != salt || bm->parent[b] != parent) continue;
        if (parent != BM_NONE && bm->parent_gen[b] != parent_gen) continue;
        if (memcmp(bm->tokens + (size_t)b * bm->bs, toks, (size_t)bm->bs * sizeof *toks)) continue;
        return b;
    }
    return BM_NONE;
}

// Removes b's entry, shifting later entries of the probe run back so no tombstones are needed.
static void bm_map_remove(cs_bm *bm, int32_t b) {
    uint32_t i = bm_home(bm, bm->key[b]);
    while (bm->map[i] != b) {
        CS_ASSERT(bm->map[i] != BM_NONE);
        i = (i + 1) & bm->map_mask;
    }
    for (uint32_t j = (i + 1) & bm->map_mask; bm->map[j] != BM_NONE; j = (j + 1) & bm->map_mask) {
        uint32_t h = bm_home(bm, bm->key[bm->map[j]]);
        // The entry at j may fill the hole at i unless its home lies cyclically in (i, j].
        bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (stays) continue;
        bm->map[i] = bm->map[j];
        i = j;
    }
    bm->map[i] = BM_NONE;
}

// --- LRU list and block states ------------------------------------------------------------

static void bm_lru_push(cs_bm *bm, int32_t b) { // at the most recently used end
    bm->prev[b] = bm->lru_tail;
    bm->next[b] = BM_NONE;
    if (bm->lru_tail != BM_NONE) bm->next[bm->lru_tail] = b;
    else bm->lru_head = b;
    bm->lru_tail = b;
    bm->n_cached++;
}

static void bm_lru_remove(cs_bm *bm, int32_t b) {
    if (bm->prev[b] != BM_NONE) bm->next[bm->prev[b]] = bm->next[b];
    else bm->lru_head = bm->next[b];
    if (bm->next[b] != BM_NONE) bm->prev[bm->next[b]] = bm->prev[b];
    else bm->lru_tail = bm->prev[b];
    bm->prev[b] = bm->next[b] = BM_NONE;
    bm->n_cached--;
}

// Takes the least recently used cached block out of the cache; the caller owns it (free).
static int32_t bm_evict_one(cs_bm *bm) {
    int32_t b = bm->lru_head;
    CS_ASSERT(b != BM_NONE);
    bm_lru_remove(bm, b);
    bm_map_remove(bm, b);
    bm->hashed[b] = 0;
    bm->gen[b]++;
    bm->evictions++;
    return b;
}

// A block for one table (refcount 1): a free one, else the least recently used cached one.
static int32_t bm_alloc(cs_bm *bm) {
    int32_t b = bm->n_free > 0 ? bm->free_ids[--bm->n_free] : bm_evict_one(bm);
    CS_ASSERT(bm->ref[b] == 0 && !bm->hashed[b]);
    bm->ref[b] = 1;
    bm->n_used++;
    return b;
}

// One more reference from a table; a cached block leaves the LRU list.
static void bm_take(cs_bm *bm, int32_t b) {
    if (bm->ref[b] == 0) {
        CS_ASSERT(bm->hashed[b]);
        bm_lru_remove(bm, b);
        bm->n_used++;
    }
    bm->ref[b]++;
}


// Grows s's table to hold at least n blocks: the only allocation after init.
static void bm_table_reserve(cs_bm_seq *s, int n) {
    if (n <= s->cap) return;
    int cap = s->cap ? 2 * s->cap : 8;
    if (cap < n) cap = n;
    int32_t *t = realloc(s->blocks, (size_t)cap * sizeof *t);
    CS_ASSERT(t); // a table of a few hundred bytes: out of memory here is not recoverable
    s->blocks = t;
    s->cap = cap;
}

static int bm_blocks_for(const cs_bm *bm, int n_tokens) { return (n_tokens + bm->bs - 1) / bm->bs; }

// --- lifecycle ----------------------------------------------------------------------------

cs_bm *cs_bm_init(int n_blocks, int block_size, bool prefix_caching) {
    if (n_blocks <= 0 || block_size <= 0 || n_blocks > (1 << 28) || block_size > (1 << 16))
        return NULL;
    uint32_t map_cap = 8;
    while (map_cap < 2u * (uint32_t)n_blocks) map_cap *= 2;
    size_t nb = (size_t)n_blocks;
    // One allocation carved into arrays: the 8-byte ones first, so every array is aligned.
    size_t bytes = sizeof(cs_bm) + 5 * nb * sizeof(uint64_t) +
                   (5 * nb + nb * (size_t)block_size + map_cap) * sizeof(int32_t) + nb;
    cs_bm *bm = calloc(1, bytes);
    if (!bm) return NULL;
    char *p = (char *)(bm + 1);
#define BM_CARVE(field, count)                 \
    do {                                       \
        bm->field = (void *)p;                 \
        p += (count) * sizeof *bm->field;      \
    } while (0)
    BM_CARVE(gen, nb);
    BM_CARVE(key, nb);
    BM_CARVE(parent_key, nb);
    BM_CARVE(salt, nb);
    BM_CARVE(parent_gen, nb);
    BM_CARVE(ref, nb);
    BM_CARVE(free_ids, nb);
    BM_CARVE(parent, nb);
    BM_CARVE(prev, nb);
    BM_CARVE(next, nb);
    BM_CARVE(tokens, nb * (size_t)block_size);
    BM_CARVE(map, (size_t)map_cap);
    BM_CARVE(hashed, nb);
#undef BM_CARVE
    CS_ASSERT(p == (char *)bm + bytes);
    bm->n_blocks = n_blocks;
    bm->bs = block_size;
    bm->caching = prefix_caching;
    bm->map_mask = map_cap - 1;
    for (uint32_t i = 0; i < map_cap; i++) bm->map[i] = BM_NONE;
    // lowest ids on top of the stack, so allocation order is predictable in tests
    for (int i = 0; i < n_blocks; i++) {
        bm->free_ids[i] = n_blocks - 1 - i;
        bm->prev[i] = bm->next[i] = BM_NONE;
    }
    bm->n_free = n_blocks;
    bm->lru_head = bm->lru_tail = BM_NONE;
    return bm;
}

void cs_bm_free(cs_bm *bm) { free(bm); }

int cs_bm_block_size(const cs_bm *bm) { return bm->bs; }
int cs_bm_available(const cs_bm *bm) { return bm->n_free + bm->n_cached; }

void cs_bm_debug_constant_hash(cs_bm *bm, bool on) {
    CS_ASSERT(bm->n_cached == 0 && bm->n_used == 0);
    bm->const_hash = on;
}

// --- prefix lookup and admission ----------------------------------------------------------

// Walks the cached chain of tokens[0..n): the number of leading full blocks that hit (at most
// (n-1)/bs, so the last token is always recomputed). Writes their ids to out (if not NULL)
// and counts in *n_idle those with refcount 0 (they would leave the LRU list).
static int bm_match(const cs_bm *bm, const int32_t *tokens, int n, uint64_t salt, int32_t *out,
                    int *n_idle) {
    if (n_idle) *n_idle = 0;
    if (!bm->caching || n <= 1) return 0;
    int max = (n - 1) / bm->bs, j = 0;
    uint64_t pkey = BM_ROOT_KEY, pgen = 0;
    int32_t parent = BM_NONE;
    for (; j < max; j++) {
        const int32_t *toks = tokens + (size_t)j * bm->bs;
        uint64_t k = bm_key(bm, pkey, toks, salt);
        int32_t b = bm_map_find(bm, k, toks, salt, parent, pgen);
        if (b == BM_NONE) break;
        if (out) out[j] = b;
        if (n_idle && bm->ref[b] == 0) (*n_idle)++;
        pkey = k;
        parent = b;
        pgen = bm->gen[b];
    }
    return j;
}

int cs_bm_lookup(const cs_bm *bm, const int32_t *tokens, int n, uint64_t salt) {
    return bm_match(bm, tokens, n, salt, NULL, NULL) * bm->bs;
}

bool cs_bm_can_admit(const cs_bm *bm, const int32_t *tokens, int n, uint64_t salt, int n_slots) {
    int idle, hits = bm_match(bm, tokens, n, salt, NULL, &idle);
    int need = bm_blocks_for(bm, n_slots) - hits;
    if (need < 0) need = 0;
    return need <= bm->n_free + bm->n_cached - idle;
}

int cs_bm_admit(cs_bm *bm, cs_bm_seq *s, const int32_t *tokens, int n, uint64_t salt) {
    CS_ASSERT(s->n_blocks == 0 && s->n_tokens == 0);
    s->salt = salt;
    s->n_computed = s->n_hashed = 0;
    int hits = 0;
    if (bm->caching && n > 1) {
        bm_table_reserve(s, (n - 1) / bm->bs);
        hits = bm_match(bm, tokens, n, salt, s->blocks, NULL);
    }
    for (int j = 0; j < hits; j++) bm_take(bm, s->blocks[j]);
    s->n_blocks = hits;
    s->n_tokens = s->n_computed = hits * bm->bs;
    s->n_hashed = hits;
    if (hits > 0) { // later commits chain onto the last block that hit
        int32_t last = s->blocks[hits - 1];
        s->chain_key = bm->key[last];
        s->chain_block = last;
        s->chain_gen = bm->gen[last];
    }
    bm->lookups_tokens += n;
    bm->hit_tokens += s->n_tokens;
    return s->n_tokens;
}

// --- growth, commit, fork, release --------------------------------------------------------

// Does appending need a copy first: a partial last block that another table also holds?
static bool bm_needs_copy(const cs_bm *bm, const cs_bm_seq *s, int n_new) {
    return n_new > 0 && s->n_tokens % bm->bs != 0 && bm->ref[s->blocks[s->n_blocks - 1]] > 1;
}

bool cs_bm_can_append(const cs_bm *bm, const cs_bm_seq *s, int n_new) {
    CS_ASSERT(n_new >= 0);
    int need = bm_blocks_for(bm, s->n_tokens + n_new) - s->n_blocks + bm_needs_copy(bm, s, n_new);
    return need <= bm->n_free + bm->n_cached;
}

int cs_bm_append(cs_bm *bm, cs_bm_seq *s, int n_new, cs_bm_copy *copies) {
    CS_ASSERT(cs_bm_can_append(bm, s, n_new));
    int n_copies = 0;
    if (bm_needs_copy(bm, s, n_new)) {
        // Copy-on-write: the other holders keep the original (its count stays >= 1).
        int32_t src = s->blocks[s->n_blocks - 1], dst = bm_alloc(bm);
        bm->ref[src]--;
        s->blocks[s->n_blocks - 1] = dst;
        copies[0] = (cs_bm_copy){src, dst, s->n_tokens % bm->bs};
        n_copies = 1;
    }
    int want = bm_blocks_for(bm, s->n_tokens + n_new);
    bm_table_reserve(s, want);
    while (s->n_blocks < want) s->blocks[s->n_blocks++] = bm_alloc(bm);
    s->n_tokens += n_new;
    return n_copies;
}

// Enters block j of s (full and computed) into the prefix cache, unless an identical block
// (same tokens, salt and parent) is already there, e.g. when two equal prompts were
// prefilled in the same step: then s's copy stays uncached and the chain goes on through
// the cached one, so later blocks of s are still reachable from the shared prefix.
static void bm_cache_block(cs_bm *bm, cs_bm_seq *s, int j, const int32_t *toks) {
    int32_t b = s->blocks[j];
    CS_ASSERT(!bm->hashed[b]); // blocks below n_hashed were hits; above it, only s wrote them
    uint64_t pkey = j ? s->chain_key : BM_ROOT_KEY, pgen = j ? s->chain_gen : 0;
    int32_t parent = j ? s->chain_block : BM_NONE;
    uint64_t k = bm_key(bm, pkey, toks, s->salt);
    s->chain_key = k;
    // The chain is broken when the parent was evicted since we chained onto it (possible
    // only when it was another sequence's identical block): s's later blocks could never be
    // reached by a lookup, so they are not cached.
    if (j > 0 && (parent == BM_NONE || bm->gen[parent] != pgen)) {
        s->chain_block = BM_NONE;
        return;
    }
    int32_t c = bm_map_find(bm, k, toks, s->salt, parent, pgen);
    if (c == BM_NONE) {
        c = b;
        memcpy(bm->tokens + (size_t)b * bm->bs, toks, (size_t)bm->bs * sizeof *toks);
        bm->key[b] = k;
        bm->parent_key[b] = pkey;
        bm->salt[b] = s->salt;
        bm->parent[b] = parent;
        bm->parent_gen[b] = pgen;
        bm->hashed[b] = 1;
        bm_map_insert(bm, b);
    }
    s->chain_block = c;
    s->chain_gen = bm->gen[c];
}

void cs_bm_commit(cs_bm *bm, cs_bm_seq *s, const int32_t *tokens, int n, uint64_t salt) {
    CS_ASSERT(n >= 0 && s->n_computed + n <= s->n_tokens);
    CS_ASSERT(salt == s->salt); // one sequence, one salt: the one it was admitted with
    s->n_computed += n;
    int full = s->n_computed / bm->bs;
    for (; s->n_hashed < full; s->n_hashed++)
        if (bm->caching) bm_cache_block(bm, s, s->n_hashed, tokens + (size_t)s->n_hashed * bm->bs);
}

void cs_bm_fork(cs_bm *bm, const cs_bm_seq *src, cs_bm_seq *dst) {
    CS_ASSERT(dst->n_blocks == 0 && dst->n_tokens == 0);
    CS_ASSERT(src->n_computed == src->n_tokens);
    int32_t *blocks = dst->blocks;
    int cap = dst->cap;
    *dst = *src;
    dst->blocks = blocks;
    dst->cap = cap;
    dst->n_blocks = 0;
    bm_table_reserve(dst, src->n_blocks);
    for (int i = 0; i < src->n_blocks; i++) {
        dst->blocks[i] = src->blocks[i];
        bm_take(bm, src->blocks[i]);
    }
    dst->n_blocks = src->n_blocks;
}

void cs_bm_release(cs_bm *bm, cs_bm_seq *s) {
    // Tail first: of this sequence's blocks, the last one lands nearest the LRU end.
    for (int i = s->n_blocks - 1; i >= 0; i--) {
        int32_t b = s->blocks[i];
        CS_ASSERT(bm->ref[b] > 0);
        if (--bm->ref[b] > 0) continue;
        bm->n_used--;
        if (bm->hashed[b]) bm_lru_push(bm, b);
        else bm->free_ids[bm->n_free++] = b;
    }
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

int cs_bm_evict(cs_bm *bm, int n) {
    int done = 0;
    for (; done < n && bm->lru_head != BM_NONE; done++) bm->free_ids[bm->n_free++] = bm_evict_one(bm);
    return done;
}

int32_t cs_bm_slot(const cs_bm *bm, const cs_bm_seq *s, int pos) {
    CS_ASSERT(pos >= 0 && pos < s->n_tokens);
    return s->blocks[pos / bm->bs] * bm->bs + pos % bm->bs;
}

void cs_bm_stats_get(const cs_bm *bm, cs_bm_stats *st) {
    *st = (cs_bm_stats){
        .total = bm->n_blocks,
        .free = bm->n_free,
        .used = bm->n_used,
        .cached = bm->n_cached,
        .lookups_tokens = bm->lookups_tokens,
        .hit_tokens = bm->hit_tokens,
        .evictions = bm->evictions,
    };
}

// --- invariant check (tests, debug builds) ------------------------------------------------

static bool bm_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bm_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cs_verrf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

enum { BM_IN_NONE = 0, BM_IN_FREE = 1, BM_IN_LRU = 2 };

// Per-sequence shape and the table reference counts, into cnt (n_blocks).
static bool bm_check_tables(const cs_bm *bm, cs_bm_seq *const *seqs, int n_seqs, int32_t *cnt,
                            int32_t *seen, char *err, size_t errlen) {
    for (int q = 0; q < n_seqs; q++) {
        const cs_bm_seq *s = seqs[q];
        if (s->n_tokens < 0 || s->n_computed < 0 || s->n_computed > s->n_tokens)
            return bm_fail(err, errlen, "seq %d: n_computed %d, n_tokens %d", q, s->n_computed, s->n_tokens);
        if (s->n_blocks != bm_blocks_for(bm, s->n_tokens) || s->n_blocks > s->cap)
            return bm_fail(err, errlen, "seq %d: %d blocks (cap %d) for %d tokens", q, s->n_blocks, s->cap,
                           s->n_tokens);
        if (s->n_hashed != s->n_computed / bm->bs)
            return bm_fail(err, errlen, "seq %d: %d chained blocks, %d computed tokens", q, s->n_hashed,
                           s->n_computed);
        for (int i = 0; i < s->n_blocks; i++) {
            int32_t b = s->blocks[i];
            if (b < 0 || b >= bm->n_blocks) return bm_fail(err, errlen, "seq %d: block %d out of range", q, b);
            if (seen[b] == q + 1) return bm_fail(err, errlen, "seq %d holds block %d twice", q, b);
            seen[b] = q + 1;
            cnt[b]++;
        }
        if (bm->caching && s->n_hashed > 0 && s->chain_block != BM_NONE &&
            bm->gen[s->chain_block] == s->chain_gen &&
            (!bm->hashed[s->chain_block] || bm->key[s->chain_block] != s->chain_key))
            return bm_fail(err, errlen, "seq %d: chains onto block %d, which does not hold its key", q,
                           s->chain_block);
    }
    return true;
}

// Free stack and LRU list: marks where[b]; each block appears at most once.
static bool bm_check_lists(const cs_bm *bm, uint8_t *where, char *err, size_t errlen) {
    if (bm->n_free < 0 || bm->n_free > bm->n_blocks) return bm_fail(err, errlen, "n_free %d", bm->n_free);
    for (int i = 0; i < bm->n_free; i++) {
        int32_t b = bm->free_ids[i];
        if (b < 0 || b >= bm->n_blocks || where[b])
            return bm_fail(err, errlen, "free list entry %d: block %d bad or repeated", i, b);
        if (bm->ref[b] != 0 || bm->hashed[b])
            return bm_fail(err, errlen, "free block %d has refcount %d, hashed %d", b, bm->ref[b], bm->hashed[b]);
        where[b] = BM_IN_FREE;
    }
    int n = 0;
    int32_t prev = BM_NONE;
    for (int32_t b = bm->lru_head; b != BM_NONE; prev = b, b = bm->next[b], n++) {
        if (b < 0 || b >= bm->n_blocks || where[b] || n >= bm->n_blocks)
            return bm_fail(err, errlen, "LRU list: block %d bad, repeated or on the free list", b);
        if (bm->prev[b] != prev) return bm_fail(err, errlen, "LRU list: block %d has a wrong prev link", b);
        if (bm->ref[b] != 0 || !bm->hashed[b])
            return bm_fail(err, errlen, "LRU block %d has refcount %d, hashed %d", b, bm->ref[b], bm->hashed[b]);
        where[b] = BM_IN_LRU;
    }
    if (prev != bm->lru_tail) return bm_fail(err, errlen, "LRU tail %d, last block %d", bm->lru_tail, prev);
    if (n != bm->n_cached) return bm_fail(err, errlen, "LRU list has %d blocks, n_cached %d", n, bm->n_cached);
    return true;
}

// Every map entry is a hashed block, findable from its home, whose content hashes to its key.
static bool bm_check_map(const cs_bm *bm, uint8_t *in_map, char *err, size_t errlen) {
    int entries = 0, hashed = 0;
    for (uint32_t i = 0; i <= bm->map_mask; i++) {
        int32_t b = bm->map[i];
        if (b == BM_NONE) continue;
        if (b < 0 || b >= bm->n_blocks || in_map[b] || !bm->hashed[b])
            return bm_fail(err, errlen, "map slot %u: block %d bad, repeated or not hashed", i, b);
        in_map[b] = 1;
        entries++;
        uint32_t j = bm_home(bm, bm->key[b]);
        while (bm->map[j] != b && bm->map[j] != BM_NONE) j = (j + 1) & bm->map_mask;
        if (bm->map[j] != b) return bm_fail(err, errlen, "map: block %d unreachable from its home", b);
        uint64_t k = bm_key(bm, bm->parent_key[b], bm->tokens + (size_t)b * bm->bs, bm->salt[b]);
        if (k != bm->key[b]) return bm_fail(err, errlen, "map: block %d's tokens do not hash to its key", b);
        int32_t p = bm->parent[b];
        if (p != BM_NONE && bm->gen[p] == bm->parent_gen[b] &&
            (!bm->hashed[p] || bm->key[p] != bm->parent_key[b]))
            return bm_fail(err, errlen, "map: block %d's live parent %d does not hold its parent key", b, p);
        if (p == BM_NONE && bm->parent_key[b] != BM_ROOT_KEY)
            return bm_fail(err, errlen, "map: first block %d has a parent key", b);
    }
    for (int b = 0; b < bm->n_blocks; b++) hashed += bm->hashed[b];
    if (hashed != entries) return bm_fail(err, errlen, "%d hashed blocks, %d map entries", hashed, entries);
    if (!bm->caching && hashed) return bm_fail(err, errlen, "prefix caching is off, %d blocks hashed", hashed);
    return true;
}

bool cs_bm_check(const cs_bm *bm, cs_bm_seq *const *seqs, int n_seqs, char *err, size_t errlen) {
    size_t nb = (size_t)bm->n_blocks;
    int32_t *cnt = calloc(2 * nb, sizeof *cnt);
    uint8_t *where = calloc(2 * nb, 1);
    CS_ASSERT(cnt && where);
    bool ok = bm_check_tables(bm, seqs, n_seqs, cnt, cnt + nb, err, errlen) &&
              bm_check_lists(bm, where, err, errlen) && bm_check_map(bm, where + nb, err, errlen);
    int used = 0;
    for (int b = 0; ok && b < bm->n_blocks; b++) {
        if (bm->ref[b] != cnt[b])
            ok = bm_fail(err, errlen, "block %d: refcount %d, held by %d tables", b, bm->ref[b], cnt[b]);
        else if (bm->ref[b] > 0 && where[b] != BM_IN_NONE)
            ok = bm_fail(err, errlen, "block %d is held by a table and %s", b,
                         where[b] == BM_IN_FREE ? "free" : "on the LRU list");
        else if (bm->ref[b] == 0 && where[b] == BM_IN_NONE)
            ok = bm_fail(err, errlen, "block %d: unreferenced, neither free nor cached (leaked)", b);
        used += bm->ref[b] > 0;
    }
    if (ok && (used != bm->n_used || bm->n_free + bm->n_used + bm->n_cached != bm->n_blocks))
        ok = bm_fail(err, errlen, "free %d + used %d (counted %d) + cached %d != total %d", bm->n_free,
                     bm->n_used, used, bm->n_cached, bm->n_blocks);
    free(cnt);
    free(where);
    return ok;
}
