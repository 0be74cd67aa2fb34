// The grammar builder (epsilon removal, CSR layout) and the matcher: a set of stacks, each a
// chain of persistent nodes (state, parent) so that alternatives share their common bottom and
// a pop is just "continue at the parent node".
#include "grammar.h"

#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"

typedef struct gedge {
    int32_t to;
    int32_t call; // -1: a byte edge [lo, hi]; else the rule called, continuing at to
    uint8_t lo, hi;
} gedge;

struct cs_grammar {
    int32_t n_states, n_rules, root;
    int32_t *edge_start;  // (n_states + 1) CSR offsets into edges
    gedge *edges;
    uint8_t *accept;      // (n_states)
    uint8_t *has_bytes;   // (n_states) some byte edge leaves the state
    int32_t *rule_start;  // (n_rules)
};

// --- builder ------------------------------------------------------------------------------

typedef struct bedge {
    int32_t from, to, call; // call: -1 byte edge, -2 epsilon, else a rule
    uint8_t lo, hi;
} bedge;

struct cs_gram_builder {
    int32_t *state_rule;
    uint8_t *accept;
    int32_t n_states, cap_states;
    int32_t *rule_start;
    int32_t n_rules, cap_rules;
    bedge *edges;
    int32_t n_edges, cap_edges;
    bool failed;
};

static bool grow(void **p, int32_t *cap, int32_t need, size_t elem, int32_t limit) {
    if (need <= *cap) return true;
    if (need > limit) return false;
    int64_t n = *cap ? (int64_t)*cap * 2 : 64;
    while (n < need) n *= 2;
    if (n > limit) n = limit;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q) return false;
    *p = q;
    *cap = (int32_t)n;
    return true;
}

cs_gram_builder *cs_gb_init(void) { return calloc(1, sizeof(cs_gram_builder)); }

void cs_gb_free(cs_gram_builder *b) {
    if (!b) return;
    free(b->state_rule);
    free(b->accept);
    free(b->rule_start);
    free(b->edges);
    free(b);
}

bool cs_gb_failed(const cs_gram_builder *b) { return b->failed; }
int32_t cs_gb_n_states(const cs_gram_builder *b) { return b->n_states; }

static int32_t new_state(cs_gram_builder *b, int32_t rule) {
    if (b->failed) return -1;
    int32_t cap = b->cap_states;
    if (!grow((void **)&b->state_rule, &cap, b->n_states + 1, sizeof(int32_t), CS_GRAM_MAX_STATES) ||
        !grow((void **)&b->accept, &b->cap_states, b->n_states + 1, 1, CS_GRAM_MAX_STATES)) {
        b->failed = true;
        return -1;
    }
    b->state_rule[b->n_states] = rule;
    b->accept[b->n_states] = 0;
    return b->n_states++;
}

int32_t cs_gb_rule(cs_gram_builder *b) {
    if (b->failed) return -1;
    if (!grow((void **)&b->rule_start, &b->cap_rules, b->n_rules + 1, sizeof(int32_t), CS_GRAM_MAX_STATES)) {
        b->failed = true;
        return -1;
    }
    int32_t r = b->n_rules;
    int32_t s = new_state(b, r);
    if (s < 0) return -1;
    b->rule_start[r] = s;
    return b->n_rules++;
}

int32_t cs_gb_start(const cs_gram_builder *b, int32_t rule) {
    return rule >= 0 && rule < b->n_rules ? b->rule_start[rule] : -1;
}

int32_t cs_gb_state(cs_gram_builder *b, int32_t rule) {
    if (rule < 0 || rule >= b->n_rules) return -1;
    return new_state(b, rule);
}

static void add_edge(cs_gram_builder *b, int32_t from, int32_t to, int32_t call, uint8_t lo, uint8_t hi) {
    if (b->failed || from < 0 || to < 0 || from >= b->n_states || to >= b->n_states) return;
    if (!grow((void **)&b->edges, &b->cap_edges, b->n_edges + 1, sizeof(bedge), CS_GRAM_MAX_EDGES)) {
        b->failed = true;
        return;
    }
    b->edges[b->n_edges++] = (bedge){from, to, call, lo, hi};
}

