// Building a tokenizer's tables (vocabulary hash, merges hash, added-token trie, decode
// table) and the read-only accessors. The loaders in tokenizer_load.c drive the building.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "tokenizer_internal.h"
#include "unicode.h"

// --- GPT-2 byte map ----------------------------------------------------------------------
// Printable bytes stand for themselves; the others (controls, space, 0x7F-0xA0, 0xAD) are
// shifted to U+0100 upwards in byte order, so every byte has a visible character.
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t cs_tok_byte_to_cp(unsigned char b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (unsigned i = 0; i < b; i++) k += !byte_is_printable(i);
    return 256 + k;
}

int cs_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t k = 0;
    for (unsigned i = 0; i < 256; i++) {
        if (byte_is_printable(i)) continue;
        if (256 + k == cp) return (int)i;
        k++;
    }
    return -1;
}

// --- construction ------------------------------------------------------------------------
cs_tokenizer *cs_tok_new(cs_tok_kind kind, int32_t n_vocab) {
    CS_ASSERT(n_vocab > 0);
    cs_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->pretok = kind == CS_TOK_BYTE_BPE ? CS_PRETOK_GPT2 : CS_PRETOK_NONE;
    t->n_vocab = n_vocab;
    t->piece_off = calloc((size_t)n_vocab, sizeof *t->piece_off);
    t->piece_len = calloc((size_t)n_vocab, sizeof *t->piece_len);
    t->type = calloc((size_t)n_vocab, sizeof *t->type);
    t->eog = calloc((size_t)n_vocab, sizeof *t->eog);
    t->bos = t->eos = t->unk = t->pad = t->eot = t->eom = t->model_unk = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->pieces_cap = 1 << 12;
    t->pieces = malloc(t->pieces_cap);
    if (!t->pieces || !t->piece_off || !t->piece_len || !t->type || !t->eog) {
        cs_tokenizer_free(t);
        return NULL;
    }
    return t;
}

cs_status cs_tok_set_piece(cs_tokenizer *t, int32_t id, const char *s, size_t len, int type,
                           char *err, size_t errlen) {
    if (id < 0 || id >= t->n_vocab)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "token id %d out of range", (int)id);
    if (len > (1u << 20) || t->pieces_len + len > UINT32_MAX)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "token %d: piece too long", (int)id);
    if (t->pieces_len + len > t->pieces_cap) {
        size_t cap = t->pieces_cap ? t->pieces_cap * 2 : 1 << 16;
        while (cap < t->pieces_len + len) cap *= 2;
        char *p = realloc(t->pieces, cap);
        if (!p) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (vocabulary)");
        t->pieces = p;
        t->pieces_cap = cap;
    }
    if (len) memcpy(t->pieces + t->pieces_len, s, len);
    t->piece_off[id] = (uint32_t)t->pieces_len;
    t->piece_len[id] = (uint32_t)len;
    t->pieces_len += len;
    t->type[id] = (uint8_t)type;
    return CS_OK;
}

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u; // FNV-1a
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int32_t cs_tokenizer_find(const cs_tokenizer *t, const char *piece, size_t len) {
    if (!t->vmap) return -1;
    for (uint32_t i = hash_bytes(piece, len) & t->vmap_mask;; i = (i + 1) & t->vmap_mask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->piece_len[id] == len && memcmp(t->pieces + t->piece_off[id], piece, len) == 0)
            return id;
    }
}

// Adds an added/special token to the trie of strings matched before BPE.
static bool trie_add(cs_tokenizer *t, const unsigned char *s, size_t len, int32_t id) {
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].next_sibling;
        if (c < 0) {
            if (t->n_trie == t->cap_trie) {
                int cap = t->cap_trie * 2;
                cs_trie_node *p = realloc(t->trie, (size_t)cap * sizeof *p);
                if (!p) return false;
                t->trie = p;
                t->cap_trie = cap;
            }
            c = t->n_trie++;
            t->trie[c] = (cs_trie_node){-1, t->trie[node].first_child, -1, s[i]};
            t->trie[node].first_child = c;
        }
        node = c;
    }
    // Two added tokens with the same text: the first id wins, as in a vocabulary lookup.
    if (t->trie[node].token < 0) t->trie[node].token = id;
    return true;
}

static cs_status index_added(cs_tokenizer *t, char *err, size_t errlen) {
    t->cap_trie = 64;
    t->trie = malloc((size_t)t->cap_trie * sizeof *t->trie);
    if (!t->trie) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (trie)");
    t->trie[0] = (cs_trie_node){-1, -1, -1, 0};
    t->n_trie = 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->type[id] != CS_TT_CONTROL && t->type[id] != CS_TT_USER) continue;
        size_t len = t->piece_len[id];
        if (len == 0) continue;
        const unsigned char *s = (const unsigned char *)t->pieces + t->piece_off[id];
        if (!trie_add(t, s, len, id))
            return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (trie)");
        t->added_first[s[0]] = true;
    }
    return CS_OK;
}

