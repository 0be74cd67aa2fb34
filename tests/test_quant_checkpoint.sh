#!/usr/bin/env bash
# AWQ / GPTQ checkpoints: tools/write_quantized_checkpoint.py writes a 2-layer model from the
# Hugging Face copy of the default model as fp32, AWQ, GPTQ and GPTQ v2 directories (the same
# int4 weights), and tests/check_quant_checkpoint.c checks that the loader repacks each into
# weights and logits bitwise equal to the fp32 copy's, and refuses the bad variants.
# Skipped (77) without the HF copy or a .venv python with numpy and safetensors.
set -u
bin=${CSERVE_BIN:?}
hf=${CSERVE_HF_DIR:-models/SmolLM2-135M-Instruct-hf}
py=.venv/bin/python
checker=$(dirname "$bin")/tests/check_quant_checkpoint
if [ ! -f "$hf/config.json" ]; then echo "no Hugging Face copy at $hf: skipped"; exit 77; fi
if ! "$py" -c 'import numpy, safetensors' 2>/dev/null; then echo "no $py with numpy and safetensors: skipped"; exit 77; fi
if [ ! -x "$checker" ]; then echo "FAILED: no checker at $checker" >&2; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$py" tools/write_quantized_checkpoint.py "$hf" "$tmp" || { echo "FAILED: the writer" >&2; exit 1; }
"$checker" "$tmp" || exit 1
# groups of 32 (I4_G32: fp32 d and m, so -z * s stays exact)
"$py" tools/write_quantized_checkpoint.py "$hf" "$tmp/g32" --group 32 || { echo "FAILED: the writer (group 32)" >&2; exit 1; }
"$checker" "$tmp/g32" 32 || exit 1
# cserve info names the checkpoint's format and group.
out=$("$bin" info --model "$tmp/gptq" 2>&1)
if ! grep -q '^checkpoint quant *GPTQ int4, group 64, as I4_G64$' <<<"$out"; then
    echo "FAILED: cserve info on the GPTQ checkpoint:" >&2
    echo "$out" >&2
    exit 1
fi
echo "cserve info: $(grep '^checkpoint quant' <<<"$out")"
