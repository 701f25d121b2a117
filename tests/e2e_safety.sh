#!/usr/bin/env bash
# Every byte checked, nothing lost (issue 8): checksums verified at open, NaN/Inf weights refused at
# convert, output files that never replace what they must not, bounded readers, exit codes
# (2 = usage only). Needs no ../shared data except the GPT-2 tokenizer for the UTF-8 case.
source "$(dirname "$0")/e2elib.sh"

# expect_rc N CMD...: the command exits with exactly N.
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" > "$TMP/out.txt" 2> "$TMP/err.txt" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$TMP/err.txt" >&2; fail "exit $rc, expected $want: $*"; }
}
err_has() { grep -qi -- "$1" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "no '$1' in the error"; }; }

"$BIN" synth --preset tiny --seed 1 "$TMP/tiny" 2> /dev/null
"$BIN" convert "$TMP/tiny" "$TMP/m.cllm" 2> /dev/null

# ---- checksums at open --------------------------------------------------------------------------
# Flip one payload byte of the final norm (a raw tensor: it still decodes, so only the checksum
# can tell).
python3 - "$TMP/m.cllm" "$TMP/flip.cllm" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack_from("<I", b, 24)[0]
for i in range(n):
    e = 256 + i * 256
    name = bytes(b[e:e + 128]).split(b"\0")[0].decode()
    if name == "model.norm.weight":
        off = struct.unpack_from("<Q", b, e + 176)[0]
        b[off + 1] ^= 0x01
        break
else:
    sys.exit("no model.norm.weight")
