#!/usr/bin/env bash
# scripts/kernel-trace.py, the reader of tools/kernel-trace's CSVs that PERF.md's step profiles
# come from, on a synthetic trace with known answers: 8 replays of a 3-kernel graph every 100 us
# whose kernels overlap as PDL makes them (B starts before A ends), an embedding kernel outside the
# graph and runtime calls and a copy between steps. Checks the period, busy and overlap times, the
# time between steps, each kernel's own time along the chain and the host time outside calls.
source "$(dirname "$0")/e2elib.sh"
script=${CLLM_SRC:?CLLM_SRC must name the source tree}/scripts/kernel-trace.py
python3 - "$TMP" <<'PY'
import sys
d = sys.argv[1]
us = 1000
k = ["start_ns,end_ns,stream,graph_id,graph_node_id,grid_x,block_x,registers,name"]
a = ["type,start_ns,end_ns,correlation,what"]
for s in range(8):
    t = 1_000_000 + s * 100 * us
    for (b, e, node, name) in ((0, 10, 7, "A"), (2, 25, 8, "B"), (20, 40, 9, "C")):
        k.append(f'{t + b * us},{t + e * us},13,2,{node},1,1,1,"{name}"')
    k.append(f'{t + 60 * us},{t + 62 * us},13,0,0,1,1,1,"embed"')
    a.append(f'api,{t + 41 * us},{t + 45 * us},1,"cudaStreamSynchronize"')
    a.append(f'api,{t + 46 * us},{t + 56 * us},2,"cudaMemcpyAsync"')
    a.append(f'memcpy,{t + 48 * us},{t + 52 * us},2,"kind 2, 131072 bytes"')
    a.append(f'api,{t + 80 * us},{t + 95 * us},3,"cudaGraphLaunch"')
open(f"{d}/kernel-trace.csv", "w").write("\n".join(k) + "\n")
open(f"{d}/api-trace.csv", "w").write("\n".join(a) + "\n")
PY
python3 "$script" "$TMP/kernel-trace.csv" > "$TMP/summary.txt" || fail "kernel-trace.py failed"
cat "$TMP/summary.txt"
python3 - "$TMP/summary.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def num(pattern):
    m = re.search(pattern, t)
    assert m, f"missing: {pattern}"
    return float(m.group(1))
assert num(r"step period\s+([\d.]+) us") == 100.0
assert num(r"first start to last end ([\d.]+) us") == 40.0
assert num(r"GPU busy\s+([\d.]+) us") == 40.0
assert num(r"\(overlap ([\d.]+) us\)") == 13.0          # 10 + 23 + 20 summed, 40 busy
assert num(r"between steps\s+([\d.]+) us") == 60.0
assert num(r"kernels outside the graph ([\d.]+) us") == 2.0
own = {m.group(1): float(m.group(2)) for m in
       re.finditer(r"^(\w)\s+1\s+[-\d.]+\s+[-\d.]+\s+([\d.]+)", t, re.M)}
assert own == {"A": 10.0, "B": 15.0, "C": 15.0}, own  # A alone; B after A's end; C after B's
assert num(r"([\d.]+)\s+api cudaGraphLaunch") == 15.0
assert num(r"([\d.]+)\s+memcpy kind 2") == 4.0
assert num(r"([\d.]+)\s+host outside any runtime call") == 31.0  # 60 - (4 + 10 + 15)
PY
echo "e2e_kernel_trace: OK"
