#!/usr/bin/env bash
# The main job on an embedded default: builds codecllm, synthesizes a small Llama-shaped model,
# converts it with both codecs, inspects and verifies the results, then runs a short generation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
bin=build/codecllm
work=${DEMO_DIR:-build/demo}
rm -rf "$work"
mkdir -p "$work"
set -x
$bin synth --preset tiny --dtype bf16 --seed 7 "$work/tiny-hf"
$bin convert "$work/tiny-hf" "$work/tiny-lossless.cllm" --codec lossless
$bin convert "$work/tiny-hf" "$work/tiny-int8.cllm" --codec int8
$bin inspect "$work/tiny-lossless.cllm"
$bin inspect "$work/tiny-int8.cllm" --no-zstd
$bin verify "$work/tiny-lossless.cllm" --against "$work/tiny-hf" --quiet
$bin verify "$work/tiny-int8.cllm" --against "$work/tiny-hf" --quiet
if $bin run --help > /dev/null 2>&1; then
    $bin run "$work/tiny-lossless.cllm" --tokens 1 -n 16 --temp 0 --output ids
fi
