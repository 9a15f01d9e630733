"""The suite's two long runs that keep one core busy each, started in the background.

Two tests wait minutes for work that does not need the whole 2-core machine: the nbval run
of Chapters 3 and 4 with portable kernels and one thread (tests/book/test_portable_outputs.py),
and the simulated Colab, its environment then Chapter 3 in it (tests/colab/test_colab.py).
Both start with the first test of tests/book (its conftest.py), when a selected test needs
them, and run beside that folder's own long jobs (the site build, Chromium photographing
every page), which leave a core idle much of the time. The tests that check them then wait
only for what is left. pytest runs `chapters/` last, after every run here has ended, so
nothing runs beside the chapters' nbval run, which records their times.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ATen's portable kernels (not the vectorized ones) and one thread: see test_portable_outputs.py
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PORTABLE_CHAPTERS = ["chapters/04_mathematics.ipynb", "chapters/03_transformer.ipynb"]
# the chapter that tests/colab/test_colab.py runs end to end (it needs every extra)
COLAB_CHAPTER = ROOT / "chapters" / "03_transformer.ipynb"
COLAB_JOB = """import pickle, sys
from pathlib import Path
from booktools import colab_sim
work, chapter, out = map(Path, sys.argv[1:])
runtime = colab_sim.make_runtime(work, keep_pristine=False)
result = colab_sim.run_notebook(runtime, chapter, quiet=True)
out.write_bytes(pickle.dumps((runtime, result)))
"""


@dataclass
class BackgroundRun:
    """A command running on its own, in a process group of its own, its output going to a
    file (a pipe that no one reads would stop it once full)."""

    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, cmd: list, log: Path, **options) -> BackgroundRun:
        with log.open("w") as out:
            process = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, **options)  # fmt: skip
        return cls(process, log)

    def wait(self, timeout: float) -> tuple[int, str]:
        """(exit status, output); a run still going after `timeout` seconds is killed."""
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return returncode, self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the run with everything it started (a Jupyter kernel, pip), if it is still
        going."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def portable_env():
    return os.environ | PORTABLE


@pytest.fixture(scope="session")
def portable_run(tmp_path_factory, portable_env):
    """nbval of Chapters 3 and 4 with portable kernels and one thread, in one process, one
    chapter after the other: it keeps one core busy, never both."""
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "no:booktools-chapter-timer", "--nbval", "--nbval-current-env",
        "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", *PORTABLE_CHAPTERS,
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("portable") / "nbval.log"
    run = BackgroundRun.start(cmd, log, env=portable_env)
    yield run
    run.stop()


@dataclass
class ColabRun:
    """The simulated Colab being built, then running Chapter 3, in the background."""

    run: BackgroundRun
    work: Path  # everything it writes (about 1.5 GB)
    _loaded: tuple | None = None
    _removed: bool = False

    def get(self, timeout: float = 3600):
        """(booktools.colab_sim.Runtime, Chapter 3's Result), once the run has ended."""
        if self._loaded is None:
            returncode, log = self.run.wait(timeout)
            assert returncode == 0, f"building the simulated Colab failed:\n{log[-5000:]}"
            self._loaded = pickle.loads((self.work / "result.pickle").read_bytes())
        return self._loaded

    def remove(self) -> None:
        """Delete its files with a background `rm` (their many small files took 1.5-2.5 min
        to delete on the 2-core machine; the rest of the suite need not wait for it)."""
        self.run.stop()
        if not self._removed:  # once: after tests/colab, or at the end of the session
            subprocess.Popen(["rm", "-rf", str(self.work)], start_new_session=True)
            self._removed = True


@pytest.fixture(scope="session")
def colab_run(tmp_path_factory):
    """The simulated Colab with Chapter 3 run in it (None without git: the setup cell
    clones the book with it)."""
    if shutil.which("git") is None:
        yield None
        return
    work = tmp_path_factory.mktemp("colab")
    cmd = [sys.executable, "-c", COLAB_JOB, work / "sim", COLAB_CHAPTER, work / "result.pickle"]
    colab = ColabRun(BackgroundRun.start(cmd, work / "build.log"), work)
    yield colab
    colab.remove()
