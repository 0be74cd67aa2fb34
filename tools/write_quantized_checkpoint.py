#!/usr/bin/env python3
"""Write a small int4 checkpoint in the Hugging Face AWQ and GPTQ layouts, and its fp32 twin.

    python3 tools/write_quantized_checkpoint.py [HF_DIR] OUT_DIR [--layers N] [--group G]

Defaults: models/SmolLM2-135M-Instruct-hf, 2 layers, group 64 (576, the hidden size, is not
a multiple of 128). From HF_DIR's first N layers (config num_hidden_layers = N) it writes:

  OUT_DIR/fp32/     plain safetensors: each linear weight of the layers is the dequantised
                    int4 value, as fp32
  OUT_DIR/awq/      the same codes, zeros and fp16 scales packed as AutoAWQ's GEMM version
  OUT_DIR/gptq/     ... as AutoGPTQ's default checkpoint format (zeros stored minus one),
                    plus a quantised layer the engine does not use (mlp.unused_proj)
  OUT_DIR/gptq_v2/  ... as GPTQModel's gptq_v2 format (zeros stored as they are)
  OUT_DIR/gptq_desc_act/  gptq/ with desc_act true: its g_idx is in order, so it loads
  OUT_DIR/bad/...   checkpoints cserve must refuse with a clear error (see bad_variants)

Embeddings and norms are copied into every directory as fp16 (the same bits in each, so that
logits can be compared bit for bit; fp16 keeps the directories small), with the tokenizer
files. tests/test_quant_checkpoint.sh runs this and tests/check_quant_checkpoint.c.

Quantisation, per output row and group of G inputs, asymmetric round to nearest:
  scale = fp16((max - min) / 15)   (a zero range gets the smallest normal fp16)
  z     = clamp(round(-min / scale), 1, 15)
  q     = clamp(round(w / scale) + z, 0, 15)
  w'    = float32(scale) * (q - z), computed in float32
z starts at 1, not 0, because the default GPTQ format stores z - 1 in 4 bits: z = 0 would
be stored as 15 and read back as 16 (a known quirk of that format).

w' is what cserve's I4_Gg dequantiser computes, bit for bit: it stores d = scale and
m = -(z * scale) in fp32 and computes d * q + m, each step rounded to fp32. Every one of
those steps is exact (scale has 11 significant bits, q and z at most 5, so d * q, z * scale
and their sum s * (q - z) fit fp32's 24), hence equal to float32(scale) * (q - z). The tool
computes both and checks that they agree.

Packing (int32 words of eight 4-bit fields, field j at bits 4j..4j+3):
  GPTQ qweight (in/8, out): field j of [i][n] = q of input 8i+j, output n
       qzeros (in/G, out/8): field j of [g][c] = zero of output 8c+j (gptq: z - 1; gptq_v2: z)
       g_idx (in) = k // G
  AWQ  qweight (in, out/8): field i of [k][c] = q of input k, output 8c + ORDER[i]
       qzeros (in/G, out/8): packed the same way
  scales (in/G, out) fp16 in both.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]


def load_tensors(hf_dir):
    """Every tensor of the directory (single file or sharded), by name."""
    single = os.path.join(hf_dir, "model.safetensors")
    if os.path.isfile(single):
        return load_file(single)
    with open(os.path.join(hf_dir, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for name in files:
        out.update(load_file(os.path.join(hf_dir, name)))
    return out


def quantize(w, group):
    """w (out, in) float32 -> codes q (out, in), zeros z (out, in/G), fp16 scales (out, in/G)
    and the float32 dequantised weights."""
    rows, cols = w.shape
    wg = w.reshape(rows, cols // group, group).astype(np.float32)
    lo, hi = wg.min(axis=2), wg.max(axis=2)
    scale = ((hi - lo) / np.float32(15)).astype(np.float16)
    scale[scale == 0] = np.float16(6.104e-05)  # smallest normal fp16
    s32 = scale.astype(np.float32)
    z = np.clip(np.round(-lo / s32), 1, 15).astype(np.int32)
    q = np.clip(np.round(wg / s32[:, :, None]) + z[:, :, None], 0, 15).astype(np.int32)
    deq = s32[:, :, None] * (q - z[:, :, None]).astype(np.float32)
    # cserve's formula, d * q + m with m = -(z * d), each step in float32: must be the same.
    m = -(z.astype(np.float32) * s32)
    ours = s32[:, :, None] * q.astype(np.float32) + m[:, :, None]
    assert deq.dtype == np.float32 and np.array_equal(deq.view(np.uint32), ours.view(np.uint32))
    return q.reshape(rows, cols), z, scale, deq.reshape(rows, cols)


def pack_fields(x):
    """(..., 8) ints 0..15 -> (...) int32, field j at bits 4j."""
    word = np.zeros(x.shape[:-1], dtype=np.uint32)
    for j in range(8):
        word |= (x[..., j].astype(np.uint32) & 15) << np.uint32(4 * j)
    return word.view(np.int32)


def pack_gptq(q, z, scale, group, v2):
    rows, cols = q.shape  # (out, in)
    qt = q.T  # (in, out)
    qweight = pack_fields(qt.reshape(cols // 8, 8, rows).transpose(0, 2, 1))
    zs = z.T if v2 else (z.T - 1)  # (in/G, out)
    qzeros = pack_fields(zs.reshape(cols // group, rows // 8, 8))
    g_idx = (np.arange(cols) // group).astype(np.int32)
    return {"qweight": qweight, "qzeros": qzeros, "scales": scale.T.copy(), "g_idx": g_idx}


def pack_awq(q, z, scale, group):
    rows, cols = q.shape
    qt = q.T.reshape(cols, rows // 8, 8)[:, :, AWQ_ORDER]  # field i holds output 8c + ORDER[i]
    zt = z.T.reshape(cols // group, rows // 8, 8)[:, :, AWQ_ORDER]
    return {"qweight": pack_fields(qt), "qzeros": pack_fields(zt), "scales": scale.T.copy()}


def write_dir(path, config, tensors, hf_dir, quant_config=None):
    os.makedirs(path, exist_ok=True)
    cfg = dict(config)
    if quant_config:
        cfg["quantization_config"] = quant_config
        cfg["torch_dtype"] = "float16"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file(tensors, os.path.join(path, "model.safetensors"))
    for name in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(hf_dir, name)):
            shutil.copy(os.path.join(hf_dir, name), os.path.join(path, name))


def link_dir(path, target, config):
    """A directory with its own config.json and the target's other files, symlinked."""
    os.makedirs(path, exist_ok=True)
    for name in ["model.safetensors"] + TOKENIZER_FILES:
        if os.path.exists(os.path.join(target, name)):
            os.symlink(os.path.relpath(os.path.join(target, name), path), os.path.join(path, name))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def bad_variants(out, cfg, gptq_qc, awq_qc, first):
    """Checkpoints cserve must refuse, each named for what is wrong. first: layer 0's q_proj
    in both packings; a variant whose error comes from the tensors holds only that layer (the
    loader repacks before it looks for the rest)."""
    bad = os.path.join(out, "bad")
    link_dir(os.path.join(bad, "bits8"), os.path.join(out, "awq"),
             dict(cfg, quantization_config=dict(awq_qc, bits=8)))
    link_dir(os.path.join(bad, "group16"), os.path.join(out, "gptq"),
             dict(cfg, quantization_config=dict(gptq_qc, group_size=16)))
    prefix = "model.layers.0.self_attn.q_proj."
    g = dict(first["gptq"])
    write_dir(os.path.join(bad, "desc_act_no_g_idx"), dict(cfg, quantization_config=dict(gptq_qc, desc_act=True)),
              {prefix + k: v for k, v in g.items() if k != "g_idx"}, out)
    perm = np.random.default_rng(7).permutation(g["g_idx"])  # act-order: groups permuted
    write_dir(os.path.join(bad, "act_order"), dict(cfg, quantization_config=dict(gptq_qc, desc_act=True)),
              {prefix + k: v for k, v in dict(g, g_idx=perm).items()}, out)
    a = dict(first["awq"])
    a["qweight"] = a["qweight"][:, :-1].copy()  # one packed column short
    write_dir(os.path.join(bad, "qweight_shape"), dict(cfg, quantization_config=awq_qc),
              {prefix + k: v for k, v in a.items()}, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="[HF_DIR] OUT_DIR")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--group", type=int, default=64)
    a = ap.parse_args()
    if len(a.paths) > 2:
        ap.error("expected [HF_DIR] OUT_DIR")
    hf_dir = a.paths[0] if len(a.paths) == 2 else "models/SmolLM2-135M-Instruct-hf"
    out = a.paths[-1]
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = a.layers
    src = load_tensors(hf_dir)

    floats, parts = {}, {"awq": {}, "gptq": {}, "gptq_v2": {}}
    first = {}
    for name, t in src.items():
        if name.startswith("model.layers."):
            layer = int(name.split(".")[2])
            if layer >= a.layers:
                continue
            prefix = name[: -len(".weight")] if name.endswith(".weight") else None
            if prefix and any(prefix.endswith("." + l) for l in LINEARS):
                q, z, scale, deq = quantize(t.astype(np.float32), a.group)
                floats[name] = deq
                packed = {"awq": pack_awq(q, z, scale, a.group),
                          "gptq": pack_gptq(q, z, scale, a.group, v2=False),
                          "gptq_v2": pack_gptq(q, z, scale, a.group, v2=True)}
                for fmt, p in packed.items():
                    for k, v in p.items():
                        parts[fmt][prefix + "." + k] = v
                if prefix == "model.layers.0.self_attn.q_proj":
                    first = packed
                continue
        if name.startswith("model.") or name == "lm_head.weight":
            # embeddings and norms: fp16, the same bits in every directory
            floats[name] = t.astype(np.float16)
    others = {k: v for k, v in floats.items() if v.dtype == np.float16}
    for fmt in parts:
        parts[fmt].update(others)
    # A quantised layer the engine has no use for: the loader must skip it, not fail.
    for k, v in first["gptq"].items():
        parts["gptq"]["model.layers.0.mlp.unused_proj." + k] = v

    gptq_qc = {"quant_method": "gptq", "bits": 4, "group_size": a.group, "desc_act": False, "sym": False,
               "checkpoint_format": "gptq"}
    awq_qc = {"quant_method": "awq", "bits": 4, "group_size": a.group, "zero_point": True, "version": "gemm"}
    write_dir(os.path.join(out, "fp32"), cfg, floats, hf_dir)
    write_dir(os.path.join(out, "awq"), cfg, parts["awq"], hf_dir, awq_qc)
    write_dir(os.path.join(out, "gptq"), cfg, parts["gptq"], hf_dir, gptq_qc)
    write_dir(os.path.join(out, "gptq_v2"), cfg, parts["gptq_v2"], hf_dir, dict(gptq_qc, checkpoint_format="gptq_v2"))
    # desc_act true, but g_idx is k // G: the groups are in order, so it loads
    link_dir(os.path.join(out, "gptq_desc_act"), os.path.join(out, "gptq"),
             dict(cfg, quantization_config=dict(gptq_qc, desc_act=True)))
    bad_variants(out, cfg, gptq_qc, awq_qc, first)
    print(f"wrote {out}/{{fp32,awq,gptq,gptq_v2,gptq_desc_act,bad}}: {a.layers} layers, group {a.group}, "
          f"{len(parts['awq']) - len(others)} quantised tensors per format")
    return 0


if __name__ == "__main__":
    sys.exit(main())
