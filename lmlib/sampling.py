"""From one step's next-token logits to a token: logits processors and sampling (Chapter 5).

A language model gives scores (logits) for every vocabulary entry; a decoding rule turns them
into the next token. Read top to bottom, each piece adds one idea:

- Logits processors, pure functions (B, V) -> (B, V) with Hugging Face's semantics:
  `apply_temperature`, `top_k_filter`, `top_p_filter`, `min_p_filter` and
  `apply_repetition_penalty`.
- `FixedForm`: structured generation, only the tokens a fixed form allows at each position
  (Chapter 5 writes five-character quatrains with it).
- `sample`: temperature, then the filters, then one random draw per row (`draw`).

Any callable ``processor(tokens, logits) -> logits`` (tokens (B, t): the sequence so far;
logits (B, V)) can join the decoding loop through
``GenerationConfig(logits_processors=[...])`` in `lmlib.generate`. That is Hugging Face's
``LogitsProcessor`` signature, so its processors plug in unchanged.

Shape legend: B batch, t tokens so far, V vocabulary size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lmlib.runtime import check_int, check_number

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (tokens, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature: below 1 sharpens the distribution, above 1 flattens it.

    softmax([2, 0]) = [0.88, 0.12]; at temperature 2 it is softmax([1, 0]) = [0.73, 0.27].

    >>> apply_temperature(torch.tensor([[2.0, 0.0]]), 2.0)
    tensor([[1., 0.]])
    """
    # Greedy decoding is do_sample=False, not temperature 0; inf would make all tokens alike.
    check_number(temperature, "temperature", low=0, open_low=True)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th all stay); the rest -> -inf.

    >>> top_k_filter(torch.tensor([[1.0, 3.0, 2.0, 0.0]]), k=2)
    tensor([[-inf, 3., 2., -inf]])
    """
    check_int(k, "top_k", low=1)
    kth = logits.topk(min(k, logits.size(-1)), dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling: keep the smallest set of most likely tokens whose probability sums
    to at least p (always at least one token); the rest -> -inf.

    With probabilities [0.5, 0.3, 0.2] and p = 0.7, the top two (0.5 + 0.3 = 0.8 >= 0.7)
    stay. Like Hugging Face, it drops from the unlikely end every token whose cumulative
    probability, counted from the least likely up, is <= 1 - p.

    >>> top_p_filter(torch.tensor([0.5, 0.3, 0.2]).log()[None], p=0.7).exp()
    tensor([[0.5000, 0.3000, 0.0000]])

    Sorting whole rows is the slow part: 0.16 s a step for 70 rows of SmolLM2's 49,152
    tokens on 2 cores, longer than the rest of sampling. The kept tokens are nearly always
    a few hundred at most, so with a large vocabulary we first look at the ``TOP_P_FIRST``
    most likely: a token stays if the tokens more likely than it sum to less than p (the
    same rule, counted from the other end, so rounding can differ for a token whose sum
    lies within about 1e-6 of p), and a row whose candidates sum to less than p is sorted
    in full.
    """
    check_number(p, "top_p", 0, 1, open_low=True)
    keep = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    if 0 < TOP_P_FIRST < logits.size(-1) and p < 1:
        top, index = logits.softmax(dim=-1).topk(TOP_P_FIRST, dim=-1)  # (B, K), descending
        above = top.cumsum(dim=-1) - top  # (B, K): the probability of the more likely ones
        keep.scatter_(-1, index, above < p)
        unsure = top.sum(dim=-1) < p  # (B,): tokens past the first K may still stay
        if not unsure.any():
            return logits.masked_fill(~keep, float("-inf"))
        keep[unsure] = _nucleus_by_sorting(logits[unsure], p)
        return logits.masked_fill(~keep, float("-inf"))
    return logits.masked_fill(~_nucleus_by_sorting(logits, p), float("-inf"))


TOP_P_FIRST = 1024  # top_p_filter's first look; 0 always sorts whole rows


