#!/usr/bin/env python
"""Build the book: execute its notebooks with papermill, then run Jupyter Book on the result.

    python scripts/build_book.py --profile {ci,publish} --out _build [--only PAGE ...] \
        [--param KEY=YAML ...] [--skip-html]

``--only`` builds the named pages (prose pages are always staged); ``--param KEY=YAML`` overrides
one parameter of every page built that declares it, its value parsed as YAML (``--param T=20``,
``--param "models=[random-llama, toy-gpt2]"``). A key that no page built declares in its
``parameters`` cell stops the build before anything runs (exit 2, one ``error:`` line naming
the pages' parameters); so does a value a page itself rejects (its parameter checks raise a
``ValueError``, shown as that one sentence).

Why a staging folder: an executed ``.ipynb`` beside its MyST ``.md`` source makes Sphinx
warn "multiple files found for the document", which fails a ``-W`` build. So the build
copies ``_config.yml``, ``_toc.yml`` and the prose/static files of ``book/`` into
``<out>/stage``, converts each notebook of ``book/pages.yml`` with jupytext, executes it with
papermill (with the profile's parameters, working folder = the stage) into
``<out>/stage/<name>.ipynb``, writes the offline vega bundle into ``<out>/stage/_static/``,
and runs ``jupyter-book build <out>/stage -W -n --keep-going`` with notebook execution off.

Each executed page also gets, right after papermill's (hidden) injected-parameters cell, a
markdown cell with a collapsed box listing every parameter the page ran with, and a link to its
exercise notebook ``_static/student/<page>-student.ipynb`` (written by the build: the source
notebook with these parameters, no outputs, and the exercise solutions removed; see
``student_notebook``). Code cells with a ``table: {caption, name}`` metadata entry get their
HTML table output turned into a numbered, captioned MyST ``{table}`` (see ``caption_tables``).
The prose page ``instructor.md`` gets the table of pages, exercises and measured run times of
this build in place of its ``<!-- build: course-table -->`` line.

Result: ``<out>/stage/_build/html/index.html``; per-notebook times in ``<out>/timings.json``.
Exits 2 with one ``error:`` line on bad input (an unknown page or parameter, a malformed
``--param``, a parameter value a page rejects); 1, with one message naming the notebook and the
failing cell's error, if any notebook fails; 1 as well on any Sphinx warning, or if a built
page refers to a CDN.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
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


def declared_parameters(notebook: Path) -> dict[str, str]:
    """The notebook's parameters, in order, each with its default as source text ({} if none)."""
    nb = nbformat.read(notebook, as_version=4)
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        return {}
    return {name: str(info.get("default", "")) for name, info in papermill.inspect_notebook(str(notebook)).items()}


def check_parameters(notebook: Path, page: Page) -> None:
    """Refuse parameters (of book/pages.yml) that the notebook's ``parameters`` cell does not define."""
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


class _ParamLoader(yaml.SafeLoader):
    """YAML as a person writes it on a command line: ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``)."""


_ParamLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["T=20", "models=[a, b]"]`` -> ``{"T": 20, "models": ["a", "b"]}`` (values parsed as YAML)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE with KEY a parameter name, e.g. --param T=20")
        try:
            overrides[key] = yaml.load(text, Loader=_ParamLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UsageError(f"--param {key}: the value {text!r} is not valid YAML ({first})") from None
    return overrides


def check_overrides(declared: dict[str, dict[str, str]], overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The overrides each page takes: ``{page: {key: value}}``.

    ``declared`` maps each page built to its parameters. A key goes to every page that declares
    it (``--only emergence model-sections --param exercise_model=x`` sets it where it exists); a
    key that no page built declares is refused, naming each page's parameters.
    """
    unknown = [k for k in overrides if not any(k in d for d in declared.values())]
    if unknown:
        names = ", ".join(map(repr, unknown))
        lists = "; ".join(f"{page}: {', '.join(d) or '(none)'}" for page, d in declared.items())
        if len(declared) == 1:
            page, d = next(iter(declared.items()))
            raise UsageError(f"page {page!r} has no parameter {names}; its parameters are: {', '.join(d) or '(none)'}")
        raise UsageError(f"no page built has a parameter {names}; the pages' parameters are {lists}")
    return {page: {k: v for k, v in overrides.items() if k in d} for page, d in declared.items()}


def parameter_error(exc: BaseException, nb_path: Path) -> str | None:
    """The page's own one-sentence complaint about a parameter value, or None.

    A page checks its parameters right after its imports and raises ``ValueError`` with one
    sentence. Such an error counts as a parameter error when it is raised in a code cell tagged
    ``parameter-check``, or in any code cell between the ``parameters`` cell and the page's first
    markdown cell after it (the set-up block every page starts with).
    """
    if not isinstance(exc, PapermillExecutionError) or exc.ename not in ("ValueError", "TypeError"):
        return None
    try:
        nb = nbformat.read(nb_path, as_version=4)
        cell = nb.cells[exc.cell_index]
    except Exception:  # the executed notebook is missing or shorter: not ours to judge
        return None
    if "parameter-check" in cell.metadata.get("tags", []):
        return ANSI_RE.sub("", str(exc.evalue)).strip()
    setup = False
    for i, c in enumerate(nb.cells):
        tags = c.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            setup = True
        elif setup and c.cell_type == "markdown":
            break
        if i == exc.cell_index:
            return ANSI_RE.sub("", str(exc.evalue)).strip() if setup else None
    return None


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
NAME_OPTION_RE = r"^(?P<pre>:name:[ \t]*)(?P<name>{names})[ \t]*$"  # a directive's :name: (tables)
ROLE_RE = r"(\{{(?:numref|ref)\}}`(?:[^`]*<)?)(?P<name>{names})(>?`)"


def localise_labels(path: Path, suffix: str) -> None:
    """Make the labels of one page of a template unique in the book.

    Sphinx labels are global: a template executed once per model would define the same
    figure names (``mystnb: figure: name``), ``(label)=`` targets and directive ``:name:``
    options (the build's numbered tables) on every page, and the
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
            names.update(m.group("name") for m in re.finditer(NAME_OPTION_RE.format(names=r"[\w.:-]+"), cell.source, re.M))
    if not names:
        return
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    target, role = re.compile(TARGET_RE.format(names=alt), re.M), re.compile(ROLE_RE.format(names=alt))
    option = re.compile(NAME_OPTION_RE.format(names=alt), re.M)
    for cell in nb.cells:
        fig = (cell.metadata.get("mystnb") or {}).get("figure") or {}
        if fig.get("name"):
            fig["name"] = f"{fig['name']}-{suffix}"
        if cell.cell_type == "markdown":
            text = target.sub(lambda m: f"({m.group('name')}-{suffix})=", cell.source)
            text = option.sub(lambda m: f"{m.group('pre')}{m.group('name')}-{suffix}", text)
            cell.source = role.sub(lambda m: f"{m.group(1)}{m.group('name')}-{suffix}{m.group(3)}", text)
    nbformat.write(nb, path)


def convert(page: Page, src_dir: Path) -> Path:
    """The page's MyST source as ``<src_dir>/<name>.ipynb`` (jupytext; not executed)."""
    src_dir.mkdir(parents=True, exist_ok=True)  # jupytext/papermill do not create folders
    source_ipynb = src_dir / f"{page.name}.ipynb"
    nbformat.write(jupytext.read(page.source), source_ipynb)
    return source_ipynb


def execute(page: Page, source_ipynb: Path, stage: Path) -> Result:
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
        bad_value = parameter_error(exc, output)
        if bad_value is not None:
            raise UsageError(f"page {page.name!r}: {bad_value}") from None
        return Result(page, time.perf_counter() - start, describe_failure(page, exc, output), output)
    seconds = time.perf_counter() - start
    print(f"[execute] {page.name}  done in {seconds:.1f} s", flush=True)
    return Result(page, seconds, None, output)


def finish_page(page: Page, output: Path, source_ipynb: Path, declared: dict[str, str], stage: Path) -> None:
    """Everything the book adds to an executed page: parameter box, student notebook, tables, labels."""
    tag_injected_parameters(output)
    values = page_parameters(declared, page.params)
    student = stage / STUDENT_DIR / f"{page.name}-student.ipynb"
    student.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(nbformat.read(source_ipynb, as_version=4), page.params), student)
    nb = nbformat.read(output, as_version=4)
    insert_parameter_box(nb, values, f"/{STUDENT_DIR}/{student.name}")
    caption_tables(nb)
    nbformat.write(nb, output)
    if page.template:
        localise_labels(output, page.name)


# ---------------------------------------------------------------------------------------
# What the build adds to each page: parameter box, student notebook, numbered tables
# ---------------------------------------------------------------------------------------

STUDENT_DIR = "_static/student"
PARAMETER_BOX_TAG = "parameter-box"


def yaml_value(value: Any) -> str:
    """``value`` as one line of YAML, the form ``--param KEY=VALUE`` takes back."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def page_parameters(declared: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    """Every declared parameter with the value the page ran with, as YAML text (defaults merged)."""
    values = {}
    for name, default in declared.items():
        if name in params:
            values[name] = yaml_value(params[name])
            continue
        try:
            values[name] = yaml_value(ast.literal_eval(default))
        except (ValueError, SyntaxError, TypeError):
            values[name] = default  # an expression: show it as written
    return values


def insert_parameter_box(nb: Any, values: dict[str, str], student_path: str) -> None:
    """Insert the collapsed parameter box (and the student notebook link) after the parameters.

    It goes right after papermill's injected-parameters cell (or the ``parameters`` cell if
    nothing was injected), replacing a box from an earlier pass.
    """
    nb.cells = [c for c in nb.cells if PARAMETER_BOX_TAG not in c.metadata.get("tags", [])]
    where = None
    for i, c in enumerate(nb.cells):
        tags = c.metadata.get("tags", [])
        if "injected-parameters" in tags or ("parameters" in tags and where is None):
            where = i + 1
    rows = "\n".join(f"| `{k}` | `{v.replace('|', chr(92) + '|')}` |" for k, v in values.items())
    name = student_path.rsplit("/", 1)[-1]
    text = (
        ":::{dropdown} Parameters of this page\n"
        "This page was computed with the values below; every number, figure and table on it\n"
        "follows from them. To compute the page again with other values, pass them to the book's\n"
        "build command as `--param KEY=VALUE` (the value written in YAML), as shown on\n"
        "{doc}`the reproducing page <reproducing>`.\n\n"
        "| parameter | value |\n| --- | --- |\n" + (rows or "| (none) | |") + "\n:::\n\n"
        f"Exercise notebook of this page, with the solutions removed: {{download}}`{name} <{student_path}>`."
    )
    cell = nbformat.v4.new_markdown_cell(text, metadata={"tags": [PARAMETER_BOX_TAG]})
    if where is None:  # no parameters: after the cell with the page's title
        where = next((i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and HEADING_RE.search(c.source)), 0)
    nb.cells.insert(where, cell)


EXERCISE_RE = re.compile(r"\{(?:admonition|exercise)\}\s*Exercise\b")
SOLUTION_RE = re.compile(r"^(?P<fence>:{3,}|`{3,})\{dropdown\}[ \t]*Solution\b.*?^(?P=fence)[ \t]*$\n?", re.M | re.S)
HEADING_RE = re.compile(r"^#{1,6} ", re.M)
PLACEHOLDER = "# your code here"


def student_notebook(nb: Any, params: dict[str, Any]) -> Any:
    """The notebook a student works in: the page's parameters, no outputs, no solutions.

    Solutions are marked in two ways, both removed:

    * a cell tagged ``solution``: a markdown cell is dropped, a code cell becomes an empty
      ``# your code here`` cell (one for consecutive solution cells);
    * the book's exercise convention: a markdown cell with an ``{admonition} Exercise ...``, then
      the code cells that compute the answer, then a ``{dropdown} Solution ...`` block. The code
      cells between the exercise and its solution become one ``# your code here`` cell, and the
      solution block is cut out of its markdown cell (the cell is dropped if nothing is left).
    """
    from papermill.parameterize import parameterize_notebook

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])  # papermill reads every cell's tags
    nb.metadata.setdefault("papermill", {})
    nb = parameterize_notebook(nb, params or {}, kernel_name=KERNEL, language="python")
    cells = []
    in_exercise = placeholder_done = False
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown":
            if "solution" in tags:
                continue
            text = cell.source
            if EXERCISE_RE.search(text):
                in_exercise, placeholder_done = True, False
            elif HEADING_RE.search(text):
                in_exercise = False
            if SOLUTION_RE.search(text):
                text = SOLUTION_RE.sub("", text).strip()
                in_exercise = placeholder_done = False
                if not text:
                    continue
                cell.source = text
            cells.append(cell)
            continue
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if in_exercise or "solution" in tags:
                # one empty cell where the solution's code was, for each exercise (or each run of
                # `solution` cells outside an exercise)
                if not placeholder_done:
                    cells.append(nbformat.v4.new_code_cell(PLACEHOLDER))
                    placeholder_done = True
                continue
            placeholder_done = False
        cells.append(cell)
    nb.cells = cells
    return nb


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
        caption = " ".join(str(spec["caption"]).split())
        cells.append(nbformat.v4.new_markdown_cell(f":::{{table}} {caption}\n:name: {spec['name']}\n{table}\n:::"))
        tags = cell.metadata.setdefault("tags", [])
        if "remove-output" not in tags and "remove-cell" not in tags:
            tags.append("remove-output")
    nb.cells = cells


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
    """The exercise titles of a MyST notebook (``{admonition} Exercise ...`` lines), in order."""
    return [m.group(1).strip() for m in re.finditer(r"\{(?:admonition|exercise)\}\s*(Exercise\b[^\n]*)", source.read_text())]


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


def fill_course_page(stage: Path, pages: list[Page], results: list[Result]) -> None:
    """Put the course table into the staged instructor page (if the book has one)."""
    page = stage / COURSE_PAGE
    if not page.is_file():
        return
    text = page.read_text()
    if COURSE_MARKER not in text:
        raise BuildError(f"book/{COURSE_PAGE} lacks the line {COURSE_MARKER!r} where the course table goes")
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    page.write_text(text.replace(COURSE_MARKER, course_table(toc, pages, results)))


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (and exit 2), like the build's own."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("--out", type=Path, default=Path("_build"))
    parser.add_argument("--only", nargs="+", metavar="PAGE", help="build only these notebook pages")
    parser.add_argument("--param", action="append", metavar="KEY=YAML",
                        help="override one parameter of every page built (value parsed as YAML); repeatable")
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
        overrides = parse_overrides(args.param)
        all_pages = load_pages(args.profile)
        pages = [p for p in all_pages if args.profile in p.profiles]
        if args.only:
            unknown = [n for n in args.only if n not in {p.name for p in all_pages}]
            if unknown:
                raise UsageError(f"--only: unknown page(s) {', '.join(unknown)}; "
                                 f"pages: {', '.join(p.name for p in all_pages)}")
            pages = [p for p in all_pages if p.name in args.only]  # named pages run in any profile
        # Convert and check every page before anything runs: a misspelt key costs no minutes.
        sources: dict[str, tuple[Path, dict[str, str]]] = {}
        for page in pages:
            source_ipynb = convert(page, src_dir)
            check_parameters(source_ipynb, page)
            sources[page.name] = (source_ipynb, declared_parameters(source_ipynb))
        taken = check_overrides({name: declared for name, (_, declared) in sources.items()}, overrides)
        for page in pages:
            page.params = {**page.params, **taken[page.name]}
            left_out = sorted(set(overrides) - set(taken[page.name]))
            if left_out:
                print(f"[param] {page.name} has no parameter {', '.join(left_out)}; it runs without it")
        skipped = [p.name for p in all_pages if p not in pages]
        if skipped:
            print(f"[stage] not built in this run (dropped from the toc): {skipped}")
        stage_sources(stage, all_pages, pages, partial=bool(args.only))
        print(f"[stage] {stage}  (kernel {KERNEL!r} runs {check_kernel()})", flush=True)

        for page in pages:
            source_ipynb, declared = sources[page.name]
            results.append(execute(page, source_ipynb, stage))
            if results[-1].error is None:
                finish_page(page, stage / f"{page.name}.ipynb", source_ipynb, declared, stage)
            elif args.fail_fast:
                break
        failures = [r for r in results if r.error]

        if failures:
            raise BuildError(
                f"{len(failures)} of {len(pages)} notebook(s) failed; no HTML was built.\n\n"
                + "\n\n".join(r.error for r in failures if r.error)
            )
        fill_course_page(stage, all_pages, results)

        sys.path.insert(0, str(REPO / "lib"))  # this checkout's plots.py, whatever the cwd
        from residual_response.plots import write_vega_bundle

        bundle = write_vega_bundle(stage / "_static")
        print(f"[stage] vega bundle: {bundle} ({bundle.stat().st_size / 1e6:.1f} MB)")
        if not args.skip_html:
            th = time.perf_counter()
            index = build_html(stage, out / "jupyter-book.log")
            html_seconds = time.perf_counter() - th
            check_no_cdn(index.parent)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"\nbuild_book: FAILED\n{exc}", file=sys.stderr)
        return 1
    finally:
        if results or html_seconds is not None:
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
        "machine": machine_description(),
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
