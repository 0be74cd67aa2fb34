// The OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models, /health,
// /metrics, /tokenize and /detokenize. A completion call is one engine request per prompt
// (a "leg"), each with n choices; events become response fields or stream chunks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "metrics.h"
#include "openai_params.h"
#include "rpc_internal.h"
#include "rpc_params.h"

typedef struct oa_call {
    rpc_server *s;
    rpc_conn *conn;          // NULL once the client has gone, or was answered with an error
    bool chat, stream, include_usage, logprobs;
    int n;                   // choices per leg
    int n_legs, legs_left;
    char id[40];
    long created;
    char model[128];
    int prompt_tokens, completion_tokens, cached_tokens;
    cJSON **done;            // [n_legs * n]: finished choices (non-streaming)
    bool failed;             // a choice ended in an engine error
} oa_call;

#define MAX_TOKENIZE (1 << 20) // tokens /tokenize lists (a response of a few MB)

static unsigned long long call_counter;

// --- JSON helpers --------------------------------------------------------------------------

static void send_json(rpc_server *s, rpc_conn *c, int status, cJSON *body) {
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text) {
        http_error(s, c, 500, NULL, NULL, "out of memory");
        return;
    }
    http_respond(s, c, status, "application/json", text, strlen(text), NULL);
    free(text);
}

// A token's bytes as JSON: "token" is valid UTF-8 (invalid bytes become U+FFFD), "bytes" exact.
static char *token_text(cs_engine *e, int32_t id, unsigned char *bytes, int *n_bytes) {
    char raw[256];
    long n = cs_engine_detokenize(e, &id, 1, raw, sizeof raw);
    if (n < 0) n = 0;
    if (n > (long)sizeof raw) n = sizeof raw;
    memcpy(bytes, raw, (size_t)n);
    *n_bytes = (int)n;
    return rpc_utf8_clean(raw, (size_t)n);
}

static cJSON *byte_array(const unsigned char *b, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(b[i]));
    return a;
}

// chat: {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}
static cJSON *chat_logprob(cs_engine *e, int32_t id, float lp) {
    unsigned char b[256];
    int nb;
    char *t = token_text(e, id, b, &nb);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", t ? t : "");
    cJSON_AddNumberToObject(o, "logprob", isfinite(lp) ? lp : -9999.0);
    cJSON_AddItemToObject(o, "bytes", byte_array(b, nb));
    free(t);
    return o;
}

static cJSON *chat_token_logprobs(cs_engine *e, const cs_event *ev) {
    cJSON *o = chat_logprob(e, ev->token, ev->logprob), *top = cJSON_AddArrayToObject(o, "top_logprobs");
    for (int i = 0; i < ev->n_top; i++) cJSON_AddItemToArray(top, chat_logprob(e, ev->top_ids[i], ev->top_logprobs[i]));
    return o;
}

// completions: appends one token to {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
static void completion_logprobs_add(cs_engine *e, cJSON *lp, const cs_event *ev, size_t *offset) {
    unsigned char b[256];
    int nb;
    char *t = token_text(e, ev->token, b, &nb);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "tokens"), cJSON_CreateString(t ? t : ""));
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "token_logprobs"),
                         cJSON_CreateNumber(isfinite(ev->logprob) ? ev->logprob : -9999.0));
    cJSON *top = cJSON_CreateObject();
    for (int i = 0; i < ev->n_top; i++) {
        char *tt = token_text(e, ev->top_ids[i], b, &nb);
        if (tt && !cJSON_GetObjectItemCaseSensitive(top, tt))
            cJSON_AddNumberToObject(top, tt, isfinite(ev->top_logprobs[i]) ? ev->top_logprobs[i] : -9999.0);
        free(tt);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "text_offset"), cJSON_CreateNumber((double)*offset));
    *offset += t ? strlen(t) : 0;
    free(t);
}

static cJSON *completion_logprobs_new(void) {
    cJSON *lp = cJSON_CreateObject();
    cJSON_AddArrayToObject(lp, "tokens");
    cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON_AddArrayToObject(lp, "text_offset");
    return lp;
}

static cJSON *usage_json(const oa_call *call) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", call->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", call->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", call->prompt_tokens + call->completion_tokens);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"), "cached_tokens", call->cached_tokens);
    return u;
}

