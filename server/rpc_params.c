#include "rpc_params.h"

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
