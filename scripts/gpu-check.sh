#!/usr/bin/env bash
# The whole GPU check in one command, on a fresh GPU machine: build for the card, run the
# ctest label gpu, run the GPU benchmarks, and leave logs and a results table in $1 (or $OUT).
# Prints the table last. Needs cJSON: the system's, or .deps/ from scripts/fetch-gpu-deps.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
arch=${CSERVE_CUDA_ARCH:-90a}
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
deps=()
[ -d .deps/usr ] && deps=(-DCSERVE_DEPS_DIR="$PWD/.deps/usr")
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
echo "== build (sm_$arch)"
if ! { cmake -S . -B build-gpu "${gen[@]}" -DCSERVE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
        "${deps[@]}" && cmake --build build-gpu -j "$(nproc)"; } >"$out/build.log" 2>&1; then
    tail -50 "$out/build.log"
    echo "BUILD FAILED"
    exit 1
fi

echo "== ctest -L gpu"
ctest --test-dir build-gpu -L gpu --output-on-failure 2>&1 | tee "$out/ctest-gpu.log" | tail -30
grep -q "100% tests passed" "$out/ctest-gpu.log" || status=1

echo "== benchmarks"
: >"$out/results.md"
for b in build-gpu/bench_dequant; do
    [ -x "$b" ] || continue
    "$b" 2>&1 | tee "$out/$(basename "$b").log" >>"$out/results.md" || status=1
    echo >>"$out/results.md"
done

echo
echo "== results ($(head -1 "$out/gpu.txt"), $(date -u +%Y-%m-%d))"
cat "$out/results.md"
exit $status
