// The JSON-RPC methods: parsing and validating each request, submitting it to the engine,
// and turning engine events into notifications and final responses.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_internal.h"
#include "rpc_params.h"

#define MAX_CHOICES 64 // select

static cJSON *response(const cJSON *id) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, true) : cJSON_CreateNull());
    return r;
}

static void send_result(rpc_server *s, rpc_conn *c, const cJSON *id, cJSON *result) {
    cJSON *r = response(id);
    cJSON_AddItemToObject(r, "result", result);
    rpc_send_json(s, c, r);
}

static void send_params_error(rpc_server *s, rpc_conn *c, const cJSON *id, rpc_reader *rd) {
    rpc_send_error(s, c, id, RPC_INVALID_PARAMS, rd->bad_param, "%s", rd->msg);
}


static cJSON *json_ids(const int32_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

rpc_pending *rpc_pending_new(rpc_conn *c, const cJSON *id, int n) {
    rpc_pending *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->conn = c;
    p->json_id = id ? cJSON_Duplicate(id, true) : cJSON_CreateNull();
    p->n = n;
    p->choices = calloc((size_t)n, sizeof *p->choices);
    if (!p->choices || !p->json_id) {
        rpc_pending_free(p);
        return NULL;
    }
    return p;
}

void rpc_pending_free(rpc_pending *p) {
    if (!p) return;
    for (int i = 0; p->choices && i < p->n; i++) {
        rpc_buf_free(&p->choices[i].text);
        free(p->choices[i].ids);
        cJSON_Delete(p->choices[i].logprobs);
    }
    free(p->choices);
    cJSON_Delete(p->json_id);
    cJSON_Delete(p->prompt_logprobs);
    free(p);
}

// Submits q; on failure answers the client and returns 0. prompt_param names the prompt as
// the client sent it (NULL: from q).
static uint64_t submit(rpc_server *s, rpc_conn *c, const cJSON *id, const cs_request *q, const char *prompt_param) {
    char err[256], pbuf[64];
    if (!prompt_param) prompt_param = q->messages ? "messages" : q->tokens ? "tokens" : "prompt";
    uint64_t eid;
    int rc = rpc_shutting_down(s) ? CS_ENGINE_EOVERLOADED : cs_engine_submit(rpc_engine(s), q, &eid, err, sizeof err);
    if (rc == 0) return eid;
    if (rpc_shutting_down(s)) rpc_send_error(s, c, id, RPC_OVERLOADED, NULL, "the server is shutting down");
    else if (rc == CS_ENGINE_EOVERLOADED) rpc_send_error(s, c, id, RPC_OVERLOADED, NULL, "%s", err);
    else if (rc == CS_ENGINE_ENOMEM) rpc_send_error(s, c, id, RPC_OVERLOADED, NULL, "%s", err);
    else {
        const char *param = rpc_param_of(err, pbuf, sizeof pbuf);
        // the engine speaks of "prompt" and "tokens" whatever the client sent
        if (param && (!strcmp(param, "prompt") || !strcmp(param, "tokens")) && strcmp(param, prompt_param)) {
            rpc_send_error(s, c, id, RPC_INVALID_PARAMS, prompt_param, "%s: %s", prompt_param, err);
            return 0;
        }
        rpc_send_error(s, c, id, RPC_INVALID_PARAMS, param, "%s", err);
    }
    return 0;
}

static void do_generate(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    rpc_reader rd = {.params = params};
    cs_request q;
    rpc_gen_bufs bufs = {0};
    rpc_read_generate(&rd, cs_engine_vocab_size(rpc_engine(s)), cs_engine_max_model_len(rpc_engine(s)), &q, &bufs);
    bool stream = rpc_bool(&rd, "stream", false);
    if (rd.bad_param) {
        send_params_error(s, c, id, &rd);
    } else {
        rpc_pending *p = rpc_pending_new(c, id, q.n);
        uint64_t eid = p ? submit(s, c, id, &q, NULL) : 0;
        if (!p) rpc_send_error(s, c, id, RPC_OVERLOADED, NULL, "out of memory");
        if (eid) {
            p->engine_id = eid;
            p->stream = stream;
            p->want_logprobs = q.logprobs > 0;
            if (q.prompt_logprobs_from >= 0) p->prompt_logprobs = cJSON_CreateArray();
            rpc_pending_add(s, p);
        } else {
            rpc_pending_free(p);
        }
    }
    rpc_gen_bufs_free(&bufs);
}

static cJSON *token_logprobs(const cs_event *ev) {
    cJSON *o = cJSON_CreateObject(), *top = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "token_id", ev->token);
    cJSON_AddNumberToObject(o, "logprob", ev->logprob);
    for (int i = 0; i < ev->n_top; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "token_id", ev->top_ids[i]);
        cJSON_AddNumberToObject(t, "logprob", ev->top_logprobs[i]);
        cJSON_AddItemToArray(top, t);
    }
    cJSON_AddItemToObject(o, "top", top);
    return o;
}

