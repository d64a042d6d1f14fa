"""The built book as a reader's browser shows it: charts drawn by vega-embed, no script errors.

Needs a built book (``python scripts/build_book.py --profile ci --out _build``) and Debian's
chromium (``bash scripts/install_chromium.sh``); skips, saying which is missing, otherwise.
``BOOK_HTML_DIR`` points at the HTML folder (default ``_build/stage/_build/html``).

Each page with charts is copied, with the rest of the HTML folder, into a temporary folder,
with one script added at the top of ``<head>`` that prefixes ``console.error`` messages
(chromium's log shows every console level as INFO), then loaded headless with
``--dump-dom``. The test reads the DOM after the page's scripts ran and chromium's console
log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HTML_DIR = Path(os.environ.get("BOOK_HTML_DIR", REPO / "_build" / "stage" / "_build" / "html"))
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHART_CLASS = "rr-chart"  # residual_response.plots.CHART_CLASS (not imported: no altair needed)
CDN_PATTERNS = ("https://cdn", "http://cdn", "jsdelivr", "unpkg", "cdnjs")

# Static HTML of one chart: its id, and the script up to the chart's closing tag.
CHART_RE = re.compile(rf'<div id="({CHART_CLASS}-[0-9a-f]{{12}}(?:-\d+)?)" class="{CHART_CLASS}">(.*?)</script>', re.S)
# Chromium's console log line: ...:CONSOLE:12] "message", source: file:///... (12)
CONSOLE_RE = re.compile(r':CONSOLE[:(]\d*\)?\] "(?P<msg>.*)", source: (?P<src>\S*) \(\d+\)$')
ERROR_PREFIX = "[console.error]"
INSTRUMENT = (
    "<script>(function(){var e=console.error;console.error=function(){"
    f'e.call(console,"{ERROR_PREFIX} "+Array.prototype.map.call(arguments,String).join(" "));'
    "};})();</script>"
)
# console.error messages that are not faults: pydata-sphinx-theme logs this on a first visit,
# when localStorage has no theme mode yet (always, in a fresh chromium profile).
BENIGN = ("Got invalid theme mode: . Resetting to auto.",)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

pytestmark = pytest.mark.book


def chart_pages() -> list[Path]:
    if not HTML_DIR.is_dir():
        return []
    return sorted(p for p in HTML_DIR.glob("*.html") if f'class="{CHART_CLASS}"' in p.read_text(errors="replace"))


class ChartDom(HTMLParser):
    """For each chart container in a DOM dump: is there an <svg>/<canvas> inside vega-embed's
    element, a widget binding (``vega-bind``), and is the SVG fallback still there?"""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, set[str], str | None]] = []  # (tag, classes, chart id)
        self.charts: dict[str, dict[str, bool]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        chart = self.stack[-1][2] if self.stack else None
        if CHART_CLASS in classes and a.get("id"):
            chart = a["id"]
            self.charts[chart] = {"drawn": False, "bound": False, "fallback": False}
        if chart is not None:
            inside = [c for _, cs, _ in self.stack for c in cs] + list(classes)
            if tag in ("svg", "canvas") and "vega-embed" in inside:
                self.charts[chart]["drawn"] = True
            if any(c.startswith("vega-bind") for c in classes):
                self.charts[chart]["bound"] = True
            if f"{CHART_CLASS}-fallback" in classes:
                self.charts[chart]["fallback"] = True
        if tag not in VOID:
            self.stack.append((tag, classes, chart))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


@pytest.fixture(scope="module")
def book_copy(tmp_path_factory) -> Path:
    if not HTML_DIR.is_dir():
        pytest.skip(
            f"no built book at {HTML_DIR}: run `python scripts/build_book.py --profile ci --out _build` "
            "or set BOOK_HTML_DIR"
        )
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run `bash scripts/install_chromium.sh`")
    dest = tmp_path_factory.mktemp("book") / "html"
    shutil.copytree(HTML_DIR, dest)
    return dest


def load_in_chromium(page: Path, tmp: Path) -> tuple[str, list[tuple[str, str]]]:
    """(DOM after scripts ran, [(console message, source URL)]) for ``page``."""
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    console = [(m["msg"], m["src"]) for line in proc.stderr.splitlines() if (m := CONSOLE_RE.search(line))]
    return proc.stdout, console


def test_book_is_built_and_has_charts(book_copy):
    assert (book_copy / "index.html").is_file()
    assert chart_pages(), f"no page of {HTML_DIR} contains a chart (class {CHART_CLASS!r})"


def test_no_page_loads_from_a_cdn(book_copy):
    hits = [
        f"{p.name}: {pat}"
        for p in sorted(book_copy.rglob("*.html"))
        for pat in CDN_PATTERNS
        if pat in p.read_text(errors="replace")
    ]
    assert not hits, f"pages refer to a CDN: {hits}"


@pytest.mark.parametrize("page", chart_pages(), ids=lambda p: p.name)
def test_charts_render_with_vega_embed(page: Path, book_copy: Path, tmp_path: Path):
    copy = book_copy / page.name
    static = copy.read_text()
    expected = {cid: '"bind":{"input"' in body for cid, body in CHART_RE.findall(static)}
    assert expected, f"{page.name}: chart containers found, but none in the expected format"
    copy.write_text(static.replace("<head>", "<head>" + INSTRUMENT, 1))

    dom, console = load_in_chromium(copy, tmp_path)
    parser = ChartDom()
    parser.feed(dom)
    problems = []
    for cid, has_widget in expected.items():
        found = parser.charts.get(cid)
        if found is None:
            problems.append(f"{cid}: container missing from the rendered page")
            continue
        if not found["drawn"]:
            problems.append(f"{cid}: no <svg>/<canvas> from vega-embed (fallback only: {found['fallback']})")
        if found["fallback"]:
            problems.append(f"{cid}: SVG fallback still shown, so vegaEmbed did not finish")
        if has_widget and not found["bound"]:
            problems.append(f"{cid}: its spec binds a widget (slider/dropdown), but none is on the page")

    root = book_copy.as_uri()
    errors = [
        f"{msg}  ({src})"
        for msg, src in console
        if src.startswith(root)
        and (msg.startswith("Uncaught") or msg.startswith(ERROR_PREFIX))
        and not any(b in msg for b in BENIGN)
    ]
    problems += [f"console: {e}" for e in errors]
    assert not problems, f"{page.name}:\n  " + "\n  ".join(problems)
