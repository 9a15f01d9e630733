"""`make book` (booktools.build_book) fails on a chapter that fails, and offline is no failure.

The build executes notebooks as `make book` does (jupyter-book, `execute_notebooks: cache`)
in a two-page book: Chapter 5's GPT-2 cell, word for word, and a notebook whose third cell
raises. No offline flag is set and the Hub is a closed port on 127.0.0.1, as on a laptop on
a train: the GPT-2 cell must say so in one line at once and go on, and the build must fail
naming the broken notebook and cell.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from booktools import build_book

ROOT = Path(__file__).resolve().parents[2]
SECTION = ROOT / "chapters" / "05_practice" / "02_pretrained_and_decoding.ipynb"


def _notebook(path: Path, *sources: str) -> None:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [f"# {path.stem}"]}]
    cells += [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": src.splitlines(keepends=True)}
        for src in sources
    ]  # fmt: skip
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))


def gpt2_cell() -> str:
    cells = json.loads(SECTION.read_text())["cells"]
    found = ["".join(c["source"]) for c in cells if "try_load_hub_model" in "".join(c["source"])]
    assert len(found) == 1, f"one cell of {SECTION.name} loads GPT-2 from the Hub"
    return found[0]


@pytest.fixture(scope="module")
def offline_build(tmp_path_factory):
    book = tmp_path_factory.mktemp("book")
    (book / "_config.yml").write_text(
        "title: t\nexecute:\n  execute_notebooks: cache\n  timeout: 300\n  allow_errors: false\n"
    )
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: hub\n  - file: part/broken\n"
    )
    (book / "intro.md").write_text("# Intro\n")
    _notebook(book / "hub.ipynb", gpt2_cell())
    _notebook(book / "part" / "broken.ipynb", "x = 1", "y = 2\nraise ValueError('boom')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free a moment ago: nothing listens there
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LMLIB_OFFLINE")}  # fmt: skip
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(book / "hf"))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "booktools.build_book", str(book)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    return book, result, time.perf_counter() - started, port


@pytest.mark.slow
def test_a_failed_notebook_fails_the_build_and_is_named(offline_build):
    book, result, _, _ = offline_build
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    assert "part/broken.ipynb: cell 2 ('y = 2') failed: ValueError: boom" in result.stderr
    assert "not this run's: part/broken.html" in result.stderr
    assert "hub.ipynb" not in result.stderr  # the offline cell is no failure


@pytest.mark.slow
def test_the_hub_cell_says_offline_in_one_line_and_goes_on(offline_build):
    book, result, seconds, port = offline_build
    page = (book / "_build" / "html" / "hub.html").read_text()
    line = f"the Hub at http://127.0.0.1:{port} is out of reach"
    assert page.count(line) == 1, "the GPT-2 cell's one line is on the page"
    assert "Traceback" not in page and "Retrying" not in result.stdout
    assert seconds < 300  # a retry loop with back-off would show as minutes, not seconds


def test_failures_are_read_from_the_reports_folder(tmp_path):
    nb = tmp_path / "ch" / "a.ipynb"
    _notebook(nb, "import os", "print(1)\n1 / 0")
    report = tmp_path / "reports" / "ch" / "a.err.log"
    report.parent.mkdir(parents=True)
    report.write_text(
        "Traceback...\nCellExecutionError: An error occurred while executing the following "
        "cell:\n------------------\nprint(1)\n1 / 0\n------------------\n\n"
        "ZeroDivisionError: division by zero\n"
    )
    (found,) = build_book.failures(tmp_path, "", tmp_path / "reports")
    want = "ch/a.ipynb: cell 2 ('print(1)') failed: ZeroDivisionError: division by zero"
    assert str(found) == want


def test_a_clean_build_has_no_failures(tmp_path):
    assert build_book.failures(tmp_path, "build succeeded.\n", tmp_path / "reports") == []
