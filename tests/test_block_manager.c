// KV block manager: each verb on small hand-built cases, a forced hash collision, and a
// randomized property test (admit / append / commit / fork / release / lookup / evict under
// block pressure) that checks every invariant after each operation and keeps its own shadow
// of what each KV slot holds, so any hit on the wrong content is caught independently.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/block_manager.h"
#include "test_util.h"

static bool check_ok(const cs_bm *bm, cs_bm_seq *const *seqs, int n, int line) {
    char err[256] = "";
    bool ok = cs_bm_check(bm, seqs, n, err, sizeof err);
    TEST_CONDF(ok, "cs_bm_check (line %d): %s", line, err);
    return ok;
}
#define CHECK(bm, ...)                                                                   \
    do {                                                                                 \
        cs_bm_seq *seqs_[] = {NULL, __VA_ARGS__};                                        \
        check_ok(bm, seqs_ + 1, (int)(sizeof seqs_ / sizeof *seqs_) - 1, __LINE__);      \
    } while (0)

static cs_bm_stats stats(const cs_bm *bm) {
    cs_bm_stats st;
    cs_bm_stats_get(bm, &st);
    return st;
}

// Prefill a whole prompt: admit, append the rest, commit it all. Returns the cached tokens.
static int prefill(cs_bm *bm, cs_bm_seq *s, const int32_t *toks, int n, uint64_t salt) {
    int hit = cs_bm_admit(bm, s, toks, n, salt);
    cs_bm_copy cp[1];
    TEST_COND(cs_bm_can_append(bm, s, n - hit));
    TEST_COND(cs_bm_append(bm, s, n - hit, cp) == 0);
    cs_bm_commit(bm, s, toks, n - hit, salt);
    return hit;
}

static void seq_tokens(int32_t *t, int n, int32_t base) {
    for (int i = 0; i < n; i++) t[i] = base + i;
}

// --- unit tests ---------------------------------------------------------------------------

static void test_append_slots_release(void) {
    cs_bm *bm = cs_bm_init(8, 4, true);
    TEST_COND(bm && cs_bm_block_size(bm) == 4 && cs_bm_available(bm) == 8);
    TEST_COND(cs_bm_init(0, 4, true) == NULL && cs_bm_init(4, 0, true) == NULL);
    int32_t t[10];
    seq_tokens(t, 10, 100);
    cs_bm_seq s = {0};
    TEST_COND(cs_bm_admit(bm, &s, t, 10, 0) == 0);
    cs_bm_copy cp[1];
    TEST_COND(cs_bm_append(bm, &s, 10, cp) == 0);
    TEST_COND(s.n_blocks == 3 && s.n_tokens == 10 && s.n_computed == 0);
    TEST_COND(s.blocks[0] == 0 && s.blocks[1] == 1 && s.blocks[2] == 2); // lowest ids first
    TEST_COND(cs_bm_slot(bm, &s, 0) == 0 && cs_bm_slot(bm, &s, 5) == 5 && cs_bm_slot(bm, &s, 9) == 9);
    cs_bm_stats st = stats(bm);
    TEST_COND(st.used == 3 && st.free == 5 && st.cached == 0);
    CHECK(bm, &s);
    cs_bm_commit(bm, &s, t, 10, 0);
    TEST_COND(s.n_computed == 10);
    CHECK(bm, &s);
    cs_bm_release(bm, &s);
    TEST_COND(s.blocks == NULL && s.n_blocks == 0 && s.n_tokens == 0);
    st = stats(bm);
    // the two full blocks stay cached, the partial third goes back to the free list
    TEST_COND(st.used == 0 && st.cached == 2 && st.free == 6);
    CHECK(bm);
    TEST_COND(cs_bm_evict(bm, 100) == 2);
    st = stats(bm);
    TEST_COND(st.free == 8 && st.cached == 0 && st.evictions == 2);
    CHECK(bm);
    cs_bm_free(bm);
    cs_bm_free(NULL);
}

