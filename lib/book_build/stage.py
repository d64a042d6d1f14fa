"""The staging folder: config, the toc pruned to the pages built, the prose pages, and the instructor
page's course table (pages, exercises, run times of this build)."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from .config import BOOK, PAGES_FILE, REPO, BuildError, Page, Result

__all__ = ["prune_toc", "toc_files", "stage_sources", "machine_description", "page_title", "exercise_titles",
           "course_table", "fill_course_page", "COURSE_SESSIONS", "STUDENT_TIMES", "student_times_table"]


def prune_toc(toc: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """``toc`` without the entries ``drop`` (and without parts/sections left empty)."""

    def prune(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for e in entries:
            if e.get("file") in drop:
                continue
            for key in ("chapters", "sections"):
                if key in e:
                    e[key] = prune(e[key])
                    if not e[key]:
                        del e[key]
            if e.get("file") or e.get("chapters") or e.get("sections"):
                kept.append(e)
        return kept

    if toc.get("root") in drop:
        raise BuildError(f"_toc.yml: the root page {toc['root']!r} cannot be skipped")
    for key in ("parts", "chapters", "sections"):
        if key in toc:
            toc[key] = prune(toc[key])
    return toc


def toc_files(toc: dict[str, Any]) -> set[str]:
    """Every ``file`` named in a jb-book toc, and the root."""
    found = {toc["root"]}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.add(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def stage_sources(stage: Path, all_pages: list[Page], built: list[Page], partial: bool = False) -> None:
    """Fresh ``stage`` with config, pruned toc, and ``book/`` (without pages.yml)."""
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(BOOK, stage, ignore=shutil.ignore_patterns(PAGES_FILE.name, ".ipynb_checkpoints"))

    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config["only_build_toc_files"] = True
    if partial:
        # A partial build (--only) leaves links to the pages it skipped ({doc}`emergence`)
        # unresolved; that is expected there, not a fault of the pages, so those warnings must
        # not fail the -W build. Full builds of a profile keep them fatal (a page dropped from
        # a profile must not be linked from the pages that profile builds).
        sphinx_cfg = config.setdefault("sphinx", {}).setdefault("config", {})
        sphinx_cfg["suppress_warnings"] = sorted(set(sphinx_cfg.get("suppress_warnings") or []) | {"ref.doc"})
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    built_names = {p.name for p in built}
    notebook_names = {p.name for p in all_pages}
    missing = toc_files(toc) - notebook_names - {
        str(p.relative_to(BOOK).with_suffix("")) for p in BOOK.rglob("*") if p.suffix in (".md", ".ipynb")
    }
    if missing:
        raise BuildError(
            f"_toc.yml names {sorted(missing)}, which are neither prose pages in book/ nor "
            f"pages in book/pages.yml"
        )
    unlisted = notebook_names - toc_files(toc)
    if unlisted:
        raise BuildError(f"book/pages.yml pages {sorted(unlisted)} are missing from _toc.yml")
    toc = prune_toc(toc, notebook_names - built_names)
    (stage / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))


COURSE_MARKER = "<!-- build: course-table -->"


COURSE_PAGE = "instructor.md"


def machine_description() -> str:
    """The CPU the build ran on, in words (model name, logical cores, OS)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()}"


def page_title(source: Path, name: str) -> str:
    """The page's first heading, or its name where the heading is filled in when it runs."""
    m = re.search(r"^# (.+)$", source.read_text(), re.M)
    return m.group(1).strip() if m and "{" not in m.group(1) else name


def exercise_titles(source: Path) -> list[str]:
    """The exercise titles of a MyST notebook (``{admonition} Exercise ...`` and ``Build it yourself ...``), in order."""
    pattern = r"\{(?:admonition|exercise)\}\s*((?:Exercise|Build it yourself)\b[^\n]*)"
    return [m.group(1).strip() for m in re.finditer(pattern, source.read_text())]


