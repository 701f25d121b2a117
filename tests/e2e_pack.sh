#!/usr/bin/env bash
# codecllm pack / unpack: a safetensors file with F32/F16/BF16/I64/U8/BOOL tensors, metadata, a
# gap, a scalar and a unicode name comes back byte for byte (cmp); inspect and verify read the
# archive; the output rules hold (no overwrite without --force, never the input, nothing left
# behind by a failure); model commands refuse an archive by name. Needs only python3 (stdlib).
source "$(dirname "$0")/e2elib.sh"

python3 - "$TMP/in.safetensors" <<'PY'
import json, random, struct, sys
random.seed(5)
def f32(n): return b"".join(struct.pack("<f", random.gauss(0, 0.05)) for _ in range(n))
def half(n): return b"".join(struct.pack("<H", 0x3c00 | random.getrandbits(10) ^ (random.getrandbits(1) << 15)) for _ in range(n))
def bf16(n): return b"".join(struct.pack("<f", random.gauss(0, 0.05))[2:] for _ in range(n))
parts = [("w.f32", "F32", [64, 48], f32(64 * 48)),
         ("gap", None, None, b"\x07" * 3),
         ("w.f16", "F16", [100], half(100)),
         ("w.bf16", "BF16", [32, 40], bf16(32 * 40)),
         ("position_ids", "I64", [1, 7], b"".join(struct.pack("<q", i) for i in range(7))),
         ("\u00fcber.\u6743\u91cd", "U8", [5], bytes(range(5))),
         ("mask", "BOOL", [3], b"\x01\x00\x01"),
         ("scalar", "F32", [], struct.pack("<f", 3.5))]
header, data = {"__metadata__": {"format": "pt", "source": "e2e_pack"}}, b""
for name, dt, shape, raw in parts:
    if dt: header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(header, ensure_ascii=False).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(text)) + text + data)
PY

IN=$TMP/in.safetensors
"$BIN" pack --help | grep "byte for byte" > /dev/null || fail "pack --help"
"$BIN" unpack --help > /dev/null || fail "unpack --help"
"$BIN" pack "$IN" "$TMP/a.cllm" --threads 2
"$BIN" unpack "$TMP/a.cllm" "$TMP/out.safetensors" --threads 2
cmp "$IN" "$TMP/out.safetensors" || fail "round trip differs"
echo "round trip: identical ($(stat -c %s "$IN") bytes)"

"$BIN" verify "$TMP/a.cllm" --against "$IN" > "$TMP/verify.txt" || fail "verify --against"
"$BIN" inspect "$TMP/a.cllm" > "$TMP/inspect.txt" || fail "inspect"
grep -q "packed safetensors archive" "$TMP/inspect.txt" || fail "inspect: not shown as an archive"
grep -q "position_ids" "$TMP/inspect.txt" || fail "inspect: real names missing"
grep -q "1 gaps" "$TMP/inspect.txt" || fail "inspect: gap not counted"
"$BIN" inspect "$TMP/a.cllm" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["archive"] and len(d["tensors"]) == 8, d' ||
    fail "inspect --json"

# Output rules: no overwrite without --force, never the input, nothing left by a failure.
cp "$TMP/out.safetensors" "$TMP/keep"
expect_fail "$BIN" unpack "$TMP/a.cllm" "$TMP/out.safetensors"
grep -q "exists" "$TMP/err.txt" || fail "overwrite refusal not explained"
expect_fail "$BIN" pack "$IN" "$TMP/a.cllm"
"$BIN" unpack "$TMP/a.cllm" "$TMP/out.safetensors" --force
cmp "$IN" "$TMP/out.safetensors" || fail "round trip with --force differs"
expect_fail "$BIN" unpack "$TMP/a.cllm" "$TMP/a.cllm" --force
grep -q "is the input" "$TMP/err.txt" || fail "same-file refusal not explained"
expect_fail "$BIN" pack "$IN" "$IN" --force
cmp "$IN" "$TMP/out.safetensors" || fail "the input was touched"
expect_fail "$BIN" unpack "$IN" "$TMP/x.safetensors"
expect_fail "$BIN" pack "$TMP/a.cllm" "$TMP/x.cllm"
expect_fail "$BIN" pack "$TMP/missing.safetensors" "$TMP/x.cllm"
expect_fail "$BIN" pack "$IN"
grep -q "codecllm pack --help" "$TMP/err.txt" || fail "missing argument: no pointer to --help"

# A corrupt payload: unpack fails, leaves neither output nor temporary file.
size=$(stat -c %s "$TMP/a.cllm")
cp "$TMP/a.cllm" "$TMP/bad.cllm"
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^1]))' "$TMP/bad.cllm" $((size - 4096))
expect_fail "$BIN" unpack "$TMP/bad.cllm" "$TMP/bad.out"
[ ! -e "$TMP/bad.out" ] || fail "a failed unpack left its output"
ls -A "$TMP" | grep '\.tmp-' > /dev/null && fail "a failed unpack left a temporary file"
expect_fail "$BIN" verify "$TMP/bad.cllm"

# Model commands name the problem.
expect_fail "$BIN" run "$TMP/a.cllm" --tokens 1 -n 1 --output ids
grep -q "packed safetensors archive, not a model: use codecllm unpack" "$TMP/err.txt" ||
    fail "run on an archive: $(cat "$TMP/err.txt")"
echo "e2e_pack: OK"
