#!/usr/bin/env bash
# Kernel timeline of decoding on the GPU machine: builds codecllm and the CUPTI tracer
# (tools/kernel-trace), synthesizes a Llama-2-7B-shaped model with a few layers, converts it, and
# runs `codecllm bench -p 16 -n TOKENS -r 1` (the loop tg figures come from) once per weights mode
# under the tracer; scripts/kernel-trace.py then prints where a decode step's time goes (GPU busy
# and idle per step, PDL overlap, per kernel, and the kernels outside the step's graph).
#   scripts/gpu-trace.sh [--codec int8|lossless|raw] [--layers N] [--weights "raw fused"] [-n TOKENS]
# Results in $OUT (default build-gpu/trace): WEIGHTS/kernel-trace.csv, WEIGHTS/summary.txt.
# First run 2026-12-04 (PERF.md 7af). A kernel's start is its launch's: with PDL it starts while
# its predecessor runs and waits at griddepcontrol.wait, so per-kernel times overlap; the step's
# GPU busy time (the union) and the idle time between steps are what to read. Tracing costs host
# time per graph node (a 226-node step's graph launch took 156 us under it, PERF.md 7ah): the time
# between steps is an upper bound; the bench's untraced token time less GPU busy is the real one.
set -euo pipefail
cd "$(dirname "$0")/.."
codec=int8 layers=4 weights="raw fused" ntok=64
while [ $# -gt 0 ]; do
    case "$1" in
    --codec) codec=$2; shift ;;
    --layers) layers=$2; shift ;;
    --weights) weights=$2; shift ;;
    -n) ntok=$2; shift ;;
    *) echo "usage: $0 [--codec C] [--layers N] [--weights \"raw fused\"] [-n TOKENS]" >&2; exit 2 ;;
    esac
    shift
done
if [ -d .debs ]; then source scripts/gpu-env.sh; fi
export PATH="$PATH:/usr/local/cuda/bin"
out=$(realpath -m "${OUT:-build-gpu/trace}") dir=build-gpu models=/tmp/cllm-trace-models
mkdir -p "$out" "$models"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCODECLLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    ${CLLM_DX:+-DCMAKE_PREFIX_PATH="$CLLM_DX/usr"} > "$out/configure.log" 2>&1 ||
    { tail -20 "$out/configure.log"; exit 1; }
cmake --build "$dir" -j"$(nproc)" --target codecllm_cli > "$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log"; exit 1; }
cuda=$(dirname "$(dirname "$(command -v nvcc)")")
inc=$(dirname "$(find "$cuda"/ "$cuda"/extras/CUPTI/ -name cupti.h 2> /dev/null | head -1)")
lib=$(dirname "$(find "$cuda"/ "$cuda"/extras/CUPTI/ -name 'libcupti.so' 2> /dev/null | head -1)")
tracer=$(realpath "$dir")/libcllm_kernel_trace.so
gcc -std=c11 -O2 -Wall -shared -fPIC -I"$inc" tools/kernel-trace/cllm_kernel_trace.c \
    -L"$lib" -Wl,-rpath,"$lib" -lcupti -o "$tracer"
bin=$(realpath "$dir")/codecllm
src=$models/l7b-$layers
[ -f "$src/config.json" ] ||
    "$bin" synth --preset llama2-7b --layers "$layers" --threads "$(nproc)" "$src" > /dev/null
m=$models/l7b-$layers-$codec.cllm
[ -f "$m" ] || "$bin" convert "$src" "$m" --codec "$codec" --threads "$(nproc)" 2> "$out/convert.log"
for wm in $weights; do
    rm -rf "${out:?}/$wm" && mkdir -p "$out/$wm"
    (cd "$out/$wm" && CUDA_INJECTION64_PATH=$tracer "$bin" bench "$m" --backend cuda \
        --weights "$wm" -p 16 -n "$ntok" -r 1 -c 512 > run.txt 2> run.err) ||
        { echo "run $wm failed:"; tail -5 "$out/$wm/run.err"; continue; }
    echo "== $codec, $layers layers, weights $wm"
    python3 scripts/kernel-trace.py "$out/$wm/kernel-trace.csv" --nodes > "$out/$wm/summary.txt" 2>&1 || true
    head -40 "$out/$wm/summary.txt"
done
