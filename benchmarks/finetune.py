"""Fine-tuning SmolLM2-135M four ways (LoRA, adapters, prompt tuning, full) on SST-2, plus a
fully fine-tuned MiniLM classifier: trainable parameters, accuracy, seconds and memory.

Every method starts from the same zero-shot model and template, trains with the same seed on
the same batches, and is scored on the same held-out SST-2 dev sentences (a seeded sample).
Training uses SST-2 train rows of at least --min-words words: the train split also holds
short sub-sentence phrases, and whole sentences match the dev set far better. Prints one
progress line per method, then ONE final JSON line. The defaults are Chapter 5's sizes
(about a minute of training per method on a quiet 2-core CPU); raise --steps and --eval on
a GPU.

    python benchmarks/finetune.py
    python benchmarks/finetune.py --methods lora prompt --steps 120 --eval 872
"""

import argparse
import json
import os
import platform
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LMLIB_OFFLINE", "1")

import torch  # noqa: E402

from lmlib.classifier_training import finetune_classifier, train_encoder_classifier  # noqa: E402
from lmlib.data import load_sst2  # noqa: E402
from lmlib.pretrained import llama_from_smollm2, load_minilm, load_smollm2  # noqa: E402

METHODS = ("lora", "adapter", "prompt", "full")


def report(name: str, r: dict) -> dict:
    """Print one progress line; keep the result JSON-sized (loss curve -> first and last)."""
    losses = r.pop("losses")
    tail = losses[-10:]
    r["first_loss"], r["final_loss"] = round(losses[0], 3), round(sum(tail) / len(tail), 3)
    for key in ("accuracy_before", "accuracy_after", "eval_loss_before", "eval_loss_after",
                "seconds", "peak_memory_mb"):  # fmt: skip
        r[key] = round(r[key], 4)
    print(f"{name:8s} trainable {r['trainable_params']:>11,} of {r['total_params']:>11,}  "
          f"accuracy {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f}  "
          f"eval loss {r['eval_loss_before']:.2f} -> {r['eval_loss_after']:.2f}  "
          f"{r['seconds']:6.1f} s  {r['peak_memory_mb']:6.0f} MB", flush=True)  # fmt: skip
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=60, help="training steps per method")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-words", type=int, default=8, help="shortest training sentence")
    parser.add_argument("--eval", type=int, default=200, help="held-out SST-2 dev sentences")
    parser.add_argument("--encoder-steps", type=int, default=150, help="0 skips MiniLM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train = [ex for ex in load_sst2("train") if len(ex.sentence.split()) >= args.min_words]
    held_out = random.Random(args.seed).sample(load_sst2("dev"), args.eval)
    results = []
    if args.methods:
        model = llama_from_smollm2(args.device)
        _, tokenizer = load_smollm2()
    for method in args.methods:
        r = finetune_classifier(model, tokenizer, method, train, held_out, steps=args.steps,
                                batch_size=args.batch_size, seed=args.seed,
                                baseline=results[0] if results else None)  # fmt: skip
        results.append(report(method, {**r, "model": "SmolLM2-135M-Instruct"}))

    if args.encoder_steps:
        encoder, enc_tokenizer = load_minilm(args.device, attn_implementation="sdpa")
        r = train_encoder_classifier(encoder, enc_tokenizer, train, held_out,
                                     steps=args.encoder_steps, seed=args.seed)  # fmt: skip
        results.append(report("minilm", {**r, "model": "all-MiniLM-L6-v2 + linear head"}))

    print(json.dumps({"device": args.device, "torch_threads": torch.get_num_threads(),
                      "machine": platform.machine(), "train_rows": len(train),
                      "eval_examples": args.eval, "seed": args.seed,
                      "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "results": results}))  # fmt: skip


if __name__ == "__main__":
    main()