static void test_admit_partial_hits(void) {
    cs_bm *bm = cs_bm_init(16, 4, true);
    int32_t p[16], q[16];
    seq_tokens(p, 16, 1);
    cs_bm_seq a = {0}, b = {0};
    TEST_COND(prefill(bm, &a, p, 12, 0) == 0);
    // at most floor((n-1)/bs) blocks: the last prompt token is always recomputed
    TEST_COND(cs_bm_lookup(bm, p, 12, 0) == 8);
    TEST_COND(cs_bm_lookup(bm, p, 13, 0) == 12);
    TEST_COND(cs_bm_lookup(bm, p, 4, 0) == 0);
    TEST_COND(cs_bm_lookup(bm, p, 5, 0) == 4);
    TEST_COND(cs_bm_lookup(bm, p, 8, 0) == 4);
    TEST_COND(cs_bm_lookup(bm, p, 9, 0) == 8);
    TEST_COND(cs_bm_lookup(bm, p, 1, 0) == 0 && cs_bm_lookup(bm, p, 0, 0) == 0);
    memcpy(q, p, sizeof q);
    q[6] = 999; // differs inside the second block: only the first hits
    TEST_COND(cs_bm_lookup(bm, q, 13, 0) == 4);
    q[0] = 999;
    TEST_COND(cs_bm_lookup(bm, q, 13, 0) == 0);
    cs_bm_release(bm, &a);
    TEST_COND(stats(bm).cached == 3);
    // admission takes the cached blocks back off the LRU list
    TEST_COND(cs_bm_admit(bm, &b, p, 14, 0) == 12);
    TEST_COND(b.n_tokens == 12 && b.n_computed == 12 && b.n_blocks == 3);
    TEST_COND(b.blocks[0] == 0 && b.blocks[1] == 1 && b.blocks[2] == 2);
    cs_bm_stats st = stats(bm);
    TEST_COND(st.cached == 0 && st.used == 3 && st.lookups_tokens == 12 + 14 && st.hit_tokens == 12);
    CHECK(bm, &b);
    cs_bm_copy cp[1];
    TEST_COND(cs_bm_append(bm, &b, 2, cp) == 0 && b.n_blocks == 4 && b.blocks[3] == 3);
    cs_bm_commit(bm, &b, p, 2, 0);
    CHECK(bm, &b);
    cs_bm_release(bm, &b);
    CHECK(bm);
    cs_bm_free(bm);
}

static void test_commit_gates_cache(void) {
    cs_bm *bm = cs_bm_init(16, 4, true);
    int32_t p[12];
    seq_tokens(p, 12, 7);
    cs_bm_seq a = {0};
    cs_bm_copy cp[1];
    cs_bm_admit(bm, &a, p, 12, 0);
    cs_bm_append(bm, &a, 8, cp);
    TEST_COND(cs_bm_lookup(bm, p, 12, 0) == 0); // slots, but no KV written yet
    cs_bm_commit(bm, &a, p, 3, 0);
    TEST_COND(cs_bm_lookup(bm, p, 12, 0) == 0);
    cs_bm_commit(bm, &a, p, 1, 0);
    TEST_COND(cs_bm_lookup(bm, p, 12, 0) == 4);
    CHECK(bm, &a);
    cs_bm_commit(bm, &a, p, 4, 0);
    TEST_COND(cs_bm_lookup(bm, p, 12, 0) == 8);
    CHECK(bm, &a);
    cs_bm_release(bm, &a);
    cs_bm_free(bm);
}

static void test_salt_isolation(void) {
    cs_bm *bm = cs_bm_init(16, 4, true);
    int32_t p[9];
    seq_tokens(p, 9, 3);
    cs_bm_seq a = {0}, b = {0}, c = {0};
    prefill(bm, &a, p, 9, 7);
    TEST_COND(cs_bm_lookup(bm, p, 9, 7) == 8);
    TEST_COND(cs_bm_lookup(bm, p, 9, 0) == 0);
    TEST_COND(cs_bm_lookup(bm, p, 9, 8) == 0);
    TEST_COND(prefill(bm, &b, p, 9, 0) == 0); // same tokens, no salt: its own blocks
    TEST_COND(cs_bm_lookup(bm, p, 9, 0) == 8 && cs_bm_lookup(bm, p, 9, 7) == 8);
    TEST_COND(cs_bm_admit(bm, &c, p, 9, 7) == 8);
    TEST_COND(c.blocks[0] == a.blocks[0] && c.blocks[1] == a.blocks[1]);
    TEST_COND(c.blocks[0] != b.blocks[0]);
    CHECK(bm, &a, &b, &c);
    cs_bm_release(bm, &a);
    cs_bm_release(bm, &b);
    cs_bm_release(bm, &c);
    CHECK(bm);
    cs_bm_free(bm);
}

