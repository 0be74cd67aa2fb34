// A small GGUF writer for tests and fuzz seeds: build metadata and tensors in memory, then
// gw_finish() lays out header, key/values, tensor infos, alignment padding and data.
//
//     gw g; gw_init(&g, 3);
//     gw_str(&g, "general.architecture", "llama");
//     gw_tensor(&g, "token_embd.weight", 0 /*F32*/, 2, (int64_t[]){64, 300}, data, nbytes);
//     size_t n; unsigned char *file = gw_finish(&g, &n); ... free(file); gw_free(&g);
#ifndef CS_GGUF_WRITER_H
#define CS_GGUF_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gw_buf {
    unsigned char *p;
    size_t n, cap;
} gw_buf;

typedef struct gw_tensor_rec {
    char name[128];
    uint32_t type, n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} gw_tensor_rec;

typedef struct gw {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    gw_buf kv;
    int n_tensors;
    gw_tensor_rec tensors[1024];
} gw;

static inline void gw_put(gw_buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static inline void gw_u32(gw_buf *b, uint32_t v) { gw_put(b, &v, 4); }
static inline void gw_u64(gw_buf *b, uint64_t v) { gw_put(b, &v, 8); }
static inline void gw_string(gw_buf *b, const char *s) {
    gw_u64(b, strlen(s));
    gw_put(b, s, strlen(s));
}

static inline void gw_init(gw *g, uint32_t version) {
    memset(g, 0, sizeof *g);
    g->version = version;
    g->alignment = 32;
}
static inline void gw_free(gw *g) { free(g->kv.p); }

static inline void gw_key(gw *g, const char *key, uint32_t type) {
    g->n_kv++;
    gw_string(&g->kv, key);
    gw_u32(&g->kv, type);
}
static inline void gw_kv_u32(gw *g, const char *key, uint32_t v) { gw_key(g, key, 4); gw_u32(&g->kv, v); }
static inline void gw_kv_i32(gw *g, const char *key, int32_t v) { gw_key(g, key, 5); gw_put(&g->kv, &v, 4); }
static inline void gw_kv_f32(gw *g, const char *key, float v) { gw_key(g, key, 6); gw_put(&g->kv, &v, 4); }
static inline void gw_kv_bool(gw *g, const char *key, int v) { unsigned char b = (unsigned char)v; gw_key(g, key, 7); gw_put(&g->kv, &b, 1); }
static inline void gw_kv_u64(gw *g, const char *key, uint64_t v) { gw_key(g, key, 10); gw_u64(&g->kv, v); }
static inline void gw_kv_i64(gw *g, const char *key, int64_t v) { gw_key(g, key, 11); gw_put(&g->kv, &v, 8); }
static inline void gw_kv_f64(gw *g, const char *key, double v) { gw_key(g, key, 12); gw_put(&g->kv, &v, 8); }
static inline void gw_kv_u8(gw *g, const char *key, uint8_t v) { gw_key(g, key, 0); gw_put(&g->kv, &v, 1); }
static inline void gw_kv_i8(gw *g, const char *key, int8_t v) { gw_key(g, key, 1); gw_put(&g->kv, &v, 1); }
static inline void gw_kv_u16(gw *g, const char *key, uint16_t v) { gw_key(g, key, 2); gw_put(&g->kv, &v, 2); }
static inline void gw_kv_i16(gw *g, const char *key, int16_t v) { gw_key(g, key, 3); gw_put(&g->kv, &v, 2); }
static inline void gw_kv_str(gw *g, const char *key, const char *s) { gw_key(g, key, 8); gw_string(&g->kv, s); }
static inline void gw_kv_arr_str(gw *g, const char *key, size_t n, const char *const *s) {
    gw_key(g, key, 9);
    gw_u32(&g->kv, 8);
    gw_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++) gw_string(&g->kv, s[i]);
}
// Numeric array: elem_type is a GGUF value type, elem_size its byte size.
static inline void gw_kv_arr(gw *g, const char *key, uint32_t elem_type, size_t elem_size,
                             size_t n, const void *data) {
    gw_key(g, key, 9);
    gw_u32(&g->kv, elem_type);
    gw_u64(&g->kv, n);
    gw_put(&g->kv, data, n * elem_size);
}

static inline void gw_tensor(gw *g, const char *name, uint32_t ggml_type, uint32_t n_dims,
                             const int64_t *ne, const void *data, size_t nbytes) {
    gw_tensor_rec *t = &g->tensors[g->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = ggml_type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    t->data = data;
    t->nbytes = nbytes;
}

// Returns the whole file (malloc'd; caller frees) and its size.
static inline unsigned char *gw_finish(gw *g, size_t *size) {
    gw_buf b = {0};
    gw_u32(&b, 0x46554747u);
    gw_u32(&b, g->version);
    gw_u64(&b, (uint64_t)g->n_tensors);
    gw_u64(&b, g->n_kv);
    gw_put(&b, g->kv.p, g->kv.n);
    uint64_t off = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        gw_tensor_rec *t = &g->tensors[i];
        gw_string(&b, t->name);
        gw_u32(&b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) gw_u64(&b, (uint64_t)t->ne[d]);
        gw_u32(&b, t->type);
        gw_u64(&b, off);
        off += (t->nbytes + g->alignment - 1) / g->alignment * g->alignment;
    }
    static const unsigned char zeros[4096];
    if (g->n_tensors) gw_put(&b, zeros, (g->alignment - b.n % g->alignment) % g->alignment);
    for (int i = 0; i < g->n_tensors; i++) {
        gw_tensor_rec *t = &g->tensors[i];
        gw_put(&b, t->data, t->nbytes);
        gw_put(&b, zeros, (g->alignment - t->nbytes % g->alignment) % g->alignment);
    }
    *size = b.n;
    return b.p;
}

#endif
