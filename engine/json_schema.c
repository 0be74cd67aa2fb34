// JSON Schema -> byte-level grammar: the walk over the schema, $ref resolution, anyOf, the memo
// that shares sub-rules, and the public entry points. Objects, arrays, strings, numbers,
// formats and literal tries live in the json_schema_*.c files beside this one.
//
// ## Supported subset (constrained decoding; README "Constrained decoding")
//
// Output is compact JSON: no whitespace anywhere, object properties in the order the schema
// lists them. Every generated document is valid under the schema; some valid documents are
// not generated (other key orders, whitespace, `1.0` for an integer, escapes in some places).
//
// - `true` and `{}`: any JSON value. `false`: nothing.
// - type: "object", "array", "string", "number", "integer", "boolean", "null", or a list of
//   them. Without `type`, a schema generates the types its keywords imply (properties/required/
//   additionalProperties: object; items/prefixItems/minItems/maxItems: array; minLength/
//   maxLength/pattern/format: string; minimum/maximum/exclusive*: number); with none of
//   those, any type.
// - properties, required: required properties are always generated, optional ones may be
//   skipped; all in the schema's order. A required name missing from properties takes the
//   additionalProperties schema (an error when that is false).
// - additionalProperties: false, true or a schema. ABSENT MEANS FALSE when the object has
//   properties or required (strict, as vLLM's and xgrammar's defaults): only the listed
//   properties are generated. An object schema with neither properties, required nor
//   additionalProperties is any object. Additional properties come after the listed ones;
//   their names are never a listed name and are generated without escape sequences.
// - items (a schema; `false` after prefixItems ends the array), prefixItems, minItems,
//   maxItems (up to 10000). An array with prefixItems and no items ends after the prefix
//   (strict, like additionalProperties).
// - enum, const: any JSON values, generated as their compact JSON text (a trie of literals,
//   so large enums stay small); up to 65536 values. Siblings other than type and annotations
//   are an error.
// - anyOf; oneOf is generated as anyOf (a document matching two branches may come out, so
//   keep oneOf branches disjoint). A sibling `type` restricts every branch; other siblings
//   are an error.
// - allOf: one branch, or objects, merged: properties in first-seen order, required united,
//   a property listed twice gets both schemas (merged again when objects); a branch with
//   additionalProperties false drops the other branches' extra properties.
// - $ref, $defs, definitions: local JSON pointers ("#", "#/$defs/a", "#/properties/x/items",
//   ~0 ~1 and %XX escapes), recursive ($ref trees and linked lists). A $ref reached again
//   before any byte is consumed (left recursion: {"anyOf":[{"$ref":"#"}, ...]}) is an error.
//   $ref beside constraining keywords is an error (drafts disagree on what it means).
// - Strings: any JSON string character; escapes \" \\ \/ \b \f \n \r \t \uXXXX (surrogates
//   only in valid pairs). minLength/maxLength count code points (an escape sequence is one
//   character, a surrogate pair one), expanded up to 10000.
// - pattern (engine/regex.h syntax; searched, as JSON Schema says: unanchored unless it
//   starts with ^ / ends with $) and format (date, time, date-time, uuid, email, ipv4):
//   such strings are generated without escape sequences and without the characters that
//   would need one (" \ and U+0000..U+001F). Pattern, format and minLength/maxLength
//   together are intersected exactly. \d \w \s are ASCII-only: a subset of what Python's
//   match, but \D \W \S then also match non-ASCII digits, letters and spaces, which a
//   Python validator's do not (explicit classes such as [^0-9] mean the same to both).
// - integer/number: minimum, maximum, exclusiveMinimum, exclusiveMaximum, enforced exactly:
//   integers by a digit automaton over the range, bounded numbers are generated without an
//   exponent and compared digit by digit with the bound (exclusive bounds move one double
//   step inward). Bounds of 1e40 or more in magnitude are capped at 10^40 - 1 (or refused
//   where that would allow nothing); integer bounds past 2^53 move one double step inward.
// - Annotations are ignored: title, description, default, examples, $schema, $id (root
//   only), $comment, deprecated, readOnly, writeOnly. Every other keyword is an error that
//   names it (patternProperties, multipleOf, uniqueItems, if/then/else, not, ...).
// - Limits: schema text 1 MiB (valid UTF-8, no control characters, no \u0000), nesting 64
//   (counting $ref hops into sub-schemas), 65536 enum values, 4096 properties per object,
//   minItems/maxItems/minLength/maxLength/prefixItems 10000, allOf of 8 schemas, a pattern x
//   format automaton of 8192 states (2^22 states x length cells), 2^19 grammar states, 2^22
//   compile steps; each an error naming it, in bounded time and memory.
// - Not detected: a recursion that can never end (a required property whose schema requires
//   itself again) compiles to a grammar in which no document ends.
#include "json_schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "json_schema_internal.h"

