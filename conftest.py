"""Repository-wide pytest settings: the book's pytest plugin, `booktools/pytest_plugin.py`
(nbval's output wait, and the chapter run times an nbval run measures into
`_build/runtimes.json`; `make runtimes` copies them into `chapters/runtimes.json`), and
Hypothesis without its per-example deadline.

Hypothesis fails an example that takes over 200 ms by default. On a shared 2-core machine a
correct example can take longer: in a clean-clone `make test`, writing and reading a 5-line
file in `tests/unit/test_rag.py` took 674 ms while another test's clean-up kept the disk busy.
Speed is measured by the benchmarks, not by the unit tests, so no test has a deadline.
"""

from hypothesis import settings

pytest_plugins = ["booktools.pytest_plugin"]

settings.register_profile("book", deadline=None)
settings.load_profile("book")
