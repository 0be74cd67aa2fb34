// libFuzzer target: arbitrary bytes as the start of an HTTP connection, through the request-head
// parser with several head limits. Checks what the parser promises: on DONE every pointer lies
// inside the consumed head, on BAD the status is one we answer with, and feeding the same bytes
// one at a time never changes the answer (a prefix is DONE only with the same head, BAD only
// with the same status).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool within(const char *p, size_t n, const char *buf, size_t len) {
    return p >= buf && p <= buf + len && n <= (size_t)(buf + len - p);
}

// Parses buf[0..len) and aborts on any broken promise; returns the result, *out the request.
static int check(const char *buf, size_t len, size_t max_head, http_request *out, int *status) {
    const char *why;
    int r = http_parse_head(buf, len, max_head, out, status, &why);
    if (r == HTTP_HEAD_DONE) {
        const http_request *q = out;
        size_t h = q->head_len;
        if (h > len || h > max_head || h < 16 || *status != 0 || why) abort();
        if (memcmp(buf + h - 4, "\r\n\r\n", 4) != 0) abort();
        if (!within(q->path, q->path_len, buf, h) || q->path_len == 0 || q->path[0] != '/') abort();
        if (q->query && (!within(q->query, q->query_len, buf, h) || q->query[-1] != '?')) abort();
        if (!q->query && q->query_len) abort();
        if (strlen(q->method) < 1 || strlen(q->method) > 15 || (q->minor != 0 && q->minor != 1)) abort();
        if (q->n_headers < 0 || q->n_headers > HTTP_MAX_HEADERS || q->content_length < -1) abort();
        for (int i = 0; i < q->n_headers; i++) {
            const http_header *e = &q->headers[i];
            if (!within(e->name, e->name_len, buf, h) || !within(e->value, e->value_len, buf, h)) abort();
            if (e->name_len == 0) abort();
        }
        size_t n;
        if (!http_header_get(q, "Content-Length", &n) != (q->content_length == -1)) abort();
    } else if (r == HTTP_HEAD_BAD) {
        if (*status != 400 && *status != 417 && *status != 431 && *status != 501 && *status != 505) abort();
        if (!why || !*why) abort();
    } else if (r != HTTP_HEAD_PARTIAL || *status != 0 || why || len >= max_head) {
        abort();
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // an exact-size copy at the end of its allocation, so ASan sees any read past len
    char *buf = malloc(size ? size : 1);
    if (size) memcpy(buf, data, size);
    static http_request req, pre;
    const size_t limits[] = {16, 64, 256, 8192};
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        size_t max_head = limits[li];
        int status, st;
        int r = check(buf, size, max_head, &req, &status);
        if (size > 512 || (max_head != 256 && max_head != 8192)) continue;
        // every prefix, each moved to the end of buf so reads past its end are caught too
        for (size_t k = 0; k < size; k++) {
            const char *p = buf + size - k;
            memcpy((char *)p, data, k);
            int pr = check(p, k, max_head, &pre, &st);
            if (pr == HTTP_HEAD_DONE && (r != HTTP_HEAD_DONE || pre.head_len != req.head_len ||
                                         pre.path - p != req.path - buf ||
                                         pre.n_headers != req.n_headers ||
                                         pre.content_length != req.content_length ||
                                         pre.keep_alive != req.keep_alive))
                abort();
            if (r == HTTP_HEAD_DONE && k >= req.head_len && pr != HTTP_HEAD_DONE) abort();
            if (pr == HTTP_HEAD_BAD && (r != HTTP_HEAD_BAD || st != status)) abort();
        }
        memcpy(buf, data, size);
    }
    free(buf);
    return 0;
}
