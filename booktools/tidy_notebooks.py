"""Keep the test machinery out of the code readers see: nbval markers become cell tags.

nbval reads ``# NBVAL_IGNORE_OUTPUT`` written in a cell and, equally, the tag
``nbval-ignore-output`` in the cell's metadata. On the web page a comment is shown and a tag
is not, so the book keeps only tags. Formatter pragmas (``# fmt: skip``) go too: ruff owns
the layout of the chapters' code (`make format`), at the line length of chapters/ruff.toml.

    python -m booktools.tidy_notebooks          # rewrite the notebooks (part of `make format`)
    python -m booktools.tidy_notebooks --check  # exit 1 naming every cell still to tidy

For example, a cell ``"# NBVAL_IGNORE_OUTPUT\\nprint(t)"`` becomes ``"print(t)"`` tagged
``nbval-ignore-output``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from booktools.book import ROOT, chapter_notebooks

# nbval's comment markers and the tags it reads as the same (nbval/plugin.py)
MARKERS = {
    "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "NBVAL_SKIP": "nbval-skip",
    "NBVAL_RAISES_EXCEPTION": "raises-exception",
}
MARKER_LINE = re.compile(r"^\s*#\s*(" + "|".join(MARKERS) + r")\s*$")
PRAGMA = re.compile(r"\s*#\s*fmt:\s*(skip|off|on)\s*$")


def tidy_source(source: str) -> tuple[str, list[str]]:
    """The source without markers and pragmas, and the tags the markers stood for.

    >>> tidy_source("# NBVAL_IGNORE_OUTPUT\\nx = f(1,  2)  # fmt: skip\\nprint(x)")
    ('x = f(1,  2)\\nprint(x)', ['nbval-ignore-output'])
    """
    tags, lines = [], []
    for line in source.split("\n"):
        if match := MARKER_LINE.match(line):
            tags.append(MARKERS[match.group(1)])
            continue
        if PRAGMA.search(line):
            line = PRAGMA.sub("", line)
            if not line.strip():
                continue
        lines.append(line)
    return "\n".join(lines), tags


def tidy(path: Path, check: bool) -> list[int]:
    """Tidy one notebook (unless ``check``); the indices of the cells that needed it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        new, tags = tidy_source(source)
        if new == source:
            continue
        changed.append(i)
        if not check:
            cell["source"] = new.splitlines(keepends=True)
            have = cell.setdefault("metadata", {}).setdefault("tags", [])
            have += [t for t in tags if t not in have]
    if changed and not check:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter")
    args = parser.parse_args(argv)
    found = 0
    for path in args.notebooks or chapter_notebooks():
        if cells := tidy(path, args.check):
            found += 1
            verb = "to tidy" if args.check else "tidied"
            print(f"{verb}: {path.resolve().relative_to(ROOT)} cells {cells}")
    if args.check and found:
        print("run `make format` (python -m booktools.tidy_notebooks)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