static void test_fork_copy_on_write(void) {
    cs_bm *bm = cs_bm_init(16, 4, true);
    int32_t p[8];
    seq_tokens(p, 8, 50);
    cs_bm_seq a = {0}, b = {0}, c = {0}, d = {0};
    cs_bm_copy cp[1];
    prefill(bm, &a, p, 6, 0); // blocks: one full, one with 2 tokens
    cs_bm_fork(bm, &a, &b);
    TEST_COND(b.n_blocks == 2 && b.blocks[0] == a.blocks[0] && b.blocks[1] == a.blocks[1]);
    TEST_COND(b.n_tokens == 6 && b.n_computed == 6 && stats(bm).used == 2);
    CHECK(bm, &a, &b);
    int32_t shared_tail = a.blocks[1];
    // the first writer into the shared partial block gets a copy of its 2 rows
    TEST_COND(cs_bm_can_append(bm, &b, 1));
    TEST_COND(cs_bm_append(bm, &b, 1, cp) == 1);
    TEST_COND(cp[0].src == shared_tail && cp[0].dst == b.blocks[1] && cp[0].dst != shared_tail);
    TEST_COND(cp[0].n_rows == 2);
    TEST_COND(b.blocks[0] == a.blocks[0]);
    CHECK(bm, &a, &b);
    // ... and the other one now owns the original alone: no copy
    TEST_COND(cs_bm_append(bm, &a, 1, cp) == 0 && a.blocks[1] == shared_tail);
    CHECK(bm, &a, &b);
    // full shared blocks are never copied: new tokens go to a new block
    prefill(bm, &c, p, 8, 0);
    cs_bm_fork(bm, &c, &d);
    TEST_COND(cs_bm_append(bm, &d, 1, cp) == 0);
    TEST_COND(d.n_blocks == 3 && d.blocks[0] == c.blocks[0] && d.blocks[1] == c.blocks[1]);
    CHECK(bm, &a, &b, &c, &d);
    cs_bm_release(bm, &c); // d keeps the shared blocks alive
    CHECK(bm, &a, &b, &d);
    TEST_COND(cs_bm_lookup(bm, p, 8, 0) == 4);
    cs_bm_release(bm, &a);
    cs_bm_release(bm, &b);
    cs_bm_release(bm, &d);
    cs_bm_stats st = stats(bm);
    TEST_COND(st.used == 0 && st.free + st.cached == 16);
    CHECK(bm);
    cs_bm_free(bm);
}

static void test_eviction_order(void) {
    cs_bm *bm = cs_bm_init(6, 4, true);
    int32_t pa[13], pb[9], pc[24];
    seq_tokens(pa, 13, 100);
    seq_tokens(pb, 9, 200);
    seq_tokens(pc, 24, 300);
    cs_bm_seq a = {0}, b = {0}, c = {0}, d = {0};
    cs_bm_copy cp[1];
    prefill(bm, &a, pa, 12, 0);
    cs_bm_release(bm, &a); // LRU: a2 a1 a0
    prefill(bm, &b, pb, 8, 0);
    cs_bm_release(bm, &b); // LRU: a2 a1 a0 b1 b0
    TEST_COND(stats(bm).cached == 5 && stats(bm).free == 1);
    cs_bm_admit(bm, &c, pc, 24, 0);
    cs_bm_append(bm, &c, 4, cp); // the free block
    TEST_COND(stats(bm).evictions == 0);
    cs_bm_append(bm, &c, 4, cp); // evicts a's tail
    TEST_COND(stats(bm).evictions == 1);
    TEST_COND(cs_bm_lookup(bm, pa, 13, 0) == 8 && cs_bm_lookup(bm, pb, 9, 0) == 8);
    cs_bm_append(bm, &c, 4, cp);
    TEST_COND(cs_bm_lookup(bm, pa, 13, 0) == 4 && cs_bm_lookup(bm, pb, 9, 0) == 8);
    CHECK(bm, &c);
    // a hit makes a0 used; the next victim is then b's tail, not a0
    TEST_COND(cs_bm_admit(bm, &d, pa, 13, 0) == 4);
    cs_bm_append(bm, &c, 4, cp);
    TEST_COND(cs_bm_lookup(bm, pb, 9, 0) == 4);
    CHECK(bm, &c, &d);
    cs_bm_release(bm, &d); // a0 returns as the most recently used: LRU b0 a0
    cs_bm_append(bm, &c, 4, cp);
    TEST_COND(cs_bm_lookup(bm, pb, 9, 0) == 0 && cs_bm_lookup(bm, pa, 13, 0) == 4);
    TEST_COND(stats(bm).evictions == 4 && stats(bm).cached == 1);
    CHECK(bm, &c);
    cs_bm_release(bm, &c);
    cs_bm_free(bm);
}

