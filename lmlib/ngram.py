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

`prob` is the formula, one dictionary lookup at a time. Counting and scoring a whole text
(`fit`, `log_prob`) do the same arithmetic on NumPy arrays: Chapter 1 counts every m-gram of
0.9 million characters for m up to 10, and scores 0.1 million. Tests check that the counts
equal ``Counter(zip(*(tokens[i:] for i in range(m))))`` and that every score equals `prob`'s,
to the last bit.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from lmlib.runtime import check_int, check_number

Token = Hashable


@dataclass
class _Order:
    """The m-grams of one order as sorted arrays; the fast paths read these, `prob` the dicts.

    An m-gram's code is (index of its first m - 1 tokens among the (m-1)-grams) * V + (id of
    its last token), so sorting the codes groups the m-grams by context.
    """

    codes: np.ndarray  # (K,) sorted codes of the K distinct m-grams
    counts: np.ndarray  # (K,) count(c, w)
    last: np.ndarray  # (K,) id of w
    bounds: np.ndarray  # (K_ctx + 1,) context j: codes[bounds[j] : bounds[j + 1]]
    followed: np.ndarray  # (K_ctx,) count(c): how often context j is followed by a token
    types: np.ndarray  # (K_ctx,) T(c): how many different tokens follow context j


class _ByOrder(Mapping):
    """{m: Counter} for m = 1..n, each built from the arrays when first read.

    Scoring and sampling read the arrays; only `prob` and a reader of the counts need the
    dictionaries, so a model that only scores never builds them.
    """

    def __init__(self, n: int, build):
        self._n, self._build, self._built = n, build, {}

    def __getitem__(self, m: int) -> Counter:
        if m not in self._built:
            if m not in range(1, self._n + 1):
                raise KeyError(m)
            self._built[m] = self._build(m)
        return self._built[m]

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self._n + 1))

    def __len__(self) -> int:
        return self._n


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
        self.ngrams: Mapping[int, Counter] = {}
        self.contexts: Mapping[int, Counter] = {}
        self.vocab: list[Token] = []
        self._orders: dict[int, _Order] = {}  # m -> the m-grams as arrays (the fast paths)

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
        vocab = sorted(set(tokens)) if vocab is None else list(dict.fromkeys(vocab))
        missing = set(tokens) - set(vocab)
        if missing:  # checked before anything changes: a fitted model stays as it was
            raise ValueError(f"training tokens not in the given vocab: {sorted(missing)[:10]}")
        self.vocab = vocab
        self._index = {t: i for i, t in enumerate(self.vocab)}
        ids = self._ids(tokens)
        # Counter(zip(*(tokens[i:] for i in range(m)))) counts the m-grams with one tuple per
        # position; this sorts one integer per position instead, several times faster. The
        # m-gram at position i is the (m-1)-gram at i followed by token i + m - 1.
        at = np.zeros(len(ids) + 1, dtype=np.int64)  # the one 0-gram, at every position
        self._orders, n_ctx = {}, 1
        for m in range(1, self.n + 1):
            codes = at[:-1] * self.V + ids[m - 1 :]
            codes, at, counts = np.unique(codes, return_inverse=True, return_counts=True)
            ctx, last = np.divmod(codes, self.V)  # context index and token id of each m-gram
            followed = np.bincount(ctx, weights=counts, minlength=n_ctx).astype(np.int64)
            self._orders[m] = _Order(
                codes, counts, last, np.searchsorted(ctx, np.arange(n_ctx + 1)), followed,
                types=np.bincount(ctx, minlength=n_ctx),
            )  # fmt: skip
            n_ctx = len(codes)
        self.ngrams = _ByOrder(self.n, self._ngram_counts)
        self.contexts = _ByOrder(self.n, partial(self._per_context, field="followed"))
        return self

    def _keys(self, m: int) -> list[tuple]:
        """The m-grams as tuples, in the order of their table."""
        return [()] if m == 0 else list(self.ngrams[m])

    def _ngram_counts(self, m: int) -> Counter:
        order, singles = self._orders[m], [(t,) for t in self.vocab]
        keys = self._keys(m - 1)
        grams = map(operator.add, map(keys.__getitem__, (order.codes // self.V).tolist()),
                    map(singles.__getitem__, order.last.tolist()))  # fmt: skip
        return Counter(dict(zip(grams, order.counts.tolist())))

    def _per_context(self, m: int, field: str) -> Counter:
        """{(m-1)-gram: value} of an array of order m's contexts, where the value is not 0."""
        values, keys = getattr(self._orders[m], field), self._keys(m - 1)
        nonzero = np.flatnonzero(values).tolist()
        return Counter(dict(zip(map(keys.__getitem__, nonzero), values[nonzero].tolist())))

    def _find(self, context: tuple) -> int | None:
        """The index of ``context`` among the (len(context))-grams, None if never seen.

        Found through its prefixes: the index of c[:1] gives the code of c[:2], and so on.
        """
        j = 0
        for m, token in enumerate(context, start=1):
            codes, i = self._orders[m].codes, self._index.get(token)
            if i is None:
                return None
            code = j * self.V + i
            j = int(np.searchsorted(codes, code))
            if j == len(codes) or codes[j] != code:
                return None
        return j

    def _ids(self, tokens: Sequence[Token]) -> np.ndarray:
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(tokens) first")
        try:
            return np.fromiter(map(self._index.__getitem__, tokens), np.int64, len(tokens))
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in the model's vocabulary") from None

    @property
    def V(self) -> int:  # noqa: N802 (the conventional symbol)
        return len(self.vocab)

    def _check(self, token: Token) -> None:
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(tokens) first")
        if token not in self._index:
            raise ValueError(f"token {token!r} is not in the model's vocabulary")

    def _context(self, context: Sequence[Token]) -> tuple:
        # Keep at most the last n-1 tokens: that is all an order-n model looks at. (Without
        # the max, a context of 3 tokens for n = 6 would start at -2 and keep only 2.)
        return tuple(context)[max(0, len(context) - self.n + 1) :] if self.n > 1 else ()

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
        m, j = len(ctx) + 1, self._find(ctx)
        den = (0 if j is None else int(self._orders[m].followed[j])) + self.k * self.V
        if den == 0:  # k = 0 and an unseen context: no estimate at all
            return np.zeros(self.V)
        return (self._counts_after(m, j) + self.k) / den

    def _counts_after(self, m: int, j: int | None) -> np.ndarray:
        """count(c, w) for every w of the vocabulary, as floats, c being context j of order m."""
        counts = np.zeros(self.V)
        if j is not None:
            order = self._orders[m]
            seen = slice(order.bounds[j], order.bounds[j + 1])
            counts[order.last[seen]] = order.counts[seen]
        return counts

    def _lookups(self, tokens: list) -> dict[int, tuple]:
        """`prob`'s lookups at every position of ``tokens``, as arrays.

        For each order m, three arrays over the positions i = m - 1, m, ..., the m-gram
        tokens[i - m + 1 : i + 1] being (c, w): count(c, w), count(c) and T(c), with 0 for
        what training never saw.
        """
        ids, lookups = self._ids(tokens), {}
        at = np.zeros(len(ids) + 1, dtype=np.int64)  # index of the (m-1)-gram at each position
        for m in range(1, min(self.n, len(ids)) + 1):
            order, ctx = self._orders[m], at[:-1]
            known = ctx >= 0  # -1: a context training never saw
            codes = ctx * self.V + ids[m - 1 :]
            pos = np.searchsorted(order.codes, codes)  # where each m-gram would be
            found = known & (pos < len(order.codes))
            found[found] = order.codes[pos[found]] == codes[found]
            count, seen, types = (np.zeros(len(codes), dtype=np.int64) for _ in range(3))
            count[found] = order.counts[pos[found]]
            seen[known] = order.followed[ctx[known]]
            types[known] = order.types[ctx[known]]
            lookups[m] = count, seen, types
            at = np.where(found, pos, -1)
        return lookups

    def _token_probs(self, tokens: list) -> np.ndarray:
        """``[prob(tokens[:i], tokens[i]) for i in range(len(tokens))]``, as one array."""
        p = np.empty(len(tokens))
        k_v = self.k * self.V
        for m, (count, seen, _) in self._lookups(tokens).items():
            # token i has min(i, n - 1) tokens before it: order i + 1 until order n
            if m < self.n:
                count, seen = count[:1], seen[:1]
            den = seen + k_v
            q = np.divide(count + self.k, den, out=np.zeros(len(den)), where=den != 0)
            p[m - 1 : m - 1 + len(q)] = q
        return p

    def log_prob(self, tokens: Sequence[Token]) -> float:
        """Natural-log probability of ``tokens``, each conditioned on the ones before it."""
        total = 0.0
        for p in self._token_probs(list(tokens)).tolist():  # in order, as a loop of prob()
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
            p = self.next_token_probs(out[max(0, len(out) - self.n + 1) :])
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
        self.followers: Mapping[int, Counter] = {}

    def fit(self, tokens: Sequence[Token], vocab: Sequence[Token] | None = None):
        super().fit(tokens, vocab)
        # T(c): how many different tokens follow c
        self.followers = _ByOrder(self.n, partial(self._per_context, field="types"))
        return self

    def _token_probs(self, tokens: list) -> np.ndarray:
        # prob's recursion, for every position at once (the same operations, the same floats)
        p = np.full(len(tokens), 1.0 / self.V)
        for m, (count, seen, types) in self._lookups(tokens).items():
            with np.errstate(divide="ignore", invalid="ignore"):  # unseen contexts: kept out
                lam = seen / (seen + types)
                mixed = lam * count / seen + (1 - lam) * p[m - 1 :]
            p[m - 1 :] = np.where(seen > 0, mixed, p[m - 1 :])
        return p

    def next_token_probs(self, context: Sequence[Token]) -> np.ndarray:
        # prob's recursion, for every token at once (the same operations, the same floats)
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(tokens) first")
        ctx = self._context(context)
        p = np.full(self.V, 1.0 / self.V)
        for m in range(1, len(ctx) + 2):
            order, j = self._orders[m], self._find(ctx[len(ctx) - m + 1 :])
            seen = 0 if j is None else int(order.followed[j])
            if seen:
                lam = seen / (seen + int(order.types[j]))
                p = lam * self._counts_after(m, j) / seen + (1 - lam) * p
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
