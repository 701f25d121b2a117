#!/usr/bin/env bash
# Builds codecllm and runs the whole test suite (unit, end-to-end, fuzz-corpus replay) with ctest.
#   scripts/test.sh              Release build in build/
#   scripts/test.sh --sanitize   ASan+UBSan build in build-asan/ (CUDA off)
#   scripts/test.sh --tsan       ThreadSanitizer build in build-tsan/ (clang, LLVM's OpenMP with
#                                its Archer tool so that OpenMP synchronisation is understood);
#                                runs the unit tests (the CPU kernels, decoders and engine)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
filter=()
if [ "${1:-}" = "--sanitize" ]; then
    dir=build-asan
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCODECLLM_SANITIZE=ON -DCODECLLM_CUDA=OFF
elif [ "${1:-}" = "--tsan" ]; then
    dir=build-tsan
    archer=$(clang -print-resource-dir)/../../libarcher.so
    [ -e "$archer" ] || { echo "test.sh --tsan: needs libomp-dev (libarcher.so)" >&2; exit 1; }
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCODECLLM_CUDA=OFF \
        -DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS="-fsanitize=thread" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread"
    export OMP_TOOL_LIBRARIES=$archer
    # The OpenMP runtime is not instrumented: Archer reports its synchronisation to TSan.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:ignore_noninstrumented_modules=1}
    filter=(-R '^test_')
else
    dir=build
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$dir" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir"
ctest --output-on-failure -j"$(nproc)" --timeout 1500 "${filter[@]}"
