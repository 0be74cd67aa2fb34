// Stop-string matcher tests: matches across pushes, released false starts, several and
// overlapping stop strings, UTF-8 held whole, flush, and a property test that the output
// never depends on how the text is split (checked against a naive reference).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stop_strings.h"
#include "tests/test_util.h"

// One push; out is NUL-terminated for easy comparison.
static size_t push(cs_stop_matcher *m, const char *text, char *out, bool *stopped) {
    size_t n = cs_stop_push(m, text, strlen(text), out, strlen(text) + CS_STOP_MAX_HELD, stopped);
    out[n] = 0;
    return n;
}

// Pushes pieces (NULL-terminated list), then flushes unless stopped; returns the whole output.
static char *run(const char *const *stops, size_t n_stops, const char *const *pieces,
                 bool *stopped) {
    cs_stop_matcher *m = cs_stop_init(stops, n_stops, NULL, 0);
    if (!m) return NULL;
    static char all[8192];
    char out[1024 + CS_STOP_MAX_HELD];
    size_t used = 0;
    *stopped = false;
    for (size_t i = 0; pieces[i] && !*stopped; i++) {
        size_t n = push(m, pieces[i], out, stopped);
        memcpy(all + used, out, n), used += n;
    }
    if (!*stopped) used += cs_stop_flush(m, all + used, sizeof all - used);
    all[used] = 0;
    cs_stop_free(m);
    return all;
}

#define RUN_EQ(stops, pieces, want, want_stopped)                                         \
    do {                                                                                  \
        bool st_;                                                                         \
        const char *got_ = run(stops, sizeof stops / sizeof stops[0], pieces, &st_);      \
        TEST_CONDF(got_ && !strcmp(got_, want) && st_ == (want_stopped),                  \
                   "got '%s' stopped=%d, want '%s' stopped=%d", got_ ? got_ : "(null)", st_, \
                   want, want_stopped);                                                   \
    } while (0)

static void test_spanning_two_pushes(void) {
    const char *stops[] = {"world"};
    cs_stop_matcher *m = cs_stop_init(stops, 1, NULL, 0);
    char out[512];
    bool stopped;
    push(m, "Hello wor", out, &stopped);
    TEST_CONDF(!strcmp(out, "Hello ") && !stopped, "first push emitted '%s'", out);
    push(m, "ld! more", out, &stopped);
    TEST_CONDF(!strcmp(out, "") && stopped, "second push emitted '%s'", out);
    // After the match: nothing more, ever.
    TEST_COND(push(m, "world again", out, &stopped) == 0 && stopped);
    TEST_COND(cs_stop_flush(m, out, sizeof out) == 0 && cs_stop_matched(m));
    cs_stop_free(m);
}

static void test_false_start_released(void) {
    const char *stops[] = {"world"};
    cs_stop_matcher *m = cs_stop_init(stops, 1, NULL, 0);
    char out[512];
    bool stopped;
    push(m, "Hello wor", out, &stopped);
    TEST_CONDF(!strcmp(out, "Hello "), "'%s'", out);
    push(m, "m is", out, &stopped);
    TEST_CONDF(!strcmp(out, "worm is") && !stopped, "released '%s'", out);
    push(m, " w", out, &stopped);
    TEST_CONDF(!strcmp(out, " "), "'%s'", out);
    push(m, "o", out, &stopped);
    TEST_CONDF(!strcmp(out, ""), "'%s'", out);
    TEST_COND(cs_stop_flush(m, out, sizeof out) == 2 && !memcmp(out, "wo", 2));
    cs_stop_free(m);
}

static void test_flush(void) {
    const char *stops[] = {"world"};
    const char *p1[] = {"Hello wor", NULL};
    RUN_EQ(stops, p1, "Hello wor", false);
    const char *p2[] = {"Hello ", "w", "o", "r", "l", NULL};
    RUN_EQ(stops, p2, "Hello worl", false);
    const char *p3[] = {"Hello ", "w", "o", "r", "l", "d", "!", NULL};
    RUN_EQ(stops, p3, "Hello ", true);
}

