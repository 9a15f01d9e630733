"""Build and check the book's otter-grader assignments.

Each assignment is one master notebook, ``assignments/<name>/<name>.ipynb``, holding the
prompts, the solutions and the public and hidden tests in otter-grader's assign format.

    python -m booktools.assignments build [NAME ...]   (`make assignments`)
        otter assign -> assignments/<name>/dist/ (gitignored: autograder zip, solutions),
        then copy the student notebook and its public tests to assignments/<name>/student/
        (committed, so the chapter can link the notebook for Colab).

    python -m booktools.assignments check [NAME ...]
        build into a temporary folder, grade the solution and the blank student notebook
        with `otter run` (no Docker), and require full marks and zero on every test case;
        also require the committed student/ folder to equal the fresh build.

Otter runs as ``sys.executable -m otter``, so the venv's Python works without activation.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil  # installed with IPython, which otter needs anyway

from booktools.book import ROOT

ASSIGNMENTS = ROOT / "assignments"
SETUP_TAG = "colab-setup"  # the cell booktools.sync_setup_cells fills in
OTTER_INIT = "# Initialize Otter"  # first line of the cell otter's init_cell adds
IGNORED = {"__pycache__", ".ipynb_checkpoints", ".OTTER_LOG"}  # local runs leave these
REBUILD_HINT = "run `make assignments` and commit assignments/*/student/"


# ---------------------------------------------------------------- finding and building


def find_masters(names: list[str] | None = None) -> list[Path]:
    """Master notebooks ``assignments/<name>/<name>.ipynb``, all of them or the named ones."""
    if names:
        masters = [ASSIGNMENTS / n / f"{n}.ipynb" for n in names]
        missing = [str(m.relative_to(ROOT)) for m in masters if not m.is_file()]
        if missing:
            raise SystemExit(f"no such assignment notebook: {', '.join(missing)}")
        return masters
    return sorted(p for p in ASSIGNMENTS.glob("*/*.ipynb") if p.stem == p.parent.name)


class OtterTimeout(RuntimeError):
    """``otter`` ran past its time limit; it and everything it started were killed."""


def kill_tree(pid: int) -> None:
    """Kill a process and everything it started.

    The Jupyter kernel runs in a session of its own, so killing otter's process group
    would miss it. It normally exits soon after otter (a thread polls for its parent), but
    not while one long C call such as ``sum(range(10**18))`` holds the GIL: it would spin
    on, alone, until killed.
    """
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def run_otter(args: list[str], timeout: float | None = None,
              cwd: Path | None = None) -> tuple[int | None, str]:  # fmt: skip
    """Run ``python -m otter ARGS``: its exit status and output (stdout and stderr).

    With a ``timeout`` (seconds), otter and everything it started (its kernel) are killed
    when it runs longer, and the status is None.
    """
    cmd = [sys.executable, "-m", "otter", *args]
    # Output to a file, not a pipe: a process the notebook started could hold a pipe open
    # after otter is gone, and reading it to the end would then never finish.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()
            status = None
        log.seek(0)
        return status, log.read()


def otter(*args: str, timeout: float | None = None) -> str:
    """Run ``python -m otter ARGS``; return its output, or raise with the output's tail
    (`OtterTimeout` when it ran past ``timeout`` seconds and was stopped)."""
    status, output = run_otter(list(args), timeout)
    tail = "\n".join(output.splitlines()[-30:])
    if status is None:
        raise OtterTimeout(f"`otter {' '.join(args)}` still ran after {timeout:g} s and was "
                           f"stopped:\n{tail}")  # fmt: skip
    if status != 0:
        raise RuntimeError(f"`otter {' '.join(args)}` failed ({status}):\n{tail}")
    return output


def normalize_notebook(path: Path) -> None:
    """Make an otter-written notebook deterministic and put the Colab setup cell first.

    otter's init cell (``import otter``) is inserted at the very top, but on Colab otter is
    only installed by the setup cell, so the init cell moves to just after it. Cells otter
    creates get random ids; ids become positional so a rebuild gives identical files.
    """
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    init = [c for c in cells if c.cell_type == "code" and c.source.startswith(OTTER_INIT)]
    setup = [c for c in cells if SETUP_TAG in c.metadata.get("tags", [])]
    if len(init) == 1 and len(setup) == 1:
        cells.remove(init[0])
        cells.insert(cells.index(setup[0]) + 1, init[0])
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(nb, path)


def assign(master: Path, dist: Path, run_tests: bool = True) -> Path:
    """``otter assign`` MASTER into DIST; return the autograder zip.

    ``run_tests=False`` skips otter's own run of the tests on the solutions (``check``
    grades the solutions itself, case by case).
    """
    shutil.rmtree(dist, ignore_errors=True)
    args = ["assign", str(master), str(dist)] + ([] if run_tests else ["--no-run-tests"])
    otter(*args)
    for nb in (dist / "student" / master.name, dist / "autograder" / master.name):
        normalize_notebook(nb)
    (zip_path,) = (dist / "autograder").glob("*.zip")  # name carries a timestamp
    return zip_path


def copy_student(src: Path, dest: Path) -> None:
    """Replace DEST with the student notebook and its public tests from SRC."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*IGNORED))


