// libFuzzer target: arbitrary bytes as a GGUF file. Opens it, reads every key through the
// typed getters and every array element, and touches every tensor's first and last byte.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void walk_kv(const cs_gguf *g, int i) {
    const char *key = cs_gguf_kv_key(g, i), *s;
    size_t len;
    uint64_t u;
    int64_t v;
    float f;
    bool b;
    sink += cs_gguf_get_u64(g, key, &u) + cs_gguf_get_i64(g, key, &v) + cs_gguf_get_f32(g, key, &f) +
            cs_gguf_get_bool(g, key, &b);
    if (cs_gguf_get_str(g, key, &s, &len) && len) sink += (unsigned char)s[len - 1];
    cs_gguf_type et;
    uint64_t n;
    const void *d;
    if (!cs_gguf_get_arr(g, key, &et, &n, &d)) return;
    for (uint64_t k = 0; k < n && k < 100000; k++) {
        double x;
        if (cs_gguf_arr_str(g, i, k, &s, &len) && len) sink += (unsigned char)s[len - 1];
        sink += cs_gguf_arr_i64(g, i, k, &v) + cs_gguf_arr_f64(g, i, k, &x);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_gguf *g;
    char err[CS_ERR_LEN];
    if (cs_gguf_open_memory(data, size, &g, err, sizeof err) != CS_OK) return 0;
    for (int i = 0; i < cs_gguf_n_kv(g); i++) walk_kv(g, i);
    for (int i = 0; i < cs_gguf_n_tensors(g); i++) {
        const cs_gguf_tensor *t = cs_gguf_tensor_at(g, i);
        const unsigned char *p = t->data;
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
        sink += cs_gguf_find_tensor(g, t->name) == t;
    }
    cs_gguf_free(g);
    return 0;
}
