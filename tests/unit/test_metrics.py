"""Metrics against their reference implementations (scikit-learn, sacrebleu, rouge-score,
each test skipped on its own where its reference is not installed), hand-checkable cases,
and properties that must hold for any input."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.generation_metrics import (
    corpus_bleu,
    distinct_n,
    lcs_length,
    pass_at_k,
    repetition,
    rouge,
    rouge_l,
    rouge_n,
    rouge_tokenize,
)
from lmlib.metrics import (
    accuracy,
    answer_is_correct,
    classification_report,
    confusion_matrix,
    precision_recall_f1,
    recall_at_k,
    reciprocal_rank,
)

labels = st.lists(st.integers(0, 1), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_classification_metrics_equal_scikit_learn(data):
    skm = pytest.importorskip("sklearn.metrics")
    gold = data.draw(labels)
    pred = data.draw(st.lists(st.integers(0, 1), min_size=len(gold), max_size=len(gold)))
    assert accuracy(gold, pred) == pytest.approx(skm.accuracy_score(gold, pred))
    assert (
        confusion_matrix(gold, pred, 2) == skm.confusion_matrix(gold, pred, labels=[0, 1]).tolist()
    )
    for positive in (0, 1):
        r = precision_recall_f1(gold, pred, positive)
        kw = dict(pos_label=positive, zero_division=0)
        assert r["precision"] == pytest.approx(skm.precision_score(gold, pred, **kw))
        assert r["recall"] == pytest.approx(skm.recall_score(gold, pred, **kw))
        assert r["f1"] == pytest.approx(skm.f1_score(gold, pred, **kw))


def test_classification_by_hand_and_bad_input():
    # TP 1, FP 0, FN 2: precise but finds a third; F1 = 2 * 1 * 1/3 / (4/3) = 0.5
    r = precision_recall_f1([1, 1, 1, 0], [1, 0, 0, 0])
    assert (r["precision"], round(r["recall"], 4), r["f1"]) == (1.0, 0.3333, 0.5)
    assert precision_recall_f1([0, 0], [0, 0])["f1"] == 0.0  # no positives anywhere
    report = classification_report([1, 1, 1, 0], [1, 0, 0, 0], ["negative", "positive"])
    assert "macro avg" in report and "0.500" in report
    with pytest.raises(ValueError, match="same length"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])


def test_retrieval_metrics():
    assert recall_at_k(["a", "b", "c"], {"c", "d"}, 3) == 0.5
    assert recall_at_k(["a", "b", "c"], {"c"}, 2) == 0.0
    assert reciprocal_rank(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a"], {"z"}) == 0.0
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(["a"], set(), 1)


PAIRS = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("a quick brown fox jumps over the dog", "the quick brown fox jumped over the lazy dog"),
    ("the the the the", "the cat is here now"),
    (
        "it is a guide to action which ensures that the military always obeys the commands of "
        "the party",
        "it is a guide to action that ensures that the military will forever heed party commands",
    ),
]


@pytest.mark.parametrize("n_pairs", [1, 2, 4])
def test_corpus_bleu_equals_sacrebleu(n_pairs):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = zip(*PAIRS[:n_pairs])
    ours = corpus_bleu([h.split() for h in hyps], [r.split() for r in refs])
    theirs = sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize="none",
                                   smooth_method="none").score  # fmt: skip
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_bleu_clipping_brevity_and_zero():
    # Unclipped, "the the the the" would get unigram precision 4/4 against a reference with
    # one "the"; clipped it gets 1/4, and with no bigram match BLEU is 0.
    assert corpus_bleu([["the"] * 4], [["the", "cat"]]) == 0.0
    perfect = "a b c d e".split()
    assert corpus_bleu([perfect], [perfect]) == pytest.approx(100.0)
    # a correct but short hypothesis is penalised: BP = exp(1 - 5/4)
    short = corpus_bleu([perfect[:4]], [perfect])
    assert short == pytest.approx(100 * math.exp(1 - 5 / 4))


TEXTS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Police killed the gunman", "the gunman police killed"),
    (
        "Transformers use attention; RNNs use recurrence.",
        "RNNs rely on recurrence, while Transformers rely on attention.",
    ),
    ("", "nothing matches an empty summary"),
]


@pytest.mark.parametrize("cand, ref", TEXTS)
def test_rouge_equals_rouge_score(cand, ref):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    theirs = scorer.score(ref, cand)  # rouge-score takes (target, prediction)
    ours = rouge(cand, ref)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert ours[key] == pytest.approx(theirs[key].fmeasure), key
    c, r = rouge_tokenize(cand), rouge_tokenize(ref)
    assert rouge_n(c, r, 1)["recall"] == pytest.approx(theirs["rouge1"].recall)
    assert rouge_l(c, r)["precision"] == pytest.approx(theirs["rougeL"].precision)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from("abcd"), max_size=12), st.lists(st.sampled_from("abcd"), max_size=12)
)
def test_lcs_properties(a, b):
    n = lcs_length(a, b)
    assert n == lcs_length(b, a)  # symmetric
    assert n <= min(len(a), len(b))
    assert lcs_length(a, a) == len(a)
    assert rouge_n(a, b, 1)["recall"] >= rouge_l(a, b)["recall"]  # a subsequence's words overlap


def test_pass_at_k_matches_the_combinatorial_formula():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                want = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
    assert pass_at_k(200, 10, 1) == pytest.approx(0.05)  # pass@1 is c / n
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 6)


# --------------------------------------------------------------------------------------------
# Diversity and repetition (Chapter 5)


def distinct_bigrams_by_hand(samples):
    """Chapter 5's definition, as the chapter first wrote it."""
    pairs = [tuple(s[i : i + 2]) for s in samples for i in range(len(s) - 1)]
    return len(set(pairs)) / len(pairs)


