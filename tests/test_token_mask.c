// Token masks (engine/token_mask.c) against a brute-force reference in which every token's
// bytes are fed to a matcher on their own. Vocabularies: a tiny synthetic SentencePiece one
// built here (prefix runs, two tokens with the same bytes, byte tokens, specials, a
// non-special added token, an id gap) and, when CSERVE_MODEL is set, the default model's 49152
// tokens (else the program exits 77 after the synthetic checks). States come from random
// generations and from a list of nesting depths: at every one the mask must equal the
// reference (count and single token too), a second call must hit the cache with the same
// answer, and the matcher must be unchanged. Grammars cover both walks (the memo alone, and
// bulk acceptance for string-like states) and a walk that overflows the memo.
// Also: cs_tokenizer_token_bytes, single-token detection, end-of-generation tokens, caller
// checkpoints surviving a call, LRU eviction under a tiny max_bytes, and a disabled cache.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "engine/grammar.h"
#include "engine/model_file.h"
#include "engine/token_mask.h"
#include "engine/tokenizer.h"
#include "test_util.h"

#define MAX_PREFIX 4096

// Every id's bytes, for the reference.
typedef struct tok_bytes {
    const cs_tokenizer *tok;
    int32_t n;
    char **b;
    size_t *len;
    size_t words; // bitset words
} tok_bytes;

static void tok_bytes_init(tok_bytes *tb, const cs_tokenizer *tok) {
    tb->tok = tok;
    tb->n = cs_tokenizer_vocab_size(tok);
    tb->words = ((size_t)tb->n + 31) / 32;
    tb->b = calloc((size_t)tb->n, sizeof *tb->b);
    tb->len = calloc((size_t)tb->n, sizeof *tb->len);
    CS_ASSERT(tb->b && tb->len);
    for (int32_t id = 0; id < tb->n; id++) {
        size_t n = cs_tokenizer_token_bytes(tok, id, NULL, 0);
        tb->b[id] = malloc(n + 1);
        CS_ASSERT(tb->b[id]);
        tb->len[id] = cs_tokenizer_token_bytes(tok, id, tb->b[id], n);
        CS_ASSERT(tb->len[id] == n);
    }
}

static void tok_bytes_free(tok_bytes *tb) {
    for (int32_t id = 0; id < tb->n; id++) free(tb->b[id]);
    free(tb->b);
    free(tb->len);
}

static bool bit(const uint32_t *bits, int32_t id) { return bits[id >> 5] >> (id & 31) & 1; }

// The reference mask of the state reached by prefix. fresh: every token gets a matcher reset
// and fed prefix + token (slow, fully independent); else the prefix is fed once and every
// token is tried with cs_gm_advance_bytes and a rollback (for the 49k vocabulary).
static int32_t ref_mask(const tok_bytes *tb, cs_gram_matcher *r, const uint8_t *prefix, size_t plen,
                        bool fresh, uint32_t *bits, int32_t *single) {
    memset(bits, 0, tb->words * sizeof *bits);
    cs_gm_reset(r);
    CS_ASSERT(cs_gm_advance_bytes(r, prefix, plen));
    bool can_end = cs_gm_can_end(r);
    int cp = cs_gm_checkpoint(r);
    int32_t count = 0, last = -1;
    for (int32_t id = 0; id < tb->n; id++) {
        bool ok;
        if (cs_tokenizer_is_eog(tb->tok, id)) {
            ok = can_end;
        } else if (tb->len[id] == 0) {
            ok = false;
        } else if (fresh) {
            cs_gm_reset(r);
            CS_ASSERT(cs_gm_advance_bytes(r, prefix, plen));
            ok = cs_gm_advance_bytes(r, (const uint8_t *)tb->b[id], tb->len[id]);
        } else {
            ok = cs_gm_advance_bytes(r, (const uint8_t *)tb->b[id], tb->len[id]);
            cs_gm_rollback(r, cp);
        }
        if (ok) {
            bits[id >> 5] |= 1u << (id & 31);
            count++;
            last = id;
        }
    }
    *single = count == 1 ? last : -1;
    return count;
}

// The state key of m, malloc'd; *n = its length.
static int32_t *key_of(const cs_gram_matcher *m, size_t *n) {
    *n = cs_gm_state_key(m, NULL, 0);
    int32_t *k = malloc(sizeof *k * (*n ? *n : 1));
    CS_ASSERT(k && cs_gm_state_key(m, k, *n) == *n);
    return k;
}

