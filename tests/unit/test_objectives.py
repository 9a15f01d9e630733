"""lmlib.objectives: BERT's 80/10/10 by counting, NSP, T5's span corruption and its figure."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.objectives import (
    IGNORE,
    causal_lm_pairs,
    mask_tokens,
    next_sentence_pairs,
    pack_pair,
    random_spans_mask,
    restore_spans,
    span_corruption,
    t5_sentinels,
)


def within(count, n, p, sigmas=5.0):
    """A binomial count within `sigmas` standard deviations of n p."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_causal_lm_pairs():
    assert causal_lm_pairs([3, 1, 4, 1]) == ([3, 1, 4], [1, 4, 1])
    assert causal_lm_pairs("ab") == (["a"], ["b"])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        causal_lm_pairs([7])


def test_bert_masking_selects_15_percent_and_splits_80_10_10():
    """Counted on 400,000 seeded tokens: every share within 5 standard deviations."""
    V, MASK, n = 1000, 0, 400_000
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, V, (n,), generator=g)
    inputs, labels = mask_tokens(ids, MASK, V, torch.Generator().manual_seed(1))
    selected = labels != IGNORE
    k = int(selected.sum())
    assert within(k, n, 0.15)
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])  # the rest untouched
    x, orig = inputs[selected], ids[selected]
    # a random id may happen to be [MASK] or the original: 1/V of the random 10% each
    assert within(int((x == MASK).sum()), k, 0.8 + 0.1 / V)
    assert within(int((x == orig).sum()), k, 0.1 + 0.1 / V)
    other = x[(x != MASK) & (x != orig)]
    assert within(len(other), k, 0.1 * (1 - 2 / V))
    # the random ones are uniform over the vocabulary: about 1/4 in each quarter
    quarters = torch.bincount(other * 4 // V, minlength=4)
    assert all(within(int(q), len(other), 0.25) for q in quarters)


def test_masking_skips_special_tokens_keeps_shape_and_is_seeded():
    ids = torch.tensor([[101, 5, 6, 7, 102], [101, 8, 9, 102, 0]])
    a = mask_tokens(ids, 103, 200, torch.Generator().manual_seed(3), 0.9, (0, 101, 102))
    b = mask_tokens(ids, 103, 200, torch.Generator().manual_seed(3), 0.9, (0, 101, 102))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    inputs, labels = a
    assert inputs.shape == labels.shape == ids.shape
    special = (ids == 0) | (ids == 101) | (ids == 102)
    assert (labels[special] == IGNORE).all() and torch.equal(inputs[special], ids[special])
    none = mask_tokens(ids, 103, 200, mask_prob=0.0)
    assert torch.equal(none[0], ids) and (none[1] == IGNORE).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 49), min_size=0, max_size=60), st.integers(0, 2**31),
       st.floats(0, 1))  # fmt: skip
def test_masking_ids_and_lengths_stay_in_range(ids, seed, p):
    inputs, labels = mask_tokens(ids, 3, 50, torch.Generator().manual_seed(seed), p)
    assert len(inputs) == len(labels) == len(ids)
    assert ((inputs >= 0) & (inputs < 50)).all()
    chosen = labels != IGNORE
    assert labels[chosen].tolist() == [i for i, c in zip(ids, chosen.tolist()) if c]


def test_masking_bad_input():
    with pytest.raises(ValueError, match="mask_id must be an int in"):
        mask_tokens([1, 2], mask_id=10, vocab_size=10)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 10\), got 1..12"):
        mask_tokens([1, 12], mask_id=0, vocab_size=10)
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens([1, 2], mask_id=0, vocab_size=10, mask_prob=1.5)
    with pytest.raises(TypeError, match="integer token ids"):
        mask_tokens(torch.tensor([0.5]), mask_id=0, vocab_size=10)


def test_next_sentence_pairs_half_true_successors_half_other_documents():
    docs = [[(d, i) for i in range(20)] for d in range(30)]  # sentence = (document, position)
    pairs = next_sentence_pairs(docs, seed=0)
    assert len(pairs) == 30 * 19  # one per sentence that has a successor
    assert within(sum(p.is_next for p in pairs), len(pairs), 0.5)
    for p in pairs:
        (d, i), (d2, i2) = p.first, p.second
        assert (d2, i2) == (d, i + 1) if p.is_next else d2 != d
    assert next_sentence_pairs(docs, seed=0) == pairs  # seeded
    assert pack_pair([1, 2], [3], 101, 102) == ([101, 1, 2, 102, 3, 102], [0, 0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="at least 2 documents"):
        next_sentence_pairs([["a", "b"]])
    with pytest.raises(ValueError, match="non-empty list"):
        next_sentence_pairs([["a", "b"], []])


def test_span_corruption_reproduces_t5_figure_2():
    """Raffel et al. (2020), Figure 2, checked by hand: "for inviting" and "last" dropped."""
    text = "Thank you for inviting me to your party last week .".split()
    mask = [0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0]
    inputs, targets = span_corruption(text, mask, ["<X>", "<Y>", "<Z>"])
    assert inputs == "Thank you <X> me to your party <Y> week .".split()
    assert targets == "<X> for inviting <Y> last <Z>".split()
    assert restore_spans(inputs, targets, ["<X>", "<Y>", "<Z>"]) == text
    # the same with t5-small's ids: <extra_id_0> is 32099, then 32098, 32097
    ids = list(range(11))
    inputs, targets = span_corruption(ids, mask, t5_sentinels(32100, 3))
    assert inputs == [0, 1, 32099, 4, 5, 6, 7, 32098, 9, 10]
    assert targets == [32099, 2, 3, 32098, 8, 32097]


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 300), st.floats(0.05, 0.5), st.floats(1.0, 8.0), st.integers(0, 2**31))
def test_random_spans_then_corruption_restore_the_text(length, density, span, seed):
    mask = random_spans_mask(length, np.random.default_rng(seed), density, span)
    n_noise = min(max(round(length * density), 1), length - 1)
    assert mask.dtype == bool and len(mask) == length and mask.sum() == n_noise
    assert not mask[0] and mask[-1]  # starts with a kept token, ends with a hidden one
    n_spans = int((mask[1:] & ~mask[:-1]).sum())
    assert n_spans == min(max(round(n_noise / span), 1), length - n_noise)
    tokens = list(range(length))
    sentinels = t5_sentinels(100_000, n_spans + 1)
    inputs, targets = span_corruption(tokens, mask, sentinels)
    assert len(inputs) == length - n_noise + n_spans
    assert len(targets) == n_noise + n_spans + 1
    assert restore_spans(inputs, targets, sentinels) == tokens


def test_span_corruption_bad_input():
    with pytest.raises(ValueError, match="2 spans need 3 sentinels"):
        span_corruption("abcde", [1, 0, 0, 1, 0], ["<X>", "<Y>"])
    with pytest.raises(ValueError, match="must not occur in the text"):
        span_corruption(["a", "<X>", "c"], [1, 0, 0], ["<X>", "<Y>"])
    with pytest.raises(ValueError, match="4 entries for 3 tokens"):
        span_corruption("abc", [1, 0, 0, 0], ["<X>", "<Y>"])
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        random_spans_mask(1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="start with a sentinel"):
        restore_spans(["a"], ["b", "<X>"], ["<X>"])
