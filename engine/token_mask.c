// Token masks: which tokens a grammar matcher accepts next (the vocabulary index they walk
// is built in token_mask_vocab.c).
//
// The walk. The index lists every token that stands for text sorted by its bytes, with the
// length of the prefix each shares with the previous one (lcp). Going through that list in
// order is a depth-first walk of the vocabulary trie without building one: moving to the next
// token keeps the shared prefix and advances only the bytes after it. When a byte is rejected,
// every following token that shares the rejected prefix is rejected too; `jump` (the next
// entry with a smaller lcp) skips such a run in a few steps.
//
// The memo. A walk meets few distinct matcher states (inside a JSON string every ordinary
// byte leads back to the same one), so within a walk states get small ids, found by their
// cs_gm_state_key, and each step (state, byte) is taken on the real matcher once and then
// looked up in a table. The matcher follows the walked path lazily: only to learn a new step
// is it rolled back to a checkpoint of the shared prefix and the missing bytes replayed.
//
// Bulk acceptance. When many bytes lead from the start state straight back to it (a string,
// `[^"]*`), every token made only of such bytes is accepted from its byte signature, 32 ids
// per word without walking it, and the walk visits only the rest (about 1,300 of SmolLM2's
// 49,152 tokens inside a JSON string).
//
// The cache. Masks are cached per grammar, keyed by the matcher's exact state (its serialised
// set of stacks), least recently used out once the cache holds more than max_bytes. Within a
// string, a number or between members the state repeats, so most calls are hits.
#include <stdlib.h>
#include <string.h>

#include "token_mask_internal.h"

// Hash of a state key (int32 words).
static uint64_t hash_key(const int32_t *k, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint32_t)k[i];
        h *= 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    return h;
}

// --- the walk's memo of matcher states (see the top) ------------------------------------------
// It lives for one walk; past MEMO_MAX_STATES states the walk goes on with the matcher alone.

#define MEMO_MAX_STATES 4096
#define MEMO_KEEP_STATES 256 // scratch kept between walks; larger is freed after the walk
#define MEMO_UNKNOWN 0xFFFF
#define MEMO_DEAD 0xFFFE
#define BULK_MIN_BYTES 64 // self-loop bytes from which the signature check pays

typedef struct walk_memo {
    uint16_t *next;     // (cap * 256) the state after a byte, MEMO_UNKNOWN or MEMO_DEAD
    int32_t n, cap;     // states
    uint64_t *hash;     // (cap)
    size_t *key_off;    // (cap + 1) into keys
    int32_t *keys;      // every state's key, concatenated
    size_t keys_cap;
    int32_t *slot;      // (n_slots) open addressing by hash: state id, -1 when empty
    uint32_t n_slots;   // power of two, at least twice n
} walk_memo;

static void memo_free(walk_memo *mm) {
    free(mm->next);
    free(mm->hash);
    free(mm->key_off);
    free(mm->keys);
    free(mm->slot);
    memset(mm, 0, sizeof *mm);
}

static bool memo_grow_states(walk_memo *mm) {
    int32_t cap = mm->cap ? mm->cap * 2 : 64;
    uint16_t *next = realloc(mm->next, sizeof *next * 256 * (size_t)cap);
    if (next) mm->next = next;
    uint64_t *hash = realloc(mm->hash, sizeof *hash * (size_t)cap);
    if (hash) mm->hash = hash;
    size_t *off = realloc(mm->key_off, sizeof *off * ((size_t)cap + 1));
    if (off) mm->key_off = off;
    if (!next || !hash || !off) return false;
    mm->cap = cap;
    return true;
}

