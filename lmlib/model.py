"""Two decoder-only language models side by side: GPT-2 and Llama.

Both are a stack of pre-norm blocks, ``x = x + attn(norm(x)); x = x + mlp(norm(x))``, between
a token embedding and a linear map back to the vocabulary. The Llama differs in four ideas,
each one line or one module: RMSNorm instead of LayerNorm, rotary position embeddings (RoPE)
on q and k instead of a learned position table, grouped-query attention (fewer k/v heads than
q heads) and a SwiGLU MLP. The building blocks live in `lmlib.attention`; this module only
wires them together, so there is one source of truth for attention.

Shape legend: B batch, T time (sequence length), C channels (``d_model``), nh heads
(``n_heads``), nkv kv-heads (``n_kv_heads``), hs head size (``head_dim`` = C // nh),
S keys (cached + new), V vocabulary size.

Both models' ``forward`` takes token ids ``idx`` (B, T), or ``inputs_embeds`` (B, T, C) in
their place; for generation (`lmlib.generate`) also a `lmlib.kvcache.KVCache` and an
``attention_mask`` for left padding, which `lmlib.inputs` turns into positions and masks.
Attention goes through `lmlib.attention.attend`: PyTorch's fused kernel by default, the
teaching version when the weights are asked for.

Module names follow Hugging Face's GPT-2 exactly (nanoGPT does the same) and Llama's nearly,
so `lmlib.convert` loads its checkpoints with few renames (`lmlib.convert.gpt_from_hf`,
`lmlib.convert.llama_from_hf`).

>>> model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layers=1, n_heads=2, d_model=4))
>>> out = model(torch.tensor([[1, 2, 3]]))
>>> tuple(out.logits.shape)
(1, 3, 11)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.attention import GELUMLP, LayerNorm, RMSNorm, SwiGLU, apply_rope, attend, rope_cache
from lmlib.inputs import decoder_inputs
from lmlib.runtime import check_int, check_number

if TYPE_CHECKING:
    from lmlib.kvcache import KVCache


@dataclass
class LMOutput:
    """What both models' ``forward`` returns (fields, not a tuple: no positions to recall)."""

    logits: torch.Tensor  # (B, T, V) unnormalized next-token scores
    loss: torch.Tensor | None = None  # mean cross-entropy, only when targets are given
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, nh, T, S), if asked
    cache: KVCache | None = None  # the cache passed in, now holding these T positions too


def lm_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy; targets are already shifted (targets[:, t] = idx[:, t + 1]).

    -100 marks positions to skip (padding, prompts), as in PyTorch and Hugging Face. With
    uniform logits over V = 4 tokens every scored position costs log 4 = 1.3863:

    >>> round(lm_loss(torch.zeros(1, 3, 4), torch.tensor([[1, 2, -100]])).item(), 4)
    1.3863
    """
    if targets is None:
        return None
    _check_targets(targets, logits.shape[:-1])
    V = logits.size(-1)
    return F.cross_entropy(logits.view(-1, V), targets.reshape(-1).long(), ignore_index=-100)


def _positions(x: torch.Tensor, targets, last_only: bool, logits_at):
    """The final hidden states (and targets) the output layer is applied to: all (B, T, C),
    the last (B, 1, C), or the (N, C) rows where ``logits_at`` (B, T) is True."""
    if last_only:
        if logits_at is not None:
            raise ValueError("pass last_only or logits_at, not both")
        return x[:, -1:], targets
    if logits_at is None:
        return x, targets
    if not isinstance(logits_at, torch.Tensor) or logits_at.dtype != torch.bool:
        raise TypeError(f"logits_at must be a bool tensor, got {logits_at!r:.60}")
    if logits_at.shape != x.shape[:2]:
        raise ValueError(f"logits_at must have shape {tuple(x.shape[:2])} (the tokens run), "
                         f"got {tuple(logits_at.shape)}")  # fmt: skip
    if targets is not None:
        targets = _check_targets(targets, x.shape[:2])[logits_at]  # (N,)
    return x[logits_at], targets  # (N, C)


def _check_targets(targets, shape) -> torch.Tensor:
    """``targets`` checked to be a tensor of integer token ids of ``shape``."""
    if not isinstance(targets, torch.Tensor):
        raise TypeError(
            f"targets must be a (B, T) tensor of token ids, got {type(targets).__name__}"
        )
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer token ids (or -100), got {targets.dtype}: "
                        f"floats would be truncated to other tokens")  # fmt: skip
    if targets.shape != tuple(shape):
        raise ValueError(f"targets must have shape {tuple(shape)}, "
                         f"got {tuple(targets.shape)}")  # fmt: skip
    return targets


def _check_config(config, ints: tuple[str, ...]) -> None:
    """Both configs' checks: sizes are ints >= 1 and the heads divide the channels."""
    for name in ints:
        check_int(getattr(config, name), name, low=1)
    if config.d_model % config.n_heads:
        raise ValueError(f"d_model {config.d_model} is not divisible by n_heads "
                         f"{config.n_heads}: each head gets d_model // n_heads "
                         f"channels")  # fmt: skip


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


