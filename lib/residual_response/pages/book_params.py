"""The parameters another page of the book runs with, read from ``book/pages.yml`` and its notebook.

Why: a page that quotes what another page computed (the paper page quotes the section map and the
ablations) must ask the stored results the same question, with the same arguments, or it would
compute something else under the same name. Reading them from the file the build reads means the
two pages cannot drift apart; the build's ``after:`` makes the quoting page run after the other one.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

__all__ = ["page_arguments", "notebook_defaults"]


def notebook_defaults(source: str | Path) -> dict[str, Any]:
    """The values of the ``parameters``-tagged cell of the MyST notebook ``source``, ``{name: value}``.

    Only plain assignments of literals count (what papermill can override); anything else in the
    cell is left out.
    """
    import jupytext

    nb = jupytext.read(str(source))
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{source} has no cell tagged `parameters`")
    out = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def page_arguments(page: str, profile: str) -> dict[str, Any]:
    """The parameters page ``page`` runs with in the build's ``profile`` (``"ci"`` or ``"publish"``):
    its notebook's defaults, overridden by the page's ``params`` in ``book/pages.yml``, as papermill
    gives them (``--param`` overrides of one build excepted).

    Raises:
        ValueError: ``profile`` is not a profile of the build, or ``page`` is not a page of it.
    """
    from book_build.config import PROFILES, load_pages

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    pages = {p.name: p for p in load_pages(profile)}
    if page not in pages:
        raise ValueError(f"page must be a page of book/pages.yml ({', '.join(sorted(pages))}), got {page!r}")
    p = pages[page]
    if profile not in p.profiles:
        raise ValueError(f"page {page!r} is not built in the {profile} profile (its profiles: {', '.join(p.profiles)})")
    return {**notebook_defaults(p.source), **p.params}
