"""A translation task the book generates: numbers in English words to French words (Chapter 3).

Nothing is downloaded: `english` and `french` spell out any whole number below a million,
and `number_pairs` splits the numbers 1..max_value, shuffled with a seed, into train,
validation and test sets that share no number (so no test sentence is seen in training).
The task is small but not trivial: French counts in twenties above sixty
(97 = quatre-vingt-dix-sept, "four-twenty-ten-seven"), puts "et" in 21, 31, ... 71 but not
in 81 or 91, and writes "deux cents" but "deux cent un", "quatre-vingts" but
"quatre-vingt mille": a token may depend on words that come after it in the source.

- `english`, `french`: the two spellings (British English, with "and"; traditional French).
- `tokenize`: words, and the hyphen as a token of its own.
- `Vocabulary`: one table for both languages, with padding, begin, end and separator tokens.
- `number_pairs`: the seeded, disjoint splits, as `PairList`s of `Pair` rows spelled when read.
- `seq2seq_batch`: padded tensors for `lmlib.seq2seq.EncoderDecoder`;
  `decoder_only_batch` the same pairs as one sequence "source ⟶ target" for a GPT.

>>> english(312), french(312)
('three hundred and twelve', 'trois cent douze')
>>> french(97), french(80), french(80_000), french(200), french(201)
('quatre-vingt-dix-sept', 'quatre-vingts', 'quatre-vingt mille', 'deux cents', 'deux cent un')
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch

from lmlib.runtime import check_int

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()  # fmt: skip
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
UNITES = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze "
          "quinze seize").split()  # fmt: skip
DIZAINES = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}
LIMIT = 1_000_000  # every number below this can be spelled


def _check(n) -> int:
    return check_int(n, "n", low=0, high=LIMIT - 1)


@cache  # 1,000 values: number_pairs spells up to a million numbers
def _english_below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    if rest:
        words += ["and"] if hundreds else []
        words += (
            [ONES[rest]] if rest < 20 else [TENS[rest // 10]] + [ONES[rest % 10]] * (rest % 10 > 0)
        )
    return " ".join(words)


def english(n: int) -> str:
    """``n`` in British English words, without hyphens: 1005 -> "one thousand and five".

    >>> english(0), english(21), english(120_045)
    ('zero', 'twenty one', 'one hundred and twenty thousand and forty five')
    """
    return _english(_check(n))


def _english(n: int) -> str:
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    words = [_english_below_1000(thousands), "thousand"] if thousands else []
    if thousands and 0 < rest < 100:
        words.append("and")  # "one thousand and five", as "one hundred and five"
    return " ".join(words + ([_english_below_1000(rest)] if rest else []))


def _french_below_100(n: int, last: bool) -> str:
    if n <= 16:
        return UNITES[n]
    if n < 20:
        return "dix-" + UNITES[n - 10]  # dix-sept, dix-huit, dix-neuf
    tens, unit = divmod(n, 10)
    if tens in (7, 9):  # sixty + 10..19 and four-twenty + 10..19
        if n == 71:
            return "soixante et onze"
        base = "soixante" if tens == 7 else "quatre-vingt"
        return base + "-" + _french_below_100(10 + unit, last)
    if tens == 8:  # "quatre-vingts" takes an s only when nothing follows it
        return "quatre-vingt" + ("-" + UNITES[unit] if unit else "s" if last else "")
    if unit == 0:
        return DIZAINES[tens]
    return DIZAINES[tens] + (" et un" if unit == 1 else "-" + UNITES[unit])


@cache
def _french_below_1000(n: int, last: bool) -> str:
    hundreds, rest = divmod(n, 100)
    words = []
    if hundreds == 1:
        words.append("cent")
    elif hundreds:  # "deux cents", but "deux cent un" and "deux cent mille"
        words += [UNITES[hundreds], "cents" if rest == 0 and last else "cent"]
    if rest:
        words.append(_french_below_100(rest, last))
    return " ".join(words)


def french(n: int) -> str:
    """``n`` in French words, traditional spelling (hyphens below 100 except around "et").

    >>> french(71), french(81), french(1001), french(21_000)
    ('soixante et onze', 'quatre-vingt-un', 'mille un', 'vingt et un mille')
    """
    return _french(_check(n))


def _french(n: int) -> str:
    if n == 0:
        return "zéro"
    thousands, rest = divmod(n, 1000)
    words = []
    if thousands == 1:
        words.append("mille")  # "mille", never "un mille"
    elif thousands:
        words += [_french_below_1000(thousands, last=False), "mille"]
    if rest:
        words.append(_french_below_1000(rest, last=True))
    return " ".join(words)


def tokenize(text: str) -> list[str]:
    """Words, with each hyphen a token: the model then learns "vingt" once, not in 9 compounds.

    >>> tokenize("quatre-vingt-dix-sept mille")
    ['quatre', '-', 'vingt', '-', 'dix', '-', 'sept', 'mille']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return re.findall(r"[^\s-]+|-", text)


