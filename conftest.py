"""Repository-wide pytest settings.

nbval waits only 5 s for a cell's outputs to arrive after the kernel says the cell is done;
a cell that streamed many progress-bar updates on a busy 2-core machine once missed that
window (Chapter 5's training cell), failing a notebook whose outputs were fine. The cell's
own time limit stays `--nbval-cell-timeout`; this only widens the wait for its messages.
"""

NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
