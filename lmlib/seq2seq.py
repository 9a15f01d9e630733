"""The encoder-decoder Transformer of Vaswani et al. (2017), the original one (Chapter 3).

The encoder reads the whole source with bidirectional self-attention; the decoder writes the
target one token at a time with causal self-attention, and in every layer reads the encoder's
output through *cross-attention*: queries from the target, keys and values from the source.
Read top to bottom, each piece adds one idea:

- `Seq2SeqConfig`: sizes, post-norm (the paper) or pre-norm, shared or separate embeddings.
- `Attention`: `lmlib.attention.MultiHeadAttention`'s four projections, plus `attend_to`,
  whose keys and values may come from another sequence and from a KV cache.
- `EncoderLayer`, `DecoderLayer`: self-attention (and cross-attention) and a ReLU
  feed-forward network, each in a residual connection with a LayerNorm.
- `EncoderDecoder`: embeddings times √d plus `lmlib.attention.sinusoidal_positions`, the
  two stacks, and an output layer tied to the target embedding. `encode` runs the encoder,
  `decode` the decoder, `forward` both.
- `SourceDecoder`: the decoder bound to one encoded batch of sources. It has the interface
  `lmlib.generate` and `lmlib.beam_search` call, so `translate` decodes with them; the
  encoder and the cross-attention keys and values are computed once, the decoder's own keys
  and values go in a `lmlib.kvcache.KVCache`.
- `sequence_log_prob`, `label_smoothed_cross_entropy`, `warmup_lr`: the factorization
  P(y | x) = ∏ P(y_t | y_<t, x), the paper's loss and its learning-rate schedule.

Masks of token ids are (B, S) or (B, T) with 1 for a real token and 0 for padding, as
`lmlib.generate`'s ``attention_mask``. Shape legend: B batch, S source positions, T target
positions, C channels (``d_model``), nh heads, hs head size, V vocabulary size.

>>> model = EncoderDecoder(Seq2SeqConfig(vocab_size=11, block_size=8, n_layers=1, n_heads=2,
...                                      d_model=8, hidden=16))
>>> out = model(torch.tensor([[5, 6, 7]]), torch.tensor([[1, 4]]))  # source, target so far
>>> tuple(out.logits.shape)  # (B, T, V): a next-token score for every target position
(1, 2, 11)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.attention import (
    LayerNorm,
    MultiHeadAttention,
    attend,
    causal_mask,
    sinusoidal_positions,
)
from lmlib.beam_search import beam_search
from lmlib.generate import GenerationConfig, generate, resolve
from lmlib.inputs import check_token_ids, decoder_inputs
from lmlib.model import LMOutput, lm_loss
from lmlib.runtime import check_int, check_number


@dataclass
class Seq2SeqConfig:
    vocab_size: int = 37000  # target vocabulary, also the source's unless src_vocab_size
    src_vocab_size: int | None = None  # None: the source uses the target's vocabulary
    block_size: int = 256  # longest source and longest target: rows of the position table
    n_layers: int = 6  # encoder layers, and as many decoder layers (the paper's N)
    n_heads: int = 8  # attention heads; d_model must divide evenly among them
    d_model: int = 512  # channels C
    hidden: int = 2048  # width of the feed-forward network (the paper's d_ff)
    dropout: float = 0.1  # on embeddings, sub-layer outputs, FFN hidden (the paper's P_drop)
    norm_first: bool = False  # False: post-norm, norm(x + f(x)), as the paper; True: pre-norm
    share_embeddings: bool = True  # one (V, C) table for source, target and output layer
    layer_norm_eps: float = 1e-5  # epsilon inside LayerNorm, torch.nn.Transformer's

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layers", "n_heads", "d_model", "hidden"):
            check_int(getattr(self, name), name, low=1)
        if self.src_vocab_size is not None:
            check_int(self.src_vocab_size, "src_vocab_size", low=1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads "
                             f"{self.n_heads}: each head gets d_model // n_heads "
                             "channels")  # fmt: skip
        check_number(self.dropout, "dropout", 0, 1)
        check_number(self.layer_norm_eps, "layer_norm_eps", low=0)
        if self.share_embeddings and self.src_vocab_size not in (None, self.vocab_size):
            raise ValueError(f"share_embeddings needs one vocabulary: src_vocab_size "
                             f"{self.src_vocab_size} != vocab_size {self.vocab_size}")  # fmt: skip

    @property
    def source_vocab_size(self) -> int:
        return self.vocab_size if self.src_vocab_size is None else self.src_vocab_size

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        return self.n_heads  # what lmlib.kvcache.KVCache.for_model reads


class Attention(MultiHeadAttention):
    """`lmlib.attention.MultiHeadAttention` (same projections, same ``forward``), plus
    `attend_to`: keys and values from another sequence (cross-attention) or a cache.

    Implements equation :eq:`eq-cross-attention` of Chapter 3
    (:ref:`its tests <test-eq-cross-attention>`).

    >>> att = Attention(d_model=8, n_heads=2)
    >>> x, memory = torch.randn(1, 3, 8), torch.randn(1, 5, 8)  # 3 queries read 5 keys
    >>> out, w = att.attend_to(x, att.project_kv(memory), return_weights=True)
    >>> tuple(out.shape), tuple(w.shape)  # (B, T, C), (B, nh, T, S)
    ((1, 3, 8), (1, 2, 3, 5))
    """

    def project_kv(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, nh, S, hs) of y (B, S, C): in cross-attention, the source."""
        B, S, C = y.shape
        nh, hs = self.n_heads, C // self.n_heads
        k = self.k_proj(y).view(B, S, nh, hs).transpose(1, 2)  # (B, nh, S, hs)
        v = self.v_proj(y).view(B, S, nh, hs).transpose(1, 2)  # (B, nh, S, hs)
        return k, v

    def attend_to(self, x, kv=None, mask=None, cache=None, return_weights: bool = False):
        """x (B, T, C) -> (B, T, C) and the weights (B, nh, T, S) or None.

        ``kv``: keys and values from `project_kv` (cross-attention); None: x's own
        (self-attention). ``mask`` is bool, broadcastable to (B, 1, T, S), True = may
        attend; None lets every query see every key. A ``cache`` (a `lmlib.kvcache.LayerKV`)
        gets x's keys and values appended and returns all of them.
        """
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.project_kv(x) if kv is None else kv  # (B, nh, S, hs) each
        if cache is not None:
            k, v = cache.update(k, v)  # (B, nh, past + T, hs)
        if mask is None:  # attend()'s None means causal; here it means "see everything"
            mask = torch.ones(1, 1, 1, k.size(2), dtype=torch.bool, device=x.device)
        y, weights = attend(q, k, v, mask, return_weights)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.out_proj(y), weights