static void show_diff(const tok_bytes *tb, const uint32_t *got, const uint32_t *want) {
    int shown = 0;
    for (int32_t id = 0; id < tb->n && shown < 5; id++)
        if (bit(got, id) != bit(want, id)) {
            fprintf(stderr, "  token %d '%.*s': mask %d, reference %d\n", id, (int)tb->len[id], tb->b[id],
                    bit(got, id), bit(want, id));
            shown++;
        }
}

typedef struct walk_ctx {
    const char *label;
    const tok_bytes *tb;
    cs_mask_cache *c;
    cs_gram_matcher *m, *r;
    uint32_t *bits, *again, *want;
    uint8_t prefix[MAX_PREFIX];
    size_t plen;
    int bad, states;
} walk_ctx;

// Checks the mask of the current state; returns its count.
static int32_t check_state(walk_ctx *w, bool fresh) {
    size_t k0, k1;
    int32_t *key0 = key_of(w->m, &k0);
    bool end0 = cs_gm_can_end(w->m), cont0 = cs_gm_can_continue(w->m);
    int32_t single, single2, want_single;
    int32_t n = cs_token_mask(w->c, w->m, w->bits, &single);
    int32_t *key1 = key_of(w->m, &k1);
    TEST_CONDF(k0 == k1 && !memcmp(key0, key1, k0 * sizeof *key0) && end0 == cs_gm_can_end(w->m) &&
                   cont0 == cs_gm_can_continue(w->m),
               "%s: the matcher changed", w->label);
    free(key0);
    free(key1);
    int32_t nref = ref_mask(w->tb, w->r, w->prefix, w->plen, fresh, w->want, &want_single);
    bool same = n == nref && single == want_single && !memcmp(w->bits, w->want, w->tb->words * 4);
    if (!same && w->bad++ < 3) {
        fprintf(stderr, "%s: after '%.*s': count %d (reference %d), single %d (%d)\n", w->label,
                (int)w->plen, (const char *)w->prefix, n, nref, single, want_single);
        show_diff(w->tb, w->bits, w->want);
    }
    cs_mask_stats s0, s1;
    cs_mask_cache_stats(w->c, &s0);
    int32_t n2 = cs_token_mask(w->c, w->m, w->again, &single2);
    cs_mask_cache_stats(w->c, &s1);
    TEST_CONDF(s1.calls == s0.calls + 1 && s1.hits == s0.hits + 1 && n2 == n && single2 == single &&
                   !memcmp(w->again, w->bits, w->tb->words * 4),
               "%s: the second call is not an identical hit", w->label);
    w->states++;
    return n;
}

// A random allowed token that is not end-of-generation (the walk goes on), or -1. With
// one_byte, one of the single-byte tokens when any is allowed: random multi-byte tokens mostly
// stay inside strings, single bytes reach the structure (brackets, quotes, digits).
static int32_t pick_token(const tok_bytes *tb, const uint32_t *bits, uint64_t r, bool one_byte) {
    for (int pass = one_byte ? 0 : 1; pass < 2; pass++) {
        int32_t n = 0;
        for (int32_t id = 0; id < tb->n; id++)
            n += bit(bits, id) && !cs_tokenizer_is_eog(tb->tok, id) && (pass || tb->len[id] == 1);
        if (n == 0) continue;
        uint64_t k = r % (uint64_t)n;
        for (int32_t id = 0; id < tb->n; id++)
            if (bit(bits, id) && !cs_tokenizer_is_eog(tb->tok, id) && (pass || tb->len[id] == 1) && k-- == 0)
                return id;
    }
    return -1;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

// Random generations from g: seeds x steps states, each checked.
static void check_walks(const char *label, const cs_grammar *g, const cs_vocab_index *v, const tok_bytes *tb,
                        int seeds, int steps, bool fresh) {
    walk_ctx *w = calloc(1, sizeof *w);
    CS_ASSERT(w);
    w->label = label;
    w->tb = tb;
    w->c = cs_mask_cache_init(g, v, 64 << 20);
    w->m = cs_gm_init(g);
    w->r = cs_gm_init(g);
    w->bits = malloc(tb->words * 4);
    w->again = malloc(tb->words * 4);
    w->want = malloc(tb->words * 4);
    CS_ASSERT(w->c && w->m && w->r && w->bits && w->again && w->want);
    for (int seed = 1; seed <= seeds; seed++) {
        uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)seed;
        cs_gm_reset(w->m);
        w->plen = 0;
        for (int step = 0; step < steps; step++) {
            check_state(w, fresh);
            int32_t id = pick_token(tb, w->bits, rng_next(&rng), step % 2 == 1);
            if (id < 0 || w->plen + tb->len[id] > MAX_PREFIX) break;
            TEST_COND(cs_gm_advance_bytes(w->m, (const uint8_t *)tb->b[id], tb->len[id]));
            cs_gm_commit(w->m);
            memcpy(w->prefix + w->plen, tb->b[id], tb->len[id]);
            w->plen += tb->len[id];
        }
    }
    cs_mask_stats s;
    cs_mask_cache_stats(w->c, &s);
    printf("%s: %d states, %d differ from the reference; %llu calls, %llu hits, %zu bytes cached\n", label,
           w->states, w->bad, (unsigned long long)s.calls, (unsigned long long)s.hits, s.bytes);
    TEST_CONDF(w->bad == 0, "%s: %d of %d masks differ from the reference", label, w->bad, w->states);
    TEST_COND(w->states >= seeds);
    cs_mask_cache_free(w->c);
    cs_gm_free(w->m);
    cs_gm_free(w->r);
    free(w->bits);
    free(w->again);
    free(w->want);
    free(w);
}