void cs_gb_bytes(cs_gram_builder *b, int32_t from, uint8_t lo, uint8_t hi, int32_t to) {
    if (lo <= hi) add_edge(b, from, to, -1, lo, hi);
}
void cs_gb_call(cs_gram_builder *b, int32_t from, int32_t rule, int32_t to) {
    if (rule >= 0) add_edge(b, from, to, rule, 0, 0);
}
void cs_gb_eps(cs_gram_builder *b, int32_t from, int32_t to) { add_edge(b, from, to, -2, 0, 0); }

void cs_gb_accept(cs_gram_builder *b, int32_t state) {
    if (!b->failed && state >= 0 && state < b->n_states) b->accept[state] = 1;
}

int32_t cs_gb_literal(cs_gram_builder *b, int32_t from, const char *s, size_t n) {
    if (from < 0 || from >= b->n_states) return -1;
    int32_t rule = b->state_rule[from], cur = from;
    for (size_t i = 0; i < n && cur >= 0; i++) {
        int32_t next = new_state(b, rule);
        cs_gb_bytes(b, cur, (uint8_t)s[i], (uint8_t)s[i], next);
        cur = next;
    }
    return cur;
}

static int cmp_from(const void *a, const void *b) {
    const bedge *x = a, *y = b;
    if (x->from != y->from) return x->from < y->from ? -1 : 1;
    if (x->call != y->call) return x->call < y->call ? -1 : 1;
    if (x->to != y->to) return x->to < y->to ? -1 : 1;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    return (int)x->hi - (int)y->hi;
}

// Edges of every state after epsilon removal: those of all states its epsilon closure reaches.
static cs_status remove_epsilons(cs_gram_builder *b, bedge **out, int32_t *n_out, char *err, size_t errlen) {
    int32_t n = b->n_states, ne = b->n_edges;
    if (ne > 1) qsort(b->edges, (size_t)ne, sizeof *b->edges, cmp_from);
    int32_t *first = calloc((size_t)n + 1, sizeof *first), *stamp = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *stack = malloc(sizeof(int32_t) * (size_t)n);
    bedge *res = NULL;
    int32_t n_res = 0, cap_res = 0;
    cs_status st = CS_OK;
    if (!first || !stamp || !stack) goto nomem;
    for (int32_t i = 0; i < ne; i++) first[b->edges[i].from + 1]++;
    for (int32_t s = 0; s < n; s++) first[s + 1] += first[s], stamp[s] = -1;
    for (int32_t s = 0; s < n; s++) {
        int sp = 0;
        stack[sp++] = s;
        stamp[s] = s;
        while (sp > 0) {
            int32_t u = stack[--sp];
            if (b->accept[u]) b->accept[s] = 1;
            for (int32_t i = first[u]; i < first[u + 1]; i++) {
                const bedge *e = &b->edges[i];
                if (e->call == -2) {
                    if (stamp[e->to] != s) stamp[e->to] = s, stack[sp++] = e->to;
                    continue;
                }
                if (!grow((void **)&res, &cap_res, n_res + 1, sizeof *res, CS_GRAM_MAX_EDGES)) {
                    st = cs_errf(err, errlen, CS_ERR_INVALID, "grammar too large (more than %d edges)", CS_GRAM_MAX_EDGES);
                    goto done;
                }
                res[n_res] = *e;
                res[n_res++].from = s;
            }
        }
    }
    goto done;
nomem:
    st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory building a grammar");
done:
    free(first);
    free(stamp);
    free(stack);
    if (st != CS_OK) {
        free(res);
        return st;
    }
    *out = res;
    *n_out = n_res;
    return CS_OK;
}

static bool start_fits(const cs_grammar *g);

