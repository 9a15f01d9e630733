"""The otter-grader assignments grade as intended and catch the mistakes students make.

For every ``assignments/<name>/<name>.ipynb`` and its mutation table
``tests/assignments/mutants/<name>.py`` (format in ``mutants/__init__.py``):

- fast, in-process (``inprocess.py``, no kernel: a few milliseconds a submission): the
  solution passes every test case and the blank student notebook none; the table has at
  least five wrong solutions and one differently written correct solution per question;
  each wrong one fails exactly the test cases it lists, all of its own question and at
  least one of them hidden, and each correct one passes every case;
  a submission with one mutant in each question fails the union of their cases;
- slow, with otter (``otter run`` in a Jupyter kernel, about 5 s a submission): the
  solution gets full marks, the blank notebook zero, the committed ``student/`` folder
  equals a fresh build, otter names the test cases and hidden flags as ``inprocess`` does,
  and a few such combined submissions per assignment (two with a mutant in every question,
  and every correct rewrite) get from otter the verdicts they get in-process.
"""

from __future__ import annotations

import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import inprocess
import mutants
import nbformat
import pytest

from booktools import assignments

ROOT = Path(__file__).resolve().parents[2]
NAMES = [m.stem for m in assignments.find_masters()]
FORMAT = "tests/assignments/mutants/__init__.py"
# graded by otter too, with every correct rewrite; the others only in-process
OTTER_MUTANT_SUBMISSIONS = ("mutants 0", "mutants 1")


@functools.cache
def master(name: str) -> inprocess.Master:
    return inprocess.read_master(assignments.ASSIGNMENTS / name / f"{name}.ipynb")


def entries(kind: str) -> list:
    """pytest params (name, question, label) of every MUTANTS or CORRECT entry of the tables."""
    params = []
    for name in NAMES:
        table = mutants.table(name)
        for question, entries in (getattr(table, kind, None) or {}).items():
            params += [
                pytest.param(name, question, label, id=f"{name} {question}: {label}")
                for label in entries
            ]
    return params


def words(text: str) -> str:
    return " ".join(text.split())


def edited_cells(m: inprocess.Master, edit: tuple[str, str]) -> set[int]:
    before = [c.source for c in m.cells]
    return {i for i, (a, b) in enumerate(zip(before, inprocess.apply_edits(m, [edit]))) if a != b}


def combined_submissions(name: str) -> dict[str, list[tuple[str, str]]]:
    """Submissions with one table entry per question each, by label: every mutant is in one.

    "mutants 2" holds the third mutant of each question (of those that have three), and so
    on; "correct 0" the first correct rewrite of each question.
    """
    table = mutants.table(name)
    subs = {}
    for kind in ("MUTANTS", "CORRECT"):
        per_question = [list(e.values()) for e in getattr(table, kind).values()]
        for j in range(max(map(len, per_question))):
            subs[f"{kind.lower()} {j}"] = [e[j][:2] for e in per_question if j < len(e)]
    return subs


# ---------------------------------------------------------------- fast: in-process


def test_assignments_found():
    assert NAMES, "no assignments/<name>/<name>.ipynb found"


@pytest.mark.parametrize("name", NAMES)
def test_every_assignment_has_a_mutation_table(name):
    path = f"tests/assignments/mutants/{name}.py"
    table = mutants.table(name)
    assert table is not None, (
        f"{name} has no mutation table: add {path} exporting MUTANTS (at least "
        f"{mutants.MIN_MUTANTS} wrong solutions per question) and CORRECT (at least "
        f"{mutants.MIN_CORRECT} correct one written differently); the format is in {FORMAT}"
    )
    questions = master(name).questions
    for kind, least in [("MUTANTS", mutants.MIN_MUTANTS), ("CORRECT", mutants.MIN_CORRECT)]:
        got = getattr(table, kind, {})
        unknown = sorted(set(got) - set(questions))
        assert not unknown, f"{path}: {kind} has questions {unknown} the notebook does not have"
        for question in questions:
            n = len(got.get(question, {}))
            assert n >= least, (
                f"{path}: {kind}[{question!r}] has {n} entries, needs at least {least} "
                f"(the format is in {FORMAT})"
            )


