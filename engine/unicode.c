// UTF-8 decoding/repair and Unicode property lookups (tables in unicode_tables.c).
#include "unicode.h"

#include <string.h>

// ASCII is most of the text we see: a direct table avoids the binary search.
static const uint8_t ascii_flags[128] = {
    ['\t'] = CS_UNI_WS | CS_UNI_PYSPACE, ['\n'] = CS_UNI_WS | CS_UNI_PYSPACE,
    [0x0B] = CS_UNI_WS | CS_UNI_PYSPACE, [0x0C] = CS_UNI_WS | CS_UNI_PYSPACE,
    ['\r'] = CS_UNI_WS | CS_UNI_PYSPACE, [0x1C] = CS_UNI_PYSPACE,
    [0x1D] = CS_UNI_PYSPACE,             [0x1E] = CS_UNI_PYSPACE,
    [0x1F] = CS_UNI_PYSPACE,             [' '] = CS_UNI_WS | CS_UNI_PYSPACE,
    ['0'] = CS_UNI_N, ['1'] = CS_UNI_N, ['2'] = CS_UNI_N, ['3'] = CS_UNI_N, ['4'] = CS_UNI_N,
    ['5'] = CS_UNI_N, ['6'] = CS_UNI_N, ['7'] = CS_UNI_N, ['8'] = CS_UNI_N, ['9'] = CS_UNI_N,
    ['A'] = CS_UNI_L, ['B'] = CS_UNI_L, ['C'] = CS_UNI_L, ['D'] = CS_UNI_L, ['E'] = CS_UNI_L,
    ['F'] = CS_UNI_L, ['G'] = CS_UNI_L, ['H'] = CS_UNI_L, ['I'] = CS_UNI_L, ['J'] = CS_UNI_L,
    ['K'] = CS_UNI_L, ['L'] = CS_UNI_L, ['M'] = CS_UNI_L, ['N'] = CS_UNI_L, ['O'] = CS_UNI_L,
    ['P'] = CS_UNI_L, ['Q'] = CS_UNI_L, ['R'] = CS_UNI_L, ['S'] = CS_UNI_L, ['T'] = CS_UNI_L,
    ['U'] = CS_UNI_L, ['V'] = CS_UNI_L, ['W'] = CS_UNI_L, ['X'] = CS_UNI_L, ['Y'] = CS_UNI_L,
    ['Z'] = CS_UNI_L, ['a'] = CS_UNI_L, ['b'] = CS_UNI_L, ['c'] = CS_UNI_L, ['d'] = CS_UNI_L,
    ['e'] = CS_UNI_L, ['f'] = CS_UNI_L, ['g'] = CS_UNI_L, ['h'] = CS_UNI_L, ['i'] = CS_UNI_L,
    ['j'] = CS_UNI_L, ['k'] = CS_UNI_L, ['l'] = CS_UNI_L, ['m'] = CS_UNI_L, ['n'] = CS_UNI_L,
    ['o'] = CS_UNI_L, ['p'] = CS_UNI_L, ['q'] = CS_UNI_L, ['r'] = CS_UNI_L, ['s'] = CS_UNI_L,
    ['t'] = CS_UNI_L, ['u'] = CS_UNI_L, ['v'] = CS_UNI_L, ['w'] = CS_UNI_L, ['x'] = CS_UNI_L,
    ['y'] = CS_UNI_L, ['z'] = CS_UNI_L,
};

int cs_uni_flags(uint32_t cp) {
    if (cp < 128) return ascii_flags[cp];
    int lo = 0, hi = cs_uni_n_ranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < cs_uni_ranges[mid].lo) hi = mid - 1;
        else if (cp > cs_uni_ranges[mid].hi) lo = mid + 1;
        else return cs_uni_ranges[mid].flags;
    }
    return 0;
}

char cs_uni_fold_ascii(uint32_t cp) {
    if (cp < 128) {
        char c = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        return c && strchr("strevmld", c) ? c : 0;
    }
    for (int i = 0; i < cs_uni_n_folds; i++)
        if (cs_uni_folds[i].cp == cp) return cs_uni_folds[i].ascii;
    return 0;
}

int cs_utf8_lead_len(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

// Whether b may follow lead at index i (1..3) of a shortest-form, non-surrogate sequence.
static bool cont_ok(unsigned char lead, int i, unsigned char b) {
    if (i == 1) {
        if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
        if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
        if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
        if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

uint32_t cs_utf8_next(const char *s, size_t len, size_t *n) {
    const unsigned char *u = (const unsigned char *)s;
    int L = cs_utf8_lead_len(u[0]);
    *n = 1;
    if (L == 1) return u[0];
    if (L == 0 || (size_t)L > len) return 0xFFFD;
    for (int i = 1; i < L; i++)
        if (!cont_ok(u[0], i, u[i])) return 0xFFFD;
    uint32_t cp = u[0] & (0x7F >> L);
    for (int i = 1; i < L; i++) cp = (cp << 6) | (u[i] & 0x3F);
    *n = (size_t)L;
    return cp;
}

int cs_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

// Output that does not fit is counted but not written, so a short buffer gets a prefix.
static void emit(const unsigned char *b, size_t n, char *out, size_t cap, size_t *pos) {
    for (size_t i = 0; i < n; i++, (*pos)++)
        if (*pos < cap) out[*pos] = (char)b[i];
}

static const unsigned char REPLACEMENT[3] = {0xEF, 0xBF, 0xBD};

void cs_utf8_lossy_push(unsigned char *pending, int *n_pending, const unsigned char *in,
                        size_t n, char *out, size_t cap, size_t *pos) {
    int k = *n_pending;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = in[i];
        if (k > 0) {
            if (cont_ok(pending[0], k, b)) {
                pending[k++] = b;
                if (k == cs_utf8_lead_len(pending[0])) {
                    emit(pending, (size_t)k, out, cap, pos);
                    k = 0;
                }
                continue;
            }
            // The pending prefix is a maximal invalid subpart; b starts afresh.
            emit(REPLACEMENT, 3, out, cap, pos);
            k = 0;
        }
        int L = cs_utf8_lead_len(b);
        if (L == 1) emit(&b, 1, out, cap, pos);
        else if (L == 0) emit(REPLACEMENT, 3, out, cap, pos);
        else pending[k++] = b;
    }
    *n_pending = k;
}

void cs_utf8_lossy_flush(unsigned char *pending, int *n_pending, char *out, size_t cap,
                         size_t *pos) {
    (void)pending;
    if (*n_pending > 0) emit(REPLACEMENT, 3, out, cap, pos);
    *n_pending = 0;
}
