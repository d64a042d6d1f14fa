"""The book builder's own logic (scripts/build_book.py): pages.yml, the toc, labels, the CDN check.

These run without executing any notebook. One test reads the real book/pages.yml and _toc.yml:
every page a profile builds must be in the table of contents, and every toc entry must be a
prose page or a notebook page, so a page added to one file and forgotten in the other fails here
rather than as a Sphinx warning in a 10-minute build.
"""

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_book", REPO / "scripts" / "build_book.py")
build_book = importlib.util.module_from_spec(_spec)
sys.modules["build_book"] = build_book
_spec.loader.exec_module(build_book)


def _pages_file(tmp_path, text):
    p = tmp_path / "pages.yml"
    p.write_text(text)
    return p


def test_each_expands_and_profiles_override(tmp_path):
    f = _pages_file(tmp_path, """
pages:
  - name: "model-{model}"
    source: notebooks/model_page.md
    each: [{model: a-1}, {model: b-2}]
    params:
      all: {T: 4, eps: 0.1}
      ci: {T: 8}
  - name: only-publish
    source: notebooks/emergence.md
    profiles: [publish]
""")
    pages = build_book.load_pages("ci", f)
    by_name = {p.name: p for p in pages}
    assert list(by_name) == ["model-a-1", "model-b-2", "only-publish"]
    assert by_name["model-a-1"].params == {"T": 8, "eps": 0.1, "model": "a-1"}
    assert by_name["model-b-2"].template and not by_name["only-publish"].template
    assert by_name["only-publish"].profiles == ("publish",)
    assert build_book.load_pages("publish", f)[0].params["T"] == 4


@pytest.mark.parametrize("text, message", [
    ("pages:\n  - name: x\n", "needs name and source"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, params: {nightly: {}}}\n", "params keys"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, profiles: [nightly]}\n", "unknown profile"),
    ("pages:\n  - {name: Bad_Name, source: notebooks/emergence.md}\n", "must match"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md}\n  - {name: x, source: notebooks/emergence.md}\n",
     "more than once"),
    ("pages:\n  - {name: x, source: notebooks/missing.md}\n", "does not exist"),
    ("pages:\n  - {name: method, source: notebooks/emergence.md}\n", "clashes with a prose page"),
    ("pages:\n  - {name: 'm-{model}', source: notebooks/emergence.md, each: [{other: 1}]}\n", "not in `each`"),
])
def test_bad_pages_file_is_refused_with_one_message(tmp_path, text, message):
    with pytest.raises(build_book.BuildError, match=message):
        build_book.load_pages("ci", _pages_file(tmp_path, text))


def test_prune_toc_drops_entries_and_empty_parts():
    toc = {"root": "intro", "parts": [
        {"caption": "A", "chapters": [{"file": "x"}, {"file": "y"}]},
        {"caption": "B", "chapters": [{"file": "z"}]},
    ]}
    pruned = build_book.prune_toc(toc, {"y", "z"})
    assert pruned["parts"] == [{"caption": "A", "chapters": [{"file": "x"}]}]
    assert build_book.toc_files(pruned) == {"intro", "x"}
    with pytest.raises(build_book.BuildError, match="root page"):
        build_book.prune_toc({"root": "intro"}, {"intro"})


def test_localise_labels_renames_figures_targets_and_references(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("(sec-a)=\n## A\nSee {numref}`fig-x` and {ref}`the section <sec-a>`; fig-xy stays."),
        nbformat.v4.new_code_cell("1", metadata={"mystnb": {"figure": {"name": "fig-x", "caption": "c"}}}),
    ]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, path)
    build_book.localise_labels(path, "model-a")
    out = nbformat.read(path, as_version=4)
    text = out.cells[0].source
    assert "(sec-a-model-a)=" in text and "{numref}`fig-x-model-a`" in text
    assert "{ref}`the section <sec-a-model-a>`" in text and "fig-xy stays" in text
    assert out.cells[1].metadata["mystnb"]["figure"]["name"] == "fig-x-model-a"


def test_cdn_check_names_the_page(tmp_path):
    (tmp_path / "ok.html").write_text("<script src='_static/vega.js'></script>")
    build_book.check_no_cdn(tmp_path)
    (tmp_path / "bad.html").write_text("<script src='https://cdn.jsdelivr.net/npm/vega@5'></script>")
    with pytest.raises(build_book.BuildError, match="bad.html"):
        build_book.check_no_cdn(tmp_path)


def test_check_parameters_refuses_unknown_ones(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("T = 4\nseed = 0", metadata={"tags": ["parameters"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    page = build_book.Page(name="n", source=REPO / "notebooks" / "emergence.md", params={"T": 8}, timeout=10,
                           profiles=("ci",))
    build_book.check_parameters(path, page)
    page.params = {"T": 8, "modle": "x"}
    with pytest.raises(build_book.BuildError, match="modle"):
        build_book.check_parameters(path, page)


@pytest.mark.parametrize("profile", build_book.PROFILES)
def test_pages_and_toc_agree(profile):
    """Every page a profile builds is in _toc.yml; every toc file is a prose page or a notebook page."""
    pages = build_book.load_pages(profile)
    all_names = {p.name for prof in build_book.PROFILES for p in build_book.load_pages(prof)}
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = build_book.toc_files(toc)
    prose = {p.stem for p in (REPO / "book").glob("*.md")}
    missing = {p.name for p in pages if profile in p.profiles} - files
    assert not missing, f"{profile}: pages built but not in _toc.yml: {sorted(missing)}"
    unknown = files - prose - all_names
    assert not unknown, f"_toc.yml names files that are neither in book/ nor in book/pages.yml: {sorted(unknown)}"
