"""Bulk grading without Docker: booktools/grade_submissions.py.

The slow test builds the Chapter 1 autograder, writes a folder of submissions (the
solution, the blank student notebook, a partly right one from
``mutants/ch01_background.py``, one whose cell raises, a corrupted file, an infinite loop
and one that kills its kernel), grades it with the command line and checks every cell of
the CSV. Other slow tests hand out every assignment into a term folder, then Chapter 5's
again, and check that every other file in the folder is unchanged, byte for byte, and that
an autograder which graded submissions is only replaced with ``--force``. The others
check the pieces on hand-made files and keep the instructors' page in step with
``_config.yml``.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import psutil
import pytest
from mutants import table

from booktools import assignments, book
from booktools import grade_submissions as grading

ROOT = Path(__file__).resolve().parents[2]

NAME = "ch01_background"
MUTANT = "perplexity without the minus sign"  # fails q2 - 1 and q2 - 2: q2 scores 1 of 3
TIMEOUT = 20  # s per submission; a correct one takes about 4 s on an idle 2-core CPU
MARKER = "LLM_BOOK_GRADING_TEST"  # an environment variable that tags the processes started

# Every cell of the CSV. Errors leave the questions empty and score 0.
EXPECTED = {
    # student: (q1, q2, q3, q4, total, status, or the start of an error status)
    "blank": ("0", "0", "0", "0", "0", "ok"),
    "corrupted": ("", "", "", "", "0", "error: not a notebook (not JSON"),
    "infinite_loop": ("", "", "", "", "0", f"error: timeout (still running after {TIMEOUT} s)"),
    "kernel_crash": ("", "", "", "", "0", "error: kernel crash"),
    "partly_right": ("3", "1", "4", "2", "10", "ok"),
    "raises": ("0", "3", "4", "2", "9", "ok"),
    "solution": ("3", "3", "4", "2", "12", "ok"),
}


def write_submissions(dist: Path, folder: Path) -> Path:
    """One submission of each kind in FOLDER, from an ``otter assign`` output DIST."""
    solution = dist / "autograder" / f"{NAME}.ipynb"
    edit = assignments.edit_notebook
    folder.mkdir(parents=True)
    (folder / "solution.ipynb").write_bytes(solution.read_bytes())
    (folder / "blank.ipynb").write_bytes((dist / "student" / f"{NAME}.ipynb").read_bytes())
    # a folder per student, as an LMS download gives, with the notebook nested inside
    mutant = table(NAME).MUTANTS["q2"][MUTANT]
    edit(solution, folder / "partly_right" / "download" / f"{NAME}.ipynb", mutant[:2])
    q1 = "def bigram_counts("  # the start of question 1's answer
    edit(solution, folder / "raises.ipynb", (q1, f"raise RuntimeError('oops')\n\n\n{q1}"))
    # One C call that never ends holds the GIL, so the kernel cannot notice otter's end.
    loop = "sum(range(10**18))"
    edit(solution, folder / "infinite_loop.ipynb", (q1, f"{loop}\n\n\n{q1}"))
    edit(solution, folder / "kernel_crash.ipynb", (q1, f"import os\n\nos._exit(1)\n\n\n{q1}"))
    (folder / "corrupted.ipynb").write_bytes(solution.read_bytes()[:100])  # a cut download
    (folder / "notes.txt").write_text("not a submission: skipped")
    return folder


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The Chapter 1 assignment built into a temporary folder (the repository is untouched)."""
    out = tmp_path_factory.mktemp("dist") / "dist"
    master = assignments.ASSIGNMENTS / NAME / f"{NAME}.ipynb"
    assignments.assign(master, out, run_tests=False)
    return out


