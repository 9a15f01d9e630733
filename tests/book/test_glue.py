"""Numbers in the prose come from the run: every glued name the text uses exists.

A chapter puts a computed number into its prose with myst-nb's glue: in code
``glue("val_loss", f"{loss:.2f}", display=False)``, in markdown ``{glue:text}`val_loss```.
myst-nb stores the value as an output of the cell, marked with the metadata
``{"scrapbook": {"name": "val_loss", "mime_prefix": ...}}`` (the prefix is
``application/papermill.record/`` when ``display=False``: the value is kept, not shown).
A name the prose uses that no stored output glues renders as nothing, with only a build
warning; here it fails the suite, naming the notebook and the name.

Checked for every page of the book (the notebooks and markdown pages under chapters/, and
intro.md):
- every ``{glue}``/``{glue:any}``/``{glue:text}``/``{glue:md}`` role and every
  ``{glue}``/``{glue:figure}``/``{glue:math}``/``{glue:md}`` directive names a value glued
  by the stored outputs of its own notebook, or of the one named by ``path::name`` (roles)
  or ``:doc: path`` (directives);
- a notebook glues each name once (myst-nb keeps the last and warns);
- a name glued with ``display=False`` is used somewhere: such a value is shown nowhere but
  in the prose, so an unused one is a number the prose stopped quoting (often because the
  text now hard-codes it). A value glued with ``display=True`` shows in the cell's output
  and may stay unused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from booktools.book import ROOT, chapter_notebooks

# {glue}`name`, {glue:text}`name:.2f`, {glue:any}`doc.ipynb::name`, {glue:md}`name:myst`
ROLE = re.compile(r"\{glue(?::(any|text|md))?\}`([^`]+)`")
# ```{glue:figure} name  or  :::{glue} name, and its options up to the closing fence
DIRECTIVE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{glue(?::(?:any|figure|math|md))?\}[ \t]+(?P<name>\S+)[ \t]*\n"
    r"(?P<body>.*?)^(?P=fence)",
    re.MULTILINE | re.DOTALL,
)
DOC_OPTION = re.compile(r"^:doc:[ \t]*(\S+)", re.MULTILINE)


def pages(root: Path = ROOT) -> list[Path]:
    """Every page that may use glue: the chapters' notebooks and markdown pages, intro.md."""
    markdown = sorted((root / "chapters").rglob("*.md")) + [root / "intro.md"]
    return chapter_notebooks(root) + [p for p in markdown if p.exists()]


def glued(notebook: Path) -> dict[str, list[bool]]:
    """name -> for each stored output that glues it, whether the value is also displayed."""
    found: dict[str, list[bool]] = {}
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            if scrap := output.get("metadata", {}).get("scrapbook"):
                found.setdefault(scrap["name"], []).append(not scrap.get("mime_prefix"))
    return found


def markdown_of(page: Path) -> str:
    if page.suffix != ".ipynb":
        return page.read_text(encoding="utf-8")
    cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def uses(page: Path, root: Path = ROOT) -> list[tuple[Path, str]]:
    """(notebook that must glue it, name) for every glue role and directive on ``page``."""

    def target(doc: str | None) -> Path:
        if doc is None:
            return page
        # as Sphinx resolves it: "/x" from the book's root, "x" from the page's folder
        return root / doc.lstrip("/") if doc.startswith("/") else page.parent / doc

    text = markdown_of(page)
    found = []
    for kind, content in ROLE.findall(text):
        doc, _, rest = content.rpartition("::")
        name = rest.split(":", 1)[0] if kind in ("text", "md") else rest  # drop ":.2f"
        found.append((target(doc or None), name.strip()))
    for match in DIRECTIVE.finditer(text):
        doc = DOC_OPTION.search(match["body"])
        found.append((target(doc and doc[1]), match["name"]))
    return [(path.resolve(), name) for path, name in found]


def problems(page_paths: list[Path], root: Path = ROOT) -> list[str]:
    """One line per missing, doubled or unused glued name, naming notebook and name."""
    used = {(path, name) for page in page_paths for path, name in uses(page, root)}
    out = []
    for path, name in sorted(used):
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        if path.suffix != ".ipynb" or not path.exists():
            out.append(f"{shown}: glue reference {name!r} points to no notebook")
        elif name not in glued(path):
            out.append(f"{shown}: the prose uses {name!r}, which no stored output glues")
    for path in (p.resolve() for p in page_paths if p.suffix == ".ipynb"):
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        for name, displayed in glued(path).items():
            if len(displayed) > 1:
                out.append(f"{shown}: {name!r} is glued {len(displayed)} times")
            if (path, name) not in used and not any(displayed):
                out.append(f"{shown}: {name!r} is glued (not displayed) but the prose never "
                           "uses it")  # fmt: skip
    return out


