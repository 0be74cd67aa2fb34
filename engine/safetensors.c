// safetensors reader: parses and range-checks the JSON header, then hands out pointers into
// the mapping. Nothing read from the file is used before it has been checked.
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../common/file_map.h"

struct cs_safetensors {
    cs_file_map map;               // empty when opened over a caller's buffer
    int n;
    cs_safetensors_tensor *t;      // n entries sorted by name; names owned here
};

// ---------------------------------------------------------------------------------------
// dtypes

typedef struct st_dtype {
    const char *name;
    int size;        // bytes per element
    bool supported;
    cs_dtype dtype;
} st_dtype;

// Every dtype the safetensors format defines today. Only the float types we compute with are
// supported; the others are listed so their sizes can still be checked.
static const st_dtype st_dtypes[] = {
    {"F32", 4, true, CS_DTYPE_F32},   {"F16", 2, true, CS_DTYPE_F16},
    {"BF16", 2, true, CS_DTYPE_BF16}, {"F64", 8, false, CS_DTYPE_F32},
    {"I64", 8, false, CS_DTYPE_F32},  {"U64", 8, false, CS_DTYPE_F32},
    {"I32", 4, false, CS_DTYPE_F32},  {"U32", 4, false, CS_DTYPE_F32},
    {"I16", 2, false, CS_DTYPE_F32},  {"U16", 2, false, CS_DTYPE_F32},
    {"I8", 1, false, CS_DTYPE_F32},   {"U8", 1, false, CS_DTYPE_F32},
    {"BOOL", 1, false, CS_DTYPE_F32}, {"F8_E4M3", 1, false, CS_DTYPE_F32},
    {"F8_E5M2", 1, false, CS_DTYPE_F32},
};

static const st_dtype *st_dtype_find(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
    return NULL;
}

int cs_safetensors_dtype_size(const char *dtype_name) {
    const st_dtype *d = st_dtype_find(dtype_name);
    return d ? d->size : 0;
}

// ---------------------------------------------------------------------------------------
// header parsing helpers

// A JSON number that is a non-negative integer small enough to be exact in a double.
static bool json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > 9007199254740992.0 || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

// Names end up in one-line error messages and in lookups by C string: no control bytes.
static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > CS_SAFETENSORS_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

// A dtype name we can print: short, [A-Z0-9_] only.
static bool dtype_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((cs_safetensors_tensor *)0)->dtype_name)) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

// Fills t from one header entry and checks it against the data section of data_size bytes.
// t->name is set by the caller.
static cs_status parse_entry(const cJSON *e, cs_safetensors_tensor *t, const unsigned char *data,
                             uint64_t data_size, const char *label, char *err, size_t errlen) {
    const char *nm = t->name;
    if (!cJSON_IsObject(e))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: tensor '%s': entry is not an object",
                       label, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !dtype_name_ok(dt->valuestring))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: tensor '%s': missing or bad dtype",
                       label, nm);
    strcpy(t->dtype_name, dt->valuestring); // length checked by dtype_name_ok
    const st_dtype *d = st_dtype_find(t->dtype_name);
    t->supported = d && d->supported;
    t->dtype = d ? d->dtype : CS_DTYPE_F32;

    if (!cJSON_IsArray(sh))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: tensor '%s': missing or bad shape",
                       label, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > CS_SAFETENSORS_MAX_DIMS)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: tensor '%s': %d dimensions (max %d)",
                       label, nm, nd, CS_SAFETENSORS_MAX_DIMS);
    t->n_dims = nd;
    uint64_t n_elems = 1;
    int i = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, sh) {
        uint64_t v;
        if (!json_u64(dim, &v) || v > INT64_MAX)
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           "%s: tensor '%s': shape[%d] is not a non-negative integer", label,
                           nm, i);
        if (v != 0 && n_elems > (uint64_t)INT64_MAX / v)
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           "%s: tensor '%s': shape overflows (element count too large)", label,
                           nm);
        n_elems *= v;
        t->shape[i++] = (int64_t)v;
    }
    t->n_elems = (int64_t)n_elems;

    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_u64(cJSON_GetArrayItem(off, 0), &b) || !json_u64(cJSON_GetArrayItem(off, 1), &en))
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets is not [begin, end]", label, nm);
    if (b > en)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets reversed (begin %llu > end %llu)", label,
                       nm, (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets end %llu is past the data section "
                       "(%llu bytes; file truncated?)",
                       label, nm, (unsigned long long)en, (unsigned long long)data_size);
    if (d) {
        if (n_elems > UINT64_MAX / (uint64_t)d->size || n_elems * (uint64_t)d->size != en - b)
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs "
                           "%llu",
                           label, nm, (unsigned long long)(en - b), t->dtype_name,
                           n_elems > UINT64_MAX / (uint64_t)d->size
                               ? (unsigned long long)UINT64_MAX
                               : (unsigned long long)(n_elems * (uint64_t)d->size));
    }
    t->begin = b;
    t->end = en;
    t->nbytes = (size_t)(en - b);
    t->data = data ? data + b : NULL;
    return CS_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const cs_safetensors_tensor *)a)->name,
                  ((const cs_safetensors_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
    const cs_safetensors_tensor *x = *(const cs_safetensors_tensor *const *)a;
    const cs_safetensors_tensor *y = *(const cs_safetensors_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// Sorts by name (rejecting duplicates), then checks in offset order that no two byte ranges
// overlap. Empty tensors occupy no bytes and overlap nothing.
static cs_status check_layout(cs_safetensors *st, const char *label, char *err, size_t errlen) {
    if (st->n == 0) return CS_OK;
    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_name);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->t[i - 1].name, st->t[i].name) == 0)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: tensor '%s' listed twice", label,
                           st->t[i].name);
    const cs_safetensors_tensor **by = malloc((size_t)st->n * sizeof *by);
    if (!by) return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", label);
    for (int i = 0; i < st->n; i++) by[i] = &st->t[i];
    qsort(by, (size_t)st->n, sizeof *by, cmp_begin);
    cs_status s = CS_OK;
    const cs_safetensors_tensor *prev = NULL;
    for (int i = 0; i < st->n && s == CS_OK; i++) {
        if (by[i]->begin == by[i]->end) continue;
        if (prev && by[i]->begin < prev->end)
            s = cs_errf(err, errlen, CS_ERR_FORMAT,
                        "%s: tensors '%s' and '%s' overlap in the data section", label,
                        prev->name, by[i]->name);
        prev = by[i];
    }
    free(by);
    return s;
}

