"""MyST markup as plain Markdown, for the student notebooks: what Jupyter shows as it is written.

Jupyter renders Markdown, not MyST: a ``{term}`kick``` or an ``{admonition}`` block would reach a
student as raw text. :func:`plain_markdown` turns every role and directive the book's notebooks
use into Markdown that reads the same:

- ``{term}`` becomes a link to the term on the glossary page, ``{doc}`` a link to the page (with
  its title), ``{ref}``/``{numref}``/``{eq}`` a link to the label on its page, ``{cite}`` the
  authors and year linked to the bibliography, ``{download}`` and ``{math}`` their text;
- ``{glue:text}`` and ``{glue}`` become the value the executed page glued (with the role's format
  spec, as myst-nb formats it), a ``{glue:md}`` block the glued Markdown;
- an admonition becomes a quoted block headed by its title in bold; a dropdown (a hint, an answer)
  becomes an HTML ``<details>`` block, which Jupyter shows folded under its title, as the book does;
- ``(label)=`` targets and the labels of display equations are dropped;
- the first inline code that names a library function links to its entry on the reference page
  (:mod:`.apiref`), as on the book's own pages.

Links are relative to the student notebooks' folder, ``_static/student/`` of the built HTML
(:data:`LINK_BASE`), so that they open the book's own pages beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import BOOK, REPO

__all__ = ["LINK_BASE", "BookIndex", "book_index", "plain_markdown", "details", "glue_values", "MYST_LEFTOVER_RE"]

#: from ``_static/student/<page>-student.ipynb`` to the HTML pages of the book
LINK_BASE = "../../"

#: a MyST role or directive left in Markdown (what a student notebook must not contain)
MYST_LEFTOVER_RE = re.compile(r"\{[a-z][a-z:-]*\}`|^[ \t]*(?:`{3,}|:{3,})\{[a-z]", re.M)

ROLE_RE = re.compile(r"\{(?P<role>[a-z][a-z:-]*)\}`(?P<body>[^`]*)`")
TITLED_RE = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
DIRECTIVE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[^}]+)\}[ \t]*(?P<arg>.*)$")
OPTION_RE = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
TARGET_LINE_RE = re.compile(r"^\([\w.:-]+\)=[ \t]*\n?", re.M)
EQ_LABEL_RE = re.compile(r"^(\$\$)[ \t]*\((?:eq-[\w-]+)\)[ \t]*$", re.M)

#: admonition kinds that are directives of their own, with the title they show
ADMONITIONS = {"note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
               "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
               "seealso": "See also"}


@dataclass
class BookIndex:
    """Where the book's labels, pages and references live, for the links of a student notebook.

    Attributes:
        titles: page name -> title (from ``_toc.yml`` where it names one, else the page's heading).
        labels: label -> page name (targets, figure and table names, equation labels).
        templates: the labels of each template source, whose pages suffix them with ``-<page>``.
        citations: bibtex key -> ``(authors, year)`` as the book's author-year style shows them.
    """

    titles: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    template_labels: set[str] = field(default_factory=set)
    citations: dict[str, tuple[str, str]] = field(default_factory=dict)


LABEL_PATTERNS = (
    re.compile(r"^\(([\w.:-]+)\)=[ \t]*$", re.M),  # (label)=
    re.compile(r"^[ \t]*name:[ \t]*((?:fig|tbl)-[\w-]+)[ \t]*$", re.M),  # mystnb figure / table metadata
    re.compile(r"^[ \t]*:name:[ \t]*([\w-]+)[ \t]*$", re.M),  # a directive's :name:
    re.compile(r"^\$\$[ \t]*\((eq-[\w-]+)\)[ \t]*$", re.M),  # display equation
)


def _labels_of(text: str) -> set[str]:
    return {m.group(1) for pat in LABEL_PATTERNS for m in pat.finditer(text)}


def _heading(text: str) -> str | None:
    m = re.search(r"^# (.+)$", text, re.M)
    return m.group(1).strip() if m else None


def _authors(field_text: str) -> str:
    names = [n.strip() for n in re.split(r"\s+and\s+", field_text) if n.strip()]
    last = [re.sub(r"[{}\\'~`\"]", "", n.split(",")[0]).strip() for n in names]
    last = [n.replace("v{c}", "c") for n in last]
    if len(last) > 2 or "others" in last:
        return f"{last[0]} et al."
    return " and ".join(last)


def _citations(bib: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for m in re.finditer(r"@\w+\{(?P<key>[^,]+),(?P<body>.*?)\n\}", bib.read_text(), re.S):
        body = m.group("body")
        author = re.search(r"author\s*=\s*\{(.*?)\},?\s*$", body, re.M)
        year = re.search(r"year\s*=\s*\{?(\d{4})", body)
        out[m.group("key").strip()] = (_authors(author.group(1)) if author else m.group("key"),
                                       year.group(1) if year else "")
    return out


def book_index(repo: Path = REPO) -> BookIndex:
    """The :class:`BookIndex` of the checkout: ``book/*.md``, the notebooks of ``book/pages.yml``, ``_toc.yml``."""
    from .config import load_pages

    index = BookIndex()
    for page in sorted((repo / "book").glob("*.md")):
        text = page.read_text()
        index.titles[page.stem] = _heading(text) or page.stem
        for label in _labels_of(text):
            index.labels.setdefault(label, page.stem)
    seen: set[Path] = set()
    for page in load_pages("publish"):
        text = page.source.read_text()
        title = _heading(text)
        index.titles[page.name] = title if title and "{" not in title else page.name
        if page.template:
            index.template_labels |= _labels_of(text)
        elif page.source not in seen:
            for label in _labels_of(text):
                index.labels.setdefault(label, page.name)
        seen.add(page.source)
    toc = yaml.safe_load((repo / "_toc.yml").read_text())

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node and "title" in node:
                index.titles[node["file"]] = node["title"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    bib = BOOK / "references.bib"
    if bib.is_file():
        index.citations = _citations(bib)
    return index


def glue_values(nb: Any) -> dict[str, dict[str, str]]:
    """``{name: {mime type: data}}`` of every value an executed notebook glued (myst-nb's ``glue``)."""
    out: dict[str, dict[str, str]] = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            meta = (o.get("metadata") or {}).get("scrapbook") or {}
            if "name" in meta:
                prefix = meta.get("mime_prefix", "")
                out[meta["name"]] = {k.removeprefix(prefix): v for k, v in (o.get("data") or {}).items()}
    return out


#: inline code in Markdown, not already the text of a link
CODE_RE = re.compile(r"(?<![\[`])`(?P<code>[^`\n]+)`(?![`\]])")


class _Converter:
    def __init__(self, index: BookIndex, page: str, glue: dict[str, dict[str, str]], template: bool,
                 linked: set[str] | None):
        self.index, self.page, self.glue, self.template = index, page, glue, template
        self.linked = linked

    def link_code(self, text: str) -> str:
        """The first inline code that names a library function (of the notebook) links to its reference entry."""
        from .apiref import API_PAGE, link_target

        def link(m: re.Match) -> str:
            target = link_target(m.group("code"))
            if target is None or target[1] in self.linked:
                return m.group(0)
            self.linked.add(target[1])
            anchor = ("module-" if target[0] == "mod" else "") + target[1]
            return f"[{m.group(0)}]({self.url(API_PAGE, anchor)})"

        out, fenced = [], False
        for line in text.split("\n"):
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            out.append(line if fenced else CODE_RE.sub(link, line))
        return "\n".join(out)

    # links ---------------------------------------------------------------------------------

    def url(self, page: str, anchor: str = "") -> str:
        return f"{LINK_BASE}{page}.html" + (f"#{anchor}" if anchor else "")

    def label_url(self, label: str) -> str | None:
        if label in self.index.template_labels and self.template:
            return self.url(self.page, f"{label}-{self.page}")
        page = self.index.labels.get(label)
        return None if page is None else self.url(page, label)

    @staticmethod
    def term_anchor(term: str) -> str:
        return "term-" + re.sub(r"[^\w]+", "-", term.strip()).strip("-")

    # roles ---------------------------------------------------------------------------------

    def role(self, m: re.Match) -> str:
        role, body = m.group("role"), m.group("body")
        titled = TITLED_RE.match(body)
        text, target = (titled.group("text"), titled.group("target")) if titled else (body, body)
        if role == "term":
            return f"[{text}]({self.url('notation', self.term_anchor(target))})"
        if role == "doc":
            name = target.removesuffix(".md").removesuffix(".ipynb")
            shown = text if titled else self.index.titles.get(name, name)
            return f"[{shown}]({self.url(name)})"
        if role in ("ref", "numref"):
            url = self.label_url(target)
            if titled:
                shown = text.replace("%s", "").strip()
            elif target.startswith("fig-"):
                shown = "this figure"
            elif target.startswith("tbl-"):
                shown = "this table"
            else:
                shown = "this section"
            return f"[{shown}]({url})" if url else shown
        if role == "eq":
            page = self.index.labels.get(target)
            where = "" if page in (None, self.page) else f" on the {page.replace('-', ' ')} page"
            shown = f"equation ({target.removeprefix('eq-')}){where}"
            return f"[{shown}]({self.url(page, 'equation-' + target)})" if page else shown
        if role in ("cite", "cite:p", "cite:t", "cite:ps", "cite:ts"):
            parts = []
            for key in [k.strip() for k in body.split(",") if k.strip()]:
                authors, year = self.index.citations.get(key, (key, ""))
                shown = f"{authors} ({year})" if role.startswith("cite:t") else f"{authors}, {year}"
                parts.append(f"[{shown}]({self.url('bibliography')})")
            return "; ".join(parts) if role.startswith("cite:t") else "(" + "; ".join(parts) + ")"
        if role in ("glue", "glue:text", "glue:any"):
            name, _, spec = body.partition(":")
            return self.glue_text(name.strip(), spec.strip())
        if role == "math":
            return f"${body}$"
        if role == "download":
            return text
        if role.startswith("py:"):
            return f"`{text}`"
        return text  # an unknown role: its text

    def glue_text(self, name: str, spec: str) -> str:
        from myst_nb.ext.glue.roles import format_plain_text

        data = self.glue.get(name)
        if data is None:
            return f"`{name}` (computed in this notebook)"
        if "text/markdown" in data and not spec:
            return self.convert(data["text/markdown"]).strip()
        plain = data.get("text/plain", "")
        try:
            return format_plain_text(plain, spec)
        except (ValueError, TypeError):
            return plain

    # directives ----------------------------------------------------------------------------

    def directive(self, name: str, arg: str, options: dict[str, str], body: str) -> str:
        name = name.strip()
        if name in ("glue:md", "glue:markdown"):
            data = self.glue.get(arg.strip(), {})
            text = data.get("text/markdown", data.get("text/plain", ""))
            return self.convert(text)
        if name == "math":
            return f"$$\n{body.strip()}\n$$"
        if name in ("code-block", "code"):
            return f"```{arg.strip()}\n{body.rstrip()}\n```"
        if name == "dropdown":
            return details(self.convert(arg.strip() or "Hint").strip(), self.convert(body).strip())
        if name == "admonition":
            title = arg.strip()
        elif name in ADMONITIONS:
            title = ADMONITIONS[name] + (f": {arg.strip()}" if arg.strip() else "")
        else:
            title = arg.strip()
        inner = self.convert(body).strip()
        lines = ([f"**{self.convert(title).strip()}**", ""] if title else []) + inner.splitlines()
        return "\n".join(">" + (" " + line if line.strip() else "") for line in lines)

    # the text ------------------------------------------------------------------------------

    def convert(self, text: str) -> str:
        lines = text.splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            m = DIRECTIVE_RE.match(lines[i])
            if not m:
                out.append(lines[i])
                i += 1
                continue
            fence, indent = m.group("fence"), m.group("indent")
            j = i + 1
            options: dict[str, str] = {}
            while j < len(lines) and (om := OPTION_RE.match(lines[j])):
                options[om.group("key")] = om.group("value")
                j += 1
            body_start = j
            while j < len(lines) and lines[j].strip() != fence:
                j += 1
            body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[body_start:j])
            block = self.directive(m.group("name"), m.group("arg"), options, body)
            out.extend(indent + line if line else line for line in block.splitlines())
            i = j + 1
        text = "\n".join(out) + ("\n" if text.endswith("\n") else "")
        text = TARGET_LINE_RE.sub("", text)
        text = EQ_LABEL_RE.sub(r"\1", text)
        text = ROLE_RE.sub(self.role, text)
        return text if self.linked is None else self.link_code(text)


def details(title: str, body: str) -> str:
    """A folded block: Jupyter shows ``title`` and opens ``body`` on a click (a hint must not be read
    before it is wanted). Markdown is not rendered inside ``<summary>``, so inline code becomes
    ``<code>`` and a link ``<a>``; the blank lines around ``body`` let Jupyter render it as Markdown."""
    title = re.sub(r"`([^`]*)`", r"<code>\1</code>", title)
    title = re.sub(r"\[([^\]]*)\]\(([^)\s]*)\)", r'<a href="\2">\1</a>', title)
    return f"<details><summary>{title}</summary>\n\n{body}\n\n</details>"


def plain_markdown(text: str, *, index: BookIndex, page: str, glue: dict[str, dict[str, str]] | None = None,
                   template: bool = False, linked: set[str] | None = None) -> str:
    """``text`` (a MyST Markdown cell of page ``page``) as plain Markdown (module docstring).

    Args:
        index: where labels, titles and citations live (:func:`book_index`).
        glue: the values the executed page glued (:func:`glue_values`); a missing one is named.
        template: the page is one of a template's pages, whose labels carry ``-<page>``.
        linked: the library objects already linked in this notebook; the first inline code naming
            another one links to its entry on the reference page (and joins the set). ``None``:
            no such links.
    """
    return _Converter(index, page, glue or {}, template, linked).convert(text)
