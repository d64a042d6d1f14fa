"""A page's parameters: the ones its notebook declares, the overrides of ``--param``, the page's own
complaint about a value, and the collapsed box that lists them on the page."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import nbformat
import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

from .config import ANSI_RE, REPO, BuildError, Page, UsageError
from .student import HEADING_RE

__all__ = ["declared_parameters", "check_parameters", "parse_overrides", "check_overrides", "parameter_error",
           "yaml_value", "page_parameters", "insert_parameter_box", "PARAMETER_BOX_TAG"]


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
