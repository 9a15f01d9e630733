"""Hand out a term's assignments and grade a folder of submissions, without Docker.

    python -m booktools.grade_submissions links
        print the Colab link of every assignment's student notebook, built from
        _config.yml (repository.url, branch, path_to_book) as the book's launch buttons are.

    python -m booktools.grade_submissions handout --out term/ [NAME ...] [--force]
        otter assign every assignment (or the NAMEd ones) into assignments/<name>/dist/,
        require the committed student/ folders (what the Colab links open) to equal that
        build, and write:
          term/student/<name>.zip         <name>/: the student notebook and its public tests/
          term/student/all_assignments.zip  every assignment in term/, a folder each
          term/autograder/<name>.zip      the autograder: keep it to regrade with the same tests
          term/solutions/<name>.ipynb     the solutions, for the instructor only
          term/links.md, term/links.csv   the Colab links of every assignment in term/
        Into an earlier handout's folder it adds or replaces only the assignments built, and
        deletes nothing. It refuses to rebuild an autograder that has graded submissions
        (term/autograder/<name>.graded.csv, written by grade) unless --force, which moves the
        old zip and its record to term/autograder/replaced/.

    python -m booktools.grade_submissions grade NAME SUBMISSIONS --out scores.csv
        `otter run` every submission in the folder SUBMISSIONS (alice.ipynb, or a folder
        alice/ holding one notebook: the student id is the file or folder name), -j at a
        time, each within --timeout seconds, and write one CSV: a row per student, a column
        per question (points), total, max and status ("ok", or "error: <reason>"). A
        corrupted file, a notebook that raises, loops forever or kills its kernel costs that
        student a row marked "error", never the run. The autograder is
        assignments/<name>/dist/autograder/*.zip, built first when missing or older than
        the master notebook, or the zip given with --autograder (e.g. term/autograder/...).
        Each run that graded submissions adds a row to <zip name>.graded.csv next to the zip.

`otter run` executes each submission as you, on this machine: run it in a throwaway
account, container or VM when the code comes from people you do not know.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import shutil
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from booktools import assignments, sync_setup_cells  # the setup cells the links must match
from booktools.book import ROOT, config

OK = "ok"
LINKS_HEADER = ["assignment", "notebook", "colab_url"]  # links.csv: what a term folder holds
RECORD_HEADER = ["graded_at", "submissions", "scores", "students", "not_graded"]

# ---------------------------------------------------------------- links and handout


def student_notebook(master: Path) -> Path:
    """The committed student copy of a master notebook: what students open."""
    return master.parent / "student" / master.name


def dist_folder(master: Path) -> Path:
    """Where otter assign writes an assignment: assignments/<name>/dist/ (not committed)."""
    return master.parent / "dist"


def colab_url(path: Path) -> str:
    """The Colab link of a notebook in this repository, as Jupyter Book's launch button.

    >>> colab_url(ROOT / "chapters/01_background.ipynb")  # doctest: +ELLIPSIS
    'https://colab.research.google.com/github/.../blob/main/chapters/01_background.ipynb'
    """
    book = config()
    repo = book["repository"]
    colab = book.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com")
    github = repo["url"].removeprefix("https://github.com/").removesuffix(".git").strip("/")
    in_repo = Path(repo.get("path_to_book") or ".") / path.relative_to(ROOT)
    branch = repo.get("branch", "main")
    return f"{colab.rstrip('/')}/github/{github}/blob/{branch}/{in_repo.as_posix()}"


def link_row(master: Path) -> list[str]:
    """A row of links.csv: the assignment, its student notebook and its Colab link."""
    nb = student_notebook(master)
    return [master.stem, nb.relative_to(ROOT).as_posix(), colab_url(nb)]


def links_table(rows: list[list[str]]) -> str:
    """A Markdown table of links.csv's rows: assignment, student notebook, Colab link."""
    lines = ["| Assignment | Student notebook | Colab |", "| --- | --- | --- |"]
    for name, notebook, url in rows:
        lines.append(f"| {name} | `{notebook}` | [Open in Colab]({url}) |")
    return "\n".join(lines) + "\n"


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> None:
    """Zip FOLDER's files (not otter's or Jupyter's leftovers) under PREFIX, in name order."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if zip_path.exists() else "w"
    with zipfile.ZipFile(zip_path, mode, zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not set(rel.parts) & assignments.IGNORED:
                zf.write(path, f"{prefix}{rel.as_posix()}")


def graded_record(autograder_zip: Path) -> Path:
    """Where grade records its runs with a zip: term/autograder/<name>.graded.csv."""
    return autograder_zip.with_name(f"{autograder_zip.stem}.graded.csv")


def earlier_links(out: Path) -> dict[str, list[str]]:
    """The assignments an earlier handout wrote into OUT: links.csv's rows, by name."""
    path = out / "links.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != LINKS_HEADER or any(len(row) != 3 for row in rows[1:]):
        raise SystemExit(
            f"{path} is not a handout's list of links (columns {', '.join(LINKS_HEADER)}): "
            "restore it from a backup, or hand out into a new folder"
        )
    return {row[0]: row for row in rows[1:]}


