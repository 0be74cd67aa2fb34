// engine/regex.h: patterns compiled to grammars and matched byte by byte against Python's
// re.fullmatch (tests/fixtures/regex_cases.txt, written by tools/make_regex_cases.py); every
// unsupported construct and every limit as an error naming it, in bounded time; the UTF-8
// range splitter against brute force; minimal DFA sizes; a regex rule called from another rule.
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "engine/grammar.h"
#include "engine/regex.h"
#include "engine/regex_internal.h"
#include "test_util.h"

#define FIXTURE "tests/fixtures/regex_cases.txt"

// CPU seconds of this process: the time limits are about the work a pattern costs, which
// wall time on a shared machine (ctest -j, sanitizers) would blur.
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Whether the grammar's matcher takes all of s and may end there. Also checks that a prefix
// it takes can still be finished (the compiler prunes dead states).
static bool accepts(cs_gram_matcher *m, const char *s, size_t n) {
    cs_gm_reset(m);
    if (!cs_gm_advance_bytes(m, (const uint8_t *)s, n)) return false;
    TEST_COND(cs_gm_can_end(m) || cs_gm_can_continue(m));
    return cs_gm_can_end(m);
}

// Compiles pattern (NUL-terminated) and checks one string; for the hand-written cases below.
static bool full_match(const char *pattern, const char *s, size_t n) {
    cs_grammar *g;
    char err[CS_ERR_LEN];
    cs_status st = cs_regex_grammar(pattern, strlen(pattern), &g, err, sizeof err);
    TEST_CONDF(st == CS_OK, "%s: %s", pattern, err);
    if (st != CS_OK) return false;
    cs_gram_matcher *m = cs_gm_init(g);
    bool ok = accepts(m, s, n);
    cs_gm_free(m);
    cs_grammar_free(g);
    return ok;
}

// --- the fixture ----------------------------------------------------------------------------

// Undoes the fixture's escapes (\\ \t \n \xHH) in place; returns the length.
static size_t unescape(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] != '\\' || !s[i + 1]) { s[o++] = s[i]; continue; }
        char c = s[++i];
        if (c == 't') s[o++] = '\t';
        else if (c == 'n') s[o++] = '\n';
        else if (c == 'x' && s[i + 1] && s[i + 2]) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            s[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else s[o++] = c;
    }
    return o;
}

static void test_fixture(void) {
    FILE *f = fopen(FIXTURE, "rb");
    TEST_CONDF(f != NULL, "cannot open %s (run from the source tree)", FIXTURE);
    if (!f) return;
    static char line[1 << 16], prev[1 << 16];
    cs_grammar *g = NULL;
    cs_gram_matcher *m = NULL;
    int cases = 0, matching = 0, patterns = 0, wrong = 0;
    prev[0] = '\0';
    double t0 = now_s();
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n') line[--n] = '\0';
        char *pat = strchr(line, '\t'), *str = pat ? strchr(pat + 1, '\t') : NULL;
        TEST_CONDF(pat && str && (line[0] == '0' || line[0] == '1'), "bad fixture line: %s", line);
        if (!pat || !str) continue;
        *pat++ = '\0', *str++ = '\0';
        bool want = line[0] == '1';
        if (strcmp(pat, prev) != 0) { // a new pattern: compile it
            cs_gm_free(m), cs_grammar_free(g);
            m = NULL, g = NULL;
            strcpy(prev, pat);
            char err[CS_ERR_LEN];
            size_t plen = unescape(pat);
            cs_status st = cs_regex_grammar(pat, plen, &g, err, sizeof err);
            TEST_CONDF(st == CS_OK, "pattern '%s': %s", prev, err);
            if (st == CS_OK) m = cs_gm_init(g);
            patterns++;
        }
        if (!m) continue;
        size_t slen = unescape(str);
        bool got = accepts(m, str, slen);
        cases++, matching += want;
        if (got != want && wrong++ < 20)
            TEST_CONDF(got == want, "pattern '%s' on '%s' (%zu bytes): got %d, Python says %d", prev, str, slen, got, want);
    }
    fclose(f);
    cs_gm_free(m), cs_grammar_free(g);
    TEST_CONDF(wrong == 0, "%d of %d cases disagree with Python", wrong, cases);
    TEST_CONDF(cases >= 150 && matching >= 50 && cases - matching >= 50, "%d cases, %d matching", cases, matching);
    printf("fixture: %d patterns, %d cases (%d matching) in %.3f s\n", patterns, cases, matching, now_s() - t0);
}

