"""Repository-wide pytest settings: the book's pytest plugin, `booktools/pytest_plugin.py`
(nbval's output wait, and the chapter run times an nbval run measures into
`_build/runtimes.json`; `make runtimes` copies them into `chapters/runtimes.json`)."""

pytest_plugins = ["booktools.pytest_plugin"]
