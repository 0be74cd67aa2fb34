// Numbers for the schema compiler: the JSON number and integer rules, and ranges
// (minimum/maximum/exclusive*) enforced exactly by automata over decimal digits.
//
// A bound is a decimal "I.F" (I without leading zeros, F without trailing zeros). Integers in
// [lo, hi] are digit strings compared the usual way: per length, a common prefix, then one
// digit strictly between and free digits after it, or tight on one side. Bounded numbers are
// generated without an exponent: an integer part, then a fraction compared digit by digit
// with the bound's. A double bound is read as Python reads it (its shortest round-trip
// decimal), so the comparison agrees with a validator that parses numbers as Python does.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"

typedef struct js_dec {
    bool neg;
    char ip[JS_MAX_DIGITS + 2]; // integer part, "0" for zero
    char fp[JS_MAX_FRAC + 2];   // fraction, "" for none
} js_dec;

// ---------------------------------------------------------------------------------------------
// The unbounded rules

// -?(0|[1-9][0-9]*) from -> accepting states; returns the two states after the integer part.
static void integer_part(js_ctx *c, int32_t r, int32_t from, int32_t *zero, int32_t *digits) {
    int32_t minus = cs_gb_state(c->b, r);
    *zero = cs_gb_state(c->b, r);
    *digits = cs_gb_state(c->b, r);
    cs_gb_bytes(c->b, from, '-', '-', minus);
    cs_gb_bytes(c->b, from, '0', '0', *zero);
    cs_gb_bytes(c->b, minus, '0', '0', *zero);
    cs_gb_bytes(c->b, from, '1', '9', *digits);
    cs_gb_bytes(c->b, minus, '1', '9', *digits);
    cs_gb_bytes(c->b, *digits, '0', '9', *digits);
    cs_gb_accept(c->b, *zero);
    cs_gb_accept(c->b, *digits);
}

int32_t js_integer_rule(js_ctx *c) {
    if (c->r_integer >= 0) return c->r_integer;
    int32_t r = c->r_integer = cs_gb_rule(c->b), z, d;
    integer_part(c, r, cs_gb_start(c->b, r), &z, &d);
    return js_tick(c, 1) ? r : -1;
}

int32_t js_number_rule(js_ctx *c) {
    if (c->r_number >= 0) return c->r_number;
    int32_t r = c->r_number = cs_gb_rule(c->b), z, d;
    integer_part(c, r, cs_gb_start(c->b, r), &z, &d);
    int32_t f0 = cs_gb_state(c->b, r), f = cs_gb_state(c->b, r), e0 = cs_gb_state(c->b, r);
    int32_t e1 = cs_gb_state(c->b, r), e = cs_gb_state(c->b, r);
    const int32_t ends[] = {z, d};
    for (int i = 0; i < 2; i++) {
        cs_gb_bytes(c->b, ends[i], '.', '.', f0);
        cs_gb_bytes(c->b, ends[i], 'e', 'e', e0);
        cs_gb_bytes(c->b, ends[i], 'E', 'E', e0);
    }
    cs_gb_bytes(c->b, f0, '0', '9', f);
    cs_gb_bytes(c->b, f, '0', '9', f);
    cs_gb_bytes(c->b, f, 'e', 'e', e0);
    cs_gb_bytes(c->b, f, 'E', 'E', e0);
    cs_gb_bytes(c->b, e0, '+', '+', e1);
    cs_gb_bytes(c->b, e0, '-', '-', e1);
    cs_gb_bytes(c->b, e0, '0', '9', e);
    cs_gb_bytes(c->b, e1, '0', '9', e);
    cs_gb_bytes(c->b, e, '0', '9', e);
    cs_gb_accept(c->b, f);
    cs_gb_accept(c->b, e);
    return js_tick(c, 1) ? r : -1;
}

// ---------------------------------------------------------------------------------------------
// Integer digit strings in [lo, hi]

static int32_t digit_chain(js_ctx *c, int32_t r, int32_t from, size_t n) { // n free digits
    for (size_t i = 0; i < n; i++) {
        int32_t t = cs_gb_state(c->b, r);
        cs_gb_bytes(c->b, from, '0', '9', t);
        from = t;
    }
    return from;
}

