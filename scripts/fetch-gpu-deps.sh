#!/usr/bin/env bash
# The GPU machine has no network and no Debian packages, so what the GPU check needs travels
# with the working tree in .deps/ (git-ignored): Debian's libcjson-dev and libcjson1 extracted,
# which scripts/gpu-check.sh hands to CMake; the PyTorch decode baseline from ../shared; and the
# default model cut to 4 layers (tools/cut_gguf.py) for the real-weights GPU test.
# Run it here, then carry .deps to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .deps/usr/include/cjson/cJSON.h ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download libcjson-dev libcjson1 >/dev/null)
    mkdir -p .deps
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" .deps; done
    rm -rf "$tmp"
    echo "cJSON extracted into .deps/usr"
fi
mkdir -p .deps/baselines
[ -f ../shared/baselines/torch_decode.py ] && cp ../shared/baselines/torch_decode.py .deps/baselines/
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$model" ] && [ ! -f .deps/smollm2-4l.gguf ]; then
    py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python
    "$py" tools/cut_gguf.py "$model" 4 .deps/smollm2-4l.gguf
    echo "default model cut to 4 layers: .deps/smollm2-4l.gguf"
fi
