#!/usr/bin/env bash
# Every test: installs what is missing (scripts/setup.sh), then
#   1. release build (-Werror; CUDA sources compiled when nvcc is present), ctest;
#   2. ASan+UBSan build, ctest (the "slow" whole-engine test as a chosen subset);
#   3. each libFuzzer target for CSERVE_FUZZ_SECONDS (default 10), one per core at a time from its seed corpus.
# GPU tests (ctest label gpu) skip without a device. Ends with one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --for-tests

jobs=$(nproc)
fuzz_seconds=${CSERVE_FUZZ_SECONDS:-8} # each; CI has 20 minutes for everything
passed=0
failed=0

# Runs ctest in build dir $1 (further arguments go to ctest) and adds its counts to the totals.
run_ctest() {
    local log dir=$1
    shift
    log=$(mktemp)
    if ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log"; then :; fi
    local line total bad
    line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1 || true)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "[test] ctest in $dir printed no summary" >&2
        failed=$((failed + 1))
        return
    fi
    bad=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + total - bad))
    failed=$((failed + bad))
}

echo "[test] release build (at ${SECONDS}s)"
# CUDA (when nvcc is there) for sm_80 and sm_90a: both code paths of every kernel compile,
# in two thirds of the time of the default three architectures
cuda_arch=()
[ -z "${CSERVE_TEST_ALL_ARCHS:-}" ] && cuda_arch=(-DCMAKE_CUDA_ARCHITECTURES="80;90a")
cmake -S . -B build -G Ninja -DCSERVE_WERROR=ON "${cuda_arch[@]}" >/dev/null
cmake --build build -j "$jobs"
run_ctest build

echo "[test] ASan+UBSan build (at ${SECONDS}s)"
cmake -S . -B build-asan -G Ninja -DCSERVE_WERROR=ON -DCSERVE_SANITIZE=ON -DCSERVE_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
run_ctest build-asan -LE slow
# The engine test's quicker parts under the sanitizers: every scheduler path (prefill,
# decode, n > 1 forks and copy-on-write, preemption, cancellation, prompt logprobs, errors,
# async scheduling's pipeline).
# Batch invariance, prefix reuse and the 1,000-request leak test run in the release pass.
if [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    for part in rejects max_tokens_zero prompt_logprobs cancel n_and_seed preemption async_scheduling; do
        if CSERVE_MODEL="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf" build-asan/tests/test_engine "$part" \
            >"build-asan/test_engine_$part.log" 2>&1; then
            echo "[test] ASan test_engine $part: ok ($(tail -1 "build-asan/test_engine_$part.log"))"
            passed=$((passed + 1))
        else
            echo "[test] ASan test_engine $part: FAILED" >&2
            tail -40 "build-asan/test_engine_$part.log" >&2
            failed=$((failed + 1))
        fi
    done
fi
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "[test] fuzzers, ${fuzz_seconds}s each (at ${SECONDS}s)"
CC=clang cmake -S . -B build-fuzz -G Ninja -DCSERVE_FUZZ=ON -DCSERVE_SANITIZE=ON -DCSERVE_CUDA=OFF \
    >/dev/null
# only the fuzz targets: the tests and benchmarks were built (and run) twice already
fuzz_targets=()
for src in fuzz/fuzz_*.c; do fuzz_targets+=("$(basename "$src" .c)"); done
cmake --build build-fuzz -j "$jobs" --target "${fuzz_targets[@]}"
seeds=build-fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds/gguf"
build/tests/test_gguf --write-seeds "$seeds/gguf"
export CSERVE_MODEL="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
# Runs fuzzer $1 for fuzz_seconds from its seeds; its log says how it went.
fuzz_one() {
    local f=$1 name corpus
    name=$(basename "$f")
    corpus="$seeds/${name#fuzz_}"
    mkdir -p "$corpus" "$seeds/run-$name"
    [ -d "fuzz/seeds/${name#fuzz_}" ] && cp -r "fuzz/seeds/${name#fuzz_}/." "$corpus/"
    if "$f" -max_total_time="$fuzz_seconds" -max_len=65536 -rss_limit_mb=4096 -timeout=20 \
        -print_final_stats=0 "$seeds/run-$name" "$corpus" >"$seeds/$name.log" 2>&1; then
        echo ok >"$seeds/$name.status"
    else
        echo FAILED >"$seeds/$name.status"
    fi
}
# one fuzzer per core at a time: each is single-threaded
fuzzers=()
for f in build-fuzz/fuzz_*; do [ -x "$f" ] && fuzzers+=("$f"); done
for f in "${fuzzers[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    fuzz_one "$f" &
done
wait
for f in "${fuzzers[@]}"; do
    name=$(basename "$f")
    if [ "$(cat "$seeds/$name.status" 2>/dev/null)" = ok ]; then
        echo "[test] $name: ok ($(grep -Eo 'Done [0-9]+ runs' "$seeds/$name.log" | tail -1))"
        passed=$((passed + 1))
    else
        echo "[test] $name: FAILED" >&2
        tail -40 "$seeds/$name.log" >&2
        failed=$((failed + 1))
    fi
done

echo "tests: $passed passed, $failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
