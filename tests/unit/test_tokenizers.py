"""Tests for lmlib.tokenizers: round trips, the hand-checkable BPE example, agreement with
the naive trainer and with the Hugging Face `tokenizers` library, save/load, special tokens
and errors."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    RegexBPETokenizer,
    count_pairs,
    merge,
    naive_merges,
)

CORPUS = (
    "The weather is fine today, so we're going out for a walk. It's 23 degrees!\n"
    "今天天气很好，适合出门散步。今天天气很好，适合出门散步。\n"
    "Emoji too: 🙂🙂 🚀 launch, 👍🏽 thumbs up, 🇫🇷 flag. 😀😀😀\n"
) * 3

CHINESE = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
EMOJI = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)
ANY_TEXT = st.one_of(
    st.text(max_size=40),  # any code point except lone surrogates, which UTF-8 cannot hold
    st.text(alphabet=CHINESE, max_size=20),
    st.text(alphabet=EMOJI, max_size=20),
    st.text(alphabet=st.one_of(CHINESE, EMOJI, st.sampled_from(sorted(set(CORPUS))))),
)


@pytest.fixture(scope="module", params=[BPETokenizer, RegexBPETokenizer])
def small_tok(request):
    tok = request.param()
    tok.train(CORPUS, vocab_size=300)
    return tok


@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT)
def test_roundtrip_any_unicode(small_tok, text):
    assert small_tok.decode(small_tok.encode(text)) == text


def test_corpus_is_compressed(small_tok):
    ids = small_tok.encode(CORPUS)
    assert len(ids) < len(CORPUS.encode("utf-8")) * 0.6
    assert max(ids) >= 256  # learned tokens are used


def test_count_pairs_and_merge():
    assert count_pairs([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert count_pairs([5, 5, 5]) == {(5, 5): 2}
    assert merge([5, 5, 5, 5, 5], (5, 5), 9) == [9, 9, 5]


def test_wikipedia_example_by_hand():
    """aaabdaaabac, with 'a'=97, 'b'=98, 'c'=99, 'd'=100. Ties go to the smaller pair.

    1. Pairs: aa 4 (two in each 'aaa'), ab 2, bd 1, da 1, ba 1, ac 1 -> (97, 97) = 256.
       Text: [256, 97, 98, 100, 256, 97, 98, 97, 99].
    2. Pairs: (256, 97) 2 and (97, 98) 2 tie; (97, 98) < (256, 97), so (97, 98) = 257.
       Text: [256, 257, 100, 256, 257, 97, 99].
    3. Pairs: (256, 257) 2, all others 1 -> (256, 257) = 258 = b"aaab".
       Text: [258, 100, 258, 97, 99], i.e. Wikipedia's XdXac with Z=aa, Y=ab, X=ZY.
    """
    tok = BPETokenizer()
    tok.train("aaabdaaabac", vocab_size=259)
    assert list(tok.merges.items()) == [((97, 97), 256), ((97, 98), 257), ((256, 257), 258)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert [tok.vocab[i] for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="ab c\n", min_size=1, max_size=80), n=st.integers(1, 30))
def test_incremental_training_matches_naive(text, n):
    # A tiny alphabet makes many ties and long runs such as "aaaa", where overlaps matter.
    tok = BPETokenizer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok.train(text, vocab_size=256 + n)
    assert list(tok.merges) == naive_merges(list(text.encode()), n)
    assert len(caught) == (len(tok.merges) < n)  # a warning exactly when pairs ran out
    assert tok.decode(tok.encode(text)) == text


def test_regex_merges_stay_inside_chunks():
    # Chunks are "hello", " world", " hello", ...: a space may only start a learned token.
    text, crosses = (
        "hello world " * 50,
        lambda tok: [t for t in tok.vocab.values() if b" " in t[1:]],
    )
    regex_tok, plain_tok = RegexBPETokenizer(), BPETokenizer()
    regex_tok.train(text, vocab_size=266)  # all ten merges there are
    plain_tok.train(text, vocab_size=266)
    assert crosses(regex_tok) == [] and b" w" in regex_tok.vocab.values()
    assert crosses(plain_tok) != []  # plain BPE fuses across the space, e.g. b"o w"


def test_partial_utf8_decodes_with_replacement():
    tok = BPETokenizer()
    ids = tok.encode("今")  # no merges: three byte tokens
    assert ids == [0xE4, 0xBB, 0x8A]
    assert tok.decode(ids[:1]) == "\ufffd"
    assert tok.decode(ids) == "今"


def test_save_load_roundtrip(tmp_path: Path):
    tok = RegexBPETokenizer()
    tok.train(CORPUS, vocab_size=320)
    tok.register_special_tokens({"<|endoftext|>": 320})
    tok.save(tmp_path / "tok.json")
    loaded = RegexBPETokenizer.load(tmp_path / "tok.json")
    assert loaded.merges == tok.merges and loaded.vocab == tok.vocab
    assert loaded.special_tokens == {"<|endoftext|>": 320}
    text = CORPUS + "<|endoftext|>unseen 🦀 text"
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    with pytest.raises(ValueError, match="holds a RegexBPETokenizer"):
        BPETokenizer.load(tmp_path / "tok.json")


def test_special_tokens():
    tok = RegexBPETokenizer()
    tok.train(CORPUS, vocab_size=300)
    tok.register_special_tokens({"<|endoftext|>": 300, "<|pad|>": 301})
    text = "walk<|endoftext|>今天<|pad|>"
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(300) == 1 and ids.count(301) == 1 and ids[-1] == 301
    assert tok.decode(ids) == text
    plain = tok.encode(text, allowed_special="none")
    assert 300 not in plain and 301 not in plain and tok.decode(plain) == text
    only_eot = tok.encode(text, allowed_special={"<|endoftext|>"})
    assert 300 in only_eot and 301 not in only_eot
    with pytest.raises(ValueError, match="id 255 is taken"):
        tok.register_special_tokens({"<|x|>": 255})
    with pytest.raises(ValueError, match="id 302 is taken"):
        tok.register_special_tokens({"<|x|>": 302, "<|y|>": 302})
    assert tok.special_tokens == {"<|endoftext|>": 300, "<|pad|>": 301}  # left as it was
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode(text, allowed_special={"<|nope|>"})


def test_errors():
    tok = BPETokenizer()
    with pytest.raises(ValueError, match="empty text"):
        tok.train("", vocab_size=300)
    with pytest.raises(
        ValueError,
        match=r"vocab_size \(at least the 256 byte tokens\) must be an int >= 256, got 100",
    ):
        tok.train("abc", vocab_size=100)
    with pytest.raises(TypeError, match="expects a str"):
        tok.train(b"abc", vocab_size=300)
    with pytest.warns(UserWarning, match="no pairs left after 2 merges"):
        tok.train("abc", vocab_size=300)
    assert tok.vocab_size == 258
    with pytest.raises(ValueError, match="unknown token id 258"):
        tok.decode([97, 258])
    with pytest.raises(TypeError, match="expects a str"):
        tok.encode(["a", "b"])
    with pytest.raises(TypeError, match="sequence of int"):
        tok.decode("abc")
    with pytest.raises(TypeError, match="sequence of int"):
        tok.decode([1.5])


def test_char_tokenizer():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == 8
    assert tok.decode(tok.encode("low word")) == "low word"
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("low z")
    with pytest.raises(ValueError, match="unknown token id 8"):
        tok.decode([8])
    with pytest.raises(TypeError):
        tok.encode(42)


def _shakespeare() -> str:
    data_dir = os.environ.get("LMLIB_DATA_DIR")
    path = Path(data_dir or "/nonexistent") / "tinyshakespeare" / "input.txt"
    if not path.exists():
        pytest.skip("Tiny Shakespeare not found: set LMLIB_DATA_DIR to the book's data folder")
    from lmlib.data import load_tiny_shakespeare

    return load_tiny_shakespeare()


def test_agrees_with_hf_tokenizers():
    """Both learn 768 merges (1,024 = 256 bytes + 768, no special tokens) with GPT-2's
    split pattern; their compression on the corpus must be within 2%."""
    hf = pytest.importorskip("tokenizers")
    text = _shakespeare()
    ours = RegexBPETokenizer()
    ours.train(text, vocab_size=1024)
    ids = ours.encode(text)
    assert len(ours.merges) == 768 and ours.decode(ids) == text

    theirs = hf.Tokenizer(hf.models.BPE())
    theirs.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    theirs.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(
        vocab_size=1024, initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[], show_progress=False,
    )  # fmt: skip
    theirs.train_from_iterator([text], trainer)
    hf_ids = theirs.encode(text).ids
    assert theirs.get_vocab_size() == 1024 and theirs.decode(hf_ids) == text

    n_bytes = len(text.encode("utf-8"))
    ours_bpt, hf_bpt = n_bytes / len(ids), n_bytes / len(hf_ids)
    assert abs(ours_bpt - hf_bpt) <= 0.02 * hf_bpt, (
        f"bytes per token: ours {ours_bpt:.4f}, tokenizers {hf_bpt:.4f}"
    )


def test_a_damaged_tokenizer_file_is_named_not_a_key_error(tmp_path):
    tok = RegexBPETokenizer()
    tok.train("aaab aaab abab", vocab_size=260)
    path = tmp_path / "tok.json"
    tok.save(path)
    good = path.read_text()
    damages = {
        good.replace('"merges"', '"merged"'): r"needs type, pattern, merges, special_tokens",
        good[: len(good) // 2]: "not JSON",
        json.dumps({**json.loads(good), "merges": [[97, 9999]]}): r"merge 0 is \[97, 9999\]",
        "[1, 2]": "found list",
    }
    for text, match in damages.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            RegexBPETokenizer.load(path)


def test_special_tokens_need_a_string_and_an_int_id():
    tok = RegexBPETokenizer()
    tok.train("aaab aaab", vocab_size=258)
    with pytest.raises(ValueError, match="special token '' must be a non-empty str"):
        tok.register_special_tokens({"": 300})  # would match between every character
    for bad in (300.0, "300", True):
        with pytest.raises(TypeError, match="the id of special token '<|x|>' must be an int"):
            tok.register_special_tokens({"<|x|>": bad})
    with pytest.raises(TypeError, match="special_tokens must be a dict"):
        tok.register_special_tokens(["<|x|>"])
    assert tok.special_tokens == {}  # nothing half-registered
    with pytest.raises(TypeError, match="sequence of int token ids, got \\[True\\]"):
        tok.decode([True])
    with pytest.raises(TypeError, match="chars must be a list of single characters"):
        CharTokenizer(["ab", "c"])
