#!/usr/bin/env python3
"""The peers users would run instead of codecllm, measured on the same machine and model:

  transformers  generate() in BF16 with the whole model resident on the GPU
  offload       accelerate's cpu_offload: weights in host RAM, moved to the GPU layer by layer

Prints one line per configuration (and writes JSON with --json): prefill tokens/s for a prompt of
-p tokens, generation tokens/s for -n tokens (greedy, EOS ignored), peak GPU memory allocated by
PyTorch. Runs where PyTorch, transformers and accelerate are installed (the GPU machine).
"""
import argparse
import json
import sys
import time

import torch


def timed_generate(model, ids, n_new):
    """Returns (prefill seconds, decode tokens/s) for greedy generation of n_new tokens."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(ids, use_cache=True)  # prefill alone: one forward over the prompt
    torch.cuda.synchronize()
    t_prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                             pad_token_id=0)
    torch.cuda.synchronize()
    t_gen = time.perf_counter() - t0
    assert out.shape[1] == ids.shape[1] + n_new
    # generate() includes one prefill: take it out to get the per-token decode rate.
    decode = max(t_gen - t_prefill, 1e-9)
    return t_prefill, (n_new - 1) / decode


def pinned_h2d_gbs(mib=1024, reps=10):
    """Pinned host-to-device copy rate (GB/s) of one large buffer, median of reps."""
    x = torch.empty(mib << 20, dtype=torch.uint8).pin_memory()
    y = torch.empty_like(x, device="cuda")
    y.copy_(x, non_blocking=True)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        y.copy_(x, non_blocking=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return x.numel() / times[len(times) // 2] / 1e9


def run(mode, path, n_prompt, n_gen, reps):
    from transformers import AutoModelForCausalLM
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if mode == "transformers":
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16,
                                                     device_map="cuda")
    else:
        from accelerate import cpu_offload
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16)
        cpu_offload(model, execution_device=torch.device("cuda"))
    model.eval()
    load_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (1, n_prompt), generator=gen).to("cuda")
    timed_generate(model, ids[:, :8], 2)  # warm-up
    pp, tg = [], []
    for _ in range(reps):
        t_prefill, tg_rate = timed_generate(model, ids, n_gen)
        pp.append(n_prompt / t_prefill)
        tg.append(tg_rate)
    res = {
        "peer": mode, "model": path, "load_s": load_s,
        "pp_tok_s": sum(pp) / len(pp), "tg_tok_s": sum(tg) / len(tg),
        "n_prompt": n_prompt, "n_gen": n_gen, "reps": reps,
        "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30,
        "torch": torch.__version__, "device": torch.cuda.get_device_name(0),
    }
    del model
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="Hugging Face model directory (e.g. from codecllm synth)")
    ap.add_argument("--peers", default="transformers,offload")
    ap.add_argument("-p", type=int, default=128, help="prompt tokens")
    ap.add_argument("-n", type=int, default=128, help="generated tokens (transformers)")
    ap.add_argument("--offload-n", type=int, default=16, help="generated tokens (offload: slow)")
    ap.add_argument("-r", type=int, default=2, help="repetitions")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device", file=sys.stderr)
        return 77
    results = []
    h2d = pinned_h2d_gbs()
    print(f"pinned H2D copy: {h2d:.1f} GB/s (1 GiB buffer, median of 10)", flush=True)
    results.append({"peer": "h2d", "gb_s": h2d})
    for peer in [p for p in a.peers.split(",") if p]:
        n = a.n if peer == "transformers" else a.offload_n
        reps = a.r if peer == "transformers" else 1
        r = run(peer, a.model, a.p, n, reps)
        results.append(r)
        print(f'{peer:13s} pp{a.p} {r["pp_tok_s"]:9.1f} tok/s  tg{n} {r["tg_tok_s"]:7.2f} tok/s  '
              f'peak VRAM {r["peak_vram_gib"]:6.2f} GiB  (load {r["load_s"]:.0f} s)', flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
