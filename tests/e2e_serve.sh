#!/usr/bin/env bash
# End-to-end checks of `codecllm serve` on the real chat model SmolLM2-135M-Instruct, with a client
# written against python3's standard library (CI has no pip packages):
#   - greedy chat completion equals `codecllm chat` piped the same question; streaming chat
#     concatenates to the same text; a completion equals `run` on the same prompt; /v1/models;
#   - 401 without the API key; 400 (truncated JSON, wrong types, max_tokens -1 and 10^9, n=2),
#     404, 405, 413 for a 10 MB body (refused from its Content-Length, not read);
#   - a client that disconnects mid-stream frees the engine; 4 concurrent clients each get their
#     own answer; 40 requests in a loop all answered; SIGTERM exits 0;
#   - with the official `openai` package when it is installed (tests/openai_client.py): chat
#     completion, streaming chat and completion equal chat/run; else a SKIP line for that part;
#   - a second server with --parallel 1 --queue 0: a request while another streams gets 503 +
#     Retry-After, and SIGINT during a stream ends it and exits 0.
# Env: CLLM_BIN, CLLM_SHARED, CLLM_SRC (tests/e2elib.sh). Exit 77 = skipped (outside CI).
source "$(dirname "$0")/e2elib.sh"

GGUF=$(need_shared models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
M=$TMP/smollm2.cllm
"$BIN" convert "$GGUF" "$M" --codec raw > /dev/null 2>&1 || fail "convert of the GGUF file"

SERVER_PIDS=()
cleanup() {
    for p in "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2> /dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# start_server LOG ARGS...: starts serve on a free loopback port (--port 0, the port is read from
# its first log line); sets SERVER_PID and PORT.
start_server() {
    local log=$1
    shift
    "$BIN" serve "$M" --backend cpu --port 0 -t 2 "$@" 2> "$log" &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    PORT=$(wait_listening "$log" "$SERVER_PID")
    python3 - "$PORT" <<'PY' || fail "no /health from the server"
import sys, time, urllib.request
for _ in range(100):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# The references: chat piped one question (greedy), run on a completion prompt.
Q="What is the capital of France?"
echo "$Q" | "$BIN" chat "$M" --backend cpu --temp 0 -n 24 > "$TMP/chat.txt" 2> /dev/null ||
    fail "chat reference"
Q2="Name a colour."
echo "$Q2" | "$BIN" chat "$M" --backend cpu --temp 0 -n 24 > "$TMP/chat2.txt" 2> /dev/null ||
    fail "chat reference 2"
P="Once upon a time"
n_prompt=$("$BIN" tokenize --tokenizer "$M" "$P" | wc -w)
"$BIN" run "$M" -p "$P" --backend cpu --temp 0 -n 16 --output ids 2> /dev/null |
    tr ' ' '\n' | tail -n +$((n_prompt + 1)) | grep -vx 2 | tr '\n' ' ' > "$TMP/gen.txt" || fail "run"
# shellcheck disable=SC2046
"$BIN" detokenize --tokenizer "$M" $(cat "$TMP/gen.txt") > "$TMP/run.txt" || fail "detokenize"

start_server "$TMP/serve.log" --api-key sekrit --queue 16
# An ASan build takes minutes per request: the client waits 900 s per request (not 120).
if asan_build; then export CLLM_TEST_HTTP_TIMEOUT=900; fi
python3 "$CLLM_SRC/tests/serve_client.py" main "$PORT" sekrit "$Q" "$TMP/chat.txt" "$Q2" \
    "$TMP/chat2.txt" "$P" "$TMP/run.txt" || fail "client checks (server log: $(tail -5 "$TMP/serve.log"))"
# The official openai package (PyPI, not in Debian: CI skips this part).
if python3 -c "import openai" 2> /dev/null; then
    python3 "$CLLM_SRC/tests/openai_client.py" "$PORT" sekrit "$Q" "$TMP/chat.txt" "$P" \
        "$TMP/run.txt" || fail "openai client checks (server log: $(tail -5 "$TMP/serve.log"))"
else
    echo "SKIP: the openai Python package is not installed (pip install openai): its checks skipped"
fi
grep -q "stream cut" "$TMP/serve.log" || fail "the disconnected stream is not in the log"
grep -q "POST /v1/chat/completions 200 prompt=" "$TMP/serve.log" || fail "no request log line"
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "serve exited $rc on SIGTERM"
echo "ok: SIGTERM exits 0"

start_server "$TMP/serve2.log" --parallel 1 --queue 0
python3 "$CLLM_SRC/tests/serve_client.py" busy "$PORT" "$SERVER_PID" ||
    fail "--queue 0 / SIGINT checks (server log: $(tail -5 "$TMP/serve2.log"))"
rc=0
wait "$SERVER_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "serve exited $rc on SIGINT during a stream"
echo "ok: 503 when the queue is full; SIGINT during a stream exits 0"
echo "e2e_serve: all checks passed"
