"""The page cache of the build (lib/book_build/cache.py): a page runs again only when what it depends on changed."""

import json

import nbformat
import pytest

import book_build as build_book
from book_build import cache as pc

code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell


def _notebook(path, *, x_line="y = x * 2", title="# A page"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [md(title), code("x = 1", metadata={"tags": ["parameters"]}), code(x_line), md("Text."), code("print(y)")]
    nbformat.write(nb, path)
    return path


def _page(**params):
    from book_build.config import REPO

    return build_book.Page(name="p", source=REPO / "notebooks" / "schematic.md", params=params, timeout=60,
                           profiles=("ci",))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path / "cache"))
    stage = tmp_path / "stage"
    stage.mkdir()
    src = _notebook(tmp_path / "p.ipynb")
    return pc.PageCache(tmp_path / "pages"), src, stage


def test_a_page_runs_once_then_is_reused_until_its_code_parameters_or_key_change(setup, monkeypatch, tmp_path):
    cache, src, stage = setup
    page = _page(x=3)
    declared = build_book.declared_parameters(src)
    first = pc.run_page(cache, page, src, declared, stage)
    assert first.error is None and not first.reused and first.cpu_seconds is not None
    executed = nbformat.read(stage / "p.ipynb", as_version=4)
    assert "6" in executed.cells[-1].outputs[0]["text"]

    again = pc.run_page(cache, page, src, declared, stage)
    assert again.reused and again.seconds == pytest.approx(first.seconds, abs=0.01)
    reused = nbformat.read(stage / "p.ipynb", as_version=4)
    assert [c.get("outputs") for c in reused.cells] == [c.get("outputs") for c in executed.cells]

    _notebook(src, title="# A page, retitled")  # prose only: reused, with the new prose
    assert pc.run_page(cache, page, src, declared, stage).reused
    assert nbformat.read(stage / "p.ipynb", as_version=4).cells[0].source == "# A page, retitled"

    assert cache.lookup(_page(x=4), src, declared, stage) is None  # another parameter value
    _notebook(src, x_line="y = x * 3")
    assert cache.lookup(page, src, declared, stage) is None  # another code cell
    _notebook(src)
    assert cache.lookup(page, src, declared, stage) is not None
    monkeypatch.setattr(pc, "versions", lambda: {"torch": "0"})
    assert cache.lookup(page, src, declared, stage) is None  # another torch
    monkeypatch.undo()
    assert pc.PageCache(tmp_path / "pages", recompute=True).lookup(page, src, declared, stage) is None


def test_a_page_run_while_the_library_changed_is_not_stored(setup, monkeypatch, capsys):
    """The build's key holds the library's source as it was when the build started; a page that
    ran while the source was edited may have imported either, so it is kept under neither."""
    cache, src, stage = setup
    page = _page(x=3)
    declared = build_book.declared_parameters(src)
    monkeypatch.setattr(pc, "library_fingerprint", lambda: "edited since")
    assert pc.run_page(cache, page, src, declared, stage).error is None
    assert "p: not stored (the library's source changed while the build ran)" in capsys.readouterr().out
    monkeypatch.undo()
    assert cache.lookup(page, src, declared, stage) is None
    assert not pc.run_page(cache, page, src, declared, stage).reused  # stored now, with the source unchanged
    assert pc.run_page(cache, page, src, declared, stage).reused


def test_a_page_is_keyed_by_the_models_its_parameters_and_pages_yml_name(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    page = _page(models=["random-llama", "toy-gpt2"], exercise_model="gemma3-270m", T=4)
    page.models = ("smollm2-135m",)
    declared = {"model": "'random-gpt2'", "T": "8", "eps": "1e-2 * 2"}
    assert pc.page_models(page, declared) == ["gemma3-270m", "random-gpt2", "random-llama", "smollm2-135m", "toy-gpt2"]
    assert pc.model_fingerprint("random-llama") == "random-init"
    assert pc.model_fingerprint("toy-gpt2") == "absent"  # not trained in this cache: the run trains it
    folder = tmp_path / "models" / "smollm2-135m"
    folder.mkdir(parents=True)
    (folder / "MANIFEST.json").write_text(json.dumps({"version": 1, "files": {"w": {"size": 1, "sha256": "a"}}}))
    first = pc.model_fingerprint("smollm2-135m")
    (folder / "MANIFEST.json").write_text(json.dumps({"version": 1, "files": {"w": {"size": 1, "sha256": "b"}}}))
    assert first.startswith("manifest:") and pc.model_fingerprint("smollm2-135m") != first
    key = pc.page_key(page, declared)
    assert set(key["models"]) == set(pc.page_models(page, declared)) and key["versions"]["torch"]
    page.inputs = ("bench.json",)
    assert "bench.json" in pc.page_key(page, declared)["inputs"]


def test_the_recorded_time_of_a_page_is_that_of_its_present_parameters(setup):
    """The cache holds the ci and the publish runs of a page; ordering the publish build by the
    ci run's seconds put the longest page last."""
    cache, src, stage = setup
    declared = build_book.declared_parameters(src)
    for x in (3, 4):
        assert pc.run_page(cache, _page(x=x), src, declared, stage).error is None
    mine = pc.recorded_seconds(cache, [_page(x=3)])
    assert list(mine) == ["p"]
    rec = {json.dumps(r.data["params"]): r.data for r in cache.list_cache_records()}
    expect = rec[json.dumps({"x": 3})]
    assert mine["p"] == pytest.approx(expect["cpu_seconds"] or expect["seconds"])
    assert pc.recorded_seconds(cache, [_page(x=5)]) == {}  # no run with these parameters yet
    assert set(pc.recorded_seconds(cache)) == {"p"}  # without pages: the last record of each name


def test_pages_start_longest_first_unknown_ones_before():
    from book_build.parallel import order

    pages = [_page() for _ in range(4)]
    for p, name in zip(pages, "abcd"):
        p.name = name
    assert [p.name for p in order(pages, {"a": 1.0, "b": 30.0, "d": 5.0})] == ["c", "b", "d", "a"]
    costs = build_book.load_costs()
    from residual_response.models import REGISTRY

    # every entry names a page or a registry model (what building it costs, lib/book_build/prepare.py)
    assert set(costs) <= {p.name for prof in build_book.PROFILES for p in build_book.load_pages(prof)} | set(REGISTRY)
    assert costs["cross-checks"] > costs["performance"] > 0
