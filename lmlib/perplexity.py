"""Perplexity: how surprised a model is by a text, exp of its mean cross-entropy (Ch. 4).

A model that gives the true next tokens probabilities p_1, ..., p_N has cross-entropy
H = -(1/N) sum log p_t and perplexity exp(H): the number of equally likely tokens it is
choosing among, on average. Uniform over V tokens it is exactly V; a perfect model scores 1.

A long text does not fit a model's context, so `sliding_window_perplexity` scores it in
blocks, each predicted from the window of tokens just before it. Chapter 7 uses it to
measure what quantization costs and what more context buys.

Shape legend: T time (tokens), V vocabulary size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lmlib.runtime import check_int


def logits_of(output) -> torch.Tensor:
    """The logits of a model's output: lmlib's `LMOutput`, Hugging Face's, or a tensor.

    >>> logits_of(torch.zeros(1, 2, 3)).shape
    torch.Size([1, 2, 3])
    """
    return getattr(output, "logits", output)


@torch.no_grad()
def sliding_window_perplexity(model, ids, window: int, stride: int | None = None) -> float:
    """exp(mean negative log-likelihood) of every token of ``ids`` after the first.

    Implements equation :eq:`eq-cross-entropy` of Chapter 4
    (:ref:`its tests <test-eq-cross-entropy>`).

    A model sees at most ``window`` tokens, so a long text is scored in blocks of ``stride``
    targets; each block is predicted from the ``window`` tokens just before it (fewer at the
    start). Every token is scored exactly once, with at least ``window - stride`` tokens of
    context. ``stride = window`` (the default) is cheapest: about one forward position per
    token, but the first target of each block sees little context. A smaller stride gives each
    token more context and costs about ``window / stride`` times more. With
    ``window >= len(ids) - 1`` this is exp of the model's ordinary mean cross-entropy.

    ``ids`` is a 1-D tensor or list of token ids; ``model(idx)`` must return logits (1, T, V)
    or an object with ``.logits`` (lmlib's models and Hugging Face's both do).

    A model that knows nothing (all logits equal) has perplexity V, whatever the text:

    >>> model = torch.nn.Embedding(5, 5)  # token -> its next-token logits, V = 5
    >>> _ = torch.nn.init.zeros_(model.weight)
    >>> round(sliding_window_perplexity(model, [0, 3, 1, 4, 2, 2], window=2), 4)
    5.0
    """
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.is_floating_point() or len(ids) < 2:
        raise ValueError("ids must be a 1-D sequence of at least 2 integer token ids")
    check_int(window, "window", low=1)
    stride = window if stride is None else check_int(stride, "stride", low=1)
    if not 1 <= stride <= window:
        raise ValueError(f"need 1 <= stride <= window, got stride {stride}, window {window}")
    device = next(model.parameters()).device
    ids = ids.long().to(device)
    nll, n = 0.0, 0
    for t0 in range(1, len(ids), stride):  # targets t0 .. t1 - 1
        t1 = min(t0 + stride, len(ids))
        begin = max(0, t1 - 1 - window)  # inputs begin .. t1 - 2 predict tokens begin+1 .. t1-1
        logits = logits_of(model(ids[None, begin : t1 - 1]))[0]  # (T, V)
        logits = logits[t0 - 1 - begin :].float()  # only this block's targets
        nll += F.cross_entropy(logits, ids[t0:t1], reduction="sum").item()
        n += t1 - t0
    return math.exp(nll / n)
