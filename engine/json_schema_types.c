// Strings and "any value" for the schema compiler: the JSON string character automaton, the
// shared rules (any string, any value, any object), strings with minLength/maxLength, UTF-8
// code point ranges as byte paths, and the escaping of literal strings.
#include <stdio.h>
#include <string.h>

#include "json_schema_internal.h"

// ---------------------------------------------------------------------------------------------
// UTF-8

static int utf8_len(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

static void utf8_encode(uint32_t cp, uint8_t *out) {
    int n = utf8_len(cp);
    if (n == 1) {
        out[0] = (uint8_t)cp;
        return;
    }
    for (int i = n - 1; i > 0; i--, cp >>= 6) out[i] = (uint8_t)(0x80 | (cp & 0x3f));
    out[0] = (uint8_t)((n == 2 ? 0xc0 : n == 3 ? 0xe0 : 0xf0) | cp);
}

// Splits [lo, hi] until every byte position of its encodings is one contiguous byte range
// (same length, and a continuation position varies only when all later ones span 80..BF).
void js_utf8_range(js_ctx *c, int32_t rule, int32_t from, uint32_t lo, uint32_t hi, int32_t to) {
    if (lo > hi || c->st != CS_OK) return;
    if (lo <= 0xdfff && hi >= 0xd800) { // surrogates are not characters
        if (lo < 0xd800) js_utf8_range(c, rule, from, lo, 0xd7ff, to);
        if (hi > 0xdfff) js_utf8_range(c, rule, from, 0xe000, hi, to);
        return;
    }
    static const uint32_t LEN_END[] = {0x7f, 0x7ff, 0xffff};
    for (int i = 0; i < 3; i++)
        if (lo <= LEN_END[i] && hi > LEN_END[i]) {
            js_utf8_range(c, rule, from, lo, LEN_END[i], to);
            js_utf8_range(c, rule, from, LEN_END[i] + 1, hi, to);
            return;
        }
    int n = utf8_len(lo);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m)) continue;
        if (lo & m) {
            js_utf8_range(c, rule, from, lo, lo | m, to);
            js_utf8_range(c, rule, from, (lo | m) + 1, hi, to);
            return;
        }
        if ((hi & m) != m) {
            js_utf8_range(c, rule, from, lo, (hi & ~m) - 1, to);
            js_utf8_range(c, rule, from, hi & ~m, hi, to);
            return;
        }
    }
    uint8_t a[4], b[4];
    utf8_encode(lo, a);
    utf8_encode(hi, b);
    int32_t s = from;
    for (int k = 0; k < n - 1; k++) {
        int32_t t = cs_gb_state(c->b, rule);
        cs_gb_bytes(c->b, s, a[k], b[k], t);
        s = t;
    }
    cs_gb_bytes(c->b, s, a[n - 1], b[n - 1], to);
}

// ---------------------------------------------------------------------------------------------
// One JSON string character, from -> to: an unescaped character (not " \ or a control
// character) or an escape; \u escapes of surrogates only as a high-low pair.

static void hex_digit(js_ctx *c, int32_t from, int32_t to) {
    cs_gb_bytes(c->b, from, '0', '9', to);
    cs_gb_bytes(c->b, from, 'a', 'f', to);
    cs_gb_bytes(c->b, from, 'A', 'F', to);
}

static int32_t hex_run(js_ctx *c, int32_t rule, int32_t from, int n) { // n hex digits; the state after
    for (int i = 0; i < n; i++) {
        int32_t t = cs_gb_state(c->b, rule);
        hex_digit(c, from, t);
        from = t;
    }
    return from;
}

// After "\u": four hex digits that are not a surrogate, or a high surrogate, "\u", a low one.
static void unicode_escape(js_ctx *c, int32_t rule, int32_t u, int32_t to) {
    int32_t d1 = cs_gb_state(c->b, rule); // first digit not d/D: any three more
    cs_gb_bytes(c->b, u, '0', '9', d1);
    cs_gb_bytes(c->b, u, 'a', 'c', d1);
    cs_gb_bytes(c->b, u, 'A', 'C', d1);
    cs_gb_bytes(c->b, u, 'e', 'f', d1);
    cs_gb_bytes(c->b, u, 'E', 'F', d1);
    hex_digit(c, hex_run(c, rule, d1, 2), to);
    int32_t dd = cs_gb_state(c->b, rule), d2 = cs_gb_state(c->b, rule), hi = cs_gb_state(c->b, rule);
    cs_gb_bytes(c->b, u, 'd', 'd', dd);
    cs_gb_bytes(c->b, u, 'D', 'D', dd);
    cs_gb_bytes(c->b, dd, '0', '7', d2); // D000..D7FF: ordinary characters
    hex_digit(c, hex_run(c, rule, d2, 1), to);
    cs_gb_bytes(c->b, dd, '8', '9', hi); // D800..DBFF: a high surrogate, then \uDC00..\uDFFF
    cs_gb_bytes(c->b, dd, 'a', 'b', hi);
    cs_gb_bytes(c->b, dd, 'A', 'B', hi);
    int32_t s = cs_gb_literal(c->b, hex_run(c, rule, hi, 2), "\\u", 2);
    int32_t lo = cs_gb_state(c->b, rule), lo2 = cs_gb_state(c->b, rule);
    cs_gb_bytes(c->b, s, 'd', 'd', lo);
    cs_gb_bytes(c->b, s, 'D', 'D', lo);
    cs_gb_bytes(c->b, lo, 'c', 'f', lo2);
    cs_gb_bytes(c->b, lo, 'C', 'F', lo2);
    hex_digit(c, hex_run(c, rule, lo2, 1), to);
}

