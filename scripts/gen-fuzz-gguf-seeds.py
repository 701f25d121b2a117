#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_gguf.c (small GGUF files, valid and broken) and the bundle
seeds of fuzz/fuzz_tokenizer.c. Standard library only. Run from the repository root."""
import json, struct

def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b

def kv(key, t, payload):
    return s(key) + struct.pack("<I", t) + payload

def u32(key, v): return kv(key, 4, struct.pack("<I", v))
def f32(key, v): return kv(key, 6, struct.pack("<f", v))
def boolean(key, v): return kv(key, 7, bytes([v]))
def string(key, v): return kv(key, 8, s(v))
def arr(key, et, items):
    body = b"".join(s(i) if et == 8 else struct.pack({5: "<i", 6: "<f", 4: "<I"}[et], i)
                    for i in items)
    return kv(key, 9, struct.pack("<IQ", et, len(items)) + body)

def gguf(version, kvs, tensors=(), data=b"", align=32):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    for name, ne, typ, off in tensors:
        out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", typ, off)
    out += b"\0" * (-len(out) % align)
    return out + data

def generic(version):
    kvs = [kv("t.u8", 0, b"\xc8"), kv("t.i64", 11, struct.pack("<q", -5)),
           kv("t.f64", 12, struct.pack("<d", 0.25)), u32("t.u32", 7), f32("t.f32", 1.5),
           boolean("t.bool", 1), string("t.str", "hello"), arr("t.arr", 8, ["x", "", "zz"]),
           arr("t.f", 6, [0.5, -2.0]), arr("t.i", 5, [7, -3]), u32("general.alignment", 64)]
    data = struct.pack("<8f", *range(8)) + b"\0" * 32 + b"\x00\x3c" * 8 + b"\0" * 48
    data += (b"\x00\x38" + bytes(range(32))) * 2
    tensors = [("a", [4, 2], 0, 0), ("b", [8], 1, 64), ("c", [32, 2], 8, 128)]
    return gguf(version, kvs, tensors, data, 64)

G = "\u0120"
gpt2_tokens = ["<|end|>", "<|start|>", "a", "b", "c", G, "ab", G + "a", G + "ab", "bc", "1", "2",
               "12", "\u010a", "<user>", "[PAD15]"]
gpt2_types = [3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1]
gpt2_merges = ["a b", G + " a", G + "a b", "b c", "1 2"]

def gpt2_meta(pre):
    return [string("tokenizer.ggml.model", "gpt2"), string("tokenizer.ggml.pre", pre),
            arr("tokenizer.ggml.tokens", 8, gpt2_tokens), arr("tokenizer.ggml.token_type", 5, gpt2_types),
            arr("tokenizer.ggml.merges", 8, gpt2_merges), u32("tokenizer.ggml.eos_token_id", 0),
            string("tokenizer.chat_template", "{{ m }}")]

S = "\u2581"
spm_tokens = ["<unk>", "<s>", "</s>", "<0x41>", "<0x0A>", S, "a", "b", S + "a", "ab", S + "ab", "\u00fc"]
spm_types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1]
spm_scores = [0, 0, 0, 0, 0, -1, -2, -3, -1.5, -2.5, -0.5, -9]
spm_meta = [string("tokenizer.ggml.model", "llama"), arr("tokenizer.ggml.tokens", 8, spm_tokens),
            arr("tokenizer.ggml.scores", 6, spm_scores), arr("tokenizer.ggml.token_type", 5, spm_types),
            u32("tokenizer.ggml.bos_token_id", 1), u32("tokenizer.ggml.eos_token_id", 2),
            boolean("tokenizer.ggml.add_bos_token", 1)]

seeds = {
    "valid_v3_generic": generic(3),
    "valid_v2_generic": generic(2),
    "valid_gpt2_smollm": gguf(3, gpt2_meta("smollm")),
    "valid_gpt2_llama_bpe": gguf(3, gpt2_meta("llama-bpe")),
    "valid_gpt2_qwen2": gguf(3, gpt2_meta("qwen2")),
    "valid_spm": gguf(3, spm_meta),
    "truncated_generic": generic(3)[:150],
    "truncated_tokens": gguf(3, gpt2_meta("default"))[:300],
    "bad_alignment": gguf(3, [u32("general.alignment", 48)]),
    "bad_overlap": gguf(3, [], [("a", [8], 0, 0), ("b", [8], 0, 0)], b"\0" * 64),
    "bad_huge_kv_count": b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 60),
    "bad_nested_array": gguf(3, [kv("n", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 0))]),
}
for name, data in seeds.items():
    open("fuzz/corpus/fuzz_gguf/" + name, "wb").write(data)

tiny = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<e>": 3}, "merges": ["a b"]},
        "added_tokens": [{"id": 3, "content": "<e>", "special": True}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}}
bundle = {"codecllm_bundle": 1, "tokenizer": tiny, "add_bos": False, "chat_template": "{{ m }}",
          "eos_token": "<e>", "source": {"format": "gguf", "tensor_types": {"F32": 1},
                                         "dequantized": False}}
open("fuzz/corpus/fuzz_tokenizer/bundle_tiny", "wb").write(b"\x03" + json.dumps(bundle).encode())
bundle["codecllm_bundle"] = 2
open("fuzz/corpus/fuzz_tokenizer/bundle_version2", "wb").write(b"\x03" + json.dumps(bundle).encode())