static void test_can_append_and_admit(void) {
    cs_bm *bm = cs_bm_init(2, 4, true);
    int32_t p[9];
    seq_tokens(p, 9, 10);
    cs_bm_seq a = {0}, b = {0}, c = {0};
    cs_bm_copy cp[1];
    cs_bm_append(bm, &a, 8, cp);
    TEST_COND(!cs_bm_can_append(bm, &a, 1) && cs_bm_can_append(bm, &a, 0));
    cs_bm_release(bm, &a); // never committed: straight back to the free list
    TEST_COND(stats(bm).free == 2);
    prefill(bm, &b, p, 8, 0);
    cs_bm_release(bm, &b); // both cached now, nothing free
    TEST_COND(stats(bm).free == 0 && stats(bm).cached == 2 && cs_bm_available(bm) == 2);
    TEST_COND(cs_bm_can_append(bm, &c, 8) && !cs_bm_can_append(bm, &c, 9));
    // admitting p takes both cached blocks: nothing left for a third one
    TEST_COND(cs_bm_can_admit(bm, p, 9, 0, 8) && !cs_bm_can_admit(bm, p, 9, 0, 9));
    int32_t q[9];
    seq_tokens(q, 9, 500); // no hit: both cached blocks are evictable for it
    TEST_COND(cs_bm_can_admit(bm, q, 9, 0, 8) && !cs_bm_can_admit(bm, q, 9, 0, 9));
    cs_bm_free(bm);

    // the copy of a shared partial block needs a block too
    bm = cs_bm_init(3, 4, true);
    cs_bm_seq d = {0}, e = {0};
    prefill(bm, &d, p, 6, 0);
    cs_bm_fork(bm, &d, &e);
    TEST_COND(!cs_bm_can_append(bm, &e, 3) && cs_bm_can_append(bm, &e, 2));
    TEST_COND(cs_bm_append(bm, &e, 2, cp) == 1);
    TEST_COND(!cs_bm_can_append(bm, &e, 1));
    CHECK(bm, &d, &e);
    cs_bm_release(bm, &d);
    cs_bm_release(bm, &e);
    cs_bm_free(bm);
}

static void test_no_prefix_caching(void) {
    cs_bm *bm = cs_bm_init(8, 4, false);
    int32_t p[9];
    seq_tokens(p, 9, 1);
    cs_bm_seq a = {0}, b = {0};
    prefill(bm, &a, p, 9, 0);
    TEST_COND(cs_bm_lookup(bm, p, 9, 0) == 0);
    TEST_COND(cs_bm_admit(bm, &b, p, 9, 0) == 0 && b.n_blocks == 0);
    CHECK(bm, &a, &b);
    cs_bm_release(bm, &a);
    cs_bm_release(bm, &b);
    cs_bm_stats st = stats(bm);
    TEST_COND(st.free == 8 && st.cached == 0 && st.used == 0);
    CHECK(bm);
    cs_bm_free(bm);
}

