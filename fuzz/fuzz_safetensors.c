// libFuzzer target: arbitrary bytes as a safetensors file. Every tensor the parser accepts
// is walked byte by byte, so ASan catches a range the validation let through.
#include <stddef.h>
#include <stdint.h>

#include "engine/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_safetensors *st;
    char err[CS_ERR_LEN];
    if (cs_safetensors_open_memory(data, size, "fuzz", &st, err, sizeof err) != CS_OK) return 0;
    volatile unsigned sum = 0;
    for (int i = 0; i < cs_safetensors_n_tensors(st); i++) {
        const cs_safetensors_tensor *t = cs_safetensors_tensor_at(st, i);
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        if (cs_safetensors_find(st, t->name) != t) __builtin_trap();
    }
    (void)sum;
    cs_safetensors_free(st);
    return 0;
}
