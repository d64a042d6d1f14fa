#!/usr/bin/env python
"""Build the book: execute its notebooks with papermill, then run Jupyter Book on the result.

    python scripts/build_book.py --profile {ci,publish} --out _build [--only NAME ...] [--skip-html]

Why a staging folder: an executed ``.ipynb`` beside its MyST ``.md`` source makes Sphinx
warn "multiple files found for the document", which fails a ``-W`` build. So the build
copies ``_config.yml``, ``_toc.yml`` and the prose/static files of ``book/`` into
``<out>/stage``, converts each notebook of ``book/pages.yml`` with jupytext, executes it with
papermill (with the profile's parameters, working folder = the stage) into
``<out>/stage/<name>.ipynb``, writes the offline vega bundle into ``<out>/stage/_static/``,
and runs ``jupyter-book build <out>/stage -W -n --keep-going`` with notebook execution off.

Result: ``<out>/stage/_build/html/index.html``; per-notebook times in ``<out>/timings.json``.
Exits non-zero, with one message naming the notebook and the failing cell's error, if any
notebook fails; non-zero as well on any Sphinx warning, or if a built page refers to a CDN.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Prefer this environment's kernelspecs over ~/.local ones: the kernel that runs must be
# the one whose python has residual_response installed.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")

import jupytext  # noqa: E402
import nbformat  # noqa: E402
import papermill  # noqa: E402
import yaml  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
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


@dataclass
class Page:
    name: str
    source: Path
    params: dict[str, Any]
    timeout: int
    profiles: tuple[str, ...]
    template: bool = False  # expanded from an `each` entry: one source, several pages


@dataclass
class Result:
    page: Page
    seconds: float
    error: str | None = None
    output: Path | None = None


# ---------------------------------------------------------------------------------------
# Reading book/pages.yml
# ---------------------------------------------------------------------------------------


def load_pages(profile: str, pages_file: Path = PAGES_FILE) -> list[Page]:
    """All pages of ``pages_file`` (``each`` expanded), with ``profile``'s parameters."""
    spec = yaml.safe_load(pages_file.read_text()) or {}
    default_timeout = int((spec.get("defaults") or {}).get("timeout", 1200))
    pages: list[Page] = []
    for i, entry in enumerate(spec.get("pages") or []):
        where = f"{pages_file.name}: pages[{i}]"
        unknown = set(entry) - {"name", "source", "params", "profiles", "timeout", "each"}
        if unknown or "name" not in entry or "source" not in entry:
            raise BuildError(f"{where}: needs name and source; unknown keys {sorted(unknown)}")
        params = entry.get("params") or {}
        if set(params) - {"all", *PROFILES}:
            raise BuildError(f"{where}: params keys must be among all, {', '.join(PROFILES)}")
        base = {**(params.get("all") or {}), **(params.get(profile) or {})}
        profiles = tuple(entry.get("profiles") or PROFILES)
        if set(profiles) - set(PROFILES):
            raise BuildError(f"{where}: unknown profile in {profiles}")
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
    return pages


# ---------------------------------------------------------------------------------------
# Staging
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Executing notebooks
# ---------------------------------------------------------------------------------------


def check_kernel() -> str:
    """Make sure kernel ``python3`` runs this interpreter; install it here if it does not."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def kernel_python() -> str | None:
        try:
            argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
        except NoSuchKernel:
            return None
        # jupyter_client runs a bare "python"/"python3" as sys.executable (this interpreter).
        if argv0 in ("python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]):
            return sys.executable
        return argv0

    def same(a: str | None) -> bool:
        return a is not None and Path(a).absolute() == Path(sys.executable).absolute()

    if not same(kernel_python()):
        print(f"kernel {KERNEL!r} does not run {sys.executable}; installing it into {sys.prefix}")
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
            check=True,
        )
        if not same(kernel_python()):
            raise BuildError(
                f"kernel {KERNEL!r} still runs {kernel_python()}, not {sys.executable}; "
                "remove the other kernelspec (jupyter kernelspec list)"
            )
    return sys.executable


def check_parameters(notebook: Path, page: Page) -> None:
    """Refuse parameters that the notebook's ``parameters`` cell does not define."""
    nb = nbformat.read(notebook, as_version=4)
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        if page.params:
            raise BuildError(
                f"notebook {page.name!r} ({page.source.relative_to(REPO)}) has no cell tagged "
                f"`parameters`, but book/pages.yml gives it {sorted(page.params)}"
            )
        return
    declared = set(papermill.inspect_notebook(str(notebook)))
    unknown = set(page.params) - declared
    if unknown:
        raise BuildError(
            f"notebook {page.name!r} ({page.source.relative_to(REPO)}): parameters "
            f"{sorted(unknown)} from book/pages.yml are not in its `parameters` cell "
            f"(which defines {sorted(declared)})"
        )


