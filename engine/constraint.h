// Constrained decoding inside the engine: compiled grammars shared by requests (cached by
// their text), and each sequence's matcher and token mask.
//
//     cs_constraint_cache *cc = cs_cc_init(tok, 64);
//     cs_compiled *g;                                      // at submit, off the engine step
//     if (cs_cc_get(cc, &request, &g, err, sizeof err) != CS_OK) reject(err);   // g NULL: none
//     cs_constraint *k = cs_constraint_init(g, vocab);    // per sequence, engine thread
//     int n = cs_constraint_mask(k, &single);             // before sampling
//     cs_constraint_apply(k, logits);                      // disallowed logits -> -inf
//     cs_constraint_accept(k, id);                         // after the token is chosen
#ifndef CS_CONSTRAINT_H
#define CS_CONSTRAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "../include/cserve/engine.h"
#include "tokenizer.h"

typedef struct cs_constraint_cache cs_constraint_cache;
typedef struct cs_compiled cs_compiled;
typedef struct cs_constraint cs_constraint;

// tok is borrowed. Keeps at most max_grammars compiled grammars not in use. NULL: no memory.
cs_constraint_cache *cs_cc_init(const cs_tokenizer *tok, int max_grammars);
void cs_cc_free(cs_constraint_cache *c);
// The compiled grammar of the request's constraint (json_schema, json_object, regex or
// choices), compiled now or found in the cache; *out NULL when the request has none. An
// invalid constraint is CS_ERR_INVALID with the reason. Thread-safe; the caller releases.
cs_status cs_cc_get(cs_constraint_cache *c, const cs_request *q, cs_compiled **out, char *err, size_t errlen);
void cs_cc_release(cs_constraint_cache *c, cs_compiled *g);

// Per sequence (engine thread only): the matcher at the start of g, for logits rows of vocab
// entries (the model's vocabulary; ids past the tokenizer's are never allowed). NULL: no memory.
cs_constraint *cs_constraint_init(cs_compiled *g, int32_t vocab);
void cs_constraint_free(cs_constraint *k);
// The allowed tokens for the next position (computed once per position); returns how many,
// *single = the only one when exactly one is allowed, else -1.
int cs_constraint_mask(cs_constraint *k, int32_t *single);
// The mask as a bitset of (vocab + 31) / 32 words (bit t of word t / 32), valid until the next
// accept.
const uint32_t *cs_constraint_bits(cs_constraint *k);
// logits (vocab) of disallowed tokens -> -INFINITY.
void cs_constraint_apply(cs_constraint *k, float *logits);
// Moves past token id (which the mask allowed). False if the grammar refuses it (a bug).
bool cs_constraint_accept(cs_constraint *k, int32_t id);

#endif
