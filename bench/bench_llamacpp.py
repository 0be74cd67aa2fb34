#!/usr/bin/env python3
"""The peer to beat on the CPU: llama.cpp (through its PyPI package llama-cpp-python, which
builds it from source) on the same GGUF, the same prompt length and thread count as
bench_cpu_forward. Prints the same table rows.

    pip install llama-cpp-python
    python3 bench/bench_llamacpp.py models/SmolLM2-135M-Instruct.Q4_1.gguf 256 128 2
"""
import sys
import time

from llama_cpp import Llama


def main(model, n_prompt, n_gen, threads):
    llm = Llama(model_path=model, n_ctx=n_prompt + n_gen + 8, n_threads=threads, n_threads_batch=threads,
                n_batch=256, verbose=False)
    vocab = llm.n_vocab()
    prompt = [100 + (i * 7919) % (vocab - 200) for i in range(n_prompt)]  # as bench_cpu_forward
    llm.eval(prompt[:16])  # warm-up
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for _ in range(n_gen):
        tok = llm.sample(top_k=1)  # greedy, like bench_cpu_forward
        llm.eval([tok])
    t2 = time.perf_counter()
    print(f"llama.cpp {model}, {threads} threads")
    print("| phase | tokens | tok/s |\n|---|---|---|")
    print(f"| prompt (prefill, batch 256) | {n_prompt} | {n_prompt / (t1 - t0):.1f} |")
    print(f"| generation (decode) | {n_gen} | {n_gen / (t2 - t1):.1f} |")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0] if a else "models/SmolLM2-135M-Instruct.Q4_1.gguf", int(a[1]) if len(a) > 1 else 256,
         int(a[2]) if len(a) > 2 else 128, int(a[3]) if len(a) > 3 else 2)
