#!/usr/bin/env python3
"""Client side of tests/e2e_serve_batch.sh (python3's standard library only).

serve_batch_client.py PORT SERVER_PID PROMPTS_FILE DIR N_GEN RSS_BOUND_KIB
  PROMPTS_FILE: one prompt a line; DIR/want.<i>.txt: the greedy `codecllm run` text of prompt i;
  RSS_BOUND_KIB: the most the server's RSS may grow over 200 requests after warm-up (0: under
  AddressSanitizer: 40 requests, RSS reported, not checked).
Exits non-zero with a message on the first failed check.
"""
import http.client
import json
import os
import sys
import threading
import time

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
PROMPTS = open(sys.argv[3]).read().split("\n")[:-1]
DIR, N_GEN = sys.argv[4], int(sys.argv[5])
WANT = [open(f"{DIR}/want.{i}.txt").read() for i in range(len(PROMPTS))]
RSS_BOUND_KIB = int(sys.argv[6])
# Seconds a request may take; e2e_serve_batch.sh raises it for sanitizer builds.
HTTP_TIMEOUT = float(os.environ.get("CLLM_TEST_HTTP_TIMEOUT", "300"))


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def completion(prompt, stream, **kw):
    """The text of a greedy completion (streamed events concatenated when stream)."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=HTTP_TIMEOUT)
    body = dict({"prompt": prompt, "temperature": 0, "max_tokens": N_GEN, "stream": stream}, **kw)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
    if not stream:
        text = json.loads(r.read())["choices"][0]["text"]
        c.close()
        return text
    text, done = "", False
    for line in r:
        line = line.decode().strip()
        if line == "data: [DONE]":
            done = True
            break
        if line.startswith("data: "):
            text += json.loads(line[6:])["choices"][0]["text"]
    c.close()
    if not done:
        raise RuntimeError("no [DONE]")
    return text


def concurrent_answers():
    got, errors = {}, []

    def one(i):
        try:
            got[i] = completion(PROMPTS[i], stream=i % 2 == 1)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {e}")
    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        fail("; ".join(errors))
    for i, want in enumerate(WANT):
        if got[i] != want:
            fail(f"client {i} ({PROMPTS[i][:30]!r}): {got[i]!r} != run {want!r}")
    print(f"ok: {len(PROMPTS)} concurrent clients (half streaming) each got its sequential greedy "
          f"answer ({time.time() - t0:.1f} s)")


def rss_kib():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    fail("no VmRSS")


def load(n_threads, per_thread, errors, max_tokens=4):
    def loop(w):
        for k in range(per_thread):
            try:
                completion(f"Story {w}.{k}:", stream=(k % 3 == 0),
                           max_tokens=max_tokens, temperature=0.7, seed=k)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
    ts = [threading.Thread(target=loop, args=(w,)) for w in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def load_and_memory():
    errors = []
    load(8, 5, errors)  # warm-up: 40 requests, every slot used
    rss0 = rss_kib()
    t0 = time.time()
    # 200 requests; under AddressSanitizer (RSS not bounded there) 40, which still run every
    # path under its checks at a fifth of the time.
    n_req = 200 if RSS_BOUND_KIB else 40
    load(8, n_req // 8, errors)
    dt = time.time() - t0
    rss1 = rss_kib()
    if errors:
        fail(f"load: {len(errors)} failed requests, first: {errors[0]}")
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    c.request("GET", "/health")
    if c.getresponse().status != 200:
        fail("no /health after the load")
    if RSS_BOUND_KIB and rss1 - rss0 > RSS_BOUND_KIB:
        fail(f"RSS grew from {rss0} KiB to {rss1} KiB over {n_req} requests")
    bound = f"bound {RSS_BOUND_KIB} KiB" if RSS_BOUND_KIB else "bound not checked under ASan"
    print(f"ok: {n_req} requests from 8 threads all answered in {dt:.1f} s ({n_req / dt:.1f} req/s); "
          f"RSS {rss0} KiB after warm-up, {rss1} KiB after ({rss1 - rss0:+d} KiB, {bound})")


if __name__ == "__main__":
    concurrent_answers()
    load_and_memory()
    # The answers are still right after the load (slots reused with other prefixes).
    for i in (0, 4, 13):
        if completion(PROMPTS[i], stream=False) != WANT[i]:
            fail(f"after the load, prompt {i} gives another answer")
    print("ok: answers unchanged after the load")
