#!/usr/bin/env python3
"""Hugging Face `tokenizers` encode throughput on one core, same text as bench_tokenizer.c.

    RAYON_NUM_THREADS=1 python3 bench/bench_tokenizer_hf.py [text-file]

The tokenizer is the default model's, rebuilt from its GGUF (tools/hf_tokenizer_from_gguf.py),
or $CSERVE_HF_DIR/tokenizer.json when that exists.
"""
import os
import statistics
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from tokenizers import Tokenizer  # noqa: E402

TARGET_BYTES = 10 << 20
RUNS = 3


def corpus_text():
    one = bytearray()
    with open(os.path.join(ROOT, "tests", "fixtures", "tokenizer_smollm2.tsv"), encoding="ascii") as f:
        for line in f:
            if line.startswith("#"):
                continue
            one += bytes.fromhex(line.split("\t", 1)[0]) + b"\n"
    out = bytearray()
    while len(out) < TARGET_BYTES:
        out += one
    return bytes(out)


def load():
    hf_dir = os.environ.get("CSERVE_HF_DIR")
    if hf_dir and os.path.exists(os.path.join(hf_dir, "tokenizer.json")):
        return Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    import hf_tokenizer_from_gguf
    model = os.environ.get("CSERVE_MODEL") or os.path.join(ROOT, "models",
                                                          "SmolLM2-135M-Instruct.Q4_1.gguf")
    return hf_tokenizer_from_gguf.build(model)[0]


def main():
    tok = load()
    data = open(sys.argv[1], "rb").read() if len(sys.argv) > 1 else corpus_text()
    text = data.decode("utf-8")
    secs, n = [], 0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        n = len(tok.encode(text, add_special_tokens=False).ids)
        secs.append(time.perf_counter() - t0)
    med = statistics.median(secs)
    # The same text as lines (each keeps its "\n"), through encode_batch: HF's usual use.
    lines = [ln + "\n" for ln in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    lines = [ln for ln in lines if ln]
    bsecs, bn = [], 0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        bn = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        bsecs.append(time.perf_counter() - t0)
    bmed = statistics.median(bsecs)
    print(f"| impl | bytes | tokens | median s ({RUNS} runs) | tokens/s | MB/s |")
    print("|---|---|---|---|---|---|")
    print(f"| HF tokenizers, one string (1 thread) | {len(data)} | {n} | {med:.3f} | "
          f"{n / med:.0f} | {len(data) / med / 1e6:.1f} |")
    print(f"| HF tokenizers, lines (1 thread) | {len(data)} | {bn} | {bmed:.3f} | "
          f"{bn / bmed:.0f} | {len(data) / bmed / 1e6:.1f} |")


if __name__ == "__main__":
    main()
