"""The mutation tables: per assignment, wrong answers the autograder must catch.

Each assignment ``assignments/<name>/<name>.ipynb`` has a table here,
``tests/assignments/mutants/<name>.py``, and ``test_assignments.py`` finds it by that name
(an assignment without one fails a test that says what to add). A table exports two dicts,
both keyed by question ("q1", "q2", ... as in the notebook) and then by a label:

``MUTANTS: dict[str, dict[str, Mutant]]``
    At least five wrong solutions per question that a student would plausibly write:
    off by one, the wrong axis, a missing stability step, the wrong return type, changing
    an argument in place, ignoring an argument, hard-coding the public example, ... The
    label says the mistake in words. Find them sentence by sentence: every rule of the
    question's prompt (each formula, each edge case it names, the type it promises, "do not
    change ``x``", "stable for large inputs") should be broken by at least one mutant.

``CORRECT: dict[str, dict[str, Correct]]``
    At least one correct solution per question written differently from the master's
    (another algorithm, another library), which must get full marks.

A ``Mutant(old, new, fails, rule)`` is the master's solution with OLD replaced by NEW
(OLD must occur exactly once in the notebook's code; keep it inside one solution cell);
``fails`` is the set of test cases that must fail, by otter's names ("q2 - 3": the third
test cell of q2); every other case must pass. ``rule`` is the phrase of the question's
prompt the mistake breaks, quoted verbatim (whitespace aside), so the table stays tied to
what students are told. The tests require of every mutant:

- ``fails`` is not empty, holds only cases of its own question (a question that calls an
  earlier question's function tests it with a correct copy of that function, so that one
  mistake costs points once) and at least one hidden case (so hard-coding the public
  examples never earns a mutant's points back);
- run in-process (``inprocess.py``, milliseconds), the mutant fails exactly ``fails``, and
  the cell it edits still runs without an exception (a typo in NEW would prove nothing).

A ``Correct(old, new)`` is applied the same way and must pass every case. Slow tests then
grade, with otter itself, a few submissions per assignment that combine one mutant (or one
correct rewrite) of each question, and require the same verdicts.

Writing a new table: copy ``ch04_mathematics.py``, list each question's prompt sentences,
write a mutant that breaks each, run ``pytest tests/assignments -k <name>``, and add
hidden tests to the master notebook until every mutant is caught.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

FOLDER = Path(__file__).parent
MIN_MUTANTS = 5  # per question
MIN_CORRECT = 1  # per question


class Mutant(NamedTuple):
    old: str  # text of the solution notebook's code, exactly once
    new: str  # the mistake
    fails: set[str]  # the test cases that must fail; all others must pass
    rule: str  # the phrase of the question's prompt that the mistake breaks


class Correct(NamedTuple):
    old: str  # text of the solution notebook's code, exactly once
    new: str  # a correct answer written differently: every test case must pass


def table_names() -> list[str]:
    """The assignments that have a table here."""
    return sorted(p.stem for p in FOLDER.glob("*.py") if not p.stem.startswith("_"))


def table(name: str) -> ModuleType | None:
    """The table module of assignment NAME, or None when there is none."""
    if not (FOLDER / f"{name}.py").is_file():
        return None
    return importlib.import_module(f"{__name__}.{name}")
