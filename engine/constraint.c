// Grammar cache and per-sequence constraint state. Grammars compile on the submitting thread
// (off the engine's step) and are shared, refcounted, by every request with the same text;
// masks are computed on the engine thread, through each grammar's mask cache.
#include "constraint.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/assert.h"
#include "grammar.h"
#include "json_schema.h"
#include "regex.h"
#include "token_mask.h"

#define MASK_CACHE_BYTES ((size_t)64 << 20)

struct cs_compiled {
    char *key;            // kind letter + text: what the cache matches on (may hold NULs)
    size_t key_len;
    cs_grammar *g;
    cs_mask_cache *masks;
    const cs_tokenizer *tok;
    int refs;
    uint64_t last_use;
};

struct cs_constraint_cache {
    const cs_tokenizer *tok;
    cs_vocab_index *vocab;
    pthread_mutex_t mu;
    cs_compiled **items;
    int n, cap, max_idle;
    uint64_t clock;
};

struct cs_constraint {
    cs_compiled *c;
    int32_t vocab;      // the model's: logits rows have this many entries
    cs_gram_matcher *m;
    uint32_t *bits;     // ((vocab + 31) / 32) allowed tokens at this position
    bool mask_valid;
    int n_allowed;
    int32_t single;
    char *tok_bytes;    // (tok_cap) one token's bytes
    size_t tok_cap;
};

cs_constraint_cache *cs_cc_init(const cs_tokenizer *tok, int max_grammars) {
    cs_constraint_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->tok = tok;
    c->max_idle = max_grammars;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void compiled_free(cs_compiled *g) {
    if (!g) return;
    cs_mask_cache_free(g->masks);
    cs_grammar_free(g->g);
    free(g->key);
    free(g);
}

void cs_cc_free(cs_constraint_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) compiled_free(c->items[i]);
    free(c->items);
    cs_vocab_index_free(c->vocab);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

// The cache key: a kind letter, then the text (choices joined with NUL separators, counted).
static char *make_key(const cs_request *q, size_t *len) {
    size_t n = 2;
    if (q->json_schema) n += strlen(q->json_schema);
    if (q->regex) n += strlen(q->regex);
    for (int i = 0; i < q->n_choices; i++) n += strlen(q->choices[i]) + 1;
    char *k = malloc(n + 1);
    if (!k) return NULL;
    char *p = k;
    if (q->json_schema) *p++ = 'S', p = stpcpy(p, q->json_schema);
    else if (q->regex) *p++ = 'R', p = stpcpy(p, q->regex);
    else if (q->json_object) *p++ = 'O';
    else {
        *p++ = 'C';
        for (int i = 0; i < q->n_choices; i++) p = stpcpy(p, q->choices[i]), *p++ = 0;
    }
    *len = (size_t)(p - k);
    return k;
}

static cs_status compile_kind(const cs_request *q, cs_grammar **g, char *err, size_t errlen) {
    if (q->json_schema) return cs_json_schema_compile(q->json_schema, strlen(q->json_schema), g, err, errlen);
    if (q->regex) return cs_regex_grammar(q->regex, strlen(q->regex), g, err, errlen);
    if (q->json_object) return cs_json_object_grammar(g, err, errlen);
    size_t *lens = malloc(sizeof(size_t) * (size_t)q->n_choices);
    if (!lens) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < q->n_choices; i++) lens[i] = strlen(q->choices[i]);
    cs_status st = cs_choice_grammar(q->choices, lens, q->n_choices, g, err, errlen);
    free(lens);
    return st;
}

// Compiles, naming the request parameter in any error ("regex: ...").
static cs_status compile(const cs_request *q, cs_grammar **g, char *err, size_t errlen) {
    char why[CS_ERR_LEN] = "";
    cs_status st = compile_kind(q, g, why, sizeof why);
    if (st == CS_OK) return CS_OK;
    const char *param = q->json_schema ? "json_schema" : q->regex ? "regex" : q->json_object ? "json_object" : "choices";
    size_t n = strlen(param);
    if (!strncmp(why, param, n) && why[n] == ':') return cs_errf(err, errlen, st, "%s", why);
    return cs_errf(err, errlen, st, "%s: %s", param, why);
}

// Drops the least recently used grammars nobody holds, down to max_idle of them. Under mu.
static void evict(cs_constraint_cache *c) {
    for (;;) {
        int idle = 0, oldest = -1;
        for (int i = 0; i < c->n; i++)
            if (c->items[i]->refs == 0) {
                idle++;
                if (oldest < 0 || c->items[i]->last_use < c->items[oldest]->last_use) oldest = i;
            }
        if (idle <= c->max_idle) return;
        compiled_free(c->items[oldest]);
        c->items[oldest] = c->items[--c->n];
    }
}

static cs_compiled *find(cs_constraint_cache *c, const char *key, size_t len) {
    for (int i = 0; i < c->n; i++) {
        cs_compiled *g = c->items[i];
        if (g->key_len != len || memcmp(g->key, key, len)) continue;
        g->refs++;
        g->last_use = ++c->clock;
        return g;
    }
    return NULL;
}