static bool memo_grow_slots(walk_memo *mm) {
    uint32_t n = mm->n_slots ? mm->n_slots * 2 : 128;
    int32_t *slot = malloc(sizeof *slot * n);
    if (!slot) return false;
    memset(slot, 0xFF, sizeof *slot * n);
    for (int32_t id = 0; id < mm->n; id++) {
        uint32_t i = (uint32_t)mm->hash[id] & (n - 1);
        while (slot[i] >= 0) i = (i + 1) & (n - 1);
        slot[i] = id;
    }
    free(mm->slot);
    mm->slot = slot;
    mm->n_slots = n;
    return true;
}

static void memo_clear(walk_memo *mm) {
    mm->n = 0;
    if (mm->slot) memset(mm->slot, 0xFF, sizeof *mm->slot * mm->n_slots);
}

// The id of the state with this key, added when new; -1 when the memo is full or out of memory.
static int32_t memo_intern(walk_memo *mm, const int32_t *key, size_t n) {
    uint64_t h = hash_key(key, n);
    if (mm->n_slots) {
        for (uint32_t i = (uint32_t)h & (mm->n_slots - 1);; i = (i + 1) & (mm->n_slots - 1)) {
            int32_t id = mm->slot[i];
            if (id < 0) break;
            size_t len = mm->key_off[id + 1] - mm->key_off[id];
            if (mm->hash[id] == h && len == n && !memcmp(mm->keys + mm->key_off[id], key, n * sizeof *key))
                return id;
        }
    }
    if (mm->n == MEMO_MAX_STATES) return -1;
    if (mm->n == mm->cap && !memo_grow_states(mm)) return -1;
    if ((uint32_t)(mm->n + 1) * 2 > mm->n_slots && !memo_grow_slots(mm)) return -1;
    size_t off = mm->n ? mm->key_off[mm->n] : 0;
    if (off + n > mm->keys_cap) {
        size_t cap = mm->keys_cap ? mm->keys_cap : 1024;
        while (cap < off + n) cap *= 2;
        int32_t *keys = realloc(mm->keys, sizeof *keys * cap);
        if (!keys) return -1;
        mm->keys = keys;
        mm->keys_cap = cap;
    }
    int32_t id = mm->n++;
    memcpy(mm->keys + off, key, n * sizeof *key);
    mm->key_off[id] = off;
    mm->key_off[id + 1] = off + n;
    mm->hash[id] = h;
    memset(mm->next + (size_t)id * 256, 0xFF, 256 * sizeof *mm->next);
    uint32_t i = (uint32_t)h & (mm->n_slots - 1);
    while (mm->slot[i] >= 0) i = (i + 1) & (mm->n_slots - 1);
    mm->slot[i] = id;
    return id;
}

// --- the cache -----------------------------------------------------------------------------

// One cached mask: the state's key and its bitset in one allocation after the header, the
// bitset 64-byte aligned: copying it to a buffer a few bytes past the same offset in a page
// (4K aliasing) takes about ten times as long as an aligned copy.
typedef struct mask_entry {
    struct mask_entry *chain;      // next in the hash bucket
    struct mask_entry *prev, *next; // recency list, most recent first
    uint64_t hash;
    size_t bytes;   // the whole allocation, counted against max_bytes
    size_t key_len; // int32 words
    int32_t count, single;
    int32_t *key;   // (key_len)
    uint32_t *bits; // (words)
} mask_entry;

#define ENTRY_HEADER ((sizeof(mask_entry) + 63) / 64 * 64)

struct cs_mask_cache {
    const cs_grammar *g;
    const cs_vocab_index *v;
    size_t words;             // bitset words: (n_vocab + 31) / 32
    size_t max_bytes, bytes;
    uint64_t calls, hits;
    mask_entry **buckets;     // (n_buckets) chained hash, power of two
    size_t n_buckets, n_entries;
    mask_entry lru;           // sentinel: lru.next most recent, lru.prev least
    int32_t *key;             // scratch for the current state's key
    size_t key_cap;
    int *cp;                  // (max_len + 1) checkpoint after d bytes of the walked path
    int32_t *sid;             // (max_len + 1) memo id of the state after d bytes of the path
    uint32_t *todo;           // ((n_sorted + 31) / 32) sorted positions the walk must decide
    int32_t *wkey;            // scratch for the walk's state keys
    size_t wkey_cap;
    struct walk_memo memo;
};

