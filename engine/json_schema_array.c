// Arrays for the schema compiler: '[' items ']' with prefixItems by position, items after
// them, and minItems/maxItems counted by a chain of positions (the last loops when there is
// no maximum).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"

typedef struct arr_spec {
    int32_t *prefix; // rules of the prefixItems
    int np;
    int32_t rest;     // rule of the items after them, JS_EMPTY: none
    int64_t min, max; // max < 0: none
} arr_spec;

static int64_t count_kw(const cJSON *node, const char *kw, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, kw);
    return v ? (int64_t)v->valuedouble : dflt;
}

// The item rules (compiled inside the array: recursion through them is fine). A prefix
// item that matches nothing caps the length before it.
static bool item_rules(js_ctx *c, const cJSON *node, arr_spec *a) {
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(node, "prefixItems");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(node, "items");
    int np = cJSON_GetArraySize(prefix);
    if (np > JS_MAX_REPEAT)
        return js_fail(c, CS_ERR_INVALID, "prefixItems of more than %d schemas", JS_MAX_REPEAT), false;
    if (!(a->prefix = malloc(sizeof(int32_t) * (size_t)(np + 1))))
        return js_fail(c, CS_ERR_NOMEM, "out of memory"), false;
    uint32_t saved = js_enter_consuming(c);
    a->np = 0;
    for (const cJSON *p = prefix ? prefix->child : NULL; p && c->st == CS_OK; p = p->next) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", a->np);
        size_t old = js_path_push(c, "prefixItems", idx);
        int32_t r = js_compile(c, p, JS_T_ALL);
        js_path_pop(c, old);
        if (r == JS_EMPTY) { // no array reaches past this position
            if (a->max < 0 || a->max > a->np) a->max = a->np;
            break;
        }
        a->prefix[a->np++] = r;
    }
    a->rest = JS_EMPTY; // strict: no items after prefixItems unless `items` says so
    if (items) {
        size_t old = js_path_push(c, "items", NULL);
        a->rest = js_compile(c, items, JS_T_ALL);
        js_path_pop(c, old);
    } else if (!prefix) {
        a->rest = js_any_rule(c, JS_T_ALL);
    }
    js_leave_consuming(c, saved);
    if (a->rest == JS_EMPTY && (a->max < 0 || a->max > a->np)) a->max = a->np;
    return c->st == CS_OK;
}

static void emit_array(js_ctx *c, const arr_spec *a, int32_t rule, int32_t from, int32_t to) {
    // positions 0 .. last; with no maximum the last one (past the prefix and minItems) loops
    int64_t last = a->max >= 0 ? a->max - 1 : (a->np > a->min ? a->np : a->min);
    int32_t open = cs_gb_state(c->b, rule);
    cs_gb_bytes(c->b, from, '[', '[', open);
    if (a->min == 0) cs_gb_bytes(c->b, open, ']', ']', to);
    int32_t before = open;
    for (int64_t i = 0; i <= last && c->st == CS_OK; i++) {
        int32_t item = i < a->np ? a->prefix[i] : a->rest, after = cs_gb_state(c->b, rule);
        cs_gb_call(c->b, before, item, after);
        if (i + 1 >= a->min) cs_gb_bytes(c->b, after, ']', ']', to);
        if (i < last) {
            before = cs_gb_state(c->b, rule);
            cs_gb_bytes(c->b, after, ',', ',', before);
        } else if (a->max < 0) { // the same item again (not back to `open`, which may close)
            int32_t again = cs_gb_state(c->b, rule);
            cs_gb_bytes(c->b, after, ',', ',', again);
            cs_gb_call(c->b, again, item, after);
        }
        if ((i & 255) == 0) js_tick(c, 1);
    }
}

bool js_array_body(js_ctx *c, const cJSON *node, int32_t rule, int32_t from, int32_t to) {
    arr_spec a = {NULL, 0, JS_EMPTY, count_kw(node, "minItems", 0), count_kw(node, "maxItems", -1)};
    if (a.min > JS_MAX_REPEAT || a.max > JS_MAX_REPEAT) {
        bool mx = a.max > JS_MAX_REPEAT;
        js_fail(c, CS_ERR_INVALID, "%s %lld is past the limit %d", mx ? "maxItems" : "minItems",
                (long long)(mx ? a.max : a.min), JS_MAX_REPEAT);
        return false;
    }
    bool possible = item_rules(c, node, &a) && (a.max < 0 || a.min <= a.max);
    if (possible) emit_array(c, &a, rule, from, to);
    free(a.prefix);
    return possible && js_tick(c, 1);
}
