#!/usr/bin/env bash
# End-to-end checks of `codecllm chat` on the real chat model SmolLM2-135M-Instruct
# (../shared/models/smollm2, see its README):
#   - a question piped in is answered as `run` answers the same prompt rendered by hand;
#   - the second answer of a two-turn chat (KV cache reused across turns) equals `run` on the
#     whole conversation rendered at once;
#   - /reset forgets the conversation; --system; a conversation that outgrows the context ends
#     with a message; a model without a tokenizer or template is refused.
# Env: CLLM_BIN, CLLM_SHARED, CLLM_SRC (tests/e2elib.sh). Exit 77 = skipped (outside CI).
source "$(dirname "$0")/e2elib.sh"

GGUF=$(need_shared models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
REF=$(need_shared models/smollm2/reference.json)
STORIES=$(need_shared models/stories260K.bin)
M=$TMP/smollm2.cllm
"$BIN" convert "$GGUF" "$M" --codec raw > /dev/null 2>&1 || fail "convert of the GGUF file"
chat() { "$BIN" chat "$M" --backend cpu --temp 0 "$@"; }

# 1. Each reference question: the piped answer equals `run` on the same prompt (rendered here by
#    hand, tokenized by `tokenize`), and the France question is answered with Paris. (The
#    reference's own prompt ids lack the "\n" tokens that Hugging Face's tokenizer and llama.cpp
#    keep, see e2e_smollm2.sh, so its continuations answer a different prompt; e2e_smollm2.sh
#    checks the engine against them with `run --tokens`.)
n_cases=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["chat"]))' "$REF")
for i in $(seq 0 $((n_cases - 1))); do
    question=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chat"][int(sys.argv[2])])' \
        "${REF%reference.json}reference.cases.json" "$i")
    printf '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' \
        "$question" > "$TMP/prompt.txt"
    ids=$("$BIN" tokenize --tokenizer "$M" --file "$TMP/prompt.txt") || fail "tokenize the prompt"
    n_prompt=$(echo "$ids" | wc -w)
    # shellcheck disable=SC2086
    "$BIN" run "$M" --tokens "$(echo $ids | tr ' ' ',')" --backend cpu --temp 0 -n 24 --output ids \
        2> /dev/null | tr ' ' '\n' | tail -n +$((n_prompt + 1)) | grep -vx 2 | tr '\n' ' ' > "$TMP/gen.txt" ||
        fail "run on the prompt of case $i"
    # shellcheck disable=SC2046
    "$BIN" detokenize --tokenizer "$M" $(cat "$TMP/gen.txt") > "$TMP/expect.txt" || fail "detokenize"
    echo "$question" | chat -n 24 > "$TMP/answer.txt" 2> "$TMP/err.txt" ||
        fail "chat on case $i: $(cat "$TMP/err.txt")"
    [ "$(cat "$TMP/answer.txt")" = "$(cat "$TMP/expect.txt")" ] ||
        fail "case $i: chat answered '$(cat "$TMP/answer.txt")', run on the same prompt '$(cat "$TMP/expect.txt")'"
    echo "ok: chat case $i: $(head -c 60 "$TMP/answer.txt" | tr '\n' ' ')"
done
echo "What is the capital of France?" | chat -n 24 | grep Paris > /dev/null || fail "France's capital is not Paris"

# 2. Two turns: the second answer equals run on the whole conversation at once (same tokens, no
#    KV reuse), so reusing the cache changed nothing.
printf 'What is the capital of France?\nAnd of Japan?\n' | chat -n 16 > "$TMP/two.txt" ||
    fail "two-turn chat"
[ "$(wc -l < "$TMP/two.txt")" -eq 2 ] || fail "two-turn chat printed $(wc -l < "$TMP/two.txt") lines"
python3 - "$TMP/two.txt" > "$TMP/conv.txt" <<'EOF'
import sys
a1 = open(sys.argv[1], encoding="utf-8").read().split("\n")[0]
sys.stdout.write("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                 "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?"
                 "<|im_end|>\n<|im_start|>assistant\n" + a1 + "<|im_end|>\n<|im_start|>user\n"
                 "And of Japan?<|im_end|>\n<|im_start|>assistant\n")
EOF
"$BIN" run "$M" -f "$TMP/conv.txt" --backend cpu --temp 0 -n 16 --output ids > "$TMP/run_ids.txt" \
    2> /dev/null || fail "run -f on the conversation"
n_prompt=$("$BIN" tokenize --tokenizer "$M" --file "$TMP/conv.txt" | wc -w)
cut -d' ' -f$((n_prompt + 1))- "$TMP/run_ids.txt" | tr ' ' '\n' | grep -vx 2 | tr '\n' ' ' > "$TMP/gen_ids.txt"
# shellcheck disable=SC2046
"$BIN" detokenize --tokenizer "$M" $(cat "$TMP/gen_ids.txt") > "$TMP/run_answer.txt"
[ "$(sed -n 2p "$TMP/two.txt")" = "$(cat "$TMP/run_answer.txt")" ] ||
    fail "second answer '$(sed -n 2p "$TMP/two.txt")' differs from run's '$(cat "$TMP/run_answer.txt")'"
echo "ok: two-turn chat equals run on the whole conversation"

# 3. /reset: the same question after a reset gets the first answer again; /exit stops reading.
printf 'What is the capital of France?\n/reset\nWhat is the capital of France?\n/exit\nHi\n' |
    chat -n 16 > "$TMP/reset.txt" || fail "chat with /reset"
[ "$(wc -l < "$TMP/reset.txt")" -eq 2 ] || fail "/exit did not stop the session"
[ "$(sed -n 1p "$TMP/reset.txt")" = "$(sed -n 2p "$TMP/reset.txt")" ] || fail "/reset kept state"
echo "ok: /reset and /exit"

# 4. --system replaces the template's default system prompt (the answer changes or not, but the
#    run must work); --no-system too.
echo "Hi" | chat -n 4 --system "You are a pirate." > /dev/null || fail "--system"
echo "Hi" | chat -n 4 --no-system > /dev/null || fail "--no-system"

# 5. A conversation larger than the context: a message and exit 1 when piped; an answer cut by
#    a full context ends normally.
expect_fail sh -c "echo 'What is the capital of France?' | '$BIN' chat '$M' --backend cpu -c 16"
grep -q "no longer fits the context" "$TMP/err.txt" || fail "no context message: $(cat "$TMP/err.txt")"
echo "What is the capital of France?" | chat -c 40 -n 100 > /dev/null 2> "$TMP/err.txt" ||
    fail "an answer cut by the context should end normally"
grep -q "context of 40 positions is full" "$TMP/err.txt" || fail "no context-full message"
echo "ok: context limits"

# 6. Models without a tokenizer, and unknown template names, are refused with a message.
"$BIN" convert "$STORIES" "$TMP/stories.cllm" --codec raw > /dev/null 2>&1 || fail "convert stories"
expect_fail sh -c "echo Hi | '$BIN' chat '$TMP/stories.cllm'"
grep -q "no tokenizer" "$TMP/err.txt" || fail "no-tokenizer message: $(cat "$TMP/err.txt")"
expect_fail "$BIN" chat "$M" --chat-template jinja
echo "ok: refusals"
echo "e2e_chat: all checks passed"
