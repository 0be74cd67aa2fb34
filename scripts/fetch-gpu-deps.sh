#!/usr/bin/env bash
# The GPU machine has no network and no Debian packages, so cJSON travels with the working
# tree: this extracts Debian's libcjson-dev and libcjson1 into .deps/ (git-ignored), which
# scripts/gpu-check.sh hands to CMake. Run it here, then carry .deps to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .deps/usr/include/cjson/cJSON.h ] && exit 0
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libcjson-dev libcjson1 >/dev/null)
mkdir -p .deps
for deb in "$tmp"/*.deb; do dpkg -x "$deb" .deps; done
rm -rf "$tmp"
echo "cJSON extracted into .deps/usr"
