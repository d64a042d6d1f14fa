"""The exercise notebook a student works in: the page's parameters, no outputs, no solutions, plain Markdown.

What the book page shows and what the student gets differ in these ways:

* **solutions**: a build-it-yourself exercise (:mod:`.exercises`) keeps its stub cell (tag
  ``stub``), its hints and its check (tag ``check``), and loses the solution cell after the stub
  (tag ``solution``). The book's older exercises (an ``{admonition} Exercise N`` whose answer
  the page computes, then a ``{dropdown} Solution N``) get one ``# Exercise N: your code here``
  cell in place of the answer's code, and lose the dropdown. A cell tagged ``solution`` outside
  these is dropped as well (a code cell leaves one placeholder).
* **Markdown**: every MyST role and directive becomes plain Markdown (:mod:`.markdown`), the glued
  values included, so that Jupyter shows what the book shows.
* **imports**: the first code cell imports by name what the notebook uses from the book's page
  module (the page itself uses one star import) and what its exercises need (cells tagged
  ``exercise-imports`` are moved there).
* **book-only cells**: a hidden cell that only glues values for the prose or asserts the page's
  claims is dropped where no later cell reads a name it binds, and the glue calls and asserts of
  the hidden cells that stay are taken out (:func:`_drop_book_only`): the Markdown shows the
  glued values already.
* **outputs**: none.
* **parameters**: one cell with the values the page was computed with. The page's parameter cell
  holds defaults for a run by hand, and papermill injects a cell after it that overrides them; a
  student would read the first and compute with the second. :func:`merged_parameters` writes the
  values in use into the page's cell, each assignment keeping its comment, and drops the injected
  cell.
* **answers**: a hint or answer folded on the page (``{dropdown}``) stays folded (a ``<details>``
  block, :func:`.markdown.details`), and the text right after a check that answers the
  exercise's "Before you run it" question is folded as well, up to the next heading.

:func:`student_notebook` with ``fill_stubs=True`` gives the same notebook with each stub replaced
by the page's solution: the tests run both, and every check must pass in the one and say "not
implemented yet" in the other.
"""

from __future__ import annotations

import ast
import copy
import re
from typing import Any

import nbformat

from .config import KERNEL, REPO
from .exercises import CHECK_TAG, IMPORTS_TAG, SOLUTION_TAG, STUB_TAG, USE_TAG
from .markdown import BookIndex, details, plain_markdown

__all__ = ["STUDENT_DIR", "FILLED_DIR", "PLACEHOLDER", "STAR_IMPORT", "PARAMETERS_HEADER", "ANSWER_TITLE",
           "student_notebook", "page_module_names", "merged_parameters"]


STUDENT_DIR = "_static/student"

#: beside the staged book (not published): the student notebooks with the stubs filled, for the tests
FILLED_DIR = "student-filled"


EXERCISE_RE = re.compile(r"\{(?:admonition|exercise)\}\s*Exercise\b\s*(?P<n>\d*)")


SOLUTION_RE = re.compile(r"^(?P<fence>:{3,}|`{3,})\{dropdown\}[ \t]*Solution\b.*?^(?P=fence)[ \t]*$\n?", re.M | re.S)


HEADING_RE = re.compile(r"^#{1,6} ", re.M)


PLACEHOLDER = "# your code here"

#: the first line of the student's parameter cell
PARAMETERS_HEADER = "# Parameters: the values this copy of the book was computed with; change them and rerun."

#: the title of the folded answer to an exercise's "Before you run it" question
ANSWER_TITLE = "The answer to \u201cBefore you run it\u201d (open it after the check)"

BEFORE_RE = re.compile(r"Before\s+you\s+run\s+it\b")  # the line may break inside it

#: an exercise's statement: a build-it-yourself box or an older exercise
TASK_RE = re.compile(r"\{(?:admonition|exercise)\}\s*(?:Exercise|Build it yourself)\b")

#: where a folded answer ends: a heading, a ``(label)=`` target or a directive
ANSWER_END_RE = re.compile(r"^(?:#{1,6} |\([\w-]+\)=|`{3,}\{|:{3,}\{)", re.M)

#: the one line every book page starts its code with
STAR_IMPORT = "from residual_response.page import *"

PAGE_MODULE = REPO / "lib" / "residual_response" / "pages" / "page.py"


