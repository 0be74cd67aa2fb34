// Encoding (added tokens -> pre-tokenizer -> BPE) and decoding (whole text, streaming).
//
// BPE keeps a word's symbols in a doubly linked list and the candidate merges in a binary
// min-heap ordered by (priority, position): each merge is O(log n), so a 100 KB run of one
// letter is as cheap per byte as ordinary text. Priority is the merge rank (byte-level and
// tokenizer.json) or the rank of the merged piece's score (GGUF SentencePiece).
// Scratch memory lives for one encode call and grows geometrically; nothing is allocated per
// token.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "pretokenize.h"
#include "tokenizer_internal.h"
#include "unicode.h"

typedef struct sym {
    int32_t id;           // -1: not (yet) a token (SentencePiece scores: resolved at the end)
    uint32_t start, len;  // bytes of the word
    int32_t prev, next;   // -1 at the ends; len == 0 once merged into its left neighbour
} sym;

typedef struct cand {
    uint32_t prio;
    int32_t left, right;
    uint32_t llen, rlen; // the pair is stale when either side has grown since
    int32_t merged;
} cand;

typedef struct work {
    const cs_tokenizer *t;
    int32_t *ids;
    size_t cap, n; // output slots; ids needed so far
    sym *syms;
    size_t syms_cap;
    cand *heap;
    size_t nheap, heap_cap;
    char *norm; // SentencePiece: the segment with U+2581 for spaces
    size_t norm_cap;
    char *word; // ignore_merges: the word as vocabulary text
    size_t word_cap;
    bool nomem;
    bool stop_past_cap; // CS_TOK_STOP_PAST_CAP
} work;

// Whether encoding ends here: out of memory, or past cap when only "too long" matters.
static bool stop(const work *w) { return w->nomem || (w->stop_past_cap && w->n > w->cap); }

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static void put(work *w, int32_t id) {
    if (w->n < w->cap) w->ids[w->n] = id;
    w->n++;
}