// The states after "{" x depth + suffix in the nested grammar, each checked: distinct stacks
// (every one a cache miss), strings among them on the bulk path.
static void check_nested_states(const char *label, const cs_grammar *g, const cs_vocab_index *v,
                                const tok_bytes *tb, bool fresh) {
    static const char *suffixes[] = {"", "\"", "\"ab", "\"a{", "\"a\"", "1", "12", "\"\"{\""};
    walk_ctx *w = calloc(1, sizeof *w);
    CS_ASSERT(w);
    w->label = label;
    w->tb = tb;
    w->c = cs_mask_cache_init(g, v, 64 << 20);
    w->m = cs_gm_init(g);
    w->r = cs_gm_init(g);
    w->bits = malloc(tb->words * 4);
    w->again = malloc(tb->words * 4);
    w->want = malloc(tb->words * 4);
    CS_ASSERT(w->c && w->m && w->r && w->bits && w->again && w->want);
    for (int depth = 0; depth <= 8; depth++)
        for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
            w->plen = (size_t)snprintf((char *)w->prefix, MAX_PREFIX, "%.*s%s", depth, "{{{{{{{{", suffixes[k]);
            cs_gm_reset(w->m);
            bool ok = cs_gm_advance_bytes(w->m, w->prefix, w->plen);
            TEST_COND(ok || depth == 0); // at the top a second value may not follow
            if (ok) check_state(w, fresh);
        }
    cs_mask_stats s;
    cs_mask_cache_stats(w->c, &s);
    printf("%s: %d states, %d differ from the reference; %llu misses\n", label, w->states, w->bad,
           (unsigned long long)(s.calls - s.hits));
    TEST_CONDF(w->bad == 0, "%s: %d of %d masks differ from the reference", label, w->bad, w->states);
    TEST_COND(s.calls - s.hits >= 25); // about three distinct states per depth
    cs_mask_cache_free(w->c);
    cs_gm_free(w->m);
    cs_gm_free(w->r);
    free(w->bits);
    free(w->again);
    free(w->want);
    free(w);
}

// --- grammars, built by hand -----------------------------------------------------------------
static cs_grammar *finish(cs_gram_builder *b, int32_t root) {
    char err[CS_ERR_LEN];
    cs_grammar *g;
    CS_ASSERT(cs_gb_finish(b, root, &g, err, sizeof err) == CS_OK);
    return g;
}

static cs_grammar *g_literal(const char *s) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b);
    cs_gb_accept(b, cs_gb_literal(b, cs_gb_start(b, r), s, strlen(s)));
    return finish(b, r);
}

static cs_grammar *g_alt(const char *const *alts, int n) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), end = cs_gb_state(b, r);
    for (int i = 0; i < n; i++) cs_gb_eps(b, cs_gb_literal(b, cs_gb_start(b, r), alts[i], strlen(alts[i])), end);
    cs_gb_accept(b, end);
    return finish(b, r);
}

// [lo-hi]* : every state can end.
static cs_grammar *g_star(uint8_t lo, uint8_t hi) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), s = cs_gb_start(b, r);
    cs_gb_bytes(b, s, lo, hi, s);
    cs_gb_accept(b, s);
    return finish(b, r);
}