// Digit strings of length n (leading zeros allowed here: a prefix came before) in [a, b].
static void same_len(js_ctx *c, int32_t r, int32_t s, const char *a, const char *b, size_t n, int32_t to) {
    size_t i = 0;
    for (; i < n && a[i] == b[i]; i++) s = cs_gb_literal(c->b, s, a + i, 1);
    if (i == n) {
        cs_gb_eps(c->b, s, to);
        return;
    }
    size_t rest = n - i - 1;
    char lo_mid = a[i], hi_mid = b[i];
    if (strspn(a + i + 1, "0") < rest) { // a's tail is not all zeros: its first digit is tight
        char nines[JS_MAX_DIGITS + 2];
        memset(nines, '9', rest);
        nines[rest] = 0;
        same_len(c, r, cs_gb_literal(c->b, s, a + i, 1), a + i + 1, nines, rest, to);
        lo_mid++;
    }
    if (strspn(b + i + 1, "9") < rest) {
        char zeros[JS_MAX_DIGITS + 2];
        memset(zeros, '0', rest);
        zeros[rest] = 0;
        same_len(c, r, cs_gb_literal(c->b, s, b + i, 1), zeros, b + i + 1, rest, to);
        hi_mid--;
    }
    if (lo_mid <= hi_mid) {
        int32_t t = cs_gb_state(c->b, r);
        cs_gb_bytes(c->b, s, (uint8_t)lo_mid, (uint8_t)hi_mid, t);
        cs_gb_eps(c->b, digit_chain(c, r, t, rest), to);
    }
}

// Canonical digit strings x with lo <= x <= hi (hi NULL: no upper bound).
static void int_range(js_ctx *c, int32_t r, int32_t from, const char *lo, const char *hi, int32_t to) {
    size_t nlo = strlen(lo), nhi = hi ? strlen(hi) : JS_MAX_DIGITS + 1;
    char a[JS_MAX_DIGITS + 2], b[JS_MAX_DIGITS + 2];
    for (size_t d = nlo; d <= nhi && d <= JS_MAX_DIGITS; d++) {
        if (d == nlo)
            memcpy(a, lo, d + 1);
        else
            memset(a, '0', d), a[0] = '1', a[d] = 0;
        if (hi && d == nhi)
            memcpy(b, hi, d + 1);
        else
            memset(b, '9', d), b[d] = 0;
        same_len(c, r, from, a, b, d, to);
    }
    if (!hi) { // longer than any bound: [1-9] then at least JS_MAX_DIGITS digits
        int32_t t = cs_gb_state(c->b, r);
        cs_gb_bytes(c->b, from, '1', '9', t);
        int32_t u = digit_chain(c, r, t, JS_MAX_DIGITS);
        cs_gb_bytes(c->b, u, '0', '9', u);
        cs_gb_eps(c->b, u, to);
    }
}

static int cmp_digits(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na != nb) return na < nb ? -1 : 1;
    int r = strcmp(a, b);
    return r < 0 ? -1 : r > 0;
}

// In place, x +/- 1 on a canonical digit string (x - 1 needs x > 0); false past the room.
static bool digits_add(char *x, int delta) {
    size_t n = strlen(x);
    size_t i = n;
    while (i-- > 0) {
        if (delta > 0 ? x[i] != '9' : x[i] != '0') {
            x[i] = (char)(x[i] + delta);
            break;
        }
        x[i] = delta > 0 ? '0' : '9';
    }
    if (i == (size_t)-1) { // carried out of the top: 99..9 + 1
        if (n + 1 > JS_MAX_DIGITS + 1) return false;
        memmove(x + 1, x, n + 1);
        x[0] = '1';
    }
    if (x[0] == '0' && x[1]) memmove(x, x + 1, strlen(x)); // 10..0 - 1
    return true;
}

// ---------------------------------------------------------------------------------------------
// Fractions: after an integer part, "" or '.' digits+, with fa <= fraction <= fb compared as
// digit strings padded with zeros (fa/fb NULL: no bound on that side).

typedef struct frac_ctx {
    js_ctx *c;
    int32_t r, to, free_digits, zeros; // free: >= 1 digit, anything; zeros: tight on fb, past it
    const char *fa, *fb;
    size_t na, nb, L;
    int32_t *st; // (L + 2) x 4: state at position i with flags (tight lo) | (tight hi) << 1
} frac_ctx;

static int32_t frac_state(frac_ctx *f, size_t i, bool lt, bool ht) {
    lt = lt && i < f->na; // past fa's digits the value is already >= fa
    if (!lt && !ht) return f->free_digits;
    if (!lt && i >= f->nb) return f->zeros;
    int32_t *s = &f->st[i * 4 + lt + 2 * ht];
    if (*s < 0) *s = cs_gb_state(f->c->b, f->r);
    return *s;
}

