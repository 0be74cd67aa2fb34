// NFA -> DFA (engine/regex_internal.h): subset construction over byte classes (bytes that
// no NFA edge tells apart share a class); regex_min.c then prunes and minimises the result.
// A DFA state is the set of NFA states with byte edges in an epsilon closure, plus whether
// the closure holds the accepting state. The work is bounded twice: by the caller's state
// cap and by CS_RX_MAX_WORK steps (NFA states visited, edges scanned, DFA rows), so a
// pattern that explodes fails fast, before its memory grows past a few MiB.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "regex_internal.h"

typedef struct det {
    const cs_rx_nfa *nfa;
    int32_t max_states, nc;
    uint8_t class_of[256];
    uint32_t *mark, stamp; // closure: mark[s] == stamp once s is visited
    int32_t *stack, *list; // (nfa states)
    int32_t *pool;         // the DFA states' sets, concatenated
    int64_t n_pool, cap_pool;
    int64_t *set_off;      // per DFA state: its set is pool[set_off, set_off + set_len)
    int32_t *set_len;
    uint64_t *set_hash, hash; // per DFA state; the last closure's
    uint8_t *acc;
    int32_t *next;         // (states, nc)
    int32_t n, cap;
    int32_t *table;        // open addressing over DFA states by their sets; -1 empty
    uint32_t table_mask;
    uint8_t *move_class;   // the moves of one DFA state: class and target NFA state,
    int32_t *move_to;      // (cap_bucket)
    int32_t *bucket_off, *bucket; // the moves' targets grouped by class
    int64_t cap_bucket;
    int64_t work;
    cs_status st;
    char *err;
    size_t errlen;
} det;

static bool fail(det *d, cs_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(det *d, cs_status st, const char *fmt, ...) {
    if (d->st == CS_OK) {
        va_list ap;
        va_start(ap, fmt);
        cs_verrf(d->err, d->errlen, fmt, ap);
        va_end(ap);
        d->st = st;
    }
    return false;
}

static bool spend(det *d, int64_t steps) {
    d->work += steps;
    if (d->work <= CS_RX_MAX_WORK) return true;
    return fail(d, CS_ERR_INVALID, "regex: pattern too complex (determinising it took more than %d steps)", CS_RX_MAX_WORK);
}

// Byte classes: a new class starts at every edge's lo and after every edge's hi.
static void byte_classes(det *d) {
    uint8_t starts[257] = {0};
    const cs_rx_nfa *a = d->nfa;
    for (int32_t k = 0; k < a->n_edges; k++) {
        if (a->edges[k].eps) continue;
        starts[a->edges[k].lo] = 1;
        starts[a->edges[k].hi + 1] = 1;
    }
    int32_t c = -1;
    for (int b = 0; b < 256; b++) {
        if (b == 0 || starts[b]) c++;
        d->class_of[b] = (uint8_t)c;
    }
    d->nc = c + 1;
}

// A member's share of a set's hash; the hash of a set is the sum over its members, so it
// does not depend on their order.
static uint64_t member_hash(int32_t s) {
    uint64_t x = ((uint64_t)(uint32_t)s + 1) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 31);
}

// The epsilon closure of seeds[0..n): its states with byte edges, in no particular order,
// into d->list, and their hash (plus acc) into d->hash; returns their count (-1 past the work
// limit) and sets *acc. Until the next closure, mark[s] == stamp tells whether s is in it
// (intern compares sets that way).
static int32_t closure(det *d, const int32_t *seeds, int32_t n, uint8_t *acc) {
    const cs_rx_nfa *a = d->nfa;
    if (++d->stamp == 0) { // wrapped: forget every old mark
        memset(d->mark, 0, (size_t)a->n_states * sizeof *d->mark);
        d->stamp = 1;
    }
    int32_t sp = 0, k = 0;
    for (int32_t i = 0; i < n; i++)
        if (d->mark[seeds[i]] != d->stamp) d->mark[seeds[i]] = d->stamp, d->stack[sp++] = seeds[i];
    *acc = 0;
    int64_t visited = 0;
    uint64_t h = 0;
    while (sp > 0) {
        int32_t s = d->stack[--sp];
        visited++;
        if (s == a->accept) *acc = 1;
        for (int32_t e = a->off[2 * s]; e < a->off[2 * s + 1]; e++) {
            int32_t to = a->edges[e].to;
            if (d->mark[to] != d->stamp) d->mark[to] = d->stamp, d->stack[sp++] = to;
        }
        if (a->off[2 * s + 1] < a->off[2 * s + 2]) d->list[k++] = s, h += member_hash(s); // has byte edges
    }
    d->hash = h + *acc;
    return spend(d, visited + k) ? k : -1;
}

