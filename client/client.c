// The blocking JSON-RPC client of include/cserve/client.h.
#include "cserve/client.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct cs_client {
    int fd;
    char *buf; // received bytes not yet consumed
    size_t len, cap;
    int64_t next_id;
};

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int connect_unix(const char *path, char *err, size_t errlen) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return fail(err, errlen, CS_CLIENT_EIO, "%s: path too long", path), -1;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    fail(err, errlen, CS_CLIENT_EIO, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
}

static int connect_tcp(const char *host, int port, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc != 0) return fail(err, errlen, CS_CLIENT_EIO, "%s: %s", host, gai_strerror(rc)), -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            fail(err, errlen, CS_CLIENT_EIO, "%s:%d: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

int cs_client_connect(cs_client **out, const char *host, int port, const char *socket_path, char *err,
                      size_t errlen) {
    *out = NULL;
    int fd = socket_path ? connect_unix(socket_path, err, errlen) : connect_tcp(host, port, err, errlen);
    if (fd < 0) return CS_CLIENT_EIO;
    cs_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return fail(err, errlen, CS_CLIENT_EIO, "out of memory");
    }
    c->fd = fd;
    *out = c;
    return 0;
}

void cs_client_close(cs_client *c) {
    if (!c) return;
    close(c->fd);
    free(c->buf);
    free(c);
}

static int send_all(cs_client *c, const char *p, size_t n, char *err, size_t errlen) {
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return fail(err, errlen, CS_CLIENT_EIO, "send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

// Sends {"jsonrpc","id","method","params"} (params is taken); returns the id or < 0.
static int64_t send_request(cs_client *c, const char *method, cJSON *params, bool notify, char *err, size_t errlen) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    int64_t id = ++c->next_id;
    if (!notify) cJSON_AddNumberToObject(r, "id", (double)id);
    cJSON_AddStringToObject(r, "method", method);
    if (params) cJSON_AddItemToObject(r, "params", params);
    char *text = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    if (!text) return fail(err, errlen, CS_CLIENT_EIO, "out of memory");
    int rc = send_all(c, text, strlen(text), err, errlen);
    free(text);
    if (rc == 0) rc = send_all(c, "\n", 1, err, errlen);
    return rc < 0 ? rc : id;
}

// Reads the next line as JSON (caller deletes).
static cJSON *read_message(cs_client *c, char *err, size_t errlen) {
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            cJSON *m = cJSON_ParseWithLength(c->buf, n);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            if (!m) fail(err, errlen, CS_CLIENT_EPROTO, "the server sent a line that is not JSON");
            return m;
        }
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? 2 * c->cap : 131072;
            char *b = realloc(c->buf, cap);
            if (!b) return fail(err, errlen, CS_CLIENT_EIO, "out of memory"), NULL;
            c->buf = b;
            c->cap = cap;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return fail(err, errlen, CS_CLIENT_EIO, "connection closed by the server"), NULL;
        c->len += (size_t)r;
    }
}

// Waits for the response to id, passing token notifications of id to on_note. Returns the
// result object (detached: caller deletes), or NULL with err and *code set.
typedef void (*note_fn)(void *user, const cJSON *params);

static cJSON *wait_result(cs_client *c, int64_t id, note_fn on_note, void *user, int *code, char *err, size_t errlen) {
    for (;;) {
        cJSON *m = read_message(c, err, errlen);
        if (!m) {
            *code = CS_CLIENT_EIO;
            return NULL;
        }
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(m, "method");
        if (cJSON_IsString(method) && !strcmp(method->valuestring, "token") && on_note)
            on_note(user, cJSON_GetObjectItemCaseSensitive(m, "params"));
        if (!cJSON_IsNumber(mid) || (int64_t)mid->valuedouble != id) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(m, "error");
            if (e && cJSON_IsNull(mid)) { // an error the server could not tie to a request
                const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
                *code = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
                fail(err, errlen, *code, "%s", cJSON_IsString(msg) ? msg->valuestring : "error");
                cJSON_Delete(m);
                return NULL;
            }
            cJSON_Delete(m);
            continue;
        }
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(m, "error");
        if (e) {
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
            *code = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
            fail(err, errlen, *code, "%s", cJSON_IsString(msg) ? msg->valuestring : "error");
            cJSON_Delete(m);
            return NULL;
        }
        cJSON *res = cJSON_DetachItemFromObjectCaseSensitive(m, "result");
        cJSON_Delete(m);
        if (!res) *code = fail(err, errlen, CS_CLIENT_EPROTO, "response without a result");
        return res;
    }
}