// --- hand-written matches: bytes Python cannot express --------------------------------------

static void test_invalid_utf8_rejected(void) {
    // '.', negated classes and \W accept code points, never malformed or overlong bytes
    static const char *bad[] = {"\xff", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                "\xf5\x80\x80\x80", "\x80", "\xc3", "\xe4\xb8"};
    static const char *pats[] = {".", "[^a]", "\\W", "[\\x00-\\U0010FFFF]", "[^\\n]*"};
    for (size_t p = 0; p < sizeof pats / sizeof *pats; p++)
        for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
            TEST_CONDF(!full_match(pats[p], bad[k], strlen(bad[k])), "%s accepted bad UTF-8 #%zu", pats[p], k);
    TEST_COND(full_match("\\0a\\x00", "\0a\0", 3)); // NUL bytes in strings and escapes
    cs_grammar *g;
    char err[CS_ERR_LEN];
    TEST_COND(cs_regex_grammar("a\0b", 3, &g, err, sizeof err) == CS_OK); // a literal NUL in the pattern
    cs_gram_matcher *m = cs_gm_init(g);
    TEST_COND(accepts(m, "a\0b", 3) && !accepts(m, "ab", 2));
    cs_gm_free(m);
    cs_grammar_free(g);
}

// --- errors ---------------------------------------------------------------------------------

typedef struct err_case {
    const char *pattern;
    const char *msg; // must appear in the error
} err_case;

