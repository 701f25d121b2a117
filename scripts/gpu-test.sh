#!/usr/bin/env bash
# Builds codecllm with the CUDA backend for Hopper (sm_90) and runs the GPU checks and benchmarks
# of src/cuda (tests/gpu/gpu_check.c): GPU rANS decoders bit-exact against the C decoder,
# corruption reporting, every compute kernel against its C reference, decode and matvec timings.
# Ends with a summary table. Exit status: gpu_check's (0 pass, 1 fail, 77 no GPU).
#   scripts/gpu-test.sh            full run (includes 7B-layer decode benchmarks, ~3-5 minutes)
#   scripts/gpu-test.sh --quick    skips the 7B-layer benchmarks
# Needs the Debian packages of scripts/install-deps.sh and the CUDA toolkit (nvcc in PATH or
# /usr/local/cuda/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
# On the GPU machine the Debian packages travel in .debs/ (scripts/fetch-debs.sh).
if [ -d .debs ]; then source scripts/gpu-env.sh; fi
dir=${CLLM_GPU_BUILD_DIR:-build-gpu}
export PATH="$PATH:/usr/local/cuda/bin"
jobs=$(nproc)

mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCODECLLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 1; }
cmake --build "$dir" -j"$jobs" --target codecllm

# tests/gpu is a subdirectory the top-level CMakeLists.txt adds when CUDA is on; until it does,
# build the program by hand against the library.
bin="$dir/tests/gpu/gpu_check"
if cmake --build "$dir" -j"$jobs" --target gpu_check >/dev/null 2>&1; then
    :
else
    mkdir -p "$dir/tests/gpu"
    # shellcheck disable=SC2046
    cc -std=c11 -O2 -Wall -Wextra -Wshadow -fopenmp -D_GNU_SOURCE -Iinclude -Isrc \
       -c tests/gpu/gpu_check.c -o "$dir/tests/gpu/gpu_check.o"
    # shellcheck disable=SC2046
    nvcc -o "$bin" "$dir/tests/gpu/gpu_check.o" "$dir/libcodecllm.a" -lcublas \
         $(pkg-config --libs jansson libxxhash libzstd libpcre2-8) -Xcompiler -fopenmp -lm
fi

echo "== resource usage of the decoder (registers / shared memory / spills)"
nvcc -std=c++17 -O3 -gencode arch=compute_90,code=sm_90 --use_fast_math --resource-usage \
     -Iinclude -Isrc -c src/cuda/cllm_cuda_decode.cu -o /dev/null 2>&1 |
    grep -E "stack frame|Used" | sed 's/^ptxas info *: //' || true

log="$dir/gpu_check.log"
set +e
"$bin" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo
echo "================================ gpu-test summary ================================"
sed -n '/^==== SUMMARY/,$p' "$log"
grep -E "^BENCH" "$log" || true
echo "gpu_check exit status: $rc"
exit "$rc"