// Byte-level: the token of each byte's mapped character. SPM: the <0xNN> tokens.
static void index_bytes(cs_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t n;
        if (t->kind == CS_TOK_BYTE_BPE) {
            n = (size_t)cs_utf8_put(cs_tok_byte_to_cp((unsigned char)b), buf);
            memcpy(t->bmap[b], buf, n); // the map's characters are all below U+0800
            t->bmap_len[b] = (uint8_t)n;
        } else
            n = (size_t)snprintf(buf, sizeof buf, "<0x%02X>", b);
        t->byte_id[b] = cs_tokenizer_find(t, buf, n);
    }
}

cs_status cs_tok_index_vocab(cs_tokenizer *t, char *err, size_t errlen) {
    uint32_t cap = pow2_at_least((size_t)t->n_vocab * 2);
    t->vmap = malloc(cap * sizeof *t->vmap);
    if (!t->vmap) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (vocab hash)");
    memset(t->vmap, 0xFF, cap * sizeof *t->vmap);
    t->vmap_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->type[id] == CS_TT_UNDEFINED) continue; // an id with no token (gap)
        const char *s = t->pieces + t->piece_off[id];
        size_t len = t->piece_len[id];
        if (cs_tokenizer_find(t, s, len) >= 0) continue; // duplicate text: keep the first
        uint32_t i = hash_bytes(s, len) & t->vmap_mask;
        while (t->vmap[i] >= 0) i = (i + 1) & t->vmap_mask;
        t->vmap[i] = id;
    }
    index_bytes(t);
    return index_added(t, err, errlen);
}

// --- merges ------------------------------------------------------------------------------
static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

cs_status cs_tok_reserve_merges(cs_tokenizer *t, size_t n, char *err, size_t errlen) {
    CS_ASSERT(!t->mslots);
    if (n > (1u << 26)) return cs_errf(err, errlen, CS_ERR_FORMAT, "too many merges (%zu)", n);
    uint32_t cap = pow2_at_least(n * 2 + 1);
    t->mslots = malloc(cap * sizeof *t->mslots);
    if (!t->mslots) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (merges)");
    memset(t->mslots, 0xFF, cap * sizeof *t->mslots);
    t->mmask = cap - 1;
    return CS_OK;
}

// Finds the merge of (a, b); false when there is none.
bool cs_tok_merge_find(const cs_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                       int32_t *merged) {
    if (!t->mslots || a < 0 || b < 0) return false;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = hash_pair(key) & t->mmask;; i = (i + 1) & t->mmask) {
        const cs_merge_slot *s = &t->mslots[i];
        if (s->key == key) {
            *rank = s->rank;
            *merged = s->merged;
            return true;
        }
        if (s->key == UINT64_MAX) return false;
    }
}

bool cs_tok_add_merge(cs_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                      uint32_t rank) {
    CS_ASSERT(t->mslots);
    if ((uint32_t)t->n_merges * 2 + 1 > t->mmask) return false; // more than reserved
    char stack[256];
    char *ab = alen + blen <= sizeof stack ? stack : malloc(alen + blen);
    if (!ab) return false;
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    int32_t ia = cs_tokenizer_find(t, a, alen), ib = cs_tokenizer_find(t, b, blen);
    int32_t iab = cs_tokenizer_find(t, ab, alen + blen);
    if (ab != stack) free(ab);
    if (ia < 0 || ib < 0 || iab < 0) return false;
    uint32_t r;
    int32_t m;
    if (cs_tok_merge_find(t, ia, ib, &r, &m)) return true; // a repeated pair keeps its first rank
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t i = hash_pair(key) & t->mmask;
    while (t->mslots[i].key != UINT64_MAX) i = (i + 1) & t->mmask;
    t->mslots[i] = (cs_merge_slot){key, rank, iab};
    t->n_merges++;
    return true;
}

typedef struct scored_id {
    float score;
    int32_t id;
} scored_id;

