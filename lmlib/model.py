"""Two decoder-only language models, GPT-2 and Llama, that load Hugging Face weights.

Both are a stack of pre-norm blocks, ``x = x + attn(norm(x)); x = x + mlp(norm(x))``, between
a token embedding and a linear map back to the vocabulary. The Llama differs in four ideas,
each one line or one module: RMSNorm instead of LayerNorm, rotary position embeddings (RoPE)
on q and k instead of a learned position table, grouped-query attention (fewer k/v heads than
q heads) and a SwiGLU MLP. The building blocks live in `lmlib.attention`; this module only
wires them together, so there is one source of truth for attention.

Shape legend: B batch, T time (sequence length), C channels (``d_model``), nh heads,
nkv kv-heads, hs head size (C // nh), V vocabulary size.

For generation (`lmlib.generate`) both models take two optional keyword arguments: a
`KVCache`, which keeps every layer's keys and values so that each new token costs one
position of work instead of the whole prefix, and an ``attention_mask`` (B, T_total) with
0 for left padding, so that prompts of different lengths run as one batch. Attention itself
goes through `attend`: PyTorch's fused kernel by default, the teaching version from
`lmlib.attention` when the weights are asked for.

Module names follow Hugging Face's GPT-2 exactly (nanoGPT does the same), so its state dict
loads key for key; the Llama uses shorter names and `_LLAMA_RENAMES` maps them.

>>> model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, d_model=4))
>>> out = model(torch.tensor([[1, 2, 3]]))
>>> tuple(out.logits.shape)
(1, 3, 11)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.attention import (
    GELUMLP,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    apply_rope,
    causal_mask,
    rope_cache,
    scaled_dot_product_attention,
)


@dataclass
class LMOutput:
    """What both models' ``forward`` returns (fields, not a tuple: no positions to recall)."""

    logits: torch.Tensor  # (B, T, V) unnormalized next-token scores
    loss: torch.Tensor | None = None  # mean cross-entropy, only when targets are given
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, nh, T, S), if asked
    cache: KVCache | None = None  # the cache passed in, now holding these T positions too


# --------------------------------------------------------------------------------------------
# KV cache, masks and attention, shared by both models


