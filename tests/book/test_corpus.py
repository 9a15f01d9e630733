"""Chapter 6's frozen retrieval corpus (booktools.corpus): current, well formed, and what
Section 6.2 reads, so that a prose edit in Chapters 1-5 changes Section 6.2's outputs only
when the file is rebuilt (`make sync`) and Section 6.2 re-executed."""

import json
import shutil
from pathlib import Path

import pytest

from booktools import corpus
from lmlib.rag import load_passages

ROOT = Path(__file__).resolve().parents[2]
FROZEN = ROOT / corpus.CORPUS
SECTION_6_2 = ROOT / corpus.READER


def test_the_corpus_file_is_current():
    stale = corpus.stale_sources(load_passages(FROZEN), corpus.build())
    assert not stale, (
        f"{corpus.CORPUS} is stale: the prose of {', '.join(stale)} changed since it was "
        f"built; {corpus.REBUILD_HINT}"
    )


def test_the_corpus_holds_the_prose_of_chapters_1_to_5_in_reading_order():
    passages = load_passages(FROZEN)
    assert len(passages) > 100 and all(p.text.strip() and p.title for p in passages)
    chapters = [p.source.split("/")[0] for p in passages]
    assert sorted(set(chapters)) == sorted(dict.fromkeys(chapters))  # chapter order
    assert [c[:2] for c in dict.fromkeys(chapters)] == ["01", "02", "03", "04", "05"]
    for source in dict.fromkeys(p.source for p in passages):
        numbers = [int(p.id.rsplit("#", 1)[1]) for p in passages if p.source == source]
        assert numbers == list(range(len(numbers))), source  # "<source>#<n>", in order


def test_section_6_2_reads_the_frozen_file_and_never_the_chapters():
    cells = json.loads(SECTION_6_2.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    # Section 6.2 runs in chapters/06_applications/: the file is ../data/book_passages.jsonl
    relative = "../" + Path(corpus.CORPUS).relative_to("chapters").as_posix()
    assert f'load_passages("{relative}")' in code
    assert "book_passages(" not in code and "glob" not in code


@pytest.fixture
def book_copy(tmp_path):
    """The pages the corpus is built from, and _toc.yml, in a folder of their own."""
    shutil.copy(ROOT / "_toc.yml", tmp_path / "_toc.yml")
    for page in corpus.source_pages():
        target = tmp_path / page.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, target)
    return tmp_path


def edit_prose(notebook: Path, old: str, new: str) -> None:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    prose = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    cell = next(c for c in prose if old in "".join(c["source"]))
    cell["source"] = "".join(cell["source"]).replace(old, new, 1)
    notebook.write_text(json.dumps(nb), encoding="utf-8")


def test_a_prose_edit_makes_the_file_stale_until_make_sync(book_copy, capsys):
    root = ["--root", str(book_copy)]
    frozen = book_copy / corpus.CORPUS
    frozen.parent.mkdir(parents=True)
    assert corpus.main(root) == 0  # written from the copy
    before = load_passages(frozen)
    assert corpus.main([*root, "--check"]) == 0
    edit_prose(book_copy / "chapters/03_transformer.ipynb", " the ", " THE ")
    assert corpus.main([*root, "--check"]) == 1  # what test_the_corpus_file_is_current says
    message = capsys.readouterr().err
    assert "03_transformer" in message and "make sync" in message
    assert "06_applications/02_questions_summaries_chat.ipynb" in message  # ... what to re-run
    assert load_passages(frozen) == before  # Chapter 6 still reads the same corpus
    assert corpus.main(root) == 0  # make sync
    assert corpus.stale_sources(before, load_passages(frozen)) == ["03_transformer"]
    assert corpus.main([*root, "--check"]) == 0


def test_the_pages_of_a_chapter_folder_follow_its_chapter_page():
    """Chapter 5 is a page and a folder of section notebooks: all of them, in toc order."""
    names = [p.relative_to(ROOT / "chapters").as_posix() for p in corpus.source_pages()]
    first = ["01_background", "02_core_concepts", "03_transformer", "04_mathematics"]
    assert names[:4] == [f"{name}.ipynb" for name in first]
    assert all(name.startswith("05_practice") for name in names[4:]) and len(names) > 5
    assert not any(name.startswith("06_applications") for name in names)
