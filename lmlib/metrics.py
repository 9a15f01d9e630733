"""Evaluation metrics, written out so each can be checked by hand (Chapters 5 and 6).

- generated text without references: distinct-n (Li et al., 2016) and repetition (Ch. 5);
- classification: accuracy, the confusion matrix, precision, recall and F1;
- retrieval: recall@k and mean reciprocal rank; question answering: `contains_answer` and
  `answer_is_correct` (the answer's leading claim, numbers compared as numbers);
- generation against references: BLEU (Papineni et al., 2002) and ROUGE-N / ROUGE-L
  (Lin, 2004), tested against `sacrebleu` and Google's `rouge-score`;
- code: the unbiased pass@k estimator of Chen et al. (2021).

Perplexity, the language-modelling metric, is ``exp`` of the mean cross-entropy (Chapter 1).
Everything here takes plain Python lists: the metrics do not care where predictions came from.
Text metrics take token lists, and refuse a string: a string would be scored character by
character, a plausible and wrong number.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Sequence

from lmlib.runtime import check_int

# --------------------------------------------------------------------------------------------
# Classification


def _sequence(value, name: str, of: str = "labels") -> list:
    """``value`` as a list, or a TypeError for a string or anything that is not a sequence."""
    if isinstance(value, str) or not hasattr(value, "__len__") or isinstance(value, (set, dict)):
        hint = ": split it first (str.split() or rouge_tokenize)" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a list of {of}, got {value!r:.50}{hint}")
    return _as_list(value)


def _tokens(value, name: str) -> list:
    return _sequence(value, name, of="tokens")


def _check_pair(gold: Sequence, pred: Sequence) -> tuple[list, list]:
    """Both as lists (a tensor's elements would compare as tensors), of equal length."""
    gold, pred = _sequence(gold, "gold"), _sequence(pred, "pred")
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred must have the same length, got {len(gold)} and "
                         f"{len(pred)}")  # fmt: skip
    if not gold:
        raise ValueError("no examples: the metric is undefined")
    return gold, pred


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Share of examples whose prediction equals the gold label.

    >>> accuracy([1, 0, 1, 1], [1, 1, 1, 0])
    0.5
    """
    gold, pred = _check_pair(gold, pred)
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def confusion_matrix(gold: Sequence[int], pred: Sequence[int], n_classes: int | None = None):
    """``m[g][p]``: how many examples of gold class g were predicted as p (rows: truth).

    >>> confusion_matrix([1, 0, 1, 1], [1, 1, 1, 0])
    [[0, 1], [1, 2]]
    """
    gold, pred = _check_pair(gold, pred)
    if n_classes is not None:
        check_int(n_classes, "n_classes", low=1)
    high = None if n_classes is None else n_classes - 1
    for name, labels in (("gold", gold), ("pred", pred)):
        for label in labels:  # a negative label would silently count as the last class
            check_int(label, f"every label in {name}", 0, high)
    n = n_classes or max(max(gold), max(pred)) + 1
    m = [[0] * n for _ in range(n)]
    for g, p in zip(gold, pred):
        m[g][p] += 1
    return m


def precision_recall_f1(gold, pred, positive: int = 1) -> dict[str, float]:
    """Precision, recall and F1 of one class; 0 where a ratio has nothing to count.

    precision = TP / (TP + FP): of the examples we called positive, how many are;
    recall = TP / (TP + FN): of the positive examples, how many we found;
    F1 = 2PR / (P + R), their harmonic mean, which is low when either is low.

    >>> r = precision_recall_f1([1, 0, 1, 1], [1, 1, 1, 0])  # TP 2, FP 1, FN 1
    >>> round(r["precision"], 4), round(r["recall"], 4), round(r["f1"], 4)
    (0.6667, 0.6667, 0.6667)
    """
    gold, pred = _check_pair(gold, pred)
    check_int(positive, "positive", low=0)
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def classification_report(gold, pred, names: Sequence[str]) -> str:
    """Per-class precision, recall, F1 and support, their macro average, and accuracy."""
    if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a non-empty list of class names, got {names!r:.50}")
    gold, pred = _check_pair(gold, pred)
    rows = [precision_recall_f1(gold, pred, positive=c) for c in range(len(names))]
    width = max(12, *map(len, names))
    lines = [f"{'':<{width}} precision  recall      f1  support"]
    for name, r in zip(names, rows):
        lines.append(f"{name:<{width}} {r['precision']:>9.3f} {r['recall']:>7.3f} "
                     f"{r['f1']:>7.3f} {r['support']:>8}")  # fmt: skip
    macro = {k: sum(r[k] for r in rows) / len(rows) for k in ("precision", "recall", "f1")}
    lines.append(f"{'macro avg':<{width}} {macro['precision']:>9.3f} {macro['recall']:>7.3f} "
                 f"{macro['f1']:>7.3f} {len(gold):>8}")  # fmt: skip
    lines.append(f"{'accuracy':<{width}} {accuracy(gold, pred):>25.3f} {len(gold):>8}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Retrieval


def recall_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    """Share of the relevant items found among the first ``k`` retrieved.

    >>> recall_at_k(["p3", "p1", "p7"], {"p1", "p9"}, k=2)
    0.5
    """
    ranked, relevant = _sequence(ranked, "ranked", of="retrieved ids"), _relevant(relevant)
    check_int(k, "k", low=1)  # k = -1 would slice off the last item and score it anyway
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(ranked[:k]) & relevant) / len(relevant)


def _relevant(relevant) -> set:
    if isinstance(relevant, str) or not isinstance(relevant, Collection):
        raise TypeError(f"relevant must be a set of ids (one id: {{id}}), got {relevant!r:.50}")
    return set(relevant)


def reciprocal_rank(ranked: Sequence, relevant: set) -> float:
    """1 / rank of the first relevant item (0 if none is retrieved); averaged, this is MRR.

    >>> reciprocal_rank(["p3", "p1", "p7"], {"p1", "p9"})
    0.5
    """
    ranked, relevant = _sequence(ranked, "ranked", of="retrieved ids"), _relevant(relevant)
    return next((1 / (i + 1) for i, item in enumerate(ranked) if item in relevant), 0.0)


def normalize_answer(text: str) -> str:
    """Lower case, thousands separators and punctuation removed, whitespace collapsed.

    >>> normalize_answer("About 49,152 entries (0.1%).")
    'about 49152 entries 0.1%'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    words = re.sub(r"[^a-z0-9.%]+", " ", text).split()
    return " ".join(w.strip(".") for w in words if w.strip("."))


