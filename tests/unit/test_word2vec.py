"""lmlib.word2vec: the SGNS loss against its formula, the sampling rules, neighbours found."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.word2vec import (
    SkipGram,
    Word2Vec,
    Word2VecConfig,
    build_vocab,
    keep_probabilities,
    noise_distribution,
    sgns_loss,
    skipgram_pairs,
    train_word2vec,
)

torch.set_num_threads(1)


def test_sgns_loss_matches_logsigmoid_formula():
    """-log sigma(u_o . v_c) - sum_k log sigma(-u_k . v_c): by hand, then on random batches."""
    v = torch.tensor([[1.0, 0.0]])
    u_o = torch.tensor([[2.0, 1.0]])  # u_o . v_c = 2
    u_noise = torch.tensor([[[1.0, 1.0], [-1.0, 0.0]]])  # scores 1 and -1
    by_hand = math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1)) + math.log(1 + math.exp(-1))
    assert sgns_loss(v, u_o, u_noise).item() == pytest.approx(by_hand, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    v, u_o, u_noise = (torch.randn(*s, generator=g) for s in [(6, 3), (6, 3), (6, 4, 3)])
    reference = -(
        F.logsigmoid((u_o * v).sum(-1)) + F.logsigmoid(-(u_noise @ v[:, :, None])[..., 0]).sum(-1)
    ).mean()
    torch.testing.assert_close(sgns_loss(v, u_o, u_noise), reference)
    # large scores stay finite: a confident right answer costs ~0, a confident wrong one ~x
    big = torch.tensor([[30.0]])
    assert sgns_loss(big, big, -big[:, None]).item() < 1e-6
    assert sgns_loss(big, -big, big[:, None]).item() == pytest.approx(2 * 900.0)


def test_sgns_loss_is_not_a_softmax_log_probability():
    """The popular L = -log p(o | c) with a softmax over the vocabulary is a different number,
    and the SGNS scores sigma(u_w . v_c) of all words do not sum to one."""
    g = torch.Generator().manual_seed(0)
    U, v = torch.randn(50, 8, generator=g), torch.randn(1, 8, generator=g)
    softmax_loss = F.cross_entropy(v @ U.T, torch.tensor([3]))
    sgns = sgns_loss(v, U[3:4], U[None, 10:15])
    assert abs(sgns.item() - softmax_loss.item()) > 0.1
    assert abs(torch.sigmoid(U @ v[0]).sum().item() - 1) > 1


def test_noise_distribution_and_subsampling_are_mikolovs():
    counts = np.array([1000, 100, 10, 1])
    p = noise_distribution(counts)
    np.testing.assert_allclose(p, counts**0.75 / (counts**0.75).sum())
    assert p[0] < counts[0] / counts.sum()  # frequent words drawn less than their share
    assert p[-1] > counts[-1] / counts.sum()  # rare ones more
    keep = keep_probabilities(counts, t=1e-2)
    f = counts / counts.sum()
    np.testing.assert_allclose(keep, np.minimum(1, np.sqrt(1e-2 / f)))
    assert keep[-1] == 1.0 and keep[0] < 0.11
    assert (keep_probabilities(counts, t=0) == 1).all()


def test_build_vocab_orders_by_count_and_drops_rare_words():
    words, counts = build_vocab("b a b c b a d".split(), min_count=2)
    assert words == ["b", "a"] and counts.tolist() == [3, 2]
    with pytest.raises(ValueError, match="min_count=5"):
        build_vocab(["a"], 5)
    with pytest.raises(TypeError, match="not one str"):
        build_vocab("a b", 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 10**6))
def test_skipgram_pairs_are_within_each_centres_own_window(n, window, seed):
    ids = np.arange(n)  # ids are positions: a pair's distance is visible
    pairs = skipgram_pairs(ids, window, np.random.default_rng(seed))
    assert pairs.shape[1] == 2 and len(pairs) <= 2 * window * n
    dist = np.abs(pairs[:, 0] - pairs[:, 1])
    assert ((dist >= 1) & (dist <= window)).all()
    for c in range(n):  # each centre: every word at distance <= b, on both sides
        ctx = set(pairs[pairs[:, 0] == c, 1].tolist())
        b = max((abs(o - c) for o in ctx), default=0)
        assert ctx == {o for o in range(max(0, c - b), min(n, c + b + 1)) if o != c}
        assert len({o - c for o in ctx} & {b, -b}) >= 1 or n == 1


def test_training_puts_words_of_one_topic_together():
    """Two topics that never share a sentence: each word's neighbours are its own topic's."""
    rng = np.random.default_rng(0)
    topics = [[f"a{i}" for i in range(6)], [f"b{i}" for i in range(6)]]
    words = []
    for _ in range(400):
        words += list(rng.choice(topics[rng.integers(2)], size=8))
    cfg = Word2VecConfig(d_embed=16, window=3, min_count=1, subsample=0, batch_size=256)
    model = train_word2vec(words, cfg)
    assert model.losses[0] == pytest.approx(6 * math.log(2), rel=1e-5)  # all scores 0
    assert np.mean(model.losses[-5:]) < model.losses[0] - 0.5
    for topic in topics:
        for word in topic:
            assert {w[0] for w, _ in model.nearest(word, 5)} == {word[0]}


def test_nearest_ranks_by_cosine():
    vectors = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    model = Word2Vec(["x", "y", "z", "w"], vectors)
    got = model.nearest("x", 3)
    assert [w for w, _ in got] == ["y", "z", "w"]  # cos 0.995, 0, -1: length ignored
    assert got[0][1] == pytest.approx(10 / math.sqrt(101), abs=1e-4)
    with pytest.raises(KeyError, match="'v' is not in the vocabulary"):
        model.nearest("v")


def test_skipgram_starts_at_k_plus_one_log_two_and_bad_input():
    model = SkipGram(10, 4, torch.Generator().manual_seed(0))
    loss = model(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5, 6, 7], [8, 9, 0]]))
    assert loss.item() == pytest.approx(4 * math.log(2))
    with pytest.raises(ValueError, match=r"\(B, K, C\)"):
        sgns_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        sgns_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="negatives"):
        Word2VecConfig(negatives=0)
    with pytest.raises(TypeError, match="Word2VecConfig"):
        train_word2vec(["a"], {"epochs": 1})
