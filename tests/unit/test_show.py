"""``residual-response show``: any result file as a self-contained offline page (and a PNG), bad
files refused in one line (the page drawn in headless Chromium: tests/book/test_show_render.py)."""

import json
import re
from pathlib import Path

import pytest

from residual_response.cli import main

CDN_PATTERNS = ("https://cdn", "http://cdn", "jsdelivr", "unpkg", "cdnjs")
CHART_DIV = re.compile(r'<div id="(rr-chart-[0-9a-f]{12}(?:-\d+)?)" class="rr-chart">')


def show(capsys, *argv):
    rc = main(["show", *map(str, argv)])
    return rc, capsys.readouterr().err


def test_page_is_self_contained(show_page):
    text = show_page.read_text()
    assert not [p for p in CDN_PATTERNS if p in text]
    assert "<script src" not in text and "<link" not in text  # nothing loaded from anywhere
    assert "window.vegaEmbed" in text  # the bundle is inlined
    # response: matrix + eps sweep; the two induction files in one chart; regime; section map
    assert len(CHART_DIV.findall(text)) == 5
    pngs = sorted(p.name for p in show_page.parent.glob("page-*.png"))
    assert pngs == [f"page-{i}.png" for i in range(1, 6)]
    assert all((show_page.parent / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)


def test_induction_files_overlay_on_relative_depth(show_results, tmp_path):
    out = tmp_path / "ind.html"
    assert main(["show", str(show_results / "ind-gpt2.json"), str(show_results / "ind-llama.json"), "--out", str(out)]) == 0
    text = out.read_text()
    assert len(CHART_DIV.findall(text)) == 1
    spec = text[text.index("var spec = ") + len("var spec = "):]
    spec = json.loads(spec[:spec.index(";\n")])
    rows = [r for data in spec["datasets"].values() for r in data if "rel_depth" in r and "score" in r]
    assert {r["model"] for r in rows} == {"random-gpt2", "random-llama"}
    assert all(0 < r["rel_depth"] <= 1 for r in rows)


def test_single_png_is_named_after_the_page(show_results, tmp_path):
    out = tmp_path / "map.html"
    assert main(["show", str(show_results / "map.json"), "--out", str(out), "--png"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html", "map.png"]


def test_same_model_other_weights_warns(show_results, tmp_path, capsys):
    other = json.loads((show_results / "ind-gpt2.json").read_text())
    other["provenance"]["model"]["weights_sha256"] = "sha256:" + "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    rc, err = show(capsys, show_results / "ind-gpt2.json", tmp_path / "other.json", "--out", tmp_path / "x.html")
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
def test_bad_file_one_error_line_exit_2_nothing_written(show_results, tmp_path, capsys, which, message):
    bad = _bad_files(tmp_path)[which]
    before = sorted(tmp_path.iterdir())
    rc, err = show(capsys, show_results / "map.json", bad, "--out", tmp_path / "out.html", "--png")
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert sorted(tmp_path.iterdir()) == before
