// Regex pattern -> AST (engine/regex_internal.h): recursive descent over the subset of
// Python's re syntax described in engine/regex.h. Character classes become sorted, disjoint
// code point ranges with the surrogates removed (they have no UTF-8 encoding). Everything
// outside the subset is an error that names the construct and its byte offset.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "regex_internal.h"

#define MAX_CP 0x10FFFFu

typedef struct parser {
    const uint8_t *s;
    size_t len, i;
    cs_rx_ast *ast;
    int depth;
    cs_rx_range *tmp; // the class being parsed
    int32_t n_tmp, cap_tmp;
    cs_status st; // set by the first error
    char *err;
    size_t errlen;
} parser;

static int32_t fail(parser *p, cs_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int32_t fail(parser *p, cs_status st, const char *fmt, ...) {
    if (p->st == CS_OK) {
        va_list ap;
        va_start(ap, fmt);
        cs_verrf(p->err, p->errlen, fmt, ap);
        va_end(ap);
        p->st = st;
    }
    return -1;
}

static int peek(const parser *p, size_t ahead) { return p->i + ahead < p->len ? p->s[p->i + ahead] : -1; }

// Grows *arr (elements of size sz) to hold at least need; false when out of memory.
static bool grow(void **arr, int32_t *cap, int32_t need, size_t sz) {
    if (need <= *cap) return true;
    int32_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*arr, (size_t)nc * sz);
    if (!q) return false;
    *arr = q;
    *cap = nc;
    return true;
}

static int32_t new_node(parser *p, int kind, size_t pos) {
    cs_rx_ast *a = p->ast;
    if (!grow((void **)&a->nodes, &a->cap_nodes, a->n_nodes + 1, sizeof *a->nodes))
        return fail(p, CS_ERR_NOMEM, "regex: out of memory");
    cs_rx_node *n = &a->nodes[a->n_nodes];
    *n = (cs_rx_node){.kind = kind, .a = -1, .b = 0, .next = -1, .min = 0, .max = 0, .pos = (int32_t)pos};
    return a->n_nodes++;
}

// --- UTF-8 and code point ranges -------------------------------------------------------------

// Decodes one strict UTF-8 code point at s[0..n); returns its length, 0 when malformed
// (overlong, surrogate, past U+10FFFF, truncated).
static int utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of_len[len] || v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static bool add_range(parser *p, uint32_t lo, uint32_t hi) {
    if (!grow((void **)&p->tmp, &p->cap_tmp, p->n_tmp + 1, sizeof *p->tmp)) {
        fail(p, CS_ERR_NOMEM, "regex: out of memory");
        return false;
    }
    p->tmp[p->n_tmp++] = (cs_rx_range){lo, hi};
    return true;
}

