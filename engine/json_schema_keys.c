// The keys of a schema object: a trie over the listed properties' keys shared by every place
// a key may start, and the automaton of the other (additional) keys, which must differ from
// every listed name.
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"

// ---------------------------------------------------------------------------------------------
// Listed keys. A trie state is (trie node, first candidate): the candidates after a source are
// the properties from `first` up to the next required one, so that pair fixes them, and every
// source whose candidates agree below a node shares its states. Total states: at most the
// keys' total length.

typedef struct knode {
    int32_t child, sibling; // first child, next sibling (-1: none)
    int32_t leaf;           // the key ending here (its last byte is ':'), else -1
    int32_t off, cnt;       // its keys' indices: lists[off .. off + cnt), ascending
    uint8_t byte;
} knode;

typedef struct ktrie {
    knode *nodes;
    int32_t n, cap;
    int32_t *lists;
    int *next_req; // (n_keys + 1) the first required index >= i (n_keys: none)
    js_map memo;   // (node, first) -> state
    int32_t *work; // pending (node, first, state) triples
    size_t n_work, cap_work;
} ktrie;

static int32_t knode_child(ktrie *t, int32_t parent, uint8_t byte, bool create) {
    for (int32_t u = t->nodes[parent].child; u >= 0; u = t->nodes[u].sibling)
        if (t->nodes[u].byte == byte) return u;
    if (!create) return -1;
    if (t->n == t->cap) {
        int32_t cap = t->cap ? 2 * t->cap : 64;
        knode *p = realloc(t->nodes, sizeof(knode) * (size_t)cap);
        if (!p) return -1;
        t->nodes = p, t->cap = cap;
    }
    t->nodes[t->n] = (knode){-1, t->nodes[parent].child, -1, 0, 0, byte};
    t->nodes[parent].child = t->n;
    return t->n++;
}

void js_keys_trie_free(void *p) {
    ktrie *t = p;
    if (!t) return;
    free(t->nodes), free(t->lists), free(t->next_req), free(t->work);
    js_map_free(&t->memo);
    free(t);
}

void *js_keys_trie(js_ctx *c, const js_keys *k) {
    ktrie *t = calloc(1, sizeof *t);
    if (!t || !(t->nodes = malloc(sizeof(knode) * 64)) || !(t->next_req = malloc(sizeof(int) * ((size_t)k->n + 1))))
        goto nomem;
    t->cap = 64;
    t->nodes[t->n++] = (knode){-1, -1, -1, 0, 0, 0};
    size_t total = 0;
    for (int j = 0; j < k->n; j++) { // insert, counting each node's keys
        int32_t u = 0;
        t->nodes[0].cnt++;
        for (size_t i = 0; i < k->lens[j]; i++) {
            if ((u = knode_child(t, u, (uint8_t)k->keys[j][i], true)) < 0) goto nomem;
            t->nodes[u].cnt++;
        }
        t->nodes[u].leaf = j;
        total += k->lens[j] + 1;
        if (!js_tick(c, (int64_t)k->lens[j])) goto fail;
    }
    if (!(t->lists = malloc(sizeof(int32_t) * total))) goto nomem;
    for (int32_t u = 0, off = 0; u < t->n; u++) {
        t->nodes[u].off = off;
        off += t->nodes[u].cnt;
        t->nodes[u].cnt = 0;
    }
    for (int j = 0; j < k->n; j++) { // fill in key order, so each list is ascending
        int32_t u = 0;
        t->lists[t->nodes[0].off + t->nodes[0].cnt++] = j;
        for (size_t i = 0; i < k->lens[j]; i++) {
            u = knode_child(t, u, (uint8_t)k->keys[j][i], false);
            t->lists[t->nodes[u].off + t->nodes[u].cnt++] = j;
        }
    }
    t->next_req[k->n] = k->n;
    for (int j = k->n - 1; j >= 0; j--) t->next_req[j] = k->required[j] ? j : t->next_req[j + 1];
    return t;
nomem:
    js_fail(c, CS_ERR_NOMEM, "out of memory");
fail:
    js_keys_trie_free(t);
    return NULL;
}