static const err_case ERRORS[] = {
    {"(?=a)", "lookahead (?="},
    {"(?!a)", "negative lookahead"},
    {"(?<=a)b", "lookbehind (?<="},
    {"(?<!a)b", "negative lookbehind"},
    {"(a)\\1", "backreference (or octal escape) \\1"},
    {"(?P<x>a)(?P=x)", "named backreference"},
    {"(?i)abc", "inline flags (?i"},
    {"(?s:.)", "inline flags (?s"},
    {"(?-i:a)", "inline flags"},
    {"a*+", "possessive quantifier"},
    {"a++", "possessive quantifier"},
    {"a?+", "possessive quantifier"},
    {"a{2}+", "possessive quantifier"},
    {"(?>a)", "atomic group"},
    {"(?#comment)a", "comment group"},
    {"(a)(?(1)b|c)", "conditional group"},
    {"(?Q)", "unknown group extension"},
    {"(?", "unexpected end of pattern"},
    {"\\b", "word boundary \\b"},
    {"a\\B", "assertion \\B"},
    {"\\Aa", "assertion \\A"},
    {"a\\Z", "assertion \\Z"},
    {"\\p{L}", "Unicode property escape \\p"},
    {"\\P{L}", "Unicode property escape \\P"},
    {"\\N{DIGIT ONE}", "named character escape"},
    {"\\q", "bad escape \\q"},
    {"\\", "bad escape (end of pattern)"},
    {"[\\1]", "octal escape \\1"},
    {"\\x4", "incomplete escape \\x"},
    {"\\u12g4", "incomplete escape \\u"},
    {"\\U0001F60", "incomplete escape \\U"},
    {"\\U00110000", "past U+10FFFF"},
    {"\\ud800", "surrogate U+D800"},
    {"*a", "nothing to repeat at offset 0"},
    {"a|+", "nothing to repeat at offset 2"},
    {"(?)", "unknown group extension"},
    {"(*)", "nothing to repeat"},
    {"{2}", "nothing to repeat"},
    {"^*", "nothing to repeat"},
    {"a$?", "nothing to repeat"},
    {"a**", "multiple repeat"},
    {"a{2}{3}", "multiple repeat"},
    {"a*??", "multiple repeat"},
    {"a{3,1}", "min repeat greater than max repeat"},
    {"[z-a]", "bad character range"},
    {"[\\d-z]", "bad character range"},
    {"[a-\\w]", "bad character range"},
    {"[abc", "unterminated character class"},
    {"[", "unterminated character class"},
    {"[]", "unterminated character class"},
    {"[^", "unterminated character class"},
    {"(abc", "missing ), unterminated group"},
    {"((a)", "missing ), unterminated group"},
    {"abc)", "unbalanced parenthesis"},
    {")", "unbalanced parenthesis"},
    {"(?P<>a)", "empty group name"},
    {"(?P<1a>a)", "bad group name"},
    {"(?<a-b>x)", "bad group name"},
    {"(?P<abc", "unterminated group name"},
    {"a^b", "'^' at offset 1 is supported only at the start"},
    {"(^a)*", "'^' at offset 1"},
    {"b|a^", "'^'"},
    {"a$b", "'$' at offset 1 is supported only at the end"},
    {"(a$)+", "'$' at offset 2"},
    {"(a$)b?", "'$'"},
    {"\xff", "not valid UTF-8 at offset 0"},
    {"ab\xc3", "not valid UTF-8 at offset 2"},
    {"\xed\xa0\x80", "not valid UTF-8"},
    {"\xc0\x80", "not valid UTF-8"},
    {"[\xe9]", "not valid UTF-8 at offset 1"},
    {"\\\xe9", "not valid UTF-8"},
    {"[^\\s\\S]", "matches no string"},
    {"[^\\x00-\\U0010FFFF]", "matches no string"},
    {"a[^\\d\\D]b", "matches no string"},
    {"[\\ud800-\\udfff]", "matches no string"},
    {"a{1001}", "repetition bound 1001 at offset 1 exceeds the limit of 1000"},
    {"a{1,1001}", "exceeds the limit of 1000"},
    {"a{1001,}", "exceeds the limit of 1000"},
    {"a{99999999999999999999}", "exceeds the limit of 1000"},
};

static void check_error(const char *pattern, size_t len, const char *msg) {
    char err[CS_ERR_LEN] = "";
    cs_grammar *g = (cs_grammar *)1;
    cs_status st = cs_regex_grammar(pattern, len, &g, err, sizeof err);
    TEST_CONDF(st == CS_ERR_INVALID && g == NULL, "pattern '%.40s' compiled (status %d)", pattern, st);
    TEST_CONDF(strstr(err, msg) != NULL, "pattern '%.40s': error '%s' does not say '%s'", pattern, err, msg);
    if (st == CS_OK) cs_grammar_free(g);
    // the rule-level API reports the same, and leaves the builder usable
    cs_gram_builder *b = cs_gb_init();
    char err2[CS_ERR_LEN] = "";
    TEST_COND(cs_regex_compile(b, pattern, len, err2, sizeof err2) == -1 && strcmp(err, err2) == 0);
    TEST_COND(!cs_gb_failed(b));
    cs_gb_free(b);
}

static void test_errors(void) {
    for (size_t k = 0; k < sizeof ERRORS / sizeof *ERRORS; k++)
        check_error(ERRORS[k].pattern, strlen(ERRORS[k].pattern), ERRORS[k].msg);
    check_error("a\0(", 3, "missing )"); // lengths, not NUL terminators
    check_error("(?\0)", 4, "unknown group extension");
}

static int enc(uint32_t cp, uint8_t *o);

// --- limits, each in bounded time -----------------------------------------------------------

// pattern must fail with msg within a CPU second; returns the seconds taken.
static double check_limit(const char *pattern, size_t len, const char *msg) {
    double t0 = now_s();
    check_error(pattern, len, msg);
    double dt = now_s() - t0;
    TEST_CONDF(dt < 1.0, "pattern '%.40s' took %.3f s to fail", pattern, dt);
    return dt;
}