// Two identical prompts prefilled in the same step: the second's duplicate blocks stay
// uncached, yet its later blocks chain onto the first's and are found. Run with real and
// with constant keys: the last case can only go wrong when keys collide.
static void test_duplicate_blocks(bool constant) {
    cs_bm *bm = cs_bm_init(16, 4, true);
    cs_bm_debug_constant_hash(bm, constant);
    int32_t p[14];
    seq_tokens(p, 14, 40);
    cs_bm_seq a = {0}, b = {0}, c = {0};
    cs_bm_copy cp[1];
    TEST_COND(cs_bm_admit(bm, &a, p, 13, 0) == 0 && cs_bm_admit(bm, &b, p, 13, 0) == 0);
    cs_bm_append(bm, &a, 13, cp);
    cs_bm_append(bm, &b, 13, cp);
    cs_bm_commit(bm, &a, p, 8, 0);
    cs_bm_commit(bm, &b, p, 13, 0);
    CHECK(bm, &a, &b);
    TEST_COND(cs_bm_admit(bm, &c, p, 14, 0) == 12);
    TEST_COND(c.blocks[0] == a.blocks[0] && c.blocks[1] == a.blocks[1] && c.blocks[2] == b.blocks[2]);
    CHECK(bm, &a, &b, &c);
    cs_bm_release(bm, &a);
    cs_bm_release(bm, &b);
    cs_bm_release(bm, &c);
    cs_bm_stats st = stats(bm);
    TEST_COND(st.cached == 3 && st.free == 13);
    CHECK(bm);
    cs_bm_evict(bm, 16);

    // the block chained onto is evicted: the rest of that sequence is not cached
    cs_bm_seq e = {0}, f = {0};
    cs_bm_admit(bm, &e, p, 13, 0);
    cs_bm_admit(bm, &f, p, 13, 0);
    cs_bm_append(bm, &e, 4, cp);
    cs_bm_append(bm, &f, 12, cp);
    cs_bm_commit(bm, &e, p, 4, 0);
    cs_bm_commit(bm, &f, p, 4, 0); // duplicate of e's block 0
    cs_bm_release(bm, &e);
    TEST_COND(cs_bm_evict(bm, 16) == 1);
    cs_bm_commit(bm, &f, p, 8, 0);
    TEST_COND(cs_bm_lookup(bm, p, 13, 0) == 0);
    CHECK(bm, &f);
    cs_bm_release(bm, &f);
    TEST_COND(stats(bm).free == 16);
    CHECK(bm);

    // A cached child outlives its (other sequence's) parent, whose block is then reused for
    // other content: the child must not hit under the new content (generations).
    int32_t y[9];
    memcpy(y, p, sizeof y);
    y[0] = 777; // block 0 differs, block 1 is p's
    cs_bm_seq g = {0}, h = {0}, k = {0};
    cs_bm_admit(bm, &g, p, 9, 0);
    cs_bm_admit(bm, &h, p, 9, 0);
    cs_bm_append(bm, &g, 4, cp);
    cs_bm_append(bm, &h, 8, cp);
    cs_bm_commit(bm, &g, p, 4, 0);
    cs_bm_commit(bm, &h, p, 8, 0); // h's block 1 is cached under g's block 0
    TEST_COND(cs_bm_lookup(bm, p, 9, 0) == 8);
    int32_t g0 = g.blocks[0];
    cs_bm_release(bm, &g);
    TEST_COND(cs_bm_evict(bm, 1) == 1 && cs_bm_lookup(bm, p, 9, 0) == 0);
    TEST_COND(prefill(bm, &k, y, 4, 0) == 0 && k.blocks[0] == g0); // same block, new content
    TEST_COND(cs_bm_lookup(bm, y, 9, 0) == 4);
    CHECK(bm, &h, &k);
    cs_bm_release(bm, &h);
    cs_bm_release(bm, &k);
    cs_bm_free(bm);
}

