"""Every public docstring in lmlib is valid reStructuredText.

The API pages (api/*.md) show them through Sphinx autodoc, and the site builds with -W: one
list without a blank line before it fails the whole build, but only in the book test, at the
end of a 30-minute `make test`. docutils finds the same problems here in a second.
"""

import importlib
import inspect
import io
import re

import docutils.core
import pytest

from booktools import api_pages


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


def page_docstrings(module_name):
    """(name, docstring) of what the module's API page shows: the module, its public
    functions and classes (`booktools.api_pages.public_members`), and the classes' public
    methods and properties."""
    module = importlib.import_module(f"lmlib.{module_name}")
    yield module.__name__, module.__doc__
    for name in api_pages.public_members(module_name):
        obj = getattr(module, name)
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


@pytest.mark.parametrize("module_name", api_pages.modules())
def test_docstrings_are_valid_rst(module_name):
    problems = {
        name: found
        for name, doc in page_docstrings(module_name)
        if doc and (found := rst_problems(doc))
    }
    assert not problems, problems
