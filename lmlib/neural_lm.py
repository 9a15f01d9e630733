"""A neural language model in the manner of Bengio et al. (2003): the step after n-grams.

An n-gram model (`lmlib.ngram`) looks up counts of the exact last n-1 tokens, so a context
it never saw verbatim teaches it nothing. Bengio's neural probabilistic language model
(NPLM) keeps the same fixed window of n-1 tokens but turns each token into a learned vector
(its embedding), concatenates them and lets a small network map them to next-token scores:

    x = [C(w_{t-n+1}); ...; C(w_{t-1})]         the n-1 embeddings, one after another
    y = b + W x + U tanh(d + H x)               W: Bengio's optional direct connections
    P(w_t | w_{t-n+1}, ..., w_{t-1}) = softmax(y)

Similar tokens get similar rows of C, so what the model learns about one context carries
over to contexts that are merely alike: that is what counts cannot do.

`NPLM.forward` takes windows of token ids like `lmlib.model.GPT` does, ``(idx, targets)``,
so `lmlib.train.Trainer` trains it unchanged; position t is predicted from the n-1 tokens
ending at t. Near the start of a window (or of a text) those tokens do not all exist: the
missing ones are a padding id, ``vocab_size``, with an embedding row of its own, so every
token is scored, each from the context it has, as `lmlib.ngram` does.
`perplexity` scores a whole text that way: exp of the mean cross-entropy per token, the
same units as `lmlib.ngram.NGramLM.perplexity`.

Shape legend: B batch, T time, N context length (n - 1), C embedding size (``d_embed``),
H hidden units (``d_hidden``), V vocabulary size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.model import LMOutput, lm_loss
from lmlib.runtime import check_int, eval_mode


@dataclass
class NPLMConfig:
    vocab_size: int = 65  # tokens; one more embedding row holds the padding id
    context: int = 8  # n - 1: tokens the model sees before the one it predicts
    d_embed: int = 24  # C: the size of each token's vector (Bengio: 30 to 100)
    d_hidden: int = 512  # H: tanh units of the hidden layer (Bengio: 0 to 100)
    direct: bool = True  # W: Bengio's direct connections from the embeddings to the scores

    def __post_init__(self):
        check_int(self.vocab_size, "vocab_size", low=1)
        check_int(self.context, "context (n - 1 tokens)", low=1)
        check_int(self.d_embed, "d_embed", low=1)
        check_int(self.d_hidden, "d_hidden", low=1)


class NPLM(nn.Module):
    """Bengio et al.'s (2003) neural probabilistic language model.

    Implements equation :eq:`eq-nplm` of Chapter 2 (:ref:`its tests <test-eq-nplm>`).

    ``model(idx)`` returns an `lmlib.model.LMOutput` whose ``logits[b, t]`` predict the
    token after ``idx[b, t]`` from ``idx[b, t - n + 2 : t + 1]`` (padded on the left);
    with ``targets`` it also holds the mean cross-entropy. With every weight zero the
    model knows nothing: each of the V tokens gets probability 1 / V.

    >>> model = NPLM(NPLMConfig(vocab_size=5, context=2, d_embed=3, d_hidden=4))
    >>> _ = [nn.init.zeros_(p) for p in model.parameters()]
    >>> out = model(torch.tensor([[0, 3, 1]]), torch.tensor([[3, 1, 4]]))
    >>> out.logits.shape, round(out.loss.item(), 4), round(math.log(5), 4)
    (torch.Size([1, 3, 5]), 1.6094, 1.6094)
    """

    def __init__(self, config: NPLMConfig):
        super().__init__()
        if not isinstance(config, NPLMConfig):
            raise TypeError(f"config must be an NPLMConfig, got {type(config).__name__}")
        self.config = cfg = config
        self.pad_id = cfg.vocab_size  # "no token here": before the start of the text
        self.embed = nn.Embedding(cfg.vocab_size + 1, cfg.d_embed)  # C, plus the pad row
        n_in = cfg.context * cfg.d_embed
        self.hidden = nn.Linear(n_in, cfg.d_hidden)  # H and d
        self.out = nn.Linear(cfg.d_hidden, cfg.vocab_size)  # U and b
        self.direct = nn.Linear(n_in, cfg.vocab_size, bias=False) if cfg.direct else None

    def contexts(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, N): row t holds the N ids that end at position t.

        >>> NPLM(NPLMConfig(vocab_size=9, context=3)).contexts(torch.tensor([[4, 5, 6]]))
        tensor([[[9, 9, 4],
                 [9, 4, 5],
                 [4, 5, 6]]])
        """
        n = self.config.context
        padded = F.pad(idx, (n - 1, 0), value=self.pad_id)  # (B, T + N - 1)
        return padded.unfold(1, n, 1)  # (B, T, N): windows of N, step 1

    def score(self, ctx: torch.Tensor) -> torch.Tensor:
        """Equation :eq:`eq-nplm`: (..., N) context ids (the pad id allowed) -> (..., V)."""
        x = self.embed(ctx).flatten(-2)  # (..., N, C) -> (..., N * C): concatenated
        y = self.out(torch.tanh(self.hidden(x)))  # (..., H) -> (..., V)
        return y + self.direct(x) if self.direct is not None else y

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> LMOutput:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(f"idx must be a (B, T) tensor of token ids, got "
                             f"{getattr(idx, 'shape', type(idx).__name__)}")  # fmt: skip
        if idx.numel() and not 0 <= int(idx.min()) <= int(idx.max()) < self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got "
                             f"{int(idx.min())}..{int(idx.max())}")  # fmt: skip
        logits = self.score(self.contexts(idx))  # (B, T, N) -> (B, T, V)
        return LMOutput(logits=logits, loss=lm_loss(logits, targets))