// --- heap of candidate merges ------------------------------------------------------------
static bool cand_less(const cand *a, const cand *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(work *w, cand c) {
    if (!grow((void **)&w->heap, &w->heap_cap, w->nheap + 1, sizeof *w->heap)) {
        w->nomem = true;
        return;
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}

static cand heap_pop(work *w) {
    cand top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

// --- BPE over one pre-tokenized word -----------------------------------------------------
static void try_pair(work *w, const char *text, int32_t l, int32_t r) {
    const cs_tokenizer *t = w->t;
    if (l < 0 || r < 0) return;
    const sym *a = &w->syms[l], *b = &w->syms[r];
    uint32_t prio;
    int32_t merged;
    if (t->score_prio) {
        merged = cs_tokenizer_find(t, text + a->start, a->len + b->len);
        if (merged < 0 || (t->type[merged] != CS_TT_NORMAL && t->type[merged] != CS_TT_USER))
            return;
        prio = t->score_prio[merged];
    } else if (!cs_tok_merge_find(t, a->id, b->id, &prio, &merged)) {
        return;
    }
    heap_push(w, (cand){prio, l, r, a->len, b->len, merged});
}

static void add_sym(work *w, size_t *n, int32_t id, size_t start, size_t len) {
    sym *s = &w->syms[*n];
    *s = (sym){id, (uint32_t)start, (uint32_t)len, (int32_t)*n - 1, (int32_t)*n + 1};
    (*n)++;
}

// Initial symbols: bytes (byte-level) or characters (SentencePiece), with byte fallback or
// <unk> for characters that are not tokens (except when merging by score: resolved last).
// Like Hugging Face's BPE, a character with no token and no <unk> is dropped, and its
// neighbours become adjacent.
static size_t init_syms(work *w, const char *text, size_t len) {
    const cs_tokenizer *t = w->t;
    size_t n = 0;
    if (t->kind == CS_TOK_BYTE_BPE) {
        for (size_t i = 0; i < len; i++) {
            int32_t id = t->byte_id[(unsigned char)text[i]];
            if (id < 0) id = t->model_unk;
            if (id >= 0) add_sym(w, &n, id, i, 1);
        }
        return n;
    }
    for (size_t i = 0; i < len;) {
        size_t k;
        cs_utf8_next(text + i, len - i, &k);
        int32_t id = cs_tokenizer_find(t, text + i, k);
        bool bytes_ok = true;
        for (size_t j = 0; j < k; j++) bytes_ok &= t->byte_id[(unsigned char)text[i + j]] >= 0;
        if (id >= 0 || t->score_prio) add_sym(w, &n, id, i, k);
        else if (t->byte_fallback && bytes_ok)
            for (size_t j = 0; j < k; j++)
                add_sym(w, &n, t->byte_id[(unsigned char)text[i + j]], i + j, 1);
        else if (t->model_unk >= 0) add_sym(w, &n, t->model_unk, i, k);
        i += k;
    }
    return n;
}

static void emit_sym(work *w, const char *text, const sym *s) {
    const cs_tokenizer *t = w->t;
    if (s->id >= 0) {
        put(w, s->id);
        return;
    }
    // Only merging by score leaves symbols without a token: byte fallback, else <unk>.
    bool bytes_ok = true;
    for (uint32_t j = 0; j < s->len; j++) bytes_ok &= t->byte_id[(unsigned char)text[s->start + j]] >= 0;
    if (!bytes_ok) {
        if (t->model_unk >= 0) put(w, t->model_unk);
        return;
    }
    for (uint32_t j = 0; j < s->len; j++) put(w, t->byte_id[(unsigned char)text[s->start + j]]);
}

// A word that is a vocabulary entry as a whole is one token (tokenizer.json ignore_merges).
static bool whole_word(work *w, const char *text, size_t len) {
    const cs_tokenizer *t = w->t;
    if (t->kind != CS_TOK_BYTE_BPE) {
        int32_t id = cs_tokenizer_find(t, text, len);
        if (id >= 0) put(w, id);
        return id >= 0;
    }
    if (!grow((void **)&w->word, &w->word_cap, 2 * len, 1)) {
        w->nomem = true;
        return true;
    }
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)text[i];
        memcpy(w->word + m, t->bmap[b], t->bmap_len[b]);
        m += t->bmap_len[b];
    }
    int32_t id = cs_tokenizer_find(t, w->word, m);
    if (id >= 0) put(w, id);
    return id >= 0;
}

static void bpe_word(work *w, const char *text, size_t len) {
    if (len == 0) return;
    if (w->t->ignore_merges && whole_word(w, text, len)) return;
    if (!grow((void **)&w->syms, &w->syms_cap, len, sizeof *w->syms)) {
        w->nomem = true;
        return;
    }
    size_t n = init_syms(w, text, len);
    if (n == 0) return;
    w->syms[n - 1].next = -1;
    w->nheap = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(w, text, (int32_t)i, (int32_t)i + 1);
    while (w->nheap > 0 && !w->nomem) {
        cand c = heap_pop(w);
        sym *a = &w->syms[c.left], *b = &w->syms[c.right];
        if (a->len != c.llen || a->next != c.right || b->len != c.rlen) continue; // stale
        a->id = c.merged;
        a->len += b->len;
        a->next = b->next;
        if (b->next >= 0) w->syms[b->next].prev = c.left;
        b->len = 0;
        try_pair(w, text, a->prev, c.left);
        try_pair(w, text, c.left, a->next);
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next) emit_sym(w, text, &w->syms[i]);
}

// --- text between added tokens -----------------------------------------------------------
static void encode_bytelevel(work *w, const char *s, size_t len) {
    cs_pretok_iter it;
    cs_pretok_iter_init(&it, w->t->pretok, s, len);
    size_t start, n;
    while (!stop(w) && cs_pretok_iter_next(&it, &start, &n)) bpe_word(w, s + start, n);
}

static const char SPACE_MARK[3] = {'\xE2', '\x96', '\x81'}; // U+2581

// SentencePiece: spaces become U+2581, a U+2581 is prefixed as the model says, then the
// whole segment is one word (or, with Metaspace split, one word per U+2581).
static void encode_spm(work *w, const char *s, size_t len, bool at_start) {
    const cs_tokenizer *t = w->t;
    if (!grow((void **)&w->norm, &w->norm_cap, 3 * len + 3, 1)) {
        w->nomem = true;
        return;
    }
    size_t m = 0;
    bool prefix = t->spm_prefix == CS_SPM_PREFIX_ALWAYS ||
                  (t->spm_prefix == CS_SPM_PREFIX_FIRST && at_start);
    if (prefix && t->spm_prefix_if_missing && (s[0] == ' ' || (len >= 3 && !memcmp(s, SPACE_MARK, 3))))
        prefix = false;
    if (prefix) {
        memcpy(w->norm, SPACE_MARK, 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(w->norm + m, SPACE_MARK, 3);
            m += 3;
        } else {
            w->norm[m++] = s[i];
        }
    }
    if (!t->spm_split) {
        bpe_word(w, w->norm, m);
        return;
    }
    size_t word = 0;
    for (size_t i = 1; i + 3 <= m && !stop(w); i++) {
        if (memcmp(w->norm + i, SPACE_MARK, 3) != 0) continue;
        bpe_word(w, w->norm + word, i - word);
        word = i;
        i += 2;
    }
    if (!stop(w)) bpe_word(w, w->norm + word, m - word);
}

static void encode_segment(work *w, const char *s, size_t len, bool at_start) {
    if (len == 0) return;
    if (w->t->kind == CS_TOK_BYTE_BPE) encode_bytelevel(w, s, len);
    else encode_spm(w, s, len, at_start);
}

// Longest added token that starts at s[p] and may be matched here, or -1.
static int32_t match_added(const cs_tokenizer *t, const char *s, size_t len, size_t p,
                           bool parse_special, size_t *mlen) {
    int32_t node = 0, best = -1;
    for (size_t i = p; i < len; i++) {
        int32_t c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != (unsigned char)s[i]) c = t->trie[c].next_sibling;
        if (c < 0) break;
        node = c;
        int32_t id = t->trie[node].token;
        if (id >= 0 && (parse_special || t->type[id] != CS_TT_CONTROL)) {
            best = id;
            *mlen = i + 1 - p;
        }
    }
    return best;
}

