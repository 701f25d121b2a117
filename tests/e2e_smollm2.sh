# End-to-end: the real chat model SmolLM2-135M-Instruct (GGUF v3: Q4_1 projections, Q8_0 tied
# embeddings, F32 norms, gpt2 BPE tokenizer with pre-tokenizer "smollm") against the independent
# float64 reference outputs in ../shared/models/smollm2/reference.json:
#   - convert raw, lossless and int8; the stored tokenizer bundle loads;
#   - tokenize: every "tokenize" entry (see check_tokenize below for the reference's whitespace);
#   - logits teacher-forced over the passage (raw, lossless): argmax equal at >= 99% of positions,
#     perplexity within 0.5% of the reference's exp(mean nll);
#   - greedy continuation of each chat prompt (raw, lossless) equal to the reference up to the
#     first step whose top-1/top-2 margin is below 0.1;
#   - int8 against raw with `compare` (KL and top-1 printed; loose sanity bounds);
#   - a bare question (no template) ends at once, and run points at `chat`.
source "$(dirname "$0")/e2elib.sh"
GGUF=$(need_shared models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
REF=$(need_shared models/smollm2/reference.json)
command -v python3 > /dev/null || fail "python3 is needed for the JSON checks"

# A sanitizer build runs the forward pass ~50x slower: there every path still runs once (logits of
# both codecs over the whole passage, one chat per codec, compare), with fewer generated tokens
# (-n 4) and compare over the first 16 passage tokens.
N_GEN=24
SANITIZED=0
if ldd "$BIN" 2> /dev/null | grep -E "libasan|libubsan" > /dev/null; then  # not -q: see asan_build in e2elib.sh
    SANITIZED=1
    N_GEN=4
    echo "sanitizer build: reduced plan (one chat per codec, -n $N_GEN, compare over 16 tokens)"
fi

for codec in raw lossless int8; do
    "$BIN" convert "$GGUF" "$TMP/$codec.cllm" --codec "$codec" --threads 2 2> "$TMP/conv.txt" \
        || { cat "$TMP/conv.txt" >&2; fail "convert --codec $codec"; }
done
"$BIN" verify "$TMP/lossless.cllm" --against "$GGUF" > "$TMP/verify.txt" 2>&1 \
    || { cat "$TMP/verify.txt" >&2; fail "verify lossless against the GGUF"; }

# Truncated copies: in the metadata, and in the tensor data. Both fail with a message.
head -c 100000 "$GGUF" > "$TMP/cut_meta.gguf"
expect_fail "$BIN" convert "$TMP/cut_meta.gguf" "$TMP/cut.cllm"
grep -q -E "truncated|cannot fit" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "truncation not named"; }
head -c 50000000 "$GGUF" > "$TMP/cut_data.gguf"
expect_fail "$BIN" convert "$TMP/cut_data.gguf" "$TMP/cut.cllm"
grep -q "beyond the file" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "no 'beyond the file'"; }
[ ! -e "$TMP/cut.cllm" ] || fail "a failed convert left its output"
rm -f "$TMP"/cut_*.gguf

"$BIN" inspect "$TMP/raw.cllm" --no-zstd > "$TMP/inspect.txt" || fail "inspect"
grep -q "^source: gguf (tensor types: .*Q4_1 210.*); quantized tensors are stored as their float32 dequantization" \
    "$TMP/inspect.txt" || { head -3 "$TMP/inspect.txt" >&2; fail "inspect does not describe the GGUF source"; }

