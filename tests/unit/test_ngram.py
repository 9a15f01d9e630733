"""n-gram models: hand-checkable counts, distributions that sum to one, perplexity."""

import copy
import math
import pickle
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.ngram import InterpolatedNGramLM, NGramLM

TEXT = "the cat sat on the mat. the dog sat on the log."


def test_bigram_probabilities_by_hand():
    lm = NGramLM(n=2, k=0).fit("abab")
    assert lm.prob("a", "b") == 1.0  # a is always followed by b
    assert lm.prob("b", "a") == 1.0
    assert lm.prob("b", "b") == 0.0
    laplace = NGramLM(n=2, k=1).fit("abab")
    assert laplace.prob("a", "a") == pytest.approx(1 / 4)  # (0 + 1) / (2 + 2)


def test_context_longer_than_the_order_is_truncated():
    lm = NGramLM(n=2, k=0.5).fit(TEXT)
    assert lm.prob("xyz the c", "a") == lm.prob("c", "a")


def test_unigram_perplexity_equals_exp_entropy_on_training_text():
    lm = NGramLM(n=1, k=0).fit(TEXT)
    freqs = [TEXT.count(c) / len(TEXT) for c in set(TEXT)]
    entropy = -sum(p * math.log(p) for p in freqs)
    assert lm.perplexity(TEXT) == pytest.approx(math.exp(entropy))


def test_perplexity_is_exp_mean_negative_log_prob():
    lm = NGramLM(n=3, k=0.1).fit(TEXT)
    text = "the cat sat"
    logs = [math.log(lm.prob(text[max(0, i - 2) : i], text[i])) for i in range(len(text))]
    assert lm.perplexity(text) == pytest.approx(math.exp(-sum(logs) / len(logs)))
    assert lm.log_prob(text) == pytest.approx(sum(logs))


def test_uniform_model_has_perplexity_of_vocabulary_size():
    lm = NGramLM(n=2, k=1e12).fit(TEXT)  # huge k: every distribution is ~uniform
    assert lm.perplexity("the log") == pytest.approx(lm.V, rel=1e-6)


def test_unseen_trigram_without_smoothing_gives_infinite_perplexity():
    lm = NGramLM(n=3, k=0).fit(TEXT)
    assert lm.perplexity("tha") == math.inf


def test_words_work_as_tokens():
    words = TEXT.split()
    lm = NGramLM(n=2, k=0).fit(words)
    assert lm.prob(["the"], "cat") == pytest.approx(1 / 4)  # the -> cat, mat, dog, log


contexts = st.text(alphabet="abc ", max_size=6)


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="abc ", min_size=1, max_size=40), ctx=contexts,
       n=st.integers(1, 4), k=st.floats(0.01, 5))  # fmt: skip
def test_distributions_sum_to_one(text, ctx, n, k):
    vocab = sorted(set("abc "))
    for lm in (NGramLM(n=n, k=k), InterpolatedNGramLM(n=n)):
        lm.fit(text, vocab=vocab)
        probs = lm.next_token_probs(ctx)
        assert probs.min() > 0
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="abcd ", min_size=1, max_size=60), ctx=contexts,
       n=st.integers(1, 4), k=st.sampled_from([0.0, 0.1, 1.0]))  # fmt: skip
def test_the_whole_distribution_is_prob_of_each_token_to_the_last_bit(text, ctx, n, k):
    """next_token_probs works on arrays; it must give exactly what prob gives, token by
    token (k = 0 too, where an unseen context has no estimate: all zeros)."""
    vocab = sorted(set("abcd "))  # "d" may never occur in the text
    for lm in (NGramLM(n=n, k=k), InterpolatedNGramLM(n=n)):
        lm.fit(text, vocab=vocab)
        assert lm.next_token_probs(ctx).tolist() == [lm.prob(ctx, w) for w in vocab]


def test_a_context_shorter_than_n_minus_1_is_used_whole():
    """Near the start of a text, a token has fewer than n - 1 tokens before it. All of them
    count: for n = 6, three tokens of context score like a 4-gram model's full context (a
    slice starting at 3 - 6 + 1 = -2 used to keep only the last two)."""
    text = "abcab cabd abca bcad " * 3
    for k in (0.0, 0.5):
        assert NGramLM(n=6, k=k).fit(text).prob("abc", "a") == NGramLM(n=4, k=k).fit(text).prob(
            "abc", "a"
        )
    six, four = InterpolatedNGramLM(n=6).fit(text), InterpolatedNGramLM(n=4).fit(text)
    assert six.prob("abc", "a") == four.prob("abc", "a")
    assert six.log_prob("abca") == four.log_prob("abca")  # 4 tokens: at most 3 before any


