#!/usr/bin/env bash
# GPU measurements for docs/PERF.md, in stages that fit the device tool's 10-minute calls:
#   scripts/gpu-bench.sh check   build with CUDA, GPU unit tests, stories260K greedy in every mode
#   scripts/gpu-bench.sh model [CODEC...]  synthesize the 7B-shape BF16 model and convert it
#                                (default: lossless int8; f16-CODEC: an FP16 synthesis, as
#                                l7b-f16-CODEC.cllm)
#   scripts/gpu-bench.sh bench   codecllm bench on both containers (raw, device, stream, --vram)
#   scripts/gpu-bench.sh batch   bench -b 1,8,32,64 (raw BF16 and int8) and stream int8 -b 1,64
#   scripts/gpu-bench.sh serve   serve --parallel 32 with 32 concurrent clients (whole answers,
#                                then streaming) vs bench -b 32
#   scripts/gpu-bench.sh session check + model + bench (raw, fused, device, stream) + batch in one
#                                call, going on past a failing step (reported as FAILED)
#   scripts/gpu-bench.sh peers   transformers and accelerate cpu_offload on the same model
# Results go to $OUT (or build-gpu/results) as logs; each stage prints a short summary last.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .debs ]; then source scripts/gpu-env.sh; fi
export PATH="$PATH:/usr/local/cuda/bin"
dir=build-gpu
res=${OUT:-$dir/results}
models=${CLLM_MODELS:-/tmp/cllm-models}
mkdir -p "$res" "$models"
bin=$dir/codecllm
# ../shared does not travel to the GPU machine: a copy of it is carried as .shared/.
shared=${CLLM_SHARED:-.shared}
[ -d "$shared" ] || shared=../shared

build() {
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCODECLLM_CUDA=ON \
          -DCMAKE_CUDA_ARCHITECTURES=90 ${CLLM_DX:+-DCMAKE_PREFIX_PATH="$CLLM_DX/usr"} > "$res/configure.log" 2>&1 || { cat "$res/configure.log"; exit 1; }
    cmake --build "$dir" -j"$(nproc)" --target codecllm_cli gpu_check test_gpu_engine \
        > "$res/build.log" 2>&1 || { tail -50 "$res/build.log"; exit 1; }
}

stage_check() {
    build
    # A failing GPU test is reported and the stage goes on to the end-to-end checks.
    (cd "$dir" && ctest -R 'gpu' --output-on-failure) 2>&1 | tee "$res/gpu-ctest.log" | tail -20 ||
        echo "FAIL GPU ctest (log: $res/gpu-ctest.log)"
    local m=$shared/models/stories260K.bin ref=$shared/models/stories260K.greedy_bos.txt
    for codec in raw lossless int8; do
        $bin convert "$m" "$models/s-$codec.cllm" --codec "$codec" 2> /dev/null
    done
    local want; want=$(tr -s ' \n' ' ' < "$ref" | sed 's/ $//')
    for codec in raw lossless; do
        for mode in raw device stream fused; do
            got=$($bin run "$models/s-$codec.cllm" --backend cuda --weights $mode --tokens 1 -n 255 \
                  --temp 0 --output ids 2> "$res/run-$codec-$mode.err" | tr -s ' \n' ' ' | sed 's/ $//')
            if [ "$got" = "$want" ]; then echo "PASS stories260K greedy 255, $codec container, $mode";
            else echo "FAIL stories260K greedy 255, $codec container, $mode"; tail -3 "$res/run-$codec-$mode.err"; fi
        done
    done
    # int8: fused mode must give raw mode's tokens on the same container (issue 9).
    local i8raw i8fused
    i8raw=$($bin run "$models/s-int8.cllm" --backend cuda --weights raw --tokens 1 -n 255 --temp 0 \
            --output ids 2> "$res/run-int8-raw.err" | tr -s ' \n' ' ')
    i8fused=$($bin run "$models/s-int8.cllm" --backend cuda --weights fused --tokens 1 -n 255 \
              --temp 0 --output ids 2> "$res/run-int8-fused.err" | tr -s ' \n' ' ')
    if [ -n "$i8raw" ] && [ "$i8raw" = "$i8fused" ]; then
        echo "PASS stories260K greedy 255, int8 container, fused = raw mode"
    else echo "FAIL stories260K greedy 255, int8 container, fused differs from raw mode"; fi
    tr -s ' \n' ',' < "$ref" | sed 's/,$//' > "$models/ref.ids"
    for mode in raw stream fused; do
        $bin compare "$models/s-raw.cllm" "$models/s-lossless.cllm" --backend cuda --weights $mode \
            --tokens @"$models/ref.ids" 2>&1 | tail -4
    done
    $bin logits "$models/s-lossless.cllm" --backend cuda --weights stream --tokens @"$models/ref.ids" \
        --out "$models/gpu.f32"
    python3 - "$models/gpu.f32" "$shared/models/stories260K.greedy_bos.logits.f32" <<'PY'
import sys, struct
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
n = len(b) // 4
x = struct.unpack(f"{n}f", a[:4*n]); y = struct.unpack(f"{n}f", b)
d = max(abs(p - q) for p, q in zip(x, y))
print(("PASS" if len(a) == len(b) and d <= 5e-4 else "FAIL"), f"GPU logits vs float64 reference: max |diff| {d:.2e}")
PY
    $bin compare "$models/s-raw.cllm" "$models/s-int8.cllm" --backend cuda --weights raw \
        --sample 256 --sequences 4 --seed 1 2>&1 | tail -4
    # A budget that cannot be met is refused before anything is allocated.
    if $bin run "$models/s-lossless.cllm" --backend cuda --vram 1MiB --tokens 1 -n 4 --output ids \
        > /dev/null 2> "$res/vram-small.err"; then echo "FAIL --vram 1MiB was accepted";
    else echo "PASS --vram 1MiB refused: $(head -c 300 "$res/vram-small.err")"; fi
    # No device memory growth: the allocator's peak after 2000 generated tokens equals the peak
    # after 500 (every buffer is allocated at load).
    for reps in 1 4; do
        $bin bench "$models/s-lossless.cllm" --backend cuda --weights stream,device,raw -p 0 -n 500 \
            -r $reps -o json > "$res/growth-$reps.json"
    done
    python3 - "$res/growth-1.json" "$res/growth-4.json" <<'PY'
import json, sys
a = {r["weights"]: r["peak_bytes"] for r in json.load(open(sys.argv[1]))}
b = {r["weights"]: r["peak_bytes"] for r in json.load(open(sys.argv[2]))}
for m in a:
    print(("PASS" if a[m] == b[m] else "FAIL"), f"device peak after 500 and 2000 tokens ({m}): {a[m]} / {b[m]} bytes")
PY
}

