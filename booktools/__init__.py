"""The book's own tools: everything that builds, checks and measures the book, as opposed to
`lmlib`, the package the chapters teach with. Installed with the project (`pip install -e .`),
with no dependencies of its own beyond the pinned requirements (`requirements.txt`).

Command-line tools, each run as ``python -m booktools.<tool>`` (the Makefile's targets):

- `booktools.sync_setup_cells`: the Colab setup cell of every notebook, from `_config.yml`
  (`make sync`)
- `booktools.api_pages`: the API reference pages `api/*.md`, from lmlib's docstrings
  (`make sync`)
- `booktools.corpus`: Chapter 6's frozen retrieval corpus, `chapters/data/book_passages.jsonl`,
  from the prose of Chapters 1-5 (`make sync`)
- `booktools.assignments`: the student notebooks of the assignments, and their grading check
  (`make assignments`, `make sync`)
- `booktools.grade_submissions`: hand out a term's assignments and grade a class's
  submissions without Docker (for instructors)
- `booktools.fetch_data`: fetch and verify every data set into the cache (`make data`)
- `booktools.checksums`: `lmlib/_sha256.py`, the data files' SHA-256, from a folder of them
- `booktools.runtimes`: copy the chapter run times the test suite measured into
  `chapters/runtimes.json` (`make runtimes`)
- `booktools.vendor_assets`: the site's pinned browser libraries from npm (`make vendor`)
- `booktools.colab_sim`: run notebooks in a simulated Colab (the Colab tests)

Sphinx extensions, listed under ``sphinx: extra_extensions`` in `_config.yml`:

- `booktools.sphinxext.vendor_assets`: serve every script, style and font from the site itself
- `booktools.sphinxext.runtimes`: the "runs in about N min" note under each chapter's title

The pytest plugin, declared by the root `conftest.py`:

- `booktools.pytest_plugin`: nbval's output wait, and the chapter run times of an nbval run

`booktools.book` holds what they share: the repository's root and its chapter notebooks.
"""