class LayerKV:
    """One layer's keys and values, (B, nkv, max_len, hs) each, filled up to ``length``.

    Preallocated: appending writes into place, where ``torch.cat`` would copy the whole
    cache at every step.

    >>> kv = LayerKV(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))
    >>> k, v = kv.update(torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))  # a 3-token prompt
    >>> k, v = kv.update(2 * torch.ones(1, 1, 1, 2), 2 * torch.ones(1, 1, 1, 2))  # one more
    >>> kv.length, k[0, 0, :, 0].tolist()
    (4, [1.0, 1.0, 1.0, 2.0])
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v  # (B, nkv, max_len, hs), preallocated
        self.length = 0  # positions filled so far

    def update(self, k: torch.Tensor, v: torch.Tensor):
        """Append k, v (B, nkv, T, hs); return every key and value so far, (B, nkv, S, hs)."""
        start, end = self.length, self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache holds {self.k.size(2)} positions; {end} do not fit")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # views, not copies


class KVCache:
    """Every layer's keys and values for the tokens seen so far: ``cache.layers[i]``.

    Keys are cached after RoPE: a key's rotation depends only on its own position, so it
    never changes once computed. `kv_cache_bytes` gives the memory this takes.

    >>> model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, d_model=4))
    >>> cache = KVCache.for_model(model, batch_size=1, max_len=8)
    >>> _ = model(torch.tensor([[1, 2, 3]]), cache=cache)  # the prompt fills 3 positions
    >>> _ = model(torch.tensor([[4]]), cache=cache)  # then one token at a time
    >>> cache.length, tuple(cache.layers[0].k.shape)  # (B, nkv, max_len, hs)
    (4, (1, 2, 8, 2))
    """

    def __init__(self, n_layer, batch_size, n_kv_head, max_len, head_size, device=None,
                 dtype=torch.float32):  # fmt: skip
        shape = (batch_size, n_kv_head, max_len, head_size)

        def zeros():
            return torch.zeros(shape, device=device, dtype=dtype)

        self.layers = [LayerKV(zeros(), zeros()) for _ in range(n_layer)]

    @classmethod
    def for_model(cls, model: nn.Module, batch_size: int, max_len: int) -> KVCache:
        """An empty cache for ``model`` (GPT or Llama), on its device and in its dtype."""
        n_layer, nkv, hs = _kv_dims(model.config)
        p = next(model.parameters())
        return cls(n_layer, batch_size, nkv, max_len, hs, device=p.device, dtype=p.dtype)

    @property
    def length(self) -> int:
        """Positions cached so far, the same in every layer (0 for a fresh cache)."""
        return self.layers[0].length

    @property
    def batch_size(self) -> int:
        return self.layers[0].k.size(0)

    @property
    def max_len(self) -> int:
        return self.layers[0].k.size(2)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (new row i = old row index[i]); beam search uses this."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[index], layer.v[index]


def _kv_dims(config) -> tuple[int, int, int]:
    """(n_layer, kv heads, head size): GPT-2 has a k/v head per query head, Llama fewer."""
    n_kv_head = getattr(config, "n_kv_head", config.n_head)
    return config.n_layer, n_kv_head, config.d_model // config.n_head


def kv_cache_bytes(config, batch_size: int, seq_len: int, dtype=torch.float32) -> int:
    """Memory of a full KV cache: 2 (k and v) * n_layer * nkv * hs * seq_len * B * bytes.

    SmolLM2-135M (30 layers, 3 kv heads of size 64) stores 2 * 30 * 3 * 64 = 11,520 numbers
    per token, 46,080 bytes in float32; 1024 tokens take 47,185,920 bytes (45 MiB).

    >>> kv_cache_bytes(LlamaConfig(), batch_size=1, seq_len=1024)
    47185920
    >>> kv_cache_bytes(LlamaConfig(), batch_size=1, seq_len=1024, dtype=torch.bfloat16)
    23592960
    """
    n_layer, n_kv_head, head_size = _kv_dims(config)
    bytes_per_element = torch.empty((), dtype=dtype).element_size()
    return 2 * n_layer * n_kv_head * head_size * seq_len * batch_size * bytes_per_element


def decoder_mask(T: int, past: int = 0, attention_mask=None, device=None) -> torch.Tensor:
    """Bool (B or 1, 1, T, past + T) mask for T new tokens after ``past`` cached ones.

    New token t sits at index past + t and may see key s if s <= past + t (causal) and s is
    not padding (``attention_mask`` (B, past + T), 0 = padding).

    >>> decoder_mask(2, past=1).int()  # one cached token, two new ones
    tensor([[[[1, 1, 0],
              [1, 1, 1]]]], dtype=torch.int32)
    >>> decoder_mask(3, attention_mask=torch.tensor([[0, 1, 1]])).int()  # left padding
    tensor([[[[1, 0, 0],
              [0, 1, 0],
              [0, 1, 1]]]], dtype=torch.int32)
    """
    query = torch.arange(past, past + T, device=device)[:, None]  # (T, 1) index of each query
    key = torch.arange(past + T, device=device)[None, :]  # (1, S)
    mask = (key <= query)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        real = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        # A padding query would see no key at all, and a softmax over only -inf is nan. Let
        # it see itself: its output is never used, and no real token attends to it.
        mask = (mask & real) | (key == query)  # (B, 1, T, S)
    return mask


def attend(q, k, v, mask=None, return_weights: bool = False):
    """Attention of q (B, nh, T, hs) over k, v (B, nkv, S, hs); returns (out, weights).

    Each k/v head serves nh // nkv consecutive query heads (GQA; nkv = nh for GPT-2).
    ``mask`` is bool, broadcastable to (B, 1, T, S), True = may attend; None means causal
    with S = T, or a single new token (T = 1) that sees every cached key.

    With ``return_weights`` this is the teaching `scaled_dot_product_attention`, which also
    returns the (B, nh, T, S) weights; otherwise PyTorch's fused kernel computes the same
    output (the tests check 1e-5) without keeping them, and weights is None.
    """
    B, nh, T, hs = q.shape
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


def _positions_and_mask(idx, block_size: int, cache, attention_mask):
    """Positions (T,) or (B, T) of the T new tokens, and their mask for `attend`."""
    B, T = idx.shape
    past = 0 if cache is None else cache.length
    if past + T > block_size:
        raise ValueError(f"{past} cached + {T} new tokens exceed the model's block_size "
                         f"{block_size}")  # fmt: skip
    if cache is not None and (cache.batch_size != B or past + T > cache.max_len):
        raise ValueError(f"the cache holds {cache.batch_size} rows of {cache.max_len} "
                         f"positions; got {B} rows reaching position {past + T}")  # fmt: skip
    if attention_mask is None:
        pos = torch.arange(past, past + T, device=idx.device)  # (T,)
        # None is plain causal (nothing cached) or one new token that may see everything.
        mask = None if past == 0 or T == 1 else decoder_mask(T, past, device=idx.device)
        return pos, mask
    if attention_mask.shape != (B, past + T):
        raise ValueError(f"attention_mask must have shape (B, cached + new) = "
                         f"{(B, past + T)}, got {tuple(attention_mask.shape)}")  # fmt: skip
    # Left padding: count positions from each row's first real token, so that a padded
    # prompt sees the same positions as the prompt alone.
    pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]  # (B, T)
    return pos, decoder_mask(T, past, attention_mask, device=idx.device)


def _check_idx(idx: torch.Tensor, block_size: int, vocab_size: int) -> torch.Tensor:
    """Fail early with a clear message; deep inside the model the same errors are cryptic."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a 2-D (B, T) tensor of token ids, got shape {shape}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"idx must hold integer token ids (torch.long), got {idx.dtype}")
    T = idx.shape[1]
    if T > block_size:
        raise ValueError(f"sequence length {T} exceeds the model's block_size {block_size}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}), got min {int(idx.min())} "
            f"and max {int(idx.max())}"
        )
    return idx.long()  # nn.Embedding and cross_entropy want int64


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy; targets are already shifted (targets[:, t] = idx[:, t + 1])."""
    if targets is None:
        return None
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:2])}, "
                         f"got {tuple(targets.shape)}")  # fmt: skip
    # -100 marks positions to skip (padding, prompts), as in PyTorch and Hugging Face.
    V = logits.size(-1)
    return F.cross_entropy(logits.view(-1, V), targets.reshape(-1).long(), ignore_index=-100)


# --------------------------------------------------------------------------------------------
# GPT-2


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence; the position table has this many rows
    vocab_size: int = 50257  # GPT-2's BPE: 50,000 merges + 256 bytes + <|endoftext|>
    n_layer: int = 12  # number of transformer blocks
    n_head: int = 12  # attention heads per block; d_model must divide evenly among them
    d_model: int = 768  # channels C of the residual stream
    dropout: float = 0.0  # on embeddings and residual branches; 0.0 for inference and tests
    bias: bool = True  # bias in Linears and LayerNorms, like GPT-2
    layer_norm_eps: float = 1e-5  # GPT-2's epsilon inside LayerNorm

    @classmethod
    def from_hf(cls, hf_config) -> GPTConfig:
        """The same architecture as a ``transformers.GPT2Config``."""
        if hf_config.activation_function != "gelu_new" or hf_config.n_inner is not None:
            raise ValueError("only GPT-2's tanh-GELU MLP with hidden size 4 * d_model is built")
        return cls(
            block_size=hf_config.n_positions,
            vocab_size=hf_config.vocab_size,
            n_layer=hf_config.n_layer,
            n_head=hf_config.n_head,
            d_model=hf_config.n_embd,
            layer_norm_eps=hf_config.layer_norm_epsilon,
        )


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position sees only itself and the past."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.d_model % config.n_head:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_head "
                             f"{config.n_head}")  # fmt: skip
        self.n_head = config.n_head
        # One Linear makes q, k and v at once: a single large matmul is faster than three.
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor, return_weights: bool = False, mask=None, cache=None):
        """x (B, T, C) -> (B, T, C), and the weights (B, nh, T, S) if asked.

        ``mask`` and ``cache`` (a `LayerKV`) come from the model when it generates; alone,
        ``attn(x)`` is plain causal attention over x.
        """
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, nh, S, hs): every token so far, S = past + T
        y, att = attend(q, k, v, mask, return_weights)  # (B, nh, T, hs), (B, nh, T, S)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C): heads side by side
        return self.c_proj(y), att  # (B, T, C), (B, nh, T, S) or None


class Block(nn.Module):
    """Pre-norm block: normalizing each branch's input, not the sum, keeps deep stacks stable.

    Implements equation :eq:`eq-prenorm-block` of Chapter 3
    (:ref:`its tests <test-eq-prenorm-block>`).

    GPT-2 and Llama blocks differ only in the four parts passed in. Keyword arguments (the
    mask, a layer's cache, RoPE angles) go to the attention unchanged.
    """

    def __init__(self, ln_1, attn, ln_2, mlp, dropout: float = 0.0):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_weights: bool = False, **attn_kwargs):
        a, att = self.attn(self.ln_1(x), return_weights, **attn_kwargs)
        x = x + self.drop(a)  # (B, T, C)
        x = x + self.drop(self.mlp(self.ln_2(x)))  # (B, T, C)
        return x, att


def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, return_attention: bool, cache=None,
                **attn_kwargs):  # fmt: skip
    """Both models' stack: (B, T, C) in and out, plus each layer's attention if asked."""
    attentions = []
    for i, block in enumerate(blocks):
        layer_cache = None if cache is None else cache.layers[i]
        x, att = block(x, return_attention, cache=layer_cache, **attn_kwargs)
        attentions.append(att)
    return x, (tuple(attentions) if return_attention else None)


class GPT(nn.Module):
    """GPT-2: learned token and position embeddings, pre-norm blocks, a tied output layer.

    Implements equation :eq:`eq-output-layer` of Chapter 3
    (:ref:`its tests <test-eq-output-layer>`).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d = config.d_model

        def ln():
            return LayerNorm(d, eps=config.layer_norm_eps, bias=config.bias)

        blocks = (Block(ln(), CausalSelfAttention(config), ln(),
                        GELUMLP(d, 4 * d, bias=config.bias), config.dropout)
                  for _ in range(config.n_layer))  # fmt: skip
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, d),
                wpe=nn.Embedding(config.block_size, d),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(blocks),
                ln_f=ln(),
            )
        )
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        # Weight tying: reading a token in and scoring it out share one (V, C) matrix,
        # which saves V * C parameters (38.6M of GPT-2 small's 124M).
        self.lm_head.weight = self.transformer.wte.weight
        _init_weights(self, config.n_layer, residual=("attn.c_proj.weight", "mlp.c_proj.weight"))

    def forward(self, idx, targets=None, return_attention: bool = False, *, cache=None,
                attention_mask=None, last_only: bool = False) -> LMOutput:  # fmt: skip
        """idx (B, T) token ids -> `LMOutput` with logits (B, T, V), loss, attentions.

        With a `KVCache`, idx holds only the tokens after the cached ones, and the cache
        grows by T. ``attention_mask`` (B, cached + T) marks left padding with 0.
        ``last_only`` returns logits (B, 1, V) for the last position, all that generation
        needs: the output layer is the largest matmul, so this skips T - 1 rows of it.
        """
        idx = _check_idx(idx, self.config.block_size, self.config.vocab_size)
        pos, mask = _positions_and_mask(idx, self.config.block_size, cache, attention_mask)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C) + (T or B, T, C)
        x, attentions = _run_blocks(self.transformer.h, self.transformer.drop(x),
                                    return_attention, cache, mask=mask)  # fmt: skip
        x = x[:, -1:] if last_only else x  # (B, 1, C) or (B, T, C)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, C) @ (C, V) -> (B, T, V)
        return LMOutput(logits, _lm_loss(logits, targets), attentions, cache)

    @classmethod
    def from_hf_state_dict(cls, config: GPTConfig, state_dict: dict) -> GPT:
        """A GPT with the weights of a ``transformers.GPT2LMHeadModel`` state dict (copied).

        Hugging Face's GPT-2 keeps OpenAI's ``Conv1D`` layers, which compute ``x @ W`` with W
        of shape (in, out); ``nn.Linear`` computes ``x @ W.T`` with W (out, in). So those four
        weights are transposed; everything else copies as is.
        """
        model = cls(config)
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")  # fmt: skip
        ours = {}
        for key, w in state_dict.items():
            if key.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # causal-mask buffers in older transformers, not weights
            ours[key] = w.t() if key.endswith(conv1d) else w
        ours.setdefault("lm_head.weight", ours["transformer.wte.weight"])  # tied
        model.load_state_dict(ours)  # strict: a missing or extra key is an error
        return model


