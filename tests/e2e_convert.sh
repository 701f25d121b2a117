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

# Synthesized BF16 models with tensors of >= 1M elements: coded sizes within 1% of the bound.
# The bound is the order-0 entropy of the coded symbols (plus the raw sign/mantissa bits for
# lossless); int8 scales (one float per row or group) are side information outside it.
check_bound() {  # inspect.json
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
big = [t for t in d["tensors"] if t["elements"] >= 1 << 20]
assert big, "no tensor of >= 1M elements"
for t in big:
    bpw, bound = t["bits_per_weight"], t["bound_bits_per_weight"]
    extra = 0.0
    if t["codec"] == "int8":
        extra = 32.0 * t["shape"][0] / t["elements"] * (t["shape"][1] / t["group_size"])
    over = (bpw - extra) / bound - 1
    print(f'{t["name"]}: {t["codec"]} scale {t["scale_bits"]}, {bpw:.4f} bits/w, '
          f'bound {bound:.4f}, overhead {100*over:.3f}% ({100*(bpw/bound-1):.3f}% with scales)')
    assert over <= 0.01, f'{t["name"]}: {100*over:.3f}% over the bound'
PY
}
"$BIN" synth --preset small --layers 2 --dtype bf16 --seed 3 "$TMP/small"
for codec in lossless int8; do
    "$BIN" convert "$TMP/small" "$TMP/small-$codec.cllm" --codec "$codec"
    "$BIN" verify "$TMP/small-$codec.cllm" --against "$TMP/small" --quiet \
        || fail "verify small $codec"
    "$BIN" inspect "$TMP/small-$codec.cllm" --json --no-zstd > "$TMP/small-$codec.json"
    check_bound "$TMP/small-$codec.json" || fail "bound check for $codec"
done
rm -rf "$TMP/small" "$TMP"/small-*.cllm

# check_ccode inspect.json MAX_BITS: inspect --ccode gives the embedding, every layer matrix and
# the lm_head a compute code (bits/weight consistent with its bytes; all of them together at most
# MAX_BITS including the int8 scales and the exceptions, each at most one bit more) and nothing to
# the norms.
check_ccode() {
    python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); cap = float(sys.argv[2])
mats = ("embeddings", "attn_q", "attn_k", "attn_v", "attn_o", "mlp_gate", "mlp_up", "mlp_down",
        "lm_head")
for t in d["tensors"]:
    b = t["ccode_bits_per_weight"]
    if t["layer_type"] in mats:
        assert b is not None, t["name"]
        assert abs(b - 8.0 * t["ccode_bytes"] / t["elements"]) < 1e-9, t["name"]
        assert 0 <= t["ccode_exceptions"] < t["elements"], t["name"]
        assert b <= cap + 1, (t["name"], b, cap + 1)
    else:
        assert b is None, t["name"]
tot = d["total"]
assert tot["ccode_bits_per_weight"] <= cap, (tot["ccode_bits_per_weight"], cap)
print("compute code: %.3f bits/weight, %.2f%% exceptions" %
      (tot["ccode_bits_per_weight"], 100.0 * tot["ccode_exceptions"] / tot["ccode_elements"]))
PY
}

# The Llama-2-7B shapes (one layer): 4096 x 11008 down_proj has the longest int8 tail. The compute
# code (what --weights fused holds in VRAM) within issue 9's sizes: lossless 11.5 bits/weight, int8
# 6.5 including scales.
"$BIN" synth --preset llama2-7b --layers 1 --dtype bf16 --seed 5 "$TMP/l7"
for codec in lossless int8; do
    "$BIN" convert "$TMP/l7" "$TMP/l7-$codec.cllm" --codec "$codec"
    "$BIN" inspect "$TMP/l7-$codec.cllm" --json --no-zstd --ccode > "$TMP/l7-$codec.json"
    check_bound "$TMP/l7-$codec.json" || fail "7B-shape bound check for $codec"
    cap=11.5; [ "$codec" = int8 ] && cap=6.5
    check_ccode "$TMP/l7-$codec.json" "$cap" || fail "7B-shape compute code for $codec"
    rm -f "$TMP/l7-$codec.cllm"
done
"$BIN" inspect "$TMP/s-lossless.cllm" --ccode > "$TMP/inspect-cc.txt" || fail "inspect --ccode"
grep -q "cc b/w" "$TMP/inspect-cc.txt" || fail "inspect --ccode prints no compute-code column"
echo "e2e_convert: OK"
