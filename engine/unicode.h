// UTF-8 and the few Unicode properties the tokenizer needs: letters (\p{L}), numbers (\p{N}),
// regex whitespace (\s = White_Space), Python's str.isspace(), and case folding onto the
// ASCII letters of Llama-3's contractions. Tables come from tools/gen_unicode_tables.py.
//
//     size_t n;
//     uint32_t cp = cs_utf8_next(s, len, &n);   // n >= 1 always, U+FFFD for a bad byte
//     if (cs_uni_flags(cp) & CS_UNI_L) ...
#ifndef CS_UNICODE_H
#define CS_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    CS_UNI_L = 1,       // general category L*
    CS_UNI_N = 2,       // Nd, Nl, No
    CS_UNI_WS = 4,      // White_Space (regex \s)
    CS_UNI_PYSPACE = 8, // Python str.isspace() (adds U+001C..U+001F)
};

typedef struct cs_uni_range {
    uint32_t lo, hi;
    uint8_t flags;
} cs_uni_range;

typedef struct cs_uni_fold {
    uint32_t cp;
    char ascii; // lowercase ASCII letter cp folds to
} cs_uni_fold;

extern const cs_uni_range cs_uni_ranges[];
extern const int cs_uni_n_ranges;
extern const cs_uni_fold cs_uni_folds[];
extern const int cs_uni_n_folds;

// CS_UNI_* flags of a code point (0 for marks, punctuation, symbols, unassigned...).
int cs_uni_flags(uint32_t cp);

// Lowercase ASCII letter that cp folds to under simple case folding, restricted to the
// letters "strevmld"; 0 when none.
char cs_uni_fold_ascii(uint32_t cp);

// Decodes the code point at s[0..len) (len >= 1). *n gets its byte length. A byte that does
// not start a valid, shortest-form sequence gives U+FFFD with *n = 1, so every byte is
// consumed exactly once.
uint32_t cs_utf8_next(const char *s, size_t len, size_t *n);

// Writes cp as UTF-8 into out (4 bytes room); returns the length (1..4).
int cs_utf8_put(uint32_t cp, char *out);

// Length of a valid UTF-8 sequence starting with lead byte b, judged by the lead only
// (1..4), or 0 when b cannot start a sequence.
int cs_utf8_lead_len(unsigned char b);

// Streaming UTF-8 repair with the "maximal subpart" rule that Rust's from_utf8_lossy and
// Python's decode(errors="replace") use: each maximal invalid prefix becomes one U+FFFD.
// pending/n_pending hold an incomplete character between calls (at most 3 bytes).
// Appends to out[*pos..cap); *pos counts every byte, also those that did not fit.
void cs_utf8_lossy_push(unsigned char *pending, int *n_pending, const unsigned char *in,
                        size_t n, char *out, size_t cap, size_t *pos);
// Emits U+FFFD for an incomplete character still pending.
void cs_utf8_lossy_flush(unsigned char *pending, int *n_pending, char *out, size_t cap,
                         size_t *pos);

#endif
