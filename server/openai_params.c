#include "openai_params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_params.h"

#define SEED_LIMIT 9007199254740992.0 // 2^53: larger integers cannot arrive exactly in a double
#define MAX_LEG_CHOICES 1024           // prompts x n in one completions call
#define MAX_GUIDED_CHOICES 65536
#define MAX_PROMPT_IDS (1 << 22) // longer than any context: the engine says context_length_exceeded

// Fields read below, and fields accepted without effect (metadata of the client's own).
static const char *const known_keys[] = {
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
    "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "stream", "stream_options",
    "response_format", "top_k", "min_p", "repetition_penalty", "ignore_eos", "stop_token_ids", "regex",
    "guided_regex", "choice", "guided_choice", "guided_json", "tools", "tool_choice", "functions", "function_call",
    "logit_bias", "echo", "best_of", "suffix", "user", "store", "metadata", "parallel_tool_calls", "service_tier",
    NULL};

static bool fail(oa_params *p, rpc_reader *rd) {
    p->bad_param = rd->bad_param;
    snprintf(p->msg, sizeof p->msg, "%s", rd->msg);
    return false;
}

static char *own(oa_params *p, char *str) {
    char **o = str ? realloc(p->owned, sizeof(char *) * (size_t)(p->n_owned + 1)) : NULL;
    if (!o) {
        free(str);
        return NULL;
    }
    p->owned = o;
    p->owned[p->n_owned++] = str;
    return str;
}

// content: a string, null (an assistant turn with no text), or an array of text parts, joined.
static const char *read_content(oa_params *p, rpc_reader *rd, const cJSON *content, int i) {
    if (cJSON_IsString(content)) return content->valuestring;
    if (!content || cJSON_IsNull(content)) return "";
    if (!cJSON_IsArray(content)) {
        rpc_fail(rd, "messages", "messages[%d].content: expected a string or an array of text parts", i);
        return NULL;
    }
    size_t len = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
            rpc_fail(rd, "messages", "messages[%d].content: only {\"type\": \"text\", \"text\": ...} parts are supported", i);
            return NULL;
        }
        len += strlen(text->valuestring);
    }
    char *joined = malloc(len + 1), *end = joined;
    if (!own(p, joined)) {
        rpc_fail(rd, "messages", "messages: out of memory");
        return NULL;
    }
    cJSON_ArrayForEach(part, content) {
        const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t n = strlen(t);
        memcpy(end, t, n);
        end += n;
    }
    *end = 0;
    return joined;
}

static void read_messages(oa_params *p, rpc_reader *rd) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(rd->params, "messages");
    int n = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : -1;
    if (n < 1 || n > 4096) {
        rpc_fail(rd, "messages", "messages: expected an array of 1 to 4096 messages");
        return;
    }
    if (!(p->msgs = calloc((size_t)n, sizeof *p->msgs))) {
        rpc_fail(rd, "messages", "messages: out of memory");
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(item, "role");
        if (!cJSON_IsObject(item) || !cJSON_IsString(role)) {
            rpc_fail(rd, "messages", "messages[%d]: expected an object with a string role", p->n_msgs);
            return;
        }
        char what[32];
        snprintf(what, sizeof what, "messages[%d]", p->n_msgs);
        if (!rpc_unique_keys(rd, item, "messages", what)) return;
        const char *content = read_content(p, rd, cJSON_GetObjectItemCaseSensitive(item, "content"), p->n_msgs);
        if (!content) return;
        // OpenAI's newer name for the system turn
        const char *r = !strcmp(role->valuestring, "developer") ? "system" : role->valuestring;
        p->msgs[p->n_msgs++] = (cs_chat_message){r, content};
    }
}

