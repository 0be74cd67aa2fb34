#!/usr/bin/env python3
"""torch's int4 weight-only matmul (torch._weight_int4pack_mm, tinygemm) and its bf16 linear on
the shapes of bench_qmatmul (K x N, Llama-3-8B projections; M = 1 .. 256), group 128.

CUDA-event median of 30 runs after 3 warm-ups, weights rotated through copies past the L2 as
bench_qmatmul does. Prints µs, and for int4 the packed bytes (codes + bf16 scales and zeros)
read per second. Exits 0 with one line when torch or CUDA is absent.
"""
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_int4: torch not installed, nothing to measure")
    sys.exit(0)

RUNS, WARM, GROUP = 30, 3, 128
SHAPES = [(4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096), (4096, 128256)]
MS = [1, 4, 16, 32, 64, 128, 256]
ROTATE = 256 << 20


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_us(fns):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for r in range(WARM + RUNS):
        fn = fns[r % len(fns)]
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        if r >= WARM:
            ts.append(e0.elapsed_time(e1) * 1e3)
    return median(ts)


def pack_int4(k, n):
    """Random int4 codes packed for tinygemm, and its (K / g, N, 2) bf16 scales and zeros."""
    q = torch.randint(0, 16, (n, k), dtype=torch.int32, device="cuda")
    pairs = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)  # (N, K / 2)
    w = torch._convert_weight_to_int4pack(pairs, 8)
    sz = torch.empty(k // GROUP, n, 2, dtype=torch.bfloat16, device="cuda")
    sz[..., 0].uniform_(0.001, 0.02)
    sz[..., 1].uniform_(-0.1, 0.1)
    return w, sz


def main():
    if not torch.cuda.is_available():
        print("torch_int4: no CUDA device")
        return
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; int4 group {GROUP}\n")
    print("| K x N | M | torch int4 µs | int4 GB/s | torch bf16 µs | bf16 / int4 |")
    print("|---|---|---|---|---|---|")
    for k, n in SHAPES:
        try:
            packed_bytes = n * k // 2 + (k // GROUP) * n * 4
            copies = max(1, min(16, -(-ROTATE // packed_bytes)))
            q = [pack_int4(k, n) for _ in range(copies)]
            bf_copies = max(1, min(16, -(-ROTATE // (n * k * 2))))
            wb = [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(bf_copies)]
        except Exception as e:  # noqa: BLE001 - the private API changes between versions
            print(f"| {k}x{n} | - | n/a: {type(e).__name__}: {e} |")
            continue
        for m in MS:
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            try:
                t4 = time_us([lambda w=w, sz=sz: torch._weight_int4pack_mm(x, w, GROUP, sz) for w, sz in q])
                s4 = f"{t4:.1f} | {packed_bytes / (t4 * 1e-6) / 1e9:.0f}"
            except Exception as e:  # noqa: BLE001
                t4, s4 = float("nan"), f"n/a ({type(e).__name__}) | -"
            tb = time_us([lambda w=w: F.linear(x, w) for w in wb])
            print(f"| {k}x{n} | {m} | {s4} | {tb:.1f} | {tb / t4:.2f}x |", flush=True)
        del q, wb
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
