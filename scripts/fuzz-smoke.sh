#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/, -DCODECLLM_FUZZ=ON) and runs each fuzz_*
# for a short while (FUZZ_SECONDS, default 20) from its seed corpus; fails on any crash, leak,
# sanitizer report or timeout. New inputs go to a scratch directory, not into fuzz/corpus/ (add
# an interesting one there by hand). Crash inputs are kept in build-fuzz/fuzz-artifacts/.
#   scripts/fuzz-smoke.sh            all targets
#   scripts/fuzz-smoke.sh fuzz_rans  only the named targets
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
dir=build-fuzz
cmake -S . -B "$dir" -DCODECLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCODECLLM_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for src in fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/cllm-fuzz-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
artifacts="$dir/fuzz-artifacts"
mkdir -p "$artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    echo "fuzz-smoke: $t for ${seconds} s"
    # The first corpus directory receives new inputs; the seed corpus is only read.
    if "$dir/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
        "$scratch/$t" "fuzz/corpus/$t" > "$log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^Done" "$log" | tail -2 | sed "s/^/  /"
    else
        tail -40 "$log"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in $artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: OK (${#targets[@]} targets, ${seconds} s each)"