def detokenize(tokens: list[str]) -> str:
    """The inverse of `tokenize`: ``detokenize(tokenize(s)) == s`` for both spellings.

    >>> detokenize(['quatre', '-', 'vingts', 'et'])
    'quatre-vingts et'
    """
    return " ".join(tokens).replace(" - ", "-")


class Vocabulary:
    """Token <-> id for both languages: four special tokens, then every word, sorted.

    ``<pad>`` fills batches, ``<bos>`` starts a target, ``<eos>`` ends one, and ``⟶``
    separates source from target when a decoder-only model reads both as one sequence.
    Words both languages spell alike ("six") are one token.

    >>> vocab = Vocabulary()
    >>> vocab.encode("deux cents"), vocab.decode(vocab.encode("deux cents"))
    ([10, 7], 'deux cents')
    """

    specials = ("<pad>", "<bos>", "<eos>", "⟶")

    def __init__(self):
        # Every word of both spellings appears below 1000, except the thousands.
        words = {w for n in range(1000) for w in tokenize(english(n)) + tokenize(french(n))}
        self.tokens = list(self.specials) + sorted(words | {"thousand", "mille"})
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.sep_id = range(4)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        unknown = [t for t in tokenize(text) if t not in self.ids]
        if unknown:
            raise ValueError(f"words outside the vocabulary: {unknown[:5]}")
        return [self.ids[t] for t in tokenize(text)]

    def decode(self, ids) -> str:
        """Text of the ids, stopping at the first ``<eos>``; padding and ``<bos>`` dropped."""
        ids = [int(i) for i in ids]
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        return detokenize([self.tokens[i] for i in ids if i not in (self.pad_id, self.bos_id)])


@dataclass(frozen=True)
class Pair:
    number: int
    source: str  # English
    target: str  # French


class PairList(Sequence):
    """Numbers as `Pair` rows, spelled when read: ``pairs[i]`` is
    ``Pair(n, english(n), french(n))`` for the i-th number, a slice is a list of `Pair`.

    Chapter 3's training set of a million numbers takes a second to shuffle; spelling all of
    it up front, as a million `Pair` objects, took 17 s, and training reads 32,000.

    >>> pairs = PairList([312, 5])
    >>> len(pairs), pairs[-1], [p.number for p in pairs]
    (2, Pair(number=5, source='five', target='cinq'), [312, 5])
    """

    def __init__(self, numbers):
        numbers = list(numbers)
        if not all(type(n) is int for n in numbers):  # a bool, a float, a string ...
            numbers = [_check(n) for n in numbers]  # the first that is no int raises
        if numbers:  # every int in range
            _check(min(numbers))
            _check(max(numbers))
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_pair(n) for n in self.numbers[index]]
        return _pair(self.numbers[index])

    def __iter__(self):
        return map(_pair, self.numbers)

    def __eq__(self, other) -> bool:
        return isinstance(other, PairList) and self.numbers == other.numbers

    __hash__ = None  # equal lists of numbers are equal, and the list can change

    def __repr__(self) -> str:
        return f"PairList({len(self):,} pairs)"


