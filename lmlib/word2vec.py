"""word2vec: skip-gram with negative sampling (SGNS), as in Mikolov et al. (2013).

Skip-gram learns two vectors per word, v_w when w is the centre word and u_w when it is a
context word, from (centre, context) pairs: every word within a few positions of the
centre. The obvious objective, a softmax over the whole vocabulary for each context word,
costs V dot products per pair. Negative sampling replaces it by a cheaper one: tell the
true context word apart from k *noise* words drawn from a noise distribution P_n, with
independent binary logistic regressions. For one pair (c, o) the loss is

    -log sigma(u_o . v_c) - sum_{i=1..k} log sigma(-u_{n_i} . v_c),    n_i ~ P_n

(`sgns_loss`). This is not the log-probability of o given c: the scores sigma(u . v_c) of
all words do not sum to one, and no softmax is ever computed. Two more tricks of the paper:

- P_n(w) is proportional to count(w)^0.75 (`noise_distribution`): rare words are drawn
  more often than their frequency, frequent words less;
- each occurrence of a frequent word is dropped with probability 1 - sqrt(t / f(w)), f its
  share of the corpus (`keep_probabilities`): "the" and "and" say little about their
  neighbours, and dropping them brings the other words closer together.

The word's vector is v_w (the centre table); `nearest` ranks words by cosine similarity.
One vector per word, whatever its context: that is what "static" embeddings means.

Shape legend: B pairs in a batch, K noise words per pair, C vector size, V vocabulary size.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.runtime import check_int, check_number


@dataclass
class Word2VecConfig:
    d_embed: int = 64  # C: the size of each word's vector (Mikolov et al.: 300)
    window: int = 4  # largest distance of a context word; each centre draws 1..window
    negatives: int = 5  # k: noise words per true pair (the paper: 5-20 small data, 2-5 large)
    min_count: int = 5  # rarer words are left out: too few pairs to learn a vector from
    subsample: float = 1e-3  # t of the subsampling formula; 0 keeps every word
    noise_power: float = 0.75  # P_n(w) ~ count(w) ** noise_power (the paper's 3/4)
    epochs: int = 5  # passes over the (subsampled, freshly drawn) pairs
    batch_size: int = 1024  # B: pairs per optimizer step
    learning_rate: float = 0.01  # Adam's step size
    seed: int = 0  # subsampling, windows, noise words and initialization

    def __post_init__(self):
        for name in ("d_embed", "window", "negatives", "min_count", "epochs", "batch_size"):
            check_int(getattr(self, name), name, low=1)
        check_int(self.seed, "seed", low=0)
        check_number(self.subsample, "subsample", low=0)
        check_number(self.noise_power, "noise_power", low=0)
        check_number(self.learning_rate, "learning_rate", low=0, open_low=True)


def build_vocab(words: Sequence[str], min_count: int) -> tuple[list[str], np.ndarray]:
    """Words seen at least ``min_count`` times, most frequent first, and their counts.

    >>> build_vocab("a b a c a b".split(), min_count=2)
    (['a', 'b'], array([3, 2]))
    """
    check_int(min_count, "min_count", low=1)
    if isinstance(words, str):
        raise TypeError("words must be a sequence of words, e.g. text.split(), not one str")
    counts = Counter(words)
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: -counts[w])
    if not kept:
        raise ValueError(f"no word occurs min_count={min_count} times in {len(words)} words")
    return kept, np.array([counts[w] for w in kept])


def keep_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """P(keep an occurrence of w) = min(1, sqrt(t / f(w))), f(w) = count(w) / total.

    Mikolov et al. (2013) drop each occurrence with probability 1 - sqrt(t / f(w)); t = 0
    keeps everything. With t = 0.01, a word of share 0.25 is kept with sqrt(0.04) = 0.2:

    >>> keep_probabilities(np.array([25, 75]), t=0.01).round(4).tolist()
    [0.2, 0.1155]
    """
    check_number(t, "t", low=0)
    counts = np.asarray(counts, dtype=float)
    if t == 0:
        return np.ones_like(counts)
    return np.minimum(1.0, np.sqrt(t / (counts / counts.sum())))


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """P_n(w) = count(w) ** power / sum of the same: the distribution noise words come from.

    With power 0.75 a word 16 times as frequent is drawn only 8 times as often:

    >>> noise_distribution(np.array([16, 1])).round(4).tolist()  # 8 / 9, 1 / 9
    [0.8889, 0.1111]
    """
    check_number(power, "power", low=0)
    weights = np.asarray(counts, dtype=float) ** power
    return weights / weights.sum()


def skipgram_pairs(ids: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """(centre, context) pairs, shape (pairs, 2): each centre draws its own window b in
    1..``window`` (closer words are then paired more often, as in word2vec) and is paired
    with every word at distance <= b on both sides.

    >>> skipgram_pairs(np.array([7, 8, 9]), 1, np.random.default_rng(0)).tolist()
    [[7, 8], [8, 9], [8, 7], [9, 8]]
    """
    check_int(window, "window", low=1)
    ids = np.asarray(ids)
    reach = rng.integers(1, window + 1, size=len(ids))  # b for each centre
    pairs = []
    for d in range(1, window + 1):
        # the context d places to the right of each centre, then d places to the left
        pairs.append(np.stack([ids[:-d], ids[d:]], axis=1)[reach[:-d] >= d])
        pairs.append(np.stack([ids[d:], ids[:-d]], axis=1)[reach[d:] >= d])
    return np.concatenate(pairs)


def sgns_loss(centre: torch.Tensor, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The SGNS loss, mean over pairs: -log sigma(u_o . v_c) - sum_k log sigma(-u_k . v_c).

    Implements equation :eq:`eq-sgns` of Chapter 2 (:ref:`its tests <test-eq-sgns>`).

    ``centre`` (B, C) holds v_c, ``context`` (B, C) u_o and ``noise`` (B, K, C) the u of K
    noise words. Written with -log sigma(x) = softplus(-x) = log(1 + e^-x), which stays
    finite for large ``abs(x)``. All scores 0: each of the 1 + K terms is log 2.

    >>> round(sgns_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 4, 3)).item(), 4)
    3.4657
    """
    if centre.dim() != 2 or context.shape != centre.shape:
        raise ValueError(f"centre and context must both be (B, C), got {tuple(centre.shape)} "
                         f"and {tuple(context.shape)}")  # fmt: skip
    if noise.dim() != 3 or noise.shape[0] != centre.shape[0] or noise.shape[2] != centre.shape[1]:
        raise ValueError(f"noise must be (B, K, C) = ({centre.shape[0]}, K, {centre.shape[1]}), "
                         f"got {tuple(noise.shape)}")  # fmt: skip
    true_score = (centre * context).sum(-1)  # (B,): u_o . v_c
    # (B, K, C) * (B, 1, C), summed over C -> (B, K): u_k . v_c. einsum("bkc,bc->bk") is
    # the same sum (added in another order) as 1,024 tiny matrix products: 1.5x slower here.
    noise_score = (noise * centre[:, None]).sum(-1)
    return (F.softplus(-true_score) + F.softplus(noise_score).sum(-1)).mean()


