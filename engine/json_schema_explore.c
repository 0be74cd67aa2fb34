// Strings that one or two full-match regexes accept, for patterns and formats, intersected
// with "no character a JSON string must escape" and with minLength/maxLength.
//
// 1. The regex grammars (engine/regex.c) are explored through their matchers, byte by byte:
//    a state is the matchers' states together (cs_gm_state_key), and the bytes " \ and the
//    controls are never tried. The result is a deterministic automaton D over bytes, bounded
//    by JS_MAX_PATTERN_STATES.
// 2. D times a character counter (0..maxLength, or saturating at minLength) is built over
//    plain arrays: a byte that starts a character (not 80..BF) counts one.
// 3. States that cannot reach an accepting one are dropped, so generation never walks into
//    a dead end; what is left is emitted as the rule '"' ... '"'.
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"
#include "regex.h"

#define JS_MAX_PRODUCT_CELLS (1 << 22) // D's states x counter values
#define JS_MAX_PRODUCT_STATES (1 << 18)

typedef struct xedge {
    int32_t from, to;
    uint8_t lo, hi;
} xedge;

typedef struct xframe {
    int32_t id;
    int cp[2];
    int next; // the next byte to try
} xframe;

typedef struct dfa { // an automaton over bytes: edges sorted by (from, lo), first[] indexes them
    int32_t n;
    uint8_t *accept;
    xedge *edges;
    size_t ne, ecap, acap;
    size_t *first; // (n + 1)
} dfa;

typedef struct explorer {
    js_ctx *c;
    cs_gram_matcher *m[2];
    int nm;
    js_map ids; // matcher keys -> state
    int32_t *key;
    size_t key_cap;
    dfa d;
    xframe *stack;
    int sp;
} explorer;

