"""The exercise notebook a student works in: the page's parameters, no outputs, no solutions."""

from __future__ import annotations

import copy
import re
from typing import Any

import nbformat

from .config import KERNEL

__all__ = ["STUDENT_DIR", "PLACEHOLDER", "student_notebook"]


STUDENT_DIR = "_static/student"


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
