"""Attention and the other pieces of a Transformer block (Chapters 3-4).

Read top to bottom, each piece adds one idea:

- `softmax`, `causal_mask`, `scaled_dot_product_attention`: attention written out by hand,
  softmax(q kᵀ / √hs) v, with a boolean mask that says which positions a query may see.
- `MultiHeadAttention`: three learned projections make queries, keys and values; the
  channels are split into heads that attend independently, then mixed by `out_proj`.
- `attend`: what `lmlib.model` calls, the same numbers through PyTorch's fused kernel, with
  grouped-query attention (several query heads share one key/value head).
- `sinusoidal_positions`: the fixed position signal that the original Transformer adds to
  the token embeddings.
- `rope_cache`, `apply_rope`: rotary embeddings, which rotate q and k instead, so that
  q·k depends only on how far apart two tokens are (Llama's "rotate_half" layout).
- `layer_norm`, `LayerNorm` (GPT-2) and `RMSNorm` (Llama): normalise each token's channels.
- `GELUMLP` (GPT-2) and `SwiGLU` (Llama): the position-wise feed-forward network.

Shape legend, used in every shape comment:
B batch, T time (query positions), S key positions (S = T in self-attention),
C channels (= d_model), nh heads, nkv key/value heads, hs head size (C = nh * hs).

The explicit attention here is for reading; `torch.nn.functional.scaled_dot_product_attention`
computes the same numbers without materialising the (T, S) weights, and the tests check that
the two agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.runtime import check_int, check_number


def causal_mask(T: int, device=None) -> torch.Tensor:
    """Bool (T, T) mask, True where query t may attend to key s, i.e. s <= t.

    Implements equation :eq:`eq-causal-mask` of Chapter 4 (:ref:`its tests <test-eq-causal-mask>`).

    >>> causal_mask(3)
    tensor([[ True, False, False],
            [ True,  True, False],
            [ True,  True,  True]])
    """
    check_int(T, "T", low=0)
    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum(exp(x)) along `dim`, computed so that large inputs do not overflow.

    Implements equation :eq:`eq-softmax` of Chapter 4 (:ref:`its tests <test-eq-softmax>`).

    Subtracting the max changes nothing mathematically (the factor exp(-max) cancels) but
    keeps every exponent <= 0, so exp never exceeds 1. exp(1000.) alone is inf in float32.

    >>> softmax(torch.tensor([1000.0, 1001.0]))  # same as softmax([0, 1])
    tensor([0.2689, 0.7311])
    """
    x = x - x.amax(dim=dim, keepdim=True)
    # A row that is all -inf (every key masked) has no max to subtract and gives nan; a mask
    # must leave each query at least one key, as a causal mask always does.
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(q, k, v, mask=None, return_weights=False):
    """softmax(q kᵀ / √hs) v, written out step by step.

    Implements equation :eq:`eq-masked-attention` of Chapter 3
    (:ref:`its tests <test-eq-masked-attention>`); and equation :eq:`eq-attention` of Chapter 4
    (:ref:`its tests <test-eq-attention>`).

    q is (B, nh, T, hs); k and v are (B, nh, S, hs). `mask` is a bool tensor broadcastable
    to (B, nh, T, S), True where attention is allowed. Returns out (B, nh, T, hs), and the
    weights (B, nh, T, S) too when `return_weights` is True.

    Worked example: with q = k = 0 every score is 0, so each query averages the values it
    may see. Causally, position 0 sees v[0] = 1 and position 1 sees (1 + 3) / 2 = 2.

    >>> q = k = torch.zeros(1, 1, 2, 1)
    >>> v = torch.tensor([1.0, 3.0]).view(1, 1, 2, 1)
    >>> out, w = scaled_dot_product_attention(q, k, v, causal_mask(2), return_weights=True)
    >>> out.view(-1), w.view(2, 2)
    (tensor([1., 2.]), tensor([[1.0000, 0.0000],
            [0.5000, 0.5000]]))
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "q, k, v must have rank 4, (B, nh, T, hs); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.is_floating_point() and k.is_floating_point() and v.is_floating_point()):
        raise TypeError(f"q, k, v must be floating point; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.size(-1) != k.size(-1):
        raise ValueError(f"head sizes differ: q has hs={q.size(-1)}, k has hs={k.size(-1)}")
    if k.size(-2) != v.size(-2):
        raise ValueError(f"k and v need the same length S; got {k.size(-2)} and {v.size(-2)}")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool):
        raise TypeError(f"mask must be a bool tensor (True = may attend), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")  # fmt: skip
    hs = q.size(-1)
    # Dividing by √hs keeps the scores' variance near 1 for unit-variance q and k, so the
    # softmax does not saturate to one-hot as hs grows.
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, hs) @ (B, nh, hs, S)
    if mask is not None:
        # exp(-inf) = 0: a disallowed key gets exactly zero weight.
        att = att.masked_fill(~mask, float("-inf"))  # (B, nh, T, S)
    weights = softmax(att, dim=-1)  # (B, nh, T, S), each row sums to 1
    out = weights @ v  # (B, nh, T, S) @ (B, nh, S, hs) -> (B, nh, T, hs)
    return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """Self-attention with `n_heads` heads over x (B, T, C), C = d_model.

    Implements equation :eq:`eq-qkv` of Chapter 4 (:ref:`its tests <test-eq-qkv>`); and equation
    :eq:`eq-multihead` of Chapter 4 (:ref:`its tests <test-eq-multihead>`).

    Q, K and V come from three different learned projections: a token's query (what it looks
    for), key (what it offers) and value (what it passes on) need not be the same vector.

    >>> mha = MultiHeadAttention(d_model=8, n_heads=2, causal=True)
    >>> out, w = mha(torch.randn(1, 5, 8), return_weights=True)
    >>> tuple(out.shape), tuple(w.shape)
    ((1, 5, 8), (1, 2, 5, 5))
    """

    def __init__(self, d_model, n_heads, bias=True, causal=False):
        super().__init__()
        check_int(d_model, "d_model", low=1)
        check_int(n_heads, "n_heads", low=1)
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by n_heads ({n_heads}): "
                "each head gets d_model // n_heads channels"
            )
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, mask=None, return_weights=False):
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        # Split channels into heads, then move heads next to batch so that each head is an
        # independent attention problem.
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if self.causal:
            causal = causal_mask(T, device=x.device)  # (T, T)
            mask = causal if mask is None else mask & causal
        out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
        # Undo the split: heads side by side again; contiguous because transpose only
        # changed strides and view needs a plain layout.
        out = out.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        out = self.out_proj(out)  # (B, T, C)
        return (out, weights) if return_weights else out


def attend(q, k, v, mask=None, return_weights: bool = False):
    """Attention of q (B, nh, T, hs) over k, v (B, nkv, S, hs); returns (out, weights).

    Each k/v head serves nh // nkv consecutive query heads (GQA; nkv = nh for GPT-2).
    ``mask`` is bool, broadcastable to (B, 1, T, S), True = may attend; None means causal
    with S = T, or a single new token (T = 1) that sees every cached key.

    With ``return_weights`` this is the teaching `scaled_dot_product_attention`, which also
    returns the (B, nh, T, S) weights; otherwise PyTorch's fused kernel computes the same
    output (the tests check 1e-5) without keeping them, and weights is None.

    >>> q, k, v = torch.randn(1, 4, 3, 2), torch.randn(1, 2, 3, 2), torch.randn(1, 2, 3, 2)
    >>> fast, _ = attend(q, k, v)  # 4 query heads share 2 k/v heads
    >>> slow, w = attend(q, k, v, return_weights=True)
    >>> torch.allclose(fast, slow, atol=1e-6), tuple(w.shape)  # (B, nh, T, S)
    (True, (1, 4, 3, 3))
    """
    B, nh, T, hs = q.shape
    if nh % k.size(1):
        raise ValueError(f"the {nh} query heads must divide among the {k.size(1)} k/v heads")
    nkv, g = k.size(1), nh // k.size(1)  # g query heads per k/v head
    if mask is None and T > 1:
        mask = causal_mask(T, device=q.device)  # (T, T)
    if return_weights:
        k = k.repeat_interleave(g, dim=1)  # (B, nkv, S, hs) -> (B, nh, S, hs)
        v = v.repeat_interleave(g, dim=1)  # (B, nkv, S, hs) -> (B, nh, S, hs)
        return scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    # Rather than copying the cache g times, fold each k/v head's g query heads into the
    # time axis: query head j * g + i, time t becomes row i * T + t of k/v head j.
    q = q.reshape(B, nkv, g * T, hs)  # (B, nh, T, hs) -> (B, nkv, g*T, hs)
    if mask is not None:
        mask = torch.cat([mask] * g, dim=-2)  # (..., T, S) -> (..., g*T, S), one per group
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nkv, g*T, hs)
    return out.view(B, nh, T, hs), None


def sinusoidal_positions(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """Vaswani et al.'s (T, d_model) table: PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos.

    Implements equation :eq:`eq-sinusoidal` of Chapter 3 (:ref:`its tests <test-eq-sinusoidal>`).

    Each pair of channels is a clock of a different speed, from one turn every 2π positions
    down to one every 2π·base. Position 0 is [0, 1, 0, 1, ...]; with d = 4 the second clock
    runs at 1 / 10000^(2/4) = 1/100 radian per position.

    >>> sinusoidal_positions(2, 4)
    tensor([[0.0000, 1.0000, 0.0000, 1.0000],
            [0.8415, 0.5403, 0.0100, 0.9999]])
    """
    check_int(T, "T", low=0)
    check_int(d_model, "d_model", low=1)
    check_number(base, "base", low=0, open_low=True)
    pos = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (d/2,)
    angles = pos * inv_freq  # (T, 1) * (d/2,) -> (T, d/2)
    pe = torch.zeros(T, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # odd d_model: one fewer cos column
    return pe


def rope_cache(head_dim: int, T: int, base: float = 10000.0, device=None, dtype=torch.float32):
    """cos and sin tables, each (T, head_dim), for rotary embeddings at positions 0..T-1.

    Implements equation :eq:`eq-rope` of Chapter 3 (:ref:`its tests <test-eq-rope>`).

    Channel j and channel j + head_dim/2 form a pair rotated by angle p * base^(-2j/head_dim)
    (Hugging Face Llama's layout: halves, not interleaved neighbours), so both halves of the
    table repeat the same angles.

    >>> cos, sin = rope_cache(head_dim=4, T=2)
    >>> sin  # angles at position 1: [1, 1/100, 1, 1/100]
    tensor([[0.0000, 0.0000, 0.0000, 0.0000],
            [0.8415, 0.0100, 0.8415, 0.0100]])
    """
    check_int(head_dim, "head_dim", low=2)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (channels turn in pairs), got {head_dim}")
    check_int(T, "T", low=0)
    check_number(base, "base", low=0, open_low=True)
    # Angles in float32 (as Llama does) even for bf16 tables: p * inv_freq grows large and
    # bf16 would lose the angle; float64 tables are computed in float64.
    work = torch.promote_types(dtype, torch.float32)
    inv_freq = 1.0 / base ** (
        torch.arange(0, head_dim, 2, device=device, dtype=work) / head_dim
    )  # (hs/2,)
    pos = torch.arange(T, device=device, dtype=work)
    angles = torch.outer(pos, inv_freq)  # (T, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hs): the same angle for both halves
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] on the last dim: a 90° turn of every (x1[j], x2[j]) pair."""
    x1, x2 = x.chunk(2, dim=-1)  # (..., hs/2) each
    return torch.cat((-x2, x1), dim=-1)  # (..., hs)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hs) by the angles in cos, sin (T, hs); slice them for an offset.

    Implements equation :eq:`eq-rope` of Chapter 3 (:ref:`its tests <test-eq-rope>`).

    A 2-D rotation by θ is (a, b) -> (a cosθ - b sinθ, b cosθ + a sinθ). Rotating q by mθ
    and k by nθ leaves q·k depending only on (m - n)θ: relative position for free.

    >>> cos, sin = rope_cache(head_dim=2, T=2)
    >>> x = torch.tensor([1.0, 0.0]).expand(1, 1, 2, 2)  # the same vector at positions 0, 1
    >>> apply_rope(x, cos, sin)  # position 1 is turned by 1 radian
    tensor([[[[1.0000, 0.0000],
              [0.5403, 0.8415]]]])
    """
    return x * cos + _rotate_half(x) * sin  # (B, nh, T, hs) * (T, hs) broadcasts over B, nh


def layer_norm(x, weight, bias=None, eps: float = 1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim (GPT-2's norm), op by op.

    Implements equation :eq:`eq-layernorm` of Chapter 4 (:ref:`its tests <test-eq-layernorm>`).

    The variance is the biased one (divide by C, not C - 1), as in nn.LayerNorm. `LayerNorm`
    computes the same numbers with PyTorch's fused kernel; this is the formula to read.

    >>> layer_norm(torch.tensor([[1.0, 3.0]]), torch.ones(2))  # mean 2, var 1
    tensor([[-1.0000,  1.0000]])
    """
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1)
    y = (x - mean) / torch.sqrt(var + eps) * weight
    return y + bias if bias is not None else y


