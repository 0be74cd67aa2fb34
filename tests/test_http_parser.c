// HTTP request-head parser tests: every rule of the strict parser with a good and a bad case and
// the expected status, heads fed one byte at a time, pipelined heads, header lookup, the head
// size limit (431) and the query split.
#include <stdlib.h>
#include <string.h>

#include "server/http_parser.h"
#include "tests/test_util.h"

#define MAX_HEAD 16384

static http_request req;
static int status;
static const char *why;

// Parses s[0..n) from an exact-size copy, so that ASan catches any read past the end.
static int parse_n(const char *s, size_t n, size_t max_head) {
    char *b = malloc(n ? n : 1);
    memcpy(b, s, n);
    int r = http_parse_head(b, n, max_head, &req, &status, &why);
    // pointers in req point into b: move them to the same offsets in s, which outlives b
    if (r == HTTP_HEAD_DONE) {
        req.path = s + (req.path - b);
        if (req.query) req.query = s + (req.query - b);
        for (int i = 0; i < req.n_headers; i++) {
            req.headers[i].name = s + (req.headers[i].name - b);
            req.headers[i].value = s + (req.headers[i].value - b);
        }
    }
    free(b);
    return r;
}

static int parse(const char *s) { return parse_n(s, strlen(s), MAX_HEAD); }