def course_table(toc: dict[str, Any], pages: list[Page], results: list[Result]) -> str:
    """The instructor page's table: each notebook page of the toc, its exercises, its run time here."""
    by_name = {p.name: p for p in pages}
    seconds = {r.page.name: r.seconds for r in results if r.error is None}
    order = [f for f in _toc_order(toc) if f in by_name]
    rows = []
    seen_templates: set[Path] = set()
    for name in order:
        page = by_name[name]
        if page.template and page.source in seen_templates and name not in seconds:
            continue
        seen_templates.add(page.source)
        title = f"{{doc}}`{name}`" if name in seconds else page_title(page.source, name)
        exercises = "; ".join(exercise_titles(page.source)) or "(none)"
        time_text = f"{seconds[name]:.0f} s" if name in seconds else "not run in this build"
        rows.append(f"| {title} | {exercises.replace('|', chr(92) + '|')} | {time_text} |")
    return (
        ":::{table} The pages of the book, their exercises, and how long each page took to compute "
        "when this copy of the book was built.\n:name: tbl-course-pages\n"
        "| page | exercises | run time |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n:::\n\n"
        f"The run times were measured by the build of this copy of the book: each page executed "
        f"once, from a fresh Python kernel, with the values in its parameter box, on one machine "
        f"({machine_description()}); the build writes them to `timings.json` beside the book. They "
        f"include loading the models from the local cache; the very "
        f"first load of a stand-in model on a machine also de-quantises its weights, once. Plan a "
        f"session with them as what each page costs on a CPU like that one."
    )


def _toc_order(toc: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                order.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return order


#: the instructor page's plan: the pages of each session (as its text assigns them)
COURSE_SESSIONS = {"1": ["schematic", "universal-response"], "2": ["response-matrices", "emergence", "null-calibration"],
                   "3": ["model-sections", "toy-model", "cross-checks"], "take-home": ["performance"]}
STUDENT_MARKER = "<!-- build: student-times -->"
#: the committed record of the student notebooks' run times, written by tests/book/test_student_notebooks.py
#: (``<out>/student-timings.json``) and copied here when the course is re-measured
STUDENT_TIMES = REPO / "book" / "student-timings.json"


def student_times_table(record: dict) -> str:
    """The instructor page's table of the student notebooks' run times, per session, from ``record``
    (``{"machine", "date", "load", "notebooks": {"<page>-student": {"stubs empty": s, "stubs filled": s}}}``)."""
    runs = record.get("notebooks", {})

    def cell(page, variant):
        s = runs.get(f"{page}-student", {}).get(variant)
        return "not measured" if s is None else f"{s:.0f} s"

    lines = [f":::{{table}} Computing time of each session's student notebooks: the course copy, each notebook run "
             f"from a fresh kernel after the course build filled the results cache (what `make notebooks` does), "
             f"on {record.get('machine', 'an unrecorded machine')}, {record.get('date', 'undated')}, load average "
             f"up to {record.get('load', float('nan')):.1f}. \"no stubs\": the page has no build-it-yourself function.",
             ":name: tbl-student-times", "| session | notebook | stubs empty | stubs filled |", "| --- | --- | --- | --- |"]
    totals = []
    for session, pages in COURSE_SESSIONS.items():
        total = 0.0
        for page in pages:
            filled = cell(page, "stubs filled") if "stubs filled" in runs.get(f"{page}-student", {}) else "no stubs"
            lines.append(f"| {session} | {{doc}}`{page}` | {cell(page, 'stubs empty')} | {filled} |")
            total += max(runs.get(f"{page}-student", {}).values(), default=0.0)
        lines.append(f"| {session} | *the session* | *{total / 60:.1f} min* | |")
        if total and session != "take-home":
            totals.append(total / 60)
    lines.append(":::")
    if totals:  # the table's own numbers, in words (they change when the course is re-measured)
        span = f"{min(totals):.1f} to {max(totals):.1f} min" if f"{min(totals):.1f}" != f"{max(totals):.1f}" \
            else f"{min(totals):.1f} min"
        lines += ["", f"On that machine each session's notebooks compute for {span} in all, of its two hours."]
    return "\n".join(lines)


def fill_course_page(stage: Path, pages: list[Page], results: list[Result]) -> None:
    """Put the course table and the student notebooks' run times into the staged instructor page
    (if the book has one)."""
    page = stage / COURSE_PAGE
    if not page.is_file():
        return
    text = page.read_text()
    for marker in (COURSE_MARKER, STUDENT_MARKER):
        if marker not in text:
            raise BuildError(f"book/{COURSE_PAGE} lacks the line {marker!r} where the build puts a table")
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    record = json.loads(STUDENT_TIMES.read_text()) if STUDENT_TIMES.is_file() else {}
    page.write_text(text.replace(COURSE_MARKER, course_table(toc, pages, results))
                    .replace(STUDENT_MARKER, student_times_table(record)))