class LayerNorm(nn.Module):
    """`layer_norm` with a learned weight (and bias) of size ``dim``.

    Implements equation :eq:`eq-layernorm` of Chapter 4 (:ref:`its tests <test-eq-layernorm>`).

    It calls PyTorch's fused kernel, ``F.layer_norm``: the same numbers as the op-by-op
    `layer_norm` (the tests check 1e-5), in one pass over the data. Its backward pass needs
    only x and two numbers per row (the mean and 1/std); op by op, every intermediate
    (x - mean, its square, the quotient, ...) is kept for it. With this kernel and
    `GELUMLP`'s fused GELU, the training cells of Chapter 3 and Section 5.1 took 14-21% less
    time on a 2-core CPU than with the op-by-op functions.

    >>> LayerNorm(2)(torch.tensor([[1.0, 3.0]]))  # mean 2, var 1
    tensor([[-1.0000,  1.0000]], grad_fn=<NativeLayerNormBackward0>)
    """

    def __init__(self, dim, eps=1e-5, bias=True):
        super().__init__()
        check_int(dim, "dim", low=1)
        self.eps = check_number(eps, "eps", low=0)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) * weight (Llama's norm): LayerNorm without the mean or bias.

    Implements equation :eq:`eq-rmsnorm` of Chapter 4 (:ref:`its tests <test-eq-rmsnorm>`).

    Computed in float32 and cast back, as Hugging Face's LlamaRMSNorm does, because squaring
    bf16/fp16 activations loses too much precision.

    >>> RMSNorm(2, eps=0.0)(torch.tensor([[3.0, 4.0]]))  # rms = sqrt((9 + 16) / 2)
    tensor([[0.8485, 1.1314]], grad_fn=<MulBackward0>)
    """

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        check_int(dim, "dim", low=1)
        self.eps = check_number(eps, "eps", low=0)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation, GPT-2's "gelu_new": 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))).

    Implements equation :eq:`eq-ffn` of Chapter 4 (:ref:`its tests <test-eq-ffn>`).

    >>> gelu_tanh(torch.tensor([0.0, 10.0]))  # ~0 for x << 0, ~x for x >> 0
    tensor([ 0., 10.])
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class GELUMLP(nn.Module):
    """GPT-2's feed-forward network: c_proj(gelu(c_fc(x))), (B, T, C) -> (B, T, C).

    Implements equation :eq:`eq-ffn` of Chapter 4 (:ref:`its tests <test-eq-ffn>`).

    The activation is `gelu_tanh` computed by PyTorch's fused kernel,
    ``F.gelu(approximate="tanh")``, which keeps only its input for the backward pass (the
    tests check that both agree).

    >>> tuple(GELUMLP(d_model=8, hidden=32)(torch.randn(2, 3, 8)).shape)
    (2, 3, 8)
    """

    def __init__(self, d_model, hidden, bias=True):
        super().__init__()
        check_int(d_model, "d_model", low=1)
        check_int(hidden, "hidden", low=1)
        self.c_fc = nn.Linear(d_model, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x):
        h = F.gelu(self.c_fc(x), approximate="tanh")  # (B, T, hidden): `gelu_tanh`, fused
        return self.c_proj(h)  # (B, T, C)


class SwiGLU(nn.Module):
    """Llama's feed-forward network: down(silu(gate(x)) * up(x)), (B, T, C) -> (B, T, C).

    Implements equation :eq:`eq-swiglu` of Chapter 4 (:ref:`its tests <test-eq-swiglu>`).

    What it adds over GELUMLP: a second projection `up` that is multiplied by the activated
    `gate`, so the network learns which hidden units to let through for each token. The
    parameter names match Hugging Face's LlamaMLP, so its state dict loads directly.

    >>> tuple(SwiGLU(d_model=8, hidden=16)(torch.randn(2, 3, 8)).shape)
    (2, 3, 8)
    """

    def __init__(self, d_model, hidden):
        super().__init__()
        check_int(d_model, "d_model", low=1)
        check_int(hidden, "hidden", low=1)
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x):
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (B, T, hidden)
        return self.down_proj(h)  # (B, T, C)