def build(master: Path) -> None:
    dist = master.parent / "dist"
    assign(master, dist)
    copy_student(dist / "student", master.parent / "student")


def diff_dirs(committed: Path, fresh: Path) -> list[str]:
    """Relative paths that differ between two folders (missing, extra or changed)."""
    cmp = filecmp.dircmp(committed, fresh, ignore=sorted(IGNORED))
    diffs: list[str] = []

    def walk(d: filecmp.dircmp, prefix: str) -> None:
        diffs.extend(f"{prefix}{n} (only in committed)" for n in d.left_only)
        diffs.extend(f"{prefix}{n} (missing)" for n in d.right_only)
        diffs.extend(f"{prefix}{n} (changed)" for n in d.diff_files + d.funny_files)
        for name, sub in d.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    if not committed.is_dir():
        return [f"{committed.relative_to(ROOT)} (missing)"]
    walk(cmp, "")
    return diffs


# ---------------------------------------------------------------- grading


@dataclass
class Question:
    name: str
    score: float
    max_score: float
    cases: dict[str, bool]  # "q1 - 2" -> passed


@dataclass
class Grade:
    questions: dict[str, Question]

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions.values())

    @property
    def max_score(self) -> float:
        return sum(q.max_score for q in self.questions.values())

    @property
    def cases(self) -> dict[str, bool]:
        return {n: ok for q in self.questions.values() for n, ok in q.cases.items()}

    @property
    def failed(self) -> set[str]:
        return {n for n, ok in self.cases.items() if not ok}


def case_names(tests_dir: Path) -> dict[str, list[tuple[str, bool]]]:
    """Per question, the (name, hidden) of each test case in otter's exception-based files.

    otter names the cases "<question> - <i>" in file order (a file's ``name`` is the
    question). Read with ast rather than importing otter into this script.
    """
    out = {}
    for path in sorted(tests_dir.glob("*.py")):
        question, cases = path.stem, []
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "name":
                question = ast.literal_eval(node.value)
            for dec in getattr(node, "decorator_list", []):
                if isinstance(dec, ast.Call) and ast.unparse(dec.func) == "test_case":
                    kwargs = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
                    cases.append((f"{question} - {len(cases) + 1}", bool(kwargs.get("hidden"))))
        out[question] = cases
    return out


CASE_RE = re.compile(r"^\s*(\S.*? - \d+) result:\n\s*(✅|❌)", re.MULTILINE)


def parse_results(results: dict, expected: dict[str, list[tuple[str, bool]]]) -> Grade:
    """Turn otter's results.json into per-case pass/fail.

    results.json scores whole questions; the per-case verdicts are only in each question's
    "output" text ("q1 - 2 result: ✅ ..."), which is omitted when every case passed.
    """
    questions = {}
    for entry in results["tests"]:
        if "score" not in entry:  # the "Public Tests" summary entry
            continue
        name, text = entry["name"], entry.get("output", "")
        names = [n for n, _ in expected.get(name, [])]
        if "All test cases passed!" in text:
            cases = dict.fromkeys(names, True)
        else:
            cases = {n: mark == "✅" for n, mark in CASE_RE.findall(text)}
        if sorted(cases) != sorted(names):
            raise RuntimeError(f"could not read the test cases of {name} from:\n{text}")
        questions[name] = Question(name, entry["score"], entry["max_score"], cases)
    missing = set(expected) - set(questions)
    if missing:  # e.g. otter's "Autograder Failed" entry instead of scores
        raise RuntimeError(f"no results for {sorted(missing)}: {json.dumps(results)[:2000]}")
    return Grade(questions)


GRADE_TIMEOUT = 300.0  # seconds for one `otter run`; an assignment's notebook needs seconds


def grade(autograder_zip: Path, notebook: Path, workdir: Path,
          timeout: float = GRADE_TIMEOUT) -> Grade:  # fmt: skip
    """Grade NOTEBOOK with ``otter run`` (no Docker) in a fresh subfolder of WORKDIR.

    An ``otter run`` still going after ``timeout`` seconds is stopped. If it had written its
    results, they are used: otter 7.0 sometimes hangs on exit after grading, its kernel
    already gone (seen on this book's 2-core machine). Without results it is tried once more.
    """
    for attempt in (1, 2):
        out = Path(tempfile.mkdtemp(prefix=f"{notebook.stem}-", dir=workdir))
        try:
            otter("run", "--no-logo", "-a", str(autograder_zip), "-o", str(out), str(notebook),
                  timeout=timeout)  # fmt: skip
            break
        except OtterTimeout:
            if (out / "results.json").is_file():
                print(f"otter run on {notebook.name} hung after writing its results; they are "
                      "used", file=sys.stderr)  # fmt: skip
                break
            if attempt == 2:
                raise
        except RuntimeError as err:
            # Kernels started at the same moment can pick the same free port (jupyter_client
            # finds ports, then binds them later); the loser dies before it answers. That is
            # the start-up, not the submission, so it gets one more try.
            if attempt == 2 or "Kernel died before replying to kernel_info" not in str(err):
                raise
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return parse_results(results, case_names(autograder_zip.parent / "tests"))


