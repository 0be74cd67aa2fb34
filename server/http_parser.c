// Strict HTTP/1.1 request-head parser; see http_parser.h for the contract. The head is parsed
// line by line, each line only once its CRLF has arrived, so a bad line is reported as soon as
// it is complete and the result for a prefix never contradicts the result for the whole.
#include "server/http_parser.h"

#include <string.h>

// What the header lines tell us beyond req, checked once the head is complete.
typedef struct head_flags {
    int hosts;                  // number of Host headers
    bool te;                    // Transfer-Encoding seen
    bool conn_close, conn_keep; // Connection tokens "close" / "keep-alive" seen
} head_flags;

// RFC 9110 tchar: the bytes of a token (method, header name).
static bool is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

// s[0..n) equals the lowercase literal lit, ignoring ASCII case.
static bool eq_ci(const char *s, size_t n, const char *lit) {
    size_t i = 0;
    for (; i < n && lit[i]; i++)
        if (lower(s[i]) != lit[i]) return false;
    return i == n && lit[i] == 0;
}

// Finds the CRLF ending the line that starts at p, looking only below lim. Returns 1 with *eol
// at its CR, 0 when the line is not complete yet, -1 on a bare CR or a bare LF.
static int find_eol(const char *buf, size_t p, size_t lim, size_t *eol) {
    for (size_t i = p; i < lim; i++) {
        if (buf[i] == '\n') return -1;
        if (buf[i] == '\r') {
            if (i + 1 == lim) return 0;
            if (buf[i + 1] != '\n') return -1;
            *eol = i;
            return 1;
        }
    }
    return 0;
}

// METHOD SP origin-form SP HTTP/1.x, the CRLF excluded. Returns 0 or the error status.
static int parse_request_line(const char *s, size_t n, http_request *req, const char **why) {
    size_t i = 0;
    while (i < n && i < sizeof req->method - 1 && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ' ') return *why = "bad method", 400;
    memcpy(req->method, s, i);
    req->method[i] = 0;

    size_t t = ++i; // the target: visible ASCII only, so a second space ends it
    while (i < n && s[i] > 0x20 && s[i] < 0x7f) i++;
    if (i == t || s[t] != '/' || i == n || s[i] != ' ') return *why = "bad request target", 400;
    req->path = s + t;
    req->path_len = i - t;
    req->query = NULL;
    req->query_len = 0;
    const char *q = memchr(req->path, '?', req->path_len);
    if (q) {
        req->query = q + 1;
        req->query_len = (size_t)(s + i - req->query);
        req->path_len = (size_t)(q - req->path);
    }

    const char *v = s + i + 1;
    if (n - i - 1 != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.')
        return *why = "bad HTTP version", 400;
    if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return *why = "bad HTTP version", 400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return *why = "HTTP version not supported", 505;
    req->minor = v[7] - '0';
    return 0;
}

// 1*DIGIT, at most 15 digits so it cannot overflow. Returns -1 when malformed.
static long long parse_length(const char *s, size_t n) {
    if (n == 0 || n > 15) return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

// Connection: a comma-separated list of tokens; only "close" and "keep-alive" mean anything.
static void parse_connection(const char *s, size_t n, head_flags *f) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && is_ows(s[a])) a++;
        while (b > a && is_ows(s[b - 1])) b--;
        if (eq_ci(s + a, b - a, "close")) f->conn_close = true;
        if (eq_ci(s + a, b - a, "keep-alive")) f->conn_keep = true;
        i = j + 1;
    }
}

