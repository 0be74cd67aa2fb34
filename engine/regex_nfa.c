// AST -> Thompson NFA over bytes (engine/regex_internal.h). A class over code points becomes
// a small automaton of UTF-8 byte ranges, built once per class node as a template (shared
// suffixes: the trailing continuation-byte ranges of many sequences lead to one state) and
// copied wherever the class occurs, so bounded repetition costs one copy per iteration. The
// expansion is sized before anything is built: a pattern past CS_RX_MAX_NFA_SIZE fails
// without doing the work.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "regex_internal.h"

// --- UTF-8 byte-range sequences --------------------------------------------------------------

static int utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | (cp >> 6)); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

// Splits [lo, hi] until the encodings of its ends have the same length and, for every
// trailing byte position, either the bytes before it agree or it spans all of 80..BF; then
// the per-position byte ranges of the two ends describe exactly the range.
void cs_rx_utf8_sequences(uint32_t lo, uint32_t hi, cs_rx_seq_fn emit, void *ctx) {
    static const uint32_t last_of_len[3] = {0x7F, 0x7FF, 0xFFFF};
    if (lo > hi) return;
    for (int k = 0; k < 3; k++) {
        if (lo <= last_of_len[k] && hi > last_of_len[k]) {
            cs_rx_utf8_sequences(lo, last_of_len[k], emit, ctx);
            cs_rx_utf8_sequences(last_of_len[k] + 1, hi, emit, ctx);
            return;
        }
    }
    uint8_t a[4], b[4];
    int n = utf8_encode(lo, a);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1; // the code point bits held by the last i bytes
        if ((lo & ~m) == (hi & ~m)) continue;
        if ((lo & m) != 0) {
            cs_rx_utf8_sequences(lo, lo | m, emit, ctx);
            cs_rx_utf8_sequences((lo | m) + 1, hi, emit, ctx);
            return;
        }
        if ((hi & m) != m) {
            cs_rx_utf8_sequences(lo, (hi & ~m) - 1, emit, ctx);
            cs_rx_utf8_sequences(hi & ~m, hi, emit, ctx);
            return;
        }
    }
    utf8_encode(hi, b);
    emit(ctx, a, b, n);
}

// --- builder --------------------------------------------------------------------------------

// A class template: states numbered from 0 (entry) and 1 (exit); edges [off, off + n_edges) of
// the template pool.
typedef struct tmpl {
    int32_t off, n_edges, n_states;
} tmpl;

typedef struct builder {
    const cs_rx_ast *ast;
    cs_rx_nfa *nfa;
    tmpl *tm;          // per AST node (classes only)
    int32_t *width;    // per AST node, see widths()
    cs_rx_edge *pool;  // template edges
    int32_t n_pool, cap_pool;
    uint64_t *suffix;  // while building one template: see suffix_grow
    int32_t *suffix_state;
    uint32_t *suffix_gen, gen, suffix_mask;
    int32_t suffix_used;
    tmpl *cur;         // the template being built
    cs_status st;
    char *err;
    size_t errlen;
} builder;