open(sys.argv[2], "wb").write(b)
PY
printf '1 2 3 4' > "$TMP/ids.txt"
for cmd in "run --tokens 1,2 -n 2 --output ids" "logits --tokens 1,2,3 --out $TMP/l.f32" \
           "perplexity -f $TMP/ids.txt" "bench -p 4 -n 2 -r 1 --backend cpu"; do
    # shellcheck disable=SC2086
    expect_rc 1 "$BIN" ${cmd%% *} "$TMP/flip.cllm" ${cmd#* }
    err_has "checksum"
done
expect_rc 1 "$BIN" compare "$TMP/m.cllm" "$TMP/flip.cllm" --tokens 1,2,3
err_has "checksum"
expect_rc 0 "$BIN" run "$TMP/flip.cllm" --tokens 1,2 -n 2 --output ids --no-verify
expect_rc 0 "$BIN" run "$TMP/m.cllm" --tokens 1,2 -n 2 --output ids
[ ! -e "$TMP/l.f32" ] || fail "logits wrote a file for a damaged model"
echo "ok: a flipped payload byte stops run, logits, perplexity, bench and compare"

# ---- non-finite weights -------------------------------------------------------------------------
# NaN in the final norm (1-D: stored raw even with int8) and +Inf in the embedding's last value.
python3 - "$TMP/tiny" "$TMP/nan" <<'PY'
import json, os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
p = os.path.join(dst, "model.safetensors")
b = bytearray(open(p, "rb").read())
hl = struct.unpack_from("<Q", b, 0)[0]
hdr = json.loads(b[8:8 + hl])
def at(name, k):
    lo, hi = hdr[name]["data_offsets"]
    assert hdr[name]["dtype"] == "BF16"
    return 8 + hl + (lo if k >= 0 else hi + 2 * k)
struct.pack_into("<H", b, at("model.norm.weight", 0), 0x7FC0)            # NaN
struct.pack_into("<H", b, at("model.embed_tokens.weight", -1), 0x7F80)   # +Inf
open(p, "wb").write(b)
PY
expect_rc 1 "$BIN" convert "$TMP/nan" "$TMP/nan.cllm"
err_has "tensor 'model.embed_tokens.weight' has 1 NaN/infinite value"
err_has "allow-nonfinite"
[ ! -e "$TMP/nan.cllm" ] || fail "convert wrote a file with NaN weights"
expect_rc 1 "$BIN" convert "$TMP/nan" "$TMP/nan.cllm" --codec int8 --allow-nonfinite
err_has "model.embed_tokens.weight"
err_has "int8"
expect_rc 0 "$BIN" convert "$TMP/nan" "$TMP/nan.cllm" --allow-nonfinite
expect_rc 0 "$BIN" verify "$TMP/nan.cllm" --against "$TMP/nan"
# NaN logits are bad data (exit 1), not a usage error.
expect_rc 1 "$BIN" run "$TMP/nan.cllm" --tokens 1,2 -n 2 --output ids
err_has "NaN"
echo "ok: NaN/Inf weights refused at convert unless --allow-nonfinite; NaN logits exit 1"

# ---- exit codes ---------------------------------------------------------------------------------
expect_rc 2 "$BIN" run "$TMP/m.cllm" --bogus
expect_rc 1 "$BIN" run "$TMP/m.cllm" --tokens 1,999999 -n 2 --output ids
# A full context ends generation normally.
expect_rc 0 "$BIN" run "$TMP/m.cllm" --tokens 1,2 -n 100 -c 8 --output ids --ignore-eos --seed 1
err_has "context"
gpt2="$SHARED/tokenizers/gpt2.tokenizer.json"
if [ -r "$gpt2" ]; then
    printf 'ok \xff\xfe bad' > "$TMP/bad-utf8.txt"
    expect_rc 1 "$BIN" tokenize --tokenizer "$gpt2" --file "$TMP/bad-utf8.txt"
    err_has "UTF-8"
    expect_rc 1 "$BIN" detokenize --tokenizer "$gpt2" 99999999
elif [ -n "${CI:-}" ]; then
    fail "$gpt2 is missing (CI must have ../shared)"
fi
# -p beyond the context is a usage error, reported without reading the freed engine (ASan).
expect_rc 2 "$BIN" bench "$TMP/m.cllm" --backend cpu -c 8 -p 16
err_has "exceed the context of 8"
echo "ok: exit 2 for usage errors only"

# ---- output files -------------------------------------------------------------------------------
# A symlink planted at the old temporary name "<OUT>.tmp-<pid>" (bash's $$ survives exec).
echo "precious" > "$TMP/victim"
bash -c 'ln -s "$1/victim" "$1/out.cllm.tmp-$$"; exec "$2" convert "$1/tiny" "$1/out.cllm"' _ \
    "$TMP" "$BIN" 2> /dev/null || fail "convert with a planted symlink failed"
[ "$(cat "$TMP/victim")" = "precious" ] || fail "convert wrote through a planted symlink"
"$BIN" verify "$TMP/out.cllm" > /dev/null || fail "the converted file does not verify"
rm -f "$TMP"/out.cllm.tmp-*

# The output is an input: the HF directory's weights, or the tokenizer.
cp "$TMP/tiny/model.safetensors" "$TMP/weights.orig"
expect_rc 1 "$BIN" convert "$TMP/tiny" "$TMP/tiny/model.safetensors"
err_has "refusing"
cmp -s "$TMP/tiny/model.safetensors" "$TMP/weights.orig" || fail "convert replaced its input"
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}}' > "$TMP/tok.json"
cp "$TMP/tok.json" "$TMP/tok.orig"
expect_rc 1 "$BIN" convert "$TMP/tiny" "$TMP/tok.json" --tokenizer "$TMP/tok.json"
cmp -s "$TMP/tok.json" "$TMP/tok.orig" || fail "convert replaced its tokenizer"

# An output that is not a regular file (a FIFO, a directory) is refused and left alone.
mkfifo "$TMP/fifo"
expect_rc 1 "$BIN" convert "$TMP/tiny" "$TMP/fifo"
err_has "FIFO"
[ -p "$TMP/fifo" ] || fail "convert replaced a FIFO"
mkdir "$TMP/dir"
expect_rc 1 "$BIN" convert "$TMP/tiny" "$TMP/dir"
# As root a rename replaces a device node (convert ... /dev/full did): a private node stands in.
if [ "$(id -u)" -eq 0 ] && mknod "$TMP/null" c 1 3 2> /dev/null; then
    expect_rc 1 "$BIN" convert "$TMP/tiny" "$TMP/null"
    err_has "character device"
    [ -c "$TMP/null" ] || fail "convert replaced a device node"
fi
expect_rc 1 timeout 60 "$BIN" logits "$TMP/m.cllm" --tokens 1,2 --out "$TMP/fifo"
[ -p "$TMP/fifo" ] || fail "logits replaced a FIFO"

# logits --out never leaves a partial file: a 1 KiB file-size limit makes the write fail.
echo "old" > "$TMP/l.f32"
(trap '' XFSZ; ulimit -f 1; exec "$BIN" logits "$TMP/m.cllm" --tokens 1,2,3,4 --out "$TMP/l.f32") \
    > /dev/null 2> "$TMP/err.txt" && fail "logits succeeded past the file-size limit"
