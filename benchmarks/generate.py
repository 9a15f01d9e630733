"""Greedy generation with SmolLM2-135M-Instruct: lmlib (with and without the KV cache, with
speculative decoding and with prompt lookup) and Hugging Face's ``model.generate`` (plain and
with its prompt lookup), in tokens per second.

Chat-template prompts, float32, 256 new tokens, batch 1 and a batch of 8 prompts (padded on
the left). End-of-sequence is switched off on both sides (lmlib: ``eos_token_id=None``;
transformers: ``eos_token_id=[]``), so every run produces exactly ``--new-tokens`` tokens and
the outputs are compared token for token. Both models hold the same weights (lmlib's Llama
is loaded from the Hugging Face model).

Speculative decoding (`lmlib.speculative`, batch 1): a 4-bit copy of the same model
(`low_bit_draft`, built once before timing) guesses ``--draft-tokens`` tokens, and the
float32 model checks them in one pass; every token kept is the float32 model's own greedy
choice, so the text must be the same as both plain runs', and the benchmark checks it.

Prompt lookup (`lmlib.speculative.prompt_lookup`, batch 1): no draft model at all. The
guesses are copied from the text itself: at the latest earlier place where its last
``--lookup-ngram`` tokens (3, then 2) occurred, what followed them there. transformers' own
prompt lookup (``generate(..., prompt_lookup_num_tokens=8, max_matching_ngram_size=3)``) runs
beside it, with the same guesses per pass and n-grams; it takes the earliest match instead
of the latest and also matches single tokens. Both keep only the model's own greedy tokens,
so the text is again the same. Prompt lookup pays where text repeats itself, and this text
does: after its first few sentences, SmolLM2's greedy story repeats whole sentences. On text
that never repeats it finds nothing to copy and runs as plain decoding, plus the wasted
positions of its wrong guesses.

Time: time.perf_counter around whole calls (prompt and decoding together), after a short
warm-up. lmlib, lmlib speculative, lmlib prompt lookup, transformers and transformers'
prompt lookup take turns, ``--repeats`` runs each (the order rotates every round), so a
burst of load from other jobs hits all alike; the medians are compared.
lmlib without the cache runs once (it re-reads the whole sequence at every step, so it is
the slow one). Each run records the 1-minute load average beside its time.

Prints progress lines, then one JSON line with keys lmlib_tokens_per_second,
hf_tokens_per_second, ratio (lmlib / transformers), speculative_tokens_per_second,
speculative_ratio (lmlib speculative / transformers), draft_tokens, acceptance_rate (the
share of guesses kept), tokens_per_model_call, lookup_tokens_per_second, lookup_ratio
(lmlib prompt lookup / transformers), lookup_ngram, lookup_acceptance_rate,
lookup_tokens_per_model_call, hf_lookup_tokens_per_second, lookup_vs_hf_lookup (lmlib's
prompt lookup / transformers'), lmlib_no_cache_tokens_per_second,
kv_cache_speedup, batch, lmlib_batched_tokens_per_second, hf_batched_tokens_per_second,
batched_ratio, same_tokens, same_tokens_batched, new_tokens, prompt_tokens, device,
torch_threads, load_average (min and max over the runs), runs (every time measured).

    python benchmarks/generate.py                  # 12-14 minutes on a 2-core CPU
    python benchmarks/generate.py --new-tokens 64  # quicker
    python benchmarks/generate.py --threads 1      # steadier on a CPU shared with other jobs
    python benchmarks/generate.py --no-uncached    # skip the slow run without the cache

What limits the speed here (SmolLM2, batch 1, float32, 2 AMD EPYC cores with AVX2): every
new token multiplies a (1, C) vector by every weight matrix, 538 MB of float32 weights read
once per token. One core streams 11-14 GB/s (F.linear 11.6 GB/s, a plain sum 14.3 GB/s), so
the matrix-vector products alone take 40-60 ms per token on one thread, and both libraries
call the same kernel for them. torch.profiler over 10 decode steps: aten::mm 85% of the CPU
time, the fused attention 3%, every other op 1% or less. One decode step on one thread, 40
interleaved repeats (min / median ms): the matmuls alone 53.6 / 61.0, lmlib's forward
71.0 / 80.7, transformers' forward 70.6 / 84.8. What a library can save is the rest: the
small ops between the matmuls (norms, RoPE, cache writes, attention) and its Python per
step, 15-20% of a step, so neither library can be much faster than the other here without
changing the numbers (bfloat16 weights, another matmul kernel), which would change tokens.
One and two threads give bit-identical logits, so the thread count is a free choice.
Since 2026-12-04 lmlib's Llama stores its weights column-major (`column_major_linears`), so
its products call MKL's untransposed routine: about the same for one row, much faster for a
few rows at once (a batch, or the guesses a speculative pass checks). The figures below
until that date were measured before the change. After it, on the Ice Lake Xeon (probe
177-221 GFLOP/s), two threads, the defaults, load average 1.7-2.0: lmlib 18.6 tokens/s,
transformers 19.0 (0.98x), speculative 21.5 (1.13x), prompt lookup 46.5 (2.45x; 1.75x
transformers' prompt lookup at 26.7), without the cache 3.0 (the cache is 6.1x faster);
batch 8: 84.5 against 61.7 (1.37x); the same tokens throughout.
On the AMD EPYC after it, 2026-12-04 (probe 155-193 GFLOP/s that day), two threads, load
average 1.8-2.0: lmlib 14.8 tokens/s, transformers 14.0 (1.06x), speculative 31.0 (2.21x,
91% of guesses kept), prompt lookup 33.4 (2.38x; 1.38x transformers' prompt lookup at
24.1), without the cache 2.5 (the cache is 5.9x faster); batch 8: 72.3 against 75.1
(0.96x), so on this CPU the column-major products gain nothing for 8 rows; the same tokens
throughout.

Another matmul kernel, tried and not kept: MKL's pre-packed weights (the private ops
``torch.ops.mkl._mkl_reorder_linear_weight`` and ``_mkl_linear``, which Inductor's
weight freezing uses on CPU). Alone, a 1-row product with a 1536 x 576 weight ran 1.53x
faster packed (median of 5 alternating runs over 200 weights). But every nn.Linear of
lmlib's SmolLM2 packed for 1-row inputs (the lm_head too) decoded 256 greedy tokens at
10.55 tokens/s against 10.35 unpacked and 8.97 for transformers (one thread, median of 3
in turns; 1.02x, within the noise), with the same tokens, for a second 540 MB copy of
the weights.

Measured (one thread, load average 1.0-2.3, 256 tokens, median of 3 in turns):
lmlib 9.7 tokens/s, transformers 9.4 (1.03x), lmlib without the cache 1.2 (the cache is
8.3x faster), the same tokens on all three.

On another machine of this kind (2 cores of an Intel Xeon with AVX-512 and AMX, a 1024 x
1024 float32 matmul at 350 GFLOP/s), 2026-12-02, two threads, the defaults: lmlib 32.3
tokens/s, transformers 30.5 (1.06x), without the cache 5.9 (the cache is 5.5x faster);
batch 8: 125.2 against 115.1 (1.09x); the same tokens throughout. torch.profiler over 64
greedy tokens there: aten::mm 76% of the time, 20.7 ms of a 27 ms token (the weights
stream at 26 GB/s), every other op 3% or less. So even a step with nothing but its matmuls
would be about 1.6x transformers' 33 ms, and 1.5x would leave 1.3 ms a token for
everything else.

On the AMD EPYC (Zen 4, AVX-512, a 1024 x 1024 float32 matmul at 163-180 GFLOP/s),
2026-12-03, two threads, the defaults, load average 1.7-2.1: lmlib 15.6 tokens/s,
transformers 14.7 (1.06x), speculative 32.1 (2.17x, 91% of guesses kept), without the cache
2.9 (the cache is 5.3x faster; one run, and 4.5x in an earlier run here); batch 8: 63.0
against 58.6 (1.07x); the same tokens throughout.

Fewer bytes per weight, tried and not kept: computing from the file's own 4-bit format.
A Q4_1 weight is d * q + m per block of 32 (q in 0..15, d and m per block), and those q
are exact in bfloat16, so W x = d * (Q x) + m * (block sums of x) can read Q as bfloat16,
half of float32's bytes, with x split into three bfloat16 parts to keep float32's
precision. Timed alone (one product, 2 threads): a batched product over the blocks took
196 us against 32 us for float32's F.linear on a 1536 x 576 weight, and 4.9 ms against
2.5 ms on the 49152 x 576 output layer; a plain bfloat16 F.linear on the output layer took
22 ms. PyTorch's bfloat16 matrix-vector kernels on this CPU are slower than its float32
ones, so halving the bytes does not pay without a kernel of one's own.

Fewer bytes per weight, kept, through speculative decoding. PyTorch (2.13 here) carries
weight-only CPU kernels that multiply bfloat16 inputs by packed 4-bit (grouped) and 8-bit
(per-row) weights (``torch._weight_int4pack_mm_for_cpu``, ``torch._weight_int8pack_mm``).
Timed alone on 2 AMD EPYC cores (AVX-512 with bfloat16), a 1-row product with a
1536 x 576 weight took 29 us packed in 4 bits against 72-74 us for float32's F.linear, and
the 49152 x 576 output layer 0.8 ms in 4 bits, 2.4 ms in 8 bits, against 11-13 ms. Their
numbers are not float32's (the input is rounded to bfloat16), so they cannot replace the
model's weights without changing tokens; they make a draft instead (`lmlib.speculative`).
How often the draft picks the model's token, each read with the greedy text so far: over
the first 128 tokens of this prompt, 88% with a 4-bit output layer, 97% with an 8-bit one,
100% with a float32 one (which costs 11-13 ms a token); over all 256, 98% with the 8-bit
one, and 88% when the 4-bit groups are symmetric (`quantize`) instead of min-max
(`quantize_minmax`). Guesses per pass over 128 tokens: 3 ran at 1.67x plain decoding,
4 at 1.76x, 6 at 1.74x, 8 at 1.86x, 10 at 1.97x (one run each), all with the same
tokens; the default is 8.

Measured on 2 AMD EPYC cores (AVX-512 with bfloat16; a 1024 x 1024 float32 matmul at
183 GFLOP/s), 2026-12-02, two threads, the defaults (load average 1.3-2.0): lmlib 15.3
tokens/s, transformers 15.6 (0.98x), lmlib speculative 35.6 (2.28x transformers; 91% of
248 guesses kept, 8.0 tokens per pass of the model), lmlib without the cache 3.4 (the
cache is 4.5x faster); batch 8: 80.9 against 83.1 (0.97x); the same tokens throughout.
Again there, 2026-12-03, idle but for this run (load average 0.85-2.08; the probe's 1024 x
1024 float32 matmul at 124-159 GFLOP/s that day): lmlib 13.0 tokens/s, transformers 12.0
(1.08x), speculative 24.8 (2.06x, 91% of guesses kept), without the cache 2.4 (the cache is
5.3x faster); batch 8: 63.5 against 58.8 (1.08x); the same tokens throughout. The cache's
speed-up is a ratio of two different limits, so it moves with the machine: decoding with
the cache streams the weights once a token (memory), while without it every step
recomputes the whole text (arithmetic: about 9.5 TFLOP over the 256 tokens, which ran at
91-106 GFLOP/s in that day's two runs). Over four runs on this CPU it was 4.5x, 5.3x,
4.9x (with another job beside part of it) and 5.3x.

On a third kind, 2 cores of an Intel Xeon at 2.8 GHz (Ice Lake: AVX-512 without bfloat16
or AMX; the probe at 261 GFLOP/s just before), 2026-12-03, two threads, the defaults, load
average 1.1-2.0: lmlib 24.5 tokens/s, transformers 22.0 (1.12x), speculative 25.0 (1.14x,
91% of guesses kept, 8.0 tokens per pass), without the cache 3.8 (the cache is 6.4x
faster); batch 8: 78.0 against 71.0 (1.10x); the same tokens throughout. Speculative
decoding gains nothing here. The draft's packed 4-bit kernels take bfloat16 inputs, and
this CPU has no bfloat16 arithmetic; by these figures (8 draft steps and one pass of the
model for 8 tokens, at plain decoding's speed) a draft step costs nearly what a step of the
model does. The draft was not timed alone on this machine.

Again on the Ice Lake Xeon, 2026-12-03 (the probe at 218 GFLOP/s before, 191 after), two
threads, the defaults, load average 1.5-2.1, now with prompt lookup: lmlib 20.1 tokens/s,
transformers 17.4 (1.15x), the 4-bit draft 17.6 (1.01x, 91% of guesses kept), lmlib's
prompt lookup 32.9 (1.89x transformers; 167 of 264 copied guesses kept, 2.9 tokens per
pass), transformers' prompt lookup 25.6 (lmlib's is 1.28x it), without the cache 2.7 (the
cache is 7.4x faster); batch 8: 59.7 against 56.5 (1.06x); the same tokens throughout. A
second run an hour later, at 0675f08 (the probe at 225, then 190; load average 1.2-2.1):
lmlib 18.7, transformers 18.1 (1.03x), the 4-bit draft 17.6 (0.97x), prompt lookup 35.6
(1.96x; 1.42x transformers' prompt lookup at 25.1), the cache 7.5x, batch 8 54.8 against
54.8 (1.00x); the same tokens throughout.
Timed alone there, one 1-token step with the KV cache took 42-54 ms for the float32 model
and 25-43 ms for the 4-bit draft, of which 10-17 ms is not matmuls (the same step with
every linear layer replaced by one that returns zeros): 30 layers of small ops at about
160 PyTorch calls a layer. ``torch.compile`` of the draft halved its step (16-23 ms) but
took 290 s to compile here, with recompiles at graph breaks in the input checks; not kept.
A copied guess costs nothing to make, so prompt lookup wins here, where a draft step costs
most of a model step. On the AMD EPYC, where the draft's step is cheap, the 4-bit draft
reached 2.06-2.28x; prompt lookup was not measured there. The two combine
(``speculative_generate(model, draft, ..., lookup_ngram=3)``: the draft guesses only where
the text has no match); on this CPU that ran slower than prompt lookup alone, 7.9 s against
6.5 s for 256 tokens (the faster of two runs each).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

from lmlib.convert import llama_from_hf
from lmlib.generate import GenerationConfig, generate, left_pad
from lmlib.pretrained import load_smollm2
from lmlib.speculative import low_bit_draft, speculative_generate

PROMPT = "Write a story about a robot who learns to paint."
BATCH_PROMPTS = [
    PROMPT,
    "What is the capital of France?",
    "Explain photosynthesis to a child.",
    "Give three tips for learning to play the guitar.",
    "Write a haiku about the sea.",
    "Why is the sky blue?",
    "Describe a busy market in the morning, with its sounds and smells.",
    "List the planets of the solar system.",
]


def timed(fn):
    """Wall seconds of one call, its result, and the 1-minute load average just after it."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out, os.getloadavg()[0]


