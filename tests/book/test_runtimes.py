"""booktools.runtimes: which nbval runs count as a measurement, the JSON files, `make
runtimes`, and the note the Sphinx extension puts on a page.

The last test runs pytest with nbval on a two-cell notebook in a copy of the repository's
layout, with the root conftest.py, so the real hooks of booktools.pytest_plugin are what is
checked there."""

import doctest
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from docutils import nodes
from docutils.core import publish_doctree
from hypothesis import given
from hypothesis import strategies as st

from booktools import runtimes
from booktools.sphinxext import runtimes as note

ROOT = Path(__file__).resolve().parents[2]
PHASES = runtimes.PHASES
CELLS = [f"chapters/x.ipynb::Cell {i}" for i in range(3)]
MACHINE = {"accelerator": "cpu", "cpu_count": 2, "cpu_model": "Some CPU", "torch": "2.13.0"}


def entry(**changes):
    return {**MACHINE, "cells": 3, "date": "2026-11-23", "seconds": 84.2, **changes}


def run(recorder, cells=CELLS, outcome=lambda cell, phase: "passed", duration=1.0):
    for cell in cells:
        for phase in PHASES:
            recorder.report(cell, phase, outcome(cell, phase), duration)


@pytest.fixture
def recorder():
    r = runtimes.Recorder()
    r.collected("chapters/x", CELLS)
    return r


# --------------------------------------------------------------------------- aggregation


def test_the_docstring_examples_hold():
    """Also run by `make test` (--doctest-modules booktools); here for a run of this file."""
    result = doctest.testmod(runtimes)
    assert result.failed == 0 and result.attempted >= 10


def test_all_cells_passed_is_recorded_with_the_sum_of_every_phase(recorder):
    run(recorder, duration=0.5)
    assert recorder.complete() == {"chapters/x": (pytest.approx(3 * 3 * 0.5), 3)}


def test_items_of_other_files_do_not_count(recorder):
    run(recorder)
    recorder.report("tests/test_model.py::test_shapes", "call", "failed", 99.0)
    assert recorder.complete() == {"chapters/x": (pytest.approx(9.0), 3)}


@pytest.mark.parametrize("bad", ["failed", "skipped"])
@pytest.mark.parametrize("phase", PHASES)
def test_one_failed_or_skipped_phase_records_nothing(recorder, bad, phase):
    run(recorder, outcome=lambda cell, p: bad if (cell, p) == (CELLS[1], phase) else "passed")
    assert recorder.complete() == {}


def test_a_cell_that_did_not_run_records_nothing(recorder):
    """-k or --deselect dropped a cell, or -x stopped the session before it."""
    run(recorder, cells=CELLS[:-1])
    assert recorder.complete() == {}
    run(recorder, cells=CELLS[-1:], outcome=lambda cell, phase: "passed")
    assert "chapters/x" in recorder.complete()


def test_a_cell_without_its_teardown_records_nothing(recorder):
    run(recorder, cells=CELLS[:-1])
    for phase in ("setup", "call"):
        recorder.report(CELLS[-1], phase, "passed", 1.0)
    assert recorder.complete() == {}


def test_notebooks_are_judged_separately(recorder):
    other = ["chapters/y.ipynb::Cell 0"]
    recorder.collected("chapters/y", other)
    run(recorder)
    run(recorder, cells=other, outcome=lambda cell, phase: "failed")
    assert set(recorder.complete()) == {"chapters/x"}


def test_notebooks_in_chapters_and_its_sub_folders_are_named():
    name = runtimes.notebook_name
    assert name(ROOT / "chapters/01_background.ipynb") == "chapters/01_background"
    assert name(ROOT / "chapters/05_practice/03_finetuning.ipynb") == (
        "chapters/05_practice/03_finetuning"
    )
    assert name(Path("/elsewhere/chapters/a/b.ipynb"), Path("/elsewhere")) == "chapters/a/b"
    for other in [
        "assignments/ch01_background/student/ch01_background.ipynb",
        "chapters/.ipynb_checkpoints/01_background-checkpoint.ipynb",
        "chapters/05_practice/.ipynb_checkpoints/03_finetuning-checkpoint.ipynb",
        "chapters/faq.md",
        "benchmarks/x.ipynb",
        "chapters.ipynb",
    ]:
        assert name(ROOT / other) is None, other