// "a" "b"* ("!?")? : may end after the a and the b's and after "!?", not after "!".
static cs_grammar *g_can_end(void) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), a = cs_gb_literal(b, cs_gb_start(b, r), "a", 1);
    cs_gb_bytes(b, a, 'b', 'b', a);
    cs_gb_accept(b, a);
    cs_gb_accept(b, cs_gb_literal(b, a, "!?", 2));
    return finish(b, r);
}

// V := '{' V* '}' | '"' [^"\x00-\x1F\x7F-\xFF]* '"' | [0-9]+ : calls, recursion, and ambiguity
// (V V on digits splits a number several ways: several stacks at once). Strings at each depth
// are distinct states whose masks take the bulk path (94 self-loop bytes).
static cs_grammar *g_nested(void) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), st = cs_gb_start(b, r), o = cs_gb_state(b, r), s = cs_gb_state(b, r);
    int32_t num = cs_gb_state(b, r), end = cs_gb_state(b, r);
    cs_gb_bytes(b, st, '{', '{', o);
    cs_gb_call(b, o, r, o);
    cs_gb_bytes(b, o, '}', '}', end);
    cs_gb_bytes(b, st, '"', '"', s);
    cs_gb_bytes(b, s, 0x20, 0x21, s);
    cs_gb_bytes(b, s, 0x23, 0x7E, s);
    cs_gb_bytes(b, s, '"', '"', end);
    cs_gb_bytes(b, st, '0', '9', num);
    cs_gb_bytes(b, num, '0', '9', num);
    cs_gb_accept(b, num);
    cs_gb_accept(b, end);
    return finish(b, r);
}

// A JSON string: '"' (unescaped byte | '\' escape)* '"'; most tokens fit inside one.
static cs_grammar *g_json_string(void) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), in = cs_gb_state(b, r), esc = cs_gb_state(b, r), end = cs_gb_state(b, r);
    cs_gb_bytes(b, cs_gb_start(b, r), '"', '"', in);
    cs_gb_bytes(b, in, 0x20, 0x21, in);
    cs_gb_bytes(b, in, 0x23, 0x5B, in);
    cs_gb_bytes(b, in, 0x5D, 0xFF, in);
    cs_gb_bytes(b, in, '\\', '\\', esc);
    static const char escapes[] = "\"\\/bfnrt";
    for (const char *p = escapes; *p; p++) cs_gb_bytes(b, esc, (uint8_t)*p, (uint8_t)*p, in);
    cs_gb_bytes(b, in, '"', '"', end);
    cs_gb_accept(b, end);
    return finish(b, r);
}

// --- the synthetic vocabulary -------------------------------------------------------------------
typedef struct piece {
    const char *s;
    int id;
} piece;

// SentencePiece style: U+2581 is a space, <0xNN> a byte. Ids 36..39 are unused.
static const piece SYNTH_VOCAB[] = {
    {"<0x22>", 3}, {"<0x61>", 4}, {"<0xC3>", 5}, {"<0xA9>", 6}, {"a", 7}, {"b", 8}, {"c", 9},
    {"ab", 10}, {"abc", 11}, {"abd", 12}, {"abcd", 13}, {"b\"", 14}, {"\"", 15}, {"{", 16},
    {"{\"", 17}, {"}", 18}, {"1", 19}, {"12", 20}, {"123", 21}, {"\xE2\x96\x81", 22},
    {"\xE2\x96\x81" "a", 23}, {"\xC3\xA9", 24}, {"!", 25}, {"?", 26}, {"!?", 27}, {"d", 28},
    {"\"}", 29}, {"bb", 30}, {"bbb", 31}, {"ba", 32}, {"ca", 33}, {"x", 34}, {"0", 40}, {"9", 41},
    {"z", 42}, {"\xE2\x96\x81\xE2\x96\x81", 43}, {"}}", 44}, {"{{", 45}, {"\"a", 46}, {"a\"", 47},
};

static void json_str(char *out, size_t *pos, const char *s) {
    out[(*pos)++] = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') out[(*pos)++] = '\\';
        out[(*pos)++] = *s;
    }
    out[(*pos)++] = '"';
}