# ---- tokenizer ---------------------------------------------------------------------------------
# The reference's pre-tokenizer drops whitespace that no alternative of llama.cpp's smollm regex
# ('...|\s+(?!\S)', without the final '|\s+') matches, e.g. the "\n" in "assistant\nSure", which
# Hugging Face's ByteLevel and llama.cpp (which keeps the text between matches) both keep as its
# own token. An entry must therefore equal the reference exactly, or equal it once the tokens
# that are a lone whitespace run followed by a non-space are removed (and then those must be the
# only difference).
python3 - "$REF" "$TMP/strings" <<'EOF'
import json, sys
cases = json.load(open(sys.argv[1].replace("reference.json", "reference.cases.json")))
for i, s in enumerate(cases["tokenize"]):
    open("%s.%d" % (sys.argv[2], i), "wb").write(s.encode("utf-8"))
print(len(cases["tokenize"]))
EOF
n_strings=$(ls "$TMP"/strings.* | wc -l)
for ((i = 0; i < n_strings; i++)); do
    "$BIN" tokenize --tokenizer "$TMP/raw.cllm" --file "$TMP/strings.$i" > "$TMP/ids.$i" \
        || fail "tokenize string $i"
    "$BIN" detokenize --tokenizer "$TMP/raw.cllm" $(cat "$TMP/ids.$i") > "$TMP/back.$i" \
        || fail "detokenize string $i"
    cmp -s "$TMP/back.$i" "$TMP/strings.$i" || fail "string $i does not round-trip"
done
python3 - "$REF" "$TMP" "$n_strings" <<'EOF' || fail "tokenize differs from the reference"
import json, sys
ref = json.load(open(sys.argv[1]))["tokenize"]
tmp, n = sys.argv[2], int(sys.argv[3])
lone_ws = {197, 198}  # "\t", "\n": the whitespace tokens these strings hold
ok = True
for i in range(n):
    ours = [int(x) for x in open("%s/ids.%d" % (tmp, i)).read().split()]
    if ours == ref[i]:
        print("tokenize %d: equal (%d tokens)" % (i, len(ours)))
        continue
    text = open("%s/strings.%d" % (tmp, i), "rb").read().decode()
    kept = [t for t in ours if t not in lone_ws]
    if kept == ref[i]:
        print("tokenize %d: equal but for %d lone whitespace token(s) the reference drops"
              % (i, len(ours) - len(kept)))
        continue
    print("tokenize %d: %r\n  ours %s\n  ref  %s" % (i, text, ours, ref[i]))
    ok = False
sys.exit(0 if ok else 1)
EOF

# ---- logits over the passage -------------------------------------------------------------------
python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['passages'][0]['ids'])))" \
    "$REF" > "$TMP/passage.txt"
for codec in raw lossless; do
    "$BIN" logits "$TMP/$codec.cllm" --tokens @"$TMP/passage.txt" --out "$TMP/$codec.f32" \
        -t 2 --backend cpu --weights resident 2> "$TMP/logits.txt" || { cat "$TMP/logits.txt" >&2; fail "logits $codec"; }
    python3 - "$REF" "$TMP/$codec.f32" "$codec" <<'EOF' || fail "logits of $codec differ from the reference"
import array, json, math, sys
p = json.load(open(sys.argv[1]))["passages"][0]
ids, ref_argmax, ref_nll = p["ids"], p["argmax"], p["nll"]
x = array.array("f")
x.frombytes(open(sys.argv[2], "rb").read())
T = len(ids)
V = len(x) // T
assert V * T == len(x) and V == 49152, (len(x), T)
agree, nll = 0, []
for i in range(T):
    row = x[i * V:(i + 1) * V]
    m = max(row)
    agree += row.index(m) == ref_argmax[i]
    if i + 1 < T:
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        nll.append(lse - row[ids[i + 1]])
ppl, ref_ppl = math.exp(sum(nll) / len(nll)), math.exp(sum(ref_nll) / len(ref_nll))
rel = abs(ppl / ref_ppl - 1)
print("%s: argmax agrees at %d/%d positions; perplexity %.4f, reference %.4f (%.3f%%)"
      % (sys.argv[3], agree, T, ppl, ref_ppl, 100 * rel))
sys.exit(0 if agree >= 0.99 * T and rel <= 0.005 else 1)
EOF
done

