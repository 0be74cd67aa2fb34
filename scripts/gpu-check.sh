#!/usr/bin/env bash
# The whole GPU check in one command, on a fresh GPU machine: build for the card, run the
# ctest label gpu, run the GPU benchmarks with the PyTorch baselines side by side, and leave
# logs and a results table in $1 (or $OUT). Prints the table last.
# Needs cJSON (the system's, or .deps/ from scripts/fetch-gpu-deps.sh, which also brings the
# PyTorch decode baseline and the default model cut to 4 layers for the real-weights test).
#   CSERVE_GPU_ONLY="bench_decode ..."  runs only the named benchmarks (for a quick rerun)
#   CSERVE_GPU_TESTS=REGEX              runs only the gpu tests matching REGEX
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
arch=${CSERVE_CUDA_ARCH:-90a}
status=0
t_start=$(date +%s)

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
echo "built in $(( $(date +%s) - t_start )) s"

if [ -z "${CSERVE_GPU_ONLY:-}" ] || [ -n "${CSERVE_GPU_TESTS:-}" ]; then
    echo "== ctest -L gpu"
    [ -f .deps/smollm2-4l.gguf ] && export CSERVE_GPU_MODEL="$PWD/.deps/smollm2-4l.gguf"
    ctest --test-dir build-gpu -L gpu ${CSERVE_GPU_TESTS:+-R "$CSERVE_GPU_TESTS"} --output-on-failure -V \
        --timeout 300 2>&1 | tee "$out/ctest-gpu.log" | grep -E "^[0-9]+: (.*(rms|agreement|identical|blocks|checks|FAILED|error)|[^ ]*:[0-9]+:)|tests passed|Failed|Passed|Skipped" | tail -80
    grep -q "100% tests passed" "$out/ctest-gpu.log" || status=1
fi

# the whole engine (scheduler, sampler, detokenizer) on dummy Llama-3-8B weights, 256 greedy
# streams: async scheduling on and off
tok_model=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f .deps/smollm2-4l.gguf ] && tok_model=.deps/smollm2-4l.gguf
engine_bench="--model $tok_model --dummy-weights llama3-8b --device cuda --num-prompts 256 --max-num-seqs 256 \
--max-num-batched-tokens 1024 --input-len 128 --output-len 128"
# name, then the command; each bounded so one hang cannot eat the machine's time
benches=(
    "bench_gpu_kernels|build-gpu/bench_gpu_kernels"
    "bench_attention_decode|build-gpu/bench_attention_decode"
    "sdpa_decode|python3 bench/sdpa_decode.py"
    "bench_attention_prefill|build-gpu/bench_attention_prefill"
    "sdpa_prefill|python3 bench/sdpa_prefill.py"
    "bench_sample|build-gpu/bench_sample"
    "bench_decode|build-gpu/bench_decode"
    "bench_decode_cublas|build-gpu/bench_decode --cublas --shapes 1:512,1:4096"
    "bench_gemv|build-gpu/bench_gemv"
    "torch_decode|python3 .deps/baselines/torch_decode.py"
    "bench_dequant|build-gpu/bench_dequant"
    "bench_qmatmul|build-gpu/bench_qmatmul"
    "torch_int4|python3 bench/torch_int4.py"
    "bench_decode_int4|build-gpu/bench_decode --quant int4 --group 128 --shapes 1:512,1:4096,64:1024"
    "bench_decode_int8|build-gpu/bench_decode --quant int8 --group 128 --shapes 1:512"
    "bench_nccl|build-gpu/bench_nccl"
    "bench_decode_nccl|build-gpu/bench_decode --nccl --shapes 1:512,64:1024"
    "bench_decode_tp2|build-gpu/bench_decode --tp 2 --shapes 1:512,64:1024,256:512"
    "engine_async|build-gpu/cserve bench $engine_bench"
    "engine_sync|build-gpu/cserve bench $engine_bench --no-async-scheduling"
)
echo "== benchmarks"
: >"$out/results.md"
for entry in "${benches[@]}"; do
    name=${entry%%|*}
    cmd=${entry#*|}
    if [ -n "${CSERVE_GPU_ONLY:-}" ] && [[ " $CSERVE_GPU_ONLY " != *" $name "* ]]; then continue; fi
    first=${cmd%% *}
    last=${cmd##* }
    [ -e "$first" ] || [ -e "$last" ] || command -v "$first" >/dev/null || continue
    [ "$first" = python3 ] && [ ! -e "$last" ] && continue
    echo "-- $name ($(( $(date +%s) - t_start )) s)"
    { echo "### $name"; echo; } >>"$out/results.md"
    OUT="$out" timeout 240 $cmd >"$out/$name.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && { echo "$name exited $rc"; status=1; }
    cat "$out/$name.log" >>"$out/results.md"
    echo >>"$out/results.md"
done

echo
echo "== results ($(head -1 "$out/gpu.txt"), $(date -u +%Y-%m-%d), $(( $(date +%s) - t_start )) s)"
cat "$out/results.md"
exit $status
