"""Passages, BM25 by hand, and dense retrieval with MiniLM (slow)."""

import math
from pathlib import Path

import pytest

from lmlib.rag import BM25, DenseIndex, Passage, book_passages, rag_messages, split_markdown

ROOT = Path(__file__).resolve().parents[2]


def P(i, text):
    return Passage(f"d#{i}", "d", "", text)


def test_split_markdown_keeps_paragraphs_whole_under_their_heading():
    md = "# A\nfirst para here.\n\nsecond one.\n\n## B\n" + "long " * 50 + "\n\nlast."
    ps = split_markdown(md, "doc", max_words=4)
    assert [p.title for p in ps] == ["A", "A", "B", "B"]
    assert ps[2].text.split() == ["long"] * 50  # one long paragraph stays whole
    assert all(p.source == "doc" for p in ps) and len({p.id for p in ps}) == len(ps)
    assert [p.text for p in split_markdown(md, "doc", max_words=100)][0].count("\n\n") == 1
    with pytest.raises(ValueError):
        split_markdown(md, "doc", max_words=0)


def test_bm25_scores_by_hand():
    docs = [P(0, "cats purr"), P(1, "dogs bark loudly"), P(2, "cats and dogs")]
    bm = BM25(docs, k1=1.5, b=0.75)
    # "cats" is in 2 of 3 passages: idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln 1.6
    avgdl = (2 + 3 + 2) / 3  # "and" is a stopword
    idf = math.log(1.6)
    want0 = idf * 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 2 / avgdl))
    scores = bm.scores("cats?")
    assert scores[0].item() == pytest.approx(want0)
    assert scores[1].item() == 0.0
    assert bm.search("dogs bark", k=1)[0][0].id == "d#1"
    assert bm.scores("unknown words").abs().sum() == 0
    with pytest.raises(ValueError, match="k must be"):
        bm.search("cats", k=4)


def test_rag_messages():
    closed = rag_messages("What is RoPE?")
    assert closed == [{"role": "user", "content": "What is RoPE?"}]
    msgs = rag_messages("What is RoPE?", [P(0, "RoPE rotates queries and keys.")])
    assert msgs[0]["role"] == "system" and "[1]" in msgs[1]["content"]
    assert msgs[1]["content"].endswith("Question: What is RoPE?")


@pytest.mark.slow
def test_dense_retrieval_finds_paraphrases_and_the_book_splits():
    docs = [P(0, "The feline rested on the rug."), P(1, "Stock prices fell sharply today."),
            P(2, "Attention lets each token look at the others.")]  # fmt: skip
    dense = DenseIndex(docs)
    assert dense.search("A cat was sleeping on a carpet", k=1)[0][0].id == "d#0"
    assert BM25(docs).scores("A cat was sleeping on a carpet").abs().sum() == 0  # no shared word
    passages = book_passages(sorted((ROOT / "chapters").glob("0[1-5]_*.ipynb")))
    assert len(passages) > 100 and all(p.text.strip() for p in passages)