// pattern must compile within a CPU second.
static void check_ok(const char *pattern, size_t len) {
    double t0 = now_s();
    cs_grammar *g;
    char err[CS_ERR_LEN];
    cs_status st = cs_regex_grammar(pattern, len, &g, err, sizeof err);
    double dt = now_s() - t0;
    TEST_CONDF(st == CS_OK, "pattern '%.40s': %s", pattern, err);
    TEST_CONDF(dt < 1.0, "pattern '%.40s' took %.3f s", pattern, dt);
    if (st == CS_OK) cs_grammar_free(g);
}

static void test_limits(void) {
    static char buf[CS_REGEX_MAX_LEN + 64];
    memset(buf, 'a', CS_REGEX_MAX_LEN + 1);
    check_ok(buf, CS_REGEX_MAX_LEN); // a literal of the longest length: 16,384 DFA states
    check_limit(buf, CS_REGEX_MAX_LEN + 1, "pattern is 16385 bytes, more than the limit of 16384");

    int n = 0; // nesting: 64 groups are fine, 65 are not
    for (int k = 0; k < CS_RX_MAX_DEPTH; k++) buf[n++] = '(';
    buf[n++] = 'a';
    for (int k = 0; k < CS_RX_MAX_DEPTH; k++) buf[n++] = ')';
    check_ok(buf, (size_t)n);
    n = 0;
    for (int k = 0; k < CS_RX_MAX_DEPTH + 1; k++) buf[n++] = '(';
    buf[n++] = 'a';
    for (int k = 0; k < CS_RX_MAX_DEPTH + 1; k++) buf[n++] = ')';
    check_limit(buf, (size_t)n, "groups nested deeper than 64");
    n = 0; // deep nesting that never closes still stops at the limit
    for (int k = 0; k < CS_REGEX_MAX_LEN; k++) buf[n++] = '(';
    check_limit(buf, (size_t)n, "nested deeper than 64");

    check_ok("a{1000}", 7);
    // bounded repetition that multiplies: the expansion is refused before it is built
    check_limit("(a{1000}){1000}", 15, "more than 262144 NFA states and edges");
    check_limit("((((((((x{1000}){1000}){1000}){1000}){1000}){1000}){1000}){1000})", 66, "NFA states and edges");
    check_limit("((((){1000}){1000}){1000}){1000}", 32, "NFA states and edges"); // empty iterations count
    check_limit("([^a]{1000}){20}", 16, "NFA states and edges");

    // the classic subset-construction blow-up: 2^21 DFA states
    double dt = check_limit("(a|b)*a(a|b){20}", 16, "needs more than 20000 DFA states");
    printf("(a|b)*a(a|b){20}: error after %.3f s\n", dt);
    check_limit("[ab]*a[ab]{14}", 14, "more than 20000 DFA states");
    check_limit(".*a.{20}", 8, "more than 20000 DFA states");
    double t0 = now_s();
    check_ok("[ab]*a[ab]{13}", 14); // 16,384 states: just under the cap
    printf("[ab]*a[ab]{13} (16384 DFA states): %.3f s\n", now_s() - t0);
    // large NFA closures: the work limit stops determinisation
    dt = check_limit("(.{0,1000}){0,5}", 16, "pattern too complex (determinising it took more than 2097152 steps)");
    printf("work-limit pattern: error after %.3f s\n", dt);
    // a big DFA of a realistic pattern: about 14,600 states before minimisation
    const char *email = "[a-zA-Z0-9._%+-]{1,64}@[a-zA-Z0-9.-]{1,255}\\.[a-zA-Z]{2,63}";
    check_ok(email, strlen(email));
    // a class of 2,500 three-byte code points, then 1,000 two-byte literals (one class each)
    n = 0;
    buf[n++] = '[';
    for (uint32_t k = 0; k < 2500; k++) n += enc(0x800 + 2 * k, (uint8_t *)buf + n);
    buf[n++] = ']';
    for (int k = 0; k < 1000; k++) buf[n++] = '\xC3', buf[n++] = '\xA9';
    check_ok(buf, (size_t)n);
    // catastrophic for backtracking engines, small as automata
    check_ok("(a|aa)*b", 8);
    check_ok("((a|aa)*){20}", 13);
    check_ok("(.*a){20}", 9);
    check_ok("(x+x+)+y", 8);
}

