// Tokenizer tests. Parity fixtures come from Hugging Face `tokenizers` and the Python `regex`
// module (tools/make_tokenizer_fixtures.py); this program needs no Python.
//   - the default model (CSERVE_MODEL GGUF, and CSERVE_HF_DIR/tokenizer.json when present):
//     ids, decode and streaming decode of every corpus string equal HF's;
//   - the pre-tokenizer splits (SmolLM2, GPT-2, Llama-3, Qwen2) equal the regexes' pieces;
//   - a tiny SentencePiece-style BPE from tokenizer.json (two variants) and from GGUF;
//   - streaming decode of characters split over tokens, invalid bytes, small buffers;
//   - long inputs stay fast; malformed tokenizer.json is refused.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file_map.h"
#include "engine/gguf.h"
#include "engine/pretokenize.h"
#include "engine/tokenizer.h"
#include "test_util.h"

#define MAX_COLS 8

typedef struct fixture {
    char *data;
    size_t len;
    char **lines;
    size_t n_lines;
} fixture;

// Splits a fixture file into lines (comment lines starting with '#' dropped), in place.
static bool fixture_load(const char *path, fixture *f) {
    char err[CS_ERR_LEN];
    memset(f, 0, sizeof *f);
    if (cs_file_read_all(path, 64u << 20, &f->data, &f->len, err, sizeof err) != CS_OK) {
        fprintf(stderr, "%s\n", err);
        return false;
    }
    size_t cap = 1024;
    f->lines = malloc(cap * sizeof *f->lines);
    for (char *p = f->data; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (*p != '#') {
            if (f->n_lines == cap) f->lines = realloc(f->lines, (cap *= 2) * sizeof *f->lines);
            f->lines[f->n_lines++] = p;
        }
        p = nl ? nl + 1 : NULL;
    }
    return true;
}

static void fixture_free(fixture *f) {
    free(f->data);
    free(f->lines);
}

// Splits line at tabs into cols (modifies line); returns the count.
static int split_cols(char *line, char **cols) {
    int n = 0;
    cols[n++] = line;
    for (char *p = line; *p && n < MAX_COLS; p++)
        if (*p == '\t') {
            *p = 0;
            cols[n++] = p + 1;
        }
    return n;
}

static size_t unhex(const char *hex, char *out) {
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

static int parse_ints(const char *s, int32_t *out, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        if (n < cap) out[n] = (int32_t)v;
        n++;
        s = end;
    }
    return n;
}

static void print_case(const char *what, const char *text, size_t len) {
    fprintf(stderr, "  %s: \"", what);
    for (size_t i = 0; i < len && i < 160; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\"\n", len > 160 ? "..." : "");
}

// --- parity: ids, decode, streaming decode --------------------------------------------------
typedef struct buf {
    char *text, *dec, *stream;
    int32_t *want, *got;
} buf;

enum { BUF_BYTES = 1 << 16, BUF_IDS = 1 << 14 };

static void buf_init(buf *b) {
    b->text = malloc(BUF_BYTES);
    b->dec = malloc(4 * BUF_BYTES);
    b->stream = malloc(4 * BUF_BYTES);
    b->want = malloc(BUF_IDS * sizeof *b->want);
    b->got = malloc(BUF_IDS * sizeof *b->got);
}

static void buf_free(buf *b) {
    free(b->text);
    free(b->dec);
    free(b->stream);
    free(b->want);
    free(b->got);
}

static size_t stream_decode(const cs_tokenizer *tok, const int32_t *ids, int n, char *out) {
    cs_detok d = {0};
    size_t pos = 0;
    for (int i = 0; i < n; i++) pos += cs_detok_push(&d, tok, ids[i], out + pos, 4096);
    return pos + cs_detok_flush(&d, out + pos, 8);
}