// Walks the parsed header object into st->t. Owns nothing of root.
static cs_status parse_header_json(cs_safetensors *st, const cJSON *root,
                                   const unsigned char *data, uint64_t data_size,
                                   const char *label, char *err, size_t errlen) {
    int count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!e->string || strcmp(e->string, "__metadata__") != 0) count++;
    }
    if (count > 0) {
        st->t = calloc((size_t)count, sizeof *st->t);
        if (!st->t) return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", label);
    }
    cJSON_ArrayForEach(e, root) {
        if (!e->string)
            return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: header entry without a name", label);
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))
                return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: __metadata__ is not an object",
                               label);
            continue;
        }
        if (!name_ok(e->string))
            return cs_errf(err, errlen, CS_ERR_FORMAT,
                           "%s: tensor name is empty, longer than %d bytes or has control "
                           "characters",
                           label, CS_SAFETENSORS_MAX_NAME);
        cs_safetensors_tensor *t = &st->t[st->n];
        t->name = strdup(e->string);
        if (!t->name) return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", label);
        st->n++; // counted now so that cs_safetensors_free releases the name on failure
        cs_status s = parse_entry(e, t, data, data_size, label, err, errlen);
        if (s != CS_OK) return s;
    }
    return check_layout(st, label, err, errlen);
}

// Parses buf (size bytes, the whole file) into st. The cJSON tree lives only in here.
static cs_status parse_file(cs_safetensors *st, const unsigned char *buf, size_t size,
                            const char *label, char *err, size_t errlen) {
    if (size < 8)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: truncated (%zu bytes; a safetensors file starts with an 8-byte "
                       "header length)",
                       label, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > size - 8)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes)", label,
                       (unsigned long long)n, size);
    if (n > CS_SAFETENSORS_MAX_HEADER)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: header length %llu exceeds the %u limit",
                       label, (unsigned long long)n, CS_SAFETENSORS_MAX_HEADER);
    // cJSON wants a NUL-terminated buffer to be safe against reading past the header; the
    // copy is small next to the tensors.
    char *hdr = malloc((size_t)n + 1);
    if (!hdr) return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", label);
    memcpy(hdr, buf + 8, (size_t)n);
    hdr[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    cs_status s = CS_OK;
    if (!root) {
        size_t at = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : 0;
        s = cs_errf(err, errlen, CS_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)",
                    label, at);
    } else {
        // The writer pads the header with spaces to an 8-byte boundary; anything else after
        // the JSON value means a corrupt header.
        for (const char *p = end; p < hdr + n && s == CS_OK; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                s = cs_errf(err, errlen, CS_ERR_FORMAT,
                            "%s: header has bytes after its JSON value (at byte %zu)", label,
                            (size_t)(p - hdr));
        if (s == CS_OK && !cJSON_IsObject(root))
            s = cs_errf(err, errlen, CS_ERR_FORMAT, "%s: header JSON is not an object", label);
        if (s == CS_OK) {
            const unsigned char *data = buf + 8 + n;
            uint64_t data_size = (uint64_t)size - 8 - n;
            s = parse_header_json(st, root, data_size ? data : NULL, data_size, label, err,
                                  errlen);
        }
    }
    cJSON_Delete(root);
    free(hdr);
    return s;
}

// ---------------------------------------------------------------------------------------
// public API

cs_status cs_safetensors_open_memory(const void *data, size_t size, const char *label,
                                     cs_safetensors **out, char *err, size_t errlen) {
    *out = NULL;
    if (!label) label = "safetensors";
    cs_safetensors *st = calloc(1, sizeof *st);
    if (!st) return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", label);
    cs_status s = parse_file(st, data, size, label, err, errlen);
    if (s != CS_OK) {
        cs_safetensors_free(st);
        return s;
    }
    *out = st;
    return CS_OK;
}

cs_status cs_safetensors_open(const char *path, cs_safetensors **out, char *err,
                              size_t errlen) {
    *out = NULL;
    cs_file_map map;
    cs_status s = cs_file_map_open(path, &map, err, errlen);
    if (s != CS_OK) return s;
    cs_safetensors *st;
    s = cs_safetensors_open_memory(map.data, map.size, path, &st, err, errlen);
    if (s != CS_OK) {
        cs_file_unmap(&map);
        return s;
    }
    st->map = map;
    *out = st;
    return CS_OK;
}

void cs_safetensors_free(cs_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    free(st->t);
    cs_file_unmap(&st->map);
    free(st);
}

int cs_safetensors_n_tensors(const cs_safetensors *st) { return st->n; }

const cs_safetensors_tensor *cs_safetensors_tensor_at(const cs_safetensors *st, int i) {
    return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const cs_safetensors_tensor *cs_safetensors_find(const cs_safetensors *st, const char *name) {
    if (st->n == 0) return NULL;
    cs_safetensors_tensor key = {.name = name};
    return bsearch(&key, st->t, (size_t)st->n, sizeof *st->t, cmp_name);
}
