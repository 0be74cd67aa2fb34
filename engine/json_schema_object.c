// Objects for the schema compiler: the properties one object schema (or an allOf of several)
// allows, their values compiled, and the object's automaton: '{', listed properties in order
// (required ones always, optional ones skippable; keys from the shared trie of
// json_schema_keys.c), then additional properties when allowed, '}'.
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"

typedef struct js_prop {
    const char *name;
    const cJSON *schemas[JS_MAX_MERGE]; // the value must match all of them
    int ns;
    bool required, dropped;
    int32_t value; // rule
} js_prop;

typedef struct js_objspec {
    js_prop *p;
    int n, cap;
    js_map index;            // name -> p index
    const cJSON *additional; // schema of other keys (true or an object), NULL: none
    bool closed;             // a part said additionalProperties: false
    bool listed;             // a part has properties, required or additionalProperties
} js_objspec;

static int prop_index(js_ctx *c, js_objspec *o, const char *name) {
    int32_t i;
    size_t len = strlen(name);
    if (js_map_get(&o->index, name, len + 1, &i)) return i;
    if (o->n == JS_MAX_PROPERTIES) return js_fail(c, CS_ERR_INVALID, "more than %d properties", JS_MAX_PROPERTIES);
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        js_prop *p = realloc(o->p, sizeof(js_prop) * (size_t)cap);
        if (!p) return js_fail(c, CS_ERR_NOMEM, "out of memory");
        o->p = p, o->cap = cap;
    }
    memset(&o->p[o->n], 0, sizeof *o->p);
    o->p[o->n].name = name;
    o->p[o->n].value = -1;
    if (!js_map_put(&o->index, name, len + 1, o->n)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    return o->n++;
}

// Adds schema s to what property i must match (identical schemas once).
static bool prop_add_schema(js_ctx *c, js_prop *p, const cJSON *s) {
    for (int k = 0; k < p->ns; k++)
        if (p->schemas[k] == s || cJSON_Compare(p->schemas[k], s, true)) return true;
    if (p->ns == JS_MAX_MERGE)
        return js_fail(c, CS_ERR_UNSUPPORTED, "property \"%.64s\" merges more than %d schemas", p->name, JS_MAX_MERGE),
               false;
    p->schemas[p->ns++] = s;
    return true;
}

// allOf parts must be object schemas: keywords for objects, and a type that allows objects.
static bool check_object_part(js_ctx *c, const cJSON *part) {
    if (!js_check_keywords(c, part)) return false;
    static const char *const OK[] = {"type", "properties", "required", "additionalProperties", "allOf", "$defs",
                                     "definitions"};
    for (const cJSON *kv = part->child; kv; kv = kv->next) {
        bool ok = js_is_annotation(kv->string);
        for (size_t i = 0; i < sizeof OK / sizeof *OK && !ok; i++) ok = !strcmp(kv->string, OK[i]);
        if (!ok)
            return js_fail(c, CS_ERR_UNSUPPORTED, "allOf merges object schemas only; \"%.64s\" is not supported there",
                           kv->string),
                   false;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type");
    bool object = !t;
    for (const cJSON *e = cJSON_IsArray(t) ? t->child : t; e && !object; e = cJSON_IsArray(t) ? e->next : NULL)
        object = cJSON_IsString(e) && !strcmp(e->valuestring, "object");
    if (!object) return js_fail(c, CS_ERR_UNSUPPORTED, "allOf merges object schemas only"), false;
    return true;
}

static bool spec_add_part(js_ctx *c, js_objspec *o, const cJSON *part) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(part, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(part, "required");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(part, "additionalProperties");
    o->listed |= props || req || ap;
    for (const cJSON *kv = props ? props->child : NULL; kv; kv = kv->next) {
        int i = prop_index(c, o, kv->string);
        if (i < 0 || !prop_add_schema(c, &o->p[i], kv)) return false;
    }
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
        int i = prop_index(c, o, r->valuestring);
        if (i < 0) return false;
        o->p[i].required = true;
    }
    if (cJSON_IsFalse(ap)) o->closed = true;
    if (ap && !cJSON_IsFalse(ap) && !cJSON_IsTrue(ap)) {
        if (o->additional && !cJSON_IsTrue(o->additional) && !cJSON_Compare(o->additional, ap, true))
            return js_fail(c, CS_ERR_UNSUPPORTED, "allOf with two different additionalProperties schemas"), false;
        o->additional = ap;
    }
    if (cJSON_IsTrue(ap) && !o->additional) o->additional = ap;
    return true;
}

