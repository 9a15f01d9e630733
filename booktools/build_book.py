"""`make book`: build the site, and fail loudly when a chapter's execution failed.

Jupyter Book 1 executes each changed notebook and, when a cell raises, logs a warning, keeps
the notebook's stored outputs on its page and still ends "build succeeded" with exit code 0
(see TOOLCHAIN.md). A reader would then see last run's outputs presented as this run's. This
wrapper runs the same build, then reads the execution reports the build wrote
(``_build/html/reports/<page>.err.log``) and, for each failed notebook, prints the notebook,
the cell (its index, as nbval and nbformat count, and its first line) and the error, says
which pages show stale outputs, and exits with 1::

    python -m booktools.build_book                  # the book in this folder
    python -m booktools.build_book BOOK -- --all    # options after -- go to jupyter-book

Cells that reach the network are written to go on without it (see
`lmlib.pretrained.try_load_hub_model`), so a build offline fails only on real errors.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# myst-nb's line for a notebook whose execution failed (cache and force modes alike)
FAILED = re.compile(
    r"(\S+?)\.(?:ipynb|md): WARNING: (?:Execution Failed|Executing notebook failed)", re.I
)
CELL = re.compile(
    r"An error occurred while executing the following cell:\n-+\n(.*?)\n-+\n", re.S
)  # nbclient's CellExecutionError


@dataclass
class Failure:
    notebook: str  # path relative to the book, e.g. chapters/05_practice/01_x.ipynb
    cell: int | None  # index in the notebook's cells (None: not found in the report)
    first_line: str  # the cell's first line of code
    error: str  # the error's last line, e.g. "ValueError: ..."

    def __str__(self) -> str:
        where = f"cell {self.cell} ({self.first_line!r})" if self.cell is not None else "a cell"
        return f"{self.notebook}: {where} failed: {self.error}"


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line)]
    return errors[-1] if errors else (lines[-1] if lines else "(no traceback)")


def find_cell(notebook: Path, source: str) -> tuple[int | None, str]:
    """The index of the code cell whose source is ``source``, and its first line."""
    first = next((line for line in source.splitlines() if line.strip()), "")
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None, first
    for i, cell in enumerate(cells):
        text = "".join(cell.get("source", []))
        if cell.get("cell_type") == "code" and text.strip() == source.strip():
            return i, first
    return None, first


def failures(book: Path, log: str, reports: Path) -> list[Failure]:
    """Every notebook the build could not execute, from its log and its reports folder."""
    pages = {m.group(1).lstrip("/") for m in FAILED.finditer(re.sub(r"\x1b\[[0-9;]*m", "", log))}
    found = []
    for report in sorted(reports.rglob("*.err.log")) if reports.is_dir() else []:
        page = report.relative_to(reports).as_posix().removesuffix(".err.log")
        pages.add(page)
    for page in sorted(pages):
        page = str(Path(page).resolve().relative_to(book)) if Path(page).is_absolute() else page
        notebook = book / f"{page}.ipynb"
        report = reports / f"{page}.err.log"
        text = report.read_text(encoding="utf-8", errors="replace") if report.is_file() else ""
        match = CELL.search(text)
        cell, first = find_cell(notebook, match.group(1)) if match else (None, "")
        found.append(Failure(f"{page}.ipynb", cell, first, _last_error_line(text or log)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("book", nargs="?", default=".", help="the book's folder")
    parser.add_argument("jb_args", nargs="*", help="options for jupyter-book build, after --")
    args = parser.parse_args(argv)
    book = Path(args.book).resolve()
    reports = book / "_build" / "html" / "reports"
    shutil.rmtree(reports, ignore_errors=True)  # only this build's failures count
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(book), "--keep-going", *args.jb_args]
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:  # shown as it comes: the build takes minutes
            sys.stdout.write(line)
            lines.append(line)
    failed = failures(book, "".join(lines), reports)
    if failed:
        print(f"\nmake book: {len(failed)} notebook(s) failed to execute:", file=sys.stderr)
        for failure in failed:
            print(f"  {failure}", file=sys.stderr)
        pages = ", ".join(f.notebook.removesuffix(".ipynb") + ".html" for f in failed)
        print(
            f"These pages show the outputs stored in the notebook, not this run's: {pages}.\n"
            f"The tracebacks are in {reports}.",
            file=sys.stderr,
        )
        return 1
    if p.returncode:
        print(f"\nmake book: jupyter-book exited with {p.returncode}", file=sys.stderr)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
