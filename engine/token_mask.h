// Which tokens a grammar allows next: the vocabulary's decoded bytes sorted once per
// tokenizer, and per grammar a cache of masks keyed by the matcher's state.
//
//     cs_vocab_index *v = cs_vocab_index_init(tok);            // once per model
//     cs_mask_cache *c = cs_mask_cache_init(g, v, 64 << 20);  // once per grammar
//     int32_t single;
//     int n = cs_token_mask(c, matcher, bits, &single);        // bits: (vocab + 31) / 32 words
//
// Token t is allowed when the matcher can consume all of t's bytes; end-of-generation tokens
// are allowed exactly when the matcher can end here; other special tokens and tokens with no
// bytes never are. The matcher is left as it was.
#ifndef CS_TOKEN_MASK_H
#define CS_TOKEN_MASK_H

#include <stddef.h>
#include <stdint.h>

#include "grammar.h"
#include "tokenizer.h"

typedef struct cs_vocab_index cs_vocab_index;
typedef struct cs_mask_cache cs_mask_cache;

// tok is borrowed and must outlive the index. NULL when out of memory.
cs_vocab_index *cs_vocab_index_init(const cs_tokenizer *tok);
void cs_vocab_index_free(cs_vocab_index *v);
int32_t cs_vocab_index_size(const cs_vocab_index *v); // the vocabulary size

// g and v are borrowed. The cache keeps at most max_bytes of masks (least recently used out).
// Not thread-safe: one thread at a time.
cs_mask_cache *cs_mask_cache_init(const cs_grammar *g, const cs_vocab_index *v, size_t max_bytes);
void cs_mask_cache_free(cs_mask_cache *c);

// Writes the allowed-token bitset (bit t of word t / 32) for m's current state; returns how
// many tokens are allowed, and *single = the one allowed token when exactly one is (else -1).
int cs_token_mask(cs_mask_cache *c, cs_gram_matcher *m, uint32_t *bits, int32_t *single);

typedef struct cs_mask_stats {
    uint64_t calls, hits; // cache lookups and hits
    size_t bytes;         // cached mask bytes
} cs_mask_stats;
void cs_mask_cache_stats(const cs_mask_cache *c, cs_mask_stats *s);

#endif