def test_every_glued_name_in_the_book_is_glued_once_and_used():
    found = problems(pages())
    assert not found, "\n".join(found)


def test_notebooks_glue_through_lmlib_because_colab_has_no_myst_nb():
    """`lmlib.runtime.glue` is myst-nb's glue where myst-nb is installed; importing myst_nb
    directly fails in Colab, whose setup cell does not install Sphinx's stack."""
    direct = [
        f"{path.relative_to(ROOT)}: cell {i}"
        for path in chapter_notebooks()
        for i, cell in enumerate(json.loads(path.read_text())["cells"])
        if cell["cell_type"] == "code"
        and re.search(r"^\s*(from|import)\s+myst_nb\b", "".join(cell["source"]), re.M)
    ]
    assert not direct, "import glue from lmlib.runtime instead:\n" + "\n".join(direct)


# --------------------------------------------------------------------------------------------
# The check itself, on notebooks a reader can check by hand


def notebook(path: Path, markdown: list[str], glues: dict[str, bool]) -> Path:
    """A stored notebook: markdown cells, then one code cell whose outputs glue ``glues``
    (name -> displayed), as myst_nb.glue stores them."""
    outputs = []
    for name, displayed in glues.items():
        prefix = "" if displayed else "application/papermill.record/"
        scrap = {"scrapbook": {"name": name, "mime_prefix": prefix}}
        outputs.append({"output_type": "display_data", "data": {prefix + "text/plain": "'1'"},
                        "metadata": scrap})  # fmt: skip
    cells = [{"cell_type": "markdown", "metadata": {}, "source": m} for m in markdown]
    cells.append({"cell_type": "code", "execution_count": 1, "metadata": {},
                  "source": "glue(...)", "outputs": outputs})  # fmt: skip
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip
    return path


def test_a_missing_name_is_reported_with_its_notebook(tmp_path):
    nb = notebook(tmp_path / "ch.ipynb", ["Loss {glue:text}`loss:.2f`, {glue}`missing`."],
                  {"loss": False})  # fmt: skip
    assert problems([nb], tmp_path) == [
        "ch.ipynb: the prose uses 'missing', which no stored output glues"
    ]


def test_directives_roles_and_cross_page_references_are_all_read(tmp_path):
    (tmp_path / "sub").mkdir()
    nb = notebook(tmp_path / "sub" / "ch.ipynb",
                  ["```{glue:figure} fig\n:name: f\n\nCaption\n```", "{glue:md}`table:myst`"],
                  {"fig": False, "table": False, "acc": False, "shown": True})  # fmt: skip
    page = tmp_path / "faq.md"
    page.write_text("Accuracy {glue:text}`sub/ch.ipynb::acc:.1%`.\n\n"
                    ":::{glue} gone\n:doc: sub/ch.ipynb\n:::\n")  # fmt: skip
    assert uses(nb, tmp_path) == [(nb, "table"), (nb, "fig")]
    assert problems([nb, page], tmp_path) == [
        "sub/ch.ipynb: the prose uses 'gone', which no stored output glues"
    ]


def test_an_unused_hidden_value_and_a_name_glued_twice_are_reported(tmp_path):
    nb = notebook(tmp_path / "ch.ipynb", ["No numbers here."], {"stale": False, "shown": True})
    assert problems([nb], tmp_path) == [
        "ch.ipynb: 'stale' is glued (not displayed) but the prose never uses it"
    ]
    cell = json.loads(nb.read_text())
    cell["cells"][-1]["outputs"] *= 2
    nb.write_text(json.dumps(cell))
    assert "ch.ipynb: 'shown' is glued 2 times" in problems([nb], tmp_path)


@pytest.mark.parametrize("page", ["chapters/05_practice/04_alignment.ipynb",
                                  "chapters/05_practice/05_distributed.ipynb"])  # fmt: skip
def test_the_sections_that_glue_use_names_the_check_finds(page):
    """The check reads the real notebooks: these two sections glue many numbers."""
    path = ROOT / page
    names = {name for _, name in uses(path)}
    assert len(names) >= 3 and names <= set(glued(path))
