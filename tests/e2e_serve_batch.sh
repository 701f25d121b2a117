#!/usr/bin/env bash
# Continuous batching in `codecllm serve --parallel` on the real model SmolLM2-135M-Instruct
# (client: tests/serve_batch_client.py, python3's standard library only):
#   - 16 clients at once with different prompts (some longer than an engine step, so their
#     prefill runs in chunks beside the others' decoding; half of them streaming) on a server with
#     6 slots: every answer equals its sequential greedy `codecllm run`;
#   - a bounded load test: 200 requests from 8 client threads, all answered 200; the server's RSS
#     (from /proc) after the last request is within 8 MiB of its RSS after warm-up (under
#     AddressSanitizer, whose quarantine keeps freed memory: 40 requests, RSS not checked);
#   - the server stays up, and SIGTERM exits 0.
# Env: CLLM_BIN, CLLM_SHARED, CLLM_SRC (tests/e2elib.sh). Exit 77 = skipped (outside CI).
source "$(dirname "$0")/e2elib.sh"

GGUF=$(need_shared models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
M=$TMP/smollm2.cllm
"$BIN" convert "$GGUF" "$M" --codec raw > /dev/null 2>&1 || fail "convert of the GGUF file"

SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2> /dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# The 16 prompts: short and long ones (the long ones span two or three steps of 64 tokens).
LONG="The old lighthouse keeper climbed the stairs every evening, counting each of the one hundred and twelve steps, listening to the wind and the waves below, remembering the ships that had passed and the storms that had come and gone over the many years he had lived there alone with his cat and his books"
PROMPTS=("Once upon a time" "The capital of France is" "My favourite colour is" "In 1492, Columbus"
         "$LONG" "Water boils at" "The quick brown fox" "A recipe for bread:"
         "$LONG and one night" "Dear diary, today" "The best way to learn" "Cats and dogs"
         "Here is a poem about the sea:" "$LONG. Then" "Step one:" "The moon")
N_GEN=20
: > "$TMP/prompts.txt"
for i in "${!PROMPTS[@]}"; do
    p=${PROMPTS[$i]}
    printf '%s\n' "$p" >> "$TMP/prompts.txt"
    n_prompt=$("$BIN" tokenize --tokenizer "$M" "$p" | wc -w)
    "$BIN" run "$M" -p "$p" --backend cpu -t 2 --temp 0 -n $N_GEN --output ids 2> /dev/null |
        tr ' ' '\n' | tail -n +$((n_prompt + 1)) | grep -vx 2 | tr '\n' ' ' > "$TMP/gen.txt" ||
        fail "run on prompt $i"
    # shellcheck disable=SC2046
    "$BIN" detokenize --tokenizer "$M" $(cat "$TMP/gen.txt") > "$TMP/want.$i.txt" ||
        fail "detokenize $i"
done

"$BIN" serve "$M" --backend cpu --port 0 -t 2 --parallel 6 --queue 64 2> "$TMP/serve.log" &
SERVER_PID=$!
PORT=$(wait_listening "$TMP/serve.log" "$SERVER_PID")
grep -q "6 parallel" "$TMP/serve.log" || fail "the log does not say 6 parallel"

# Under AddressSanitizer freed memory sits in its quarantine (256 MB), so RSS grows by design:
# the bound is then not checked (LeakSanitizer checks at exit instead).
RSS_BOUND_KIB=8192
# An ASan build also takes minutes per request: the client waits 900 s per request (not 300).
if asan_build; then
    RSS_BOUND_KIB=0
    export CLLM_TEST_HTTP_TIMEOUT=900
fi
python3 "$CLLM_SRC/tests/serve_batch_client.py" "$PORT" "$SERVER_PID" "$TMP/prompts.txt" "$TMP" \
    $N_GEN $RSS_BOUND_KIB || fail "client checks (server log: $(tail -5 "$TMP/serve.log"))"
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=
[ "$rc" -eq 0 ] || fail "serve exited $rc on SIGTERM"
echo "ok: SIGTERM exits 0"
echo "e2e_serve_batch: all checks passed"