// One case: cols[id_col] are HF's ids, cols[id_col + 1] its decode ("=": the input).
static bool check_case(const cs_tokenizer *tok, char **cols, int id_col, buf *b, int *shown) {
    size_t len = unhex(cols[0], b->text);
    int nw = parse_ints(cols[id_col], b->want, BUF_IDS);
    int ng = cs_tokenizer_encode(tok, b->text, len, CS_TOK_PARSE_SPECIAL, b->got, BUF_IDS);
    bool ok = ng == nw && memcmp(b->got, b->want, (size_t)nw * sizeof *b->want) == 0;
    size_t want_len = len;
    const char *want_dec = b->text;
    char *hexdec = b->stream + 2 * BUF_BYTES; // scratch beyond what the stream test uses
    if (strcmp(cols[id_col + 1], "=") != 0) {
        want_len = unhex(cols[id_col + 1], hexdec);
        want_dec = hexdec;
    }
    size_t dl = cs_tokenizer_decode(tok, b->want, (size_t)nw, false, b->dec, 4 * BUF_BYTES);
    bool dec_ok = dl == want_len && memcmp(b->dec, want_dec, dl) == 0;
    size_t sl = stream_decode(tok, b->want, nw, b->stream);
    bool stream_ok = sl == want_len && memcmp(b->stream, want_dec, sl) == 0;
    if ((!ok || !dec_ok || !stream_ok) && (*shown)++ < 10) {
        fprintf(stderr, "mismatch (%s%s%s):\n", ok ? "" : "ids ", dec_ok ? "" : "decode ",
                stream_ok ? "" : "stream");
        print_case("input", b->text, len);
        fprintf(stderr, "  want: %s\n  got: ", cols[id_col]);
        for (int i = 0; i < ng && i < 64; i++) fprintf(stderr, "%d ", b->got[i]);
        fputc('\n', stderr);
    }
    return ok && dec_ok && stream_ok;
}

static void test_parity(const cs_tokenizer *tok, const char *path, int id_col, const char *label) {
    fixture f;
    TEST_COND(fixture_load(path, &f));
    buf b;
    buf_init(&b);
    int bad = 0, shown = 0;
    for (size_t i = 0; i < f.n_lines; i++) {
        char *cols[MAX_COLS];
        char *line = strdup(f.lines[i]);
        int nc = split_cols(line, cols);
        TEST_COND(nc > id_col + 1);
        if (nc > id_col + 1) bad += !check_case(tok, cols, id_col, &b, &shown);
        free(line);
    }
    printf("%s: %zu strings, %d mismatches\n", label, f.n_lines, bad);
    TEST_CONDF(bad == 0, "%s: %d of %zu strings differ from Hugging Face", label, bad, f.n_lines);
    TEST_COND(f.n_lines >= 2000 || strstr(path, "spm"));
    buf_free(&b);
    fixture_free(&f);
}

// --- pre-tokenizer splits --------------------------------------------------------------
static void test_splits(void) {
    fixture f;
    TEST_COND(fixture_load("tests/fixtures/tokenizer_smollm2.tsv", &f));
    static const cs_pretok kinds[] = {CS_PRETOK_SMOLLM, CS_PRETOK_GPT2, CS_PRETOK_LLAMA3,
                                      CS_PRETOK_QWEN2};
    static const char *names[] = {"smollm", "gpt2", "llama3", "qwen2"};
    char *text = malloc(BUF_BYTES);
    int32_t *want = malloc(BUF_IDS * sizeof *want);
    int bad[4] = {0};
    for (size_t i = 0; i < f.n_lines; i++) {
        char *cols[MAX_COLS];
        char *line = strdup(f.lines[i]);
        int nc = split_cols(line, cols);
        size_t len = unhex(cols[0], text);
        for (int k = 0; k < 4 && nc >= 7; k++) {
            int nw = parse_ints(cols[3 + k], want, BUF_IDS);
            cs_pretok_iter it;
            cs_pretok_iter_init(&it, kinds[k], text, len);
            size_t start, n;
            int j = 0;
            bool ok = true;
            while (cs_pretok_iter_next(&it, &start, &n)) {
                ok &= j < nw && (size_t)want[j] == start + n;
                j++;
            }
            ok &= j == nw;
            if (!ok && bad[k]++ < 5) {
                fprintf(stderr, "split %s differs:\n", names[k]);
                print_case("input", text, len);
                fprintf(stderr, "  want ends: %s\n", cols[3 + k]);
            }
        }
        free(line);
    }
    for (int k = 0; k < 4; k++) {
        printf("split %s: %zu strings, %d mismatches\n", names[k], f.n_lines, bad[k]);
        TEST_CONDF(bad[k] == 0, "pre-tokenizer %s differs on %d strings", names[k], bad[k]);
    }
    free(text);
    free(want);
    fixture_free(&f);
}

