"""Scoring generated text and code, written out so each can be checked by hand.

- against references: BLEU (Papineni et al., 2002), the translation metric of Chapters 3
  and 6, and ROUGE-N / ROUGE-L (Lin, 2004), the summarization one of Chapter 6, tested
  against `sacrebleu` and Google's `rouge-score`;
- without references: distinct-n (Li et al., 2016) and repetition, how varied a batch of
  samples is and whether one loops (Chapter 5);
- code: the unbiased pass@k estimator of Chen et al. (2021) (Chapter 6).

Metrics of predictions against labels (accuracy, F1, recall@k, the answers to questions) are
`lmlib.metrics`. Everything here takes token lists and refuses a string: a string would be
scored character by character, a plausible and wrong number.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from lmlib.runtime import check_int


def _tokens(value, name: str, of: str = "tokens") -> list:
    """``value`` as a list, or a TypeError for a string or anything that is not a sequence.
    A tensor becomes a list of numbers: its elements would hash by identity, not by value."""
    if isinstance(value, str) or not hasattr(value, "__len__") or isinstance(value, (set, dict)):
        hint = ": split it first (str.split() or rouge_tokenize)" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a list of {of}, got {value!r:.50}{hint}")
    return value.tolist() if hasattr(value, "tolist") else list(value)


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams of a token list: what BLEU, ROUGE-N and distinct-n count.

    >>> sorted(ngrams("the cat the cat".split(), 2).items())
    [(('cat', 'the'), 1), (('the', 'cat'), 2)]
    """
    check_int(n, "n", low=1)
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


# --------------------------------------------------------------------------------------------
# BLEU


def bleu_statistics(hypothesis: Sequence[str], reference: Sequence[str], max_n: int = 4):
    """Clipped n-gram matches and totals for n = 1..max_n, and the two lengths.

    Clipping: a hypothesis n-gram counts at most as often as it occurs in the reference, so
    "the the the the" earns one match against "the cat", not four.
    """
    hypothesis, reference = _tokens(hypothesis, "hypothesis"), _tokens(reference, "reference")
    check_int(max_n, "max_n", low=1)
    matches, totals = [], []
    for n in range(1, max_n + 1):
        hyp, ref = ngrams(hypothesis, n), ngrams(reference, n)
        matches.append(sum(min(c, ref[g]) for g, c in hyp.items()))
        totals.append(max(len(hypothesis) - n + 1, 0))
    return matches, totals, len(hypothesis), len(reference)


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                max_n: int = 4) -> float:  # fmt: skip
    """Corpus BLEU in [0, 100] of tokenized sentences, one reference each, no smoothing.

    BLEU = BP * exp(mean over n of log p_n), with p_n the clipped n-gram precision summed
    over the corpus, and the brevity penalty BP = exp(1 - r/c) when the c hypothesis tokens
    are fewer than the r reference tokens (precision alone would reward saying little).
    Equals ``sacrebleu.corpus_bleu(..., tokenize="none", smooth_method="none")`` on the same
    tokens.

    >>> round(corpus_bleu(["the cat sat on the mat".split()], ["the cat sat on a mat".split()]), 2)
    53.73
    """
    hypotheses = _tokens(hypotheses, "hypotheses", of="token lists")
    references = _tokens(references, "references", of="token lists")
    hypotheses = [_tokens(h, "each hypothesis") for h in hypotheses]
    references = [_tokens(r, "each reference") for r in references]
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references must have the same length, got "
                         f"{len(hypotheses)} and {len(references)}")  # fmt: skip
    if not hypotheses:
        raise ValueError("no sentences: BLEU is undefined")
    check_int(max_n, "max_n", low=1)
    matches, totals, c, r = [0] * max_n, [0] * max_n, 0, 0
    for hyp, ref in zip(hypotheses, references):
        m, t, hl, rl = bleu_statistics(hyp, ref, max_n)
        matches = [a + b for a, b in zip(matches, m)]
        totals = [a + b for a, b in zip(totals, t)]
        c, r = c + hl, r + rl
    if min(matches) == 0:
        return 0.0  # some n-gram order has no match: log 0, BLEU is 0 without smoothing
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * brevity * math.exp(log_precision)


# --------------------------------------------------------------------------------------------
# ROUGE


