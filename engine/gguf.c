// GGUF reader. The file is parsed with a bounds-checked cursor: each read checks the bytes
// left first, and each count is checked against what the rest of the file could possibly
// hold before anything is allocated for it. The known GGUF parser CVEs are overflows of
// exactly these (string lengths, array counts, tensor dims and offsets).
#include "gguf.h"
#include "gguf_private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/file_map.h"

#define GGUF_MAGIC 0x46554747u // "GGUF" little-endian
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY_LEN 65535

typedef struct cursor {
    const unsigned char *base;
    size_t size, pos;
    char *err;
    size_t errlen;
    cs_status st; // why the last read failed
} cursor;

// --- type tables ---------------------------------------------------------------------------

static const size_t scalar_size[CS_GGUF_TYPE_COUNT] = {
    [CS_GGUF_UINT8] = 1, [CS_GGUF_INT8] = 1, [CS_GGUF_UINT16] = 2, [CS_GGUF_INT16] = 2,
    [CS_GGUF_UINT32] = 4, [CS_GGUF_INT32] = 4, [CS_GGUF_FLOAT32] = 4, [CS_GGUF_BOOL] = 1,
    [CS_GGUF_UINT64] = 8, [CS_GGUF_INT64] = 8, [CS_GGUF_FLOAT64] = 8,
};

const char *cs_gguf_type_name(cs_gguf_type t) {
    static const char *names[CS_GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < CS_GGUF_TYPE_COUNT ? names[t] : "?";
}

// ggml tensor types whose storage size we know, so that a file holding them can still be
// validated and described. Only some of them can be computed with (dtype >= 0).
typedef struct ggml_type_info {
    const char *name;
    int block_elems, block_bytes;
    int dtype; // cs_dtype, or -1 when we have no kernels for it
} ggml_type_info;

static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4, CS_DTYPE_F32},      [1] = {"F16", 1, 2, CS_DTYPE_F16},
    [2] = {"Q4_0", 32, 18, CS_DTYPE_Q4_0},  [3] = {"Q4_1", 32, 20, CS_DTYPE_Q4_1},
    [6] = {"Q5_0", 32, 22, -1},             [7] = {"Q5_1", 32, 24, -1},
    [8] = {"Q8_0", 32, 34, CS_DTYPE_Q8_0},  [9] = {"Q8_1", 32, 36, -1},
    [10] = {"Q2_K", 256, 84, -1},           [11] = {"Q3_K", 256, 110, -1},
    [12] = {"Q4_K", 256, 144, -1},          [13] = {"Q5_K", 256, 176, -1},
    [14] = {"Q6_K", 256, 210, -1},          [15] = {"Q8_K", 256, 292, -1},
    [20] = {"IQ4_NL", 32, 18, -1},          [23] = {"IQ4_XS", 256, 136, -1},
    [24] = {"I8", 1, 1, -1},                [25] = {"I16", 1, 2, -1},
    [26] = {"I32", 1, 4, -1},               [27] = {"I64", 1, 8, -1},
    [28] = {"F64", 1, 8, -1},               [30] = {"BF16", 1, 2, CS_DTYPE_BF16},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

static const ggml_type_info *ggml_type_get(uint32_t t) {
    return t < N_GGML_TYPES && ggml_types[t].name ? &ggml_types[t] : NULL;
}

const char *cs_ggml_type_name(uint32_t t) {
    const ggml_type_info *ti = ggml_type_get(t);
    return ti ? ti->name : "unknown";
}

// --- cursor --------------------------------------------------------------------------------

