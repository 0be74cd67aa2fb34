// Dense bf16 projections through cuBLAS. Row-major out (m, n) = x (m, k) @ w^T is, in
// cuBLAS's column-major terms, out^T (n, m) = op_T(w) (n, k) x^T (k, m): weights stay as
// stored (rows of k), activations too, nothing is transposed in memory.
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

#define CUBLAS_CHECK(call)                                                                 \
    do {                                                                                   \
        cublasStatus_t s_ = (call);                                                        \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
            fprintf(stderr, "%s:%d: cuBLAS error %d\n", __FILE__, __LINE__, (int)s_);      \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

// A fixed workspace keeps cuBLAS from allocating inside a CUDA-graph capture.
#define BLAS_WORKSPACE ((size_t)32 << 20)

struct cs_cuda_blas {
    cublasHandle_t h;
    void *workspace;
};

extern "C" cs_cuda_blas *cs_cuda_blas_init(void *stream) {
    cs_cuda_blas *b = (cs_cuda_blas *)calloc(1, sizeof *b);
    if (!b) return NULL;
    if (cublasCreate(&b->h) != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return NULL;
    }
    if (cudaMalloc(&b->workspace, BLAS_WORKSPACE) != cudaSuccess) {
        cublasDestroy(b->h);
        free(b);
        return NULL;
    }
    CUBLAS_CHECK(cublasSetStream(b->h, (cudaStream_t)stream));
    CUBLAS_CHECK(cublasSetWorkspace(b->h, b->workspace, BLAS_WORKSPACE));
    // no reduction in the output type (bf16) when cuBLAS splits k: fp32 to the end
    CUBLAS_CHECK(cublasSetMathMode(
        b->h, (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    return b;
}

extern "C" void cs_cuda_blas_free(cs_cuda_blas *b) {
    if (!b) return;
    cublasDestroy(b->h);
    cudaFree(b->workspace);
    free(b);
}

extern "C" void *cs_cuda_blas_stream(const cs_cuda_blas *b) {
    cudaStream_t s;
    CUBLAS_CHECK(cublasGetStream(b->h, &s));
    return s;
}

extern "C" void cs_cuda_gemm_ldo(cs_cuda_blas *b, void *out, int out_f32, int ldo, const uint16_t *x,
                                 const uint16_t *w, int m, int n, int k) {
    CS_ASSERT(b && m >= 1 && n >= 1 && k >= 1 && ldo >= n);
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_16BF, k, x,
                              CUDA_R_16BF, k, &zero, out, out_f32 ? CUDA_R_32F : CUDA_R_16BF, ldo,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

extern "C" void cs_cuda_gemm(cs_cuda_blas *b, void *out, int out_f32, const uint16_t *x, const uint16_t *w,
                             int m, int n, int k) {
    cs_cuda_gemm_ldo(b, out, out_f32, n, x, w, m, n, k);
}