def page_module_names() -> list[str]:
    """The names ``from residual_response.page import *`` brings (its ``__all__``, read without importing it)."""
    tree = ast.parse(PAGE_MODULE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError(f"{PAGE_MODULE} has no __all__")


def merged_parameters(defaults: str, params: dict[str, Any]) -> str:
    """The page's parameter cell ``defaults`` with the values ``params`` in use: each top-level
    assignment of a name in ``params`` gets its value (as papermill writes it) and keeps its
    comment; names without a default are added at the end; the first comment line becomes
    :data:`PARAMETERS_HEADER`."""
    from papermill.translators import PythonTranslator

    lines = defaults.splitlines()
    done: set[str] = set()
    for node in reversed(ast.parse(defaults).body):  # from the end, so that line numbers stay valid
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name not in params:
            continue
        comment = lines[node.end_lineno - 1][node.end_col_offset:].strip()
        line = f"{name} = {PythonTranslator.translate(params[name])}" + (f"  {comment}" if comment else "")
        lines[node.lineno - 1:node.end_lineno] = [line]
        done.add(name)
    lines += [f"{name} = {PythonTranslator.translate(value)}" for name, value in params.items() if name not in done]
    if lines and lines[0].startswith("#"):
        lines[0] = PARAMETERS_HEADER
    else:
        lines.insert(0, PARAMETERS_HEADER)
    return "\n".join(lines)


def _one_parameter_cell(nb: Any, params: dict[str, Any]) -> None:
    """Merge the page's parameter cell and papermill's injected one (:func:`merged_parameters`)."""
    cells = nb.cells
    page = next((c for c in cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if page is None:
        return
    page.source = merged_parameters(page.source, params or {})
    page.metadata["tags"] = ["parameters"]
    nb.cells = [c for c in cells if "injected-parameters" not in c.metadata.get("tags", [])]


def _parameterized(nb: Any, params: dict[str, Any]) -> Any:
    """A copy of ``nb`` with papermill's parameters in one cell (:func:`_one_parameter_cell`)."""
    from papermill.parameterize import parameterize_notebook

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])  # papermill reads every cell's tags
    nb.metadata.setdefault("papermill", {})
    nb = parameterize_notebook(nb, params or {}, kernel_name=KERNEL, language="python")
    _one_parameter_cell(nb, params)
    return nb


def _fold_answer(text: str) -> str:
    """Fold the text before the first heading, target or directive of ``text`` (an answer)."""
    m = ANSWER_END_RE.search(text)
    answer, rest = (text[:m.start()], text[m.start():]) if m else (text, "")
    if not answer.strip():
        return text
    return details(ANSWER_TITLE, answer.strip()) + ("\n\n" + rest if rest else "")


def _used_names(cells: list) -> set[str]:
    names: set[str] = set()
    for cell in cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names


def _imports_cell(cells: list) -> None:
    """Put the named imports first: the page module's names this notebook uses, then the exercises' imports."""
    exercise_lines: list[str] = []
    kept = []
    star = False
    for cell in cells:
        if cell.cell_type == "code" and IMPORTS_TAG in cell.metadata.get("tags", []):
            exercise_lines += [line for line in cell.source.splitlines() if line.strip() and line not in exercise_lines]
            continue
        if cell.cell_type == "code" and STAR_IMPORT in cell.source:
            star = True
            cell.source = "\n".join(line for line in cell.source.splitlines() if line.strip() != STAR_IMPORT).strip()
            if not cell.source:
                continue
        kept.append(cell)
    cells[:] = kept
    used = sorted(set(page_module_names()) & _used_names(cells)) if star else []
    if not used and not exercise_lines:
        return
    lines = ["# Everything this notebook uses from the library, imported by name."]
    if used:
        lines.append("from residual_response.page import (")
        row: list[str] = []
        for name in used:
            if len(", ".join(row + [name])) > 88:
                lines.append("    " + ", ".join(row) + ",")
                row = []
            row.append(name)
        lines += ["    " + ", ".join(row) + ",", ")"]
    lines += exercise_lines
    first = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first, nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["imports"]}))


#: the calls that pass a value to the book's prose (myst_nb's ``glue`` and the page module's ``glue_all``)
GLUE_CALLS = ("glue", "glue_all")


