// Internals shared by token_mask_vocab.c (the vocabulary index) and token_mask.c (the mask
// walk and cache). Not for use outside them.
#ifndef CS_TOKEN_MASK_INTERNAL_H
#define CS_TOKEN_MASK_INTERNAL_H

#include "token_mask.h"

typedef struct cs_vocab_entry {
    uint32_t off;  // bytes at v->bytes + off
    uint32_t len;  // > 0
    uint32_t lcp;  // bytes shared with the previous entry (0 for the first)
    uint32_t jump; // the first later entry with lcp < this one's (n_sorted when none)
    int32_t id;
} cs_vocab_entry;

struct cs_vocab_index {
    int32_t n_vocab;
    int32_t n_sorted;     // tokens with bytes, except end-of-generation ones
    cs_vocab_entry *ent;     // (n_sorted) in byte order
    uint8_t *bytes;       // every entry's bytes, concatenated in sorted order
    uint64_t *sig;        // (2 * 32 * words) by id, which bytes the token holds: bit b for
                          // b < 127, bit 127 for any of 127..255
    uint64_t *sig_sorted; // the same by sorted position (padded to whole words of 32)
    uint32_t *walkable;   // (words) bit per id: the id is in ent
    uint32_t max_len;     // longest entry
    int32_t *eog;         // (n_eog) end-of-generation ids: allowed iff the grammar can end
    int32_t n_eog;
};

#endif