static void test_multiple_and_overlapping(void) {
    const char *s1[] = {"###", "\nUser:"};
    const char *p1[] = {"answer\nUs", "er: hi", NULL};
    RUN_EQ(s1, p1, "answer", true);
    const char *p1b[] = {"a#", "#b\nUser", "!", NULL};
    RUN_EQ(s1, p1b, "a##b\nUser!", false);
    // "ab" completes first (at 'b'); "abc" would end later. The cut is the same either way.
    const char *s2[] = {"abc", "ab"};
    const char *p2[] = {"xa", "bc", NULL};
    RUN_EQ(s2, p2, "x", true);
    // The first completed stop string wins even though "abcd" starts earlier: the stream
    // cannot wait for a match that may never come. Split or not, the same result.
    const char *s3[] = {"abcd", "bc"};
    const char *p3[] = {"abcd", NULL};
    RUN_EQ(s3, p3, "a", true);
    const char *p3b[] = {"ab", "cd", NULL};
    RUN_EQ(s3, p3b, "a", true);
    // Two strings end on the same byte: the longer one (earlier start) is cut.
    const char *s4[] = {"bc", "abc"};
    const char *p4[] = {"xab", "c", NULL};
    RUN_EQ(s4, p4, "x", true);
    const char *s5[] = {"abc", "bc"};
    RUN_EQ(s5, p4, "x", true);
}

static void test_repeated_partial(void) {
    const char *stops[] = {"aab"};
    const char *p1[] = {"aaab", NULL};
    RUN_EQ(stops, p1, "a", true);
    const char *p2[] = {"a", "a", "a", "b", "tail", NULL};
    RUN_EQ(stops, p2, "a", true);
    const char *p3[] = {"aaa", "ab", NULL};
    RUN_EQ(stops, p3, "aa", true);
    // Held text while partial: after "aaa" only one 'a' is safe.
    cs_stop_matcher *m = cs_stop_init(stops, 1, NULL, 0);
    char out[512];
    bool stopped;
    push(m, "aaa", out, &stopped);
    TEST_CONDF(!strcmp(out, "a"), "'%s'", out);
    push(m, "c", out, &stopped);
    TEST_CONDF(!strcmp(out, "aac"), "'%s'", out);
    cs_stop_free(m);
    const char *s2[] = {"abab"};
    const char *p4[] = {"aba", "bab", NULL};
    RUN_EQ(s2, p4, "", true);
    const char *p5[] = {"abaab", "ab", NULL};
    RUN_EQ(s2, p5, "aba", true);
}

static bool utf8_ok(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t need = u[i] < 0x80 ? 1 : u[i] >= 0xf0 ? 4 : u[i] >= 0xe0 ? 3 : u[i] >= 0xc0 ? 2 : 0;
        if (!need || need > n - i) return false;
        for (size_t k = 1; k < need; k++)
            if ((u[i + k] & 0xc0) != 0x80) return false;
        i += need;
    }
    return true;
}

static void test_utf8(void) {
    char out[512];
    bool stopped;
    // A character split across pushes is held until complete, even with no stop strings.
    cs_stop_matcher *m = cs_stop_init(NULL, 0, NULL, 0);
    push(m, "x\xc3", out, &stopped);
    TEST_CONDF(!strcmp(out, "x"), "'%s'", out);
    push(m, "\xa9y\xe6\x97", out, &stopped);
    TEST_CONDF(!strcmp(out, "\xc3\xa9y"), "'%s'", out);
    push(m, "\xa5", out, &stopped);
    TEST_CONDF(!strcmp(out, "\xe6\x97\xa5"), "'%s'", out);
    // Flush releases an incomplete tail as is.
    push(m, "\xf0\x9f", out, &stopped);
    TEST_COND(out[0] == 0 && cs_stop_flush(m, out, sizeof out) == 2);
    cs_stop_free(m);

    // A stop string whose first character is multi-byte: the candidate is held whole.
    const char *stops[] = {"\xe6\x97\xa5\xe6\x9c\xac"}; // "日本"
    m = cs_stop_init(stops, 1, NULL, 0);
    push(m, "\xe4\xbb\x8a\xe6", out, &stopped); // "今" + first byte of "日"
    TEST_CONDF(!strcmp(out, "\xe4\xbb\x8a"), "'%s'", out);
    push(m, "\x97\xa5", out, &stopped); // "日" complete: still a possible start
    TEST_CONDF(!strcmp(out, ""), "'%s'", out);
    push(m, "\xe3\x81\xaf", out, &stopped); // "は": released with "日"
    TEST_CONDF(!strcmp(out, "\xe6\x97\xa5\xe3\x81\xaf") && !stopped, "'%s'", out);
    push(m, "\xe6\x97\xa5\xe6\x9c", out, &stopped);
    push(m, "\xac!", out, &stopped);
    TEST_CONDF(!strcmp(out, "") && stopped, "'%s'", out);
    cs_stop_free(m);

    // An ASCII stop string right after a multi-byte character.
    const char *s2[] = {"ab"};
    const char *p2[] = {"\xc3", "\xa9" "a", "c", NULL};
    RUN_EQ(s2, p2, "\xc3\xa9" "ac", false);
    const char *p3[] = {"\xc3", "\xa9" "a", "b", NULL};
    RUN_EQ(s2, p3, "\xc3\xa9", true);
}

