// Stop-string matcher: one KMP automaton per stop string, fed byte by byte. Each automaton's
// state is the length of the longest suffix of the stream that is a prefix of its string, so
// the largest state is exactly how much text must be held back, and a state reaching the
// string's length is a match ending on this byte. O(bytes * strings) amortised.
#include "stop_strings.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"

typedef struct cs_stop_str {
    uint16_t len;
    uint16_t state;                // bytes of this string matched so far, < len
    uint16_t fail[CS_STOP_MAX_LEN]; // KMP: fail[i] = longest proper border of s[0, i]
    unsigned char s[CS_STOP_MAX_LEN];
} cs_stop_str;

struct cs_stop_matcher {
    bool matched;
    size_t held;                        // bytes in hold
    unsigned char hold[CS_STOP_MAX_HELD]; // the stream's last `held` bytes, not yet emitted
    size_t n;
    cs_stop_str str[];                  // (n)
};

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

static inline bool cs_is_cont(unsigned char c) { return (c & 0xc0) == 0x80; }

// Length of the sequence a lead byte announces; 1 for ASCII and for bytes that cannot lead.
static inline size_t cs_utf8_need(unsigned char c) {
    if (c >= 0xc0 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf7) return 4;
    return 1;
}

// Structural check: every lead byte followed by exactly the continuation bytes it announces.
static bool cs_utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if (s[i] >= 0x80 && (cs_is_cont(s[i]) || s[i] > 0xf7)) return false;
        const size_t need = cs_utf8_need(s[i]);
        if (need > n - i) return false;
        for (size_t k = 1; k < need; k++)
            if (!cs_is_cont(s[i + k])) return false;
        i += need;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

bool cs_stop_string_ok(const char *s, char *why, size_t whylen) {
    const size_t len = strlen(s);
    if (len == 0 || len > CS_STOP_MAX_LEN) {
        cs_errf(why, whylen, CS_ERR_INVALID, "is %zu bytes (must be 1 to %d)", len, CS_STOP_MAX_LEN);
        return false;
    }
    if (!cs_utf8_valid((const unsigned char *)s, len)) {
        cs_errf(why, whylen, CS_ERR_INVALID, "is not valid UTF-8");
        return false;
    }
    return true;
}