tokens = st.lists(st.sampled_from("abcd"), min_size=1, max_size=50)


@settings(max_examples=80, deadline=None)
@given(train=tokens, n=st.integers(1, 6))
def test_counts_are_those_of_counting_tuples(train, n):
    """fit counts by sorting integer codes; the reference counts one tuple per position."""
    lm = InterpolatedNGramLM(n=n).fit(train)
    assert list(lm.ngrams) == list(range(1, n + 1)) and n + 1 not in lm.ngrams
    for m in range(1, n + 1):
        grams = Counter(zip(*(train[i:] for i in range(m))))
        followed, followers = Counter(), Counter()
        for gram, c in grams.items():
            followed[gram[:-1]] += c
            followers[gram[:-1]] += 1
        assert lm.ngrams[m] == grams
        assert lm.contexts[m] == followed and lm.followers[m] == followers


@settings(max_examples=80, deadline=None)
@given(train=tokens, text=tokens, n=st.integers(1, 6), k=st.sampled_from([0.0, 0.1, 1.0]))
def test_log_prob_is_the_sum_of_prob_to_the_last_bit(train, text, n, k):
    """log_prob scores every position with arrays; it must add up exactly what a loop of
    prob gives, in the same order (k = 0: an unseen n-gram makes it -inf)."""
    vocab = list("abcd")
    for lm in (NGramLM(n=n, k=k), InterpolatedNGramLM(n=n)):
        lm.fit(train, vocab=vocab)
        total = 0.0
        for i, token in enumerate(text):
            p = lm.prob(text[max(0, i - n + 1) : i], token)
            if p == 0.0:
                total = -math.inf
                break
            total += math.log(p)
        assert lm.log_prob(text) == total


def test_a_refused_fit_leaves_the_fitted_model_as_it_was():
    lm = NGramLM(n=2, k=0).fit("abab")
    with pytest.raises(ValueError, match="not in the given vocab"):
        lm.fit("abc", vocab="ab")
    assert lm.vocab == ["a", "b"] and lm.prob("a", "b") == 1.0


def test_a_copy_or_a_pickle_counts_for_itself():
    """The count dictionaries are built on first read, from the model they belong to: a
    copy's from the copy, even after the original is fitted on another text."""
    lm = InterpolatedNGramLM(n=3).fit(TEXT)
    copied, pickled = copy.deepcopy(lm), pickle.loads(pickle.dumps(lm))
    lm.fit("xyz")
    for other in (copied, pickled):
        assert other.contexts[2][("t",)] == TEXT.count("t") and other.followers[3]
        assert other.prob("th", "e") == InterpolatedNGramLM(n=3).fit(TEXT).prob("th", "e")


def test_interpolation_beats_add_one_on_long_contexts():
    train, held_out = TEXT * 3, "the dog sat on the mat."
    add_one = NGramLM(n=5, k=1).fit(train).perplexity(held_out)
    interp = InterpolatedNGramLM(n=5).fit(train).perplexity(held_out)
    assert interp < add_one


def test_generation_is_reproducible_and_uses_the_vocabulary():
    lm = InterpolatedNGramLM(n=3).fit(TEXT)
    a = lm.generate(50, prompt="the ", seed=7)
    assert a == lm.generate(50, prompt="the ", seed=7)
    assert len(a) == 50 and set(a) <= set(lm.vocab)
    assert a != lm.generate(50, prompt="the ", seed=8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: NGramLM(n=0), r"n \(1 = unigram\) must be an int >= 1, got 0"),
        (lambda: NGramLM(n=2.0), r"n \(1 = unigram\) must be an int >= 1, got 2.0"),
        (lambda: NGramLM(n=2, k=float("inf")), "k must be a finite number >= 0, got inf"),
        (lambda: NGramLM(n=2).fit("ab").generate(-1), "length must be an int >= 0, got -1"),
        (lambda: NGramLM(n=2, k=-1), "k must be"),
        (lambda: NGramLM(n=2).fit(""), "empty"),
        (lambda: NGramLM(n=2).fit("abc", vocab="ab"), "not in the given vocab"),
        (lambda: NGramLM(n=2).prob("a", "b"), "not fitted"),
        (lambda: NGramLM(n=2).fit("ab").prob("a", "z"), "not in the model's vocabulary"),
        (lambda: NGramLM(n=2).fit("ab").perplexity(""), "empty"),
        (lambda: NGramLM(n=2).fit("ab").perplexity("abz"), "'z' is not in the model's"),
        (lambda: NGramLM(n=2).log_prob("ab"), "not fitted"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        call()
