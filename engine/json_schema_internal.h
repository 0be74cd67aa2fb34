// Shared between the json_schema*.c files: the compiler's context, its limits, and each
// noun's entry points. Not a public header.
//
// Conventions of every builder below: it adds states to rule `rule` (or a new rule it
// returns) of c->b; -1 means "failed, c->st says why"; JS_EMPTY means "matches nothing" (the
// caller drops that alternative). After an error every function returns at once.
#ifndef CS_JSON_SCHEMA_INTERNAL_H
#define CS_JSON_SCHEMA_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/status.h"
#include "grammar.h"

// --- limits (each a clear error when passed) ----------------------------------------------
#define JS_MAX_ENUM 65536          // values of one enum
#define JS_MAX_REPEAT 10000        // minItems/maxItems/minLength/maxLength expanded into states
#define JS_MAX_STATES (1 << 19)    // grammar states of one schema
#define JS_MAX_PROPERTIES 4096     // properties of one object
#define JS_MAX_WORK (1 << 22)      // compile steps (merges, sub-schemas, trie nodes)
#define JS_MAX_PATTERN_STATES 8192 // states of a pattern x format automaton (before lengths)
#define JS_MAX_REF_HOPS 64         // $ref -> $ref -> ... chains
#define JS_MAX_DIGITS 40           // numeric bounds at or past 1e40 are capped (or refused)
#define JS_MAX_FRAC 400            // fraction digits of a bound (5e-324 needs 324)
#define JS_MAX_INPROGRESS 128      // schemas being compiled at once (bounded by the depth)

#define JS_EMPTY (-2) // a rule id meaning "matches nothing"

// JSON types as a bit mask (integer is a subset of number).
enum {
    JS_T_NULL = 1,
    JS_T_BOOL = 2,
    JS_T_OBJECT = 4,
    JS_T_ARRAY = 8,
    JS_T_STRING = 16,
    JS_T_INTEGER = 32,
    JS_T_NUMBER = 64,
    JS_T_ALL = 127,
};

// A byte-string -> int32 map (open addressing, keys copied). Used for memo tables.
typedef struct js_map {
    uint64_t *hash;   // (cap) 0 = empty slot
    uint32_t *off;    // (cap) key offset in pool
    uint32_t *len;    // (cap)
    int32_t *val;     // (cap)
    uint32_t cap, n;
    char *pool;
    size_t pool_len, pool_cap;
} js_map;
bool js_map_get(const js_map *m, const void *key, size_t len, int32_t *val);
// Inserts or overwrites; false when out of memory.
bool js_map_put(js_map *m, const void *key, size_t len, int32_t val);
void js_map_free(js_map *m);

// A rule being built (its schema may refer back to it: recursion).
typedef struct js_inprogress {
    int32_t rule;
    uint32_t guard; // the consuming context it was entered in (left recursion check)
    bool used;      // referred to while being built
} js_inprogress;

typedef struct js_ctx {
    cs_gram_builder *b;
    const cJSON *root;
    char *err;
    size_t errlen;
    cs_status st; // the first error; once set, everything unwinds
    int depth;
    int64_t work;
    uint32_t guard, guard_next; // id of the innermost consuming context (see json_schema.c)
    js_inprogress inprog[JS_MAX_INPROGRESS];
    int n_inprog;
    js_map memo; // schema node / primitive description -> rule
    char path[192]; // where in the schema we are, for messages ("#/properties/a")
    size_t path_len;
    // shared rules, built on first use (-1 until then)
    int32_t r_string, r_char, r_number, r_integer, r_value, r_any_obj, r_any_arr;
} js_ctx;