static void frac_step(frac_ctx *f, size_t i, bool lt, bool ht, int32_t s) {
    js_ctx *c = f->c;
    if (i >= 1 && !lt) cs_gb_eps(c->b, s, f->to);
    char lo = lt ? f->fa[i] : '0', hi = ht ? (i < f->nb ? f->fb[i] : '0') : '9';
    for (char d = lo; d <= hi; d++) { // at most three targets: tight lo, between, tight hi
        bool nlt = lt && d == f->fa[i], nht = ht && (i < f->nb ? d == f->fb[i] : true);
        char e = d;
        while (e < hi && !(lt && e + 1 == f->fa[i]) && !(ht && i < f->nb && e + 1 == f->fb[i]) && !nlt && !nht) e++;
        cs_gb_bytes(c->b, s, (uint8_t)d, (uint8_t)e, frac_state(f, i + 1, nlt, nht));
        d = e;
    }
}

static void frac_range(js_ctx *c, int32_t r, int32_t s, const char *fa, const char *fb, int32_t to) {
    frac_ctx f = {c, r, to, cs_gb_state(c->b, r), cs_gb_state(c->b, r), fa, fb, 0, 0, 0, NULL};
    f.na = fa ? strlen(fa) : 0;
    f.nb = fb ? strlen(fb) : 0;
    f.L = f.na > f.nb ? f.na : f.nb;
    cs_gb_bytes(c->b, f.free_digits, '0', '9', f.free_digits);
    cs_gb_eps(c->b, f.free_digits, to);
    cs_gb_bytes(c->b, f.zeros, '0', '0', f.zeros);
    cs_gb_eps(c->b, f.zeros, to);
    if (!f.na) cs_gb_eps(c->b, s, to); // no fraction at all: zero, which is >= fa only if fa is 0
    if (!(f.st = malloc(sizeof(int32_t) * (f.L + 2) * 4))) {
        js_fail(c, CS_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < (f.L + 2) * 4; i++) f.st[i] = -1;
    // '.' then position 0; a zero fraction bound on the high side still needs a digit
    int32_t dot = cs_gb_state(c->b, r);
    cs_gb_bytes(c->b, s, '.', '.', dot);
    bool lt0 = f.na > 0, ht0 = fb != NULL;
    f.st[0 * 4 + lt0 + 2 * ht0] = dot;
    for (size_t i = 0; i <= f.L; i++)
        for (int k = 0; k < 4; k++)
            if (f.st[i * 4 + k] >= 0) frac_step(&f, i, k & 1, k & 2, f.st[i * 4 + k]);
    free(f.st);
}

// ---------------------------------------------------------------------------------------------
// Bounds

// x as Python prints it (the shortest decimal that reads back as x), split at the point.
// Needs |x| < 1e40.
static void dec_from_double(double x, js_dec *d) {
    memset(d, 0, sizeof *d);
    d->neg = x < 0;
    x = fabs(x);
    if (x == 0) {
        d->neg = false;
        strcpy(d->ip, "0");
        return;
    }
    char buf[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    char digits[24];
    size_t k = 0;
    const char *p = buf;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[k++] = *p;
    int e = atoi(p + 1);
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = 0;
    if (e >= 0) {
        size_t ni = (size_t)e + 1;
        for (size_t i = 0; i < ni; i++) d->ip[i] = i < k ? digits[i] : '0';
        if (k > ni) strcpy(d->fp, digits + ni);
    } else {
        strcpy(d->ip, "0");
        memset(d->fp, '0', (size_t)(-e - 1));
        strcpy(d->fp + (-e - 1), digits);
    }
}

// The effective bound on one side: the tighter of the inclusive and exclusive keywords,
// moved to an inclusive value (integers: the next integer; numbers: the next double), then
// capped below 1e40 in magnitude. Returns false with *has = false when there is none.
static bool side_bound(js_ctx *c, const cJSON *node, bool upper, bool integer, double *out, bool *has) {
    const double dir = upper ? -INFINITY : INFINITY, big = 1e40;
    const char *kws[2] = {upper ? "maximum" : "minimum", upper ? "exclusiveMaximum" : "exclusiveMinimum"};
    *has = false;
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, kws[k]);
        if (!v) continue;
        double x = v->valuedouble;
        if (!isfinite(x)) return js_fail(c, CS_ERR_INVALID, "%s is out of range", kws[k]), false;
        bool excl = k == 1;
        if (fabs(x) >= 9007199254740992.0 && x == floor(x)) { // the schema's integer may have been rounded
            x = nextafter(x, dir);
            excl = false;
        }
        if (integer)
            x = excl ? (upper ? ceil(x) - 1 : floor(x) + 1) : (upper ? floor(x) : ceil(x));
        else if (excl)
            x = nextafter(x, dir);
        if (!*has || (upper ? x < *out : x > *out)) *out = x;
        *has = true;
    }
    if (*has && (upper ? *out <= -big : *out >= big))
        return js_fail(c, CS_ERR_UNSUPPORTED, "%s of 1e40 or more in magnitude", upper ? "maximum" : "minimum"), false;
    if (*has && fabs(*out) >= big) *out = upper ? 9.999999999999999e39 : -9.999999999999999e39;
    return true;
}