# --------------------------------------------------------------------------- the JSON file


def test_recording_keeps_the_entries_of_notebooks_not_run(tmp_path):
    path = tmp_path / "runtimes.json"
    runtimes.save({"chapters/a": entry(), "chapters/b": entry(seconds=10.0)}, path)
    runtimes.record(
        {"chapters/b": (123.456, 7), "chapters/c": (5.04, 2)}, MACHINE, "2027-01-02", path
    )
    got = runtimes.load(path)
    assert got["chapters/a"] == entry()
    assert got["chapters/b"] == entry(seconds=123.5, cells=7, date="2027-01-02")
    assert got["chapters/c"]["seconds"] == 5.0  # one decimal


def test_the_file_is_deterministic_so_a_rerun_changes_only_numbers(tmp_path):
    path = tmp_path / "runtimes.json"
    runtimes.record(
        {"chapters/b": (20.0, 3), "chapters/a": (10.0, 3)}, MACHINE, "2027-01-02", path
    )
    first = path.read_text()
    assert first.endswith("}\n") and first.index('"chapters/a"') < first.index('"chapters/b"')
    assert first == json.dumps(json.loads(first), sort_keys=True, indent=1) + "\n"
    runtimes.record({"chapters/a": (11.0, 3)}, MACHINE, "2027-01-02", path)
    changed = [(a, b) for a, b in zip(first.splitlines(), path.read_text().splitlines()) if a != b]
    assert changed == [('  "seconds": 10.0,', '  "seconds": 11.0,')]


@given(
    st.dictionaries(
        st.from_regex(r"chapters/[0-9a-z_]{1,20}", fullmatch=True),
        st.tuples(st.floats(0, 1e5, allow_nan=False), st.integers(1, 500)),
        max_size=5,
    )
)
def test_record_then_load_round_trips(measured):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "runtimes.json"
        runtimes.record(measured, MACHINE, "2026-11-23", path)
        got = runtimes.load(path)
    assert set(got) == set(measured)
    for name, (seconds, cells) in measured.items():
        assert got[name]["seconds"] == round(seconds, 1) and got[name]["cells"] == cells


