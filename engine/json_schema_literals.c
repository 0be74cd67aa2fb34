// Tries of literal strings: enum and const values (as their compact JSON text), choice
// lists, and object keys. Sorting the strings first makes the trie a walk over sorted ranges:
// each range shares a prefix, and its strings split by their next byte.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "json_schema_internal.h"

typedef struct trie_src {
    const char *const *strs;
    const size_t *lens;
} trie_src;

static _Thread_local const trie_src *sort_src; // qsort has no context argument

static int cmp_str(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    size_t li = sort_src->lens[i], lj = sort_src->lens[j];
    int r = memcmp(sort_src->strs[i], sort_src->strs[j], li < lj ? li : lj);
    if (r) return r;
    return li < lj ? -1 : li > lj;
}

typedef struct trie_item {
    int32_t state;
    int lo, hi;   // sorted indices [lo, hi) share their first `depth` bytes
    size_t depth; // bytes consumed to reach state
} trie_item;

// A string that ends at the trie state s.
static void trie_end(js_ctx *c, int32_t s, int32_t end) {
    if (end >= 0)
        cs_gb_eps(c->b, s, end);
    else
        cs_gb_accept(c->b, s);
}

// One range: strings ending here, then one edge (plus a shared run of bytes) per next byte.
// Every pushed range has consumed at least one more byte of all its strings, so the total
// work is bounded by the total length of the strings.
static int trie_step(js_ctx *c, const trie_src *src, const int *idx, trie_item it, const int32_t *ends,
                     int32_t to, trie_item *stack, int sp) {
    int i = it.lo;
    for (; i < it.hi && src->lens[idx[i]] == it.depth; i++) trie_end(c, it.state, ends ? ends[idx[i]] : to);
    while (i < it.hi) {
        unsigned char ch = (unsigned char)src->strs[idx[i]][it.depth];
        int j = i + 1;
        while (j < it.hi && (unsigned char)src->strs[idx[j]][it.depth] == ch) j++;
        const char *first = src->strs[idx[i]], *last = src->strs[idx[j - 1]];
        size_t lf = src->lens[idx[i]], ll = src->lens[idx[j - 1]];
        size_t lcp = 1, max = (lf < ll ? lf : ll) - it.depth; // sorted: the group's common prefix is theirs
        while (lcp < max && first[it.depth + lcp] == last[it.depth + lcp]) lcp++;
        if (!js_tick(c, (int64_t)lcp)) return sp;
        int32_t s = cs_gb_literal(c->b, it.state, first + it.depth, lcp);
        stack[sp++] = (trie_item){s, i, j, it.depth + lcp};
        i = j;
    }
    return sp;
}

void js_trie(js_ctx *c, int32_t from, const char *const *strs, const size_t *lens, int n,
             const int32_t *ends, int32_t to) {
    CS_ASSERT(n >= 1);
    int *idx = malloc(sizeof(int) * (size_t)n);
    trie_item *stack = malloc(sizeof(trie_item) * (size_t)n);
    if (!idx || !stack) {
        free(idx), free(stack);
        js_fail(c, CS_ERR_NOMEM, "out of memory");
        return;
    }
    const trie_src src = {strs, lens};
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_src = &src;
    qsort(idx, (size_t)n, sizeof *idx, cmp_str);
    int sp = 0;
    stack[sp++] = (trie_item){from, 0, n, 0};
    while (sp > 0 && c->st == CS_OK) {
        trie_item it = stack[--sp];
        sp = trie_step(c, &src, idx, it, ends, to, stack, sp);
    }
    free(idx);
    free(stack);
}

// ---------------------------------------------------------------------------------------------
// enum and const

static unsigned value_type(const cJSON *v) {
    if (cJSON_IsNull(v)) return JS_T_NULL;
    if (cJSON_IsBool(v)) return JS_T_BOOL;
    if (cJSON_IsObject(v)) return JS_T_OBJECT;
    if (cJSON_IsArray(v)) return JS_T_ARRAY;
    if (cJSON_IsString(v)) return JS_T_STRING;
    double d = v->valuedouble;
    return d == floor(d) ? JS_T_INTEGER | JS_T_NUMBER : JS_T_NUMBER;
}

// cJSON keeps numbers as doubles: an integer past 2^53 or an overflow to infinity would come
// out as a different number than the schema wrote.
static bool exact_numbers(const cJSON *v) {
    if (cJSON_IsNumber(v)) return isfinite(v->valuedouble) && (v->valuedouble != floor(v->valuedouble) ||
                                                               fabs(v->valuedouble) <= 9007199254740992.0);
    for (const cJSON *e = v->child; e; e = e->next)
        if (!exact_numbers(e)) return false;
    return true;
}

