// The vocabulary index of token masks: every token that stands for text, sorted by its bytes,
// with the prefix each shares with the previous one, skip pointers over runs that share a
// prefix, and per token the set of bytes it holds (see token_mask.c for how the walk uses them).
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "token_mask_internal.h"

typedef struct sort_item {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
} sort_item;

// Byte order; a prefix before its extensions; equal bytes by id (a deterministic order).
static int cmp_item(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

// Reads every token's bytes into one buffer (unsorted) and lists the entries to sort.
// Returns the number of items, or -1 when out of memory or the vocabulary is too large.
static int32_t collect_tokens(cs_vocab_index *v, const cs_tokenizer *tok, uint8_t **raw_out,
                              sort_item **items_out) {
    int32_t n = v->n_vocab, n_items = 0, n_eog = 0;
    size_t total = 0, max_tok = cs_tokenizer_max_token_bytes(tok);
    if (n < 0) return -1;
    for (int32_t id = 0; id < n; id++) {
        if (cs_tokenizer_is_eog(tok, id)) n_eog++;
        else total += cs_tokenizer_token_bytes(tok, id, NULL, 0);
    }
    if (total > UINT32_MAX || max_tok > UINT32_MAX) return -1;
    uint8_t *raw = malloc(total ? total : 1);
    sort_item *items = malloc(sizeof *items * (size_t)(n ? n : 1));
    v->eog = malloc(sizeof *v->eog * (size_t)(n_eog ? n_eog : 1));
    if (!raw || !items || !v->eog) {
        free(raw);
        free(items);
        return -1;
    }
    size_t pos = 0;
    for (int32_t id = 0; id < n; id++) {
        if (cs_tokenizer_is_eog(tok, id)) {
            v->eog[v->n_eog++] = id;
            continue;
        }
        size_t len = cs_tokenizer_token_bytes(tok, id, (char *)raw + pos, total - pos);
        CS_ASSERT(len <= total - pos);
        if (len == 0) continue; // special tokens stand for no text: never allowed
        items[n_items++] = (sort_item){raw + pos, (uint32_t)len, id};
        pos += len;
    }
    *raw_out = raw;
    *items_out = items;
    return n_items;
}

// jump[i] = the first j > i with lcp[j] < lcp[i] ("next smaller value", one pass with a
// stack of entries still waiting for theirs).
static bool fill_jumps(cs_vocab_entry *ent, int32_t n) {
    uint32_t *stack = malloc(sizeof *stack * (size_t)(n ? n : 1));
    if (!stack) return false;
    int32_t sp = 0;
    for (int32_t j = 0; j < n; j++) {
        while (sp > 0 && ent[stack[sp - 1]].lcp > ent[j].lcp) ent[stack[--sp]].jump = (uint32_t)j;
        stack[sp++] = (uint32_t)j;
    }
    while (sp > 0) ent[stack[--sp]].jump = (uint32_t)n;
    free(stack);
    return true;
}

// Copies the sorted tokens' bytes together (the walk reads them in order) and fills lcp.
static bool build_entries(cs_vocab_index *v, const sort_item *items, int32_t n) {
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) total += items[i].len;
    v->bytes = malloc(total ? total : 1);
    v->ent = malloc(sizeof *v->ent * (size_t)(n ? n : 1));
    size_t words = ((size_t)v->n_vocab + 31) / 32 + 1;
    v->sig = calloc(2 * 32 * words, sizeof *v->sig);
    v->walkable = calloc(words, sizeof *v->walkable);
    v->sig_sorted = calloc(2 * 32 * ((size_t)n / 32 + 1), sizeof *v->sig_sorted);
    if (!v->bytes || !v->ent || !v->sig || !v->walkable || !v->sig_sorted) return false;
    uint32_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t lcp = 0;
        if (i > 0) {
            uint32_t m = items[i].len < items[i - 1].len ? items[i].len : items[i - 1].len;
            while (lcp < m && items[i].p[lcp] == items[i - 1].p[lcp]) lcp++;
        }
        memcpy(v->bytes + pos, items[i].p, items[i].len);
        v->walkable[items[i].id >> 5] |= 1u << (items[i].id & 31);
        for (uint32_t k = 0; k < items[i].len; k++) {
            uint32_t b = items[i].p[k] < 127 ? items[i].p[k] : 127;
            v->sig[2 * (size_t)items[i].id + b / 64] |= 1ull << (b % 64);
            v->sig_sorted[2 * (size_t)i + b / 64] |= 1ull << (b % 64);
        }
        v->ent[i] = (cs_vocab_entry){pos, items[i].len, lcp, 0, items[i].id};
        if (items[i].len > v->max_len) v->max_len = items[i].len;
        pos += items[i].len;
    }
    v->n_sorted = n;
    return fill_jumps(v->ent, n);
}

cs_vocab_index *cs_vocab_index_init(const cs_tokenizer *tok) {
    cs_vocab_index *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->n_vocab = cs_tokenizer_vocab_size(tok);
    uint8_t *raw = NULL;
    sort_item *items = NULL;
    int32_t n = collect_tokens(v, tok, &raw, &items);
    bool ok = n >= 0;
    if (ok) {
        qsort(items, (size_t)n, sizeof *items, cmp_item);
        ok = build_entries(v, items, n);
    }
    free(raw);
    free(items);
    if (!ok) {
        cs_vocab_index_free(v);
        return NULL;
    }
    return v;
}

void cs_vocab_index_free(cs_vocab_index *v) {
    if (!v) return;
    free(v->ent);
    free(v->bytes);
    free(v->sig);
    free(v->walkable);
    free(v->sig_sorted);
    free(v->eog);
    free(v);
}

int32_t cs_vocab_index_size(const cs_vocab_index *v) { return v->n_vocab; }
