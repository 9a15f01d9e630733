"""Pre-training objectives as data transformations: raw text in, (input, target) pairs out.

Every self-supervised objective makes its own labels from unlabelled text. What differs is
how the input is damaged and what the model must restore (Chapter 2):

- `causal_lm_pairs`, GPT: the input is the text, the target the text shifted by one.
- `mask_tokens`, BERT (Devlin et al. 2019, Section 3.1): 15% of the tokens are chosen as
  targets; of those, 80% are replaced by ``[MASK]``, 10% by a random token and 10% kept, so
  the model cannot count on seeing ``[MASK]`` wherever it must predict.
- `next_sentence_pairs` and `pack_pair`, BERT's second task: is sentence B the one that
  follows A (half the time), or a random sentence from another document?
- `random_spans_mask`, `span_corruption` and `restore_spans`, T5 (Raffel et al. 2020,
  Section 3.1.4 and Figure 2): spans of about 3 tokens, 15% of the text in all, are each
  replaced by one sentinel token in the input; the target lists every sentinel followed by
  the tokens it hides, and one last sentinel.

All randomness comes from a generator or seed the caller passes, so the same seed gives the
same examples. Positions that are not targets get the label -100, the ``ignore_index`` of
PyTorch's cross-entropy (and of Hugging Face's models).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lmlib.runtime import check_int, check_number

IGNORE = -100  # label of a position that is not a target


def causal_lm_pairs(ids: Sequence) -> tuple[list, list]:
    """(inputs, targets) of next-token prediction: the sequence shifted by one.

    >>> causal_lm_pairs([10, 20, 30, 40])
    ([10, 20, 30], [20, 30, 40])
    """
    ids = list(ids)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 tokens for one (input, target) pair, got {len(ids)}")
    return ids[:-1], ids[1:]


def mask_tokens(
    ids,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
    special_ids: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM inputs and labels: ``(inputs, labels)``, both shaped like ``ids``.

    Each token not in ``special_ids`` (``[CLS]``, ``[SEP]``, padding) is selected with
    probability ``mask_prob``. A selected token keeps its id as its label and, in the input,
    becomes ``mask_id`` with probability 0.8, a uniformly random id in [0, ``vocab_size``)
    with probability 0.1, and stays itself with probability 0.1. Every other label is -100.

    >>> ids = torch.tensor([5, 6, 7, 8, 9, 10])
    >>> inputs, labels = mask_tokens(ids, mask_id=0, vocab_size=11, mask_prob=1.0,
    ...                              generator=torch.Generator().manual_seed(34))
    >>> labels.tolist()  # every token selected: every label is the original id
    [5, 6, 7, 8, 9, 10]
    >>> inputs.tolist()  # four [MASK] (0), 8 kept, 10 replaced by a random id (2)
    [0, 0, 0, 8, 0, 2]
    """
    ids = torch.as_tensor(ids)
    ids = ids.long() if ids.numel() == 0 else ids  # [] becomes a float tensor
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"ids must hold integer token ids, got {ids.dtype}")
    check_int(vocab_size, "vocab_size", low=1)
    check_int(mask_id, "mask_id", low=0, high=vocab_size - 1)
    check_number(mask_prob, "mask_prob", 0, 1)
    if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < vocab_size:
        raise ValueError(f"token ids must be in [0, {vocab_size}), got "
                         f"{int(ids.min())}..{int(ids.max())}")  # fmt: skip
    ids = ids.long()
    draw = torch.rand((3, *ids.shape), generator=generator)  # three uniforms per position
    selected = draw[0] < mask_prob
    for s in special_ids:
        selected &= ids != s
    labels = torch.where(selected, ids, IGNORE)
    to_mask = selected & (draw[1] < 0.8)
    to_random = selected & (draw[1] >= 0.8) & (draw[1] < 0.9)  # the last 0.1: kept
    random_ids = (draw[2] * vocab_size).long().clamp(max=vocab_size - 1)  # uniform ids
    inputs = torch.where(to_mask, mask_id, torch.where(to_random, random_ids, ids))
    return inputs, labels


@dataclass(frozen=True)
class SentencePair:
    first: list  # sentence A
    second: list  # sentence B
    is_next: bool  # True: B follows A in the same document (BERT's IsNext label)


def next_sentence_pairs(documents: Sequence[Sequence], seed: int = 0) -> list[SentencePair]:
    """BERT's next-sentence-prediction examples: for every sentence A that has a successor,
    B is that successor with probability 1/2 (``is_next``), else a random sentence of a
    random *other* document (so it is certainly not the next one).

    >>> docs = [["a1", "a2", "a3"], ["b1", "b2"]]
    >>> [(p.first, p.second, p.is_next) for p in next_sentence_pairs(docs, seed=0)]
    [('a1', 'b2', False), ('a2', 'a3', True), ('b1', 'b2', True)]
    """
    check_int(seed, "seed", low=0)
    if isinstance(documents, str) or len(documents) < 2:
        raise ValueError("documents must be a list of at least 2 documents (lists of "
                         "sentences): a NotNext sentence comes from another document")  # fmt: skip
    if not all(len(doc) >= 1 and not isinstance(doc, str) for doc in documents):
        raise ValueError("each document must be a non-empty list of sentences")
    rng = np.random.default_rng(seed)
    pairs = []
    for d, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if rng.random() < 0.5:
                pairs.append(SentencePair(doc[i], doc[i + 1], True))
            else:
                other = (d + 1 + rng.integers(len(documents) - 1)) % len(documents)  # != d
                pick = documents[other][rng.integers(len(documents[other]))]
                pairs.append(SentencePair(doc[i], pick, False))
    return pairs


