"""SmolLM2-135M-Instruct on the CPU in five number formats: weight memory, forward time and
perplexity on held-out text.

Formats: float32 (the de-quantized GGUF weights every chapter uses), bfloat16, int8
weight-only (`lmlib.quantization.quantize_linears`: one scale per output channel, de-quantized
in each forward), int8 dynamic (PyTorch's int8 matmuls, activations quantized per tensor)
and 4-bit weight-only in groups of 32 (`quantize_linears(bits=4, group_size=32)`, stored
one number per byte here). The tied embedding / output matrix stays in float32 in the
quantized formats. The GGUF file the weights come from (Q4_1 layers, Q8_0 embedding) is
reported as a size only.

Memory: `model_bytes` (parameters and buffers), with 4-bit integers counted as packed two
to a byte (lmlib keeps one per byte); `serialized_bytes` for the dynamic format, whose
packed weights are neither parameters nor buffers. Time: median of --repeats forwards of
one token and of --forward-tokens tokens, after a warm-up. Perplexity:
`sliding_window_perplexity` over the last --tokens tokens of Tiny Shakespeare, in windows
of --window tokens (Shakespeare is public web text: SmolLM2 may well have seen it in
pre-training, which matters little here, since only the differences between formats count).

Prints one line per format, then ONE final JSON line.

    python benchmarks/quantize.py                  # a few minutes on a 2-core CPU
    python benchmarks/quantize.py --tokens 512     # quicker
    python benchmarks/quantize.py --threads 1      # steadier on a CPU shared with other jobs
"""

import argparse
import copy
import json
import os
import platform

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LMLIB_OFFLINE", "1")

import torch  # noqa: E402

from lmlib.data import load_tiny_shakespeare  # noqa: E402
from lmlib.perplexity import sliding_window_perplexity  # noqa: E402
from lmlib.pretrained import load_smollm2, smollm2_gguf_path  # noqa: E402
from lmlib.quantization import (  # noqa: E402
    Int8Linear,
    dynamic_int8,
    model_bytes,
    quantize_linears,
    serialized_bytes,
    time_forward,
)


def packed_bytes(model) -> int:
    """`model_bytes` if each quantized integer took ``bits`` bits instead of a whole byte."""
    saved = sum(m.q.numel() * (8 - m.bits) // 8 for m in model.modules()
                if isinstance(m, Int8Linear))  # fmt: skip
    return model_bytes(model) - saved


def variants(model):
    """(name, model, weight bytes) for each format, built one at a time to save memory."""
    yield "float32", model, model_bytes(model)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    yield "bfloat16", bf16, model_bytes(bf16)
    del bf16
    for name, bits, group in (("int8 weight-only", 8, None), ("int4 g32 weight-only", 4, 32)):
        q = copy.deepcopy(model)
        quantize_linears(q, bits=bits, group_size=group)
        yield name, q, packed_bytes(q)
        del q
    dyn = dynamic_int8(model)
    yield "int8 dynamic", dyn, serialized_bytes(dyn)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048, help="held-out tokens to score")
    p.add_argument("--window", type=int, default=512, help="perplexity window (= stride)")
    p.add_argument("--forward-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = load_smollm2("cpu")
    text = load_tiny_shakespeare()
    ids = tok(text[-12 * args.tokens :], return_tensors="pt").input_ids[0, -args.tokens :]
    one = ids[None, :1]
    many = ids[None, : args.forward_tokens]
    gguf_mb = smollm2_gguf_path().stat().st_size / 1e6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(ids)} held-out "
          f"tokens, window {args.window}; GGUF Q4_1 file {gguf_mb:.1f} MB")  # fmt: skip
    results = {}
    for name, m, nbytes in variants(model):
        r = {
            "weights_mb": round(nbytes / 1e6, 1),
            "forward_1_token_ms": round(1e3 * time_forward(m, one, args.repeats), 1),
            f"forward_{args.forward_tokens}_tokens_ms": round(
                1e3 * time_forward(m, many, args.repeats), 1
            ),
            "perplexity": round(sliding_window_perplexity(m, ids, args.window), 3),
        }
        results[name] = r
        print(f"{name:22s} {r['weights_mb']:7.1f} MB  1 token {r['forward_1_token_ms']:7.1f} ms"
              f"  {args.forward_tokens} tokens "
              f"{r[f'forward_{args.forward_tokens}_tokens_ms']:8.1f} ms  "
              f"perplexity {r['perplexity']:.3f}", flush=True)  # fmt: skip
    out = {
        "formats": results,
        "gguf_q4_1_file_mb": round(gguf_mb, 1),
        "tokens": len(ids),
        "window": args.window,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