// --- internals: the UTF-8 splitter, DFA sizes -----------------------------------------------

typedef struct seq_check {
    uint8_t *hit; // (1 << 21): code points whose encoding the sequences produced
    int bad;
} seq_check;

static int enc(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) return o[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return o[0] = (uint8_t)(0xC0 | cp >> 6), o[1] = (uint8_t)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return o[0] = (uint8_t)(0xE0 | cp >> 12), o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)),
               o[2] = (uint8_t)(0x80 | (cp & 0x3F)), 3;
    o[0] = (uint8_t)(0xF0 | cp >> 18), o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

// Enumerates every byte string of the sequence and decodes it: each must be the encoding
// of exactly one code point (strict UTF-8), marked once.
static void seq_visit(void *ctx, const uint8_t *lo, const uint8_t *hi, int n) {
    seq_check *c = ctx;
    uint8_t cur[4];
    for (int k = 0; k < n; k++) cur[k] = lo[k];
    for (;;) {
        uint32_t cp = n == 1 ? cur[0] : (uint32_t)(cur[0] & (0xFF >> (n + 1)));
        for (int k = 1; k < n; k++) cp = cp << 6 | (cur[k] & 0x3F);
        uint8_t e[4];
        int m = cp <= 0x10FFFF ? enc(cp, e) : 0;
        if (m != n || memcmp(e, cur, (size_t)n) != 0 || c->hit[cp]++) c->bad++;
        int k = n - 1;
        while (k >= 0 && cur[k] == hi[k]) cur[k] = lo[k], k--;
        if (k < 0) break;
        cur[k]++;
    }
}

static void test_utf8_sequences(void) {
    static const uint32_t ranges[][2] = {{0, 0x10FFFF}, {0, 0x7F},     {0x7F, 0x80},     {0x80, 0x7FF},  {0x7FF, 0x800},
                                         {0x100, 0x2FFF}, {0xE000, 0x10000}, {0xFFFF, 0x10000}, {0x10000, 0x10FFFF},
                                         {0x41, 0x41}, {0x1234, 0x1F345}, {0x3FF, 0x401}, {0xFFF, 0x1000}, {0x3FFFF, 0x40000}};
    seq_check c = {calloc(1u << 21, 1), 0};
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
        memset(c.hit, 0, 1u << 21);
        uint32_t lo = ranges[r][0], hi = ranges[r][1];
        // the splitter is given surrogate-free ranges: cut them out as the parser does
        if (lo <= 0xDFFF && hi >= 0xD800) {
            cs_rx_utf8_sequences(lo, 0xD7FF, seq_visit, &c);
            cs_rx_utf8_sequences(0xE000, hi, seq_visit, &c);
        } else {
            cs_rx_utf8_sequences(lo, hi, seq_visit, &c);
        }
        int missing = 0;
        for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
            bool want = cp >= lo && cp <= hi && !(cp >= 0xD800 && cp <= 0xDFFF);
            missing += want != (c.hit[cp] == 1);
        }
        TEST_CONDF(c.bad == 0 && missing == 0, "[%X, %X]: %d bad, %d missing or extra", lo, hi, c.bad, missing);
    }
    free(c.hit);
}