// ---------------------------------------------------------------------------------------------
// Errors, limits, paths

int32_t js_fail(js_ctx *c, cs_status st, const char *fmt, ...) {
    if (c->st != CS_OK) return -1;
    c->st = st;
    char msg[CS_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cs_errf(c->err, c->errlen, st, "json_schema: %s (at #%.*s)", msg, (int)c->path_len, c->path);
    for (char *p = c->err; p && c->errlen && *p; p++) // names from the schema may hold newlines
        if ((unsigned char)*p < 0x20) *p = '?';
    return -1;
}

bool js_tick(js_ctx *c, int64_t steps) {
    if (c->st != CS_OK) return false;
    c->work += steps;
    if (c->work > JS_MAX_WORK) {
        js_fail(c, CS_ERR_INVALID, "schema too complex (more than %d compile steps)", JS_MAX_WORK);
        return false;
    }
    if (cs_gb_n_states(c->b) > JS_MAX_STATES) {
        js_fail(c, CS_ERR_INVALID, "schema too large (grammar over %d states)", JS_MAX_STATES);
        return false;
    }
    if (cs_gb_failed(c->b)) {
        js_fail(c, CS_ERR_NOMEM, "grammar builder out of memory or past its limits");
        return false;
    }
    return true;
}

size_t js_path_push(js_ctx *c, const char *seg, const char *key) {
    size_t old = c->path_len;
    int n = snprintf(c->path + old, sizeof c->path - old, key ? "/%s/%s" : "/%s", seg, key);
    if (n > 0) c->path_len = old + (size_t)n < sizeof c->path ? old + (size_t)n : sizeof c->path - 1;
    return old;
}

void js_path_pop(js_ctx *c, size_t old) {
    c->path_len = old;
    c->path[old] = 0;
}

uint32_t js_enter_consuming(js_ctx *c) {
    uint32_t saved = c->guard;
    c->guard = ++c->guard_next;
    return saved;
}

void js_leave_consuming(js_ctx *c, uint32_t saved) { c->guard = saved; }

// ---------------------------------------------------------------------------------------------
// Keywords: what is known, and the JSON type each one's value must have

enum { K_ANY, K_TYPE, K_SCHEMA, K_SCHEMA_MAP, K_SCHEMA_LIST, K_STRINGS, K_COUNT, K_NUMBER, K_STRING, K_ENUM };

static const struct {
    const char *name;
    int kind;
} KEYWORDS[] = {
    {"type", K_TYPE},         {"enum", K_ENUM},          {"const", K_ANY},
    {"properties", K_SCHEMA_MAP}, {"required", K_STRINGS}, {"additionalProperties", K_SCHEMA},
    {"items", K_SCHEMA},      {"prefixItems", K_SCHEMA_LIST}, {"minItems", K_COUNT},
    {"maxItems", K_COUNT},    {"anyOf", K_SCHEMA_LIST},  {"oneOf", K_SCHEMA_LIST},
    {"allOf", K_SCHEMA_LIST}, {"$ref", K_STRING},        {"minLength", K_COUNT},
    {"maxLength", K_COUNT},   {"pattern", K_STRING},     {"format", K_STRING},
    {"minimum", K_NUMBER},    {"maximum", K_NUMBER},     {"exclusiveMinimum", K_NUMBER},
    {"exclusiveMaximum", K_NUMBER}, {"$defs", K_SCHEMA_MAP}, {"definitions", K_SCHEMA_MAP},
};

static const char *const ANNOTATIONS[] = {"title",   "description", "default",    "examples",  "$schema",
                                          "$id",     "$comment",    "deprecated", "readOnly", "writeOnly"};

bool js_is_annotation(const char *kw) {
    for (size_t i = 0; i < sizeof ANNOTATIONS / sizeof *ANNOTATIONS; i++)
        if (!strcmp(kw, ANNOTATIONS[i])) return true;
    return false;
}

static bool is_schema(const cJSON *v) { return cJSON_IsObject(v) || cJSON_IsBool(v); }

static bool value_ok(const cJSON *v, int kind) {
    switch (kind) {
    case K_ANY: return true;
    case K_TYPE: return cJSON_IsString(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0);
    case K_SCHEMA: return is_schema(v);
    case K_STRING: return cJSON_IsString(v);
    case K_NUMBER: return cJSON_IsNumber(v);
    case K_COUNT: return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0 &&
                         v->valuedouble == (double)(int64_t)v->valuedouble;
    case K_ENUM: return cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0;
    case K_SCHEMA_MAP:
    case K_SCHEMA_LIST:
        if (kind == K_SCHEMA_MAP ? !cJSON_IsObject(v) : !cJSON_IsArray(v) || !v->child) return false;
        for (const cJSON *e = v->child; e; e = e->next)
            if (!is_schema(e)) return false;
        return true;
    case K_STRINGS:
        if (!cJSON_IsArray(v)) return false;
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsString(e)) return false;
        return true;
    }
    return false;
}

