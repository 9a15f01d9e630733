"""Metrics of predictions against labels, written out so each can be checked by hand (Ch. 6).

- classification: accuracy, the confusion matrix, precision, recall and F1;
- retrieval: recall@k and mean reciprocal rank;
- question answering: `contains_answer` and `answer_is_correct` (the answer's leading claim,
  numbers compared as numbers).

Everything here takes plain Python lists (a tensor is read by value): the metrics do not care
where predictions came from. Scoring generated text and code (BLEU, ROUGE, distinct-n,
pass@k) is `lmlib.generation_metrics`; perplexity, the language-modelling metric, is ``exp``
of the mean cross-entropy (Chapter 1, `lmlib.perplexity`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from lmlib.runtime import check_int

# --------------------------------------------------------------------------------------------
# Classification


def _sequence(value, name: str, of: str = "labels") -> list:
    """``value`` as a list, or a TypeError for a string or anything that is not a sequence."""
    if isinstance(value, str) or not hasattr(value, "__len__") or isinstance(value, (set, dict)):
        raise TypeError(f"{name} must be a list of {of}, got {value!r:.50}")
    return value.tolist() if hasattr(value, "tolist") else list(value)  # a tensor's by value


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