static bool enum_siblings_ok(js_ctx *c, const cJSON *node) {
    for (const cJSON *kv = node->child; kv; kv = kv->next) {
        const char *k = kv->string;
        if (!strcmp(k, "enum") || !strcmp(k, "const") || !strcmp(k, "type") || !strcmp(k, "$defs") ||
            !strcmp(k, "definitions") || js_is_annotation(k))
            continue;
        js_fail(c, CS_ERR_UNSUPPORTED, "enum/const beside \"%.64s\" is not supported", k);
        return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(node, "enum") && cJSON_GetObjectItemCaseSensitive(node, "const")) {
        js_fail(c, CS_ERR_UNSUPPORTED, "enum and const together are not supported");
        return false;
    }
    return true;
}

// Compact JSON text of a value, growing *buf. Numbers as cJSON prints them when that reads
// back exactly (so documents printed by cJSON compare equal), else with 17 digits: cJSON's
// own printer keeps 15 digits whenever they are "close enough", which changes the number.
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void print_number(sbuf *b, double d) {
    char num[32];
    if (d == (double)(int)d && fabs(d) < 2147483647.0) {
        snprintf(num, sizeof num, "%d", (int)d);
    } else {
        snprintf(num, sizeof num, "%1.15g", d);
        if (strtod(num, NULL) != d) snprintf(num, sizeof num, "%1.17g", d);
    }
    sb_put(b, num, strlen(num));
}

static void print_value(sbuf *b, const cJSON *v) {
    if (cJSON_IsNull(v)) sb_put(b, "null", 4);
    else if (cJSON_IsTrue(v)) sb_put(b, "true", 4);
    else if (cJSON_IsFalse(v)) sb_put(b, "false", 5);
    else if (cJSON_IsNumber(v)) print_number(b, v->valuedouble);
    else if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        char *e = malloc(6 * n + 3);
        if (!e) {
            b->failed = true;
            return;
        }
        sb_put(b, e, js_escape(v->valuestring, n, e));
        free(e);
    } else {
        bool obj = cJSON_IsObject(v);
        sb_put(b, obj ? "{" : "[", 1);
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e != v->child) sb_put(b, ",", 1);
            if (obj) {
                cJSON key = {0};
                key.type = cJSON_String;
                key.valuestring = e->string;
                print_value(b, &key);
                sb_put(b, ":", 1);
            }
            print_value(b, e);
        }
        sb_put(b, obj ? "}" : "]", 1);
    }
}

// The compact texts of the values whose type is in mask; their count, or -1.
static int enum_texts(js_ctx *c, const cJSON *node, unsigned mask, char **texts, size_t *lens) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(node, "enum");
    const cJSON *one = list ? list->child : cJSON_GetObjectItemCaseSensitive(node, "const");
    int n = 0;
    for (const cJSON *v = one; v; v = list ? v->next : NULL) {
        if (!js_tick(c, 1)) return -1;
        if (!exact_numbers(v)) return js_fail(c, CS_ERR_UNSUPPORTED, "enum/const number past 2^53 or infinite");
        if (!(value_type(v) & mask)) continue;
        sbuf b = {0};
        print_value(&b, v);
        if (b.failed || !b.p) {
            free(b.p);
            return js_fail(c, CS_ERR_NOMEM, "out of memory");
        }
        texts[n] = b.p;
        lens[n] = b.n;
        n++;
    }
    return n;
}

// mask: the types allowed here, `type` already applied.
int32_t js_enum_rule(js_ctx *c, const cJSON *node, unsigned mask) {
    if (!enum_siblings_ok(c, node)) return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(node, "enum");
    int total = list ? cJSON_GetArraySize(list) : 1;
    if (total > JS_MAX_ENUM) return js_fail(c, CS_ERR_INVALID, "enum of %d values (limit %d)", total, JS_MAX_ENUM);
    char **texts = calloc((size_t)total, sizeof *texts);
    size_t *lens = calloc((size_t)total, sizeof *lens);
    int32_t r = -1;
    if (!texts || !lens) {
        js_fail(c, CS_ERR_NOMEM, "out of memory");
    } else {
        int n = enum_texts(c, node, mask, texts, lens);
        if (n == 0) r = JS_EMPTY;
        if (n > 0) {
            r = cs_gb_rule(c->b);
            js_trie(c, cs_gb_start(c->b, r), (const char *const *)texts, lens, n, NULL, -1);
            if (c->st != CS_OK) r = -1;
        }
    }
    for (int i = 0; texts && i < total; i++) free(texts[i]);
    free(texts);
    free(lens);
    return r;
}