static const char *const KIND_TEXT[] = {
    [K_ANY] = "any value", [K_TYPE] = "a type name or a non-empty list of them",
    [K_SCHEMA] = "a schema (object or boolean)", [K_SCHEMA_MAP] = "an object of schemas",
    [K_SCHEMA_LIST] = "a non-empty array of schemas", [K_STRINGS] = "an array of strings",
    [K_COUNT] = "a non-negative integer", [K_NUMBER] = "a number", [K_STRING] = "a string",
    [K_ENUM] = "a non-empty array"};

static int cmp_key(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

// Duplicate keys: cJSON keeps the first, Python's json the last; refuse rather than guess.
static bool check_duplicates(js_ctx *c, const cJSON *obj, const char *what) {
    int n = cJSON_GetArraySize(obj);
    if (n < 2) return true;
    const cJSON **kv = malloc(sizeof *kv * (size_t)n);
    if (!kv) return js_fail(c, CS_ERR_NOMEM, "out of memory"), false;
    int i = 0;
    for (const cJSON *e = obj->child; e; e = e->next) kv[i++] = e;
    qsort(kv, (size_t)n, sizeof *kv, cmp_key);
    for (i = 1; i < n && strcmp(kv[i - 1]->string, kv[i]->string); i++) {}
    if (i < n) js_fail(c, CS_ERR_INVALID, "duplicate %s \"%.64s\"", what, kv[i]->string);
    free(kv);
    return i == n && js_tick(c, n);
}

// Every keyword known and of the right JSON type; $id only at the root.
bool js_check_keywords(js_ctx *c, const cJSON *node) {
    if (!check_duplicates(c, node, "keyword")) return false;
    for (const cJSON *kv = node->child; kv; kv = kv->next) {
        if (js_is_annotation(kv->string)) {
            if (!strcmp(kv->string, "$id") && node != c->root) {
                js_fail(c, CS_ERR_UNSUPPORTED, "$id in a sub-schema is not supported");
                return false;
            }
            continue;
        }
        size_t k = 0, nk = sizeof KEYWORDS / sizeof *KEYWORDS;
        while (k < nk && strcmp(kv->string, KEYWORDS[k].name)) k++;
        if (k == nk) {
            js_fail(c, CS_ERR_UNSUPPORTED, "unsupported keyword \"%.64s\"", kv->string);
            return false;
        }
        if (!value_ok(kv, KEYWORDS[k].kind)) {
            js_fail(c, CS_ERR_INVALID, "\"%s\" must be %s", kv->string, KIND_TEXT[KEYWORDS[k].kind]);
            return false;
        }
        if (KEYWORDS[k].kind == K_SCHEMA_MAP && !check_duplicates(c, kv, "name")) return false;
    }
    return true;
}

// The types `type` names (all types when absent); 0 after an error.
static unsigned declared_types(js_ctx *c, const cJSON *t) {
    static const char *const NAMES[] = {"null", "boolean", "object", "array", "string", "integer", "number"};
    unsigned mask = 0;
    for (const cJSON *e = cJSON_IsArray(t) ? t->child : t; e; e = cJSON_IsArray(t) ? e->next : NULL) {
        unsigned bit = 0;
        for (unsigned i = 0; i < 7 && cJSON_IsString(e); i++)
            if (!strcmp(e->valuestring, NAMES[i])) bit = 1u << i;
        if (!bit) {
            js_fail(c, CS_ERR_INVALID, "unknown type %.64s", cJSON_IsString(e) ? e->valuestring : "(not a string)");
            return 0;
        }
        mask |= bit;
    }
    return mask & JS_T_NUMBER ? mask | JS_T_INTEGER : mask; // integers are numbers
}

static bool has_any(const cJSON *node, const char *const *kws, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (cJSON_GetObjectItemCaseSensitive(node, kws[i])) return true;
    return false;
}

// The types a schema generates: `type`, or what its keywords imply (see the top comment).
static unsigned schema_types(js_ctx *c, const cJSON *node) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (t) return declared_types(c, t);
    static const char *const OBJ[] = {"properties", "required", "additionalProperties"};
    static const char *const ARR[] = {"items", "prefixItems", "minItems", "maxItems"};
    static const char *const STR[] = {"minLength", "maxLength", "pattern", "format"};
    static const char *const NUM[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    unsigned m = 0;
    if (has_any(node, OBJ, 3)) m |= JS_T_OBJECT;
    if (has_any(node, ARR, 4)) m |= JS_T_ARRAY;
    if (has_any(node, STR, 4)) m |= JS_T_STRING;
    if (has_any(node, NUM, 4)) m |= JS_T_NUMBER | JS_T_INTEGER;
    return m ? m : JS_T_ALL;
}

// ---------------------------------------------------------------------------------------------
// $ref

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

// One reference token of a JSON pointer in a URI fragment: %XX, then ~1 -> '/', ~0 -> '~'.
static bool pointer_token(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (n - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) return false;
            ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (ch == '~') {
            if (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1')) return false;
            ch = s[++i] == '0' ? '~' : '/';
        }
        if (k + 1 >= cap || ch == 0) return false;
        out[k++] = ch;
    }
    out[k] = 0;
    return true;
}

// The schema a local reference ("#", "#/a/b") names, or NULL with an error.
static const cJSON *resolve_ref(js_ctx *c, const char *ref) {
    if (ref[0] != '#') {
        js_fail(c, CS_ERR_UNSUPPORTED, "$ref \"%.64s\": only local references (#...) are supported", ref);
        return NULL;
    }
    const cJSON *cur = c->root;
    const char *p = ref + 1;
    if (*p && *p != '/') {
        js_fail(c, CS_ERR_UNSUPPORTED, "$ref \"%.64s\": anchors are not supported, use a JSON pointer", ref);
        return NULL;
    }
    char tok[512];
    while (*p == '/') {
        const char *e = strchr(p + 1, '/');
        size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
        if (!pointer_token(p + 1, n, tok, sizeof tok)) {
            js_fail(c, CS_ERR_INVALID, "$ref \"%.64s\": malformed JSON pointer", ref);
            return NULL;
        }
        const cJSON *next = NULL;
        if (cJSON_IsObject(cur)) {
            next = cJSON_GetObjectItemCaseSensitive(cur, tok);
        } else if (cJSON_IsArray(cur)) {
            char *end;
            long i = strtol(tok, &end, 10);
            if (*tok && !*end && tok[0] != '-' && (tok[0] != '0' || !tok[1])) next = cJSON_GetArrayItem(cur, (int)i);
        }
        if (!next) {
            js_fail(c, CS_ERR_NOT_FOUND, "$ref \"%.64s\" does not resolve", ref);
            return NULL;
        }
        cur = next;
        p += 1 + n;
    }
    if (!is_schema(cur)) {
        js_fail(c, CS_ERR_INVALID, "$ref \"%.64s\" names something that is not a schema", ref);
        return NULL;
    }
    return cur;
}

// Follows schemas that are only a $ref (plus annotations and $defs) to the schema they name;
// *via (when not NULL) gets the last reference followed, or NULL. A $ref beside other keywords
// is an error; so are chains past JS_MAX_REF_HOPS (cycles).
const cJSON *js_resolve_alias(js_ctx *c, const cJSON *node, const char **via) {
    if (via) *via = NULL;
    for (int hop = 0; hop <= JS_MAX_REF_HOPS; hop++) {
        if (!cJSON_IsObject(node)) return node;
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(node, "$ref");
        if (!ref) return node;
        if (via) *via = ref->valuestring;
        if (!js_check_keywords(c, node)) return NULL;
        for (const cJSON *kv = node->child; kv; kv = kv->next)
            if (strcmp(kv->string, "$ref") && strcmp(kv->string, "$defs") && strcmp(kv->string, "definitions") &&
                !js_is_annotation(kv->string)) {
                js_fail(c, CS_ERR_UNSUPPORTED, "$ref beside \"%.64s\" is not supported (wrap them in allOf)",
                        kv->string);
                return NULL;
            }
        if (!(node = resolve_ref(c, ref->valuestring))) return NULL;
    }
    js_fail(c, CS_ERR_INVALID, "$ref chain longer than %d (a cycle of references?)", JS_MAX_REF_HOPS);
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// The memo: (schema node or allOf list, type mask) -> rule. A rule is entered in the memo
// when its building starts, so a schema that refers to itself calls the rule being built.

typedef struct js_key {
    uint8_t b[1 + sizeof(unsigned) + 8 * sizeof(void *)];
    size_t n;
} js_key;

static js_key make_key(char tag, const cJSON *const *nodes, int n, unsigned mask) {
    js_key k;
    CS_ASSERT(n >= 1 && n <= JS_MAX_MERGE);
    k.b[0] = (uint8_t)tag;
    memcpy(k.b + 1, &mask, sizeof mask);
    k.n = 1 + sizeof mask;
    for (int i = 0; i < n; i++, k.n += sizeof(void *)) memcpy(k.b + k.n, &nodes[i], sizeof(void *));
    return k;
}

// The rule of a started or finished key, or -3 when new. Reaching a rule that is being
// built from the same consuming context means no byte was consumed in between: an error.
static int32_t memo_find(js_ctx *c, const js_key *k) {
    int32_t r;
    if (!js_map_get(&c->memo, k->b, k->n, &r)) return -3;
    for (int i = 0; i < c->n_inprog; i++) {
        if (c->inprog[i].rule != r) continue;
        if (c->inprog[i].guard == c->guard)
            return js_fail(c, CS_ERR_INVALID, "left recursion: a $ref reaches its own schema before any output");
        c->inprog[i].used = true;
    }
    return r;
}

static bool memo_start(js_ctx *c, const js_key *k, int32_t rule) {
    if (c->n_inprog == JS_MAX_INPROGRESS) return js_fail(c, CS_ERR_INVALID, "schema nesting too deep"), false;
    if (!js_map_put(&c->memo, k->b, k->n, rule)) return js_fail(c, CS_ERR_NOMEM, "out of memory"), false;
    c->inprog[c->n_inprog++] = (js_inprogress){rule, c->guard, false};
    return true;
}

// Ends the build of the last started key: `possible` false and never referred to: the key
// matches nothing (JS_EMPTY), which callers drop.
static int32_t memo_finish(js_ctx *c, const js_key *k, bool possible) {
    js_inprogress p = c->inprog[--c->n_inprog];
    if (c->st != CS_OK) return -1;
    int32_t r = possible || p.used ? p.rule : JS_EMPTY;
    if (!js_map_put(&c->memo, k->b, k->n, r)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    return r;
}

// ---------------------------------------------------------------------------------------------
// The walk

int32_t js_union(js_ctx *c, const int32_t *rules, int n) {
    int32_t r = -1, end = -1;
    for (int i = 0; i < n; i++) {
        if (rules[i] == JS_EMPTY) continue;
        if (r < 0) {
            r = cs_gb_rule(c->b);
            end = cs_gb_state(c->b, r);
            cs_gb_accept(c->b, end);
        }
        cs_gb_call(c->b, cs_gb_start(c->b, r), rules[i], end); // a tail call: no stack depth
    }
    return r < 0 ? JS_EMPTY : r;
}

// anyOf / oneOf: each branch restricted to `mask` (the sibling `type`), called from rule.
static bool compile_anyof(js_ctx *c, const cJSON *node, const cJSON *list, unsigned mask, int32_t rule) {
    for (const cJSON *kv = node->child; kv; kv = kv->next)
        if (kv != list && strcmp(kv->string, "type") && strcmp(kv->string, "$defs") &&
            strcmp(kv->string, "definitions") && !js_is_annotation(kv->string)) {
            js_fail(c, CS_ERR_UNSUPPORTED, "%s beside \"%.64s\" is not supported (move it into the branches)",
                    list->string, kv->string);
            return false;
        }
    int32_t end = cs_gb_state(c->b, rule);
    cs_gb_accept(c->b, end);
    bool possible = false;
    int i = 0;
    for (const cJSON *br = list->child; br; br = br->next, i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        size_t old = js_path_push(c, list->string, idx);
        int32_t r = js_compile(c, br, mask);
        js_path_pop(c, old);
        if (r == -1) return false;
        if (r == JS_EMPTY) continue;
        cs_gb_call(c->b, cs_gb_start(c->b, rule), r, end);
        possible = true;
    }
    return possible;
}

// The typed alternatives of a schema (no enum, anyOf or allOf), from -> an accepting end.
static bool compile_types(js_ctx *c, const cJSON *node, unsigned types, int32_t rule) {
    int32_t start = cs_gb_start(c->b, rule), end = cs_gb_state(c->b, rule);
    cs_gb_accept(c->b, end);
    bool possible = false;
    if (types & JS_T_OBJECT) possible |= js_object_body(c, &node, 1, false, rule, start, end);
    if (types & JS_T_ARRAY) possible |= js_array_body(c, node, rule, start, end);
    if (types & (JS_T_STRING | JS_T_NUMBER | JS_T_INTEGER)) {
        int32_t rs = types & JS_T_STRING ? js_string_schema(c, node) : JS_EMPTY;
        int32_t rn = types & (JS_T_NUMBER | JS_T_INTEGER) ? js_numeric_schema(c, node, !(types & JS_T_NUMBER))
                                                          : JS_EMPTY;
        if (rs == -1 || rn == -1) return false;
        cs_gb_call(c->b, start, rs, end);
        cs_gb_call(c->b, start, rn, end);
        possible |= rs != JS_EMPTY || rn != JS_EMPTY;
    }
    if (types & JS_T_BOOL) {
        cs_gb_accept(c->b, cs_gb_literal(c->b, start, "true", 4));
        cs_gb_accept(c->b, cs_gb_literal(c->b, start, "false", 5));
        possible = true;
    }
    if (types & JS_T_NULL) {
        cs_gb_accept(c->b, cs_gb_literal(c->b, start, "null", 4));
        possible = true;
    }
    return possible && c->st == CS_OK;
}

static bool has_own_keywords(const cJSON *node) {
    for (const cJSON *kv = node->child; kv; kv = kv->next)
        if (strcmp(kv->string, "allOf") && strcmp(kv->string, "$defs") && strcmp(kv->string, "definitions") &&
            !js_is_annotation(kv->string))
            return true;
    return false;
}

// The schemas an allOf stands for: node itself when it has keywords besides allOf, then each
// branch (followed through $ref), a branch's own allOf flattened likewise. Returns the new
// count, -1 on error, -2 when a branch is `false`.
static int allof_parts(js_ctx *c, const cJSON *node, const cJSON **parts, int n, int level) {
    if (level > JS_MAX_MERGE) return js_fail(c, CS_ERR_UNSUPPORTED, "allOf nested more than %d deep", JS_MAX_MERGE);
    if (has_own_keywords(node)) {
        if (n == JS_MAX_MERGE) return js_fail(c, CS_ERR_UNSUPPORTED, "allOf of more than %d schemas", JS_MAX_MERGE);
        parts[n++] = node;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(node, "allOf");
    for (const cJSON *br = list ? list->child : NULL; br; br = br->next) {
        const cJSON *r = js_resolve_alias(c, br, NULL);
        if (!r) return -1;
        if (cJSON_IsFalse(r)) return -2;
        if (cJSON_IsTrue(r)) continue; // adds nothing
        if (!cJSON_IsObject(r)) return js_fail(c, CS_ERR_INVALID, "a schema must be an object or a boolean");
        if ((n = allof_parts(c, r, parts, n, level + 1)) < 0) return n;
    }
    return n;
}

// allOf: one schema in all compiles as itself; several merge as objects.
static int32_t compile_allof(js_ctx *c, const cJSON *node, unsigned mask) {
    const cJSON *parts[JS_MAX_MERGE];
    int n = allof_parts(c, node, parts, 0, 0);
    if (n == -2) return JS_EMPTY;
    if (n < 0) return -1;
    if (n == 0) return js_any_rule(c, mask);
    if (n == 1 && parts[0] != node) return js_compile(c, parts[0], mask);
    return js_compile_all(c, parts, n, mask);
}

static int32_t compile_node(js_ctx *c, const cJSON *node, unsigned mask) {
    if (!js_check_keywords(c, node)) return -1;
    unsigned types = schema_types(c, node) & mask;
    if (c->st != CS_OK) return -1;
    if (cJSON_GetObjectItemCaseSensitive(node, "enum") || cJSON_GetObjectItemCaseSensitive(node, "const"))
        return js_enum_rule(c, node, types);
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(node, "anyOf");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(node, "oneOf");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(node, "allOf");
    if ((any != NULL) + (one != NULL) + (all != NULL) > 1)
        return js_fail(c, CS_ERR_UNSUPPORTED, "anyOf, oneOf and allOf together are not supported");
    if (all) return compile_allof(c, node, types);
    if (!any && !one) { // a single string or number type needs no rule of its own
        unsigned t = types & JS_T_NUMBER ? types & ~(unsigned)JS_T_INTEGER : types;
        if (t == JS_T_STRING) return js_string_schema(c, node);
        if (t == JS_T_NUMBER || t == JS_T_INTEGER) return js_numeric_schema(c, node, t == JS_T_INTEGER);
        if (!t) return JS_EMPTY;
    }
    const js_key k = make_key('N', &node, 1, mask);
    int32_t rule = cs_gb_rule(c->b);
    if (!memo_start(c, &k, rule)) return -1;
    bool possible = any || one ? compile_anyof(c, node, any ? any : one, types, rule)
                               : compile_types(c, node, types, rule);
    return memo_finish(c, &k, possible);
}

int32_t js_compile(js_ctx *c, const cJSON *schema, unsigned mask) {
    if (!js_tick(c, 1)) return -1;
    const char *via;
    const cJSON *node = js_resolve_alias(c, schema, &via);
    if (!node) return -1;
    if (via) { // errors inside name where the reference led
        char saved[sizeof c->path];
        size_t saved_len = c->path_len;
        memcpy(saved, c->path, sizeof saved);
        snprintf(c->path, sizeof c->path, "%s", via + 1);
        c->path_len = strlen(c->path);
        int32_t r = js_compile(c, node, mask);
        memcpy(c->path, saved, sizeof saved);
        c->path_len = saved_len;
        return r;
    }
    if (cJSON_IsTrue(node)) return js_any_rule(c, mask);
    if (cJSON_IsFalse(node)) return JS_EMPTY;
    if (!cJSON_IsObject(node)) return js_fail(c, CS_ERR_INVALID, "a schema must be an object or a boolean");
    const js_key k = make_key('N', &node, 1, mask);
    int32_t r = memo_find(c, &k);
    if (r != -3) return r;
    if (c->depth >= CS_JSON_SCHEMA_MAX_DEPTH)
        return js_fail(c, CS_ERR_INVALID, "schema nesting deeper than %d", CS_JSON_SCHEMA_MAX_DEPTH);
    c->depth++;
    r = compile_node(c, node, mask);
    c->depth--;
    if (r >= 0 && !js_map_put(&c->memo, k.b, k.n, r)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    return c->st == CS_OK ? r : -1;
}

// An allOf of several schemas (objects): a rule of its own, memoised by the list.
int32_t js_compile_all(js_ctx *c, const cJSON *const *nodes, int n, unsigned mask) {
    if (n > JS_MAX_MERGE) return js_fail(c, CS_ERR_UNSUPPORTED, "allOf of more than %d schemas", JS_MAX_MERGE);
    if (!(mask & JS_T_OBJECT)) return JS_EMPTY;
    const js_key k = make_key('A', nodes, n, mask);
    int32_t r = memo_find(c, &k);
    if (r != -3) return r;
    if (c->depth >= CS_JSON_SCHEMA_MAX_DEPTH)
        return js_fail(c, CS_ERR_INVALID, "schema nesting deeper than %d", CS_JSON_SCHEMA_MAX_DEPTH);
    c->depth++;
    int32_t rule = cs_gb_rule(c->b), end = cs_gb_state(c->b, rule);
    cs_gb_accept(c->b, end);
    bool possible = memo_start(c, &k, rule) && js_object_body(c, nodes, n, true, rule, cs_gb_start(c->b, rule), end);
    if (c->n_inprog > 0 && c->inprog[c->n_inprog - 1].rule == rule) r = memo_finish(c, &k, possible);
    c->depth--;
    return c->st == CS_OK ? r : -1;
}

// ---------------------------------------------------------------------------------------------
// Entry points

static void ctx_init(js_ctx *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->err = err;
    c->errlen = errlen;
    c->r_string = c->r_char = c->r_number = c->r_integer = c->r_value = c->r_any_obj = c->r_any_arr = -1;
}

// Finishes c->b with root rule r (consumes the builder) and checks the result can produce
// something.
static cs_status ctx_finish(js_ctx *c, int32_t root, cs_grammar **out) {
    cs_gram_builder *b = c->b;
    c->b = NULL;
    js_map_free(&c->memo);
    if (c->st != CS_OK || root == -1) {
        cs_gb_free(b);
        return c->st != CS_OK ? c->st : cs_errf(c->err, c->errlen, CS_ERR_INVALID, "json_schema: internal error");
    }
    if (root == JS_EMPTY) {
        cs_gb_free(b);
        return cs_errf(c->err, c->errlen, CS_ERR_INVALID, "json_schema: the schema matches no document");
    }
    return cs_gb_finish(b, root, out, c->err, c->errlen);
}

// Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF), so that every string the
// schema holds can be emitted as it is; and no control characters but whitespace (JSON
// allows none inside strings, where cJSON would take them and a C string end at a NUL).
static bool utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') return false;
        size_t need = b < 0x80                 ? 0
                      : b >= 0xc2 && b <= 0xdf ? 1
                      : b >= 0xe0 && b <= 0xef ? 2
                      : b >= 0xf0 && b <= 0xf4 ? 3
                                               : 9;
        if (need == 9 || n - i - 1 < need) return false;
        unsigned char lo = 0x80, hi = 0xbf; // the second byte's range
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
        for (size_t k = 1; k <= need; k++) {
            unsigned char x = s[i + k];
            if (k == 1 ? x < lo || x > hi : (x & 0xc0) != 0x80) return false;
        }
        i += need + 1;
    }
    return true;
}

// Schema strings containing \u0000: cJSON ends the C string there, Python keeps the rest;
// refuse rather than compile a different schema.
static bool has_nul_escape(const char *s, size_t len) {
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < len && !memcmp(s + i + 2, "0000", 4)) return true;
        i++; // skip the escaped character
    }
    return false;
}

cs_status cs_json_schema_compile(const char *schema, size_t len, cs_grammar **out, char *err, size_t errlen) {
    *out = NULL;
    if (len > CS_JSON_SCHEMA_MAX_BYTES)
        return cs_errf(err, errlen, CS_ERR_INVALID, "json_schema: schema is %zu bytes (limit %u)", len,
                       CS_JSON_SCHEMA_MAX_BYTES);
    if (!utf8_valid((const unsigned char *)schema, len))
        return cs_errf(err, errlen, CS_ERR_INVALID, "json_schema: schema is not valid UTF-8 JSON text (bad byte)");
    if (has_nul_escape(schema, len))
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "json_schema: \\u0000 in schema strings is not supported");
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(schema, len, &end, false);
    if (!doc) return cs_errf(err, errlen, CS_ERR_INVALID, "json_schema: not valid JSON (near byte %zu)",
                             end && end >= schema ? (size_t)(end - schema) : (size_t)0);
    js_ctx c;
    ctx_init(&c, err, errlen);
    c.root = doc;
    if (!(c.b = cs_gb_init())) {
        cJSON_Delete(doc);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "json_schema: out of memory");
    }
    int32_t root = -1;
    size_t used = end && end >= schema && end <= schema + len ? (size_t)(end - schema) : len;
    while (used < len && strchr(" \t\r\n", schema[used]) && schema[used]) used++;
    if (used < len)
        js_fail(&c, CS_ERR_INVALID, "trailing bytes after the schema");
    else
        root = js_compile(&c, doc, JS_T_ALL);
    cs_status st = ctx_finish(&c, root, out);
    cJSON_Delete(doc);
    return st;
}

