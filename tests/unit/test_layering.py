"""The package's layers, read from the source with ``ast`` (nothing is imported).

* Only the page layer (``residual_response.pages``), the benchmark (``.bench``), the command
  line (``.cli``) and the book build (``book_build``) import ``residual_response.pages``; the
  one-line ``residual_response.page`` re-exports the page set-up for the notebooks.
* pandas, altair and the notebook libraries are imported only there: the science, the engine
  and the models run without them (pandas and altair are an optional extra).
* No import circle, counting every import wherever it stands (inside a function too): a lazy
  import that closes a circle only moves the failure to the first call. Imports under
  ``if TYPE_CHECKING:`` never run and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib"
PACKAGES = ("residual_response", "book_build")
#: the layers that may use the page layer, pandas and altair
UPPER = ("residual_response.pages", "residual_response.bench", "residual_response.cli", "book_build")
#: the notebook shim: ``from residual_response.page import *``
SHIMS = ("residual_response.page",)
PAGE_ONLY_LIBRARIES = ("pandas", "altair", "vl_convert", "IPython", "myst_nb")


def _modules() -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    out = {}
    for package in PACKAGES:
        for path in sorted((LIB / package).rglob("*.py")):
            parts = list(path.relative_to(LIB).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers of statements under ``if TYPE_CHECKING:`` (they never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name a ``from ... import`` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if _is_package(module) else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports, anywhere in its file: our modules by their exact name (a
    submodule named in ``from package import submodule`` counts as that submodule), other
    libraries by their top-level name."""
    tree = ast.parse(MODULES[module].read_text())
    skip = _type_checking_lines(tree)
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            subs = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
            if len(subs) < len(node.names):  # names that are not submodules come from the module itself
                out.add(target)
            out.update(subs)
    return {name if name.split(".")[0] in PACKAGES else name.split(".")[0] for name in out}


def _inside(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_only_the_upper_layers_import_the_pages():
    bad = sorted((m, i) for m in MODULES if not _inside(m, UPPER + SHIMS)
                 for i in imports_of(m) if _inside(i, ("residual_response.pages",)))
    assert not bad, f"modules below the page layer import it: {bad}"


def test_pandas_and_altair_only_in_the_upper_layers():
    bad = sorted((m, i) for m in MODULES if not _inside(m, UPPER) for i in imports_of(m) if i in PAGE_ONLY_LIBRARIES)
    assert not bad, f"page-only libraries imported below the page layer: {bad}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_lazy_ones_included():
    graph = {m: {i for i in imports_of(m) if i in MODULES} for m in MODULES}
    assert not _cycles(graph), f"import circles: {_cycles(graph)}"


def test_the_walk_sees_lazy_imports_and_relative_names():
    """The checks above are only as good as the walk: it must see an import inside a function."""
    assert "residual_response.pages.plots" in imports_of("residual_response.cli.show")  # imported in functions
    assert "residual_response.models.loaded" in imports_of("residual_response.models.registry")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_simd_independent_files_exist():
    """The lowest-SIMD run leaves out the files named in conftest.SIMD_INDEPENDENT: a renamed file
    would silently move back in (or a typo leave nothing out), so every name must exist."""
    from conftest import SIMD_INDEPENDENT

    unit = Path(__file__).resolve().parent
    missing = sorted(n for n in SIMD_INDEPENDENT if not (unit / n).is_file())
    assert not missing, f"conftest.SIMD_INDEPENDENT names files that do not exist: {missing}"
