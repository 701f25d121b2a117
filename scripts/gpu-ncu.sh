#!/usr/bin/env bash
# Nsight Compute profiles of chosen kernels of bench_fused, on the GPU machine, in one device call:
# builds bench_fused (build-gpu, as gpu-ab.sh builds "new"), then for each NAME=ARGS@REGEX profiles
# one launch (the 4th that matches) of the kernels whose demangled name matches REGEX while
# `bench_fused ARGS` runs: warp states (stall cycles per issued instruction), scheduler, occupancy,
# launch (waves per SM), the pipes' use, per-SM active cycles (their spread: load imbalance) and
# the source counters. ncu prints template arguments as "(int)1, (bool)0".
#
#   scripts/gpu-ncu.sh 'i8cc=1@matvec_i8_kernel<\(int\)1, \(bool\)0, \(bool\)1.*' ...   (as run in PERF.md 7y)
#
# Carry .debs. Results: $OUT/ncu-NAME.txt (the whole report) and $OUT/ncu.txt (the lines that
# matter, every profile).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: $0 NAME=ARGS@REGEX..." >&2; exit 2; }
if [ -d .debs ]; then source scripts/gpu-env.sh; fi
export PATH="$PATH:/usr/local/cuda/bin"
out=${OUT:-build-gpu/ncu}
mkdir -p "$out"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCODECLLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    ${CLLM_DX:+-DCMAKE_PREFIX_PATH="$CLLM_DX/usr"} > "$out/cfg.log" 2>&1 &&
    cmake --build build-gpu -j16 --target bench_fused > "$out/build.log" 2>&1 ||
    { echo "gpu-ncu: build failed (see build.log)"; tail -20 "$out/build.log"; exit 1; }
metrics="regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
metrics+=",regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active"
metrics+=",sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_active.min"
metrics+=",launch__waves_per_multiprocessor,dram__bytes_read.sum,smsp__inst_executed.sum"
for spec in "$@"; do
    name=${spec%%=*} rest=${spec#*=}
    args=${rest%%@*} re=${rest#*@}
    f=$out/ncu-$name.txt
    ncu --kernel-name-base demangled --kernel-name "regex:$re" --launch-skip 3 --launch-count 1 \
        --section WarpStateStats --section SchedulerStats --section Occupancy \
        --section LaunchStats --section SourceCounters --section SpeedOfLight \
        --metrics "$metrics" ./build-gpu/bench/bench_fused $args > "$f" 2>&1
    echo "== $name (bench_fused $args; $re) rc=$?" | tee -a "$out/ncu.txt"
    grep -E "^  [a-z_]+.*<|Duration|Issued Warp|Eligible|Active Warps|Registers|Waves Per|Achieved Occ|Theoretical Occ|Memory Throughput|Compute \(SM\)" \
        "$f" | head -24 | tee -a "$out/ncu.txt"
    grep -E "stalled|pipe_|cycles_active|waves_per|dram__bytes|inst_executed.sum" "$f" |
        awk '$NF + 0 >= 0.1' | tee -a "$out/ncu.txt"
done
