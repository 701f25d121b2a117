#!/usr/bin/env bash
# A/B measurements on the GPU machine in one device call: the working tree ("new") against a base
# revision, and optionally variants of the working tree built with extra CUDA flags, on the
# synthesized Llama-2-7B shape, interleaved round by round so that drift hits every build alike.
#
# Here (before the call):
#   scripts/gpu-ab.sh prepare [REV] [NAME=REV2]...
#                                     base = REV (default HEAD) as .ab/base.tar; each NAME=REV2
#                                     archives REV2 as .ab/rev-NAME.tar, the source of the variant
#                                     NAME (a second branch in the same call); fetches .debs/;
#                                     .ab/ ignored through .git/info/exclude
# On the GPU machine (the device call; carry .debs and .ab, and .shared for --check):
#   scripts/gpu-ab.sh run [--check] [--ncu] [--rounds N] [--codecs "lossless int8"]
#                         [--bench "ARGS"] [--variant NAME=FLAGS]...
#     --check      ctest -R gpu and stories260K (gpu-bench.sh check) on "new", beside the synthesis;
#                  when it fails nothing is benchmarked (the log and r.tgz still come back)
#     --ncu-stalls Nsight Compute's warp states (stall cycles per issued instruction, issue, pipe
#                  use, occupancy, top stall sites) of one launch each of the one-token bf16
#                  kernel, raw and CC (bench_fused 1), of "new" and (with --scan or --kbench1,
#                  which build its bench_fused) "base"
#     --ncu        per-kernel time and DRAM bytes of the matvecs of one decode step, each build, in
#                  the weights modes of --ncu-weights (default "raw"; e.g. "raw fused")
#     --rounds N   bench rounds (default 2); each round runs every build on every codec
#     --bench ARGS codecllm bench arguments (default "-p 128 -n 128 -r 2 -c 512 --weights raw,fused");
#                  repeatable: each round runs every set, numbered b1, b2, ... in the log
#     --kbench     bench_fused (kernel benchmark, the 4 shapes) of "new" once, after the rounds
#     --kbench1    bench_fused 1 (4096 x 4096 only: one-token, column and GEMM lines) of every
#                  build, after the rounds, in build order (base and variants beside new)
#     --kargs ARGS bench_fused ARGS (e.g. "--swiglu", "--waves") of every build after the rounds,
#                  its result lines in the log as "NAME kargsK | ..."; repeatable
#     --scan       each round also runs `bench_fused --scan` of every build (one launch's time
#                  against its rows: fixed cost per launch and streaming bandwidth per kind); with
#                  --codecs none no model is made and only the scans run
#     --only NAMES model benches (rounds) of these builds only (e.g. "new base"); scans, kbench1
#                  and ncu still run every build
#     --deadline S no new bench run (round, kbench, ncu) once S seconds have passed since the
#                  start: a call that would outrun its limit still returns its log and r.tgz
#     --variant NAME=FLAGS  the working tree again with CMAKE_CUDA_FLAGS=FLAGS (e.g.
#                  "-DMV_SOMETHING=2"), reported as NAME; when 'prepare' archived a revision
#                  as NAME, that revision instead of the working tree (FLAGS may be empty)
#   Results: $OUT/log.txt (a line per bench row: build, round, weights, test, t/s) and $OUT/r.tgz
#   (every log). About 2 minutes of setup (builds, 7B synthesis and conversion) plus the benches.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    local rev=HEAD
    case "${1:-}" in "" | *=*) ;; *) rev=$1; shift ;; esac  # REV may be left out before NAME=REV2
    mkdir -p .ab .git/info
    grep -qx '.ab/' .git/info/exclude 2> /dev/null || echo '.ab/' >> .git/info/exclude
    rm -f .ab/rev-*.tar
    git archive "$rev" -o .ab/base.tar || exit 1
    echo "gpu-ab: base $(git rev-parse --short "$rev") in .ab/base.tar"
    local a
    for a in "$@"; do
        local n=${a%%=*} v=${a#*=}
        case "$n" in
        "" | base | new | *[!A-Za-z0-9_-]*)
            echo "gpu-ab: bad variant name '$n' (letters, digits, - and _; not base or new)" >&2
            exit 2 ;;
        esac
        git archive "$v" -o ".ab/rev-$n.tar" || exit 1
        echo "gpu-ab: variant $n = $(git rev-parse --short "$v") in .ab/rev-$n.tar"
    done
    [ -d .debs ] || bash scripts/fetch-debs.sh
    echo "gpu-ab: carry .debs and .ab"
}

