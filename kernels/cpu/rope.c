#include "../kernels.h"

void cs_cpu_rope(float *x, const int32_t *pos, int n_tok, int n_heads, int head_dim,
                 int rope_dim, const float *cos_sin, int neox) {
    int half = rope_dim / 2;
    for (int t = 0; t < n_tok; t++) {
        const float *cs = cos_sin + (size_t)pos[t] * rope_dim;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x1 * c + x0 * s;
            }
        }
    }
}