// Records why parsing stopped; always returns false so callers can `return cur_fail(...)`.
static bool cur_fail(cursor *c, cs_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool cur_fail(cursor *c, cs_status st, const char *fmt, ...) {
    c->st = st;
    va_list ap;
    va_start(ap, fmt);
    cs_verrf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return false;
}

static bool cur_need(cursor *c, size_t n, const char *what) {
    if (c->size - c->pos < n) {
        return cur_fail(c, CS_ERR_FORMAT,
                        "gguf: truncated: %s needs %zu bytes at offset %zu, file has %zu", what, n,
                        c->pos, c->size);
    }
    return true;
}

static bool cur_read(cursor *c, void *dst, size_t n, const char *what) {
    if (!cur_need(c, n, what)) return false;
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return true;
}

static bool cur_u32(cursor *c, uint32_t *v, const char *what) { return cur_read(c, v, 4, what); }
static bool cur_u64(cursor *c, uint64_t *v, const char *what) { return cur_read(c, v, 8, what); }

// Reads a string's length prefix and skips its bytes; *s points into the file.
static bool cur_str(cursor *c, const unsigned char **s, uint64_t *len, const char *what) {
    if (!cur_u64(c, len, what)) return false;
    if (*len > c->size - c->pos) {
        return cur_fail(c, CS_ERR_FORMAT,
                        "gguf: %s: string length %llu at offset %zu runs past the end of the file",
                        what, (unsigned long long)*len, c->pos - 8);
    }
    *s = c->base + c->pos;
    c->pos += (size_t)*len;
    return true;
}

// --- metadata ------------------------------------------------------------------------------

static bool valid_type(uint32_t t) { return t < CS_GGUF_TYPE_COUNT; }

static bool read_array(cursor *c, gguf_kv *kv) {
    uint32_t et;
    if (!cur_u32(c, &et, "array type") || !cur_u64(c, &kv->arr_n, "array length")) return false;
    if (!valid_type(et))
        return cur_fail(c, CS_ERR_FORMAT, "gguf: key '%s': bad array element type %u",
                        kv->key, et);
    if (et == CS_GGUF_ARRAY)
        return cur_fail(c, CS_ERR_UNSUPPORTED,
                        "gguf: key '%s': nested arrays are not supported", kv->key);
    kv->arr_type = (cs_gguf_type)et;
    kv->arr_data = c->base + c->pos;
    size_t left = c->size - c->pos;
    if (et != CS_GGUF_STRING) {
        size_t es = scalar_size[et];
        if (kv->arr_n > left / es)
            return cur_fail(c, CS_ERR_FORMAT,
                            "gguf: key '%s': array of %llu elements runs past the end of the file",
                            kv->key, (unsigned long long)kv->arr_n);
        c->pos += (size_t)kv->arr_n * es;
        return true;
    }
    // every string takes at least its 8-byte length: bounds the allocation below
    if (kv->arr_n > left / 8)
        return cur_fail(c, CS_ERR_FORMAT,
                        "gguf: key '%s': array of %llu strings runs past the end of the file",
                        kv->key, (unsigned long long)kv->arr_n);
    kv->arr_str_pos = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof(uint64_t));
    if (!kv->arr_str_pos)
        return cur_fail(c, CS_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const unsigned char *s;
        uint64_t len;
        kv->arr_str_pos[i] = c->pos;
        if (!cur_str(c, &s, &len, kv->key)) return false;
    }
    return true;
}

static bool read_kv(cursor *c, gguf_kv *kv) {
    const unsigned char *key;
    uint64_t klen;
    uint32_t type;
    if (!cur_str(c, &key, &klen, "metadata key")) return false;
    if (klen == 0 || klen > GGUF_MAX_KEY_LEN || memchr(key, 0, (size_t)klen))
        return cur_fail(c, CS_ERR_FORMAT,
                        "gguf: bad metadata key at offset %zu (empty, too long or holds NUL)",
                        c->pos - (size_t)klen - 8);
    kv->key = malloc((size_t)klen + 1);
    if (!kv->key) return cur_fail(c, CS_ERR_NOMEM, "gguf: out of memory");
    memcpy(kv->key, key, (size_t)klen);
    kv->key[klen] = 0;
    if (!cur_u32(c, &type, "metadata type")) return false;
    if (!valid_type(type))
        return cur_fail(c, CS_ERR_FORMAT, "gguf: key '%s': bad value type %u",
                        kv->key, type);
    kv->type = (cs_gguf_type)type;
    kv->val = c->base + c->pos;
    if (type == CS_GGUF_STRING) {
        const unsigned char *s;
        uint64_t len;
        return cur_str(c, &s, &len, kv->key);
    }
    if (type == CS_GGUF_ARRAY) return read_array(c, kv);
    if (!cur_need(c, scalar_size[type], kv->key)) return false;
    c->pos += scalar_size[type];
    return true;
}

// --- tensors -------------------------------------------------------------------------------