class SkipGram(nn.Module):
    """The two tables of skip-gram: ``centre`` (the word vectors v) and ``context`` (u).

    As in word2vec's code, v starts small and random and u at zero, so every first score
    is 0 and the first loss is (1 + k) log 2.
    """

    def __init__(self, vocab_size: int, d_embed: int, generator: torch.Generator | None = None):
        super().__init__()
        check_int(vocab_size, "vocab_size", low=1)
        check_int(d_embed, "d_embed", low=1)
        self.centre = nn.Embedding(vocab_size, d_embed)  # (V, C): v
        self.context = nn.Embedding(vocab_size, d_embed)  # (V, C): u
        with torch.no_grad():
            self.centre.weight.uniform_(-0.5 / d_embed, 0.5 / d_embed, generator=generator)
            self.context.weight.zero_()

    def forward(self, pairs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``pairs`` (B, 2) ids (centre, context), ``noise`` (B, K) ids -> the mean loss."""
        v = self.centre(pairs[:, 0])  # (B, C)
        return sgns_loss(v, self.context(pairs[:, 1]), self.context(noise))


@dataclass
class Word2Vec:
    """A trained model: the words, their vectors (the rows of v, and of u) and its record."""

    words: list[str]
    vectors: torch.Tensor  # (V, C): the centre vectors v, one row per word
    context_vectors: torch.Tensor | None = None  # (V, C): the u, which score a word as context
    losses: list[float] = field(default_factory=list)  # mean loss of each step
    seconds: float = 0.0  # training time, wall clock
    pairs_seen: int = 0  # (centre, context) pairs over all epochs

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    def nearest(self, word: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` words whose vectors have the largest cosine similarity with ``word``'s
        (the word itself left out), with that similarity, most similar first."""
        check_int(k, "k", low=1)
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self.words)} words "
                           f"seen at least min_count times)")  # fmt: skip
        unit = F.normalize(self.vectors, dim=1)  # (V, C), rows of length 1
        sims = unit @ unit[self.index[word]]  # (V,): cosine with every word
        sims[self.index[word]] = -2.0  # below any cosine: never its own neighbour
        top = sims.topk(min(k, len(self.words) - 1))
        return [(self.words[i], round(s, 4)) for s, i in zip(top.values.tolist(),
                                                             top.indices.tolist())]  # fmt: skip