static int cmp_range(const void *x, const void *y) {
    const cs_rx_range *a = x, *b = y;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

// Sorts and merges p->tmp, complements it when negate, drops the surrogates, and stores the
// result as a CLASS node.
static int32_t finish_class(parser *p, bool negate, size_t pos) {
    qsort(p->tmp, (size_t)p->n_tmp, sizeof *p->tmp, cmp_range);
    int32_t m = 0;
    for (int32_t k = 0; k < p->n_tmp; k++) {
        if (m && p->tmp[k].lo <= p->tmp[m - 1].hi + 1) {
            if (p->tmp[k].hi > p->tmp[m - 1].hi) p->tmp[m - 1].hi = p->tmp[k].hi;
        } else {
            p->tmp[m++] = p->tmp[k];
        }
    }
    cs_rx_ast *a = p->ast;
    // complement and surrogate removal each add at most one range per input range, plus one
    if (!grow((void **)&a->ranges, &a->cap_ranges, a->n_ranges + 2 * m + 2, sizeof *a->ranges))
        return fail(p, CS_ERR_NOMEM, "regex: out of memory");
    int32_t first = a->n_ranges;
    uint32_t next = 0; // negate: the first code point not yet excluded
    for (int32_t k = 0; k <= m; k++) {
        uint32_t lo, hi;
        if (negate) {
            if (k < m && p->tmp[k].lo == 0) { next = p->tmp[k].hi + 1; continue; }
            if (next > MAX_CP) break;
            lo = next;
            hi = k < m ? p->tmp[k].lo - 1 : MAX_CP;
            if (k < m) next = p->tmp[k].hi + 1;
        } else {
            if (k == m) break;
            lo = p->tmp[k].lo;
            hi = p->tmp[k].hi;
        }
        if (lo < 0xD800 && hi >= 0xD800) { // split around the surrogates
            a->ranges[a->n_ranges++] = (cs_rx_range){lo, 0xD7FF};
            lo = 0xE000;
        } else if (lo >= 0xD800 && lo <= 0xDFFF) {
            lo = 0xE000;
        }
        if (lo <= hi) a->ranges[a->n_ranges++] = (cs_rx_range){lo, hi};
    }
    int32_t id = new_node(p, CS_RX_CLASS, pos);
    if (id < 0) return -1;
    a->nodes[id].a = first;
    a->nodes[id].b = a->n_ranges - first;
    return id;
}

// --- escapes --------------------------------------------------------------------------------

// The ASCII-only shorthand classes \d \w \s (uppercase: their complements).
static bool add_shorthand(parser *p, int c) {
    static const cs_rx_range d[] = {{'0', '9'}};
    static const cs_rx_range w[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const cs_rx_range s[] = {{'\t', '\r'}, {' ', ' '}};
    const cs_rx_range *r = c == 'd' || c == 'D' ? d : c == 'w' || c == 'W' ? w : s;
    int n = c == 'd' || c == 'D' ? 1 : c == 'w' || c == 'W' ? 4 : 2;
    if (c >= 'a') {
        for (int k = 0; k < n; k++)
            if (!add_range(p, r[k].lo, r[k].hi)) return false;
        return true;
    }
    uint32_t next = 0; // the complement over all code points
    for (int k = 0; k < n; k++) {
        if (r[k].lo > next && !add_range(p, next, r[k].lo - 1)) return false;
        next = r[k].hi + 1;
    }
    return add_range(p, next, MAX_CP);
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// Parses an escape at p->s[p->i] == '\\'. A single code point goes to *cp (returns 1); a
// shorthand class is added to p->tmp (returns 2); -1 on error.
static int parse_escape(parser *p, bool in_class, uint32_t *cp) {
    size_t at = p->i++;
    int c = peek(p, 0);
    if (c < 0) return fail(p, CS_ERR_INVALID, "regex: bad escape (end of pattern) at offset %zu", at);
    p->i++;
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        return add_shorthand(p, c) ? 2 : -1;
    case 'n': *cp = '\n'; return 1;
    case 't': *cp = '\t'; return 1;
    case 'r': *cp = '\r'; return 1;
    case 'f': *cp = '\f'; return 1;
    case 'v': *cp = '\v'; return 1;
    case 'a': *cp = 7; return 1;
    case '0': // Python: \0 plus up to two more octal digits
        *cp = 0;
        for (int k = 0; k < 2 && peek(p, 0) >= '0' && peek(p, 0) <= '7'; k++) *cp = *cp * 8 + (uint32_t)(p->s[p->i++] - '0');
        return 1;
    case 'x': case 'u': case 'U': {
        int n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint32_t v = 0;
        for (int k = 0; k < n; k++) {
            int h = hexval(peek(p, 0));
            if (h < 0) return fail(p, CS_ERR_INVALID, "regex: incomplete escape \\%c at offset %zu (needs %d hex digits)", c, at, n);
            v = v * 16 + (uint32_t)h;
            p->i++;
        }
        if (v > MAX_CP) return fail(p, CS_ERR_INVALID, "regex: escape \\U%08X at offset %zu is past U+10FFFF", v, at);
        *cp = v;
        return 1;
    }
    case 'b':
        if (in_class) { *cp = 8; return 1; }
        return fail(p, CS_ERR_INVALID, "regex: word boundary \\b at offset %zu is not supported", at);
    case 'B': case 'A': case 'Z':
        return fail(p, CS_ERR_INVALID, "regex: assertion \\%c at offset %zu is not supported", c, at);
    case 'N':
        return fail(p, CS_ERR_INVALID, "regex: named character escape \\N at offset %zu is not supported", at);
    case 'p': case 'P':
        return fail(p, CS_ERR_INVALID, "regex: Unicode property escape \\%c at offset %zu is not supported", c, at);
    }
    if (c >= '1' && c <= '9')
        return fail(p, CS_ERR_INVALID, in_class ? "regex: octal escape \\%c at offset %zu is not supported"
                                                : "regex: backreference (or octal escape) \\%c at offset %zu is not supported", c, at);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return fail(p, CS_ERR_INVALID, "regex: bad escape \\%c at offset %zu", c, at);
    if (c < 0x80) { *cp = (uint32_t)c; return 1; } // an escaped metacharacter or punctuation
    int n = utf8_decode(p->s + p->i - 1, p->len - (p->i - 1), cp);
    if (!n) return fail(p, CS_ERR_INVALID, "regex: pattern is not valid UTF-8 at offset %zu", p->i - 1);
    p->i += (size_t)n - 1;
    return 1;
}

// One literal code point (UTF-8) at p->i.
static int parse_literal(parser *p, uint32_t *cp) {
    int n = utf8_decode(p->s + p->i, p->len - p->i, cp);
    if (!n) return fail(p, CS_ERR_INVALID, "regex: pattern is not valid UTF-8 at offset %zu", p->i);
    p->i += (size_t)n;
    return 1;
}

// --- classes and atoms ----------------------------------------------------------------------

// One class member: a code point (1), a shorthand added to p->tmp (2), -1 on error.
static int class_item(parser *p, uint32_t *cp) {
    return peek(p, 0) == '\\' ? parse_escape(p, true, cp) : parse_literal(p, cp);
}

static int32_t parse_class(parser *p) {
    size_t start = p->i++;
    bool negate = peek(p, 0) == '^';
    if (negate) p->i++;
    p->n_tmp = 0;
    for (bool first = true;; first = false) {
        int c = peek(p, 0);
        if (c < 0) return fail(p, CS_ERR_INVALID, "regex: unterminated character class starting at offset %zu", start);
        if (c == ']' && !first) { p->i++; break; }
        size_t at = p->i;
        uint32_t lo, hi;
        int k = class_item(p, &lo);
        if (k < 0) return -1;
        bool range = peek(p, 0) == '-' && peek(p, 1) >= 0 && peek(p, 1) != ']';
        if (!range) {
            if (k == 1 && !add_range(p, lo, lo)) return -1;
            continue;
        }
        p->i++;
        int k2 = class_item(p, &hi);
        if (k2 < 0) return -1;
        if (k == 2 || k2 == 2 || hi < lo)
            return fail(p, CS_ERR_INVALID, "regex: bad character range at offset %zu", at);
        if (!add_range(p, lo, hi)) return -1;
    }
    return finish_class(p, negate, start);
}

static int32_t single_cp(parser *p, uint32_t cp, size_t pos) {
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return fail(p, CS_ERR_INVALID, "regex: surrogate U+%04X at offset %zu has no UTF-8 encoding", cp, pos);
    p->n_tmp = 0;
    if (!add_range(p, cp, cp)) return -1;
    return finish_class(p, false, pos);
}

static int32_t parse_alt(parser *p);

// Reads a group name up to '>' (for (?P<name> and (?<name>).
static bool group_name(parser *p) {
    size_t at = p->i;
    while (peek(p, 0) >= 0 && peek(p, 0) != '>') {
        int c = peek(p, 0);
        bool ok = c == '_' || c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (p->i > at && c >= '0' && c <= '9');
        if (!ok) return fail(p, CS_ERR_INVALID, "regex: bad group name at offset %zu", at), false;
        p->i++;
    }
    if (peek(p, 0) < 0) return fail(p, CS_ERR_INVALID, "regex: missing >, unterminated group name at offset %zu", at), false;
    if (p->i == at) return fail(p, CS_ERR_INVALID, "regex: empty group name at offset %zu", at), false;
    p->i++;
    return true;
}

// After "(?": accepts ':' and named groups, rejects every other extension by name.
static bool group_extension(parser *p, size_t at) {
    int c = peek(p, 0), c1 = peek(p, 1);
    if (c == ':') { p->i++; return true; }
    if (c == 'P' && c1 == '<') { p->i += 2; return group_name(p); }
    if (c == '<' && c1 != '=' && c1 != '!') { p->i++; return group_name(p); }
    const char *what = c == '=' ? "lookahead (?=" : c == '!' ? "negative lookahead (?!"
                     : c == '<' && c1 == '=' ? "lookbehind (?<=" : c == '<' ? "negative lookbehind (?<!"
                     : c == 'P' && c1 == '=' ? "named backreference (?P=" : c == '#' ? "comment group (?#"
                     : c == '>' ? "atomic group (?>" : c == '(' ? "conditional group (?(" : NULL;
    if (what) return fail(p, CS_ERR_INVALID, "regex: %s at offset %zu is not supported", what, at), false;
    if (c < 0) return fail(p, CS_ERR_INVALID, "regex: unexpected end of pattern after (? at offset %zu", at), false;
    if (c && strchr("aiLmsux-", c))
        return fail(p, CS_ERR_INVALID, "regex: inline flags (?%c at offset %zu are not supported", c, at), false;
    return fail(p, CS_ERR_INVALID, "regex: unknown group extension at offset %zu", at), false;
}

static int32_t parse_group(parser *p) {
    size_t at = p->i++;
    if (peek(p, 0) == '?') {
        p->i++;
        if (!group_extension(p, at)) return -1;
    }
    if (++p->depth > CS_RX_MAX_DEPTH)
        return fail(p, CS_ERR_INVALID, "regex: groups nested deeper than %d at offset %zu", CS_RX_MAX_DEPTH, at);
    int32_t inner = parse_alt(p);
    if (inner < 0) return -1;
    if (peek(p, 0) != ')') return fail(p, CS_ERR_INVALID, "regex: missing ), unterminated group at offset %zu", at);
    p->i++;
    p->depth--;
    return inner;
}

static int32_t parse_atom(parser *p) {
    size_t at = p->i;
    uint32_t cp;
    switch (peek(p, 0)) {
    case '(': return parse_group(p);
    case '[': return parse_class(p);
    case '^': p->i++; return new_node(p, CS_RX_BOL, at);
    case '$': p->i++; return new_node(p, CS_RX_EOL, at);
    case '.':
        p->i++;
        p->n_tmp = 0;
        if (!add_range(p, '\n', '\n')) return -1;
        return finish_class(p, true, at);
    case '\\': {
        p->n_tmp = 0;
        int k = parse_escape(p, false, &cp);
        if (k < 0) return -1;
        return k == 2 ? finish_class(p, false, at) : single_cp(p, cp, at);
    }
    }
    if (parse_literal(p, &cp) < 0) return -1;
    return single_cp(p, cp, at);
}

// --- quantifiers and sequences --------------------------------------------------------------

// At '{': reads {n}, {n,}, {,m}, {n,m}, {,} as Python does; false (nothing consumed) when the
// brace is a literal. Values saturate so an absurd bound is still reported as too large.
static bool parse_braces(parser *p, uint32_t *min, uint32_t *max, bool *unbounded) {
    size_t k = p->i + 1;
    uint32_t lo = 0, hi = 0;
    bool has_lo = false, has_hi = false, comma = false;
    for (; k < p->len && p->s[k] >= '0' && p->s[k] <= '9'; k++, has_lo = true)
        lo = lo > 100000000u ? 1000000000u : lo * 10 + (p->s[k] - '0');
    if (k < p->len && p->s[k] == ',') {
        comma = true;
        for (k++; k < p->len && p->s[k] >= '0' && p->s[k] <= '9'; k++, has_hi = true)
            hi = hi > 100000000u ? 1000000000u : hi * 10 + (p->s[k] - '0');
    }
    if (k >= p->len || p->s[k] != '}' || (!has_lo && !comma)) return false;
    p->i = k + 1;
    *min = has_lo ? lo : 0;
    *unbounded = comma && !has_hi;
    *max = comma ? hi : lo;
    return true;
}

// Reads a quantifier at p->i if there is one: 1 with the bounds, 0 when none, -1 on error.
static int parse_quant(parser *p, int32_t *min, int32_t *max) {
    size_t at = p->i;
    int c = peek(p, 0);
    uint32_t lo = 0, hi = 0;
    bool unbounded = false;
    if (c == '*') { p->i++; unbounded = true; }
    else if (c == '+') { p->i++; lo = 1; unbounded = true; }
    else if (c == '?') { p->i++; hi = 1; }
    else if (c != '{' || !parse_braces(p, &lo, &hi, &unbounded)) return 0;
    if (lo > CS_RX_MAX_REPEAT || (!unbounded && hi > CS_RX_MAX_REPEAT))
        return fail(p, CS_ERR_INVALID, "regex: repetition bound %u at offset %zu exceeds the limit of %d",
                    lo > CS_RX_MAX_REPEAT ? lo : hi, at, CS_RX_MAX_REPEAT);
    if (!unbounded && hi < lo) return fail(p, CS_ERR_INVALID, "regex: min repeat greater than max repeat at offset %zu", at);
    if (peek(p, 0) == '?') p->i++; // lazy: the same language under full match
    else if (peek(p, 0) == '+')
        return fail(p, CS_ERR_INVALID, "regex: possessive quantifier at offset %zu is not supported", p->i);
    *min = (int32_t)lo;
    *max = unbounded ? -1 : (int32_t)hi;
    return 1;
}

static int32_t parse_seq(parser *p) {
    int32_t first = -1, last = -1, count = 0;
    size_t start = p->i;
    for (;;) {
        int c = peek(p, 0);
        if (c < 0 || c == '|' || c == ')') break;
        size_t at = p->i;
        int32_t min, max, q = parse_quant(p, &min, &max); // a quantifier here has no operand
        if (q < 0) return -1;
        if (q > 0) return fail(p, CS_ERR_INVALID, "regex: nothing to repeat at offset %zu", at);
        int32_t atom = parse_atom(p);
        if (atom < 0) return -1;
        size_t qat = p->i;
        if ((q = parse_quant(p, &min, &max)) < 0) return -1;
        if (q > 0) {
            int k = p->ast->nodes[atom].kind;
            if (k == CS_RX_BOL || k == CS_RX_EOL) return fail(p, CS_ERR_INVALID, "regex: nothing to repeat at offset %zu", qat);
            size_t at2 = p->i;
            int32_t m2, x2;
            if (parse_quant(p, &m2, &x2) != 0) return fail(p, CS_ERR_INVALID, "regex: multiple repeat at offset %zu", at2);
            int32_t r = new_node(p, CS_RX_REPEAT, qat);
            if (r < 0) return -1;
            p->ast->nodes[r].a = atom;
            p->ast->nodes[r].min = min;
            p->ast->nodes[r].max = max;
            atom = r;
        }
        if (last >= 0) p->ast->nodes[last].next = atom;
        else first = atom;
        last = atom;
        count++;
    }
    if (count == 1) return first;
    int32_t n = new_node(p, count ? CS_RX_CAT : CS_RX_EMPTY, start);
    if (n >= 0) p->ast->nodes[n].a = first;
    return n;
}

static int32_t parse_alt(parser *p) {
    size_t start = p->i;
    int32_t first = parse_seq(p);
    if (first < 0 || peek(p, 0) != '|') return first;
    int32_t alt = new_node(p, CS_RX_ALT, start), last = first;
    if (alt < 0) return -1;
    p->ast->nodes[alt].a = first;
    while (peek(p, 0) == '|') {
        p->i++;
        int32_t n = parse_seq(p);
        if (n < 0) return -1;
        p->ast->nodes[last].next = n;
        last = n;
    }
    return alt;
}

// --- anchors --------------------------------------------------------------------------------

static bool zero_width(int kind) { return kind == CS_RX_BOL || kind == CS_RX_EOL || kind == CS_RX_EMPTY; }

// '^' and '$' are no-ops only where nothing can precede (follow) them; elsewhere they would
// need real assertions, so they are rejected. at_start/at_end: whether that holds for node.
static bool check_anchors(parser *p, int32_t node, bool at_start, bool at_end) {
    const cs_rx_node *n = &p->ast->nodes[node];
    switch (n->kind) {
    case CS_RX_BOL:
        if (!at_start) return fail(p, CS_ERR_INVALID, "regex: '^' at offset %d is supported only at the start of the pattern", n->pos), false;
        return true;
    case CS_RX_EOL:
        if (!at_end) return fail(p, CS_ERR_INVALID, "regex: '$' at offset %d is supported only at the end of the pattern", n->pos), false;
        return true;
    case CS_RX_ALT:
        for (int32_t c = n->a; c >= 0; c = p->ast->nodes[c].next)
            if (!check_anchors(p, c, at_start, at_end)) return false;
        return true;
    case CS_RX_REPEAT: // a second iteration is preceded by the first
        return check_anchors(p, n->a, at_start && n->max >= 0 && n->max <= 1, at_end && n->max >= 0 && n->max <= 1);
    case CS_RX_CAT: {
        bool before_empty = at_start;
        for (int32_t c = n->a; c >= 0; c = p->ast->nodes[c].next) {
            bool after_empty = at_end;
            for (int32_t d = p->ast->nodes[c].next; d >= 0 && after_empty; d = p->ast->nodes[d].next)
                after_empty = zero_width(p->ast->nodes[d].kind);
            if (!check_anchors(p, c, before_empty, after_empty)) return false;
            before_empty = before_empty && zero_width(p->ast->nodes[c].kind);
        }
        return true;
    }
    }
    return true;
}

// Whether the pattern has an anchor at all (most do not: the check is skipped).
static bool has_anchor(const cs_rx_ast *a) {
    for (int32_t k = 0; k < a->n_nodes; k++)
        if (a->nodes[k].kind == CS_RX_BOL || a->nodes[k].kind == CS_RX_EOL) return true;
    return false;
}

cs_status cs_rx_parse(const char *pattern, size_t len, cs_rx_ast *ast, char *err, size_t errlen) {
    memset(ast, 0, sizeof *ast);
    parser p = {.s = (const uint8_t *)pattern, .len = len, .ast = ast, .err = err, .errlen = errlen};
    ast->root = parse_alt(&p);
    if (ast->root >= 0 && p.i < len) fail(&p, CS_ERR_INVALID, "regex: unbalanced parenthesis at offset %zu", p.i);
    if (p.st == CS_OK && has_anchor(ast)) check_anchors(&p, ast->root, true, true);
    free(p.tmp);
    if (p.st != CS_OK) cs_rx_ast_free(ast);
    return p.st;
}

void cs_rx_ast_free(cs_rx_ast *ast) {
    free(ast->nodes);
    free(ast->ranges);
    memset(ast, 0, sizeof *ast);
    ast->root = -1;
}
