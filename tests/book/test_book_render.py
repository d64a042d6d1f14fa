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

REPO = Path(__file__).resolve().parents[2]
HTML_DIR = Path(os.environ.get("BOOK_HTML_DIR", REPO / "_build" / "stage" / "_build" / "html"))
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHART_CLASS = "rr-chart"  # residual_response.pages.plots.CHART_CLASS (not imported: no altair needed)
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


# ---------------------------------------------------------------------------------------
# What a reader reads: no build leftovers, no unrendered LaTeX, no placeholders, no overflow
# ---------------------------------------------------------------------------------------

# Pages of the book with content (Sphinx's own search/index pages have none).
NOT_CONTENT = {"search.html", "genindex.html", "py-modindex.html"}
# Only this page may speak of the build's profiles.
PROFILE_PAGE = "reproducing.html"
PROGRESS_RE = re.compile(r"\d%\||it/s\]|s/it\]|step/s\]|\|[█▏▎▍▌▋▊▉ ]{4,}\|")
PROFILE_RE = re.compile(r"published book|\bci build|\bci[- ]profile|publish[- ]profile|ci-sized|--profile", re.I)
EMPTY_CELL_RE = re.compile(r"\b(nan|NaN|None|NaT|<NA>)\b")
CODE_TAGS = {"pre", "code", "kbd", "samp"}
# Containers whose content the reader unfolds: dropdowns, hidden cells and outputs, toggles.
FOLDED = {"sd-dropdown", "dropdown", "toggle", "tag_hide-cell", "tag_hide-output", "tag_hide-input"}
SKIP_TAGS = {"script", "style", "template"}


def content_pages() -> list[Path]:
    """Every page with an article (not the redirecting index.html, not search or index pages)."""
    if not HTML_DIR.is_dir():
        return []
    return sorted(p for p in HTML_DIR.glob("*.html")
                  if p.name not in NOT_CONTENT and 'class="bd-article"' in p.read_text(errors="replace"))


class ReaderText(HTMLParser):
    """The text a reader sees, in pieces, each with where it sits.

    ``pieces``: ``(text, in_math, in_code, in_table_cell)``; script and style are left out.
    Math is Sphinx's ``class="math"`` element (MathJax typesets it in the browser); code is
    ``<pre>``/``<code>`` and the highlighted blocks.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool, bool, bool]] = []  # tag, skip, math, code, cell
        self.pieces: list[tuple[str, bool, bool, bool]] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        # tables a reader sees at once (not inside a collapsed box or a hidden cell):
        # [id or first header text, has a <caption>]
        self.tables: list[list] = []
        self._hidden: list[str] = []  # tags of open elements that fold their content away

    def _state(self) -> tuple[bool, bool, bool, bool]:
        return self.stack[-1][1:] if self.stack else (False, False, False, False)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        skip, math, code, cell = self._state()
        if self._hidden or tag == "details" or classes & FOLDED:
            self._hidden.append(tag)
        elif tag == "table":
            self.tables.append([dict(attrs).get("id") or "", False])
        elif tag == "caption" and self.tables:
            self.tables[-1][1] = True
        entry = (
            tag,
            skip or tag in SKIP_TAGS,
            math or "math" in classes,
            code or tag in CODE_TAGS or "highlight" in classes,
            cell or tag in ("td", "th"),
        )
        self.stack.append(entry)
        if tag in ("td", "th"):
            self._cell = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if self._hidden and self._hidden[-1] == tag:
            self._hidden.pop()
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        skip, math, code, cell = self._state()
        if skip or not data.strip():
            return
        self.pieces.append((data, math, code, cell))
        if self._cell is not None:
            self._cell.append(data)


def reader_text(page: Path) -> ReaderText:
    parser = ReaderText()
    parser.feed(page.read_text(errors="replace"))
    return parser


def _context(text: str, m: re.Match) -> str:
    return " ".join(text[max(0, m.start() - 50):m.end() + 50].split())


@pytest.mark.parametrize("page", content_pages(), ids=lambda p: p.name)
def test_page_has_no_build_leftovers(page: Path, book_copy: Path):
    """Progress bars, unrendered `$...$`, nan/None in tables, "seed(s)", talk of build profiles."""
    text = reader_text(page)
    problems = []
    for data, math, code, _ in text.pieces:
        for m in PROGRESS_RE.finditer(data):
            problems.append(f"progress-bar text: ...{_context(data, m)}...")
        if "$" in data and not math and not code:
            problems.append(f"'$' outside rendered math: ...{_context(data, re.search(re.escape('$'), data))}...")
        for m in re.finditer(r"seed\(s\)", data):
            problems.append(f"'seed(s)': ...{_context(data, m)}...")
        if page.name != PROFILE_PAGE:
            for m in PROFILE_RE.finditer(data):
                problems.append(f"speaks of build profiles (only {PROFILE_PAGE} may): ...{_context(data, m)}...")
    for cell in text.cells:
        if EMPTY_CELL_RE.search(cell):
            problems.append(f"table cell {cell!r}: nan/None is not something to show a reader")
    for table_id, captioned in text.tables:
        if not captioned:
            problems.append(
                f"table {table_id or '(no id)'} has no caption: number and caption it like a figure "
                "(code cell metadata `table: {name, caption}`, or a MyST {table}/{list-table} with a title)"
            )
    assert not problems, f"{page.name}:\n  " + "\n  ".join(problems[:20])


def test_leftover_checks_catch_what_they_look_for(tmp_path: Path):
    """The checks above on a page made of every fault, and on its clean twin."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<p>cost $N^{a}$ grows</p><pre>40%|████      | 4/10 [00:01&lt;00:02, 3.1it/s]</pre>"
        "<table><tr><td>nan</td><td>None</td></tr></table><p>2 seed(s); the published book differs</p>"
    )
    good = tmp_path / "good.html"
    good.write_text(
        '<p>cost <span class="math">\\(N^{a}\\)</span> grows</p><pre>export X=$PWD</pre>'
        "<table><caption>Table 1</caption><tr><td>1.5</td><td>none of them</td></tr></table><p>2 seeds</p>"
        "<script>var a='$ nan';</script><details><table><tr><td>2</td></tr></table></details>"
        '<div class="cell tag_hide-cell"><div><table><tr><td>3</td></tr></table></div></div>'
    )
    t = reader_text(bad)
    flat = " ".join(d for d, *_ in t.pieces)
    assert PROGRESS_RE.search(flat) and "$" in flat and "seed(s)" in flat and PROFILE_RE.search(flat)
    assert sum(bool(EMPTY_CELL_RE.search(c)) for c in t.cells) == 2
    assert t.tables == [["", False]]
    t = reader_text(good)
    assert not any("$" in d and not m and not c for d, m, c, _ in t.pieces)
    assert not any(PROGRESS_RE.search(d) or PROFILE_RE.search(d) for d, *_ in t.pieces)
    assert not any(EMPTY_CELL_RE.search(c) for c in t.cells)
    assert t.tables == [["", True]]  # the folded tables are not counted