// --- the default model -------------------------------------------------------------------
// CS_TOK_STOP_PAST_CAP: below the count, the return is past cap (and, well below it, short
// of the count: it stopped) and the ids written are the full encoding's first ones; at or
// above it, the exact count and ids.
static void test_stop_past_cap(const cs_tokenizer *tok, const char *what) {
    const char *t = "Hello world, this is a test of stopping early. <|im_start|>And a second part; more words.";
    int32_t full[128], part[128];
    int need = cs_tokenizer_encode(tok, t, strlen(t), CS_TOK_PARSE_SPECIAL, full, 128);
    TEST_CONDF(need > 8 && need <= 128, "%s: %d ids", what, need);
    for (int cap = 1; cap <= need + 1 && need <= 128; cap++) {
        for (int i = 0; i < 128; i++) part[i] = -7;
        int n = cs_tokenizer_encode(tok, t, strlen(t), CS_TOK_PARSE_SPECIAL | CS_TOK_STOP_PAST_CAP, part, cap);
        // stopped early: well below the count, it did not run to the end
        bool ok = cap < need ? n > cap && n <= need && (2 * cap > need || n < need) : n == need;
        int written = n < cap ? n : cap;
        ok = ok && memcmp(part, full, sizeof(int32_t) * (size_t)written) == 0 && part[cap] == -7;
        TEST_CONDF(ok, "%s: stop past cap %d: returned %d of %d", what, cap, n, need);
    }
}

static void test_model_facts(const cs_tokenizer *tok) {
    TEST_COND(cs_tokenizer_kind(tok) == CS_TOK_BYTE_BPE);
    TEST_COND(cs_tokenizer_pretok(tok) == CS_PRETOK_SMOLLM);
    TEST_COND(strcmp(cs_tokenizer_kind_name(tok), "byte-level BPE (smollm)") == 0);
    TEST_COND(cs_tokenizer_vocab_size(tok) == 49152);
    TEST_COND(cs_tokenizer_find(tok, "<|im_end|>", 10) == 2);
    TEST_COND(cs_tokenizer_is_eog(tok, 2) && cs_tokenizer_is_eog(tok, 0));
    TEST_COND(!cs_tokenizer_is_eog(tok, 1) && !cs_tokenizer_is_eog(tok, 100));
    TEST_COND(cs_tokenizer_is_special(tok, 1) && !cs_tokenizer_is_special(tok, 17));
    size_t len = 0;
    const char *p = cs_tokenizer_piece(tok, 1, &len);
    TEST_COND(p && len == 12 && memcmp(p, "<|im_start|>", 12) == 0);
    TEST_COND(cs_tokenizer_piece(tok, 49152, &len) == NULL && cs_tokenizer_piece(tok, -1, &len) == NULL);
    const char *tmpl = cs_tokenizer_chat_template(tok);
    TEST_COND(tmpl && strstr(tmpl, "You are a helpful AI assistant named SmolLM"));

    // Without CS_TOK_PARSE_SPECIAL special-token text is ordinary text.
    const char *s = "<|im_start|>user";
    int32_t a[32], b[32];
    int na = cs_tokenizer_encode(tok, s, strlen(s), CS_TOK_PARSE_SPECIAL, a, 32);
    int nb = cs_tokenizer_encode(tok, s, strlen(s), 0, b, 32);
    TEST_COND(na == 2 && a[0] == 1);
    TEST_COND(nb > 2 && b[0] != 1);
    // add_bos_token is false for SmolLM2: ADD_SPECIAL adds nothing.
    TEST_COND(cs_tokenizer_encode(tok, "hi", 2, CS_TOK_ADD_SPECIAL, a, 32) == 1);
    // A short output buffer: the count needed comes back and nothing is written past cap.
    const char *t = "Hello world, this is a test.";
    int need = cs_tokenizer_encode(tok, t, strlen(t), 0, NULL, 0);
    a[2] = -7;
    TEST_COND(need > 3 && cs_tokenizer_encode(tok, t, strlen(t), 0, a, 2) == need && a[2] == -7);
    TEST_COND(cs_tokenizer_encode(tok, t, strlen(t), 0, b, 32) == need && memcmp(a, b, 8) == 0);
    // decode with skip_special drops <|im_start|>; a short buffer gets a prefix.
    char out[64];
    TEST_COND(cs_tokenizer_decode(tok, (int32_t[]){1, 4093}, 2, true, out, 64) == 4);
    TEST_COND(cs_tokenizer_decode(tok, (int32_t[]){1, 4093}, 2, false, out, 5) == 16 &&
              memcmp(out, "<|im_", 5) == 0);
}