// The naive reference: scan end positions left to right; at the first end where any stop
// string ends, cut the longest of them. Returns the output length; *stopped says whether
// anything matched.
static size_t ref_cut(const char *const *stops, size_t ns, const char *text, size_t len,
                      bool *stopped) {
    for (size_t e = 1; e <= len; e++) {
        size_t best = 0;
        for (size_t j = 0; j < ns; j++) {
            size_t l = strlen(stops[j]);
            if (l <= e && !memcmp(text + e - l, stops[j], l) && l > best) best = l;
        }
        if (best) {
            *stopped = true;
            return e - best;
        }
    }
    *stopped = false;
    return len;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

// Random texts over a tiny alphabet (so stop strings occur and half-occur often), with some
// multi-byte characters; random stop strings; random splits, including single bytes that cut
// characters. Output must equal the reference, every push's output must be whole UTF-8, and
// nothing may be held beyond CS_STOP_MAX_HELD.
static void test_split_independence(void) {
    static const char *alphabet[] = {"a", "b", "c", "\xc3\xa9", "\xe2\x82\xac"};
    int bad = 0, bad_utf8 = 0, n_stopped = 0;
    for (int it = 0; it < 3000; it++) {
        char stop_buf[4][16];
        const char *stops[4];
        size_t ns = 1 + rnd(3);
        for (size_t j = 0; j < ns; j++) {
            size_t l = 0, chars = 1 + rnd(4);
            for (size_t k = 0; k < chars; k++) {
                const char *a = alphabet[rnd(it % 2 ? 5 : 3)];
                memcpy(stop_buf[j] + l, a, strlen(a)), l += strlen(a);
            }
            stop_buf[j][l] = 0;
            stops[j] = stop_buf[j];
        }
        char text[256];
        size_t len = 0, chars = rnd(60);
        for (size_t k = 0; k < chars; k++) {
            const char *a = alphabet[rnd(5)];
            memcpy(text + len, a, strlen(a)), len += strlen(a);
        }
        bool want_stop;
        size_t want = ref_cut(stops, ns, text, len, &want_stop);

        cs_stop_matcher *m = cs_stop_init(stops, ns, NULL, 0);
        char got[512], out[256 + CS_STOP_MAX_HELD];
        size_t used = 0;
        bool stopped = false;
        for (size_t pos = 0; pos < len && !stopped;) {
            size_t piece = 1 + rnd(it % 3 == 0 ? 2 : 8);
            if (piece > len - pos) piece = len - pos;
            size_t n = cs_stop_push(m, text + pos, piece, out, sizeof out, &stopped);
            bad_utf8 += !utf8_ok(out, n);
            memcpy(got + used, out, n), used += n;
            pos += piece;
        }
        if (!stopped) used += cs_stop_flush(m, got + used, sizeof got - used);
        n_stopped += stopped;
        if (stopped != want_stop || used != want || memcmp(got, text, used)) {
            if (bad++ < 5)
                fprintf(stderr, "mismatch: text '%.*s' stop0 '%s': got %zu, want %zu\n", (int)len,
                        text, stops[0], used, want);
        }
        cs_stop_free(m);
    }
    TEST_CONDF(bad == 0, "%d of 3000 random splits disagree with the reference", bad);
    TEST_CONDF(bad_utf8 == 0, "%d pushes emitted a partial UTF-8 character", bad_utf8);
    TEST_CONDF(n_stopped > 500 && n_stopped < 2900, "only %d of 3000 runs matched", n_stopped);
}

static void test_long_stop_string(void) {
    char stop[CS_STOP_MAX_LEN + 1];
    memset(stop, 'a', CS_STOP_MAX_LEN - 1);
    stop[CS_STOP_MAX_LEN - 1] = 'b';
    stop[CS_STOP_MAX_LEN] = 0;
    const char *stops[] = {stop};
    cs_stop_matcher *m = cs_stop_init(stops, 1, NULL, 0);
    TEST_COND(m != NULL);
    char out[64 + CS_STOP_MAX_HELD];
    bool stopped;
    size_t emitted = 0;
    for (int i = 0; i < 1000; i += 10) emitted += cs_stop_push(m, "aaaaaaaaaa", 10, out, sizeof out, &stopped);
    // Everything but the last 255 'a's (a possible start of the stop string) is out.
    TEST_CONDF(emitted == 1000 - (CS_STOP_MAX_LEN - 1), "emitted %zu", emitted);
    emitted = cs_stop_push(m, "b", 1, out, sizeof out, &stopped);
    TEST_COND(stopped && emitted == 0);
    cs_stop_free(m);
}

static void test_init_errors(void) {
    char err[256];
    const char *empty[] = {"ok", ""};
    err[0] = 0;
    TEST_COND(cs_stop_init(empty, 2, err, sizeof err) == NULL && strstr(err, "stop string 1"));
    const char *many[17];
    for (int i = 0; i < 17; i++) many[i] = "x";
    err[0] = 0;
    TEST_COND(cs_stop_init(many, 17, err, sizeof err) == NULL && strstr(err, "too many"));
    cs_stop_matcher *m = cs_stop_init(many, 16, err, sizeof err);
    TEST_COND(m != NULL);
    cs_stop_free(m);
    char big[CS_STOP_MAX_LEN + 2];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    const char *toolong[] = {big};
    err[0] = 0;
    TEST_COND(cs_stop_init(toolong, 1, err, sizeof err) == NULL && strstr(err, "257 bytes"));
    const char *bad_utf8[] = {"ok", "\x80oops"};
    err[0] = 0;
    TEST_COND(cs_stop_init(bad_utf8, 2, err, sizeof err) == NULL && strstr(err, "UTF-8"));
    const char *truncated[] = {"\xe6\x97"};
    TEST_COND(cs_stop_init(truncated, 1, err, sizeof err) == NULL);
    cs_stop_free(NULL);
}

// The predicate the engine checks requests with is the one cs_stop_init applies: they agree
// on every case, and the reason says what is wrong.
static void test_string_ok(void) {
    char len256[CS_STOP_MAX_LEN + 1], len257[CS_STOP_MAX_LEN + 2];
    memset(len256, 'x', CS_STOP_MAX_LEN);
    len256[CS_STOP_MAX_LEN] = 0;
    memset(len257, 'x', CS_STOP_MAX_LEN + 1);
    len257[CS_STOP_MAX_LEN + 1] = 0;
    const struct { const char *s; bool ok; const char *why; } cases[] = {
        {"x", true, ""}, {len256, true, ""}, {"\xe6\x97\xa5", true, ""},
        {"", false, "is 0 bytes (must be 1 to 256)"}, {len257, false, "is 257 bytes (must be 1 to 256)"},
        {"\x80", false, "is not valid UTF-8"}, {"ok\xe6\x97", false, "is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[64] = "", err[256] = "";
        bool ok = cs_stop_string_ok(cases[i].s, why, sizeof why);
        TEST_CONDF(ok == cases[i].ok && (ok || !strcmp(why, cases[i].why)), "case %zu: ok %d, why '%s'", i, ok, why);
        const char *stops[] = {"fine", cases[i].s};
        cs_stop_matcher *m = cs_stop_init(stops, 2, err, sizeof err);
        TEST_CONDF((m != NULL) == ok && (ok || (strstr(err, "stop string 1") && strstr(err, cases[i].why))),
                   "case %zu: cs_stop_init %s, '%s'", i, m ? "accepted" : "refused", err);
        cs_stop_free(m);
    }
}

int main(void) {
    test_spanning_two_pushes();
    test_false_start_released();
    test_flush();
    test_multiple_and_overlapping();
    test_repeated_partial();
    test_utf8();
    test_split_independence();
    test_long_stop_string();
    test_init_errors();
    test_string_ok();
    return TEST_REPORT();
}
