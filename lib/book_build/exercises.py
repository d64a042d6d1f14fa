"""Build-it-yourself exercises in the pages: the cell tags they use, and the build's check of their solutions.

A page hands out a function to write in a section "Build it yourself: ..." near its end, as
cells in this order:

==========================  ==========================================================================
tag                         cell
==========================  ==========================================================================
``exercise-imports``        the imports the exercise needs (the student notebook moves them first)
``stub``                    the function to write: typed signature, docstring with shapes, ``raise
                            NotImplementedError``; shown on the page and kept in the student notebook
(markdown)                  graded hints, each in a ``{dropdown} Hint N: ...``: the first says what to
                            think about, code only in the last
``solution``                the page's solution (shown folded, ``hide-input``); dropped from the
                            student notebook
``check``                   ``check_...(function)`` from :mod:`residual_response.exercises`, which
                            prints one line: ``✓ ...`` when the function agrees with the library
``use-it``                  (optional, after the check) the function put to work on the trained toy
                            model (:mod:`residual_response.pages.use_it`): a table of its result beside
                            the library's; with the stub empty, one line ``name: not implemented yet``
==========================  ==========================================================================

The build executes the page with the solution in place and :func:`verify_checks` requires every
``check`` cell's output to start with ``✓``, and every ``use-it`` cell to show its result (no
"not implemented yet", no ``✗`` line): a wrong solution fails the build.
"""

from __future__ import annotations

from typing import Any

from .config import BuildError

__all__ = ["STUB_TAG", "SOLUTION_TAG", "CHECK_TAG", "IMPORTS_TAG", "USE_TAG", "PASS_MARK", "FAIL_MARK",
           "NOT_IMPLEMENTED", "check_outputs", "use_outputs", "verify_checks", "has_stubs"]

STUB_TAG = "stub"
SOLUTION_TAG = "solution"
CHECK_TAG = "check"
IMPORTS_TAG = "exercise-imports"
USE_TAG = "use-it"

#: the first character of a passed check's line (``residual_response.exercises.harness.PASS``)
PASS_MARK = "✓"

#: the first character of a failed check's line (``residual_response.exercises.harness.FAIL``)
FAIL_MARK = "✗"

#: the end of the line a check or a use-it cell prints for an empty stub (``harness.NOT_IMPLEMENTED``)
NOT_IMPLEMENTED = "not implemented yet"


def _text(cell: Any) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif o.get("output_type") == "error":
            parts.append(f"{o.get('ename')}: {o.get('evalue')}")
        else:
            parts.append((o.get("data") or {}).get("text/plain", ""))
    return "".join(parts)


def check_outputs(nb: Any) -> list[tuple[int, str]]:
    """``[(cell index, printed text)]`` of every ``check`` cell of an executed notebook."""
    return [(i, _text(c)) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])]


def use_outputs(nb: Any) -> list[tuple[int, str]]:
    """``[(cell index, printed text)]`` of every ``use-it`` cell of an executed notebook (its
    printed lines and the plain text of what it displays)."""
    return [(i, _text(c)) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and USE_TAG in c.metadata.get("tags", [])]


def has_stubs(nb: Any) -> bool:
    """Whether the notebook hands out a function to write (a ``stub`` cell)."""
    return any(c.cell_type == "code" and STUB_TAG in c.metadata.get("tags", []) for c in nb.cells)


def verify_checks(nb: Any, page: str) -> int:
    """Raise :class:`BuildError` unless every ``check`` cell of the executed page passed; return how many there are.

    Why in the build: the page shows its solution as the answer to the exercise, so the solution
    must be one the check accepts; a check that printed ``✗`` (or nothing) stops the build with its line.
    """
    checks = check_outputs(nb)
    for i, text in checks:
        if not text.lstrip().startswith(PASS_MARK):
            line = text.strip().splitlines()[0] if text.strip() else "(no output)"
            raise BuildError(f"page {page!r}: the check in cell {i} does not pass with the page's solution: {line}")
    for i, text in use_outputs(nb):
        bad = [line for line in text.splitlines() if line.startswith(FAIL_MARK) or line.endswith(NOT_IMPLEMENTED)]
        if bad or not text.strip():
            raise BuildError(f"page {page!r}: the use-it cell {i} shows no result with the page's solution: "
                             f"{bad[0] if bad else '(no output)'}")
    return len(checks)