// Magnitudes in [a, b] (b NULL: unbounded), as integers or as decimals without exponent.
static void mag_range(js_ctx *c, int32_t r, int32_t from, const js_dec *a, const js_dec *b, bool integer,
                      int32_t to) {
    if (integer) {
        int_range(c, r, from, a->ip, b ? b->ip : NULL, to);
        return;
    }
    if (b && !cmp_digits(a->ip, b->ip)) {
        frac_range(c, r, cs_gb_literal(c->b, from, a->ip, strlen(a->ip)), a->fp, b->fp, to);
        return;
    }
    frac_range(c, r, cs_gb_literal(c->b, from, a->ip, strlen(a->ip)), a->fp, NULL, to);
    char lo[JS_MAX_DIGITS + 2], hi[JS_MAX_DIGITS + 2];
    strcpy(lo, a->ip);
    digits_add(lo, 1);
    if (b) {
        strcpy(hi, b->ip);
        digits_add(hi, -1);
    }
    if (!b || cmp_digits(lo, hi) <= 0) {
        int32_t t = cs_gb_state(c->b, r);
        int_range(c, r, from, lo, b ? hi : NULL, t);
        frac_range(c, r, t, NULL, NULL, to);
    }
    if (b) frac_range(c, r, cs_gb_literal(c->b, from, b->ip, strlen(b->ip)), NULL, b->fp, to);
}

static void range_body(js_ctx *c, int32_t r, const js_dec *lo, const js_dec *hi, bool integer) {
    int32_t start = cs_gb_start(c->b, r), end = cs_gb_state(c->b, r);
    cs_gb_accept(c->b, end);
    js_dec zero;
    dec_from_double(0, &zero);
    if (!hi || !hi->neg) mag_range(c, r, start, lo && !lo->neg ? lo : &zero, hi, integer, end);
    if (!lo || lo->neg) {
        int32_t minus = cs_gb_state(c->b, r);
        cs_gb_bytes(c->b, start, '-', '-', minus);
        mag_range(c, r, minus, hi && hi->neg ? hi : &zero, lo, integer, end);
    }
}

int32_t js_numeric_schema(js_ctx *c, const cJSON *node, bool integer) {
    double lo, hi;
    bool has_lo, has_hi;
    if (!side_bound(c, node, false, integer, &lo, &has_lo) || !side_bound(c, node, true, integer, &hi, &has_hi))
        return -1;
    if (!has_lo && !has_hi) return integer ? js_integer_rule(c) : js_number_rule(c);
    if (has_lo && has_hi && lo > hi) return JS_EMPTY;
    js_dec dlo, dhi;
    dec_from_double(has_lo ? lo : 0, &dlo);
    dec_from_double(has_hi ? hi : 0, &dhi);
    char key[2 * (JS_MAX_DIGITS + JS_MAX_FRAC) + 16];
    int n = snprintf(key, sizeof key, "%c%s%s.%s:%s%s.%s", integer ? 'I' : 'D', has_lo ? (dlo.neg ? "-" : "+") : "*",
                     dlo.ip, dlo.fp, has_hi ? (dhi.neg ? "-" : "+") : "*", dhi.ip, dhi.fp);
    int32_t r;
    if (js_map_get(&c->memo, key, (size_t)n, &r)) return r;
    r = cs_gb_rule(c->b);
    range_body(c, r, has_lo ? &dlo : NULL, has_hi ? &dhi : NULL, integer);
    if (!js_tick(c, 1)) return -1;
    if (!js_map_put(&c->memo, key, (size_t)n, r)) return js_fail(c, CS_ERR_NOMEM, "out of memory");
    return r;
}