// Whether DFA state t is the closure just computed (list of n members, acc): equal sizes and
// every member of t marked in the closure.
static bool same_set(const det *d, int32_t t, int32_t n, uint8_t acc) {
    if (d->set_hash[t] != d->hash || d->acc[t] != acc || d->set_len[t] != n) return false;
    const int32_t *m = d->pool + d->set_off[t];
    for (int32_t k = 0; k < n; k++)
        if (d->mark[m[k]] != d->stamp) return false;
    return true;
}

// The DFA state for the closure just computed (d->list[0..n), acc): found, or added (-1 on
// error).
static int32_t intern(det *d, int32_t n, uint8_t acc) {
    uint32_t h = (uint32_t)(d->hash ^ (d->hash >> 32)) & d->table_mask;
    for (; d->table[h] >= 0; h = (h + 1) & d->table_mask) {
        int32_t t = d->table[h];
        if (same_set(d, t, n, acc)) return t;
    }
    if (d->n == d->max_states)
        return fail(d, CS_ERR_INVALID, "regex: pattern needs more than %d DFA states", d->max_states), -1;
    if (d->n == d->cap) {
        int32_t cap = d->cap ? d->cap * 2 : 64;
        int64_t *so = realloc(d->set_off, (size_t)cap * sizeof *so);
        if (so) d->set_off = so;
        int32_t *sl = realloc(d->set_len, (size_t)cap * sizeof *sl);
        if (sl) d->set_len = sl;
        uint8_t *ac = realloc(d->acc, (size_t)cap);
        if (ac) d->acc = ac;
        uint64_t *sh = realloc(d->set_hash, (size_t)cap * sizeof *sh);
        if (sh) d->set_hash = sh;
        int32_t *nx = realloc(d->next, (size_t)cap * (size_t)d->nc * sizeof *nx);
        if (nx) d->next = nx;
        if (!so || !sl || !ac || !sh || !nx) return fail(d, CS_ERR_NOMEM, "regex: out of memory"), -1;
        d->cap = cap;
    }
    if (d->n_pool + n > d->cap_pool) {
        int64_t cap = d->cap_pool ? d->cap_pool : 1024;
        while (cap < d->n_pool + n) cap *= 2;
        int32_t *q = realloc(d->pool, (size_t)cap * sizeof *q);
        if (!q) return fail(d, CS_ERR_NOMEM, "regex: out of memory"), -1;
        d->pool = q;
        d->cap_pool = cap;
    }
    if (!spend(d, d->nc)) return -1; // its row of transitions, here and in every later stage
    int32_t t = d->n++;
    if (n) memcpy(d->pool + d->n_pool, d->list, (size_t)n * sizeof *d->list);
    d->set_off[t] = d->n_pool;
    d->set_len[t] = n;
    d->acc[t] = acc;
    d->set_hash[t] = d->hash;
    d->n_pool += n;
    for (int32_t c = 0; c < d->nc; c++) d->next[(int64_t)t * d->nc + c] = -1;
    d->table[h] = t;
    return t;
}

// Makes room for need moves in d->move_class / move_to / bucket.
static bool reserve_moves(det *d, int64_t need) {
    if (need <= d->cap_bucket) return true;
    int64_t cap = d->cap_bucket ? d->cap_bucket * 2 : 256;
    while (cap < need) cap *= 2;
    uint8_t *mc = realloc(d->move_class, (size_t)cap);
    if (mc) d->move_class = mc;
    int32_t *mt = realloc(d->move_to, (size_t)cap * sizeof *mt);
    if (mt) d->move_to = mt;
    int32_t *bk = realloc(d->bucket, (size_t)cap * sizeof *bk);
    if (bk) d->bucket = bk;
    if (!mc || !mt || !bk) return fail(d, CS_ERR_NOMEM, "regex: out of memory");
    d->cap_bucket = cap;
    return true;
}