// Every key equal: hits must still need equal tokens, salt and parent.
static void test_forced_collision(void) {
    for (int constant = 0; constant <= 1; constant++) {
        cs_bm *bm = cs_bm_init(32, 2, true);
        cs_bm_debug_constant_hash(bm, constant);
        enum { X1 = 1, X2 = 2, Y1 = 3, Y2 = 4 };
        int32_t xy[5] = {X1, X2, Y1, Y2, 9}, yx[5] = {Y1, Y2, X1, X2, 9};
        int32_t xx[5] = {X1, X2, X1, X2, 9}, yy[5] = {Y1, Y2, Y1, Y2, 9};
        int32_t xz[5] = {X1, X2, Y1, 7, 9};
        cs_bm_seq a = {0}, b = {0}, c = {0};
        prefill(bm, &a, xy, 4, 0);
        prefill(bm, &b, yx, 4, 0);
        prefill(bm, &c, xy, 4, 5);
        TEST_COND(cs_bm_lookup(bm, xy, 5, 0) == 4 && cs_bm_lookup(bm, yx, 5, 0) == 4);
        // each block exists, but not under that parent
        TEST_COND(cs_bm_lookup(bm, xx, 5, 0) == 2 && cs_bm_lookup(bm, yy, 5, 0) == 2);
        TEST_COND(cs_bm_lookup(bm, xz, 5, 0) == 2);
        TEST_COND(cs_bm_lookup(bm, xy, 5, 5) == 4 && cs_bm_lookup(bm, yx, 5, 5) == 0);
        TEST_COND(cs_bm_lookup(bm, xy, 5, 6) == 0);
        cs_bm_seq d = {0};
        TEST_COND(cs_bm_admit(bm, &d, xx, 5, 0) == 2 && d.blocks[0] == a.blocks[0]);
        CHECK(bm, &a, &b, &c, &d);
        cs_bm_release(bm, &a);
        cs_bm_release(bm, &b);
        cs_bm_release(bm, &c);
        cs_bm_release(bm, &d);
        TEST_COND(cs_bm_evict(bm, 3) == 3); // removal from a probe run that all collides
        TEST_COND(cs_bm_lookup(bm, xy, 5, 5) == 4);
        CHECK(bm);
        cs_bm_free(bm);
    }
}

// --- randomized property test -------------------------------------------------------------

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) { // uniform enough in [0, n)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16) % n;
}

