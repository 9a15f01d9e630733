"""lmlib.generation_metrics against its reference implementations (sacrebleu, rouge-score,
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


def test_corpus_bleu_refuses_unpaired_or_no_sentences():
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        corpus_bleu([["a", "b"], ["c"]], [["a", "b"]])
    with pytest.raises(ValueError, match="no sentences"):
        corpus_bleu([], [])
    with pytest.raises(TypeError, match="hypotheses must be a list of token lists"):
        corpus_bleu("the cat", ["the cat".split()])