def contains_answer(prediction: str, answers: Sequence[str]) -> bool:
    """Whether any acceptable answer occurs in ``prediction`` as whole words (after
    `normalize_answer`): the usual check for short factual answers in free text.

    >>> contains_answer("It has 49152 tokens.", ["49,152"]), contains_answer("Hugo", ["Hu"])
    (True, False)
    """
    if isinstance(answers, str) or not all(isinstance(a, str) for a in answers):
        raise TypeError(f"answers must be a list of acceptable answers (one: [answer]), got "
                        f"{answers!r:.50}")  # fmt: skip
    text = f" {normalize_answer(prediction)} "
    return any(f" {normalize_answer(a)} " in text for a in answers)


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}  # fmt: skip
# A number that stands alone (not the 2 of "smollm2"), then the word or % right after it.
_QUANTITY = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)(?:\s*(%|[a-z]+))?")


def leading_claim(text: str) -> str:
    """The answer's first sentence: what it claims before it adds, hedges or rambles.

    >>> leading_claim("The answer is 9. In all, 270 heads.")
    'The answer is 9.'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]


def quantities(text: str) -> list[tuple[float, str]]:
    """The numbers a text states, each with the word (or %) that follows it, in order;
    thousands separators dropped and the words zero to twelve read as numbers.

    >>> quantities("SmolLM2 has 22.7M... no: 49,152 entries, three heads, 7%")
    [(22.7, 'm'), (49152.0, 'entries'), (3.0, 'heads'), (7.0, '%')]
    """
    words = [_NUMBER_WORDS.get(w, w) for w in normalize_answer(text).split()]
    return [(float(n), unit) for n, unit in _QUANTITY.findall(" ".join(words))]


def answer_is_correct(prediction: str, answers: Sequence[str], question: str = "") -> bool:
    """Whether the leading claim of a free-text answer states an acceptable answer.

    Stricter and fairer than `contains_answer`: only the first sentence counts (an answer
    that opens with a wrong number and mentions the right one later is wrong), and
    numbers are compared as numbers. An acceptable answer that is a quantity ("22.7",
    "360 MiB", "7%") matches the first number of the claim that is not already in the
    question (repeating the question's numbers states nothing): equal in value, and
    followed by the answer's unit when it has one ("22.7M parameters" states 22.7; "2."
    does not state "2 trillion"). Any other answer ("Sennrich", "layer 3, head 8") must
    appear in the claim as whole words.

    >>> q = "How many key/value heads does SmolLM2 store instead of 9?"
    >>> answer_is_correct("The answer is 3.", ["3"], q)
    True
    >>> answer_is_correct("It has 22.7M parameters.", ["22.7"])
    True
    >>> answer_is_correct("The answer is 9. In all, 270.", ["270"])
    False
    """
    if isinstance(answers, str) or not all(isinstance(a, str) for a in answers):
        raise TypeError(f"answers must be a list of acceptable answers (one: [answer]), got "
                        f"{answers!r:.50}")  # fmt: skip
    claim = leading_claim(prediction)
    asked = {value for value, _ in quantities(question)}
    stated = [(v, unit) for v, unit in quantities(claim) if v not in asked]
    for answer in answers:
        gold = quantities(answer)
        words = [_NUMBER_WORDS.get(w, w) for w in normalize_answer(answer).split()]
        if len(gold) == 1 and words[0][0].isdigit() and len(words) <= 2:  # a quantity
            value, unit = gold[0]
            if stated and stated[0][0] == value and stated[0][1].startswith(unit):
                return True
        elif contains_answer(claim, [answer]):
            return True
    return False


# --------------------------------------------------------------------------------------------
# BLEU


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams of a token list.

    >>> sorted(ngrams("the cat the cat".split(), 2).items())
    [(('cat', 'the'), 1), (('the', 'cat'), 2)]
    """
    check_int(n, "n", low=1)
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


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
    hypotheses = [_tokens(h, "each hypothesis") for h in _sequence(hypotheses, "hypotheses")]
    references = [_tokens(r, "each reference") for r in _sequence(references, "references")]
    _check_pair(hypotheses, references)
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
# Diversity and repetition of generated text


def _as_list(sample) -> list:
    """Token ids as a list: tensor elements would hash by identity, not by value."""
    return sample.tolist() if hasattr(sample, "tolist") else list(sample)


def distinct_n(samples: Sequence[Sequence], n: int = 2) -> float:
    """Share of distinct n-grams among all n-grams of all samples (distinct-n, Li et al.,
    2016): 1.0 when no n-gram occurs twice; k identical samples give at most 1/k.

    Four bigrams, (1, 2) twice, so three distinct:

    >>> distinct_n([[1, 2, 3], [1, 2, 4]], n=2)
    0.75
    """
    check_int(n, "n", low=1)
    counts = Counter()
    for sample in _sequence(samples, "samples", of="token lists"):
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
