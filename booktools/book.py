"""The book's layout, as every tool sees it: the repository root, the chapter notebooks (in
sub-folders too: a chapter may be a folder of section notebooks) and `_config.yml`.

`booktools` is installed in editable mode (`pip install -e .`), so this file is in the
repository and the root is its parent's parent.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook under chapters/, sub-folders included, in path order; Jupyter's
    checkpoint copies and other hidden folders are not notebooks of the book.

    >>> [p.relative_to(ROOT).as_posix() for p in chapter_notebooks()][:1]
    ['chapters/01_background.ipynb']
    """
    folder = Path(root) / "chapters"
    return sorted(
        p
        for p in folder.rglob("*.ipynb")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def config(root: Path = ROOT) -> dict:
    """`_config.yml`, the Jupyter Book configuration (repository URL, launch buttons, ...)."""
    import yaml  # not at the top: `make vendor` runs this package with a bare system Python

    return yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8"))
