"""Tokenizers, from characters to byte-level BPE with a pre-tokenizing regex (Chapter 2).

Three variants, each adding one idea to the one before, like minbpe's Basic -> Regex:

- ``CharTokenizer``: one id per character seen in a training text.
- ``BPETokenizer``: start from the 256 byte values (so any string can be encoded) and
  learn merges, each replacing the most frequent adjacent pair of ids by a new id.
- ``RegexBPETokenizer``: first split the text into chunks with GPT-2's regex, so merges
  never cross a chunk boundary (a word never fuses with the space after it); plus special
  tokens such as ``<|endoftext|>``.

Training counts pairs once, then updates only the counts next to each merged position
(``_learn_merges``); ``naive_merges`` is the obvious recount-everything version, kept for
reading and for the test that shows both learn the same merges.

Ties: among equally frequent pairs, the smallest pair wins, comparing (left id, right id)
as tuples, e.g. (97, 98) before (256, 97). Training is therefore reproducible.
"""

from __future__ import annotations

import heapq
import json
import numbers
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import regex

from lmlib.runtime import check_int

# GPT-2's pre-tokenizer: contractions, optional space + letters / digits / other symbols,
# and runs of whitespace (the last space before a word stays with the word).
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair occurs (overlapping: [1, 1, 1] has (1, 1) twice).

    >>> count_pairs([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    return dict(Counter(zip(ids, ids[1:])))


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair``, scanning left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 8)  # the leftmost match wins
    [8, 7]
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_merges(ids: list[int], n_merges: int) -> list[tuple[int, int]]:
    """The teaching version of BPE training: recount all pairs before every merge.

    Wikipedia's example, 'a'=97, 'b'=98, 'c'=99, 'd'=100: (97, 97) and (97, 98) tie for
    the second merge at 2 each, after (97, 97) -> 256; (97, 98) wins as the smaller pair.

    >>> naive_merges(list(b"aaabdaaabac"), 3)
    [(97, 97), (97, 98), (256, 257)]
    """
    check_int(n_merges, "n_merges", low=0)
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = count_pairs(ids)
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))  # see tie rule above
        ids = merge(ids, pair, new_id)
        merges.append(pair)
    return merges


