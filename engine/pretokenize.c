// Hand-written equivalents of the pre-tokenizer regexes (see pretokenize.h). Each matcher
// tries the regex's alternatives in order at one position and returns the length the regex
// engine would match there; lookahead and backtracking are resolved by hand, noted inline.
#include "pretokenize.h"

#include "../common/assert.h"
#include "unicode.h"

enum { C_OTHER = 0, C_L = CS_UNI_L, C_N = CS_UNI_N, C_WS = CS_UNI_WS };

// Class of the character at s[i] (i < end) and its byte length.
static int cls_at(const char *s, size_t end, size_t i, size_t *n) {
    unsigned char b = (unsigned char)s[i];
    if (b < 0x80) {
        *n = 1;
        return cs_uni_flags(b) & (C_L | C_N | C_WS);
    }
    uint32_t cp = cs_utf8_next(s + i, end - i, n);
    if (cp == 0xFFFD && *n == 1) return C_OTHER; // invalid byte: no class
    return cs_uni_flags(cp) & (C_L | C_N | C_WS);
}

// End of the run of characters of class cls that starts at i.
static size_t run_end(const char *s, size_t end, size_t i, int cls) {
    while (i < end) {
        size_t n;
        if (cls_at(s, end, i, &n) != cls) break;
        i += n;
    }
    return i;
}

// Start of the last character of [from, to): whitespace runs are valid UTF-8, so stepping
// back over continuation bytes finds it.
static size_t last_char_start(const char *s, size_t from, size_t to) {
    size_t i = to - 1;
    while (i > from && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

// \s+(?!\S)|\s+ at a whitespace character: a run followed by a non-space gives its last
// whitespace character back (the lookahead then sees whitespace), unless that would leave
// the run empty, in which case the plain \s+ takes the single character.
static size_t match_ws(const char *s, size_t end, size_t pos) {
    size_t q = run_end(s, end, pos, C_WS);
    CS_ASSERT(q > pos);
    if (q == end) return q - pos;
    size_t last = last_char_start(s, pos, q);
    return (last > pos ? last : q) - pos;
}

// 's|'t|'re|'ve|'m|'ll|'d at s[pos] == '\'', exactly (GPT-2) or case-folded (Llama-3).
static size_t match_contraction(const char *s, size_t end, size_t pos, bool fold) {
    char c[2] = {0, 0};
    size_t len[2] = {0, 0};
    size_t i = pos + 1;
    for (int k = 0; k < 2 && i < end; k++) {
        uint32_t cp = cs_utf8_next(s + i, end - i, &len[k]);
        c[k] = fold ? cs_uni_fold_ascii(cp) : (cp < 128 ? (char)cp : 0);
        i += len[k];
    }
    switch (c[0]) {
    case 's': case 't': case 'm': case 'd':
        return 1 + len[0];
    case 'r': case 'v':
        return c[1] == 'e' ? 1 + len[0] + len[1] : 0;
    case 'l':
        return c[1] == 'l' ? 1 + len[0] + len[1] : 0;
    default:
        return 0;
    }
}

static size_t match_gpt2(const char *s, size_t end, size_t pos) {
    if (s[pos] == '\'') {
        size_t m = match_contraction(s, end, pos, false);
        if (m) return m;
    }
    size_t n;
    int c = cls_at(s, end, pos, &n);
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': a space joins the run that follows it.
    if (s[pos] == ' ' && pos + 1 < end) {
        size_t n2;
        int c2 = cls_at(s, end, pos + 1, &n2);
        if (c2 != C_WS) return run_end(s, end, pos + 1, c2) - pos;
    }
    if (c != C_WS) return run_end(s, end, pos, c) - pos;
    return match_ws(s, end, pos);
}

static size_t match_llama3(const char *s, size_t end, size_t pos, int max_digits) {
    if (s[pos] == '\'') {
        size_t m = match_contraction(s, end, pos, true);
        if (m) return m;
    }
    size_t n;
    int c = cls_at(s, end, pos, &n);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == C_L) return run_end(s, end, pos, C_L) - pos;
    if (c != C_N && s[pos] != '\r' && s[pos] != '\n' && pos + n < end) {
        size_t n2;
        if (cls_at(s, end, pos + n, &n2) == C_L) return run_end(s, end, pos + n, C_L) - pos;
    }
    // \p{N}{1,3} (Qwen2: \p{N})
    if (c == C_N) {
        size_t i = pos;
        for (int k = 0; k < max_digits && i < end; k++) {
            size_t m;
            if (cls_at(s, end, i, &m) != C_N) break;
            i += m;
        }
        return i - pos;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    size_t q = s[pos] == ' ' ? pos + 1 : pos;
    size_t nq;
    if (q < end && cls_at(s, end, q, &nq) == C_OTHER) {
        size_t r = run_end(s, end, q, C_OTHER);
        while (r < end && (s[r] == '\r' || s[r] == '\n')) r++;
        return r - pos;
    }
    CS_ASSERT(c == C_WS);
    // \s*[\r\n]+: backtracking \s* stops at the last \r or \n of the whitespace run, and
    // [\r\n]+ takes just that one (a later \r\n would have let \s* stop later).
    size_t w = run_end(s, end, pos, C_WS);
    for (size_t j = w; j > pos; j--)
        if (s[j - 1] == '\r' || s[j - 1] == '\n') return j - pos;
    return match_ws(s, end, pos);
}

void cs_pretok_iter_init(cs_pretok_iter *it, cs_pretok kind, const char *s, size_t len) {
    it->kind = kind;
    it->s = s;
    it->len = len;
    it->pos = 0;
    it->seg_end = 0;
}

// SMOLLM: each number character is a piece; the GPT-2 regex runs inside the segments
// between them, so its lookahead ends at the segment's end.
static size_t next_smollm(cs_pretok_iter *it) {
    const char *s = it->s;
    size_t pos = it->pos;
    if (pos >= it->seg_end) {
        size_t n;
        if (cls_at(s, it->len, pos, &n) == C_N) return n;
        size_t e = pos;
        while (e < it->len) {
            if (cls_at(s, it->len, e, &n) == C_N) break;
            e += n;
        }
        it->seg_end = e;
    }
    return match_gpt2(s, it->seg_end, pos);
}

bool cs_pretok_iter_next(cs_pretok_iter *it, size_t *start, size_t *n) {
    if (it->pos >= it->len) return false;
    size_t m;
    switch (it->kind) {
    case CS_PRETOK_GPT2: m = match_gpt2(it->s, it->len, it->pos); break;
    case CS_PRETOK_SMOLLM: m = next_smollm(it); break;
    case CS_PRETOK_LLAMA3: m = match_llama3(it->s, it->len, it->pos, 3); break;
    case CS_PRETOK_QWEN2: m = match_llama3(it->s, it->len, it->pos, 1); break;
    default: m = it->len - it->pos; break;
    }
    CS_ASSERT(m > 0 && it->pos + m <= it->len);
    *start = it->pos;
    *n = m;
    it->pos += m;
    return true;
}
