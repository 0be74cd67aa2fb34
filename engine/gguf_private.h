// The parsed form of a GGUF file, shared by the parser (gguf.c) and the accessors (gguf_meta.c).
#ifndef CS_GGUF_PRIVATE_H
#define CS_GGUF_PRIVATE_H

#include "gguf.h"
#include "../common/file_map.h"

typedef struct gguf_kv {
    char *key;
    cs_gguf_type type;
    const unsigned char *val; // scalar bytes, or string length prefix
    // arrays
    cs_gguf_type arr_type;
    uint64_t arr_n;
    const unsigned char *arr_data;
    uint64_t *arr_str_pos;    // string arrays: position of each element's length prefix
} gguf_kv;

struct cs_gguf {
    cs_file_map map;          // owned when opened from a path
    const unsigned char *base;
    size_t size;
    uint32_t version;
    size_t alignment;
    int n_kv;
    gguf_kv *kv;
    int n_tensors;
    cs_gguf_tensor *tensors;
    size_t data_offset;
};

#endif