cs_status cs_gb_finish(cs_gram_builder *b, int32_t root_rule, cs_grammar **out, char *err, size_t errlen) {
    *out = NULL;
    cs_status st = CS_OK;
    bedge *edges = NULL;
    int32_t ne = 0;
    cs_grammar *g = NULL;
    if (b->failed) {
        st = cs_errf(err, errlen, CS_ERR_INVALID, "grammar too large (limit %d states, %d edges) or out of memory",
                     CS_GRAM_MAX_STATES, CS_GRAM_MAX_EDGES);
        goto done;
    }
    if (root_rule < 0 || root_rule >= b->n_rules) {
        st = cs_errf(err, errlen, CS_ERR_INVALID, "grammar has no root rule");
        goto done;
    }
    for (int32_t i = 0; i < b->n_edges; i++)
        if (b->edges[i].call >= b->n_rules) {
            st = cs_errf(err, errlen, CS_ERR_INVALID, "grammar calls rule %d, which does not exist", b->edges[i].call);
            goto done;
        }
    if ((st = remove_epsilons(b, &edges, &ne, err, errlen)) != CS_OK) goto done;
    if (ne > 1) qsort(edges, (size_t)ne, sizeof *edges, cmp_from);
    g = calloc(1, sizeof *g);
    if (!g) goto nomem;
    g->n_states = b->n_states;
    g->n_rules = b->n_rules;
    g->root = root_rule;
    g->edge_start = calloc((size_t)g->n_states + 1, sizeof *g->edge_start);
    g->edges = malloc(sizeof(gedge) * (size_t)(ne ? ne : 1));
    g->accept = malloc((size_t)g->n_states);
    g->has_bytes = calloc((size_t)g->n_states, 1);
    g->rule_start = malloc(sizeof(int32_t) * (size_t)g->n_rules);
    if (!g->edge_start || !g->edges || !g->accept || !g->has_bytes || !g->rule_start) goto nomem;
    int32_t k = 0;
    for (int32_t i = 0; i < ne; i++) { // sorted: identical edges are adjacent
        if (i > 0 && !cmp_from(&edges[i], &edges[i - 1])) continue;
        g->edges[k++] = (gedge){edges[i].to, edges[i].call, edges[i].lo, edges[i].hi};
        if (edges[i].call == -1) g->has_bytes[edges[i].from] = 1;
        g->edge_start[edges[i].from + 1]++;
    }
    for (int32_t s = 0; s < g->n_states; s++) g->edge_start[s + 1] += g->edge_start[s];
    memcpy(g->accept, b->accept, (size_t)g->n_states);
    memcpy(g->rule_start, b->rule_start, sizeof(int32_t) * (size_t)g->n_rules);
    if (!start_fits(g)) {
        st = cs_errf(err, errlen, CS_ERR_INVALID,
                     "grammar too ambiguous: its start has more than %d alternatives (or left recursion)",
                     CS_GRAM_MAX_STACKS);
        goto done;
    }
    *out = g;
    g = NULL;
    goto done;
nomem:
    st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory building a grammar");
done:
    cs_grammar_free(g);
    free(edges);
    cs_gb_free(b);
    return st;
}

void cs_grammar_free(cs_grammar *g) {
    if (!g) return;
    free(g->edge_start);
    free(g->edges);
    free(g->accept);
    free(g->has_bytes);
    free(g->rule_start);
    free(g);
}

int32_t cs_grammar_n_states(const cs_grammar *g) { return g->n_states; }

// --- matcher ------------------------------------------------------------------------------

typedef struct gnode {
    int32_t state, parent, depth;
} gnode;

#define HASH_SLOTS (4 * CS_GRAM_MAX_STACKS) // power of two, > 2x the set cap

