// KV blocks handed out to sequences: a free list over the block ids of one cs_kv_cache, and
// per-sequence block tables that grow as tokens are appended.
//
// This is the simple allocator the single-stream commands use; the batch engine's block
// manager (reference counts, prefix cache) keeps the same verbs.
#ifndef CS_BLOCK_ALLOC_H
#define CS_BLOCK_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/status.h"

typedef struct cs_block_alloc {
    int n_blocks, block_size;
    int32_t *free_ids; // stack of free block ids
    int n_free;
} cs_block_alloc;

cs_status cs_block_alloc_init(cs_block_alloc *a, int n_blocks, int block_size);
void cs_block_alloc_free(cs_block_alloc *a);

typedef struct cs_seq_blocks {
    int32_t *ids; // block table
    int n, cap;
} cs_seq_blocks;

// Can the sequence grow to len tokens? Then grow it (allocating blocks as needed).
bool cs_seq_can_grow(const cs_block_alloc *a, const cs_seq_blocks *s, int len);
cs_status cs_seq_grow(cs_block_alloc *a, cs_seq_blocks *s, int len);
// Returns all the sequence's blocks to the free list and frees its table.
void cs_seq_release(cs_block_alloc *a, cs_seq_blocks *s);
// The KV slot of token position pos of the sequence.
static inline int32_t cs_seq_slot(const cs_block_alloc *a, const cs_seq_blocks *s, int pos) {
    return s->ids[pos / a->block_size] * a->block_size + pos % a->block_size;
}

#endif