class FeedForward(nn.Module):
    """The paper's position-wise network, linear2(dropout(relu(linear1(x)))): (B, T, C) in and out.

    The names are torch.nn.TransformerEncoderLayer's; GPT-2's `lmlib.attention.GELUMLP` uses
    GELU where the paper uses ReLU.
    """

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, hidden), nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.drop(F.relu(self.linear1(x))))  # (B, T, hidden) -> (B, T, C)


def residual(x, norm, f, norm_first: bool, drop: nn.Module):
    """A residual connection: post-norm ``norm(x + f(x))`` (the paper) or pre-norm
    ``x + f(norm(x))``, which leaves the residual stream unnormalized and trains deep stacks
    more stably (Xiong et al., 2020)."""
    if norm_first:
        return x + drop(f(norm(x)))
    return norm(x + drop(f(x)))


def _norm(config: Seq2SeqConfig) -> LayerNorm:
    return LayerNorm(config.d_model, eps=config.layer_norm_eps)


class EncoderLayer(nn.Module):
    """Bidirectional self-attention, then the FFN; (B, S, C) -> (B, S, C)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.self_attn = Attention(config.d_model, config.n_heads)
        self.ffn = FeedForward(config.d_model, config.hidden, config.dropout)
        self.norm1, self.norm2 = _norm(config), _norm(config)
        self.norm_first, self.drop = config.norm_first, nn.Dropout(config.dropout)

    def forward(self, x, mask):
        def attend(h):
            return self.self_attn.attend_to(h, mask=mask)[0]

        x = residual(x, self.norm1, attend, self.norm_first, self.drop)
        return residual(x, self.norm2, self.ffn, self.norm_first, self.drop)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the source, then the FFN; (B, T, C) in and out."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.self_attn = Attention(config.d_model, config.n_heads)
        self.cross_attn = Attention(config.d_model, config.n_heads)
        self.ffn = FeedForward(config.d_model, config.hidden, config.dropout)
        self.norm1, self.norm2, self.norm3 = _norm(config), _norm(config), _norm(config)
        self.norm_first, self.drop = config.norm_first, nn.Dropout(config.dropout)

    def forward(self, x, self_mask, cross_kv, cross_mask, cache=None, return_weights=False):
        """Returns x and the cross-attention weights (B, nh, T, S), or None."""
        weights = []

        def attend_self(h):  # queries, keys and values from the target so far
            return self.self_attn.attend_to(h, None, self_mask, cache)[0]

        def attend_source(h):  # queries from the target, keys and values from the source
            out, w = self.cross_attn.attend_to(h, cross_kv, cross_mask, None, return_weights)
            weights.append(w)
            return out

        x = residual(x, self.norm1, attend_self, self.norm_first, self.drop)
        x = residual(x, self.norm2, attend_source, self.norm_first, self.drop)
        return residual(x, self.norm3, self.ffn, self.norm_first, self.drop), weights[0]


def _padding_mask(mask, ids: torch.Tensor, name: str) -> torch.Tensor | None:
    """A (B, S) 0/1 mask as bool (B, 1, 1, S) over keys, after checking it against ids."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name} must have the ids' shape {tuple(ids.shape)}, got {shape}")
    if not mask.bool().any(dim=-1).all():
        raise ValueError(f"{name}: every row needs at least one real token (a 1)")
    return mask.bool()[:, None, None, :]  # (B, 1, 1, S)