static void on_token(rpc_server *s, rpc_pending *p, const cs_event *ev) {
    rpc_choice *ch = &p->choices[ev->index];
    rpc_buf_append(&ch->text, ev->text, ev->text_len);
    if (ch->n_ids == ch->cap_ids) {
        int cap = ch->cap_ids ? 2 * ch->cap_ids : 16;
        int32_t *ids = realloc(ch->ids, sizeof(int32_t) * (size_t)cap);
        if (ids) ch->ids = ids, ch->cap_ids = cap;
    }
    if (ch->n_ids < ch->cap_ids) ch->ids[ch->n_ids++] = ev->token;
    if (p->want_logprobs) {
        if (!ch->logprobs) ch->logprobs = cJSON_CreateArray();
        cJSON_AddItemToArray(ch->logprobs, token_logprobs(ev));
    }
    if (!p->stream || !p->conn) return;
    cJSON *n = cJSON_CreateObject(), *params = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "jsonrpc", "2.0");
    cJSON_AddStringToObject(n, "method", "token");
    cJSON_AddItemToObject(params, "id", cJSON_Duplicate(p->json_id, true));
    cJSON_AddNumberToObject(params, "index", ev->index);
    char *text = strndup(ev->text, ev->text_len);
    cJSON_AddStringToObject(params, "text", text ? text : "");
    free(text);
    cJSON_AddItemToObject(params, "token_ids", json_ids(&ev->token, 1));
    if (p->want_logprobs) {
        cJSON *lp = cJSON_CreateArray();
        cJSON_AddItemToArray(lp, token_logprobs(ev));
        cJSON_AddItemToObject(params, "logprobs", lp);
    }
    cJSON_AddItemToObject(n, "params", params);
    rpc_send_json(s, p->conn, n);
}