# --------------------------------------------------------------------------------------------
# Llama


@dataclass
class LlamaConfig:
    vocab_size: int = 49152  # defaults are SmolLM2-135M's
    block_size: int = 8192  # max positions; RoPE has no table, but training never saw more
    n_layer: int = 30  # number of transformer blocks
    n_head: int = 9  # query heads
    n_kv_head: int = 3  # key/value heads; each is shared by n_head // n_kv_head query heads
    d_model: int = 576  # channels C of the residual stream
    hidden: int = 1536  # SwiGLU hidden size (about 8/3 * d_model, so 3 matrices cost ~8 C^2)
    rope_base: float = 100000.0  # RoPE base: larger means slower rotation, longer contexts
    rms_eps: float = 1e-5  # epsilon inside RMSNorm
    tie_embeddings: bool = True  # lm_head shares the embedding matrix (small models do)

    @classmethod
    def from_hf(cls, hf_config) -> LlamaConfig:
        """The same architecture as a ``transformers.LlamaConfig``."""
        # transformers >= 5 keeps rope_theta inside rope_parameters; older versions did not.
        rope = getattr(hf_config, "rope_parameters", None) or {}
        base = rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"only plain RoPE is built, not {rope['rope_type']!r}")
        hs = getattr(hf_config, "head_dim", None)
        if hs is not None and hs * hf_config.num_attention_heads != hf_config.hidden_size:
            raise ValueError(f"head_dim {hs} * heads must equal hidden_size")
        return cls(
            vocab_size=hf_config.vocab_size,
            block_size=hf_config.max_position_embeddings,
            n_layer=hf_config.num_hidden_layers,
            n_head=hf_config.num_attention_heads,
            n_kv_head=hf_config.num_key_value_heads,
            d_model=hf_config.hidden_size,
            hidden=hf_config.intermediate_size,
            rope_base=float(base),
            rms_eps=hf_config.rms_norm_eps,
            tie_embeddings=hf_config.tie_word_embeddings,
        )


