#!/usr/bin/env python3
"""Where a decode step's time goes on the GPU, from a kernel-trace.csv written by
tools/kernel-trace (CUPTI: each kernel's start and end, graph replays and PDL overlap included).

Takes the CUDA graph with the most kernels (the batch-1 decode step), cuts its replays into steps
(a step starts at the graph's first node), drops the first 2 and the last step, and prints the
medians over the rest: the step period (start to next start), the GPU busy time (the union of the
kernels' intervals), idle time, the overlap between kernels (PDL), and per kernel name its count,
time, the gap before it (negative: it started before the previous kernel ended) and its own time
(from the latest earlier end, or its start if later, to its end: the step's time along the chain,
PDL waits excluded) with its share of the period.

Usage: scripts/kernel-trace.py kernel-trace.csv [--nodes]   (--nodes: every node of one step)
"""
import collections
import csv
import os
import shutil
import statistics
import subprocess
import sys


def demangle(names):
    """CUPTI gives mangled names: c++filt's readable ones where it is installed."""
    names = sorted(set(names))
    if not shutil.which("c++filt"):
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    res = out.stdout.split("\n")
    return {n: (res[i] if out.returncode == 0 and i < len(res) and res[i] else n)
            for i, n in enumerate(names)}


def short(name):
    n = name.split("(")[0]
    for pre in ("void ", "static "):
        if n.startswith(pre):
            n = n[len(pre):]
    return n[:70]


def union(iv):
    tot, cur_s, cur_e = 0, None, None
    for s, e in sorted(iv):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                tot += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return tot + (cur_e - cur_s if cur_e is not None else 0)


