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