static bool str_eq(const char *p, size_t n, const char *want) {
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

#define EXPECT_BAD(s, want_status)                                                              \
    do {                                                                                        \
        int r_ = parse(s);                                                                      \
        TEST_CONDF(r_ == HTTP_HEAD_BAD && status == (want_status) && why,                        \
                   "'%s': got r=%d status=%d, want BAD %d", s, r_, status, want_status);         \
    } while (0)

#define EXPECT_BAD_N(s, n, want_status)                                                         \
    do {                                                                                        \
        int r_ = parse_n(s, n, MAX_HEAD);                                                       \
        TEST_CONDF(r_ == HTTP_HEAD_BAD && status == (want_status) && why,                        \
                   "'%s': got r=%d status=%d, want BAD %d", s, r_, status, want_status);         \
    } while (0)

#define EXPECT_DONE(s)                                                                          \
    do {                                                                                        \
        int r_ = parse(s);                                                                      \
        TEST_CONDF(r_ == HTTP_HEAD_DONE && req.head_len == strlen(s) && status == 0 && !why,    \
                   "'%s': got r=%d status=%d why=%s", s, r_, status, why ? why : "");           \
    } while (0)

static void test_get(void) {
    const char *s = "GET /v1/models HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n";
    TEST_COND(parse(s) == HTTP_HEAD_DONE);
    TEST_COND(!strcmp(req.method, "GET"));
    TEST_COND(str_eq(req.path, req.path_len, "/v1/models"));
    TEST_COND(req.query == NULL && req.query_len == 0);
    TEST_COND(req.minor == 1);
    TEST_COND(req.n_headers == 2);
    TEST_COND(str_eq(req.headers[0].name, req.headers[0].name_len, "Host"));
    TEST_COND(str_eq(req.headers[0].value, req.headers[0].value_len, "localhost:8080"));
    TEST_COND(str_eq(req.headers[1].name, req.headers[1].name_len, "Accept"));
    TEST_COND(req.content_length == -1);
    TEST_COND(req.keep_alive && !req.expect_continue);
    TEST_COND(req.head_len == strlen(s));
    TEST_COND(status == 0 && why == NULL);
}

static void test_query_split(void) {
    TEST_COND(parse("GET /a/b?x=1&y=%20?z HTTP/1.1\r\nHost: h\r\n\r\n") == HTTP_HEAD_DONE);
    TEST_COND(str_eq(req.path, req.path_len, "/a/b"));
    TEST_COND(str_eq(req.query, req.query_len, "x=1&y=%20?z"));
    // a '?' with nothing after it: an empty query, not an absent one
    TEST_COND(parse("GET /? HTTP/1.1\r\nHost: h\r\n\r\n") == HTTP_HEAD_DONE);
    TEST_COND(str_eq(req.path, req.path_len, "/") && req.query && req.query_len == 0);
    TEST_COND(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n") == HTTP_HEAD_DONE);
    TEST_COND(str_eq(req.path, req.path_len, "/") && !req.query && req.query_len == 0);
}

static void test_leading_crlf(void) {
    char s[256];
    strcpy(s, "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_DONE(s);
    TEST_COND(str_eq(req.path, req.path_len, "/"));
    s[0] = 0;
    for (int i = 0; i < 8; i++) strcat(s, "\r\n");
    strcat(s, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_DONE(s); // head_len counts the 8 empty lines
    s[0] = 0;
    for (int i = 0; i < 9; i++) strcat(s, "\r\n");
    strcat(s, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_BAD(s, 400);
    EXPECT_BAD("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    TEST_COND(parse("\r\n\r") == HTTP_HEAD_PARTIAL);
}

static void test_request_line(void) {
    EXPECT_DONE("DELETE / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_DONE("M!#$%&'*+-.^_`| / HTTP/1.1\r\nHost: h\r\n\r\n"); // 15 tchars
    TEST_COND(!strcmp(req.method, "M!#$%&'*+-.^_`|"));
    EXPECT_BAD("M!#$%&'*+-.^_`|~ / HTTP/1.1\r\nHost: h\r\n\r\n", 400); // 16
    EXPECT_BAD(" / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / \r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET /\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET\r\nHost: h\r\n\r\n", 400);
    // 8 empty lines may still be followed by a request line, a 9th is refused
    TEST_COND(parse("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n") == HTTP_HEAD_PARTIAL);
    EXPECT_BAD("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", 400);
    // only origin-form targets
    EXPECT_BAD("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD_N("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n", 29, 400);
    EXPECT_DONE("GET /!~%41\"<>{} HTTP/1.1\r\nHost: h\r\n\r\n");
    // versions
    EXPECT_DONE("GET / HTTP/1.0\r\n\r\n");
    TEST_COND(req.minor == 0);
    EXPECT_BAD("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    EXPECT_BAD("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    EXPECT_BAD("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
    EXPECT_BAD("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/a.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1x1\r\nHost: h\r\n\r\n", 400);
}

static void test_line_endings(void) {
    EXPECT_BAD("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\n\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400);
    // a bare LF is refused before the head is complete
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\nX", 400);
}

static void test_header_syntax(void) {
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\nA(b: x\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: h\r\nX: a\x1fz\r\n\r\n", 400);
    EXPECT_BAD_N("GET / HTTP/1.1\r\nHost: h\r\nX: a\0z\r\n\r\n", 35, 400);
    // obs-text, HTAB and SP inside a value are fine; OWS around it is trimmed
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nX: \t a\x80\xff b\tc \t\r\n\r\n");
    size_t n;
    const char *v = http_header_get(&req, "x", &n);
    TEST_COND(str_eq(v, n, "a\x80\xff b\tc"));
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nEmpty:\r\nSpaces:   \r\n\r\n");
    v = http_header_get(&req, "empty", &n);
    TEST_COND(v && n == 0);
    v = http_header_get(&req, "spaces", &n);
    TEST_COND(v && n == 0);
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nX-Weird!#$%&'*+-.^_`|~1: v\r\n\r\n");
}

static void test_header_count(void) {
    char s[4096];
    strcpy(s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++) sprintf(s + strlen(s), "X-%d: %d\r\n", i, i);
    strcat(s, "\r\n");
    EXPECT_DONE(s);
    TEST_COND(req.n_headers == HTTP_MAX_HEADERS);
    size_t n;
    const char *v = http_header_get(&req, "x-63", &n);
    TEST_COND(str_eq(v, n, "63"));
    strcpy(s + strlen(s) - 2, "X-64: 64\r\n\r\n");
    EXPECT_BAD(s, 431);
}

static void test_content_length(void) {
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
    TEST_COND(req.content_length == 5);
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\ncontent-length:  0 \r\n\r\n");
    TEST_COND(req.content_length == 0);
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999\r\n\r\n");
    TEST_COND(req.content_length == 999999999999999LL);
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n");
    TEST_COND(req.content_length == 7);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400);
    // repeated: the same value is one length, two values are a smuggling attempt
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    TEST_COND(req.content_length == 5);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nCONTENT-LENGTH: 1\r\n\r\n", 400);
}

static void test_transfer_encoding(void) {
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    EXPECT_BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: gzip\r\n\r\n", 501);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

static void test_host(void) {
    EXPECT_BAD("GET / HTTP/1.1\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400);
    EXPECT_BAD("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    EXPECT_DONE("GET / HTTP/1.0\r\n\r\n");
    EXPECT_DONE("GET / HTTP/1.1\r\nhost:\r\n\r\n"); // an empty Host is allowed (RFC 9112 3.2)
}

static void test_connection(void) {
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    TEST_COND(req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    TEST_COND(!req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nconnection: Keep-Alive ,  CLOSE\r\n\r\n");
    TEST_COND(!req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nConnection: close\r\n\r\n");
    TEST_COND(!req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed, xclose\r\n\r\n");
    TEST_COND(req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.0\r\n\r\n");
    TEST_COND(!req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    TEST_COND(req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.0\r\nConnection: foo,,KEEP-ALIVE\r\n\r\n");
    TEST_COND(req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    TEST_COND(!req.keep_alive);
    EXPECT_DONE("GET / HTTP/1.0\r\nX-Connection: keep-alive\r\n\r\n");
    TEST_COND(!req.keep_alive);
}

static void test_expect(void) {
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
    TEST_COND(req.expect_continue);
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\nexpect:100-continue \r\n\r\n");
    TEST_COND(req.expect_continue);
    // any other expectation cannot be met (RFC 9110 10.1.1)
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continues\r\n\r\n", 417);
    EXPECT_BAD("POST / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", 417);
    EXPECT_DONE("POST / HTTP/1.1\r\nHost: h\r\n\r\n");
    TEST_COND(!req.expect_continue);
}

static void test_header_get(void) {
    EXPECT_DONE("GET / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    size_t n = 99;
    const char *v = http_header_get(&req, "content-type", &n);
    TEST_COND(str_eq(v, n, "application/json"));
    v = http_header_get(&req, "CONTENT-TYPE", &n);
    TEST_COND(str_eq(v, n, "application/json"));
    v = http_header_get(&req, "X-A", &n); // the first of two
    TEST_COND(str_eq(v, n, "1"));
    TEST_COND(http_header_get(&req, "content", &n) == NULL);
    TEST_COND(http_header_get(&req, "content-type-x", &n) == NULL);
    TEST_COND(http_header_get(&req, "", &n) == NULL);
}

// Every proper prefix of a complete head is PARTIAL, the whole gives the same result as at once.
static void check_bytewise(const char *s, size_t n) {
    TEST_COND(parse_n(s, n, MAX_HEAD) == HTTP_HEAD_DONE);
    http_request full = req;
    for (size_t k = 0; k < full.head_len; k++) {
        int r = parse_n(s, k, MAX_HEAD);
        TEST_CONDF(r == HTTP_HEAD_PARTIAL, "prefix %zu of '%s': r=%d status=%d", k, s, r, status);
    }
    TEST_COND(parse_n(s, full.head_len, MAX_HEAD) == HTTP_HEAD_DONE);
    TEST_COND(req.head_len == full.head_len && !strcmp(req.method, full.method));
    TEST_COND(req.path == full.path && req.path_len == full.path_len);
    TEST_COND(req.query == full.query && req.query_len == full.query_len);
    TEST_COND(req.n_headers == full.n_headers && req.content_length == full.content_length);
    TEST_COND(req.keep_alive == full.keep_alive && req.expect_continue == full.expect_continue);
    for (int i = 0; i < req.n_headers && i < full.n_headers; i++)
        TEST_COND(!memcmp(&req.headers[i], &full.headers[i], sizeof req.headers[i]));
}

static void test_bytewise(void) {
    const char *heads[] = {
        "GET /v1/models?x=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
        "\r\n\r\nPOST /rpc HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n",
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) check_bytewise(heads[i], strlen(heads[i]));
}

static void test_pipelined(void) {
    const char *s = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                    "GET /b?q HTTP/1.1\r\nHost: h\r\n\r\n"
                    "\r\nGET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    size_t n = strlen(s), off = 0;
    TEST_COND(parse_n(s, n, MAX_HEAD) == HTTP_HEAD_DONE);
    TEST_COND(str_eq(req.path, req.path_len, "/a") && req.content_length == 5);
    TEST_COND(req.head_len == strlen("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"));
    TEST_COND(!memcmp(s + req.head_len, "hello", 5));
    off += req.head_len + 5;
    TEST_COND(parse_n(s + off, n - off, MAX_HEAD) == HTTP_HEAD_DONE);
    TEST_COND(str_eq(req.path, req.path_len, "/b") && str_eq(req.query, req.query_len, "q"));
    TEST_COND(req.head_len == strlen("GET /b?q HTTP/1.1\r\nHost: h\r\n\r\n") && req.keep_alive);
    off += req.head_len;
    TEST_COND(parse_n(s + off, n - off, MAX_HEAD) == HTTP_HEAD_DONE);
    TEST_COND(str_eq(req.path, req.path_len, "/c") && !req.keep_alive);
    off += req.head_len;
    TEST_COND(off == n);
    TEST_COND(parse_n(s + off, 0, MAX_HEAD) == HTTP_HEAD_PARTIAL);
}

static void test_too_large(void) {
    // a 1 MiB header: refused once max_head bytes are in, whether or not the head is complete
    size_t big = 1 << 20;
    char *s = malloc(big + 64);
    strcpy(s, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    size_t n = strlen(s);
    memset(s + n, 'a', big);
    n += big;
    TEST_COND(parse_n(s, MAX_HEAD - 1, MAX_HEAD) == HTTP_HEAD_PARTIAL);
    TEST_COND(parse_n(s, MAX_HEAD, MAX_HEAD) == HTTP_HEAD_BAD && status == 431);
    TEST_COND(parse_n(s, n, MAX_HEAD) == HTTP_HEAD_BAD && status == 431);
    memcpy(s + n, "\r\n\r\n", 5);
    n += 4;
    TEST_COND(parse_n(s, n, MAX_HEAD) == HTTP_HEAD_BAD && status == 431);
    TEST_COND(parse_n(s, n, n) == HTTP_HEAD_DONE && req.head_len == n); // fits exactly
    TEST_COND(parse_n(s, n, n - 1) == HTTP_HEAD_BAD && status == 431);
    free(s);

    // the limit counts the leading empty lines too
    const char *h = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    TEST_COND(parse_n(h, strlen(h), strlen(h)) == HTTP_HEAD_DONE);
    TEST_COND(parse_n(h, strlen(h), strlen(h) - 1) == HTTP_HEAD_BAD && status == 431);
    // a bad line before the limit is a 400, not a 431
    TEST_COND(parse_n("GET / HTTP/1.1\r\nBad Name: x\r\nXXXX", 34, 32) == HTTP_HEAD_BAD && status == 400);
}

static void test_bad_early(void) {
    // once a bad line is complete there is no need to wait for the rest of the head
    TEST_COND(parse("GET / HTTP/9.9\r\n") == HTTP_HEAD_BAD && status == 505);
    TEST_COND(parse("GET x HTTP/1.1\r\nHo") == HTTP_HEAD_BAD && status == 400);
    TEST_COND(parse("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n") == HTTP_HEAD_BAD && status == 400);
    TEST_COND(parse("GET / HTTP/1.1\r\nHost: h\r\n x\r\n") == HTTP_HEAD_BAD && status == 400);
    // an incomplete line is only judged once its CRLF is there
    TEST_COND(parse("GET x") == HTTP_HEAD_PARTIAL && status == 0 && !why);
    TEST_COND(parse("GET / HTTP/1.1\r") == HTTP_HEAD_PARTIAL);
    TEST_COND(parse("") == HTTP_HEAD_PARTIAL);
}

int main(void) {
    test_get();
    test_query_split();
    test_leading_crlf();
    test_request_line();
    test_line_endings();
    test_header_syntax();
    test_header_count();
    test_content_length();
    test_transfer_encoding();
    test_host();
    test_connection();
    test_expect();
    test_header_get();
    test_bytewise();
    test_pipelined();
    test_too_large();
    test_bad_early();
    return TEST_REPORT();
}