class EncoderDecoder(nn.Module):
    """Vaswani et al.'s Transformer: ``forward(src, tgt)`` -> `lmlib.model.LMOutput`.

    ``logits`` (B, T, V) score the target's next tokens; with ``targets`` (B, T, -100 to
    skip), ``loss`` is their mean cross-entropy; with ``return_attention``, ``attentions``
    holds every decoder layer's cross-attention weights (B, nh, T, S). The module docstring
    shows a call.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config, C = config, config.d_model
        self.tgt_embed = nn.Embedding(config.vocab_size, C)
        share = config.share_embeddings
        self.src_embed = self.tgt_embed if share else nn.Embedding(config.source_vocab_size, C)
        self.register_buffer("pe", sinusoidal_positions(config.block_size, C), persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        # Pre-norm leaves the residual stream unnormalized: a last norm after each stack.
        self.encoder_norm = _norm(config) if config.norm_first else nn.Identity()
        self.decoder_norm = _norm(config) if config.norm_first else nn.Identity()
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        self.lm_head.weight = self.tgt_embed.weight  # the paper ties them (its section 3.4)
        for name, p in self.named_parameters():
            if "embed" in name:  # scaled by √C in forward: unit-size vectors after that
                nn.init.normal_(p, std=C**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)  # torch.nn.Transformer's initialization

    def embed(self, embedding: nn.Embedding, x: torch.Tensor, pos: torch.Tensor):
        """embedding(ids) * √C + PE[pos], then dropout: (B, T, C)."""
        return self.drop(x * math.sqrt(self.config.d_model) + self.pe[pos])

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src (B, S) token ids -> memory (B, S, C). ``src_mask`` (B, S): 0 = padding,
        on either side; positions count from each row's first real token."""
        src = check_token_ids(src, self.config.source_vocab_size, "src")
        S = src.size(1)
        if S > self.config.block_size:
            raise ValueError(f"source length {S} exceeds the model's block_size "
                             f"{self.config.block_size} (rows of the position table)")  # fmt: skip
        key_mask = _padding_mask(src_mask, src, "src_mask")  # (B, 1, 1, S) or None
        pos = torch.arange(S, device=src.device)  # (S,)
        if src_mask is not None:
            pos = (src_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, S)
        x = self.embed(self.src_embed, self.src_embed(src), pos)  # (B, S, C)
        for layer in self.encoder:
            x = layer(x, key_mask)
        return self.encoder_norm(x)

    def decode(self, tgt, memory=None, src_mask=None, *, cross_kv=None, attention_mask=None,
               cache=None, targets=None, return_attention=False,
               last_only=False) -> LMOutput:  # fmt: skip
        """tgt (B, T) -> `lmlib.model.LMOutput` with logits (B, T, V), given the source as
        ``memory`` (B, S, C) from `encode` or as each layer's ``cross_kv`` (see
        `SourceDecoder`). ``attention_mask`` (B, past + T) marks target padding, ``cache``
        holds earlier target positions, as for `lmlib.model.GPT`."""
        if (memory is None) == (cross_kv is None):
            raise ValueError("pass exactly one of memory (B, S, C) and cross_kv")
        tgt = check_token_ids(tgt, self.config.vocab_size, "tgt")
        if memory is not None:
            if memory.dim() != 3 or memory.size(0) != tgt.size(0):
                raise ValueError(f"batch sizes differ: tgt has {tgt.size(0)} rows, memory "
                                 f"{tuple(memory.shape)}")  # fmt: skip
            cross_kv = [layer.cross_attn.project_kv(memory) for layer in self.decoder]
        cross_mask = None if src_mask is None else src_mask.bool()[:, None, None, :]
        x, pos, mask = decoder_inputs(self.tgt_embed, tgt, None, self.config.block_size,
                                      cache, attention_mask)  # fmt: skip
        if mask is None and x.size(1) > 1:
            mask = causal_mask(x.size(1), device=x.device)  # (T, T): plain causal
        x = self.embed(self.tgt_embed, x, pos)  # (B, T, C)
        attentions = []
        for i, layer in enumerate(self.decoder):
            layer_cache = None if cache is None else cache.layers[i]
            x, w = layer(x, mask, cross_kv[i], cross_mask, layer_cache, return_attention)
            attentions.append(w)
        x = x[:, -1:] if last_only else x
        logits = self.lm_head(self.decoder_norm(x))  # (B, T, C) @ (C, V) -> (B, T, V)
        return LMOutput(logits, lm_loss(logits, targets),
                        tuple(attentions) if return_attention else None, cache)  # fmt: skip

    def forward(self, src, tgt, targets=None, *, src_mask=None, tgt_mask=None,
                return_attention: bool = False) -> LMOutput:  # fmt: skip
        """Encode src (B, S) and decode tgt (B, T) in one pass (teacher forcing)."""
        src = check_token_ids(src, self.config.source_vocab_size, "src")
        tgt = check_token_ids(tgt, self.config.vocab_size, "tgt")
        if src.size(0) != tgt.size(0):
            raise ValueError(f"batch sizes differ: src has {src.size(0)} rows, tgt "
                             f"{tgt.size(0)}; row i of each is one pair")  # fmt: skip
        memory = self.encode(src, src_mask)
        return self.decode(tgt, memory, src_mask, attention_mask=tgt_mask, targets=targets,
                           return_attention=return_attention)  # fmt: skip