[ "$(cat "$TMP/l.f32")" = "old" ] || fail "a failed logits --out damaged the existing file"
ls "$TMP" | grep 'l.f32.tmp-' > /dev/null && fail "a failed logits --out left a temporary file"
expect_rc 0 "$BIN" logits "$TMP/m.cllm" --tokens 1,2,3,4 --out "$TMP/l.f32"
[ "$(stat -c %s "$TMP/l.f32")" -eq $((4 * 512 * 4)) ] || fail "logits --out has the wrong size"

# synth refuses a non-empty directory unless --force.
expect_rc 1 "$BIN" synth --preset tiny "$TMP/tiny"
err_has "--force"
expect_rc 0 "$BIN" synth --preset tiny --force "$TMP/tiny"
mkdir "$TMP/empty"
expect_rc 0 "$BIN" synth --preset tiny "$TMP/empty"

# SIGTERM removes the temporary files of an interrupted synth and convert.
interrupt() {  # interrupt DIR CMD...: start CMD, TERM it once a temporary file shows up in DIR
    local dir=$1
    shift
    "$@" 2> /dev/null &
    local pid=$! i
    for i in $(seq 1 600); do
        ls "$dir" 2> /dev/null | grep '\.tmp-' > /dev/null && break
        sleep 0.05
    done
    kill -TERM "$pid" 2> /dev/null || fail "$* finished before it could be interrupted"
    local rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 143 ] || fail "interrupted $* exited $rc, expected 143 (SIGTERM)"
    if ls "$dir" | grep '\.tmp-' > /dev/null; then fail "SIGTERM left a temporary file: $(ls "$dir")"; fi
}
interrupt "$TMP/big" "$BIN" synth --preset small --layers 4 --threads 1 "$TMP/big"
"$BIN" synth --preset small --layers 2 --threads 1 --force "$TMP/big" 2> /dev/null
mkdir "$TMP/conv"
interrupt "$TMP/conv" "$BIN" convert "$TMP/big" "$TMP/conv/big.cllm" --threads 1 --codec int8
mkdir "$TMP/pk"
interrupt "$TMP/pk" "$BIN" pack "$TMP/big/model.safetensors" "$TMP/pk/big.cllm" --threads 1
"$BIN" pack "$TMP/big/model.safetensors" "$TMP/big.cllm" --threads 1 2> /dev/null
interrupt "$TMP/pk" "$BIN" unpack "$TMP/big.cllm" "$TMP/pk/big.safetensors" --threads 1
echo "ok: output files"

# ---- bounded readers ----------------------------------------------------------------------------
expect_rc 1 timeout 60 "$BIN" logits "$TMP/m.cllm" --tokens @/dev/zero --out "$TMP/z.f32"
err_has "limit"
"$BIN" convert "$TMP/tiny" "$TMP/tok.cllm" --tokenizer "$TMP/tok.json" 2> /dev/null
expect_rc 1 timeout 60 "$BIN" perplexity "$TMP/tok.cllm" -f /dev/zero
err_has "limit"
expect_rc 1 timeout 60 "$BIN" tokenize --tokenizer "$TMP/tok.json" --file /dev/zero
err_has "limit"
expect_rc 1 "$BIN" tokenize --tokenizer "$TMP/tok.json" --file "$TMP"
err_has "directory"
expect_rc 1 "$BIN" tokenize --tokenizer "$TMP" a
err_has "directory"
# tokenizer.json ids are bounded by its entries: 59 bytes must not cost 400 MB.
printf '{"model":{"type":"BPE","vocab":{"a":16777215},"merges":[]}}' > "$TMP/t59.json"
expect_rc 1 "$BIN" tokenize --tokenizer "$TMP/t59.json" a
err_has "outside"
echo "ok: bounded readers"

# ---- not a model: a GGUF file without a model, random bytes ------------------------------------
printf 'GGUF\3\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' > "$TMP/x.gguf"
expect_rc 1 "$BIN" convert "$TMP/x.gguf" "$TMP/x.cllm"
err_has "general.architecture"
head -c 4096 /dev/urandom > "$TMP/random.bin"
expect_rc 1 "$BIN" convert "$TMP/random.bin" "$TMP/x.cllm"
err_has "not a llama2.c checkpoint"
echo "e2e_safety: OK"
