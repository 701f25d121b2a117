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
# With the real pre-trained stories260K checkpoint beside the checkout: compress it losslessly and
# check that generation from the compressed file reproduces the reference token for token.
set +x
ref=../shared/models/stories260K.bin
if [ -f "$ref" ]; then
    echo "+ stories260K: convert --codec lossless, run --tokens 1 -n 255 --temp 0, compare with the reference"
    $bin convert "$ref" "$work/stories260K.cllm" --codec lossless
    $bin run "$work/stories260K.cllm" --tokens 1 -n 255 --temp 0 --output ids > "$work/greedy.txt"
    if [ "$(tr -s ' \n' ' ' < "$work/greedy.txt")" = "$(tr -s ' \n' ' ' < ../shared/models/stories260K.greedy_bos.txt)" ]; then
        echo "stories260K from the lossless container: 255 greedy tokens identical to the reference"
    else
        echo "stories260K: greedy tokens differ from the reference" >&2
        exit 1
    fi
fi
