#!/usr/bin/env bash
# Bad input: corrupted, truncated and missing files give a clear error and an exit code in 1..127.
source "$(dirname "$0")/e2elib.sh"
model=$(need_shared models/stories260K.bin)
"$BIN" convert "$model" "$TMP/good.cllm" --codec lossless
size=$(stat -c %s "$TMP/good.cllm")

# Flip one byte at a time at ~300 positions spread over the whole file (header, config, table,
# padding, every payload); tests/test_container.c flips every byte of a small container.
python3 - "$TMP/good.cllm" "$size" > "$TMP/offsets.txt" <<'PY'
import sys
n = int(sys.argv[2])
offs = set(range(0, min(n, 1024), 7)) | set(range(0, n, max(1, n // 150)))
print("\n".join(str(o) for o in sorted(offs)))
PY
count=0
while read -r off; do
    cp "$TMP/good.cllm" "$TMP/bad.cllm"
    python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x5a]))' "$TMP/bad.cllm" "$off"
    expect_fail "$BIN" verify "$TMP/bad.cllm" --quiet
    count=$((count + 1))
done < "$TMP/offsets.txt"
echo "byte flips rejected: $count"

for len in 0 7 100 4095 4096 $((size / 2)) $((size - 1)); do
    head -c "$len" "$TMP/good.cllm" > "$TMP/trunc.cllm"
    expect_fail "$BIN" verify "$TMP/trunc.cllm"
    expect_fail "$BIN" inspect "$TMP/trunc.cllm"
done
cat "$TMP/good.cllm" <(printf 'x') > "$TMP/long.cllm"
expect_fail "$BIN" verify "$TMP/long.cllm"

expect_fail "$BIN" verify "$TMP/does-not-exist.cllm"
expect_fail "$BIN" convert "$TMP/does-not-exist.bin" "$TMP/x.cllm"
expect_fail "$BIN" convert "$model" "$TMP/x.cllm" --codec nope
head -c 1000 "$model" > "$TMP/short.bin"
expect_fail "$BIN" convert "$TMP/short.bin" "$TMP/x.cllm"
[ ! -e "$TMP/x.cllm" ] || fail "a failed convert left an output file"
ls "$TMP" | grep 'tmp-' > /dev/null && fail "a failed convert left a temporary file"

# Verify against the wrong source reports a mismatch.
"$BIN" synth --preset tiny --seed 1 "$TMP/tiny"
"$BIN" convert "$TMP/tiny" "$TMP/tiny.cllm" --codec lossless
"$BIN" synth --preset tiny --seed 2 "$TMP/tiny2"
expect_fail "$BIN" verify "$TMP/tiny.cllm" --against "$TMP/tiny2"
grep -q "differ" "$TMP/out.txt" "$TMP/err.txt" || fail "mismatch not named"

# inspect --ccode decodes every layer matrix it can hold as compute code (bf16: a multiple of 64
# columns, so not the tiny preset's down_proj, 688 wide): a flipped byte in a bf16 payload is
# refused by name.
"$BIN" synth --preset tiny --seed 1 --dtype bf16 "$TMP/tinyb"
"$BIN" convert "$TMP/tinyb" "$TMP/tinyb.cllm" --codec lossless
"$BIN" inspect "$TMP/tinyb.cllm" --ccode > /dev/null || fail "inspect --ccode on a good file"
off=$("$BIN" inspect "$TMP/tinyb.cllm" --json | python3 -c '
import json, sys
t = [t for t in json.load(sys.stdin)["tensors"] if t["layer_type"] == "mlp_gate"][0]
print(t["data_offset"] + t["coded_bytes"] // 2)')
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x5a]))' "$TMP/tinyb.cllm" "$off"
expect_fail "$BIN" inspect "$TMP/tinyb.cllm" --ccode
grep -q "mlp.gate_proj" "$TMP/err.txt" || fail "inspect --ccode does not name the corrupt tensor"
expect_fail "$BIN" inspect "$TMP/trunc.cllm" --ccode
echo "e2e_badinput: OK"