def _nucleus_by_sorting(logits: torch.Tensor, p: float) -> torch.Tensor:
    """(B, V) bool, True for the tokens top-p keeps: Hugging Face's rule on sorted rows."""
    sorted_logits, order = logits.sort(dim=-1)  # ascending: least likely first
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    remove = cumulative <= 1 - p
    remove[..., -1] = False  # the most likely token always stays
    return ~remove.scatter(-1, order, remove)  # back to vocabulary order


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times the top token's; the rest -> -inf.

    The cut follows the model's confidence: with probabilities [0.6, 0.3, 0.1] and
    min_p = 0.25 the bar is 0.15, so 0.1 goes.

    >>> min_p_filter(torch.tensor([0.6, 0.3, 0.1]).log()[None], min_p=0.25).exp()
    tensor([[0.6000, 0.3000, 0.0000]])
    """
    check_number(min_p, "min_p", 0, 1)
    probs = logits.softmax(dim=-1)  # (B, V)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    remove = remove.scatter(-1, probs.argmax(dim=-1, keepdim=True), False)  # keep one
    return logits.masked_fill(remove, float("-inf"))


def apply_repetition_penalty(logits, idx, penalty: float, attention_mask=None):
    """Make every token that occurs in idx (B, T) less likely: the CTRL rule, as in Hugging Face.

    A positive logit is divided by the penalty and a negative one multiplied, so both move
    down. Positions where ``attention_mask`` is 0 (padding) do not count.

    >>> logits = torch.tensor([[2.0, -2.0, 2.0]])
    >>> apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), penalty=2.0)  # 2 unseen
    tensor([[ 1., -4.,  2.]])
    """
    check_number(penalty, "repetition_penalty", low=0, open_low=True)
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.dim() != 2:
        raise TypeError(f"idx must be a (B, T) torch.long tensor of token ids, got "
                        f"{getattr(idx, 'dtype', type(idx).__name__)}")  # fmt: skip
    weight = torch.ones_like(idx) if attention_mask is None else attention_mask.long()
    counts = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
    seen = counts.scatter_add(-1, idx, weight) > 0  # (B, V): token occurs in a real position
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


class FixedForm:
    """Structured generation: the token at position ``start + i`` of the sequence must be one
    of ``allowed[i]``; other positions are free. A logits processor (see the module docstring).

    ``allowed[i]`` is a (V,) bool mask of the tokens allowed there, or one token id, which
    is then forced. ``start`` is where the form begins, counted in tokens from the start of
    the sequence (the prompt included); positions inside the prompt are simply never asked.
    Disallowed tokens get logit -inf, so greedy decoding and every sampling filter skip them.

    A form of three positions over a vocabulary of 4, starting after one prompt token: two
    tokens from {1, 2}, then token 3.

    >>> two = torch.tensor([False, True, True, False])
    >>> form = FixedForm([two, two, 3], start=1)
    >>> logits = torch.zeros(1, 4)
    >>> form(torch.tensor([[0]]), logits)  # the next token is the form's position 0
    tensor([[-inf, 0., 0., -inf]])
    >>> form(torch.tensor([[0, 1, 2]]), logits)  # position 2: token 3 is forced
    tensor([[-inf, -inf, -inf, 0.]])
    >>> form(torch.tensor([[0, 1, 2, 3]]), logits)  # past the form: unchanged
    tensor([[0., 0., 0., 0.]])
    """

    def __init__(self, allowed: Sequence[torch.Tensor | int], start: int = 0):
        if isinstance(allowed, torch.Tensor) or not allowed:
            raise ValueError("allowed must be a non-empty list: one bool mask or token id per "
                             "position of the form")  # fmt: skip
        for i, entry in enumerate(allowed):
            is_id = isinstance(entry, int) and not isinstance(entry, bool) and entry >= 0
            is_mask = isinstance(entry, torch.Tensor) and entry.dim() == 1
            if not (is_id or (is_mask and entry.dtype == torch.bool)):
                raise ValueError(f"allowed[{i}] must be a (V,) bool tensor or a token id >= 0, "
                                 f"got {entry!r}")  # fmt: skip
        check_int(start, "start", low=0)
        self.allowed, self.start = list(allowed), start

    def __len__(self) -> int:
        return len(self.allowed)

    def __call__(self, tokens: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        position = tokens.size(1) - self.start  # where in the form the next token goes
        if not 0 <= position < len(self.allowed):
            return logits
        entry, V = self.allowed[position], logits.size(-1)
        if isinstance(entry, int):
            if entry >= V:
                raise ValueError(f"allowed[{position}] is token {entry}, outside the "
                                 f"vocabulary of {V}")  # fmt: skip
            keep = torch.zeros(V, dtype=torch.bool, device=logits.device)
            keep[entry] = True
        else:
            if entry.numel() != V:
                raise ValueError(f"allowed[{position}] has {entry.numel()} entries, the "
                                 f"vocabulary {V}")  # fmt: skip
            keep = entry.to(logits.device)
        return logits.masked_fill(~keep, float("-inf"))  # (B, V); the mask broadcasts


def sample(logits, temperature=1.0, top_k=None, top_p=None, min_p=None, generator=None):
    """One token per row, (B, V) -> (B,): temperature, then the filters, then a random draw.

    The order is Hugging Face's: temperature, top-k, top-p, min-p. A filter left at None is
    off. With one token left there is nothing to draw:

    >>> sample(torch.tensor([[0.0, 5.0, 1.0]]), top_k=1)
    tensor([1])
    """
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    probs = logits.softmax(dim=-1)  # (B, V), zero where filtered
    return draw(probs, generator)  # (B,)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of probs (B, V), (B, V) -> (B,): ``torch.multinomial(probs, 1)``
    with the same random numbers, so the same tokens for the same seed, faster on a CPU.

    torch.multinomial draws one token as an exponential race: q ~ Exp(1) for every entry,
    then argmax(p / q), and token i wins with probability p_i / sum(p). Its CPU kernel makes
    each q in a scalar loop, 70-80 ms for 56 rows of SmolLM2's 49,152 tokens on 2 cores, a
    third of the model's decoding step for them. Here the same numbers come from one
    vectorized float64 uniform draw: PyTorch's exponential is q = -log1p(-u) with u from
    that draw, bit for bit (`tests/unit/test_sampling.py` checks it, rows and seeds at
    random), 32-35 ms against 65-72 ms. Off the CPU, torch.multinomial draws.

    >>> p = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    >>> draw(p, torch.Generator().manual_seed(0))[0].item()  # row 0 can only give 1
    1
    """
    if probs.device.type != "cpu" or probs.dim() != 2 or not probs.is_floating_point():
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    # torch.multinomial's own checks, with its messages
    totals = probs.sum(dim=-1)  # (B,): nan or inf if any entry is
    if not bool(torch.isfinite(totals).all()) or bool((probs < 0).any()):
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if not bool((totals > 0).all()):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    u = torch.rand(probs.shape, dtype=torch.float64, generator=generator)  # (B, V) in [0, 1)
    q = torch.log1p(-u).neg_().to(probs.dtype)  # (B, V): Exp(1), as torch.multinomial's
    return (probs / q).argmax(dim=-1)  # (B,)