def _learn_merges(chunks: dict[bytes, int], n_merges: int) -> list[tuple[tuple[int, int], int]]:
    """Learn up to ``n_merges`` merges from distinct chunks and their frequencies.

    Every symbol of every chunk is a node in a linked list (``val``, ``nxt``, ``prv``,
    -1 = none), so merging a pair touches only its positions and their two neighbours.
    ``where`` maps each pair to the nodes where it starts (stale nodes are skipped), and a
    heap of (-count, pair) gives the best pair. Returns [(pair, count), ...] in order.
    """
    val, nxt, prv, freq = [], [], [], []
    for chunk, f in chunks.items():
        start, n = len(val), len(chunk)
        val.extend(chunk)
        prv.extend(range(start - 1, start + n - 1))
        nxt.extend(range(start + 1, start + n + 1))
        prv[start], nxt[-1] = -1, -1  # chunk boundaries: merges never cross them
        freq.extend([f] * n)
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, j in enumerate(nxt):
        if j != -1:
            counts[val[i], val[j]] += freq[i]
            where[val[i], val[j]].add(i)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    learned = []
    while len(learned) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != counts[pair]:  # stale entry: counts of old pairs only ever go down
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], pair))
            continue
        a, b = pair
        new_id, touched = 256 + len(learned), set()
        for i in sorted(where.pop(pair)):  # left to right, as `merge` does
            j = nxt[i]
            if val[i] != a or j == -1 or val[j] != b:
                continue  # an earlier merge changed this position
            f, h, k = freq[i], prv[i], nxt[j]
            if h != -1:  # (x, a) becomes (x, new)
                counts[val[h], a] -= f
                counts[val[h], new_id] += f
                where[val[h], new_id].add(h)
                touched.add((val[h], new_id))
            if k != -1:  # (b, y) becomes (new, y)
                counts[b, val[k]] -= f
                counts[new_id, val[k]] += f
                where[new_id, val[k]].add(i)
                touched.add((new_id, val[k]))
                prv[k] = i
            val[i], nxt[i], val[j] = new_id, k, -1  # node j is gone
        learned.append((pair, -neg))
        counts[pair] = 0
        for p in touched:  # new pairs: pushed once, with their final count
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
    return learned


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.vocab_size, tok.encode("hole"), tok.decode([1, 0, 2, 2, 3])
    (4, [1, 3, 2, 0], 'hello')
    """

    def __init__(self, chars: list[str]):
        if isinstance(chars, str) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise TypeError(f"chars must be a list of single characters, got {chars!r:.50}")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not repeat a character: each gets one id")
        self.itos = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {text!r:.50}")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        for c in text:
            if c not in self.stoi:
                raise ValueError(f"character {c!r} is not in the vocabulary")
        return [self.stoi[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        _check_ids(ids)
        if bad := [i for i in ids if not 0 <= i < len(self.itos)]:
            raise ValueError(f"unknown token id {bad[0]}")
        return "".join(self.itos[i] for i in ids)


def _check_ids(ids) -> None:
    if (
        isinstance(ids, (str, bytes))
        or not hasattr(ids, "__iter__")
        or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in ids)
    ):
        raise TypeError(f"decode expects a sequence of int token ids, got {ids!r:.50}")


class BPETokenizer:
    """Byte-level BPE on the text as a whole: 256 byte tokens, then learned merges.

    ``merges`` maps pair -> new id (256, 257, ... in merge order) and ``vocab`` maps
    id -> bytes. On Wikipedia's example (see ``naive_merges`` for the tie):

    >>> tok = BPETokenizer()
    >>> tok.train("aaabdaaabac", vocab_size=259)
    >>> tok.merges
    {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    >>> tok.encode("aaabdaaabac"), tok.vocab[258]
    ([258, 100, 258, 97, 99], b'aaab')
    """

    def __init__(self):
        self._set_merges([])

    def _chunks(self, text: str) -> list[str]:
        return [text]  # plain BPE: one chunk, so merges may cross spaces

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        """Learn ``vocab_size - 256`` merges (special tokens are dropped; add them after).

        If the text runs out of pairs first, training stops early with a ``UserWarning``
        that says how many merges it learned.
        """
        if not isinstance(text, str):
            raise TypeError(f"train expects a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot train on empty text")
        check_int(vocab_size, "vocab_size (at least the 256 byte tokens)", low=256)
        chunks = Counter(c.encode("utf-8") for c in self._chunks(text))
        learned = _learn_merges(chunks, vocab_size - 256)
        self._set_merges([pair for pair, _ in learned])
        if verbose:
            for (pair, count), new_id in zip(learned, self.merges.values()):
                print(f"merge {new_id - 255}: {pair} -> {new_id} {self.vocab[new_id]!r} x{count}")
        if len(learned) < vocab_size - 256:
            msg = f"no pairs left after {len(learned)} merges: vocab_size is {self.vocab_size}"
            warnings.warn(f"{msg}, not the requested {vocab_size}", stacklevel=2)

    def _set_merges(self, pairs: list[tuple[int, int]]) -> None:
        self.merges: dict[tuple[int, int], int] = {}
        self.special_tokens: dict[str, int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        self._cache: dict[str, list[int]] = {}  # chunk -> ids, valid for these merges only
        for new_id, (a, b) in enumerate(pairs, start=256):
            self.merges[a, b] = new_id
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]

    def _encode_chunk(self, data: bytes) -> list[int]:
        # Apply the earliest-learned merge present, everywhere, until none applies: this
        # replays training's merges in order, as GPT-2 does.
        ids = list(data)
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (lone surrogates, which UTF-8 cannot hold, raise)."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids = []
        for chunk in self._chunks(text):
            if (cached := self._cache.get(chunk)) is None:
                cached = self._encode_chunk(chunk.encode("utf-8"))
                if len(chunk) < 100:  # short chunks repeat (words); long ones rarely do
                    self._cache[chunk] = cached
            ids.extend(cached)
        return ids

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``. ``decode(encode(s)) == s`` exactly; ids that cut a UTF-8
        character in two decode with errors="replace", e.g. ``decode([228]) == "\\ufffd"``.
        """
        _check_ids(ids)
        if bad := [i for i in ids if i not in self.vocab]:
            raise ValueError(f"unknown token id {bad[0]}")
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> None:
        """Write JSON: the merges as [left, right] pairs in order (the i-th gets id 256 + i),
        the special tokens, and the split pattern (null for plain BPE)."""
        state = {
            "type": type(self).__name__,
            "pattern": getattr(self, "pattern", None),
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": self.special_tokens,
        }
        Path(path).write_text(json.dumps(state, ensure_ascii=False, indent=1), "utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """A new tokenizer from a ``save`` file: ``tok = RegexBPETokenizer.load(path)``."""
        try:
            state = json.loads(Path(path).read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a saved tokenizer: not JSON ({err})") from err
        need = {"type": str, "pattern": (str, type(None)), "merges": list, "special_tokens": dict}
        if not isinstance(state, dict) or not all(isinstance(state.get(k), t)
                                                  for k, t in need.items()):  # fmt: skip
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{path} is not a file of {cls.__name__}.save (damaged?): it needs "
                             f"{', '.join(need)}, found {found}")  # fmt: skip
        if state["type"] != cls.__name__:
            raise ValueError(f"{path} holds a {state['type']}, not a {cls.__name__}")
        for i, pair in enumerate(state["merges"]):  # each merge joins two ids made before it
            ok = (
                isinstance(pair, list)
                and len(pair) == 2
                and all(
                    isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 256 + i
                    for t in pair
                )
            )
            if not ok:
                raise ValueError(f"{path}: merge {i} is {pair!r}, not a pair of ids below "
                                 f"{256 + i} (the file is damaged)")  # fmt: skip
        tok = cls() if state["pattern"] is None else cls(state["pattern"])
        tok._set_merges([tuple(pair) for pair in state["merges"]])
        if state["special_tokens"]:
            tok.register_special_tokens(state["special_tokens"])
        return tok


class RegexBPETokenizer(BPETokenizer):
    """BPE inside regex chunks: each distinct chunk is counted once, with its frequency,
    which also makes training fast. Special tokens come after the learned vocabulary.

    >>> tok = RegexBPETokenizer()
    >>> tok.train("aaab aaab", vocab_size=258)
    >>> regex.findall(GPT2_SPLIT_PATTERN, "aaab aaab"), list(tok.merges)  # no (b'b', b' ')
    (['aaab', ' aaab'], [(97, 97), (97, 98)])
    >>> tok.register_special_tokens({"<|endoftext|>": 258})
    >>> tok.encode("aaab<|endoftext|>", allowed_special="all")
    [256, 257, 258]
    """

    def __init__(self, pattern: str = GPT2_SPLIT_PATTERN):
        super().__init__()
        self.pattern = pattern
        self._compiled = regex.compile(pattern)

    def _chunks(self, text: str) -> list[str]:
        return self._compiled.findall(text)

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Set the special tokens (replacing any before); ids must not be taken by merges."""
        if not isinstance(special_tokens, dict):
            raise TypeError(f"special_tokens must be a dict token -> id, got {special_tokens!r}")
        first_free = 256 + len(self.merges)
        ids = list(special_tokens.values())
        for token, i in special_tokens.items():
            if not isinstance(token, str) or not token:  # "" would match between every char
                raise ValueError(f"special token {token!r} must be a non-empty str")
            check_int(i, f"the id of special token {token!r}")
            if i < first_free or ids.count(i) > 1:
                raise ValueError(f"special token {token!r}: id {i} is taken, use >= {first_free}")
        for i in self.special_tokens.values():
            del self.vocab[i]
        self.special_tokens = dict(special_tokens)
        self.vocab.update({i: token.encode("utf-8") for token, i in special_tokens.items()})

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Token ids of ``text``. ``allowed_special`` is "all", "none" (the default: special
        strings are encoded as ordinary text, so user input cannot forge them) or a set."""
        if allowed_special == "all":
            special = self.special_tokens
        elif allowed_special == "none":
            special = {}
        elif isinstance(allowed_special, set) and allowed_special <= self.special_tokens.keys():
            special = {s: self.special_tokens[s] for s in allowed_special}
        else:
            raise ValueError(f"allowed_special must be 'all', 'none' or a set of special "
                             f"tokens, got {allowed_special!r}")  # fmt: skip
        if not special or not isinstance(text, str):
            return super().encode(text)
        # Longest first, so a special token that contains another is matched whole.
        alternatives = sorted(special, key=len, reverse=True)
        parts = regex.split("(" + "|".join(map(regex.escape, alternatives)) + ")", text)
        ids = []
        for k, part in enumerate(parts):  # odd positions hold the captured special tokens
            ids.extend([special[part]] if k % 2 else super().encode(part))
        return ids
