"""Executing a page: its kernel, the conversion from MyST, papermill, and what the build adds to the
executed notebook (hidden parameters, parameter box, student notebook, numbered tables, labels)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from .config import ANSI_RE, KERNEL, REPO, BuildError, Page, Result, UsageError
from .html import caption_tables
from .params import insert_parameter_box, page_parameters, parameter_error
from .exercises import has_stubs, verify_checks
from .markdown import BookIndex, book_index, glue_values
from .student import FILLED_DIR, STUDENT_DIR, student_notebook

__all__ = ["check_kernel", "describe_failure", "tag_injected_parameters", "localise_labels", "convert", "execute",
           "finish_page"]


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


#: stderr lines that say how this build ran, not what the page computed: a kernel waiting for a
#: results-cache entry that another page's kernel is computing (residual_response.io)
BUILD_NOISE = re.compile(r"^waiting for the cache entry .*\n?", re.M)


def drop_build_noise(nb) -> int:
    """Remove :data:`BUILD_NOISE` lines from the stderr outputs of ``nb`` (and outputs left empty);
    returns how many lines went. Why: which page waits for which depends on the order of the build,
    and a reader sees a path and a process id of the build machine."""
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text, n_lines = BUILD_NOISE.subn("", out.get("text", ""))
                n += n_lines
                if not text.strip():
                    continue
                out["text"] = text
            kept.append(out)
        cell["outputs"] = kept
    return n


def finish_page(page: Page, output: Path, source_ipynb: Path, declared: dict[str, str], stage: Path,
                index: BookIndex | None = None) -> None:
    """Everything the book adds to an executed page: the exercises' checks, parameter box, student
    notebooks, tables, labels.

    The student notebook goes to ``<stage>/_static/student/<page>-student.ipynb``; a page with
    build-it-yourself exercises also gets the same notebook with its stubs filled, beside the stage
    in ``student-filled/`` (for the tests, not published).
    """
    tag_injected_parameters(output)
    nb = nbformat.read(output, as_version=4)
    verify_checks(nb, page.name)
    values = page_parameters(declared, page.params)
    student = stage / STUDENT_DIR / f"{page.name}-student.ipynb"
    student.parent.mkdir(parents=True, exist_ok=True)
    source = nbformat.read(source_ipynb, as_version=4)
    kw = dict(index=index or book_index(), page=page.name, glue=glue_values(nb), template=page.template)
    nbformat.write(student_notebook(source, page.params, **kw), student)
    if has_stubs(source):
        filled = stage.parent / FILLED_DIR / f"{page.name}-student.ipynb"
        filled.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_notebook(source, page.params, fill_stubs=True, **kw), filled)
    insert_parameter_box(nb, values, f"/{STUDENT_DIR}/{student.name}")
    caption_tables(nb)
    drop_build_noise(nb)
    nbformat.write(nb, output)
    if page.template:
        localise_labels(output, page.name)