# ---- greedy chat continuations -----------------------------------------------------------------
n_chat=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['chat']))" "$REF")
for codec in raw lossless; do
    only=0  # sanitizer plan: chat 0 with raw, chat 1 with lossless
    if [ "$codec" = lossless ]; then only=$((1 % n_chat)); fi
    for ((c = 0; c < n_chat; c++)); do
        if [ "$SANITIZED" = 1 ] && [ "$c" -ne "$only" ]; then continue; fi
        prompt=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['chat'][int(sys.argv[2])]['prompt_ids'])))" "$REF" "$c")
        "$BIN" run "$TMP/$codec.cllm" --tokens "$prompt" --temp 0 -n "$N_GEN" --output ids \
            --backend cpu --weights resident -t 2 > "$TMP/gen.txt" 2> "$TMP/run.txt" \
            || { cat "$TMP/run.txt" >&2; fail "run $codec chat $c"; }
        python3 - "$REF" "$c" "$TMP/gen.txt" "$codec" "$N_GEN" <<'EOF' || fail "greedy $codec chat $c differs"
import json, sys
case = json.load(open(sys.argv[1]))["chat"][int(sys.argv[2])]
out = [int(t) for t in open(sys.argv[3]).read().split()]
prompt, ref, margins = case["prompt_ids"], case["greedy"], case["margins"]
assert out[:len(prompt)] == prompt, "the prompt is not echoed first"
gen = out[len(prompt):]
n_gen = int(sys.argv[5])
if len(gen) < n_gen:
    gen.append(2)  # run stopped at EOS (<|im_end|> = 2), which it does not print
# Compared up to (and including) the first step whose margin is tiny: a fp32 engine may part
# ways only there.
n = min(next((i + 1 for i, m in enumerate(margins) if m < 0.1), len(ref)), n_gen)
ok = gen[:n] == ref[:n]
same = next((i for i, (a, b) in enumerate(zip(gen, ref)) if a != b), min(len(gen), len(ref)))
print("%s chat %s: %d/%d reference tokens compared, %s (the first %d of %d are equal)"
      % (sys.argv[4], sys.argv[2], n, len(ref),
         "equal" if ok else "DIFFERENT\n  ours %s\n  ref  %s" % (gen, ref), same, len(ref)))
sys.exit(0 if ok else 1)
EOF
    done
done

# ---- int8 against raw --------------------------------------------------------------------------
if [ "$SANITIZED" = 1 ]; then
    cut -d, -f1-16 "$TMP/passage.txt" > "$TMP/p16.txt"
    mv "$TMP/p16.txt" "$TMP/passage.txt"
fi
"$BIN" compare "$TMP/raw.cllm" "$TMP/int8.cllm" --tokens @"$TMP/passage.txt" -t 2 --backend cpu \
    --weights resident \
    > "$TMP/compare.txt" 2>&1 || { cat "$TMP/compare.txt" >&2; fail "compare raw int8"; }
cat "$TMP/compare.txt"

# ---- a bare question to the instruct model: it ends the text at once (greedy: <|im_end|>
# first), and run says why and points at chat (the model has a chat template) -------------------
"$BIN" run "$TMP/raw.cllm" -p "What is the capital of France?" --temp 0 -n 8 --backend cpu \
    -t 2 > "$TMP/bare.txt" 2> "$TMP/bare.err" || { cat "$TMP/bare.err" >&2; fail "run bare prompt"; }
grep -q "generation: 0 tokens" "$TMP/bare.err" || { cat "$TMP/bare.err" >&2; fail "bare prompt: expected an immediate end of text"; }
grep -q "it has a chat template: 'codecllm chat' applies it" "$TMP/bare.err" \
    || { cat "$TMP/bare.err" >&2; fail "bare prompt: no hint towards chat"; }
echo "bare prompt: ended at once, hint printed"
echo "e2e_smollm2: OK"