def api_between(kernel_csv, steps, use):
    """With api-trace.csv beside the kernel trace: the host's CUDA runtime calls and the copies
    in each window between one step's last kernel end and the next step's first kernel start,
    per name the median time inside the window, and the window's host time outside any call."""
    path = os.path.join(os.path.dirname(os.path.abspath(kernel_csv)), "api-trace.csv")
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        ev = sorted((int(r["start_ns"]), int(r["end_ns"]), r["type"], r["what"])
                    for r in csv.DictReader(f))
    per, outside, shown = collections.defaultdict(list), [], None
    wins = [(max(k[1] for k in a), b[0][0]) for a, b in zip(steps, steps[1:]) if a in use]
    for w0, w1 in wins:
        inside = [(max(s, w0), min(e, w1), t, n) for s, e, t, n in ev if s < w1 and e > w0]
        acc = collections.defaultdict(int)
        for s, e, t, n in inside:
            acc[f"{t} {n}"] += e - s
        for n in set(k for k, _ in per.items()) | set(acc):
            per[n].append(acc.get(n, 0))
        host = [(s, e) for s, e, t, n in inside if t == "api"]
        outside.append((w1 - w0) - union(host))
        if shown is None and len(wins) > 2 and (w0, w1) == wins[len(wins) // 2]:
            shown = [(s - w0, e - s, t, n) for s, e, t, n in inside]
    med = statistics.median
    print("  in the window (median us over the windows; api: host time in the call; memcpy: "
          "the copy on the GPU):")
    for n, v in sorted(per.items(), key=lambda x: -med(x[1])):
        v = v + [0] * (len(wins) - len(v))
        if med(v) > 0:
            print(f"    {med(v) / 1e3:8.1f}  {n}")
    print(f"    {med(outside) / 1e3:8.1f}  host outside any runtime call")
    if shown:
        print("  one window (us from its start: start, duration):")
        for s, d, t, n in shown:
            print(f"    {s / 1e3:8.1f} {d / 1e3:8.1f}  {t} {n}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = []
    with open(sys.argv[1], newline="") as f:
        for r in csv.DictReader(f):
            rows.append((int(r["start_ns"]), int(r["end_ns"]), int(r["graph_id"]),
                         int(r["graph_node_id"]), r["name"]))
    if not rows:
        sys.exit("kernel-trace: no kernel records")
    dm = demangle(r[4] for r in rows)
    rows = [r[:4] + (dm[r[4]],) for r in rows]
    graphs = collections.Counter(r[2] for r in rows if r[2])
    steps, cur = [], []
    if graphs:  # replays of the graph with the most kernels, cut at its first node
        gid = graphs.most_common(1)[0][0]
        ks = sorted(r for r in rows if r[2] == gid)
        first = ks[0][3]
        for k in ks:
            if k[3] == first and cur:
                steps.append(cur)
                cur = []
            cur.append(k)
    else:  # direct launches: steps end at each launch of the trace's last kernel
        gid = "none (direct launches)"
        ks = sorted(rows)
        last = ks[-1][4]
        for k in ks:
            cur.append(k)
            if k[4] == last:
                steps.append(cur)
                cur = []
    if cur:
        steps.append(cur)
    use = steps[2:-1] if len(steps) > 4 else steps
    print(f"{len(rows)} kernels; graph {gid}: {len(ks)} kernels in {len(steps)} replays, "
          f"{len(use)} used; {len(use[0])} kernels a step")
    med = statistics.median
    periods = [b[0][0] - a[0][0] for a, b in zip(steps, steps[1:]) if a in use]
    busy = [union([(k[0], k[1]) for k in s]) for s in use]
    total = [sum(k[1] - k[0] for k in s) for s in use]
    span = [max(k[1] for k in s) - s[0][0] for s in use]
    p = med(periods) if periods else med(span)
    print(f"step period {p / 1e3:9.1f} us ({1e9 / p:.1f} steps/s); first start to last end "
          f"{med(span) / 1e3:.1f} us")
    print(f"GPU busy    {med(busy) / 1e3:9.1f} us ({100 * med(busy) / p:.1f}%), idle "
          f"{(p - med(busy)) / 1e3:.1f} us; kernel time summed {med(total) / 1e3:.1f} us "
          f"(overlap {(med(total) - med(busy)) / 1e3:.1f} us)")
    # per kernel name: per step count, time, gap before each
    per = collections.defaultdict(lambda: [0, [], [], []])
    for s in use:
        seen = collections.defaultdict(lambda: [0, 0, 0, 0])
        last_end = s[0][0]
        for i, k in enumerate(s):
            n = short(k[4])
            gap = k[0] - s[i - 1][1] if i else 0
            seen[n][0] += 1
            seen[n][1] += k[1] - k[0]
            seen[n][2] += gap
            # own: from the latest end before it (or its start, if later) to its end: the step's
            # time charged to it along the chain (with PDL a kernel starts early and waits)
            seen[n][3] += max(0, k[1] - max(k[0], last_end))
            last_end = max(last_end, k[1])
        for n, (c, t, g, o) in seen.items():
            per[n][0] = c
            per[n][1].append(t)
            per[n][2].append(g)
            per[n][3].append(o)
    if graphs:  # between one replay's last end and the next one's first start
        outside = sorted(r for r in rows if r[2] != gid)
        gap, kern, names = [], [], collections.Counter()
        for a, b in zip(steps, steps[1:]):
            if a not in use:
                continue
            end, nxt = max(k[1] for k in a), b[0][0]
            ks = [k for k in outside if k[0] >= end and k[1] <= nxt]
            gap.append(nxt - end)
            kern.append(sum(k[1] - k[0] for k in ks))
            names.update(short(k[4]) for k in ks)
        if gap:
            print(f"between steps {med(gap) / 1e3:7.1f} us: kernels outside the graph "
                  f"{med(kern) / 1e3:.1f} us ({', '.join(f'{n} x{c / len(gap):.2g}' for n, c in names.most_common(4)) or 'none'}), "
                  f"the rest idle (host)")
            api_between(sys.argv[1], steps, use)
    print(f"\n{'kernel':62s} {'n/step':>6s} {'us/step':>8s} {'gaps us':>8s} {'own us':>8s} {'own %':>6s}")
    for n, (c, t, g, o) in sorted(per.items(), key=lambda x: -med(x[1][3])):
        print(f"{n[:62]:62s} {c:6d} {med(t) / 1e3:8.1f} {med(g) / 1e3:8.1f} {med(o) / 1e3:8.1f} "
              f"{100 * med(o) / p:5.1f}%")
    if "--nodes" in sys.argv:
        s = use[len(use) // 2]
        print("\none step, node by node (us from the step's start: start, duration, gap):")
        for i, k in enumerate(s):
            gap = k[0] - s[i - 1][1] if i else 0
            print(f"{(k[0] - s[0][0]) / 1e3:9.2f} {(k[1] - k[0]) / 1e3:8.2f} {gap / 1e3:7.2f}  {short(k[4])}")


if __name__ == "__main__":
    main()