// What each part says about the others' properties: a part closed by additionalProperties
// false drops them; a part with an additionalProperties schema adds it to their values.
static bool spec_cross(js_ctx *c, js_objspec *o, const cJSON *const *parts, int n) {
    for (int k = 0; k < n; k++) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(parts[k], "properties");
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(parts[k], "additionalProperties");
        if (!ap || cJSON_IsTrue(ap)) continue;
        for (int i = 0; i < o->n; i++) {
            if (props && cJSON_GetObjectItemCaseSensitive(props, o->p[i].name)) continue;
            if (!cJSON_IsFalse(ap)) {
                if (!prop_add_schema(c, &o->p[i], ap)) return false;
            } else if (o->p[i].required) {
                js_fail(c, CS_ERR_INVALID, "required property \"%.64s\" is excluded by additionalProperties false",
                        o->p[i].name);
                return false;
            } else {
                o->p[i].dropped = true;
            }
        }
    }
    if (o->closed) o->additional = NULL;
    return true;
}

// Builds the merged description; required names without a schema take the additional one.
static bool spec_build(js_ctx *c, js_objspec *o, const cJSON *const *parts, int n, bool merge) {
    for (int k = 0; k < n; k++)
        if ((merge && !check_object_part(c, parts[k])) || !spec_add_part(c, o, parts[k])) return false;
    if (n > 1 && !spec_cross(c, o, parts, n)) return false;
    if (n == 1 && o->closed) o->additional = NULL;
    for (int i = 0; i < o->n; i++) {
        if (o->p[i].ns > 0 || o->p[i].dropped) continue;
        if (!o->additional) {
            js_fail(c, CS_ERR_INVALID,
                    "required property \"%.64s\" is not in properties (and additionalProperties is false or absent)",
                    o->p[i].name);
            return false;
        }
        o->p[i].schemas[o->p[i].ns++] = o->additional;
    }
    return true;
}

// The rule a value must match: one schema, or several (allOf of objects).
static int32_t value_rule(js_ctx *c, const js_prop *p) {
    if (p->ns == 1) return js_compile(c, p->schemas[0], JS_T_ALL);
    const cJSON *nodes[JS_MAX_MERGE];
    int k = 0;
    for (int i = 0; i < p->ns; i++) {
        const cJSON *r = js_resolve_alias(c, p->schemas[i], NULL);
        if (!r) return -1;
        if (cJSON_IsFalse(r)) return JS_EMPTY;
        if (!cJSON_IsTrue(r)) nodes[k++] = r;
    }
    if (k == 0) return js_any_rule(c, JS_T_ALL);
    if (k == 1) return js_compile(c, nodes[0], JS_T_ALL);
    return js_compile_all(c, nodes, k, JS_T_ALL);
}

// Compiles every value (inside the object: recursion through here is fine). Properties
// whose value matches nothing are dropped; false when a required one does (or on error).
static bool compile_values(js_ctx *c, js_objspec *o, int32_t *additional) {
    uint32_t saved = js_enter_consuming(c);
    bool possible = true;
    for (int i = 0; i < o->n && possible && c->st == CS_OK; i++) {
        js_prop *p = &o->p[i];
        if (p->dropped) continue;
        size_t old = js_path_push(c, "properties", p->name);
        p->value = value_rule(c, p);
        js_path_pop(c, old);
        if (p->value == JS_EMPTY) {
            p->dropped = true;
            possible = !p->required;
        }
    }
    *additional = JS_EMPTY;
    if (possible && o->additional && c->st == CS_OK) {
        size_t old = js_path_push(c, "additionalProperties", NULL);
        *additional = js_compile(c, o->additional, JS_T_ALL);
        js_path_pop(c, old);
    }
    js_leave_consuming(c, saved);
    return possible && c->st == CS_OK;
}

typedef struct obj_keys {
    char **keys;
    size_t *lens;
    bool *required;
    int32_t *before, *value; // (kept) the state before the value, the value's rule
    const char **names;      // every name the spec knows, for the other-key automaton
} obj_keys;