// Fills d->next for DFA state t: the targets of its members' byte edges, bucketed by class,
// each bucket closed under epsilon and interned. Edges scanned and moves count as work.
static bool expand(det *d, int32_t t) {
    const cs_rx_nfa *a = d->nfa;
    int32_t *cnt = d->bucket_off; // (nc + 1)
    memset(cnt, 0, ((size_t)d->nc + 1) * sizeof *cnt);
    int64_t moves = 0;
    for (int32_t i = 0; i < d->set_len[t]; i++) {
        int32_t s = d->pool[d->set_off[t] + i];
        for (int32_t e = a->off[2 * s + 1]; e < a->off[2 * s + 2]; e++) {
            const cs_rx_edge *x = &a->edges[e];
            int c0 = d->class_of[x->lo], c1 = d->class_of[x->hi];
            if (!spend(d, 1 + c1 - c0 + 1) || !reserve_moves(d, moves + c1 - c0 + 1)) return false;
            for (int c = c0; c <= c1; c++, moves++) {
                d->move_class[moves] = (uint8_t)c, d->move_to[moves] = x->to;
                cnt[c + 1]++;
            }
        }
    }
    for (int32_t c = 0; c < d->nc; c++) cnt[c + 1] += cnt[c];
    for (int64_t k = 0; k < moves; k++) d->bucket[cnt[d->move_class[k]]++] = d->move_to[k];
    // now cnt[c] is the end of bucket c (the start of c + 1)
    for (int32_t c = 0, start = 0; c < d->nc; start = cnt[c], c++) {
        if (cnt[c] == start) continue;
        uint8_t acc;
        int32_t n = closure(d, d->bucket + start, cnt[c] - start, &acc);
        if (n < 0) return false;
        if (n == 0 && !acc) continue; // dead
        int32_t u = intern(d, n, acc);
        if (u < 0) return false;
        d->next[(int64_t)t * d->nc + c] = u;
    }
    return true;
}

static void det_free(det *d) {
    free(d->mark), free(d->stack), free(d->list), free(d->pool), free(d->set_off), free(d->set_len);
    free(d->acc), free(d->set_hash), free(d->next), free(d->table), free(d->bucket_off), free(d->bucket);
    free(d->move_class), free(d->move_to);
}

// Subset construction: the DFA states in d (state 0 = the start closure).
static bool determinise(det *d) {
    const cs_rx_nfa *a = d->nfa;
    byte_classes(d);
    uint32_t slots = 1024;
    while (slots < 2u * (uint32_t)d->max_states) slots *= 2;
    d->table_mask = slots - 1;
    d->mark = calloc((size_t)a->n_states, sizeof *d->mark);
    d->stack = malloc((size_t)a->n_states * sizeof *d->stack);
    d->list = malloc((size_t)a->n_states * sizeof *d->list);
    d->table = malloc(slots * sizeof *d->table);
    d->bucket_off = malloc(((size_t)d->nc + 1) * sizeof *d->bucket_off);
    if (!d->mark || !d->stack || !d->list || !d->table || !d->bucket_off) return fail(d, CS_ERR_NOMEM, "regex: out of memory");
    memset(d->table, 0xFF, slots * sizeof *d->table);
    uint8_t acc;
    int32_t n = closure(d, &a->start, 1, &acc);
    if (n < 0 || intern(d, n, acc) < 0) return false;
    for (int32_t t = 0; t < d->n; t++)
        if (!expand(d, t)) return false;
    return true;
}

cs_status cs_rx_dfa_build(const cs_rx_nfa *nfa, int32_t max_states, cs_rx_dfa *dfa, char *err, size_t errlen) {
    memset(dfa, 0, sizeof *dfa);
    det d = {.nfa = nfa, .max_states = max_states, .err = err, .errlen = errlen};
    cs_status st = determinise(&d) ? CS_OK : d.st;
    if (st == CS_OK) st = cs_rx_minimise(d.next, d.acc, d.n, d.class_of, d.nc, dfa, err, errlen);
    det_free(&d);
    return st;
}

void cs_rx_dfa_free(cs_rx_dfa *dfa) {
    free(dfa->next);
    free(dfa->accept);
    memset(dfa, 0, sizeof *dfa);
}