cs_status cs_json_object_grammar(cs_grammar **out, char *err, size_t errlen) {
    *out = NULL;
    js_ctx c;
    ctx_init(&c, err, errlen);
    if (!(c.b = cs_gb_init())) return cs_errf(err, errlen, CS_ERR_NOMEM, "json_schema: out of memory");
    return ctx_finish(&c, js_any_object_rule(&c), out);
}

cs_status cs_choice_grammar(const char *const *choices, const size_t *lens, int n, cs_grammar **out, char *err,
                            size_t errlen) {
    *out = NULL;
    if (n <= 0) return cs_errf(err, errlen, CS_ERR_INVALID, "choices: need at least one string");
    if (n > JS_MAX_ENUM) return cs_errf(err, errlen, CS_ERR_INVALID, "choices: %d strings (limit %d)", n, JS_MAX_ENUM);
    js_ctx c;
    ctx_init(&c, err, errlen);
    if (!(c.b = cs_gb_init())) return cs_errf(err, errlen, CS_ERR_NOMEM, "choices: out of memory");
    int32_t r = cs_gb_rule(c.b);
    js_trie(&c, cs_gb_start(c.b, r), choices, lens, n, NULL, -1);
    js_tick(&c, 0);
    return ctx_finish(&c, r, out);
}
