// The CUDA backend's C-callable launchers. No CUDA types appear here, so C code (engine,
// tests, benchmarks) includes it without nvcc; streams pass as void * (a cudaStream_t).
// Every launcher checks its preconditions (CS_ASSERT) and the launch (cudaGetLastError).
#ifndef CS_CUDA_KERNELS_H
#define CS_CUDA_KERNELS_H

#include <stdint.h>

#include "../dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// Number of usable CUDA devices; 0 when there is no driver or no device (never aborts).
int cs_cuda_device_count(void);

// Dequantises n_rows rows of row_len elements stored as type t (device memory, rows packed
// back to back) into bf16 (device memory, n_rows x row_len). row_len must be a multiple of
// cs_dtype_block_elems(t). Used to upload quantised weights for the dense bf16 path.
void cs_cuda_dequant_bf16(cs_dtype t, const void *src, uint16_t *dst, int64_t n_rows,
                          int64_t row_len, void *stream);

#ifdef __cplusplus
}
#endif

#endif
