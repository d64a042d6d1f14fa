"""Shared fixtures, and the layout of the tests.

* ``tests/unit``: the library on tiny random models of every architecture (seconds each);
* ``tests/integration``: the offline stand-ins (marked ``integration``);
* ``tests/book``: the book build and its pages in headless Chromium (marked ``book``).

The marks follow the folder (:func:`pytest_collection_modifyitems`), so that
``-m "not integration and not book"`` and a folder name select the same tests. Unit test files in
:data:`SIMD_INDEPENDENT` are also marked ``simd_independent``: they test error paths, files,
processes, signals, the command line's argument handling and the code's structure, whose outcome
no vector unit changes, so the lowest-SIMD run (``make test-lowest-simd``) leaves them out.
``fault_helpers.py`` and ``reference.py`` here are helpers the tests import (``pythonpath`` in
pyproject.toml puts this folder on the path).
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("RESIDUAL_RESPONSE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache"))

ARCHITECTURES = ("gpt2", "llama", "gemma2", "gemma3")
TESTS = Path(__file__).resolve().parent

#: unit test files whose outcome does not depend on the CPU's vector unit (no float result is
#: compared in them beyond exact bookkeeping); ``make test`` runs them once, natively
SIMD_INDEPENDENT = frozenset({
    "test_cli.py", "test_code_size.py", "test_deferred.py", "test_faults.py", "test_io.py", "test_layering.py", "test_properties.py",
    "test_reliability.py", "test_results_cache.py", "test_results_io.py", "test_show.py", "test_streams.py",
})


#: the files that take longest (CPU seconds of one run with ``make test``'s two workers, in brackets),
#: longest first; then the notebooks under nbval (~10 s each), then every other file in its order
LONGEST_FIRST = (
    "book/test_student_notebooks.py",  # 200: 19 fresh kernels, each importing torch and transformers
    "unit/test_reliability.py",  # 90: training children, signalled and memory-limited processes
    "book/test_book_render.py",  # 80: a chromium load per page and width, with its waits
    "integration/test_integration.py",  # 45
    "unit/test_toy.py",  # 38: training children
    "unit/test_faults.py",  # 33: killed processes
)


def _start_rank(item) -> int:
    path = Path(str(item.fspath)).resolve()
    for i, name in enumerate(LONGEST_FIRST):
        if path == TESTS / name:
            return i
    return len(LONGEST_FIRST) + (path.suffix != ".ipynb")


def pytest_collection_modifyitems(config, items):
    """Mark every test by its folder: ``integration`` and ``book`` (unit tests carry no folder
    mark), and the unit tests of :data:`SIMD_INDEPENDENT` files ``simd_independent``.

    The files of :data:`LONGEST_FIRST` come first, then the notebooks (``make test`` runs nbval in the
    same session), each file's tests in their order. Why: with ``--dist loadfile --no-loadscope-reorder``
    (Makefile) a worker takes the next whole file as it runs out, in this order, so the longest start
    first and the last to end are short: no core waits at the end on one long file."""
    items.sort(key=_start_rank)  # stable: a file's tests keep their order
    for item in items:
        path = Path(str(item.fspath)).resolve()
        for mark in ("integration", "book"):
            if path.parent == TESTS / mark:
                item.add_marker(getattr(pytest.mark, mark))
        if path.parent == TESTS / "unit" and path.name in SIMD_INDEPENDENT:
            item.add_marker(pytest.mark.simd_independent)


@pytest.fixture(scope="session", params=ARCHITECTURES)
def random_lm(request):
    """A seeded 4-block random model of each architecture (float32)."""
    from residual_response.models import build_random_model

    return build_random_model(request.param, seed=0)


@pytest.fixture(scope="session", params=ARCHITECTURES)
def random_lm64(request):
    """The same architectures in float64 (tight numerical comparisons)."""
    from residual_response.models import build_random_model

    return build_random_model(request.param, seed=0, dtype="float64")


_standins = {}


def standin(name):
    """Load a stand-in once per session."""
    from residual_response.models import load_model

    if name not in _standins:
        _standins[name] = load_model(name)
    return _standins[name]


@pytest.fixture(scope="session")
def smollm2():
    return standin("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    return standin("gemma3-270m")


# --- result files of every kind and their `show` page (tests/unit/test_show.py, tests/book) ---


@pytest.fixture(scope="session")
def show_results(tmp_path_factory):
    """Small result files of every kind, written by the command line; two induction files."""
    d = tmp_path_factory.mktemp("show")
    runs = {
        "r.npz": ["response", "--model", "random-llama", "--sequence", "repeated", "--length", "4",
                  "--eps", "1e-3", "1e-2"],
        "ind-gpt2.json": ["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "2"],
        "ind-llama.json": ["induction", "--model", "random-llama", "--length", "4", "--seeds", "2"],
        "reg.json": ["regime", "--model", "random-gemma3", "--length", "3", "--eps-min", "1e-6", "--eps-max", "1",
                     "--points", "7"],
        "map.json": ["section-map", "--model", "random-llama", "--length", "4", "--seeds", "2",
                     "--perturb-layers", "0", "2"],
    }
    for name, argv in runs.items():
        assert _cli_main(argv + ["--out", str(d / name), "--quiet"]) == 0
    return d


@pytest.fixture(scope="session")
def show_page(show_results):
    """The page of every kind at once (induction files overlaid), with PNGs."""
    out = show_results / "page.html"
    files = [show_results / n for n in ("r.npz", "ind-gpt2.json", "ind-llama.json", "reg.json", "map.json")]
    assert _cli_main(["show", *map(str, files), "--out", str(out), "--png"]) == 0
    return out


def _cli_main(argv):
    from residual_response.cli import main

    return main(argv)


@pytest.fixture
def store(monkeypatch, tmp_path):
    """The results cache in a temporary folder, switched on, with no recompute flag: the folder of its entries."""
    from residual_response import results_cache as rc

    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.delenv(rc.ENV_RECOMPUTE, raising=False)
    with rc.switched(True):
        yield tmp_path / "results"
