#!/usr/bin/env python3
"""N concurrent clients against `codecllm serve` (python3's standard library only): each sends one
/v1/completions request with its own prompt of about P tokens and max_tokens G at the same time;
prints the aggregate completion tokens/s over the wall time (prefill included) and per client.
Compare with `codecllm bench -b N -p P -n G`: its N*G/(T_PP+T_TG).

    python3 bench/serve_load.py PORT N [G] [REPS] [TEMPERATURE]
"""
import http.client
import json
import sys
import threading
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
gen = int(sys.argv[3]) if len(sys.argv) > 3 else 64
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 1
temp = float(sys.argv[5]) if len(sys.argv) > 5 else 0.8
WORDS = "the a little cat dog house river tree sun moon boy girl ran saw big red old happy".split()


def prompt(i):
    # About 32 tokens of different words per client.
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(30))


def one(i, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt(i), "max_tokens": gen, "temperature": temp, "seed": i}
    t0 = time.time()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    o = json.loads(r.read())
    out[i] = (o["usage"]["prompt_tokens"], o["usage"]["completion_tokens"], time.time() - t0)


for rep in range(reps):
    out = {}
    ts = [threading.Thread(target=one, args=(i, out)) for i in range(n)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    n_prompt = sum(v[0] for v in out.values())
    n_gen = sum(v[1] for v in out.values())
    per = sum(v[1] / v[2] for v in out.values()) / n
    print(f"clients {n}: {n_prompt} prompt + {n_gen} completion tokens in {wall:.2f} s: "
          f"{n_gen / wall:.2f} completion tok/s aggregate, {per:.2f} per client")