class SourceDecoder(nn.Module):
    """The decoder of ``model`` bound to a batch of sources: what `lmlib.generate.generate`
    and `lmlib.beam_search.beam_search` call, like a decoder-only model.

    The encoder runs once, here, and so do the cross-attention projections of every layer:
    the source does not change while the target grows. Each source serves
    ``rows_per_source`` consecutive target rows (beam search's ``num_beams``).
    """

    # Row i reads source i, so every call must pass every row: `lmlib.generate.stream` then
    # neither runs a repeated prompt once nor drops the rows that finished.
    fixed_batch = True

    def __init__(self, model: EncoderDecoder, src, src_mask=None, rows_per_source: int = 1):
        super().__init__()
        check_int(rows_per_source, "rows_per_source", low=1)
        self.model, self.config = model, model.config  # config: block_size, vocab_size, ...
        memory = model.encode(src, src_mask)  # (B, S, C)
        n = rows_per_source
        # per layer, k and v (B * n, nh, S, hs): row i * n + j reads source i
        self.cross_kv = [tuple(t.repeat_interleave(n, dim=0)
                               for t in layer.cross_attn.project_kv(memory))
                         for layer in model.decoder]  # fmt: skip
        self.src_mask = None if src_mask is None else src_mask.repeat_interleave(n, dim=0)
        self.batch_size = src.size(0) * n

    def forward(self, idx, targets=None, return_attention: bool = False, *, cache=None,
                attention_mask=None, last_only: bool = False) -> LMOutput:  # fmt: skip
        """idx (B, T) target tokens -> `lmlib.model.LMOutput`, as `EncoderDecoder.decode`."""
        idx = check_token_ids(idx, self.config.vocab_size)
        if idx.size(0) != self.batch_size:
            raise ValueError(f"batch sizes differ: the decoder holds {self.batch_size} "
                             f"source rows, got {idx.size(0)} target rows")  # fmt: skip
        return self.model.decode(idx, None, self.src_mask, cross_kv=self.cross_kv,
                                 attention_mask=attention_mask, cache=cache,
                                 targets=targets, return_attention=return_attention,
                                 last_only=last_only)  # fmt: skip