// Sends method(params) and waits for its result.
static cJSON *call(cs_client *c, const char *method, cJSON *params, int *code, char *err, size_t errlen) {
    int64_t id = send_request(c, method, params, false, err, errlen);
    if (id < 0) {
        *code = (int)id;
        return NULL;
    }
    return wait_result(c, id, NULL, NULL, code, err, errlen);
}

int cs_client_auth(cs_client *c, const char *key, char *err, size_t errlen) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "key", key);
    int code = 0;
    cJSON *r = call(c, "auth", p, &code, err, errlen);
    cJSON_Delete(r);
    return r ? 0 : code;
}

void cs_client_gen_params_default(cs_client_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = 256;
    p->temperature = 0.8f;
    p->top_p = 0.95f;
    p->top_k = 40;
    p->min_p = 0.05f;
}

static cJSON *gen_params_json(const cs_client_gen_params *p) {
    cJSON *o = cJSON_CreateObject();
    if (p->prompt) {
        cJSON_AddStringToObject(o, "prompt", p->prompt);
    } else if (p->tokens) {
        cJSON *t = cJSON_AddArrayToObject(o, "tokens");
        for (int i = 0; i < p->n_tokens; i++) cJSON_AddItemToArray(t, cJSON_CreateNumber(p->tokens[i]));
    } else {
        cJSON *m = cJSON_AddArrayToObject(o, "messages");
        for (int i = 0; i < p->n_messages; i++) {
            cJSON *msg = cJSON_CreateObject();
            cJSON_AddStringToObject(msg, "role", p->messages[i].role);
            cJSON_AddStringToObject(msg, "content", p->messages[i].content);
            cJSON_AddItemToArray(m, msg);
        }
    }
    cJSON_AddNumberToObject(o, "max_tokens", p->max_tokens);
    cJSON_AddNumberToObject(o, "temperature", p->temperature);
    cJSON_AddNumberToObject(o, "top_p", p->top_p);
    cJSON_AddNumberToObject(o, "top_k", p->top_k);
    cJSON_AddNumberToObject(o, "min_p", p->min_p);
    if (p->has_seed) cJSON_AddNumberToObject(o, "seed", (double)p->seed);
    if (p->n_stop > 0) {
        cJSON *s = cJSON_AddArrayToObject(o, "stop");
        for (int i = 0; i < p->n_stop; i++) cJSON_AddItemToArray(s, cJSON_CreateString(p->stop[i]));
    }
    cJSON_AddBoolToObject(o, "ignore_eos", p->ignore_eos);
    cJSON_AddBoolToObject(o, "stream", true);
    return o;
}

typedef struct gen_state {
    cs_client *c;
    int64_t id;
    cs_client_token_cb cb;
    void *user;
    bool cancel_sent;
} gen_state;

static void on_token(void *user, const cJSON *params) {
    gen_state *g = user;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(params, "id");
    if (!cJSON_IsNumber(id) || (int64_t)id->valuedouble != g->id || !g->cb || g->cancel_sent) return;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(params, "text");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(params, "token_ids");
    const char *t = cJSON_IsString(text) ? text->valuestring : "";
    int32_t tok = (int32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(ids, 0));
    if (g->cb(g->user, t, strlen(t), tok) != 0) { // the caller wants to stop
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "id", (double)g->id);
        g->cancel_sent = send_request(g->c, "cancel", p, true, NULL, 0) >= 0;
    }
}