def _pair(n: int) -> Pair:
    return Pair(n, _english(n), _french(n))


@dataclass(frozen=True)
class Splits:
    train: PairList
    valid: PairList
    test: PairList


def number_pairs(max_value: int = 9999, n_valid: int = 500, n_test: int = 1000,
                 seed: int = 0) -> Splits:  # fmt: skip
    """The numbers 1..max_value, shuffled with ``seed``: the first ``n_test`` are the test
    set, the next ``n_valid`` the validation set, the rest the training set. Each number is
    in one split only, and its English spelling identifies it, so no test source is ever a
    training source.

    >>> splits = number_pairs(max_value=100, n_valid=10, n_test=20)
    >>> len(splits.train), len(splits.valid), len(splits.test)
    (70, 10, 20)
    """
    check_int(max_value, "max_value", low=1, high=LIMIT - 1)
    check_int(n_valid, "n_valid", low=0)
    check_int(n_test, "n_test", low=0)
    check_int(seed, "seed", low=0)
    if n_valid + n_test >= max_value:
        raise ValueError(f"n_valid + n_test = {n_valid + n_test} leaves no training numbers "
                         f"out of {max_value}")  # fmt: skip
    numbers = list(range(1, max_value + 1))
    random.Random(seed).shuffle(numbers)
    return Splits(
        PairList(numbers[n_test + n_valid :]),
        PairList(numbers[n_test : n_test + n_valid]),
        PairList(numbers[:n_test]),
    )


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    T = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (T - len(r)) for r in rows])


def seq2seq_batch(pairs: list[Pair], vocab: Vocabulary):
    """(src, src_mask, tgt, targets) for `lmlib.seq2seq.EncoderDecoder`, padded on the right.

    src (B, S) English ids, src_mask (B, S) 0 on padding; tgt (B, T) is ``<bos>`` + French,
    targets (B, T) French + ``<eos>`` (what each position must predict), -100 on padding.

    >>> src, src_mask, tgt, targets = seq2seq_batch([Pair(2, "two", "deux")], Vocabulary())
    >>> tgt.tolist(), targets.tolist()  # <bos> deux -> deux <eos>
    ([[1, 10]], [[10, 2]])
    """
    if not pairs:
        raise ValueError("pairs must be a non-empty list of Pair")
    src = [vocab.encode(p.source) for p in pairs]
    tgt = [[vocab.bos_id] + vocab.encode(p.target) for p in pairs]
    targets = [t[1:] + [vocab.eos_id] for t in tgt]
    src_mask = _pad([[1] * len(s) for s in src], 0)
    return _pad(src, vocab.pad_id), src_mask, _pad(tgt, vocab.pad_id), _pad(targets, -100)


def decoder_only_batch(pairs: list[Pair], vocab: Vocabulary):
    """(idx, targets) for a decoder-only model: "English ⟶ French <eos>" as one row.

    targets[t] = idx[t + 1] on the French side and -100 elsewhere: the model reads the
    source but is scored, like the encoder-decoder, only on the target.

    >>> idx, targets = decoder_only_batch([Pair(2, "two", "deux")], Vocabulary())
    >>> idx.tolist(), targets.tolist()  # two ⟶ deux <eos>
    ([[56, 3, 10, 2]], [[-100, 10, 2, -100]])
    """
    if not pairs:
        raise ValueError("pairs must be a non-empty list of Pair")
    rows, targets = [], []
    for p in pairs:
        src, tgt = vocab.encode(p.source), vocab.encode(p.target) + [vocab.eos_id]
        rows.append(src + [vocab.sep_id] + tgt)
        targets.append([-100] * len(src) + tgt + [-100])
    return _pad(rows, vocab.pad_id), _pad(targets, -100)