static void string_char(js_ctx *c, int32_t rule, int32_t from, int32_t to) {
    cs_gb_bytes(c->b, from, 0x20, 0x21, to);
    cs_gb_bytes(c->b, from, 0x23, 0x5b, to);
    cs_gb_bytes(c->b, from, 0x5d, 0x7f, to);
    js_utf8_range(c, rule, from, 0x80, 0x10ffff, to);
    int32_t esc = cs_gb_state(c->b, rule), u = cs_gb_state(c->b, rule);
    cs_gb_bytes(c->b, from, '\\', '\\', esc);
    static const char SIMPLE[] = "\"\\/bfnrt";
    for (const char *p = SIMPLE; *p; p++) cs_gb_bytes(c->b, esc, (uint8_t)*p, (uint8_t)*p, to);
    cs_gb_bytes(c->b, esc, 'u', 'u', u);
    unicode_escape(c, rule, u, to);
}

// ---------------------------------------------------------------------------------------------
// Shared rules

int32_t js_string_rule(js_ctx *c) {
    if (c->r_string >= 0) return c->r_string;
    int32_t r = c->r_string = cs_gb_rule(c->b);
    int32_t body = cs_gb_state(c->b, r), end = cs_gb_state(c->b, r);
    cs_gb_bytes(c->b, cs_gb_start(c->b, r), '"', '"', body);
    string_char(c, r, body, body);
    cs_gb_bytes(c->b, body, '"', '"', end);
    cs_gb_accept(c->b, end);
    return js_tick(c, 1) ? r : -1;
}

int32_t js_char_rule(js_ctx *c) {
    if (c->r_char >= 0) return c->r_char;
    int32_t r = c->r_char = cs_gb_rule(c->b), end = cs_gb_state(c->b, r);
    string_char(c, r, cs_gb_start(c->b, r), end);
    cs_gb_accept(c->b, end);
    return js_tick(c, 1) ? r : -1;
}

// '{' ( '}' | string ':' value (',' string ':' value)* '}' ), values any JSON value.
static void any_object_body(js_ctx *c, int32_t r) {
    int32_t open = cs_gb_state(c->b, r), key = cs_gb_state(c->b, r), colon = cs_gb_state(c->b, r);
    int32_t value = cs_gb_state(c->b, r), after = cs_gb_state(c->b, r), end = cs_gb_state(c->b, r);
    cs_gb_bytes(c->b, cs_gb_start(c->b, r), '{', '{', open);
    cs_gb_bytes(c->b, open, '}', '}', end);
    cs_gb_eps(c->b, open, key);
    cs_gb_call(c->b, key, c->r_string, colon);
    cs_gb_bytes(c->b, colon, ':', ':', value);
    cs_gb_call(c->b, value, c->r_value, after);
    cs_gb_bytes(c->b, after, ',', ',', key);
    cs_gb_bytes(c->b, after, '}', '}', end);
    cs_gb_accept(c->b, end);
}

static void any_array_body(js_ctx *c, int32_t r) {
    int32_t open = cs_gb_state(c->b, r), item = cs_gb_state(c->b, r), after = cs_gb_state(c->b, r);
    int32_t end = cs_gb_state(c->b, r);
    cs_gb_bytes(c->b, cs_gb_start(c->b, r), '[', '[', open);
    cs_gb_bytes(c->b, open, ']', ']', end);
    cs_gb_eps(c->b, open, item);
    cs_gb_call(c->b, item, c->r_value, after);
    cs_gb_bytes(c->b, after, ',', ',', item);
    cs_gb_bytes(c->b, after, ']', ']', end);
    cs_gb_accept(c->b, end);
}

// Any value: tail calls to the object, array, string and number rules, literals inline.
// The three recursive rules get their ids first, since each calls the others.
static bool build_any(js_ctx *c) {
    if (c->r_value >= 0) return true;
    if (js_string_rule(c) < 0 || js_number_rule(c) < 0) return false;
    int32_t v = c->r_value = cs_gb_rule(c->b);
    c->r_any_obj = cs_gb_rule(c->b);
    c->r_any_arr = cs_gb_rule(c->b);
    any_object_body(c, c->r_any_obj);
    any_array_body(c, c->r_any_arr);
    int32_t start = cs_gb_start(c->b, v), end = cs_gb_state(c->b, v);
    cs_gb_accept(c->b, end);
    const int32_t calls[] = {c->r_any_obj, c->r_any_arr, c->r_string, c->r_number};
    for (int i = 0; i < 4; i++) cs_gb_call(c->b, start, calls[i], end);
    cs_gb_accept(c->b, cs_gb_literal(c->b, start, "true", 4));
    cs_gb_accept(c->b, cs_gb_literal(c->b, start, "false", 5));
    cs_gb_accept(c->b, cs_gb_literal(c->b, start, "null", 4));
    return js_tick(c, 1);
}