static void fill_result(const cJSON *r, cs_client_result *res) {
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "choices"), 0);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(ch, "text");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ch, "token_ids");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(r, "usage");
    const cJSON *timing = cJSON_GetObjectItemCaseSensitive(r, "timing");
    res->text = strdup(cJSON_IsString(text) ? text->valuestring : "");
    res->n_tokens = cJSON_GetArraySize(ids);
    res->token_ids = malloc(sizeof(int32_t) * (size_t)(res->n_tokens ? res->n_tokens : 1));
    for (int i = 0; res->token_ids && i < res->n_tokens; i++)
        res->token_ids[i] = (int32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(ids, i));
    snprintf(res->finish_reason, sizeof res->finish_reason, "%s", cJSON_IsString(fin) ? fin->valuestring : "");
    res->prompt_tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens"));
    res->completion_tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens"));
    res->cached_tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "cached_tokens"));
    res->queue_ms = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(timing, "queue_ms"));
    res->ttft_ms = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(timing, "ttft_ms"));
    res->total_ms = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(timing, "total_ms"));
}

int cs_client_generate(cs_client *c, const cs_client_gen_params *p, cs_client_token_cb cb, void *user,
                       cs_client_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    gen_state g = {c, 0, cb, user, false};
    g.id = send_request(c, "generate", gen_params_json(p), false, err, errlen);
    if (g.id < 0) return (int)g.id;
    int code = 0;
    cJSON *r = wait_result(c, g.id, on_token, &g, &code, err, errlen);
    if (!r) return code;
    fill_result(r, res);
    cJSON_Delete(r);
    return res->text && res->token_ids ? 0 : fail(err, errlen, CS_CLIENT_EIO, "out of memory");
}

void cs_client_result_free(cs_client_result *res) {
    free(res->text);
    free(res->token_ids);
    memset(res, 0, sizeof *res);
}

int cs_client_select(cs_client *c, const char *prompt, const char *const *choices, int n, int *best,
                     double *logprobs, char *err, size_t errlen) {
    cJSON *p = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(p, "choices");
    cJSON_AddStringToObject(p, "prompt", prompt);
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(choices[i]));
    int code = 0;
    cJSON *r = call(c, "select", p, &code, err, errlen);
    if (!r) return code;
    *best = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "index"));
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(r, "choices");
    for (int i = 0; logprobs && i < n; i++)
        logprobs[i] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ch, i), "logprob"));
    cJSON_Delete(r);
    return 0;
}

int cs_client_tokenize(cs_client *c, const char *text, bool add_special, int32_t **ids, int *n, char *err,
                       size_t errlen) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddBoolToObject(p, "add_special", add_special);
    int code = 0;
    cJSON *r = call(c, "tokenize", p, &code, err, errlen);
    if (!r) return code;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "tokens");
    *n = cJSON_GetArraySize(t);
    *ids = malloc(sizeof(int32_t) * (size_t)(*n ? *n : 1));
    for (int i = 0; *ids && i < *n; i++) (*ids)[i] = (int32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(t, i));
    cJSON_Delete(r);
    return *ids ? 0 : fail(err, errlen, CS_CLIENT_EIO, "out of memory");
}

int cs_client_call(cs_client *c, const char *method, const char *params_json, char **result_json, char *err,
                   size_t errlen) {
    *result_json = NULL;
    cJSON *params = params_json ? cJSON_Parse(params_json) : NULL;
    if (params_json && !cJSON_IsObject(params)) {
        cJSON_Delete(params);
        return fail(err, errlen, CS_CLIENT_EPROTO, "params must be a JSON object");
    }
    int code = 0;
    cJSON *r = call(c, method, params, &code, err, errlen);
    if (!r) return code;
    *result_json = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return *result_json ? 0 : fail(err, errlen, CS_CLIENT_EIO, "out of memory");
}

int cs_client_stats(cs_client *c, char **json, char *err, size_t errlen) {
    return cs_client_call(c, "stats", NULL, json, err, errlen);
}
