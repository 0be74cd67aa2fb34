#include "rpc_params.h"

#define MAX_MESSAGES 4096
#define SEED_LIMIT 9007199254740992.0 // 2^53: larger integers cannot arrive exactly in a double

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rpc_fail(rpc_reader *r, const char *param, const char *fmt, ...) {
    if (r->bad_param) return; // keep the first problem
    r->bad_param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

bool rpc_only_keys(rpc_reader *r, const char *const *known) {
    const cJSON *item;
    cJSON_ArrayForEach(item, r->params) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = item->string && !strcmp(item->string, *k);
        if (!ok) {
            rpc_fail(r, item->string ? item->string : "?", "unknown parameter '%.64s'", item->string ? item->string : "?");
            return false;
        }
    }
    return true;
}

static const cJSON *get(rpc_reader *r, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->params, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

double rpc_num(rpc_reader *r, const char *name, double def, double lo, double hi, bool integer) {
    const cJSON *v = get(r, name);
    if (!v) return def;
    if (!cJSON_IsNumber(v)) {
        rpc_fail(r, name, "%s: expected a number", name);
        return def;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi || (integer && d != floor(d))) {
        rpc_fail(r, name, "%s: %g is not %s in [%g, %g]", name, d, integer ? "an integer" : "a number", lo, hi);
        return def;
    }
    return d;
}

bool rpc_bool(rpc_reader *r, const char *name, bool def) {
    const cJSON *v = get(r, name);
    if (!v) return def;
    if (!cJSON_IsBool(v)) {
        rpc_fail(r, name, "%s: expected true or false", name);
        return def;
    }
    return cJSON_IsTrue(v);
}

const char *rpc_str(rpc_reader *r, const char *name) {
    const cJSON *v = get(r, name);
    if (!v) return NULL;
    if (!cJSON_IsString(v) || !v->valuestring) {
        rpc_fail(r, name, "%s: expected a string", name);
        return NULL;
    }
    return v->valuestring;
}

int32_t *rpc_int_array(rpc_reader *r, const char *name, int64_t lo, int64_t hi, int max_len, int *n) {
    const cJSON *v = get(r, name);
    *n = 0;
    if (!v) return NULL;
    int len = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (len < 0) {
        rpc_fail(r, name, "%s: expected an array of integers", name);
        return NULL;
    }
    if (len == 0 || len > max_len) {
        rpc_fail(r, name, "%s: %d entries (allowed 1 to %d)", name, len, max_len);
        return NULL;
    }
    int32_t *out = malloc(sizeof(int32_t) * (size_t)len);
    if (!out) {
        rpc_fail(r, name, "%s: out of memory", name);
        return NULL;
    }
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        double d = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        if (!(d == floor(d) && d >= (double)lo && d < (double)hi)) {
            rpc_fail(r, name, "%s[%d]: not an integer in [%lld, %lld)", name, i, (long long)lo, (long long)hi);
            free(out);
            return NULL;
        }
        out[i++] = (int32_t)d;
    }
    *n = len;
    return out;
}

bool rpc_valid_utf8(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        // continuation bytes after the lead: 1, 2 or 3; 0x80-0xc1 and 0xf5-0xff never lead
        int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
        if (n < 0 || c > 0xf4 || len - i <= (size_t)n) return false;
        unsigned cp = c & (0x3fu >> n);
        for (int k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += (size_t)n + 1;
    }
    return true;
}

// Length of the valid UTF-8 character at s[0..len) (1 to 4), or 0 when it is not one.
static size_t utf8_char(const unsigned char *s, size_t len) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || len < n) return 0;
    return rpc_valid_utf8((const char *)s, n) ? n : 0;
}

char *rpc_utf8_clean(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    char *out = malloc(len * 3 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = s[i] ? utf8_char(s + i, len - i) : 0;
        if (n) {
            memcpy(o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3); // U+FFFD for each byte that starts no character, and NUL
            o += 3;
            i++;
        }
    }
    *o = 0;
    return out;
}

// --- prompts -------------------------------------------------------------------------------

// Reads messages [{role, content}] into msgs (pointers into the JSON). Returns the count, or
// -1 with the reader failed.
int rpc_read_messages(rpc_reader *rd, cs_chat_message **msgs) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(rd->params, "messages");
    *msgs = NULL;
    if (!m || cJSON_IsNull(m)) return 0;
    int n = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : -1;
    if (n < 1 || n > MAX_MESSAGES) {
        rpc_fail(rd, "messages", "messages: expected an array of 1 to %d {role, content} objects", MAX_MESSAGES);
        return -1;
    }
    *msgs = calloc((size_t)n, sizeof **msgs);
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(item, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (!*msgs || !cJSON_IsString(role) || !cJSON_IsString(content)) {
            rpc_fail(rd, "messages", "messages[%d]: expected {\"role\": string, \"content\": string}", i);
            free(*msgs);
            *msgs = NULL;
            return -1;
        }
        (*msgs)[i++] = (cs_chat_message){role->valuestring, content->valuestring};
    }
    return n;
}

// --- generate ------------------------------------------------------------------------------

static const char *const generate_keys[] = {
    "prompt", "tokens", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p",
    "repetition_penalty", "presence_penalty", "frequency_penalty", "seed", "stop", "stop_token_ids",
    "ignore_eos", "n", "logprobs", "prompt_logprobs", "stream", "priority", "cache_salt", "json_schema",
    "json_object", "regex", "choices", NULL};

void rpc_gen_bufs_free(rpc_gen_bufs *b) {
    free(b->tokens);
    free(b->msgs);
    free(b->schema);
    free(b->choices);
    memset(b, 0, sizeof *b);
}