def test_no_file_yet_means_no_entries(tmp_path):
    assert runtimes.load(tmp_path / "runtimes.json") == {}


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"chapters/a": {"seconds": 3', "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"chapters/a": 12}', "is not an object"),
        (json.dumps({"chapters/a": {k: v for k, v in entry().items() if k != "cells"}}), "cells"),
        (json.dumps({"chapters/a": entry(seconds="slow")}), "seconds"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_file_and_what_to_do(tmp_path, text, says):
    path = tmp_path / "runtimes.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=says) as err:
        runtimes.load(path)
    assert isinstance(err.value, runtimes.RuntimesFileError)
    assert str(path) in str(err.value)
    assert "written by the test suite" in str(err.value) and "make test" in str(err.value)
    assert "make runtimes" in str(err.value)


def test_the_books_file_is_valid_and_names_chapter_notebooks_only():
    entries = runtimes.load(runtimes.RUNTIMES_FILE)
    text = runtimes.RUNTIMES_FILE.read_text()
    assert text == runtimes.dumps(entries), "chapters/runtimes.json was edited by hand"
    toc = yaml.safe_dump(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    for name in entries:
        assert f"file: {name}\n" in toc and (ROOT / f"{name}.ipynb").exists(), (
            f"{name}: no such chapter notebook in _toc.yml; after `make test`, `make runtimes` "
            "copies the new measurements and drops the entries of notebooks that are gone"
        )


def test_the_test_suite_writes_its_measurements_where_git_does_not_look():
    """`make test` changes no tracked file: the measurements go to an ignored folder."""
    assert runtimes.MEASURED_FILE == ROOT / runtimes.MEASURED
    assert runtimes.MEASURED_FILE.parent != runtimes.RUNTIMES_FILE.parent
    ignored = subprocess.run(["git", "check-ignore", "-q", runtimes.MEASURED], cwd=ROOT)
    assert ignored.returncode == 0, f"{runtimes.MEASURED} must be ignored by git"


# --------------------------------------------------------------------------- make runtimes


def test_copy_replaces_measured_entries_keeps_others_and_drops_gone_notebooks(tmp_path):
    for name in ("chapters/a", "chapters/b", "chapters/5/c"):
        (tmp_path / f"{name}.ipynb").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{name}.ipynb").write_text("{}")
    measured, book = tmp_path / "_build/runtimes.json", tmp_path / "chapters/runtimes.json"
    runtimes.save({"chapters/b": entry(seconds=1.0), "chapters/5/c": entry(seconds=2.0)}, measured)
    runtimes.save({"chapters/a": entry(), "chapters/b": entry(), "chapters/gone": entry()}, book)
    before = measured.read_text()
    copied, gone = runtimes.copy(measured, book, tmp_path)
    assert set(copied) == {"chapters/b", "chapters/5/c"} and gone == ["chapters/gone"]
    assert runtimes.load(book) == {
        "chapters/a": entry(),
        "chapters/b": entry(seconds=1.0),
        "chapters/5/c": entry(seconds=2.0),
    }
    assert measured.read_text() == before  # the measurements stay where they were


def test_make_runtimes_says_when_nothing_was_measured(tmp_path, capsys):
    book = tmp_path / "runtimes.json"
    args = ["--source", str(tmp_path / "none.json"), "--target", str(book)]
    assert runtimes.main(args) == 1
    assert "make test" in capsys.readouterr().err and not book.exists()


# --------------------------------------------------------------------------- the machine


def test_cpu_model_comes_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R)  Xeon(R) Gold\n\nprocessor\t: 1\n")
    assert runtimes.cpu_model(info) == "Intel(R) Xeon(R) Gold"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nModel\t: Raspberry Pi 4\n")
    assert runtimes.cpu_model(info) == "Raspberry Pi 4"


def test_machine_describes_this_process():
    import torch

    got = runtimes.machine()
    assert got["accelerator"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert 1 <= got["cpu_count"] <= (__import__("os").cpu_count() or 1)
    assert got["torch"] == torch.__version__
    assert set(got) | {"cells", "date", "seconds"} == set(runtimes.FIELDS)


# --------------------------------------------------------------------------- the wording


@pytest.mark.parametrize(
    "seconds, duration",
    [(3.0, "under a minute"), (44.9, "under a minute"), (45.0, "about 1 min"),
     (89.0, "about 1 min"), (170.0, "about 3 min"), (1230.0, "about 20 min")],
)  # fmt: skip
def test_the_note_rounds_to_minutes(seconds, duration):
    text = runtimes.describe(entry(seconds=seconds))
    assert text == (
        f"This notebook runs top to bottom in {duration} on a 2-core Some CPU "
        "(measured by the test suite, 2026-11-23)."
    )


def test_the_note_names_the_machine():
    assert "on a 1-core Some CPU (" in runtimes.describe(entry(cpu_count=1))
    xeon = entry(cpu_model="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz")
    assert "on a 2-core Intel Xeon Gold 6338 CPU (" in runtimes.describe(xeon)
    assert "on a 2-core CPU (" in runtimes.describe(entry(cpu_model=None))
    on_gpu = runtimes.describe(entry(accelerator="cuda", seconds=170.0))
    assert "in about 3 min on 1 GPU (" in on_gpu and "CPU" not in on_gpu


class _Env:
    def __init__(self, docname, suffix=".ipynb"):
        self.docname, self.suffix, self.dependencies = docname, suffix, []

    def doc2path(self, docname):
        return f"/book/{docname}{self.suffix}"

    def note_dependency(self, path):
        self.dependencies.append(path)


class _App:
    def __init__(self, docname, entries, suffix=".ipynb"):
        self.env = _Env(docname, suffix)
        self.runtimes = (Path("/book/chapters/runtimes.json"), entries)


def page():
    text = "Title\n=====\n\nFirst paragraph.\n\nSection\n-------\n\nMore.\n"
    # as in Sphinx, the title stays a section's (docutils alone lifts it to the document)
    return publish_doctree(text, settings_overrides={"doctitle_xform": False})


def test_the_note_goes_right_under_the_title():
    doctree = page()
    app = _App("chapters/x", {"chapters/x": entry(seconds=170.0)})
    note.add_note(app, doctree)
    notes = [p for p in doctree.findall(nodes.Element) if runtimes.NOTE_CLASS in p["classes"]]
    assert len(notes) == 1
    assert notes[0].astext() == runtimes.describe(entry(seconds=170.0))
    assert notes[0].parent[0].astext() == "Title" and notes[0].parent.index(notes[0]) == 1
    assert app.env.dependencies == ["/book/chapters/runtimes.json"]  # re-read when it changes


def test_a_section_notebook_in_a_chapter_folder_gets_its_note():
    doctree = page()
    note.add_note(_App("chapters/5/x", {"chapters/5/x": entry(seconds=30.0)}), doctree)
    texts = [p.astext() for p in doctree.findall(nodes.paragraph)]
    assert runtimes.describe(entry(seconds=30.0)) in texts


@pytest.mark.parametrize(
    "docname, suffix",
    [("chapters/y", ".ipynb"), ("chapters/faq", ".md"), ("assignments/a/student/a", ".ipynb"),
     ("chapters/05_practice", ".md")],
)  # fmt: skip
def test_no_entry_or_no_chapter_notebook_no_note(docname, suffix):
    doctree = page()
    before = doctree.pformat()
    entries = {"chapters/x": entry(), "chapters/faq": entry(), "chapters/05_practice": entry()}
    note.add_note(_App(docname, entries, suffix), doctree)
    assert doctree.pformat() == before


# --------------------------------------------------------------------------- the real hooks


NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# Tiny"},
        {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [
            {"name": "stdout", "output_type": "stream", "text": "2\n"}], "source": "print(1 + 1)"},
        {"cell_type": "code", "execution_count": 2, "metadata": {}, "outputs": [
            {"name": "stdout", "output_type": "stream", "text": "OUTPUT\n"}],
         "source": "print('OUTPUT')"},
    ],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
}  # fmt: skip


