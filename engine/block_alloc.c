#include "block_alloc.h"

#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"

cs_status cs_block_alloc_init(cs_block_alloc *a, int n_blocks, int block_size) {
    memset(a, 0, sizeof *a);
    a->free_ids = malloc((size_t)(n_blocks > 0 ? n_blocks : 1) * sizeof *a->free_ids);
    if (!a->free_ids) return CS_ERR_NOMEM;
    a->n_blocks = n_blocks;
    a->block_size = block_size;
    // lowest ids on top of the stack, so allocation order is predictable in tests
    for (int i = 0; i < n_blocks; i++) a->free_ids[i] = n_blocks - 1 - i;
    a->n_free = n_blocks;
    return CS_OK;
}

void cs_block_alloc_free(cs_block_alloc *a) {
    if (!a) return;
    free(a->free_ids);
    memset(a, 0, sizeof *a);
}

static int blocks_for(const cs_block_alloc *a, int len) { return (len + a->block_size - 1) / a->block_size; }

bool cs_seq_can_grow(const cs_block_alloc *a, const cs_seq_blocks *s, int len) {
    int need = blocks_for(a, len) - s->n;
    return need <= a->n_free;
}

cs_status cs_seq_grow(cs_block_alloc *a, cs_seq_blocks *s, int len) {
    int want = blocks_for(a, len);
    if (want - s->n > a->n_free) return CS_ERR_NOMEM;
    if (want > s->cap) {
        int cap = want > 2 * s->cap ? want : 2 * s->cap;
        int32_t *ids = realloc(s->ids, (size_t)cap * sizeof *ids);
        if (!ids) return CS_ERR_NOMEM;
        s->ids = ids;
        s->cap = cap;
    }
    while (s->n < want) s->ids[s->n++] = a->free_ids[--a->n_free];
    return CS_OK;
}

void cs_seq_release(cs_block_alloc *a, cs_seq_blocks *s) {
    for (int i = s->n - 1; i >= 0; i--) {
        CS_ASSERT(a->n_free < a->n_blocks);
        a->free_ids[a->n_free++] = s->ids[i];
    }
    free(s->ids);
    memset(s, 0, sizeof *s);
}