static void on_done(rpc_server *s, rpc_pending *p, const cs_event *ev) {
    rpc_log_request(s, p, ev);
    if (!p->conn) return;
    cJSON *res = cJSON_CreateObject(), *choices = cJSON_CreateArray();
    for (int i = 0; i < p->n; i++) {
        rpc_choice *ch = &p->choices[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", i);
        char *text = strndup(ch->text.p ? ch->text.p : "", ch->text.len);
        cJSON_AddStringToObject(o, "text", text ? text : "");
        free(text);
        cJSON_AddItemToObject(o, "token_ids", json_ids(ch->ids, ch->n_ids));
        cJSON_AddStringToObject(o, "finish_reason", ch->finish ? ch->finish : "length");
        if (ch->logprobs) {
            cJSON_AddItemToObject(o, "logprobs", ch->logprobs);
            ch->logprobs = NULL;
        }
        cJSON_AddItemToArray(choices, o);
    }
    cJSON_AddItemToObject(res, "choices", choices);
    cJSON *usage = cJSON_AddObjectToObject(res, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", ev->prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", ev->completion_tokens);
    cJSON_AddNumberToObject(usage, "cached_tokens", ev->cached_tokens);
    cJSON *timing = cJSON_AddObjectToObject(res, "timing");
    cJSON_AddNumberToObject(timing, "queue_ms", ev->queue_ms);
    cJSON_AddNumberToObject(timing, "ttft_ms", ev->ttft_ms);
    cJSON_AddNumberToObject(timing, "total_ms", ev->total_ms);
    if (p->prompt_logprobs) {
        cJSON_AddItemToObject(res, "prompt_logprobs", p->prompt_logprobs);
        p->prompt_logprobs = NULL;
    }
    send_result(s, p->conn, p->json_id, res);
}

// --- select --------------------------------------------------------------------------------

static void select_free(rpc_select *sel) {
    for (int i = 0; sel->leg_tokens && i < sel->n; i++) free(sel->leg_tokens[i]);
    free(sel->leg_tokens);
    free(sel->leg_len);
    free(sel->sum);
    free(sel->count);
    cJSON_Delete(sel->choices);
    cJSON_Delete(sel->json_id);
    free(sel);
}

// Submits leg i: prompt + choice i, prefill only, scoring the choice's tokens.
static bool select_submit(rpc_server *s, rpc_select *sel, int i) {
    cs_request q;
    cs_request_default(&q);
    q.tokens = sel->leg_tokens[i];
    q.n_tokens = sel->leg_len[i];
    q.max_tokens = 0;
    q.prompt_logprobs_from = sel->n_prompt;
    rpc_pending *p = rpc_pending_new(sel->conn, sel->json_id, 1);
    uint64_t eid = p ? submit(s, sel->conn, sel->json_id, &q, sel->prompt_param) : 0;
    if (!eid) {
        rpc_pending_free(p);
        return false;
    }
    p->engine_id = eid;
    p->select = sel;
    p->select_index = i;
    p->select_from = sel->n_prompt;
    rpc_pending_add(s, p);
    return true;
}

static void select_answer(rpc_server *s, rpc_select *sel) {
    cJSON *res = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int best = 0;
    for (int i = 0; i < sel->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", cJSON_GetArrayItem(sel->choices, i)->valuestring);
        cJSON_AddNumberToObject(o, "logprob", sel->sum[i]);
        cJSON_AddNumberToObject(o, "logprob_mean", sel->count[i] ? sel->sum[i] / sel->count[i] : 0.0);
        cJSON_AddNumberToObject(o, "n_tokens", sel->count[i]);
        cJSON_AddItemToArray(arr, o);
        if (sel->sum[i] > sel->sum[best]) best = i;
    }
    cJSON_AddNumberToObject(res, "index", best);
    cJSON_AddItemToObject(res, "choices", arr);
    send_result(s, sel->conn, sel->json_id, res);
}

// A leg finished: fold in its score; after leg 0 (the prompt is now cached) start the rest.
static void select_leg_done(rpc_server *s, rpc_pending *p) {
    rpc_select *sel = p->select;
    sel->sum[p->select_index] = p->logprob_sum;
    sel->count[p->select_index] = p->logprob_count;
    sel->remaining--;
    if (p->select_index == 0 && sel->conn && !sel->failed)
        for (int i = 1; i < sel->n; i++) {
            if (!select_submit(s, sel, i)) { // the client has its error already
                sel->failed = true;
                break;
            }
            sel->remaining++;
        }
    if (sel->remaining > 0) return;
    if (sel->conn && !sel->failed) select_answer(s, sel);
    select_free(sel);
}

static int32_t *tokenize_alloc(cs_engine *e, const char *text, bool add_special, int *n) {
    size_t len = strlen(text);
    *n = cs_engine_tokenize(e, text, len, add_special, NULL, 0);
    int32_t *ids = *n > 0 ? malloc(sizeof(int32_t) * (size_t)*n) : NULL;
    if (ids) cs_engine_tokenize(e, text, len, add_special, ids, *n);
    return ids;
}

// The prompt of a select as token ids (prompt text, or messages through the template).
static int32_t *select_prompt(rpc_server *s, rpc_reader *rd, int *n) {
    cs_engine *e = rpc_engine(s);
    const char *prompt = rpc_str(rd, "prompt");
    cs_chat_message *msgs = NULL;
    int n_msgs = rpc_read_messages(rd, &msgs);
    *n = 0;
    if (rd->bad_param) return NULL;
    if ((prompt != NULL) == (n_msgs > 0)) {
        free(msgs);
        rpc_fail(rd, "prompt", "give exactly one of prompt, messages");
        return NULL;
    }
    int32_t *ids = NULL;
    if (prompt) {
        ids = tokenize_alloc(e, prompt, true, n);
    } else {
        char err[256];
        char *text = cs_engine_apply_chat_template(e, msgs, n_msgs, err, sizeof err);
        if (!text) rpc_fail(rd, "messages", "messages: %s", err);
        else ids = tokenize_alloc(e, text, false, n); // the template holds any BOS itself
        free(text);
    }
    free(msgs);
    if (!rd->bad_param && !ids) rpc_fail(rd, "prompt", "prompt: empty");
    return ids;
}

static void do_select(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    static const char *const keys[] = {"prompt", "messages", "choices", NULL};
    rpc_reader rd = {.params = params};
    rpc_only_keys(&rd, keys);
    int n_prompt = 0;
    int32_t *prompt = rd.bad_param ? NULL : select_prompt(s, &rd, &n_prompt);
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(params, "choices");
    int n = cJSON_IsArray(choices) ? cJSON_GetArraySize(choices) : -1;
    if (!rd.bad_param && (n < 1 || n > MAX_CHOICES))
        rpc_fail(&rd, "choices", "choices: expected an array of 1 to %d strings", MAX_CHOICES);
    rpc_select *sel = rd.bad_param ? NULL : calloc(1, sizeof *sel);
    if (sel) {
        sel->conn = c;
        sel->json_id = id ? cJSON_Duplicate(id, true) : cJSON_CreateNull();
        sel->n = n;
        sel->n_prompt = n_prompt;
        sel->prompt_param = cJSON_GetObjectItemCaseSensitive(params, "messages") ? "messages" : "prompt";
        sel->choices = cJSON_Duplicate(choices, true);
        sel->sum = calloc((size_t)n, sizeof *sel->sum);
        sel->count = calloc((size_t)n, sizeof *sel->count);
        sel->leg_tokens = calloc((size_t)n, sizeof *sel->leg_tokens);
        sel->leg_len = calloc((size_t)n, sizeof *sel->leg_len);
    }
    for (int i = 0; sel && i < n && !rd.bad_param; i++) {
        const cJSON *ch = cJSON_GetArrayItem(choices, i);
        int n_ch = 0;
        int32_t *ids = cJSON_IsString(ch) ? tokenize_alloc(rpc_engine(s), ch->valuestring, false, &n_ch) : NULL;
        if (!ids) {
            rpc_fail(&rd, "choices", "choices[%d]: expected a non-empty string", i);
            break;
        }
        sel->leg_len[i] = n_prompt + n_ch;
        sel->leg_tokens[i] = malloc(sizeof(int32_t) * (size_t)sel->leg_len[i]);
        if (sel->leg_tokens[i]) {
            memcpy(sel->leg_tokens[i], prompt, sizeof(int32_t) * (size_t)n_prompt);
            memcpy(sel->leg_tokens[i] + n_prompt, ids, sizeof(int32_t) * (size_t)n_ch);
        }
        free(ids);
    }
    free(prompt);
    if (rd.bad_param) {
        send_params_error(s, c, id, &rd);
        if (sel) select_free(sel);
        return;
    }
    if (!sel) {
        rpc_send_error(s, c, id, RPC_OVERLOADED, NULL, "out of memory");
        return;
    }
    sel->remaining = 1;
    if (!select_submit(s, sel, 0)) select_free(sel);
}

// --- small methods -------------------------------------------------------------------------

static void do_cancel(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    static const char *const keys[] = {"id", NULL};
    rpc_reader rd = {.params = params};
    rpc_only_keys(&rd, keys);
    const cJSON *target = cJSON_GetObjectItemCaseSensitive(params, "id");
    if (!rd.bad_param && (!target || !(cJSON_IsNumber(target) || cJSON_IsString(target))))
        rpc_fail(&rd, "id", "id: expected the id of one of this connection's requests");
    if (rd.bad_param) {
        send_params_error(s, c, id, &rd);
        return;
    }
    bool found = false;
    for (rpc_pending *p = c->pending; p; p = p->conn_next)
        if (!p->select && cJSON_Compare(p->json_id, target, true)) {
            cs_engine_cancel(rpc_engine(s), p->engine_id);
            found = true;
        }
    if (!id) return;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddBoolToObject(res, "cancelled", found);
    send_result(s, c, id, res);
}

static void do_tokenize(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    static const char *const keys[] = {"text", "add_special", NULL};
    rpc_reader rd = {.params = params};
    rpc_only_keys(&rd, keys);
    const char *text = rpc_str(&rd, "text");
    bool add = rpc_bool(&rd, "add_special", true);
    if (!rd.bad_param && !text) rpc_fail(&rd, "text", "text: required");
    if (rd.bad_param) {
        send_params_error(s, c, id, &rd);
        return;
    }
    int n = 0;
    int32_t *ids = tokenize_alloc(rpc_engine(s), text, add, &n);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToObject(res, "tokens", json_ids(ids, ids ? n : 0));
    free(ids);
    send_result(s, c, id, res);
}

static void do_detokenize(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    static const char *const keys[] = {"tokens", NULL};
    rpc_reader rd = {.params = params};
    rpc_only_keys(&rd, keys);
    int n = 0;
    cs_engine *e = rpc_engine(s);
    int32_t *ids = rpc_int_array(&rd, "tokens", 0, cs_engine_vocab_size(e), 1 << 20, &n);
    if (!rd.bad_param && !ids) rpc_fail(&rd, "tokens", "tokens: required");
    if (rd.bad_param) {
        send_params_error(s, c, id, &rd);
        return;
    }
    long need = cs_engine_detokenize(e, ids, n, NULL, 0);
    char *text = malloc((size_t)need + 1);
    if (text) {
        cs_engine_detokenize(e, ids, n, text, (size_t)need);
        text[need] = 0;
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "text", text ? text : "");
    free(text);
    free(ids);
    send_result(s, c, id, res);
}

static void do_chat_template(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    static const char *const keys[] = {"messages", NULL};
    rpc_reader rd = {.params = params};
    rpc_only_keys(&rd, keys);
    cs_chat_message *msgs = NULL;
    int n = rd.bad_param ? 0 : rpc_read_messages(&rd, &msgs);
    if (!rd.bad_param && n == 0) rpc_fail(&rd, "messages", "messages: required");
    char err[256], *text = NULL;
    if (!rd.bad_param && !(text = cs_engine_apply_chat_template(rpc_engine(s), msgs, n, err, sizeof err)))
        rpc_fail(&rd, "messages", "messages: %s", err);
    free(msgs);
    if (rd.bad_param) {
        send_params_error(s, c, id, &rd);
        return;
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "prompt", text);
    free(text);
    send_result(s, c, id, res);
}

static void do_info(rpc_server *s, rpc_conn *c, const cJSON *id, const char *method) {
    cJSON *res = cJSON_CreateObject();
    cs_engine *e = rpc_engine(s);
    if (!strcmp(method, "health")) {
        cJSON_AddStringToObject(res, "status", rpc_shutting_down(s) ? "shutting_down" : "ok");
    } else if (!strcmp(method, "model")) {
        cs_engine_info info;
        cs_engine_info_get(e, &info);
        cJSON_AddStringToObject(res, "name", info.name);
        cJSON_AddStringToObject(res, "architecture", info.architecture);
        cJSON_AddNumberToObject(res, "context_length", info.context_length);
        cJSON_AddStringToObject(res, "weight_formats", info.weight_formats);
        cJSON_AddStringToObject(res, "device", info.device);
        cJSON_AddNumberToObject(res, "tensor_parallel_size", info.tensor_parallel_size);
        cJSON_AddNumberToObject(res, "vocab_size", info.vocab_size);
    } else { // stats
        cs_engine_stats st;
        cs_engine_stats_get(e, &st);
        cJSON_AddNumberToObject(res, "running", st.running);
        cJSON_AddNumberToObject(res, "waiting", st.waiting);
        cJSON_AddNumberToObject(res, "kv_blocks_total", st.blocks_total);
        cJSON_AddNumberToObject(res, "kv_blocks_free", st.blocks_free);
        cJSON_AddNumberToObject(res, "kv_blocks_used", st.blocks_used);
        cJSON_AddNumberToObject(res, "kv_blocks_cached", st.blocks_cached);
        cJSON_AddNumberToObject(res, "prefix_cache_hit_rate", st.prefix_hit_rate);
        cJSON_AddNumberToObject(res, "prompt_tokens", (double)st.prompt_tokens_computed);
        cJSON_AddNumberToObject(res, "generated_tokens", (double)st.generated_tokens);
        cJSON_AddNumberToObject(res, "requests_finished", (double)st.requests_finished);
        cJSON_AddNumberToObject(res, "preemptions", (double)st.preemptions);
        cJSON_AddNumberToObject(res, "steps", (double)st.steps);
        cJSON_AddNumberToObject(res, "steps_ahead", (double)st.steps_ahead);
        cJSON_AddNumberToObject(res, "uptime_s", rpc_uptime_s(s));
    }
    send_result(s, c, id, res);
}

// --- dispatch ------------------------------------------------------------------------------

static bool auth(rpc_server *s, rpc_conn *c, const cJSON *id, const char *method, const cJSON *params) {
    const char *key = rpc_api_key(s);
    if (c->authed) return true;
    const cJSON *k = params ? cJSON_GetObjectItemCaseSensitive(params, "key") : NULL;
    if (!strcmp(method, "auth") && cJSON_IsString(k) && strlen(k->valuestring) == strlen(key)) {
        unsigned diff = 0; // compare in constant time
        for (size_t i = 0; key[i]; i++) diff |= (unsigned)(key[i] ^ k->valuestring[i]);
        if (!diff) {
            c->authed = true;
            cJSON *res = cJSON_CreateObject();
            cJSON_AddBoolToObject(res, "ok", true);
            if (id) send_result(s, c, id, res);
            else cJSON_Delete(res);
            return false;
        }
    }
    c->closing = true; // before sending: the flush closes the connection once the error is out
    rpc_send_error(s, c, id, RPC_UNAUTHORIZED, NULL, "unauthorized: call auth with the API key first");
    return false;
}

// Answers invalid params and returns false when params (an object) holds a key twice: cJSON
// would read the first, a Python client the last.
static bool unique_params(rpc_server *s, rpc_conn *c, const cJSON *id, const cJSON *params) {
    if (!cJSON_IsObject(params)) return true;
    rpc_reader rd = {.params = params};
    if (rpc_unique_keys(&rd, params, NULL, "params")) return true;
    rpc_send_error(s, c, id, RPC_INVALID_PARAMS, rd.bad_param, "%s", rd.msg);
    return false;
}

void rpc_dispatch(rpc_server *s, rpc_conn *c, const char *line, size_t len) {
    char why[200];
    int nul_member;
    cJSON *req = rpc_parse_json(line, len, "the line", &nul_member, why, sizeof why);
    if (!req) {
        rpc_send_error(s, c, NULL, RPC_PARSE_ERROR, NULL, "parse error: %s", why);
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(req, "jsonrpc");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(req, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(req, "params");
    if (id && !((cJSON_IsNumber(id) && id->valuedouble == floor(id->valuedouble)) || cJSON_IsString(id) ||
               cJSON_IsNull(id)))
        id = NULL; // only integers and strings identify a request
    if (cJSON_IsArray(req)) {
        rpc_send_error(s, c, NULL, RPC_INVALID_REQUEST, NULL, "invalid request: batches are not supported");
    } else if (!cJSON_IsObject(req) || !cJSON_IsString(ver) || strcmp(ver->valuestring, "2.0") != 0 ||
               !cJSON_IsString(method)) {
        rpc_send_error(s, c, id, RPC_INVALID_REQUEST, NULL, "invalid request: needs \"jsonrpc\": \"2.0\" and a method");
    } else if (cJSON_GetObjectItemCaseSensitive(req, "id") && !id) {
        rpc_send_error(s, c, NULL, RPC_INVALID_REQUEST, NULL, "invalid request: id must be an integer or a string");
    } else if (nul_member >= 0) { // a C string ends at the NUL: the text would arrive cut short
        rpc_send_error(s, c, id, RPC_INVALID_PARAMS, "params", "params: a string holds \\u0000 (NUL), which cannot "
                       "be passed on");
    } else if (!unique_params(s, c, id, params)) {
        // answered
    } else if (!auth(s, c, id, method->valuestring, params)) {
        // answered (and closing when refused)
    } else if (!rpc_engine(s) && id && strcmp(method->valuestring, "health") && strcmp(method->valuestring, "auth")) {
        rpc_send_error(s, c, id, RPC_OVERLOADED, NULL, "the model is still loading");
    } else if (!rpc_engine(s) && id && !strcmp(method->valuestring, "health")) {
        cJSON *res = cJSON_CreateObject();
        cJSON_AddStringToObject(res, "status", "loading");
        send_result(s, c, id, res);
    } else if (!rpc_engine(s)) {
        // a notification while loading: nothing to cancel yet
    } else if (!id) { // a notification gets no answer; of the methods only cancel means anything so
        if (!strcmp(method->valuestring, "cancel") && cJSON_IsObject(params)) do_cancel(s, c, NULL, params);
    } else {
        const char *m = method->valuestring;
        bool needs_params = strcmp(m, "health") && strcmp(m, "model") && strcmp(m, "stats") && strcmp(m, "auth");
        bool known = !needs_params || !strcmp(m, "generate") || !strcmp(m, "select") || !strcmp(m, "cancel") ||
                     !strcmp(m, "tokenize") || !strcmp(m, "detokenize") || !strcmp(m, "apply_chat_template");
        if (!known)
            rpc_send_error(s, c, id, RPC_METHOD_NOT_FOUND, NULL, "unknown method '%.64s'", m);
        else if (needs_params && !cJSON_IsObject(params))
            rpc_send_error(s, c, id, RPC_INVALID_PARAMS, "params", "params: expected an object");
        else if (!strcmp(m, "generate")) do_generate(s, c, id, params);
        else if (!strcmp(m, "select")) do_select(s, c, id, params);
        else if (!strcmp(m, "cancel")) do_cancel(s, c, id, params);
        else if (!strcmp(m, "tokenize")) do_tokenize(s, c, id, params);
        else if (!strcmp(m, "detokenize")) do_detokenize(s, c, id, params);
        else if (!strcmp(m, "apply_chat_template")) do_chat_template(s, c, id, params);
        else if (!strcmp(m, "auth")) send_result(s, c, id, cJSON_CreateObject());
        else do_info(s, c, id, m);
    }
    cJSON_Delete(req);
}

void rpc_on_event(rpc_server *s, rpc_pending *p, const cs_event *ev) {
    switch (ev->type) {
    case CS_EVENT_TOKEN:
        if (ev->index >= 0 && ev->index < p->n) on_token(s, p, ev);
        break;
    case CS_EVENT_FINISH:
        if (ev->index >= 0 && ev->index < p->n) {
            static const char *names[] = {"stop", "length", "cancelled", "error"};
            p->choices[ev->index].finish = names[ev->finish_reason];
        }
        break;
    case CS_EVENT_PROMPT_LOGPROB:
        if (p->select && ev->index >= p->select_from) {
            p->logprob_sum += ev->logprob;
            p->logprob_count++;
        } else if (p->prompt_logprobs) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "position", ev->index);
            cJSON_AddNumberToObject(o, "token_id", ev->token);
            cJSON_AddNumberToObject(o, "logprob", ev->logprob);
            cJSON_AddItemToArray(p->prompt_logprobs, o);
        }
        break;
    case CS_EVENT_DONE:
        if (p->select) select_leg_done(s, p);
        else on_done(s, p, ev);
        break;
    }
}
