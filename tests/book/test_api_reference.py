"""The library reference page (book/api.md, built by autodoc and napoleon; book_build.apiref).

Without a build: every public function and class of the library (each module's ``__all__``, but
the page layer, the benchmark and the command line) is documented on the page, by its own module
or by the package that exports it. With a build (``BOOK_HTML_DIR``): the page has an entry for
each, and every link of the other pages into it lands on one.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path

import pytest

from book_build.apiref import api_modules, api_names, link_target

REPO = Path(__file__).resolve().parents[2]
HTML_DIR = Path(os.environ.get("BOOK_HTML_DIR", REPO / "_build" / "stage" / "_build" / "html"))
#: the book's own layers: documented by the pages and the README, not the reference
NOT_LIBRARY = ("residual_response.pages", "residual_response.bench", "residual_response.cli", "residual_response.page")

pytestmark = pytest.mark.book


def library_modules() -> list[str]:
    import residual_response

    names = [m.name for m in pkgutil.walk_packages(residual_response.__path__, "residual_response.")]
    return sorted(n for n in names if not n.startswith(NOT_LIBRARY))


def test_every_public_function_and_class_is_documented():
    documented = dict(api_modules())
    missing = []
    for module_name in library_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != module_name:
                continue
            homes = [d for d, members in documented.items() if members and module_name.startswith(d) and name in members]
            if not homes:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names the reference page does not document: {missing}"


@pytest.mark.parametrize("code, target", [
    ("induction_scores", "residual_response.induction.induction_scores"),
    ("crosscheck.kind_scores", "residual_response.crosscheck.kind_scores"),
    ('response(..., method="jvp")', "residual_response.engine.response"),
    ("residual_response.stats", "residual_response.stats"),
    ("LoadedModel", "residual_response.models.LoadedModel"),
    ("stats", None), ("T", None), ("models", None), ("x = 1", None),
])
def test_which_inline_code_links_to_the_reference(code, target):
    got = link_target(code)
    assert (got[1] if got else None) == target


@pytest.mark.skipif(not (HTML_DIR / "api.html").is_file(), reason=f"no built reference at {HTML_DIR}/api.html")
def test_the_built_reference_has_every_entry_and_every_link_lands():
    page = (HTML_DIR / "api.html").read_text()
    ids = set(re.findall(r'id="([^"]+)"', page))
    missing = sorted({full for _, full in api_names().values() if full not in ids and f"module-{full}" not in ids})
    assert not missing, f"entries missing from api.html: {missing[:10]}"
    broken = []
    for other in sorted(HTML_DIR.glob("*.html")):
        for anchor in re.findall(r'href="api\.html#([^"]+)"', other.read_text()):
            if anchor not in ids:
                broken.append(f"{other.name} -> #{anchor}")
    assert not broken, f"links into the reference that land nowhere: {broken[:10]}"
