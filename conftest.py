"""Repository-wide pytest settings.

nbval waits only 5 s for a cell's outputs to arrive after the kernel says the cell is done;
a cell that streamed many progress-bar updates on a busy 2-core machine once missed that
window (Chapter 5's training cell), failing a notebook whose outputs were fine. The cell's
own time limit stays `--nbval-cell-timeout`; this only widens the wait for its messages.

The nbval run also measures each chapter notebook: the hooks below hand every cell item's
durations to scripts/runtimes.py, which writes chapters/runtimes.json at the end of the
session for the chapters whose cells all ran and passed (the site shows those times).
"""

import importlib.util
import sys
from pathlib import Path

NBVAL_OUTPUT_TIMEOUT_S = 60


def _runtimes():
    """scripts/runtimes.py as a module (scripts/ is no package)."""
    path = Path(__file__).resolve().parent / "scripts" / "runtimes.py"
    spec = importlib.util.spec_from_file_location("book_runtimes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


runtimes = _runtimes()
_recorder = runtimes.Recorder()


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S


def pytest_collectreport(report):
    """A notebook's cell items, all of them: -k and --deselect only drop some later."""
    cells = [item for item in report.result if hasattr(item, "cell_num")]  # nbval cells
    name = cells and runtimes.notebook_name(cells[0].path)
    if name and report.passed:
        _recorder.collected(name, [item.nodeid for item in cells])


def pytest_runtest_logreport(report):
    _recorder.report(report.nodeid, report.when, report.outcome, report.duration)


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("nbval_lax", default=False):
        return  # outputs were not compared: not a run that proves the notebook
    if measured := _recorder.complete():
        runtimes.record(measured, runtimes.machine(), runtimes.today())
