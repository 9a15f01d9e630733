"""Quantization: storing weights as small integers, and measuring what that saves (Ch. 7).

Each piece is small enough to check by hand:

- `quantize`, `dequantize`: symmetric integer quantization of a weight matrix with one
  scale per output channel (a row), or per group of ``group_size`` weights within a row:
  ``w ≈ scale * q`` with q an integer in [-qmax, qmax], qmax = 2**(bits - 1) - 1.
- `Int8Linear`, `quantize_linears`: weight-only int8 layers. The weights are stored as int8
  plus a float scale per row (a quarter of float32's memory) and de-quantized in ``forward``;
  activations stay in floating point. `dynamic_int8` is PyTorch's int8 path for comparison:
  int8 matmuls, with the activations quantized too.
- `quantize_minmax`: asymmetric quantization, ``w ≈ low + scale * q`` with q in
  [0, 2**bits - 1] per group: GGUF's Q4_1 format at 4 bits in groups of 32.
- `PackedLinear`: a layer that computes from packed low-bit weights (4-bit groups or 8-bit
  rows) with PyTorch's weight-only CPU kernels, in bfloat16: fewer bytes read per token,
  so faster where reading the weights is the bottleneck (`lmlib.speculative` uses it).
- `model_bytes`: the memory the weights take (parameters and buffers; a tied weight once);
  `serialized_bytes`: the size of a saved checkpoint, which also sees packed int8 weights;
  `time_forward`: the median wall time of a forward pass.

What quantization costs in quality is measured with `lmlib.perplexity`.

Shape legend: out output channels (rows of a weight), in input channels, G groups per row.

>>> w = torch.tensor([[0.5, -1.0, 0.25], [2.0, 0.0, -2.0]])
>>> q, scale = quantize(w)  # row maxima 1.0 and 2.0 map to 127
>>> q
tensor([[  64, -127,   32],
        [ 127,    0, -127]], dtype=torch.int8)
>>> (dequantize(q, scale) - w).abs().max() <= scale.max() / 2  # at most half a step
tensor(True)
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.finetune import name_ends_with, replace_modules
from lmlib.runtime import check_int


def quantize(w: torch.Tensor, bits: int = 8, group_size: int | None = None):
    """Symmetric quantization of a 2-D weight (out, in): returns q (out, in) int8, scale.

    Each row (an output channel) is cut into groups of ``group_size`` weights (None: the
    whole row is one group). A group's scale maps its largest absolute weight to
    qmax = 2**(bits - 1) - 1 and q = round(w / scale), so the rounding error of a weight is
    at most scale / 2. ``scale`` has shape (out, G) with G = in / group_size. Smaller groups
    cost more scales but follow the weights more closely: one outlier then spoils the
    precision of its own group only. Integers are kept in int8 even for bits < 8 (a real
    4-bit format packs two per byte).

    >>> q, scale = quantize(torch.tensor([[0.7, -0.3, 0.14, 0.0]]), bits=4, group_size=2)
    >>> q, scale  # qmax = 7: group [0.7, -0.3] has scale 0.7 / 7, group [0.14, 0] 0.14 / 7
    (tensor([[ 7, -3,  7,  0]], dtype=torch.int8), tensor([[0.1000, 0.0200]]))
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"w must be a floating-point tensor, got {type(w).__name__}")
    if w.dim() != 2:
        raise ValueError(f"w must be 2-D (out, in), got shape {tuple(w.shape)}")
    check_int(bits, "bits", 2, 8)
    out, n_in = w.shape
    g = n_in if group_size is None else check_int(group_size, "group_size", low=1)
    if g < 1 or n_in % g:
        raise ValueError(f"group_size must divide the row length {n_in}, got {group_size}")
    qmax = 2 ** (bits - 1) - 1
    groups = w.float().reshape(out, n_in // g, g)  # (out, G, g)
    scale = groups.abs().amax(dim=-1) / qmax  # (out, G)
    # An all-zero group has scale 0; any scale then gives q = 0, so use 1 to avoid 0 / 0.
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (groups / safe[..., None]).round().clamp(-qmax, qmax)  # (out, G, g)
    return q.to(torch.int8).reshape(out, n_in), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """The approximate weight ``scale * q``, (out, in), from `quantize`'s output."""
    if not (isinstance(q, torch.Tensor) and isinstance(scale, torch.Tensor)):
        raise TypeError(f"q and scale must be tensors (quantize's output), got "
                        f"{type(q).__name__} and {type(scale).__name__}")  # fmt: skip
    if q.dim() != 2 or scale.dim() != 2 or scale.shape[0] != q.shape[0]:
        raise ValueError(f"need q (out, in) and scale (out, G), got {tuple(q.shape)} "
                         f"and {tuple(scale.shape)}")  # fmt: skip
    out, n_in = q.shape
    G = scale.shape[1]
    if n_in % G:
        raise ValueError(f"{G} groups do not divide a row of {n_in} weights")
    groups = q.reshape(out, G, n_in // G).to(scale.dtype)  # (out, G, g)
    return (groups * scale[..., None]).reshape(out, n_in).to(dtype)


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 with one float32 scale per row.

    Only the storage is quantized: ``forward`` de-quantizes the weight and runs an ordinary
    floating-point matmul, so it saves memory, not arithmetic. (Fast int8 kernels, such as
    ``torch.ao.quantization.quantize_dynamic``'s, also quantize the activations.)
    """

    def __init__(self, linear: nn.Linear, bits: int = 8, group_size: int | None = None):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits = bits  # the integers' range; each still takes one byte here
        q, scale = quantize(linear.weight.detach(), bits, group_size)
        self.register_buffer("q", q)  # (out, in) int8
        self.register_buffer("scale", scale)  # (out, G) float32
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize(self.q, self.scale, dtype=x.dtype)  # (out, in), rebuilt every call
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.bits}-bit integers"


def quantize_minmax(w: torch.Tensor, bits: int = 4, group_size: int = 32):
    """Asymmetric quantization of a 2-D weight (out, in): returns q (out, in) uint8, scale,
    low, each (out, G), with ``w ≈ low + scale * q`` and q in [0, 2**bits - 1].

    A group's smallest weight maps to 0 and its largest to 2**bits - 1, so every level
    falls inside the group's range; symmetric `quantize` spans [-max abs(w), max abs(w)] and
    wastes levels when a group is not centred on 0 (at 4 bits it also has 15 levels, not
    16). With bits=4 and group_size=32 this is GGUF's Q4_1: SmolLM2's file stores most of
    its weights so, and quantizing those weights again recovers them.

    >>> q, scale, low = quantize_minmax(torch.tensor([[1.0, 1.3, 2.5, 1.6]]), 2, 4)
    >>> q, scale, low  # low 1.0, scale (2.5 - 1.0) / 3: q = round((w - 1) / 0.5)
    (tensor([[0, 1, 3, 1]], dtype=torch.uint8), tensor([[0.5000]]), tensor([[1.]]))
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.dim() != 2:
        raise TypeError(f"w must be a 2-D floating-point tensor (out, in), got "
                        f"{getattr(w, 'shape', type(w).__name__)}")  # fmt: skip
    check_int(bits, "bits", 1, 8)
    check_int(group_size, "group_size", low=1)
    out, n_in = w.shape
    if n_in % group_size:
        raise ValueError(f"group_size must divide the row length {n_in}, got {group_size}")
    levels = 2**bits - 1
    groups = w.float().reshape(out, n_in // group_size, group_size)  # (out, G, g)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (out, G)
    scale = (high - low) / levels
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant group: q = 0
    q = ((groups - low[..., None]) / safe[..., None]).round().clamp(0, levels)
    return q.to(torch.uint8).reshape(out, n_in), scale, low


def _packed_kernels_fit(w: torch.Tensor, bits: int, group_size: int) -> bool:
    """Whether PyTorch's weight-only CPU kernels take this weight (out, in); they are private
    ops (present in torch 2.13), looked up by name so that another version falls back.

    They need out % 16 == 0 and in % 32 == 0, and 4-bit groups of 32, 64, 128 or 256
    weights; measured with torch 2.13, the 8-bit kernel returned garbage for in = 40, or
    crashed, so the shapes are checked here rather than left to the kernel.
    """
    names = ("_convert_weight_to_int4pack_for_cpu", "_weight_int4pack_mm_for_cpu",
             "_weight_int8pack_mm")  # fmt: skip
    out, n_in = w.shape
    return (
        w.device.type == "cpu"
        and all(hasattr(torch, name) for name in names)
        and out % 16 == 0
        and n_in % 32 == 0
        and (bits == 8 or group_size in (32, 64, 128, 256))
    )


class PackedLinear(nn.Module):
    """A linear layer computed from low-bit weights, in bfloat16: a fast approximation.

    - ``bits=4``: `quantize_minmax` in groups of ``group_size``, two weights per byte;
      on a CPU, PyTorch's ``_weight_int4pack_mm_for_cpu`` multiplies by them directly.
    - ``bits=8``: `quantize` with one scale per row; on a CPU, ``_weight_int8pack_mm``.

    Elsewhere (a GPU, an older PyTorch, a shape the kernels do not take) the weight is
    stored de-quantized in bfloat16 and ``F.linear`` runs on it: nearly the same numbers
    (the kernels keep the scales in bfloat16), without the saving. Either way the input is
    rounded to bfloat16 and the output comes back in the input's dtype. At batch 1 a
    decoder's step reads every weight once for one token, so reading 4-bit instead of
    32-bit weights makes the matmuls several times faster (Chapter 7 measures it).

    >>> layer = PackedLinear(nn.Linear(64, 16), bits=4, group_size=32)
    >>> layer
    PackedLinear(64 -> 16, 4-bit, packed kernel)
    >>> tuple(layer(torch.randn(2, 5, 64)).shape)
    (2, 5, 16)
    """

    def __init__(self, linear: nn.Linear, bits: int = 4, group_size: int = 32):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 (groups) or 8 (rows), got {bits!r}")
        w = linear.weight.detach().contiguous()  # the packing kernels read rows
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits, self.group_size = bits, group_size
        self.packed = _packed_kernels_fit(w, bits, group_size)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)
        if bits == 4:
            q, scale, low = quantize_minmax(w, 4, group_size)
            if self.packed:  # the kernel's groups hold w = (q - 8) * scale + zero
                weight = torch._convert_weight_to_int4pack_for_cpu(q.int(), 1)
                zero = low + 8 * scale
                table = torch.stack([scale, zero], dim=-1).transpose(0, 1)  # (G, out, 2)
                self.register_buffer("scales", table.contiguous().bfloat16())
            else:
                g = group_size
                weight = low.repeat_interleave(g, 1) + scale.repeat_interleave(g, 1) * q
        else:
            q, scale = quantize(w, 8)  # scale (out, 1)
            weight = q if self.packed else dequantize(q, scale)
            if self.packed:
                self.register_buffer("scales", scale[:, 0].bfloat16())  # (out,)
        self.register_buffer("weight", weight if self.packed else weight.bfloat16())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(-1) != self.in_features:
            raise ValueError(f"input must end in {self.in_features} features, got "
                             f"{tuple(x.shape)}")  # fmt: skip
        if self.packed and x.device.type != "cpu":
            raise ValueError(f"this layer holds packed CPU weights, got input on {x.device}: "
                             f"build it from a layer on that device instead")  # fmt: skip
        h = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (N, in)
        if not self.packed:
            y = F.linear(h, self.weight)
        elif self.bits == 4:
            y = torch._weight_int4pack_mm_for_cpu(h, self.weight, self.group_size, self.scales)
        else:
            y = torch._weight_int8pack_mm(h, self.weight, self.scales)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)  # (..., out)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        how = "packed kernel" if self.packed else "de-quantized bfloat16"
        return f"{self.in_features} -> {self.out_features}, {self.bits}-bit, {how}"


def quantize_linears(model: nn.Module, skip: tuple[str, ...] = ("lm_head",), bits: int = 8,
                     group_size: int | None = None) -> int:  # fmt: skip
    """Replace every ``nn.Linear`` of ``model`` by an `Int8Linear`, in place; returns how many.

    A layer whose dotted name ends with a name in ``skip`` stays as it is. The default keeps
    ``lm_head``: in models that tie it to the token embedding (SmolLM2, GPT-2) quantizing it
    would untie it and store the matrix twice.
    """

    skip = (skip,) if isinstance(skip, str) else skip  # one name, not its letters

    def match(name, module):
        return isinstance(module, nn.Linear) and not name_ends_with(name, skip)

    return replace_modules(model, match, lambda linear: Int8Linear(linear, bits, group_size))


def dynamic_int8(model: nn.Module, skip: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (CPU only).

    ``torch.ao.quantization.quantize_dynamic`` with per-channel int8 weights: at every call
    the input is quantized too, with one scale for the whole tensor chosen from its range,
    and the matmul runs on integers. Layers named in ``skip`` stay in float (see
    `quantize_linears`). PyTorch marks this API deprecated in favour of the ``torchao``
    package; its warnings are silenced here because the function still works.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    skip = (skip,) if isinstance(skip, str) else skip  # one name, not its letters

    spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not name_ends_with(name, skip)}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each tensor counted once.

    A tied weight (the same tensor in two places) counts once. For a SmolLM2 in float32 this
    is 134,515,008 parameters * 4 bytes (plus the small RoPE buffers).

    >>> layer = nn.Linear(4, 3)  # 12 + 3 float32 numbers
    >>> model_bytes(layer), model_bytes(Int8Linear(layer))  # 12 int8 + 3 scales + 3 biases
    (60, 36)
    """
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a checkpoint of the model takes.

    Unlike `model_bytes` this also counts weights that live outside parameters and buffers,
    such as the packed int8 matrices of ``torch.ao.quantization.quantize_dynamic``; it adds a
    little for names and metadata, and stores a tied tensor once.
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


@torch.no_grad()
def time_forward(model, idx: torch.Tensor, repeats: int = 3) -> float:
    """Median seconds of ``model(idx)`` over ``repeats`` calls, after one untimed warm-up call
    (the first call allocates memory and picks kernels)."""
    check_int(repeats, "repeats", low=1)  # the median of no runs is undefined
    sync = torch.cuda.synchronize if idx.is_cuda else (lambda: None)  # GPUs run ahead
    model(idx)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        model(idx)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