class LlamaAttention(nn.Module):
    """Causal attention with RoPE on q and k, and grouped-query attention (GQA)."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if config.d_model % config.n_head or config.n_head % config.n_kv_head:
            raise ValueError("d_model must divide by n_head, and n_head by n_kv_head")
        self.nh, self.nkv = config.n_head, config.n_kv_head
        self.hs = config.d_model // config.n_head
        self.rope_base = config.rope_base
        # GQA: k and v get only nkv heads, which shrinks the KV cache by nh / nkv.
        self.q_proj = nn.Linear(config.d_model, self.nh * self.hs, bias=False)
        self.k_proj = nn.Linear(config.d_model, self.nkv * self.hs, bias=False)
        self.v_proj = nn.Linear(config.d_model, self.nkv * self.hs, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hs, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, return_weights: bool = False, mask=None, cache=None,
                rope=None):  # fmt: skip
        """x (B, T, C) -> (B, T, C), and the weights (B, nh, T, S) if asked.

        ``rope`` is (cos, sin) at the tokens' positions, (T, hs) or (B, 1, T, hs); alone,
        ``attn(x)`` computes them for positions 0..T-1.
        """
        B, T, C = x.shape
        nh, nkv, hs = self.nh, self.nkv, self.hs
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        # Rotating q and k by position-dependent angles makes q . k depend on i - j only.
        if rope is None:
            rope = rope_cache(hs, T, self.rope_base, device=x.device, dtype=x.dtype)  # (T, hs)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, nkv, S, hs): every token so far, S = past + T
        # Each kv head serves nh // nkv consecutive query heads, as in Hugging Face.
        y, att = attend(q, k, v, mask, return_weights)  # (B, nh, T, hs), (B, nh, T, S)
        y = y.transpose(1, 2).reshape(B, T, nh * hs)  # (B, nh, T, hs) -> (B, T, C)
        return self.o_proj(y), att  # (B, T, C), (B, nh, T, S) or None


# Hugging Face key fragment -> ours; applied in order to every key of a Llama state dict.
_LLAMA_RENAMES = (
    ("model.embed_tokens.", "embed."),
    ("model.layers.", "blocks."),
    ("model.norm.", "norm."),
    (".self_attn.", ".attn."),
    (".input_layernorm.", ".ln_1."),
    (".post_attention_layernorm.", ".ln_2."),
)


class Llama(nn.Module):
    """Llama: RoPE instead of a position table, RMSNorm, grouped-query attention, SwiGLU.

    Implements equation :eq:`eq-output-layer` of Chapter 3
    (:ref:`its tests <test-eq-output-layer>`).
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        d, eps = config.d_model, config.rms_eps
        self.embed = nn.Embedding(config.vocab_size, d)
        # The same Block as GPT-2's, with other parts and no dropout (Llama trains without).
        blocks = (Block(RMSNorm(d, eps), LlamaAttention(config), RMSNorm(d, eps),
                        SwiGLU(d, config.hidden)) for _ in range(config.n_layer))  # fmt: skip
        self.blocks = nn.ModuleList(blocks)
        self.norm = RMSNorm(d, eps=eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        _init_weights(self, config.n_layer, residual=("o_proj.weight", "down_proj.weight"))
        # RoPE angles for every position, computed once rather than at every step; not saved
        # in the state dict, but moved and cast with the model.
        cos, sin = rope_cache(d // config.n_head, config.block_size, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hs)
        self.register_buffer("rope_sin", sin, persistent=False)  # (block_size, hs)

    def forward(self, idx, targets=None, return_attention: bool = False, *, cache=None,
                attention_mask=None, last_only: bool = False) -> LMOutput:  # fmt: skip
        """idx (B, T) token ids -> `LMOutput` with logits (B, T, V), loss, attentions.

        With a `KVCache`, idx holds only the tokens after the cached ones, and the cache
        grows by T. ``attention_mask`` (B, cached + T) marks left padding with 0.
        ``last_only`` returns logits (B, 1, V) for the last position, all that generation
        needs: the output layer is the largest matmul, so this skips T - 1 rows of it.
        """
        idx = _check_idx(idx, self.config.block_size, self.config.vocab_size)
        pos, mask = _positions_and_mask(idx, self.config.block_size, cache, attention_mask)
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # (T, hs) or (B, T, hs)
        if pos.dim() == 2:  # one row of angles per sequence, shared by all heads
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs)
        x = self.embed(idx)  # (B, T, C); positions enter only through RoPE
        x, attentions = _run_blocks(self.blocks, x, return_attention, cache, mask=mask,
                                    rope=(cos, sin))  # fmt: skip
        x = x[:, -1:] if last_only else x  # (B, 1, C) or (B, T, C)
        logits = self.lm_head(self.norm(x))  # (B, T, C) @ (C, V) -> (B, T, V)
        return LMOutput(logits, _lm_loss(logits, targets), attentions, cache)

    @classmethod
    def from_hf(cls, hf_model_or_state_dict, hf_config=None) -> Llama:
        """A Llama with the weights of a ``LlamaForCausalLM`` or its state dict (copied).

        ``hf_config`` is needed only with a state dict; a model brings its own ``.config``.
        """
        sd = hf_model_or_state_dict
        if isinstance(sd, nn.Module):
            hf_config = hf_config or sd.config
            sd = sd.state_dict()
        if hf_config is None:
            raise ValueError("pass hf_config along with a state dict")
        model = cls(LlamaConfig.from_hf(hf_config))
        ours = {}
        for key, w in sd.items():
            for theirs, mine in _LLAMA_RENAMES:
                key = key.replace(theirs, mine)
            ours[key] = w
        if model.config.tie_embeddings:
            ours.setdefault("lm_head.weight", ours["embed.weight"])  # often saved only once
        model.load_state_dict(ours)  # strict: a missing or extra key is an error
        return model


def llama_from_smollm2(device: str | torch.device = "cpu") -> Llama:
    """SmolLM2-135M-Instruct as our `Llama`, in eval mode (needs ``lmlib[pretrained]``).

    The weights are copied, so changing or training this model leaves the shared Hugging Face
    model of `lmlib.pretrained.load_smollm2` untouched (it costs 0.5 GB more memory).
    """
    from lmlib.pretrained import load_smollm2

    hf_model, _ = load_smollm2("cpu")
    return Llama.from_hf(hf_model).to(device).eval()


# --------------------------------------------------------------------------------------------
# Shared helpers


def _init_weights(model: nn.Module, n_layer: int, residual: tuple[str, ...]) -> None:
    """GPT-2's initialization: N(0, 0.02) for matrices, zero biases, norms left at one."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif p.dim() == 2:
            # Each block adds two branches to the residual stream; shrinking the layers that
            # write into it by 1/sqrt(2 n_layer) keeps its variance from growing with depth.
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(residual) else 0.02
            nn.init.normal_(p, mean=0.0, std=std)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per component; a tied lm_head shares the embedding and counts once.

    Implements equation :eq:`eq-parameter-count` of Chapter 4
    (:ref:`its tests <test-eq-parameter-count>`).

    >>> cfg = GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=1, d_model=4)
    >>> count_parameters(GPT(cfg))  # wte 10*4 + wpe 8*4; c_attn 4*12+12, c_proj 4*4+4; ...
    {'embeddings': 72, 'attention': 80, 'mlp': 148, 'norms': 24, 'total': 324}
    """
    counts = {"embeddings": 0, "attention": 0, "mlp": 0, "norms": 0}
    for name, p in model.named_parameters():  # yields a shared (tied) tensor only once
        if "wte" in name or "wpe" in name or "embed" in name:
            part = "embeddings"
        elif "lm_head" in name:
            part = "lm_head"
        elif "ln_" in name or "norm" in name:
            part = "norms"
        elif "attn" in name:
            part = "attention"
        elif "mlp" in name:
            part = "mlp"
        else:
            raise ValueError(f"count_parameters does not know where {name!r} belongs")
        counts[part] = counts.get(part, 0) + p.numel()
    counts["total"] = sum(counts.values())
    return counts
