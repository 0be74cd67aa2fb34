// GGUF v2/v3 reader: header, metadata, tensor infos; tensor data is used in place (mmap).
//
//     cs_gguf *g;
//     char err[CS_ERR_LEN];
//     if (cs_gguf_open("model.gguf", &g, err, sizeof err) != CS_OK) { puts(err); return 2; }
//     uint32_t n_layer;
//     cs_gguf_get_u32(g, "llama.block_count", &n_layer);
//     const cs_gguf_tensor *t = cs_gguf_find_tensor(g, "token_embd.weight");
//     cs_gguf_free(g);
//
// Every count, length and offset read from the file is checked against the bytes that remain
// before it is used, so a truncated or hostile file gives an error, never an out-of-bounds read.
#ifndef CS_GGUF_H
#define CS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "../kernels/dtype.h"

typedef enum cs_gguf_type {
    CS_GGUF_UINT8 = 0,
    CS_GGUF_INT8 = 1,
    CS_GGUF_UINT16 = 2,
    CS_GGUF_INT16 = 3,
    CS_GGUF_UINT32 = 4,
    CS_GGUF_INT32 = 5,
    CS_GGUF_FLOAT32 = 6,
    CS_GGUF_BOOL = 7,
    CS_GGUF_STRING = 8,
    CS_GGUF_ARRAY = 9,
    CS_GGUF_UINT64 = 10,
    CS_GGUF_INT64 = 11,
    CS_GGUF_FLOAT64 = 12,
    CS_GGUF_TYPE_COUNT
} cs_gguf_type;

#define CS_GGUF_MAX_DIMS 4

typedef struct cs_gguf_tensor {
    const char *name;       // NUL-terminated copy owned by the cs_gguf
    uint32_t ggml_type;     // type id as stored in the file
    cs_dtype dtype;         // our type; valid only when supported is true
    bool supported;
    int n_dims;
    int64_t ne[CS_GGUF_MAX_DIMS]; // ne[0] is the innermost (row) length; unused dims are 1
    int64_t n_elems;
    uint64_t offset;        // from the start of the data section
    size_t nbytes;
    const void *data;       // into the mapping (aligned as general.alignment says)
} cs_gguf_tensor;

typedef struct cs_gguf cs_gguf;

// Opens and validates a GGUF file (mmapped). The caller frees *out with cs_gguf_free.
// Tensors of types we cannot compute with are listed with supported == false; it is the
// model loader's job to refuse them if it needs them.
cs_status cs_gguf_open(const char *path, cs_gguf **out, char *err, size_t errlen);
// Same over a caller-owned buffer that must outlive the cs_gguf (tests and the fuzzer).
cs_status cs_gguf_open_memory(const void *data, size_t size, cs_gguf **out, char *err,
                              size_t errlen);
void cs_gguf_free(cs_gguf *g);

uint32_t cs_gguf_version(const cs_gguf *g);
size_t cs_gguf_alignment(const cs_gguf *g);
size_t cs_gguf_file_size(const cs_gguf *g);

// --- metadata ---
int cs_gguf_n_kv(const cs_gguf *g);
const char *cs_gguf_kv_key(const cs_gguf *g, int i);
cs_gguf_type cs_gguf_kv_type(const cs_gguf *g, int i);
int cs_gguf_find_key(const cs_gguf *g, const char *key); // -1 if absent

// Scalar getters. They return false when the key is absent or its value does not fit the
// asked type (integers of any width convert when the value is in range; floats convert to
// float/double; a bool is not an integer).
bool cs_gguf_get_u32(const cs_gguf *g, const char *key, uint32_t *out);
bool cs_gguf_get_u64(const cs_gguf *g, const char *key, uint64_t *out);
bool cs_gguf_get_i64(const cs_gguf *g, const char *key, int64_t *out);
bool cs_gguf_get_f32(const cs_gguf *g, const char *key, float *out);
bool cs_gguf_get_bool(const cs_gguf *g, const char *key, bool *out);
// A string value: pointer into the mapping (not NUL-terminated) and its byte length.
bool cs_gguf_get_str(const cs_gguf *g, const char *key, const char **s, size_t *len);

// Arrays. cs_gguf_get_arr gives the element type and count. For non-string arrays *data
// points at the packed little-endian elements in the mapping (may be unaligned: memcpy).
bool cs_gguf_get_arr(const cs_gguf *g, const char *key, cs_gguf_type *elem_type,
                     uint64_t *n, const void **data);
// Element i of a string array (key index from cs_gguf_find_key). Checked at open time.
bool cs_gguf_arr_str(const cs_gguf *g, int kv_index, uint64_t i, const char **s, size_t *len);
// Reads element i of a numeric array as double / int64 (false on a type mismatch or range).
bool cs_gguf_arr_f64(const cs_gguf *g, int kv_index, uint64_t i, double *out);
bool cs_gguf_arr_i64(const cs_gguf *g, int kv_index, uint64_t i, int64_t *out);

// --- tensors ---
int cs_gguf_n_tensors(const cs_gguf *g);
const cs_gguf_tensor *cs_gguf_tensor_at(const cs_gguf *g, int i);
const cs_gguf_tensor *cs_gguf_find_tensor(const cs_gguf *g, const char *name);

const char *cs_gguf_type_name(cs_gguf_type t);
// Name of a ggml tensor type id ("Q4_K", ...), for error messages.
const char *cs_ggml_type_name(uint32_t ggml_type);

#endif
