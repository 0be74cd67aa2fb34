#include <math.h>

#include "../kernels.h"

void cs_cpu_swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void cs_cpu_add(float *x, const float *y, int n) {
    for (int i = 0; i < n; i++) x[i] += y[i];
}
