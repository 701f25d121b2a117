#!/usr/bin/env python3
"""Generate the GGUF dequantization test vectors in tests/fixtures/gguf_quant/.

Reference: the `gguf` Python package (gguf-py from llama.cpp), version 0.19.0, with numpy 2.4.6,
generated on x86-64. Its gguf.quants.dequantize is the specification that
src/model/gguf_quant.c matches bit for bit; tests/test_gguf_quant.c checks it on these files.

    pip install gguf==0.19.0 numpy
    python3 scripts/gen-gguf-quant-vectors.py [out_dir]   # default tests/fixtures/gguf_quant

Output is deterministic (fixed seeds). For every type codecllm dequantizes, <TYPE>.bin holds:
  - blocks from gguf.quants.quantize of random float data (types gguf-py can quantize), and
  - blocks of random raw bytes whose fp16 scale fields are set to chosen values: ordinary small
    scales, random 16-bit patterns, and edge values (zero, -0, subnormals, the largest finite,
    +-inf, quiet and signalling NaNs),
followed by the reference's float32 output for all of them. Layout (little-endian):

    offset  size
    0       4     magic "GQV1"
    4       4     u32 ggml type id
    8       4     u32 elements per block
    12      4     u32 bytes per block
    16      4     u32 n_blocks
    20      4     u32 n_quantized (the first n_quantized blocks came from quantize())
    24      8     zero
    32      n_blocks * bytes_per_block             the raw blocks
    ...     n_blocks * elements_per_block * 4      float32 reference output

types.txt lists gguf-py's GGML_QUANT_SIZES table, one "id name block_elems block_bytes" a line.
"""
import importlib.metadata
import os
import struct
import sys

import gguf
import numpy as np
from gguf.constants import GGML_QUANT_SIZES
from gguf.constants import GGMLQuantizationType as T

GGUF_VERSION = "0.19.0"

# Byte offsets of the fp16 scale fields of each type's block (d first, then m / dmin).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64], T.MXFP4: [],
}
PLAIN = [T.F32, T.F16, T.BF16]
QUANTIZABLE = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0, T.MXFP4}

F16_EDGES = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
             0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x7FFF, 0x3C00]


def ordinary_scale(rng):
    """An fp16 scale of the size real checkpoints have (1e-4 .. 1e-1, either sign)."""
    v = np.float16(rng.choice([-1, 1]) * 10 ** rng.uniform(-4, -1))
    return int(np.array([v]).view(np.uint16)[0])


def edge_sequence(rng):
    """This type's order of edge values: a NaN, an infinity and a subnormal first (so that even a
    type with few edge slots meets each kind), then the rest shuffled."""
    first = [int(rng.choice([0x7C01, 0x7E00, 0xFE00, 0x7D55])), int(rng.choice([0x7C00, 0xFC00])),
             int(rng.choice([0x0001, 0x8001, 0x03FF]))]
    rest = [e for e in F16_EDGES if e not in first]
    return first + [rest[i] for i in rng.permutation(len(rest))]


def is_nan16(h):
    return (h & 0x7C00) == 0x7C00 and (h & 0x3FF) != 0


