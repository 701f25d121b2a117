#!/usr/bin/env python3
"""Measurement helper for `codecllm pack` (docs/PERF.md, "pack: lossless safetensors").

  st_bf16.py IN.safetensors OUT.safetensors   F32 tensors rounded to BF16 (round to nearest
                                              even), everything else copied; same order, metadata
  st_bf16.py --bound FILE.safetensors         order-0 bound of the float tensors: one exponent
                                              histogram over all of them, entropy + sign/mantissa

Needs numpy (a measurement tool, not used by the tests).
"""
import json
import struct
import sys

import numpy as np


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw, 0)[0]
    return json.loads(raw[8:8 + n]), memoryview(raw)[8 + n:]


def to_bf16(f32):
    u = f32.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    nan = np.isnan(f32)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)            # keep NaNs quiet NaNs
    return r


def convert(src, dst):
    header, data = read(src)
    out, parts, pos = {}, [], 0
    items = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                   key=lambda kv: kv[1]["data_offsets"][0])
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    for name, t in items:
        b, e = t["data_offsets"]
        blob = bytes(data[b:e])
        dtype = t["dtype"]
        if dtype == "F32":
            blob, dtype = to_bf16(np.frombuffer(blob, dtype="<f4")).tobytes(), "BF16"
        out[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [pos, pos + len(blob)]}
        parts.append(blob)
        pos += len(blob)
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for p in parts:
            f.write(p)


def bound(path):
    header, data = read(path)
    hist, n, raw_bits = np.zeros(256, np.int64), 0, 0
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] not in ("F32", "BF16"):
            continue
        b, e = t["data_offsets"]
        if t["dtype"] == "F32":
            exp = (np.frombuffer(data[b:e], "<u4") >> 23) & 0xFF
            raw_bits = 24
        else:
            exp = (np.frombuffer(data[b:e], "<u2") >> 7) & 0xFF
            raw_bits = 8
        hist += np.bincount(exp.astype(np.int64), minlength=256)
        n += exp.size
    p = hist[hist > 0] / n
    h = float(-(p * np.log2(p)).sum())
    print(f"{path}: {n} float weights, exponent entropy {h:.4f} bits, "
          f"order-0 bound {h + raw_bits:.4f} bits/weight")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bound":
        bound(sys.argv[2])
    elif len(sys.argv) == 3:
        convert(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
