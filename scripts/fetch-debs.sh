#!/usr/bin/env bash
# Downloads the Debian packages the GPU build needs into .debs/ (git-ignored), to be carried to
# the GPU machine and unpacked there by scripts/gpu-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .debs
cd .debs
apt-get download libjansson-dev libjansson4 libxxhash-dev libxxhash0 libzstd-dev libzstd1 \
    libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libcmocka-dev libcmocka0 \
    libmicrohttpd-dev libmicrohttpd12 pkgconf pkgconf-bin libpkgconf3
