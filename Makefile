# Regimen. `make run` starts the whole service on the embedded default; `make test` tests it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install browser run test lint fmt bench bench-env clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: the CPU build 2.13.0 satisfies the project's torch>=2.4 without a CUDA download.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m service.embedded --host $(HOST) --port $(PORT)

# The dashboard's browser test drives Debian's chromium through Playwright's Python package
# (executable_path): no browser download. Installed once; a no-op when chromium is there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || $(SUDO) apt-get install -y -qq chromium \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

test: install browser
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench

# The optimizer benchmark compares against pytorch-optimizer, installed only in its own venv.
bench-env:
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet torch==2.13.0
	.venv-bench/bin/python -m pip install --quiet pytorch-optimizer -e .
	.venv-bench/bin/python -m bench.optim_step

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache
