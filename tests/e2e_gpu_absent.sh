#!/usr/bin/env bash
# Asking for the CUDA backend where it cannot run (no GPU, or a build without CUDA) is a clear
# error with a non-zero exit, never a crash or a hang. On a machine with a GPU this test is skipped
# (scripts/gpu-bench.sh check covers the GPU paths there).
source "$(dirname "$0")/e2elib.sh"
model=$(need_shared models/stories260K.bin)
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
    echo "SKIP: a GPU is present"; exit 77
fi
"$BIN" convert "$model" "$TMP/s.cllm" --codec lossless
for mode in raw device stream; do
    expect_fail timeout 60 "$BIN" run "$TMP/s.cllm" --backend cuda --weights "$mode" --tokens 1 -n 4 \
        --temp 0 --output ids
    grep -qiE "cuda|device|gpu" "$TMP/err.txt" || fail "the error does not say the GPU is missing"
done
expect_fail timeout 60 "$BIN" bench "$TMP/s.cllm" --backend cuda -p 8 -n 8 -r 1
cat "$TMP/err.txt"
echo "e2e_gpu_absent: OK"