// DFA states after pruning and minimisation (-1 on error).
static int dfa_states(const char *pattern) {
    cs_rx_ast ast;
    cs_rx_nfa nfa;
    cs_rx_dfa dfa;
    char err[CS_ERR_LEN];
    if (cs_rx_parse(pattern, strlen(pattern), &ast, err, sizeof err) != CS_OK) return -1;
    cs_status st = cs_rx_nfa_build(&ast, &nfa, err, sizeof err);
    cs_rx_ast_free(&ast);
    if (st != CS_OK) return -1;
    st = cs_rx_dfa_build(&nfa, CS_REGEX_MAX_DFA_STATES, &dfa, err, sizeof err);
    cs_rx_nfa_free(&nfa);
    if (st != CS_OK) return -1;
    int n = dfa.n_states;
    cs_rx_dfa_free(&dfa);
    return n;
}

static void test_minimal_dfa(void) {
    static const struct { const char *p; int states; } cases[] = {
        {"a*", 1}, {"(a|b)*abb", 4}, {"[0-9]{3}", 4}, {"(a*)*b", 2}, {"a|b|c", 2}, {"(ab|ac)", 3},
        {"x{1000}", 1001}, {"(a|aa)*", 1}, {"((a|aa)*){20}", 1}, {"(.*a){20}", 0}, {".", 0}, {"", 1},
        {"(a?){3}", 4}, {"[ab]*a[ab]{2}", 8},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int n = dfa_states(cases[k].p), want = cases[k].states;
        if (want == 0) continue; // only checked to compile (see below)
        TEST_CONDF(n == want, "'%s': %d DFA states, want %d", cases[k].p, n, want);
    }
    // (.*a){20}: at least 20 'a's, ending in 'a' (21 counts, and after the 20th whether the
    // last code point was 'a'), with UTF-8 continuation states on top
    int n = dfa_states("(.*a){20}");
    TEST_CONDF(n >= 21 && n < 200, "(.*a){20}: %d states", n);
    n = dfa_states("."); // start, after a lead byte of 2/3/4 bytes (E0, ED, F0, F4 need their own), end
    TEST_CONDF(n >= 5 && n <= 12, ".: %d states", n);
}

// Random DFAs through cs_rx_minimise against a plain Moore refinement over the states that
// are reachable and can reach acceptance, and against the input on random strings.
static uint32_t rng_state = 12345;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) % n;
}

// Moore's refinement on the reachable, live states of (next, acc); returns the class count.
static int moore_classes(const int32_t *next, const uint8_t *acc, int n, int nc) {
    uint8_t live[64] = {0}, seen[64] = {0};
    int blk[64], nb[64], queue[64], head = 0, tail = 0, classes = 0;
    for (int changed = 1; changed;) { // live: acceptance reachable
        changed = 0;
        for (int s = 0; s < n; s++) {
            bool l = acc[s];
            for (int c = 0; c < nc && !l; c++) l = next[s * nc + c] >= 0 && live[next[s * nc + c]];
            if (l && !live[s]) live[s] = 1, changed = 1;
        }
    }
    if (!live[0]) return 0;
    seen[0] = 1, queue[tail++] = 0;
    while (head < tail)
        for (int s = queue[head++], c = 0; c < nc; c++) {
            int t = next[s * nc + c];
            if (t >= 0 && live[t] && !seen[t]) seen[t] = 1, queue[tail++] = t;
        }
    for (int s = 0; s < n; s++) blk[s] = seen[s] ? acc[s] : -1;
    for (int prev = -1;;) {
        classes = 0;
        for (int s = 0; s < n; s++) { // new class: same old class and same successor classes
            if (blk[s] < 0) continue;
            nb[s] = -1;
            for (int r = 0; r < s && nb[s] < 0; r++) {
                bool same = blk[r] == blk[s];
                for (int c = 0; c < nc && same; c++) {
                    int a = next[r * nc + c], b = next[s * nc + c];
                    same = (a >= 0 ? blk[a] : -1) == (b >= 0 ? blk[b] : -1);
                }
                if (same && blk[r] >= 0) nb[s] = nb[r];
            }
            if (nb[s] < 0) nb[s] = classes++;
        }
        for (int s = 0; s < n; s++)
            if (blk[s] >= 0) blk[s] = nb[s];
        if (classes == prev) return classes;
        prev = classes;
    }
}