def test_every_table_belongs_to_an_assignment():
    orphans = sorted(set(mutants.table_names()) - set(NAMES))
    assert not orphans, f"tests/assignments/mutants/ has tables of no assignment: {orphans}"


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes_and_blank_fails_in_process(name):
    m = master(name)
    for question in m.questions.values():
        assert question.cases, f"{question.name} has no test cases"
        assert len(question.points) == len(question.cases), (
            f"{question.name}: points {question.points} for {len(question.cases)} test cases"
        )
        assert any(c.hidden for c in question.cases), f"{question.name} has no hidden test"
    solution = inprocess.run(m)
    assert not solution.cell_errors, solution.cell_errors
    assert not solution.failed, {n: solution.messages[n] for n in sorted(solution.failed)}
    student = nbformat.read(assignments.ASSIGNMENTS / name / "student" / f"{name}.ipynb", 4)
    answers = [
        c.source for c in student.cells if "otter_answer_cell" in c.metadata.get("tags", [])
    ]
    assert answers == [inprocess.blank_source(c.source) for c in m.cells if c.solution], (
        f"the blank copy in-process differs from student/{name}.ipynb: {assignments.REBUILD_HINT}"
    )
    blank = inprocess.run(m, blank=True)
    passed = sorted(n for n, ok in blank.cases.items() if ok)
    assert not passed, f"the blank notebook passes {passed}: make them fail on `...`"


@pytest.mark.parametrize(("name", "question", "label"), entries("MUTANTS"))
def test_mutant_fails_exactly_its_cases(name, question, label):
    m = master(name)
    mutant = mutants.table(name).MUTANTS[question][label]
    cases = {c.name: c for c in m.questions[question].cases}
    assert mutant.rule.strip() and words(mutant.rule) in words(m.questions[question].prompt), (
        f"rule {mutant.rule!r} is not a phrase of {question}'s prompt"
    )
    assert mutant.fails, "list the test cases the mutant fails"
    others = sorted(mutant.fails - cases.keys())
    assert not others, f"{others} are not cases of {question}: a mistake costs points once"
    assert any(cases[n].hidden for n in mutant.fails), (
        f"it fails no hidden case of {question}: add a hidden test that catches it"
    )
    got = inprocess.run(m, [mutant[:2]])
    broken = {i: e for i, e in got.cell_errors.items() if i in edited_cells(m, mutant[:2])}
    assert not broken, f"the edited cell raises: {broken}"
    messages = {n: got.messages[n] for n in sorted(got.failed)}
    assert got.failed == mutant.fails, f"expected {sorted(mutant.fails)} to fail: {messages}"


@pytest.mark.parametrize(("name", "question", "label"), entries("CORRECT"))
def test_correct_rewrite_passes_every_case(name, question, label):
    m = master(name)
    correct = mutants.table(name).CORRECT[question][label]
    got = inprocess.run(m, [correct])
    broken = {i: e for i, e in got.cell_errors.items() if i in edited_cells(m, correct)}
    assert not broken, f"the edited cell raises: {broken}"
    assert not got.failed, {n: got.messages[n] for n in sorted(got.failed)}


