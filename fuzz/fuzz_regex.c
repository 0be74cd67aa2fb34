// libFuzzer target: arbitrary bytes as a regex plus subject strings. Layout: the pattern is
// everything before the first 0xFF byte (never valid UTF-8, so no pattern needs it), and
// each later 0xFF starts another subject. Compiling must end in a grammar or an error with a
// message, in bounded time and memory. Odd-length patterns go through cs_regex_grammar,
// even-length ones are compiled as a rule called from a root rule (one compile per input);
// every subject runs through the grammar byte by byte: every byte the matcher
// takes must leave a way to finish (no dead states), and the subject wrapped in 0xFF bytes
// (through the call) must match exactly when it matches alone.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/assert.h"
#include "engine/grammar.h"
#include "engine/regex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Subjects through the grammar: alone (s) and, when wrapped, also between 0xFF bytes (which
// the regex never takes); both must agree. Returns how many matched.
static int run_subjects(cs_gram_matcher *m, const uint8_t *rest, size_t n, bool wrapped_too) {
    int matched = 0;
    static const uint8_t mark = 0xFF;
    for (size_t at = 0; at < n;) {
        const uint8_t *end = memchr(rest + at, 0xFF, n - at);
        size_t len = end ? (size_t)(end - (rest + at)) : n - at;
        cs_gm_reset(m);
        size_t k = 0;
        for (; k < len && cs_gm_advance(m, rest[at + k]); k++) CS_ASSERT(cs_gm_can_end(m) || cs_gm_can_continue(m));
        bool alone = k == len && cs_gm_can_end(m);
        if (wrapped_too) {
            cs_gm_reset(m);
            bool wrapped = cs_gm_advance(m, mark) && cs_gm_advance_bytes(m, rest + at, len) &&
                           cs_gm_advance(m, mark) && cs_gm_can_end(m);
            CS_ASSERT(alone == wrapped);
        }
        matched += alone;
        at += len + 1;
    }
    return matched;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > CS_REGEX_MAX_LEN + 4096) return 0;
    const uint8_t *sep = size ? memchr(data, 0xFF, size) : NULL;
    size_t plen = sep ? (size_t)(sep - data) : size;
    const uint8_t *rest = sep ? sep + 1 : data + size;
    size_t rlen = sep ? size - plen - 1 : 0;

    // the whole-grammar API on odd lengths, the rule API on even ones: one compile per input
    char err[CS_ERR_LEN] = "";
    cs_grammar *g = NULL;
    if (plen % 2) {
        cs_status st = cs_regex_grammar((const char *)data, plen, &g, err, sizeof err);
        CS_ASSERT((st == CS_OK) == (g != NULL));
        CS_ASSERT(st == CS_OK || err[0] != '\0'); // every error says why
        cs_gram_matcher *m = st == CS_OK ? cs_gm_init(g) : NULL;
        if (m) run_subjects(m, rest, rlen, false);
        cs_gm_free(m);
        cs_grammar_free(g);
        return 0;
    }
    // root: the pattern's rule alone, or between two 0xFF bytes
    cs_gram_builder *b = cs_gb_init();
    if (!b) return 0;
    int32_t re = cs_regex_compile(b, (const char *)data, plen, err, sizeof err);
    if (re < 0) {
        CS_ASSERT(err[0] != '\0' && !cs_gb_failed(b));
        cs_gb_free(b);
        return 0;
    }
    int32_t root = cs_gb_rule(b), start = cs_gb_start(b, root), done = cs_gb_state(b, root);
    int32_t in = cs_gb_state(b, root), out = cs_gb_state(b, root);
    cs_gb_call(b, start, re, done);
    cs_gb_bytes(b, start, 0xFF, 0xFF, in);
    cs_gb_call(b, in, re, out);
    cs_gb_bytes(b, out, 0xFF, 0xFF, done);
    cs_gb_accept(b, done);
    if (cs_gb_finish(b, root, &g, err, sizeof err) != CS_OK) return 0;
    cs_gram_matcher *m = cs_gm_init(g);
    if (m) run_subjects(m, rest, rlen, true);
    cs_gm_free(m);
    cs_grammar_free(g);
    return 0;
}