static bool grow_buf(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

static bool add_edge(js_ctx *c, dfa *d, int32_t from, uint8_t lo, uint8_t hi, int32_t to) {
    if (!grow_buf((void **)&d->edges, &d->ecap, d->ne + 1, sizeof(xedge)))
        return js_fail(c, CS_ERR_NOMEM, "out of memory"), false;
    d->edges[d->ne++] = (xedge){from, to, lo, hi};
    return true;
}

static int32_t add_state(js_ctx *c, dfa *d, bool accept, int32_t limit) {
    if (d->n >= limit)
        return js_fail(c, CS_ERR_INVALID, "pattern/format too complex (more than %d states with the length limits)",
                       limit);
    if (!grow_buf((void **)&d->accept, &d->acap, (size_t)d->n + 1, 1)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    d->accept[d->n] = accept;
    return d->n++;
}

// The state the matchers are in now; *fresh when it is new.
static int32_t intern(explorer *x, bool *fresh) {
    size_t w = 0;
    for (int i = 0; i < x->nm; i++) {
        for (;;) {
            size_t need = cs_gm_state_key(x->m[i], x->key + w, x->key_cap - w);
            if (need == (size_t)-1) return js_fail(x->c, CS_ERR_NOMEM, "out of memory");
            if (w + need + 1 <= x->key_cap) {
                w += need;
                break;
            }
            if (!grow_buf((void **)&x->key, &x->key_cap, w + need + 1, sizeof(int32_t)))
                return js_fail(x->c, CS_ERR_NOMEM, "out of memory");
        }
        x->key[w++] = -7; // separates the matchers
    }
    int32_t id;
    *fresh = false;
    if (js_map_get(&x->ids, x->key, w * sizeof(int32_t), &id)) return id;
    bool acc = true;
    for (int i = 0; i < x->nm; i++) acc = acc && cs_gm_can_end(x->m[i]);
    if ((id = add_state(x->c, &x->d, acc, JS_MAX_PATTERN_STATES)) < 0) return -1;
    if (!js_map_put(&x->ids, x->key, w * sizeof(int32_t), id)) return js_fail(x->c, CS_ERR_NOMEM, "out of memory");
    *fresh = true;
    return id;
}

// Bytes of a string character that needs no escape (valid UTF-8 only: the regexes see to it).
static bool byte_allowed(int b) {
    return (b >= 0x20 && b < 0x80 && b != '"' && b != '\\') || (b >= 0x80 && b <= 0xbf) || (b >= 0xc2 && b <= 0xf4);
}

// Tries byte b from frame f (the matchers stand at its state): records the edge, and pushes a
// frame when the target is new (the matchers then stand there); else rolls back.
static bool try_byte(explorer *x, xframe *f, int b) {
    int ok = 0;
    while (ok < x->nm && cs_gm_advance(x->m[ok], (uint8_t)b)) ok++;
    bool fresh = false;
    int32_t to = ok == x->nm ? intern(x, &fresh) : -2;
    if (to == -1 || (to >= 0 && !add_edge(x->c, &x->d, f->id, (uint8_t)b, (uint8_t)b, to))) return false;
    if (!fresh) {
        for (int i = 0; i < ok; i++) cs_gm_rollback(x->m[i], f->cp[i]);
        return true;
    }
    xframe *g = &x->stack[x->sp++];
    *g = (xframe){to, {0, 0}, 0};
    for (int i = 0; i < x->nm; i++) g->cp[i] = cs_gm_checkpoint(x->m[i]);
    return true;
}

// Depth first; every frame's matchers stand at its state through checkpoints.
static bool explore(explorer *x) {
    if (!(x->stack = malloc(sizeof(xframe) * (JS_MAX_PATTERN_STATES + 1))))
        return js_fail(x->c, CS_ERR_NOMEM, "out of memory"), false;
    bool fresh;
    if (intern(x, &fresh) < 0) return false;
    x->stack[0] = (xframe){0, {cs_gm_checkpoint(x->m[0]), x->nm > 1 ? cs_gm_checkpoint(x->m[1]) : 0}, 0};
    x->sp = 1;
    int64_t tries = 0;
    while (x->sp > 0) {
        xframe *f = &x->stack[x->sp - 1];
        if (f->next > 0xf4) {
            if (--x->sp > 0)
                for (int i = 0; i < x->nm; i++) cs_gm_rollback(x->m[i], x->stack[x->sp - 1].cp[i]);
            continue;
        }
        int b = f->next++;
        if (!byte_allowed(b)) continue;
        if ((++tries & 1023) == 0 && !js_tick(x->c, 16)) return false;
        if (!try_byte(x, f, b)) return false;
    }
    return true;
}

static int cmp_xedge(const void *a, const void *b) {
    const xedge *x = a, *y = b;
    if (x->from != y->from) return x->from < y->from ? -1 : 1;
    return (int)x->lo - (int)y->lo;
}

// Sorts the edges, merges runs of consecutive bytes to one target, and indexes them by source.
static bool index_edges(js_ctx *c, dfa *d) {
    if (d->ne > 1) qsort(d->edges, d->ne, sizeof *d->edges, cmp_xedge);
    size_t k = 0;
    for (size_t i = 0; i < d->ne; i++) {
        xedge *last = k ? &d->edges[k - 1] : NULL;
        if (last && last->from == d->edges[i].from && last->to == d->edges[i].to && last->hi + 1 == d->edges[i].lo)
            last->hi = d->edges[i].hi;
        else
            d->edges[k++] = d->edges[i];
    }
    d->ne = k;
    if (!(d->first = calloc((size_t)d->n + 1, sizeof *d->first)))
        return js_fail(c, CS_ERR_NOMEM, "out of memory"), false;
    for (size_t i = 0; i < d->ne; i++) d->first[d->edges[i].from + 1]++;
    for (int32_t s = 0; s < d->n; s++) d->first[s + 1] += d->first[s];
    return true;
}

// The piece of [lo, hi] that starts characters (cont false) or continues them (cont true).
static int split_pieces(uint8_t lo, uint8_t hi, uint8_t out[3][2], bool cont[3]) {
    static const uint8_t CUT[3][2] = {{0x00, 0x7f}, {0x80, 0xbf}, {0xc0, 0xff}};
    int n = 0;
    for (int i = 0; i < 3; i++) {
        uint8_t a = lo > CUT[i][0] ? lo : CUT[i][0], b = hi < CUT[i][1] ? hi : CUT[i][1];
        if (a > b) continue;
        out[n][0] = a, out[n][1] = b, cont[n++] = i == 1;
    }
    return n;
}

typedef struct counter {
    int64_t min, max, top; // counter values 0..top (max, or min when there is no max)
    int32_t *id;           // (D states x (top + 1)) product state, -1: none yet
    int32_t *ps, *pk;      // (product states) its D state and count
    size_t cap;
} counter;

// The product state (s, k), made when new.
static int32_t product_state(js_ctx *c, const dfa *d, counter *k, dfa *p, int32_t s, int64_t n) {
    int32_t *cell = &k->id[(int64_t)s * (k->top + 1) + n];
    if (*cell >= 0) return *cell;
    int32_t q = add_state(c, p, d->accept[s] && n >= k->min, JS_MAX_PRODUCT_STATES);
    if (q < 0) return -1;
    if ((size_t)q >= k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 256;
        int32_t *ps = realloc(k->ps, sizeof(int32_t) * cap);
        if (ps) k->ps = ps;
        int32_t *pk = ps ? realloc(k->pk, sizeof(int32_t) * cap) : NULL;
        if (!pk) return js_fail(c, CS_ERR_NOMEM, "out of memory");
        k->pk = pk, k->cap = cap;
    }
    k->ps[q] = s, k->pk[q] = (int32_t)n;
    return *cell = q;
}

// D x the character counter, breadth first from (start, 0).
static bool count_product(js_ctx *c, const dfa *d, int64_t min, int64_t max, dfa *p) {
    counter k = {min, max, max >= 0 ? max : min, NULL, NULL, NULL, 0};
    int64_t cells = (int64_t)d->n * (k.top + 1);
    if (cells > JS_MAX_PRODUCT_CELLS)
        return js_fail(c, CS_ERR_INVALID, "pattern/format with these length limits is too complex (%lld cells)",
                       (long long)cells),
               false;
    if (!(k.id = malloc(sizeof(int32_t) * (size_t)cells))) return js_fail(c, CS_ERR_NOMEM, "out of memory"), false;
    memset(k.id, 0xff, sizeof(int32_t) * (size_t)cells);
    bool ok = product_state(c, d, &k, p, 0, 0) == 0;
    for (int32_t q = 0; ok && q < p->n; q++) {
        int32_t s = k.ps[q];
        int64_t n = k.pk[q];
        for (size_t e = d->first[s]; ok && e < d->first[s + 1]; e++) {
            uint8_t piece[3][2];
            bool cont[3];
            int np = split_pieces(d->edges[e].lo, d->edges[e].hi, piece, cont);
            for (int i = 0; ok && i < np; i++) {
                int64_t n2 = cont[i] ? n : n + 1;
                if (max >= 0 && n2 > max) continue;
                if (max < 0 && n2 > min) n2 = min; // past minLength only "enough" matters
                int32_t t = product_state(c, d, &k, p, d->edges[e].to, n2);
                ok = t >= 0 && add_edge(c, p, q, piece[i][0], piece[i][1], t);
            }
        }
        if ((q & 255) == 0) ok = ok && js_tick(c, 1);
    }
    free(k.id), free(k.ps), free(k.pk);
    return ok && index_edges(c, p);
}

// Marks the states from which an accepting one is reachable (breadth first, backwards).
static uint8_t *live_states(js_ctx *c, const dfa *p) {
    uint8_t *live = calloc((size_t)p->n + 1, 1);
    size_t *rfirst = calloc((size_t)p->n + 2, sizeof *rfirst);
    int32_t *rsrc = malloc(sizeof(int32_t) * (p->ne + 1)), *queue = malloc(sizeof(int32_t) * ((size_t)p->n + 1));
    if (!live || !rfirst || !rsrc || !queue) {
        free(live), free(rfirst), free(rsrc), free(queue);
        js_fail(c, CS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < p->ne; i++) rfirst[p->edges[i].to + 2]++;
    for (int32_t s = 0; s < p->n; s++) rfirst[s + 2] += rfirst[s + 1];
    for (size_t i = 0; i < p->ne; i++) rsrc[rfirst[p->edges[i].to + 1]++] = p->edges[i].from;
    int32_t head = 0, tail = 0;
    for (int32_t s = 0; s < p->n; s++)
        if (p->accept[s]) live[s] = 1, queue[tail++] = s;
    while (head < tail) {
        int32_t u = queue[head++];
        for (size_t i = rfirst[u]; i < rfirst[u + 1]; i++)
            if (!live[rsrc[i]]) live[rsrc[i]] = 1, queue[tail++] = rsrc[i];
    }
    free(rfirst), free(rsrc), free(queue);
    return live;
}

// The rule '"' (live part of p) '"'; JS_EMPTY when the start is not live.
static int32_t emit(js_ctx *c, const dfa *p) {
    uint8_t *live = live_states(c, p);
    int32_t *bs = malloc(sizeof(int32_t) * ((size_t)p->n + 1));
    int32_t r = -1;
    if (live && bs) {
        r = JS_EMPTY;
        if (live[0]) {
            r = cs_gb_rule(c->b);
            int32_t end = cs_gb_state(c->b, r);
            cs_gb_accept(c->b, end);
            for (int32_t i = 0; i < p->n; i++) bs[i] = live[i] ? cs_gb_state(c->b, r) : -1;
            cs_gb_bytes(c->b, cs_gb_start(c->b, r), '"', '"', bs[0]);
            for (int32_t i = 0; i < p->n; i++)
                if (p->accept[i]) cs_gb_bytes(c->b, bs[i], '"', '"', end);
            for (size_t i = 0; i < p->ne; i++) {
                const xedge *e = &p->edges[i];
                if (live[e->from] && live[e->to]) cs_gb_bytes(c->b, bs[e->from], e->lo, e->hi, bs[e->to]);
            }
            if (!js_tick(c, 1)) r = -1;
        }
    } else {
        js_fail(c, CS_ERR_NOMEM, "out of memory");
    }
    free(live), free(bs);
    return r;
}

static void dfa_free(dfa *d) { free(d->accept), free(d->edges), free(d->first); }

int32_t js_regex_strings(js_ctx *c, const char *const *res, const char *const *what, int n, int64_t min,
                         int64_t max) {
    explorer x = {0};
    x.c = c;
    x.key_cap = 64;
    cs_grammar *g[2] = {NULL, NULL};
    dfa p = {0};
    int32_t r = -1;
    bool ok = (x.key = malloc(sizeof(int32_t) * x.key_cap)) != NULL;
    if (!ok) js_fail(c, CS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && ok; i++) {
        char err[CS_ERR_LEN];
        if (cs_regex_grammar(res[i], strlen(res[i]), &g[i], err, sizeof err) != CS_OK)
            ok = false, js_fail(c, CS_ERR_INVALID, "%s: %s", what[i], err);
        else if (!(x.m[x.nm++] = cs_gm_init(g[i])))
            ok = false, js_fail(c, CS_ERR_NOMEM, "out of memory");
    }
    if (ok && explore(&x) && index_edges(c, &x.d) && count_product(c, &x.d, min, max, &p)) r = emit(c, &p);
    for (int i = 0; i < 2; i++) cs_gm_free(x.m[i]), cs_grammar_free(g[i]);
    js_map_free(&x.ids);
    free(x.key), free(x.stack);
    dfa_free(&x.d);
    dfa_free(&p);
    return c->st == CS_OK ? r : -1;
}
