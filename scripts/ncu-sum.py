#!/usr/bin/env python3
"""Sums an Nsight Compute CSV (--csv, metrics gpu__time_duration.sum and dram__bytes_read.sum,
optionally launch__registers_per_thread) by kernel and bytes read: mean time per launch, TB/s,
launches. Usage: ncu-sum.py FILE.csv"""
import collections
import csv
import sys

TIME = {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}
BYTES = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def main(path):
    rows = [r for r in csv.reader(open(path)) if len(r) > 10]
    if not rows:
        sys.exit(f"ncu-sum: no CSV rows in {path}")
    head, data = rows[0], rows[1:]
    col = {k: head.index(k) for k in ("ID", "Kernel Name", "Metric Name", "Metric Value", "Metric Unit")}
    kernels = collections.OrderedDict()
    for r in data:
        k = kernels.setdefault(r[col["ID"]], {"name": r[col["Kernel Name"]][:44]})
        k[r[col["Metric Name"]]] = (float(r[col["Metric Value"]].replace(",", "")), r[col["Metric Unit"]])
    groups = collections.defaultdict(list)
    for k in kernels.values():
        t, b = k.get("gpu__time_duration.sum"), k.get("dram__bytes_read.sum")
        if not t or not b:
            continue
        regs = int(k.get("launch__registers_per_thread", (0, ""))[0])
        ns, nb = t[0] * TIME.get(t[1], 1), b[0] * BYTES.get(b[1], 1)
        groups[(k["name"], round(nb / 1e6), regs)].append(ns)
    for (name, mb, regs), ts in groups.items():
        ns = sum(ts) / len(ts)
        print(f"{name:44s} {mb:6d} MB {regs:4d} regs {ns / 1e3:8.2f} us {mb * 1e6 / ns / 1e3:6.2f} TB/s x{len(ts)}")


if __name__ == "__main__":
    main(sys.argv[1])
