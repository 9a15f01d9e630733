"""Memorization: does a model reproduce its training data word for word? (Chapter 7)

Carlini et al. (2021) test it directly: take a passage of the training data, prompt the
model with its first ``prefix_len`` tokens, decode greedily, and compare the next
``suffix_len`` tokens with the passage's true continuation. `probe_memorization` returns
what came out, row by row, and how many leading tokens matched; `memorization_rate` is the
share of passages reproduced exactly. Comparing passages seen often, seen once and never
seen shows that repetition in the training data drives memorization.

Shape legend: N passages (starts), T time.

A "model" that has memorized counting (it predicts token + 1) reproduces counting, and stops
matching where the data stops counting:

>>> class Counter(torch.nn.Module):
...     def __init__(self, V=10):
...         super().__init__()
...         self.next = torch.nn.Parameter(torch.eye(V).roll(1, dims=1) * 10)  # t -> t + 1
...     def forward(self, idx):  # (N, T) -> logits (N, T, V)
...         return self.next[idx]
>>> probe = probe_memorization(Counter(), [0, 1, 2, 3, 4, 5, 9, 7], [0, 2], 2, 3)
>>> probe.generated  # after [0, 1]: 2 3 4; after [2, 3]: 4 5 6
tensor([[2, 3, 4],
        [4, 5, 6]])
>>> probe.expected  # the data continues with 2 3 4, and with 4 5 9
tensor([[2, 3, 4],
        [4, 5, 9]])
>>> probe.matching, probe.verbatim, probe.rate
(tensor([3, 2]), tensor([ True, False]), 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlib.perplexity import logits_of
from lmlib.runtime import check_int, eval_mode


@dataclass
class Memorization:
    """What `probe_memorization` found; row i belongs to ``starts[i]``."""

    prompts: torch.Tensor  # (N, prefix_len) the data's tokens the model was prompted with
    generated: torch.Tensor  # (N, suffix_len) what greedy decoding produced
    expected: torch.Tensor  # (N, suffix_len) the data's true continuation
    matching: torch.Tensor  # (N,) leading generated tokens equal to expected, 0..suffix_len

    @property
    def verbatim(self) -> torch.Tensor:
        """(N,) bool: the whole continuation came out exactly."""
        return self.matching == self.expected.size(1)

    @property
    def rate(self) -> float:
        """Share of the passages reproduced exactly."""
        return self.verbatim.float().mean().item()


@torch.no_grad()
def probe_memorization(model, data, starts, prefix_len: int, suffix_len: int) -> Memorization:
    """For each start s: prompt with data[s : s + prefix_len], decode ``suffix_len`` tokens
    greedily, and compare them with data[s + prefix_len : s + prefix_len + suffix_len].

    Greedy decoding re-reads the whole (short) prompt at every step, so any model that maps
    idx (N, T) to logits works; ``prefix_len + suffix_len`` must fit its context. The result
    is on the CPU.
    """
    data = torch.as_tensor(data)
    if data.dim() != 1 or data.is_floating_point():
        raise ValueError("data must be a 1-D sequence of integer token ids")
    check_int(prefix_len, "prefix_len", low=1)
    check_int(suffix_len, "suffix_len", low=1)
    starts = torch.as_tensor(starts)
    if starts.numel() and (starts.is_floating_point() or starts.dtype == torch.bool):
        raise TypeError(f"starts must be integer positions in data, got {starts.dtype}")
    starts = starts.long().reshape(-1)  # (N,)
    end = prefix_len + suffix_len
    if len(starts) == 0 or starts.min() < 0 or starts.max() + end > len(data):
        raise ValueError(f"every start s needs 0 <= s and s + {end} <= {len(data)} tokens")
    device = next(model.parameters()).device
    windows = data[starts[:, None] + torch.arange(end)].to(device)  # (N, prefix + suffix)
    idx = windows[:, :prefix_len]  # (N, prefix_len)
    with eval_mode(model):
        for _ in range(suffix_len):
            next_token = logits_of(model(idx))[:, -1].argmax(-1)  # (N,)
            idx = torch.cat([idx, next_token[:, None]], dim=1)
    generated, expected = idx[:, prefix_len:].cpu(), windows[:, prefix_len:].cpu()
    same = generated == expected  # (N, suffix_len)
    matching = same.long().cumprod(dim=1).sum(dim=1)  # the leading run of matches
    return Memorization(windows[:, :prefix_len].cpu(), generated, expected, matching)


def verbatim_matches(model, data, starts, prefix_len: int, suffix_len: int) -> torch.Tensor:
    """(N,) int64: how many leading tokens of each continuation greedy decoding reproduced,
    from 0 to ``suffix_len`` (all: verbatim). See `probe_memorization`."""
    return probe_memorization(model, data, starts, prefix_len, suffix_len).matching


def memorization_rate(model, data, starts, prefix_len: int, suffix_len: int) -> float:
    """Share of ``starts`` whose next ``suffix_len`` tokens greedy decoding reproduces exactly
    from the ``prefix_len`` tokens before them (see `probe_memorization`)."""
    return probe_memorization(model, data, starts, prefix_len, suffix_len).rate
