#!/usr/bin/env python3
"""Instruction counts of one CUDA kernel's SASS, per source line, without a GPU.

The fused matvec kernels are issue-bound (PERF.md 7w, 7x), so the static instruction count of
their main loop is the proxy to check before spending device time. This compiles one .cu file for
sm_90 with the build's flags (-O3 --use_fast_math -lineinfo), disassembles it with line info and
prints, for the kernel whose mangled name matches PATTERN: its instruction count, its loops (the
backward branches, widest span first), and inside the K-th widest (--loop K, default the widest)
the instructions per source line and per opcode. Rare paths inside the loop are counted too: read
the per-line table, not the total, when comparing a common path. A fewer-instructions loop is not
a faster kernel by itself (PERF.md 7ae: a loop 8-12% shorter lost to a longer prologue).

Usage: scripts/sass-lines.py [--cu FILE] [--flags "EXTRA NVCC FLAGS"] [--top N] [--loop K] [--cubin F] PATTERN
  e.g. scripts/sass-lines.py 'matvec_b16_kernelILi1ELb1ELi0E'
Needs nvcc (CUDA toolkit) and nvdisasm. Without the latter:
  pip download --no-deps nvidia-cuda-nvdisasm -d /tmp/cudatools && cd /tmp/cudatools && unzip -o '*.whl'
(the binary lands in /tmp/cudatools/nvidia/cu*/bin, which is searched).
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile


def tool(name):
    p = shutil.which(name)
    if p:
        return p
    for d in ["/usr/local/cuda/bin"] + sorted(glob.glob("/tmp/cudatools/nvidia/cu*/bin")):
        c = os.path.join(d, name)
        if os.path.exists(c):
            return c
    sys.exit(f"sass-lines: {name} not found (see --help)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pattern", help="regular expression on the mangled kernel name")
    ap.add_argument("--cu", default="src/cuda/cllm_cuda_kernels.cu")
    ap.add_argument("--flags", default="", help="extra nvcc flags, e.g. -DKNOB=2")
    ap.add_argument("--cubin", help="disassemble this cubin instead of compiling")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--loop", type=int, default=1,
                    help="the K-th longest loop (a kernel whose loop is compiled twice has two)")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = a.cubin
        if not cubin:
            cubin = os.path.join(tmp, "k.cubin")
            cmd = [tool("nvcc"), "-arch=sm_90", "-O3", "-std=c++17", "-lineinfo", "--use_fast_math",
                   "-I" + os.path.join(root, "src"), "-I" + os.path.join(root, "include"),
                   "-I" + os.path.join(root, "src/common"), "-cubin", "-o", cubin,
                   os.path.join(root, a.cu)] + a.flags.split()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                sys.exit("sass-lines: nvcc failed:\n" + r.stderr[-3000:])
        dis = subprocess.run([tool("nvdisasm"), "-g", cubin], capture_output=True, text=True)
        if dis.returncode:
            sys.exit("sass-lines: nvdisasm failed:\n" + dis.stderr[-2000:])
    lines = dis.stdout.split("\n")
    heads = [i for i, l in enumerate(lines) if l.startswith("//---") and ".text." in l]
    pat = re.compile(a.pattern)
    found = [i for i in heads if pat.search(lines[i])]
    if len(found) != 1:
        names = [lines[i].split(".text.")[1].split()[0] for i in (found or heads)]
        sys.exit(f"sass-lines: {len(found)} kernels match; candidates:\n  " + "\n  ".join(names[:40]))
    start = found[0]
    end = next((i for i in heads if i > start), len(lines))
    name = lines[start].split(".text.")[1].split()[0]
    ins, cur = [], None
    for l in lines[start:end]:
        m = re.match(r'\s*//## File "(?:.*/)?([^/"]+)", line (\d+)', l)
        if m:
            cur = f"{m.group(1)}:{m.group(2)}"
            continue
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", l)
        if m:
            ins.append((int(m.group(1), 16), cur, m.group(2).strip()))
    if not ins:
        sys.exit("sass-lines: no instructions found")
    print(f"{name}: {len(ins)} instructions")
    loops = []
    # nvdisasm prints labels; resolve each to the next instruction's address.
    lab_addr, pending = {}, []
    for l in lines[start:end]:
        s = l.strip()
        m = re.match(r"\.L_x_(\d+):", s)
        if m:
            pending.append(m.group(1))
            continue
        m = re.match(r"/\*([0-9a-f]{4,})\*/", s)
        if m and pending:
            for p in pending:
                lab_addr[p] = int(m.group(1), 16)
            pending = []
    # Back edges before the last EXIT (after it: the divergence handlers, which jump back in).
    last_exit = max((x[0] for x in ins if re.search(r"(^|\s)EXIT", x[2])), default=ins[-1][0])
    for addr, _, text in ins:
        t = re.search(r"BRA\s+`\(\.L_x_(\d+)\)", text)
        if t and t.group(1) in lab_addr and lab_addr[t.group(1)] < addr < last_exit:
            loops.append((addr - lab_addr[t.group(1)], lab_addr[t.group(1)], addr))
    if not loops:
        print("no loop")
        return
    loops.sort(reverse=True)
    print("loops (span in instructions): " + ", ".join(
        f"0x{l:x}..0x{h:x} {sum(1 for x in ins if l <= x[0] <= h)}" for _, l, h in loops))
    _, lo, hi = loops[min(a.loop, len(loops)) - 1]
    body = [x for x in ins if lo <= x[0] <= hi]
    print(f"loop {min(a.loop, len(loops))}: 0x{lo:x} .. 0x{hi:x}, {len(body)} instructions "
          f"(with its rare paths; {len(loops)} back edges before the last EXIT)")
    per_line = collections.Counter(x[1] for x in body)
    per_op = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", x[2]).split()[0] for x in body)
    print(f"\nper source line (top {a.top}):")
    for k, v in per_line.most_common(a.top):
        print(f"  {v:5d}  {k}")
    print(f"\nper opcode (top {a.top}):")
    for k, v in per_op.most_common(a.top):
        print(f"  {v:5d}  {k}")


if __name__ == "__main__":
    main()