cs_mask_cache *cs_mask_cache_init(const cs_grammar *g, const cs_vocab_index *v, size_t max_bytes) {
    cs_mask_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->g = g;
    c->v = v;
    c->words = ((size_t)v->n_vocab + 31) / 32;
    c->max_bytes = max_bytes;
    c->lru.next = c->lru.prev = &c->lru;
    c->n_buckets = 64;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    c->key_cap = 256;
    c->key = malloc(sizeof *c->key * c->key_cap);
    c->wkey_cap = 256;
    c->wkey = malloc(sizeof *c->wkey * c->wkey_cap);
    c->cp = malloc(sizeof *c->cp * ((size_t)v->max_len + 1));
    c->sid = malloc(sizeof *c->sid * ((size_t)v->max_len + 1));
    c->todo = malloc(sizeof *c->todo * (((size_t)v->n_sorted + 31) / 32 + 1));
    if (!c->buckets || !c->key || !c->wkey || !c->cp || !c->sid || !c->todo) {
        cs_mask_cache_free(c);
        return NULL;
    }
    return c;
}

void cs_mask_cache_free(cs_mask_cache *c) {
    if (!c) return;
    for (mask_entry *e = c->lru.next; e && e != &c->lru;) {
        mask_entry *next = e->next;
        free(e);
        e = next;
    }
    free(c->buckets);
    free(c->key);
    free(c->cp);
    free(c->sid);
    free(c->todo);
    free(c->wkey);
    memo_free(&c->memo);
    free(c);
}

void cs_mask_cache_stats(const cs_mask_cache *c, cs_mask_stats *s) {
    *s = (cs_mask_stats){c->calls, c->hits, c->bytes};
}

// m's state key into *buf (grown as needed, geometrically); returns its length, or SIZE_MAX
// when out of memory (callers then go without the key).
static size_t state_key(const cs_gram_matcher *m, int32_t **buf, size_t *cap) {
    size_t n = cs_gm_state_key(m, *buf, *cap);
    if (n == SIZE_MAX || n <= *cap) return n;
    size_t c = *cap;
    while (c < n) c *= 2;
    int32_t *k = realloc(*buf, sizeof *k * c);
    if (!k) return SIZE_MAX;
    *buf = k;
    *cap = c;
    n = cs_gm_state_key(m, *buf, *cap);
    return n <= *cap ? n : SIZE_MAX;
}