static cs_tokenizer *synth_tokenizer(void) {
    char json[8192];
    size_t pos = 0;
    pos += (size_t)sprintf(json + pos, "{\"added_tokens\": ["
                                       "{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
                                       "{\"id\": 1, \"content\": \"<s>\", \"special\": true},"
                                       "{\"id\": 2, \"content\": \"</s>\", \"special\": true},"
                                       "{\"id\": 35, \"content\": \"<user>\", \"special\": false}],"
                                       "\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"},"
                                       " \"content\": \"\xE2\x96\x81\"},"
                                       "\"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0},"
                                       "\"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {");
    for (size_t i = 0; i < sizeof SYNTH_VOCAB / sizeof SYNTH_VOCAB[0]; i++) {
        if (i) json[pos++] = ',';
        json_str(json, &pos, SYNTH_VOCAB[i].s);
        pos += (size_t)sprintf(json + pos, ": %d", SYNTH_VOCAB[i].id);
    }
    pos += (size_t)sprintf(json + pos, "}}}");
    CS_ASSERT(pos < sizeof json);
    cs_tokenizer *tok = NULL;
    char err[CS_ERR_LEN];
    if (cs_tokenizer_from_hf_json_mem(json, pos, NULL, 0, &tok, err, sizeof err) != CS_OK)
        fprintf(stderr, "synthetic tokenizer: %s\n", err);
    return tok;
}

static int32_t synth_id(const cs_tokenizer *tok, const char *piece) {
    int32_t id = cs_tokenizer_find(tok, piece, strlen(piece));
    CS_ASSERT(id >= 0);
    return id;
}

static void test_token_bytes(const cs_tokenizer *tok) {
    char out[16];
    TEST_COND(cs_tokenizer_token_bytes(tok, 3, out, sizeof out) == 1 && out[0] == '"'); // <0x22>
    TEST_COND(cs_tokenizer_token_bytes(tok, 5, out, sizeof out) == 1 && out[0] == '\xC3');
    // no leading-space strip, although the decoder strips one at the start of a text
    TEST_COND(cs_tokenizer_token_bytes(tok, 23, out, sizeof out) == 2 && !memcmp(out, " a", 2));
    TEST_COND(cs_tokenizer_token_bytes(tok, 43, out, sizeof out) == 2 && !memcmp(out, "  ", 2));
    TEST_COND(cs_tokenizer_token_bytes(tok, 35, out, sizeof out) == 6 && !memcmp(out, "<user>", 6));
    for (int32_t id = 0; id < 3; id++) TEST_COND(cs_tokenizer_token_bytes(tok, id, out, sizeof out) == 0);
    TEST_COND(cs_tokenizer_token_bytes(tok, 37, out, sizeof out) == 0); // no token with this id
    TEST_COND(cs_tokenizer_token_bytes(tok, -1, out, sizeof out) == 0);
    TEST_COND(cs_tokenizer_token_bytes(tok, 1000, out, sizeof out) == 0);
    memset(out, 'Q', sizeof out);
    TEST_COND(cs_tokenizer_token_bytes(tok, 13, out, 3) == 4 && out[0] == 'Q'); // too small: nothing written
    TEST_COND(cs_tokenizer_token_bytes(tok, 13, out, 4) == 4 && !memcmp(out, "abcd", 4));
}

// A mask of m's state from a fresh cache, checked against the reference; returns the count.
static int32_t mask_of(const cs_grammar *g, const cs_vocab_index *v, const tok_bytes *tb, const char *prefix,
                       uint32_t *bits, int32_t *single) {
    cs_mask_cache *c = cs_mask_cache_init(g, v, 1 << 20);
    cs_gram_matcher *m = cs_gm_init(g), *r = cs_gm_init(g);
    uint32_t *want = malloc(tb->words * 4);
    CS_ASSERT(c && m && r && want);
    size_t plen = strlen(prefix);
    CS_ASSERT(cs_gm_advance_bytes(m, (const uint8_t *)prefix, plen));
    int32_t n = cs_token_mask(c, m, bits, single), want_single;
    int32_t nref = ref_mask(tb, r, (const uint8_t *)prefix, plen, true, want, &want_single);
    TEST_CONDF(n == nref && *single == want_single && !memcmp(bits, want, tb->words * 4),
               "after '%s': %d tokens (reference %d)", prefix, n, nref);
    cs_mask_cache_free(c);
    cs_gm_free(m);
    cs_gm_free(r);
    free(want);
    return n;
}

