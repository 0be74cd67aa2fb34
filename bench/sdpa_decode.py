#!/usr/bin/env python3
"""torch scaled_dot_product_attention decode on the shapes of bench_attention_decode.

One query token per sequence, q (B, 32, 1, 128) against dense contiguous k, v (B, 8, L, 128)
bf16 with enable_gqa=True. CUDA-event median of 50 runs after 5 warm-ups, L2 flushed (and
swept by a read) before each; prints K/V bytes read per second as a share of the copy rate
measured here the same way as bench_cuda_util.h (a 1 GiB device-to-device copy, bytes read +
written). Exits 0 with one line when torch or CUDA is absent.
"""
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("sdpa_decode: torch not installed, nothing to measure")
    sys.exit(0)

N_RUNS, N_WARM = 50, 5
SHAPES = [(1, 8192), (64, 2048), (256, 1024), (1, 32768), (16, 4096)]
N_HEAD, N_KV, HD = 32, 8, 128


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_ms(fn, flush=None, runs=N_RUNS, warm=N_WARM):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for r in range(warm + runs):
        if flush is not None:
            flush()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        if r >= warm:
            ts.append(e0.elapsed_time(e1))
    return median(ts)


def copy_rate():
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = time_ms(lambda: b.copy_(a), runs=10, warm=3)
    del a, b
    return 2.0 * n / (ms * 1e-3)


def main():
    if not torch.cuda.is_available():
        print("sdpa_decode: no CUDA device, nothing to measure")
        return 0
    ceiling = copy_rate()
    print(f"device: {torch.cuda.get_device_name(0)}; device-to-device copy {ceiling / 1e12:.2f} TB/s "
          f"(read + write); torch {torch.__version__}\n")
    print("| kernel | shape | us | GB/s | % of copy | splits |\n|---|---|---|---|---|---|")
    # As bench_attention_decode: write 256 MB (bench_flush_l2), then read another 256 MB so
    # that the dirty lines are written back before the timed kernel, not inside it.
    flush_w = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    flush_r = torch.ones(64 << 20, dtype=torch.float32, device="cuda")

    def flush():
        flush_w.zero_()
        flush_r.sum()

    g = torch.Generator(device="cuda").manual_seed(0)
    for B, L in SHAPES:
        q = torch.rand(B, N_HEAD, 1, HD, device="cuda", dtype=torch.bfloat16, generator=g) * 2 - 1
        k = torch.rand(B, N_KV, L, HD, device="cuda", dtype=torch.bfloat16, generator=g) * 2 - 1
        v = torch.rand(B, N_KV, L, HD, device="cuda", dtype=torch.bfloat16, generator=g) * 2 - 1
        with torch.no_grad():
            ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), flush)
        nbytes = 2.0 * B * L * N_KV * HD * 2
        gbs = nbytes / (ms * 1e-3) / 1e9
        shape = f"B={B} L={L} {N_HEAD}/{N_KV} d{HD}"
        print(f"| torch SDPA | {shape:<24} | {ms * 1e3:8.1f} | {gbs:7.0f} | {100 * gbs * 1e9 / ceiling:5.1f}% | - |")
        del q, k, v
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