static bool read_tensor_info(cursor *c, cs_gguf_tensor *t, int index) {
    const unsigned char *name;
    uint64_t nlen;
    uint32_t n_dims, type;
    if (!cur_str(c, &name, &nlen, "tensor name")) return false;
    if (nlen == 0 || nlen > 1024 || memchr(name, 0, (size_t)nlen))
        return cur_fail(c, CS_ERR_FORMAT, "gguf: tensor %d: bad name", index);
    char *nm = malloc((size_t)nlen + 1);
    if (!nm) return cur_fail(c, CS_ERR_NOMEM, "gguf: out of memory");
    memcpy(nm, name, (size_t)nlen);
    nm[nlen] = 0;
    t->name = nm;
    if (!cur_u32(c, &n_dims, "tensor dims")) return false;
    if (n_dims < 1 || n_dims > CS_GGUF_MAX_DIMS)
        return cur_fail(c, CS_ERR_FORMAT, "gguf: tensor '%s': %u dimensions", nm,
                        n_dims);
    t->n_dims = (int)n_dims;
    t->n_elems = 1;
    for (int d = 0; d < CS_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < (int)n_dims && !cur_u64(c, &ne, "tensor shape")) return false;
        if (ne == 0 || ne > (uint64_t)INT64_MAX / (uint64_t)t->n_elems)
            return cur_fail(c, CS_ERR_FORMAT,
                            "gguf: tensor '%s': dimension %d is %llu (zero or overflowing)", nm, d,
                            (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        t->n_elems *= (int64_t)ne;
    }
    if (!cur_u32(c, &type, "tensor type") || !cur_u64(c, &t->offset, "tensor offset")) return false;
    t->ggml_type = type;
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti)
        return cur_fail(c, CS_ERR_UNSUPPORTED,
                        "gguf: tensor '%s': unknown tensor type %u", nm, type);
    t->supported = ti->dtype >= 0;
    t->dtype = t->supported ? (cs_dtype)ti->dtype : CS_DTYPE_F32;
    if (t->ne[0] % ti->block_elems != 0)
        return cur_fail(c, CS_ERR_FORMAT,
                        "gguf: tensor '%s': row length %lld is not a multiple of the %s block (%d)",
                        nm, (long long)t->ne[0], ti->name, ti->block_elems);
    uint64_t blocks = (uint64_t)t->n_elems / (uint64_t)ti->block_elems;
    if (blocks > SIZE_MAX / (uint64_t)ti->block_bytes)
        return cur_fail(c, CS_ERR_FORMAT, "gguf: tensor '%s': too large", nm);
    t->nbytes = (size_t)(blocks * (uint64_t)ti->block_bytes);
    return true;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const cs_gguf_tensor *x = *(const cs_gguf_tensor *const *)a, *y = *(const cs_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// Places tensors in the data section: aligned, inside the file, not overlapping.
static cs_status place_tensors(cs_gguf *g, char *err, size_t errlen) {
    size_t data_size = g->size - g->data_offset;
    for (int i = 0; i < g->n_tensors; i++) {
        cs_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           "gguf: tensor '%s': offset %llu is not a multiple of the alignment %zu",
                           t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           "gguf: tensor '%s': data [%llu, +%zu) runs past the end of the file "
                           "(data section is %zu bytes; truncated?)",
                           t->name, (unsigned long long)t->offset, t->nbytes, data_size);
        t->data = g->base + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return CS_OK;
    const cs_gguf_tensor **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) return cs_errf(err, errlen, CS_ERR_NOMEM, "gguf: out of memory");
    for (int i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_offset);
    cs_status st = CS_OK;
    for (int i = 1; i < g->n_tensors && st == CS_OK; i++)
        if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
            st = cs_errf(err, errlen, CS_ERR_FORMAT, "gguf: tensors '%s' and '%s' overlap",
                         order[i - 1]->name, order[i]->name);
    free(order);
    return st;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Sorts the names and compares neighbours: n log n, since counts come from the file.
static cs_status find_duplicate(const char **names, int n, const char *what, char *err,
                                size_t errlen) {
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "gguf: duplicate %s '%s'", what, names[i]);
    return CS_OK;
}

static cs_status find_duplicates(const cs_gguf *g, char *err, size_t errlen) {
    int n = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names) return cs_errf(err, errlen, CS_ERR_NOMEM, "gguf: out of memory");
    for (int i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
    cs_status st = find_duplicate(names, g->n_kv, "key", err, errlen);
    for (int i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
    if (st == CS_OK) st = find_duplicate(names, g->n_tensors, "tensor", err, errlen);
    free(names);
    return st;
}

// --- open ----------------------------------------------------------------------------------

static cs_status read_header(cs_gguf *g, cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    uint32_t magic;
    if (g->size < 4 || (memcpy(&magic, g->base, 4), magic != GGUF_MAGIC))
        return cs_errf(c->err, c->errlen, CS_ERR_FORMAT, "gguf: bad magic (not a GGUF file)");
    c->pos = 4;
    if (!cur_u32(c, &g->version, "version")) return c->st;
    if (g->version != 2 && g->version != 3)
        return cs_errf(c->err, c->errlen, CS_ERR_UNSUPPORTED,
                       "gguf: unsupported version %u (supported: 2, 3)", g->version);
    if (!cur_u64(c, n_tensors, "tensor count") || !cur_u64(c, n_kv, "metadata count"))
        return c->st;
    // A key/value takes at least 8+1+4+1 bytes and a tensor info at least 8+1+4+8+4+8.
    size_t left = g->size - c->pos;
    if (*n_kv > left / 14 || *n_tensors > left / 33 || *n_kv > 1u << 24 || *n_tensors > 1u << 24)
        return cs_errf(c->err, c->errlen, CS_ERR_FORMAT,
                       "gguf: %llu tensors and %llu metadata entries cannot fit in a %zu-byte file",
                       (unsigned long long)*n_tensors, (unsigned long long)*n_kv, g->size);
    return CS_OK;
}

static cs_status read_alignment(cs_gguf *g, char *err, size_t errlen) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int i = cs_gguf_find_key(g, "general.alignment");
    if (i < 0) return CS_OK;
    uint32_t a;
    if (g->kv[i].type != CS_GGUF_UINT32)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "gguf: general.alignment is not a u32");
    memcpy(&a, g->kv[i].val, 4);
    if (a == 0 || (a & (a - 1)) != 0 || a > 1u << 20)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "gguf: general.alignment %u is not a power of two",
                       a);
    g->alignment = a;
    return CS_OK;
}

