// A strict, incremental HTTP/1.1 request-head parser (RFC 9112) for the server: no allocation,
// O(len) per call, never reads outside buf[0..len). Call it again on the whole buffer each time
// more bytes arrive:
//
//     http_request req; int status; const char *why;
//     int r = http_parse_head(buf, len, 16384, &req, &status, &why);
//     if (r == HTTP_HEAD_PARTIAL) { read more, call again }
//     else if (r == HTTP_HEAD_BAD) { answer status with why, close }
//     else { the body (content_length bytes, if >= 0) starts at buf + req.head_len }
//
// Strict means anything RFC 9112 lets a server refuse is refused: bare CR or LF, obs-fold,
// whitespace before the colon, CTLs in values, non-origin-form targets, conflicting
// Content-Length, Transfer-Encoding (chunked request bodies are not supported).
#ifndef CS_HTTP_PARSER_H
#define CS_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64

// Points into the caller's buffer (not NUL-terminated); the value is trimmed of OWS.
typedef struct http_header {
    const char *name, *value;
    size_t name_len, value_len;
} http_header;

// Every pointer points into the buffer given to http_parse_head, which must outlive its use.
// Meaningful only after HTTP_HEAD_DONE.
typedef struct http_request {
    char method[16];                       // NUL-terminated, e.g. "GET"
    const char *path; size_t path_len;     // request target up to '?' (origin-form, starts with '/')
    const char *query; size_t query_len;   // after '?', without it; NULL/0 when there is no '?'
    int minor;                             // HTTP/1.<minor>: 0 or 1
    http_header headers[HTTP_MAX_HEADERS]; int n_headers;
    long long content_length;              // -1 when absent
    bool keep_alive;      // HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"
    bool expect_continue; // "Expect: 100-continue" (case-insensitive)
    size_t head_len;      // bytes consumed: any leading CRLFs + request line + headers + the empty line
} http_request;

enum { HTTP_HEAD_DONE = 1, HTTP_HEAD_PARTIAL = 0, HTTP_HEAD_BAD = -1 };

// Parses the request head at buf[0..len). Returns HTTP_HEAD_DONE with *req filled;
// HTTP_HEAD_PARTIAL when the head is not complete yet and nothing is wrong so far (a complete
// line that is bad gives BAD at once); HTTP_HEAD_BAD with *status (400, 431, 501, 505) and *why
// (a static string for the error message). A head that does not end within the first max_head
// bytes is BAD with 431 as soon as len >= max_head. *status is 0 and *why NULL unless BAD.
int http_parse_head(const char *buf, size_t len, size_t max_head, http_request *req, int *status,
                    const char **why);

// Case-insensitive header lookup: the first header of that name, NULL when absent. *len gets
// the value length.
const char *http_header_get(const http_request *req, const char *name, size_t *len);

#endif