// Exactly one token allowed: *single names it; the end of a literal allows only </s>.
static void test_single(const cs_tokenizer *tok, const cs_vocab_index *v, const tok_bytes *tb) {
    uint32_t bits[2];
    int32_t single;
    cs_grammar *g = g_literal("abc");
    // "a" "<0x61>" "ab" "abc" (not "abcd", "abd", </s>)
    TEST_COND(mask_of(g, v, tb, "", bits, &single) == 4 && single == -1);
    TEST_COND(bit(bits, synth_id(tok, "a")) && bit(bits, synth_id(tok, "<0x61>")) &&
              bit(bits, synth_id(tok, "abc")) && !bit(bits, synth_id(tok, "abcd")));
    TEST_COND(mask_of(g, v, tb, "ab", bits, &single) == 1 && single == synth_id(tok, "c"));
    TEST_COND(mask_of(g, v, tb, "abc", bits, &single) == 1 && single == synth_id(tok, "</s>"));
    cs_grammar_free(g);
    g = g_literal("x");
    TEST_COND(mask_of(g, v, tb, "", bits, &single) == 1 && single == synth_id(tok, "x"));
    cs_grammar_free(g);
    g = g_literal("q"); // no token starts with q: nothing allowed
    TEST_COND(mask_of(g, v, tb, "", bits, &single) == 0 && single == -1 && bits[0] == 0 && bits[1] == 0);
    cs_grammar_free(g);
}

// </s> exactly where the grammar may end; never <unk>, <s>, or an unused id.
static void test_eog(const cs_tokenizer *tok, const cs_vocab_index *v, const tok_bytes *tb) {
    uint32_t bits[2];
    int32_t single, eos = synth_id(tok, "</s>");
    TEST_COND(cs_tokenizer_is_eog(tok, eos));
    cs_grammar *g = g_can_end();
    static const struct { const char *prefix; bool end; } cases[] = {
        {"", false}, {"a", true}, {"abb", true}, {"ab!", false}, {"a!?", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t n = mask_of(g, v, tb, cases[i].prefix, bits, &single);
        TEST_CONDF(bit(bits, eos) == cases[i].end && !bit(bits, 0) && !bit(bits, 1) && !bit(bits, 37),
                   "after '%s'", cases[i].prefix);
        TEST_COND(n > 0);
    }
    TEST_COND(mask_of(g, v, tb, "a!", bits, &single) == 1 && single == synth_id(tok, "?"));
    cs_grammar_free(g);
}

// A caller's checkpoint taken before a mask call still rolls back after it.
static void test_caller_checkpoint(const cs_vocab_index *v, const tok_bytes *tb) {
    cs_grammar *g = g_nested();
    cs_mask_cache *c = cs_mask_cache_init(g, v, 1 << 20);
    cs_gram_matcher *m = cs_gm_init(g);
    uint32_t bits[2];
    int32_t single;
    TEST_COND(cs_gm_advance_bytes(m, (const uint8_t *)"{{", 2));
    size_t k0, k1;
    int32_t *key0 = key_of(m, &k0);
    int cp = cs_gm_checkpoint(m);
    TEST_COND(cs_gm_advance_bytes(m, (const uint8_t *)"\"a{", 3));
    TEST_COND(cs_token_mask(c, m, bits, &single) > 0);
    TEST_COND(cs_gm_advance(m, '"'));
    TEST_COND(cs_token_mask(c, m, bits, &single) > 0);
    cs_gm_rollback(m, cp);
    int32_t *key1 = key_of(m, &k1);
    TEST_COND(k0 == k1 && !memcmp(key0, key1, k0 * sizeof *key0));
    TEST_COND(cs_gm_advance_bytes(m, (const uint8_t *)"}}", 2) && cs_gm_can_end(m));
    free(key0);
    free(key1);
    cs_gm_free(m);
    cs_mask_cache_free(c);
    cs_grammar_free(g);
}

// Four states of a literal with keys of equal size; room for two and a half masks: the least
// recently used goes, and the hits come exactly where they should.
static void test_lru(const cs_vocab_index *v, const tok_bytes *tb) {
    cs_grammar *g = g_literal("abcd");
    static const char *prefixes[3] = {"", "a", "ab"};
    cs_gram_matcher *m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = cs_gm_init(g);
        CS_ASSERT(m[i] && cs_gm_advance_bytes(m[i], (const uint8_t *)prefixes[i], strlen(prefixes[i])));
    }
    uint32_t bits[2], want[2];
    int32_t single, want_single;
    cs_mask_stats s;
    cs_mask_cache *c = cs_mask_cache_init(g, v, 1 << 20);
    cs_token_mask(c, m[0], bits, &single);
    cs_mask_cache_stats(c, &s);
    size_t one = s.bytes;
    TEST_COND(one >= sizeof bits && s.calls == 1 && s.hits == 0);
    cs_mask_cache_free(c);

    c = cs_mask_cache_init(g, v, 2 * one + one / 2);
    cs_gram_matcher *r = cs_gm_init(g);
    // state, then whether it hits: 0 1 0(hit) 2 (evicts 1) 0(hit) 1 (evicts 2) 2 (evicts 0)
    static const struct { int state; bool hit; } seq[] = {
        {0, false}, {1, false}, {0, true}, {2, false}, {0, true}, {1, false}, {2, false}, {1, true},
    };
    uint64_t hits = 0;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        int k = seq[i].state;
        int32_t n = cs_token_mask(c, m[k], bits, &single);
        int32_t nref = ref_mask(tb, r, (const uint8_t *)prefixes[k], strlen(prefixes[k]), true, want, &want_single);
        TEST_CONDF(n == nref && single == want_single && !memcmp(bits, want, sizeof bits), "call %zu", i);
        hits += seq[i].hit;
        cs_mask_cache_stats(c, &s);
        TEST_CONDF(s.calls == i + 1 && s.hits == hits && s.bytes <= 2 * one + one / 2,
                   "call %zu: %llu hits, want %llu; %zu bytes", i, (unsigned long long)s.hits,
                   (unsigned long long)hits, s.bytes);
    }
    TEST_COND(s.bytes == 2 * one);
    cs_mask_cache_free(c);

    // max_bytes 0: nothing cached, masks still right
    c = cs_mask_cache_init(g, v, 0);
    for (int i = 0; i < 6; i++) {
        int k = i % 3;
        int32_t n = cs_token_mask(c, m[k], bits, &single);
        int32_t nref = ref_mask(tb, r, (const uint8_t *)prefixes[k], strlen(prefixes[k]), true, want, &want_single);
        TEST_COND(n == nref && single == want_single && !memcmp(bits, want, sizeof bits));
    }
    cs_mask_cache_stats(c, &s);
    TEST_COND(s.calls == 6 && s.hits == 0 && s.bytes == 0);
    cs_mask_cache_free(c);
    for (int i = 0; i < 3; i++) cs_gm_free(m[i]);
    cs_gm_free(r);
    cs_grammar_free(g);
}