def train_word2vec(words: Sequence[str], cfg: Word2VecConfig | None = None) -> Word2Vec:
    """Train SGNS on a list of words with Adam; every epoch subsamples the words and draws
    fresh windows and noise words. Deterministic for a given ``cfg.seed`` and thread count.

    The context vectors start at zero, so the first loss is (1 + k) log 2 exactly:

    >>> cfg = Word2VecConfig(d_embed=4, window=1, negatives=1, min_count=1, subsample=0)
    >>> model = train_word2vec(["a", "b", "c"] * 50, cfg)
    >>> model.words, tuple(model.vectors.shape), round(model.losses[0], 4)
    (['a', 'b', 'c'], (3, 4), 1.3863)
    >>> len(model.losses), model.pairs_seen  # 5 epochs of 298 pairs, batches of 1,024
    (5, 1490)
    """
    cfg = cfg if cfg is not None else Word2VecConfig()
    if not isinstance(cfg, Word2VecConfig):
        raise TypeError(f"cfg must be a Word2VecConfig, got {type(cfg).__name__}")
    vocab, counts = build_vocab(words, cfg.min_count)
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.array([index[w] for w in words if w in index])
    keep = keep_probabilities(counts, cfg.subsample)
    noise = torch.as_tensor(noise_distribution(counts, cfg.noise_power))
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SkipGram(len(vocab), cfg.d_embed, gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    result = Word2Vec(vocab, model.centre.weight.detach())
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        kept = ids[rng.random(len(ids)) < keep[ids]]  # subsampling, redrawn each epoch
        pairs = torch.as_tensor(skipgram_pairs(kept, cfg.window, rng))
        pairs = pairs[torch.randperm(len(pairs), generator=gen)]
        for b0 in range(0, len(pairs), cfg.batch_size):
            batch = pairs[b0 : b0 + cfg.batch_size]  # (B, 2)
            draws = torch.multinomial(noise, len(batch) * cfg.negatives, True, generator=gen)
            loss = model(batch, draws.view(len(batch), cfg.negatives))  # noise (B, K)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            result.losses.append(loss.item())
        result.pairs_seen += len(pairs)
    result.seconds = time.perf_counter() - start
    result.vectors = model.centre.weight.detach().clone()
    result.context_vectors = model.context.weight.detach().clone()
    return result
