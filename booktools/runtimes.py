"""How long each chapter notebook takes to run: measured by the test suite, shown on its page.

Two files, both written by tools, never by hand:

- `_build/runtimes.json` (not tracked): the test suite's measurements. The pytest plugin
  (`booktools.pytest_plugin`) sums, per notebook, the setup + call + teardown durations of
  its nbval cell items (the kernel's start and stop are in the first cell's setup and the last
  cell's teardown) and, at the end of the session, writes an entry for every chapter notebook
  whose cells all ran and passed in that session; entries of notebooks not run are kept. A
  `-k` or `-x` run, a failed or skipped cell, `--nbval-lax` or a notebook outside chapters/
  records nothing. So `make test` changes no tracked file.
- `chapters/runtimes.json` (tracked): what the site shows. `make runtimes`
  (``python -m booktools.runtimes``) copies the measured entries into it, after a test run
  on the reference machine; commit it then. The Sphinx extension `booktools.sphinxext.runtimes`
  puts one line under the title of every page that has an entry, e.g. "This notebook runs top
  to bottom in about 3 min on a 2-core Intel Xeon CPU (measured by the test suite,
  2026-11-23)."

An entry, keyed by the page's name in _toc.yml ("chapters/01_background", or
"chapters/05_practice/01_training" for a section notebook in a chapter's folder):

    {"accelerator": "cpu", "cells": 31, "cpu_count": 2,
     "cpu_model": "Intel(R) Xeon(R) Processor", "date": "2026-11-23", "seconds": 84.2,
     "torch": "2.13.0+cpu"}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from booktools.book import ROOT

CHAPTERS = "chapters"  # only notebooks in this folder (or its sub-folders) are recorded
RUNTIMES_FILE = ROOT / CHAPTERS / "runtimes.json"  # tracked: what the site shows
MEASURED = "_build/runtimes.json"  # under the repository: what the test suite measured
MEASURED_FILE = ROOT / MEASURED
UNDER_A_MINUTE_S = 45  # below this the note says "under a minute" rather than "about 1 min"
PHASES = ("setup", "call", "teardown")
NOTE_CLASS = "runtime-note"  # the CSS class of the note on a page (tests look for it)

# what every entry holds, and the type of each value (cpu_model may be unknown: None)
FIELDS = {
    "accelerator": str,
    "cells": int,
    "cpu_count": int,
    "cpu_model": (str, type(None)),
    "date": str,
    "seconds": (int, float),
    "torch": str,
}


class RuntimesFileError(ValueError):
    """A runtimes file cannot be read as the tools write it."""


# --------------------------------------------------------------------------- the JSON file


def _fix_hint(path: Path) -> str:
    return (
        f"{path} is written by the test suite, never by hand: restore it from git, or delete "
        "it, run the notebooks' nbval tests (`make test`) to measure them again and copy "
        "the times with `make runtimes`"
    )


def load(path: Path = RUNTIMES_FILE) -> dict[str, dict]:
    """The entries of a runtimes file; {} when there is no file yet.

    Raises RuntimesFileError (a ValueError) naming the file when it is not valid JSON or an
    entry lacks a field."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RuntimesFileError(f"{path} is not valid JSON ({err}); {_fix_hint(path)}") from err
    if not isinstance(entries, dict):
        raise RuntimesFileError(f"{path} must hold a JSON object; {_fix_hint(path)}")
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise RuntimesFileError(f"{path}: entry {name!r} is not an object; {_fix_hint(path)}")
        for key, kind in FIELDS.items():
            value = entry.get(key, ...)
            if value is ... or isinstance(value, bool) or not isinstance(value, kind):
                raise RuntimesFileError(
                    f"{path}: entry {name!r} has no valid {key!r}; {_fix_hint(path)}"
                )
    return entries