typedef cs_grammar *(*grammar_fn)(void);
static cs_grammar *g_lit_json(void) { return g_literal("{\"name\": \"abc\", \"n\": 123}"); }
static cs_grammar *g_alt5(void) {
    static const char *const alts[] = {"ab", "abd", "b\"", "{\"", "12", " a", "\xC3\xA9!", "abcd?", "true", "false"};
    return g_alt(alts, 10);
}
static cs_grammar *g_star_ac(void) { return g_star('a', 'c'); }
static cs_grammar *g_star_print(void) { return g_star(0x20, 0x7E); }

static const struct { const char *name; grammar_fn make; } GRAMMARS[] = {
    {"literal", g_lit_json}, {"alternation", g_alt5}, {"star [a-c]", g_star_ac},
    {"star [ -~]", g_star_print}, {"can end", g_can_end}, {"nested", g_nested},
    {"json string", g_json_string},
};
#define N_GRAMMARS (sizeof GRAMMARS / sizeof GRAMMARS[0])

static void test_synthetic(void) {
    cs_tokenizer *tok = synth_tokenizer();
    TEST_COND(tok != NULL);
    if (!tok) return;
    tok_bytes tb;
    tok_bytes_init(&tb, tok);
    cs_vocab_index *v = cs_vocab_index_init(tok);
    TEST_COND(v && cs_vocab_index_size(v) == cs_tokenizer_vocab_size(tok));
    test_token_bytes(tok);
    test_single(tok, v, &tb);
    test_eog(tok, v, &tb);
    test_caller_checkpoint(v, &tb);
    test_lru(v, &tb);
    for (size_t i = 0; i < N_GRAMMARS; i++) {
        char label[64];
        snprintf(label, sizeof label, "synthetic, %s", GRAMMARS[i].name);
        cs_grammar *g = GRAMMARS[i].make();
        check_walks(label, g, v, &tb, 30, 40, true);
        cs_grammar_free(g);
    }
    cs_grammar *g = g_nested();
    check_nested_states("synthetic, nested states", g, v, &tb, true);
    cs_grammar_free(g);
    cs_vocab_index_free(v);
    tok_bytes_free(&tb);
    cs_tokenizer_free(tok);
}

