#!/usr/bin/env python3
"""N concurrent clients against `codecllm serve` (python3's standard library only): each sends one
/v1/completions request with its own prompt of about P tokens and max_tokens G at the same time;
prints the aggregate completion tokens/s over the wall time (prefill included) and per client.
Compare with `codecllm bench -b N -p P -n G`: its N*G/(T_PP+T_TG). STREAM 1: each client asks
for server-sent events ("stream": true) and reads them as they come (the usage comes with the last).

    python3 bench/serve_load.py PORT N [G] [REPS] [TEMPERATURE] [STREAM]
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
stream = len(sys.argv) > 6 and sys.argv[6] == "1"
WORDS = "the a little cat dog house river tree sun moon boy girl ran saw big red old happy".split()


def prompt(i):
    # About 32 tokens of different words per client.
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(30))


def one(i, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt(i), "max_tokens": gen, "temperature": temp, "seed": i,
            "stream": stream}
    t0 = time.time()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit(f"client {i}: HTTP {r.status}: {r.read()[:200]!r}")
    if not stream:
        usage = json.loads(r.read())["usage"]
    else:
        usage, events = None, 0
        for line in r:  # one event per "data: " line; [DONE] ends the stream
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            events += 1
            usage = json.loads(line[6:]).get("usage") or usage
        if usage is None:
            raise SystemExit(f"client {i}: no usage in {events} events")
    out[i] = (usage["prompt_tokens"], usage["completion_tokens"], time.time() - t0)


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
