// Internals shared by tokenizer.c (encode/decode) and tokenizer_load.c (GGUF and
// tokenizer.json loaders). Not for use outside the tokenizer.
//
// Building a tokenizer, in this order:
//     t = cs_tok_new(kind, n_vocab);
//     cs_tok_set_piece(t, id, piece, len, type);     // every id, any order
//     cs_tok_index_vocab(t, err, errlen);            // vocab hash, byte map, added-token trie
//     cs_tok_add_merge(t, a, alen, b, blen, rank);   // byte-level / tokenizer.json BPE
//     cs_tok_set_scores(t, scores);                  // or: GGUF SentencePiece scores
//     ... bos/eos/flags ...
//     cs_tok_finish(t, err, errlen);                 // decode table, end-of-generation set
#ifndef CS_TOKENIZER_INTERNAL_H
#define CS_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

// Token types, numbered as GGUF's tokenizer.ggml.token_type.
enum {
    CS_TT_UNDEFINED = 0,
    CS_TT_NORMAL = 1,
    CS_TT_UNKNOWN = 2,
    CS_TT_CONTROL = 3, // special: matched only with CS_TOK_PARSE_SPECIAL
    CS_TT_USER = 4,    // added, not special: always matched before BPE
    CS_TT_UNUSED = 5,
    CS_TT_BYTE = 6,    // SentencePiece byte fallback <0xNN>
};

// How SentencePiece-style text gets its U+2581 prefix.
typedef enum cs_spm_prefix {
    CS_SPM_PREFIX_NEVER,
    CS_SPM_PREFIX_FIRST,  // only the text at the very start (Metaspace prepend_scheme "first")
    CS_SPM_PREFIX_ALWAYS, // every text segment, also after special tokens (Llama-2, GGUF)
} cs_spm_prefix;

typedef struct cs_trie_node {
    int32_t first_child, next_sibling; // -1 for none
    int32_t token;                     // token ending here, -1 for none
    unsigned char byte;
} cs_trie_node;

typedef struct cs_merge_slot {
    uint64_t key; // left << 32 | right; UINT64_MAX when empty
    uint32_t rank;
    int32_t merged;
} cs_merge_slot;

struct cs_tokenizer {
    cs_tok_kind kind;
    cs_pretok pretok;
    char kind_name[64];
    int32_t n_vocab;

    // Vocabulary strings as stored, in one buffer.
    char *pieces;
    size_t pieces_len, pieces_cap;
    uint32_t *piece_off, *piece_len; // (n_vocab)
    uint8_t *type;                   // (n_vocab) CS_TT_*
    bool *eog;                       // (n_vocab)

    // Decoded bytes of each token (byte map undone, U+2581 -> space, <0xNN> -> byte).
    char *dec;
    uint32_t *dec_off, *dec_len; // (n_vocab)
    size_t max_dec_len;

    // Open-addressed hash: vocabulary string -> id. Slots hold id, or -1 when empty.
    int32_t *vmap;
    uint32_t vmap_mask;

    // Open-addressed hash: (left id, right id) -> (rank, merged id), one 16-byte slot per
    // entry so a probe touches one cache line.
    cs_merge_slot *mslots;
    uint32_t mmask;
    int n_merges;

    // GGUF SentencePiece: merge by score of the concatenation; prio = rank of the score
    // (0 = highest), equal scores equal prio. NULL when merging by rank.
    uint32_t *score_prio;

    // byte-level: id of the GPT-2 mapped character of each byte; SPM: id of <0xNN>; or -1.
    int32_t byte_id[256];
    char bmap[256][2]; // byte-level: UTF-8 of each byte's mapped character
    uint8_t bmap_len[256];
    bool byte_fallback;
    bool ignore_merges; // a pre-tokenized word already in the vocabulary is one token

    cs_trie_node *trie; // added/special tokens, node 0 = root
    int n_trie, cap_trie;
    bool added_first[256];

    int32_t bos, eos, unk, pad, eot, eom;
    int32_t model_unk; // what BPE emits for a character it cannot encode; -1: drop it
    bool add_bos, add_eos;
    cs_spm_prefix spm_prefix;
    bool spm_prefix_if_missing; // Metaspace: no U+2581 added to text that starts with one
    bool spm_split;           // Metaspace split=true: each U+2581 starts a new word
    bool strip_leading_space; // decoder drops the first token's leading space (SPM)
    char *chat_template;
};

cs_tokenizer *cs_tok_new(cs_tok_kind kind, int32_t n_vocab);
cs_status cs_tok_set_piece(cs_tokenizer *t, int32_t id, const char *s, size_t len, int type,
                           char *err, size_t errlen);
cs_status cs_tok_index_vocab(cs_tokenizer *t, char *err, size_t errlen);
// Returns false when a, b or their concatenation is not in the vocabulary (skipped).
bool cs_tok_add_merge(cs_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                      uint32_t rank);
bool cs_tok_merge_find(const cs_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                       int32_t *merged);
cs_status cs_tok_reserve_merges(cs_tokenizer *t, size_t n, char *err, size_t errlen);
cs_status cs_tok_set_scores(cs_tokenizer *t, const float *scores, char *err, size_t errlen);
cs_status cs_tok_finish(cs_tokenizer *t, char *err, size_t errlen);

// GPT-2's byte <-> printable code point map.
uint32_t cs_tok_byte_to_cp(unsigned char b);
int cs_tok_cp_to_byte(uint32_t cp); // -1 when cp is not in the map

#endif
