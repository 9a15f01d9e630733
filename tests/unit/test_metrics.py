"""lmlib.metrics against scikit-learn (skipped where it is not installed), hand-checkable
cases, and properties that must hold for any input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