cs_status cs_cc_get(cs_constraint_cache *c, const cs_request *q, cs_compiled **out, char *err, size_t errlen) {
    *out = NULL;
    int kinds = (q->json_schema != NULL) + q->json_object + (q->regex != NULL) + (q->n_choices > 0 || q->choices);
    if (kinds == 0) return CS_OK;
    if (kinds > 1) return cs_errf(err, errlen, CS_ERR_INVALID, "give at most one of json_schema, json_object, regex, choices");
    if (q->choices || q->n_choices) {
        if (!q->choices || q->n_choices < 1 || q->n_choices > 65536)
            return cs_errf(err, errlen, CS_ERR_INVALID, "choices: give 1 to 65536 strings");
        for (int i = 0; i < q->n_choices; i++)
            if (!q->choices[i]) return cs_errf(err, errlen, CS_ERR_INVALID, "choices: entry %d is null", i);
    }
    size_t len;
    char *key = make_key(q, &len);
    if (!key) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&c->mu);
    cs_compiled *g = find(c, key, len);
    if (!c->vocab) c->vocab = cs_vocab_index_init(c->tok); // once, on first use
    bool have_vocab = c->vocab != NULL;
    pthread_mutex_unlock(&c->mu);
    if (g) {
        free(key);
        *out = g;
        return CS_OK;
    }
    if (!have_vocab) {
        free(key);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory indexing the vocabulary");
    }
    // compile outside the lock: other submitters and the engine thread go on meanwhile
    cs_grammar *gr = NULL;
    cs_status st = compile(q, &gr, err, errlen);
    if (st != CS_OK) {
        free(key);
        return st;
    }
    g = calloc(1, sizeof *g);
    if (g) g->masks = cs_mask_cache_init(gr, c->vocab, MASK_CACHE_BYTES);
    if (!g || !g->masks) {
        free(g);
        cs_grammar_free(gr);
        free(key);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    }
    g->g = gr;
    g->tok = c->tok;
    g->key = key;
    g->key_len = len;
    g->refs = 1;
    pthread_mutex_lock(&c->mu);
    cs_compiled *dup = find(c, key, len); // compiled meanwhile by another submitter
    if (dup) {
        compiled_free(g);
        g = dup;
    } else {
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 16;
            cs_compiled **items = realloc(c->items, sizeof *items * (size_t)cap);
            if (!items) {
                pthread_mutex_unlock(&c->mu);
                compiled_free(g);
                return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
            }
            c->items = items;
            c->cap = cap;
        }
        g->last_use = ++c->clock;
        c->items[c->n++] = g;
        evict(c);
    }
    pthread_mutex_unlock(&c->mu);
    *out = g;
    return CS_OK;
}

void cs_cc_release(cs_constraint_cache *c, cs_compiled *g) {
    if (!g) return;
    pthread_mutex_lock(&c->mu);
    CS_ASSERT(g->refs > 0);
    g->refs--;
    evict(c);
    pthread_mutex_unlock(&c->mu);
}

// --- per sequence -----------------------------------------------------------------------------

cs_constraint *cs_constraint_init(cs_compiled *g, int32_t vocab) {
    cs_constraint *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->c = g;
    k->vocab = vocab;
    k->m = cs_gm_init(g->g);
    // 64-byte aligned: the mask cache copies whole cache lines into it
    size_t words = (size_t)(vocab + 31) / 32, bytes = (words * 4 + 63) / 64 * 64;
    k->bits = aligned_alloc(64, bytes);
    if (k->bits) memset(k->bits, 0, bytes);
    k->tok_cap = cs_tokenizer_max_token_bytes(g->tok) + 1;
    k->tok_bytes = malloc(k->tok_cap);
    if (!k->m || !k->bits || !k->tok_bytes) {
        cs_constraint_free(k);
        return NULL;
    }
    return k;
}

void cs_constraint_free(cs_constraint *k) {
    if (!k) return;
    cs_gm_free(k->m);
    free(k->bits);
    free(k->tok_bytes);
    free(k);
}

int cs_constraint_mask(cs_constraint *k, int32_t *single) {
    if (!k->mask_valid) {
        // the mask covers the tokenizer's vocabulary; model rows past it stay 0 (never allowed)
        k->n_allowed = cs_token_mask(k->c->masks, k->m, k->bits, &k->single);
        k->mask_valid = true;
    }
    *single = k->single;
    return k->n_allowed;
}

const uint32_t *cs_constraint_bits(cs_constraint *k) {
    int32_t single;
    cs_constraint_mask(k, &single);
    return k->bits;
}

void cs_constraint_apply(cs_constraint *k, float *logits) {
    int32_t single;
    cs_constraint_mask(k, &single);
    for (int32_t t = 0; t < k->vocab; t++)
        if (!(k->bits[t >> 5] >> (t & 31) & 1)) logits[t] = -INFINITY;
}

bool cs_constraint_accept(cs_constraint *k, int32_t id) {
    int32_t single;
    cs_constraint_mask(k, &single);
    if (id < 0 || id >= k->vocab || !(k->bits[id >> 5] >> (id & 31) & 1)) return false;
    k->mask_valid = false;
    const cs_tokenizer *tok = k->c->tok;
    if (cs_tokenizer_is_eog(tok, id)) return true; // the end: nothing more to match
    size_t n = cs_tokenizer_token_bytes(tok, id, k->tok_bytes, k->tok_cap);
    if (n > k->tok_cap || !cs_gm_advance_bytes(k->m, (const uint8_t *)k->tok_bytes, n)) return false;
    cs_gm_commit(k->m);
    return true;
}
