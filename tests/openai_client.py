#!/usr/bin/env python3
"""The official `openai` Python package (PyPI) against `codecllm serve` (run by tests/e2e_serve.sh
when `import openai` works; CI has Debian packages only, and then the test prints SKIP).

openai_client.py PORT KEY QUESTION CHAT_FILE PROMPT RUN_FILE
  CHAT_FILE: the greedy `codecllm chat` answer to QUESTION; RUN_FILE: the greedy `codecllm run`
  continuation of PROMPT (16 tokens). Exits non-zero with a message on the first failed check.
"""
import sys

import openai

port, key, question, chat_file, prompt, run_file = sys.argv[1:7]
want_chat = open(chat_file).read().rstrip("\n")
want_run = open(run_file).read()
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, timeout=120,
                       max_retries=0)


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


models = client.models.list()
if not models.data or not models.data[0].id:
    fail(f"models.list: {models}")
messages = [{"role": "user", "content": question}]
r = client.chat.completions.create(model=models.data[0].id, messages=messages, temperature=0,
                                   max_tokens=24)
got = r.choices[0].message.content
if got != want_chat or r.choices[0].finish_reason not in ("stop", "length"):
    fail(f"chat.completions: {got!r} != codecllm chat {want_chat!r}")
if r.usage.total_tokens != r.usage.prompt_tokens + r.usage.completion_tokens:
    fail(f"usage {r.usage}")
print(f"ok (openai {openai.__version__}): chat completion equals codecllm chat")
text, finish = "", None
for chunk in client.chat.completions.create(model="m", messages=messages, temperature=0,
                                            max_tokens=24, stream=True):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
if text != want_chat or finish not in ("stop", "length"):
    fail(f"streamed chat {text!r} ({finish}) != {want_chat!r}")
print("ok (openai): streaming chat concatenates to the same text")
r = client.completions.create(model="m", prompt=prompt, temperature=0, max_tokens=16)
if r.choices[0].text != want_run or r.usage.completion_tokens != 16:
    fail(f"completions: {r.choices[0].text!r} != codecllm run {want_run!r}")
print("ok (openai): completion equals codecllm run")
try:
    client.chat.completions.create(model="m", messages=messages, max_tokens=-1)
    fail("max_tokens -1 accepted")
except openai.BadRequestError as e:
    print(f"ok (openai): max_tokens -1 is a BadRequestError ({e.status_code})")
bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
try:
    bad.models.list()
    fail("a wrong key was accepted")
except openai.AuthenticationError:
    print("ok (openai): a wrong key is an AuthenticationError")