int cs_tokenizer_encode(const cs_tokenizer *t, const char *text, size_t len, int flags,
                        int32_t *ids, int cap) {
    if (cap < 0 || (cap > 0 && !ids) || (len > 0 && !text)) return CS_ERR_INVALID;
    work w = {.t = t, .ids = ids, .cap = (size_t)cap, .stop_past_cap = flags & CS_TOK_STOP_PAST_CAP};
    bool parse_special = flags & CS_TOK_PARSE_SPECIAL;
    if ((flags & CS_TOK_ADD_SPECIAL) && t->add_bos && t->bos >= 0) put(&w, t->bos);
    size_t seg = 0;
    for (size_t p = 0; p < len && !stop(&w); p++) {
        if (!t->added_first[(unsigned char)text[p]]) continue;
        size_t mlen = 0;
        int32_t id = match_added(t, text, len, p, parse_special, &mlen);
        if (id < 0) continue;
        encode_segment(&w, text + seg, p - seg, seg == 0);
        put(&w, id);
        seg = p + mlen;
        p = seg - 1;
    }
    if (seg < len && !stop(&w)) encode_segment(&w, text + seg, len - seg, seg == 0);
    if ((flags & CS_TOK_ADD_SPECIAL) && t->add_eos && t->eos >= 0) put(&w, t->eos);
    free(w.syms);
    free(w.heap);
    free(w.norm);
    free(w.word);
    if (w.nomem) return CS_ERR_NOMEM;
    if (w.n > INT_MAX) return CS_ERR_INVALID;
    return (int)w.n;
}

// --- decoding ----------------------------------------------------------------------------
// The decoded bytes of id, with the leading space a SentencePiece decoder strips from the
// first token of a text. NULL for ids that name no token.
static const char *token_bytes(const cs_tokenizer *t, int32_t id, bool first, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->type[id] == CS_TT_UNDEFINED) return NULL;
    const char *d = t->dec + t->dec_off[id];
    *len = t->dec_len[id];
    if (first && t->strip_leading_space && *len > 0 && d[0] == ' ') {
        d++;
        (*len)--;
    }
    return d;
}

size_t cs_tokenizer_token_bytes(const cs_tokenizer *t, int32_t id, char *out, size_t cap) {
    size_t len;
    if (id < 0 || id >= t->n_vocab || t->type[id] == CS_TT_CONTROL || t->type[id] == CS_TT_UNKNOWN)
        return 0;
    const char *d = token_bytes(t, id, false, &len);
    if (!d) return 0;
    if (len > 0 && len <= cap) memcpy(out, d, len);
    return len;
}

size_t cs_tokenizer_decode(const cs_tokenizer *t, const int32_t *ids, size_t n,
                           bool skip_special, char *out, size_t cap) {
    unsigned char pending[4];
    int n_pending = 0;
    size_t pos = 0;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && cs_tokenizer_is_special(t, ids[i])) continue;
        size_t len;
        const char *d = token_bytes(t, ids[i], first, &len);
        if (!d) continue;
        first = false;
        cs_utf8_lossy_push(pending, &n_pending, (const unsigned char *)d, len, out, cap, &pos);
    }
    cs_utf8_lossy_flush(pending, &n_pending, out, cap, &pos);
    return pos;
}

size_t cs_detok_push(cs_detok *d, const cs_tokenizer *t, int32_t id, char *out, size_t cap) {
    size_t len;
    const char *b = token_bytes(t, id, !d->started, &len);
    if (!b) return 0;
    CS_ASSERT(d->n_pending >= 0 && d->n_pending <= 3);
    // Measure first on a copy, so a push that does not fit changes nothing.
    unsigned char p2[8];
    int n2 = d->n_pending;
    memcpy(p2, d->pending, sizeof p2);
    size_t need = 0;
    cs_utf8_lossy_push(p2, &n2, (const unsigned char *)b, len, NULL, 0, &need);
    if (need > cap) return need;
    size_t pos = 0;
    cs_utf8_lossy_push(d->pending, &d->n_pending, (const unsigned char *)b, len, out, cap, &pos);
    d->started = true;
    return pos;
}

size_t cs_detok_flush(cs_detok *d, char *out, size_t cap) {
    size_t pos = 0;
    if (d->n_pending > 0 && cap < 3) return 3;
    cs_utf8_lossy_flush(d->pending, &d->n_pending, out, cap, &pos);
    return pos;
}
