"""Passages (split, stored, loaded), BM25 by hand, and dense retrieval with MiniLM (slow)."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmlib.rag import (
    BM25,
    DenseIndex,
    Passage,
    book_passages,
    load_passages,
    notebook_markdown,
    rag_messages,
    save_passages,
    split_markdown,
)


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


def test_book_passages_name_sources_by_stem_or_by_path_under_root(tmp_path):
    (tmp_path / "05_practice").mkdir()
    page, section = tmp_path / "05_practice.md", tmp_path / "05_practice" / "01_training.ipynb"
    page.write_text("# Practice\nThree sections.")
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["# Training\n", "Loss goes down."]}
    code = {"cell_type": "code", "metadata": {}, "source": "print('not prose')", "outputs": []}
    section.write_text(json.dumps({"cells": [cell, code]}))
    by_stem = book_passages([page, section])
    assert [p.id for p in by_stem] == ["05_practice#0", "01_training#0"]
    by_path = book_passages([page, section], root=tmp_path)
    assert [p.id for p in by_path] == ["05_practice#0", "05_practice/01_training#0"]
    assert by_path[1] == Passage("05_practice/01_training#0", "05_practice/01_training",
                                 "Training", "Loss goes down.")  # fmt: skip
    with pytest.raises(ValueError, match="no passages"):
        book_passages([])


def test_notebook_markdown_is_the_prose_a_reader_sees(tmp_path):
    """Glued numbers filled in from the stored outputs (as the built page shows them), a
    diagram's source left out, code and outputs left out; an unglued name stays as written."""
    prose = (
        "# Result\nLoss {glue:text}`loss` after {glue:text}`steps` steps; "
        "{glue:text}`missing` stays.\n\n```{mermaid}\nflowchart LR\n  A --> B\n```\n\nEnd."
    )
    outputs = [
        {"output_type": "display_data", "metadata": {"scrapbook": {"name": "loss",
         "mime_prefix": "application/papermill.record/"}},
         "data": {"application/papermill.record/text/plain": "'1.87'"}},
        {"output_type": "display_data", "metadata": {"scrapbook": {"name": "steps",
         "mime_prefix": ""}}, "data": {"text/plain": "600"}},
    ]  # fmt: skip
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": prose},
        {"cell_type": "code", "metadata": {}, "source": "glue(...)", "outputs": outputs},
    ]
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    text = notebook_markdown(path)
    assert text == ("# Result\nLoss 1.87 after 600 steps; {glue:text}`missing` stays.\n\n"
                    "\nEnd.")  # fmt: skip
    md = tmp_path / "page.md"
    md.write_text("Before.\n\n````{mermaid}\nA --> B\n````\nAfter.")
    assert notebook_markdown(md) == "Before.\n\nAfter."


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # any text, "\n" too


@given(st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=5))
def test_save_then_load_round_trips(fields):
    import tempfile

    passages = [Passage(f"s#{i}", "s", title, text) for i, (_, title, text) in enumerate(fields)]
    with tempfile.TemporaryDirectory() as folder:
        save_passages(passages, f"{folder}/p.jsonl")
        lines = Path(folder, "p.jsonl").read_text(encoding="utf-8").split("\n")
        assert load_passages(f"{folder}/p.jsonl") == passages
    assert len(lines) == len(passages) + 1 and lines[-1] == ""  # one line each, final newline


@pytest.mark.parametrize(
    "content, says",
    [
        ("", "holds no passages"),
        ('{"id": "a#0", "source": "a", "title": "T"}\n', "line 1: a passage needs exactly"),
        ('{"id": "a#0", "source": "a", "title": "T", "text": "x"}\n[1, 2\n', "line 2: not JSON"),
        ('{"id": "a#0", "source": "a", "title": "T", "text": "x"}\n' * 2, "unique.*a#0"),
    ],
)
def test_load_passages_names_the_file_and_the_line(tmp_path, content, says):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=says) as info:
        load_passages(path)
    assert str(path) in str(info.value)


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
def test_dense_retrieval_finds_paraphrases():
    pytest.importorskip("transformers")  # all-MiniLM-L6-v2 is a transformers BertModel
    docs = [P(0, "The feline rested on the rug."), P(1, "Stock prices fell sharply today."),
            P(2, "Attention lets each token look at the others.")]  # fmt: skip
    dense = DenseIndex(docs)
    assert dense.search("A cat was sleeping on a carpet", k=1)[0][0].id == "d#0"
    assert BM25(docs).scores("A cat was sleeping on a carpet").abs().sum() == 0  # no shared word