def dumps(entries: dict[str, dict]) -> str:
    """Deterministic JSON: sorted keys, indent 1, a final newline (a re-run changes numbers).

    >>> print(dumps({"b": {"seconds": 1.5}, "a": {"cells": 2}}), end="")
    {
     "a": {
      "cells": 2
     },
     "b": {
      "seconds": 1.5
     }
    }
    """
    return json.dumps(entries, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def save(entries: dict[str, dict], path: Path = RUNTIMES_FILE) -> None:
    """Write the file in one step (a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # _build/ may not exist yet
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(entries), encoding="utf-8")
    tmp.replace(path)


def record(
    measured: dict[str, tuple[float, int]],
    machine: dict,
    date: str,
    path: Path = MEASURED_FILE,
) -> dict[str, dict]:
    """Add or replace the entries of the notebooks in `measured` ({name: (seconds, cells)}),
    keep all others, write the file and return what it now holds."""
    entries = load(path)
    for name, (seconds, cells) in measured.items():
        entries[name] = {**machine, "seconds": round(seconds, 1), "cells": cells, "date": date}
    save(entries, path)
    return entries


# --------------------------------------------------------------------------- the machine


def cpu_count() -> int:
    """The CPUs this process may run on (the affinity mask), else all the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's name from /proc/cpuinfo (Linux), else what `platform` knows, else None.

    x86 lists it as "model name", some ARM kernels as "Model" or "Hardware"."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    return platform.processor() or None


def machine() -> dict:
    """What the numbers were measured on. Imports torch: call it only when recording."""
    import torch

    return {
        "accelerator": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": cpu_count(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
    }


def today() -> str:
    """The UTC date, e.g. "2026-11-23"."""
    return datetime.now(timezone.utc).date().isoformat()


# --------------------------------------------------------------------------- pytest side


def notebook_name(notebook: Path, root: Path = ROOT) -> str | None:
    """The _toc.yml name of a chapter notebook (one in chapters/ or a sub-folder of it),
    or None for any other file.

    >>> notebook_name(ROOT / "chapters" / "01_background.ipynb")
    'chapters/01_background'
    >>> notebook_name(ROOT / "chapters" / "05_practice" / "01_training.ipynb")
    'chapters/05_practice/01_training'
    >>> notebook_name(ROOT / "assignments" / "ch01" / "student" / "ch01.ipynb") is None
    True
    """
    notebook = Path(notebook).resolve()
    try:
        inside = notebook.relative_to((Path(root) / CHAPTERS).resolve())
    except ValueError:
        return None
    if notebook.suffix != ".ipynb" or any(part.startswith(".") for part in inside.parts):
        return None  # not a notebook, or a hidden copy (.ipynb_checkpoints/)
    return f"{CHAPTERS}/{inside.with_suffix('').as_posix()}"


@dataclass
class _Notebook:
    cells: set[str]  # node ids of every cell item collected (before -k deselects any)
    seconds: float = 0.0
    passed: dict[str, set[str]] = field(default_factory=dict)  # node id -> phases passed
    spoiled: bool = False  # a phase failed or was skipped


class Recorder:
    """Sums the durations of nbval cell items per chapter notebook.

    >>> r = Recorder()
    >>> r.collected("chapters/x", ["x::Cell 0", "x::Cell 1"])
    >>> for cell in ["x::Cell 0", "x::Cell 1"]:
    ...     for phase in PHASES:
    ...         r.report(cell, phase, "passed", 0.5)
    >>> r.complete()
    {'chapters/x': (3.0, 2)}
    """

    def __init__(self) -> None:
        self.notebooks: dict[str, _Notebook] = {}
        self._owner: dict[str, str] = {}  # cell node id -> notebook name

    def collected(self, name: str, cell_ids: list[str]) -> None:
        """All the cell items of one notebook, as collected (a -k run deselects later)."""
        self.notebooks[name] = _Notebook(cells=set(cell_ids))
        self._owner.update(dict.fromkeys(cell_ids, name))

    def report(self, cell_id: str, when: str, outcome: str, duration: float) -> None:
        """One phase ("setup", "call", "teardown") of one item; other items are ignored."""
        name = self._owner.get(cell_id)
        if name is None:
            return
        notebook = self.notebooks[name]
        notebook.seconds += duration
        if outcome == "passed":
            notebook.passed.setdefault(cell_id, set()).add(when)
        else:  # "failed", or "skipped" (NBVAL_SKIP, -x stopping, a failed fixture)
            notebook.spoiled = True

    def complete(self) -> dict[str, tuple[float, int]]:
        """{name: (seconds, cells)} of the notebooks whose every cell passed every phase."""
        done = {}
        for name, nb in sorted(self.notebooks.items()):
            every_phase = all(nb.passed.get(cell) == set(PHASES) for cell in nb.cells)
            if nb.cells and every_phase and not nb.spoiled:
                done[name] = (nb.seconds, len(nb.cells))
        return done


# --------------------------------------------------------------------------- the page note


def cpu_name(model: str | None) -> str | None:
    """A CPU's name as a page shows it: no trademarks, clock speed, core count or filler.

    >>> cpu_name("Intel(R) Xeon(R) Processor")
    'Intel Xeon'
    >>> cpu_name("AMD EPYC 7B13 64-Core Processor")
    'AMD EPYC 7B13'
    >>> cpu_name("Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz")
    'Intel Core i7-8550U'
    >>> cpu_name(None) is None and cpu_name("CPU") is None
    True
    """
    if not model:
        return None
    name = re.sub(r"\((R|TM|tm)\)", "", model.split(" @ ")[0])
    words = [w for w in name.split() if w not in ("CPU", "Processor")]
    words = [w for w in words if not re.fullmatch(r"\d+-[Cc]ore", w)]
    return " ".join(words) or None


def describe(entry: dict) -> str:
    """The sentence under a chapter's title (`booktools.sphinxext.runtimes` puts it there).

    It names the CPU when the entry knows it: the same notebook can take three times as
    long on another 2-core CPU.

    >>> entry = {"seconds": 170.0, "cpu_count": 2, "accelerator": "cpu", "date": "2026-11-23",
    ...          "cpu_model": "AMD EPYC 7B13 64-Core Processor"}
    >>> print(describe(entry))  # doctest: +NORMALIZE_WHITESPACE
    This notebook runs top to bottom in about 3 min on a 2-core AMD EPYC 7B13 CPU
    (measured by the test suite, 2026-11-23).
    >>> on_gpu = {**entry, "seconds": 44.9, "accelerator": "cuda"}
    >>> print(describe(on_gpu))  # doctest: +NORMALIZE_WHITESPACE
    This notebook runs top to bottom in under a minute on 1 GPU
    (measured by the test suite, 2026-11-23).
    """
    seconds = entry["seconds"]
    duration = (
        "under a minute" if seconds < UNDER_A_MINUTE_S else f"about {round(seconds / 60)} min"
    )
    cpu = " ".join(filter(None, [cpu_name(entry.get("cpu_model")), "CPU"]))
    where = "1 GPU" if entry["accelerator"] == "cuda" else f"a {entry['cpu_count']}-core {cpu}"
    return (
        f"This notebook runs top to bottom in {duration} on {where} "
        f"(measured by the test suite, {entry['date']})."
    )


# --------------------------------------------------------------------------- make runtimes


def copy(source: Path = MEASURED_FILE, target: Path = RUNTIMES_FILE,
         root: Path = ROOT) -> tuple[dict[str, dict], list[str]]:  # fmt: skip
    """Copy every measured entry of `source` into `target`, keeping the target's other
    entries but dropping those whose notebook no longer exists (a renamed or split chapter).
    Returns (the entries copied, the names dropped)."""
    measured = load(source)
    entries = load(target)
    entries.update(measured)
    gone = sorted(name for name in entries if not (Path(root) / f"{name}.ipynb").is_file())
    for name in gone:
        del entries[name]
    save(entries, target)
    return {name: measured[name] for name in measured if name not in gone}, gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Copy the chapter run times the test suite measured "
        f"({MEASURED}) into {CHAPTERS}/runtimes.json, which the site shows."
    )
    parser.add_argument("--source", type=Path, default=MEASURED_FILE, help="measured times")
    parser.add_argument("--target", type=Path, default=RUNTIMES_FILE, help="the book's file")
    args = parser.parse_args(argv)
    if not load(args.source):
        print(f"no measured run times in {args.source}: run `make test` (or nbval on the "
              "chapter notebooks) first", file=sys.stderr)  # fmt: skip
        return 1
    copied, gone = copy(args.source, args.target)
    for name, entry in sorted(copied.items()):
        print(f"{name}: {entry['seconds']} s ({entry['date']}, {describe(entry)})")
    for name in gone:
        print(f"{name}: dropped, its notebook no longer exists")
    print(f"wrote {args.target}: commit it with the notebooks it measures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
