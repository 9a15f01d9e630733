"""Keep the test machinery out of what readers see: nbval markers become cell tags, and
stored widgets go.

nbval reads ``# NBVAL_IGNORE_OUTPUT`` written in a cell and, equally, the tag
``nbval-ignore-output`` in the cell's metadata. On the web page a comment is shown and a tag
is not, so the book keeps only tags. Formatter pragmas (``# fmt: skip``) go too: ruff owns
the layout of the chapters' code (`make format`), at the line length of chapters/ruff.toml.

The pages are static, and the only widgets a run stores are progress bars: a page whose
widget state was not saved (Jupyter Book's execution cache keeps outputs, not notebook
metadata) shows a bar's text fallback, frozen at 0%. So stored widget outputs and the
notebook's widget state (``metadata.widgets``) are removed; `lmlib.runtime.progress_bar`
leaves a line of text instead, and `lmlib.pretrained` keeps transformers' loading bar off.

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
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # an output that shows a widget
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


def drop_widgets(nb: dict) -> list[int | str]:
    """Remove widget outputs and the widget state from a notebook (a dict, changed in place);
    the indices of the cells that had widgets, and "metadata" if the notebook had state.

    >>> bar = {"output_type": "display_data", "metadata": {}, "data": {WIDGET_VIEW: {},
    ...        "text/plain": ["train:   0%|          | 0/6"]}}
    >>> text = {"output_type": "stream", "name": "stdout", "text": ["loss 2.1"]}
    >>> nb = {"cells": [{"cell_type": "code", "outputs": [bar, text]}], "metadata": {
    ...       "widgets": {"application/vnd.jupyter.widget-state+json": {}}}}
    >>> drop_widgets(nb), nb["cells"][0]["outputs"] == [text], nb["metadata"]
    ([0, 'metadata'], True, {})
    """
    found: list[int | str] = []
    for i, cell in enumerate(nb["cells"]):
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if WIDGET_VIEW not in o.get("data", {})]
        if len(kept) < len(outputs):
            found.append(i)
            cell["outputs"] = kept
    if nb.get("metadata", {}).pop("widgets", None) is not None:
        found.append("metadata")
    return found


def tidy(path: Path, check: bool) -> list[int | str]:
    """Tidy one notebook (unless ``check``); the indices of the cells that needed it, and
    "metadata" if it stored widget state."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed: list[int | str] = []
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
    changed += [i for i in drop_widgets(nb) if i not in changed]
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
            where = path.resolve()
            shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
            print(f"{verb}: {shown} cells {cells}")
    if args.check and found:
        print("run `make format` (python -m booktools.tidy_notebooks)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