static int cmp_score_desc(const void *a, const void *b) {
    const scored_id *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

cs_status cs_tok_set_scores(cs_tokenizer *t, const float *scores, char *err, size_t errlen) {
    scored_id *order = malloc((size_t)t->n_vocab * sizeof *order);
    t->score_prio = malloc((size_t)t->n_vocab * sizeof *t->score_prio);
    if (!order || !t->score_prio) {
        free(order);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (scores)");
    }
    for (int32_t i = 0; i < t->n_vocab; i++)
        order[i] = (scored_id){scores[i] == scores[i] ? scores[i] : -1e30f, i}; // NaN: last
    qsort(order, (size_t)t->n_vocab, sizeof *order, cmp_score_desc);
    uint32_t prio = 0;
    for (int32_t k = 0; k < t->n_vocab; k++) {
        if (k > 0 && order[k].score != order[k - 1].score) prio = (uint32_t)k;
        t->score_prio[order[k].id] = prio;
    }
    free(order);
    return CS_OK;
}

// --- decode table, end-of-generation set -------------------------------------------------
// Byte-level: every character of the piece through the inverse byte map; a piece with a
// character outside the map is kept as it is (what Hugging Face's ByteLevel decoder does).
static size_t decode_bytelevel(const int16_t *inv, const char *s, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t k;
        uint32_t cp = cs_utf8_next(s + i, len - i, &k);
        if (cp >= 512 || inv[cp] < 0) {
            memcpy(out, s, len);
            return len;
        }
        out[n++] = (char)inv[cp];
        i += k;
    }
    return n;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// SentencePiece: <0xNN> is one byte, U+2581 is a space.
static size_t decode_spm(const char *s, size_t len, char *out) {
    if (len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hexval(s[3]) >= 0 &&
        hexval(s[4]) >= 0) {
        out[0] = (char)(hexval(s[3]) * 16 + hexval(s[4]));
        return 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[n++] = ' ';
            i += 3;
        } else {
            out[n++] = s[i++];
        }
    }
    return n;
}

static cs_status build_decode_table(cs_tokenizer *t, char *err, size_t errlen) {
    int16_t inv[512];
    for (int i = 0; i < 512; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[cs_tok_byte_to_cp((unsigned char)b)] = (int16_t)b;
    // Decoding never lengthens a piece.
    t->dec = malloc(t->pieces_len ? t->pieces_len : 1);
    t->dec_off = malloc((size_t)t->n_vocab * sizeof *t->dec_off);
    t->dec_len = malloc((size_t)t->n_vocab * sizeof *t->dec_len);
    if (!t->dec || !t->dec_off || !t->dec_len)
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (decode table)");
    size_t pos = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->pieces + t->piece_off[id];
        size_t len = t->piece_len[id];
        size_t n = t->kind == CS_TOK_BYTE_BPE ? decode_bytelevel(inv, s, len, t->dec + pos)
                                              : decode_spm(s, len, t->dec + pos);
        t->dec_off[id] = (uint32_t)pos;
        t->dec_len[id] = (uint32_t)n;
        if (n > t->max_dec_len) t->max_dec_len = n;
        pos += n;
    }
    return CS_OK;
}

static void mark_eog(cs_tokenizer *t) {
    static const char *names[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>",
                                  "</s>", "<end_of_turn>", "<|end|>"};
    int32_t ids[] = {t->eos, t->eot, t->eom};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i] >= 0 && ids[i] < t->n_vocab) t->eog[ids[i]] = true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = cs_tokenizer_find(t, names[i], strlen(names[i]));
        if (id >= 0 && t->type[id] == CS_TT_CONTROL) t->eog[id] = true;
    }
}

cs_status cs_tok_finish(cs_tokenizer *t, char *err, size_t errlen) {
    static const char *pre_names[] = {"gpt2", "smollm", "llama3", "qwen2", "none"};
    if (t->kind == CS_TOK_BYTE_BPE)
        snprintf(t->kind_name, sizeof t->kind_name, "byte-level BPE (%s)", pre_names[t->pretok]);
    else
        snprintf(t->kind_name, sizeof t->kind_name, "SentencePiece BPE%s",
                 t->score_prio ? " (scores)" : "");
    mark_eog(t);
    return build_decode_table(t, err, errlen);
}

// --- lifecycle and accessors -------------------------------------------------------------
void cs_tokenizer_free(cs_tokenizer *t) {
    if (!t) return;
    free(t->pieces);
    free(t->piece_off);
    free(t->piece_len);
    free(t->type);
    free(t->eog);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t->vmap);
    free(t->mslots);
    free(t->score_prio);
    free(t->trie);
    free(t->chat_template);
    free(t);
}

cs_tok_kind cs_tokenizer_kind(const cs_tokenizer *t) { return t->kind; }
cs_pretok cs_tokenizer_pretok(const cs_tokenizer *t) { return t->pretok; }
const char *cs_tokenizer_kind_name(const cs_tokenizer *t) { return t->kind_name; }
int32_t cs_tokenizer_vocab_size(const cs_tokenizer *t) { return t->n_vocab; }
int32_t cs_tokenizer_bos(const cs_tokenizer *t) { return t->bos; }
int32_t cs_tokenizer_eos(const cs_tokenizer *t) { return t->eos; }
const char *cs_tokenizer_chat_template(const cs_tokenizer *t) { return t->chat_template; }

bool cs_tokenizer_is_eog(const cs_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

bool cs_tokenizer_is_special(const cs_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->type[id] == CS_TT_CONTROL;
}

const char *cs_tokenizer_piece(const cs_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->type[id] == CS_TT_UNDEFINED) return NULL;
    if (len) *len = t->piece_len[id];
    return t->pieces + t->piece_off[id];
}

size_t cs_tokenizer_max_token_bytes(const cs_tokenizer *t) { return t->max_dec_len; }