# A script that, once the page has settled, writes what overflows horizontally into the DOM:
# the page itself (wider than the window), and boxes whose content is wider than the box
# (charts, tables, display math: the reader would have to scroll inside them).
OVERFLOW_SCRIPT = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var W = window.innerWidth, out = {width: W, page: document.documentElement.scrollWidth, wide: [], boxes: []};
  var name = function (el) { return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.className && el.className.baseVal === undefined ? '.' + String(el.className).trim().split(/\\s+/).join('.') : ''); };
  var clips = function (el) { for (var p = el.parentElement; p; p = p.parentElement) {
    var o = getComputedStyle(p).overflowX; if (o !== 'visible') return p !== document.body && p !== document.documentElement; }
    return false; };
  document.querySelectorAll('.bd-article *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > W + 1 && !clips(el) && out.wide.length < 8) out.wide.push(name(el) + ' right=' + Math.round(r.right));
  });
  document.querySelectorAll('.rr-chart, .bd-article table, .pst-scrollable-table-container, .bd-article div.output.text_html, .bd-article div.math, mjx-container[display="true"]').forEach(function (el) {
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
      out.boxes.push(name(el) + ' content ' + el.scrollWidth + 'px in ' + el.clientWidth + 'px');
  });
  document.documentElement.setAttribute('data-rr-overflow', JSON.stringify(out));
}, 2500); });</script>"""


def probe(page: Path, tmp: Path, scripts: dict[str, str], *, width: int, budget_ms: int = 8000) -> dict:
    """Load ``page`` with each script of ``scripts`` (attribute -> script) added before ``</body>`` in
    headless chromium at ``width`` px, and return, per attribute, the JSON its script wrote into that
    attribute of the document element."""
    import html
    import json

    copy = page.with_name(f"_probe_{width}_{page.name}")
    copy.write_text(page.read_text().replace("</body>", "".join(scripts.values()) + "</body>", 1))
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={tmp / f'profile-probe-{width}'}", f"--window-size={width},1000",
        f"--virtual-time-budget={budget_ms}", "--dump-dom", copy.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    copy.unlink()
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    out = {}
    for attribute in scripts:
        m = re.search(f'{attribute}="([^"]*)"', proc.stdout)
        assert m, f"{page.name}: the probe did not run (no {attribute} attribute in the DOM)"
        out[attribute] = json.loads(html.unescape(m.group(1)))
    return out


#: width at which the chart probe (below) looks at a chart page; the overflow test at this width
#: reads the same chromium load (a load costs seconds of CPU, and a chart page is loaded once per test)
CHART_WIDTH = 1280
_probed: dict[tuple[Path, int], dict] = {}  # (page, width) -> the probes' results of one load


def _probes(page: Path, tmp: Path, width: int) -> dict:
    """Both probes' results for ``page`` at ``width`` (the chart probe only on a chart page at
    :data:`CHART_WIDTH`), from one chromium load per page and width in this test process."""
    key = (page.resolve(), width)
    if key not in _probed:
        scripts = {"data-rr-overflow": OVERFLOW_SCRIPT}
        if width == CHART_WIDTH and f'class="{CHART_CLASS}"' in page.read_text(errors="replace"):
            scripts["data-rr-charts"] = CHART_PROBE_SCRIPT
        _probed[key] = probe(page, tmp, scripts, width=width, budget_ms=9000 if len(scripts) > 1 else 8000)
    return _probed[key]


def measure_overflow(page: Path, tmp: Path, width: int) -> dict:
    return _probes(page, tmp, width)["data-rr-overflow"]


@pytest.mark.parametrize("width", [800, 1280, 1400])
@pytest.mark.parametrize("page", content_pages(), ids=lambda p: p.name)
def test_page_fits_the_window(page: Path, width: int, book_copy: Path, tmp_path: Path):
    got = measure_overflow(book_copy / page.name, tmp_path, width)
    assert abs(got["width"] - width) <= 20, f"chromium's window is {got['width']} px, not {width}"
    problems = []
    if got["page"] > got["width"] + 1:
        problems.append(f"the page is {got['page']} px wide in a {got['width']} px window; too wide: {got['wide']}")
    problems += [f"scrolls inside its box: {b}" for b in got["boxes"]]
    assert not problems, f"{page.name} at {width} px:\n  " + "\n  ".join(problems)


# A script that, once the charts are drawn, writes into the DOM what of each chart sits outside it:
# legend titles that vega cut to fit its title limit (they end in "…") or that reach past the
# chart's box (cut off by it at this width), and interval marks (rules, error bars) that reach
# beyond the plot area of their panel (the background of the nearest group).
CHART_PROBE_SCRIPT = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var out = [];
  document.querySelectorAll('.rr-chart').forEach(function (chart) {
    var svg = chart.querySelector('.vega-embed svg');
    if (!svg) { out.push(chart.id + ': not drawn'); return; }
    var box = chart.getBoundingClientRect();
    svg.querySelectorAll('.role-legend-title text').forEach(function (t) {
      var r = t.getBoundingClientRect();
      if (/\u2026$/.test(t.textContent))
        out.push(chart.id + ': legend title cut to "' + t.textContent + '"');
      else if (r.right > box.right + 1 || r.left < box.left - 1)
        out.push(chart.id + ': legend title "' + t.textContent + '" reaches ' + Math.round(r.right) +
                 ' px, past the chart box that ends at ' + Math.round(box.right) + ' px');
    });
    var marks = svg.querySelectorAll('g.mark-rule.role-mark line, [aria-roledescription="errorbar"]');
    marks.forEach(function (m) {
      for (var g = m.parentElement; g && g !== svg; g = g.parentElement) {
        if (g.getAttribute('clip-path')) return;  // clipped to its panel: cannot run off it
        var bg = Array.prototype.find.call(g.children, function (c) { return c.classList && c.classList.contains('background'); });
        if (!bg) continue;
        var a = m.getBoundingClientRect(), b = bg.getBoundingClientRect();
        if (a.top < b.top - 1.5 || a.bottom > b.bottom + 1.5 || a.left < b.left - 1.5 || a.right > b.right + 1.5)
          out.push(chart.id + ': ' + (m.getAttribute('aria-roledescription') || 'rule') + ' at ' + Math.round(a.left) + ',' +
                   Math.round(a.top) + '-' + Math.round(a.bottom) + ' outside its plot ' + Math.round(b.left) + '-' +
                   Math.round(b.right) + ',' + Math.round(b.top) + '-' + Math.round(b.bottom));
        return;
      }
    });
  });
  document.documentElement.setAttribute('data-rr-charts', JSON.stringify(out.slice(0, 12)));
}, 3000); });</script>"""