def merge_zips(zips: list[Path], out: Path) -> None:
    """Copy every entry of ZIPS, in order, into the new zip OUT, dates and bytes unchanged."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dest:
        for path in zips:
            with zipfile.ZipFile(path) as src:
                for info in src.infolist():
                    dest.writestr(info, src.read(info))


def set_aside(autograder_zip: Path) -> Path:
    """Move a graded autograder and its record to replaced/<name>-<when>.zip; return it.

    The scores it gave can then still be checked, or regraded, with the same tests.
    """
    folder = autograder_zip.parent / "replaced"
    folder.mkdir(exist_ok=True)
    stem = f"{autograder_zip.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest, k = folder / f"{stem}.zip", 2
    while dest.exists() or graded_record(dest).exists():  # twice in one second
        dest, k = folder / f"{stem}-{k}.zip", k + 1
    for src, to in [(autograder_zip, dest), (graded_record(autograder_zip), graded_record(dest))]:
        if src.exists():
            src.replace(to)
    return dest


def handout(masters: list[Path], out: Path, force: bool = False) -> list[str]:
    """Build assignments into the term folder OUT; return the problems found.

    OUT is a new folder or an earlier handout's: the assignments built are added to it or
    replace their own files in it, and nothing else in it changes but all_assignments.zip
    and the links, which list every assignment OUT holds. Nothing is written unless every
    assignment is ready: its Colab setup cell is current and its committed student/ folder
    equals the fresh build, so the zip students download and the notebook the Colab link
    opens are the same file. An autograder in OUT that has graded submissions (grade
    recorded it) is rebuilt only with FORCE, and then kept in autograder/replaced/.
    """
    if out.exists() and not out.is_dir():
        raise SystemExit(f"{out} is a file: --out takes the term's folder")
    if out.exists() and any(out.iterdir()) and not (out / "links.csv").is_file():
        raise SystemExit(f"{out} is not empty and holds no earlier handout: choose a new folder")
    masters = list(dict.fromkeys(masters))  # a name given twice is built once
    links = earlier_links(out)
    graded = [
        m.stem for m in masters if graded_record(out / "autograder" / f"{m.stem}.zip").exists()
    ]
    if graded and not force:  # checked first: refusing costs no build
        return [
            f"{name}: {out / 'autograder' / name}.zip has graded submissions (see "
            f"{graded_record(out / 'autograder' / f'{name}.zip')}); a rebuild could change "
            "the tests behind those scores. Leave it out (name the assignments to build "
            "after `handout`), or add --force to rebuild it: the old zip and its record "
            f"then move to {out / 'autograder' / 'replaced'}/"
            for name in graded
        ]
    problems, built = [], []
    for master in masters:
        start = time.perf_counter()
        if not sync_setup_cells.sync(master, check=True):
            problems.append(f"{master.stem}: stale Colab setup cell: run `make sync`")
        dist = dist_folder(master)
        try:
            autograder = assignments.assign(master, dist)  # also runs the solutions' tests
        except RuntimeError as e:
            problems.append(f"{master.stem}: otter assign failed\n{e}")
            continue
        stale = assignments.diff_dirs(master.parent / "student", dist / "student")
        if stale:
            problems.append(
                f"{master.stem}: student/ differs from the build ({', '.join(stale)}): "
                f"{assignments.REBUILD_HINT} (and push, for the Colab links)"
            )
        built.append((master, dist, autograder))
        print(f"{master.stem}: built in {time.perf_counter() - start:.1f} s")
    if problems:
        return problems

    # Everything is written into a folder inside OUT first, then moved into place file by
    # file: an error on the way leaves each file whole, the old one or the new one.
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".handout-", dir=out))
    try:
        for master, dist, autograder in built:
            name = master.stem
            # a folder per assignment inside: unzipping never mixes two assignments' tests/
            zip_folder(dist / "student", stage / "student" / f"{name}.zip", f"{name}/")
            (stage / "autograder").mkdir(exist_ok=True)
            shutil.copy2(autograder, stage / "autograder" / f"{name}.zip")
            (stage / "solutions").mkdir(exist_ok=True)
            shutil.copy2(dist / "autograder" / master.name, stage / "solutions" / master.name)
            links[name] = link_row(master)
        rows = [links[name] for name in sorted(links, key=natural_key)]
        zips = []
        for name, _, _ in rows:
            new, old = stage / "student" / f"{name}.zip", out / "student" / f"{name}.zip"
            if new.is_file() or old.is_file():
                zips.append(new if new.is_file() else old)
            else:
                print(f"{name}: no {old}: left out of all_assignments.zip", file=sys.stderr)
        merge_zips(zips, stage / "student" / "all_assignments.zip")
        (stage / "links.md").write_text(links_table(rows), encoding="utf-8")
        with open(stage / "links.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([LINKS_HEADER, *rows])
        for name in graded:  # only with force
            kept = set_aside(out / "autograder" / f"{name}.zip")
            print(f"{name}: the autograder that graded submissions is now {kept}")
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            dest = out / path.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            path.replace(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return []


# ---------------------------------------------------------------- finding submissions


@dataclass
class Submission:
    student: str  # the file's stem, or the folder's name
    path: Path | None  # the notebook to grade; None when there is none to grade
    problem: str = ""  # why it cannot be graded, found without running anything


def is_junk(path: Path) -> bool:
    """Hidden files, macOS archive folders (__MACOSX) and Jupyter checkpoints."""
    return path.name.startswith((".", "__")) or path.name in assignments.IGNORED


def find_submissions(folder: Path, assignment: str) -> tuple[list[Submission], list[Path]]:
    """The submissions in FOLDER, by student, and the files that were skipped.

    ``alice.ipynb`` is Alice's; so is the one notebook under ``alice/`` (at any depth, as
    an LMS download often nests it), or ``alice/<assignment>.ipynb`` among several.
    """
    subs, skipped = [], []
    for entry in sorted(folder.iterdir()):
        if is_junk(entry):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            subs.append(Submission(entry.stem, entry))
        elif entry.is_dir():
            found = sorted(
                p
                for p in entry.rglob("*.ipynb")
                if not any(is_junk(Path(part)) for part in p.relative_to(entry).parts)
            )
            named = [p for p in found if p.name == f"{assignment}.ipynb"]
            if len(found) == 1 or len(named) == 1:
                subs.append(Submission(entry.name, (named or found)[0]))
            elif not found:
                subs.append(Submission(entry.name, None, "no .ipynb file in the folder"))
            else:
                names = ", ".join(p.relative_to(entry).as_posix() for p in found)
                subs.append(Submission(entry.name, None, f"several notebooks ({names})"))
        else:
            skipped.append(entry)
    seen: dict[str, int] = {}
    for s in subs:
        seen[s.student] = seen.get(s.student, 0) + 1
    twice = sorted(n for n, k in seen.items() if k > 1)
    if twice:
        raise SystemExit(f"two submissions (a file and a folder) for: {', '.join(twice)}")
    return subs, skipped


def notebook_problem(path: Path) -> str:
    """Why PATH is not a Jupyter notebook, or "" (otter gets the final word)."""
    try:
        nb = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"not a notebook (not JSON: {e})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return "not a notebook (no list of cells)"
    if nb.get("nbformat") != 4:
        return f"not a notebook in format 4 (nbformat {nb.get('nbformat')!r})"
    return ""


# ---------------------------------------------------------------- grading


@dataclass
class Result:
    student: str
    status: str  # "ok", or "error: <reason>"
    scores: dict[str, float] = field(default_factory=dict)  # question -> points, when ok
    max_scores: dict[str, float] = field(default_factory=dict)  # question -> its maximum
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def natural_key(name: str) -> list:
    """Sort q2 before q10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def autograder_questions(autograder_zip: Path) -> tuple[str, dict[str, float | None]]:
    """The zip's assignment name and each question's points (None: otter's default).

    Read with ast from the zip's exception-based test files (``name = "q1"``,
    ``points = [1, 1, 1]`` or ``points = 3``), as booktools.assignments does.
    """
    questions: dict[str, float | None] = {}
    with zipfile.ZipFile(autograder_zip) as zf:
        config = json.loads(zf.read("otter_config.json"))
        for info in zf.infolist():
            if not re.fullmatch(r"tests/[^/]+\.py", info.filename):
                continue
            name, points = Path(info.filename).stem, None
            for node in ast.parse(zf.read(info).decode("utf-8")).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = ast.unparse(node.targets[0])
                    if target == "name":
                        name = ast.literal_eval(node.value)
                    elif target == "points":
                        value = ast.literal_eval(node.value)
                        points = sum(value) if isinstance(value, list) else value
            questions[name] = None if points is None else float(points)
    ordered = dict(sorted(questions.items(), key=lambda kv: natural_key(kv[0])))
    return config.get("assignment_name", ""), ordered


