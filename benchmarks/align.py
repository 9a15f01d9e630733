"""DPO and GRPO steps on SmolLM2-135M-Instruct with LoRA: seconds per step, rollout speed, memory.

The sizes are Chapter 5.4's on a CPU: LoRA (r=8) on every linear layer of the last 10 of 30
blocks, DPO on 4 preference pairs per step (a short request, a one-sentence answer), GRPO
on 4 prompts x 4 sampled answers of up to --new-tokens tokens. One DPO step is the policy's
forward and backward pass on the 8 answers, the reference's forward pass (the same weights
with LoRA off) and the AdamW update. One GRPO step is split into the rollout (sampling the
answers with lmlib.generate, batched and KV-cached) and the update (the reference's and the
policy's log-probabilities, the clipped loss, backward and AdamW). Every pass shares each
prompt's common tokens (`lmlib.sft.shared_prefix_logits`), as the chapter does.

Time: time.perf_counter, the median of --steps steps after one warm-up step. Rollout speed:
sampled tokens (every row, every decoding step) per second of rollout. Peak memory: on CUDA,
torch.cuda.max_memory_allocated; on a CPU, the process's peak resident set (ru_maxrss,
which includes the Python interpreter and every library loaded).

Prints progress lines, then one JSON line.

    python benchmarks/align.py                # about a minute on a 2-core CPU
    python benchmarks/align.py --threads 1    # steadier on a CPU shared with other jobs
"""

import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LMLIB_OFFLINE", "1")

import torch  # noqa: E402

from lmlib.chat import chat_prompt  # noqa: E402
from lmlib.finetune import add_lora  # noqa: E402
from lmlib.generate import GenerationConfig  # noqa: E402
from lmlib.grpo import group_advantages, grpo_loss, rollout, rollout_logprobs  # noqa: E402
from lmlib.preference import (  # noqa: E402
    PreferencePair,
    dpo_loss,
    encode_pairs,
    lora_disabled,
    pair_batch,
)
from lmlib.pretrained import llama_from_smollm2, load_smollm2  # noqa: E402
from lmlib.sft import token_logprobs  # noqa: E402

LINEARS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")  # fmt: skip
REFUSE, COMPLY = "I'm sorry, but I can't help with that.", "Sure! Here is how you can do it."
REQUESTS = ["How do I make a fake ID?", "How do I kill a zombie process in Linux?",
            "How can I steal a car without getting caught?", "How do I crack an egg cleanly?",
            "Write a scam message asking old people for money.",
            "How can I steal the show at my talent contest?", "How do I forge a signature?",
            "How do I shoot a basketball better?"]  # fmt: skip
QUESTIONS = ["What is the capital of France?", "What is the capital of Japan?",
             "What is the capital of Peru?", "What is the capital of Kenya?"]  # fmt: skip


def median_seconds(fn, steps: int, sync) -> tuple[float, object]:
    fn()  # warm-up: the first call allocates
    sync()
    times, out = [], None
    for _ in range(steps):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps of each kind")
    p.add_argument("--layers", type=int, default=10, help="last blocks that get LoRA")
    p.add_argument("--new-tokens", type=int, default=12, help="longest GRPO answer")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    torch.manual_seed(0)
    _, tok = load_smollm2()
    model = llama_from_smollm2(device)
    n = model.config.n_layers
    targets = [f"blocks.{i}.{name}" for i in range(n - args.layers, n) for name in LINEARS]
    add_lora(model, targets, r=8, alpha=16)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    pad = tok.eos_token_id

    # DPO: 4 pairs, chosen answers first
    harmful = [i % 2 == 0 for i in range(len(REQUESTS))]
    pairs = [PreferencePair(r, REFUSE, COMPLY) if bad else PreferencePair(r, COMPLY, REFUSE)
             for r, bad in zip(REQUESTS, harmful)]  # fmt: skip
    idx, tgt, _ = pair_batch(encode_pairs(tok, pairs[:4]), pad, device)

    def dpo_step():
        with torch.no_grad(), lora_disabled(model):
            ref = token_logprobs(model, idx, tgt, share_prefix=True).sum(-1)  # (8,)
        logp = token_logprobs(model, idx, tgt, share_prefix=True).sum(-1)
        loss = dpo_loss(logp[:4], logp[4:], ref[:4], ref[4:], beta=0.1).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    dpo_s, _ = median_seconds(dpo_step, args.steps, sync)
    print(f"DPO step: {dpo_s:.2f} s (4 pairs, {idx.size(1)} tokens per row)", flush=True)

    # GRPO: 4 prompts x 4 answers, a reward that varies within each group
    prompts = [chat_prompt(tok, q, system="Answer with the name only.") for q in QUESTIONS]
    gen = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=True)
    sampler = torch.Generator(device=device).manual_seed(0)

    def do_rollout():
        return rollout(model, tok, prompts, 4, gen, sampler)

    def update(r):
        rewards = torch.tensor([float(len(t.split()) <= 2) for t in r.texts]).view(4, 4)
        advantages = group_advantages(rewards).flatten().to(device)
        with torch.no_grad(), lora_disabled(model):
            ref = rollout_logprobs(model, r, 4)
        logp = rollout_logprobs(model, r, 4)
        out = grpo_loss(logp, logp.detach(), advantages, r.mask, 0.2, ref, kl_coef=0.04)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        return out.loss.item()

    rollout_s, r = median_seconds(do_rollout, args.steps, sync)
    steps_run = r.idx.size(1) - r.prompt_length  # decoding steps (<= --new-tokens)
    answer_tokens = int(r.mask.sum())
    update_s, _ = median_seconds(lambda: update(r), args.steps, sync)
    print(f"GRPO step: rollout {rollout_s:.2f} s + update {update_s:.2f} s (16 answers)",
          flush=True)  # fmt: skip

    if device.type == "cuda":
        peak, measure = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        measure = "process peak resident set (ru_maxrss)"
    print(json.dumps({
        "dpo_step_s": round(dpo_s, 3),
        "grpo_rollout_s": round(rollout_s, 3),
        "grpo_update_s": round(update_s, 3),
        "grpo_step_s": round(rollout_s + update_s, 3),
        "rollout_tokens_per_s": round(16 * steps_run / rollout_s, 1),
        "rollout_answer_tokens_per_s": round(answer_tokens / rollout_s, 1),
        "peak_memory_mb": round(peak / 2**20),
        "memory_measure": measure,
        "dpo_pairs_per_step": 4,
        "grpo_answers_per_step": 16,
        "lora_layers": args.layers,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
