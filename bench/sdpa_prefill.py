#!/usr/bin/env python3
"""torch scaled_dot_product_attention on the shapes of bench_attention_prefill.c: causal
prefill, 32 query / 8 KV heads (enable_gqa), head_dim 128, bf16, dense (B, H, L, D) tensors.
Prints the same markdown table (CUDA-event median) with the torch bf16 matmul rate (8192^3)
as the ceiling. Exits 0 printing one line when torch or CUDA is absent."""
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("sdpa_prefill: torch not installed, nothing to measure")
    sys.exit(0)
if not torch.cuda.is_available():
    print("sdpa_prefill: no CUDA device")
    sys.exit(0)

N_HEAD, N_KV, D = 32, 8, 128


def median_ms(fn, runs, warmup=3):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for r in range(warmup + runs):
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        if r >= warmup:
            times.append(e0.elapsed_time(e1))
    times.sort()
    return times[len(times) // 2]


def gemm_rate():
    n = 8192
    a = torch.rand(n, n, device="cuda", dtype=torch.bfloat16) * 2 - 1
    b = torch.rand(n, n, device="cuda", dtype=torch.bfloat16) * 2 - 1
    ms = median_ms(lambda: torch.matmul(a, b), 20)
    return 2 * n**3 / (ms * 1e-3)


def bench(shape, batch, length, runs, gemm):
    q = torch.rand(batch, N_HEAD, length, D, device="cuda", dtype=torch.bfloat16) * 2 - 1
    k = torch.rand(batch, N_KV, length, D, device="cuda", dtype=torch.bfloat16) * 2 - 1
    v = torch.rand(batch, N_KV, length, D, device="cuda", dtype=torch.bfloat16) * 2 - 1
    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    ms = median_ms(fn, runs)
    pairs = batch * length * (length + 1) / 2
    tfs = 4 * N_HEAD * D * pairs / (ms * 1e-3) / 1e12
    print(f"| torch SDPA | {shape} | {ms * 1e3:9.1f} | {tfs:6.1f} | {100 * tfs * 1e12 / gemm:5.1f}% |")


def main():
    gemm = gemm_rate()
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"torch bf16 matmul 8192^3 {gemm / 1e12:.0f} TFLOP/s\n")
    print("| kernel | shape (causal, 32/8 heads, d128, block 16) | us | TFLOP/s | % of GEMM |")
    print("|---|---|---|---|---|")
    bench("1 x 1024", 1, 1024, 50, gemm)
    bench("1 x 4096", 1, 4096, 30, gemm)
    bench("1 x 16384", 1, 16384, 10, gemm)
    bench("8 x 1024", 8, 1024, 30, gemm)


if __name__ == "__main__":
    main()