run() {
    local check=0 ncu=0 stalls=0 kbench=0 kbench1=0 scan=0 rounds=2 codecs="lossless int8" deadline=0
    local ncu_weights=raw only=
    local -a benches=() kargs=()
    local -a names=(new base) flags=("" "")
    while [ $# -gt 0 ]; do
        case "$1" in
        --check) check=1 ;;
        --ncu) ncu=1 ;;
        --ncu-stalls) stalls=1 ;;
        --ncu-weights) ncu_weights=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --codecs) codecs=$2; shift ;;
        --bench) benches+=("$2"); shift ;;
        --kbench) kbench=1 ;;
        --kbench1) kbench1=1 ;;
        --kargs) kargs+=("$2"); shift ;;
        --scan) scan=1 ;;
        --deadline) deadline=$2; shift ;;
        --only) only=$2; shift ;;
        --variant) names+=("${2%%=*}"); flags+=("${2#*=}"); shift ;;
        *) echo "gpu-ab: unknown option $1" >&2; exit 2 ;;
        esac
        shift
    done
    [ ${#benches[@]} -gt 0 ] || benches=("-p 128 -n 128 -r 2 -c 512 --weights raw,fused")
    [ -f .ab/base.tar ] || { echo "gpu-ab: no .ab/base.tar (run 'prepare' here first)" >&2; exit 2; }
    if [ -d .debs ]; then source scripts/gpu-env.sh; fi  # (as gpu-bench.sh)
    export PATH="$PATH:/usr/local/cuda/bin"
    local out=${OUT:-build-gpu/ab} r=/tmp/gpu-ab models=/tmp/cllm-models
    mkdir -p "$out" "$r"
    local log=$out/log.txt t0
    t0=$(date +%s)
    say() { echo "[$(($(date +%s) - t0))s] $*" | tee -a "$log"; }
    finish() { tar -czf "$out/r.tgz" -C /tmp gpu-ab; cat "$log"; }  # every log, and the summary
    late() {  # past the deadline: say so (once per skipped item) and return 0
        [ "$deadline" -gt 0 ] && [ $(($(date +%s) - t0)) -ge "$deadline" ] && say "deadline: skipped $*"
    }
    # Builds: new in build-gpu (with the test targets), base and variants under .ab/.
    local -a dirs=() pids=()
    for i in "${!names[@]}"; do
        local n=${names[$i]} src=. dir=build-gpu targets="codecllm_cli"
        if [ "$n" = base ]; then
            src=.ab/base; dir=.ab/base/b
            rm -rf .ab/base && mkdir -p .ab/base && tar -xf .ab/base.tar -C .ab/base
        elif [ "$n" != new ]; then
            dir=.ab/$n/b
            if [ -f ".ab/rev-$n.tar" ]; then  # a revision archived by 'prepare'
                src=.ab/$n/src
                rm -rf "$src" && mkdir -p "$src" && tar -xf ".ab/rev-$n.tar" -C "$src"
            fi
        fi
        [ "$n" = new ] && targets="codecllm_cli gpu_check test_gpu_engine bench_fused"
        [ "$n" != new ] && [ $((scan + kbench1 + ${#kargs[@]})) -gt 0 ] &&
            targets="codecllm_cli bench_fused"
        dirs+=("$dir")
        (cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCODECLLM_CUDA=ON \
             -DCMAKE_CUDA_ARCHITECTURES=90 "-DCMAKE_CUDA_FLAGS=${flags[$i]}" \
             ${CLLM_DX:+-DCMAKE_PREFIX_PATH="$CLLM_DX/usr"} > "$r/cfg-$n.log" 2>&1 &&
             cmake --build "$dir" -j4 --target $targets > "$r/build-$n.log" 2>&1
         echo "build $n [${flags[$i]}] rc=$?" >> "$log") &
        pids+=($!)
    done
    wait "${pids[@]}"
    say "builds done"
    local cp=
    if [ $check = 1 ]; then
        (OUT=$r/check bash scripts/gpu-bench.sh check > "$r/check.txt" 2>&1
         echo "check rc=$?" >> "$log") &
        cp=$!
    fi
    [ "$codecs" = none ] && codecs=
    if [ -n "$codecs" ]; then
        CLLM_MODELS=$models SKIP_B15=1 OUT=$r/model bash scripts/gpu-bench.sh model $codecs \
            > "$r/model.txt" 2>&1 || say "model FAILED (see model.txt)"
        say "model done"
    fi
    if [ -n "$cp" ]; then
        wait "$cp"
        grep -E "^(PASS|FAIL)" "$r/check.txt" | cut -c1-160 >> "$log"
        grep -E "Test #|tests passed|FATAL|DIFFER" "$r/check/gpu-ctest.log" 2> /dev/null | head -20 >> "$log"
        say "check done"
        if ! grep -qx "check rc=0" "$log"; then
            say "check FAILED: nothing benchmarked"
            finish
            return 1
        fi
    fi
    for round in $(seq "$rounds"); do
        for i in "${!names[@]}"; do
            if [ $scan = 1 ] && ! late "${names[$i]} round $round scan"; then
                local f=$r/scan-${names[$i]}-$round.txt
                "${dirs[$i]}/bench/bench_fused" --scan > "$f" 2>&1
                grep -A6 "^kind" "$f" | sed "s/^/${names[$i]} round $round scan | /" >> "$log"
            fi
            for c in $codecs; do
                [ -n "$only" ] && [[ " $only " != *" ${names[$i]} "* ]] && continue
                for j in "${!benches[@]}"; do
                    late "${names[$i]} round $round $c b$((j + 1))" && continue
                    local f=$r/bench-${names[$i]}-$c-$round-b$((j + 1)).md
                    "${dirs[$i]}/codecllm" bench "$models/l7b-$c.cllm" --backend cuda ${benches[$j]} \
                        > "$f" 2>&1
                    # Every result row without the model path: weights, test or B/PP/TG, t/s.
                    grep -E "^\| /" "$f" | awk -F'|' -v b="${names[$i]}" -v k="$round" -v c="$c" \
                        -v j="b$((j + 1))" '{l = ""; for (x = 5; x < NF; x++) l = l "|" $x;
                        gsub(/ +/, " ", l); print b, "round " k, c, j, l}' >> "$log"
                done
            done
        done
        say "round $round done"
    done
    if [ $kbench1 = 1 ]; then
        for i in "${!names[@]}"; do
            late "${names[$i]} kbench1" && continue
            local f=$r/bench_fused1-${names[$i]}.txt
            "${dirs[$i]}/bench/bench_fused" 1 > "$f" 2>&1
            grep -E "x raw|columns|GEMM" "$f" | sed "s/^/${names[$i]} kbench1 | /" >> "$log"
        done
        say "kbench1 done"
    fi
    for j in "${!kargs[@]}"; do
        for i in "${!names[@]}"; do
            late "${names[$i]} kargs$((j + 1))" && continue
            local f=$r/bench_fused-${names[$i]}-kargs$((j + 1)).txt
            "${dirs[$i]}/bench/bench_fused" ${kargs[$j]} > "$f" 2>&1
            echo "${names[$i]} kargs$((j + 1)) [${kargs[$j]}] rc=$?" >> "$log"
            grep -vE "^device:" "$f" | sed "s/^/${names[$i]} kargs$((j + 1)) | /" >> "$log"
        done
        say "kargs$((j + 1)) done"
    done
    if [ $kbench = 1 ] && ! late kbench; then
        ./build-gpu/bench/bench_fused > "$r/bench_fused.txt" 2>&1
        echo "bench_fused rc=$?" >> "$log"
        grep -E "x raw|columns|GEMM|7B token|load" "$r/bench_fused.txt" >> "$log"
        say "kbench done"
    fi
    if [ $stalls = 1 ]; then
        for i in "${!names[@]}"; do
            [ "${names[$i]}" = new ] || [ "${names[$i]}" = base ] || continue
            [ $((scan + kbench1 + ${#kargs[@]})) -gt 0 ] || [ "${names[$i]}" = new ] || continue  # (bench_fused built)
            for cc in 0 1; do  # (ncu prints the template arguments as "(int)1, (bool)0, (int)0")
                late "ncu stalls ${names[$i]} $cc" && continue
                local f=$r/ncu-stalls-${names[$i]}-$cc.txt
                ncu --kernel-name-base demangled \
                    --kernel-name "regex:matvec_b16_kernel<\(int\)1, \(bool\)$cc, \(int\)0>" \
                    --launch-skip 3 --launch-count 1 --section WarpStateStats --section SchedulerStats \
                    --section Occupancy --section SourceCounters --section LaunchStats \
                    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active" \
                    "${dirs[$i]}/bench/bench_fused" 1 > "$f" 2>&1
                echo "ncu stalls ${names[$i]} (matvec_b16_kernel<1, CC=$cc, 0>, 4096^2, one token) rc=$?:" >> "$log"
                grep -E "matvec_b16|Issued Warp|Eligible|Active Warps|Registers|Warp Cycles|Duration" \
                    "$f" | head -20 >> "$log"
                grep -E "stalled|pipe_" "$f" | awk '$NF + 0 >= 0.1' >> "$log"
            done
        done
    fi
    if [ $ncu = 1 ]; then
        for i in "${!names[@]}"; do
            for wm in $ncu_weights; do
                late "ncu ${names[$i]} $wm" && continue
                local f=$r/ncu-${names[$i]}-$wm.csv c=${codecs%% *}
                ncu --clock-control none --cache-control none \
                    --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__registers_per_thread \
                    --csv --kernel-name regex:matvec --launch-skip 300 --launch-count 40 \
                    "${dirs[$i]}/codecllm" run "$models/l7b-$c.cllm" --backend cuda --weights "$wm" \
                    --tokens 1 -n 16 --temp 0 -c 512 --output ids > "$f" 2> "$f.err"
                echo "ncu ${names[$i]} ($c, $wm, one decode step's matvecs):" >> "$log"
                python3 scripts/ncu-sum.py "$f" >> "$log" 2>&1
            done
        done
    fi
    say "all done"
    finish
}

case "${1:-}" in
prepare) shift; prepare "$@" ;;
run) shift; run "$@" ;;
*) echo "usage: $0 prepare [REV] | run [--check] [--ncu] [--ncu-stalls] [--ncu-weights \"raw fused\"] [--scan] [--rounds N] [--codecs LIST|none] [--bench ARGS]... [--kbench] [--kbench1] [--kargs ARGS]... [--deadline S] [--only NAMES] [--variant NAME=FLAGS]..." >&2; exit 2 ;;
esac