// Lowercase words of up to 4 letters, as a trie with one state per prefix the vocabulary has
// (7778 of them in SmolLM2's): one walk meets more states than the walk's memo holds
// (4096), so its end runs on the matcher alone.
static cs_grammar *g_vocab_trie(const tok_bytes *tb) {
    cs_gram_builder *b = cs_gb_init();
    int32_t r = cs_gb_rule(b), cap = 1024, n = 1;
    int32_t (*child)[26] = malloc(sizeof *child * (size_t)cap);
    int32_t *state = malloc(sizeof *state * (size_t)cap);
    CS_ASSERT(child && state);
    memset(child[0], 0xFF, sizeof child[0]);
    state[0] = cs_gb_start(b, r);
    cs_gb_accept(b, state[0]);
    for (int32_t id = 0; id < tb->n; id++) {
        int32_t node = 0;
        for (size_t d = 0; d < tb->len[id] && d < 4; d++) {
            int c = tb->b[id][d] - 'a';
            if (c < 0 || c >= 26) break;
            if (child[node][c] < 0) {
                if (n == cap) {
                    cap *= 2;
                    child = realloc(child, sizeof *child * (size_t)cap);
                    state = realloc(state, sizeof *state * (size_t)cap);
                    CS_ASSERT(child && state);
                }
                memset(child[n], 0xFF, sizeof child[n]);
                state[n] = cs_gb_state(b, r);
                cs_gb_accept(b, state[n]);
                cs_gb_bytes(b, state[node], (uint8_t)('a' + c), (uint8_t)('a' + c), state[n]);
                child[node][c] = n++;
            }
            node = child[node][c];
        }
    }
    free(child);
    free(state);
    TEST_COND(n > 4096);
    return finish(b, r);
}

// The default model: its end-of-generation tokens, and random walks checked against the
// reference (fewer: every reference mask tries 49152 tokens).
static void test_default_model(const char *path) {
    cs_model_file *mf;
    char err[CS_ERR_LEN];
    if (cs_model_file_open(path, &mf, err, sizeof err) != CS_OK) {
        TEST_CONDF(0, "%s", err);
        return;
    }
    const cs_tokenizer *tok = mf->tok;
    tok_bytes tb;
    tok_bytes_init(&tb, tok);
    cs_vocab_index *v = cs_vocab_index_init(tok);
    TEST_COND(v && cs_vocab_index_size(v) == 49152);
    int32_t im_end = cs_tokenizer_find(tok, "<|im_end|>", 10), im_start = cs_tokenizer_find(tok, "<|im_start|>", 12);
    TEST_COND(im_end >= 0 && cs_tokenizer_is_eog(tok, im_end) && im_start >= 0 && !cs_tokenizer_is_eog(tok, im_start));
    cs_grammar *g = g_can_end();
    cs_mask_cache *c = cs_mask_cache_init(g, v, 1 << 20);
    cs_gram_matcher *m = cs_gm_init(g);
    uint32_t *bits = malloc(tb.words * 4);
    int32_t single;
    cs_token_mask(c, m, bits, &single);
    TEST_COND(!bit(bits, im_end) && !bit(bits, im_start));
    TEST_COND(cs_gm_advance(m, 'a'));
    cs_token_mask(c, m, bits, &single);
    TEST_COND(bit(bits, im_end) && !bit(bits, im_start));
    free(bits);
    cs_gm_free(m);
    cs_mask_cache_free(c);
    cs_grammar_free(g);
    for (size_t i = 0; i < N_GRAMMARS; i++) {
        char label[64];
        snprintf(label, sizeof label, "default model, %s", GRAMMARS[i].name);
        g = GRAMMARS[i].make();
        check_walks(label, g, v, &tb, 4, 24, false);
        cs_grammar_free(g);
    }
    g = g_nested();
    check_nested_states("default model, nested states", g, v, &tb, false);
    cs_grammar_free(g);
    g = g_vocab_trie(&tb);
    check_walks("default model, vocabulary trie", g, v, &tb, 3, 4, false);
    cs_grammar_free(g);
    cs_vocab_index_free(v);
    tok_bytes_free(&tb);
    cs_model_file_free(mf);
}

int main(void) {
    test_synthetic();
    const char *model = test_env("CSERVE_MODEL");
    if (!model) {
        printf("CSERVE_MODEL not set: default-model checks skipped\n");
        int rc = TEST_REPORT();
        return rc ? rc : 77;
    }
    test_default_model(model);
    return TEST_REPORT();
}