def take_turns(fns: dict, repeats: int, runs: dict) -> dict:
    """Call each function ``repeats`` times, in turns (the order rotates every round); the
    median seconds of each. Every run's (seconds, load average) goes into ``runs``."""
    outs, names = {}, list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, outs[name], load = timed(fns[name])
            runs.setdefault(name, []).append((round(seconds, 3), round(load, 2)))
    medians = {name: statistics.median(s for s, _ in runs[name]) for name in names}
    return medians, outs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="runs of each library (median)")
    p.add_argument("--batch", type=int, default=8, help="prompts in the batched runs (0: none)")
    p.add_argument("--draft-tokens", type=int, default=8,
                   help="speculative decoding: guesses per pass of the model")  # fmt: skip
    p.add_argument("--lookup-ngram", type=int, default=3,
                   help="prompt lookup: the longest n-gram matched (both libraries)")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--uncached", action=argparse.BooleanOptionalAction, default=True,
                   help="also time lmlib without the KV cache (the slow one)")  # fmt: skip
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines survive a killed run
    if args.threads:
        torch.set_num_threads(args.threads)
    n, device = args.new_tokens, torch.device(args.device)

    hf, tok = load_smollm2(device)
    ours = llama_from_hf(hf).to(device).eval()
    start = time.perf_counter()
    draft = low_bit_draft(ours)
    print(f"4-bit draft built in {time.perf_counter() - start:.1f} s")

    def chat_ids(prompt):
        chat = [{"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
        return ids["input_ids"][0].tolist()

    ids = torch.tensor([chat_ids(PROMPT)], device=device)  # (1, T)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"prompt {ids.shape[1]} tokens, {n} new tokens, float32, greedy")  # fmt: skip

    def run_lmlib(idx, mask=None, use_cache=True, new=n):  # eos None: exactly `new` tokens
        cfg = GenerationConfig(max_new_tokens=new, use_cache=use_cache)
        return generate(ours, idx, cfg, attention_mask=mask)

    def run_hf(idx, mask=None, new=n, **options):
        mask = torch.ones_like(idx) if mask is None else mask
        with torch.inference_mode():
            return hf.generate(idx, attention_mask=mask, max_new_tokens=new, do_sample=False,
                               eos_token_id=[], pad_token_id=tok.pad_token_id,
                               **options)  # fmt: skip

    def run_speculative(idx, new=n):
        return speculative_generate(ours, draft, idx, new, draft_tokens=args.draft_tokens)

    def run_lookup(idx, new=n):  # prompt lookup alone, no draft model
        return speculative_generate(ours, None, idx, new, draft_tokens=args.draft_tokens,
                                    lookup_ngram=args.lookup_ngram)  # fmt: skip

    def run_hf_lookup(idx, new=n):  # transformers' prompt lookup, the same k and n-gram
        return run_hf(idx, new=new, prompt_lookup_num_tokens=args.draft_tokens,
                      max_matching_ngram_size=args.lookup_ngram)  # fmt: skip

    # warm-up: first calls allocate, pick kernels
    run_lmlib(ids, new=8), run_hf(ids, new=8), run_speculative(ids, new=8)
    run_lookup(ids, new=8), run_hf_lookup(ids, new=8)
    runs = {}
    t, outs = take_turns({"lmlib": lambda: run_lmlib(ids), "hf": lambda: run_hf(ids),
                          "lmlib_speculative": lambda: run_speculative(ids),
                          "lmlib_lookup": lambda: run_lookup(ids),
                          "hf_lookup": lambda: run_hf_lookup(ids)},
                         args.repeats, runs)  # fmt: skip
    spec, look = outs["lmlib_speculative"], outs["lmlib_lookup"]
    every = (outs["lmlib"], spec.tokens, look.tokens, outs["hf_lookup"])
    same = all(torch.equal(out, outs["hf"]) for out in every)
    ts, tl, thl = t["lmlib_speculative"], t["lmlib_lookup"], t["hf_lookup"]
    print(f"batch 1, lmlib, KV cache: {t['lmlib']:7.2f} s  {n / t['lmlib']:6.1f} tokens/s  "
          f"(lmlib / transformers {t['hf'] / t['lmlib']:.2f}x)")  # fmt: skip
    print(f"batch 1, lmlib speculative: {ts:5.2f} s  {n / ts:6.1f} tokens/s  "
          f"(/ transformers {t['hf'] / ts:.2f}x; {spec.acceptance_rate:.0%} of "
          f"{spec.drafted} guesses kept, {spec.tokens_per_call:.1f} tokens per pass)")  # fmt: skip
    print(f"batch 1, lmlib prompt lookup: {tl:5.2f} s  {n / tl:6.1f} tokens/s  "
          f"(/ transformers {t['hf'] / tl:.2f}x, / its prompt lookup {thl / tl:.2f}x; "
          f"{look.accepted} of {look.drafted} copied guesses kept, "
          f"{look.tokens_per_call:.1f} tokens per pass)")  # fmt: skip
    print(f"batch 1, transformers:    {t['hf']:7.2f} s  {n / t['hf']:6.1f} tokens/s")
    print(f"batch 1, transformers prompt lookup: {thl:5.2f} s  {n / thl:6.1f} tokens/s")
    result = {
        "lmlib_tokens_per_second": round(n / t["lmlib"], 2),
        "hf_tokens_per_second": round(n / t["hf"], 2),
        "ratio": round(t["hf"] / t["lmlib"], 3),
        "speculative_tokens_per_second": round(n / ts, 2),
        "speculative_ratio": round(t["hf"] / ts, 3),
        "draft_tokens": args.draft_tokens,
        "acceptance_rate": round(spec.acceptance_rate, 3),
        "tokens_per_model_call": round(spec.tokens_per_call, 2),
        "lookup_tokens_per_second": round(n / tl, 2),
        "lookup_ratio": round(t["hf"] / tl, 3),
        "lookup_ngram": args.lookup_ngram,
        "lookup_acceptance_rate": round(look.acceptance_rate, 3),
        "lookup_tokens_per_model_call": round(look.tokens_per_call, 2),
        "hf_lookup_tokens_per_second": round(n / thl, 2),
        "lookup_vs_hf_lookup": round(thl / tl, 3),
    }
    if args.uncached:
        seconds, out_slow, load = timed(lambda: run_lmlib(ids, use_cache=False))
        runs["lmlib_no_cache"] = [(round(seconds, 3), round(load, 2))]
        same = same and torch.equal(outs["lmlib"], out_slow)
        print(f"batch 1, lmlib, no cache: {seconds:7.2f} s  {n / seconds:6.1f} tokens/s  "
              f"(the cache is {seconds / t['lmlib']:.1f}x faster)")  # fmt: skip
        result["lmlib_no_cache_tokens_per_second"] = round(n / seconds, 2)
        result["kv_cache_speedup"] = round(seconds / t["lmlib"], 2)
    print(f"same tokens: {same}; text: {tok.decode(outs['lmlib'][0, ids.shape[1] :])[:120]!r}")
    result["same_tokens"] = same

    if args.batch:
        prompts = (BATCH_PROMPTS * args.batch)[: args.batch]
        idx, mask = left_pad([chat_ids(q) for q in prompts], tok.pad_token_id)
        idx, mask = idx.to(device), mask.to(device)
        tb, outs_b = take_turns({"lmlib_batched": lambda: run_lmlib(idx, mask),
                                 "hf_batched": lambda: run_hf(idx, mask)},
                                args.repeats, runs)  # fmt: skip
        rows = args.batch * n
        print(f"batch {args.batch}, lmlib:        {tb['lmlib_batched']:7.2f} s  "
              f"{rows / tb['lmlib_batched']:6.1f} tokens/s")  # fmt: skip
        print(f"batch {args.batch}, transformers: {tb['hf_batched']:7.2f} s  "
              f"{rows / tb['hf_batched']:6.1f} tokens/s")  # fmt: skip
        same_b = torch.equal(outs_b["lmlib_batched"], outs_b["hf_batched"])
        print(f"same tokens, batched: {same_b}")
        result.update(
            batch=args.batch,
            lmlib_batched_tokens_per_second=round(rows / tb["lmlib_batched"], 2),
            hf_batched_tokens_per_second=round(rows / tb["hf_batched"], 2),
            batched_ratio=round(tb["hf_batched"] / tb["lmlib_batched"], 3),
            same_tokens_batched=same_b,
        )
    loads = [load for values in runs.values() for _, load in values]
    result.update(
        new_tokens=n,
        prompt_tokens=ids.shape[1],
        device=str(device),
        torch_threads=torch.get_num_threads(),
        load_average=[min(loads), max(loads)],
        runs=runs,
        torch=torch.__version__,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
