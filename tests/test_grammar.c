// The grammar builder and matcher: literals, alternation, epsilon edges, calls and recursion
// (balanced brackets), ambiguity (several stacks at once), rollback, commit, state keys, and
// the depth and size caps.
#include <string.h>

#include "common/assert.h"
#include "engine/grammar.h"
#include "test_util.h"

static bool matches(const cs_grammar *g, const char *s) {
    cs_gram_matcher *m = cs_gm_init(g);
    CS_ASSERT(m);
    bool ok = cs_gm_advance_bytes(m, (const uint8_t *)s, strlen(s)) && cs_gm_can_end(m);
    cs_gm_free(m);
    return ok;
}

static cs_grammar *finish(cs_gram_builder *b, int32_t root) {
    char err[128];
    cs_grammar *g;
    CS_ASSERT(cs_gb_finish(b, root, &g, err, sizeof err) == CS_OK);
    return g;
}

// "yes" | "no" | "yesterday", with epsilon edges joining the ends.
static void test_alternation(void) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), st = cs_gb_start(b, r), end = cs_gb_state(b, r);
    cs_gb_eps(b, cs_gb_literal(b, st, "yes", 3), end);
    cs_gb_eps(b, cs_gb_literal(b, st, "no", 2), end);
    cs_gb_eps(b, cs_gb_literal(b, st, "yesterday", 9), end);
    cs_gb_accept(b, end);
    cs_grammar *g = finish(b, r);
    TEST_COND(matches(g, "yes") && matches(g, "no") && matches(g, "yesterday"));
    TEST_COND(!matches(g, "") && !matches(g, "ye") && !matches(g, "yess") && !matches(g, "nope"));
    cs_gram_matcher *m = cs_gm_init(g);
    TEST_COND(!cs_gm_can_end(m) && cs_gm_can_continue(m));
    TEST_COND(cs_gm_advance_bytes(m, (const uint8_t *)"yes", 3) && cs_gm_can_end(m) && cs_gm_can_continue(m));
    int cp = cs_gm_checkpoint(m);
    TEST_COND(!cs_gm_advance(m, 'x') && cs_gm_checkpoint(m) == cp); // a refused byte changes nothing
    TEST_COND(cs_gm_advance_bytes(m, (const uint8_t *)"terday", 6) && cs_gm_can_end(m) && !cs_gm_can_continue(m));
    cs_gm_rollback(m, cp);
    TEST_COND(cs_gm_can_end(m) && cs_gm_advance(m, 't'));
    TEST_COND(!cs_gm_advance_bytes(m, (const uint8_t *)"erdax", 5)); // all or nothing
    TEST_COND(cs_gm_advance_bytes(m, (const uint8_t *)"erday", 5) && cs_gm_can_end(m));
    cs_gm_free(m);
    cs_grammar_free(g);
}

// B := '(' B ')' B | empty, over calls: nesting up to the depth cap.
static cs_grammar *brackets(void) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), st = cs_gb_start(b, r);
    int32_t a = cs_gb_state(b, r), c = cs_gb_state(b, r), d = cs_gb_state(b, r), e = cs_gb_state(b, r);
    cs_gb_accept(b, st);
    cs_gb_bytes(b, st, '(', '(', a);
    cs_gb_call(b, a, r, c);
    cs_gb_bytes(b, c, ')', ')', d);
    cs_gb_call(b, d, r, e);
    cs_gb_accept(b, e);
    return finish(b, r);
}

