"""The page of ``residual-response show`` drawn in headless Chromium: every chart drawn offline."""

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHART_DIV = re.compile(r'<div id="(rr-chart-[0-9a-f]{12}(?:-\d+)?)" class="rr-chart">')


@pytest.mark.book
def test_page_draws_its_charts_offline_in_chromium(show_page, tmp_path):
    """Loaded from a file (the page names no URL), every chart is drawn by vega-embed (its SVG
    fallback removed), widgets are bound, and no script logs an error."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run `bash scripts/install_chromium.sh`")
    from test_book_render import INSTRUMENT, ChartDom, load_in_chromium, ERROR_PREFIX

    copy = tmp_path / "page.html"
    shutil.copy(show_page, copy)
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
