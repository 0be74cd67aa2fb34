// Dequantise GGUF-layout weights to bf16 on the device.
//
// One thread per 32 weights (a Q block, or one sub-block of an I4_Gg / I8_Gg group, which
// shares its group's d and m): blocks are 18-130 bytes at 2-byte alignment, so the reads
// are 2-byte loads of the scale(s) (an I4_Gg fp32 d or m as two of them) and byte loads of
// the codes, and the 32 outputs (64 bytes, 16-byte aligned because rows hold whole blocks) go
// out as four 16-byte stores. This runs once at load time; the hot-path matmul kernels read
// the packed codes directly.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../../common/assert.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace {

__device__ __forceinline__ float half_at(const unsigned char *p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(p)));
}

// An fp32 at 2-byte alignment (I4_Gg headers; dtype.h), as two 2-byte loads, little-endian.
__device__ __forceinline__ float f32_at(const unsigned char *p) {
    const unsigned short *h = reinterpret_cast<const unsigned short *>(p);
    return __uint_as_float((uint32_t)h[0] | (uint32_t)h[1] << 16);
}

__device__ __forceinline__ uint32_t pack2(float a, float b) {
    __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&v);
}

// Writes 32 floats as bf16 with four 16-byte stores.
__device__ __forceinline__ void store32(uint16_t *dst, const float *w) {
    uint4 *out = reinterpret_cast<uint4 *>(dst);
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const float *v = w + 8 * q;
        out[q] = make_uint4(pack2(v[0], v[1]), pack2(v[2], v[3]), pack2(v[4], v[5]), pack2(v[6], v[7]));
    }
}

// Weights per group and bytes per block of the block types (dtype.h).
__host__ __device__ constexpr bool is_i4(cs_dtype t) {
    return t == CS_DTYPE_Q4_1 || t == CS_DTYPE_I4_G32 || t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I4_G128;
}
__host__ __device__ constexpr int group_of(cs_dtype t) {
    return t == CS_DTYPE_I4_G64 || t == CS_DTYPE_I8_G64 ? 64 : t == CS_DTYPE_I4_G128 || t == CS_DTYPE_I8_G128 ? 128 : 32;
}
__host__ __device__ constexpr int block_bytes_of(cs_dtype t) {
    return t == CS_DTYPE_Q4_0 ? (int)sizeof(cs_block_q4_0)
           : t == CS_DTYPE_Q4_1 ? CS_I4_BLOCK_BYTES(32)
           : is_i4(t)         ? CS_I4F_BLOCK_BYTES(group_of(t))
                              : CS_I8_BLOCK_BYTES(group_of(t));
}

// n_sub: 32-weight sub-blocks in all (n / 32); thread b decodes sub-block b % (G / 32) of
// block b / (G / 32).
template <cs_dtype T>
__global__ void dequant_blocks(const unsigned char *__restrict__ src, uint16_t *__restrict__ dst,
                               int64_t n_sub) {
    constexpr int G = group_of(T), BB = block_bytes_of(T);
    int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_sub) return;
    const unsigned char *p = src + b / (G / 32) * BB;
    int s = (int)(b % (G / 32));
    float w[32];
    if (T == CS_DTYPE_Q8_0 || T == CS_DTYPE_I8_G64 || T == CS_DTYPE_I8_G128) {
        float d = half_at(p);
        const unsigned char *q = p + 2 + 32 * s;
#pragma unroll
        for (int j = 0; j < 32; j++) w[j] = __fmul_rn(d, (float)(signed char)q[j]);
    } else if (T == CS_DTYPE_Q4_0) {
        float d = half_at(p);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            w[j] = d * (float)((p[2 + j] & 0x0f) - 8);
            w[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
        }
    } else { // is_i4(T): Q4_1 has fp16 d, m; I4_Gg fp32 ones
        constexpr bool q4_1 = T == CS_DTYPE_Q4_1;
        float d = q4_1 ? half_at(p) : f32_at(p), m = q4_1 ? half_at(p + 2) : f32_at(p + 4);
        const unsigned char *q = p + (q4_1 ? 4 : 8) + 16 * s;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            // no fused multiply-add: the CPU reference rounds the product, then the sum
            w[j] = __fadd_rn(__fmul_rn(d, (float)(q[j] & 0x0f)), m);
            w[j + 16] = __fadd_rn(__fmul_rn(d, (float)(q[j] >> 4)), m);
        }
    }
    store32(dst + b * 32, w);
}

// Plain float types: one element per thread, grid-stride.
template <cs_dtype T>
__global__ void convert_elems(const void *__restrict__ src, uint16_t *__restrict__ dst, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v;
        if (T == CS_DTYPE_F32) v = static_cast<const float *>(src)[i];
        else if (T == CS_DTYPE_F16) v = __half2float(static_cast<const __half *>(src)[i]);
        else { dst[i] = static_cast<const uint16_t *>(src)[i]; continue; } // BF16: copy
        __nv_bfloat16 h = __float2bfloat16_rn(v);
        dst[i] = *reinterpret_cast<uint16_t *>(&h);
    }
}

} // namespace


extern "C" void cs_cuda_dequant_bf16(cs_dtype t, const void *src, uint16_t *dst, int64_t n_rows,
                                     int64_t row_len, void *stream) {
    CS_ASSERT(n_rows >= 0 && row_len >= 0 && row_len % cs_dtype_block_elems(t) == 0);
    CS_ASSERT(((uintptr_t)dst & 15) == 0 && ((uintptr_t)src & 1) == 0);
    int64_t n = n_rows * row_len;
    if (n == 0) return;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const int threads = 256;
    const unsigned char *p = static_cast<const unsigned char *>(src);
    int64_t nb = n / 32, grid_b = (nb + threads - 1) / threads; // 32-weight (sub-)blocks
    int64_t grid_e = (n + threads - 1) / threads;
    if (grid_e > 65535 * 8) grid_e = 65535 * 8;
    switch (t) {
    case CS_DTYPE_Q8_0: dequant_blocks<CS_DTYPE_Q8_0><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_Q4_0: dequant_blocks<CS_DTYPE_Q4_0><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_Q4_1: dequant_blocks<CS_DTYPE_Q4_1><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_I4_G32: dequant_blocks<CS_DTYPE_I4_G32><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_I4_G64: dequant_blocks<CS_DTYPE_I4_G64><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_I4_G128: dequant_blocks<CS_DTYPE_I4_G128><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_I8_G64: dequant_blocks<CS_DTYPE_I8_G64><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_I8_G128: dequant_blocks<CS_DTYPE_I8_G128><<<(unsigned)grid_b, threads, 0, s>>>(p, dst, nb); break;
    case CS_DTYPE_F32: convert_elems<CS_DTYPE_F32><<<(unsigned)grid_e, threads, 0, s>>>(src, dst, n); break;
    case CS_DTYPE_F16: convert_elems<CS_DTYPE_F16><<<(unsigned)grid_e, threads, 0, s>>>(src, dst, n); break;
    case CS_DTYPE_BF16: convert_elems<CS_DTYPE_BF16><<<(unsigned)grid_e, threads, 0, s>>>(src, dst, n); break;
    default: CS_ASSERT(0 && "bad dtype");
    }
    CUDA_CHECK(cudaGetLastError());
}