struct cs_gram_matcher {
    const cs_grammar *g;
    gnode *nodes;
    int32_t n_nodes, cap_nodes;
    // history: set k = tops[set_start[k] .. set_start[k + 1]), k = 0 .. n_hist (the current);
    // node_end[k] = nodes in use once set k was built (what a rollback to k keeps)
    int32_t *table;   // hash-consing of nodes: (state, parent) -> id, open addressing
    uint32_t table_size, table_used;
    int32_t *key_buf; // scratch of cs_gm_state_key
    size_t key_cap;
    int32_t *tops;
    int32_t n_tops, cap_tops;
    int32_t *set_start, *node_end;
    int32_t n_hist, cap_hist;
    int32_t build_start; // first top of the set being built
    bool start_failed;   // the start's closure passed a cap: the matcher accepts nothing
    // dedup of (state, parent) within the set being built: stamped open addressing
    int32_t slot_node[HASH_SLOTS];
    uint32_t slot_stamp[HASH_SLOTS];
    uint32_t stamp;
};

static uint32_t node_hash(int32_t state, int32_t parent) {
    return ((uint32_t)state * 0x9E3779B1u) ^ ((uint32_t)parent * 0x85EBCA77u + 0x68E31DA4u);
}

// Rebuilds the node table from the live nodes, at twice their count or more.
static bool rehash(cs_gram_matcher *m) {
    uint32_t size = 1024;
    while (size < 4u * (uint32_t)m->n_nodes + 16) size *= 2;
    int32_t *t = malloc(sizeof(int32_t) * size);
    if (!t) return false;
    memset(t, 0xff, sizeof(int32_t) * size);
    for (int32_t id = 0; id < m->n_nodes; id++) {
        uint32_t h = node_hash(m->nodes[id].state, m->nodes[id].parent) & (size - 1);
        while (t[h] >= 0) h = (h + 1) & (size - 1);
        t[h] = id;
    }
    free(m->table);
    m->table = t;
    m->table_size = size;
    m->table_used = (uint32_t)m->n_nodes;
    return true;
}

// The node (state, parent): nodes are hash-consed, so equal stacks are the same node and a
// set's stacks are distinct by content (the state key then determines the behaviour). Table
// entries of rolled-back nodes go stale: they are skipped (id past the end or a different
// node there) and swept by the next rehash.
static int32_t get_node(cs_gram_matcher *m, int32_t state, int32_t parent, int32_t depth) {
    if (2 * (m->table_used + 1) > m->table_size && !rehash(m)) return -1;
    uint32_t mask = m->table_size - 1, h = node_hash(state, parent) & mask;
    for (;; h = (h + 1) & mask) {
        int32_t id = m->table[h];
        if (id < 0) break;
        if (id < m->n_nodes && m->nodes[id].state == state && m->nodes[id].parent == parent) return id;
    }
    if (!grow((void **)&m->nodes, &m->cap_nodes, m->n_nodes + 1, sizeof(gnode), INT32_MAX / 2)) return -1;
    m->nodes[m->n_nodes] = (gnode){state, parent, depth};
    m->table[h] = m->n_nodes;
    m->table_used++;
    return m->n_nodes++;
}

// Room for set k + 1's start and set k's node_end.
static bool ensure_hist(cs_gram_matcher *m, int32_t k) {
    if (k + 2 <= m->cap_hist) return true;
    int32_t cap = m->cap_hist;
    if (!grow((void **)&m->set_start, &cap, k + 2, sizeof(int32_t), INT32_MAX / 2)) return false;
    int32_t *ne = realloc(m->node_end, sizeof(int32_t) * (size_t)cap);
    if (!ne) return false;
    m->node_end = ne;
    m->cap_hist = cap;
    return true;
}

static void new_stamp(cs_gram_matcher *m) {
    if (++m->stamp == 0) { // wrapped: clear so that no slot looks current
        memset(m->slot_stamp, 0, sizeof m->slot_stamp);
        m->stamp = 1;
    }
}