stage_model() {
    # A codec "f16-C" converts an FP16 synthesis of the same shape with codec C (l7b-f16-C.cllm).
    local codecs=${*:-lossless int8}
    local preset=${CLLM_SYNTH_PRESET:-llama2-7b}  # (a smaller preset to try the script itself)
    [ -f "$dir/codecllm" ] || build
    for codec in $codecs; do
        local src=l7b dtype=bf16 c=$codec
        case "$codec" in f16-*) src=l7b-f16 dtype=f16 c=${codec#f16-} ;; esac
        local slog=$res/synth.log
        [ "$dtype" = bf16 ] || slog=$res/synth-$dtype.log
        if [ ! -f "$models/$src/config.json" ]; then
            /usr/bin/time -v $bin synth --preset "$preset" --dtype "$dtype" --threads "$(nproc)" \
                "$models/$src" 2> "$slog" || { tail "$slog"; exit 1; }
            grep -E "Elapsed|Maximum resident" "$slog" || true
        fi
        # CLLM_TOKENIZER: a tokenizer to store (the synthesized model has none; serve needs one).
        /usr/bin/time -v $bin convert "$models/$src" "$models/l7b-$codec.cllm" --codec "$c" \
            ${CLLM_TOKENIZER:+--tokenizer "$CLLM_TOKENIZER"} \
            --threads "$(nproc)" 2> "$res/convert-$codec.log" || { tail "$res/convert-$codec.log"; exit 1; }
        grep -E "wrote|Elapsed|Maximum resident" "$res/convert-$codec.log" || true
        $bin inspect "$models/l7b-$codec.cllm" --no-zstd > "$res/inspect-$codec.txt"
        tail -12 "$res/inspect-$codec.txt"
    done
    # int8 with 2^15-symbol blocks: more independent chains for the GPU decoder (device mode).
    case " $codecs " in *" int8 "*) ;; *) df -h "$models" | tail -1; return ;; esac
    [ -z "${SKIP_B15:-}" ] || return 0
    $bin convert "$models/l7b" "$models/l7b-int8-b15.cllm" --codec int8 --block-symbols 32768 \
        --threads "$(nproc)" 2> /dev/null
    $bin inspect "$models/l7b-int8-b15.cllm" --no-zstd | tail -1
    df -h "$models" | tail -1
}

stage_bench() {
    local which=${1:-all}
    for codec in lossless int8; do
        [ "$which" = all ] || [ "$which" = "$codec" ] || continue
        $bin bench "$models/l7b-$codec.cllm" --backend cuda -p 128 -n 128 -r 2 -c 512 \
            --weights raw,fused,device 2>&1 | tee "$res/bench-$codec.md"
        $bin bench "$models/l7b-$codec.cllm" --backend cuda -p 128 -n 32 -r 1 -c 512 \
            --weights stream 2>&1 | tee -a "$res/bench-$codec.md"
        $bin run "$models/l7b-$codec.cllm" --backend cuda --weights stream -c 512 --tokens 1 -n 2 \
            --temp 0 --output ids --verbose 2>&1 | grep -E "VRAM|plan|memory" | tee -a "$res/bench-$codec.md"
    done
    if [ "$which" = all ] || [ "$which" = int8 ]; then
        $bin bench "$models/l7b-int8-b15.cllm" --backend cuda -p 128 -n 128 -r 2 -c 512 \
            --weights device,stream 2>&1 | tee "$res/bench-int8-b15.md"
        $bin bench "$models/l7b-int8.cllm" --backend cuda -p 128 -n 32 -r 1 -c 512 \
            --weights stream --vram 3.6GiB 2>&1 | tee "$res/bench-int8-vram.md"
    fi
}