static cJSON *envelope(const oa_call *call, const char *object) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", call->id);
    cJSON_AddStringToObject(r, "object", object);
    cJSON_AddNumberToObject(r, "created", (double)call->created);
    cJSON_AddStringToObject(r, "model", call->model);
    return r;
}

static cJSON *text_value(const rpc_buf *b) {
    char *t = rpc_utf8_clean(b->p ? b->p : "", b->len); // a NUL would end the string early
    cJSON *v = cJSON_CreateString(t ? t : "");
    free(t);
    return v;
}

// --- streaming -----------------------------------------------------------------------------

static void send_chunk(oa_call *call, cJSON *choice) {
    if (!call->conn) { // the previous write found the client gone
        cJSON_Delete(choice);
        return;
    }
    cJSON *r = envelope(call, call->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(r, "choices"), choice);
    if (call->include_usage) cJSON_AddNullToObject(r, "usage");
    char *text = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    if (text) http_stream_data(call->s, call->conn, text);
    free(text);
}

static cJSON *chunk_choice(const oa_call *call, int index, const char *delta_text, size_t len, const char *finish,
                           cJSON *logprobs, bool role) {
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", index);
    char *t = rpc_utf8_clean(delta_text ? delta_text : "", len);
    if (call->chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (delta_text) cJSON_AddStringToObject(d, "content", t ? t : "");
    } else {
        cJSON_AddStringToObject(ch, "text", t ? t : "");
    }
    free(t);
    cJSON_AddItemToObject(ch, "logprobs", logprobs ? logprobs : cJSON_CreateNull());
    cJSON_AddItemToObject(ch, "finish_reason", finish ? cJSON_CreateString(finish) : cJSON_CreateNull());
    return ch;
}

// --- events --------------------------------------------------------------------------------

static void on_token(oa_call *call, rpc_pending *p, const cs_event *ev) {
    rpc_choice *ch = &p->choices[ev->index];
    cs_engine *e = rpc_engine(call->s);
    int index = p->oa_leg * call->n + ev->index;
    cJSON *lp = NULL;
    if (call->logprobs && call->chat) {
        lp = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(lp, "content"), chat_token_logprobs(e, ev));
    } else if (call->logprobs) {
        lp = completion_logprobs_new();
        completion_logprobs_add(e, lp, ev, &ch->text_offset);
    }
    if (!call->stream) {
        rpc_buf_append(&ch->text, ev->text, ev->text_len);
        if (lp && !ch->logprobs) {
            ch->logprobs = lp;
        } else if (lp) { // fold this token's entries into the choice's arrays
            cJSON *item;
            cJSON_ArrayForEach(item, lp) {
                cJSON *dst = cJSON_GetObjectItem(ch->logprobs, item->string);
                while (cJSON_GetArraySize(item) > 0) cJSON_AddItemToArray(dst, cJSON_DetachItemFromArray(item, 0));
            }
            cJSON_Delete(lp);
        }
        return;
    }
    if (!call->conn) {
        cJSON_Delete(lp);
        return;
    }
    if (call->chat && !ch->started) send_chunk(call, chunk_choice(call, index, "", 0, NULL, NULL, true));
    ch->started = true;
    if (ev->text_len > 0 || lp) send_chunk(call, chunk_choice(call, index, ev->text, ev->text_len, NULL, lp, false));
    else cJSON_Delete(lp);
}

static void on_finish(oa_call *call, rpc_pending *p, const cs_event *ev) {
    static const char *names[] = {"stop", "length", "abort", "error"}; // "abort": vLLM's word for cancelled
    rpc_choice *ch = &p->choices[ev->index];
    ch->finish = names[ev->finish_reason];
    if (ev->finish_reason == CS_FINISH_REASON_ERROR) call->failed = true;
    if (!call->stream || !call->conn) return;
    int index = p->oa_leg * call->n + ev->index;
    if (ev->finish_reason == CS_FINISH_REASON_ERROR) {
        static const char msg[] = "{\"error\":{\"message\":\"the engine failed to generate this choice\","
                                  "\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        http_stream_data(call->s, call->conn, msg);
        return;
    }
    if (call->chat && !ch->started) send_chunk(call, chunk_choice(call, index, "", 0, NULL, NULL, true));
    ch->started = true;
    send_chunk(call, chunk_choice(call, index, NULL, 0, ch->finish, NULL, false));
}

