"""lmlib.number_words: spellings checked by hand, disjoint seeded splits, batches that line up."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmlib.number_words import (
    Pair,
    PairList,
    Vocabulary,
    decoder_only_batch,
    detokenize,
    english,
    french,
    number_pairs,
    seq2seq_batch,
    tokenize,
)

# Checked against a French grammar's rules: "et" in 21..71 but not 81, 91; "quatre-vingts"
# and "deux cents" take an s only at the end of the number; "mille" never does.
KNOWN = {
    7: ("seven", "sept"),
    16: ("sixteen", "seize"),
    17: ("seventeen", "dix-sept"),
    21: ("twenty one", "vingt et un"),
    70: ("seventy", "soixante-dix"),
    71: ("seventy one", "soixante et onze"),
    79: ("seventy nine", "soixante-dix-neuf"),
    80: ("eighty", "quatre-vingts"),
    81: ("eighty one", "quatre-vingt-un"),
    91: ("ninety one", "quatre-vingt-onze"),
    100: ("one hundred", "cent"),
    180: ("one hundred and eighty", "cent quatre-vingts"),
    200: ("two hundred", "deux cents"),
    312: ("three hundred and twelve", "trois cent douze"),
    1000: ("one thousand", "mille"),
    1005: ("one thousand and five", "mille cinq"),
    2000: ("two thousand", "deux mille"),
    80_000: ("eighty thousand", "quatre-vingt mille"),
    200_200: ("two hundred thousand two hundred", "deux cent mille deux cents"),
    999_999: ("nine hundred and ninety nine thousand nine hundred and ninety nine",
              "neuf cent quatre-vingt-dix-neuf mille neuf cent quatre-vingt-dix-neuf"),
}  # fmt: skip


@pytest.mark.parametrize("n", sorted(KNOWN))
def test_spellings_checked_by_hand(n):
    assert (english(n), french(n)) == KNOWN[n]


def test_every_number_is_spelled_differently():
    numbers = range(0, 1_000_000, 7)
    assert len({english(n) for n in numbers}) == len({french(n) for n in numbers}) == len(numbers)


@given(st.integers(0, 999_999))
def test_tokens_round_trip_and_are_in_the_vocabulary(n):
    vocab = Vocabulary()
    for text in (english(n), french(n)):
        assert detokenize(tokenize(text)) == text
        assert vocab.decode(vocab.encode(text)) == text


def test_splits_are_disjoint_deterministic_and_counted():
    splits = number_pairs(max_value=5000, n_valid=300, n_test=700, seed=3)
    train = {p.source for p in splits.train}
    valid, test = {p.source for p in splits.valid}, {p.source for p in splits.test}
    assert (len(train), len(valid), len(test)) == (4000, 300, 700)
    assert not (train & test) and not (train & valid) and not (valid & test)
    numbers = splits.train.numbers + splits.valid.numbers + splits.test.numbers
    assert sorted(numbers) == list(range(1, 5001))
    assert number_pairs(5000, 300, 700, seed=3) == splits
    assert number_pairs(5000, 300, 700, seed=4).test != splits.test
    assert all(p.target == french(p.number) for p in splits.test)
    # the same shuffle as before the pairs were spelled when read (Chapter 3's splits)
    assert splits.test.numbers[:3] == [2938, 3491, 4564]


def test_pair_list_spells_what_it_is_asked_for():
    pairs = PairList([80, 2, 71])
    assert len(pairs) == 3 and pairs[0] == Pair(80, "eighty", "quatre-vingts")
    assert pairs[-1] == Pair(71, "seventy one", "soixante et onze")
    assert pairs[1:] == [Pair(2, "two", "deux"), Pair(71, "seventy one", "soixante et onze")]
    assert list(pairs) == [pairs[i] for i in range(3)] and pairs[::-1][0] == pairs[2]
    assert pairs == PairList((80, 2, 71)) and pairs != PairList([2, 80, 71])
    assert pairs != [pairs[0], pairs[1], pairs[2]]  # a PairList equals PairLists only
    assert PairList([]) == PairList(()) and not PairList([])
    with pytest.raises(IndexError):
        pairs[3]
    src, *_ = seq2seq_batch(pairs, Vocabulary())  # any sequence of pairs batches
    assert src.shape == (3, 2)  # "seventy one" is the longest


def test_batches_line_up():
    vocab = Vocabulary()
    pairs = [Pair(80, "eighty", "quatre-vingts"), Pair(2, "two", "deux")]
    src, src_mask, tgt, targets = seq2seq_batch(pairs, vocab)
    assert src_mask.tolist() == [[1], [1]] and tgt.shape == targets.shape == (2, 4)
    assert tgt[1].tolist() == [vocab.bos_id, vocab.ids["deux"], vocab.pad_id, vocab.pad_id]
    assert targets[1].tolist() == [vocab.ids["deux"], vocab.eos_id, -100, -100]
    for i in range(2):  # targets are the decoder's inputs shifted by one, then <eos>
        n = int((targets[i] != -100).sum())
        assert tgt[i, 1:n].tolist() == targets[i, : n - 1].tolist()
        assert targets[i, n - 1] == vocab.eos_id
    idx, labels = decoder_only_batch(pairs, vocab)
    assert vocab.decode(idx[0]) == "eighty ⟶ quatre-vingts"
    scored = labels[0] != -100
    assert vocab.decode(labels[0][scored]) == "quatre-vingts"  # only the target is scored
    assert (labels[:, :-1][labels[:, :-1] != -100] == idx[:, 1:][labels[:, :-1] != -100]).all()


def test_bad_input():
    with pytest.raises(ValueError, match="n must be an int in"):
        english(1_000_000)
    with pytest.raises(TypeError, match="n must be an int"):
        french(2.0)
    with pytest.raises(TypeError, match="n must be an int"):
        PairList([1, True])
    with pytest.raises(ValueError, match="n must be an int in"):
        PairList([5, 1_000_000, 7])
    with pytest.raises(ValueError, match="leaves no training numbers"):
        number_pairs(max_value=100, n_valid=50, n_test=50)
    with pytest.raises(ValueError, match="words outside the vocabulary"):
        Vocabulary().encode("one million")
    with pytest.raises(ValueError, match="non-empty"):
        seq2seq_batch([], Vocabulary())