cs_stop_matcher *cs_stop_init(const char *const *stops, size_t n, char *err, size_t errlen) {
    if (n > CS_STOP_MAX_STRINGS) {
        cs_errf(err, errlen, CS_ERR_INVALID, "too many stop strings: %zu (at most %d)", n,
                CS_STOP_MAX_STRINGS);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char why[64];
        if (!cs_stop_string_ok(stops[i], why, sizeof why)) {
            cs_errf(err, errlen, CS_ERR_INVALID, "stop string %zu %s", i, why);
            return NULL;
        }
    }
    cs_stop_matcher *m = calloc(1, sizeof *m + n * sizeof(cs_stop_str));
    if (!m) {
        cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->n = n;
    for (size_t i = 0; i < n; i++) {
        cs_stop_str *t = &m->str[i];
        t->len = (uint16_t)strlen(stops[i]);
        memcpy(t->s, stops[i], t->len);
        t->fail[0] = 0;
        for (uint16_t j = 1, k = 0; j < t->len; j++) {
            while (k > 0 && t->s[j] != t->s[k]) k = t->fail[k - 1];
            if (t->s[j] == t->s[k]) k++;
            t->fail[j] = k;
        }
    }
    return m;
}

void cs_stop_free(cs_stop_matcher *m) { free(m); }

bool cs_stop_matched(const cs_stop_matcher *m) { return m->matched; }

// ---------------------------------------------------------------------------------------------
// Streaming

// Advances one automaton by byte c; returns true when its string is now complete.
static inline bool cs_stop_step(cs_stop_str *t, unsigned char c) {
    uint16_t q = t->state;
    while (q > 0 && t->s[q] != c) q = t->fail[q - 1];
    if (t->s[q] == c) q++;
    if (q == t->len) {
        t->state = t->fail[q - 1]; // unused after a match, but keeps state < len
        return true;
    }
    t->state = q;
    return false;
}

// Byte i of the pending stream: the held bytes followed by the new text.
static inline unsigned char cs_pending_at(const cs_stop_matcher *m, const unsigned char *text,
                                          size_t i) {
    return i < m->held ? m->hold[i] : text[i - m->held];
}

// Writes pending[0, n) to out.
static void cs_pending_copy(const cs_stop_matcher *m, const unsigned char *text, size_t n,
                            char *out) {
    const size_t from_hold = n < m->held ? n : m->held;
    if (from_hold) memcpy(out, m->hold, from_hold);
    if (n > from_hold) memcpy(out + from_hold, text, n - from_hold);
}

// Where the emitted part of pending[0, total) may end, given that the automata need the
// last `keep` bytes held: moved back so that no UTF-8 character is split and an incomplete
// trailing character stays held.
static size_t cs_emit_end(const cs_stop_matcher *m, const unsigned char *text, size_t total,
                          size_t keep) {
    size_t b = total - keep;
    // An incomplete sequence at the very end: a lead byte in the last 3 bytes announcing more
    // bytes than have arrived.
    size_t k = total;
    while (k > 0 && total - k < 3 && cs_is_cont(cs_pending_at(m, text, k - 1))) k--;
    if (k > 0) {
        const size_t lead = k - 1;
        if (cs_utf8_need(cs_pending_at(m, text, lead)) > total - lead && lead < b) b = lead;
    }
    // Never cut between a lead byte and its continuation bytes (at most 3 of them).
    for (int steps = 0; steps < 3 && b > 0 && b < total && cs_is_cont(cs_pending_at(m, text, b));
         steps++)
        b--;
    return b;
}

size_t cs_stop_push(cs_stop_matcher *m, const char *text, size_t len, char *out, size_t cap,
                    bool *stopped) {
    *stopped = m->matched;
    if (m->matched) return 0;
    CS_ASSERT(cap >= len + CS_STOP_MAX_HELD);
    const unsigned char *t = (const unsigned char *)text;

    // Feed every automaton each byte; stop at the first byte that completes any string, and
    // among strings completing there cut the longest (the earliest start).
    for (size_t i = 0; i < len; i++) {
        size_t best = 0;
        for (size_t j = 0; j < m->n; j++)
            if (cs_stop_step(&m->str[j], t[i]) && m->str[j].len > best) best = m->str[j].len;
        if (best) {
            // The match began inside the held bytes or the new text: its part before this
            // push was a suffix the automata were tracking, and those are all held.
            const size_t end = m->held + i + 1;
            CS_ASSERT(end >= best);
            const size_t start = end - best;
            cs_pending_copy(m, t, start, out);
            m->matched = true;
            m->held = 0;
            *stopped = true;
            return start;
        }
    }

    size_t keep = 0;
    for (size_t j = 0; j < m->n; j++)
        if (m->str[j].state > keep) keep = m->str[j].state;
    const size_t total = m->held + len;
    const size_t b = cs_emit_end(m, t, total, keep);
    const size_t new_held = total - b;
    CS_ASSERT(new_held <= CS_STOP_MAX_HELD);
    cs_pending_copy(m, t, b, out);

    // hold = pending[b, total)
    if (b >= m->held) {
        if (new_held) memcpy(m->hold, t + (b - m->held), new_held);
    } else {
        memmove(m->hold, m->hold + b, m->held - b);
        if (len) memcpy(m->hold + (m->held - b), t, len);
    }
    m->held = new_held;
    return b;
}

size_t cs_stop_flush(cs_stop_matcher *m, char *out, size_t cap) {
    CS_ASSERT(cap >= CS_STOP_MAX_HELD);
    if (m->matched) return 0;
    const size_t n = m->held;
    if (n) memcpy(out, m->hold, n);
    m->held = 0;
    for (size_t j = 0; j < m->n; j++) m->str[j].state = 0;
    return n;
}