// Token ids of one prompt, from a JSON array of integers.
static int32_t *read_ids(rpc_reader *rd, const cJSON *a, int vocab, int max_len, int *n) {
    int len = cJSON_GetArraySize(a);
    *n = 0;
    if (len < 1 || len > max_len) {
        rpc_fail(rd, "prompt", "prompt: a token-id prompt needs 1 to %d ids", max_len);
        return NULL;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)len);
    if (!ids) {
        rpc_fail(rd, "prompt", "prompt: out of memory");
        return NULL;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        double d = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        if (!(d == floor(d) && d >= 0 && d < vocab)) {
            rpc_fail(rd, "prompt", "prompt: token ids must be integers in [0, %d)", vocab);
            free(ids);
            return NULL;
        }
        ids[(*n)++] = (int32_t)d;
    }
    return ids;
}

// prompt: a string, an array of strings, an array of token ids, or an array of such arrays.
static void read_prompts(oa_params *p, rpc_reader *rd, int vocab) {
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(rd->params, "prompt");
    if (cJSON_IsString(pr)) {
        p->texts[p->n_legs++] = pr->valuestring;
        return;
    }
    int n = cJSON_IsArray(pr) ? cJSON_GetArraySize(pr) : -1;
    if (n < 1) {
        rpc_fail(rd, "prompt", "prompt: expected a string, an array of strings, or token ids");
        return;
    }
    const cJSON *first = cJSON_GetArrayItem(pr, 0);
    if (cJSON_IsNumber(first)) {
        p->ids[0] = read_ids(rd, pr, vocab, MAX_PROMPT_IDS, &p->n_ids[0]);
        p->n_legs = p->ids[0] ? 1 : 0;
        return;
    }
    if (n > OA_MAX_PROMPTS) {
        rpc_fail(rd, "prompt", "prompt: at most %d prompts in one request", OA_MAX_PROMPTS);
        return;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, pr) {
        if (cJSON_IsString(x) && cJSON_IsString(first)) {
            p->texts[p->n_legs++] = x->valuestring;
        } else if (cJSON_IsArray(x) && cJSON_IsArray(first)) {
            int i = p->n_legs;
            if (!(p->ids[i] = read_ids(rd, x, vocab, MAX_PROMPT_IDS, &p->n_ids[i]))) return;
            p->n_legs++;
        } else {
            rpc_fail(rd, "prompt", "prompt: an array must hold only strings, or only token-id arrays");
            return;
        }
    }
}

// response_format and the guided_* / regex / choice extensions: at most one constraint.
static void read_constraint(oa_params *p, rpc_reader *rd) {
    cs_request *q = &p->q;
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(rd->params, "response_format");
    const cJSON *schema = NULL;
    const char *schema_param = "response_format";
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
        if (!cJSON_IsObject(rf) || !cJSON_IsString(type)) {
            rpc_fail(rd, "response_format", "response_format: expected {\"type\": \"text\" | \"json_object\" | \"json_schema\"}");
        } else if (!strcmp(type->valuestring, "json_object")) {
            q->json_object = true;
            p->constraint_param = "response_format";
        } else if (!strcmp(type->valuestring, "json_schema")) {
            p->constraint_param = "response_format";
            const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
            schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
            if (!cJSON_IsObject(js) || !(cJSON_IsObject(schema) || cJSON_IsBool(schema)))
                rpc_fail(rd, "response_format", "response_format.json_schema: expected {\"name\": ..., \"schema\": {...}}");
        } else if (strcmp(type->valuestring, "text") != 0) {
            rpc_fail(rd, "response_format", "response_format: unknown type '%.32s'", type->valuestring);
        }
    }
    const cJSON *gj = cJSON_GetObjectItemCaseSensitive(rd->params, "guided_json");
    if (gj && !cJSON_IsNull(gj)) {
        if (schema || q->json_object) rpc_fail(rd, "guided_json", "guided_json: give at most one constraint");
        else if (cJSON_IsString(gj)) q->json_schema = gj->valuestring, p->constraint_param = "guided_json";
        else if (cJSON_IsObject(gj)) schema = gj, schema_param = p->constraint_param = "guided_json";
        else rpc_fail(rd, "guided_json", "guided_json: expected a JSON Schema (an object or its text)");
    }
    if (schema && !rd->bad_param && !(p->schema = cJSON_PrintUnformatted(schema)))
        rpc_fail(rd, schema_param, "%s: out of memory", schema_param);
    if (p->schema) q->json_schema = p->schema;
    const char *re = rpc_str(rd, "regex"), *gre = rpc_str(rd, "guided_regex");
    if (re && gre) rpc_fail(rd, "regex", "give one of regex, guided_regex");
    q->regex = re ? re : gre;
    if (q->regex) p->constraint_param = re ? "regex" : "guided_regex";
    const char *ch_name = cJSON_GetObjectItemCaseSensitive(rd->params, "guided_choice") ? "guided_choice" : "choice";
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(rd->params, ch_name);
    if (ch && !cJSON_IsNull(ch)) {
        int n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : -1;
        if (n < 1 || n > MAX_GUIDED_CHOICES) {
            rpc_fail(rd, ch_name, "%s: expected an array of 1 to %d strings", ch_name, MAX_GUIDED_CHOICES);
            return;
        }
        if (!(p->choices = malloc(sizeof(char *) * (size_t)n))) {
            rpc_fail(rd, ch_name, "%s: out of memory", ch_name);
            return;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, ch) {
            if (!cJSON_IsString(item)) {
                rpc_fail(rd, ch_name, "%s: entries must be strings", ch_name);
                return;
            }
            p->choices[q->n_choices++] = item->valuestring;
        }
        q->choices = p->choices;
        p->constraint_param = ch_name;
    }
    if (!rd->bad_param && (q->json_schema != NULL) + q->json_object + (q->regex != NULL) + (q->choices != NULL) > 1)
        rpc_fail(rd, "response_format", "give at most one of response_format, guided_json, regex, choice");
}

