#!/usr/bin/env python3
# Design study for the in-VRAM compute code (docs/PERF.md 7i): how often BF16 exponents leave a
# row's 3-bit (8-value) or 4-bit (16-value) window, how often int8 symbols leave [-31, 31], how
# those escapes fall on the vectors a lane decodes, and the size of candidate layouts. Reads one
# safetensors file of BF16 weights, the first ROWS rows of each layer-0 projection, e.g.
#   codecllm synth --preset llama2-7b --dtype bf16 --layers 1 /tmp/syn
#   python3 scripts/ccode-study.py /tmp/syn/model.safetensors 2048
# int8 symbols are made as `convert --codec int8` makes them (one scale per row, max |w| / 127,
# round to nearest). Needs numpy. Size models (bits per weight, metadata included): exception
# entries 16 bits (bf16) / 32 bits (int8), offsets 16 bits per 256 weights.
import json
import struct
import sys

import numpy as np


def main():
    if len(sys.argv) < 2:
        sys.exit('usage: ccode-study.py MODEL.safetensors [ROWS]')
    path, rows = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
        names = sorted(k for k in hdr if k.startswith('model.layers.0.') and k.endswith('proj.weight'))
        if not names:
            sys.exit('no model.layers.0.*proj.weight tensors')
        mats = []
        for name in names:
            t = hdr[name]
            if t['dtype'] != 'BF16':
                sys.exit(f'{name}: dtype {t["dtype"]} (BF16 needed)')
            a, b = t['data_offsets']
            f.seek(8 + n + a)
            u = np.frombuffer(f.read(b - a), dtype=np.uint16).reshape(t['shape'])[:rows]
            mats.append((name.split('.')[-2], u))
    bf16_study(mats)
    int8_study(mats)


def any_in(x, k):
    """Share of k-wide vectors of each row that hold at least one True."""
    cols = x.shape[1] // k * k
    return float(x[:, :cols].reshape(x.shape[0], -1, k).any(-1).mean())


def window_escapes(e, width):
    """Per row, the base b with the most exponents in [b, b + width); the mask of the others and
    the mask of those below the window."""
    out, low = np.zeros(e.shape, bool), np.zeros(e.shape, bool)
    for r in range(e.shape[0]):
        h = np.bincount(e[r], minlength=256 + width)
        c = np.convolve(h, np.ones(width, np.int64), 'valid')[:256 - width + 1]
        b = int(np.argmax(c))
        low[r] = e[r] < b
        out[r] = low[r] | (e[r] >= b + width)
    return out, low


def entropy(sym, n):
    p = np.bincount(sym.ravel(), minlength=n) / sym.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def bf16_study(mats):
    print('BF16 exponents (share of weights / of 8-weight vectors / of 256-weight groups with an '
          'escape):\n')
    print('| matrix | H(exponent) | 3-bit window | below it | 4-bit window |')
    print('|---|---:|---|---:|---|')
    acc = []
    for name, u in mats:
        e = ((u >> 7) & 0xff).astype(np.int64)
        (x8, low8), (x16, _) = window_escapes(e, 8), window_escapes(e, 16)
        below = float(low8.sum() / max(1, x8.sum()))
        acc.append((x8.mean(), any_in(x8, 8), any_in(x8, 16), x16.mean()))
        print(f'| {name} {u.shape[0]}x{u.shape[1]} | {entropy(e, 256):.2f} | '
              f'{x8.mean()*100:.2f}% / {any_in(x8, 8)*100:.1f}% / {any_in(x8, 256)*100:.1f}% | '
              f'{below*100:.0f}% | {x16.mean()*100:.3f}% / {any_in(x16, 8)*100:.2f}% / '
              f'{any_in(x16, 256)*100:.1f}% |')
    exc8, v8, v16, exc16 = np.mean(np.array(acc), axis=0)
    print('\n| layout | bits/weight | escapes |')
    print('|---|---:|---|')
    print(f'| byte + 3-bit code, exceptions (the current code) | {8 + 3 + exc8*16 + 16/256:.2f} | '
          f'{exc8*100:.2f}% of weights |')
    print(f'| byte + 4-bit code, exceptions | {8 + 4 + exc16*16 + 16/256:.2f} | '
          f'{exc16*100:.3f}% |')
    print(f'| byte + 3-bit code; an 8-vector with an escape flagged and given a 4th code bit '
          f'(4-bit window), exceptions beyond | {8 + 3 + 1/8 + v8 + exc16*16 + 2*16/256:.2f} | '
          f'{v8*100:.1f}% of vectors flagged, {exc16*100:.3f}% exceptions |')
    print(f'| the same per 16-vector | {8 + 3 + 1/16 + v16 + exc16*16 + 2*16/256:.2f} | '
          f'{v16*100:.1f}% flagged |\n')


def int8_study(mats):
    print('int8 symbols (one scale per row):\n')
    print('| matrix | H(q) | abs(q) > 31 | 8-vectors with one | 16-vectors with one |')
    print('|---|---:|---:|---:|---:|')
    acc = []
    for name, u in mats:
        w = (u.astype(np.uint32) << 16).view(np.float32)
        s = np.abs(w).max(1, keepdims=True) / 127.0
        q = np.rint(w / np.where(s > 0, s, 1)).astype(np.int64)
        x = np.abs(q) > 31
        acc.append((x.mean(), any_in(x, 8), any_in(x, 16)))
        print(f'| {name} | {entropy(q + 127, 255):.2f} | {x.mean()*100:.2f}% | '
              f'{any_in(x, 8)*100:.1f}% | {any_in(x, 16)*100:.1f}% |')
    exc, v8, v16 = np.mean(np.array(acc), axis=0)
    print('\n| layout (scales not counted) | bits/weight | escapes |')
    print('|---|---:|---|')
    print(f'| 6-bit code, exceptions (the current code) | {6 + exc*32 + 32/1024:.2f} | '
          f'{exc*100:.2f}% of symbols |')
    print(f'| 6-bit code; an 8-vector with an escape flagged and given the 2 missing bits | '
          f'{6 + 1/8 + v8*2 + 16/256:.2f} | none ({v8*100:.1f}% flagged) |')
    print(f'| the same per 16-vector | {6 + 1/16 + v16*2 + 16/256:.2f} | none ({v16*100:.1f}% '
          f'flagged) |')


if __name__ == '__main__':
    main()
