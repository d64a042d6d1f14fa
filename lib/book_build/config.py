"""What the build reads: the repository's paths, ``book/pages.yml`` as :class:`Page` s, and its errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["REPO", "BOOK", "PAGES_FILE", "KERNEL", "PROFILES", "BuildError", "UsageError", "Page", "Result",
           "load_pages", "load_costs"]

#: The checkout the build runs in (this package lives in its ``lib/``).
REPO = Path(__file__).resolve().parents[2]


BOOK = REPO / "book"


PAGES_FILE = BOOK / "pages.yml"


KERNEL = "python3"


PROFILES = ("ci", "publish")


NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# Strings that betray a page loading something from a CDN.
CDN_PATTERNS = ("https://cdn", "http://cdn", "jsdelivr", "unpkg", "cdnjs")


ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BuildError(Exception):
    """A failure with a message meant for the person running the build."""


class UsageError(BuildError):
    """Bad input from the person running the build: exit 2 with one ``error:`` line."""


@dataclass
class Page:
    name: str
    source: Path
    params: dict[str, Any]
    timeout: int
    profiles: tuple[str, ...]
    template: bool = False  # expanded from an `each` entry: one source, several pages
    models: tuple[str, ...] = ()  # models the page loads that no parameter names (the page cache's key)
    inputs: tuple[str, ...] = ()  # files (repository paths) the page reads (the page cache's key)
    after: tuple[str, ...] = ()  # pages of the same build that must end before this one starts


@dataclass
class Result:
    page: Page
    seconds: float
    error: str | None = None
    output: Path | None = None
    reused: bool = False  # taken from the page cache (seconds: those of the run that computed it)
    cpu_seconds: float | None = None  # CPU time of the page's kernel, all threads
    executed_on: str | None = None  # when a reused page was computed


def load_pages(profile: str, pages_file: Path = PAGES_FILE) -> list[Page]:
    """All pages of ``pages_file`` (``each`` expanded), with ``profile``'s parameters."""
    spec = yaml.safe_load(pages_file.read_text()) or {}
    default_timeout = int((spec.get("defaults") or {}).get("timeout", 1200))
    pages: list[Page] = []
    for i, entry in enumerate(spec.get("pages") or []):
        where = f"{pages_file.name}: pages[{i}]"
        unknown = set(entry) - {"name", "source", "params", "profiles", "timeout", "each", "models", "inputs",
                                 "after"}
        if unknown or "name" not in entry or "source" not in entry:
            raise BuildError(f"{where}: needs name and source; unknown keys {sorted(unknown)}")
        params = entry.get("params") or {}
        if set(params) - {"all", *PROFILES}:
            raise BuildError(f"{where}: params keys must be among all, {', '.join(PROFILES)}")
        base = {**(params.get("all") or {}), **(params.get(profile) or {})}
        profiles = tuple(entry.get("profiles") or PROFILES)
        if set(profiles) - set(PROFILES):
            raise BuildError(f"{where}: unknown profile in {profiles}")
        after = entry.get("after") or []
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise BuildError(f"{where}: after must be a list of page names, got {after!r}")
        for item in entry.get("each") or [None]:
            try:
                name = entry["name"].format(**(item or {}))
            except KeyError as exc:
                raise BuildError(f"{where}: name {entry['name']!r} uses {exc}, not in `each`")
            pages.append(
                Page(
                    name=name,
                    source=(REPO / entry["source"]).resolve(),
                    params={**base, **(item or {})},
                    timeout=int(entry.get("timeout", default_timeout)),
                    profiles=profiles,
                    template=bool(entry.get("each")),
                    models=tuple(entry.get("models") or ()),
                    inputs=tuple(entry.get("inputs") or ()),
                    after=tuple(after),
                )
            )
    names = [p.name for p in pages]
    for p in pages:
        if not NAME_RE.match(p.name):
            raise BuildError(f"{pages_file.name}: page name {p.name!r} must match {NAME_RE.pattern}")
        if names.count(p.name) > 1:
            raise BuildError(f"{pages_file.name}: page name {p.name!r} is used more than once")
        if not p.source.is_file():
            raise BuildError(f"{pages_file.name}: {p.name}: source {p.source} does not exist")
        if (BOOK / f"{p.name}.md").exists() or (BOOK / f"{p.name}.ipynb").exists():
            raise BuildError(f"{pages_file.name}: {p.name} clashes with a prose page in book/")
    _check_after(pages, pages_file.name)
    return pages


def _check_after(pages: list[Page], where: str) -> None:
    """Refuse an ``after:`` that names no page, the page itself, or closes a cycle (the build could never start it)."""
    names = {p.name for p in pages}
    for p in pages:
        unknown = [a for a in p.after if a not in names]
        if unknown or p.name in p.after:
            raise BuildError(f"{where}: {p.name}: after names {unknown or [p.name]}, which must be other pages of "
                             f"the file ({', '.join(sorted(names))})")
    after = {p.name: set(p.after) for p in pages}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise BuildError(f"{where}: after makes a cycle: {' -> '.join(path + [name])}")
        state[name] = 1
        for a in sorted(after[name]):
            visit(a, path + [name])
        state[name] = 2

    for name in sorted(after):
        visit(name, [])


def load_costs(pages_file: Path = PAGES_FILE) -> dict[str, float]:
    """``costs:`` of ``pages_file``: page name -> rough seconds, to start the longest pages first."""
    costs = (yaml.safe_load(pages_file.read_text()) or {}).get("costs") or {}
    if not isinstance(costs, dict) or not all(isinstance(v, (int, float)) for v in costs.values()):
        raise BuildError(f"{pages_file.name}: costs must map page names to seconds")
    return {str(k): float(v) for k, v in costs.items()}
