"""The HTML: tables of cell outputs made numbered MyST tables, Jupyter Book run with warnings as
errors, and the check that no built page loads anything from a CDN."""

from __future__ import annotations

import re
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat

from .config import ANSI_RE, CDN_PATTERNS, BuildError

__all__ = ["html_table_to_markdown", "table_caption", "caption_tables", "build_html", "check_no_cdn"]


class _TableReader(HTMLParser):
    """Rows of the first ``<table>`` of an HTML fragment: ``[(is_header_row, [cell text])]``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[bool, list[str]]] = []
        self.depth = 0  # inside the first table
        self.done = False
        self.section = ""
        self.cell: list[str] | None = None
        self.skip = 0  # inside <style>/<script>

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("style", "script"):
            self.skip += 1
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif self.depth == 1:
            if tag in ("thead", "tbody"):
                self.section = tag
            elif tag == "tr":
                self.rows.append((self.section == "thead", []))
            elif tag in ("td", "th") and self.rows:
                self.cell = []
            elif tag == "br" and self.cell is not None:
                self.cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self.skip = max(0, self.skip - 1)
        if self.done:
            return
        if tag == "table":
            self.depth -= 1
            self.done = self.depth == 0
        elif tag in ("td", "th") and self.cell is not None and self.rows:
            self.rows[-1][1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None and not self.skip:
            self.cell.append(data)


def html_table_to_markdown(html: str) -> str | None:
    """The first table of ``html`` as a Markdown table (None if there is none)."""
    reader = _TableReader()
    reader.feed(html)
    rows = [(h, cells) for h, cells in reader.rows if any(cells)]
    if not rows:
        return None
    head = [cells for h, cells in rows if h]
    body = [cells for h, cells in rows if not h]
    header = head[0] if head else body.pop(0)
    body = head[1:] + body
    width = max(len(r) for r in [header, *body])
    esc = lambda t: t.replace("|", "\\|")  # noqa: E731
    line = lambda cells: "| " + " | ".join(esc(c) for c in cells + [""] * (width - len(cells))) + " |"  # noqa: E731
    return "\n".join([line(header), "| " + " | ".join(["---"] * width) + " |", *(line(r) for r in body)])


def table_caption(html: str) -> str:
    """The text of an HTML table's own ``<caption>`` (a Styler's, e.g. "Setting: T = 20, ..."), or "".

    Why: the page's table becomes a numbered MyST table whose title is the cell's ``caption``
    metadata; the table's own caption, where ``styled`` puts the setting every row shares, would
    otherwise be lost on the way.
    """
    found = re.search(r"<caption[^>]*>(.*?)</caption>", html, flags=re.S | re.I)
    if not found:
        return ""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def caption_tables(nb: Any) -> None:
    """Number and caption the tables of code cells with ``table: {caption, name}`` metadata.

    Sphinx numbers tables, like figures, only when they are table nodes with a title. A code
    cell's DataFrame output is raw HTML, so the build copies its last HTML table into a MyST
    ``{table}`` directive (caption as title, ``name`` as label for ``{numref}``) in a markdown
    cell after the code cell, and hides the raw output (tag ``remove-output``).
    """
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        spec = cell.metadata.get("table") if cell.cell_type == "code" else None
        if not spec:
            continue
        if not isinstance(spec, dict) or not spec.get("caption") or not spec.get("name"):
            raise BuildError(f"cell {cell.source[:60]!r}: metadata `table` needs `caption` and `name`")
        html = [o["data"]["text/html"] for o in cell.get("outputs", [])
                if "text/html" in o.get("data", {}) and "<table" in "".join(o["data"]["text/html"])]
        if not html:
            raise BuildError(f"table {spec['name']!r}: its cell has no HTML table output")
        table = html_table_to_markdown("".join(html[-1]))
        if table is None:
            raise BuildError(f"table {spec['name']!r}: its cell output has an empty table")
        caption = " ".join(f"{spec['caption']} {table_caption(''.join(html[-1]))}".split())
        cells.append(nbformat.v4.new_markdown_cell(f":::{{table}} {caption}\n:name: {spec['name']}\n{table}\n:::"))
        tags = cell.metadata.setdefault("tags", [])
        if "remove-output" not in tags and "remove-cell" not in tags:
            tags.append("remove-output")
    nb.cells = cells


def build_html(stage: Path, log: Path) -> Path:
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(stage), "--builder", "html", "-W", "-n", "--keep-going"]
    print("[html] " + " ".join(cmd), flush=True)
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            sys.stdout.write(line)
        rc = proc.wait()
    if rc != 0:
        text = ANSI_RE.sub("", log.read_text())
        problems = [l for l in text.splitlines() if "WARNING" in l or "ERROR" in l]
        raise BuildError(
            f"jupyter-book build failed (exit {rc}); warnings and errors:\n  "
            + "\n  ".join(problems or ["(none matched; see the log)"])
            + f"\n  full log: {log}"
        )
    index = stage / "_build" / "html" / "index.html"
    if not index.is_file():
        raise BuildError(f"jupyter-book exited 0 but {index} is missing")
    return index


def check_no_cdn(html_dir: Path) -> None:
    hits = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(errors="replace")
        for pat in CDN_PATTERNS:
            i = text.find(pat)
            if i >= 0:
                hits.append(f"{page.relative_to(html_dir)}: {pat!r} in ...{text[max(0, i - 60):i + 60]!r}...")
    if hits:
        raise BuildError("built pages refer to a CDN (they must work offline):\n  " + "\n  ".join(hits))