// An emoji split over byte-level tokens comes out whole, only once its last byte arrives.
static void test_stream_split_char(const cs_tokenizer *tok) {
    const char *s = "🤗";
    int32_t ids[8];
    int n = cs_tokenizer_encode(tok, s, strlen(s), 0, ids, 8);
    TEST_COND(n >= 2);
    cs_detok d = {0};
    char out[256];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t k = cs_detok_push(&d, tok, ids[i], out + total, sizeof out - total);
        TEST_COND(i < n - 1 ? k == 0 : k == 4);
        total += k;
    }
    TEST_COND(total == 4 && memcmp(out, s, 4) == 0);
    TEST_COND(cs_detok_flush(&d, out, sizeof out) == 0);
    // The same token twice, then a letter: the first lead byte is an incomplete character.
    cs_detok e = {0};
    total = cs_detok_push(&e, tok, ids[0], out, sizeof out);
    total += cs_detok_push(&e, tok, ids[0], out + total, sizeof out - total);
    total += cs_detok_push(&e, tok, cs_tokenizer_find(tok, "a", 1), out + total, sizeof out - total);
    char want[32];
    size_t wl = cs_tokenizer_decode(tok, (int32_t[]){ids[0], ids[0], cs_tokenizer_find(tok, "a", 1)},
                                    3, false, want, sizeof want);
    TEST_COND(total == wl && memcmp(out, want, wl) == 0);
    TEST_COND(wl >= 4 && memcmp(want + wl - 4, "\xEF\xBF\xBD" "a", 4) == 0);
    // Too small a buffer: nothing written, state kept, the need returned.
    cs_detok f = {0};
    int32_t hello = cs_tokenizer_find(tok, "Hello", 5);
    TEST_COND(cs_detok_push(&f, tok, hello, out, 3) == 5 && f.n_pending == 0);
    TEST_COND(cs_detok_push(&f, tok, hello, out, 5) == 5 && memcmp(out, "Hello", 5) == 0);
    TEST_COND(cs_detok_push(&f, tok, -1, out, 5) == 0 && cs_detok_push(&f, tok, 1 << 30, out, 5) == 0);
}