def test_parse_results_reads_each_case():
    expected = {"q1": [("q1 - 1", False), ("q1 - 2", True)], "q2": [("q2 - 1", False)]}
    results = {
        "tests": [
            {"name": "Public Tests", "output": "...", "status": "failed"},
            {
                "name": "q1",
                "score": 1,
                "max_score": 2,
                "output": "q1 results:\n    q1 - 1 result:\n        ✅ Test case passed\n\n"
                "    q1 - 2 result:\n        ❌ Test case failed\n        Error at line 3",
            },
            {
                "name": "q2",
                "score": 1,
                "max_score": 1,
                "output": "q2 results: All test cases passed!",
            },
        ]
    }
    grade = assignments.parse_results(results, expected)
    assert grade.cases == {"q1 - 1": True, "q1 - 2": False, "q2 - 1": True}
    assert (grade.score, grade.max_score) == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_mistakes_in_several_questions_do_not_interfere(name):
    """One mutant per question at once fails the union of their cases (what otter grades)."""
    table, m = mutants.table(name), master(name)
    for label, edits in combined_submissions(name).items():
        kind = table.MUTANTS if label.startswith("mutants") else table.CORRECT
        fails = [
            getattr(e, "fails", set()) for q in kind.values() for e in q.values() if e[:2] in edits
        ]
        assert inprocess.run(m, edits).failed == set().union(*fails), label


# ---------------------------------------------------------------- slow: otter


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("assignments")


@pytest.fixture(scope="module")
def report(workdir):
    """check() per assignment, run once and shared by the tests below."""
    cache = {}

    def get(name: str):
        if name not in cache:
            master_path = assignments.ASSIGNMENTS / name / f"{name}.ipynb"
            (workdir / name).mkdir()
            cache[name] = assignments.check(master_path, workdir / name)
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_solution_gets_full_marks(report, name):
    r = report(name)
    assert r.solution.max_score > 0
    assert not r.solution.failed, f"the solution fails {sorted(r.solution.failed)}"
    assert r.solution.score == r.solution.max_score


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_blank_scores_zero_on_every_case(report, name):
    r = report(name)
    assert r.blank.cases.keys() == r.solution.cases.keys()
    passed = sorted(n for n, ok in r.blank.cases.items() if ok)
    assert not passed, f"the blank notebook passes {passed}"
    assert r.blank.score == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_committed_student_folder_is_fresh(report, name):
    r = report(name)
    stale = assignments.diff_dirs(assignments.ASSIGNMENTS / name / "student", r.dist / "student")
    assert not stale, f"{stale}: {assignments.REBUILD_HINT}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_otter_names_the_cases_as_in_process(report, name):
    otter_cases = assignments.case_names(report(name).dist / "autograder" / "tests")
    ours = {
        q: [(c.name, c.hidden) for c in question.cases]
        for q, question in master(name).questions.items()
    }
    assert otter_cases == ours
    for q, question in master(name).questions.items():
        text = (report(name).dist / "autograder" / "tests" / f"{q}.py").read_text()
        assert re.search(rf"^points = {re.escape(str(question.points))}$", text, re.M), q


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_otter_agrees_with_in_process_grading(report, workdir, name):
    """A few combined submissions per assignment, graded by otter itself (about 5 s each)."""
    r, m = report(name), master(name)
    solution = r.dist / "autograder" / f"{name}.ipynb"
    subs = {
        label: edits
        for label, edits in combined_submissions(name).items()
        if label in OTTER_MUTANT_SUBMISSIONS or label.startswith("correct")
    }
    paths = {
        label: assignments.edit_notebook(
            solution, workdir / name / label.replace(" ", "-") / solution.name, *edits
        )
        for label, edits in subs.items()
    }
    with ThreadPoolExecutor(min(len(paths), os.cpu_count() or 1)) as pool:
        futures = {
            label: pool.submit(assignments.grade, r.autograder_zip, nb, workdir / name)
            for label, nb in paths.items()
        }
        got = {label: f.result() for label, f in futures.items()}
    for label, edits in subs.items():
        expected = inprocess.run(m, edits).failed
        assert got[label].failed == expected, f"{label}: otter {sorted(got[label].failed)}"
        full = got[label].score == got[label].max_score
        assert full == label.startswith("correct"), f"{label}: {got[label].score}"