def probe_charts(page: Path, tmp: Path) -> list[str]:
    return _probes(page, tmp, CHART_WIDTH)["data-rr-charts"]


@pytest.mark.parametrize("page", chart_pages(), ids=lambda p: p.name)
def test_legend_titles_and_interval_marks_stay_inside_their_charts(page: Path, book_copy: Path, tmp_path: Path):
    problems = probe_charts(book_copy / page.name, tmp_path)
    assert not problems, f"{page.name} at 1280 px:\n  " + "\n  ".join(problems)


def test_the_chart_probe_finds_a_cut_legend_title_and_a_rule_off_its_plot(tmp_path: Path):
    """The probe above on a page made of both faults (vega's SVG as it draws them)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run `bash scripts/install_chromium.sh`")
    page = tmp_path / "faults.html"
    page.write_text(
        '<html><body><div id="rr-chart-x" class="rr-chart"><div class="vega-embed"><svg width="400" height="300">'
        '<g class="mark-group role-frame root"><g transform="translate(10,10)">'
        '<path class="background" d="M0,0h200v100h-200Z"></path><g>'
        '<g class="mark-rule role-mark"><line transform="translate(50,20)" x2="0" y2="150" stroke="black"></line></g>'
        '<g class="mark-group role-legend"><g class="mark-text role-legend-title"><text>read at the stream afte\u2026</text>'
        '</g></g></g></g></g></svg></div></div></body></html>')
    problems = probe_charts(page, tmp_path)
    assert any("legend title cut" in p for p in problems) and any("outside its plot" in p for p in problems), problems