// Fields of the OpenAI API we do not implement: refused when they ask for something.
static void refuse_unsupported(rpc_reader *rd, int n) {
    static const char *const arrays[] = {"tools", "functions", NULL};
    for (int i = 0; arrays[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(rd->params, arrays[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
            rpc_fail(rd, arrays[i], "%s: tool and function calling are not supported", arrays[i]);
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(rd->params, "tool_choice");
    if (tc && !cJSON_IsNull(tc) && !(cJSON_IsString(tc) && !strcmp(tc->valuestring, "none")))
        rpc_fail(rd, "tool_choice", "tool_choice: tool calling is not supported");
    const cJSON *fc = cJSON_GetObjectItemCaseSensitive(rd->params, "function_call");
    if (fc && !cJSON_IsNull(fc) && !(cJSON_IsString(fc) && !strcmp(fc->valuestring, "none")))
        rpc_fail(rd, "function_call", "function_call: function calling is not supported");
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(rd->params, "logit_bias");
    if (lb && !cJSON_IsNull(lb) && !(cJSON_IsObject(lb) && !lb->child))
        rpc_fail(rd, "logit_bias", "logit_bias: not supported");
    if (rpc_bool(rd, "echo", false)) rpc_fail(rd, "echo", "echo: not supported");
    double best_of = rpc_num(rd, "best_of", n, 1, 64, true);
    if (!rd->bad_param && best_of != n) rpc_fail(rd, "best_of", "best_of: only best_of = n is supported");
    const char *suffix = rpc_str(rd, "suffix");
    if (suffix && *suffix) rpc_fail(rd, "suffix", "suffix: not supported");
}

static void note_unknown(oa_params *p, const cJSON *body) {
    const cJSON *item;
    cJSON_ArrayForEach(item, body) {
        bool known = false;
        for (const char *const *k = known_keys; *k && !known; k++) known = !strcmp(item->string, *k);
        if (!known && p->n_unknown < (int)(sizeof p->unknown / sizeof p->unknown[0]))
            p->unknown[p->n_unknown++] = item->string;
    }
}

bool oa_read_params(const cJSON *body, bool chat, int vocab, oa_params *p) {
    memset(p, 0, sizeof *p);
    p->chat = chat;
    cs_request *q = &p->q;
    cs_request_default(q);
    rpc_reader rd = {.params = body};
    note_unknown(p, body);
    p->model = rpc_str(&rd, "model");
    if (chat) read_messages(p, &rd);
    else read_prompts(p, &rd, vocab);
    if (chat) p->n_legs = 1;
    // chat: as many tokens as the context leaves, unless asked; completions: 16, as OpenAI's
    int max_tokens = (int)rpc_num(&rd, "max_tokens", chat ? -1 : 16, 1, 1 << 24, true);
    q->max_tokens = (int)rpc_num(&rd, "max_completion_tokens", max_tokens, 1, 1 << 24, true);
    q->temperature = (float)rpc_num(&rd, "temperature", 1.0, 0, 2, false);
    q->top_p = (float)rpc_num(&rd, "top_p", 1.0, 0, 1, false);
    q->n = (int)rpc_num(&rd, "n", 1, 1, 64, true);
    rpc_read_stop(&rd, q);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(body, "seed");
    q->has_seed = seed && !cJSON_IsNull(seed);
    q->seed = (uint64_t)(int64_t)rpc_num(&rd, "seed", 0, -(SEED_LIMIT - 1), SEED_LIMIT - 1, true);
    q->presence_penalty = (float)rpc_num(&rd, "presence_penalty", 0, -2, 2, false);
    q->frequency_penalty = (float)rpc_num(&rd, "frequency_penalty", 0, -2, 2, false);
    if (chat) {
        p->logprobs = rpc_bool(&rd, "logprobs", false);
        q->logprobs = (int)rpc_num(&rd, "top_logprobs", 0, 0, CS_MAX_LOGPROBS, true);
        if (!rd.bad_param && q->logprobs > 0 && !p->logprobs)
            rpc_fail(&rd, "top_logprobs", "top_logprobs: needs logprobs: true");
    } else {
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
        p->logprobs = lp && !cJSON_IsNull(lp);
        q->logprobs = (int)rpc_num(&rd, "logprobs", 0, 0, CS_MAX_LOGPROBS, true);
    }
    p->stream = rpc_bool(&rd, "stream", false);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
        if (!cJSON_IsObject(so) || (iu && !cJSON_IsBool(iu)))
            rpc_fail(&rd, "stream_options", "stream_options: expected {\"include_usage\": true|false}");
        else if (!p->stream) rpc_fail(&rd, "stream_options", "stream_options: only with stream: true");
        p->include_usage = cJSON_IsTrue(iu);
    }
    q->top_k = (int)rpc_num(&rd, "top_k", 0, -1, 1 << 24, true);
    if (q->top_k < 0) q->top_k = 0; // -1 means off, as in vLLM
    q->min_p = (float)rpc_num(&rd, "min_p", 0, 0, 1, false);
    q->repetition_penalty = (float)rpc_num(&rd, "repetition_penalty", 1.0, 0.01, 100, false);
    q->ignore_eos = rpc_bool(&rd, "ignore_eos", false);
    int n_ids = 0;
    int32_t *ids = rpc_int_array(&rd, "stop_token_ids", 0, vocab, CS_MAX_STOP, &n_ids);
    if (ids) memcpy(q->stop_token_ids, ids, sizeof(int32_t) * (size_t)n_ids);
    q->n_stop_token_ids = n_ids;
    free(ids);
    read_constraint(p, &rd);
    refuse_unsupported(&rd, q->n);
    if (!rd.bad_param && p->n_legs * q->n > MAX_LEG_CHOICES)
        rpc_fail(&rd, "n", "n: prompts x n may be at most %d", MAX_LEG_CHOICES);
    return rd.bad_param ? fail(p, &rd) : true;
}

void oa_params_free(oa_params *p) {
    for (int i = 0; i < p->n_legs && !p->chat; i++) free(p->ids[i]);
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->msgs);
    free(p->schema);
    free(p->choices);
    memset(p, 0, sizeof *p);
}
