// The HTTP/1.1 side of a connection: framing requests out of the input (server/http_parser.c
// parses heads), their limits and deadlines, keep-alive and pipelining (one request answered
// at a time, in order), API-key checks, and writing responses and server-sent-event streams
// (chunked). What each path does is openai_api.c's.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> // malloc_trim
#endif

#include "common/clock.h"
#include "http_parser.h"
#include "metrics.h"
#include "rpc_internal.h"
#include "rpc_params.h"

#define LINGER_S 2.0 // how long input is drained after an error before the socket closes

static const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 503: return "service_unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

// Ends the current request: the next pipelined one may start.
static void end_request(rpc_server *s, rpc_conn *c) {
    c->busy = false;
    c->head_only = false;
    c->call = NULL;
    c->continue_sent = false;
    c->t_idle = cs_now_s();
    c->t_request = c->in.len > 0 ? c->t_idle : 0; // a pipelined request's time starts now
    if (!c->keep_alive) c->closing = true;
    if (c->read_paused) {
        c->read_paused = false;
        rpc_arm(s, c);
    }
    if (c->closing && !c->want_write) rpc_write(s, c, "", 0); // the flush closes (or lingers)
}

static void write_head(rpc_server *s, rpc_conn *c, int status, const char *content_type, long long len,
                       const char *extra) {
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nServer: cserve\r\n%s%s%s%s%s", status, reason(status),
                     content_type ? "Content-Type: " : "", content_type ? content_type : "", content_type ? "\r\n" : "",
                     extra ? extra : "",
                     !c->keep_alive ? "Connection: close\r\n" : c->http10 ? "Connection: keep-alive\r\n" : "");
    if (len >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %lld\r\n\r\n", len);
    else if (c->http10) n += snprintf(head + n, sizeof head - (size_t)n, "Cache-Control: no-cache\r\n\r\n");
    else n += snprintf(head + n, sizeof head - (size_t)n, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n");
    cs_metrics_http_response(rpc_metrics(s), status);
    rpc_append(s, c, head, (size_t)n); // sent with the body (or the first event)
}

void http_respond(rpc_server *s, rpc_conn *c, int status, const char *content_type, const char *body, size_t len,
                  const char *extra) {
    if (c->fd < 0) return;
    write_head(s, c, status, content_type, (long long)len, extra);
    if (rpc_write(s, c, body, c->head_only ? 0 : len)) end_request(s, c); // HEAD: the length, no body
}

void http_error(rpc_server *s, rpc_conn *c, int status, const char *param, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *clean = rpc_utf8_clean(msg, strlen(msg)); // a quoted client value may end mid-character
    cJSON *r = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddStringToObject(e, "message", clean ? clean : "error");
    free(clean);
    cJSON_AddStringToObject(e, "type", error_type(status));
    cJSON_AddItemToObject(e, "param", param ? cJSON_CreateString(param) : cJSON_CreateNull());
    cJSON_AddItemToObject(e, "code", code ? cJSON_CreateString(code) : cJSON_CreateNull());
    char *text = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    const char *extra = status == 503 ? "Retry-After: 1\r\n"
                        : status == 401 ? "WWW-Authenticate: Bearer\r\n"
                                        : NULL;
    http_respond(s, c, status, "application/json", text ? text : "", text ? strlen(text) : 0, extra);
    free(text);
}

// --- server-sent events --------------------------------------------------------------------

void http_stream_begin(rpc_server *s, rpc_conn *c) {
    if (c->http10) c->keep_alive = false; // HTTP/1.0 has no chunks: the stream ends with the connection
    write_head(s, c, 200, "text/event-stream", -1, NULL);
    rpc_write(s, c, "", 0); // the client learns at once that the request was taken
}

static void chunk(rpc_server *s, rpc_conn *c, const char *a, size_t na, const char *b, size_t nb, const char *z,
                  size_t nz) {
    char size[24];
    int n = c->http10 ? 0 : snprintf(size, sizeof size, "%zx\r\n", na + nb + nz);
    // queued piece by piece, written once
    if (rpc_append(s, c, size, (size_t)n) && rpc_append(s, c, a, na) && rpc_append(s, c, b, nb) &&
        rpc_append(s, c, z, nz))
        rpc_write(s, c, "\r\n", c->http10 ? 0 : 2);
}

void http_stream_data(rpc_server *s, rpc_conn *c, const char *json) {
    if (!c || c->fd < 0) return;
    chunk(s, c, "data: ", 6, json, strlen(json), "\n\n", 2);
}

void http_stream_end(rpc_server *s, rpc_conn *c) {
    if (!c || c->fd < 0) return;
    static const char tail[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"; // the last event, then the last chunk
    bool ok = c->http10 ? rpc_write(s, c, tail + 3, 14) : rpc_write(s, c, tail, sizeof tail - 1);
    if (!ok) return;
    end_request(s, c);
    http_on_input(s, c);
}

void http_request_done(rpc_server *s, rpc_conn *c) {
    if (c->fd < 0) return;
    end_request(s, c);
    http_on_input(s, c);
}

// --- requests ------------------------------------------------------------------------------

static bool authorized(rpc_server *s, const http_request *req) {
    const char *key = rpc_api_key(s);
    if (!key) return true;
    size_t len;
    const char *v = http_header_get(req, "authorization", &len);
    size_t klen = strlen(key);
    if (!v || len != 7 + klen || strncasecmp(v, "Bearer ", 7) != 0) return false;
    unsigned diff = 0; // compare in constant time
    for (size_t i = 0; i < klen; i++) diff |= (unsigned)(key[i] ^ v[7 + i]);
    return diff == 0;
}

// Runs one complete request, its head and body at start (within c->in).
static void run_request(rpc_server *s, rpc_conn *c, const http_request *req, const char *start) {
    char path[256];
    size_t n = req->path_len < sizeof path - 1 ? req->path_len : sizeof path - 1;
    memcpy(path, req->path, n);
    path[n] = 0;
    const char *body = start + req->head_len;
    size_t len = (size_t)(req->content_length > 0 ? req->content_length : 0);
    c->busy = true;
    c->keep_alive = req->keep_alive;
    if (strcmp(path, "/health") != 0 && !authorized(s, req)) {
        http_error(s, c, 401, NULL, "invalid_api_key", "invalid or missing API key: send Authorization: Bearer KEY");
        return;
    }
    c->head_only = !strcmp(req->method, "HEAD"); // answered as GET, without the body
    oa_dispatch(s, c, c->head_only ? "GET" : req->method, path, body, len);
#ifdef __GLIBC__
    // a big body's parse tree (tens of bytes a JSON value: ~1 GB for 32 MiB of token ids) is
    // freed by now; hand the pages back instead of keeping the peak for the process's life
    if (len > ((size_t)1 << 20)) malloc_trim(0);
#endif
}

// Frames and runs the requests in c->in, one at a time: parses from an offset and compacts the
// buffer once at the end, so a pile of pipelined requests costs linear time. A partial head is
// parsed again only when a line has ended since the last try, and a body still arriving is
// waited for without parsing its head again.
void http_on_input(rpc_server *s, rpc_conn *c) {
    const rpc_params *p = rpc_server_params(s);
    size_t off = 0;
    while (c->fd >= 0 && !c->busy && !c->closing && off < c->in.len) {
        const char *buf = c->in.p + off;
        size_t len = c->in.len - off;
        if (c->t_request == 0) c->t_request = cs_now_s();
        if (c->need > len) break; // the body is still coming
        if (c->need == 0 && c->scanned > 0 && len < p->max_header &&
            (c->scanned >= len || !memchr(buf + c->scanned, '\n', len - c->scanned))) {
            c->scanned = len; // no line ended since the last try: the head cannot be complete
            break;
        }
        http_request req;
        int status = 0;
        const char *why = NULL;
        int rc = http_parse_head(buf, len, p->max_header, &req, &status, &why);
        if (rc == HTTP_HEAD_PARTIAL) {
            c->scanned = len;
            break;
        }
        c->scanned = 0;
        c->busy = true;
        c->keep_alive = false;
        if (rc == HTTP_HEAD_BAD) { // what follows in the input cannot be framed: answer and close
            http_error(s, c, status, NULL, NULL, "%s", why ? why : "bad request");
            break;
        }
        c->keep_alive = req.keep_alive;
        c->http10 = req.minor == 0;
        if (req.content_length > 0 && (unsigned long long)req.content_length > p->max_body) {
            c->keep_alive = false;
            http_error(s, c, 413, NULL, NULL, "the request body (%lld bytes) exceeds the limit of %zu bytes",
                       req.content_length, p->max_body);
            break;
        }
        size_t need = req.head_len + (size_t)(req.content_length > 0 ? req.content_length : 0);
        if (len < need && !rpc_body_reserve(s, c, need - req.head_len)) {
            c->keep_alive = false; // the body that follows cannot be skipped: answer and close
            http_error(s, c, 503, NULL, NULL, "the server is receiving too many large request bodies: retry");
            break;
        }
        if (len < need) { // the body is still coming
            c->busy = false;
            c->need = need;
            if (req.expect_continue && !c->continue_sent) {
                c->continue_sent = true;
                rpc_write(s, c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            }
            break;
        }
        c->need = 0;
        rpc_body_release(s, c); // in memory now, and read by the request at once
        run_request(s, c, &req, buf);
        if (c->fd < 0) return;
        // the request's bytes are consumed whether it was answered or is running
        off += need;
        c->t_request = off < c->in.len ? cs_now_s() : 0;
    }
    if (c->fd < 0) return;
    if (c->closing || c->lingering) { // what follows is not read
        c->in.len = 0;
        return;
    }
    if (off > 0) {
        memmove(c->in.p, c->in.p + off, c->in.len - off);
        c->in.len -= off;
    }
    // a keep-alive connection that once sent a big body does not hold its buffer (up to
    // --max-body-bytes) while it waits for the next request
    if (!c->busy) rpc_buf_shrink(&c->in, 64 << 10);
}

void http_check_timers(rpc_server *s, rpc_conn *c, double now) {
    const rpc_params *p = rpc_server_params(s);
    double idle = p->idle_timeout_ms / 1000.0;
    if (c->lingering) {
        if (now - c->t_linger > LINGER_S) rpc_close_conn(s, c);
        return;
    }
    // a client that stops reading its response (streamed or not) is dropped, its request cancelled
    if (c->out_sent < c->out.len) {
        if (now - c->t_progress > idle) {
            rpc_logf(s, 1, "connection %llu: the client read nothing for %d s: closing", (unsigned long long)c->serial,
                     p->idle_timeout_ms / 1000);
            rpc_close_conn(s, c);
        }
        return;
    }
    if (c->busy || c->closing) return;
    if (c->in.len > 0 && c->t_request > 0 && now - c->t_request > p->request_timeout_ms / 1000.0) {
        c->busy = true;
        c->keep_alive = false;
        http_error(s, c, 408, NULL, NULL, "the request did not arrive within %d s", p->request_timeout_ms / 1000);
    } else if (c->in.len == 0 && now - c->t_idle > idle) {
        rpc_close_conn(s, c);
    }
}