def _init_weights(model: nn.Module, n_layers: int, residual: tuple[str, ...]) -> None:
    """GPT-2's initialization: N(0, 0.02) for matrices, zero biases, norms left at one."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif p.dim() == 2:
            # Each block adds two branches to the residual stream; shrinking the layers that
            # write into it by 1/sqrt(2 n_layers) keeps its variance from growing with depth.
            std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(residual) else 0.02
            nn.init.normal_(p, mean=0.0, std=std)


# --------------------------------------------------------------------------------------------
# GPT-2


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence; the position table has this many rows
    vocab_size: int = 50257  # GPT-2's BPE: 50,000 merges + 256 bytes + <|endoftext|>
    n_layers: int = 12  # number of transformer blocks
    n_heads: int = 12  # attention heads per block; d_model must divide evenly among them
    d_model: int = 768  # channels C of the residual stream
    dropout: float = 0.0  # on embeddings and residual branches; 0.0 for inference and tests
    bias: bool = True  # bias in Linears and LayerNorms, like GPT-2
    layer_norm_eps: float = 1e-5  # GPT-2's epsilon inside LayerNorm

    def __post_init__(self):
        _check_config(self, ("block_size", "vocab_size", "n_layers", "n_heads", "d_model"))
        check_number(self.dropout, "dropout", 0, 1)
        check_number(self.layer_norm_eps, "layer_norm_eps", low=0)
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias must be True or False, got {self.bias!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        return self.n_heads  # one key/value head per query head (no GQA)


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position sees only itself and the past."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_heads "
                             f"{config.n_heads}")  # fmt: skip
        self.n_heads = config.n_heads
        # One Linear makes q, k and v at once: a single large matmul is faster than three.
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor, return_weights: bool = False, mask=None, cache=None):
        """x (B, T, C) -> (B, T, C), and the weights (B, nh, T, S) if asked.

        ``mask`` and ``cache`` (a `lmlib.kvcache.LayerKV`) come from the model when it
        generates; alone, ``attn(x)`` is plain causal attention over x.
        """
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, nh, S, hs): every token so far, S = past + T
        y, att = attend(q, k, v, mask, return_weights)  # (B, nh, T, hs), (B, nh, T, S)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C): heads side by side
        return self.c_proj(y), att  # (B, T, C), (B, nh, T, S) or None


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
                  for _ in range(config.n_layers))  # fmt: skip
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
        _init_weights(self, config.n_layers, residual=("attn.c_proj.weight", "mlp.c_proj.weight"))

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (V, C), under Hugging Face's name for it."""
        return self.transformer.wte

    def forward(self, idx=None, targets=None, return_attention: bool = False, *,
                inputs_embeds=None, cache=None, attention_mask=None,
                last_only: bool = False, logits_at=None) -> LMOutput:  # fmt: skip
        """idx (B, T) token ids -> `LMOutput` with logits (B, T, V), loss, attentions.

        ``inputs_embeds`` (B, T, C) replaces ``idx``: vectors used as token embeddings.
        With a `KVCache`, idx holds only the tokens after the cached ones, and the cache
        grows by T. ``attention_mask`` (B, cached + T) marks left padding with 0.
        ``last_only`` returns logits (B, 1, V) for the last position, all that generation
        needs: the output layer is the largest matmul, so this skips T - 1 rows of it.
        ``logits_at`` (B, T) bool computes the output layer only where it is True: logits
        are then (N, V), one row per True position in row-major order, and the loss covers
        those positions. Fine-tuning on a label word or an answer needs a few positions of
        each row; for SmolLM2 the output layer is a fifth of the model's multiply-adds.
        """
        wte, block_size = self.transformer.wte, self.config.block_size
        tok, pos, mask = decoder_inputs(wte, idx, inputs_embeds, block_size, cache, attention_mask)
        x = tok + self.transformer.wpe(pos)  # (B, T, C) + (T or B, T, C)
        x, attentions = _run_blocks(self.transformer.h, self.transformer.drop(x),
                                    return_attention, cache, mask=mask)  # fmt: skip
        x, targets = _positions(x, targets, last_only, logits_at)  # (B, T or 1, C) or (N, C)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, C) @ (C, V) -> (B, T, V)
        return LMOutput(logits, lm_loss(logits, targets), attentions, cache)


