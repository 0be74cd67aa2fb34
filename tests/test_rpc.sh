#!/usr/bin/env bash
# End-to-end tests of `cserve serve` (JSON-RPC 2.0 over TCP and a Unix socket), driven by
# tests/rpc_e2e.py (Python 3 standard library only). Skipped (77) without the default model.
set -u
model=${CSERVE_MODEL:-}
if [ -z "$model" ] || [ ! -f "$model" ]; then
    echo "default model absent: skipping the RPC end-to-end tests"
    exit 77
fi
: "${CSERVE_BIN:?CSERVE_BIN must name the cserve binary}"
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 absent: skipping the RPC end-to-end tests"
    exit 77
fi
exec python3 "$(dirname "$0")/rpc_e2e.py" "$@"