// Adds node (state, parent) to the set being built unless there. -1 when the set is full or
// memory ran out.
static int32_t set_insert(cs_gram_matcher *m, int32_t state, int32_t parent, int32_t depth) {
    int32_t id = get_node(m, state, parent, depth);
    if (id < 0) return -1;
    uint32_t h = (uint32_t)id * 0x9E3779B1u;
    for (uint32_t i = 0; i < HASH_SLOTS; i++) {
        uint32_t s = (h + i) & (HASH_SLOTS - 1);
        if (m->slot_stamp[s] != m->stamp) {
            if (m->n_tops - m->build_start >= CS_GRAM_MAX_STACKS) return -1;
            if (!grow((void **)&m->tops, &m->cap_tops, m->n_tops + 1, sizeof(int32_t), INT32_MAX / 2)) return -1;
            m->slot_stamp[s] = m->stamp;
            m->slot_node[s] = id;
            m->tops[m->n_tops++] = id;
            return id;
        }
        if (m->slot_node[s] == id) return id;
    }
    return -1;
}

// Closes the set being built under calls (push the callee's start above a return node) and
// rule ends (pop: continue at the parent node). False when a cap was hit.
static bool closure(cs_gram_matcher *m) {
    const cs_grammar *g = m->g;
    for (int32_t i = m->build_start; i < m->n_tops; i++) {
        gnode n = m->nodes[m->tops[i]];
        if (g->accept[n.state] && n.parent >= 0) {
            const gnode *p = &m->nodes[n.parent];
            if (set_insert(m, p->state, p->parent, p->depth) < 0) return false;
        }
        for (int32_t e = g->edge_start[n.state]; e < g->edge_start[n.state + 1]; e++) {
            const gedge *ed = &g->edges[e];
            if (ed->call < 0) continue;
            int32_t callee = g->rule_start[ed->call];
            // a tail call (nothing follows the callee but the end of this rule) returns
            // straight to our parent: repetition written as right recursion stays flat
            if (g->accept[ed->to] && g->edge_start[ed->to] == g->edge_start[ed->to + 1]) {
                if (set_insert(m, callee, n.parent, n.depth) < 0) return false;
                continue;
            }
            if (n.depth >= CS_GRAM_MAX_DEPTH) continue; // deeper nesting is not generated
            int32_t ret = get_node(m, ed->to, n.parent, n.depth);
            if (ret < 0 || set_insert(m, callee, ret, n.depth + 1) < 0) return false;
        }
    }
    return true;
}

// Back to the start. False when the start's alternatives pass the caps (cs_gb_finish refuses
// such grammars) or memory ran out: the matcher then accepts nothing.
static bool reset(cs_gram_matcher *m) {
    m->n_nodes = m->n_tops = m->n_hist = 0;
    m->set_start[0] = m->build_start = 0;
    new_stamp(m);
    bool ok = (m->table || rehash(m)) && set_insert(m, m->g->rule_start[m->g->root], -1, 1) >= 0 && closure(m);
    if (!ok) m->n_tops = m->n_nodes = 0;
    m->set_start[1] = m->n_tops;
    m->node_end[0] = m->n_nodes;
    return ok;
}

void cs_gm_reset(cs_gram_matcher *m) { reset(m); }

cs_gram_matcher *cs_gm_init(const cs_grammar *g) {
    cs_gram_matcher *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->g = g;
    if (!ensure_hist(m, 64) || !rehash(m)) {
        cs_gm_free(m);
        return NULL;
    }
    m->start_failed = !reset(m);
    return m;
}

void cs_gm_free(cs_gram_matcher *m) {
    if (!m) return;
    free(m->nodes);
    free(m->table);
    free(m->key_buf);
    free(m->tops);
    free(m->set_start);
    free(m->node_end);
    free(m);
}

// The current set: tops[CUR_BEGIN .. CUR_END).
#define CUR_BEGIN(m) ((m)->set_start[(m)->n_hist])
#define CUR_END(m) ((m)->set_start[(m)->n_hist + 1])