def repetition_by_hand(sample_ids, n=4):
    grams = [tuple(sample_ids[i : i + n]) for i in range(len(sample_ids) - n + 1)]
    return 1 - len(set(grams)) / len(grams)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=4, max_size=20), min_size=1, max_size=8))
def test_distinct_n_and_repetition_equal_chapter_5s_definitions(samples):
    assert distinct_n(samples, 2) == distinct_bigrams_by_hand(samples)  # exactly, not approx
    for sample in samples:
        assert repetition(sample, 4) == repetition_by_hand(sample)
        assert 0 <= repetition(sample, 1) < 1 and repetition(sample, len(sample)) == 0
    assert 0 < distinct_n(samples, 1) <= 1


def test_diversity_and_repetition_by_hand():
    assert distinct_n([[1, 2, 3], [1, 2, 4]], n=2) == 0.75  # (1, 2) twice among 4 bigrams
    assert distinct_n([[1, 2, 3]] * 8, n=2) == 1 / 8  # identical samples: 1 / number
    assert repetition("a b c a b c".split(), n=3) == 0.25
    assert repetition([7] * 10, n=2) == 1 - 1 / 9  # stuck: every bigram but the first repeats
    torch = pytest.importorskip("torch")
    assert distinct_n(torch.tensor([[1, 2, 3], [1, 2, 4]])) == 0.75  # tensor rows: by value
    assert repetition(torch.tensor([5, 6, 5, 6]), n=2) == 1 - 2 / 3  # (5, 6) twice, (6, 5)


def test_diversity_and_repetition_bad_input():
    with pytest.raises(ValueError, match="no sample has n = 2 tokens"):
        distinct_n([[1], []])
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        distinct_n([[1, 2]], n=0)
    with pytest.raises(ValueError, match="a sample of 3 tokens has no 4-grams"):
        repetition([1, 2, 3])
    with pytest.raises(TypeError, match="n must be an int >= 1, got 1.5"):
        repetition([1, 2, 3], n=1.5)
    with pytest.raises(TypeError, match="sample must be a list of tokens, got 'a b c a b c'"):
        repetition("a b c a b c")  # would count characters


# --------------------------------------------------------------------------------------------
# Judging a free-text answer by its leading claim


@pytest.mark.parametrize(
    ("prediction", "answers", "question", "expected"),
    [
        # a unit written onto the number does not hide it
        ("Sentences score high, so it has 22.7M parameters.", ["22.7"], "", True),
        # the question's own numbers are not the answer; "3" is
        ("The answer is 3.", ["3"], "How many heads does it store instead of 9?", True),
        ("It stores 9 heads instead of 9.", ["3"], "How many instead of 9?", False),
        # the leading claim decides: a wrong first answer is not rescued by a later one
        ("The answer is 9. The answer is 270.", ["270"], "", False),
        ("[2] 9 The answer is 9.", ["270"], "", False),
        # the unit of the answer is required when it has one
        ("The answer is: 2.", ["2 trillion"], "", False),
        ("It saw two trillion tokens.", ["2 trillion"], "", True),
        ("It takes 8,192 tokens and 360 MiB.", ["360 MiB"], "a full 8,192-token cache", True),
        ("The answer is: 49,152", ["49152"], "", True),
        ("About 7% of them.", ["7%"], "", True),
        ("About 7 of them.", ["7%"], "", False),
        # numbers inside names are not numbers
        ("SmolLM2 has 576 of them.", ["576"], "", True),
        ("SmolLM2 has them.", ["2"], "", False),
        # text answers: whole words of the first sentence
        ("It was Sennrich et al. in 2016.", ["Sennrich"], "", True),
        ("It is in layer 3, head 8 of the model.", ["layer 3, head 8"], "", True),
        ("Nobody knows. Sennrich did.", ["Sennrich"], "", False),
    ],
)
def test_answer_is_correct_on_hand_checked_answers(prediction, answers, question, expected):
    assert answer_is_correct(prediction, answers, question) is expected


@given(st.integers(0, 10**7), st.sampled_from(["", "tokens", "MiB", "%"]))
def test_answer_is_correct_reads_a_stated_quantity(n, unit):
    gold = f"{n} {unit}".strip()
    assert answer_is_correct(f"The answer is {n:,} {unit}. Not {n + 1}.", [gold])
    assert not answer_is_correct(f"The answer is {n + 1:,} {unit}. Not {n}.", [gold])


def test_answer_is_correct_refuses_a_single_string_of_answers():
    with pytest.raises(TypeError, match="list of acceptable answers"):
        answer_is_correct("The answer is 3.", "3")
