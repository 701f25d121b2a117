# Sourced on the GPU machine, which has CUDA, CMake and a compiler but neither apt nor network:
# unpacks the Debian packages carried in .debs/ (fetched here with scripts/fetch-debs.sh) into a
# private prefix and points pkg-config, the compiler and the loader at it.
CLLM_DX=${CLLM_DX:-/tmp/cllm-dx}
if [ ! -d "$CLLM_DX/usr" ]; then
    mkdir -p "$CLLM_DX"
    for f in .debs/*.deb; do dpkg-deb -x "$f" "$CLLM_DX"; done
fi
export PATH="$CLLM_DX/usr/bin:/usr/local/cuda/bin:$PATH"
export LD_LIBRARY_PATH="$CLLM_DX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$CLLM_DX/usr/lib/x86_64-linux-gnu/pkgconfig:$CLLM_DX/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$CLLM_DX"
command -v pkg-config > /dev/null || ln -sf "$CLLM_DX/usr/bin/pkgconf" "$CLLM_DX/usr/bin/pkg-config"
