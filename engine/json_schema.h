// JSON Schema (the subset in README.md, "Constrained decoding") compiled to a byte-level
// grammar (engine/grammar.h) that generates exactly the compact JSON texts the schema accepts:
// no whitespace between tokens, object properties in the schema's order.
//
//     cs_grammar *g;
//     if (cs_json_schema_compile(text, len, &g, err, sizeof err) != CS_OK) reject(err);
//
// An unsupported keyword, a malformed schema, a $ref that does not resolve, or a schema past
// the limits (nesting, enum size, grammar size) is an error naming the keyword or the limit,
// never silently ignored. Annotations (title, description, default, examples, $schema, $id,
// $comment, deprecated, readOnly, writeOnly) are ignored.
#ifndef CS_JSON_SCHEMA_H
#define CS_JSON_SCHEMA_H

#include <stddef.h>

#include "../common/status.h"
#include "grammar.h"

#define CS_JSON_SCHEMA_MAX_BYTES (1u << 20) // schema text
#define CS_JSON_SCHEMA_MAX_DEPTH 64         // nesting of schema objects

// Compiles len bytes of JSON schema text (need not be NUL-terminated).
cs_status cs_json_schema_compile(const char *schema, size_t len, cs_grammar **out, char *err, size_t errlen);
// The grammar of any JSON object (json_object: true), compact.
cs_status cs_json_object_grammar(cs_grammar **out, char *err, size_t errlen);
// The grammar of exactly one of n strings (choices), taken literally.
cs_status cs_choice_grammar(const char *const *choices, const size_t *lens, int n, cs_grammar **out, char *err,
                            size_t errlen);

#endif