// The first key index >= j under node u, or -1.
static int32_t first_at_least(const ktrie *t, int32_t u, int32_t j) {
    const int32_t *l = t->lists + t->nodes[u].off;
    int32_t lo = 0, hi = t->nodes[u].cnt;
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (l[mid] < j) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->nodes[u].cnt ? l[lo] : -1;
}

static int32_t trie_state(js_ctx *c, ktrie *t, int32_t rule, int32_t u, int32_t first) {
    int32_t key[2] = {u, first}, s;
    if (js_map_get(&t->memo, key, sizeof key, &s)) return s;
    s = cs_gb_state(c->b, rule);
    if (t->n_work + 3 > t->cap_work) {
        size_t cap = t->cap_work ? 2 * t->cap_work : 96;
        int32_t *w = realloc(t->work, sizeof(int32_t) * cap);
        if (!w) return js_fail(c, CS_ERR_NOMEM, "out of memory");
        t->work = w, t->cap_work = cap;
    }
    if (!js_map_put(&t->memo, key, sizeof key, s)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    t->work[t->n_work++] = u, t->work[t->n_work++] = first, t->work[t->n_work++] = s;
    return s;
}

// Edges out of trie state (u, first): one per child holding a candidate.
static void trie_expand(js_ctx *c, ktrie *t, const js_keys *k, int32_t rule, int32_t u, int32_t first, int32_t s) {
    int32_t last = t->next_req[first] < k->n ? t->next_req[first] : k->n - 1;
    for (int32_t v = t->nodes[u].child; v >= 0 && c->st == CS_OK; v = t->nodes[v].sibling) {
        int32_t f = first_at_least(t, v, first);
        if (f < 0 || f > last) continue;
        uint8_t b = t->nodes[v].byte;
        int32_t to = t->nodes[v].leaf >= 0 ? k->before[t->nodes[v].leaf] : trie_state(c, t, rule, v, f);
        cs_gb_bytes(c->b, s, b, b, to);
    }
}

bool js_keys_from(js_ctx *c, int32_t rule, const js_keys *k, void *trie, int after, int32_t src) {
    ktrie *t = trie;
    int lo = after + 1;
    if (lo >= k->n) return true;
    int32_t root = trie_state(c, t, rule, 0, lo);
    if (after < 0)
        cs_gb_eps(c->b, src, root);
    else
        cs_gb_bytes(c->b, src, ',', ',', root);
    while (t->n_work > 0 && c->st == CS_OK) {
        t->n_work -= 3;
        int32_t u = t->work[t->n_work], first = t->work[t->n_work + 1], s = t->work[t->n_work + 2];
        trie_expand(c, t, k, rule, u, first, s);
        if (!js_tick(c, 1)) break;
    }
    return t->next_req[lo] == k->n;
}

// ---------------------------------------------------------------------------------------------
// Other keys: an escape-free JSON string that is none of the listed names. A trie over the
// names' code points; a character that leaves the trie leads to "free" (any characters, then
// the closing quote); the quote is refused where a listed name would end. Names holding a quote,
// a backslash or a control character are left out: without escapes no other key can equal them.

typedef struct cnode {
    int32_t child, sibling, state;
    uint32_t cp;
    bool terminal;
} cnode;

typedef struct other_ctx {
    js_ctx *c;
    int32_t rule, free_s, key_end;
    int32_t cont[4]; // cont[k]: k continuation bytes, then free
    int32_t e0, ed, f0, f4; // after the lead bytes whose second byte range is narrower
    cnode *nodes;
    int32_t n, cap;
} other_ctx;

static uint32_t utf8_next(const unsigned char **p) { // input is valid UTF-8 (checked up front)
    const unsigned char *s = *p;
    uint32_t cp;
    int n;
    if (s[0] < 0x80) cp = s[0], n = 1;
    else if (s[0] < 0xe0) cp = s[0] & 0x1f, n = 2;
    else if (s[0] < 0xf0) cp = s[0] & 0x0f, n = 3;
    else cp = s[0] & 0x07, n = 4;
    for (int i = 1; i < n; i++) cp = cp << 6 | (s[i] & 0x3f);
    *p = s + n;
    return cp;
}

// Every non-ASCII character from -> free, through the shared continuation states.
static void nonascii_to_free(other_ctx *o, int32_t from) {
    cs_gram_builder *b = o->c->b;
    cs_gb_bytes(b, from, 0xc2, 0xdf, o->cont[1]);
    cs_gb_bytes(b, from, 0xe0, 0xe0, o->e0);
    cs_gb_bytes(b, from, 0xe1, 0xec, o->cont[2]);
    cs_gb_bytes(b, from, 0xed, 0xed, o->ed);
    cs_gb_bytes(b, from, 0xee, 0xef, o->cont[2]);
    cs_gb_bytes(b, from, 0xf0, 0xf0, o->f0);
    cs_gb_bytes(b, from, 0xf1, 0xf3, o->cont[3]);
    cs_gb_bytes(b, from, 0xf4, 0xf4, o->f4);
}

static void other_shared(other_ctx *o) {
    cs_gram_builder *b = o->c->b;
    o->free_s = cs_gb_state(b, o->rule);
    o->key_end = cs_gb_state(b, o->rule);
    o->cont[0] = o->free_s;
    for (int k = 1; k < 4; k++) {
        o->cont[k] = cs_gb_state(b, o->rule);
        cs_gb_bytes(b, o->cont[k], 0x80, 0xbf, o->cont[k - 1]);
    }
    o->e0 = cs_gb_state(b, o->rule), o->ed = cs_gb_state(b, o->rule);
    o->f0 = cs_gb_state(b, o->rule), o->f4 = cs_gb_state(b, o->rule);
    cs_gb_bytes(b, o->e0, 0xa0, 0xbf, o->cont[1]);
    cs_gb_bytes(b, o->ed, 0x80, 0x9f, o->cont[1]);
    cs_gb_bytes(b, o->f0, 0x90, 0xbf, o->cont[2]);
    cs_gb_bytes(b, o->f4, 0x80, 0x8f, o->cont[2]);
    cs_gb_bytes(b, o->free_s, 0x20, 0x21, o->free_s);
    cs_gb_bytes(b, o->free_s, 0x23, 0x5b, o->free_s);
    cs_gb_bytes(b, o->free_s, 0x5d, 0x7f, o->free_s);
    nonascii_to_free(o, o->free_s);
    cs_gb_bytes(b, o->free_s, '"', '"', o->key_end);
}

static int32_t cnode_child(other_ctx *o, int32_t parent, uint32_t cp) {
    for (int32_t u = o->nodes[parent].child; u >= 0; u = o->nodes[u].sibling)
        if (o->nodes[u].cp == cp) return u;
    if (o->n == o->cap) {
        int32_t cap = o->cap ? 2 * o->cap : 64;
        cnode *p = realloc(o->nodes, sizeof(cnode) * (size_t)cap);
        if (!p) return js_fail(o->c, CS_ERR_NOMEM, "out of memory");
        o->nodes = p, o->cap = cap;
    }
    o->nodes[o->n] = (cnode){-1, o->nodes[parent].child, cs_gb_state(o->c->b, o->rule), cp, false};
    o->nodes[parent].child = o->n;
    return o->n++;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

// Edges out of trie node u: its children, every other character to free, the quote unless a
// name ends here.
static void other_node(other_ctx *o, int32_t u) {
    js_ctx *c = o->c;
    int32_t s = o->nodes[u].state;
    int nk = 0;
    for (int32_t v = o->nodes[u].child; v >= 0; v = o->nodes[v].sibling) nk++;
    uint32_t *kids = malloc(sizeof(uint32_t) * (size_t)(nk + 1));
    if (!kids) {
        js_fail(c, CS_ERR_NOMEM, "out of memory");
        return;
    }
    nk = 0;
    bool wide = false; // a non-ASCII child: the gaps above ASCII need exact ranges
    for (int32_t v = o->nodes[u].child; v >= 0; v = o->nodes[v].sibling) {
        uint8_t enc[4];
        uint32_t cp = o->nodes[v].cp;
        int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        for (int i = n - 1; i > 0; i--, cp >>= 6) enc[i] = (uint8_t)(0x80 | (cp & 0x3f));
        enc[0] = (uint8_t)(n == 1 ? cp : (n == 2 ? 0xc0 : n == 3 ? 0xe0 : 0xf0) | cp);
        int32_t at = s;
        for (int i = 0; i < n - 1; i++) at = cs_gb_literal(c->b, at, (const char *)enc + i, 1);
        cs_gb_bytes(c->b, at, enc[n - 1], enc[n - 1], o->nodes[v].state);
        kids[nk++] = o->nodes[v].cp;
        wide |= o->nodes[v].cp >= 0x80;
    }
    qsort(kids, (size_t)nk, sizeof *kids, cmp_u32);
    static const uint32_t ALLOWED[][2] = {{0x20, 0x21}, {0x23, 0x5b}, {0x5d, 0x10ffff}};
    for (int a = 0; a < 3; a++) { // the allowed characters minus the children
        uint32_t lo = ALLOWED[a][0], hi = ALLOWED[a][1];
        for (int i = 0; i <= nk && lo <= hi; i++) {
            uint32_t stop = i < nk ? kids[i] : hi + 1; // gap [lo, stop)
            if (stop > hi + 1) stop = hi + 1;
            if (stop > lo) {
                uint32_t top = stop - 1;
                if (top >= 0x80 && !wide) { // all of the non-ASCII range: shared states
                    if (lo < 0x80) cs_gb_bytes(c->b, s, (uint8_t)lo, 0x7f, o->free_s);
                    nonascii_to_free(o, s);
                } else {
                    js_utf8_range(c, o->rule, s, lo, top, o->free_s);
                }
            }
            if (i < nk && kids[i] >= lo) lo = kids[i] + 1;
        }
    }
    free(kids);
    if (!o->nodes[u].terminal) cs_gb_bytes(c->b, s, '"', '"', o->key_end);
}

static bool needs_escape(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\') return true;
    return false;
}

int32_t js_other_key(js_ctx *c, int32_t rule, int32_t from, const char *const *names, int n) {
    other_ctx o = {c, rule, -1, -1, {0}, 0, 0, 0, 0, NULL, 0, 0};
    other_shared(&o);
    if (!(o.nodes = malloc(sizeof(cnode) * 64))) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    o.cap = 64;
    o.nodes[o.n++] = (cnode){-1, -1, cs_gb_state(c->b, rule), 0, false};
    cs_gb_bytes(c->b, from, '"', '"', o.nodes[0].state);
    for (int i = 0; i < n && c->st == CS_OK; i++) {
        const unsigned char *p = (const unsigned char *)names[i];
        if (needs_escape(names[i]))
            continue; // needs an escape: never equal to an escape-free key
        int32_t u = 0;
        while (*p && u >= 0) u = cnode_child(&o, u, utf8_next(&p));
        if (u >= 0) o.nodes[u].terminal = true;
        js_tick(c, (int64_t)strlen(names[i]));
    }
    for (int32_t u = 0; u < o.n && c->st == CS_OK; u++) {
        other_node(&o, u);
        if ((u & 63) == 0) js_tick(c, 1);
    }
    int32_t colon = cs_gb_state(c->b, rule);
    cs_gb_bytes(c->b, o.key_end, ':', ':', colon);
    free(o.nodes);
    return c->st == CS_OK ? colon : -1;
}
