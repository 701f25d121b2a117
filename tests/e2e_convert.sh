#!/usr/bin/env bash
# convert / verify / inspect on the real stories260K checkpoint and a synthesized HF model.
source "$(dirname "$0")/e2elib.sh"
model=$(need_shared models/stories260K.bin)

for codec in raw lossless int8; do
    "$BIN" convert "$model" "$TMP/s-$codec.cllm" --codec "$codec" --threads 2
    "$BIN" verify "$TMP/s-$codec.cllm" --against "$model" --quiet \
        || fail "verify --against failed for $codec"
    "$BIN" inspect "$TMP/s-$codec.cllm" --json > "$TMP/s-$codec.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["tensors"]) > 0; assert d["total"]["coded_bytes"] > 0' \
        "$TMP/s-$codec.json" || fail "inspect --json for $codec does not parse"
done
"$BIN" inspect "$TMP/s-lossless.cllm" > "$TMP/inspect.txt"
grep -q "TOTAL" "$TMP/inspect.txt" || fail "inspect text output has no TOTAL"
grep -q "norm.*raw" "$TMP/inspect.txt" || fail "inspect does not show norms stored raw"

# Grouped int8 round trips too.
"$BIN" convert "$model" "$TMP/s-int8g16.cllm" --codec int8 --group 16
"$BIN" verify "$TMP/s-int8g16.cllm" --against "$model" --quiet || fail "verify int8 --group 16"

# A synthesized BF16 model with tensors of >= 1M elements: coded sizes within 1% of the bound.
"$BIN" synth --preset small --layers 2 --dtype bf16 --seed 3 "$TMP/small"
for codec in lossless int8; do
    "$BIN" convert "$TMP/small" "$TMP/small-$codec.cllm" --codec "$codec"
    "$BIN" verify "$TMP/small-$codec.cllm" --against "$TMP/small" --quiet \
        || fail "verify small $codec"
    "$BIN" inspect "$TMP/small-$codec.cllm" --json --no-zstd > "$TMP/small-$codec.json"
    python3 - "$TMP/small-$codec.json" <<'PY' || fail "bound check for $codec"
import json, sys
d = json.load(open(sys.argv[1]))
big = [t for t in d["tensors"] if t["elements"] >= 1 << 20]
assert big, "no tensor of >= 1M elements"
for t in big:
    bpw, bound = t["bits_per_weight"], t["bound_bits_per_weight"]
    extra = 0.0
    if t["codec"] == "int8":
        # int8 scales (one float per row or group) are side information outside the symbol bound.
        extra = 32.0 * t["shape"][0] / t["elements"] * (t["shape"][1] / t["group_size"])
    over = (bpw - extra) / bound - 1
    print(f'{t["name"]}: {bpw:.4f} bits/w, bound {bound:.4f}, overhead {100*over:.3f}%')
    assert over <= 0.01, f'{t["name"]}: {100*over:.3f}% over the bound'
PY
done
echo "e2e_convert: OK"
