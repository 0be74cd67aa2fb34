#!/usr/bin/env bash
# End-to-end tests of constrained decoding over the RPC server (tests/constrained_e2e.py),
# with the jsonschema package from the .venv scripts/setup.sh makes. Skipped (77) without the
# default model.
set -u
model=${CSERVE_MODEL:-}
if [ -z "$model" ] || [ ! -f "$model" ]; then
    echo "default model absent: skipping the constrained decoding end-to-end tests"
    exit 77
fi
: "${CSERVE_BIN:?CSERVE_BIN must name the cserve binary}"
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
exec "$py" "$(dirname "$0")/constrained_e2e.py" "$@"