def replace_once(sources: list[str], edits: Iterable[tuple[str, str]], where: str) -> list[str]:
    """SOURCES (cells' code) with each edit's OLD, found exactly once in them, replaced by NEW.

    Every OLD is looked up in the original sources, so one edit cannot create or destroy
    another's text; edits that overlap are refused.
    """
    spots = []  # (cell, start, end, new)
    for old, new in edits:
        hits = [(i, s.find(old)) for i, s in enumerate(sources) if old in s]
        if len(hits) != 1 or sources[hits[0][0]].count(old) != 1:
            raise ValueError(f"{old!r} occurs in {len(hits)} cells of {where}, expected once")
        ((i, start),) = hits
        spots.append((i, start, start + len(old), new))
    spots.sort(reverse=True)  # from the end of each cell, so earlier positions stay valid
    out = list(sources)
    for (i, start, end, new), later in zip(spots, [None, *spots]):
        if later and later[0] == i and later[1] < end:
            raise ValueError(f"two edits overlap in a cell of {where}")
        out[i] = out[i][:start] + new + out[i][end:]
    return out


def edit_notebook(src: Path, dest: Path, *edits: tuple[str, str]) -> Path:
    """Copy a notebook with each edit's OLD (exactly once in its code) replaced by its NEW.

    Several edits make one submission with a mistake in each of several questions.
    """
    nb = nbformat.read(src, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, source in zip(code, replace_once([c.source for c in code], edits, src.name)):
        cell.source = source
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


# ---------------------------------------------------------------- check


@dataclass
class Report:
    name: str
    dist: Path
    autograder_zip: Path
    solution: Grade
    blank: Grade
    seconds: float
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "ok" if not self.problems else "FAILED"
        return (
            f"{self.name}: solution {self.solution.score:g}/{self.solution.max_score:g}, "
            f"blank {self.blank.score:g}/{self.blank.max_score:g}, "
            f"{len(self.solution.cases)} test cases, {self.seconds:.1f} s: {status}"
        )


def check(master: Path, workdir: Path) -> Report:
    """Build MASTER into WORKDIR and grade its solution and blank student notebook."""
    start = time.perf_counter()
    name = master.stem
    dist = workdir / "dist"
    zip_path = assign(master, dist, run_tests=False)
    solution_nb = dist / "autograder" / master.name
    blank_nb = dist / "student" / master.name
    with ThreadPoolExecutor(2) as pool:  # two kernels at once: about half the wall time
        solution_f = pool.submit(grade, zip_path, solution_nb, workdir)
        blank_f = pool.submit(grade, zip_path, blank_nb, workdir)
        solution, blank = solution_f.result(), blank_f.result()

    problems = []
    code = [c for c in nbformat.read(master, as_version=4).cells if c.cell_type == "code"]
    if not code or SETUP_TAG not in code[0].metadata.get("tags", []):
        problems.append(f"the first code cell of {master.name} must be tagged {SETUP_TAG!r}")
    cases = case_names(dist / "autograder" / "tests")
    if not any(hidden for qcases in cases.values() for _, hidden in qcases):
        problems.append("no hidden test cases")
    if solution.failed or solution.score != solution.max_score:
        problems.append(f"the solution fails {sorted(solution.failed)}: fix {master.name}")
    passed_blank = sorted(n for n, ok in blank.cases.items() if ok)
    if passed_blank or blank.score != 0:
        problems.append(
            f"the blank student notebook passes {passed_blank}: make those tests fail on `...`"
        )
    stale = diff_dirs(master.parent / "student", dist / "student")
    if stale:
        problems.append(f"student/ is out of date ({', '.join(stale)}): {REBUILD_HINT}")
    seconds = time.perf_counter() - start
    return Report(name, dist, zip_path, solution, blank, seconds, problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, help_ in [
        ("build", "otter assign into <name>/dist and refresh the committed <name>/student"),
        ("check", "grade solution and blank notebook; require student/ to be up to date"),
    ]:
        p = sub.add_parser(cmd, help=help_)
        p.add_argument("names", nargs="*", metavar="NAME", help="assignment names (default all)")
    args = parser.parse_args(argv)

    masters = find_masters(args.names)
    if not masters:
        print(f"no assignments found under {ASSIGNMENTS}")
        return 1
    failed = False
    for master in masters:
        start = time.perf_counter()
        try:
            if args.command == "build":
                build(master)
            else:
                with tempfile.TemporaryDirectory(prefix=f"{master.stem}-check-") as tmp:
                    report = check(master, Path(tmp))
        except RuntimeError as e:  # otter failed: its output says why
            print(f"{master.stem}: ERROR\n{e}")
            failed = True
            continue
        if args.command == "build":
            seconds = time.perf_counter() - start
            student = (master.parent / "student").relative_to(ROOT)
            print(f"{master.stem}: built {student}/ and dist/ in {seconds:.1f} s")
            continue
        print(report.line())
        for problem in report.problems:
            print(f"  - {problem}")
        failed |= bool(report.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