// name ":" OWS value OWS, the CRLF excluded. Returns 0 or the error status.
static int parse_header(const char *s, size_t n, http_request *req, head_flags *f,
                        const char **why) {
    if (is_ows(s[0])) return *why = "obsolete line folding", 400;
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ':') return *why = "bad header name", 400;
    size_t a = i + 1, b = n;
    for (size_t k = a; k < b; k++) {
        unsigned char c = (unsigned char)s[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return *why = "control character in header value", 400;
    }
    while (a < b && is_ows(s[a])) a++;
    while (b > a && is_ows(s[b - 1])) b--;
    if (req->n_headers == HTTP_MAX_HEADERS) return *why = "too many headers", 431;
    http_header *h = &req->headers[req->n_headers++];
    *h = (http_header){.name = s, .name_len = i, .value = s + a, .value_len = b - a};

    if (eq_ci(s, i, "content-length")) {
        long long v = parse_length(h->value, h->value_len);
        if (v < 0) return *why = "bad Content-Length", 400;
        if (req->content_length >= 0 && req->content_length != v)
            return *why = "conflicting Content-Length headers", 400;
        req->content_length = v;
    } else if (eq_ci(s, i, "transfer-encoding")) {
        f->te = true;
    } else if (eq_ci(s, i, "host")) {
        if (++f->hosts > 1) return *why = "more than one Host header", 400;
    } else if (eq_ci(s, i, "connection")) {
        parse_connection(h->value, h->value_len, f);
    } else if (eq_ci(s, i, "expect")) {
        if (!eq_ci(h->value, h->value_len, "100-continue")) return *why = "Expect other than 100-continue", 417;
        req->expect_continue = true;
    }
    return 0;
}

int http_parse_head(const char *buf, size_t len, size_t max_head, http_request *req, int *status,
                    const char **why) {
    *status = 0;
    *why = NULL;
    // a head must end within max_head bytes, so nothing beyond them is looked at
    size_t lim = len < max_head ? len : max_head;
    head_flags f = {0};
    req->n_headers = 0;
    req->content_length = -1;
    req->expect_continue = false;

    // RFC 9112 2.2: empty lines before the request line are skipped, a few of them
    size_t p = 0;
    for (int i = 0; i < 8 && p + 1 < lim && buf[p] == '\r' && buf[p + 1] == '\n'; i++) p += 2;

    size_t eol;
    int r = find_eol(buf, p, lim, &eol), st;
    if (r < 0) return *status = 400, *why = "bare CR or LF", HTTP_HEAD_BAD;
    if (r == 0) goto incomplete;
    if ((st = parse_request_line(buf + p, eol - p, req, why))) return *status = st, HTTP_HEAD_BAD;
    p = eol + 2;

    for (;;) {
        r = find_eol(buf, p, lim, &eol);
        if (r < 0) return *status = 400, *why = "bare CR or LF", HTTP_HEAD_BAD;
        if (r == 0) goto incomplete;
        if (eol == p) break; // the empty line ends the head
        if ((st = parse_header(buf + p, eol - p, req, &f, why))) return *status = st, HTTP_HEAD_BAD;
        p = eol + 2;
    }

    // a body framed two ways is how requests are smuggled past a proxy
    if (f.te && req->content_length >= 0)
        return *status = 400, *why = "Transfer-Encoding with Content-Length", HTTP_HEAD_BAD;
    if (f.te) return *status = 501, *why = "Transfer-Encoding is not supported", HTTP_HEAD_BAD;
    if (req->minor == 1 && f.hosts == 0) return *status = 400, *why = "missing Host header", HTTP_HEAD_BAD;
    req->keep_alive = !f.conn_close && (req->minor == 1 || f.conn_keep);
    req->head_len = p + 2;
    return HTTP_HEAD_DONE;

incomplete:
    // the head cannot end within max_head bytes any more
    if (len >= max_head) return *status = 431, *why = "request head too large", HTTP_HEAD_BAD;
    return HTTP_HEAD_PARTIAL;
}

const char *http_header_get(const http_request *req, const char *name, size_t *len) {
    size_t n = strlen(name);
    for (int i = 0; i < req->n_headers; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len != n) continue;
        size_t k = 0;
        while (k < n && lower(h->name[k]) == lower(name[k])) k++;
        if (k == n) {
            *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}