def describe_failure(page: Page, exc: BaseException, output: Path) -> str:
    head = f"notebook {page.name!r} ({page.source.relative_to(REPO)}, parameters {page.params})"
    if isinstance(exc, PapermillExecutionError):
        src = "\n".join("    | " + line for line in exc.source.strip().splitlines()[:12])
        tb = ANSI_RE.sub("", "\n".join(exc.traceback or []))
        tb_tail = "\n".join("    " + line for line in tb.strip().splitlines()[-15:])
        return (
            f"{head} failed in cell {exc.cell_index} (execution count {exc.exec_count}):\n"
            f"{src}\n  {exc.ename}: {exc.evalue}\n  traceback (end):\n{tb_tail}\n"
            f"  the executed notebook with all outputs: {output}"
        )
    return f"{head} failed: {type(exc).__name__}: {ANSI_RE.sub('', str(exc)).strip()}"


def tag_injected_parameters(path: Path) -> None:
    """Hide papermill's injected-parameters cell in the book (tag it ``remove-cell``)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


# A MyST target line "(label)=" and the references {numref}`label`, {ref}`text <label>`.
TARGET_RE = r"^\((?P<name>{names})\)=[ \t]*$"
ROLE_RE = r"(\{{(?:numref|ref)\}}`(?:[^`]*<)?)(?P<name>{names})(>?`)"


def localise_labels(path: Path, suffix: str) -> None:
    """Make the labels of one page of a template unique in the book.

    Sphinx labels are global: a template executed once per model would define the same
    figure names (``mystnb: figure: name``) and ``(label)=`` targets on every page, and the
    ``-W`` build fails on "duplicate label". Each name gets ``-<suffix>`` (the page name)
    appended, and the page's own ``{numref}``/``{ref}`` references to it are rewritten to
    match, so the page reads the same.
    """
    nb = nbformat.read(path, as_version=4)
    names: set[str] = set()
    for cell in nb.cells:
        fig = (cell.metadata.get("mystnb") or {}).get("figure") or {}
        if fig.get("name"):
            names.add(str(fig["name"]))
        if cell.cell_type == "markdown":
            names.update(m.group("name") for m in re.finditer(TARGET_RE.format(names=r"[\w.:-]+"), cell.source, re.M))
    if not names:
        return
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    target, role = re.compile(TARGET_RE.format(names=alt), re.M), re.compile(ROLE_RE.format(names=alt))
    for cell in nb.cells:
        fig = (cell.metadata.get("mystnb") or {}).get("figure") or {}
        if fig.get("name"):
            fig["name"] = f"{fig['name']}-{suffix}"
        if cell.cell_type == "markdown":
            text = target.sub(lambda m: f"({m.group('name')}-{suffix})=", cell.source)
            cell.source = role.sub(lambda m: f"{m.group(1)}{m.group('name')}-{suffix}{m.group(3)}", text)
    nbformat.write(nb, path)


def execute(page: Page, src_dir: Path, stage: Path) -> Result:
    src_dir.mkdir(parents=True, exist_ok=True)  # jupytext/papermill do not create folders
    source_ipynb = src_dir / f"{page.name}.ipynb"
    nbformat.write(jupytext.read(page.source), source_ipynb)
    check_parameters(source_ipynb, page)
    output = stage / f"{page.name}.ipynb"
    print(f"[execute] {page.name}  <- {page.source.relative_to(REPO)}  {page.params}", flush=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source_ipynb),
            str(output),
            parameters=page.params,
            kernel_name=KERNEL,
            cwd=str(stage),
            progress_bar=False,
            log_output=False,
            execution_timeout=page.timeout,
        )
    except Exception as exc:  # every failure is reported with the notebook's name
        return Result(page, time.perf_counter() - start, describe_failure(page, exc, output), output)
    seconds = time.perf_counter() - start
    tag_injected_parameters(output)
    if page.template:
        localise_labels(output, page.name)
    print(f"[execute] {page.name}  done in {seconds:.1f} s", flush=True)
    return Result(page, seconds, None, output)


# ---------------------------------------------------------------------------------------
# Building and checking the HTML
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("--out", type=Path, default=Path("_build"))
    parser.add_argument("--only", nargs="+", metavar="NAME", help="build only these notebook pages")
    parser.add_argument("--skip-html", action="store_true", help="execute notebooks, skip jupyter-book")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    out = args.out.resolve()
    stage, src_dir = out / "stage", out / "src"
    results: list[Result] = []
    index: Path | None = None
    html_seconds: float | None = None
    try:
        all_pages = load_pages(args.profile)
        pages = [p for p in all_pages if args.profile in p.profiles]
        if args.only:
            unknown = set(args.only) - {p.name for p in all_pages}
            if unknown:
                raise BuildError(f"--only: unknown pages {sorted(unknown)}; known: {[p.name for p in all_pages]}")
            pages = [p for p in pages if p.name in args.only]
        skipped = [p.name for p in all_pages if p not in pages]
        if skipped:
            print(f"[stage] not built in this run (dropped from the toc): {skipped}")
        stage_sources(stage, all_pages, pages, partial=bool(args.only))
        print(f"[stage] {stage}  (kernel {KERNEL!r} runs {check_kernel()})", flush=True)

        for page in pages:
            results.append(execute(page, src_dir, stage))
            if results[-1].error and args.fail_fast:
                break
        failures = [r for r in results if r.error]

        if failures:
            raise BuildError(
                f"{len(failures)} of {len(pages)} notebook(s) failed; no HTML was built.\n\n"
                + "\n\n".join(r.error for r in failures if r.error)
            )

        sys.path.insert(0, str(REPO / "lib"))  # this checkout's plots.py, whatever the cwd
        from residual_response.plots import write_vega_bundle

        bundle = write_vega_bundle(stage / "_static")
        print(f"[stage] vega bundle: {bundle} ({bundle.stat().st_size / 1e6:.1f} MB)")
        if not args.skip_html:
            th = time.perf_counter()
            index = build_html(stage, out / "jupyter-book.log")
            html_seconds = time.perf_counter() - th
            check_no_cdn(index.parent)
    except BuildError as exc:
        print(f"\nbuild_book: FAILED\n{exc}", file=sys.stderr)
        return 1
    finally:
        write_timings(out, args.profile, results, html_seconds, t0)

    print("\nnotebook timings:")
    for r in results:
        print(f"  {r.page.name:<40} {r.seconds:8.1f} s")
    if html_seconds is not None:
        print(f"  {'(jupyter-book build)':<40} {html_seconds:8.1f} s")
    print(f"  {'(total)':<40} {time.perf_counter() - t0:8.1f} s")
    print(f"timings: {out / 'timings.json'}")
    print(f"book: {index}" if index else f"executed notebooks: {stage} (HTML skipped)")
    return 0


def write_timings(out: Path, profile: str, results: list[Result], html_seconds: float | None, t0: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "profile": profile,
        "notebooks": {
            r.page.name: {"seconds": round(r.seconds, 2), "ok": r.error is None, "params": r.page.params}
            for r in results
        },
        "html_build_seconds": None if html_seconds is None else round(html_seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "timings.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