def rouge_tokenize(text: str) -> list[str]:
    """Lower-case words of letters and digits, as ``rouge-score``'s default tokenizer.

    >>> rouge_tokenize("The cat's mat, 2 times!")
    ['the', 'cat', 's', 'mat', '2', 'times']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _prf(overlap: int, n_candidate: int, n_reference: int) -> dict[str, float]:
    p = overlap / n_candidate if n_candidate else 0.0
    r = overlap / n_reference if n_reference else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def rouge_n(candidate: Sequence[str], reference: Sequence[str], n: int = 1) -> dict:
    """ROUGE-N: overlap of n-grams (clipped counts), as precision, recall and F1.

    >>> r = rouge_n("the cat sat".split(), "the cat sat down".split(), n=1)
    >>> r["precision"], r["recall"], round(r["f1"], 4)
    (1.0, 0.75, 0.8571)
    """
    candidate, reference = _tokens(candidate, "candidate"), _tokens(reference, "reference")
    cand, ref = ngrams(candidate, n), ngrams(reference, n)
    overlap = sum(min(c, ref[g]) for g, c in cand.items())
    return _prf(overlap, sum(cand.values()), sum(ref.values()))


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (in order, gaps allowed), by dynamic
    programming over one row at a time.

    >>> lcs_length("police killed the gunman".split(), "the gunman police killed".split())
    2
    """
    for name, seq in (("a", a), ("b", b)):
        if not hasattr(seq, "__len__") or isinstance(seq, (set, dict)):
            raise TypeError(f"{name} must be a sequence (a list or a string), got {seq!r:.40}")
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def rouge_l(candidate: Sequence[str], reference: Sequence[str]) -> dict:
    """ROUGE-L: the longest common subsequence as precision, recall and F1.

    >>> round(rouge_l("the cat sat".split(), "the cat sat down".split())["f1"], 4)
    0.8571
    """
    candidate, reference = _tokens(candidate, "candidate"), _tokens(reference, "reference")
    return _prf(lcs_length(candidate, reference), len(candidate), len(reference))


def rouge(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of two texts (tokenized by `rouge_tokenize`)."""
    for name, text in (("candidate", candidate), ("reference", reference)):
        if not isinstance(text, str):  # token lists go to rouge_n and rouge_l
            raise TypeError(f"{name} must be a str (a text), got {type(text).__name__}")
    c, r = rouge_tokenize(candidate), rouge_tokenize(reference)
    return {"rouge1": rouge_n(c, r, 1)["f1"], "rouge2": rouge_n(c, r, 2)["f1"],
            "rougeL": rouge_l(c, r)["f1"]}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Diversity and repetition of generated text


def distinct_n(samples: Sequence[Sequence], n: int = 2) -> float:
    """Share of distinct n-grams among all n-grams of all samples (distinct-n, Li et al.,
    2016): 1.0 when no n-gram occurs twice; k identical samples give at most 1/k.

    Four bigrams, (1, 2) twice, so three distinct:

    >>> distinct_n([[1, 2, 3], [1, 2, 4]], n=2)
    0.75
    """
    check_int(n, "n", low=1)
    counts = Counter()
    for sample in _tokens(samples, "samples", of="token lists"):
        counts += ngrams(_tokens(sample, "each sample"), n)
    total = sum(counts.values())
    if total == 0:
        raise ValueError(f"no sample has n = {n} tokens: distinct-{n} is undefined")
    return len(counts) / total


def repetition(sample: Sequence, n: int = 4) -> float:
    """Share of a sample's n-grams that repeat an earlier one: 0 for no loops, near 1 for a
    sample stuck repeating itself.

    "a b c a b c" has four trigrams, (a, b, c) twice, so one of four is a repeat:

    >>> repetition("a b c a b c".split(), n=3)
    0.25
    """
    check_int(n, "n", low=1)
    grams = ngrams(_tokens(sample, "sample"), n)
    total = sum(grams.values())
    if total == 0:
        raise ValueError(f"a sample of {len(sample)} tokens has no {n}-grams")
    return 1 - len(grams) / total


# --------------------------------------------------------------------------------------------
# Code


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn from n of which c pass, passes.

    1 - C(n - c, k) / C(n, k), computed as a product so it never overflows (Chen et al.,
    2021). Averaged over problems it estimates pass@k without bias; ``c / n`` is pass@1.

    >>> round(pass_at_k(n=10, c=3, k=1), 4), round(pass_at_k(n=10, c=3, k=5), 4)
    (0.3, 0.9167)
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        check_int(value, name)
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every draw of k contains a passing sample
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1 - k / i
    return 1.0 - fail