#define MAX_CHOICES 65536

// json_schema (an object or a boolean schema), json_object, regex, choices: at most one.
static void read_constraint(rpc_reader *rd, cs_request *q, rpc_gen_bufs *bufs) {
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(rd->params, "json_schema");
    if (schema && !cJSON_IsNull(schema)) {
        if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema)) {
            rpc_fail(rd, "json_schema", "json_schema: expected a JSON Schema object");
            return;
        }
        if (!(bufs->schema = cJSON_PrintUnformatted(schema))) {
            rpc_fail(rd, "json_schema", "json_schema: out of memory");
            return;
        }
        q->json_schema = bufs->schema;
    }
    q->json_object = rpc_bool(rd, "json_object", false);
    q->regex = rpc_str(rd, "regex");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(rd->params, "choices");
    if (ch && !cJSON_IsNull(ch)) {
        int n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : -1;
        if (n < 1 || n > MAX_CHOICES) {
            rpc_fail(rd, "choices", "choices: expected an array of 1 to %d strings", MAX_CHOICES);
            return;
        }
        if (!(bufs->choices = malloc(sizeof(char *) * (size_t)n))) {
            rpc_fail(rd, "choices", "choices: out of memory");
            return;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, ch) {
            if (!cJSON_IsString(item)) {
                rpc_fail(rd, "choices", "choices: entries must be strings");
                return;
            }
            bufs->choices[q->n_choices++] = item->valuestring;
        }
        q->choices = bufs->choices;
    }
    if (!rd->bad_param && (q->json_schema != NULL) + q->json_object + (q->regex != NULL) + (q->choices != NULL) > 1)
        rpc_fail(rd, "json_schema", "give at most one of json_schema, json_object, regex, choices");
}

const char *rpc_param_of(const char *msg, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap && ((msg[n] >= 'a' && msg[n] <= 'z') || msg[n] == '_')) buf[n] = msg[n], n++;
    buf[n] = 0;
    return n ? buf : NULL;
}

void rpc_read_stop(rpc_reader *rd, cs_request *q) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rd->params, "stop");
    if (!v || cJSON_IsNull(v)) return;
    if (cJSON_IsString(v)) {
        q->stop[q->n_stop++] = v->valuestring;
        return;
    }
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0 || n > CS_MAX_STOP) {
        rpc_fail(rd, "stop", "stop: expected a string or an array of at most %d strings", CS_MAX_STOP);
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsString(item) || !item->valuestring[0]) {
            rpc_fail(rd, "stop", "stop: entries must be non-empty strings");
            return;
        }
        q->stop[q->n_stop++] = item->valuestring;
    }
}

void rpc_read_generate(rpc_reader *rd, int vocab, int max_model_len, cs_request *q, rpc_gen_bufs *bufs) {
    cs_request_default(q);
    rpc_only_keys(rd, generate_keys);
    q->prompt = rpc_str(rd, "prompt");
    bufs->tokens = rpc_int_array(rd, "tokens", 0, vocab, max_model_len, &q->n_tokens);
    q->tokens = bufs->tokens;
    q->n_messages = rpc_read_messages(rd, &bufs->msgs);
    q->messages = bufs->msgs;
    if (!rd->bad_param && (q->prompt != NULL) + (q->tokens != NULL) + (q->messages != NULL) != 1)
        rpc_fail(rd, "prompt", "give exactly one of prompt, tokens, messages");
    q->max_tokens = (int)rpc_num(rd, "max_tokens", 16, 0, 1 << 24, true);
    q->temperature = (float)rpc_num(rd, "temperature", 1.0, 0, 1000, false);
    q->top_p = (float)rpc_num(rd, "top_p", 1.0, 0, 1, false);
    q->top_k = (int)rpc_num(rd, "top_k", 0, -1, 1 << 24, true);
    if (q->top_k < 0) q->top_k = 0; // -1 means off, as in vLLM
    q->min_p = (float)rpc_num(rd, "min_p", 0, 0, 1, false);
    q->repetition_penalty = (float)rpc_num(rd, "repetition_penalty", 1.0, 0, 100, false);
    q->presence_penalty = (float)rpc_num(rd, "presence_penalty", 0, -2, 2, false);
    q->frequency_penalty = (float)rpc_num(rd, "frequency_penalty", 0, -2, 2, false);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(rd->params, "seed");
    q->has_seed = seed && !cJSON_IsNull(seed);
    q->seed = (uint64_t)rpc_num(rd, "seed", 0, 0, SEED_LIMIT - 1, true);
    rpc_read_stop(rd, q);
    int n_ids = 0;
    int32_t *ids = rpc_int_array(rd, "stop_token_ids", 0, vocab, CS_MAX_STOP, &n_ids);
    if (ids) memcpy(q->stop_token_ids, ids, sizeof(int32_t) * (size_t)n_ids);
    q->n_stop_token_ids = n_ids;
    free(ids);
    q->ignore_eos = rpc_bool(rd, "ignore_eos", false);
    q->n = (int)rpc_num(rd, "n", 1, 1, 64, true);
    q->logprobs = (int)rpc_num(rd, "logprobs", 0, 0, CS_MAX_LOGPROBS, true);
    q->prompt_logprobs_from = (int)rpc_num(rd, "prompt_logprobs", -1, 0, 1 << 24, true);
    q->priority = (int)rpc_num(rd, "priority", 0, -1e9, 1e9, true);
    q->cache_salt = rpc_str(rd, "cache_salt");
    read_constraint(rd, q, bufs);
}

