#!/usr/bin/env bash
# Installs the Debian packages codecllm builds and tests with. Called by README's Quick start and
# by .ci/run. Idempotent: does nothing when every package is already present. clang, its runtime
# libraries (libFuzzer, sanitizers) and LLVM's OpenMP are for scripts/fuzz-smoke.sh and
# scripts/test.sh --tsan.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libjansson-dev libxxhash-dev libzstd-dev libcmocka-dev
      libpcre2-dev libmicrohttpd-dev clang libclang-rt-dev libomp-dev python3 python3-pip)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