@torch.inference_mode()
def translate(model: EncoderDecoder, src, bos_id: int, config: GenerationConfig | None = None,
              *, src_mask=None, **options) -> torch.Tensor:  # fmt: skip
    """The target tokens (B, new) for src (B, S), without the leading ``bos_id``: greedy, or
    beam search with ``num_beams`` > 1, through `lmlib.generate` and `lmlib.beam_search`.
    Rows that end early are filled with ``pad_token_id`` (default: the first eos).

    >>> _ = torch.manual_seed(0)
    >>> model = EncoderDecoder(Seq2SeqConfig(vocab_size=11, block_size=8, n_layers=1,
    ...                                      n_heads=2, d_model=8, hidden=16)).eval()
    >>> translate(model, torch.tensor([[5, 6, 7]]), bos_id=1, max_new_tokens=4).shape
    torch.Size([1, 4])
    """
    cfg = resolve(config, **options)
    check_int(bos_id, "bos_id", low=0, high=model.config.vocab_size - 1)
    decoder = SourceDecoder(model, src, src_mask, rows_per_source=cfg.num_beams)
    start = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    out = beam_search(decoder, start, cfg) if cfg.num_beams > 1 else generate(decoder, start, cfg)
    return out[:, 1:]


def sequence_log_prob(model: EncoderDecoder, src, tgt, targets, *, src_mask=None):
    """log P(y | x) = sum over t of log P(y_t | y_<t, x), one number per row, (B,).

    Implements equation :eq:`eq-seq2seq-factorization` of Chapter 4
    (:ref:`its tests <test-eq-seq2seq-factorization>`).

    ``tgt`` (B, T) is the decoder's input (bos, y_1 .. y_T-1), ``targets`` (B, T) the tokens
    it must predict (y_1 .. y_T, eos), -100 where a row is padding.
    """
    logits = model(src, tgt, src_mask=src_mask).logits.float()  # (B, T, V)
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets != -100
    token_logp = logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    return (token_logp * keep).sum(dim=-1)


def label_smoothed_cross_entropy(logits, targets, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy against (1 - ε) one-hot + ε / V uniform, the paper's ε = 0.1.

    Implements equation :eq:`eq-label-smoothing` of Chapter 3
    (:ref:`its tests <test-eq-label-smoothing>`).

    Per token: (1 - ε) · (-log p_y) + ε · mean over v of (-log p_v); the mean over tokens
    whose target is not -100. It keeps the model from pushing one probability to 1.
    With p = (1/4, 3/4), y = 1, ε = 0.2: 0.8 · 0.2877 + 0.2 · (1.3863 + 0.2877) / 2 = 0.3975.

    >>> logits = torch.log(torch.tensor([[[0.25, 0.75]]]))  # (B, T, V)
    >>> round(label_smoothed_cross_entropy(logits, torch.tensor([[1]]), 0.2).item(), 4)
    0.3975
    """
    check_number(smoothing, "smoothing", 0, 1)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])}, "
                         f"got {tuple(targets.shape)}")  # fmt: skip
    logp = torch.log_softmax(logits.float(), dim=-1)  # (..., V)
    keep = targets != -100
    nll = -logp.gather(-1, targets.clamp(min=0).long()[..., None]).squeeze(-1)  # (...)
    uniform = -logp.mean(dim=-1)  # (...): cross-entropy against the uniform distribution
    return ((1 - smoothing) * nll + smoothing * uniform)[keep].mean()


def warmup_lr(step: int, d_model: int, warmup: int = 4000) -> float:
    """The paper's schedule: d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), step >= 1.

    Implements equation :eq:`eq-warmup-schedule` of Chapter 3
    (:ref:`its tests <test-eq-warmup-schedule>`).

    It rises linearly for ``warmup`` steps, peaks at (d_model · warmup)^-0.5, then decays as
    1/√step. With d_model = 512 and 4,000 warm-up steps the peak is 1/√2,048,000 = 0.000699.

    >>> round(warmup_lr(4000, 512), 6), round(warmup_lr(16000, 512), 6)
    (0.000699, 0.000349)
    """
    check_int(step, "step", low=1)
    check_int(d_model, "d_model", low=1)
    check_int(warmup, "warmup", low=1)
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