// The leg's choices, as final response objects.
static void keep_choices(oa_call *call, rpc_pending *p) {
    for (int i = 0; i < p->n; i++) {
        rpc_choice *ch = &p->choices[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", p->oa_leg * call->n + i);
        if (call->chat) {
            cJSON *m = cJSON_AddObjectToObject(o, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddItemToObject(m, "content", text_value(&ch->text));
        } else {
            cJSON_AddItemToObject(o, "text", text_value(&ch->text));
        }
        if (ch->logprobs) cJSON_AddItemToObject(o, "logprobs", ch->logprobs);
        else if (call->logprobs && call->chat) cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "logprobs"), "content");
        else if (call->logprobs) cJSON_AddItemToObject(o, "logprobs", completion_logprobs_new());
        else cJSON_AddNullToObject(o, "logprobs");
        ch->logprobs = NULL;
        cJSON_AddStringToObject(o, "finish_reason", ch->finish ? ch->finish : "length");
        call->done[p->oa_leg * call->n + i] = o;
    }
}

static void call_free(oa_call *call) {
    for (int i = 0; call->done && i < call->n_legs * call->n; i++) cJSON_Delete(call->done[i]);
    free(call->done);
    free(call);
}

// Every leg is done: answer (the stream's tail, or the whole response) and free the call.
static void finish_call(oa_call *call) {
    rpc_server *s = call->s;
    rpc_conn *c = call->conn;
    if (c && call->stream) {
        if (call->include_usage) {
            cJSON *r = envelope(call, call->chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(r, "choices");
            cJSON_AddItemToObject(r, "usage", usage_json(call));
            char *text = cJSON_PrintUnformatted(r);
            cJSON_Delete(r);
            if (text) http_stream_data(s, c, text);
            free(text);
        }
        if (c->fd >= 0) http_stream_end(s, c);
    } else if (c && call->failed) {
        http_error(s, c, 500, NULL, NULL, "the engine failed to generate a choice");
        http_on_input(s, c);
    } else if (c) {
        cJSON *r = envelope(call, call->chat ? "chat.completion" : "text_completion");
        cJSON *arr = cJSON_AddArrayToObject(r, "choices");
        for (int i = 0; i < call->n_legs * call->n; i++) {
            cJSON_AddItemToArray(arr, call->done[i]);
            call->done[i] = NULL;
        }
        cJSON_AddItemToObject(r, "usage", usage_json(call));
        send_json(s, c, 200, r);
        http_on_input(s, c); // a pipelined request may be waiting
    }
    call_free(call);
}

void oa_on_event(rpc_server *s, rpc_pending *p, const cs_event *ev) {
    (void)s;
    oa_call *call = p->oa;
    bool choice_ok = ev->index >= 0 && ev->index < p->n;
    switch (ev->type) {
    case CS_EVENT_TOKEN:
        if (choice_ok) on_token(call, p, ev);
        break;
    case CS_EVENT_FINISH:
        if (choice_ok) on_finish(call, p, ev);
        break;
    case CS_EVENT_PROMPT_LOGPROB:
        break;
    case CS_EVENT_DONE:
        rpc_log_request(s, p, ev);
        call->prompt_tokens += ev->prompt_tokens;
        call->completion_tokens += ev->completion_tokens;
        call->cached_tokens += ev->cached_tokens;
        if (!call->stream) keep_choices(call, p);
        if (--call->legs_left == 0) finish_call(call);
        break;
    }
}

void oa_conn_gone(oa_call *call) { call->conn = NULL; }

// --- completions ---------------------------------------------------------------------------

static void log_unknown(rpc_server *s, const oa_params *p) {
    static char seen[64][48];
    static int n_seen;
    for (int i = 0; i < p->n_unknown; i++) {
        bool known = false;
        for (int k = 0; k < n_seen && !known; k++) known = !strncmp(seen[k], p->unknown[i], sizeof seen[k] - 1);
        if (known || n_seen == 64) continue;
        snprintf(seen[n_seen++], sizeof seen[0], "%s", p->unknown[i]);
        char name[4 * 47 + 1]; // the client's bytes: no newline or terminal escape reaches the log
        rpc_escape(p->unknown[i], 47, name, sizeof name);
        rpc_logf(s, 1, "HTTP: ignoring unknown request field '%s' (logged once)", name);
    }
}

// Maps an engine refusal to its HTTP status and OpenAI error code.
static void submit_error(rpc_server *s, rpc_conn *c, int rc, const char *err, const oa_params *op) {
    char pbuf[64];
    bool n = rpc_param_of(err, pbuf, sizeof pbuf) != NULL;
    // only names of request fields count: a message may start with an ordinary word
    static const char *const params[] = {"temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                         "presence_penalty", "frequency_penalty", "max_tokens", "stop", "n",
                                         "logprobs", "json_schema", "regex", "choices", "seed", NULL};
    const char *param = NULL;
    for (int i = 0; n && params[i] && !param; i++)
        if (!strcmp(pbuf, params[i])) param = params[i];
    if (n && (!strcmp(pbuf, "prompt") || !strcmp(pbuf, "tokens") || !strcmp(pbuf, "messages")))
        param = op->chat ? "messages" : "prompt";
    // the engine names the constraint by its own field; the client set it through another
    if (n && op->constraint_param && (!strcmp(pbuf, "json_schema") || !strcmp(pbuf, "json_object") ||
                                      !strcmp(pbuf, "regex") || !strcmp(pbuf, "choices")))
        param = op->constraint_param;
    if (rc == CS_ENGINE_ETOOLARGE) param = op->chat ? "messages" : "prompt";
    if (rpc_shutting_down(s)) http_error(s, c, 503, NULL, NULL, "the server is shutting down");
    else if (rc == CS_ENGINE_EOVERLOADED || rc == CS_ENGINE_ENOMEM) http_error(s, c, 503, NULL, NULL, "%s", err);
    else if (rc == CS_ENGINE_ETOOLARGE) http_error(s, c, 400, param, "context_length_exceeded", "%s", err);
    else http_error(s, c, 400, param, NULL, "%s", err);
}

// A call for the request op describes, answering on c; NULL when out of memory.
static oa_call *call_new(rpc_server *s, rpc_conn *c, const oa_params *op, bool chat) {
    oa_call *call = calloc(1, sizeof *call);
    if (call) call->done = calloc((size_t)(op->n_legs * op->q.n), sizeof *call->done);
    if (!call || !call->done) {
        free(call);
        return NULL;
    }
    call->s = s;
    call->conn = c;
    call->chat = chat;
    call->stream = op->stream;
    call->include_usage = op->include_usage;
    call->logprobs = op->logprobs;
    call->n = op->q.n;
    call->n_legs = op->n_legs;
    call->created = (long)time(NULL);
    snprintf(call->id, sizeof call->id, "%s-%llx%08llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)call->created,
             ++call_counter);
    snprintf(call->model, sizeof call->model, "%s", rpc_model_name(s));
    return call;
}

// Submits one engine request per prompt (leg) and follows each; answers and frees the call
// itself when nothing could start.
static void call_start(rpc_server *s, rpc_conn *c, oa_call *call, const oa_params *op) {
    cs_engine *e = rpc_engine(s);
    uint64_t ids[OA_MAX_PROMPTS];
    int submitted = 0, rc = 0;
    char err[256];
    for (int i = 0; i < op->n_legs && rc == 0; i++) {
        cs_request q = op->q;
        if (call->chat) q.messages = op->msgs, q.n_messages = op->n_msgs;
        else if (op->texts[i]) q.prompt = op->texts[i];
        else q.tokens = op->ids[i], q.n_tokens = op->n_ids[i];
        rc = cs_engine_submit(e, &q, &ids[i], err, sizeof err);
        if (rc == 0) submitted++;
    }
    if (rc != 0) { // nothing of it runs: the legs that started are cancelled
        for (int i = 0; i < submitted; i++) cs_engine_cancel(e, ids[i]);
        submit_error(s, c, rc, err, op);
        call->conn = NULL;
    }
    call->legs_left = submitted;
    for (int i = 0; i < submitted; i++) {
        rpc_pending *p = rpc_pending_new(call->conn, NULL, op->q.n);
        if (!p) { // cannot follow it: end it (the call then waits for fewer legs)
            cs_engine_cancel(e, ids[i]);
            call->legs_left--;
            call->failed = true;
            continue;
        }
        p->engine_id = ids[i];
        p->oa = call;
        p->oa_leg = i;
        rpc_pending_add(s, p);
    }
    if (call->legs_left == 0) { // out of memory for every leg, or refused
        if (call->conn) http_error(s, c, 503, NULL, NULL, "out of memory");
        call_free(call);
    } else if (rc == 0) {
        c->call = call;
        if (call->stream) http_stream_begin(s, c);
    }
}

static void completions(rpc_server *s, rpc_conn *c, const char *body, size_t len, bool chat) {
    cs_engine *e = rpc_engine(s);
    rpc_reader rd;
    cJSON *json = rpc_parse_object(&rd, body, len);
    if (!json || rd.bad_param) {
        http_error(s, c, 400, rd.bad_param, NULL, "%s", rd.msg);
        cJSON_Delete(json);
        return;
    }
    oa_params op;
    oa_call *call;
    if (!oa_read_params(json, chat, cs_engine_vocab_size(e), &op)) {
        http_error(s, c, 400, op.bad_param, NULL, "%s", op.msg);
    } else if (op.model && strcmp(op.model, rpc_model_name(s)) != 0) {
        http_error(s, c, 404, "model", "model_not_found", "the model '%.64s' does not exist; this server serves '%s'",
                   op.model, rpc_model_name(s));
    } else if (rpc_shutting_down(s)) {
        http_error(s, c, 503, NULL, NULL, "the server is shutting down");
    } else if (!(call = call_new(s, c, &op, chat))) {
        http_error(s, c, 503, NULL, NULL, "out of memory");
    } else {
        log_unknown(s, &op);
        call_start(s, c, call, &op);
    }
    oa_params_free(&op);
    cJSON_Delete(json);
}

// --- small endpoints -----------------------------------------------------------------------

static void models(rpc_server *s, rpc_conn *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", rpc_model_name(s));
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)(time(NULL) - (time_t)rpc_uptime_s(s)));
    cJSON_AddStringToObject(m, "owned_by", "cserve");
    cJSON_AddNumberToObject(m, "max_model_len", cs_engine_max_model_len(rpc_engine(s)));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(r, "data"), m);
    send_json(s, c, 200, r);
}