# --------------------------------------------------------------------------------------------
# Llama


@dataclass
class LlamaConfig:
    vocab_size: int = 49152  # defaults are SmolLM2-135M's
    block_size: int = 8192  # max positions; RoPE has no table, but training never saw more
    n_layers: int = 30  # number of transformer blocks
    n_heads: int = 9  # query heads
    n_kv_heads: int = 3  # key/value heads; each is shared by n_heads // n_kv_heads query heads
    d_model: int = 576  # channels C of the residual stream
    hidden: int = 1536  # SwiGLU hidden size (about 8/3 * d_model, so 3 matrices cost ~8 C^2)
    rope_base: float = 100000.0  # RoPE base: larger means slower rotation, longer contexts
    rms_eps: float = 1e-5  # epsilon inside RMSNorm
    tie_embeddings: bool = True  # lm_head shares the embedding matrix (small models do)

    def __post_init__(self):
        names = ("vocab_size", "block_size", "n_layers", "n_heads", "n_kv_heads", "d_model")
        _check_config(self, names + ("hidden",))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"d_model must divide by n_heads, and n_heads by n_kv_heads: "
                             f"got n_heads {self.n_heads}, n_kv_heads "
                             f"{self.n_kv_heads}")  # fmt: skip
        if self.head_dim % 2:  # RoPE turns channels in pairs
            raise ValueError(f"head_dim = d_model // n_heads = {self.head_dim} must be even")
        check_number(self.rope_base, "rope_base", low=0, open_low=True)
        check_number(self.rms_eps, "rms_eps", low=0)
        if not isinstance(self.tie_embeddings, bool):
            raise TypeError(f"tie_embeddings must be True or False, got {self.tie_embeddings!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class LlamaAttention(nn.Module):
    """Causal attention with RoPE on q and k, and grouped-query attention (GQA)."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if config.d_model % config.n_heads or config.n_heads % config.n_kv_heads:
            raise ValueError("d_model must divide by n_heads, and n_heads by n_kv_heads")
        self.nh, self.nkv, self.hs = config.n_heads, config.n_kv_heads, config.head_dim
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
                        SwiGLU(d, config.hidden)) for _ in range(config.n_layers))  # fmt: skip
        self.blocks = nn.ModuleList(blocks)
        self.norm = RMSNorm(d, eps=eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        _init_weights(self, config.n_layers, residual=("o_proj.weight", "down_proj.weight"))
        # RoPE angles for every position, computed once rather than at every step; not saved
        # in the state dict, but moved and cast with the model.
        cos, sin = rope_cache(config.head_dim, config.block_size, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hs)
        self.register_buffer("rope_sin", sin, persistent=False)  # (block_size, hs)

    @classmethod
    def from_weights(cls, config: LlamaConfig, state_dict: dict) -> Llama:
        """``Llama(config)`` holding a copy of ``state_dict`` (every key, nothing more),
        without drawing random weights first only to overwrite them: for SmolLM2's 135M
        weights that draw took 1.4-3 s on a CPU. Built on PyTorch's "meta" device (shapes,
        no numbers), then given memory and the weights, on the device of the weights."""
        with torch.device("meta"):
            model = cls(config)
        device = next(iter(state_dict.values())).device if state_dict else "cpu"
        model.to_empty(device=device)  # uninitialized memory, a new tensor for each module
        if config.tie_embeddings:  # so tie them again, as __init__ does
            model.lm_head.weight = model.embed.weight
        column_major_linears(model)  # faster decoding of a few rows at a time on a CPU
        model.load_state_dict(state_dict)  # strict: a missing or extra key is an error
        cos, sin = rope_cache(config.head_dim, config.block_size, config.rope_base)
        model.rope_cos.copy_(cos)  # buffers are not in the state dict: computed again
        model.rope_sin.copy_(sin)
        return model

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (V, C), under Hugging Face's name for it."""
        return self.embed

    def forward(self, idx=None, targets=None, return_attention: bool = False, *,
                inputs_embeds=None, cache=None, attention_mask=None,
                last_only: bool = False, logits_at=None) -> LMOutput:  # fmt: skip
        """idx (B, T) token ids -> `LMOutput` with logits (B, T, V), loss, attentions.

        The keyword arguments are GPT's (see `GPT.forward`).
        """
        # x (B, T, C): positions enter only through RoPE
        x, pos, mask = decoder_inputs(self.embed, idx, inputs_embeds, self.config.block_size,
                                      cache, attention_mask)  # fmt: skip
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # (T, hs) or (B, T, hs)
        if pos.dim() == 2:  # one row of angles per sequence, shared by all heads
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs)
        x, attentions = _run_blocks(self.blocks, x, return_attention, cache, mask=mask,
                                    rope=(cos, sin))  # fmt: skip
        x, targets = _positions(x, targets, last_only, logits_at)  # (B, T or 1, C) or (N, C)
        logits = self.lm_head(self.norm(x))  # (B, T, C) @ (C, V) -> (B, T, V)
        return LMOutput(logits, lm_loss(logits, targets), attentions, cache)


