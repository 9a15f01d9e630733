"""Every public docstring in lmlib is valid reStructuredText.

The API pages (api/*.md) show them through Sphinx autodoc, and the site builds with -W: one
list without a blank line before it fails the whole build, but only in the book test, at the
end of a 30-minute `make test`. docutils finds the same problems here in a second.
"""

import importlib
import inspect
import io
import pkgutil
import re

import docutils.core
import pytest

import lmlib

MODULES = sorted(m.name for m in pkgutil.iter_modules(lmlib.__path__))


def rst_problems(doc: str) -> list[str]:
    """docutils' warnings and errors for one docstring; roles that only Sphinx knows
    (:func:, :math:) are not problems."""
    stream = io.StringIO()
    settings = {"report_level": 2, "halt_level": 5, "warning_stream": stream}
    docutils.core.publish_doctree(inspect.cleandoc(doc), settings_overrides=settings)
    return [
        line
        for line in stream.getvalue().splitlines()
        if re.search(r"\((WARNING|ERROR|SEVERE)/\d\)", line)
        and "Unknown interpreted text role" not in line
    ]


def public_docstrings(module):
    """(name, docstring) of the module, its public functions and classes, and their
    public methods and properties."""
    yield module.__name__, module.__doc__
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj.__doc__
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and (
                    inspect.isfunction(member) or isinstance(member, property)
                ):
                    yield f"{module.__name__}.{name}.{attr}", member.__doc__


def test_the_check_finds_a_list_without_a_blank_line():
    broken = """Two cases:
    - one, on a line and
      a half
    - two
    And after."""
    assert any("Unexpected indentation" in p for p in rst_problems(broken))
    fixed = """Two cases:

    - one, on a line and
      a half
    - two

    And after, with `a_name`, ``code`` and :func:`a role Sphinx knows`."""
    assert rst_problems(fixed) == []


@pytest.mark.parametrize("module_name", MODULES)
def test_docstrings_are_valid_rst(module_name):
    module = importlib.import_module(f"lmlib.{module_name}")
    problems = {
        name: found
        for name, doc in public_docstrings(module)
        if doc and (found := rst_problems(doc))
    }
    assert not problems, problems
