// GGUF metadata and tensor accessors. Everything they read was bounds-checked by the parser.
#include <string.h>

#include "gguf_private.h"

uint32_t cs_gguf_version(const cs_gguf *g) { return g->version; }
size_t cs_gguf_alignment(const cs_gguf *g) { return g->alignment; }
size_t cs_gguf_file_size(const cs_gguf *g) { return g->size; }
int cs_gguf_n_kv(const cs_gguf *g) { return g->n_kv; }
const char *cs_gguf_kv_key(const cs_gguf *g, int i) { return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL; }
cs_gguf_type cs_gguf_kv_type(const cs_gguf *g, int i) { return g->kv[i].type; }
int cs_gguf_n_tensors(const cs_gguf *g) { return g->n_tensors; }

const cs_gguf_tensor *cs_gguf_tensor_at(const cs_gguf *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

int cs_gguf_find_key(const cs_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return i;
    return -1;
}

const cs_gguf_tensor *cs_gguf_find_tensor(const cs_gguf *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

// Reads one scalar of type t at p as int64 (integers only) or double (numbers).
static bool scalar_i64(cs_gguf_type t, const unsigned char *p, int64_t *out, bool *is_u64_big) {
    *is_u64_big = false;
    switch (t) {
    case CS_GGUF_UINT8: *out = p[0]; return true;
    case CS_GGUF_INT8: *out = (int8_t)p[0]; return true;
    case CS_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case CS_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case CS_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case CS_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case CS_GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return true; }
    case CS_GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) { *is_u64_big = true; return false; }
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

static bool scalar_f64(cs_gguf_type t, const unsigned char *p, double *out) {
    if (t == CS_GGUF_FLOAT32) { float v; memcpy(&v, p, 4); *out = v; return true; }
    if (t == CS_GGUF_FLOAT64) { memcpy(out, p, 8); return true; }
    int64_t i;
    bool big;
    if (scalar_i64(t, p, &i, &big)) { *out = (double)i; return true; }
    return false;
}

static const gguf_kv *find(const cs_gguf *g, const char *key) {
    int i = cs_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

bool cs_gguf_get_i64(const cs_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = find(g, key);
    bool big;
    return kv && scalar_i64(kv->type, kv->val, out, &big);
}

bool cs_gguf_get_u64(const cs_gguf *g, const char *key, uint64_t *out) {
    const gguf_kv *kv = find(g, key);
    if (!kv) return false;
    if (kv->type == CS_GGUF_UINT64) { memcpy(out, kv->val, 8); return true; }
    int64_t v;
    bool big;
    if (!scalar_i64(kv->type, kv->val, &v, &big) || v < 0) return false;
    *out = (uint64_t)v;
    return true;
}

bool cs_gguf_get_u32(const cs_gguf *g, const char *key, uint32_t *out) {
    uint64_t v;
    if (!cs_gguf_get_u64(g, key, &v) || v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

bool cs_gguf_get_f32(const cs_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = find(g, key);
    double d;
    if (!kv || !scalar_f64(kv->type, kv->val, &d)) return false;
    *out = (float)d;
    return true;
}

bool cs_gguf_get_bool(const cs_gguf *g, const char *key, bool *out) {
    const gguf_kv *kv = find(g, key);
    if (!kv || kv->type != CS_GGUF_BOOL) return false;
    *out = kv->val[0] != 0;
    return true;
}

static void read_str(const unsigned char *at, const char **s, size_t *len) {
    uint64_t n;
    memcpy(&n, at, 8);
    *s = (const char *)at + 8;
    *len = (size_t)n;
}

bool cs_gguf_get_str(const cs_gguf *g, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = find(g, key);
    if (!kv || kv->type != CS_GGUF_STRING) return false;
    read_str(kv->val, s, len);
    return true;
}

bool cs_gguf_get_arr(const cs_gguf *g, const char *key, cs_gguf_type *elem_type, uint64_t *n,
                     const void **data) {
    const gguf_kv *kv = find(g, key);
    if (!kv || kv->type != CS_GGUF_ARRAY) return false;
    *elem_type = kv->arr_type;
    *n = kv->arr_n;
    if (data) *data = kv->arr_data;
    return true;
}

static const gguf_kv *arr_at(const cs_gguf *g, int kv_index, uint64_t i) {
    if (kv_index < 0 || kv_index >= g->n_kv) return NULL;
    const gguf_kv *kv = &g->kv[kv_index];
    return kv->type == CS_GGUF_ARRAY && i < kv->arr_n ? kv : NULL;
}

bool cs_gguf_arr_str(const cs_gguf *g, int kv_index, uint64_t i, const char **s, size_t *len) {
    const gguf_kv *kv = arr_at(g, kv_index, i);
    if (!kv || kv->arr_type != CS_GGUF_STRING) return false;
    read_str(g->base + kv->arr_str_pos[i], s, len);
    return true;
}

static size_t elem_size(cs_gguf_type t) {
    switch (t) {
    case CS_GGUF_UINT8: case CS_GGUF_INT8: case CS_GGUF_BOOL: return 1;
    case CS_GGUF_UINT16: case CS_GGUF_INT16: return 2;
    case CS_GGUF_UINT32: case CS_GGUF_INT32: case CS_GGUF_FLOAT32: return 4;
    case CS_GGUF_UINT64: case CS_GGUF_INT64: case CS_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

bool cs_gguf_arr_f64(const cs_gguf *g, int kv_index, uint64_t i, double *out) {
    const gguf_kv *kv = arr_at(g, kv_index, i);
    size_t es = kv ? elem_size(kv->arr_type) : 0;
    return es && kv->arr_type != CS_GGUF_BOOL && scalar_f64(kv->arr_type, kv->arr_data + i * es, out);
}

bool cs_gguf_arr_i64(const cs_gguf *g, int kv_index, uint64_t i, int64_t *out) {
    const gguf_kv *kv = arr_at(g, kv_index, i);
    size_t es = kv ? elem_size(kv->arr_type) : 0;
    bool big;
    return es && scalar_i64(kv->arr_type, kv->arr_data + i * es, out, &big);
}
