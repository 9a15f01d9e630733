"""What the tests of this folder share: the one book build of tests/book/test_book.py and
tests/book/test_browser.py; and the start of the suite's background runs (tests/conftest.py)
with this folder's first test."""

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from booktools.vendor_assets import ensure_installed

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Build:
    html: Path  # the site
    config: dict  # the _config.yml it was built with
    returncode: int  # 0: no warning at all (-W -n)
    log: str  # stdout and stderr of `jupyter-book build`

    def problems(self) -> str:
        """The warnings and errors of the build, without colour codes."""
        lines = re.sub(r"\x1b\[[0-9;]*m", "", self.log).splitlines()
        found = [line for line in lines if "WARNING" in line or "ERROR" in line]
        return "\n".join(found[:80]) if found else "\n".join(lines[-60:])


@pytest.fixture(scope="session")
def book_build(tmp_path_factory):
    """Build the book once, into a fresh folder, with warnings as errors but keeping going.

    Notebooks are rendered from their stored outputs, which the nbval run of the same suite
    re-executes and compares; `make book` executes them."""
    ensure_installed(quiet=True)  # the pinned npm packages the site serves
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config_path = out / "_config.yml"
    # sort_keys=False: order matters in places (nb_ipywidgets_js: require.js first)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out), "--config",
           str(config_path), "-W", "-n", "--keep-going", "--all"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    html = out / "_build" / "html"
    return Build(html, config, result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def site(book_build):
    """(html folder, configuration). With --keep-going the pages exist even when the build
    warned, so the page tests still run; test_book.py::test_build_is_clean fails then."""
    assert (book_build.html / "intro.html").exists(), book_build.problems()
    return book_build.html, book_build.config


@pytest.fixture(scope="session", autouse=True)
def _start_background_runs(request):
    """Start, with this folder's first test, each background run of tests/conftest.py that a
    selected test needs (its fixture closure names it)."""
    needed = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    for name in ("portable_run", "colab_run"):
        if name in needed:
            request.getfixturevalue(name)