static void lru_unlink(mask_entry *e) {
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push_front(cs_mask_cache *c, mask_entry *e) {
    e->prev = &c->lru;
    e->next = c->lru.next;
    e->next->prev = e;
    c->lru.next = e;
}

static mask_entry *lookup(const cs_mask_cache *c, uint64_t h, const int32_t *key, size_t n) {
    for (mask_entry *e = c->buckets[h & (c->n_buckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->key_len == n && !memcmp(e->key, key, n * sizeof *key)) return e;
    return NULL;
}

static void remove_entry(cs_mask_cache *c, mask_entry *e) {
    mask_entry **p = &c->buckets[e->hash & (c->n_buckets - 1)];
    while (*p != e) p = &(*p)->chain;
    *p = e->chain;
    lru_unlink(e);
    c->bytes -= e->bytes;
    c->n_entries--;
    free(e);
}

// Doubles the bucket array once entries outnumber buckets; on failure chains just get longer.
static void maybe_grow_buckets(cs_mask_cache *c) {
    if (c->n_entries < c->n_buckets) return;
    size_t n = c->n_buckets * 2;
    mask_entry **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < c->n_buckets; i++)
        for (mask_entry *e = c->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

// Caches a computed mask under key, evicting least recently used entries to stay within
// max_bytes. A mask that cannot fit, or no memory, just goes uncached.
static void insert(cs_mask_cache *c, uint64_t h, const int32_t *key, size_t key_len,
                   const uint32_t *bits, int32_t count, int32_t single) {
    size_t bytes = ENTRY_HEADER + key_len * sizeof *key + c->words * sizeof *bits;
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > c->max_bytes) return;
    while (c->bytes + bytes > c->max_bytes) remove_entry(c, c->lru.prev);
    mask_entry *e = aligned_alloc(64, bytes);
    if (!e) return;
    e->bits = (uint32_t *)((char *)e + ENTRY_HEADER);
    e->key = (int32_t *)(e->bits + c->words);
    e->hash = h;
    e->bytes = bytes;
    e->key_len = key_len;
    e->count = count;
    e->single = single;
    memcpy(e->bits, bits, c->words * sizeof *bits);
    memcpy(e->key, key, key_len * sizeof *key);
    maybe_grow_buckets(c);
    e->chain = c->buckets[h & (c->n_buckets - 1)];
    c->buckets[h & (c->n_buckets - 1)] = e;
    lru_push_front(c, e);
    c->bytes += bytes;
    c->n_entries++;
}

// --- computing a mask ----------------------------------------------------------------------

// Where the real matcher is along the walked path: it has consumed the path's first `synced`
// bytes, and physically stands at depth `phys` >= synced (deeper is a stale branch, rolled
// back on the next sync). cp[d] is the checkpoint after d bytes, valid for d <= synced.
typedef struct walker {
    cs_mask_cache *c;
    cs_gram_matcher *m;
    int *cp;
    int32_t *sid; // sid[d]: memo id of the state after d bytes of the path, -1 when none
    uint32_t synced, phys;
} walker;

// Brings the matcher to the first depth bytes of path p. False if a replayed step fails,
// which cannot happen while equal keys mean equal states (the memo knew those steps).
static bool sync_to(walker *w, const uint8_t *p, uint32_t depth) {
    if (w->synced > depth) w->synced = depth;
    if (w->phys != w->synced) {
        cs_gm_rollback(w->m, w->cp[w->synced]);
        w->phys = w->synced;
    }
    while (w->synced < depth) {
        if (!cs_gm_advance(w->m, p[w->synced])) return false;
        w->cp[++w->synced] = cs_gm_checkpoint(w->m);
        w->phys = w->synced;
    }
    return true;
}

// The memo id of the matcher's current state (-1: none, the memo is full or no memory).
static int32_t intern_current(cs_mask_cache *c, const cs_gram_matcher *m) {
    size_t n = state_key(m, &c->wkey, &c->wkey_cap);
    return n == SIZE_MAX ? -1 : memo_intern(&c->memo, c->wkey, n);
}

// Takes byte p[depth] after the path's first depth bytes, learning it on the real matcher
// when the memo does not know it. Returns the next state's memo id, -1 for a known-alive
// step without an id, or -2 when the byte is rejected.
static int32_t step_slow(walker *w, const uint8_t *p, uint32_t depth) {
    int32_t s = w->sid[depth];
    if (!sync_to(w, p, depth)) return -2;
    if (!cs_gm_advance(w->m, p[depth])) {
        if (s >= 0) w->c->memo.next[(size_t)s * 256 + p[depth]] = MEMO_DEAD;
        return -2;
    }
    w->cp[++w->synced] = cs_gm_checkpoint(w->m);
    w->phys = w->synced;
    if (s < 0) return -1;
    int32_t t = intern_current(w->c, w->m);
    if (t >= 0) w->c->memo.next[(size_t)s * 256 + p[depth]] = (uint16_t)t;
    return t;
}

// Bytes that lead from the walk's start state back to itself (inside a JSON string: all but
// '"', '\' and controls), as a signature mask: a token made only of them is accepted without
// walking it. False when there are too few for the check to pay (then the walk does it all).
static bool self_loops(walker *w, uint64_t a[2]) {
    int32_t s0 = w->sid[0];
    bool self[256];
    int n_self = 0;
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        if (w->c->memo.next[(size_t)s0 * 256 + b] == MEMO_UNKNOWN) step_slow(w, &byte, 0);
        self[b] = w->c->memo.next[(size_t)s0 * 256 + b] == s0;
        n_self += self[b];
    }
    w->synced = 0; // the matcher stands on the last byte's path, not the walk's
    if (n_self < BULK_MIN_BYTES) return false;
    a[0] = a[1] = 0;
    bool high = true;
    for (int b = 127; b < 256; b++) high &= self[b];
    for (int b = 0; b < 128; b++)
        if (b < 127 ? self[b] : high) a[b / 64] |= 1ull << (b % 64);
    return true;
}

// Sets the bits of every token made only of self-loop bytes, 32 ids at a time (no scattered
// writes), and marks in todo (by sorted position) the entries the walk must still decide.
// Returns the tokens accepted.
static int32_t bulk_accept(const cs_vocab_index *v, const uint64_t a[2], uint32_t *bits, uint32_t *todo) {
    uint64_t na0 = ~a[0], na1 = ~a[1];
    int32_t count = 0;
    for (size_t w = 0; w * 32 < (size_t)v->n_vocab; w++) {
        const uint64_t *sg = v->sig + 64 * w; // padded to whole words: no bounds check
        uint32_t word = 0;
        for (uint32_t k = 0; k < 32; k++) word |= (uint32_t)(((sg[2 * k] & na0) | (sg[2 * k + 1] & na1)) == 0) << k;
        bits[w] = word & v->walkable[w];
        count += __builtin_popcount(bits[w]);
    }
    // The same test by sorted position (a second copy of the signatures: a gather through the
    // ids would cost more than the whole walk of what is left).
    uint32_t n = (uint32_t)v->n_sorted;
    for (uint32_t w = 0; w * 32 < n; w++) {
        const uint64_t *sg = v->sig_sorted + 64 * (size_t)w;
        uint32_t word = 0;
        for (uint32_t k = 0; k < 32; k++) word |= (uint32_t)(((sg[2 * k] & na0) | (sg[2 * k + 1] & na1)) != 0) << k;
        todo[w] = word;
    }
    return count;
}

// The first sorted position >= i still to walk, or n.
static uint32_t next_todo(const uint32_t *todo, uint32_t i, uint32_t n) {
    if (i >= n) return n;
    uint32_t w = i / 32, word = todo[w] & (~0u << (i % 32)), last = (n - 1) / 32;
    while (!word) {
        if (++w > last) return n;
        word = todo[w];
    }
    uint32_t r = w * 32 + (uint32_t)__builtin_ctz(word);
    return r < n ? r : n;
}

// Decides entry e: advances from the path's first depth bytes, by the memo where it knows
// the step. Returns the depth reached (e->len: accepted).
static uint32_t walk_entry(walker *w, const uint8_t *p, uint32_t len, uint32_t depth) {
    const walk_memo *mm = &w->c->memo;
    while (depth < len) {
        int32_t s = w->sid[depth], t = -1;
        if (s >= 0) {
            uint16_t nx = mm->next[(size_t)s * 256 + p[depth]];
            if (nx == MEMO_DEAD) break;
            t = nx == MEMO_UNKNOWN ? -3 : nx;
        }
        if (t < 0 && (t = step_slow(w, p, depth)) == -2) break;
        w->sid[++depth] = t;
    }
    return depth;
}

// The walk over the sorted vocabulary (see the top of the file). Sets the bits of accepted
// tokens (bits already zeroed) and returns how many. key: the matcher's state key (NULL when
// unknown: the walk then goes without memo). The matcher ends where it started.
static int32_t walk(cs_mask_cache *c, cs_gram_matcher *m, const int32_t *key, size_t key_len, uint32_t *bits) {
    const cs_vocab_entry *ent = c->v->ent;
    const uint8_t *bytes = c->v->bytes, *path = NULL; // path: the last walked entry's bytes
    walker w = {c, m, c->cp, c->sid, 0, 0};
    uint32_t n = (uint32_t)c->v->n_sorted, depth = 0, prev = UINT32_MAX;
    int32_t count = 0;
    memo_clear(&c->memo);
    w.cp[0] = cs_gm_checkpoint(m);
    w.sid[0] = key ? memo_intern(&c->memo, key, key_len) : -1;
    uint64_t a[2];
    if (w.sid[0] >= 0 && self_loops(&w, a)) count = bulk_accept(c->v, a, bits, c->todo);
    else memset(c->todo, 0xFF, sizeof *c->todo * (((size_t)n + 31) / 32));
    for (uint32_t i = next_todo(c->todo, 0, n); i < n;) {
        const cs_vocab_entry *e = &ent[i];
        const uint8_t *p = bytes + e->off;
        // the prefix e shares with the path: lcp when e follows it, else compared
        uint32_t share = e->len < depth ? e->len : depth;
        if (i == prev + 1) share = e->lcp < share ? e->lcp : share;
        else for (uint32_t k = 0; k < share; k++) if (p[k] != path[k]) { share = k; break; }
        depth = share;
        if (w.synced > depth) w.synced = depth;
        path = p;
        prev = i;
        depth = walk_entry(&w, p, e->len, depth);
        if (depth == e->len) {
            bits[e->id >> 5] |= 1u << (e->id & 31);
            count++;
            i = next_todo(c->todo, i + 1, n);
            continue;
        }
        // p[0..depth] is rejected: so is every following entry that shares it (lcp > depth).
        // Entries i+1 .. jump[i+1]-1 share at least lcp[i+1] bytes, so a jump never overshoots.
        for (i++; i < n && ent[i].lcp > depth;) i = ent[i].jump;
        i = next_todo(c->todo, i, n);
    }
    if (w.phys != 0) cs_gm_rollback(m, w.cp[0]);
    if (c->memo.cap > MEMO_KEEP_STATES) memo_free(&c->memo);
    return count;
}

// Computes the mask of m's state from scratch into bits; returns the count.
static int32_t compute(cs_mask_cache *c, cs_gram_matcher *m, const int32_t *key, size_t key_len,
                       uint32_t *bits, int32_t *single) {
    memset(bits, 0, c->words * sizeof *bits);
    int32_t count = 0;
    // A state with no byte to consume (the end of a literal, say) allows only the end.
    if (cs_gm_can_continue(m)) count = walk(c, m, key, key_len, bits);
    if (cs_gm_can_end(m)) {
        for (int32_t k = 0; k < c->v->n_eog; k++) {
            int32_t id = c->v->eog[k];
            bits[id >> 5] |= 1u << (id & 31);
        }
        count += c->v->n_eog;
    }
    *single = -1;
    for (size_t w = 0; count == 1 && *single < 0; w++)
        if (bits[w]) *single = (int32_t)(w * 32) + __builtin_ctz(bits[w]);
    return count;
}

int cs_token_mask(cs_mask_cache *c, cs_gram_matcher *m, uint32_t *bits, int32_t *single) {
    c->calls++;
    size_t n = state_key(m, &c->key, &c->key_cap);
    uint64_t h = 0;
    if (n != SIZE_MAX) {
        h = hash_key(c->key, n);
        mask_entry *e = lookup(c, h, c->key, n);
        if (e) {
            c->hits++;
            lru_unlink(e);
            lru_push_front(c, e);
            memcpy(bits, e->bits, c->words * sizeof *bits);
            *single = e->single;
            return e->count;
        }
    }
    int32_t s, count = compute(c, m, n != SIZE_MAX ? c->key : NULL, n, bits, &s);
    if (n != SIZE_MAX) insert(c, h, c->key, n, bits, count, s);
    *single = s;
    return count;
}
