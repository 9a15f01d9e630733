"""What the tests of this folder share: the one book build of tests/book/test_book.py and
tests/book/test_browser.py, and the portable-kernel run of tests/book/test_portable_outputs.py,
which starts in the background with the folder's first test.

That run executes Chapters 3 and 4 on one thread for about three minutes. Started at once,
it shares the machine with the rest of this folder, whose largest jobs (the site build, the
photographs of every page) leave the second core idle much of the time; the test that checks
it then only waits for what is left. The chapters' own nbval run, which records their times,
comes after this folder (pytest runs `chapters/` last), so nothing measured runs beside it.
"""

import os
import re
import signal
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


# ATen's portable kernels (not the vectorized ones) and one thread: see test_portable_outputs.py
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PORTABLE_CHAPTERS = ["chapters/04_mathematics.ipynb", "chapters/03_transformer.ipynb"]
PORTABLE_TEST = "test_compared_outputs_survive_portable_kernels_and_one_thread"


@dataclass
class BackgroundRun:
    """A command running on its own, its output going to a file (a pipe that no one reads
    would stop it once full)."""

    process: subprocess.Popen
    log: Path

    def wait(self, timeout: float) -> tuple[int, str]:
        """(exit status, output); a run still going after `timeout` seconds is killed."""
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return returncode, self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the run with everything it started (its Jupyter kernel too), if it is still
        going: it leads a process group of its own."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def portable_env():
    return os.environ | PORTABLE


@pytest.fixture(scope="session")
def portable_run(tmp_path_factory, portable_env):
    """nbval of Chapters 3 and 4 with portable kernels and one thread, in one process, one
    chapter after the other: it keeps one core busy, never both. Killed if still running at
    the end of the session."""
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "no:booktools-chapter-timer", "--nbval", "--nbval-current-env",
        "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", *PORTABLE_CHAPTERS,
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("portable") / "nbval.log"
    with log.open("w") as out:
        run = BackgroundRun(
            subprocess.Popen(cmd, cwd=ROOT, env=portable_env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True),
            log,
        )  # fmt: skip
    yield run
    run.stop()


@pytest.fixture(scope="session", autouse=True)
def _start_portable_run_early(request):
    """Start the portable run with this folder's first test, when its test was selected."""
    if any(item.name == PORTABLE_TEST for item in request.session.items):
        request.getfixturevalue("portable_run")
