// Tokenizer: byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM2 families) and SentencePiece-style
// BPE (Llama-2, Mistral: U+2581 for spaces, <0xNN> byte fallback), loaded from GGUF metadata
// (tokenizer.ggml.*) or from a Hugging Face tokenizer.json.
//
//     cs_tokenizer *tok;
//     cs_tokenizer_from_gguf(g, &tok, err, sizeof err);
//     int32_t ids[256];
//     int n = cs_tokenizer_encode(tok, "Hello", 5, CS_TOK_ADD_SPECIAL | CS_TOK_PARSE_SPECIAL,
//                                 ids, 256);          // n > 256: call again with n slots
//     cs_detok d = {0};
//     char buf[64];
//     size_t k = cs_detok_push(&d, tok, ids[0], buf, sizeof buf); // whole UTF-8 chars only
//     cs_tokenizer_free(tok);
//
// A tokenizer is immutable after loading and safe to share between threads.
#ifndef CS_TOKENIZER_H
#define CS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"

struct cs_gguf;
typedef struct cs_tokenizer cs_tokenizer;

typedef enum cs_tok_kind {
    CS_TOK_BYTE_BPE, // GPT-2 byte-to-unicode map, merges by rank
    CS_TOK_SPM_BPE,  // SentencePiece-style: U+2581 spaces, byte fallback
} cs_tok_kind;

typedef enum cs_pretok {
    CS_PRETOK_GPT2,   // 's|'t|... ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    CS_PRETOK_SMOLLM, // \p{N} split into single digits, then GPT2
    CS_PRETOK_LLAMA3, // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    CS_PRETOK_QWEN2,  // as LLAMA3 with \p{N} single digits
    CS_PRETOK_NONE,   // SPM: no regex split
} cs_pretok;

enum {
    CS_TOK_ADD_SPECIAL = 1,   // add BOS (and EOS) where the model's config asks for them
    CS_TOK_PARSE_SPECIAL = 2, // text like "<|im_start|>" becomes the special token
    CS_TOK_STOP_PAST_CAP = 4, // stop at the first pre-tokenised word past cap ids: the return
                              // is then only known to be > cap (a length check, not a count);
                              // SentencePiece without a split takes a whole segment as one word
};

cs_status cs_tokenizer_from_gguf(const struct cs_gguf *g, cs_tokenizer **out, char *err,
                                 size_t errlen);
// tokenizer_json is required; tokenizer_config_json (add_bos_token, chat_template, special
// token names) may be NULL. Both are file paths.
cs_status cs_tokenizer_from_hf(const char *tokenizer_json, const char *tokenizer_config_json,
                               cs_tokenizer **out, char *err, size_t errlen);
// Same from the files' contents in memory (config may be NULL); for tests and the fuzzer.
cs_status cs_tokenizer_from_hf_json_mem(const char *json, size_t len, const char *config,
                                        size_t config_len, cs_tokenizer **out, char *err,
                                        size_t errlen);
void cs_tokenizer_free(cs_tokenizer *tok);

cs_tok_kind cs_tokenizer_kind(const cs_tokenizer *tok);
cs_pretok cs_tokenizer_pretok(const cs_tokenizer *tok);
const char *cs_tokenizer_kind_name(const cs_tokenizer *tok); // "byte-level BPE (smollm)"
int32_t cs_tokenizer_vocab_size(const cs_tokenizer *tok);
int32_t cs_tokenizer_bos(const cs_tokenizer *tok); // -1 if none
int32_t cs_tokenizer_eos(const cs_tokenizer *tok); // -1 if none
// End-of-generation: eos, eot, <|im_end|>, <|eot_id|> and the like.
bool cs_tokenizer_is_eog(const cs_tokenizer *tok, int32_t id);
bool cs_tokenizer_is_special(const cs_tokenizer *tok, int32_t id);
// The chat template text from the file, or NULL.
const char *cs_tokenizer_chat_template(const cs_tokenizer *tok);
// Token id of an exact vocabulary string (as stored, e.g. "<|im_end|>"), or -1.
int32_t cs_tokenizer_find(const cs_tokenizer *tok, const char *piece, size_t len);
// The stored vocabulary string of id (not the decoded bytes), or NULL when out of range.
const char *cs_tokenizer_piece(const cs_tokenizer *tok, int32_t id, size_t *len);

// Longest decoded text of one token, in bytes.
size_t cs_tokenizer_max_token_bytes(const cs_tokenizer *tok);

// The bytes token id stands for in the middle of a text (no SentencePiece leading-space
// removal, byte tokens as their raw byte): what constrained decoding matches a grammar
// against. Returns the length (> cap: nothing written); 0 for special (control) tokens,
// <unk> and ids that name no token, which never stand for text.
size_t cs_tokenizer_token_bytes(const cs_tokenizer *tok, int32_t id, char *out, size_t cap);

// Encodes len bytes of UTF-8 text. Writes at most cap ids and returns how many the text needs
// (call again with a larger buffer if that is > cap; with CS_TOK_STOP_PAST_CAP, only that it
// is more than cap), or a negative cs_status.
int cs_tokenizer_encode(const cs_tokenizer *tok, const char *text, size_t len, int flags,
                        int32_t *ids, int cap);

// Decodes n ids into out (at most cap bytes, not NUL-terminated). Returns the bytes needed.
// Special tokens are rendered as their text unless skip_special.
size_t cs_tokenizer_decode(const cs_tokenizer *tok, const int32_t *ids, size_t n,
                           bool skip_special, char *out, size_t cap);

// Streaming decode: holds back the bytes of a UTF-8 character split across tokens, so each
// push emits whole characters only. Zero-initialise; no allocation, nothing to free.
typedef struct cs_detok {
    unsigned char pending[8];
    int n_pending;
    bool started; // SPM: the first piece's leading space is dropped
} cs_detok;

// Appends the text of id; returns bytes written to out. cap >= 3 * max_token_bytes + 3 is
// always enough; a push that would not fit in cap writes nothing, keeps the state as it was
// and returns the size it needs (> cap). Ids out of range give 0 bytes.
size_t cs_detok_push(cs_detok *d, const cs_tokenizer *tok, int32_t id, char *out, size_t cap);
// At the end of a stream: flushes held bytes (an incomplete character becomes U+FFFD).
size_t cs_detok_flush(cs_detok *d, char *out, size_t cap);

#endif
