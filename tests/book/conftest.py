"""The one book build that tests/test_book.py and tests/test_browser.py share."""

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _vendor_assets():
    """scripts/vendor_assets.py as a module (scripts/ is no package)."""
    path = ROOT / "scripts" / "vendor_assets.py"
    spec = importlib.util.spec_from_file_location("vendor_assets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    _vendor_assets().ensure_installed(quiet=True)  # the pinned npm packages the site serves
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # the configuration is read from `out`: make local extension folders absolute
    local = config.get("sphinx", {}).get("local_extensions") or {}
    for name, folder in local.items():
        local[name] = str(ROOT / folder)
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