// What the KV of a position would be: a function of the salt and every token up to it
// (FNV-1a style, independent of the manager's hash).
static uint64_t fp_next(uint64_t prev, int32_t tok) {
    uint64_t h = (prev ^ (uint32_t)tok) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

enum { MAX_SEQS = 12, MAX_LEN = 64, N_PREFIX = 4, PREFIX_LEN = 48 };

typedef struct tseq {
    cs_bm_seq s;
    bool live;
    int n; // known tokens: the prompt, then each decoded token
    int32_t toks[MAX_LEN];
    uint64_t fp[MAX_LEN];
    uint64_t salt;
} tseq;

typedef struct prop {
    cs_bm *bm;
    int bs, n_blocks;
    tseq seq[MAX_SEQS];
    int32_t prefix[N_PREFIX][PREFIX_LEN];
    uint64_t *kv; // (n_blocks * bs) shadow KV: the fingerprint each slot was written with
    int32_t *stamp; // (n_blocks)
    long hits, copies, preempts, admits;
    bool failed;
} prop;

static void push_token(tseq *t, int32_t tok) {
    t->toks[t->n] = tok;
    t->fp[t->n] = fp_next(t->n ? t->fp[t->n - 1] : t->salt * 0x9e3779b97f4a7c15ull + 1, tok);
    t->n++;
}

// A prompt: a piece of a shared prefix, then a tail over a tiny vocabulary (so equal blocks
// under different parents are common), salted now and then.
static void make_prompt(prop *P, tseq *t) {
    static const uint64_t salts[] = {0, 0, 0, 0, 5, 9};
    t->n = 0;
    t->salt = salts[rnd(6)];
    int p = (int)rnd(N_PREFIX), head = (int)rnd(PREFIX_LEN - 8), tail = 1 + (int)rnd(12);
    for (int i = 0; i < head; i++) push_token(t, P->prefix[p][i]);
    for (int i = 0; i < tail; i++) push_token(t, (int32_t)rnd(3));
}

// Shadow check: positions [0, upto) of t read back what t's own tokens would have written.
static void verify_kv(prop *P, const tseq *t, int upto, const char *what) {
    for (int pos = 0; pos < upto && !P->failed; pos++) {
        int32_t slot = cs_bm_slot(P->bm, &t->s, pos);
        if (P->kv[slot] != t->fp[pos]) {
            TEST_CONDF(P->kv[slot] == t->fp[pos], "%s: position %d of %d reads other KV", what, pos, upto);
            P->failed = true;
        }
    }
}

static void check_all(prop *P, long op) {
    cs_bm_seq *live[MAX_SEQS];
    int n = 0, distinct = 0;
    for (int i = 0; i < MAX_SEQS; i++)
        if (P->seq[i].live) live[n++] = &P->seq[i].s;
    char err[256] = "";
    if (!cs_bm_check(P->bm, live, n, err, sizeof err)) {
        TEST_CONDF(false, "op %ld: %s", op, err);
        P->failed = true;
        return;
    }
    // independently of cs_bm_check: used = blocks held by some table, and the totals add up
    for (int i = 0; i < n; i++)
        for (int j = 0; j < live[i]->n_blocks; j++) {
            int32_t b = live[i]->blocks[j];
            if (P->stamp[b] != (int32_t)(op + 1)) P->stamp[b] = (int32_t)(op + 1), distinct++;
        }
    cs_bm_stats st = stats(P->bm);
    if (st.used != distinct || st.free + st.used + st.cached != st.total) {
        TEST_CONDF(false, "op %ld: free %d used %d (tables hold %d) cached %d total %d", op, st.free, st.used,
                   distinct, st.cached, st.total);
        P->failed = true;
    }
}

static int pick_live(prop *P) {
    int start = (int)rnd(MAX_SEQS);
    for (int i = 0; i < MAX_SEQS; i++)
        if (P->seq[(start + i) % MAX_SEQS].live) return (start + i) % MAX_SEQS;
    return -1;
}
static int pick_free(prop *P) {
    for (int i = 0; i < MAX_SEQS; i++)
        if (!P->seq[i].live) return i;
    return -1;
}

static void release_seq(prop *P, tseq *t) {
    cs_bm_release(P->bm, &t->s);
    t->live = false;
}

// Admits t's prompt and checks the hit against lookup and against the shadow KV.
static void admit_seq(prop *P, tseq *t, const char *what) {
    int n = t->n;
    int expect = cs_bm_lookup(P->bm, t->toks, n, t->salt);
    bool fits = cs_bm_can_admit(P->bm, t->toks, n, t->salt, n);
    int hit = cs_bm_admit(P->bm, &t->s, t->toks, n, t->salt);
    t->live = true;
    P->admits++;
    P->hits += hit;
    TEST_CONDF(hit == expect && hit % P->bs == 0 && hit <= (n - 1) / P->bs * P->bs,
               "%s: hit %d, lookup %d, prompt %d", what, hit, expect, n);
    TEST_COND(fits == cs_bm_can_append(P->bm, &t->s, n - hit));
    verify_kv(P, t, hit, what);
}

// Slots for up to `want` more known tokens (a decode step first samples one); on a full
// pool, preempts a random sequence, as the scheduler would.
static void grow_seq(prop *P, tseq *t, int want) {
    if (!cs_bm_can_append(P->bm, &t->s, want)) {
        int v = pick_live(P);
        P->preempts++;
        release_seq(P, &P->seq[v]);
        return;
    }
    cs_bm_copy cp[1];
    int n_cp = cs_bm_append(P->bm, &t->s, want, cp);
    if (n_cp == 1) { // the engine copies the KV rows; so does the shadow
        P->copies++;
        TEST_COND(cp[0].n_rows > 0 && cp[0].n_rows < P->bs && cp[0].src != cp[0].dst);
        for (int r = 0; r < cp[0].n_rows; r++)
            P->kv[(size_t)cp[0].dst * P->bs + r] = P->kv[(size_t)cp[0].src * P->bs + r];
        verify_kv(P, t, t->s.n_computed, "copy-on-write");
    }
}

// Steps one sequence: commit pending slots (the forward wrote them), or grow the prefill,
// or decode one token, or finish.
static void step_seq(prop *P, tseq *t) {
    cs_bm_seq *s = &t->s;
    if (s->n_tokens > s->n_computed) {
        int k = 1 + (int)rnd((uint32_t)(s->n_tokens - s->n_computed));
        for (int pos = s->n_computed; pos < s->n_computed + k; pos++)
            P->kv[cs_bm_slot(P->bm, s, pos)] = t->fp[pos];
        cs_bm_commit(P->bm, s, t->toks, k, t->salt);
    } else if (s->n_tokens < t->n) {
        grow_seq(P, t, 1 + (int)rnd((uint32_t)(t->n - s->n_tokens)));
    } else if (t->n >= MAX_LEN) {
        release_seq(P, t);
    } else {
        push_token(t, (int32_t)rnd(3));
        grow_seq(P, t, 1);
    }
}

static void prop_op(prop *P, long op) {
    uint32_t r = rnd(100);
    int i = pick_live(P), f = pick_free(P);
    if (r < 15 && f >= 0) {
        make_prompt(P, &P->seq[f]);
        admit_seq(P, &P->seq[f], "admit");
    } else if (r < 55 && i >= 0) {
        step_seq(P, &P->seq[i]);
    } else if (r < 63 && i >= 0 && f >= 0 && P->seq[i].s.n_computed == P->seq[i].s.n_tokens) {
        P->seq[f] = P->seq[i];
        P->seq[f].s = (cs_bm_seq){0};
        cs_bm_fork(P->bm, &P->seq[i].s, &P->seq[f].s);
        P->seq[f].live = true;
        verify_kv(P, &P->seq[f], P->seq[f].s.n_computed, "fork");
    } else if (r < 70 && i >= 0) {
        release_seq(P, &P->seq[i]);
    } else if (r < 82 && f >= 0) { // lookup, admit, release at once (moves blocks in the LRU)
        make_prompt(P, &P->seq[f]);
        admit_seq(P, &P->seq[f], "lookup");
        release_seq(P, &P->seq[f]);
    } else if (r < 86) {
        int n = (int)rnd(4), had = stats(P->bm).cached;
        int got = cs_bm_evict(P->bm, n);
        TEST_CONDF(got == (n < had ? n : had), "evict %d of %d cached: %d", n, had, got);
    } else if (i >= 0) {
        verify_kv(P, &P->seq[i], P->seq[i].s.n_computed, "verify");
    }
    check_all(P, op);
}

static void test_property(long n_ops, int n_blocks, int bs, bool constant_hash, uint64_t seed) {
    prop *P = calloc(1, sizeof *P);
    P->bm = cs_bm_init(n_blocks, bs, true);
    cs_bm_debug_constant_hash(P->bm, constant_hash);
    P->bs = bs;
    P->n_blocks = n_blocks;
    P->kv = calloc((size_t)n_blocks * bs, sizeof *P->kv);
    P->stamp = calloc((size_t)n_blocks, sizeof *P->stamp);
    for (int i = 0; i < n_blocks; i++) P->stamp[i] = -1;
    rng_state = seed;
    for (int p = 0; p < N_PREFIX; p++)
        for (int i = 0; i < PREFIX_LEN; i++) P->prefix[p][i] = p < 2 && i < 8 ? 10 + i : 10 + (int32_t)rnd(50);
    long op = 0;
    for (; op < n_ops && !P->failed; op++) prop_op(P, op);
    for (int i = 0; i < MAX_SEQS; i++)
        if (P->seq[i].live) release_seq(P, &P->seq[i]);
    cs_bm_stats st = stats(P->bm);
    TEST_COND(st.used == 0 && st.free + st.cached == n_blocks); // release returns everything
    TEST_COND(cs_bm_evict(P->bm, n_blocks) == st.cached && stats(P->bm).free == n_blocks);
    check_all(P, op);
    // the run must have exercised what it claims to
    TEST_CONDF(P->hits > 0 && P->copies > 0 && P->preempts > 0 && st.evictions > 0,
               "hits %ld copies %ld preempts %ld evictions %ld", P->hits, P->copies, P->preempts, st.evictions);
    printf("property bs=%d blocks=%d%s: %ld ops, %ld admits, %ld hit tokens (%.0f%% of looked up), "
           "%ld copies, %ld preemptions, %ld evictions\n",
           bs, n_blocks, constant_hash ? " constant-hash" : "", op, P->admits, P->hits,
           st.lookups_tokens ? 100.0 * st.hit_tokens / st.lookups_tokens : 0.0, P->copies, P->preempts,
           st.evictions);
    cs_bm_free(P->bm);
    free(P->kv);
    free(P->stamp);
    free(P);
}

int main(void) {
    clock_t t0 = clock();
    test_append_slots_release();
    test_admit_partial_hits();
    test_commit_gates_cache();
    test_salt_isolation();
    test_fork_copy_on_write();
    test_eviction_order();
    test_can_append_and_admit();
    test_no_prefix_caching();
    test_duplicate_blocks(false);
    test_duplicate_blocks(true);
    test_forced_collision();
    test_property(100000, 40, 4, false, 0x9e3779b97f4a7c15ull);
    test_property(20000, 40, 3, true, 12345);
    test_property(20000, 16, 16, false, 777);
    printf("%.2f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
    return TEST_REPORT();
}