@pytest.fixture(scope="module")
def graded(dist, tmp_path_factory):
    """Run the command line on the folder of submissions once; return its CSV rows."""
    tmp = tmp_path_factory.mktemp("grading")
    subs = write_submissions(dist, tmp / "submissions")
    (autograder,) = (dist / "autograder").glob("*.zip")
    scores = tmp / "scores.csv"
    argv = ["grade", NAME, str(subs), "--out", str(scores), "--autograder", str(autograder)]
    argv += ["-j", "2", "--timeout", str(TIMEOUT), "--keep", str(tmp / "results")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MARKER, str(tmp))  # inherited by otter and its kernels: find them later
        start = time.perf_counter()
        assert grading.main(argv) == 0
        seconds = time.perf_counter() - start
    with open(scores, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows, seconds, tmp / "results"


@pytest.mark.slow
def test_csv_has_the_expected_score_for_every_question(graded):
    rows, _, _ = graded
    assert rows[0] == ["student", "q1", "q2", "q3", "q4", "total", "max", "status"]
    got = {row[0]: row[1:] for row in rows[1:]}
    assert sorted(got) == sorted(EXPECTED)  # notes.txt skipped, the folder named by student
    for student, (*cells, status) in EXPECTED.items():
        *got_cells, got_max, got_status = got[student]
        assert got_cells == cells, f"{student}: {got_cells}"
        assert got_max == "12"
        assert got_status.startswith(status), f"{student}: {got_status}"


@pytest.mark.slow
def test_bad_submissions_do_not_slow_down_or_leak(graded):
    _, seconds, results = graded
    # the infinite loop is stopped at its timeout while the other worker grades the rest
    assert seconds < TIMEOUT + 40
    # its kernel runs in a session of its own and outlives otter: it must be killed too
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.environ().get(MARKER) == str(results.parent):
                left.append(proc.info["cmdline"])
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    assert not left


@pytest.mark.slow
def test_keep_saves_each_students_otter_results(graded):
    _, _, results = graded
    partly = json.loads((results / "partly_right.json").read_text())
    q2 = next(t for t in partly["tests"] if t.get("name") == "q2")
    assert (q2["score"], q2["max_score"]) == (1, 3)
    assert "q2 - 1 result:" in q2["output"]  # the feedback a student can be given
    assert "DeadKernelError" in (results / "kernel_crash.log").read_text()
    assert not (results / "corrupted.log").exists()  # never reached otter


@pytest.mark.slow
def test_student_zip_holds_the_notebook_and_public_tests(dist, tmp_path):
    out = tmp_path / f"{NAME}.zip"
    grading.zip_folder(dist / "student", out, f"{NAME}/")
    grading.zip_folder(dist / "student", out, "other/")  # a second folder: appended
    names = [f"{NAME}.ipynb", "tests/q1.py", "tests/q2.py", "tests/q3.py", "tests/q4.py"]
    expected = [f"{NAME}/{n}" for n in names] + [f"other/{n}" for n in names]
    assert zipfile.ZipFile(out).namelist() == expected


@pytest.mark.slow
def test_hidden_tests_carry_most_of_the_points(dist):
    """chapters/instructors.md: hidden tests carry 8 of the Chapter 1 assignment's 12 points."""
    tests = dist / "autograder" / "tests"
    hidden = 0
    for question, cases in assignments.case_names(tests).items():
        text = (tests / f"{question}.py").read_text()
        weights = ast.literal_eval(re.search(r"^points = (.*)$", text, re.MULTILINE).group(1))
        hidden += sum(w for w, (_, is_hidden) in zip(weights, cases) if is_hidden)
    _, points = grading.autograder_questions(next((dist / "autograder").glob("*.zip")))
    assert (hidden, sum(points.values())) == (8, 12)


# ---------------------------------------------------------------- fast: hand-made inputs


def test_find_submissions_by_file_or_folder(tmp_path):
    nb = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    for rel in [
        "alice.ipynb",
        "bob/Downloads/whatever.ipynb",  # one notebook at any depth
        "carol/ch01_background.ipynb",  # among several, the one named after the assignment
        "carol/scratch.ipynb",
        "dan/a.ipynb",
        "dan/b.ipynb",
        "erin/.ipynb_checkpoints/erin-checkpoint.ipynb",
        "__MACOSX/alice.ipynb",
        ".hidden.ipynb",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(nb)
    (tmp_path / "alice.pdf").write_text("")
    subs, skipped = grading.find_submissions(tmp_path, "ch01_background")
    got = {
        s.student: (s.path and s.path.relative_to(tmp_path).as_posix(), s.problem) for s in subs
    }
    assert got == {
        "alice": ("alice.ipynb", ""),
        "bob": ("bob/Downloads/whatever.ipynb", ""),
        "carol": ("carol/ch01_background.ipynb", ""),
        "dan": (None, "several notebooks (a.ipynb, b.ipynb)"),
        "erin": (None, "no .ipynb file in the folder"),
    }
    assert skipped == [tmp_path / "alice.pdf"]
    (tmp_path / "bob.ipynb").write_text(nb)
    with pytest.raises(SystemExit, match="bob"):
        grading.find_submissions(tmp_path, "ch01_background")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"cells": [', "not a notebook (not JSON"),
        (b"\x89PNG\r\n", "not a notebook (not JSON"),
        (b"[1, 2]", "not a notebook (no list of cells)"),
        (b'{"cells": [], "nbformat": 3}', "not a notebook in format 4"),
        (b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', ""),
    ],
)
def test_notebook_problem(tmp_path, content, problem):
    path = tmp_path / "x.ipynb"
    path.write_bytes(content)
    got = grading.notebook_problem(path)
    assert got.startswith(problem) and bool(got) == bool(problem)


def test_failure_reason_names_the_cause():
    dead = "Traceback (most recent call last):\n  ...\n"
    dead += "nbclient.exceptions.DeadKernelError: Kernel died\n"
    assert grading.failure_reason(dead).startswith("kernel crash")
    wrong = (
        "otter.run.run_autograder.utils.OtterRuntimeError: Received submission for assignment"
        " 'ch02_core_concepts' (this is assignment 'ch01_background')\n"
    )
    assert grading.failure_reason(wrong) == (
        "Received submission for assignment 'ch02_core_concepts' (this is assignment "
        "'ch01_background')"
    )
    assert grading.failure_reason("") == "otter printed nothing"


def test_autograder_questions_in_natural_order_with_their_points(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("otter_config.json", '{"assignment_name": "hw"}')
        zf.writestr("tests/q10.py", 'name = "q10"\npoints = 2\n')
        zf.writestr("tests/q2.py", 'name = "q2"\npoints = [1, 2, 0.5]\n')
        zf.writestr("tests/q3.py", 'name = "q3"\n')  # otter's default points
        zf.writestr("run_otter.py", 'name = "not a test"\n')
    assert grading.autograder_questions(path) == ("hw", {"q2": 3.5, "q3": None, "q10": 2.0})


def test_write_csv_format(tmp_path):
    results = [
        grading.Result("bo", "ok", {"q1": 1.0, "q2": 0.5}),
        grading.Result("al", "error: timeout, twice"),
    ]
    grading.write_csv(tmp_path / "s.csv", {"q1": 1.0, "q2": 2.0}, results)
    assert (tmp_path / "s.csv").read_text().splitlines() == [
        "student,q1,q2,total,max,status",
        "bo,1,0.5,1.5,3,ok",
        'al,,,0,3,"error: timeout, twice"',
    ]


# ---------------------------------------------------------------- handout into a term folder

# The sequence that once lost a term's autograders: `handout` of every assignment, then
# `handout ch05_practice` into the same folder (about 7 s of otter assign per assignment).
TERM = [m.stem for m in assignments.find_masters()]
AGAIN = "ch05_practice"
REBUILT = [f"student/{AGAIN}.zip", f"autograder/{AGAIN}.zip", f"solutions/{AGAIN}.ipynb"]
# the teacher's own files, in every folder handout writes to: never touched
TEACHER = {
    "notes.md": b"week 3: remind them to restart and run all",
    "student/syllabus.pdf": b"%PDF-1.4",
    "autograder/README.txt": b"do not edit",
    f"solutions/{AGAIN}-annotated.ipynb": b"{}",
    "feedback/alice.json": b"{}",
}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under FOLDER, by relative path: its bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def zip_entries(data: bytes) -> dict[str, tuple]:
    """A zip's entries, by name: their date and bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: (i.date_time, zf.read(i)) for i in zf.infolist()}


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """``handout --out term/`` of every assignment, built outside the repository."""
    tmp = tmp_path_factory.mktemp("term")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(grading, "dist_folder", lambda master: tmp / "dist" / master.stem)
        assert grading.main(["handout", "--out", str(tmp / "term")]) == 0
    return tmp / "term"


@pytest.fixture
def handout_again(term, tmp_path, monkeypatch):
    """A copy of the term folder with the teacher's files added, and `handout` into it."""
    monkeypatch.setattr(grading, "dist_folder", lambda master: tmp_path / "dist" / master.stem)
    folder = shutil.copytree(term, tmp_path / "term")  # copy2: dates kept
    for rel, data in TEACHER.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder, lambda *args: grading.main(["handout", "--out", str(folder), *args])


@pytest.mark.slow
def test_handout_of_one_assignment_keeps_every_other_file(handout_again):
    """The issue's sequence: handout, then handout of one assignment into the same folder."""
    folder, handout = handout_again
    before = snapshot(folder)
    others = [rel.replace(AGAIN, name) for name in TERM if name != AGAIN for rel in REBUILT]
    assert len(others) == 3 * (len(TERM) - 1) and set(others + REBUILT) <= set(before)
    dates = {rel: (folder / rel).stat().st_mtime_ns for rel in REBUILT}
    assert handout(AGAIN) == 0
    after = snapshot(folder)
    assert sorted(after) == sorted(before)  # nothing deleted, nothing else added
    rewritten = [*REBUILT, "student/all_assignments.zip"]
    for rel in sorted(set(before) - set(rewritten)):  # links and teacher's files included
        assert after[rel] == before[rel], f"{rel} changed"
    for rel in REBUILT:
        assert (folder / rel).stat().st_mtime_ns > dates[rel], f"{rel} not rebuilt"
    # all_assignments.zip: still every assignment; the others' entries byte for byte
    old, new = zip_entries(before[rewritten[-1]]), zip_entries(after[rewritten[-1]])
    assert list(new) == list(old)
    assert sorted({name.split("/")[0] for name in old}) == sorted(TERM)
    for name in old:
        if not name.startswith(f"{AGAIN}/"):
            assert new[name] == old[name], name
        else:  # the rebuilt one's, from its new student zip
            assert new[name][1] == zip_entries(after[REBUILT[0]])[name][1], name


@pytest.mark.slow
def test_handout_replaces_an_autograder_that_graded_only_with_force(handout_again, capsys):
    folder, handout = handout_again
    autograder = folder / "autograder" / f"{AGAIN}.zip"
    subs = folder.parent / "submissions"
    subs.mkdir()
    (subs / "alice.ipynb").write_text("{")  # scored 0 ("not a notebook") without otter
    argv = ["grade", AGAIN, str(subs), "--out", str(folder.parent / "scores.csv")]
    assert grading.main([*argv, "--autograder", str(autograder)]) == 0
    record = f"autograder/{AGAIN}.graded.csv"
    assert (folder / record).read_text().splitlines()[0] == ",".join(grading.RECORD_HEADER)
    before = snapshot(folder)
    capsys.readouterr()

    for names in [[AGAIN], []]:  # named, or the whole term again
        with pytest.MonkeyPatch.context() as mp:  # refused before building anything
            mp.setattr(assignments, "assign", lambda *a, **k: pytest.fail("built"))
            assert handout(*names) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{AGAIN}: ") and "graded submissions" in err
        assert "--force" in err and err.count("\n") == 1  # the others graded nothing
        assert snapshot(folder) == before

    assert handout(AGAIN, "--force") == 0
    after = snapshot(folder)
    replaced = sorted(rel for rel in after if rel.startswith("autograder/replaced/"))
    assert len(replaced) == 2, replaced  # the old zip and its record, kept as they were
    zip_, csv_ = sorted(replaced, key=lambda rel: not rel.endswith(".zip"))
    assert after[zip_] == before[REBUILT[1]] and after[csv_] == before[record]
    assert csv_ == zip_.removesuffix(".zip") + ".graded.csv"
    assert record not in after  # the new autograder has graded nothing yet
    assert set(after) == set(before) - {record} | set(replaced)
    for rel in sorted(set(before) - {record, *REBUILT, "student/all_assignments.zip"}):
        assert after[rel] == before[rel], f"{rel} changed"  # Chapter 1 and the teacher's


def test_handout_refuses_a_graded_autograder_before_building(tmp_path, monkeypatch, capsys):
    """A hand-made term folder: refused with the name and the flag, nothing built or changed."""
    monkeypatch.setattr(assignments, "assign", lambda *a, **k: pytest.fail("built"))
    (master,) = assignments.find_masters(["ch05_practice"])
    with open(tmp_path / "links.csv", "w", newline="") as f:
        csv.writer(f).writerows([grading.LINKS_HEADER, grading.link_row(master)])
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "ch05_practice.zip").write_bytes(b"zip")
    (tmp_path / "autograder" / "ch05_practice.graded.csv").write_text("graded_at\n")
    before = snapshot(tmp_path)
    argv = ["handout", "--out", str(tmp_path), "ch05_practice", "ch05_practice"]
    assert grading.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("ch05_practice: ") == 1 and "--force" in err
    assert snapshot(tmp_path) == before


def test_handout_rejects_a_file_or_a_broken_links_csv_as_the_term_folder(tmp_path):
    masters = assignments.find_masters(["ch05_practice"])
    (tmp_path / "term.zip").write_bytes(b"")
    with pytest.raises(SystemExit, match="is a file"):
        grading.handout(masters, tmp_path / "term.zip")
    (tmp_path / "links.csv").write_text("name,url\nch05_practice,https://example.org\n")
    with pytest.raises(SystemExit, match="not a handout's list of links"):
        grading.handout(masters, tmp_path)
    assert (tmp_path / "links.csv").read_text().startswith("name,url")


def test_grade_records_each_run_next_to_the_autograder(tmp_path):
    autograder = tmp_path / "term" / "autograder" / "hw.zip"
    autograder.parent.mkdir(parents=True)
    with zipfile.ZipFile(autograder, "w") as zf:
        zf.writestr("otter_config.json", '{"assignment_name": "hw"}')
        zf.writestr("tests/q1.py", 'name = "q1"\npoints = 1\n')
    subs = tmp_path / "subs"
    subs.mkdir()
    argv = ["grade", "hw", str(subs), "--out", str(tmp_path / "hw.csv")]
    argv += ["--autograder", str(autograder)]
    assert grading.main(argv) == 0  # an empty folder grades nothing: no record
    assert not grading.graded_record(autograder).exists()
    (subs / "bo.ipynb").write_text("{")  # refused before otter runs: instant
    assert grading.main(argv) == 0
    assert grading.main(argv) == 0
    with open(tmp_path / "term" / "autograder" / "hw.graded.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == grading.RECORD_HEADER and len(rows) == 3
    assert rows[1][1:] == [str(subs.resolve()), str((tmp_path / "hw.csv").resolve()), "1", "1"]


# ---------------------------------------------------------------- links


def test_handout_never_replaces_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "thesis.tex").write_text("")
    with pytest.raises(SystemExit, match="not empty"):
        grading.handout(assignments.find_masters(), tmp_path)
    assert (tmp_path / "thesis.tex").exists()


def test_colab_links_open_the_folder_the_setup_cell_enters():
    repo = book.config()["repository"]["url"].removeprefix("https://github.com/")
    for master in assignments.find_masters():
        nb = grading.student_notebook(master)
        assert nb.is_file(), f"{nb} missing: {assignments.REBUILD_HINT}"
        url = grading.colab_url(nb)
        rel = nb.relative_to(ROOT).as_posix()
        assert url == f"https://colab.research.google.com/github/{repo}/blob/main/{rel}"
        setup = grading.sync_setup_cells.setup_source(master)
        assert f'os.chdir("{grading.sync_setup_cells.CLONE}/{nb.parent.relative_to(ROOT)}")' in (
            setup
        )


def test_instructors_page_links_every_assignment_to_colab():
    page = (ROOT / "chapters/instructors.md").read_text()
    hint = (
        "update the table in chapters/instructors.md from "
        "`python -m booktools.grade_submissions links`"
    )
    for master in assignments.find_masters():
        assert grading.colab_url(grading.student_notebook(master)) in page, hint
    prefix = grading.colab_url(ROOT / "assignments")  # repository, branch and path
    for url in re.findall(r"https://colab\.research\.google\.com/\S+?\.ipynb", page):
        assert url.startswith(prefix), f"{url}: {hint}"


def test_an_otter_that_hangs_is_stopped_with_its_children(tmp_path, monkeypatch):
    """otter() kills a run past its timeout, and what it started in a session of its own
    (as otter starts its kernel), and says so: no test waits forever on a hung grader."""
    fake = tmp_path / "fake" / "otter"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")  # a regular package: found before the real otter
    (fake / "__main__.py").write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         start_new_session=True)\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))  # this otter shadows the real one
    start = time.perf_counter()
    with pytest.raises(assignments.OtterTimeout, match="still ran after 3 s") as err:
        assignments.otter("run", "x.ipynb", timeout=3)
    assert time.perf_counter() - start < 30
    child = int(re.search(r"child (\d+)", str(err.value)).group(1))
    try:
        assert psutil.Process(child).status() == psutil.STATUS_ZOMBIE, "the child still runs"
    except psutil.NoSuchProcess:
        pass  # killed and reaped


def test_grade_uses_the_results_of_an_otter_that_hung_after_writing_them(tmp_path, monkeypatch):
    calls = []

    def hung_otter(*args, timeout=None):
        out = Path(args[args.index("-o") + 1])
        calls.append(out)
        if write_results:
            (out / "results.json").write_text('{"tests": []}')
        raise assignments.OtterTimeout("still ran")

    monkeypatch.setattr(assignments, "otter", hung_otter)
    monkeypatch.setattr(assignments, "case_names", lambda folder: {})
    monkeypatch.setattr(assignments, "parse_results", lambda results, names: results)
    write_results = True
    got = assignments.grade(tmp_path / "a.zip", tmp_path / "n.ipynb", tmp_path, timeout=1)
    assert got == {"tests": []} and len(calls) == 1
    write_results = False  # hung before grading: one more try, then the error
    with pytest.raises(assignments.OtterTimeout):
        assignments.grade(tmp_path / "a.zip", tmp_path / "n.ipynb", tmp_path, timeout=1)
    assert len(calls) == 3
