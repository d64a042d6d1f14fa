"""``residual-response show``: any result file as a self-contained offline page (and a PNG), bad
files refused in one line; a headless Chromium check that the page draws its charts offline."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from residual_response.cli import main

CDN_PATTERNS = ("https://cdn", "http://cdn", "jsdelivr", "unpkg", "cdnjs")
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHART_DIV = re.compile(r'<div id="(rr-chart-[0-9a-f]{12}(?:-\d+)?)" class="rr-chart">')


@pytest.fixture(scope="module")
def results(tmp_path_factory):
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
        assert main(argv + ["--out", str(d / name), "--quiet"]) == 0
    return d


def show(capsys, *argv):
    rc = main(["show", *map(str, argv)])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def page(results):
    """The page of every kind at once (induction files overlaid), with PNGs."""
    out = results / "page.html"
    files = [results / n for n in ("r.npz", "ind-gpt2.json", "ind-llama.json", "reg.json", "map.json")]
    assert main(["show", *map(str, files), "--out", str(out), "--png"]) == 0
    return out


def test_page_is_self_contained(page):
    text = page.read_text()
    assert not [p for p in CDN_PATTERNS if p in text]
    assert "<script src" not in text and "<link" not in text  # nothing loaded from anywhere
    assert "window.vegaEmbed" in text  # the bundle is inlined
    # response: matrix + eps sweep; the two induction files in one chart; regime; section map
    assert len(CHART_DIV.findall(text)) == 5
    pngs = sorted(p.name for p in page.parent.glob("page-*.png"))
    assert pngs == [f"page-{i}.png" for i in range(1, 6)]
    assert all((page.parent / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)


def test_induction_files_overlay_on_relative_depth(results, tmp_path):
    out = tmp_path / "ind.html"
    assert main(["show", str(results / "ind-gpt2.json"), str(results / "ind-llama.json"), "--out", str(out)]) == 0
    text = out.read_text()
    assert len(CHART_DIV.findall(text)) == 1
    spec = text[text.index("var spec = ") + len("var spec = "):]
    spec = json.loads(spec[:spec.index(";\n")])
    rows = [r for data in spec["datasets"].values() for r in data if "rel_depth" in r and "score" in r]
    assert {r["model"] for r in rows} == {"random-gpt2", "random-llama"}
    assert all(0 < r["rel_depth"] <= 1 for r in rows)


def test_single_png_is_named_after_the_page(results, tmp_path):
    out = tmp_path / "map.html"
    assert main(["show", str(results / "map.json"), "--out", str(out), "--png"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html", "map.png"]


def test_same_model_other_weights_warns(results, tmp_path, capsys):
    other = json.loads((results / "ind-gpt2.json").read_text())
    other["provenance"]["model"]["weights_sha256"] = "sha256:" + "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    rc, err = show(capsys, results / "ind-gpt2.json", tmp_path / "other.json", "--out", tmp_path / "x.html")
    warning = [l for l in err.splitlines() if l.startswith("warning:")]
    assert rc == 0 and len(warning) == 1 and "weights_sha256" in warning[0]


def _bad_files(tmp: Path) -> dict[str, Path]:
    (tmp / "text.json").write_text("not json at all")
    (tmp / "other.json").write_text('{"hello": 1}')
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp / "damaged.json").write_text('{"kind": "induction", "model": "x"}')
    return {"missing": tmp / "missing.json", "text": tmp / "text.json", "other": tmp / "other.json",
            "broken": tmp / "broken.npz", "damaged": tmp / "damaged.json"}


@pytest.mark.parametrize("which, message", [
    ("missing", "no such file"), ("text", "not a JSON file"), ("other", "not a residual-response result"),
    ("broken", "not a readable .npz"), ("damaged", "damaged result file"),
])
def test_bad_file_one_error_line_exit_2_nothing_written(results, tmp_path, capsys, which, message):
    bad = _bad_files(tmp_path)[which]
    before = sorted(tmp_path.iterdir())
    rc, err = show(capsys, results / "map.json", bad, "--out", tmp_path / "out.html", "--png")
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.book
def test_page_draws_its_charts_offline_in_chromium(page, tmp_path):
    """Loaded from a file (the page names no URL), every chart is drawn by vega-embed (its SVG
    fallback removed), widgets are bound, and no script logs an error."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run `bash scripts/install_chromium.sh`")
    from test_book_render import INSTRUMENT, ChartDom, load_in_chromium, ERROR_PREFIX

    copy = tmp_path / "page.html"
    shutil.copy(page, copy)
    static = copy.read_text()
    ids = CHART_DIV.findall(static)
    copy.write_text(static.replace("<head>", "<head>" + INSTRUMENT, 1))
    dom, console = load_in_chromium(copy, tmp_path)
    parser = ChartDom()
    parser.feed(dom)
    assert set(parser.charts) == set(ids) and len(ids) == 5
    problems = [f"{cid}: {state}" for cid, state in parser.charts.items() if not state["drawn"] or state["fallback"]]
    assert not problems, problems
    assert parser.charts[ids[0]]["bound"]  # the response matrix's layer slider
    errors = [m for m, _ in console if m.startswith("Uncaught") or m.startswith(ERROR_PREFIX)]
    assert not errors, errors
