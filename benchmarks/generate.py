"""Greedy generation with SmolLM2-135M-Instruct: lmlib (with and without the KV cache) and
Hugging Face's ``model.generate``, in tokens per second.

One chat-template prompt, batch 1, float32, 256 new tokens. End-of-sequence is switched off
on both sides (lmlib: ``eos_token_id=None``; transformers: ``eos_token_id=[]``), so every
run produces exactly ``--new-tokens`` tokens and the outputs can be compared token for token.
Both models hold the same weights (lmlib's Llama is loaded from the Hugging Face model).

Time: time.perf_counter around whole calls (prompt and decoding together), after a short
warm-up; the median of ``--repeats`` runs for the two fast ones, one run without the cache
(it re-reads the whole sequence at every step, so it is the slow one).

Prints progress lines, then one JSON line with keys lmlib_tokens_per_second,
hf_tokens_per_second, lmlib_no_cache_tokens_per_second, kv_cache_speedup, same_tokens,
new_tokens, prompt_tokens, device, torch_threads.

    python benchmarks/generate.py                  # a few minutes on a 2-core CPU
    python benchmarks/generate.py --new-tokens 64  # quicker
    python benchmarks/generate.py --threads 1      # steadier on a CPU shared with other jobs
"""

import argparse
import json
import statistics
import time

import torch

from lmlib.convert import llama_from_hf
from lmlib.generate import GenerationConfig, generate
from lmlib.pretrained import load_smollm2

PROMPT = "Write a story about a robot who learns to paint."


def seconds(fn, repeats: int):
    """Median wall time of ``repeats`` calls, and the last call's result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, device = args.new_tokens, torch.device(args.device)

    hf, tok = load_smollm2(device)
    ours = llama_from_hf(hf).to(device).eval()
    chat = [{"role": "user", "content": PROMPT}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"].to(device)  # (1, T)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"prompt {ids.shape[1]} tokens, {n} new tokens, float32, greedy")  # fmt: skip

    def run_lmlib(use_cache=True, new=n):  # greedy, eos_token_id None: exactly `new` tokens
        return generate(ours, ids, GenerationConfig(max_new_tokens=new, use_cache=use_cache))

    def run_hf(new=n):
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            return hf.generate(ids, attention_mask=mask, max_new_tokens=new,
                               do_sample=False, eos_token_id=[],
                               pad_token_id=tok.pad_token_id)  # fmt: skip

    run_lmlib(new=8), run_hf(new=8)  # warm-up: first calls allocate and pick kernels
    t_ours, out_ours = seconds(run_lmlib, args.repeats)
    print(f"lmlib, KV cache:     {t_ours:7.2f} s  {n / t_ours:6.1f} tokens/s")
    t_hf, out_hf = seconds(run_hf, args.repeats)
    print(f"transformers:        {t_hf:7.2f} s  {n / t_hf:6.1f} tokens/s")
    t_slow, out_slow = seconds(lambda: run_lmlib(use_cache=False), 1)
    print(f"lmlib, no cache:     {t_slow:7.2f} s  {n / t_slow:6.1f} tokens/s")

    same = torch.equal(out_ours, out_hf) and torch.equal(out_ours, out_slow)
    print(f"same tokens: {same}; text: {tok.decode(out_ours[0, ids.shape[1] :])[:200]!r}...")
    result = {
        "lmlib_tokens_per_second": round(n / t_ours, 2),
        "hf_tokens_per_second": round(n / t_hf, 2),
        "lmlib_no_cache_tokens_per_second": round(n / t_slow, 2),
        "kv_cache_speedup": round(t_slow / t_ours, 2),
        "same_tokens": same,
        "new_tokens": n,
        "prompt_tokens": ids.shape[1],
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