static bool fail(builder *b, cs_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(builder *b, cs_status st, const char *fmt, ...) {
    if (b->st == CS_OK) {
        va_list ap;
        va_start(ap, fmt);
        cs_verrf(b->err, b->errlen, fmt, ap);
        va_end(ap);
        b->st = st;
    }
    return false;
}

static bool push_edge(builder *b, cs_rx_edge **arr, int32_t *n, int32_t *cap, cs_rx_edge e) {
    if (*n == *cap) {
        int32_t nc = *cap ? *cap * 2 : 64;
        cs_rx_edge *q = realloc(*arr, (size_t)nc * sizeof *q);
        if (!q) return fail(b, CS_ERR_NOMEM, "regex: out of memory");
        *arr = q;
        *cap = nc;
    }
    (*arr)[(*n)++] = e;
    return true;
}

static bool tmpl_edge(builder *b, int32_t from, int32_t to, uint8_t lo, uint8_t hi) {
    if (!push_edge(b, &b->pool, &b->n_pool, &b->cap_pool, (cs_rx_edge){from, to, lo, hi, 0})) return false;
    b->cur->n_edges++;
    return true;
}

// The suffix table: (lo, hi, to) -> template state, open addressing. A slot is in use when
// its gen is the current template's, so starting a template clears nothing.
static bool suffix_grow(builder *b) {
    uint32_t cap = b->suffix_mask ? (b->suffix_mask + 1) * 2 : 256;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int32_t *vals = malloc(cap * sizeof *vals);
    uint32_t *gens = calloc(cap, sizeof *gens);
    if (!keys || !vals || !gens) {
        free(keys), free(vals), free(gens);
        return fail(b, CS_ERR_NOMEM, "regex: out of memory");
    }
    for (uint32_t k = 0; b->suffix_mask && k <= b->suffix_mask; k++) {
        if (b->suffix_gen[k] != b->gen) continue;
        uint32_t h = (uint32_t)((b->suffix[k] * 0x9E3779B97F4A7C15ull) >> 40) & (cap - 1);
        while (gens[h] == b->gen) h = (h + 1) & (cap - 1);
        keys[h] = b->suffix[k], vals[h] = b->suffix_state[k], gens[h] = b->gen;
    }
    free(b->suffix), free(b->suffix_state), free(b->suffix_gen);
    b->suffix = keys, b->suffix_state = vals, b->suffix_gen = gens;
    b->suffix_mask = cap - 1;
    return true;
}

// The template state that consumes [lo, hi] and goes to `to` (created once, then shared).
static int32_t suffix_state(builder *b, uint8_t lo, uint8_t hi, int32_t to) {
    if ((uint32_t)(b->suffix_used + 1) * 2 > b->suffix_mask + 1 && !suffix_grow(b)) return -1;
    uint64_t key = ((uint64_t)lo << 40) | ((uint64_t)hi << 32) | (uint32_t)to;
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & b->suffix_mask;
    for (; b->suffix_gen[h] == b->gen; h = (h + 1) & b->suffix_mask)
        if (b->suffix[h] == key) return b->suffix_state[h];
    int32_t s = b->cur->n_states++;
    if (!tmpl_edge(b, s, to, lo, hi)) return -1;
    b->suffix[h] = key, b->suffix_state[h] = s, b->suffix_gen[h] = b->gen;
    b->suffix_used++;
    return s;
}

static void add_sequence(void *ctx, const uint8_t *lo, const uint8_t *hi, int n) {
    builder *b = ctx;
    int32_t to = 1;
    for (int k = n - 1; k >= 1 && to >= 0; k--) to = suffix_state(b, lo[k], hi[k], to);
    if (to >= 0) tmpl_edge(b, 0, to, lo[0], hi[0]);
}

static bool build_template(builder *b, int32_t node) {
    const cs_rx_node *n = &b->ast->nodes[node];
    tmpl *t = &b->tm[node];
    *t = (tmpl){.off = b->n_pool, .n_edges = 0, .n_states = 2};
    b->cur = t;
    b->gen++; // empties the suffix table
    b->suffix_used = 0;
    for (int32_t k = 0; k < n->b && b->st == CS_OK; k++)
        cs_rx_utf8_sequences(b->ast->ranges[n->a + k].lo, b->ast->ranges[n->a + k].hi, add_sequence, b);
    return b->st == CS_OK;
}

// An upper bound on the states plus edges that building node adds, plus one per node visited
// (so that empty iterations are not free); saturates at INT32_MAX.
static int64_t cost(const builder *b, int32_t node) {
    const cs_rx_node *n = &b->ast->nodes[node];
    int64_t c = 1;
    switch (n->kind) {
    case CS_RX_CLASS: return c + b->tm[node].n_states - 1 + b->tm[node].n_edges;
    case CS_RX_CAT:
    case CS_RX_ALT: // ALT: an end state, and an epsilon edge per branch
        c += n->kind == CS_RX_ALT;
        for (int32_t k = n->a; k >= 0; k = b->ast->nodes[k].next) c += cost(b, k) + (n->kind == CS_RX_ALT);
        break;
    case CS_RX_REPEAT: { // star: a state and two epsilon edges; an optional copy: at most a
        int64_t child = cost(b, n->a); // state and two epsilon edges, plus one more edge
        c += n->min * child + (n->max < 0 ? child + 3 : (int64_t)(n->max - n->min) * (child + 3) + 2);
        break;
    }
    }
    return c < INT32_MAX ? c : INT32_MAX;
}

static int32_t new_state(builder *b) {
    if (b->nfa->n_states >= CS_RX_MAX_NFA_SIZE) {
        fail(b, CS_ERR_INVALID, "regex: pattern expands to more than %d NFA states and edges", CS_RX_MAX_NFA_SIZE);
        return -1;
    }
    return b->nfa->n_states++;
}

static bool eps(builder *b, int32_t from, int32_t to) {
    return push_edge(b, &b->nfa->edges, &b->nfa->n_edges, &b->nfa->cap_edges, (cs_rx_edge){from, to, 0, 0, 1});
}

static int32_t build(builder *b, int32_t node, int32_t from);

// One copy of a class template whose entry is `from`; returns the copy's exit.
static int32_t build_class(builder *b, int32_t node, int32_t from) {
    const tmpl *t = &b->tm[node];
    int32_t base = b->nfa->n_states; // template state k >= 1 becomes base + k - 1
    for (int32_t k = 1; k < t->n_states; k++)
        if (new_state(b) < 0) return -1;
    for (int32_t k = 0; k < t->n_edges; k++) {
        cs_rx_edge e = b->pool[t->off + k];
        e.from = e.from == 0 ? from : base + e.from - 1;
        e.to = base + e.to - 1; // no template edge enters the entry
        if (!push_edge(b, &b->nfa->edges, &b->nfa->n_edges, &b->nfa->cap_edges, e)) return -1;
    }
    return base;
}

// Iterations of n->a: min required ones, then a star or max - min optional ones. Optional
// iterations of a fixed-width child (every string the same number of code points: classes,
// literals, \d{4}) form a chain whose every link may leave straight to the one end (x{0,3}:
// "", x, xx, xxx): the input fixes the iteration, so a closure holds one link, not the rest
// of the chain. Any other child gets x?x?x?: there one input can end in many iterations,
// and "this one or any later" sets keep the DFA small where exact sets would multiply.
static int32_t build_repeat(builder *b, int32_t node, int32_t from) {
    const cs_rx_node *n = &b->ast->nodes[node];
    int32_t cur = from;
    for (int32_t k = 0; k < n->min && cur >= 0; k++) cur = build(b, n->a, cur);
    if (cur < 0) return -1;
    if (n->max < 0) { // star: the loop goes back to a fresh state, never into `from`
        int32_t s = new_state(b);
        if (s < 0 || !eps(b, cur, s)) return -1;
        int32_t t = build(b, n->a, s);
        return t >= 0 && eps(b, t, s) ? s : -1;
    }
    if (n->max == n->min) return cur;
    bool fixed = b->width[n->a] > 0;
    int32_t end = fixed ? new_state(b) : cur;
    for (int32_t k = n->min; k < n->max && cur >= 0 && end >= 0; k++) {
        if (!fixed) end = new_state(b);
        if (end < 0 || !eps(b, cur, end)) return -1;
        cur = build(b, n->a, cur);
        if (!fixed && (cur < 0 || !eps(b, cur, end))) return -1;
        if (!fixed) cur = end;
    }
    return cur >= 0 && end >= 0 && (!fixed || eps(b, cur, end)) ? end : -1;
}

// width[node]: the number of code points of every string node matches, -1 when they differ.
static int32_t widths(builder *b, int32_t node) {
    const cs_rx_node *n = &b->ast->nodes[node];
    int64_t w = 0;
    switch (n->kind) {
    case CS_RX_CLASS: w = 1; break;
    case CS_RX_CAT:
    case CS_RX_ALT:
        for (int32_t k = n->a; k >= 0; k = b->ast->nodes[k].next) {
            int32_t c = widths(b, k);
            if (n->kind == CS_RX_CAT) w = w < 0 || c < 0 ? -1 : w + c;
            else w = k == n->a ? c : w == c ? w : -1;
        }
        break;
    case CS_RX_REPEAT: {
        int32_t c = widths(b, n->a);
        w = c < 0 || n->max != n->min ? -1 : (int64_t)c * n->min;
        break;
    }
    }
    return b->width[node] = (int32_t)(w > INT32_MAX / 2 ? INT32_MAX / 2 : w);
}

// Adds node's automaton starting at state `from` and returns its end. Its edges leave `from`
// or states it creates, and enter only states it creates (loops go back to fresh states), so
// no path re-enters `from`: siblings (the branches of an alternation) may share it.
static int32_t build(builder *b, int32_t node, int32_t from) {
    const cs_rx_node *n = &b->ast->nodes[node];
    switch (n->kind) {
    case CS_RX_CLASS: return build_class(b, node, from);
    case CS_RX_CAT: {
        int32_t cur = from;
        for (int32_t k = n->a; k >= 0 && cur >= 0; k = b->ast->nodes[k].next) cur = build(b, k, cur);
        return cur;
    }
    case CS_RX_ALT: {
        int32_t end = new_state(b);
        for (int32_t k = n->a; k >= 0 && end >= 0; k = b->ast->nodes[k].next) {
            int32_t t = build(b, k, from);
            if (t < 0 || !eps(b, t, end)) return -1;
        }
        return end;
    }
    case CS_RX_REPEAT: return build_repeat(b, node, from);
    }
    return from; // EMPTY and the anchors (checked by the parser to be no-ops)
}

// Sorts the edges by source, epsilon edges first (counting sort on 2 from + !eps), and fills
// nfa->off.
static bool index_edges(builder *b) {
    cs_rx_nfa *a = b->nfa;
    int32_t nk = 2 * a->n_states;
    a->off = calloc((size_t)nk + 1, sizeof *a->off);
    cs_rx_edge *sorted = malloc((size_t)(a->n_edges ? a->n_edges : 1) * sizeof *sorted);
    if (!a->off || !sorted) {
        free(sorted);
        return fail(b, CS_ERR_NOMEM, "regex: out of memory");
    }
#define KEY(e) (2 * (e).from + !(e).eps)
    for (int32_t k = 0; k < a->n_edges; k++) a->off[KEY(a->edges[k]) + 1]++;
    for (int32_t s = 0; s < nk; s++) a->off[s + 1] += a->off[s];
    for (int32_t k = 0; k < a->n_edges; k++) sorted[a->off[KEY(a->edges[k])]++] = a->edges[k];
#undef KEY
    for (int32_t s = nk; s > 0; s--) a->off[s] = a->off[s - 1];
    a->off[0] = 0;
    free(a->edges);
    a->edges = sorted;
    a->cap_edges = a->n_edges;
    return true;
}

cs_status cs_rx_nfa_build(const cs_rx_ast *ast, cs_rx_nfa *nfa, char *err, size_t errlen) {
    memset(nfa, 0, sizeof *nfa);
    builder b = {.ast = ast, .nfa = nfa, .err = err, .errlen = errlen};
    b.tm = calloc((size_t)ast->n_nodes + 1, sizeof *b.tm);
    b.width = calloc((size_t)ast->n_nodes + 1, sizeof *b.width);
    if (!b.tm || !b.width) fail(&b, CS_ERR_NOMEM, "regex: out of memory");
    else widths(&b, ast->root);
    for (int32_t k = 0; k < ast->n_nodes && b.st == CS_OK; k++)
        if (ast->nodes[k].kind == CS_RX_CLASS) build_template(&b, k);
    if (b.st == CS_OK && cost(&b, ast->root) > CS_RX_MAX_NFA_SIZE)
        fail(&b, CS_ERR_INVALID, "regex: pattern expands to more than %d NFA states and edges (repetition too large)",
             CS_RX_MAX_NFA_SIZE);
    if (b.st == CS_OK) {
        nfa->start = new_state(&b);
        nfa->accept = build(&b, ast->root, nfa->start);
        if (nfa->accept >= 0) index_edges(&b);
    }
    free(b.tm);
    free(b.width);
    free(b.pool);
    free(b.suffix);
    free(b.suffix_state);
    free(b.suffix_gen);
    if (b.st != CS_OK) cs_rx_nfa_free(nfa);
    return b.st;
}

void cs_rx_nfa_free(cs_rx_nfa *nfa) {
    free(nfa->edges);
    free(nfa->off);
    memset(nfa, 0, sizeof *nfa);
}
