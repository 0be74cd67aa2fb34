// The schema compiler's memo table: byte-string keys (copied into one pool) -> int32, open
// addressing with linear probing, grown at half full.
#include <stdlib.h>
#include <string.h>

#include "json_schema_internal.h"

static uint64_t key_hash(const void *key, size_t len) {
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h | 1; // 0 marks an empty slot; the slot comes from the high half
}

static int64_t find_slot(const js_map *m, uint64_t h, const void *key, size_t len) {
    for (uint32_t i = (uint32_t)(h >> 32) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->hash[i]) return -1 - (int64_t)i; // free slot i
        if (m->hash[i] == h && m->len[i] == len && !memcmp(m->pool + m->off[i], key, len)) return i;
    }
}

bool js_map_get(const js_map *m, const void *key, size_t len, int32_t *val) {
    if (!m->cap) return false;
    int64_t i = find_slot(m, key_hash(key, len), key, len);
    if (i < 0) return false;
    *val = m->val[i];
    return true;
}

static bool grow(js_map *m) {
    uint32_t cap = m->cap ? m->cap * 2 : 64;
    js_map n = {0};
    n.cap = cap;
    n.hash = calloc(cap, sizeof *n.hash);
    n.off = malloc(cap * sizeof *n.off);
    n.len = malloc(cap * sizeof *n.len);
    n.val = malloc(cap * sizeof *n.val);
    if (!n.hash || !n.off || !n.len || !n.val) {
        free(n.hash), free(n.off), free(n.len), free(n.val);
        return false;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->hash[i]) continue;
        uint32_t j = (uint32_t)(m->hash[i] >> 32) & (cap - 1);
        while (n.hash[j]) j = (j + 1) & (cap - 1);
        n.hash[j] = m->hash[i], n.off[j] = m->off[i], n.len[j] = m->len[i], n.val[j] = m->val[i];
    }
    free(m->hash), free(m->off), free(m->len), free(m->val);
    m->hash = n.hash, m->off = n.off, m->len = n.len, m->val = n.val, m->cap = cap;
    return true;
}

bool js_map_put(js_map *m, const void *key, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap && !grow(m)) return false;
    uint64_t h = key_hash(key, len);
    int64_t i = find_slot(m, h, key, len);
    if (i >= 0) {
        m->val[i] = val;
        return true;
    }
    if (m->pool_len + len > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap : 1024;
        while (cap < m->pool_len + len) cap *= 2;
        char *p = realloc(m->pool, cap);
        if (!p) return false;
        m->pool = p, m->pool_cap = cap;
    }
    i = -1 - i;
    memcpy(m->pool + m->pool_len, key, len);
    m->hash[i] = h, m->off[i] = (uint32_t)m->pool_len, m->len[i] = (uint32_t)len, m->val[i] = val;
    m->pool_len += len;
    m->n++;
    return true;
}

void js_map_free(js_map *m) {
    free(m->hash), free(m->off), free(m->len), free(m->val), free(m->pool);
    memset(m, 0, sizeof *m);
}