# Many sequences at once (llama-batched-bench style): aggregate decode tok/s at 1, 8, 32 and 64
# sequences of -p 128 -n 128 each (KV for 64 x 256 positions), raw BF16 and int8; stream int8.
stage_batch() {
    local which=${1:-all}
    for codec in lossless int8; do
        [ "$which" = all ] || [ "$which" = "$codec" ] || continue
        $bin bench "$models/l7b-$codec.cllm" --backend cuda -p 128 -n 128 -r 1 -c 256 \
            --weights raw -b 1,8,32,64 2>&1 | tee "$res/batch-$codec.md"
    done
    [ "$which" = all ] || return 0
    $bin bench "$models/l7b-int8.cllm" --backend cuda -p 128 -n 32 -r 1 -c 256 \
        --weights stream -b 1,64 2>&1 | tee "$res/batch-int8-stream.md"
}

# Server overhead: 32 concurrent clients (bench/serve_load.py, ~31-token prompts, 128 tokens each,
# greedy) against `serve --parallel 32`, beside bench -b 32 -p 32 -n 128 on the same model (raw
# BF16; the model needs a stored tokenizer: convert with CLLM_TOKENIZER set).
stage_serve() {
    local m="$models/l7b-lossless.cllm" port=18080
    $bin bench "$m" --backend cuda --weights raw -b 32 -p 32 -n 128 -r 1 -c 256 2>&1 \
        | tee "$res/serve-bench.md"
    $bin serve "$m" --backend cuda --weights raw --parallel 32 --queue 64 -c 256 --port $port \
        2> "$res/serve.log" &
    local pid=$!
    for _ in $(seq 120); do
        python3 -c "import http.client as h; c=h.HTTPConnection('127.0.0.1',$port,timeout=2); c.request('GET','/health'); exit(c.getresponse().status!=200)" 2>/dev/null && break
        sleep 1
    done
    python3 bench/serve_load.py $port 32 128 3 0 2>&1 | tee "$res/serve-load.txt"
    echo "streaming clients:" | tee -a "$res/serve-load.txt"  # the issue's target: streaming
    python3 bench/serve_load.py $port 32 128 3 0 1 2>&1 | tee -a "$res/serve-load.txt"
    kill -TERM $pid; wait $pid || true
    grep -c " 200 " "$res/serve.log" || true
}

# One device call: checks, the 7B models, the batch-1 benchmarks (raw, fused, device, stream) and
# the batched ones. About 6 minutes on the H200.
stage_session() {
    set +e +o pipefail
    trap 'echo "FAILED (exit $?): $BASH_COMMAND"' ERR
    stage_check
    SKIP_B15=1 stage_model lossless int8
    for codec in lossless int8; do
        $bin bench "$models/l7b-$codec.cllm" --backend cuda -p 128 -n 128 -r 2 -c 512 \
            --weights raw,fused,device 2>&1 | tee "$res/bench-$codec.md"
        $bin run "$models/l7b-$codec.cllm" --backend cuda --weights fused -c 512 --tokens 1 -n 2 \
            --temp 0 --output ids --verbose 2>&1 | grep -E "fused|VRAM" | tee -a "$res/bench-$codec.md"
        $bin bench "$models/l7b-$codec.cllm" --backend cuda -p 128 -n 32 -r 1 -c 512 \
            --weights stream 2>&1 | tee -a "$res/bench-$codec.md"
    done
    $bin bench "$models/l7b-int8.cllm" --backend cuda -p 128 -n 32 -r 1 -c 512 \
        --weights stream --vram 3.6GiB 2>&1 | tee "$res/bench-int8-vram.md"
    stage_batch
}

stage_peers() {
    python3 bench/hf_baseline.py "$models/l7b" -p 128 -n 128 -r 2 --offload-n 8 \
        --json "$res/peers.json" 2>&1 | grep -v Warning | tee "$res/peers.txt"
}

case "${1:-}" in
check) stage_check ;;
model) shift; stage_model "$@" ;;
bench) stage_bench "${2:-all}" ;;
peers) stage_peers ;;
batch) stage_batch "${2:-all}" ;;
serve) stage_serve ;;
session) stage_session ;;
*) echo "usage: $0 check|model|bench [lossless|int8]|batch [lossless|int8]|serve|session|peers" >&2; exit 2 ;;
esac