static void test_minimise_random(void) {
    int32_t next[64 * 4];
    uint8_t acc[64], class_of[256];
    for (int x = 0; x < 256; x++) class_of[x] = (uint8_t)(x % 4);
    int bad = 0, empty = 0;
    for (int iter = 0; iter < 2000; iter++) {
        int n = 1 + (int)rnd(40), nc = 1 + (int)rnd(4);
        for (int k = 0; k < n * nc; k++) next[k] = rnd(5) == 0 ? -1 : (int32_t)rnd((uint32_t)n);
        for (int s = 0; s < n; s++) acc[s] = rnd(4) == 0;
        for (int x = 0; x < 256; x++) class_of[x] = (uint8_t)(x % nc);
        cs_rx_dfa d;
        char err[CS_ERR_LEN];
        int want = moore_classes(next, acc, n, nc);
        cs_status st = cs_rx_minimise(next, acc, n, class_of, nc, &d, err, sizeof err);
        if (want == 0) { // nothing accepted: the compiler's "matches no string"
            empty++;
            bad += st != CS_ERR_INVALID;
            continue;
        }
        if (st != CS_OK || d.n_states != want) {
            if (bad++ < 5) TEST_CONDF(0, "random DFA %d: %d states, Moore says %d", iter, st == CS_OK ? d.n_states : -1, want);
            if (st == CS_OK) cs_rx_dfa_free(&d);
            continue;
        }
        for (int w = 0; w < 50; w++) { // the same language on random words over the classes
            int s = 0, m = 0, len = (int)rnd(12);
            bool dead_s = false, dead_m = false;
            for (int k = 0; k < len; k++) {
                int c = (int)rnd((uint32_t)nc);
                if (!dead_s) s = next[s * nc + c], dead_s = s < 0;
                if (!dead_m) m = d.next[m * nc + c], dead_m = m < 0;
            }
            bool in_s = !dead_s && acc[s], in_m = !dead_m && d.accept[m];
            bad += in_s != in_m;
        }
        cs_rx_dfa_free(&d);
    }
    TEST_CONDF(bad == 0, "%d disagreements with Moore's refinement", bad);
    TEST_CONDF(empty > 10 && empty < 1900, "%d of 2000 random DFAs accept nothing", empty);
}

// --- a regex rule called from another rule --------------------------------------------------

static void test_rule_in_builder(void) {
    cs_gram_builder *b = cs_gb_init();
    char err[CS_ERR_LEN];
    int32_t re = cs_regex_compile(b, "[a-z]+[0-9]?", 12, err, sizeof err);
    TEST_CONDF(re >= 0, "%s", err);
    int32_t root = cs_gb_rule(b);
    int32_t s1 = cs_gb_state(b, root), s2 = cs_gb_state(b, root), s3 = cs_gb_state(b, root);
    cs_gb_bytes(b, cs_gb_start(b, root), '<', '<', s1);
    cs_gb_call(b, s1, re, s2); // <word> , <word> >
    int32_t s4 = cs_gb_literal(b, s2, ",", 1);
    cs_gb_call(b, s4, re, s3);
    cs_gb_accept(b, cs_gb_literal(b, s3, ">", 1));
    cs_grammar *g;
    TEST_COND(cs_gb_finish(b, root, &g, err, sizeof err) == CS_OK);
    cs_gram_matcher *m = cs_gm_init(g);
    TEST_COND(accepts(m, "<ab,c9>", 7));
    TEST_COND(accepts(m, "<abc1,xyz>", 10));
    TEST_COND(!accepts(m, "<ab1c,x>", 8));
    TEST_COND(!accepts(m, "<,x>", 4));
    TEST_COND(!accepts(m, "<ab,c99>", 8));
    cs_gm_free(m);
    cs_grammar_free(g);
}

int main(void) {
    test_utf8_sequences();
    test_minimal_dfa();
    test_minimise_random();
    test_fixture();
    test_invalid_utf8_rejected();
    test_errors();
    test_limits();
    test_rule_in_builder();
    return TEST_REPORT();
}