// Long runs must not be quadratic: 100 KB of one letter, 1 MB of base64.
static void test_long_inputs(const cs_tokenizer *tok) {
    size_t n = 1 << 20;
    char *s = malloc(n);
    uint32_t x = 12345;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        s[i] = b64[(x >> 16) & 63];
    }
    int32_t *ids = malloc(n * sizeof *ids);
    char *back = malloc(n + 16);
    clock_t t0 = clock();
    int k = cs_tokenizer_encode(tok, s, n, 0, ids, (int)n);
    TEST_COND(k > 0 && (size_t)k <= n);
    TEST_COND(cs_tokenizer_decode(tok, ids, (size_t)k, false, back, n + 16) == n && memcmp(back, s, n) == 0);
    memset(s, 'a', 100000);
    k = cs_tokenizer_encode(tok, s, 100000, 0, ids, (int)n);
    TEST_COND(k > 0 && k < 100000);
    TEST_COND(cs_tokenizer_decode(tok, ids, (size_t)k, false, back, n) == 100000 && memcmp(back, s, 100000) == 0);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("long inputs: 1 MB base64 + 100 KB 'a' in %.2f s\n", secs);
    TEST_CONDF(secs < 30, "long inputs took %.1f s", secs);
    free(s);
    free(ids);
    free(back);
}

static void test_default_model(void) {
    const char *path = test_env("CSERVE_MODEL");
    cs_gguf *g = NULL;
    char err[CS_ERR_LEN];
    if (!path || cs_gguf_open(path, &g, err, sizeof err) != CS_OK) {
        printf("skip: default model not available (%s)\n", path ? err : "CSERVE_MODEL unset");
        return;
    }
    cs_tokenizer *tok = NULL;
    TEST_COND(cs_tokenizer_from_gguf(g, &tok, err, sizeof err) == CS_OK);
    cs_gguf_free(g);
    if (!tok) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    test_model_facts(tok);
    test_stop_past_cap(tok, "smollm2 gguf");
    test_parity(tok, "tests/fixtures/tokenizer_smollm2.tsv", 1, "smollm2 gguf");
    test_stream_split_char(tok);
    test_long_inputs(tok);
    cs_tokenizer_free(tok);

    const char *dir = test_env("CSERVE_HF_DIR");
    char j[1024], c[1024];
    snprintf(j, sizeof j, "%s/tokenizer.json", dir ? dir : ".");
    snprintf(c, sizeof c, "%s/tokenizer_config.json", dir ? dir : ".");
    FILE *fp = dir ? fopen(j, "rb") : NULL;
    if (!fp) {
        printf("skip: no %s\n", j);
        return;
    }
    fclose(fp);
    TEST_COND(cs_tokenizer_from_hf(j, c, &tok, err, sizeof err) == CS_OK);
    if (!tok) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    test_model_facts(tok);
    test_parity(tok, "tests/fixtures/tokenizer_smollm2.tsv", 1, "smollm2 tokenizer.json");
    cs_tokenizer_free(tok);
}

// --- SentencePiece-style BPE -------------------------------------------------------------
static cs_tokenizer *load_json(const char *path) {
    cs_tokenizer *tok = NULL;
    char err[CS_ERR_LEN];
    if (cs_tokenizer_from_hf(path, NULL, &tok, err, sizeof err) != CS_OK) fprintf(stderr, "%s\n", err);
    return tok;
}

