// Pre-tokenizer splits of the byte-level BPE families, as hand-written matchers that give the
// same pieces as the families' regexes under leftmost-first alternation with backtracking
// (Oniguruma in Hugging Face tokenizers, the Python `regex` module):
//
//   GPT2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   SMOLLM every \p{N} character alone (HF Digits(individual_digits=true)), GPT2 inside the rest
//   LLAMA3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   QWEN2  LLAMA3 with \p{N} (one digit per piece)
//   NONE   the whole text is one piece
//
// Pieces tile the input: every byte is in exactly one piece, in order. A byte that is not
// valid UTF-8 is a one-byte character of no class (like punctuation).
//
//     cs_pretok_iter it;
//     cs_pretok_iter_init(&it, CS_PRETOK_GPT2, text, len);
//     size_t start, n;
//     while (cs_pretok_iter_next(&it, &start, &n)) use(text + start, n);
#ifndef CS_PRETOKENIZE_H
#define CS_PRETOKENIZE_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer.h"

typedef struct cs_pretok_iter {
    cs_pretok kind;
    const char *s;
    size_t len;
    size_t pos;
    size_t seg_end; // SMOLLM: end of the current digit-free segment
} cs_pretok_iter;

void cs_pretok_iter_init(cs_pretok_iter *it, cs_pretok kind, const char *s, size_t len);
// Next piece as [*start, *start + *n); false at the end of the text.
bool cs_pretok_iter_next(cs_pretok_iter *it, size_t *start, size_t *n);

#endif