static void test_recursion(void) {
    cs_grammar *g = brackets();
    TEST_COND(matches(g, "") && matches(g, "()") && matches(g, "(())()") && matches(g, "((()())())"));
    TEST_COND(!matches(g, "(") && !matches(g, ")") && !matches(g, "(()") && !matches(g, "())("));
    char deep[2 * CS_GRAM_MAX_DEPTH + 8];
    int n = CS_GRAM_MAX_DEPTH - 2;
    for (int i = 0; i < n; i++) deep[i] = '(', deep[n + i] = ')';
    deep[2 * n] = 0;
    TEST_CONDF(matches(g, deep), "nesting %d refused", n);
    n = CS_GRAM_MAX_DEPTH + 2;
    for (int i = 0; i < n; i++) deep[i] = '(', deep[n + i] = ')';
    deep[2 * n] = 0;
    TEST_CONDF(!matches(g, deep), "nesting %d past the cap accepted", n);
    // long generations stay bounded with commit; state keys agree for equal states
    cs_gram_matcher *m = cs_gm_init(g), *m2 = cs_gm_init(g);
    for (int i = 0; i < 20000; i++) {
        TEST_COND(cs_gm_advance(m, '(') && cs_gm_advance(m, ')'));
        if (i % 7 == 0) cs_gm_commit(m);
    }
    TEST_COND(cs_gm_can_end(m));
    TEST_COND(cs_gm_state_hash(m) == cs_gm_state_hash(m2));
    cs_gm_advance(m, '(');
    TEST_COND(cs_gm_state_hash(m) != cs_gm_state_hash(m2));
    cs_gm_advance(m2, '(');
    int32_t k1[64], k2[64];
    size_t n1 = cs_gm_state_key(m, k1, 64), n2 = cs_gm_state_key(m2, k2, 64);
    TEST_COND(n1 == n2 && n1 <= 64 && !memcmp(k1, k2, n1 * 4));
    cs_gm_free(m);
    cs_gm_free(m2);
    cs_grammar_free(g);
}

// (a|ab)*b with overlapping alternatives: several stacks alive at once.
static void test_ambiguity(void) {
    cs_gram_builder *b = cs_gb_init();
    int32_t item = cs_gb_rule(b), is = cs_gb_start(b, item);
    int32_t e1 = cs_gb_literal(b, is, "a", 1), e2 = cs_gb_literal(b, is, "ab", 2);
    cs_gb_accept(b, e1);
    cs_gb_accept(b, e2);
    int32_t root = cs_gb_rule(b), rs = cs_gb_start(b, root);
    cs_gb_call(b, rs, item, rs);
    int32_t end = cs_gb_state(b, root);
    cs_gb_bytes(b, rs, 'b', 'b', end);
    cs_gb_accept(b, end);
    cs_grammar *g = finish(b, root);
    TEST_COND(matches(g, "b") && matches(g, "ab") && matches(g, "abb") && matches(g, "aabab") && matches(g, "abab"));
    TEST_COND(!matches(g, "") && !matches(g, "a") && !matches(g, "bb") && !matches(g, "abbb"));
    cs_grammar_free(g);
}

static void test_errors(void) {
    char err[128] = "";
    cs_grammar *g = NULL;
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b);
    cs_gb_call(b, cs_gb_start(b, r), 5, cs_gb_start(b, r));
    TEST_COND(cs_gb_finish(b, r, &g, err, sizeof err) != CS_OK && !g && strstr(err, "rule 5"));
    b = cs_gb_init();
    TEST_COND(cs_gb_finish(b, 0, &g, err, sizeof err) != CS_OK && strstr(err, "root"));
    // the size cap: a literal longer than the state limit fails cleanly
    b = cs_gb_init();
    r = cs_gb_rule(b);
    static char big[CS_GRAM_MAX_STATES + 16];
    memset(big, 'x', sizeof big);
    TEST_COND(cs_gb_literal(b, cs_gb_start(b, r), big, sizeof big) == -1 && cs_gb_failed(b));
    TEST_COND(cs_gb_finish(b, r, &g, err, sizeof err) != CS_OK && strstr(err, "too large"));
    // -1 arguments after a failure are ignored
    b = cs_gb_init();
    cs_gb_bytes(b, -1, 'a', 'a', -1);
    cs_gb_call(b, -1, -1, -1);
    cs_gb_accept(b, -1);
    TEST_COND(cs_gb_literal(b, -1, "a", 1) == -1);
    cs_gb_free(b);
}

int main(void) {
    test_alternation();
    test_recursion();
    test_ambiguity();
    test_errors();
    return TEST_REPORT();
}
