// Strings with a pattern or a format for the schema compiler.
//
// A format is a regex written here (date, time, date-time, uuid, email, ipv4), compiled by
// engine/regex.c. A pattern is the user's regex, searched as JSON Schema says (".*" added on
// the sides it is not anchored). The string's characters must also avoid those a JSON string
// would have to escape (" \ and controls): generated strings hold no escapes, so a pattern
// counts characters as they stand. The intersection of a pattern with that, with a format and
// with minLength/maxLength is json_schema_explore.c's.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"
#include "regex.h"

// Calendar-exact: months' lengths, 29 February only in leap years; years 0001-9999 (as Python's
// date.fromisoformat and RFC 3339).
#define FMT_YEAR "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
#define FMT_MONTH_DAY                                                                             \
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|" \
    "02-(?:0[1-9]|1[0-9]|2[0-8]))"
#define FMT_LEAP "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
#define FMT_DATE "(?:" FMT_YEAR "-" FMT_MONTH_DAY "|" FMT_LEAP ")"
#define FMT_TIME                                                                                \
    "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
#define FMT_OCTET "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
#define FMT_HEX4 "[0-9a-fA-F]{4}"

static const struct {
    const char *name, *regex;
} FORMATS[] = {
    {"date", FMT_DATE},
    {"time", FMT_TIME},
    {"date-time", FMT_DATE "T" FMT_TIME},
    {"uuid", FMT_HEX4 FMT_HEX4 "-" FMT_HEX4 "-" FMT_HEX4 "-" FMT_HEX4 "-" FMT_HEX4 FMT_HEX4 FMT_HEX4},
    {"email", "[A-Za-z0-9_%+-]+(?:\\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z]{2,}"},
    {"ipv4", FMT_OCTET "(?:\\." FMT_OCTET "){3}"},
};

static const char *format_regex(const char *name) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof *FORMATS; i++)
        if (!strcmp(name, FORMATS[i].name)) return FORMATS[i].regex;
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Search semantics: each top-level alternative gets ".*" on the sides it does not anchor

// Offsets of the top-level '|' of p (outside groups and classes); their count, or -1 (too many).
static int top_bars(const char *p, size_t n, size_t *bars, int cap) {
    int k = 0, depth = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\\') {
            i++;
        } else if (in_class) {
            if (ch == ']') in_class = false;
        } else if (ch == '[') {
            in_class = true;
            if (i + 1 < n && p[i + 1] == '^') i++;
            if (i + 1 < n && p[i + 1] == ']') i++; // a leading ] is literal
        } else if (ch == '(') {
            depth++;
        } else if (ch == ')') {
            depth--;
        } else if (ch == '|' && depth == 0) {
            if (k == cap) return -1;
            bars[k++] = i;
        }
    }
    return k;
}

// A ".*(?:alt).*"-style full-match regex for the search of pattern p; NULL when out of memory.
static char *search_regex(const char *p, size_t n) {
    size_t bars[256];
    int nb = top_bars(p, n, bars, 256);
    if (nb < 0) nb = 0; // too many alternatives to split: taken as one (regex.c judges it)
    char *out = malloc(n + 16 * ((size_t)nb + 1) + 1);
    if (!out) return NULL;
    size_t k = 0, begin = 0;
    for (int a = 0; a <= nb; a++) {
        size_t end = a < nb ? bars[a] : n, b = begin;
        bool left = b < end && p[b] == '^';
        if (left) b++;
        size_t slashes = 0;
        while (end - slashes > b + 1 && p[end - 2 - slashes] == '\\') slashes++;
        bool right = end > b && p[end - 1] == '$' && slashes % 2 == 0;
        size_t e = right ? end - 1 : end;
        if (a) out[k++] = '|';
        if (!left) memcpy(out + k, ".*", 2), k += 2;
        if (e > b) {
            memcpy(out + k, "(?:", 3), k += 3;
            memcpy(out + k, p + b, e - b), k += e - b;
            out[k++] = ')';
        }
        if (!right) memcpy(out + k, ".*", 2), k += 2;
        begin = end + 1;
    }
    out[k] = 0;
    return out;
}

// A pattern (searched) and/or a format, with lengths: the explored intersection.
static int32_t regex_strings(js_ctx *c, const char *pattern, const char *fre, int64_t min, int64_t max) {
    char *search = pattern ? search_regex(pattern, strlen(pattern)) : NULL;
    if (pattern && !search) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    const char *res[2], *what[2];
    int n = 0;
    if (search) res[n] = search, what[n++] = "pattern";
    if (fre) res[n] = fre, what[n++] = "format";
    int32_t r = js_regex_strings(c, res, what, n, min, max);
    free(search);
    return r;
}

// A format alone: its regex compiled straight into the grammar, between quotes.
static int32_t format_string(js_ctx *c, const char *fre) {
    char err[CS_ERR_LEN];
    int32_t inner = cs_regex_compile(c->b, fre, strlen(fre), err, sizeof err);
    if (inner < 0) return js_fail(c, CS_ERR_INVALID, "format: %s", err);
    int32_t r = cs_gb_rule(c->b), open = cs_gb_state(c->b, r), close = cs_gb_state(c->b, r);
    int32_t end = cs_gb_state(c->b, r);
    cs_gb_bytes(c->b, cs_gb_start(c->b, r), '"', '"', open);
    cs_gb_call(c->b, open, inner, close);
    cs_gb_bytes(c->b, close, '"', '"', end);
    cs_gb_accept(c->b, end);
    return js_tick(c, 1) ? r : -1;
}

int32_t js_pattern_string(js_ctx *c, const char *pattern, const char *format, int64_t min_len, int64_t max_len) {
    const char *fre = NULL;
    if (format && !(fre = format_regex(format)))
        return js_fail(c, CS_ERR_UNSUPPORTED, "unsupported format \"%.64s\"", format);
    if (min_len > JS_MAX_REPEAT || max_len > JS_MAX_REPEAT) {
        bool mx = max_len > JS_MAX_REPEAT;
        return js_fail(c, CS_ERR_INVALID, "%s %lld is past the limit %d", mx ? "maxLength" : "minLength",
                       (long long)(mx ? max_len : min_len), JS_MAX_REPEAT);
    }
    size_t plen = pattern ? strlen(pattern) : 0;
    char *key = malloc(plen + 96);
    if (!key) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    int n = snprintf(key, plen + 96, "P%lld:%lld:%s:", (long long)min_len, (long long)max_len, format ? format : "");
    memcpy(key + n, pattern ? pattern : "", plen);
    size_t klen = (size_t)n + plen;
    int32_t r;
    if (!js_map_get(&c->memo, key, klen, &r)) {
        bool plain = !pattern && min_len == 0 && max_len < 0;
        r = plain ? format_string(c, fre) : regex_strings(c, pattern, fre, min_len, max_len);
        if (r != -1 && !js_map_put(&c->memo, key, klen, r)) r = js_fail(c, CS_ERR_NOMEM, "out of memory");
    }
    free(key);
    return r;
}
