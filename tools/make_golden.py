#!/usr/bin/env python3
"""Golden fixtures for the CPU forward pass, from Hugging Face transformers.

transformers loads the GGUF itself (dequantising every tensor to fp32 and undoing the q/k
permutation llama.cpp's converter applied), so the reference runs the same weights as cserve
in fp32. For each prompt it records the top-20 logits at several positions and the 32-token
greedy continuation; it also computes the perplexity of tests/fixtures/ppl_public_domain.txt
the way llama.cpp's perplexity tool does (non-overlapping windows of ctx tokens, scoring the
second half of each). Token ids come from the real SmolLM2 tokenizer rebuilt by
tools/hf_tokenizer_from_gguf.py.

    pip install torch transformers gguf tokenizers numpy
    python3 tools/make_golden.py models/SmolLM2-135M-Instruct.Q4_1.gguf tests/fixtures/golden_smollm2.json
"""
import json
import math
import os
import sys

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_tokenizer_from_gguf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PPL_TEXT = os.path.join(HERE, "..", "tests", "fixtures", "ppl_public_domain.txt")
PPL_CTX = 512
TOP = 20
GEN = 32


def prompts(text):
    chat = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
            "<|im_end|>\n<|im_start|>user\nWhat is the capital of France? Answer in one sentence."
            "<|im_end|>\n<|im_start|>assistant\n")
    code = ("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"
            "        return n\n")
    return [
        ("short", "The capital of France is"),
        ("chat", chat),
        ("code", code),
        ("paragraph", text[:900]),
        ("long", text[2000:5200]),
    ]


def top_logits(row):
    vals, ids = torch.topk(row, TOP)
    return {"ids": ids.tolist(), "values": [float(v) for v in vals]}


@torch.no_grad()
def golden_prompt(model, ids):
    x = torch.tensor([ids])
    logits = model(x).logits[0].float()
    n = len(ids)
    positions = sorted({0, 1, n // 3, n // 2, (2 * n) // 3, n - 2, n - 1} & set(range(n)))
    gen, seq = [], list(ids)
    for _ in range(GEN):
        nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
        gen.append(nxt)
        seq.append(nxt)
        if nxt == 2:  # <|im_end|>: generation would stop here
            break
    return {"positions": positions, "top": [top_logits(logits[p]) for p in positions], "greedy": gen}


@torch.no_grad()
def perplexity(model, ids, ctx):
    first = ctx // 2
    nll, count = 0.0, 0
    for start in range(0, len(ids) - ctx + 1, ctx):
        window = ids[start:start + ctx]
        logp = torch.log_softmax(model(torch.tensor([window])).logits[0].double(), -1)
        for i in range(first, ctx - 1):
            nll -= float(logp[i, window[i + 1]])
            count += 1
    return math.exp(nll / count), count


def main(gguf_path, out_path):
    torch.manual_seed(0)
    tok, _ = hf_tokenizer_from_gguf.build(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(gguf_path)),
                                                 gguf_file=os.path.basename(gguf_path),
                                                 torch_dtype=torch.float32)
    model.eval()
    text = open(PPL_TEXT, encoding="utf-8").read()
    cases = []
    for name, prompt in prompts(text):
        ids = tok.encode(prompt, add_special_tokens=False).ids[:512]
        g = golden_prompt(model, ids)
        g.update({"name": name, "prompt": prompt, "ids": ids})
        cases.append(g)
        print(f"{name}: {len(ids)} tokens, greedy {tok.decode(g['greedy'])!r}", file=sys.stderr)
    ppl_ids = tok.encode(text, add_special_tokens=False).ids
    ppl, count = perplexity(model, ppl_ids, PPL_CTX)
    print(f"perplexity {ppl:.4f} over {count} scored tokens ({len(ppl_ids)} tokens)", file=sys.stderr)
    out = {"model": os.path.basename(gguf_path), "transformers": __import__("transformers").__version__,
           "torch": torch.__version__, "dtype": "float32", "top_k": TOP, "cases": cases,
           "perplexity": {"file": "tests/fixtures/ppl_public_domain.txt", "ctx": PPL_CTX,
                          "n_tokens": len(ppl_ids), "scored": count, "ppl": ppl}}
    with open(out_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