static void metrics(rpc_server *s, rpc_conn *c) {
    cs_engine_stats st;
    if (rpc_engine(s)) cs_engine_stats_get(rpc_engine(s), &st);
    size_t len = 0;
    char *text = cs_metrics_render(rpc_metrics(s), rpc_engine(s) ? &st : NULL, rpc_model_name(s), &len);
    if (!text) http_error(s, c, 500, NULL, NULL, "out of memory");
    else http_respond(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    free(text);
}

// The body as a JSON object read by rd, or NULL when the client has been answered with a 400.
static cJSON *parse_object(rpc_server *s, rpc_conn *c, const char *body, size_t len, rpc_reader *rd) {
    cJSON *json = rpc_parse_object(rd, body, len);
    if (json && !rd->bad_param) return json;
    http_error(s, c, 400, rd->bad_param, NULL, "%s", rd->msg);
    cJSON_Delete(json);
    return NULL;
}

static void tokenize(rpc_server *s, rpc_conn *c, const char *body, size_t len) {
    rpc_reader rd;
    cJSON *json = parse_object(s, c, body, len, &rd);
    if (!json) return;
    cs_engine *e = rpc_engine(s);
    const char *prompt = rpc_str(&rd, "prompt");
    bool add = rpc_bool(&rd, "add_special_tokens", true);
    cs_chat_message *msgs = NULL;
    int n_msgs = rd.bad_param ? 0 : rpc_read_messages(&rd, &msgs);
    char err[256], *templated = NULL;
    if (!rd.bad_param && (prompt != NULL) == (n_msgs > 0)) rpc_fail(&rd, "prompt", "give one of prompt, messages");
    // the template's messages name the parameter ("messages[0].role: ...")
    if (!rd.bad_param && n_msgs > 0 && !(templated = cs_engine_apply_chat_template(e, msgs, n_msgs, err, sizeof err)))
        rpc_fail(&rd, "messages", "%s", err);
    const char *text = templated ? templated : prompt;
    bool special = templated ? false : add; // the template holds any BOS itself
    // one pass: room for one id past the limit, to tell "too many" (untouched pages cost nothing)
    int32_t *ids = rd.bad_param ? NULL : malloc(sizeof(int32_t) * (MAX_TOKENIZE + 1));
    int n = ids ? cs_engine_tokenize(e, text, strlen(text), special, ids, MAX_TOKENIZE + 1) : -1;
    if (rd.bad_param) {
        http_error(s, c, 400, rd.bad_param, NULL, "%s", rd.msg);
    } else if (n < 0) {
        http_error(s, c, 503, NULL, NULL, "out of memory");
    } else if (n > MAX_TOKENIZE) {
        http_error(s, c, 400, templated ? "messages" : "prompt", NULL, "more than %d tokens, the most /tokenize answers",
                   MAX_TOKENIZE);
    } else {
        cJSON *r = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(r, "tokens");
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
        cJSON_AddNumberToObject(r, "count", n);
        cJSON_AddNumberToObject(r, "max_model_len", cs_engine_max_model_len(e));
        send_json(s, c, 200, r);
    }
    free(ids);
    free(templated);
    free(msgs);
    cJSON_Delete(json);
}

static void detokenize(rpc_server *s, rpc_conn *c, const char *body, size_t len) {
    rpc_reader rd;
    cJSON *json = parse_object(s, c, body, len, &rd);
    if (!json) return;
    cs_engine *e = rpc_engine(s);
    int n = 0;
    int32_t *ids = rpc_int_array(&rd, "tokens", 0, cs_engine_vocab_size(e), 1 << 20, &n);
    if (!rd.bad_param && !ids) rpc_fail(&rd, "tokens", "tokens: required");
    if (rd.bad_param) {
        http_error(s, c, 400, rd.bad_param, NULL, "%s", rd.msg);
    } else {
        long need = cs_engine_detokenize(e, ids, n, NULL, 0);
        char *raw = malloc((size_t)need + 1);
        if (raw) cs_engine_detokenize(e, ids, n, raw, (size_t)need);
        // JSON needs valid UTF-8: bytes of cut characters become U+FFFD, as in Hugging Face's decode
        char *text = raw ? rpc_utf8_clean(raw, (size_t)need) : NULL;
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "prompt", text ? text : "");
        free(text);
        free(raw);
        send_json(s, c, 200, r);
    }
    free(ids);
    cJSON_Delete(json);
}

