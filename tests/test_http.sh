#!/usr/bin/env bash
# End-to-end tests of the HTTP/OpenAI API of `cserve serve` (tests/http_e2e.py): the openai
# client, raw sockets, /metrics; with the openai, prometheus_client and jsonschema packages from
# the .venv scripts/setup.sh makes. Skipped (77) without the default model or those packages.
set -u
model=${CSERVE_MODEL:-}
if [ -z "$model" ] || [ ! -f "$model" ]; then
    echo "default model absent: skipping the HTTP end-to-end tests"
    exit 77
fi
: "${CSERVE_BIN:?CSERVE_BIN must name the cserve binary}"
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
if ! "$py" -c "import openai, prometheus_client, jsonschema" 2>/dev/null; then
    echo "python packages openai, prometheus_client, jsonschema not importable by $py" \
         "(scripts/setup.sh installs them into .venv): skipping the HTTP end-to-end tests"
    exit 77
fi
exec "$py" "$(dirname "$0")/http_e2e.py" "$@"
