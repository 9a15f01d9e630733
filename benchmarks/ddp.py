"""Data parallelism on this machine: Chapter 5's character GPT trained by 1 and by 2 processes.

The model and recipe of benchmarks/train_char_gpt.py (4 layers, 4 heads, d_model 128,
block_size 64, Tiny Shakespeare's 65 characters), trained by `lmlib.train.Trainer` under
``torchrun`` with 1 and then 2 processes (gloo, 127.0.0.1, one thread each), on the same
global batch of 12 sequences: with 2 processes each computes 6 of them and DDP averages
the gradients with an all-reduce in the backward pass.

Prints one JSON line:

- ``tokens_per_second``: {"1": ..., "2": ...}, global batch tokens x steps / seconds of
  the timed steps (after ``--warmup`` untimed ones);
- ``scaling_efficiency``: tokens/s with 2 processes / (2 x tokens/s with 1);
- ``allreduce_ms_per_step``: one all-reduce of every gradient (the model's parameter count
  in float32), timed alone in the 2-process run: the communication each step needs;
- ``step_ms``, ``params``, ``batch_size``, ``block_size``, ``steps``.

    python benchmarks/ddp.py                 # 100 timed steps each, about a minute
    python benchmarks/ddp.py --steps 20      # a smoke test

On a 2-core CPU, 2 processes can at best double the throughput of 1 only if nothing else
runs; each half-batch step is also less efficient than a whole one (smaller matmuls), so an
efficiency below 1 is expected here even before the all-reduce. Run it under the shared
lock on a busy machine: ``flock /tmp/heavy.lock python benchmarks/ddp.py``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch


def worker(out: str, steps: int, warmup: int) -> None:
    """Run by every process torchrun starts: time ``steps`` training steps."""
    import torch.distributed as dist

    from lmlib import distributed
    from lmlib.data import load_tiny_shakespeare
    from lmlib.model import GPT, GPTConfig
    from lmlib.tokenizers import CharTokenizer
    from lmlib.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    text = load_tiny_shakespeare()
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    torch.manual_seed(1337)
    model = GPT(GPTConfig(block_size=64, vocab_size=tok.vocab_size, n_layers=4, n_heads=4,
                          d_model=128))  # fmt: skip
    cfg = TrainConfig(max_iters=warmup + steps, batch_size=12, block_size=64, eval_interval=0,
                      eval_iters=0, progress=False, device="cpu", log_interval=10**9)  # fmt: skip
    trainer = Trainer(model, data, cfg=cfg)
    trainer.train(iters=warmup)
    distributed.barrier()
    start = time.perf_counter()
    trainer.train()
    distributed.barrier()
    seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    allreduce_ms = 0.0
    if distributed.is_distributed():  # every gradient at once, as one flat float32 tensor
        flat = torch.zeros(n_params)
        for _ in range(3):
            dist.all_reduce(flat)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            times.append(time.perf_counter() - t0)
        allreduce_ms = 1e3 * sorted(times)[len(times) // 2]
    if distributed.is_main():
        result = {"seconds": seconds, "params": n_params, "allreduce_ms": allreduce_ms,
                  "tokens": steps * cfg.batch_size * cfg.block_size}  # fmt: skip
        with open(out, "w") as f:
            json.dump(result, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # set when torchrun runs us
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.warmup)
        return

    from lmlib.distributed import torchrun_command

    runs = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as folder:
        for nproc in (1, 2):
            out = os.path.join(folder, f"{nproc}.json")
            command = torchrun_command(os.path.abspath(__file__), nproc, "--worker", out,
                                       "--steps", str(args.steps),
                                       "--warmup", str(args.warmup))  # fmt: skip
            subprocess.run(command, env=env, check=True)
            with open(out) as f:
                runs[nproc] = json.load(f)
    tps = {n: r["tokens"] / r["seconds"] for n, r in runs.items()}
    print(json.dumps({
        "tokens_per_second": {str(n): round(v) for n, v in tps.items()},
        "scaling_efficiency": round(tps[2] / (2 * tps[1]), 3),
        "allreduce_ms_per_step": round(runs[2]["allreduce_ms"], 2),
        "step_ms": {str(n): round(1e3 * r["seconds"] / args.steps, 1) for n, r in runs.items()},
        "params": runs[1]["params"],
        "batch_size": 12,
        "block_size": 64,
        "steps": args.steps,
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