bool cs_gm_advance(cs_gram_matcher *m, uint8_t byte) {
    const cs_grammar *g = m->g;
    int32_t b0 = CUR_BEGIN(m), b1 = CUR_END(m);
    m->build_start = b1;
    CS_ASSERT(m->n_tops == b1);
    new_stamp(m);
    bool ok = ensure_hist(m, m->n_hist + 1);
    for (int32_t i = b0; i < b1 && ok; i++) {
        gnode n = m->nodes[m->tops[i]];
        for (int32_t e = g->edge_start[n.state]; e < g->edge_start[n.state + 1] && ok; e++) {
            const gedge *ed = &g->edges[e];
            if (ed->call >= 0 || byte < ed->lo || byte > ed->hi) continue;
            ok = set_insert(m, ed->to, n.parent, n.depth) >= 0;
        }
    }
    if (ok && m->n_tops > m->build_start) ok = closure(m);
    if (!ok || m->n_tops == m->build_start) {
        m->n_tops = m->build_start;
        m->n_nodes = m->node_end[m->n_hist];
        return false;
    }
    m->n_hist++;
    m->set_start[m->n_hist + 1] = m->n_tops;
    m->node_end[m->n_hist] = m->n_nodes;
    return true;
}

bool cs_gm_advance_bytes(cs_gram_matcher *m, const uint8_t *bytes, size_t n) {
    int cp = cs_gm_checkpoint(m);
    for (size_t i = 0; i < n; i++)
        if (!cs_gm_advance(m, bytes[i])) {
            cs_gm_rollback(m, cp);
            return false;
        }
    return true;
}

bool cs_gm_can_end(const cs_gram_matcher *m) {
    for (int32_t i = CUR_BEGIN(m); i < CUR_END(m); i++) {
        const gnode *n = &m->nodes[m->tops[i]];
        if (n->parent < 0 && m->g->accept[n->state]) return true;
    }
    return false;
}

bool cs_gm_can_continue(const cs_gram_matcher *m) {
    for (int32_t i = CUR_BEGIN(m); i < CUR_END(m); i++)
        if (m->g->has_bytes[m->nodes[m->tops[i]].state]) return true;
    return false;
}

// Stacks that decide the future: a top that can consume a byte, or the root able to end.
// Tops with only calls, or rule ends below the root, live on through what closure added.
static bool live(const cs_gram_matcher *m, const gnode *n) {
    return m->g->has_bytes[n->state] || (n->parent < 0 && m->g->accept[n->state]);
}

int cs_gm_checkpoint(const cs_gram_matcher *m) { return m->n_hist; }

void cs_gm_rollback(cs_gram_matcher *m, int checkpoint) {
    CS_ASSERT(checkpoint >= 0 && checkpoint <= m->n_hist);
    if (checkpoint == m->n_hist) return;
    m->n_nodes = m->node_end[checkpoint];
    m->n_hist = checkpoint;
    m->n_tops = m->set_start[checkpoint + 1];
}

// Copies the nodes the current set needs into a fresh arena and makes it set 0.
void cs_gm_commit(cs_gram_matcher *m) {
    if (m->n_hist == 0 && m->n_nodes < 4 * CS_GRAM_MAX_STACKS * CS_GRAM_MAX_DEPTH) return;
    int32_t b0 = CUR_BEGIN(m), b1 = CUR_END(m), n_old = m->n_nodes;
    int32_t *map = malloc(sizeof(int32_t) * (size_t)(n_old ? n_old : 1));
    gnode *fresh = malloc(sizeof(gnode) * (size_t)(n_old ? n_old : 1));
    if (!map || !fresh) { // keep the history: correct, just larger
        free(map);
        free(fresh);
        return;
    }
    for (int32_t i = 0; i < n_old; i++) map[i] = -1;
    int32_t k = 0;
    // parents have lower ids than their children, so one ascending pass over marked nodes works
    for (int32_t i = b0; i < b1; i++)
        for (int32_t id = m->tops[i]; id >= 0 && map[id] == -1; id = m->nodes[id].parent) map[id] = -2;
    for (int32_t id = 0; id < n_old; id++) {
        if (map[id] != -2) continue;
        gnode n = m->nodes[id];
        fresh[k] = (gnode){n.state, n.parent >= 0 ? map[n.parent] : -1, n.depth};
        map[id] = k++;
    }
    int32_t n_set = b1 - b0;
    for (int32_t i = 0; i < n_set; i++) m->tops[i] = map[m->tops[b0 + i]];
    memcpy(m->nodes, fresh, sizeof(gnode) * (size_t)k);
    m->n_nodes = k;
    m->n_tops = n_set;
    m->n_hist = 0;
    m->set_start[0] = 0;
    m->set_start[1] = n_set;
    m->node_end[0] = k;
    free(map);
    free(fresh);
    if (!rehash(m)) { // keep the old table valid: drop every entry, ids are all renumbered
        memset(m->table, 0xff, sizeof(int32_t) * m->table_size);
        for (int32_t id = 0; id < m->n_nodes; id++) {
            uint32_t h = node_hash(m->nodes[id].state, m->nodes[id].parent) & (m->table_size - 1);
            while (m->table[h] >= 0) h = (h + 1) & (m->table_size - 1);
            m->table[h] = id;
        }
        m->table_used = (uint32_t)m->n_nodes;
    }
}