def failure_reason(output: str) -> str:
    """One line from otter's output that says why grading failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    last = errors[-1] if errors else (lines[-1] if lines else "otter printed nothing")
    if "DeadKernelError" in last:
        return "kernel crash (the kernel died: out of memory, a segfault or os._exit)"
    if "NotJSONError" in last:
        return "not a notebook (not JSON)"
    return last.split(": ", 1)[-1][:300]  # drop the exception's module path


def grade_one(
    autograder_zip: Path,
    sub: Submission,
    questions: list[str],
    timeout: float,
    workdir: Path,
    keep: Path | None = None,
) -> Result:
    """``otter run`` one submission in a fresh folder, within TIMEOUT seconds."""
    start = time.perf_counter()
    problem = sub.problem or notebook_problem(sub.path)
    if problem:
        return Result(sub.student, f"error: {problem}")
    out = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    args = ["run", "--no-logo", "-a", str(autograder_zip.resolve())]
    code, output = assignments.run_otter([*args, "-o", str(out), str(sub.path.resolve())],
                                         timeout, cwd=out)  # fmt: skip
    if code is None:
        status = f"error: timeout (still running after {timeout:g} s)"
    elif code < 0:  # e.g. the out-of-memory killer
        status = f"error: otter was killed by signal {-code}"
    elif code != 0:
        status = f"error: {failure_reason(output)}"
    else:
        status = OK
    results_json = out / "results.json"
    scores: dict[str, float] = {}
    max_scores: dict[str, float] = {}
    if status == OK and not results_json.is_file():
        status = "error: otter wrote no results.json"
    if status == OK:
        tests = json.loads(results_json.read_text(encoding="utf-8"))["tests"]
        scores = {t["name"]: float(t["score"]) for t in tests if "score" in t}
        max_scores = {t["name"]: float(t["max_score"]) for t in tests if "max_score" in t}
        missing = [q for q in questions if q not in scores]
        if missing:  # e.g. otter's "Autograder Failed" entry instead of scores
            status, scores = f"error: the autograder gave no score for {', '.join(missing)}", {}
    if keep is not None:  # per-student feedback: each test case's output, hidden ones too
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"{sub.student}.log").write_text(output, encoding="utf-8")
        if results_json.is_file():
            shutil.copy2(results_json, keep / f"{sub.student}.json")
    shutil.rmtree(out, ignore_errors=True)
    return Result(sub.student, status, scores, max_scores, time.perf_counter() - start)


def grade_folder(
    autograder_zip: Path,
    submissions_dir: Path,
    assignment: str,
    jobs: int = 2,
    timeout: float = 300,
    keep: Path | None = None,
    progress=print,
) -> tuple[dict[str, float | None], list[Result]]:
    """Grade every submission in SUBMISSIONS_DIR; return the questions' points and results.

    Results come back sorted by student. ``progress`` gets one line per finished student.
    """
    name, maxima = autograder_questions(autograder_zip)
    if name and name != assignment:
        raise SystemExit(f"{autograder_zip} grades {name!r}, not {assignment!r}")
    subs, skipped = find_submissions(submissions_dir, assignment)
    for path in skipped:
        progress(f"skipped {path.name}: not an .ipynb file or a folder")
    results = []
    with tempfile.TemporaryDirectory(prefix=f"grade-{assignment}-") as tmp:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [
                pool.submit(grade_one, autograder_zip, s, list(maxima), timeout, Path(tmp), keep)
                for s in subs
            ]
            for future in as_completed(futures):
                r = future.result()
                results.append(r)
                score = f"{r.total:g}" if r.status == OK else "-"
                progress(f"{r.student}: {score}  {r.status}  ({r.seconds:.1f} s)")
    for q, points in maxima.items():  # no `points` in the test file: otter's default
        if points is None:
            maxima[q] = next((r.max_scores[q] for r in results if r.status == OK), None)
    return maxima, sorted(results, key=lambda r: natural_key(r.student))


def write_csv(path: Path, maxima: dict[str, float | None], results: list[Result]) -> None:
    """One row per student: a column per question (points), total, max, status.

    A row whose status is not "ok" has empty question cells and a total of 0.
    """
    max_total = sum(p or 0 for p in maxima.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *maxima, "total", "max", "status"])
        for r in results:
            cells = [f"{r.scores[q]:g}" if r.status == OK else "" for q in maxima]
            writer.writerow([r.student, *cells, f"{r.total:g}", f"{max_total:g}", r.status])


def record_grading(
    autograder_zip: Path, submissions: Path, scores: Path, results: list[Result]
) -> Path:
    """Add a row for this run to the zip's record (<name>.graded.csv): handout keeps it."""
    record = graded_record(autograder_zip)
    new = not record.exists()
    with open(record, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(RECORD_HEADER)
        errors = sum(r.status != OK for r in results)
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        writer.writerow([when, submissions.resolve(), scores.resolve(), len(results), errors])
    return record


def autograder_for(name: str, rebuild: bool = False) -> Path:
    """assignments/<name>/dist/autograder/*.zip, built (otter assign) if missing or stale."""
    (master,) = assignments.find_masters([name])
    dist = dist_folder(master)
    zips = sorted((dist / "autograder").glob("*.zip"))
    if zips and not rebuild and zips[-1].stat().st_mtime >= master.stat().st_mtime:
        return zips[-1]
    why = "as asked" if rebuild else ("it is older than" if zips else "none yet for")
    print(f"{name}: building the autograder ({why} {master.relative_to(ROOT)})")
    # assign, not build: grading leaves the committed student/ folder alone.
    return assignments.assign(master, dist)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("links", help="print the Colab links of the student notebooks")
    p = sub.add_parser("handout", help="build everything a term needs into one folder")
    p.add_argument("names", nargs="*", metavar="NAME", help="assignment names (default all)")
    p.add_argument(
        "--out", type=Path, required=True, help="new folder, or an earlier handout's (added to)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild an autograder in --out that graded submissions (kept in replaced/)",
    )
    p = sub.add_parser("grade", help="grade a folder of submissions into one CSV")
    p.add_argument("name", metavar="NAME", help="the assignment, e.g. ch01_background")
    p.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="folder to grade")
    p.add_argument("--out", type=Path, required=True, help="the CSV to write")
    p.add_argument("-j", "--jobs", type=int, default=2, help="submissions at once (2)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per submission (300)")
    p.add_argument("--autograder", type=Path, help="the autograder zip (default: dist's)")
    p.add_argument("--rebuild", action="store_true", help="rebuild dist's autograder first")
    p.add_argument("--keep", type=Path, help="keep each student's results.json and log here")
    args = parser.parse_args(argv)

    if args.command == "links":
        print(links_table([link_row(m) for m in assignments.find_masters()]), end="")
        return 0
    if args.command == "handout":
        masters = assignments.find_masters(args.names)
        problems = handout(masters, args.out, args.force)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"wrote {len(set(masters))} assignments into {args.out}/, which holds:")
            print((args.out / "links.md").read_text(encoding="utf-8"), end="")
        return 1 if problems else 0

    if not args.submissions.is_dir():
        raise SystemExit(f"no such folder: {args.submissions}")
    autograder = args.autograder or autograder_for(args.name, args.rebuild)
    start = time.perf_counter()
    maxima, results = grade_folder(
        autograder, args.submissions, args.name, args.jobs, args.timeout, args.keep
    )
    write_csv(args.out, maxima, results)
    if results:  # handout will not rebuild this autograder without --force
        try:
            record_grading(autograder, args.submissions, args.out, results)
        except OSError as e:
            print(f"could not record this run next to {autograder}: {e}", file=sys.stderr)
    errors = sum(r.status != OK for r in results)
    print(
        f"wrote {args.out}: {len(results)} submissions, {errors} not graded "
        f"(see its status column), in {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