static void test_spm_stream(const cs_tokenizer *tok) {
    int32_t ids[16];
    int n = cs_tokenizer_encode(tok, "🤗", 4, 0, ids, 16);
    // "▁" then the four <0xNN> byte-fallback tokens of the emoji.
    TEST_COND(n == 5 && ids[1] == 3 + 0xF0 && ids[4] == 3 + 0x97);
    cs_detok d = {0};
    char out[64];
    size_t k[5], total = 0;
    for (int i = 0; i < n; i++) total += k[i] = cs_detok_push(&d, tok, ids[i], out + total, 64 - total);
    TEST_COND(k[0] == 0 && k[1] == 0 && k[2] == 0 && k[3] == 0 && k[4] == 4); // leading space dropped
    TEST_COND(total == 4 && memcmp(out, "🤗", 4) == 0);
    // Invalid bytes never stall: 0xFF is U+FFFD at once, a dangling lead byte at flush.
    cs_detok e = {0};
    TEST_COND(cs_detok_push(&e, tok, 3 + 0xFF, out, 64) == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    TEST_COND(cs_detok_push(&e, tok, 3 + 0xE2, out, 64) == 0);
    TEST_COND(cs_detok_push(&e, tok, 3 + 0x82, out, 64) == 0);
    TEST_COND(cs_detok_push(&e, tok, 3 + 'A', out, 64) == 4 && memcmp(out, "\xEF\xBF\xBD" "A", 4) == 0);
    TEST_COND(cs_detok_push(&e, tok, 3 + 0xF0, out, 64) == 0);
    TEST_COND(cs_detok_flush(&e, out, 64) == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    TEST_COND(cs_detok_flush(&e, out, 64) == 0);
}

static void test_spm(void) {
    cs_tokenizer *tok = load_json("tests/fixtures/tokenizer_spm.json");
    TEST_COND(tok != NULL);
    if (!tok) return;
    TEST_COND(cs_tokenizer_kind(tok) == CS_TOK_SPM_BPE && cs_tokenizer_bos(tok) == 1);
    test_parity(tok, "tests/fixtures/tokenizer_spm.tsv", 1, "spm tokenizer.json");
    int32_t ids[8];
    TEST_COND(cs_tokenizer_encode(tok, "a", 1, CS_TOK_ADD_SPECIAL, ids, 8) >= 2 && ids[0] == 1);
    test_spm_stream(tok);
    cs_tokenizer_free(tok);

    tok = load_json("tests/fixtures/tokenizer_spm_meta.json");
    TEST_COND(tok != NULL);
    if (tok) test_parity(tok, "tests/fixtures/tokenizer_spm.tsv", 3, "spm metaspace tokenizer.json");
    cs_tokenizer_free(tok);

    // The same vocabulary in GGUF, merged by score: the same ids as the merges of tokenizer.json.
    cs_gguf *g = NULL;
    char err[CS_ERR_LEN];
    TEST_COND(cs_gguf_open("tests/fixtures/tokenizer_spm.gguf", &g, err, sizeof err) == CS_OK);
    if (!g) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    tok = NULL;
    TEST_COND(cs_tokenizer_from_gguf(g, &tok, err, sizeof err) == CS_OK);
    cs_gguf_free(g);
    if (!tok) return;
    TEST_COND(strcmp(cs_tokenizer_kind_name(tok), "SentencePiece BPE (scores)") == 0);
    test_parity(tok, "tests/fixtures/tokenizer_spm.tsv", 1, "spm gguf");
    TEST_COND(cs_tokenizer_encode(tok, "a", 1, CS_TOK_ADD_SPECIAL, ids, 8) >= 2 && ids[0] == 1);
    test_spm_stream(tok);
    cs_tokenizer_free(tok);
}

// --- bad input ---------------------------------------------------------------------------
static void test_bad_json(void) {
    static const struct { const char *json; cs_status want; } cases[] = {
        {"", CS_ERR_FORMAT},
        {"[1,2]", CS_ERR_FORMAT},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", CS_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", CS_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", CS_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", CS_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}, "
         "\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}}",
         CS_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
         "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}}", CS_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", CS_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_tokenizer *tok = (cs_tokenizer *)&tok;
        char err[CS_ERR_LEN] = "";
        cs_status st = cs_tokenizer_from_hf_json_mem(cases[i].json, strlen(cases[i].json), NULL, 0,
                                                     &tok, err, sizeof err);
        TEST_CONDF(st == cases[i].want && tok == NULL && err[0], "case %zu: %d (%s)", i, st, err);
    }
    cs_tokenizer *tok = (cs_tokenizer *)&tok;
    char err[CS_ERR_LEN] = "";
    TEST_COND(cs_tokenizer_from_hf("tests/fixtures/no-such-file.json", NULL, &tok, err, sizeof err) != CS_OK &&
              tok == NULL);
}

int main(void) {
    test_splits();
    test_spm();
    test_bad_json();
    test_default_model();
    return TEST_REPORT();
}