static int cmp_words(const int32_t *a, const int32_t *b) {
    for (;; a++, b++) {
        if (*a != *b) return *a < *b ? -1 : 1;
        if (*a == -1) return 0;
    }
}

// Sorting stacks needs their serialised form; qsort has no context pointer, so sort indices
// into a scratch buffer held in a static (the matcher is used by one thread at a time, and
// this is only reached through cs_gm_state_key).
static _Thread_local const int32_t *sort_words;
static int cmp_stack(const void *a, const void *b) {
    return cmp_words(sort_words + *(const int32_t *)a, sort_words + *(const int32_t *)b);
}

size_t cs_gm_state_key(const cs_gram_matcher *m, int32_t *buf, size_t cap) {
    int32_t b0 = CUR_BEGIN(m), b1 = CUR_END(m), n = b1 - b0;
    // each stack: its states top to bottom, then -1
    size_t words = 0;
    for (int32_t i = b0; i < b1; i++) words += (size_t)m->nodes[m->tops[i]].depth + 1;
    // the scratch is the matcher's own (not part of its state): reused across calls
    cs_gram_matcher *mm = (cs_gram_matcher *)m;
    size_t need = words + (size_t)n + 1;
    if (need > mm->key_cap) {
        int32_t *grown = realloc(mm->key_buf, sizeof(int32_t) * need);
        if (!grown) return (size_t)-1;
        mm->key_buf = grown;
        mm->key_cap = need;
    }
    int32_t *tmp = mm->key_buf;
    int32_t *offs = tmp + words, w = 0;
    n = 0;
    for (int32_t i = b0; i < b1; i++) {
        if (!live(m, &m->nodes[m->tops[i]])) continue;
        offs[n++] = w;
        for (int32_t id = m->tops[i]; id >= 0; id = m->nodes[id].parent) tmp[w++] = m->nodes[id].state;
        tmp[w++] = -1;
    }
    sort_words = tmp;
    qsort(offs, (size_t)n, sizeof *offs, cmp_stack);
    size_t out = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i > 0 && !cmp_words(tmp + offs[i], tmp + offs[i - 1])) continue; // equal stacks once
        for (const int32_t *p = tmp + offs[i];; p++) {
            if (out < cap) buf[out] = *p;
            out++;
            if (*p == -1) break;
        }
    }
    return out;
}

uint64_t cs_gm_state_hash(const cs_gram_matcher *m) {
    int32_t small[256];
    size_t n = cs_gm_state_key(m, small, 256);
    int32_t *key = small;
    if (n > 256) {
        key = malloc(sizeof(int32_t) * n);
        if (!key) return 0;
        cs_gm_state_key(m, key, n);
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)key[i]) * 0x100000001b3ull;
    if (key != small) free(key);
    return h;
}

// A grammar whose very start passes the stack caps could never match anything.
static bool start_fits(const cs_grammar *g) {
    cs_gram_matcher *m = cs_gm_init(g);
    bool ok = m && !m->start_failed;
    cs_gm_free(m);
    return ok;
}
