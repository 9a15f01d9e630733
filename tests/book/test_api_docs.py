"""The API reference and the equation-to-code links stay complete and point at real things.

The -W -n book build (tests/book/test_book.py) proves every link resolves; these fast checks prove
nothing is missing: every lmlib module has an up-to-date page in the table of contents, every
numbered equation of Chapters 3-4 names the lmlib code that implements it and the tests that
check it, the tests exist, and the code's docstring links back to the equation.
"""

import ast
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from booktools import api_pages

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = [
    "chapters/02_core_concepts.ipynb",
    "chapters/03_transformer.ipynb",
    "chapters/04_mathematics.ipynb",
]
EQUATIONS_PAGE = ROOT / "api" / "equations.md"
# a display equation, and its label when it has one: $$ ... $$ (label)
DISPLAY = re.compile(r"^\$\$\n(.*?)\n\$\$(?: \(([\w-]+)\))?$", re.S | re.M)
OBJECT_LINK = re.compile(r"\]\(#(lmlib\.[\w.]+)\)")


def markdown(path):
    cells = json.loads((ROOT / path).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def numbered_equations():
    """{label: (chapter file, [lmlib objects linked under it], the paragraph with the links)}"""
    found = {}
    for path in CHAPTERS:
        for text in markdown(path):
            for m in DISPLAY.finditer(text):
                label = m.group(2)
                assert label, f"{path}: display equation without a number:\n{m.group(1)}"
                assert label not in found, f"equation label {label} used twice"
                after = text[m.end() :].lstrip("\n").split("\n\n")[0]
                found[label] = (path, OBJECT_LINK.findall(after), after)
    return found


def resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_api_pages_are_up_to_date_and_in_the_table_of_contents():
    stale = [path.name for path, text in api_pages.pages().items()
             if not path.exists() or path.read_text() != text]  # fmt: skip
    assert not stale, f"run `make sync` (python -m booktools.api_pages): {stale} are out of date"
    toc = yaml.safe_dump(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    pages = sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.glob("api/*.md"))
    modules = [p.stem for p in (ROOT / "lmlib").glob("*.py") if not p.stem.startswith("_")]
    assert {f"api/{m}" for m in modules} | {"api/index", "api/equations"} == set(pages)
    for page in pages:
        assert f"file: {page}\n" in toc, f"{page} is not in _toc.yml"


def test_every_public_function_and_class_is_on_its_module_page():
    for page in (ROOT / "api").glob("*.md"):
        if page.stem in ("index", "equations"):
            continue
        module = importlib.import_module(f"lmlib.{page.stem}")
        text = page.read_text()
        for name, obj in vars(module).items():
            defined_here = getattr(obj, "__module__", None) == module.__name__
            if name.startswith("_") or not defined_here:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert f"auto{'class' if inspect.isclass(obj) else 'function'}:: {name}\n" in text


def test_every_equation_of_chapters_3_and_4_is_numbered_and_linked_to_code_and_tests():
    equations = numbered_equations()
    assert len(equations) >= 15
    for label, (path, objects, after) in equations.items():
        assert objects, f"{path}: equation {label} is not followed by an 'In code:' link"
        assert f"](#test-{label})" in after, f"{path}: equation {label} has no link to its test"
        for dotted in objects:
            resolve(dotted)  # raises if the function or class does not exist


def _page_sections():
    """{label: (lmlib objects, [(test file, test function)])} from api/equations.md."""
    text = EQUATIONS_PAGE.read_text()
    sections = {}
    for block in re.split(r"\n(?=\(test-)", text)[1:]:
        label = re.match(r"\(test-([\w-]+)\)=", block).group(1)
        tests = re.findall(r"```\{literalinclude\} \.\./tests/unit/(\S+)\n:pyobject: (\w+)", block)
        sections[label] = (OBJECT_LINK.findall(block), tests)
    return sections


def test_the_equations_page_shows_existing_tests_for_every_equation():
    equations, sections = numbered_equations(), _page_sections()
    assert set(sections) == set(equations)
    for label, (objects, tests) in sections.items():
        assert objects == equations[label][1], f"{label}: the page and the chapter differ"
        assert tests, f"{label}: no test shown"
        for file, function in tests:
            tree = ast.parse((ROOT / "tests" / "unit" / file).read_text())
            names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert function in names, f"{label}: tests/unit/{file} has no {function}"


def test_the_code_links_back_to_its_equations_and_only_to_real_ones():
    equations = numbered_equations()
    for label, (_, objects, _) in equations.items():
        for dotted in objects:
            doc = inspect.getdoc(resolve(dotted)) or ""
            assert f":eq:`{label}`" in doc, f"{dotted}'s docstring does not link to {label}"
            assert f"<test-{label}>`" in doc, f"{dotted}'s docstring does not link to its tests"
    for path in (ROOT / "lmlib").glob("*.py"):
        for label in re.findall(r":eq:`([\w-]+)`", path.read_text()):
            assert label in equations, f"{path.name} links to a missing equation {label}"


@pytest.mark.parametrize("bad", ["$$\nx = 1\n$$\n", "$$\ny = 2\n$$ (eq-y)\n\nno links here"])
def test_the_checks_catch_an_unnumbered_or_unlinked_equation(bad, monkeypatch):
    """The checks above can fail: an equation without a number, or without its links."""
    real = markdown

    def with_bad_cell(path):
        return real(path) + [bad]

    monkeypatch.setattr(sys.modules[__name__], "markdown", with_bad_cell)
    with pytest.raises(AssertionError):
        test_every_equation_of_chapters_3_and_4_is_numbered_and_linked_to_code_and_tests()
