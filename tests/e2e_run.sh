#!/usr/bin/env bash
# End-to-end checks of the engine on stories260K (see ../shared/models/README.md):
#   - greedy generation from BOS reproduces the reference ids exactly (raw and lossless, stream
#     and resident weights);
#   - teacher-forced logits lie within 5e-4 of the float64 reference everywhere;
#   - lossless and raw logits are bit-identical (logits files and `compare`);
#   - int8 runs, and `compare` reports its agreement;
#   - bad input (ids outside the vocabulary, prompts longer than the context, text output without
#     a tokenizer) fails cleanly with a non-zero exit; generation up to a full context ends
#     normally.
# Env: CLLM_BIN (the codecllm binary), CLLM_SHARED (../shared). Exit 77 = skipped (outside CI).
set -u

BIN=${CLLM_BIN:?CLLM_BIN must name the codecllm binary}
SHARED=${CLLM_SHARED:-../shared}
MODEL=$SHARED/models/stories260K.bin
REF_IDS=$SHARED/models/stories260K.greedy_bos.txt
REF_LOGITS=$SHARED/models/stories260K.greedy_bos.logits.f32

for f in "$MODEL" "$REF_IDS" "$REF_LOGITS"; do
    if [ ! -r "$f" ]; then
        if [ -n "${CI:-}" ]; then echo "FATAL: $f is missing (CI must have ../shared)"; exit 1; fi
        echo "SKIP: $f is missing"; exit 77
    fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cllm-e2e-run-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

# Ids of a file on one line, single spaces, no trailing space.
norm_ids() { tr -s ' \n\t' '   ' < "$1" | sed 's/^ *//; s/ *$//'; }

# Max |a - b| over two float32 files of the same size.
max_abs_diff() {
    paste <(od -An -v -w4 -f "$1") <(od -An -v -w4 -f "$2") |
        awk 'BEGIN { m = 0 } { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; n++ }
             END { printf "%.3g %d\n", m, n }'
}

for codec in raw lossless int8; do
    "$BIN" convert "$MODEL" "$TMP/$codec.cllm" --codec "$codec" > "$TMP/convert.log" 2>&1 ||
        { cat "$TMP/convert.log"; fail "convert --codec $codec"; }
done
"$BIN" convert "$MODEL" "$TMP/int8g16.cllm" --codec int8 --group 16 > "$TMP/convert.log" 2>&1 ||
    { cat "$TMP/convert.log"; fail "convert --codec int8 --group 16"; }

# ---- greedy generation -------------------------------------------------------------------------
want=$(norm_ids "$REF_IDS")
for codec in raw lossless; do
    for mode in stream resident; do
        out="$TMP/greedy_${codec}_$mode.txt"
        if ! "$BIN" run "$TMP/$codec.cllm" --tokens 1 -n 255 --temp 0 --output ids \
            --weights "$mode" > "$out" 2> "$TMP/run.err"; then
            cat "$TMP/run.err"; fail "run $codec $mode"; continue
        fi
        if [ "$(norm_ids "$out")" = "$want" ]; then ok "greedy $codec/$mode matches the reference"
        else fail "greedy $codec/$mode differs from the reference"; fi
    done
done
# int8: stream and resident give identical tokens; f16 KV runs.
"$BIN" run "$TMP/int8.cllm" --tokens 1 -n 100 --temp 0 --output ids > "$TMP/i8s.txt" 2>/dev/null &&
    "$BIN" run "$TMP/int8.cllm" --tokens 1 -n 100 --temp 0 --output ids --weights resident \
        > "$TMP/i8r.txt" 2>/dev/null && cmp -s "$TMP/i8s.txt" "$TMP/i8r.txt" &&
    ok "int8 stream == resident" || fail "int8 stream vs resident"
"$BIN" run "$TMP/raw.cllm" --tokens 1 -n 50 --temp 0 --output ids --kv-type f16 > /dev/null 2>&1 &&
    ok "f16 KV cache runs" || fail "run --kv-type f16"
# Sampling is reproducible by seed.
"$BIN" run "$TMP/lossless.cllm" --tokens 1 -n 60 --temp 1 --top-k 40 --top-p 0.9 --seed 7 \
    --output ids > "$TMP/s1.txt" 2>/dev/null
