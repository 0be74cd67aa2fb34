// safetensors reader: one file = 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__":
// {..}}), then the tensor data, with offsets relative to the start of the data.
//
//     cs_safetensors *st;
//     char err[CS_ERR_LEN];
//     if (cs_safetensors_open("model.safetensors", &st, err, sizeof err) != CS_OK) { ... }
//     const cs_safetensors_tensor *t = cs_safetensors_find(st, "model.norm.weight");
//     if (t && t->supported) use(t->data, t->nbytes);
//     cs_safetensors_free(st);
//
// Everything the header says is checked before use: the header length against the file, each
// shape against overflow, each [begin, end) against the data section and against the shape
// times the element size, and no two tensors may overlap. Tensors of a dtype we do not compute
// with (I8, F8_E4M3, ...) are listed with supported == false; refusing them, if they are
// needed, is the model loader's job.
#ifndef CS_SAFETENSORS_H
#define CS_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"
#include "../kernels/dtype.h"

#define CS_SAFETENSORS_MAX_DIMS 8
// A header larger than this is refused: real ones are a few hundred KB even for 70B models.
#define CS_SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u)
#define CS_SAFETENSORS_MAX_NAME 512

typedef struct cs_safetensors_tensor {
    const char *name;      // NUL-terminated copy owned by the cs_safetensors
    char dtype_name[16];   // as in the file: "F32", "BF16", "I8", ...
    bool supported;        // F32, F16 or BF16
    cs_dtype dtype;        // valid only when supported
    int n_dims;            // 0 (a scalar) .. CS_SAFETENSORS_MAX_DIMS
    int64_t shape[CS_SAFETENSORS_MAX_DIMS]; // as stored: shape[0] is the outermost dimension
    int64_t n_elems;
    uint64_t begin, end;   // byte range inside the data section
    const void *data;      // into the mapping; may be unaligned if the writer did not pad
    size_t nbytes;         // end - begin
} cs_safetensors_tensor;

typedef struct cs_safetensors cs_safetensors;

// Maps and validates a file. The caller frees *out with cs_safetensors_free.
cs_status cs_safetensors_open(const char *path, cs_safetensors **out, char *err,
                              size_t errlen);
// Same over a caller-owned buffer that must outlive the result (tests, the fuzzer). label
// names the buffer in error messages.
cs_status cs_safetensors_open_memory(const void *data, size_t size, const char *label,
                                     cs_safetensors **out, char *err, size_t errlen);
void cs_safetensors_free(cs_safetensors *st);

// Tensors are listed sorted by name.
int cs_safetensors_n_tensors(const cs_safetensors *st);
const cs_safetensors_tensor *cs_safetensors_tensor_at(const cs_safetensors *st, int i);
const cs_safetensors_tensor *cs_safetensors_find(const cs_safetensors *st, const char *name);
// Bytes per element of a safetensors dtype name, or 0 if the name is not one we know.
int cs_safetensors_dtype_size(const char *dtype_name);

#endif