def _call_name(node: ast.AST) -> str:
    func = node.func if isinstance(node, ast.Call) else None
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_book_statement(node: ast.stmt) -> bool:
    """A statement that serves the book only: a ``glue(...)`` call or an ``assert`` of a claim."""
    return isinstance(node, ast.Assert) or (isinstance(node, ast.Expr) and _call_name(node.value) in GLUE_CALLS)


def _only_book_statements(node: ast.stmt) -> bool:
    """Whether ``node`` is a glue call or an assert, or a loop of nothing else."""
    if isinstance(node, ast.For):
        return all(_only_book_statements(n) for n in node.body + node.orelse)
    return _is_book_statement(node)


def _bound_names(tree: ast.AST) -> set[str]:
    """The names a cell binds for the cells after it (assignments, loop targets, definitions,
    imports), not the variables of its comprehensions, which stay inside them."""
    stores: dict[str, int] = {}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names = [node.id]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(a.asname or a.name).split(".")[0] for a in node.names]
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names = [node.name]
        for name in names:
            stores[name] = stores.get(name, 0) + 1
    for comp in (n for n in ast.walk(tree) if isinstance(n, ast.comprehension)):
        for n in ast.walk(comp.target):
            if isinstance(n, ast.Name):
                stores[n.id] -= 1
    return {name for name, count in stores.items() if count > 0}


def _loaded_names(source: str) -> set[str]:
    """The names a cell reads from the cells before it: every name it loads but the loop and
    comprehension variables and the arguments of its own functions, which it binds itself."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    own = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.comprehension, ast.For)):
            own |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own


def _book_only(cell: Any) -> set[str] | None:
    """The names a code cell binds, if the cell serves the book only, else ``None``.

    A cell serves the book only when it glues values for the prose or asserts the page's claims,
    and does nothing a student would see or a later cell could feel: it is hidden on the page
    (``remove-cell``), or it only glues (loops of glue calls included) without displaying, every expression statement in it is a glue call
    (or, in a cell whose output nbval compares, ``nbval-check-output``, a print for nbval),
    and it writes into no object it did not create (no ``x[...] = ...`` or ``x.a = ...`` on an
    outside ``x``). Whether its names are needed later is for :func:`_drop_book_only` to say.
    """
    tags = cell.metadata.get("tags", [])
    if cell.cell_type != "code" or {"parameters", "injected-parameters", STUB_TAG, CHECK_TAG, SOLUTION_TAG,
                                    IMPORTS_TAG, USE_TAG} & set(tags):
        return None
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return None
    if not any(isinstance(n, ast.stmt) and _is_book_statement(n) for n in ast.walk(tree)):
        return None
    glues = [n.value for n in ast.walk(tree) if isinstance(n, ast.Expr) and _call_name(n.value) in GLUE_CALLS]
    allowed = GLUE_CALLS + (("print",) if "nbval-check-output" in tags else ())  # what nbval compares
    if any(isinstance(n, ast.Expr) and _call_name(n.value) not in allowed for n in ast.walk(tree)):
        return None  # a display or a call for its side effect
    quiet = all(_call_name(g) == "glue_all" or any(k.arg == "display" and isinstance(k.value, ast.Constant)
                                                   and k.value.value is False for k in g.keywords) for g in glues)
    if "remove-cell" not in tags and not (quiet and all(_only_book_statements(n) for n in tree.body)):
        return None  # a cell the page shows is dropped only when it glues and does nothing else
    bound = _bound_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if not (isinstance(base, ast.Name) and base.id in bound):
                return None
    return bound


def _silent_glue(node: ast.stmt) -> bool:
    """A top-level ``glue_all(...)``, or ``glue(...)`` with ``display=False``: a call that shows nothing."""
    if not (isinstance(node, ast.Expr) and _call_name(node.value) in GLUE_CALLS):
        return False
    if _call_name(node.value) == "glue_all":
        return True
    return any(k.arg == "display" and isinstance(k.value, ast.Constant) and k.value.value is False
               for k in node.value.keywords)


def _strip_book_statements(source: str, *, silent_glue_only: bool = False) -> str:
    """``source`` without its top-level glue calls and asserts, and the comment lines right above
    each; with ``silent_glue_only``, without its glue calls that show nothing only (a visible cell
    keeps its asserts, which the page shows, and a glue that displays its value)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines()
    drop: set[int] = set()
    for node in tree.body:
        if _silent_glue(node) if silent_glue_only else _is_book_statement(node):
            start = node.lineno - 1
            while start > 0 and lines[start - 1].lstrip().startswith("#"):
                start -= 1
            drop.update(range(start, node.end_lineno))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop).strip()


