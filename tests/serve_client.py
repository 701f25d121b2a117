#!/usr/bin/env python3
"""Client side of tests/e2e_serve.sh: talks to `codecllm serve` with the standard library only.

serve_client.py main PORT KEY Q1 CHAT1_FILE Q2 CHAT2_FILE PROMPT RUN_FILE
serve_client.py busy PORT SERVER_PID   (a server started with --queue 0; SIGINTs it)
Exits non-zero with a message on the first failed check.
"""
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

PORT = int(sys.argv[2])
# Seconds a request may take; e2e_serve.sh raises it for sanitizer builds (minutes per request).
HTTP_TIMEOUT = float(os.environ.get("CLLM_TEST_HTTP_TIMEOUT", "120"))


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def request(method, path, body=None, key=None, raw=None):
    """(status, headers, body bytes); body is JSON-encoded unless raw bytes are given."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=HTTP_TIMEOUT)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    c.close()
    return out


def chat_body(q, **kw):
    return dict({"model": "x", "messages": [{"role": "user", "content": q}], "temperature": 0,
                 "max_tokens": 24, "unknown_field": [1, 2]}, **kw)


def chat(q, key, **kw):
    st, _, b = request("POST", "/v1/chat/completions", chat_body(q, **kw), key)
    if st != 200:
        fail(f"chat: status {st}: {b!r}")
    o = json.loads(b)
    u = o["usage"]
    if u["total_tokens"] != u["prompt_tokens"] + u["completion_tokens"] or u["prompt_tokens"] < 1:
        fail(f"bad usage {u}")
    if o["object"] != "chat.completion" or not o["id"] or not o["created"] or not o["model"]:
        fail(f"bad envelope {o}")
    ch = o["choices"][0]
    if ch["finish_reason"] not in ("stop", "length"):
        fail(f"bad finish_reason {ch}")
    return ch["message"]["content"]


def stream_chat(q, key):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=HTTP_TIMEOUT)
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(q, stream=True)),
              {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200 or not r.getheader("Content-Type", "").startswith("text/event-stream"):
        fail(f"stream: status {r.status}")
    text, done, finish = "", False, None
    for line in r:
        line = line.decode().strip()
        if not line:
            continue
        if not line.startswith("data: "):
            fail(f"stream: not an event line: {line!r}")
        if line == "data: [DONE]":
            done = True
            break
        o = json.loads(line[6:])
        if o["object"] != "chat.completion.chunk":
            fail(f"stream: bad chunk {o}")
        text += o["choices"][0]["delta"].get("content", "")
        finish = o["choices"][0]["finish_reason"] or finish
    c.close()
    if not done or finish not in ("stop", "length"):
        fail(f"stream: no [DONE] or no finish_reason ({done}, {finish})")
    return text


def expect(status, method, path, body=None, key=None, raw=None, what=""):
    st, h, b = request(method, path, body, key, raw)
    if st != status:
        fail(f"{what or path}: status {st}, expected {status}: {b[:200]!r}")
    if status >= 400 and status != 405 and status != 404 or status in (404, 405):
        e = json.loads(b)["error"]
        if not e["message"] or "type" not in e or "param" not in e or "code" not in e:
            fail(f"{what}: bad error object {e}")
    return h


def bad_requests(key):
    c = "/v1/chat/completions"
    expect(401, "POST", c, chat_body("hi"), what="no key")
    expect(401, "POST", c, chat_body("hi"), key="wrong", what="wrong key")
    expect(401, "GET", "/v1/models", what="models without key")
    expect(400, "POST", c, raw=b'{"messages": [{"role": "user", "content": "hi"', key=key,
           what="truncated JSON")
    expect(400, "POST", c, raw=b"[1, 2]", key=key, what="not an object")
    for field, val in [("max_tokens", -1), ("max_tokens", 10**9), ("max_tokens", 0),
                       ("max_tokens", "5"), ("max_tokens", 1.5), ("temperature", -0.5),
                       ("temperature", "hot"), ("top_p", 2), ("top_k", -1), ("n", 2),
                       ("stream", "yes"), ("stop", 5), ("stop", [1]), ("seed", "x"),
                       ("messages", "hi"), ("messages", []), ("messages", [{"role": "x", "content": "a"}]),
                       ("messages", [{"role": "user", "content": 5}])]:
        expect(400, "POST", c, chat_body("hi", **{field: val}), key=key, what=f"{field}={val!r}")
    expect(400, "POST", "/v1/completions", {"prompt": 5}, key=key, what="prompt 5")
    expect(400, "POST", "/v1/completions", {"prompt": "a\u0000b"}, key=key, what="prompt NUL")
    expect(400, "POST", "/v1/completions", raw=b'{"prompt": "\xff"}', key=key, what="not UTF-8")
    # The parser's message quotes the bytes after a bad escape: the error body stays valid JSON.
    expect(400, "POST", "/v1/completions", raw=b'{"prompt": "\\\xe0\xad\xa5\xad"}', key=key,
           what="bad escape before invalid UTF-8")
    expect(404, "GET", "/v1/nothing", key=key, what="unknown route")
    h = expect(405, "GET", c, key=key, what="GET on chat")
    if h.get("Allow") != "POST":
        fail("405 without Allow: POST")
    expect(405, "POST", "/health", key=key, what="POST on health")
    # 10 MB declared: refused from Content-Length before the body is sent.
    s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n")
    resp = s.recv(4096)
    s.close()
    if not resp.startswith(b"HTTP/1.1 413"):
        fail(f"10 MB body: {resp[:100]!r}")
    print("ok: bad requests (401, 400 x24, 404, 405, 413)")


def disconnect_mid_stream(key):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=60)
    body = json.dumps(chat_body("Tell me a long story.", stream=True, max_tokens=400)).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              + key.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(4096)
    s.close()


def main():
    key, q1, f1, q2, f2, prompt, frun = sys.argv[3:11]
    want1, want2 = open(f1).read().rstrip("\n"), open(f2).read().rstrip("\n")
    want_run = open(frun).read()
    st, _, b = request("GET", "/health")
    if st != 200:
        fail("/health")
    st, _, b = request("GET", "/v1/models", key=key)
    if st != 200 or json.loads(b)["data"][0]["object"] != "model":
        fail(f"/v1/models: {st} {b!r}")
    got = chat(q1, key)
    if got != want1:
        fail(f"chat completion {got!r} != codecllm chat {want1!r}")
    print(f"ok: chat completion equals codecllm chat: {got!r}")
    got = stream_chat(q1, key)
    if got != want1:
        fail(f"streamed chat {got!r} != {want1!r}")
    print("ok: streaming chat concatenates to the same text")
    st, _, b = request("POST", "/v1/completions", {"prompt": prompt, "temperature": 0,
                                                    "max_tokens": 16}, key)
    o = json.loads(b)
    if st != 200 or o["choices"][0]["text"] != want_run or o["usage"]["completion_tokens"] != 16:
        fail(f"completion {st} {b!r} != run {want_run!r}")
    print(f"ok: completion equals run: {want_run!r}")
    cut = want_run.split(" ")[3]
    st, _, b = request("POST", "/v1/completions", {"prompt": prompt, "temperature": 0,
                                                    "max_tokens": 16, "stop": ["zzz", cut]}, key)
    o = json.loads(b)["choices"][0]
    if o["text"] != want_run[:want_run.index(cut)] or o["finish_reason"] != "stop":
        fail(f"stop {cut!r}: {o}")
    print("ok: stop sequence cuts the text")
    bad_requests(key)
    disconnect_mid_stream(key)
    if chat(q1, key) != want1:
        fail("after a disconnected stream, the answer changed")
    print("ok: a client that disconnects mid-stream frees the engine")
    results = {}
    qs = [(q1, want1), (q2, want2), (q1, want1), (q2, want2)]
    ts = [threading.Thread(target=lambda i=i: results.__setitem__(i, chat(qs[i][0], key)))
          for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i, (_, want) in enumerate(qs):
        if results.get(i) != want:
            fail(f"concurrent client {i}: {results.get(i)!r} != {want!r}")
    print("ok: 4 concurrent clients each get their answer")
    errors = []

    def loop(w):
        for k in range(10):
            try:
                st, _, b = request("POST", "/v1/completions", {"prompt": f"{w} {k}",
                                                                "max_tokens": 2, "seed": k}, key)
                if st != 200:
                    errors.append(st)
            except OSError as e:
                errors.append(str(e))
    ts = [threading.Thread(target=loop, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors or request("GET", "/health")[0] != 200:
        fail(f"load loop: {errors}")
    print("ok: 40 requests from 4 clients all answered, server still up")


def slot_freed(what):
    """The only slot is free again soon after its client went away (503 meanwhile)."""
    for _ in range(100):
        st, _, b = request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        if st == 200:
            return
        if st != 503:
            fail(f"after {what}: status {st} {b!r}")
        time.sleep(0.1)
    fail(f"the slot stays taken after {what}")


def busy():
    pid = int(sys.argv[3])
    # A client that goes away frees the only slot: mid-stream, and waiting for a whole answer.
    disconnect_mid_stream("none")
    slot_freed("a disconnected stream")
    s = socket.create_connection(("127.0.0.1", PORT), timeout=60)
    body = json.dumps({"prompt": "Tell me a long story.", "max_tokens": 2000, "temperature": 1.0,
                       "seed": 3}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.5)
    s.close()
    slot_freed("a disconnected non-streaming request")
    print("ok: a client that goes away (streaming or not) frees the only slot")
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body("Tell me a long story.",
              stream=True, max_tokens=2000, temperature=1.0, seed=1)),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    r.readline()  # the first event: the engine is now taken
    st, h, b = request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2})
    if st != 503 or "Retry-After" not in h:
        fail(f"queue full: {st} {h}")
    os.kill(pid, signal.SIGINT)
    rest = r.read()  # the stream ends (cut or finished) rather than hanging
    c.close()
    if not rest.endswith(b"data: [DONE]\n\n"):
        fail(f"the stream did not finish after SIGINT: {rest[-200:]!r}")


if __name__ == "__main__":
    {"main": main, "busy": busy}[sys.argv[1]]()