"$BIN" run "$TMP/lossless.cllm" --tokens 1 -n 60 --temp 1 --top-k 40 --top-p 0.9 --seed 7 \
    --output ids > "$TMP/s2.txt" 2>/dev/null
cmp -s "$TMP/s1.txt" "$TMP/s2.txt" && [ -s "$TMP/s1.txt" ] && ok "same seed, same tokens" ||
    fail "sampling with a fixed seed is not reproducible"

# ---- logits ------------------------------------------------------------------------------------
for codec in raw lossless; do
    "$BIN" logits "$TMP/$codec.cllm" --tokens "@$REF_IDS" --out "$TMP/$codec.f32" 2>/dev/null ||
        fail "logits $codec"
done
read -r diff count < <(max_abs_diff "$TMP/raw.f32" "$REF_LOGITS")
if [ "$count" = 131072 ] && awk -v d="$diff" 'BEGIN { exit !(d <= 5e-4) }'; then
    ok "logits within 5e-4 of the reference (max |diff| $diff)"
else
    fail "logits: max |diff| $diff over $count values (want <= 5e-4 over 131072)"
fi
cmp -s "$TMP/raw.f32" "$TMP/lossless.f32" && ok "lossless logits == raw logits, byte for byte" ||
    fail "lossless logits differ from raw"

# ---- compare -----------------------------------------------------------------------------------
"$BIN" compare "$TMP/raw.cllm" "$TMP/lossless.cllm" --sample 64 --sequences 2 > "$TMP/cmp.txt" 2>&1
grep -q "^bit-identical" "$TMP/cmp.txt" && ok "compare raw lossless: bit-identical" ||
    { cat "$TMP/cmp.txt"; fail "compare raw vs lossless is not bit-identical"; }
for q in int8 int8g16; do
    if "$BIN" compare "$TMP/raw.cllm" "$TMP/$q.cllm" --sample 256 --sequences 4 --seed 1 \
        > "$TMP/cmp.txt" 2>&1; then
        echo "compare raw $q: $(grep -E '^(top-1|mean KL)' "$TMP/cmp.txt" | tr '\n' ' ')"
    else
        cat "$TMP/cmp.txt"; fail "compare raw $q"
    fi
done

# ---- bad input ---------------------------------------------------------------------------------
expect_fail() {  # expect_fail WHAT PATTERN CMD...
    local what=$1 pattern=$2; shift 2
    "$@" > "$TMP/bad.out" 2> "$TMP/bad.err"
    local rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -qi -- "$pattern" "$TMP/bad.err"; then
        ok "$what: exit $rc"
    else
        cat "$TMP/bad.err"; fail "$what: exit $rc, wanted a clean failure mentioning '$pattern'"
    fi
}
expect_fail "id outside the vocabulary" "vocabulary" \
    "$BIN" run "$TMP/raw.cllm" --tokens 1,512 -n 3 --output ids
expect_fail "logits id outside the vocabulary" "vocabulary" \
    "$BIN" logits "$TMP/raw.cllm" --tokens 1,99999 --out "$TMP/x.f32"
expect_fail "prompt longer than the context" "context" \
    "$BIN" run "$TMP/raw.cllm" --tokens 1,2,3,4,5 -c 4 -n 3 --output ids
# A full context ends generation normally (as run --help says): exit 0, a message on stderr.
if "$BIN" run "$TMP/raw.cllm" --tokens 1 -c 8 -n 20 --temp 0 --output ids > "$TMP/full.out" \
    2> "$TMP/full.err" && grep -q "context of 8 positions is full" "$TMP/full.err"; then
    ok "generation up to a full context: exit 0"
else
    cat "$TMP/full.err"; fail "generation up to a full context: wanted exit 0 and a message"
fi
expect_fail "text output without a tokenizer" "tokenizer" \
    "$BIN" run "$TMP/raw.cllm" --tokens 1 -n 3
expect_fail "missing model file" "cannot\|no such" \
    "$BIN" run "$TMP/nonexistent.cllm" --tokens 1 --output ids
head -c 5000 "$TMP/raw.cllm" > "$TMP/truncated.cllm"
expect_fail "truncated container" "." \
    "$BIN" run "$TMP/truncated.cllm" --tokens 1 --output ids

if [ "$FAILS" -ne 0 ]; then echo "$FAILS check(s) failed"; exit 1; fi
echo "all engine end-to-end checks passed"
