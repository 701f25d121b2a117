# Sourced by tests/e2e_*.sh (named so that the e2e_*.sh glob does not run it as a test). Environment from ctest: CLLM_BIN, CLLM_SHARED, CLLM_SRC.
set -euo pipefail
BIN=${CLLM_BIN:?CLLM_BIN must name the codecllm binary}
SHARED=${CLLM_SHARED:-../shared}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cllm-e2e-XXXXXX")
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# need_shared REL: path of a file under ../shared; missing data fails in CI and skips elsewhere.
need_shared() {
    local p="$SHARED/$1"
    if [ ! -e "$p" ]; then
        if [ -n "${CI:-}" ]; then fail "test data $p is missing (CI must have ../shared)"; fi
        echo "SKIP: test data $p is missing (outside CI)"; exit 77
    fi
    echo "$p"
}

# expect_fail CMD...: the command must exit with a code in 1..127 and print an error message.
expect_fail() {
    local rc=0
    "$@" > "$TMP/out.txt" 2> "$TMP/err.txt" || rc=$?
    if [ "$rc" -eq 0 ]; then fail "expected failure: $*"; fi
    if [ "$rc" -gt 127 ]; then fail "crashed (exit $rc): $*"; fi
    if [ ! -s "$TMP/err.txt" ]; then fail "no error message: $*"; fi
}

# wait_listening LOG PID: prints the port from serve's "listening on" line once it appears in LOG.
# serve warms up before it listens (seconds; minutes under the sanitizers on a loaded 2-core CI
# machine), so the bound is generous; a server that exits fails at once with its log.
wait_listening() {
    local log=$1 pid=$2 port=
    for _ in $(seq 1 6000); do
        port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
        if [ -n "$port" ]; then echo "$port"; return 0; fi
        kill -0 "$pid" 2> /dev/null || fail "serve did not start: $(cat "$log")"
        sleep 0.1
    done
    fail "serve did not print its port within 600 s: $(cat "$log")"
}

# asan_build: true when $BIN is an AddressSanitizer build (slower by minutes per server request,
# and its RSS grows by design). grep reads all of ldd's output: with -q it may exit at libasan's
# line while ldd still writes, and under pipefail ldd's SIGPIPE would make the test false
# (measured: 11-13% of 300 tries with both cores busy).
asan_build() { ldd "$BIN" 2> /dev/null | grep libasan > /dev/null; }