def pack_pair(first: Sequence, second: Sequence, cls, sep) -> tuple[list, list[int]]:
    """BERT's input for a pair: ``[CLS] A [SEP] B [SEP]`` and the segment ids (0 for A's
    part, 1 for B's), which tell the model where one sentence ends.

    >>> pack_pair(["my", "dog"], ["he", "barks"], "[CLS]", "[SEP]")
    (['[CLS]', 'my', 'dog', '[SEP]', 'he', 'barks', '[SEP]'], [0, 0, 0, 0, 1, 1, 1])
    """
    tokens = [cls, *first, sep, *second, sep]
    return tokens, [0] * (len(first) + 2) + [1] * (len(second) + 1)


def _segments(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """A random split of n_items into n_segments non-empty parts (T5's segmentation)."""
    first = np.zeros(n_items, dtype=int)  # 1 where a new segment starts, at n_segments - 1
    first[1 + rng.permutation(n_items - 1)[: n_segments - 1]] = 1  # of the n_items - 1 gaps
    return np.bincount(np.cumsum(first), minlength=n_segments)


def random_spans_mask(
    length: int,
    rng: np.random.Generator,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
) -> np.ndarray:
    """T5's ``random_spans_noise_mask``: True for the tokens to hide, False for the rest.

    round(length * noise_density) tokens are hidden (at least 1, at most length - 1), in
    round(that / mean_span_length) spans (at least 1); the spans' lengths and the gaps
    between them are random, the mask starts with a kept token and ends with a hidden one.

    >>> random_spans_mask(20, np.random.default_rng(0)).astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    """
    check_int(length, "length", low=2)
    check_number(noise_density, "noise_density", 0, 1, open_low=True)
    check_number(mean_span_length, "mean_span_length", low=1)
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = max(round(n_noise / mean_span_length), 1)
    n_spans = min(n_spans, length - n_noise)  # every span needs a kept token before it
    noise = _segments(n_noise, n_spans, rng)
    kept = _segments(length - n_noise, n_spans, rng)
    lengths = np.stack([kept, noise], axis=1).ravel()  # kept, noise, kept, noise, ...
    return np.repeat(np.arange(2 * n_spans) % 2 == 1, lengths)


def span_corruption(
    tokens: Sequence[Hashable], noise_mask: Sequence[bool], sentinels: Sequence[Hashable]
) -> tuple[list, list]:
    """T5's (inputs, targets): each run of masked tokens becomes one sentinel in the input;
    the target is each sentinel followed by the tokens it hides, then one final sentinel.
    Span i uses ``sentinels[i]`` (T5: ``<extra_id_0>``, ``<extra_id_1>``, ...).

    The example of the T5 paper's Figure 2 (Raffel et al. 2020):

    >>> text = "Thank you for inviting me to your party last week .".split()
    >>> hide = [w in ("for", "inviting", "last") for w in text]
    >>> inputs, targets = span_corruption(text, hide, ["<X>", "<Y>", "<Z>"])
    >>> " ".join(inputs)
    'Thank you <X> me to your party <Y> week .'
    >>> " ".join(targets)
    '<X> for inviting <Y> last <Z>'
    """
    tokens, noise_mask = list(tokens), [bool(m) for m in noise_mask]
    if len(noise_mask) != len(tokens):
        raise ValueError(f"noise_mask has {len(noise_mask)} entries for {len(tokens)} tokens")
    n_spans = sum(m and (i == 0 or not noise_mask[i - 1]) for i, m in enumerate(noise_mask))
    if len(sentinels) < n_spans + 1:
        raise ValueError(f"{n_spans} spans need {n_spans + 1} sentinels (one per span and a "
                         f"final one), got {len(sentinels)}")  # fmt: skip
    clash = set(sentinels[: n_spans + 1]) & set(tokens)
    if clash:
        raise ValueError(f"sentinels must not occur in the text, found {sorted(map(str, clash))}")
    inputs, targets, span = [], [], -1
    for i, (tok, hidden) in enumerate(zip(tokens, noise_mask)):
        if hidden and (i == 0 or not noise_mask[i - 1]):  # a span starts
            span += 1
            inputs.append(sentinels[span])
            targets.append(sentinels[span])
        (targets if hidden else inputs).append(tok)
    targets.append(sentinels[span + 1])
    return inputs, targets


def restore_spans(inputs: Sequence, targets: Sequence, sentinels: Sequence) -> list:
    """The original text from `span_corruption`'s output: each sentinel of the input
    replaced by the tokens that follow the same sentinel in the target.

    >>> restore_spans(["a", "<X>", "d"], ["<X>", "b", "c", "<Y>"], ["<X>", "<Y>"])
    ['a', 'b', 'c', 'd']
    """
    where = {s: i for i, s in enumerate(sentinels)}
    spans: dict = {}
    current = None
    for tok in targets:
        if tok in where:
            current = tok
            spans[current] = []
        elif current is None:
            raise ValueError(f"targets must start with a sentinel, got {tok!r}")
        else:
            spans[current].append(tok)
    out = []
    for tok in inputs:
        if tok in where:
            if tok not in spans:
                raise ValueError(f"sentinel {tok!r} of the inputs is not in the targets")
            out.extend(spans[tok])
        else:
            out.append(tok)
    return out


def t5_sentinels(vocab_size: int, n: int) -> list[int]:
    """T5's sentinel ids: ``<extra_id_0>`` is the last id of the vocabulary, then down.

    >>> t5_sentinels(32100, 3)  # t5-small: <extra_id_0> = 32099
    [32099, 32098, 32097]
    """
    check_int(vocab_size, "vocab_size", low=1)
    check_int(n, "n", low=0, high=vocab_size)
    return [vocab_size - 1 - i for i in range(n)]