def raw_blocks(qtype, n_blocks, rng):
    """Random blocks; field k of block i holds an edge value when i + k is odd, else an ordinary
    scale or (every other time) a random 16-bit pattern."""
    _, bb = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    fields = F16_FIELDS[qtype]
    edges, n_edges = edge_sequence(rng), 0
    for i in range(n_blocks):
        vals = []
        for k in range(len(fields)):
            if (i + k) % 2 == 1:
                vals.append(edges[n_edges % len(edges)])
                n_edges += 1
            elif (i // 2) % 2 == 1:
                vals.append(int(rng.integers(0, 1 << 16)))
            else:
                vals.append(ordinary_scale(rng))
        if qtype in (T.Q4_1, T.Q5_1) and is_nan16(vals[1]) and (vals[0] & 0x7C00) == 0x7C00:
            # d*q + m with two NaN operands: which payload wins depends on operand order, which
            # neither numpy nor a C compiler promises for a commutative add. Keep one NaN.
            vals[0] = ordinary_scale(rng)
        for off, v in zip(fields, vals):
            raw[i, off:off + 2] = np.array([v], dtype="<u2").view(np.uint8)
    if qtype == T.MXFP4:  # the E8M0 exponent byte: cover both ends
        raw[:8, 0] = [0, 1, 2, 3, 127, 253, 254, 255]
    return raw


def float_data(n_blocks, block, rng):
    """Weights-like rows, plus a zero block, a constant block and one with an outlier."""
    x = (rng.standard_normal((n_blocks, block)) * 0.05).astype(np.float32)
    if n_blocks >= 4:
        x[1] = 0
        x[2] = 0.25
        x[3, 5] = 40.0
    return x


def plain_raw(qtype, n, rng):
    size = {T.F32: 4, T.F16: 2, T.BF16: 2}[qtype]
    raw = rng.integers(0, 256, size=n * size, dtype=np.uint8)
    if qtype == T.F16:
        raw[:2 * len(F16_EDGES)] = np.array(F16_EDGES, dtype="<u2").view(np.uint8)
    elif qtype == T.BF16:
        edges = [0, 0x8000, 1, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFFF, 0x3F80]
        raw[:2 * len(edges)] = np.array(edges, dtype="<u2").view(np.uint8)
    else:
        edges = [0, 0x80000000, 1, 0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001]
        raw[:4 * len(edges)] = np.array(edges, dtype="<u4").view(np.uint8)
    return raw.reshape(n, size)


def make_type(qtype, rng):
    block, bb = GGML_QUANT_SIZES[qtype]
    if qtype in PLAIN:
        n_q = 256
        data = float_data(1, n_q, rng).reshape(-1)
        quant = gguf.quants.quantize(data, qtype).view(np.uint8).reshape(n_q, bb)
        raw = plain_raw(qtype, 512, rng)
    else:
        n_q = (24 if block == 32 else 4) if qtype in QUANTIZABLE else 0
        n_raw = 24 if block == 32 else 8
        if n_q:
            data = float_data(n_q, block, rng)
            quant = gguf.quants.quantize(data, qtype).reshape(n_q, bb)
        else:
            quant = np.zeros((0, bb), dtype=np.uint8)
        raw = raw_blocks(qtype, n_raw, rng)
    blocks = np.ascontiguousarray(np.concatenate([quant, raw], axis=0).astype(np.uint8))
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(blocks.reshape(1, -1), qtype)
    ref = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
    assert ref.dtype == np.float32 and ref.size == blocks.shape[0] * block
    return n_q, blocks, ref


def main():
    have = importlib.metadata.version("gguf")
    if have != GGUF_VERSION:
        print(f"warning: gguf {have} installed, these vectors document {GGUF_VERSION}",
              file=sys.stderr)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf_quant")
    os.makedirs(out, exist_ok=True)
    total = 0
    for qtype in PLAIN + list(F16_FIELDS):
        rng = np.random.default_rng(1000 + int(qtype))
        n_q, blocks, ref = make_type(qtype, rng)
        block, bb = GGML_QUANT_SIZES[qtype]
        head = b"GQV1" + struct.pack("<5I", int(qtype), block, bb, blocks.shape[0], n_q)
        head += b"\0" * 8
        body = head + blocks.tobytes() + ref.astype("<f4").tobytes()
        with open(os.path.join(out, qtype.name + ".bin"), "wb") as f:
            f.write(body)
        total += len(body)
        print(f"{qtype.name:7s} {blocks.shape[0]:4d} blocks ({n_q} quantized) {len(body)} bytes")
    with open(os.path.join(out, "types.txt"), "w") as f:
        f.write(f"# GGML_QUANT_SIZES of gguf {GGUF_VERSION}: id name block_elems block_bytes\n")
        for qtype, (block, bb) in GGML_QUANT_SIZES.items():
            f.write(f"{int(qtype)} {qtype.name} {block} {bb}\n")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