int32_t js_any_object_rule(js_ctx *c) { return build_any(c) ? c->r_any_obj : -1; }

int32_t js_any_rule(js_ctx *c, unsigned mask) {
    if (!build_any(c)) return -1;
    if ((mask & JS_T_ALL) == JS_T_ALL) return c->r_value;
    char key[8];
    int n = snprintf(key, sizeof key, "V%u", mask);
    int32_t r;
    if (js_map_get(&c->memo, key, (size_t)n, &r)) return r;
    int32_t alts[6], k = 0;
    if (mask & JS_T_OBJECT) alts[k++] = c->r_any_obj;
    if (mask & JS_T_ARRAY) alts[k++] = c->r_any_arr;
    if (mask & JS_T_STRING) alts[k++] = c->r_string;
    if (mask & (JS_T_NUMBER | JS_T_INTEGER)) alts[k++] = mask & JS_T_NUMBER ? c->r_number : js_integer_rule(c);
    r = js_union(c, alts, k);
    if (mask & (JS_T_BOOL | JS_T_NULL)) {
        if (r == JS_EMPTY) {
            r = cs_gb_rule(c->b);
        }
        int32_t start = cs_gb_start(c->b, r);
        if (mask & JS_T_BOOL) {
            cs_gb_accept(c->b, cs_gb_literal(c->b, start, "true", 4));
            cs_gb_accept(c->b, cs_gb_literal(c->b, start, "false", 5));
        }
        if (mask & JS_T_NULL) cs_gb_accept(c->b, cs_gb_literal(c->b, start, "null", 4));
    }
    if (c->st != CS_OK) return -1;
    if (!js_map_put(&c->memo, key, (size_t)n, r)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    return r;
}

// ---------------------------------------------------------------------------------------------
// Strings with minLength / maxLength (characters counted by a chain of states, each calling
// the one-character rule; the last loops when there is no maximum)

static int32_t length_rule(js_ctx *c, int64_t min, int64_t max) {
    char key[48];
    int n = snprintf(key, sizeof key, "L%lld:%lld", (long long)min, (long long)max);
    int32_t r, ch = js_char_rule(c);
    if (ch < 0) return -1;
    if (js_map_get(&c->memo, key, (size_t)n, &r)) return r;
    r = cs_gb_rule(c->b);
    int32_t end = cs_gb_state(c->b, r), s = cs_gb_state(c->b, r);
    cs_gb_accept(c->b, end);
    cs_gb_bytes(c->b, cs_gb_start(c->b, r), '"', '"', s);
    int64_t last = max >= 0 ? max : min;
    for (int64_t i = 0; i <= last && c->st == CS_OK; i++) {
        if (i >= min) cs_gb_bytes(c->b, s, '"', '"', end);
        int32_t next = i < last ? cs_gb_state(c->b, r) : max < 0 ? s : -1;
        cs_gb_call(c->b, s, ch, next);
        s = next;
        if ((i & 255) == 0 && !js_tick(c, 1)) return -1;
    }
    if (!js_tick(c, 1)) return -1;
    if (!js_map_put(&c->memo, key, (size_t)n, r)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    return r;
}

static int64_t count_kw(const cJSON *node, const char *kw, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, kw);
    return v ? (int64_t)v->valuedouble : dflt;
}

int32_t js_string_schema(js_ctx *c, const cJSON *node) {
    int64_t min = count_kw(node, "minLength", 0), max = count_kw(node, "maxLength", -1);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(node, "pattern");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(node, "format");
    if (max >= 0 && min > max) return JS_EMPTY;
    if (pat || fmt)
        return js_pattern_string(c, pat ? pat->valuestring : NULL, fmt ? fmt->valuestring : NULL, min, max);
    if (min > JS_MAX_REPEAT || max > JS_MAX_REPEAT) {
        bool mx = max > JS_MAX_REPEAT;
        return js_fail(c, CS_ERR_INVALID, "%s %lld is past the limit %d", mx ? "maxLength" : "minLength",
                       (long long)(mx ? max : min), JS_MAX_REPEAT);
    }
    if (min == 0 && max < 0) return js_string_rule(c);
    return length_rule(c, min, max);
}

// ---------------------------------------------------------------------------------------------
// Escaping, as cJSON_PrintUnformatted does it (so keys compare equal to what it prints)

size_t js_escape(const char *s, size_t n, char *out) {
    size_t k = 0;
    out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *e = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\b' ? "\\b" : ch == '\f' ? "\\f"
                      : ch == '\n' ? "\\n" : ch == '\r' ? "\\r" : ch == '\t' ? "\\t" : NULL;
        if (e) {
            memcpy(out + k, e, 2);
            k += 2;
        } else if (ch < 0x20) {
            k += (size_t)sprintf(out + k, "\\u%04x", ch);
        } else {
            out[k++] = (char)ch;
        }
    }
    out[k++] = '"';
    return k;
}