def column_major_linears(model: nn.Module) -> nn.Module:
    """Store every ``nn.Linear`` weight (out, in) as the transpose of an (in, out) matrix.

    Shapes, values, names and the state dict stay as they were; only the order in memory
    changes, and with it the BLAS routine behind ``F.linear``. On a CPU (MKL), a few rows
    times a transposed row-major weight is a slow case: for SmolLM2 on 2 cores, a decoding
    step for 8 rows took 120 ms this way and 80 ms column-major, for 56 rows 260-316 ms and
    170-205 ms, with one row about the same; many rows at once (a prompt) cost the same
    either way. `Llama.from_weights` stores its weights so. A kernel that reads the rows
    themselves needs ``weight.contiguous()``, and AdamW is slow over such weights, so
    `lmlib.train.Trainer` stores the ones it trains row-major again
    (`lmlib.optim.row_major_trainable`). Returns the model, changed in place.

    >>> lin = column_major_linears(nn.Linear(3, 2)).weight
    >>> tuple(lin.shape), lin.stride()
    ((2, 3), (1, 2))
    """
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.stride(0) != 1:  # a tied one: once
            module.weight.data = module.weight.data.t().contiguous().t()  # (out, in) view
    return model


# --------------------------------------------------------------------------------------------
# Where the parameters are


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per component; a tied lm_head shares the embedding and counts once.

    Implements equation :eq:`eq-parameter-count` of Chapter 4
    (:ref:`its tests <test-eq-parameter-count>`).

    >>> cfg = GPTConfig(block_size=8, vocab_size=10, n_layers=1, n_heads=1, d_model=4)
    >>> count_parameters(GPT(cfg))  # wte 10*4 + wpe 8*4; c_attn 4*12+12, c_proj 4*4+4; ...
    {'embeddings': 72, 'attention': 80, 'mlp': 148, 'norms': 24, 'total': 324}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
