#include "../kernels.h"

#include <stddef.h>

void cs_cpu_embed(float *out, const void *table, cs_dtype t, const int32_t *ids, int n, int dim) {
    size_t row_bytes = 0;
    cs_dtype_row_bytes(t, dim, &row_bytes);
    for (int i = 0; i < n; i++)
        cs_cpu_dequant_row(t, (const unsigned char *)table + (size_t)ids[i] * row_bytes,
                           out + (size_t)i * dim, dim);
}