// --- json_schema.c: errors, walk --------------------------------------------------------
// Records the first error (message plus the schema path) and returns -1.
int32_t js_fail(js_ctx *c, cs_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool js_tick(js_ctx *c, int64_t steps); // counts work and grammar size; false once failed
int32_t js_compile(js_ctx *c, const cJSON *schema, unsigned mask);
size_t js_path_push(js_ctx *c, const char *seg, const char *key); // returns the old length
void js_path_pop(js_ctx *c, size_t old);
const cJSON *js_resolve_alias(js_ctx *c, const cJSON *node, const char **via); // follows $ref-only schemas
bool js_is_annotation(const char *kw);
// Every keyword known and its value of the right JSON type; false after an error.
bool js_check_keywords(js_ctx *c, const cJSON *node);
// Consuming contexts (an object's value, an array's item): recursion through them is fine.
uint32_t js_enter_consuming(js_ctx *c);
void js_leave_consuming(js_ctx *c, uint32_t saved);
// A rule that calls each of rules[0..n) and ends (JS_EMPTY dropped); JS_EMPTY if none.
int32_t js_union(js_ctx *c, const int32_t *rules, int n);

// --- json_schema_object.c / json_schema_array.c ------------------------------------------
#define JS_MAX_MERGE 8 // schemas one allOf merges

// Adds to rule (from -> to) the objects nodes[0..n) allow together. merge: they come from an
// allOf, and must be object schemas (else one object schema's object keywords are used and
// the rest ignored). Returns false when no object is possible (or on error).
bool js_object_body(js_ctx *c, const cJSON *const *nodes, int n, bool merge, int32_t rule, int32_t from,
                    int32_t to);
bool js_array_body(js_ctx *c, const cJSON *node, int32_t rule, int32_t from, int32_t to);
// A rule for a value matching every schema of nodes[0..n) (an allOf of objects).
int32_t js_compile_all(js_ctx *c, const cJSON *const *nodes, int n, unsigned mask);

// --- json_schema_keys.c: the keys of an object -----------------------------------------------
// The listed properties, in order: keys[j] is the JSON text of the name plus ':' (e.g.
// "\"a\":"); before[j] the state before that key's value (the caller calls the value from there).
// From each source (the start, or after property k), the candidates are the properties
// after it up to the next required one; a trie over their keys, shared between sources.
typedef struct js_keys {
    int n;
    const char *const *keys;
    const size_t *lens;
    const bool *required;
    const int32_t *before; // (n)
} js_keys;
// Adds, from state src (after property `after`, or -1 at the start: no comma), the key
// trie of the next candidates; returns false when a required property must follow (so the
// object cannot close here).
bool js_keys_from(js_ctx *c, int32_t rule, const js_keys *k, void *trie, int after, int32_t src);
void *js_keys_trie(js_ctx *c, const js_keys *k); // the shared trie, NULL on error
void js_keys_trie_free(void *trie);
// Any key (escape-free JSON string) but names[0..n), then ':' -> returns the state after ':'.
int32_t js_other_key(js_ctx *c, int32_t rule, int32_t from, const char *const *names, int n);

// --- json_schema_types.c: strings, any value ----------------------------------------------
int32_t js_string_rule(js_ctx *c);      // any JSON string
int32_t js_char_rule(js_ctx *c);        // one character of a JSON string (no quotes)
int32_t js_any_rule(js_ctx *c, unsigned mask); // any JSON value of the masked types
int32_t js_any_object_rule(js_ctx *c);
int32_t js_string_schema(js_ctx *c, const cJSON *node); // type string with its keywords
// Code points [lo, hi] as UTF-8 byte paths from -> to (surrogates skipped).
void js_utf8_range(js_ctx *c, int32_t rule, int32_t from, uint32_t lo, uint32_t hi, int32_t to);
// The JSON text of a string, escaped as cJSON_PrintUnformatted does. Returns bytes written
// (need 6 * n + 3 room), quotes included.
size_t js_escape(const char *s, size_t n, char *out);

// --- json_schema_numbers.c ----------------------------------------------------------------
int32_t js_number_rule(js_ctx *c);  // any JSON number
int32_t js_integer_rule(js_ctx *c); // any JSON integer
int32_t js_numeric_schema(js_ctx *c, const cJSON *node, bool integer);

// --- json_schema_explore.c: strings of regexes --------------------------------------------
// The rule '"' ... '"' of the strings that every regex of res[0..n) (n = 1 or 2; what[i]
// names it in errors) fully matches, holding no character a JSON string must escape, with
// min_len <= characters <= max_len (max_len < 0: no maximum). JS_EMPTY when there is none.
int32_t js_regex_strings(js_ctx *c, const char *const *res, const char *const *what, int n, int64_t min_len,
                         int64_t max_len);

// --- json_schema_formats.c: format and pattern -------------------------------------------
// The string rule ('"' ... '"') of a string schema with a pattern and/or format, intersected
// with minLength/maxLength (max < 0: none).
int32_t js_pattern_string(js_ctx *c, const char *pattern, const char *format, int64_t min_len,
                          int64_t max_len);

// --- json_schema_literals.c: tries of literal strings --------------------------------------
// From `from`, consumes exactly one of strs[0..n) (n >= 1, duplicates fine), then goes on
// (epsilon) to ends[i]; with ends == NULL to `to`, or with to < 0 ends in an accepting state.
void js_trie(js_ctx *c, int32_t from, const char *const *strs, const size_t *lens, int n,
             const int32_t *ends, int32_t to);
int32_t js_enum_rule(js_ctx *c, const cJSON *node, unsigned mask); // enum or const

#endif