@torch.no_grad()
def perplexity(model: NPLM, ids, batch_tokens: int = 65536) -> float:
    """exp(mean negative log-likelihood) of every token of ``ids``, the first ones predicted
    from the padding id: the units of `lmlib.ngram.NGramLM.perplexity` (per token, base e).

    ``ids`` is a 1-D sequence of token ids; it is scored in pieces of ``batch_tokens``
    targets, each piece with the N tokens before it as context, so the result does not
    depend on ``batch_tokens``. A model that knows nothing scores V:

    >>> model = NPLM(NPLMConfig(vocab_size=7, context=2))
    >>> _ = [nn.init.zeros_(p) for p in model.parameters()]
    >>> round(perplexity(model, [1, 2, 3, 4, 5]), 4)
    7.0
    """
    if not isinstance(model, NPLM):
        raise TypeError(f"model must be an NPLM, got {type(model).__name__}")
    check_int(batch_tokens, "batch_tokens", low=1)
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.is_floating_point() or len(ids) == 0:
        raise ValueError("ids must be a non-empty 1-D sequence of integer token ids")
    if not 0 <= int(ids.min()) <= int(ids.max()) < model.config.vocab_size:
        raise ValueError(f"token ids must be in [0, {model.config.vocab_size}), got "
                         f"{int(ids.min())}..{int(ids.max())}")  # fmt: skip
    device = next(model.parameters()).device
    n = model.config.context
    # Input at t is the token before target t: the pad id, then ids[:-1].
    inputs = torch.cat([torch.tensor([model.pad_id]), ids[:-1].long()]).to(device)
    targets = ids.long().to(device)
    nll = 0.0
    with eval_mode(model):
        for t0 in range(0, len(ids), batch_tokens):
            t1 = min(t0 + batch_tokens, len(ids))
            start = max(0, t0 - n + 1)  # the N - 1 inputs before t0 complete its context
            piece = inputs[start:t1]
            ctx = model.contexts(piece[None])[0, t0 - start :]  # (T, N)
            logits = model.score(ctx)  # (T, V)
            nll += F.cross_entropy(logits.float(), targets[t0:t1], reduction="sum").item()
    return math.exp(nll / len(ids))
