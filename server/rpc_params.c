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

// d as text that reads back as d: integers in full ("9007199254740992", never "9.0072e+15"),
// other values in the fewest significant digits that round-trip, so that a message never
// shows a value rounded onto the bound it is said to break.
static void num_text(char *buf, size_t cap, double d) {
    if (d == floor(d) && fabs(d) < 1e17) {
        snprintf(buf, cap, "%.0f", d);
        return;
    }
    for (int digits = 1; digits <= 17; digits++) { // 17 digits are exact for every double
        snprintf(buf, cap, "%.*g", digits, d);
        if (strtod(buf, NULL) == d) return;
    }
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
        char dt[32], lt[32], ht[32];
        num_text(dt, sizeof dt, d);
        num_text(lt, sizeof lt, lo);
        num_text(ht, sizeof ht, hi);
        rpc_fail(r, name, "%s: %s is not %s in [%s, %s]", name, dt, integer ? "an integer" : "a number", lt, ht);
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

void rpc_escape(const char *s, size_t max, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; s[i] && i < max && o + 5 <= cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    if (cap > 0) out[o] = 0;
}

// --- strict JSON -----------------------------------------------------------------------------

// The RFC 8259 rules cJSON does not enforce, on the raw text: a control byte (< 0x20) inside a
// string must be escaped, and outside one only space, tab, LF and CR may appear (cJSON skips
// every byte <= 0x20 as whitespace, NUL included). Returns the offset of the first byte that
// breaks them, or len. *nul_member: the index of the first member of the top-level object
// whose key or value holds the escape \u0000, or -1. Not a parser: cJSON still checks the
// grammar; on text it accepts, commas at depth 1 separate exactly the top-level members.
static size_t json_precheck(const char *text, size_t len, int *nul_member) {
    const unsigned char *s = (const unsigned char *)text;
    int depth = 0, member = 0;
    bool in_string = false;
    *nul_member = -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (c < 0x20) return i;
            if (c == '"') {
                in_string = false;
            } else if (c == '\\' && i + 1 < len) {
                i++; // the escaped byte cannot end the string
                if (s[i] == 'u' && len - i > 4 && !memcmp(s + i + 1, "0000", 4) && *nul_member < 0 && depth >= 1)
                    *nul_member = member;
                if (s[i] < 0x20) return i;
            }
            continue;
        }
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') depth--;
        else if (c == ',' && depth == 1) member++;
    }
    return len;
}

static int key_cmp(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

// Sorted, so that an object of many keys costs O(n log n).
bool rpc_unique_keys(rpc_reader *r, const cJSON *obj, const char *param, const char *what) {
    int n = cJSON_GetArraySize(obj);
    if (n < 2) return true;
    const char **keys = malloc(sizeof(char *) * (size_t)n);
    if (!keys) {
        rpc_fail(r, param ? param : "?", "%s: out of memory", what);
        return false;
    }
    int k = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, obj) keys[k++] = item->string ? item->string : "";
    qsort(keys, (size_t)n, sizeof *keys, key_cmp);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i])) dup = keys[i];
    free(keys);
    if (dup) rpc_fail(r, param ? param : dup, "%s: the key '%.64s' appears twice", what, dup);
    return !dup;
}

cJSON *rpc_parse_json(const char *text, size_t len, const char *what, int *nul_member, char *msg, size_t cap) {
    if (!rpc_valid_utf8(text, len)) {
        snprintf(msg, cap, "%s is not valid UTF-8", what);
        return NULL;
    }
    size_t bad = json_precheck(text, len, nul_member);
    if (bad < len) {
        snprintf(msg, cap, "%s is not valid JSON: control byte 0x%02x at offset %zu (inside strings it must be escaped; "
                 "between tokens only space, tab, CR and LF may appear)", what, (unsigned char)text[bad], bad);
        return NULL;
    }
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!json) {
        snprintf(msg, cap, "%s is not valid JSON (or is nested too deep)", what);
        return NULL;
    }
    size_t used = (size_t)(end - text);
    while (used < len && (text[used] == ' ' || text[used] == '\t' || text[used] == '\n' || text[used] == '\r')) used++;
    if (used < len) {
        snprintf(msg, cap, "%s is not valid JSON: more data after the value, at offset %zu", what, used);
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

cJSON *rpc_parse_object(rpc_reader *r, const char *body, size_t len) {
    memset(r, 0, sizeof *r);
    int nul_member;
    cJSON *json = rpc_parse_json(body, len, "the body", &nul_member, r->msg, sizeof r->msg);
    if (json && !cJSON_IsObject(json)) {
        snprintf(r->msg, sizeof r->msg, "the body is not a JSON object");
        cJSON_Delete(json);
        json = NULL;
    }
    if (!json) return NULL;
    r->params = json;
    const cJSON *holder = nul_member >= 0 ? cJSON_GetArrayItem(json, nul_member) : NULL;
    if (nul_member >= 0) // a C string ends at the NUL: the text would arrive cut short
        rpc_fail(r, holder ? holder->string : "?", "%.64s: a string holds \\u0000 (NUL), which cannot be passed on",
                 holder ? holder->string : "?");
    rpc_unique_keys(r, json, NULL, "the request");
    return json;
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
        char what[32];
        snprintf(what, sizeof what, "messages[%d]", i);
        if (*msgs && cJSON_IsObject(item) && !rpc_unique_keys(rd, item, "messages", what)) {
            free(*msgs);
            *msgs = NULL;
            return -1;
        }
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

