// The backend interface. Every kernel has a plain C reference in kernels/cpu/ (the oracle and
// the CPU path) and, where it pays, a CUDA version in kernels/cuda/ with the same arguments.
// Shapes are given row-major with the innermost dimension last in comments: x (n, k).
#ifndef CS_KERNELS_H
#define CS_KERNELS_H

#include <stdint.h>

#include "dtype.h"

// Dequantises n elements of one row stored as type t into fp32. n must be a multiple of
// cs_dtype_block_elems(t). Exact: the result is the value the format defines, computed in fp32.
void cs_cpu_dequant_row(cs_dtype t, const void *src, float *dst, int64_t n);

#endif