def _drop_book_only(cells: list) -> None:
    """Drop the code cells that serve the book only (:func:`_book_only`), where no later cell
    (solutions included) reads a name they bind; from the hidden cells that stay, strip the
    top-level glue calls and asserts, and from the visible ones the glue calls that show nothing. Why: the student notebook shows the glued values in its
    Markdown already, and a cell of ``glue(...)`` or of the book's claims means nothing there."""
    needed: set[str] = set()
    kept = []
    for cell in reversed(cells):
        if cell.cell_type == "code":
            bound = _book_only(cell)
            if bound is not None and not bound & needed:
                continue
            hidden = "remove-cell" in cell.metadata.get("tags", [])
            cell.source = _strip_book_statements(cell.source, silent_glue_only=not hidden)
            if hidden and (not cell.source or all(l.lstrip().startswith("#") for l in cell.source.splitlines())):
                continue
            needed |= _loaded_names(cell.source)
        kept.append(cell)
    cells[:] = kept[::-1]


def student_notebook(nb: Any, params: dict[str, Any], *, index: BookIndex | None = None, page: str = "",
                     glue: dict[str, dict[str, str]] | None = None, template: bool = False,
                     fill_stubs: bool = False) -> Any:
    """The notebook a student works in (module docstring).

    Args:
        nb: the page's source notebook (not executed).
        params: the parameters the page ran with (papermill injects them).
        index, page, glue, template: for the Markdown (:func:`.markdown.plain_markdown`); without
            ``index`` the Markdown is left as it is.
        fill_stubs: put each stub's solution in its place (the notebook the tests expect every check
            to pass in).
    """
    nb = _parameterized(nb, params)
    _drop_book_only(nb.cells)
    cells = []
    asks = after_check = False  # the exercise asks "Before you run it"; the last cell was its check
    in_exercise = placeholder_done = False
    number = ""
    open_stub = None  # the stub cell whose solution comes next
    linked: set[str] = set()  # library objects already linked to the reference
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown":
            if SOLUTION_TAG in tags:
                continue
            text = cell.source
            task = TASK_RE.search(text)
            answer = after_check and asks and not task
            after_check = False
            if task:
                asks = bool(BEFORE_RE.search(text))
            if SOLUTION_RE.search(text):  # the solution ends the exercise before it, then the rest is read
                text = SOLUTION_RE.sub("", text).strip()
                in_exercise = placeholder_done = False
            if m := EXERCISE_RE.search(text):  # (the next exercise often shares the solution's cell)
                in_exercise, placeholder_done, number = True, False, m.group("n")
            elif HEADING_RE.search(text):
                in_exercise = False
            if not text:
                continue
            if index is not None:
                text = plain_markdown(text, index=index, page=page, glue=glue, template=template, linked=linked)
            if answer:
                text = _fold_answer(text)
            cell.source = text
            cells.append(cell)
            continue
        if cell.cell_type == "code":
            after_check = CHECK_TAG in tags
            cell.outputs, cell.execution_count = [], None
            if STUB_TAG in tags:
                open_stub = cell
                cells.append(cell)
                continue
            if SOLUTION_TAG in tags and open_stub is not None:
                if fill_stubs:
                    open_stub.source = cell.source
                open_stub = None
                continue
            if CHECK_TAG in tags or IMPORTS_TAG in tags or USE_TAG in tags:
                # a use-it cell runs the student's own function: it is never an exercise's answer
                cells.append(cell)
                continue
            if in_exercise or SOLUTION_TAG in tags:
                # one empty cell where the solution's code was, for each exercise (or each run of
                # `solution` cells outside an exercise)
                if not placeholder_done:
                    label = f"# Exercise {number}: your code here" if in_exercise and number else PLACEHOLDER
                    cells.append(nbformat.v4.new_code_cell(label))
                    placeholder_done = True
                continue
            placeholder_done = False
        cells.append(cell)
    _imports_cell(cells)
    nb.cells = cells
    return nb
