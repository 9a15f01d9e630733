"""Grade an assignment notebook in this process: no otter, no kernel, milliseconds a run.

`otter run` grades a submission in a fresh Jupyter kernel, about 5 s each, so a table of a
hundred partly right submissions would take minutes. This module reads a master notebook in
otter's assign format (``assignments/README.md``) and does what otter's grading does:

- it runs the notebook's code cells in order in one namespace, as the kernel would (the
  Colab setup cell is skipped; a cell that raises is recorded and the run goes on);
- where the student notebook has ``grader.check("qN")``, after the question's cells, it
  calls each test function of that question with the namespace's value of each of its
  parameters (``None`` for a missing name, the namespace itself for ``env``, as otter's
  ``test_case.call_func`` does). A case passes when its function returns.

Cases get otter's names, "q1 - 2": the question, then the case's place among the
question's test cells. ``test_assignments.py`` checks the names, hidden flags and verdicts
against otter's own on the same submissions (slow tests), so the fast tests may trust this.

    >>> from booktools.assignments import ASSIGNMENTS
    >>> master = read_master(ASSIGNMENTS / "ch01_background" / "ch01_background.ipynb")
    >>> sorted(master.questions)
    ['q1', 'q2', 'q3', 'q4']
    >>> run(master).failed
    set()
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import io
import re
import signal
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from booktools.assignments import SETUP_TAG, replace_once

TIMEOUT = 60  # s for one whole run: a table's submission that loops forever fails its test
BEGIN_SOLUTION = re.compile(r"^(\s*)# BEGIN SOLUTION\b.*$")
END_SOLUTION = re.compile(r"^\s*# END SOLUTION\b.*$")


@dataclass
class Case:
    name: str  # "q1 - 2", as otter names it
    hidden: bool
    function: str  # the test function's name
    source: str  # the function's definition, without the call otter drops


@dataclass
class Question:
    name: str
    points: list[float]  # one per case
    prompt: str  # the question's markdown: what the student is told
    cases: list[Case] = field(default_factory=list)


@dataclass
class Cell:
    source: str
    solution: bool  # a solution cell: the student gets `...` for its marked lines
    check: str | None = None  # run this question's tests after the cell


@dataclass
class Master:
    path: Path
    cells: list[Cell]  # the code that runs, in order
    questions: dict[str, Question]


@dataclass
class Run:
    cases: dict[str, bool]  # "q1 - 2" -> passed
    messages: dict[str, str]  # failed case -> the exception it raised
    cell_errors: dict[int, str]  # cell (its place in Master.cells) -> the exception it raised

    @property
    def failed(self) -> set[str]:
        return {n for n, ok in self.cases.items() if not ok}


def read_master(path: Path) -> Master:
    """The code cells, questions and test cases of a master notebook in otter's format."""
    nb = nbformat.read(path, as_version=4)
    cells: list[Cell] = []
    questions: dict[str, Question] = {}
    question: Question | None = None
    in_tests = in_solution = False
    for cell in nb.cells:
        text = cell.source.strip()
        if cell.cell_type == "raw":
            first, _, rest = text.partition("\n")
            if first == "# BEGIN QUESTION":
                meta = yaml.safe_load(rest)
                question = Question(meta["name"], list(meta.get("points") or []), "")
                questions[question.name] = question
            elif first == "# END QUESTION":
                # the student notebook's grader.check("qN") follows the question's cells
                cells[-1].check = question.name
                question = None
            in_tests = {"# BEGIN TESTS": True, "# END TESTS": False}.get(first, in_tests)
            in_solution = {"# BEGIN SOLUTION": True, "# END SOLUTION": False}.get(
                first, in_solution
            )
        elif cell.cell_type == "markdown":
            if question is not None and not in_tests and not in_solution:
                question.prompt += cell.source + "\n\n"
        elif in_tests:
            question.cases.append(test_case(question, cell.source))
        elif SETUP_TAG not in cell.metadata.get("tags", []):
            cells.append(Cell(cell.source, in_solution))
    return Master(path, cells, questions)


def test_case(question: Question, source: str) -> Case:
    """A test cell, ``[# HIDDEN] def test_x(...): ...`` and its call, as a Case."""
    (func,) = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    hidden = source.lstrip().startswith("# HIDDEN")
    name = f"{question.name} - {len(question.cases) + 1}"
    return Case(name, hidden, func.name, ast.get_source_segment(source, func))


def blank_source(source: str) -> str:
    """What the student gets: each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` is ``...``."""
    out, skipping = [], False
    for line in source.split("\n"):
        if m := BEGIN_SOLUTION.match(line):
            out.append(f"{m.group(1)}...")
            skipping = True
        elif END_SOLUTION.match(line):
            skipping = False
        elif not skipping:
            out.append(line)
    return "\n".join(out)


def apply_edits(master: Master, edits: Iterable[tuple[str, str]]) -> list[str]:
    """The sources of the master's code cells with each (old, new) applied.

    Each OLD must occur exactly once in the master's code, and the edits must not overlap:
    they are found in the original cells, then applied together (as
    ``booktools.assignments.edit_notebook`` does).
    """
    return replace_once([c.source for c in master.cells], edits, master.path.name)


class Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Timeout in this (main) thread after SECONDS."""

    def stop(signum, frame):
        raise Timeout(f"still running after {seconds} s: an endless loop?")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_case(case: Case, env: dict) -> str:
    """Run one test case against the notebook's namespace ENV; '' if it passed, else why."""
    namespace = {"__builtins__": builtins}
    exec(compile(case.source, f"<{case.name}>", "exec"), namespace)
    func = namespace[case.function]
    kwargs = {p: env if p == "env" else env.get(p) for p in inspect.signature(func).parameters}
    try:
        func(**kwargs)
    except Timeout:
        raise
    except Exception as e:  # otter: any exception fails the case
        return f"{type(e).__name__}: {e}"
    return ""


def run(master: Master, edits: Iterable[tuple[str, str]] = (), blank: bool = False) -> Run:
    """Run the notebook, with EDITS applied (or as the blank student copy), and grade it."""
    sources = apply_edits(master, edits)
    if blank:
        sources = [blank_source(s) if c.solution else s for c, s in zip(master.cells, sources)]
    env: dict = {"__name__": "__main__", "__builtins__": builtins}
    cases, messages, cell_errors = {}, {}, {}
    sink = io.StringIO()
    with (
        time_limit(TIMEOUT),
        warnings.catch_warnings(),  # a kernel shows warnings; pytest may turn them into errors
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        for i, (cell, source) in enumerate(zip(master.cells, sources)):
            try:
                exec(compile(source, f"<{master.path.stem} cell {i}>", "exec"), env)
            except Timeout:
                raise
            except Exception as e:
                cell_errors[i] = f"{type(e).__name__}: {e}"
            if cell.check:
                for case in master.questions[cell.check].cases:
                    message = call_case(case, env)
                    cases[case.name] = not message
                    if message:
                        messages[case.name] = message
    return Run(cases, messages, cell_errors)