// --- routing -------------------------------------------------------------------------------

void oa_dispatch(rpc_server *s, rpc_conn *c, const char *method, const char *path, const char *body, size_t len) {
    static const struct { const char *path, *method; int id; } routes[] = {
        {"/health", "GET", 0}, {"/v1/models", "GET", 1}, {"/metrics", "GET", 2},
        {"/v1/chat/completions", "POST", 3}, {"/v1/completions", "POST", 4},
        {"/tokenize", "POST", 5}, {"/detokenize", "POST", 6},
    };
    int route = -1;
    const char *allowed = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && route < 0; i++) {
        if (strcmp(path, routes[i].path) != 0) continue;
        if (!strcmp(method, routes[i].method)) route = routes[i].id;
        else allowed = routes[i].method;
    }
    if (route < 0 && allowed) {
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", strcmp(allowed, "GET") ? allowed : "GET, HEAD");
        static const char msg[] = "{\"error\":{\"message\":\"method not allowed\",\"type\":\"invalid_request_error\","
                                  "\"param\":null,\"code\":null}}";
        http_respond(s, c, 405, "application/json", msg, sizeof msg - 1, allow);
        return;
    }
    if (route < 0) {
        http_error(s, c, 404, NULL, NULL, "no such path: %.128s", path);
        return;
    }
    bool ready = rpc_engine(s) != NULL && !rpc_shutting_down(s);
    if (route == 0) {
        http_respond(s, c, ready ? 200 : 503, NULL, NULL, 0, ready ? NULL : "Retry-After: 1\r\n");
    } else if (route == 2) {
        metrics(s, c);
    } else if (!rpc_engine(s)) {
        http_error(s, c, 503, NULL, NULL, "the model is still loading");
    } else if (route == 1) {
        models(s, c);
    } else if (route == 3 || route == 4) {
        completions(s, c, body, len, route == 3);
    } else if (route == 5) {
        tokenize(s, c, body, len);
    } else {
        detokenize(s, c, body, len);
    }
}