static cs_status parse(cs_gguf *g, char *err, size_t errlen) {
    cursor c = {g->base, g->size, 0, err, errlen, CS_OK};
    uint64_t n_tensors, n_kv;
    cs_status st = read_header(g, &c, &n_tensors, &n_kv);
    if (st != CS_OK) return st;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return cs_errf(err, errlen, CS_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv++;
        if (!read_kv(&c, &g->kv[i])) return c.st;
    }
    if ((st = read_alignment(g, err, errlen)) != CS_OK) return st;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors++;
        if (!read_tensor_info(&c, &g->tensors[i], (int)i)) return c.st;
    }
    if ((st = find_duplicates(g, err, errlen)) != CS_OK) return st;
    size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    if (n_tensors > 0 && pad > g->size - c.pos)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "gguf: truncated before the tensor data");
    g->data_offset = c.pos + pad > g->size ? g->size : c.pos + pad;
    return place_tensors(g, err, errlen);
}

cs_status cs_gguf_open_memory(const void *data, size_t size, cs_gguf **out, char *err,
                              size_t errlen) {
    *out = NULL;
    cs_gguf *g = calloc(1, sizeof *g);
    if (!g) return cs_errf(err, errlen, CS_ERR_NOMEM, "gguf: out of memory");
    g->base = data;
    g->size = size;
    cs_status st = parse(g, err, errlen);
    if (st != CS_OK) {
        cs_gguf_free(g);
        return st;
    }
    *out = g;
    return CS_OK;
}

cs_status cs_gguf_open(const char *path, cs_gguf **out, char *err, size_t errlen) {
    *out = NULL;
    cs_file_map map;
    cs_status st = cs_file_map_open(path, &map, err, errlen);
    if (st != CS_OK) return st;
    st = cs_gguf_open_memory(map.data, map.size, out, err, errlen);
    if (st != CS_OK) {
        cs_file_unmap(&map);
        return st;
    }
    (*out)->map = map;
    return CS_OK;
}

void cs_gguf_free(cs_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].arr_str_pos);
    }
    for (int i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    cs_file_unmap(&g->map);
    free(g);
}
