"""The teaching attention next to PyTorch's fused one: time and peak memory as T grows.

Both compute causal softmax(q kᵀ / √hs) v for B=1, nh=8, hs=64 in float32. The teaching
`lmlib.attention.scaled_dot_product_attention` materialises the (B, nh, T, T) weights (and
a few temporaries of that size), so its memory grows as T²; the fused
`torch.nn.functional.scaled_dot_product_attention` may avoid that (flash / memory-efficient
kernels on GPU; on CPU it depends on the PyTorch build).

Time: median of a few calls, time.perf_counter (with torch.cuda.synchronize on GPU).
Peak memory: on CUDA, torch.cuda.max_memory_allocated above what q, k, v already use. On
CPU (Linux only), the growth of the process's peak resident set (VmHWM in
/proc/self/status) during one call, in a fresh subprocess so that earlier sizes do not
leave memory behind; it counts every temporary and allocator overhead, to the page. The
size of the T×T weight matrix alone is printed too, as the number to compare it with.

Prints a table, then one JSON line with keys device, seq_lens, teaching_ms, fused_ms,
teaching_peak_bytes, fused_peak_bytes, weights_bytes, max_abs_diff and memory_measure.

    python benchmarks/attention.py            # about a minute on a 2-core CPU
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from lmlib.attention import causal_mask, scaled_dot_product_attention

B, NH, HS = 1, 8, 64
SEQ_LENS = [128, 256, 512, 1024, 2048]


def make_qkv(T, device):
    g = torch.Generator(device=device).manual_seed(0)
    return [torch.randn(B, NH, T, HS, device=device, generator=g) for _ in range(3)]


def teaching(q, k, v):
    return scaled_dot_product_attention(q, k, v, causal_mask(q.size(2), device=q.device))


def fused(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


IMPLS = {"teaching": teaching, "fused": fused}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def median_ms(fn, q, k, v, repeats):
    fn(q, k, v)  # warm-up: first calls pay for allocation and kernel selection
    sync(q.device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(q, k, v)
        sync(q.device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def cuda_peak_bytes(fn, q, k, v):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(q, k, v)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def vm_hwm_bytes():
    """The process's peak resident set since it started or since the last reset (Linux)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # reported in kB


@torch.no_grad()
def cpu_peak_child(impl, T):
    """Run in a fresh process: print how far one call raises the peak RSS, in bytes."""
    q, k, v = make_qkv(T, torch.device("cpu"))
    IMPLS[impl](q[..., :8, :], k[..., :8, :], v[..., :8, :])  # load kernels, tiny sizes
    # Importing torch leaves a peak above what stays resident; writing 5 to clear_refs resets
    # the peak to the current RSS. (ru_maxrss would not do: it cannot be reset, and a
    # subprocess even inherits its parent's value across fork and exec.)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = vm_hwm_bytes()
    IMPLS[impl](q, k, v)
    print(vm_hwm_bytes() - before)


def cpu_peak_bytes(impl, T):
    cmd = [sys.executable, __file__, "--child", impl, str(T)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--child", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return cpu_peak_child(args.child[0], int(args.child[1]))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        measure = "torch.cuda.max_memory_allocated above the inputs, bytes"
    else:
        measure = "growth of peak RSS (Linux VmHWM) in a fresh process, bytes (page-granular)"
    res = {k: [] for k in ["teaching_ms", "fused_ms", "teaching_peak_bytes", "fused_peak_bytes"]}
    res.update(weights_bytes=[], max_abs_diff=[])
    print(f"device {device}, B={B} nh={NH} hs={HS} float32 causal; memory: {measure}")
    print(f"{'T':>6} {'teach ms':>10} {'fused ms':>10} {'teach MB':>10} {'fused MB':>10} "
          f"{'T×T MB':>8}")  # fmt: skip
    for T in SEQ_LENS:
        q, k, v = make_qkv(T, device)
        with torch.no_grad():
            diff = (teaching(q, k, v) - fused(q, k, v)).abs().max().item()
        res["max_abs_diff"].append(diff)
        res["weights_bytes"].append(B * NH * T * T * 4)  # the (B, nh, T, T) float32 weights
        for name, fn in IMPLS.items():
            res[f"{name}_ms"].append(round(median_ms(fn, q, k, v, args.repeats), 3))
            peak = (
                cuda_peak_bytes(fn, q, k, v) if device.type == "cuda" else cpu_peak_bytes(name, T)
            )
            res[f"{name}_peak_bytes"].append(peak)
        keys = ["teaching_peak_bytes", "fused_peak_bytes", "weights_bytes"]
        mb = [res[key][-1] / 2**20 for key in keys]
        print(f"{T:>6} {res['teaching_ms'][-1]:>10.2f} {res['fused_ms'][-1]:>10.2f} "
              f"{mb[0]:>10.1f} {mb[1]:>10.1f} {mb[2]:>8.1f}")  # fmt: skip
    print(f"largest |teaching - fused| over all T: {max(res['max_abs_diff']):.2e}")
    print(
        json.dumps({"device": str(device), "seq_lens": SEQ_LENS, **res, "memory_measure": measure})
    )


if __name__ == "__main__":
    main()
