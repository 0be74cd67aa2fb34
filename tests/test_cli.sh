#!/usr/bin/env bash
# The CLI on good and bad model files: exit codes (0 ok, 2 bad input) and one-line errors.
set -u
bin=${CSERVE_BIN:?}
model=${CSERVE_MODEL:-}
fails=0
checks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # check NAME CONDITION...
    checks=$((checks + 1))
    local name=$1; shift
    if ! "$@"; then echo "FAILED: $name" >&2; fails=$((fails + 1)); fi
}
# expect_error NAME PATTERN ARGS...: exit code 2, stderr one line matching PATTERN
expect_error() {
    local name=$1 pattern=$2; shift 2
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    check "$name: exit 2 (got $rc)" test "$rc" -eq 2
    check "$name: one line on stderr" test "$(wc -l <"$tmp/err")" -eq 1
    check "$name: stderr matches '$pattern' ($(head -c 300 "$tmp/err"))" grep -q -- "$pattern" "$tmp/err"
}

check "--version" bash -c "'$bin' --version | grep -q '^cserve [0-9]'"
check "--help" bash -c "'$bin' --help | grep -q 'info'"
check "info --help" bash -c "'$bin' info --help | grep -q -- '--model'"
expect_error "unknown command" "unknown command 'frobnicate'" frobnicate
expect_error "unknown option" "unknown option '--bogus'" info --bogus
expect_error "missing value" "--model needs a value" info --model
expect_error "no such file" "no such file" info --model "$tmp/absent.gguf"
expect_error "serve --api-key '' (an unset variable must not turn auth on with an empty key)" \
    "--api-key: the value is empty" serve --api-key ""
expect_error "--model ''" "--model: the value is empty" info --model ""
expect_error "--seed ' -1' (strtoull would take it as 2^64 - 1)" "is not an unsigned 64-bit integer" \
    bench --seed " -1" --num-prompts 1
printf 'not a gguf at all' >"$tmp/junk.gguf"
expect_error "wrong magic" "bad magic" info --model "$tmp/junk.gguf"

if [ -z "$model" ] || [ ! -f "$model" ]; then
    echo "default model absent: skipping the model checks"
    echo "$checks checks, $fails failed"
    [ "$fails" -eq 0 ] && exit 77 || exit 1
fi

"$bin" info --model "$model" >"$tmp/info" 2>&1
check "info exit 0" test $? -eq 0
for want in "architecture *llama" "layers *30" "hidden size *576" "9 query, 3 key/value" \
    "vocabulary *49152" "context length *8192" "Q4_1 x210" "Q8_0 x1" "F32 x61" \
    "tied to token embedding" "chat template *chatml"; do
    check "info shows '$want'" grep -q "$want" "$tmp/info"
done
check "tokenize" bash -c "'$bin' tokenize --model '$model' --text 'Hello world' --ids | grep -qx '\[19556, 905\]'"

size=$(stat -c %s "$model")
head -c 1000 "$model" >"$tmp/trunc_header.gguf"
expect_error "truncated in metadata" "truncated\|runs past the end\|cannot fit" info --model "$tmp/trunc_header.gguf"
head -c $((size / 2)) "$model" >"$tmp/trunc_half.gguf"
expect_error "truncated in data" "runs past the end of the file" info --model "$tmp/trunc_half.gguf"
{ printf 'GGUF\001\000\000\000'; tail -c +9 "$model"; } >"$tmp/v1.gguf"
expect_error "version 1" "unsupported version 1" info --model "$tmp/v1.gguf"
mkdir "$tmp/emptydir"
expect_error "empty directory" "config.json" info --model "$tmp/emptydir"

# load-time quantisation: bad values, a group that does not divide the model's widths
expect_error "--quant int5" "'int5' is not one of int8, int4" generate --quant int5 --prompt hi
expect_error "--quant-group 48" "48 is not one of 32, 64, 128" generate --quant int4 --quant-group 48 --prompt hi
expect_error "--quant with --dummy-weights on the CPU" "applies to --dummy-weights with --device cuda only" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --dummy-weights smollm2-135m --quant int4

# tensor parallel: a size the model cannot take, a bad value, more GPUs than the machine has
expect_error "--tp 12 on 9 heads" "tensor parallel size 12: the model has 9 query heads" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --tp 12
expect_error "--tp 0" "'0' is not an integer in \[1, 256\]" bench --num-prompts 1 --input-len 4 --output-len 2 --tp 0
expect_error "--tp 64 --device cuda" "this machine has [0-9]* GPUs\|--device cuda: no CUDA device here\|built without CUDA" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --tp 64 --device cuda
# several nodes: only with CUDA, an address, whole GPUs per node, a node rank in range
expect_error "--nnodes 2 on the CPU" "several nodes need --device cuda" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --nnodes 2 --dist-init-addr 127.0.0.1:1
expect_error "--nnodes 2 without an address" "give node 0's --dist-init-addr" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --nnodes 2 --device cuda
expect_error "--tp 3 over 2 nodes" "each node must run as many GPUs" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --nnodes 2 --tp 3 --device cuda --dist-init-addr 127.0.0.1:1
expect_error "--node-rank 2 of 2" "--node-rank 2: use 0 to 1" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --nnodes 2 --tp 2 --node-rank 2 --device cuda \
    --dist-init-addr 127.0.0.1:1
expect_error "a follower on the CPU" "several nodes need --device cuda" \
    serve --nnodes 2 --node-rank 1 --dist-init-addr 127.0.0.1:1
expect_error "--dist-timeout 0" "'0' is not an integer" \
    bench --num-prompts 1 --input-len 4 --output-len 2 --dist-timeout 0

# async scheduling: the CPU runs its pipeline when asked (and counts the steps launched ahead)
check "bench --async-scheduling on the CPU launches steps ahead" \
    bash -c "'$bin' bench --model '$model' --async-scheduling --num-prompts 4 --input-len 8 --output-len 6 --json \
             2>/dev/null | grep -q '\"steps_ahead\": [1-9]'"
check "bench without it launches none ahead on the CPU" \
    bash -c "'$bin' bench --model '$model' --num-prompts 4 --input-len 8 --output-len 6 --json \
             2>/dev/null | grep -q '\"steps_ahead\": 0,'"

hf=${CSERVE_HF_DIR:-}
if [ -n "$hf" ] && [ -f "$hf/config.json" ]; then
    expect_error "--quant-group 128 on 576 columns" "576 columns, not a multiple of the group 128" \
        generate --model "$hf" --quant int4 --quant-group 128 --prompt hi
    check "info --quant int4: 210 matrices as Q4_1, 179741952 bytes" \
        bash -c "'$bin' info --model '$hf' --quant int4 | grep -q '210 matrices as Q4_1' &&
                 '$bin' info --model '$hf' --quant int4 | grep -q 'weights with --quant   179741952 bytes'"
    check "generate --quant int4 (group 64) on the fp32 copy: Paris" \
        bash -c "'$bin' generate --model '$hf' --quant int4 --quant-group 64 --chat --temperature 0 --max-tokens 12 \
                 --prompt 'What is the capital of France?' 2>/dev/null | grep -q Paris"
fi

echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