@pytest.mark.slow
def test_the_plugin_records_only_complete_passing_chapter_runs(tmp_path):
    """Six nbval runs in a copy of the layout, with the repository's conftest.py: only the
    full, strict, passing ones record, into _build/runtimes.json; chapters/runtimes.json, the
    tracked file, is never written."""
    for folder in ("chapters/sec", "elsewhere"):
        (tmp_path / folder).mkdir(parents=True)
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")  # declares the plugin
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the copy is the rootdir
    book = tmp_path / "chapters/runtimes.json"
    book.write_text(runtimes.dumps({"chapters/kept": entry()}))
    tracked = book.read_text()
    path = tmp_path / runtimes.MEASURED
    runtimes.save({"chapters/kept": entry()}, path)
    for folder in ("chapters", "chapters/sec", "elsewhere"):
        (tmp_path / folder / "tiny.ipynb").write_text(json.dumps(NOTEBOOK))

    def nbval(*args):
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-current-env"]
        result = subprocess.run(cmd + list(args), cwd=tmp_path, capture_output=True, text=True)
        assert book.read_text() == tracked
        return result.returncode, json.loads(path.read_text())

    kept = {"chapters/kept": entry()}
    partial = ["--deselect", "chapters/tiny.ipynb::Cell 1"]  # as -k or -x would leave a cell
    assert nbval("--nbval", "chapters/tiny.ipynb", *partial) == (0, kept)
    assert nbval("--nbval-lax", "chapters/tiny.ipynb") == (0, kept)
    assert nbval("--nbval", "elsewhere/tiny.ipynb") == (0, kept)
    code, got = nbval("--nbval", "chapters/tiny.ipynb", "chapters/sec/tiny.ipynb")
    assert code == 0 and set(got) == {"chapters/kept", "chapters/tiny", "chapters/sec/tiny"}
    assert got["chapters/tiny"]["cells"] == 2 and 0 < got["chapters/tiny"]["seconds"] < 120
    assert got["chapters/tiny"]["date"] == runtimes.today()
    # a failing cell: the measurement of the passing run stays
    failing = json.loads(json.dumps(NOTEBOOK))
    failing["cells"][2]["outputs"][0]["text"] = "something else\n"
    (tmp_path / "chapters/tiny.ipynb").write_text(json.dumps(failing))
    assert nbval("--nbval", "chapters/tiny.ipynb") == (1, got)
