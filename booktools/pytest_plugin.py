"""The book's pytest plugin, declared by the root conftest.py (``pytest_plugins``).

1. nbval waits only 5 s for a cell's outputs to arrive after the kernel says the cell is done;
   a cell that streamed many progress-bar updates on a busy 2-core machine once missed that
   window (Chapter 5's training cell), failing a notebook whose outputs were fine. The cell's
   own time limit stays `--nbval-cell-timeout`; this only widens the wait for its messages.
2. The nbval run measures each chapter notebook: every cell item's durations go to a
   `booktools.runtimes.Recorder`, and at the end of the session the chapters whose cells all
   ran and passed are written to `_build/runtimes.json` under pytest's root folder (not
   tracked: a test run changes no file of the repository). `make runtimes` copies them into
   `chapters/runtimes.json`, the file the site shows.
"""

from __future__ import annotations

from pathlib import Path

from booktools import runtimes

NBVAL_OUTPUT_TIMEOUT_S = 300  # the slowest chapter cell on a slower (AVX2-only) 2-core CPU


class ChapterTimer:
    """The run-time hooks, bound to one pytest root folder (the repository, or a copy of its
    layout in a test)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.recorder = runtimes.Recorder()

    def pytest_collectreport(self, report):
        """A notebook's cell items, all of them: -k and --deselect only drop some later."""
        cells = [item for item in report.result if hasattr(item, "cell_num")]  # nbval cells
        name = cells and runtimes.notebook_name(cells[0].path, self.root)
        if name and report.passed:
            self.recorder.collected(name, [item.nodeid for item in cells])

    def pytest_runtest_logreport(self, report):
        self.recorder.report(report.nodeid, report.when, report.outcome, report.duration)

    def pytest_sessionfinish(self, session, exitstatus):
        if session.config.getoption("nbval_lax", default=False):
            return  # outputs were not compared: not a run that proves the notebook
        if measured := self.recorder.complete():
            path = self.root / runtimes.MEASURED
            runtimes.record(measured, runtimes.machine(), runtimes.today(), path)


def pytest_configure(config):
    config.pluginmanager.register(ChapterTimer(config.rootpath), "booktools-chapter-timer")


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
