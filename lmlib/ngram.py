"""n-gram language models: the statistical baseline that Chapter 1 starts from.

An n-gram model predicts the next token from the n-1 tokens before it, using counts:

    P(w | context) = count(context, w) / count(context)

Raw counts give probability 0 to anything unseen, which makes perplexity infinite on new
text, so every usable n-gram model smooths. Two variants, each adding one idea:

- `NGramLM`: add-k (Laplace when k = 1) smoothing, which pretends every n-gram was seen
  k more times than it was.
- `InterpolatedNGramLM`: mixes the order-n estimate with the order-(n-1) one, recursively
  down to a uniform distribution, with Witten-Bell weights (trust a context more the more
  often it was seen, and less the more different tokens followed it).

Tokens are any hashable items: the characters of a string, or a list of words. Near the
start of a text a token has fewer than n-1 predecessors; it is then predicted from the
shorter context it has, so every token is scored and the probabilities always sum to one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

from lmlib.runtime import check_int, check_number

Token = Hashable


class NGramLM:
    """An order-``n`` model with add-``k`` smoothing.

    P(w | c) = (count(c, w) + k) / (count(c) + k * V), with V the vocabulary size.

    >>> lm = NGramLM(n=2, k=1.0).fit("abab")
    >>> lm.vocab
    ['a', 'b']
    >>> lm.prob("a", "b")  # count(ab) = 2, count(a.) = 2: (2 + 1) / (2 + 1 * 2)
    0.75
    >>> lm.prob("b", "b")  # count(bb) = 0, count(b.) = 1: (0 + 1) / (1 + 2)
    0.3333333333333333
    """

    def __init__(self, n: int, k: float = 1.0):
        check_int(n, "n (1 = unigram)", low=1)
        check_number(k, "k", low=0)  # an infinite k would make every probability nan
        self.n = n
        self.k = float(k)
        # ngrams[m]: counts of m-grams; contexts[m]: how often each (m-1)-gram is followed
        # by something, i.e. the denominator for order m (differs from the (m-1)-gram count
        # only at the very end of the text, but using it keeps the sums exactly one).
        self.ngrams: dict[int, Counter] = {}
        self.contexts: dict[int, Counter] = {}
        self.vocab: list[Token] = []
        self._after: dict[int, dict[tuple, np.ndarray]] = {}  # m -> ctx -> (ids, counts)

    def fit(self, tokens: Sequence[Token], vocab: Sequence[Token] | None = None) -> NGramLM:
        """Count every m-gram, m = 1..n, in ``tokens``; returns ``self``.

        ``vocab`` fixes the vocabulary (for example the characters of the whole corpus, so
        the held-out text has no unknown characters); by default it is the set of tokens seen.
        """
        if not hasattr(tokens, "__iter__"):
            raise TypeError(f"tokens must be a sequence (a string or a list), got {tokens!r}")
        tokens = list(tokens)
        if not tokens:
            raise ValueError("cannot fit an n-gram model on an empty sequence")
        self.vocab = sorted(set(tokens)) if vocab is None else list(dict.fromkeys(vocab))
        missing = set(tokens) - set(self.vocab)
        if missing:
            raise ValueError(f"training tokens not in the given vocab: {sorted(missing)[:10]}")
        self._index = {t: i for i, t in enumerate(self.vocab)}
        self._after = {}
        for m in range(1, self.n + 1):
            grams = Counter(zip(*(tokens[i:] for i in range(m))))
            self.ngrams[m] = grams
            ctx = Counter()
            for gram, c in grams.items():
                ctx[gram[:-1]] += c
            self.contexts[m] = ctx
        return self

    @property
    def V(self) -> int:  # noqa: N802 (the conventional symbol)
        return len(self.vocab)

    def _check(self, token: Token) -> None:
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(tokens) first")
        if token not in self._index:
            raise ValueError(f"token {token!r} is not in the model's vocabulary")

    def _context(self, context: Sequence[Token]) -> tuple:
        # Keep at most the last n-1 tokens: that is all an order-n model looks at.
        return tuple(context)[len(context) - self.n + 1 :] if self.n > 1 else ()

    def prob(self, context: Sequence[Token], token: Token) -> float:
        """P(token | the last n-1 tokens of ``context``)."""
        self._check(token)
        ctx = self._context(context)
        m = len(ctx) + 1
        num = self.ngrams[m][ctx + (token,)] + self.k
        den = self.contexts[m][ctx] + self.k * self.V
        if den == 0:  # k = 0 and an unseen context: no estimate at all
            return 0.0
        return num / den

    def next_token_probs(self, context: Sequence[Token]) -> np.ndarray:
        """The whole distribution over ``self.vocab`` after ``context`` (sums to one).

        Equal, to the last bit, to ``[self.prob(context, w) for w in self.vocab]``, with the
        same arithmetic done on arrays: one pass over the tokens seen after the context, not
        one dictionary lookup per vocabulary entry (V = 7,898 for Chapter 1's Tang poems).

        >>> lm = NGramLM(n=2, k=1.0).fit("abab")
        >>> lm.next_token_probs("b").tolist() == [lm.prob("b", w) for w in lm.vocab]
        True
        """
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(tokens) first")
        ctx = self._context(context)
        m = len(ctx) + 1
        den = self.contexts[m][ctx] + self.k * self.V
        if den == 0:  # k = 0 and an unseen context: no estimate at all
            return np.zeros(self.V)
        return (self._counts_after(m, ctx) + self.k) / den

    def _counts_after(self, m: int, ctx: tuple) -> np.ndarray:
        """count(ctx, w) for every w of the vocabulary, as floats (ctx has m - 1 tokens)."""
        if m not in self._after:  # built on first use: only sampling needs it
            after: dict[tuple, list] = {}
            for gram, c in self.ngrams[m].items():
                after.setdefault(gram[:-1], []).append((self._index[gram[-1]], c))
            self._after[m] = {k: np.array(v).T for k, v in after.items()}
        counts = np.zeros(self.V)
        if (seen := self._after[m].get(ctx)) is not None:
            counts[seen[0]] = seen[1]
        return counts

    def log_prob(self, tokens: Sequence[Token]) -> float:
        """Natural-log probability of ``tokens``, each conditioned on the ones before it."""
        tokens = list(tokens)
        total = 0.0
        for i, tok in enumerate(tokens):
            p = self.prob(tokens[max(0, i - self.n + 1) : i], tok)
            if p == 0.0:
                return -math.inf
            total += math.log(p)
        return total

    def perplexity(self, tokens: Sequence[Token]) -> float:
        """exp(mean negative log-likelihood per token): lower is better, V = uniform guess.

        >>> round(NGramLM(n=1, k=0).fit("aabb").perplexity("abab"), 6)  # each p = 1/2
        2.0
        """
        tokens = list(tokens)
        if not tokens:
            raise ValueError("perplexity of an empty sequence is undefined")
        return math.exp(-self.log_prob(tokens) / len(tokens))

    def generate(
        self, length: int, prompt: Sequence[Token] = (), seed: int | None = None
    ) -> list[Token]:
        """Sample ``length`` tokens after ``prompt`` (returned without the prompt).

        Sampling uses its own NumPy generator, so the same seed gives the same text.
        """
        check_int(length, "length", low=0)
        if seed is not None:
            check_int(seed, "seed", low=0)
        rng = np.random.default_rng(seed)
        out = list(prompt)
        for _ in range(length):
            p = self.next_token_probs(out[len(out) - self.n + 1 :] if self.n > 1 else [])
            out.append(self.vocab[rng.choice(self.V, p=p / p.sum())])
        return out[len(prompt) :]


class InterpolatedNGramLM(NGramLM):
    """An order-``n`` model that interpolates every order, with Witten-Bell weights.

    P_m(w | c) = lam(c) * count(c, w) / count(c) + (1 - lam(c)) * P_{m-1}(w | c minus its
    first token), where lam(c) = count(c) / (count(c) + T(c)) and T(c) is the number of
    different tokens seen after c. P_0 is uniform, 1/V. An unseen context has lam(c) = 0,
    so the model falls back to the shorter context instead of to a uniform guess.

    >>> lm = InterpolatedNGramLM(n=2).fit("abab")
    >>> lm.prob("b", "b")  # lam = 1 / (1 + 1); 0.5 * 0 + 0.5 * P_1(b) where P_1(b) = 0.5
    0.25
    >>> round(float(lm.next_token_probs("a").sum()), 12)
    1.0
    """

    def __init__(self, n: int):
        super().__init__(n, k=0.0)
        self.followers: dict[int, Counter] = {}

    def fit(self, tokens: Sequence[Token], vocab: Sequence[Token] | None = None):
        super().fit(tokens, vocab)
        for m in range(1, self.n + 1):
            self.followers[m] = Counter(gram[:-1] for gram in self.ngrams[m])
        return self

    def next_token_probs(self, context: Sequence[Token]) -> np.ndarray:
        # prob's recursion, for every token at once (the same operations, the same floats)
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(tokens) first")
        ctx = self._context(context)
        p = np.full(self.V, 1.0 / self.V)
        for m in range(1, len(ctx) + 2):
            c = ctx[len(ctx) - m + 1 :]
            seen = self.contexts[m][c]
            if seen:
                lam = seen / (seen + self.followers[m][c])
                p = lam * self._counts_after(m, c) / seen + (1 - lam) * p
        return p

    def prob(self, context: Sequence[Token], token: Token) -> float:
        self._check(token)
        ctx = self._context(context)
        p = 1.0 / self.V  # order 0: uniform
        for m in range(1, len(ctx) + 2):  # from unigrams up to the longest usable context
            c = ctx[len(ctx) - m + 1 :]
            seen = self.contexts[m][c]
            if seen:
                lam = seen / (seen + self.followers[m][c])
                p = lam * self.ngrams[m][c + (token,)] / seen + (1 - lam) * p
        return p