static void obj_keys_free(obj_keys *k, int n) {
    for (int i = 0; k->keys && i < n; i++) free(k->keys[i]);
    free(k->keys), free(k->lens), free(k->required), free(k->before), free(k->value), free(k->names);
}

// The listed keys (kept properties, in order) as JSON text plus ':'; their count or -1.
static int obj_keys_init(js_ctx *c, const js_objspec *o, int32_t rule, obj_keys *k) {
    size_t n = (size_t)o->n + 1;
    k->keys = calloc(n, sizeof *k->keys), k->lens = calloc(n, sizeof *k->lens);
    k->required = calloc(n, sizeof *k->required), k->before = calloc(n, sizeof *k->before);
    k->value = calloc(n, sizeof *k->value), k->names = calloc(n, sizeof *k->names);
    if (!k->keys || !k->lens || !k->required || !k->before || !k->value || !k->names)
        return js_fail(c, CS_ERR_NOMEM, "out of memory");
    int m = 0;
    for (int i = 0; i < o->n; i++) {
        k->names[i] = o->p[i].name;
        if (o->p[i].dropped) continue;
        size_t len = strlen(o->p[i].name);
        if (!(k->keys[m] = malloc(6 * len + 4))) return js_fail(c, CS_ERR_NOMEM, "out of memory");
        k->lens[m] = js_escape(o->p[i].name, len, k->keys[m]);
        k->keys[m][k->lens[m]++] = ':';
        k->required[m] = o->p[i].required;
        k->before[m] = cs_gb_state(c->b, rule);
        k->value[m] = o->p[i].value;
        m++;
    }
    return m;
}

// '{' listed properties (each source: the key trie of its candidates; '}' where no required
// property remains), then additional properties, '}'.
static void emit_object(js_ctx *c, const js_objspec *o, int32_t additional, int32_t rule, int32_t from, int32_t to) {
    obj_keys ok = {0};
    int m = obj_keys_init(c, o, rule, &ok);
    const js_keys k = {m, (const char *const *)ok.keys, ok.lens, ok.required, ok.before};
    void *trie = m > 0 ? js_keys_trie(c, &k) : NULL;
    if (m >= 0 && (m == 0 || trie)) {
        int32_t open = cs_gb_state(c->b, rule), other = additional >= 0 ? cs_gb_state(c->b, rule) : -1;
        cs_gb_bytes(c->b, from, '{', '{', open);
        if (js_keys_from(c, rule, &k, trie, -1, open)) {
            cs_gb_bytes(c->b, open, '}', '}', to);
            cs_gb_eps(c->b, open, other);
        }
        for (int j = 0; j < m && c->st == CS_OK; j++) {
            int32_t after = cs_gb_state(c->b, rule);
            cs_gb_call(c->b, ok.before[j], ok.value[j], after);
            if (js_keys_from(c, rule, &k, trie, j, after)) {
                cs_gb_bytes(c->b, after, '}', '}', to);
                cs_gb_bytes(c->b, after, ',', ',', other);
            }
        }
        if (other >= 0) {
            int32_t colon = js_other_key(c, rule, other, ok.names, o->n), done = cs_gb_state(c->b, rule);
            cs_gb_call(c->b, colon, additional, done);
            cs_gb_bytes(c->b, done, '}', '}', to);
            cs_gb_bytes(c->b, done, ',', ',', other);
        }
    }
    js_keys_trie_free(trie);
    obj_keys_free(&ok, o->n + 1);
}

bool js_object_body(js_ctx *c, const cJSON *const *nodes, int n, bool merge, int32_t rule, int32_t from,
                    int32_t to) {
    js_objspec o = {0};
    bool possible = spec_build(c, &o, nodes, n, merge);
    if (possible && !o.listed) { // no properties, required or additionalProperties: any object
        cs_gb_call(c->b, from, js_any_object_rule(c), to);
    } else if (possible) {
        int32_t additional;
        possible = compile_values(c, &o, &additional);
        if (possible) emit_object(c, &o, additional, rule, from, to);
    }
    free(o.p);
    js_map_free(&o.index);
    return possible && js_tick(c, 1);
}
